//! The model bundle: ONNX validity (`onnx.checker`), parity of candle, ONNX Runtime and tract
//! (≤ 1e-5) for batch sizes 1 and 100 and empty/partial/full windows, refusals of tampered
//! bundles, and checkpoints that round-trip and resume.

/// Shared with the other test files; this one uses only the data sets.
#[allow(dead_code)]
mod planted;

use std::path::Path;

use prost::Message;
use slowfast_core::manifest::{
    sha256_hex, Dim, Manifest, FAST_ONNX, FORMAT_VERSION, MANIFEST_JSON, NEG_STEP_ONNX, SLOW_ONNX,
};
use slowfast_core::model::DeviceModel;
use slowfast_data::Dataset;
use slowfast_trainer::checkpoint::{model_version, Checkpoint, CheckpointConfig, Vocabulary};
use slowfast_trainer::export::bundle::{bundle_files, manifest, write_bundle, Provenance};
use slowfast_trainer::export::parity::{candle_outputs, max_abs_diff, random_cases, TOLERANCE};
use slowfast_trainer::export::runtimes::{Data, OrtModel, TractModel};
use slowfast_trainer::export::verify::{parity, read_verified};
use slowfast_trainer::models::features::Windows;
use slowfast_trainer::models::slowfast::{SlowFastNet, Variant};
use slowfast_trainer::models::train::TrainConfig;
use slowfast_trainer::models::ModelConfig;
use slowfast_trainer::TrainerError;

/// d = 32 and windows 50/50 as on the device; a short slow history keeps the test quick.
fn config() -> ModelConfig {
    ModelConfig {
        dim: 32,
        hidden: [64, 32],
        windows: Windows {
            slow_history: 30,
            clicks: 50,
            exposures: 50,
        },
    }
}

fn provenance() -> Provenance {
    Provenance {
        trained_on: "test".into(),
        commit: "test".into(),
    }
}

/// A bundle of seeded random weights written to a temporary directory.
fn random_bundle(seed: u64) -> (SlowFastNet, tempfile::TempDir) {
    let model = SlowFastNet::new(Variant::Mc2sf, 60, config(), seed).unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_bundle(
        &model,
        &Vocabulary::synthetic(60),
        &provenance(),
        dir.path(),
    )
    .unwrap();
    (model, dir)
}

#[test]
fn onnx_checker_accepts_the_three_files() {
    let (_, dir) = random_bundle(1);
    let script = "import sys, onnx\n\
        for p in sys.argv[1:]:\n    \
            m = onnx.load(p)\n    \
            onnx.checker.check_model(m, full_check=True)\n    \
            assert m.opset_import[0].version >= 17, p\n\
        print('ok')";
    let files: Vec<String> = [FAST_ONNX, NEG_STEP_ONNX, SLOW_ONNX]
        .iter()
        .map(|f| dir.path().join(f).display().to_string())
        .collect();
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .args(&files)
        .output()
        .expect("python3 is needed for onnx.checker");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("No module named 'onnx'"),
        "the Python `onnx` package is missing: pip install onnx"
    );
    assert!(out.status.success(), "onnx.checker failed: {stderr}");
}

#[test]
fn candle_ort_and_tract_agree_on_every_file_batch_size_and_window_fill() {
    let (model, dir) = random_bundle(3);
    let bundle = read_verified(dir.path()).unwrap();
    let report = parity(&bundle, Some(&model), 11).unwrap();
    for file in [FAST_ONNX, NEG_STEP_ONNX, SLOW_ONNX] {
        let rows: Vec<_> = report.rows.iter().filter(|r| r.file == file).collect();
        for n in ["=1", "=100"] {
            assert!(rows.iter().any(|r| r.case.contains(n)), "{file} N{n}");
        }
        if file != NEG_STEP_ONNX {
            for fill in ["empty", "partial", "full"] {
                assert!(rows.iter().any(|r| r.case.contains(fill)), "{file} {fill}");
            }
        }
        assert!(rows.iter().any(|r| r.case.starts_with("data")), "{file}");
    }
    for r in &report.rows {
        assert!(r.candle_ort.is_some() && r.candle_tract.is_some());
    }
    println!("{}", report.markdown());
    assert!(report.passes(), "max difference {}", report.max());
}

