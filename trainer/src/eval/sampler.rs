//! Negative sampling for evaluation (paper §5.1.2): each test positive is ranked against 99
//! items the user never interacted with (in any phase, clicks or exposures), drawn uniformly
//! without replacement. The draw for a case depends only on (seed, user, case), so every
//! model sees the same candidates for a given seed, whatever order cases are visited in.

use std::collections::HashSet;

use rand::seq::index;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::data::split::{Split, Timeline};
use crate::error::{Result, TrainerError};

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

/// Samples the candidates of every test click of every user.
pub fn sample_cases(split: &Split, seed: u64, negatives: usize) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for (ti, timeline) in split.timelines.iter().enumerate() {
        let seen: HashSet<u32> = timeline.events.iter().map(|e| e.item).collect();
        let free = split.num_items - seen.len();
        if free < negatives {
            return Err(TrainerError::Data(format!(
                "user {} interacted with all but {free} of {} items; {negatives} negatives needed",
                timeline.user, split.num_items
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
fn draw_unseen(
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
    use crate::data::{EventKind, EventLog};

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

    #[test]
    fn never_samples_an_interacted_item() {
        for items in [150, 1000] {
            let split = small_split(items);
            for case in sample_cases(&split, 1, NEGATIVES).unwrap() {
                let t = &split.timelines[case.timeline];
                assert_eq!(case.candidates.len(), NEGATIVES + 1);
                assert_eq!(case.candidates[0], t.events[case.target].item);
                let negs: HashSet<u32> = case.candidates[1..].iter().copied().collect();
                assert_eq!(negs.len(), NEGATIVES, "negatives are distinct");
                assert!(t.events.iter().all(|e| !negs.contains(&e.item)));
            }
        }
    }

    #[test]
    fn same_seed_same_candidates_other_seed_other() {
        let split = small_split(400);
        let a = sample_cases(&split, 7, NEGATIVES).unwrap();
        assert_eq!(a, sample_cases(&split, 7, NEGATIVES).unwrap());
        assert_ne!(a, sample_cases(&split, 8, NEGATIVES).unwrap());
    }

    #[test]
    fn too_few_unseen_items_is_an_error() {
        let split = small_split(100);
        let err = sample_cases(&split, 1, NEGATIVES).unwrap_err();
        assert!(err.to_string().contains("negatives needed"), "{err}");
    }
}
