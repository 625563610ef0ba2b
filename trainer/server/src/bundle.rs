//! The model bundle the server runs and hands out: the manifest and the device files with
//! their ETags (`GET /v1/model`, `GET /v1/model/{file}`), and the item table retrieval and
//! ranking read (`items.json`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use slowfast_core::manifest::{
    sha256_hex, ItemTable, Manifest, DEVICE_FILES, ITEMS_JSON, MANIFEST_JSON, SLOW_ONNX,
};
use slowfast_data::FileError;
use slowfast_feed::Items;

use crate::error::Result;

/// Bytes served with a strong ETag (the quoted SHA-256 of the bytes).
#[derive(Clone, Debug)]
pub struct Served {
    pub bytes: Bytes,
    pub etag: String,
}

impl Served {
    fn new(bytes: Vec<u8>) -> Served {
        let etag = format!("\"{}\"", sha256_hex(&bytes));
        Served {
            bytes: Bytes::from(bytes),
            etag,
        }
    }
}

/// A loaded, verified bundle.
#[derive(Debug)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
    /// `manifest.json` as served.
    pub manifest_file: Served,
    /// The device files the manifest lists ([`DEVICE_FILES`]).
    pub files: BTreeMap<String, Served>,
    pub items: Items,
    /// The path of `slow.onnx` when the manifest lists it (verified); without it the server
    /// serves uploads and model files but no feed.
    pub slow_onnx: Option<PathBuf>,
}

impl Bundle {
    /// Reads `dir/manifest.json`, verifies every listed file's size and SHA-256, and loads the
    /// item table.
    pub fn open(dir: &Path) -> Result<Bundle> {
        let read = |name: &str| {
            let p = dir.join(name);
            std::fs::read(&p).map_err(|e| FileError::new(p, e))
        };
        let manifest_bytes = read(MANIFEST_JSON)?;
        let manifest = Manifest::from_json(&manifest_bytes)?;
        let mut files = BTreeMap::new();
        for name in manifest.files.keys() {
            let bytes = read(name)?;
            manifest.verify_file(name, &bytes)?;
            if DEVICE_FILES.contains(&name.as_str()) {
                files.insert(name.clone(), Served::new(bytes));
            }
        }
        manifest.file(ITEMS_JSON)?;
        let table: ItemTable = serde_json::from_slice(&read(ITEMS_JSON)?).map_err(
            slowfast_data::JsonError::of(dir.join(ITEMS_JSON).display().to_string()),
        )?;
        let items = Items::new(table, manifest.dim)?;
        let slow_onnx = manifest
            .files
            .contains_key(SLOW_ONNX)
            .then(|| dir.join(SLOW_ONNX));
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest_file: Served::new(manifest_bytes),
            manifest,
            files,
            items,
            slow_onnx,
        })
    }
}
