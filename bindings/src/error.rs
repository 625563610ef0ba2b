//! The error the bindings throw: one variant per [`slowfast_core::SlowFastError`] variant plus
//! [`SlowFastError::Closed`] and [`SlowFastError::Internal`] (a Rust panic caught at the
//! boundary). Every variant carries `text`, the core error's full message; the variants an app
//! branches on carry their fields (HTTP status, `Retry-After`, the versions of a mismatch).
//! Integers are signed, as Kotlin and Java count.

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use slowfast_core::SlowFastError as CoreError;

/// Why a call into the slowfast SDK failed.
#[derive(Debug, thiserror::Error, uniffi::Error)]
pub enum SlowFastError {
    /// An argument was unusable (empty item id, non-finite float, wrong dimension, …).
    #[error("{text}")]
    InvalidArgument { text: String },
    /// A model bundle was refused: a missing file, a wrong hash or shape, a newer format.
    /// `file` names the part of the bundle at fault.
    #[error("{text}")]
    Bundle { file: String, text: String },
    /// The on-device model failed to load or run.
    #[error("{text}")]
    Model { text: String },
    /// A file-system error in the engine's data directory.
    #[error("{text}")]
    Io { text: String },
    /// JSON that could not be read or written.
    #[error("{text}")]
    Json { text: String },
    /// The on-device store (SQLite) failed a read or write.
    #[error("{text}")]
    Store { text: String },
    /// The on-device store is damaged beyond repair; nothing was changed. The app may move
    /// the data directory aside and open afresh.
    #[error("{text}")]
    StoreCorrupt { text: String },
    /// No model bundle is installed yet; recording works, scoring waits for one.
    #[error("{text}")]
    NoModel { text: String },
    /// The feed was computed by another model version than the installed one: update the
    /// model (the first launch after a server retrain meets this), then fetch again.
    #[error("{text}")]
    VersionMismatch {
        feed_version: String,
        device_version: String,
        text: String,
    },
    /// The configuration cannot work (a server URL that does not parse, a token for another
    /// user). Retrying does not help.
    #[error("{text}")]
    InvalidConfig { text: String },
    /// Another engine holds this data directory; close it first.
    #[error("{text}")]
    InUse { dir: String, text: String },
    /// The caller cancelled the call.
    #[error("{text}")]
    Cancelled { text: String },
    /// The server could not be reached (timeout, DNS, TLS, reset). Safe to retry later.
    #[error("{text}")]
    Network { text: String },
    /// The server refused the token (401): set a fresh one.
    #[error("{text}")]
    Unauthorized { text: String },
    /// The server refused the request for this token's user (403).
    #[error("{text}")]
    Forbidden { text: String },
    /// The server's rate limit refused the request (429); `retry_after_ms` is its
    /// `Retry-After` (0 when it sent none). Threshold-driven syncs wait at least that long.
    #[error("{text}")]
    RateLimited { retry_after_ms: i64, text: String },
    /// The server holds an upload's idempotency key with other content and stored nothing of
    /// it (409); the SDK sends the batch again under a new key at the next sync.
    #[error("{text}")]
    Conflict { text: String },
    /// The server answered with another error status; `code` is its error code.
    #[error("{text}")]
    Server {
        status: i32,
        code: String,
        text: String,
    },
    /// The engine was closed and cannot be used any more.
    #[error("{text}")]
    Closed { text: String },
    /// A bug: the SDK panicked inside this call. The panic was caught at the boundary; the
    /// engine may refuse further calls.
    #[error("{text}")]
    Internal { text: String },
}

impl From<CoreError> for SlowFastError {
    /// Exhaustive on purpose: a new core variant does not compile until it is mapped here.
    fn from(e: CoreError) -> Self {
        let text = e.to_string();
        match e {
            CoreError::InvalidArgument(_) => SlowFastError::InvalidArgument { text },
            CoreError::Bundle { file, .. } => SlowFastError::Bundle { file, text },
            CoreError::Model(_) => SlowFastError::Model { text },
            CoreError::Io(_) => SlowFastError::Io { text },
            CoreError::Json(_) => SlowFastError::Json { text },
            CoreError::Store(_) => SlowFastError::Store { text },
            CoreError::StoreCorrupt(_) => SlowFastError::StoreCorrupt { text },
            CoreError::NoModel => SlowFastError::NoModel { text },
            CoreError::VersionMismatch { feed, device } => SlowFastError::VersionMismatch {
                feed_version: feed,
                device_version: device,
                text,
            },
            CoreError::Config(_) => SlowFastError::InvalidConfig { text },
            CoreError::InUse { dir } => SlowFastError::InUse { dir, text },
            CoreError::Cancelled => SlowFastError::Cancelled { text },
            CoreError::Network(_) => SlowFastError::Network { text },
            CoreError::Unauthorized { .. } => SlowFastError::Unauthorized { text },
            CoreError::Forbidden { .. } => SlowFastError::Forbidden { text },
            CoreError::RateLimited { retry_after_ms, .. } => SlowFastError::RateLimited {
                retry_after_ms: i64::try_from(retry_after_ms).unwrap_or(i64::MAX),
                text,
            },
            CoreError::Conflict { .. } => SlowFastError::Conflict { text },
            CoreError::Server { status, code, .. } => SlowFastError::Server {
                status: i32::from(status),
                code,
                text,
            },
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
        Err(payload) => Err(SlowFastError::Internal {
            text: format!(
                "internal error (please report): {}",
                panic_text(payload.as_ref())
            ),
        }),
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
            Err(SlowFastError::Internal { text }) => {
                assert!(text.contains("index 7 out of range"), "{text}")
            }
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
            SlowFastError::Bundle { file, text } => {
                assert_eq!(file, "fast.onnx");
                assert_eq!(text, "bundle refused (fast.onnx): sha256 mismatch")
            }
            other => panic!("expected Bundle, got {other:?}"),
        }
        let r = guard::<()>(|| Err(CoreError::InvalidArgument("empty item id".into())));
        assert!(
            matches!(r, Err(SlowFastError::InvalidArgument { text }) if text == "invalid argument: empty item id")
        );
        let e = SlowFastError::from(CoreError::Server {
            status: 503,
            code: "unavailable".into(),
            message: "draining".into(),
        });
        assert!(
            matches!(&e, SlowFastError::Server { status: 503, code, .. } if code == "unavailable"),
            "{e:?}"
        );
        let e = SlowFastError::from(CoreError::RateLimited {
            retry_after_ms: 1_500,
            message: "slow down".into(),
        });
        assert!(
            matches!(
                e,
                SlowFastError::RateLimited {
                    retry_after_ms: 1_500,
                    ..
                }
            ),
            "{e:?}"
        );
    }
}
