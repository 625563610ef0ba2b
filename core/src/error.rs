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
    /// The on-device store (SQLite) failed a read or write.
    #[error("store: {0}")]
    Store(String),
    /// The on-device store is damaged beyond what the runtime repairs (failed integrity check,
    /// rows that do not decode, a schema newer than this build). Nothing was changed; the app
    /// may move the data directory aside and open afresh.
    #[error("store corrupt: {0}")]
    StoreCorrupt(String),
    /// No model bundle is installed yet; recording still works, scoring waits for one.
    #[error("no model bundle installed")]
    NoModel,
    /// A feed computed by a model version other than the installed one.
    #[error("feed is for model {feed}, the device runs {device}; update the model first")]
    VersionMismatch { feed: String, device: String },
    /// The server could not be reached or the connection failed (timeout, DNS, TLS, reset).
    #[error("network: {0}")]
    Network(String),
    /// The configuration cannot work: a server URL that does not parse as `http(s)://…`, a
    /// token minted for another user than the engine's. Retrying does not help.
    #[error("configuration: {0}")]
    Config(String),
    /// Another engine holds this data directory (in this process or another). One engine per
    /// directory: close the other one first.
    #[error("the data directory {dir} is in use by another engine; close that one first")]
    InUse { dir: String },
    /// The call was cancelled by its caller ([`crate::Cancel`]) before it finished. What it
    /// had done stays done; a batch in flight is resent with its key by the next sync.
    #[error("cancelled")]
    Cancelled,
    /// The server refused the token (401): missing, malformed, expired or signed with another
    /// secret. Set a fresh one ([`crate::SlowFast::set_token`]).
    #[error("unauthorized (401): {message}")]
    Unauthorized { message: String },
    /// The server understood the token and refused the request for its user (403).
    #[error("forbidden (403): {message}")]
    Forbidden { message: String },
    /// The server answered with another error status; `code` and `message` come from its
    /// `ErrorBody` when it sent one.
    #[error("server rejected the request ({status} {code}): {message}")]
    Server {
        status: u16,
        code: String,
        message: String,
    },
    /// The server's rate limit refused the request (429). `retry_after_ms` comes from its
    /// `Retry-After` (0 when it sent none); threshold-driven syncs wait at least that long.
    #[error("rate limited by the server; retry in {retry_after_ms} ms: {message}")]
    RateLimited {
        retry_after_ms: u64,
        message: String,
    },
    /// The server holds this batch's idempotency key with other content (409
    /// `idempotency_conflict`) and stored nothing of it. The runtime never reuses a key for
    /// other content, so this points at a server that lost or mixed up its data; the batch is
    /// given a new key and sent again by the next sync.
    #[error("upload conflict: {message}")]
    Conflict { message: String },
}

impl SlowFastError {
    /// Whether retrying the same request later may succeed: network failures, 5xx, 408, 429.
    pub fn is_transient(&self) -> bool {
        match self {
            SlowFastError::Network(_) | SlowFastError::RateLimited { .. } => true,
            SlowFastError::Server { status, .. } => *status >= 500 || matches!(status, 408 | 429),
            _ => false,
        }
    }

    /// The server's `Retry-After` of a rate-limited request, in milliseconds (0 for any other
    /// error): the least a retry waits.
    pub fn retry_after_ms(&self) -> u64 {
        match self {
            SlowFastError::RateLimited { retry_after_ms, .. } => *retry_after_ms,
            _ => 0,
        }
    }

    /// The HTTP status the server answered with, for the errors that carry one.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            SlowFastError::Unauthorized { .. } => Some(401),
            SlowFastError::Forbidden { .. } => Some(403),
            SlowFastError::Conflict { .. } => Some(409),
            SlowFastError::RateLimited { .. } => Some(429),
            SlowFastError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }
}

impl From<rusqlite::Error> for SlowFastError {
    fn from(e: rusqlite::Error) -> Self {
        match e {
            rusqlite::Error::SqliteFailure(f, _)
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase
                ) =>
            {
                SlowFastError::StoreCorrupt(e.to_string())
            }
            rusqlite::Error::FromSqlConversionFailure(..)
            | rusqlite::Error::InvalidColumnType(..) => SlowFastError::StoreCorrupt(e.to_string()),
            _ => SlowFastError::Store(e.to_string()),
        }
    }
}

pub type Result<T, E = SlowFastError> = std::result::Result<T, E>;
