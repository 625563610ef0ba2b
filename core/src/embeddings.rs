//! The item-embedding cache (`e_i` of the candidates the cloud sends, S2F eq. 7).
//!
//! Feeds bring an embedding with every candidate; the cache keeps the most recently seen
//! `capacity` of them (LRU) so that an item the user later clicks or is shown can be embedded
//! for the windows and for `r̂2`. Items that recorded events still refer to are *pinned*: they
//! stay available however many other items pass through the LRU.

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::sync::Arc;

use lru::LruCache;

/// One embedding, shared between the LRU, the pinned set and callers.
pub type Embedding = Arc<[f32]>;

/// Bounded LRU of item embeddings plus the pinned embeddings of items in the windows.
pub struct EmbeddingCache {
    lru: LruCache<String, Embedding>,
    pinned: HashMap<String, Embedding>,
    /// How many retained events refer to each item.
    refs: HashMap<String, u32>,
}

impl EmbeddingCache {
    /// A cache of at most `capacity` (≥ 1) unpinned entries.
    pub fn new(capacity: usize) -> EmbeddingCache {
        EmbeddingCache {
            lru: LruCache::new(NonZeroUsize::new(capacity.max(1)).unwrap_or(NonZeroUsize::MIN)),
            pinned: HashMap::new(),
            refs: HashMap::new(),
        }
    }

    /// The embedding of `item`, if known. Does not change the LRU order.
    pub fn get(&self, item: &str) -> Option<&Embedding> {
        self.pinned.get(item).or_else(|| self.lru.peek(item))
    }

    /// Whether `item`'s embedding is known.
    pub fn contains(&self, item: &str) -> bool {
        self.get(item).is_some()
    }

    /// Stores `item`'s embedding as the most recent; returns whether it was new or changed
    /// (only those need writing to the store).
    pub fn insert(&mut self, item: &str, embedding: &[f32]) -> bool {
        let changed = self.get(item).is_none_or(|old| **old != *embedding);
        let value: Embedding = if changed {
            Arc::from(embedding)
        } else {
            match self.get(item) {
                Some(old) => old.clone(),
                None => Arc::from(embedding),
            }
        };
        if self.refs.contains_key(item) {
            self.pinned.insert(item.to_string(), value.clone());
        }
        self.lru.put(item.to_string(), value);
        changed
    }

    /// One more retained event refers to `item`: keep its embedding (known now or later).
    pub fn pin(&mut self, item: &str) {
        *self.refs.entry(item.to_string()).or_insert(0) += 1;
        if !self.pinned.contains_key(item) {
            if let Some(e) = self.lru.peek(item).cloned() {
                self.pinned.insert(item.to_string(), e);
            }
        }
    }

    /// A retained event that referred to `item` fell out of its window.
    pub fn unpin(&mut self, item: &str) {
        if let Some(n) = self.refs.get_mut(item) {
            *n -= 1;
            if *n == 0 {
                self.refs.remove(item);
                self.pinned.remove(item);
            }
        }
    }

    /// Forgets every embedding (a new model version has new embeddings); pins stay.
    pub fn clear(&mut self) {
        self.lru.clear();
        self.pinned.clear();
    }

    /// Unpinned entries held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.lru.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pinned_items_survive_lru_eviction() {
        let mut c = EmbeddingCache::new(2);
        assert!(c.insert("a", &[1.0]));
        c.pin("a");
        c.insert("b", &[2.0]);
        c.insert("c", &[3.0]);
        assert_eq!(c.get("a").map(|e| e[0]), Some(1.0));
        assert!(!c.contains("b") || c.len() <= 2);
        c.unpin("a");
        c.insert("d", &[4.0]);
        assert!(!c.contains("a"));
    }

    #[test]
    fn an_unknown_pinned_item_is_kept_once_its_embedding_arrives() {
        let mut c = EmbeddingCache::new(1);
        c.pin("x");
        assert!(!c.contains("x"));
        c.insert("x", &[7.0]);
        c.insert("y", &[8.0]);
        assert_eq!(c.get("x").map(|e| e[0]), Some(7.0));
    }

    #[test]
    fn reinserting_the_same_embedding_is_not_a_change() {
        let mut c = EmbeddingCache::new(4);
        assert!(c.insert("a", &[1.0, 2.0]));
        assert!(!c.insert("a", &[1.0, 2.0]));
        assert!(c.insert("a", &[1.0, 3.0]));
    }
}
