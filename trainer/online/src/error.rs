//! The online loop's errors: its own, and those of the layers it drives, each kept whole.

/// Every failure of the nightly round and the simulated A/B test.
#[derive(Debug, thiserror::Error)]
pub enum OnlineError {
    /// A file could not be read or written.
    #[error(transparent)]
    Io(#[from] slowfast_data::FileError),
    /// A setting is outside its domain.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The data is well-formed but unusable for the round (too few users, no uploads).
    #[error("data: {0}")]
    Unusable(String),
    /// A report could not be serialised.
    #[error(transparent)]
    Json(#[from] slowfast_data::JsonError),
    /// A stage of `slowfast demo` failed; `source` says why.
    #[error("demo stage `{stage}` failed: {source}")]
    Stage {
        stage: String,
        #[source]
        source: Box<OnlineError>,
    },
    /// Reading or preparing the events failed.
    #[error(transparent)]
    Data(#[from] slowfast_data::DataError),
    /// Training, export or evaluation failed.
    #[error(transparent)]
    Trainer(#[from] slowfast_trainer::TrainerError),
    /// The sync server or its store failed.
    #[error(transparent)]
    Server(#[from] slowfast_server::ServerError),
    /// A phone's runtime refused something (a bundle, a feed) or failed.
    #[error(transparent)]
    Core(#[from] slowfast_core::SlowFastError),
}

/// The online loop's result type.
pub type Result<T, E = OnlineError> = std::result::Result<T, E>;
