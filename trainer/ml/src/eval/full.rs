//! Full ranking beside the sampled one: the positive of a test case ranked against the whole
//! catalogue, every item except those the user clicked before the target (the positive is
//! kept even when it was clicked before). Sampled metrics can order models differently from
//! the full ranking (Krichene & Rendle, "On Sampled Metrics for Item Recommendation", KDD
//! 2020), so the reports carry both.
//!
//! Each full case is scored through [`Scorer::score`] like a sampled one, with every item as a
//! candidate: tens of times the sampled cost per case. The cases of a fixed subsample of test
//! users are ranked in full: the same users for every seed and model, drawn with a fixed seed.

use std::collections::HashSet;

use rand::seq::index;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::{Result, TrainerError};
use slowfast_data::protocol::sampler::Case;
use slowfast_data::protocol::{ranks, Scorer};
use slowfast_data::split::Split;
use slowfast_data::EventKind;

/// Test users whose cases are ranked in full by default. The DIN-based rows attend over the
/// history once per candidate, so a full case costs them as much as the catalogue has items:
/// MC2-SF ranked the 5,000 test cases of the synthetic default (1,000 items) in 38 s sampled
/// and 336 s in full (debug build, 2 cores shared with a compile), about 70 µs per candidate.
/// On ML-1M (about 2,500 candidates per case) that is about 0.9 s per user for each of the 9
/// DIN-based rows of `--models all` and each seed: 50 users add about 10–20 minutes to the
/// 3-seed evaluation's 29 on 2 cores (the other rows score a state once per case and cost
/// little).
pub const DEFAULT_USERS: usize = 50;

/// The seed of the subsample of users, the same for every evaluation seed.
const USERS_SEED: u64 = 0x0f11_4a4c;

/// Full cases whose candidate lists are held at once.
const CHUNK_CASES: usize = 256;

/// The timelines whose test cases are ranked in full: `users` of them drawn uniformly without
/// replacement with a fixed seed, in timeline order; every timeline when `users` is at least
/// their number.
pub fn chosen_timelines(split: &Split, users: usize) -> Vec<usize> {
    let n = split.timelines.len();
    if users >= n {
        return (0..n).collect();
    }
    let mut chosen = index::sample(&mut ChaCha8Rng::seed_from_u64(USERS_SEED), n, users).into_vec();
    chosen.sort_unstable();
    chosen
}

/// The indices (into `cases`) of the cases of the `chosen` timelines, in case order.
pub fn chosen_cases(cases: &[Case], chosen: &[usize]) -> Vec<u32> {
    (0..cases.len() as u32)
        .filter(|&k| chosen.binary_search(&cases[k as usize].timeline).is_ok())
        .collect()
}

/// The full-ranking version of `case`: its positive first, then every item of the catalogue
/// the user did not click before the target, in item order.
pub fn full_case(split: &Split, case: &Case) -> Case {
    let t = &split.timelines[case.timeline];
    let positive = t.events[case.target].item;
    let clicked: HashSet<u32> = (t.before(case.target).iter())
        .filter(|e| e.kind == EventKind::Click)
        .map(|e| e.item)
        .collect();
    let mut candidates = Vec::with_capacity(split.num_items + 1 - clicked.len());
    candidates.push(positive);
    candidates
        .extend((0..split.num_items as u32).filter(|i| *i != positive && !clicked.contains(i)));
    Case {
        timeline: case.timeline,
        target: case.target,
        candidates,
    }
}

