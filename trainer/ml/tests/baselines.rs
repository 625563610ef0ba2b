//! The paper's baselines (§5.1.3) against the evaluation protocol on small planted data: each
//! learns something real in a few epochs, and padding never changes a score.

mod planted;

use planted::{assert_beat_random, small};
use slowfast_data::protocol::sampler::{sample_cases, NegativePool, NEGATIVES};
use slowfast_data::protocol::{query, Scorer, View};
use slowfast_data::split::Split;
use slowfast_trainer::baselines::din_plus::{self, Start};
use slowfast_trainer::baselines::{Arch, Learned, Zoo, ZooConfig};
use slowfast_trainer::models::features::realtime_positives;
use slowfast_trainer::models::features::{
    positives, Batch, Moment, Phase, Positives, Row, Windows,
};
use slowfast_trainer::models::layers::bce_with_logits;
use slowfast_trainer::models::slowfast::{SlowFastNet, Variant};
use slowfast_trainer::models::train::TrainConfig;
use slowfast_trainer::models::{named_vars, ModelConfig};

/// A few epochs at a high learning rate, with a slow history of 20 clicks instead of 50 (SASRec's
/// self-attention, the costliest fit here, is quadratic in it).
fn quick() -> ZooConfig {
    let d = ZooConfig::default();
    ZooConfig {
        model: ModelConfig {
            windows: Windows {
                slow_history: 20,
                ..d.model.windows
            },
            ..d.model
        },
        rounds: 1,
        train: TrainConfig {
            max_epochs: 8,
            patience: 8,
            lr: 5e-3,
            max_valid: 60,
            ..d.train
        },
    }
}

/// Every learned baseline's architecture.
const LEARNED: [Arch; 5] = [
    Arch::Fm,
    Arch::NeuMf,
    Arch::Gru4Rec,
    Arch::Caser,
    Arch::SasRec,
];

/// [`quick`] with at most `epochs` epochs per fit.
fn quick_epochs(epochs: usize) -> ZooConfig {
    let q = quick();
    ZooConfig {
        train: TrainConfig {
            max_epochs: epochs,
            ..q.train
        },
        ..q
    }
}

/// `arch` with its parameters initialised from `seed`, untrained.
fn untrained(split: &Split, arch: Arch, seed: u64) -> Learned {
    Learned::init(split, &quick(), seed, arch.view(), |vb, s| {
        arch.build(vb, s)
    })
    .unwrap()
}

#[test]
fn every_baseline_beats_random_after_a_few_epochs() {
    let data = small();
    let mut zoo = Zoo::new(&data.split, 1, quick());
    let baselines = [
        "Caser",
        "FM+",
        "NeuMF+",
        "GRU4Rec+",
        "SASRec",
        "DIN+FM+",
        "DIN+NeuMF+",
        "DIN+GRU4Rec+",
    ];
    assert_beat_random(&data, &mut zoo, &baselines, NegativePool::default());
    let names: Vec<&str> = zoo.logs.iter().map(|(n, _)| n.as_str()).collect();
    assert!(
        names.contains(&"DIN+GRU4Rec+") && names.contains(&"SASRec"),
        "{names:?}"
    );
}

/// A user's scores must not depend on the other histories in the batch (which set how far
/// each window is padded).
#[test]
fn padding_does_not_change_a_score() {
    let data = small();
    let cases = sample_cases(&data.split, 2, NEGATIVES, NegativePool::default()).unwrap();
    let split = &data.split;
    let short = cases
        .iter()
        .min_by_key(|c| split.timelines[c.timeline].slow().len())
        .unwrap();
    let long = cases
        .iter()
        .max_by_key(|c| split.timelines[c.timeline].slow().len())
        .unwrap();
    for arch in LEARNED {
        let model = untrained(split, arch, 3);
        let view: View = model.view();
        let alone = model.score(&[query(split, short, view)]).unwrap();
        let padded = model
            .score(&[query(split, short, view), query(split, long, view)])
            .unwrap();
        let diff = alone
            .iter()
            .zip(&padded)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(diff < 1e-5, "{arch:?}: {diff}");
    }
}

/// One BCE step on 40 test queries (the positive labelled 1, its negatives 0) must give every
/// parameter of every baseline a non-zero gradient: a parameter without one never trains,
/// which is how SASRec once sat at popularity's level (candle-nn's fused layer norm has no
/// backward pass, so nothing before it learned).
#[test]
fn every_parameter_of_every_baseline_gets_a_gradient() {
    let data = small();
    let split = &data.split;
    let cases = sample_cases(split, 4, NEGATIVES, NegativePool::default()).unwrap();
    for arch in LEARNED {
        let model = untrained(split, arch, 5);
        let queries: Vec<_> = (cases.iter().take(40))
            .map(|c| query(split, c, model.view()))
            .collect();
        let moments: Vec<Moment<'_>> = queries.iter().map(Moment::from).collect();
        let rows: Vec<Row> = (queries.iter().enumerate())
            .flat_map(|(m, q)| {
                (q.candidates.iter().enumerate()).map(move |(k, &item)| Row {
                    moment: m,
                    item,
                    label: if k == 0 { 1.0 } else { 0.0 },
                })
            })
            .collect();
        let device = candle_core::Device::Cpu;
        let batch = Batch::new(&moments, &rows, model.net.needs(), model.windows, &device).unwrap();
        let loss = bce_with_logits(&model.net.logits(&batch).unwrap(), &batch.labels).unwrap();
        let grads = loss.backward().unwrap();
        for (name, var) in named_vars(&model.varmap, &[]) {
            let largest = grads.get(var.as_tensor()).map(|g| {
                g.abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
            });
            assert!(
                largest.is_some_and(|g| g > 0.0),
                "{arch:?}: {name} gets no gradient ({largest:?})"
            );
        }
    }
}

