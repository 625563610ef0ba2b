//! `slowfast bundle verify`: a bundle's hashes, names and shapes, then its parity across
//! candle (given the checkpoint it came from), ONNX Runtime and tract.

use std::collections::BTreeMap;
use std::path::Path;

use slowfast_core::manifest::{
    ItemTable, Manifest, FAST_ONNX, ITEMS_JSON, MANIFEST_JSON, NEG_STEP_ONNX, SLOW_ONNX,
};
use slowfast_core::model::{verify_model, DeviceModel};
use slowfast_core::SlowFastError;

use super::parity::{data_cases, random_cases, Report, Runtimes};
use crate::error::{Result, TrainerError};
use crate::models::slowfast::SlowFastNet;

/// A bundle read from disk and verified: the manifest and every file by name.
pub struct VerifiedBundle {
    pub manifest: Manifest,
    pub files: BTreeMap<String, Vec<u8>>,
    pub items: ItemTable,
}

fn refuse(file: &str, reason: impl std::fmt::Display) -> TrainerError {
    TrainerError::Core(SlowFastError::Bundle {
        file: file.into(),
        reason: reason.to_string(),
    })
}

/// Reads `dir` and checks every file against the manifest: sizes, SHA-256, input/output
/// names and shapes, finite weights; the device files also load in the device runtime.
pub fn read_verified(dir: &Path) -> Result<VerifiedBundle> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| refuse(name, format!("cannot read: {e}")))
    };
    let manifest = Manifest::from_json(&read(MANIFEST_JSON)?)?;
    let mut files = BTreeMap::new();
    for name in [FAST_ONNX, NEG_STEP_ONNX, SLOW_ONNX, ITEMS_JSON] {
        files.insert(name.to_string(), read(name)?);
    }
    for name in [FAST_ONNX, NEG_STEP_ONNX, SLOW_ONNX] {
        verify_model(&manifest, name, &files)?;
    }
    let items_bytes = &files[ITEMS_JSON];
    manifest.verify_file(ITEMS_JSON, items_bytes)?;
    let items: ItemTable =
        serde_json::from_slice(items_bytes).map_err(|e| refuse(ITEMS_JSON, e))?;
    if items.embeddings.len() != items.ids.len() * manifest.dim
        || items.popularity.len() != items.ids.len()
    {
        return Err(refuse(
            ITEMS_JSON,
            format!(
                "{} ids, {} popularity counts and {} embedding values for d = {}",
                items.ids.len(),
                items.popularity.len(),
                items.embeddings.len(),
                manifest.dim
            ),
        ));
    }
    if let Some(i) = items.embeddings.iter().position(|v| !v.is_finite()) {
        return Err(refuse(
            ITEMS_JSON,
            format!("embedding value {i} is not finite"),
        ));
    }
    DeviceModel::load_files(&read(MANIFEST_JSON)?, &files)?;
    Ok(VerifiedBundle {
        manifest,
        files,
        items,
    })
}

/// Runs the bundle on seeded random inputs and on a batch of its trained item embeddings in
/// ort and tract, and in candle when `model` (the checkpoint it was exported from) is given.
pub fn parity(bundle: &VerifiedBundle, model: Option<&SlowFastNet>, seed: u64) -> Result<Report> {
    let mut runtimes = Runtimes::load(&bundle.files)?;
    let mut cases = random_cases(&bundle.manifest, seed);
    let (slow, step) = runtimes.ort_slow_and_step()?;
    cases.extend(data_cases(
        &bundle.manifest,
        &bundle.items,
        slow,
        step,
        seed,
    )?);
    runtimes.compare(&cases, model)
}
