//! Negative sampling for evaluation (paper §5.1.2): each test positive is ranked against 99
//! items drawn uniformly without replacement from the user's [`NegativePool`]. The draw for a
//! case depends only on (seed, user, case), so every model sees the same candidates for a
//! given seed, whatever order cases are visited in.

use std::collections::HashSet;

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{DataError, Result};
use crate::split::{Split, Timeline};
use crate::{Event, EventKind};

/// Which items may be drawn as a user's negatives.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum NegativePool {
    /// Items the user never clicked (in any phase): items that were only shown are eligible,
    /// as in a deployed feed, where the phone re-ranks items shown before and not clicked.
    /// The default.
    #[default]
    NotClicked,
    /// Items the user never interacted with (no click and no exposure in any phase): the
    /// paper's reading, kept for the comparison with its Table 2. It makes "the candidate was
    /// shown before" separate the positive from every negative, a signal no deployment has.
    NotInteracted,
}

impl NegativePool {
    /// Whether `event` takes its item out of the pool.
    pub fn excludes(self, event: &Event) -> bool {
        match self {
            NegativePool::NotClicked => event.kind == EventKind::Click,
            NegativePool::NotInteracted => true,
        }
    }

    /// The items of `events` that may not be negatives.
    pub fn excluded<'a>(self, events: impl IntoIterator<Item = &'a Event>) -> HashSet<u32> {
        events
            .into_iter()
            .filter(|e| self.excludes(e))
            .map(|e| e.item)
            .collect()
    }

    /// The pool in words, for the protocol written with the results.
    pub fn describe(self) -> &'static str {
        match self {
            NegativePool::NotClicked => {
                "items the user never clicked (any phase; items only shown are eligible)"
            }
            NegativePool::NotInteracted => {
                "items the user never interacted with (any phase, clicks or exposures; the \
                 paper's reading)"
            }
        }
    }
}

/// Negatives per positive, as in the paper.
pub const NEGATIVES: usize = 99;

/// One evaluation case: a test click of a user and its candidate list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Case {
    /// Index into [`Split::timelines`].
    pub timeline: usize,
    /// Index of the target click in that timeline's events.
    pub target: usize,
    /// The positive item first, then the sampled negatives.
    pub candidates: Vec<u32>,
}

/// Samples the candidates of every test click of every user from `pool`.
pub fn sample_cases(
    split: &Split,
    seed: u64,
    negatives: usize,
    pool: NegativePool,
) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for (ti, timeline) in split.timelines.iter().enumerate() {
        let seen = pool.excluded(&timeline.events);
        let free = split.num_items - seen.len();
        if free < negatives {
            return Err(DataError::Unusable(format!(
                "user {} leaves {free} of {} items as negatives ({}); {negatives} negatives \
                 needed",
                timeline.user,
                split.num_items,
                pool.describe()
            )));
        }
        for (k, target) in timeline.test_clicks().enumerate() {
            let mut rng = case_rng(seed, timeline, k);
            let mut candidates = Vec::with_capacity(negatives + 1);
            candidates.push(timeline.events[target].item);
            draw_unseen(&mut rng, split.num_items, &seen, negatives, &mut candidates);
            cases.push(Case {
                timeline: ti,
                target,
                candidates,
            });
        }
    }
    Ok(cases)
}

/// An RNG for one case, independent of the order cases are visited in.
fn case_rng(seed: u64, timeline: &Timeline, k: usize) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream((u64::from(timeline.user) << 8) | k as u64);
    rng
}

