//! The error the bindings throw: one variant per [`slowfast_core::SlowFastError`] variant plus
//! [`SlowFastError::Internal`] for a Rust panic caught at the boundary. Flat, so Kotlin and Swift
//! receive the core error's full Display text as the exception message.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use slowfast_core::SlowFastError as CoreError;

/// Why a call into the slowfast SDK failed (Kotlin: `SlowFastException`).
#[derive(Debug, thiserror::Error, uniffi::Error)]
#[uniffi(flat_error)]
pub enum SlowFastError {
    /// An argument was unusable (empty item id, non-finite float, wrong dimension, …).
    #[error("{0}")]
    InvalidArgument(String),
    /// A model bundle was refused: a missing file, a wrong hash or shape, a newer format.
    #[error("{0}")]
    Bundle(String),
    /// The on-device model (tract) failed to load or run.
    #[error("{0}")]
    Model(String),
    /// A file-system error in the engine's data directory.
    #[error("{0}")]
    Io(String),
    /// JSON that could not be read or written.
    #[error("{0}")]
    Json(String),
    /// The on-device store (SQLite) failed a read or write.
    #[error("{0}")]
    Store(String),
    /// The on-device store is damaged beyond repair; nothing was changed. The app may move
    /// the data directory aside and open afresh.
    #[error("{0}")]
    StoreCorrupt(String),
    /// No model bundle is installed yet; recording works, scoring waits for one.
    #[error("{0}")]
    NoModel(String),
    /// The feed was computed by another model version than the installed one; call
    /// `update_model`.
    #[error("{0}")]
    VersionMismatch(String),
    /// The server could not be reached (timeout, DNS, TLS, reset). Safe to retry later.
    #[error("{0}")]
    Network(String),
    /// The server answered with an error status; the message names status, code and reason.
    #[error("{0}")]
    Server(String),
    /// The server's rate limit refused the request (429). The SDK's threshold-driven syncs
    /// wait at least the server's `Retry-After`; the message says how long.
    #[error("{0}")]
    RateLimited(String),
    /// The server holds an upload's idempotency key with other content and stored nothing of
    /// it; the SDK sends the batch again under a new key at the next sync.
    #[error("{0}")]
    Conflict(String),
    /// The engine was closed and cannot be used any more. Raised by the Kotlin and Swift
    /// layers, which own the engine's lifetime.
    #[error("{0}")]
    Closed(String),
    /// A bug: the SDK panicked inside this call. The panic was caught at the boundary; the
    /// engine may refuse further calls.
    #[error("internal error (please report): {0}")]
    Internal(String),
}

impl From<CoreError> for SlowFastError {
    /// Exhaustive on purpose: a new core variant does not compile until it is mapped here.
    fn from(e: CoreError) -> Self {
        let text = e.to_string();
        match e {
            CoreError::InvalidArgument(_) => SlowFastError::InvalidArgument(text),
            CoreError::Bundle { .. } => SlowFastError::Bundle(text),
            CoreError::Model(_) => SlowFastError::Model(text),
            CoreError::Io(_) => SlowFastError::Io(text),
            CoreError::Json(_) => SlowFastError::Json(text),
            CoreError::Store(_) => SlowFastError::Store(text),
            CoreError::StoreCorrupt(_) => SlowFastError::StoreCorrupt(text),
            CoreError::NoModel => SlowFastError::NoModel(text),
            CoreError::VersionMismatch { .. } => SlowFastError::VersionMismatch(text),
            CoreError::Network(_) => SlowFastError::Network(text),
            CoreError::Server { .. } => SlowFastError::Server(text),
            CoreError::RateLimited { .. } => SlowFastError::RateLimited(text),
            CoreError::Conflict { .. } => SlowFastError::Conflict(text),
        }
    }
}

/// Runs one exported call: maps the core error and turns a panic into
/// [`SlowFastError::Internal`], so no panic unwinds into the foreign caller.
pub(crate) fn guard<T>(
    call: impl FnOnce() -> slowfast_core::Result<T>,
) -> Result<T, SlowFastError> {
    match catch_unwind(AssertUnwindSafe(call)) {
        Ok(result) => result.map_err(SlowFastError::from),
        Err(payload) => Err(SlowFastError::Internal(panic_text(payload.as_ref()))),
    }
}

fn panic_text(payload: &(dyn Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "panic with a non-text payload".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn panic_inside_a_call_becomes_internal_error() {
        let r: Result<(), _> = guard(|| panic!("index 7 out of range"));
        match r {
            Err(SlowFastError::Internal(m)) => assert!(m.contains("index 7 out of range"), "{m}"),
            other => panic!("expected Internal, got {other:?}"),
        }
    }

    #[test]
    fn core_errors_keep_their_variant_and_full_text() {
        let e = SlowFastError::from(CoreError::Bundle {
            file: "fast.onnx".into(),
            reason: "sha256 mismatch".into(),
        });
        match &e {
            SlowFastError::Bundle(m) => {
                assert_eq!(m, "bundle refused (fast.onnx): sha256 mismatch")
            }
            other => panic!("expected Bundle, got {other:?}"),
        }
        let r = guard::<()>(|| Err(CoreError::InvalidArgument("empty item id".into())));
        assert!(
            matches!(r, Err(SlowFastError::InvalidArgument(m)) if m == "invalid argument: empty item id")
        );
    }
}
