//! Finding and loading the ONNX Runtime shared library for ort (`load-dynamic`).
//!
//! ort panics if it has to guess where the library is, so [`init`] resolves it first:
//! `ORT_DYLIB_PATH` when set, else the `onnxruntime` wheel of the `python3` on `PATH`
//! (`site-packages/onnxruntime/capi/libonnxruntime.so.*`). A missing library is a
//! [`TrainerError::Ort`] that says how to install it.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::error::{Result, TrainerError};

/// The wheel this project is tested against (`pip install onnxruntime==1.31.1`).
pub const WHEEL: &str = "onnxruntime==1.31.1";

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
        .map_err(|e| TrainerError::Ort(e.clone()))
}

/// The process-wide environment that sessions are built in (loads the library first).
pub fn environment() -> Result<&'static ort::environment::Environment> {
    init()?;
    match LOADED.get() {
        Some(Ok((_, env))) => Ok(env),
        _ => Err(TrainerError::Ort("ONNX Runtime is not loaded".into())),
    }
}

/// Where the library is, without loading it.
pub fn locate() -> std::result::Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("ORT_DYLIB_PATH") {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(format!(
                "ORT_DYLIB_PATH={} is not a file; point it at libonnxruntime.so \
                 (e.g. from `pip install {WHEEL}`)",
                p.display()
            ))
        };
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import onnxruntime, os; print(os.path.dirname(onnxruntime.__file__))",
        ])
        .output();
    let dir = match out {
        Ok(o) if o.status.success() => PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()),
        _ => {
            return Err(format!(
                "ONNX Runtime not found: set ORT_DYLIB_PATH to libonnxruntime.so, or run \
                 `pip install {WHEEL}`"
            ))
        }
    };
    find_in(&dir.join("capi")).ok_or_else(|| {
        format!(
            "no libonnxruntime.so* in {}; reinstall with `pip install {WHEEL}` or set \
             ORT_DYLIB_PATH",
            dir.display()
        )
    })
}

fn find_in(dir: &Path) -> Option<PathBuf> {
    let mut libs: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libonnxruntime.so") || n == "libonnxruntime.dylib")
        })
        .collect();
    libs.sort();
    libs.pop()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_versioned_library_in_a_wheel_layout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("libonnxruntime_providers_shared.so"), b"").unwrap();
        assert_eq!(find_in(dir.path()), None);
        std::fs::write(dir.path().join("libonnxruntime.so.1.31.1"), b"").unwrap();
        assert_eq!(
            find_in(dir.path()).unwrap(),
            dir.path().join("libonnxruntime.so.1.31.1")
        );
    }
}