/// The 0-based pessimistic rank of the positive of each case `which` names (indices into
/// `cases`) against the whole catalogue, in that order; `progress` is called with the number
/// of cases done.
pub fn full_ranks(
    split: &Split,
    cases: &[Case],
    which: &[u32],
    model: &dyn Scorer<Error = TrainerError>,
    mut progress: impl FnMut(usize),
) -> Result<Vec<u32>> {
    let mut all = Vec::with_capacity(which.len());
    for chunk in which.chunks(CHUNK_CASES) {
        let full: Vec<Case> = chunk
            .iter()
            .map(|&k| full_case(split, &cases[k as usize]))
            .collect();
        all.extend(ranks(split, &full, model, &mut progress)?);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;
    use slowfast_data::protocol::sampler::{sample_cases, NegativePool, NEGATIVES};
    use slowfast_data::protocol::{Query, View};
    use slowfast_data::EventLog;

    /// Three users clicking and being shown items of a 200-item catalogue; user u clicks item
    /// 5u+k at step k and repeats its first click as its last.
    fn split() -> Split {
        let mut log = EventLog::default();
        for i in 0..200 {
            log.push_raw("filler", &format!("i{i}"), 0, EventKind::Exposure);
        }
        for u in 0..3 {
            for k in 0..14 {
                let item = if k == 13 { 5 * u } else { 5 * u + k };
                let user = format!("u{u}");
                log.push_raw(&user, &format!("i{item}"), 2 * k as i64, EventKind::Click);
                log.push_raw(
                    &user,
                    &format!("i{}", 150 + k),
                    2 * k as i64 + 1,
                    EventKind::Exposure,
                );
            }
        }
        Split::new(&log)
    }

    #[test]
    fn a_full_case_is_every_item_but_the_earlier_clicks_positive_first() {
        let split = split();
        let cases = sample_cases(&split, 1, NEGATIVES, NegativePool::default()).unwrap();
        for case in &cases {
            let full = full_case(&split, case);
            let t = &split.timelines[case.timeline];
            let positive = t.events[case.target].item;
            assert_eq!(full.candidates[0], positive);
            let rest: HashSet<u32> = full.candidates[1..].iter().copied().collect();
            assert_eq!(rest.len(), full.candidates.len() - 1, "distinct");
            assert!(!rest.contains(&positive));
            for e in t.before(case.target) {
                // Earlier clicks are left out; items only shown stay candidates.
                assert_eq!(
                    rest.contains(&e.item),
                    e.kind == EventKind::Exposure && e.item != positive
                );
            }
            let clicked: HashSet<u32> = (t.before(case.target).iter())
                .filter(|e| e.kind == EventKind::Click)
                .map(|e| e.item)
                .collect();
            let kept = clicked.contains(&positive);
            assert_eq!(
                full.candidates.len(),
                split.num_items - clicked.len() + usize::from(kept),
                "the positive is kept even when clicked before"
            );
        }
        // The repeated last click of each user is one of its earlier clicks.
        assert!(cases.iter().any(|c| {
            let t = &split.timelines[c.timeline];
            (t.before(c.target).iter())
                .any(|e| e.kind == EventKind::Click && e.item == t.events[c.target].item)
        }));
    }

    #[test]
    fn the_chosen_users_are_fixed_and_bounded() {
        let split = split();
        let all = chosen_timelines(&split, 10);
        assert_eq!(
            all,
            [0, 1, 2],
            "every user when asked for more than there are"
        );
        let two = chosen_timelines(&split, 2);
        assert_eq!(two.len(), 2);
        assert!(two.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(two, chosen_timelines(&split, 2), "the same draw every time");
        let cases = sample_cases(&split, 1, NEGATIVES, NegativePool::default()).unwrap();
        let which = chosen_cases(&cases, &two);
        assert_eq!(which.len(), 10, "five test clicks per chosen user");
        assert!(which
            .iter()
            .all(|&k| two.contains(&cases[k as usize].timeline)));
    }

    /// Scores each candidate by its item id: the positive's full rank is the number of
    /// candidates with a larger id.
    struct ById;

    impl Scorer for ById {
        type Error = TrainerError;

        fn view(&self) -> View {
            View::Slow
        }
        fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>> {
            Ok(queries
                .iter()
                .flat_map(|q| q.candidates.iter().map(|&c| c as f32))
                .collect())
        }
    }

    #[test]
    fn full_ranks_count_the_items_scored_above_the_positive() {
        let split = split();
        let cases = sample_cases(&split, 1, NEGATIVES, NegativePool::default()).unwrap();
        let which: Vec<u32> = (0..cases.len() as u32).rev().collect();
        let mut done = 0;
        let ranks = full_ranks(&split, &cases, &which, &ById, |n| done += n).unwrap();
        assert_eq!(done, cases.len());
        for (&k, rank) in which.iter().zip(ranks) {
            let full = full_case(&split, &cases[k as usize]);
            let positive = full.candidates[0];
            let above = full.candidates[1..]
                .iter()
                .filter(|&&c| c > positive)
                .count();
            assert_eq!(rank as usize, above);
        }
    }
}
