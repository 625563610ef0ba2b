//! The demo's path end to end at a small size: train → export → verify → serve → phones →
//! sync → nightly retraining from the uploads, with the day's new items added to the
//! vocabulary → model update by conditional GET, for all four arms and two seeds.

use slowfast_core::manifest::Manifest;
use slowfast_core::sync::{Conditional, SyncClient};
use slowfast_core::wire::FeedResponse;
use slowfast_core::{Cancel, Config, SlowFast as Engine};
use slowfast_data::synth::{Dynamics, SynthConfig};
use slowfast_feed::retrieval::Retrieval;
use slowfast_online::demo::{self, DemoConfig};
use slowfast_online::retrain::{export_verified, NextRound};
use slowfast_server::auth::{unix_now, Secret};
use slowfast_server::{Running, ServeConfig};
use slowfast_trainer::arms::Arm;
use slowfast_trainer::checkpoint::Vocabulary;
use slowfast_trainer::checkpoint::{Checkpoint, CheckpointConfig, NewItem, FORMAT_VERSION};
use slowfast_trainer::export::bundle::{write_bundle, Provenance};
use slowfast_trainer::export::verify::read_verified;
use slowfast_trainer::models::features::Windows;
use slowfast_trainer::models::slowfast::{SlowFastNet, Variant};
use slowfast_trainer::models::train::TrainConfig;
use slowfast_trainer::models::ModelConfig;

