//! The model bundle's manifest (docs/architecture.md §5): the device contract between the trainer that
//! exports a bundle (`slowfast export`) and everything that runs it (the device with tract, the
//! server with ort, `slowfast bundle verify`).
//!
//! A bundle is a directory:
//!
//! | file | runs on | what |
//! |---|---|---|
//! | `manifest.json` | — | this type, as JSON |
//! | [`FAST_ONNX`] | device (tract) | the S2F fast model, eq. 7–8 |
//! | [`NEG_STEP_ONNX`] | device (tract) | one `GRU_n` cell step, the negative-memory update of eq. 5 |
//! | [`SLOW_ONNX`] | server (ort) | the slow model with F2S, eq. 1–2 and 5–6 |
//! | [`ITEMS_JSON`] | server | raw item ids, popularity and the item embedding table |
//!
//! # ONNX input/output contract (opset ≥ 17, float32, `d` = [`Manifest::dim`])
//!
//! `fast.onnx` — one user's real-time windows against `N` candidates (dynamic axis `N`):
//! - `clicks` `[W_c, d]`: embeddings of the most recent real-time clicks, oldest first,
//!   right-padded with zeros to `W_c` = [`WindowSpec::clicks`]; `clicks_len` `[1]` (int64) the
//!   number of valid rows, `0 ..= W_c`. Padding never changes a score.
//! - `exposures` `[W_e, d]` and `exposures_len` `[1]` (int64): the same for exposures.
//! - `e_i`, `r_t`, `r_n`, each `[N, d]`: per candidate, its embedding and the slow component's
//!   priors (eq. 7).
//! - output `logit` `[N]`: the pre-sigmoid score `y_F` of eq. 8.
//!
//! `neg_step.onnx` — `GRU_n`'s cell, batched over `B` (dynamic):
//! - `state` `[B, d]` (`r̂2`, zeros before the first exposure), `e` `[B, d]` the exposed item's
//!   embedding; output `next_state` `[B, d]`.
//!
//! `slow.onnx` — one user's slow-phase history against `N` candidates:
//! - `history` `[W_s, d]` + `history_len` `[1]` (int64) as above, with `W_s` =
//!   [`WindowSpec::slow_history`]; `neg_memory` `[1, d]` (`r̂2`); `e_i` `[N, d]`.
//! - outputs `logit` `[N]` (eq. 6), `r_t` `[N, d]` (eq. 1) and `r_n` `[N, d]` (eq. 5), the
//!   priors the server sends to the device.
//!
//! `items.json` — [`ItemTable`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SlowFastError};

/// The manifest format this build reads and writes. A bundle with a newer one is refused.
pub const FORMAT_VERSION: u32 = 1;
pub const MANIFEST_JSON: &str = "manifest.json";
pub const FAST_ONNX: &str = "fast.onnx";
pub const NEG_STEP_ONNX: &str = "neg_step.onnx";
pub const SLOW_ONNX: &str = "slow.onnx";
pub const ITEMS_JSON: &str = "items.json";
/// The files a device downloads and verifies.
pub const DEVICE_FILES: [&str; 2] = [FAST_ONNX, NEG_STEP_ONNX];

/// Window lengths the models were exported with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSpec {
    /// `W_s`: slow-phase click history read by DIN (eq. 1).
    pub slow_history: usize,
    /// `W_c`: real-time clicks `H^F_p` (eq. 3).
    pub clicks: usize,
    /// `W_e`: real-time exposures `H^F_n` (eq. 3).
    pub exposures: usize,
}

/// One axis of a tensor: a fixed size or a named dynamic axis (`"N"`, `"B"`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Dim {
    Fixed(usize),
    Dynamic(String),
}

/// The name, element type and shape of one model input or output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TensorSpec {
    pub name: String,
    /// `"float32"` or `"int64"`.
    pub dtype: String,
    pub shape: Vec<Dim>,
}

