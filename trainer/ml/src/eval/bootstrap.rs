//! Paired bootstrap over users: how sure a difference between two models is.
//!
//! Two models A and B ranked on the same cases (every test click of every seed) differ by
//! `Δ = mean(A) − mean(B)` in a metric. The cases of one user are not independent (one taste,
//! one history), so the bootstrap resamples **users** with replacement, a user's cases from
//! every seed going together, and recomputes `Δ* = Σ_u w_u d_u / Σ_u w_u n_u` from the
//! per-user sums `d_u` of A − B and case counts `n_u` (`w_u`: how often user u is drawn), so a
//! resample costs O(users). Both models are read on the same resamples (paired), and every
//! pair on the same ones. The 95 % interval is the 2.5th to 97.5th percentile of the `Δ*`.

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainerError};

/// Resamples drawn by default.
pub const RESAMPLES: usize = 1000;

/// The seed of the resamples: the same intervals every run.
pub const SEED: u64 = 0xb007_57a9;

/// The two-sided level of the percentile interval.
pub const LEVEL: f64 = 0.95;

/// `mean(A) − mean(B)` over the cases, and its percentile interval.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub diff: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    /// Whether the interval excludes 0: the difference is significant at [`LEVEL`].
    pub fn excludes_zero(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }
}

/// The resamples of the users of a set of cases.
#[derive(Clone, Debug)]
pub struct Paired {
    /// The dense index of each case's user.
    user_of_case: Vec<usize>,
    users: usize,
    /// `weights[b * users + u]`: how often user u is drawn in resample b.
    weights: Vec<u32>,
    /// `Σ_u w_u n_u` of each resample: its number of cases.
    cases: Vec<f64>,
}

impl Paired {
    /// `resamples` draws of the users of `case_users` (the user of every case, seeds pooled),
    /// from `seed`.
    pub fn new(case_users: &[u32], resamples: usize, seed: u64) -> Result<Paired> {
        if case_users.is_empty() || resamples == 0 {
            return Err(TrainerError::InvalidArgument(format!(
                "a bootstrap needs cases and resamples ({} cases, {resamples} resamples)",
                case_users.len()
            )));
        }
        let mut index = HashMap::new();
        let user_of_case: Vec<usize> = case_users
            .iter()
            .map(|u| {
                let next = index.len();
                *index.entry(*u).or_insert(next)
            })
            .collect();
        let users = index.len();
        let mut counts = vec![0u32; users];
        for &u in &user_of_case {
            counts[u] += 1;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut weights = vec![0u32; resamples * users];
        for resample in weights.chunks_mut(users) {
            for _ in 0..users {
                resample[rng.random_range(0..users)] += 1;
            }
        }
        let counts: Vec<f64> = counts.into_iter().map(f64::from).collect();
        let cases = weights
            .chunks(users)
            .map(|w| weighted(w, &counts))
            .collect();
        Ok(Paired {
            user_of_case,
            users,
            weights,
            cases,
        })
    }

    /// The interval of `mean(a) − mean(b)` for per-case values `a` and `b` of two models,
    /// in the order of the case users given to [`Paired::new`].
    pub fn interval(&self, a: &[f64], b: &[f64]) -> Result<Interval> {
        let n = self.user_of_case.len();
        if a.len() != n || b.len() != n {
            return Err(TrainerError::InvalidArgument(format!(
                "paired bootstrap over {n} cases given {} and {} values",
                a.len(),
                b.len()
            )));
        }
        let mut d = vec![0.0; self.users];
        for ((&u, x), y) in self.user_of_case.iter().zip(a).zip(b) {
            d[u] += x - y;
        }
        let diff = d.iter().sum::<f64>() / n as f64;
        let mut resampled: Vec<f64> = (self.weights.chunks(self.users))
            .zip(&self.cases)
            .map(|(w, cases)| weighted(w, &d) / cases)
            .collect();
        resampled.sort_by(f64::total_cmp);
        let tail = (1.0 - LEVEL) / 2.0;
        Ok(Interval {
            diff,
            lo: quantile(&resampled, tail),
            hi: quantile(&resampled, 1.0 - tail),
        })
    }
}

/// `Σ_u w_u x_u`.
fn weighted(w: &[u32], x: &[f64]) -> f64 {
    w.iter().zip(x).map(|(&w, x)| f64::from(w) * x).sum()
}

/// The `q` quantile of sorted `values`, interpolating linearly between order statistics.
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let at = q * (sorted.len() - 1) as f64;
    let (below, above) = (at.floor() as usize, at.ceil() as usize);
    let frac = at - below as f64;
    sorted[below] + (sorted[above] - sorted[below]) * frac
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::Rng;

