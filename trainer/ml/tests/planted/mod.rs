//! Small synthetic data sets with planted signals, and the learned-beats-Random check the
//! trainer's integration tests share.

use slowfast_data::protocol::evaluate;
use slowfast_data::protocol::metrics::{Metric, METRICS};
use slowfast_data::protocol::sampler::{sample_cases, NegativePool, NEGATIVES};
use slowfast_data::synth::{generate, SynthConfig};
use slowfast_data::Dataset;
use slowfast_trainer::baselines::Zoo;

/// The synthetic default's world at `users` × `items`, with `clicks` clicks per user.
pub fn synthetic(users: usize, items: usize, clicks: std::ops::RangeInclusive<usize>) -> Dataset {
    let cfg = SynthConfig {
        users,
        items,
        min_clicks_per_user: *clicks.start(),
        max_clicks_per_user: *clicks.end(),
        ..SynthConfig::default()
    };
    Dataset::from_log("synthetic-small", generate(&cfg).unwrap()).unwrap()
}

/// 120 users × 400 items, 40–60 clicks each: big enough to learn from in a few epochs.
pub fn small() -> Dataset {
    synthetic(120, 400, 40..=60)
}

/// Trains each of `models` in `zoo` and asserts that its test HR@10 (sampler seed 1, negatives
/// from `pool`) beats Random's by more than 0.05.
pub fn assert_beat_random(data: &Dataset, zoo: &mut Zoo<'_>, models: &[&str], pool: NegativePool) {
    let cases = sample_cases(&data.split, 1, NEGATIVES, pool).unwrap();
    let at = METRICS.iter().position(|m| *m == Metric::Hr(10)).unwrap();
    let mut hr10 = |name: &str| {
        let model = zoo.scorer(name).unwrap();
        evaluate(&data.split, &cases, model.as_ref(), |_| {})
            .unwrap()
            .means()[at]
    };
    let random = hr10("Random");
    for name in models {
        let learned = hr10(name);
        assert!(
            learned > random + 0.05,
            "{name} HR@10 {learned} vs Random {random}; curves {:?}",
            zoo.logs.last()
        );
    }
}
