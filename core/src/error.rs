//! The one error enum of the device runtime. Every failure is a typed variant; nothing on an
//! input path panics.

/// What went wrong in the device runtime.
#[derive(Debug, thiserror::Error)]
pub enum SlowFastError {
    /// A caller passed something unusable (wrong dimension, non-finite float, empty id, …).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A model bundle is missing a file, fails its hash, has a wrong shape or a format this
    /// build does not read. `file` names the part of the bundle at fault.
    #[error("bundle refused ({file}): {reason}")]
    Bundle { file: String, reason: String },
    /// The ONNX runtime (tract) failed to load or run a model.
    #[error("model: {0}")]
    Model(String),
    /// A file-system error.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
    /// JSON that could not be read or written.
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = SlowFastError> = std::result::Result<T, E>;
