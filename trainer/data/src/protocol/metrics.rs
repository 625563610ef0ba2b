//! Ranking metrics of paper §5.1.2 for one positive ranked against sampled negatives, and
//! the same metrics against the whole catalogue (full ranking).
//!
//! With `P` the 1-based rank of the positive: `HR@k = I(P ≤ k)`,
//! `NDCG@k = (2^{I(P ≤ k)} − 1) / log2(P + 1)`, `MRR = 1/P`. Ties are broken
//! **pessimistically**: every negative scoring at least as high as the positive ranks above
//! it, so a model that scores everything equal gets the worst rank, never the best.
//!
//! Sampled metrics can order models differently from the same metrics over every item
//! (Krichene & Rendle, KDD 2020), so the reports carry both: the paper's sampled [`METRICS`]
//! and the [`FULL_METRICS`] of the full ranking, each a [`Column`].

use serde::{Deserialize, Serialize};

/// The metrics reported, in the paper's Table 2 order.
pub const METRICS: [Metric; 6] = [
    Metric::Hr(1),
    Metric::Hr(5),
    Metric::Hr(10),
    Metric::Ndcg(5),
    Metric::Ndcg(10),
    Metric::Mrr,
];

/// The metrics of the full ranking: the positive against every item the user did not click
/// before it.
pub const FULL_METRICS: [Metric; 2] = [Metric::Hr(10), Metric::Ndcg(10)];

/// Which candidates the positive is ranked among.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ranking {
    /// The sampled negatives of the paper's protocol.
    Sampled,
    /// The whole catalogue.
    Full,
}

/// One reported column: a metric under a ranking.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Column {
    pub ranking: Ranking,
    pub metric: Metric,
}

/// Every reported column: the sampled [`METRICS`], then the [`FULL_METRICS`].
pub const COLUMNS: [Column; METRICS.len() + FULL_METRICS.len()] = {
    let mut columns = [Column {
        ranking: Ranking::Sampled,
        metric: Metric::Mrr,
    }; METRICS.len() + FULL_METRICS.len()];
    let mut j = 0;
    while j < METRICS.len() {
        columns[j].metric = METRICS[j];
        j += 1;
    }
    while j < columns.len() {
        columns[j] = Column {
            ranking: Ranking::Full,
            metric: FULL_METRICS[j - METRICS.len()],
        };
        j += 1;
    }
    columns
};

impl Column {
    /// The name used in results.json and the tables: `HR@10` (sampled), `full HR@10`.
    pub fn name(self) -> String {
        match self.ranking {
            Ranking::Sampled => self.metric.name(),
            Ranking::Full => format!("full {}", self.metric.name()),
        }
    }
}

/// One ranking metric.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Metric {
    Hr(usize),
    Ndcg(usize),
    Mrr,
}

impl Metric {
    /// The name used in results.json and the tables: `HR@10`, `NDCG@5`, `MRR`.
    pub fn name(self) -> String {
        match self {
            Metric::Hr(k) => format!("HR@{k}"),
            Metric::Ndcg(k) => format!("NDCG@{k}"),
            Metric::Mrr => "MRR".to_owned(),
        }
    }

    /// The metric's value for a positive at 0-based rank `rank`.
    pub fn at_rank(self, rank: usize) -> f64 {
        match self {
            Metric::Hr(k) => f64::from(u8::from(rank < k)),
            Metric::Ndcg(k) if rank < k => 1.0 / ((rank + 2) as f64).log2(),
            Metric::Ndcg(_) => 0.0,
            Metric::Mrr => 1.0 / (rank + 1) as f64,
        }
    }
}

/// The 0-based pessimistic rank of `scores[0]` (the positive) among `scores`: the number of
/// other entries scoring at least as high. A non-finite positive score ranks last.
pub fn pessimistic_rank(scores: &[f32]) -> usize {
    let Some((&positive, negatives)) = scores.split_first() else {
        return 0;
    };
    if !positive.is_finite() {
        return negatives.len();
    }
    // NaN negatives count as ranking above: pessimistic again.
    negatives
        .iter()
        .filter(|&&s| s >= positive || s.is_nan())
        .count()
}

/// The mean of `metric` over cases with the positive at 0-based `ranks`; NaN without cases.
pub fn mean_at(metric: Metric, ranks: &[u32]) -> f64 {
    let sum: f64 = ranks.iter().map(|&r| metric.at_rank(r as usize)).sum();
    sum / ranks.len() as f64
}

/// Sums of each metric over evaluated cases.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct MetricSums {
    pub cases: usize,
    pub sums: [f64; METRICS.len()],
}

impl MetricSums {
    /// Adds one case with the positive at 0-based `rank`.
    pub fn add_rank(&mut self, rank: usize) {
        self.cases += 1;
        for (sum, metric) in self.sums.iter_mut().zip(METRICS) {
            *sum += metric.at_rank(rank);
        }
    }

    /// The mean of each metric, in [`METRICS`] order.
    pub fn means(&self) -> [f64; METRICS.len()] {
        let n = self.cases.max(1) as f64;
        self.sums.map(|s| s / n)
    }
}

