//! The sync server's errors, each keeping its source.

/// Every failure of the sync server: its configuration, its files, the database, the slow
/// model, and the requests it refuses.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A file of the server (the bundle, a secret, a benchmark's output) could not be read
    /// or written.
    #[error(transparent)]
    Io(#[from] slowfast_data::FileError),
    /// A setting is outside its domain (a secret, a rate limit, a benchmark's load).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// JSON could not be read or written.
    #[error(transparent)]
    Json(#[from] slowfast_data::JsonError),
    /// The database refused or failed a query.
    #[error("store: {what}: {source}")]
    Database {
        what: String,
        #[source]
        source: sqlx::Error,
    },
    /// The database's schema could not be brought up to date.
    #[error("store: migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database holds or returned what the server never writes (an unknown event kind,
    /// a count out of range, a stored upload that is not there).
    #[error("store: {0}")]
    Corrupt(String),
    /// A group of uploads could not be written: each upload of the group gets this (the
    /// database's error, which names what failed, once per upload).
    #[error("store: {what}: {reason}")]
    GroupWrite { what: String, reason: String },
    /// The store's writer task stopped: the server is shutting down.
    #[error("store: the store's writer has stopped")]
    WriterStopped,
    /// An upload reused an idempotency key the store holds with other content: nothing of it
    /// was stored.
    #[error("idempotency key {key:?} was used for an upload with other content")]
    KeyConflict { key: String },
    /// A bearer token is missing, malformed, forged or expired.
    #[error("token: {0}")]
    Token(String),
    /// The slow model could not be run by ONNX Runtime.
    #[error("onnxruntime: {0}")]
    Ranker(String),
    /// ONNX Runtime could not be found, fetched or loaded.
    #[error(transparent)]
    OrtUnavailable(#[from] slowfast_ort::Unavailable),
    /// The bundle or a model input was refused by the device runtime's checks.
    #[error(transparent)]
    Core(#[from] slowfast_core::SlowFastError),
    /// The server's task failed (it panicked or was cancelled).
    #[error("server task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// The server's result type.
pub type Result<T, E = ServerError> = std::result::Result<T, E>;
