//! What a `slowfast` command reports: a flag it cannot use, or the error of the layer that
//! failed, kept whole; `main` prints it as one line.

/// Every failure of a `slowfast` command.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A flag's value, or a combination of flags, is not usable.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The command's input holds nothing it can work on.
    #[error("data: {0}")]
    Unusable(String),
    /// A file the command writes could not be written.
    #[error(transparent)]
    Io(#[from] slowfast_data::FileError),
    /// The command's JSON output could not be written.
    #[error(transparent)]
    Json(#[from] slowfast_data::JsonError),
    #[error(transparent)]
    Data(#[from] slowfast_data::DataError),
    #[error(transparent)]
    Trainer(#[from] slowfast_trainer::TrainerError),
    #[error(transparent)]
    Server(#[from] slowfast_server::ServerError),
    #[error(transparent)]
    Online(#[from] slowfast_online::OnlineError),
    #[error(transparent)]
    Core(#[from] slowfast_core::SlowFastError),
}

/// A command's result.
pub type Result<T, E = CliError> = std::result::Result<T, E>;