#[test]
fn padding_rows_do_not_change_any_output() {
    let model = SlowFastNet::new(Variant::Mc2sf, 60, config(), 5).unwrap();
    let files = bundle_files(&model, &Vocabulary::synthetic(60)).unwrap();
    let manifest = manifest(&model, &files, &provenance()).unwrap();
    let mut checked = 0;
    for case in random_cases(&manifest, 2) {
        if !case.label.contains("partial") {
            continue;
        }
        let mut noisy = case.clone();
        for f in &mut noisy.feeds {
            if let (Data::F32(v), Some(len)) = (&mut f.data, window_len(&case, &f.name)) {
                let d = f.shape[1];
                v[len * d..].iter_mut().for_each(|x| *x = 7.5);
            }
        }
        assert_ne!(case.feeds, noisy.feeds);
        let bytes = &files[case.file];
        let (mut ort, tract) = (
            OrtModel::new(bytes).unwrap(),
            TractModel::new(bytes).unwrap(),
        );
        for (runtime, clean, dirty) in [
            (
                "candle",
                candle_outputs(&model, &case).unwrap(),
                candle_outputs(&model, &noisy).unwrap(),
            ),
            (
                "ort",
                ort.run(&case.feeds).unwrap(),
                ort.run(&noisy.feeds).unwrap(),
            ),
            (
                "tract",
                tract.run(&case.feeds).unwrap(),
                tract.run(&noisy.feeds).unwrap(),
            ),
        ] {
            let diff = max_abs_diff(&clean, &dirty);
            assert!(diff <= TOLERANCE, "{runtime} {}: {diff}", case.label);
        }
        checked += 1;
    }
    assert_eq!(checked, 4, "fast and slow, N = 1 and 100");
}

fn window_len(case: &slowfast_trainer::export::parity::Case, name: &str) -> Option<usize> {
    case.feeds
        .iter()
        .find(|f| f.name == format!("{name}_len"))
        .and_then(|f| match &f.data {
            Data::I64(v) => v.first().map(|&l| l as usize),
            Data::F32(_) => None,
        })
}

#[test]
fn the_device_runner_scores_as_onnx_runtime() {
    let (_, dir) = random_bundle(4);
    let device = DeviceModel::load_dir(dir.path()).unwrap();
    let mut ort = OrtModel::new(&std::fs::read(dir.path().join(FAST_ONNX)).unwrap()).unwrap();
    let manifest = device.manifest().clone();
    for case in random_cases(&manifest, 9)
        .into_iter()
        .filter(|c| c.file == FAST_ONNX)
    {
        let get = |name: &str| -> Vec<f32> {
            let f = case.feeds.iter().find(|f| f.name == name).unwrap();
            let len = window_len(&case, name).map(|l| l * f.shape[1]);
            match &f.data {
                Data::F32(v) => v[..len.unwrap_or(v.len())].to_vec(),
                Data::I64(_) => unreachable!("only float inputs are read"),
            }
        };
        let scores = device
            .score(
                &get("clicks"),
                &get("exposures"),
                &get("e_i"),
                &get("r_t"),
                &get("r_n"),
            )
            .unwrap();
        let want = ort.run(&case.feeds).unwrap();
        let diff = max_abs_diff(&[scores], &want);
        assert!(diff <= TOLERANCE, "{}: {diff}", case.label);
    }
}

/// The refusal of `read_verified` and the device loader for a bundle changed by `tamper`.
fn refusal(tamper: impl FnOnce(&Path)) -> String {
    let (_, dir) = random_bundle(6);
    tamper(dir.path());
    let err = match read_verified(dir.path()) {
        Err(e) => e,
        Ok(_) => panic!("a tampered bundle was accepted"),
    };
    assert!(
        matches!(
            err,
            TrainerError::Core(slowfast_core::SlowFastError::Bundle { .. })
        ),
        "{err}"
    );
    err.to_string()
}

fn edit_manifest(dir: &Path, edit: impl FnOnce(&mut Manifest)) {
    let path = dir.join(MANIFEST_JSON);
    let mut m: Manifest = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    edit(&mut m);
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
}

#[test]
fn a_flipped_byte_is_refused() {
    let err = refusal(|dir| {
        let path = dir.join(SLOW_ONNX);
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0x80;
        std::fs::write(&path, bytes).unwrap();
    });
    assert!(
        err.contains("slow.onnx") && err.contains("SHA-256"),
        "{err}"
    );
}

