//! The data layer's errors: reading and preparing events, configuring the synthetic world,
//! sampling the evaluation cases.

use std::path::PathBuf;

/// Every failure of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened, read or written.
    #[error(transparent)]
    Io(#[from] FileError),
    /// A document could not be serialised.
    #[error(transparent)]
    Json(#[from] JsonError),
    /// A record of an input file is malformed: `file:line: reason`.
    #[error("{file}:{line}: {reason}")]
    Parse {
        file: String,
        line: u64,
        reason: String,
    },
    /// A file's columns are not the ones its format needs (missing, repeated or of another type).
    #[error("{file}: {reason}")]
    Schema { file: String, reason: String },
    /// A Parquet file could not be decoded (not Parquet, damaged, or a codec not built in).
    #[error("{file}: Parquet: {source}")]
    Parquet {
        file: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// The data is well-formed but unusable for the asked operation.
    #[error("data: {0}")]
    Unusable(String),
    /// A caller passed an argument outside its domain.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The data layer's result type.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

/// A file could not be opened, read or written: which one, and the I/O error. The `Io`
/// variant of every layer's error holds one.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct FileError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

impl FileError {
    pub fn new(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        FileError {
            path: path.into(),
            source,
        }
    }
}

/// JSON could not be read or written: what it was, and serde's error (which says where in the
/// text, when reading). The `Json` variant of every layer's error holds one.
#[derive(Debug, thiserror::Error)]
#[error("JSON of {what}: {source}")]
pub struct JsonError {
    pub what: String,
    #[source]
    pub source: serde_json::Error,
}

impl JsonError {
    /// The `map_err` argument for serde's error about `what`.
    pub fn of(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> JsonError {
        let what = what.into();
        move |source| JsonError { what, source }
    }
}
