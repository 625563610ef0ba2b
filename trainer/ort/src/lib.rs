//! slowfast-ort: finding and loading the ONNX Runtime shared library for ort (`load-dynamic`),
//! which the sync server ranks with and the export checks compare against.
//!
//! ort panics if it has to guess where the library is, so [`init`] resolves it first:
//! `ORT_DYLIB_PATH` when set, else the pinned release fetched once into the user cache
//! ([`fetch`]). A library that cannot be had is an [`Unavailable`] that says why.

pub mod fetch;

use std::path::PathBuf;
use std::sync::OnceLock;

/// ONNX Runtime could not be found, fetched or loaded; the message says why and what to set.
#[derive(Clone, Debug, thiserror::Error)]
#[error("onnxruntime: {0}")]
pub struct Unavailable(pub String);

/// This crate's result type.
pub type Result<T, E = Unavailable> = std::result::Result<T, E>;

/// The library's path and the process-wide environment, which must stay alive (ort keeps only
/// a weak reference to it).
type Loaded = (PathBuf, ort::environment::Environment);

static LOADED: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// Loads ONNX Runtime once per process and returns the library's path.
pub fn init() -> Result<PathBuf> {
    LOADED
        .get_or_init(|| {
            let path = locate()?;
            let env = ort::init_from(&path)
                .map_err(|e| format!("cannot load {}: {e}", path.display()))?
                .with_name("slowfast")
                .build()
                .map_err(|e| format!("cannot start ONNX Runtime from {}: {e}", path.display()))?;
            Ok((path, env))
        })
        .as_ref()
        .map(|(path, _)| path.clone())
        .map_err(|e| Unavailable(e.clone()))
}

/// The process-wide ONNX Runtime environment, loading the library first if needed (sessions
/// are built from it).
pub fn environment() -> Result<&'static ort::environment::Environment> {
    init()?;
    match LOADED.get() {
        Some(Ok((_, env))) => Ok(env),
        Some(Err(e)) => Err(Unavailable(e.clone())),
        None => Err(Unavailable("ONNX Runtime was not initialised".into())),
    }
}

/// Where the library is, without loading it: `ORT_DYLIB_PATH` when set, else the pinned
/// release in the user cache, downloaded there first when missing ([`fetch`]).
pub fn locate() -> std::result::Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH").filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "ORT_DYLIB_PATH={} is not a file; point it at libonnxruntime {} or unset it \
                 to use the cached download",
                p.display(),
                fetch::VERSION
            ))
        };
    }
    fetch::fetch().map_err(|e| format!("ONNX Runtime not available: {e}"))
}
