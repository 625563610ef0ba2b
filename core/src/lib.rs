//! slowfast-core: the device runtime of MC²-SF (docs/architecture.md §5–7).
//!
//! The fast component runs here, on the phone, from an ONNX model bundle ([`manifest`]).
//! [`wire`] holds the JSON types of the sync protocol, shared with the server in
//! `slowfast-server` so that both sides use one definition.

mod backoff;
// Not part of the SDK an app ships: the CLI's and the criterion benchmarks' figures.
#[cfg(feature = "bench")]
pub mod bench;
mod embeddings;
mod engine;
pub mod error;
pub mod manifest;
pub mod model;
pub mod store;
pub mod sync;
mod window;
pub mod wire;

pub use engine::{Config, Scored, SlowFast, SyncReport, LOCK_FILE, NEG_LOG_LEN};
pub use error::{Result, SlowFastError};
pub use store::Durability;
pub use sync::Cancel;
