//! The model bundle the server runs and hands out: the manifest and the device files with
//! their ETags (`GET /v1/model`, `GET /v1/model/{file}`), and the item table retrieval and
//! ranking read (`items.json`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use axum::body::Bytes;
use slowfast_core::manifest::{
    sha256_hex, ItemTable, Manifest, DEVICE_FILES, ITEMS_JSON, MANIFEST_JSON, SLOW_ONNX,
};

use crate::error::{Result, TrainerError};

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

/// The item vocabulary with an id → index map; embeddings `e_i` row-major `[len, dim]`.
#[derive(Debug)]
pub struct Items {
    pub ids: Vec<String>,
    pub popularity: Vec<u32>,
    pub embeddings: Vec<f32>,
    pub dim: usize,
    index: HashMap<String, u32>,
}

impl Items {
    /// Checks an item table against `dim`: equal lengths, finite embeddings, unique ids.
    pub fn new(table: ItemTable, dim: usize) -> Result<Items> {
        let bad = |reason: String| TrainerError::Core(slowfast_core::SlowFastError::Bundle {
            file: ITEMS_JSON.into(),
            reason,
        });
        let n = table.ids.len();
        if n == 0 || table.popularity.len() != n || table.embeddings.len() != n * dim {
            return Err(bad(format!(
                "{n} ids, {} popularity counts and {} embedding floats do not fit dim {dim}",
                table.popularity.len(),
                table.embeddings.len()
            )));
        }
        if let Some(i) = table.embeddings.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!("embedding of item {:?} is not finite", table.ids[i / dim])));
        }
        let mut index = HashMap::with_capacity(n);
        for (i, id) in table.ids.iter().enumerate() {
            if index.insert(id.clone(), i as u32).is_some() {
                return Err(bad(format!("item id {id:?} appears twice")));
            }
        }
        Ok(Items {
            ids: table.ids,
            popularity: table.popularity,
            embeddings: table.embeddings,
            dim,
            index,
        })
    }

    /// The dense index of a raw item id.
    pub fn index(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// `e_i` of the item at a dense index.
    pub fn embedding(&self, i: u32) -> &[f32] {
        let i = i as usize * self.dim;
        &self.embeddings[i..i + self.dim]
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
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
            std::fs::read(&p).map_err(|e| TrainerError::io(p, e))
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
        let table: ItemTable =
            serde_json::from_slice(&read(ITEMS_JSON)?).map_err(|e| TrainerError::Json {
                what: dir.join(ITEMS_JSON).display().to_string(),
                source: e,
            })?;
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use slowfast_core::manifest::{FileEntry, WindowSpec, FAST_ONNX, FORMAT_VERSION};

    /// Writes a bundle with `n` items of dimension `dim`, device files of opaque bytes and no
    /// `slow.onnx`.
    pub(crate) fn write_bundle(dir: &Path, n: usize, dim: usize) {
        let items = ItemTable {
            ids: (0..n).map(|i| format!("i{i}")).collect(),
            popularity: (0..n as u32).rev().collect(),
            embeddings: (0..n * dim).map(|x| ((x % 7) as f32 - 3.0) / 10.0).collect(),
        };
        let files = [
            (ITEMS_JSON, serde_json::to_vec(&items).unwrap()),
            (FAST_ONNX, b"fast model bytes".to_vec()),
        ];
        let mut entries = BTreeMap::new();
        for (name, bytes) in &files {
            std::fs::write(dir.join(name), bytes).unwrap();
            entries.insert(
                name.to_string(),
                FileEntry {
                    sha256: sha256_hex(bytes),
                    bytes: bytes.len() as u64,
                    inputs: vec![],
                    outputs: vec![],
                },
            );
        }
        let m = Manifest {
            format_version: FORMAT_VERSION,
            model_version: "v1".into(),
            dim,
            windows: WindowSpec {
                slow_history: 8,
                clicks: 4,
                exposures: 4,
            },
            files: entries,
            trained_on: "test".into(),
            commit: "test".into(),
            created_at: "2026-11-23T00:00:00Z".into(),
        };
        std::fs::write(dir.join(MANIFEST_JSON), serde_json::to_vec(&m).unwrap()).unwrap();
    }

    #[test]
    fn opens_a_bundle_and_refuses_a_tampered_file() {
        let dir = tempfile::tempdir().unwrap();
        write_bundle(dir.path(), 10, 4);
        let b = Bundle::open(dir.path()).unwrap();
        assert_eq!(b.items.len(), 10);
        assert_eq!(b.items.index("i3"), Some(3));
        assert!(b.files.contains_key(FAST_ONNX));
        assert!(b.slow_onnx.is_none());
        std::fs::write(dir.path().join(FAST_ONNX), b"fast model bytez").unwrap();
        let err = Bundle::open(dir.path()).unwrap_err().to_string();
        assert!(err.contains("fast.onnx") && err.contains("SHA-256"), "{err}");
    }

    #[test]
    fn item_table_must_fit_the_dimension() {
        let t = ItemTable {
            ids: vec!["a".into(), "a".into()],
            popularity: vec![1, 2],
            embeddings: vec![0.0; 4],
        };
        assert!(Items::new(t.clone(), 3).is_err());
        assert!(Items::new(t, 2).unwrap_err().to_string().contains("twice"));
    }
}
