//! The A/B statistics of the online comparison: per arm and day, the relative lift of CTR@10
//! over the control arm (slow only) with a 95 % paired bootstrap interval over users.
//!
//! The unit is one simulated user of one seed: every arm runs the same users of a seed from
//! the same state with the same random draws, so a user's clicks and shows under the treatment
//! and under the control form a pair. The lift is `CTR_t / CTR_c − 1` with each CTR pooled
//! over the units (clicks over items shown, as CTR@10 is). Its interval resamples the users
//! with replacement within each seed (a stratified bootstrap: a seed's world, log and trained
//! model are fixed within it), [`RESAMPLES`] times, and takes the 2.5th and 97.5th
//! percentiles of the resampled lifts.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

/// Bootstrap resamples per interval.
pub const RESAMPLES: usize = 2000;

/// Clicks and items shown of one unit (a user of a seed) under one arm.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub clicks: u64,
    pub shown: u64,
}

/// A relative lift and its 95 % interval (fractions: 0.05 is +5 %).
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Lift {
    pub lift: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Lift {
    /// Whether the interval excludes no lift.
    pub fn significant(&self) -> bool {
        self.lo > 0.0 || self.hi < 0.0
    }

    /// `+x.x % [lo, hi]`.
    pub fn describe(&self) -> String {
        let pct = |x: f64| format!("{:+.1} %", 100.0 * x);
        format!("{} [{}, {}]", pct(self.lift), pct(self.lo), pct(self.hi))
    }
}

/// The units of one seed: per user, the treatment's and the control's counts.
pub type Stratum = Vec<(Counts, Counts)>;

/// The lift of the treatment's CTR over the control's, pooled over every unit of every
/// stratum, with its paired, stratified bootstrap interval (`resamples` draws from `seed`).
/// `None` when the control has no click or either arm showed nothing.
pub fn paired_lift(strata: &[Stratum], resamples: usize, seed: u64) -> Option<Lift> {
    let lift = |t: Counts, c: Counts| -> Option<f64> {
        (c.clicks > 0 && t.shown > 0 && c.shown > 0)
            .then(|| (t.clicks as f64 / t.shown as f64) / (c.clicks as f64 / c.shown as f64) - 1.0)
    };
    let total = |pick: &mut dyn FnMut(&Stratum) -> Vec<usize>| {
        let (mut t, mut c) = (Counts::default(), Counts::default());
        for s in strata {
            for j in pick(s) {
                let (a, b) = s[j];
                (t.clicks, t.shown) = (t.clicks + a.clicks, t.shown + a.shown);
                (c.clicks, c.shown) = (c.clicks + b.clicks, c.shown + b.shown);
            }
        }
        (t, c)
    };
    let (t, c) = total(&mut |s| (0..s.len()).collect());
    let point = lift(t, c)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draws: Vec<f64> = (0..resamples)
        .filter_map(|_| {
            let (t, c) =
                total(&mut |s| (0..s.len()).map(|_| rng.random_range(0..s.len())).collect());
            lift(t, c)
        })
        .collect();
    if draws.is_empty() {
        return Some(Lift {
            lift: point,
            lo: point,
            hi: point,
        });
    }
    draws.sort_by(f64::total_cmp);
    let at = |p: f64| draws[((draws.len() - 1) as f64 * p).round() as usize];
    Some(Lift {
        lift: point,
        lo: at(0.025),
        hi: at(0.975),
    })
}

/// Mean and sample standard deviation (0 for fewer than two values).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Spread {
    pub mean: f64,
    pub sd: f64,
}

impl Spread {
    pub fn of(values: &[f64]) -> Spread {
        let n = values.len() as f64;
        if values.is_empty() {
            return Spread::default();
        }
        let mean = values.iter().sum::<f64>() / n;
        let sd = if values.len() < 2 {
            0.0
        } else {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)).sqrt()
        };
        Spread { mean, sd }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(clicks: u64, shown: u64) -> Counts {
        Counts { clicks, shown }
    }

    #[test]
    fn a_uniform_lift_has_a_point_interval() {
        // Every user clicks 3 of 25 under the treatment and 2 of 20 under the control:
        // 0.12 / 0.10 − 1 = +20 %, whatever the resample.
        let s: Stratum = vec![(counts(3, 25), counts(2, 20)); 40];
        let l = paired_lift(&[s.clone(), s], 500, 1).unwrap();
        for v in [l.lift, l.lo, l.hi] {
            assert!((v - 0.2).abs() < 1e-12, "{l:?}");
        }
        assert!(l.significant());
        assert_eq!(l.describe(), "+20.0 % [+20.0 %, +20.0 %]");
    }

    #[test]
    fn the_interval_is_the_bootstrap_percentiles_of_the_pooled_lift() {
        // Half the users click 2 of 10 under both arms, half 1 of 10 under the treatment and
        // 2 of 10 under the control: pooled 0.15 / 0.20 − 1 = −25 %. A resample with k of the
        // n = 100 users from the second half has lift −k / (2n); k ~ Binomial(100, 1/2) has sd
        // 5, so the interval is about −25 % ± 1.96·5/200 = [−29.9 %, −20.1 %].
        let mut s: Stratum = vec![(counts(2, 10), counts(2, 10)); 50];
        s.extend(vec![(counts(1, 10), counts(2, 10)); 50]);
        let l = paired_lift(&[s], RESAMPLES, 7).unwrap();
        assert!((l.lift + 0.25).abs() < 1e-12, "{l:?}");
        assert!(
            (l.lo + 0.299).abs() < 0.01 && (l.hi + 0.201).abs() < 0.01,
            "{l:?}"
        );
        assert!(l.significant());
    }

    #[test]
    fn identical_arms_are_not_significant_and_pairing_removes_the_users_spread() {
        // Users differ a lot, but each clicks the same under both arms: lift 0, interval 0.
        let s: Stratum = (0..60)
            .map(|u| (counts(u % 7, 10), counts(u % 7, 10)))
            .collect();
        let l = paired_lift(&[s], 300, 3).unwrap();
        assert_eq!((l.lift, l.lo, l.hi), (0.0, 0.0, 0.0));
        assert!(!l.significant());
        // Noise around no effect: the interval covers 0.
        let s: Stratum = (0..60)
            .map(|u| (counts((u * 5) % 4, 10), counts((u * 3) % 4, 10)))
            .collect();
        let l = paired_lift(&[s], 1000, 3).unwrap();
        assert!(l.lo < 0.0 && l.hi > 0.0 && !l.significant(), "{l:?}");
        assert!(l.lo <= l.lift && l.lift <= l.hi);
    }

    #[test]
    fn no_control_click_has_no_lift_and_spreads_are_sample_ones() {
        assert_eq!(
            paired_lift(&[vec![(counts(1, 10), counts(0, 10))]], 10, 1),
            None
        );
        assert_eq!(paired_lift(&[], 10, 1), None);
        let s = Spread::of(&[1.0, 2.0, 3.0]);
        assert_eq!((s.mean, s.sd), (2.0, 1.0));
        assert_eq!(Spread::of(&[0.5]), Spread { mean: 0.5, sd: 0.0 });
    }
}
