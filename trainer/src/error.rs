//! The one error enum of the trainer crate.

use std::path::PathBuf;

/// Every failure of the trainer: reading data, evaluating, writing reports.
#[derive(Debug, thiserror::Error)]
pub enum TrainerError {
    /// A file could not be opened, read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A record of an input file is malformed: `file:line: reason`.
    #[error("{file}:{line}: {reason}")]
    Parse {
        file: String,
        line: u64,
        reason: String,
    },
    /// The data is well-formed but unusable for the asked operation.
    #[error("data: {0}")]
    Data(String),
    /// A caller passed an argument outside its domain.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// A result or report could not be serialised.
    #[error("serialise {what}: {source}")]
    Json {
        what: String,
        #[source]
        source: serde_json::Error,
    },
    /// A tensor operation of the training framework failed (shapes, devices, I/O of checkpoints).
    #[error("tensor: {0}")]
    Candle(#[from] candle_core::Error),
    /// ONNX Runtime could not be found, loaded or run (the server's and the parity checks'
    /// runtime for the exported models).
    #[error("onnxruntime: {0}")]
    Ort(String),
    /// The device runtime refused something (a bundle, a model input).
    #[error(transparent)]
    Core(#[from] slowfast_core::SlowFastError),
    /// The sync server's database refused or failed a query (`slowfast serve`, `--from-db`).
    #[error("store: {0}")]
    Store(String),
    /// An upload reused an idempotency key the store holds with other content (`slowfast
    /// serve`): nothing of it was stored.
    #[error("idempotency key {key:?} was used for an upload with other content")]
    KeyConflict { key: String },
    /// A bearer token is missing, malformed, forged or expired (`slowfast serve`).
    #[error("token: {0}")]
    Token(String),
    /// A stage of `slowfast demo` failed; `source` says why.
    #[error("demo stage `{stage}` failed: {source}")]
    Stage {
        stage: String,
        #[source]
        source: Box<TrainerError>,
    },
    /// The SVG chart could not be drawn.
    #[error("chart {path}: {reason}")]
    Chart { path: PathBuf, reason: String },
}

/// The trainer's result type.
pub type Result<T, E = TrainerError> = std::result::Result<T, E>;

impl TrainerError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        TrainerError::Io {
            path: path.into(),
            source,
        }
    }
}
