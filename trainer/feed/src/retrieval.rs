//! Candidate retrieval for the feed: a cheap pool that the slow model then ranks.
//!
//! Half of the pool (rounded up) is the items most similar to the user's history — the dot
//! product of `e_i` with the mean embedding of the user's recent clicks, one pass over the item
//! table (`|I|·d` multiply-adds) — and the rest is filled with the most popular items
//! (`items.json` popularity). Items the user already clicked are left out, and so are the
//! items the user was recently shown (the feed's seen filter, `slowfast serve --seen`): a
//! feed re-serving what was just ignored only tires its user. A user without history gets the
//! popular items only.
//!
//! **New items.** An item the server has no embedding for is not in `items.json` and is never
//! served: a new item becomes servable after the next nightly round has added it to the
//! model's vocabulary (`Checkpoint::extend_items`; `items.json` counts it in `added`). Until it
//! has a click in the training data it is *unproven* ([`Items::is_fresh`]), and neither the popular half nor, with an embedding trained
//! on no click, the similar half would reliably pick it: one in [`FRESH_SHARE`] places of the
//! pool goes to the unproven items most similar to the history (the newest for a user without
//! history), and [`feed_order`] keeps the same share of the feed for the best-ranked of
//! them, so that new items get the exposures their embeddings learn from.

use crate::Items;

/// One in this many places of the candidate pool and of the feed goes to unproven items (new
/// in the bundle, no click in the training data yet).
pub const FRESH_SHARE: usize = 10;

/// How a feed's candidates are retrieved (`slowfast serve --pool --seen`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retrieval {
    /// Candidates retrieved per feed before the slow model ranks them.
    pub pool: usize,
    /// The seen filter: items among the user's latest `seen` uploaded exposures are not
    /// candidates (0: none left out).
    pub seen: usize,
}

impl Default for Retrieval {
    /// A pool of 200 and the seen filter over the latest 100 exposures: a day of ten visits
    /// with ten items shown each.
    fn default() -> Self {
        Retrieval {
            pool: 200,
            seen: 100,
        }
    }
}