/// Mean and spread of a metric over seeds.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct MeanStd {
    pub mean: f64,
    /// Sample standard deviation (n − 1); 0 for a single seed.
    pub std: f64,
}

impl MeanStd {
    /// Mean and sample standard deviation of `values`.
    pub fn of(values: &[f64]) -> MeanStd {
        let n = values.len();
        if n == 0 {
            return MeanStd {
                mean: f64::NAN,
                std: f64::NAN,
            };
        }
        let mean = values.iter().sum::<f64>() / n as f64;
        let std = if n > 1 {
            (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64).sqrt()
        } else {
            0.0
        };
        MeanStd { mean, std }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const EPS: f64 = 1e-12;

    #[test]
    fn positive_ranked_first_scores_one_everywhere() {
        let rank = pessimistic_rank(&[0.9, 0.1, 0.5, 0.3]);
        assert_eq!(rank, 0);
        for m in METRICS {
            assert!((m.at_rank(rank) - 1.0).abs() < EPS, "{}", m.name());
        }
    }

    #[test]
    fn hand_computed_rank_three() {
        // Two negatives above the positive: P = 3.
        let rank = pessimistic_rank(&[0.5, 0.9, 0.7, 0.1, 0.2]);
        assert_eq!(rank, 2);
        assert_eq!(Metric::Hr(1).at_rank(rank), 0.0);
        assert_eq!(Metric::Hr(5).at_rank(rank), 1.0);
        assert!(
            (Metric::Ndcg(5).at_rank(rank) - 0.5).abs() < EPS,
            "1/log2(4) = 0.5"
        );
        assert!((Metric::Mrr.at_rank(rank) - 1.0 / 3.0).abs() < EPS);
    }

    #[test]
    fn ndcg_beyond_cutoff_is_zero() {
        assert_eq!(Metric::Ndcg(5).at_rank(5), 0.0);
        assert!((Metric::Ndcg(10).at_rank(5) - 1.0 / 7f64.log2()).abs() < EPS);
        assert!((Metric::Mrr.at_rank(99) - 0.01).abs() < EPS);
    }

    #[test]
    fn tie_breaking_is_pessimistic() {
        // One tie with the positive and one strictly above: rank 2, not 1 or 0.
        assert_eq!(pessimistic_rank(&[0.5, 0.5, 0.7, 0.1]), 2);
        // A constant scorer puts the positive last among 100: HR@1 = 0.
        let constant = [1.0f32; 100];
        assert_eq!(pessimistic_rank(&constant), 99);
        assert_eq!(Metric::Hr(10).at_rank(99), 0.0);
    }

    #[test]
    fn non_finite_scores_rank_pessimistically() {
        assert_eq!(pessimistic_rank(&[f32::NAN, 0.1, 0.2]), 2);
        assert_eq!(pessimistic_rank(&[0.5, f32::NAN, 0.1]), 1);
    }

    #[test]
    fn sums_average_per_case() {
        let mut sums = MetricSums::default();
        sums.add_rank(0);
        sums.add_rank(2);
        let means = sums.means();
        assert!((means[0] - 0.5).abs() < EPS, "HR@1");
        assert!((means[1] - 1.0).abs() < EPS, "HR@5");
        assert!((means[5] - (1.0 + 1.0 / 3.0) / 2.0).abs() < EPS, "MRR");
    }

    #[test]
    fn columns_are_the_sampled_metrics_then_the_full_ones() {
        let names: Vec<String> = COLUMNS.iter().map(|c| c.name()).collect();
        assert_eq!(
            names,
            [
                "HR@1",
                "HR@5",
                "HR@10",
                "NDCG@5",
                "NDCG@10",
                "MRR",
                "full HR@10",
                "full NDCG@10"
            ]
        );
    }

    #[test]
    fn mean_at_matches_the_sums() {
        let ranks = [0u32, 2, 7, 40];
        let mut sums = MetricSums::default();
        for r in ranks {
            sums.add_rank(r as usize);
        }
        for (j, m) in METRICS.into_iter().enumerate() {
            assert!(
                (mean_at(m, &ranks) - sums.means()[j]).abs() < EPS,
                "{}",
                m.name()
            );
        }
        assert!(mean_at(Metric::Mrr, &[]).is_nan());
    }

    #[test]
    fn mean_std_is_sample_std() {
        let s = MeanStd::of(&[1.0, 2.0, 3.0]);
        assert!((s.mean - 2.0).abs() < EPS);
        assert!((s.std - 1.0).abs() < EPS);
        assert_eq!(MeanStd::of(&[0.4]).std, 0.0);
    }

    proptest! {
        #[test]
        fn metrics_are_bounded_and_monotone(rank in 0usize..200) {
            for m in METRICS {
                let v = m.at_rank(rank);
                prop_assert!((0.0..=1.0).contains(&v));
                prop_assert!(m.at_rank(rank + 1) <= v);
            }
        }

        #[test]
        fn rank_counts_negatives_at_or_above(scores in proptest::collection::vec(-1.0f32..1.0, 1..120)) {
            let rank = pessimistic_rank(&scores);
            let expected = scores[1..].iter().filter(|&&s| s >= scores[0]).count();
            prop_assert_eq!(rank, expected);
        }
    }
}