/// Appends `n` distinct items not in `seen`, uniformly: rejection sampling while unseen items
/// are plentiful, an explicit pool otherwise.
pub fn draw_unseen(
    rng: &mut impl Rng,
    num_items: usize,
    seen: &HashSet<u32>,
    n: usize,
    out: &mut Vec<u32>,
) {
    let free = num_items - seen.len();
    if free >= 4 * n {
        let start = out.len();
        while out.len() - start < n {
            let item = rng.random_range(0..num_items as u32);
            if !seen.contains(&item) && !out[start..].contains(&item) {
                out.push(item);
            }
        }
    } else {
        let pool: Vec<u32> = (0..num_items as u32)
            .filter(|i| !seen.contains(i))
            .collect();
        out.extend(
            index::sample(rng, pool.len(), n)
                .into_iter()
                .map(|j| pool[j]),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventKind, EventLog};

    fn small_split(items: usize) -> Split {
        let mut log = EventLog::default();
        for i in 0..items {
            log.push_raw("other", &format!("i{i}"), 0, EventKind::Exposure);
        }
        for u in 0..3 {
            for k in 0..15 {
                let kind = if k % 4 == 3 {
                    EventKind::Exposure
                } else {
                    EventKind::Click
                };
                log.push_raw(
                    &format!("u{u}"),
                    &format!("i{}", (u * 7 + k * 3) % items),
                    k as i64,
                    kind,
                );
            }
        }
        Split::new(&log)
    }

    /// Checks every case's shape and that no negative is an item `pool` excludes.
    fn check_cases(split: &Split, cases: &[Case], pool: NegativePool) {
        for case in cases {
            let t = &split.timelines[case.timeline];
            assert_eq!(case.candidates.len(), NEGATIVES + 1);
            assert_eq!(case.candidates[0], t.events[case.target].item);
            let negs: HashSet<u32> = case.candidates[1..].iter().copied().collect();
            assert_eq!(negs.len(), NEGATIVES, "negatives are distinct");
            assert!(t
                .events
                .iter()
                .all(|e| !(pool.excludes(e) && negs.contains(&e.item))));
        }
    }

    #[test]
    fn the_papers_pool_never_samples_an_interacted_item() {
        for items in [150, 1000] {
            let split = small_split(items);
            let pool = NegativePool::NotInteracted;
            check_cases(
                &split,
                &sample_cases(&split, 1, NEGATIVES, pool).unwrap(),
                pool,
            );
        }
    }

    /// The default pool: items shown and not clicked are drawn; clicked items never are.
    #[test]
    fn the_default_pool_draws_shown_items_and_never_clicked_ones() {
        // One user clicks 15 items and is shown 60 others, in a catalogue of 130: 115 items
        // are eligible, so most of the 99 negatives must be shown-not-clicked items.
        let mut log = EventLog::default();
        for i in 0..130 {
            log.push_raw("other", &format!("i{i}"), 0, EventKind::Exposure);
        }
        for k in 0..75 {
            let kind = if k < 15 {
                EventKind::Click
            } else {
                EventKind::Exposure
            };
            log.push_raw("u", &format!("i{k}"), 100 + k as i64, kind);
        }
        let split = Split::new(&log);
        let pool = NegativePool::default();
        assert_eq!(pool, NegativePool::NotClicked);
        let cases = sample_cases(&split, 5, NEGATIVES, pool).unwrap();
        check_cases(&split, &cases, pool);
        let t = &split.timelines[0];
        let shown: HashSet<u32> = t
            .events
            .iter()
            .filter(|e| e.kind == EventKind::Exposure)
            .map(|e| e.item)
            .collect();
        for case in &cases {
            let drawn_shown = case.candidates[1..]
                .iter()
                .filter(|i| shown.contains(i))
                .count();
            // 99 of 115 eligible items, 60 of them shown: at least 44 are shown ones.
            assert!(
                drawn_shown >= 44,
                "{drawn_shown} shown items among the negatives"
            );
        }
        // The paper's pool has only 55 eligible items here: too few.
        let err = sample_cases(&split, 5, NEGATIVES, NegativePool::NotInteracted).unwrap_err();
        assert!(err.to_string().contains("negatives needed"), "{err}");
    }

    #[test]
    fn same_seed_same_candidates_other_seed_other() {
        let split = small_split(400);
        let pool = NegativePool::default();
        let a = sample_cases(&split, 7, NEGATIVES, pool).unwrap();
        assert_eq!(a, sample_cases(&split, 7, NEGATIVES, pool).unwrap());
        assert_ne!(a, sample_cases(&split, 8, NEGATIVES, pool).unwrap());
    }

    #[test]
    fn too_few_unseen_items_is_an_error() {
        let split = small_split(100);
        let err = sample_cases(&split, 1, NEGATIVES, NegativePool::NotInteracted).unwrap_err();
        assert!(err.to_string().contains("negatives needed"), "{err}");
    }
}
