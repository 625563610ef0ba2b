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
    /// The last `added` items are new in this bundle ([`ItemTable::added`]).
    pub added: usize,
    index: HashMap<String, u32>,
}

impl Items {
    /// Checks an item table against `dim`: equal lengths, finite embeddings, unique ids.
    pub fn new(table: ItemTable, dim: usize) -> Result<Items> {
        let bad = |reason: String| {
            TrainerError::Core(slowfast_core::SlowFastError::Bundle {
                file: ITEMS_JSON.into(),
                reason,
            })
        };
        let n = table.ids.len();
        if n == 0
            || table.popularity.len() != n
            || table.embeddings.len() != n * dim
            || table.added > n
        {
            return Err(bad(format!(
                "{n} ids, {} popularity counts, {} embedding floats and {} added items do not \
                 fit dim {dim}",
                table.popularity.len(),
                table.embeddings.len(),
                table.added
            )));
        }
        if let Some(i) = table.embeddings.iter().position(|x| !x.is_finite()) {
            return Err(bad(format!(
                "embedding of item {:?} is not finite",
                table.ids[i / dim]
            )));
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
            added: table.added,
            index,
        })
    }

    /// The dense index of a raw item id.
    pub fn index(&self, id: &str) -> Option<u32> {
        self.index.get(id).copied()
    }

    /// Whether the item at a dense index is new and unproven: added by the bundle's round and
    /// not clicked in its training data yet (retrieval's fresh share).
    pub fn is_fresh(&self, i: u32) -> bool {
        i as usize >= self.len() - self.added && self.popularity[i as usize] == 0
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
mod tests {
    use super::*;

    #[test]
    fn item_table_must_fit_the_dimension() {
        let t = ItemTable {
            ids: vec!["a".into(), "a".into()],
            popularity: vec![1, 2],
            embeddings: vec![0.0; 4],
            added: 0,
        };
        assert!(Items::new(t.clone(), 3).is_err());
        assert!(Items::new(t, 2).unwrap_err().to_string().contains("twice"));
    }
}
