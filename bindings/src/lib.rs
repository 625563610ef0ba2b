//! slowfast-ffi: the uniffi exports of the slowfast device runtime (docs/architecture.md §2, §8) for the
//! Kotlin library in `android/` and the Swift package in `ios/`.
//!
//! No logic lives here: every export forwards to [`slowfast_core`], converting records and
//! errors at the boundary. A whole feed crosses the boundary once per `rerank`.

mod config;
mod engine;
mod error;
mod wire;

pub use config::{default_config, Config, SyncReport};
pub use engine::{Cancellation, Engine};
pub use error::SlowFastError;
pub use wire::{FeedItem, FeedResponse, Vector};

uniffi::setup_scaffolding!("slowfast");

/// The SDK's version (the crate version of slowfast-ffi), e.g. `"0.1.0"`.
#[uniffi::export]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_owned()
}
