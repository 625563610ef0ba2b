//! slowfast-trainer: the models of MC²-SF and everything that trains, ranks and exports them
//! (docs/architecture.md §1). The events, the split and the evaluation protocol come from
//! `slowfast_data`; the sync server and the online loop are built on top of this crate.
//!
//! Modules depend one way: [`models`] (fused CPU kernels → layers → the slow and fast
//! components → the training loop) → [`baselines`] → [`checkpoint`] → [`export`] (ONNX, the
//! bundle, parity with ort and tract) → [`eval`] (the runner, reports, curves, the re-rank
//! protocol with the four [`arms`]); [`bench`] measures training and the device.

pub mod arms;
pub mod baselines;
pub mod bench;
pub mod checkpoint;
pub mod error;
pub mod eval;
pub mod export;
pub mod models;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use error::{Result, TrainerError};
