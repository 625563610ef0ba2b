//! The demo's path end to end at a small size: train → export → verify → serve → phones →
//! sync → nightly retraining from the uploads → model update by conditional GET, for all four
//! arms.

use slowfast_core::manifest::Manifest;
use slowfast_core::sync::{Conditional, SyncClient};
use slowfast_trainer::checkpoint::Vocabulary;
use slowfast_trainer::demo::{self, arms::Arm, DemoConfig};
use slowfast_trainer::export::bundle::{write_bundle, Provenance};
use slowfast_trainer::export::verify::read_verified;
use slowfast_trainer::models::features::Windows;
use slowfast_trainer::models::slowfast::{SlowFast, Variant};
use slowfast_trainer::models::train::TrainConfig;
use slowfast_trainer::models::ModelConfig;
use slowfast_trainer::retrain::NextRound;
use slowfast_trainer::serve::auth::{unix_now, Secret};
use slowfast_trainer::serve::{Running, ServeConfig};
use slowfast_trainer::synth::SynthConfig;

fn small(out: &std::path::Path) -> DemoConfig {
    DemoConfig {
        out: out.to_path_buf(),
        synth: SynthConfig {
            users: 100,
            items: 1000,
            ..SynthConfig::default()
        },
        devices: 16,
        days: 2,
        visits_per_day: 3,
        feed_k: 20,
        model: ModelConfig {
            dim: 8,
            hidden: [16, 8],
            windows: Windows {
                slow_history: 10,
                clicks: 5,
                exposures: 5,
            },
        },
        train: TrainConfig {
            max_epochs: 1,
            lr: 1e-2,
            max_valid: 50,
            ..TrainConfig::default()
        },
        rounds: 1,
        retrain: NextRound {
            rounds: 1,
            epochs: 2,
            lr: None,
        },
        sync_max_events: 15,
        threads: 2,
        arms: Arm::ALL.to_vec(),
    }
}

#[test]
fn demo_trains_serves_syncs_retrains_and_updates_every_arm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    let outcome = demo::run(&cfg).unwrap();

    let first = read_verified(&outcome.bundle)
        .unwrap()
        .manifest
        .model_version;
    assert_eq!(outcome.arms.len(), 4);
    for (arm, run) in &outcome.arms {
        let name = arm.name();
        assert!(run.imported > 0, "{name}: history imported");
        assert!(
            run.uploaded >= cfg.devices * cfg.visits_per_day * cfg.days,
            "{name}: the phones' exposures and clicks landed in the server's database: {run:?}"
        );
        assert_eq!(
            run.versions[0], first,
            "{name}: day 1 runs the initial bundle"
        );
        assert_eq!(
            run.phones_current,
            vec![cfg.devices; cfg.days],
            "{name}: every phone runs the server's model each day"
        );
        let day2 = dir.path().join(arm.slug()).join("server/day1/bundle");
        let manifest = read_verified(&day2).unwrap().manifest;
        assert_eq!(manifest.model_version, run.versions[1]);
    }

    // A next round whose weights validate worse than the current ones keeps them (early
    // stopping starts from the current weights), so an arm may keep its version; the runs are
    // seeded, and here most arms ship a new one, which every phone then runs.
    let retrained = outcome
        .arms
        .iter()
        .filter(|(_, run)| run.versions[1] != run.versions[0])
        .count();
    assert!(retrained >= 2, "{:?}", outcome.arms);

    let online = &outcome.online;
    assert_eq!(online.days_rows.len(), 4 * cfg.days);
    assert_eq!(online.overall.len(), 4);
    for r in online.days_rows.iter().chain(&online.overall) {
        assert_eq!(
            r.visits,
            cfg.devices * cfg.visits_per_day * if r.day == 0 { cfg.days } else { 1 }
        );
        assert!(
            r.shown > 0 && r.shown <= 10 * r.visits,
            "{r:?}: feeds show at most 10 items"
        );
        for v in [r.ctr10, r.ndcg10] {
            assert!(v.is_finite() && (0.0..=1.0).contains(&v), "{r:?}");
        }
    }
    for name in ["online.json", "online.md", "online.svg"] {
        assert!(dir.path().join(name).is_file(), "{name} written");
    }

    // Run again into the same directory: the arms start afresh, not from the first run's
    // databases, so every row repeats.
    let again = demo::run(&cfg).unwrap();
    assert_eq!(
        serde_json::to_value(&again.online).unwrap(),
        serde_json::to_value(online).unwrap()
    );
}

/// A bundle of seeded random weights over 20 items.
fn random_bundle(dir: &std::path::Path, seed: u64) -> String {
    let model = SlowFast::new(
        Variant::Mc2sf,
        20,
        ModelConfig {
            dim: 8,
            hidden: [16, 8],
            windows: Windows {
                slow_history: 4,
                clicks: 4,
                exposures: 4,
            },
        },
        seed,
    )
    .unwrap();
    let from = Provenance {
        trained_on: "test".into(),
        commit: "test".into(),
    };
    write_bundle(&model, &Vocabulary::synthetic(20), &from, dir)
        .unwrap()
        .model_version
}

#[test]
fn a_reloaded_bundle_gets_a_new_etag_and_its_own_etag_gets_a_304() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    let (version_a, version_b) = (random_bundle(&a, 3), random_bundle(&b, 4));
    assert_ne!(version_a, version_b);
    let secret = Secret::new("0123456789abcdef0123456789abcdef").unwrap();
    let server = Running::start(
        &ServeConfig {
            bundle: a,
            db: dir.path().join("sync.db").display().to_string(),
            listen: ([127, 0, 0, 1], 0).into(),
            secret: secret.clone(),
            pool: 10,
        },
        1,
    )
    .unwrap();
    let token = secret.mint("u1", unix_now() + 60).unwrap();
    let client = SyncClient::new(&server.url(), &token, 5_000);
    let manifest = |etag: Option<&str>| match client.model_file(None, etag).unwrap() {
        Conditional::Fetched { bytes, etag } => Some((
            Manifest::from_json(&bytes).unwrap().model_version,
            etag.unwrap(),
        )),
        Conditional::NotModified => None,
    };
    let (v, etag_a) = manifest(None).unwrap();
    assert_eq!(v, version_a);
    assert_eq!(manifest(Some(&etag_a)), None, "same ETag: 304");

    assert_eq!(server.state.reload(&b).unwrap(), version_b);
    let (v, etag_b) = manifest(Some(&etag_a)).expect("the old ETag gets the new bundle");
    assert_eq!(v, version_b);
    assert_ne!(etag_b, etag_a);
    assert_eq!(manifest(Some(&etag_b)), None, "same ETag: 304");

    std::fs::write(b.join("fast.onnx"), b"tampered").unwrap();
    assert!(
        server.state.reload(&b).is_err(),
        "a broken bundle is refused"
    );
    assert_eq!(manifest(Some(&etag_b)), None, "and the served one kept");
    server.stop().unwrap();
}