#[test]
fn a_missing_file_is_refused() {
    let err = refusal(|dir| std::fs::remove_file(dir.join(NEG_STEP_ONNX)).unwrap());
    assert!(
        err.contains("neg_step.onnx") && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn a_wrong_shape_in_the_manifest_is_refused() {
    let err = refusal(|dir| {
        edit_manifest(dir, |m| {
            let out = &mut m.files.get_mut(SLOW_ONNX).unwrap().outputs[1];
            out.shape = vec![Dim::Dynamic("N".into()), Dim::Fixed(16)];
        })
    });
    assert!(
        err.contains("slow.onnx") && err.contains("r_t") && err.contains("[N, 16]"),
        "{err}"
    );
}

#[test]
fn a_newer_format_version_is_refused() {
    let err = refusal(|dir| edit_manifest(dir, |m| m.format_version = FORMAT_VERSION + 1));
    assert!(
        err.contains("manifest.json") && err.contains("newer"),
        "{err}"
    );
}

#[test]
fn a_nan_weight_is_refused_even_when_re_hashed() {
    let err = refusal(|dir| {
        let path = dir.join(FAST_ONNX);
        let bytes = std::fs::read(&path).unwrap();
        let mut model = tract_onnx::pb::ModelProto::decode(bytes.as_slice()).unwrap();
        let graph = model.graph.as_mut().unwrap();
        let weight = graph
            .initializer
            .iter_mut()
            .find(|t| t.name.starts_with("out_l1_w"))
            .unwrap();
        weight.raw_data[4..8].copy_from_slice(&f32::NAN.to_le_bytes());
        let bytes = model.encode_to_vec();
        std::fs::write(&path, &bytes).unwrap();
        edit_manifest(dir, |m| {
            let entry = m.files.get_mut(FAST_ONNX).unwrap();
            entry.sha256 = sha256_hex(&bytes);
            entry.bytes = bytes.len() as u64;
        });
    });
    assert!(
        err.contains("fast.onnx") && err.contains("non-finite") && err.contains("out_l1_w"),
        "{err}"
    );
}

fn checkpoint_config(data: &Dataset, rounds: usize) -> CheckpointConfig {
    CheckpointConfig {
        format_version: slowfast_trainer::checkpoint::FORMAT_VERSION,
        variant: Variant::Mc2sf,
        model: ModelConfig {
            dim: 16,
            hidden: [16, 8],
            windows: Windows {
                slow_history: 10,
                clicks: 5,
                exposures: 5,
            },
        },
        train: TrainConfig {
            max_epochs: 3,
            lr: 1e-2,
            // No validation slice: every fit keeps its last epoch, so each round changes the
            // weights whatever the tiny world's validation clicks say (checkpoints are under
            // test here, not early stopping).
            max_valid: 0,
            ..TrainConfig::default()
        },
        seed: 2,
        rounds,
        round: 0,
        dataset: data.name.clone(),
        commit: "test".into(),
        items: Vocabulary::from_split(&data.log, &data.split).unwrap(),
        log: Default::default(),
    }
}

#[test]
fn a_checkpoint_round_trips_resumes_and_exports_with_parity() {
    let data = planted::synthetic(80, 400, 30..=40);
    let (straight, resumed) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut a = Checkpoint::init(checkpoint_config(&data, 2)).unwrap();
    let init = model_version(&a.model).unwrap();
    a.train(&data.split, straight.path()).unwrap();
    assert_ne!(
        model_version(&a.model).unwrap(),
        init,
        "training changed the weights: {:?} {} items",
        a.config.log,
        data.split.num_items
    );
    let mut b = Checkpoint::init(checkpoint_config(&data, 1)).unwrap();
    b.train(&data.split, resumed.path()).unwrap();
    assert_ne!(
        model_version(&a.model).unwrap(),
        model_version(&b.model).unwrap()
    );

    let mut b = Checkpoint::load(resumed.path()).unwrap();
    assert_eq!((b.config.round, b.config.log.fits.len()), (1, 2));
    b.config.rounds = 2;
    b.train(&data.split, resumed.path()).unwrap();
    let loaded = Checkpoint::load(resumed.path()).unwrap();
    assert_eq!(loaded.config.round, 2);
    assert_eq!(loaded.config.log.fits.len(), 4);
    let version = model_version(&a.model).unwrap();
    assert_eq!(
        model_version(&loaded.model).unwrap(),
        version,
        "resuming after round 1 gives the weights of an uninterrupted run"
    );
    assert_eq!(loaded.config.items, a.config.items);
    let pop: u32 = loaded.config.items.popularity.iter().sum();
    assert!(pop > 0);

    // Save → load → identical scores, and the bundle of a trained model keeps parity.
    let bundle = tempfile::tempdir().unwrap();
    let manifest = write_bundle(
        &loaded.model,
        &loaded.config.items,
        &provenance(),
        bundle.path(),
    )
    .unwrap();
    assert_eq!(manifest.model_version, version);
    for case in random_cases(&manifest, 4) {
        assert_eq!(
            candle_outputs(&a.model, &case).unwrap(),
            candle_outputs(&loaded.model, &case).unwrap()
        );
    }
    let verified = read_verified(bundle.path()).unwrap();
    let report = parity(&verified, Some(&loaded.model), 5).unwrap();
    assert!(report.passes(), "{}", report.markdown());
}

#[test]
fn exporting_twice_gives_identical_model_files() {
    let model = SlowFastNet::new(Variant::Mc2sf, 60, config(), 8).unwrap();
    let items = Vocabulary::synthetic(60);
    let a = bundle_files(&model, &items).unwrap();
    let b = bundle_files(&model, &items).unwrap();
    assert_eq!(a, b);
    let other = SlowFastNet::new(Variant::Mc2sf, 60, config(), 9).unwrap();
    assert_ne!(
        model_version(&model).unwrap(),
        model_version(&other).unwrap()
    );
    let din = SlowFastNet::new(Variant::Din, 60, config(), 8).unwrap();
    let err = bundle_files(&din, &items).unwrap_err();
    assert!(err.to_string().contains("no fast component"), "{err}");
}
