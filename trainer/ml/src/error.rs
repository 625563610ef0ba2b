//! The training crate's errors.

use std::path::PathBuf;

/// Every failure of training, evaluation and export; the data layer's errors are kept whole
/// ([`TrainerError::Data`]).
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// A file could not be opened, read or written.
    #[error(transparent)]
    Io(#[from] slowfast_data::FileError),
    /// Reading or preparing the data failed ([`slowfast_data`]).
    #[error(transparent)]
    Data(#[from] slowfast_data::DataError),
    /// The data is well-formed but unusable for the asked operation.
    #[error("data: {0}")]
    Unusable(String),
    /// A caller passed an argument outside its domain.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A result or report could not be serialised.
    #[error(transparent)]
    Json(#[from] slowfast_data::JsonError),
    /// A tensor operation of the training framework failed (shapes, devices, I/O of checkpoints).
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    /// ONNX Runtime failed to run an exported model (the parity checks).
    #[error("onnxruntime: {0}")]
    Ort(String),
    /// ONNX Runtime could not be found, fetched or loaded.
    #[error(transparent)]
    OrtUnavailable(#[from] slowfast_ort::Unavailable),
    /// The device runtime refused something (a bundle, a model input).
    #[error(transparent)]
    Core(#[from] slowfast_core::SlowFastError),
    /// A program this crate runs (the device benchmark's own process) failed; it said why on
    /// stderr.
    #[error("{program} failed ({status})")]
    Child {
        program: PathBuf,
        status: std::process::ExitStatus,
    },
    /// The SVG chart could not be drawn.
    #[error("chart {path}: {reason}")]
    Chart { path: PathBuf, reason: String },
}

/// The trainer's result type.
pub type Result<T, E = TrainerError> = std::result::Result<T, E>;
