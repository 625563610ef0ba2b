//! The item table the server retrieves from and the device's feed is drawn from: ids,
//! popularity and the trained embeddings `e_i` of `items.json`, indexed by id.

use std::collections::HashMap;

use slowfast_core::manifest::{ItemTable, ITEMS_JSON};
use slowfast_core::{Result, SlowFastError};

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
        let bad = |reason: String| SlowFastError::Bundle {
            file: ITEMS_JSON.into(),
            reason,
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