/// One file of the bundle.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Lower-case hex SHA-256 of the file's bytes.
    pub sha256: String,
    pub bytes: u64,
    /// Empty for files that are not models.
    #[serde(default)]
    pub inputs: Vec<TensorSpec>,
    #[serde(default)]
    pub outputs: Vec<TensorSpec>,
}

/// `manifest.json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    /// Changes whenever the weights change; devices compare it to decide on an update and
    /// tag uploaded `r̂2` with it.
    pub model_version: String,
    /// Embedding size `d`.
    pub dim: usize,
    pub windows: WindowSpec,
    /// File name → entry, for every file of the bundle but the manifest.
    pub files: BTreeMap<String, FileEntry>,
    /// The data set the weights were trained on.
    pub trained_on: String,
    /// The source commit of the trainer that produced the bundle.
    pub commit: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

impl Manifest {
    /// Parses `manifest.json` and checks what can be checked without the files: the format
    /// version, a non-empty model version, a positive dimension and window lengths.
    pub fn from_json(bytes: &[u8]) -> Result<Manifest> {
        let m: Manifest = serde_json::from_slice(bytes).map_err(|e| refuse(MANIFEST_JSON, e))?;
        if m.format_version > FORMAT_VERSION {
            return Err(refuse(
                MANIFEST_JSON,
                format!(
                    "format version {} is newer than this build reads ({FORMAT_VERSION}); \
                     update the SDK",
                    m.format_version
                ),
            ));
        }
        if m.model_version.trim().is_empty() {
            return Err(refuse(MANIFEST_JSON, "empty model_version"));
        }
        if m.dim == 0 || m.windows.clicks == 0 || m.windows.exposures == 0 {
            return Err(refuse(
                MANIFEST_JSON,
                "dim and window lengths must be positive",
            ));
        }
        Ok(m)
    }

    /// The entry of `file`, or a refusal naming it.
    pub fn file(&self, file: &str) -> Result<&FileEntry> {
        self.files
            .get(file)
            .ok_or_else(|| refuse(file, "not listed in manifest.json"))
    }

    /// Checks `bytes` against the size and SHA-256 the manifest lists for `file`.
    pub fn verify_file(&self, file: &str, bytes: &[u8]) -> Result<()> {
        let entry = self.file(file)?;
        if entry.bytes != bytes.len() as u64 {
            return Err(refuse(
                file,
                format!("{} bytes, manifest says {}", bytes.len(), entry.bytes),
            ));
        }
        let got = sha256_hex(bytes);
        if got != entry.sha256 {
            return Err(refuse(
                file,
                format!(
                    "SHA-256 {got} does not match the manifest's {}",
                    entry.sha256
                ),
            ));
        }
        Ok(())
    }
}

impl TensorSpec {
    fn new(name: &str, dtype: &str, shape: Vec<Dim>) -> TensorSpec {
        TensorSpec {
            name: name.into(),
            dtype: dtype.into(),
            shape,
        }
    }
}

/// The inputs and outputs `file` must declare for embedding size `dim` and `windows`: the
/// contract of the module documentation, which the exporter writes and every loader checks.
/// `None` for files that are not models.
pub fn io_contract(
    file: &str,
    dim: usize,
    windows: &WindowSpec,
) -> Option<(Vec<TensorSpec>, Vec<TensorSpec>)> {
    let f32 = |name: &str, shape: Vec<Dim>| TensorSpec::new(name, "float32", shape);
    let len = |name: &str| TensorSpec::new(name, "int64", vec![Dim::Fixed(1)]);
    let rows = |name: &str, axis: &str| f32(name, vec![Dim::Dynamic(axis.into()), Dim::Fixed(dim)]);
    let window = |name: &str, w: usize| f32(name, vec![Dim::Fixed(w), Dim::Fixed(dim)]);
    match file {
        FAST_ONNX => Some((
            vec![
                window("clicks", windows.clicks),
                len("clicks_len"),
                window("exposures", windows.exposures),
                len("exposures_len"),
                rows("e_i", "N"),
                rows("r_t", "N"),
                rows("r_n", "N"),
            ],
            vec![f32("logit", vec![Dim::Dynamic("N".into())])],
        )),
        NEG_STEP_ONNX => Some((
            vec![rows("state", "B"), rows("e", "B")],
            vec![rows("next_state", "B")],
        )),
        SLOW_ONNX => Some((
            vec![
                window("history", windows.slow_history),
                len("history_len"),
                f32("neg_memory", vec![Dim::Fixed(1), Dim::Fixed(dim)]),
                rows("e_i", "N"),
            ],
            vec![
                f32("logit", vec![Dim::Dynamic("N".into())]),
                rows("r_t", "N"),
                rows("r_n", "N"),
            ],
        )),
        _ => None,
    }
}