/// The vanilla combinations on the fast phase do not start from a stand-alone `X` (which is
/// never trained for them); the table's `DIN+X` starts every item table of `X` as DIN's
/// embeddings, `DIN+X (from scratch)` none.
#[test]
fn combinations_start_x_as_named() {
    let data = small();
    let config = quick_epochs(0);
    let din = std::sync::Arc::new(
        SlowFastNet::new(Variant::Din, data.split.num_items, config.model, 3).unwrap(),
    );
    let e = din.shared.item_emb.clone();
    let item_tables = |x: &Learned| -> Vec<(String, f32)> {
        named_vars(&x.varmap, &["gru4rec."])
            .into_iter()
            .filter(|(n, _)| n.ends_with("item_emb") || n.ends_with("out_emb"))
            .map(|(n, v)| {
                let diff = (v.as_tensor() - &e).unwrap().abs().unwrap();
                (n, diff.max_all().unwrap().to_scalar::<f32>().unwrap())
            })
            .collect()
    };
    let started = |start| {
        din_plus::train(
            &data.split,
            din.clone(),
            Arch::Gru4Rec,
            start,
            None,
            &config,
            3,
        )
    };
    let with_e = item_tables(&started(Start::DinEmbeddings).unwrap());
    assert_eq!(
        with_e.len(),
        2,
        "GRU4Rec's input and output item tables: {with_e:?}"
    );
    assert!(with_e.iter().all(|(_, d)| *d == 0.0), "{with_e:?}");
    let fresh = item_tables(&started(Start::Scratch).unwrap());
    assert!(fresh.iter().all(|(_, d)| *d > 0.0), "{fresh:?}");
    let Err(err) = started(Start::EveryClick) else {
        panic!("DIN+GRU4Rec+ without its trained GRU4Rec+")
    };
    let err = err.to_string();
    assert!(
        err.contains("needs the trained stand-alone GRU4Rec+"),
        "{err}"
    );

    // Through the zoo: the fast-phase combinations train DIN and themselves, never GRU4Rec
    // alone; `DIN+GRU4Rec+` trains `GRU4Rec+` first and reuses DIN.
    let mut zoo = Zoo::new(&data.split, 1, config);
    zoo.scorer("DIN+GRU4Rec").unwrap();
    zoo.scorer("DIN+GRU4Rec (from scratch)").unwrap();
    let names: Vec<&str> = zoo.logs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["DIN", "DIN+GRU4Rec", "DIN+GRU4Rec (from scratch)"]);
    zoo.scorer("DIN+GRU4Rec+").unwrap();
    let names: Vec<&str> = zoo.logs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[3..], ["GRU4Rec+", "DIN+GRU4Rec+"]);
}

/// The table's fast-side `X` learns from the fast phase's clicks only, the ones MC²-SF's fast
/// component learns from: each epoch trains on exactly those positives (and their negatives),
/// where `X+` trains on every click of both phases; through the zoo each trains itself and
/// nothing else. A slow-side baseline has no every-click row.
#[test]
fn fast_side_baselines_train_on_the_fast_phase_and_x_plus_on_every_click() {
    let data = small();
    let config = quick_epochs(1);
    let per_epoch = |model: &Learned| -> f64 {
        let (_, curve) = &model.log.fits[0];
        (curve[0].samples_per_s * curve[0].train_s).round()
    };
    let rows = |positives: &Positives<'_>| {
        let (train, _) = positives.carve(config.train.max_valid);
        (train.len() * (1 + config.train.negatives)) as f64
    };
    let fast = rows(&positives(&data.split, Phase::Fast));
    let every = rows(&realtime_positives(&data.split));
    assert!(fast > 0.0 && fast < every / 2.0, "{fast} vs {every}");
    let table = Learned::train(&data.split, Arch::Fm, &config, 1).unwrap();
    assert_eq!(per_epoch(&table), fast);
    assert_eq!(table.log.fits[0].0, "FM");
    let plus = Learned::train_every_click(&data.split, Arch::Fm, &config, 1).unwrap();
    assert_eq!(per_epoch(&plus), every);
    assert_eq!(plus.log.fits[0].0, "FM+");

    let mut zoo = Zoo::new(&data.split, 1, config);
    zoo.scorer("GRU4Rec").unwrap();
    zoo.scorer("GRU4Rec+").unwrap();
    let names: Vec<&str> = zoo.logs.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["GRU4Rec", "GRU4Rec+"]);

    let Err(err) = Learned::train_every_click(&data.split, Arch::Caser, &config, 1) else {
        panic!("Caser trained on every click")
    };
    assert!(err.to_string().contains("slow-side"), "{err}");
}
