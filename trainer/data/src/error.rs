//! The data layer's errors: reading and preparing events, configuring the synthetic world,
//! sampling the evaluation cases.

use std::path::PathBuf;

/// Every failure of the data layer.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
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
    Unusable(String),
    /// A caller passed an argument outside its domain.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

/// The data layer's result type.
pub type Result<T, E = DataError> = std::result::Result<T, E>;

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        DataError::Io {
            path: path.into(),
            source,
        }
    }
}
