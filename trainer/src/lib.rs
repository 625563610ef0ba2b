//! slowfast-trainer: the cloud side of MC²-SF (docs/architecture.md §1).
//!
//! Data flows one way: [`data`] (read → filter → split) → [`eval`] (sample → score → metrics →
//! report). [`synth`] writes the synthetic default data set; [`baselines`] holds the models that
//! the evaluation harness ranks with.

pub mod baselines;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod demo;
pub mod error;
pub mod eval;
pub mod export;
pub mod synth;

pub use error::{Result, TrainerError};
pub mod models;
pub mod ort_env;
pub mod ort_fetch;
pub mod retrain;
pub mod serve;