    /// 200 users with 5 cases each, B's per-case values of `noise`-driven spread around 0.4.
    fn users_and_b(seed: u64) -> (Vec<u32>, Vec<f64>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let users: Vec<u32> = (0..200u32).flat_map(|u| [u; 5]).collect();
        let b = users
            .iter()
            .map(|_| f64::from(u8::from(rng.random_bool(0.4))))
            .collect();
        (users, b)
    }

    #[test]
    fn a_planted_difference_is_recovered() {
        let (users, b) = users_and_b(1);
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        // A hits wherever B does, and on 15 % of B's misses besides: +0.09 expected.
        let a: Vec<f64> = b
            .iter()
            .map(|&x| {
                if x == 1.0 || rng.random_bool(0.15) {
                    1.0
                } else {
                    0.0
                }
            })
            .collect();
        let planted = (a.iter().sum::<f64>() - b.iter().sum::<f64>()) / a.len() as f64;
        let boot = Paired::new(&users, RESAMPLES, SEED).unwrap();
        let i = boot.interval(&a, &b).unwrap();
        assert!((i.diff - planted).abs() < 1e-12);
        assert!(i.lo <= planted && planted <= i.hi, "{i:?}");
        assert!(i.excludes_zero(), "{i:?}");
        // B − A is the mirror image.
        let m = boot.interval(&b, &a).unwrap();
        assert!(
            (m.lo + i.hi).abs() < 1e-12 && (m.hi + i.lo).abs() < 1e-12,
            "{m:?}"
        );
    }

    #[test]
    fn no_difference_gives_an_interval_around_zero() {
        let (users, b) = users_and_b(3);
        let boot = Paired::new(&users, RESAMPLES, SEED).unwrap();
        let same = boot.interval(&b, &b).unwrap();
        assert_eq!(
            same,
            Interval {
                diff: 0.0,
                lo: 0.0,
                hi: 0.0
            }
        );
        assert!(!same.excludes_zero());
        // Another draw from the same distribution: a different row, no true difference.
        let (_, other) = users_and_b(4);
        let i = boot.interval(&other, &b).unwrap();
        assert!(i.lo < 0.0 && 0.0 < i.hi, "{i:?}");
        assert!(!i.excludes_zero());
    }

    #[test]
    fn the_same_seed_gives_the_same_interval() {
        let (users, b) = users_and_b(5);
        let (_, a) = users_and_b(6);
        let one = Paired::new(&users, 200, 9)
            .unwrap()
            .interval(&a, &b)
            .unwrap();
        assert_eq!(
            one,
            Paired::new(&users, 200, 9)
                .unwrap()
                .interval(&a, &b)
                .unwrap()
        );
        assert_ne!(
            one,
            Paired::new(&users, 200, 10)
                .unwrap()
                .interval(&a, &b)
                .unwrap()
        );
    }

    #[test]
    fn users_are_resampled_whole() {
        // Two users whose cases interleave (as seeds pooled do): resamples can only be both
        // of one user's cases, one of each, or the other's, so Δ* takes three values.
        let users = [7u32, 9, 7, 9];
        let a = [1.0, 0.0, 1.0, 0.0];
        let b = [0.0; 4];
        let i = Paired::new(&users, RESAMPLES, SEED)
            .unwrap()
            .interval(&a, &b)
            .unwrap();
        assert_eq!((i.lo, i.diff, i.hi), (0.0, 0.5, 1.0));
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(Paired::new(&[], RESAMPLES, SEED).is_err());
        assert!(Paired::new(&[1], 0, SEED).is_err());
        let boot = Paired::new(&[1, 2], 10, SEED).unwrap();
        let err = boot.interval(&[1.0], &[0.0, 1.0]).unwrap_err();
        assert!(err.to_string().contains("2 cases"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_interval_contains_the_observed_difference(
            cases in proptest::collection::vec((0u32..30, 0.0f64..1.0, 0.0f64..1.0), 1..300),
        ) {
            let users: Vec<u32> = cases.iter().map(|c| c.0).collect();
            let a: Vec<f64> = cases.iter().map(|c| c.1).collect();
            let b: Vec<f64> = cases.iter().map(|c| c.2).collect();
            let i = Paired::new(&users, 400, SEED).unwrap().interval(&a, &b).unwrap();
            let observed = (a.iter().sum::<f64>() - b.iter().sum::<f64>()) / a.len() as f64;
            prop_assert!((i.diff - observed).abs() < 1e-9);
            prop_assert!(i.lo <= observed + 1e-12 && observed <= i.hi + 1e-12, "{:?}", i);
        }
    }
}
