//! The foundation end to end on the synthetic default: generate → write CSV → read → filter →
//! split → evaluate the harness baselines with the paper's protocol.

use slowfast_data::protocol::sampler::NegativePool;
use slowfast_data::synth::{generate, SynthConfig};
use slowfast_data::{Dataset, Format, ReadOptions};
use slowfast_trainer::baselines::ZooConfig;
use slowfast_trainer::eval::report::Results;
use slowfast_trainer::eval::{full, runner};
use slowfast_trainer::models::train::TrainConfig;

#[test]
fn pop_beats_random_and_random_sits_at_chance_on_the_synthetic_default() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synthetic.csv.gz");
    let log = generate(&SynthConfig::default()).unwrap();
    slowfast_data::write(&log, &path).unwrap();
    let data = Dataset::load(&path, Format::Csv, ReadOptions::default()).unwrap();
    let after = data.filter.after;
    let kept = (after.clicks + after.exposures) as f64 / log.events.len() as f64;
    assert!(
        kept > 0.98,
        "the default survives the 20-core filter nearly whole: {kept}"
    );

    let models = ["Random".to_owned(), "Pop".to_owned()];
    let results = runner::run(&data, &models, &[1, 2, 3], Default::default()).unwrap();
    let (parallel, _) = runner::run_with_curves(
        &data,
        &models,
        &[1, 2, 3],
        Default::default(),
        full::DEFAULT_USERS,
        3,
        None,
    )
    .unwrap();
    assert_eq!(
        serde_json::to_value(&parallel.models).unwrap(),
        serde_json::to_value(&results.models).unwrap(),
        "seeds evaluated on three threads give the serial run's results"
    );
    let random = results.models["Random"]["HR@10"];
    assert!(
        (random.mean - 0.10).abs() < 0.015,
        "Random HR@10 = {random:?}"
    );
    // Pop beats Random by more than three spreads plus `margin` on every metric.
    let pop_clears = |results: &Results, margin: f64, pool: &str| {
        for k in ["HR@1", "HR@10", "NDCG@10", "MRR"] {
            let (pop, random) = (results.models["Pop"][k], results.models["Random"][k]);
            assert!(
                pop.mean > random.mean + 3.0 * (pop.std + random.std) + margin,
                "{k}, {pool}: Pop {pop:?} vs Random {random:?}"
            );
        }
    };
    // Against the default pool (items only shown are eligible negatives, and the logging
    // policy shows popular items) popularity still beats chance by more than three spreads.
    pop_clears(&results, 0.0, "default pool");
    // Against the paper's pool (never-shown items only) it also clears 0.02 on every metric.
    let paper = ZooConfig {
        train: TrainConfig {
            negative_pool: NegativePool::NotInteracted,
            ..TrainConfig::default()
        },
        ..ZooConfig::default()
    };
    let paper_results = runner::run(&data, &models, &[1, 2, 3], paper).unwrap();
    pop_clears(&paper_results, 0.02, "paper's pool");
}

#[test]
fn a_stopped_evaluation_resumes_from_its_finished_seeds() {
    use slowfast_trainer::eval::resume::SeedStore;

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("synthetic.csv.gz");
    slowfast_data::write(&generate(&SynthConfig::default()).unwrap(), &path).unwrap();
    let data = Dataset::load(&path, Format::Csv, ReadOptions::default()).unwrap();
    let models = ["Random".to_owned(), "Pop".to_owned()];
    let config = ZooConfig::default();
    let out = dir.path().join("eval");
    let store = SeedStore::new(&out, &data, &models, &config, 50);
    let (first, _) =
        runner::run_with_curves(&data, &models, &[1, 2], config, 50, 2, Some(&store)).unwrap();
    let saved = out.join("seeds/seed-2.json");
    assert!(saved.exists() && out.join("seeds/seed-1.json").exists());

    // A re-run reads seed 2 from its file instead of evaluating it again: a value changed in
    // the file shows up in the results.
    let mut record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&saved).unwrap()).unwrap();
    let pop = &mut record["outcome"]["ranks"][1]["sampled"]; // Pop's ranks for seed 2
    *pop = serde_json::json!(vec![0; pop.as_array().unwrap().len()]);
    std::fs::write(&saved, serde_json::to_vec(&record).unwrap()).unwrap();
    let (resumed, _) =
        runner::run_with_curves(&data, &models, &[1, 2], config, 50, 1, Some(&store)).unwrap();
    let hr1 = |r: &slowfast_trainer::eval::report::Results| r.models["Pop"]["HR@1"].mean;
    assert!(hr1(&resumed) > hr1(&first));
    assert_eq!(
        resumed.models["Random"]["HR@10"].mean,
        first.models["Random"]["HR@10"].mean
    );
}
