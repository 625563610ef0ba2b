//! Candidate retrieval for the feed: a cheap pool that the slow model then ranks.
//!
//! Half of the pool (rounded up) is the items most similar to the user's history — the dot
//! product of `e_i` with the mean embedding of the user's recent clicks, one pass over the item
//! table (`|I|·d` multiply-adds) — and the rest is filled with the most popular items
//! (`items.json` popularity). Items the user already clicked are left out. A user without
//! history gets the popular items only.

use super::bundle::Items;

/// Up to `pool` distinct candidate indices for a user whose recent clicks are `history`.
pub fn candidates(items: &Items, popular: &[u32], history: &[u32], pool: usize) -> Vec<u32> {
    let mut seen = vec![false; items.len()];
    for &h in history {
        seen[h as usize] = true;
    }
    let mut out = Vec::with_capacity(pool);
    if !history.is_empty() {
        let d = items.dim;
        let mut mean = vec![0f32; d];
        for &h in history {
            for (m, x) in mean.iter_mut().zip(items.embedding(h)) {
                *m += x;
            }
        }
        let mut scored: Vec<(f32, u32)> = (0..items.len() as u32)
            .filter(|&i| !seen[i as usize])
            .map(|i| {
                let s = items
                    .embedding(i)
                    .iter()
                    .zip(&mean)
                    .map(|(a, b)| a * b)
                    .sum();
                (s, i)
            })
            .collect();
        let similar = pool.div_ceil(2).min(scored.len());
        if similar > 0 {
            scored.select_nth_unstable_by(similar - 1, |a, b| b.0.total_cmp(&a.0));
        }
        for &(_, i) in &scored[..similar] {
            seen[i as usize] = true;
            out.push(i);
        }
    }
    for &i in popular {
        if out.len() >= pool {
            break;
        }
        if !seen[i as usize] {
            seen[i as usize] = true;
            out.push(i);
        }
    }
    out
}

/// The feed's order: positions in the pool by descending slow logit (eq. 6), ties in pool
/// order, the first `k` of them. `GET /v1/feed` sends these; the re-rank evaluation
/// ([`crate::eval::rerank`]) ranks with the same rule.
pub fn feed_order(logits: &[f32], k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(k);
    order
}

/// Item indices by popularity, most popular first (ties by index).
pub fn by_popularity(items: &Items) -> Vec<u32> {
    let mut order: Vec<u32> = (0..items.len() as u32).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(items.popularity[i as usize]), i));
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use slowfast_core::manifest::ItemTable;

    fn items() -> Items {
        // Items 0..4 point along x, 4..8 along y; popularity rises with the index.
        let mut embeddings = Vec::new();
        for i in 0..8 {
            embeddings.extend(if i < 4 { [1.0, 0.0] } else { [0.0, 1.0] });
        }
        Items::new(
            ItemTable {
                ids: (0..8).map(|i| i.to_string()).collect(),
                popularity: (0..8).collect(),
                embeddings,
            },
            2,
        )
        .unwrap()
    }

    #[test]
    fn pool_mixes_similar_and_popular_items_without_history_items() {
        let it = items();
        let pop = by_popularity(&it);
        assert_eq!(pop[..3], [7, 6, 5]);
        let c = candidates(&it, &pop, &[0], 4);
        assert_eq!(c.len(), 4);
        assert!(!c.contains(&0));
        // Two similar items (along x) and then the two most popular.
        assert!(c[..2].iter().all(|&i| i < 4), "{c:?}");
        assert_eq!(c[2..], [7, 6]);
    }

    #[test]
    fn feed_order_is_by_descending_logit_ties_in_pool_order_cut_at_k() {
        assert_eq!(feed_order(&[0.5, 2.0, 0.5, -1.0, 3.0], 4), [4, 1, 0, 2]);
        assert_eq!(feed_order(&[1.0, 2.0], 5), [1, 0]);
        assert!(feed_order(&[], 3).is_empty());
    }

    #[test]
    fn cold_user_gets_popular_items_and_pool_is_capped_by_the_catalogue() {
        let it = items();
        let pop = by_popularity(&it);
        assert_eq!(candidates(&it, &pop, &[], 3), vec![7, 6, 5]);
        let all = candidates(&it, &pop, &[1, 2], 100);
        assert_eq!(all.len(), 6);
    }
}