fn small(out: &std::path::Path) -> DemoConfig {
    DemoConfig {
        out: out.to_path_buf(),
        synth: SynthConfig {
            users: 100,
            items: 1000,
            ..SynthConfig::default()
        },
        dynamics: Dynamics {
            arrivals_per_day: 30,
            ..Dynamics::live_feed(1000)
        },
        seeds: 2,
        devices: 16,
        days: 2,
        visits_per_day: 3,
        feed_k: 20,
        retrieval: Retrieval::default(),
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
            ..DemoConfig::default().train
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

/// One seed's checks: the history was imported and the uploads landed, day 1 ran the initial
/// bundle and day 2 the night's, every phone updated, and the day's new items were not served
/// on day 1 and were served (and re-ranked by the device arms) on day 2.
fn check_seed(cfg: &DemoConfig, seed: &demo::SeedOutcome) {
    let first = read_verified(&seed.bundle).unwrap().manifest.model_version;
    assert_eq!(seed.arms.len(), 4);
    for (arm, run) in &seed.arms {
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
        // The night trained the device model on what the phones showed: the fast fit's
        // epochs ranked held-out clicks within their uploaded impressions (the slow fit, whose
        // moments have no real-time history, on sampled items).
        let night = seed.dir.join(arm.slug()).join("server/day1/checkpoint");
        let ckpt: serde_json::Value =
            serde_json::from_slice(&std::fs::read(night.join("checkpoint.json")).unwrap()).unwrap();
        assert_eq!(ckpt["train"]["impressions"], cfg.train.impressions);
        let fit = |name: &str| -> Vec<serde_json::Value> {
            let fits = ckpt["log"]["fits"].as_array().unwrap();
            let fit = fits.iter().find(|f| f[0] == name);
            fit.unwrap_or_else(|| panic!("{name}: no {name} in {fits:?}"))[1]
                .as_array()
                .unwrap()
                .clone()
        };
        let fast = fit("fast round 2");
        assert!(!fast.is_empty() && fast.iter().all(|e| e["validation"] == "impressions"));
        let slow = fit("slow round 2");
        assert!(
            slow.iter().all(|e| e.get("validation").is_none()),
            "{slow:?}"
        );
        let day2 = seed.dir.join(arm.slug()).join("server/day1/bundle");
        let manifest = read_verified(&day2).unwrap().manifest;
        assert_eq!(manifest.model_version, run.versions[1]);
        let arrivals = cfg.dynamics.arrivals_per_day;
        assert_eq!(
            run.vocabulary[1],
            run.vocabulary[0] + arrivals,
            "{name}: the night added the day's new items: {run:?}"
        );
        assert_eq!(
            (run.new_in_feeds[0], run.new_shown[0]),
            (0, 0),
            "{name}: no new item is served before the nightly round: {run:?}"
        );
        assert!(
            run.new_in_feeds[1] >= cfg.devices * cfg.visits_per_day,
            "{name}: day 2's feeds carry new items (a tenth of each feed): {run:?}"
        );
    }
    // A device arm re-ranks the whole feed, new items included, and shows some of them.
    let shown: usize = (seed.arms.iter())
        .filter(|(arm, _)| *arm != Arm::SlowOnly)
        .map(|(_, run)| run.new_shown[1])
        .sum();
    assert!(shown > 0, "{:?}", seed.arms);
    // A next round whose weights validate worse than the current ones keeps them (early
    // stopping starts from the current weights); with new items the vocabulary, and so the
    // version, changes every night.
    for (_, run) in &seed.arms {
        assert_ne!(run.versions[1], run.versions[0], "{run:?}");
    }
}

#[test]
fn demo_trains_serves_syncs_retrains_and_updates_every_arm() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small(dir.path());
    let outcome = demo::run(&cfg).unwrap();
    assert_eq!(outcome.seeds.len(), 2);
    for seed in &outcome.seeds {
        check_seed(&cfg, seed);
    }

    let online = &outcome.online;
    assert_eq!(online.runs.len(), 2);
    assert_eq!(online.summary.len(), 4 * (cfg.days + 1));
    for run in &online.runs {
        assert_eq!(run.days_rows.len(), 4 * cfg.days);
        assert_eq!(run.overall.len(), 4);
        for r in run.days_rows.iter().chain(&run.overall) {
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
    }
    for s in &online.summary {
        assert_eq!(s.lift.is_none(), s.arm == Arm::SlowOnly.name(), "{s:?}");
        if let Some(l) = s.lift {
            assert!(l.lo <= l.lift && l.lift <= l.hi, "{s:?}");
        }
    }
    assert_eq!(online.verdicts.len(), 3, "{:?}", online.verdicts);
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

/// The small model of the bundles below.
fn tiny() -> ModelConfig {
    ModelConfig {
        dim: 8,
        hidden: [16, 8],
        windows: Windows {
            slow_history: 4,
            clicks: 4,
            exposures: 4,
        },
    }
}

/// A bundle of seeded random weights over 20 items.
fn random_bundle(dir: &std::path::Path, seed: u64) -> String {
    let model = SlowFastNet::new(Variant::Mc2sf, 20, tiny(), seed).unwrap();
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
            retrieval: Retrieval {
                pool: 10,
                ..Retrieval::default()
            },
            connections: Default::default(),
            rate_limit: None,
        },
        1,
    )
    .unwrap();
    let token = secret.mint("u1", unix_now() + 60).unwrap();
    let client = SyncClient::new(&server.url(), &token, 5_000).unwrap();
    let manifest =
        |etag: Option<&str>| match client.model_file(None, etag, &Cancel::default()).unwrap() {
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

/// A checkpoint of seeded random weights over items `i0..i{items}` (no training).
fn untrained(items: usize) -> Checkpoint {
    Checkpoint::init(CheckpointConfig {
        format_version: FORMAT_VERSION,
        variant: Variant::Mc2sf,
        model: tiny(),
        train: TrainConfig::default(),
        seed: 3,
        rounds: 1,
        round: 1,
        dataset: "test".into(),
        commit: "test".into(),
        items: Vocabulary {
            ids: (0..items).map(|i| format!("i{i}")).collect(),
            popularity: vec![1; items],
            added: 0,
        },
        log: Default::default(),
    })
    .unwrap()
}

#[test]
fn a_new_item_is_served_after_the_vocabulary_grows_and_the_device_reranks_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut ckpt = untrained(30);
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    export_verified(&ckpt, &a, 1).unwrap();
    let secret = Secret::new("0123456789abcdef0123456789abcdef").unwrap();
    let server = Running::start(
        &ServeConfig {
            bundle: a.clone(),
            db: dir.path().join("sync.db").display().to_string(),
            listen: ([127, 0, 0, 1], 0).into(),
            secret: secret.clone(),
            retrieval: Retrieval {
                pool: 30,
                ..Retrieval::default()
            },
            connections: Default::default(),
            rate_limit: None,
        },
        1,
    )
    .unwrap();
    let mut config = Config::new(
        dir.path().join("phone"),
        server.url(),
        secret.mint("u1", unix_now() + 600).unwrap(),
        "u1".to_string(),
    );
    config.initial_bundle = Some(a);
    let phone = Engine::open(config).unwrap();
    let new_ids = ["i30", "i31"];
    let in_feed = |feed: &FeedResponse, id: &str| feed.items.iter().any(|i| i.item == id);

    // Before the nightly round the server has no embedding for the new items: never served.
    let feed = phone.fetch_feed(20, &Cancel::default()).unwrap();
    assert!(new_ids.iter().all(|id| !in_feed(&feed, id)));
    phone.record_click("i2", 1_000).unwrap();

    // The nightly round: the new items join the vocabulary; the server swaps the bundle in.
    let added = ckpt
        .extend_items(&new_ids.map(|id| NewItem {
            id: id.into(),
            like: vec!["i2".into(), "i5".into()],
        }))
        .unwrap();
    assert_eq!(added, 2);
    let manifest = export_verified(&ckpt, &b, 1).unwrap();
    assert_eq!(server.state.reload(&b).unwrap(), manifest.model_version);
    assert_eq!(server.state.model().bundle.items.len(), 32);

    // The device takes the bundle of the larger vocabulary; the next feed keeps a tenth of
    // its places for the new (unproven) items, and the device re-ranks them with the rest.
    assert!(phone.update_model(&Cancel::default()).unwrap());
    assert_eq!(phone.model_version(), Some(manifest.model_version));
    let feed = phone.fetch_feed(20, &Cancel::default()).unwrap();
    assert!(
        new_ids.iter().all(|id| in_feed(&feed, id)),
        "{:?}",
        feed.items
    );
    let scored = phone.rerank(&feed).unwrap();
    assert_eq!(scored.len(), feed.items.len());
    for id in new_ids {
        let s = scored.iter().find(|s| s.item == id).unwrap();
        assert!(s.score.is_finite() && s.slow_score.is_finite(), "{s:?}");
    }
    phone.record_click("i30", 2_000).unwrap();
    phone.upload_pending(&Cancel::default()).unwrap();
    drop(phone);
    server.stop().unwrap();
}