/// `items.json`: the item vocabulary the bundle was trained on (server side).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ItemTable {
    /// Raw item ids; the position is the item's index.
    pub ids: Vec<String>,
    /// Clicks per item in the training data (for popularity retrieval).
    pub popularity: Vec<u32>,
    /// `e_i` per item, row-major `[ids.len(), dim]`.
    pub embeddings: Vec<f32>,
    /// How many of the last ids the training round that made the bundle added to the
    /// vocabulary (new items, appended last; 0 when it added none). A bundle without the field
    /// added none.
    #[serde(default)]
    pub added: usize,
}

/// Lower-case hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

fn refuse(file: &str, reason: impl std::fmt::Display) -> SlowFastError {
    SlowFastError::Bundle {
        file: file.to_string(),
        reason: reason.to_string(),
    }
}

/// The bundle the core's tests and benchmarks run on (`core/tests/data/bundle`), when the
/// source tree is at hand.
pub fn fixture_bundle() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bundle")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        let mut files = BTreeMap::new();
        files.insert(
            FAST_ONNX.to_string(),
            FileEntry {
                sha256: sha256_hex(b"model"),
                bytes: 5,
                inputs: vec![TensorSpec {
                    name: "e_i".into(),
                    dtype: "float32".into(),
                    shape: vec![Dim::Dynamic("N".into()), Dim::Fixed(32)],
                }],
                outputs: vec![],
            },
        );
        Manifest {
            format_version: FORMAT_VERSION,
            model_version: "v1".into(),
            dim: 32,
            windows: WindowSpec {
                slow_history: 50,
                clicks: 20,
                exposures: 20,
            },
            files,
            trained_on: "synthetic".into(),
            commit: "abc".into(),
            created_at: "2026-11-23T00:00:00Z".into(),
        }
    }

    #[test]
    fn round_trips_and_verifies_hashes() {
        let m = manifest();
        let json = serde_json::to_vec(&m).unwrap();
        assert!(String::from_utf8_lossy(&json).contains(r#"["N",32]"#));
        let back = Manifest::from_json(&json).unwrap();
        assert_eq!(back, m);
        back.verify_file(FAST_ONNX, b"model").unwrap();
        let err = back
            .verify_file(FAST_ONNX, b"modeL")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("fast.onnx") && err.contains("SHA-256"),
            "{err}"
        );
        let err = back
            .verify_file(FAST_ONNX, b"mode")
            .unwrap_err()
            .to_string();
        assert!(err.contains("4 bytes"), "{err}");
        let err = back.verify_file(SLOW_ONNX, b"x").unwrap_err().to_string();
        assert!(
            err.contains("slow.onnx") && err.contains("not listed"),
            "{err}"
        );
    }

    #[test]
    fn refuses_newer_format_and_garbage() {
        let mut m = manifest();
        m.format_version = FORMAT_VERSION + 1;
        let err = Manifest::from_json(&serde_json::to_vec(&m).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("newer"), "{err}");
        assert!(Manifest::from_json(b"{not json").is_err());
        let mut m = manifest();
        m.dim = 0;
        assert!(Manifest::from_json(&serde_json::to_vec(&m).unwrap()).is_err());
    }
}