/// Up to `pool` distinct candidate indices for a user whose recent clicks are `history` and
/// who was recently shown `shown`; neither is a candidate.
pub fn candidates(
    items: &Items,
    popular: &[u32],
    history: &[u32],
    shown: &[u32],
    pool: usize,
) -> Vec<u32> {
    let mut seen = vec![false; items.len()];
    for &h in history.iter().chain(shown) {
        seen[h as usize] = true;
    }
    let mut out = Vec::with_capacity(pool);
    let fresh = pool / FRESH_SHARE;
    let unproven = |i: u32| items.is_fresh(i);
    if history.is_empty() {
        // The newest unproven items: the nightly round appends new items to the vocabulary.
        for i in (0..items.len() as u32)
            .rev()
            .filter(|&i| unproven(i))
            .take(fresh)
        {
            seen[i as usize] = true;
            out.push(i);
        }
    } else {
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
        let mut new: Vec<(f32, u32)> = scored
            .iter()
            .copied()
            .filter(|&(_, i)| unproven(i))
            .collect();
        new.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        for &(_, i) in new.iter().take(fresh) {
            seen[i as usize] = true;
            out.push(i);
        }
        scored.retain(|&(_, i)| !seen[i as usize]);
        let similar = pool.div_ceil(2).saturating_sub(out.len()).min(scored.len());
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
/// order, the first `k` of them, where at least `k / FRESH_SHARE` (or as many as the pool has)
/// are `fresh` (a predicate on pool positions): the best-ranked fresh items beyond the top `k` take the places of the
/// worst-ranked others. `GET /v1/feed` sends these; the re-rank evaluation
/// (`slowfast-trainer`'s `eval::rerank`) ranks with the same rule, nothing fresh.
pub fn feed_order(logit: &[f32], fresh: impl Fn(usize) -> bool, k: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..logit.len()).collect();
    order.sort_by(|&a, &b| logit[b].total_cmp(&logit[a]).then(a.cmp(&b)));
    let cut = k.min(order.len());
    let quota = (k / FRESH_SHARE).min(order.iter().filter(|&&j| fresh(j)).count());
    let have = order[..cut].iter().filter(|&&j| fresh(j)).count();
    let extra: Vec<usize> = (order[cut..].iter().copied())
        .filter(|&j| fresh(j))
        .take(quota.saturating_sub(have))
        .collect();
    let mut drop = extra.len();
    let mut top: Vec<usize> = Vec::with_capacity(cut);
    for &j in order[..cut].iter().rev() {
        if drop > 0 && !fresh(j) {
            drop -= 1;
        } else {
            top.push(j);
        }
    }
    top.reverse();
    top.extend(extra);
    top
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
                added: 0,
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
        let c = candidates(&it, &pop, &[0], &[], 4);
        assert_eq!(c.len(), 4);
        assert!(!c.contains(&0));
        // Two similar items (along x) and then the two most popular.
        assert!(c[..2].iter().all(|&i| i < 4), "{c:?}");
        assert_eq!(c[2..], [7, 6]);
    }

    #[test]
    fn feed_order_is_by_descending_logit_ties_in_pool_order_cut_at_k() {
        assert_eq!(
            feed_order(&[0.5, 2.0, 0.5, -1.0, 3.0], |_| false, 4),
            [4, 1, 0, 2]
        );
        assert_eq!(feed_order(&[1.0, 2.0], |_| false, 5), [1, 0]);
        assert!(feed_order(&[], |_| false, 3).is_empty());
    }

    #[test]
    fn cold_user_gets_popular_items_and_pool_is_capped_by_the_catalogue() {
        let it = items();
        let pop = by_popularity(&it);
        assert_eq!(candidates(&it, &pop, &[], &[], 3), vec![7, 6, 5]);
        let all = candidates(&it, &pop, &[1, 2], &[], 100);
        assert_eq!(all.len(), 6);
    }

    #[test]
    fn recently_shown_items_are_left_out_of_the_pool() {
        let it = items();
        let pop = by_popularity(&it);
        // The most popular items were just shown: the next popular ones take their places.
        assert_eq!(candidates(&it, &pop, &[], &[7, 6], 3), vec![5, 4, 3]);
        let c = candidates(&it, &pop, &[0], &[1, 7], 100);
        assert_eq!(c.len(), 5);
        assert!(!c.iter().any(|i| [0, 1, 7].contains(i)), "{c:?}");
    }

    /// 30 items along x; items 20.. are new and unproven (popularity 0), and so is old item 3.
    fn with_new_items() -> Items {
        Items::new(
            ItemTable {
                ids: (0..30).map(|i| i.to_string()).collect(),
                popularity: (0..30).map(|i| u32::from(i < 20 && i != 3)).collect(),
                embeddings: (0..30)
                    .flat_map(|i| [1.0 + i as f32 / 100.0, 0.0])
                    .collect(),
                added: 10,
            },
            2,
        )
        .unwrap()
    }

    #[test]
    fn unproven_items_get_one_place_in_ten_of_the_pool() {
        let it = with_new_items();
        let pop = by_popularity(&it);
        let c = candidates(&it, &pop, &[0], &[], 20);
        assert_eq!(c.len(), 20);
        // Two places for the unproven items most similar to the history (the largest x).
        assert_eq!(c[..2], [29, 28]);
        // Without history: the newest unproven items, then the popular ones.
        let cold = candidates(&it, &pop, &[], &[], 20);
        assert_eq!(cold[..2], [29, 28]);
        assert!(cold[2..].iter().all(|&i| i < 20), "{cold:?}");
        assert!(it.is_fresh(20) && !it.is_fresh(3) && !it.is_fresh(19));
    }

    #[test]
    fn the_feed_keeps_one_place_in_ten_for_fresh_items() {
        // Logits fall with the index; items 25..30 are fresh and ranked last.
        let logit: Vec<f32> = (0..30).map(|i| -(i as f32)).collect();
        let fresh: Vec<bool> = (0..30).map(|i| i >= 25).collect();
        let top = feed_order(&logit, |j| fresh[j], 20);
        let mut expected: Vec<usize> = (0..18).collect();
        expected.extend([25, 26]);
        assert_eq!(
            top, expected,
            "the two best fresh items replace the two worst others"
        );
        // Fresh items already in the top k are not added again; no fresh item: plain top k.
        let early: Vec<bool> = (0..30).map(|i| i == 3 || i == 4).collect();
        assert_eq!(
            feed_order(&logit, |j| early[j], 20),
            (0..20).collect::<Vec<_>>()
        );
        assert_eq!(
            feed_order(&logit, |_| false, 20),
            (0..20).collect::<Vec<_>>()
        );
        assert_eq!(
            feed_order(&logit[..5], |j| fresh[j], 20),
            vec![0, 1, 2, 3, 4]
        );
    }
}
