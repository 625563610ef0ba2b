//! Writing a model bundle (docs/architecture.md §5): the three ONNX files, `items.json` and
//! `manifest.json` with the SHA-256, size and input/output contract of every file.

use std::collections::BTreeMap;
use std::path::Path;

use slowfast_core::manifest::{
    io_contract, sha256_hex, FileEntry, ItemTable, Manifest, FAST_ONNX, FORMAT_VERSION, ITEMS_JSON,
    MANIFEST_JSON, NEG_STEP_ONNX, SLOW_ONNX,
};
use slowfast_data::FileError;

use super::models::{fast_onnx, neg_step_onnx, slow_onnx, window_spec};
use super::ops::values;
use crate::checkpoint::{model_version, Vocabulary};
use crate::error::Result;
use crate::models::slowfast::SlowFastNet;

/// Where a bundle's weights came from, for its manifest.
pub struct Provenance {
    /// The training data set.
    pub trained_on: String,
    /// The trainer's source commit.
    pub commit: String,
}

/// `items.json`: the vocabulary's ids and training-phase popularity with the model's `e_i`,
/// what the server retrieves and ranks with.
pub fn item_table(model: &SlowFastNet, items: &Vocabulary) -> Result<ItemTable> {
    Ok(ItemTable {
        ids: items.ids.clone(),
        popularity: items.popularity.clone(),
        embeddings: values(&model.shared.item_emb)?,
        added: items.added,
    })
}

/// Every file of a bundle but the manifest, by name.
pub fn bundle_files(model: &SlowFastNet, items: &Vocabulary) -> Result<BTreeMap<String, Vec<u8>>> {
    let table = item_table(model, items)?;
    let items_json =
        serde_json::to_vec(&table).map_err(slowfast_data::JsonError::of(ITEMS_JSON))?;
    Ok(BTreeMap::from([
        (FAST_ONNX.to_string(), fast_onnx(model)?),
        (NEG_STEP_ONNX.to_string(), neg_step_onnx(model)?),
        (SLOW_ONNX.to_string(), slow_onnx(model)?),
        (ITEMS_JSON.to_string(), items_json),
    ]))
}

/// The manifest of `files` exported from `model`.
pub fn manifest(
    model: &SlowFastNet,
    files: &BTreeMap<String, Vec<u8>>,
    from: &Provenance,
) -> Result<Manifest> {
    let windows = window_spec(model);
    let entries = files
        .iter()
        .map(|(name, bytes)| {
            let (inputs, outputs) =
                io_contract(name, model.config.dim, &windows).unwrap_or_default();
            let entry = FileEntry {
                sha256: sha256_hex(bytes),
                bytes: bytes.len() as u64,
                inputs,
                outputs,
            };
            (name.clone(), entry)
        })
        .collect();
    Ok(Manifest {
        format_version: FORMAT_VERSION,
        model_version: model_version(model)?,
        dim: model.config.dim,
        windows,
        files: entries,
        trained_on: from.trained_on.clone(),
        commit: from.commit.clone(),
        created_at: now_rfc3339(),
    })
}

/// Exports `model` as a bundle in `dir` (created if needed); the manifest is written last.
pub fn write_bundle(
    model: &SlowFastNet,
    items: &Vocabulary,
    from: &Provenance,
    dir: &Path,
) -> Result<Manifest> {
    let files = bundle_files(model, items)?;
    let manifest = manifest(model, &files, from)?;
    std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
    for (name, bytes) in &files {
        let path = dir.join(name);
        std::fs::write(&path, bytes).map_err(|e| FileError::new(&path, e))?;
    }
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(slowfast_data::JsonError::of(MANIFEST_JSON))?;
    let path = dir.join(MANIFEST_JSON);
    std::fs::write(&path, json).map_err(|e| FileError::new(&path, e))?;
    Ok(manifest)
}

fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    chrono::DateTime::from_timestamp(secs as i64, 0)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default()
}
