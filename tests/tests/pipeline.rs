//! The foundation end to end on the synthetic default: generate → write CSV → read → filter →
//! split → evaluate the harness baselines with the paper's protocol.

use slowfast_trainer::data::{csv, Dataset, Format, ReadOptions};
use slowfast_trainer::eval::runner;
use slowfast_trainer::synth::{generate, SynthConfig};

#[test]
fn pop_beats_random_and_random_sits_at_chance_on_the_synthetic_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synthetic.csv.gz");
    let log = generate(&SynthConfig::default()).unwrap();
    csv::write(&log, &path).unwrap();
    let data = Dataset::load(&path, Format::Csv, ReadOptions::default()).unwrap();
    let kept = data.log.events.len() as f64 / log.events.len() as f64;
    assert!(
        kept > 0.98,
        "the default survives the 20-core filter nearly whole: {kept}"
    );

    let models = ["Random".to_owned(), "Pop".to_owned()];
    let results = runner::run(&data, &models, &[1, 2, 3], Default::default()).unwrap();
    let metric = |m: &str, k: &str| results.models[m][k];
    let random = metric("Random", "HR@10");
    assert!(
        (random.mean - 0.10).abs() < 0.015,
        "Random HR@10 = {random:?}"
    );
    for k in ["HR@1", "HR@10", "NDCG@10", "MRR"] {
        let (pop, random) = (metric("Pop", k), metric("Random", k));
        assert!(
            pop.mean > random.mean + 3.0 * (pop.std + random.std) + 0.02,
            "{k}: Pop {pop:?} vs Random {random:?}"
        );
    }
}
