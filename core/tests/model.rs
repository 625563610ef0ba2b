//! The device model runner on the fixture bundle (`tests/data/bundle`, d = 32, windows 50/50):
//! scoring, the negative-memory step, padding, and refusals of tampered bundles.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use slowfast_core::manifest::{Dim, Manifest, FAST_ONNX, MANIFEST_JSON, NEG_STEP_ONNX};
use slowfast_core::model::DeviceModel;
use slowfast_core::SlowFastError;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bundle")
}

fn files() -> (Vec<u8>, BTreeMap<String, Vec<u8>>) {
    let dir = fixture();
    let manifest = std::fs::read(dir.join(MANIFEST_JSON)).unwrap();
    let files = [FAST_ONNX, NEG_STEP_ONNX]
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect();
    (manifest, files)
}

/// Deterministic values in (−1, 1).
fn values(n: usize, salt: u32) -> Vec<f32> {
    (0..n as u32)
        .map(|i| {
            let x = (i.wrapping_mul(2_654_435_761) ^ salt.wrapping_mul(40_503)) % 2000;
            x as f32 / 1000.0 - 1.0
        })
        .collect()
}

fn refusal(manifest: &[u8], files: &BTreeMap<String, Vec<u8>>) -> (String, String) {
    match DeviceModel::load_files(manifest, files) {
        Err(SlowFastError::Bundle { file, reason }) => (file, reason),
        Err(e) => panic!("expected a bundle refusal, got {e}"),
        Ok(_) => panic!("a tampered bundle was accepted"),
    }
}

#[test]
fn scores_candidates_and_steps_the_negative_memory() {
    let model = DeviceModel::load_dir(&fixture()).unwrap();
    let d = model.manifest().dim;
    assert_eq!(d, 32);
    let n = 100;
    let scores = model
        .score(
            &values(50 * d, 1),
            &values(50 * d, 2),
            &values(n * d, 3),
            &values(n * d, 4),
            &values(n * d, 5),
        )
        .unwrap();
    assert_eq!(scores.len(), n);
    assert!(scores.iter().all(|s| s.is_finite()));
    assert!(
        scores.windows(2).any(|w| w[0] != w[1]),
        "candidates get different scores"
    );
    let state = model.neg_step(&vec![0.0; d], &values(d, 6)).unwrap();
    assert_eq!(state.len(), d);
    let next = model.neg_step(&state, &values(d, 7)).unwrap();
    assert_ne!(state, next);
}

#[test]
fn only_the_last_window_rows_count_and_a_candidate_scores_alone_as_in_a_batch() {
    let model = DeviceModel::load_dir(&fixture()).unwrap();
    let d = 32;
    let long = values(70 * d, 8);
    let tail = long[20 * d..].to_vec();
    let (e, r_t, r_n) = (values(3 * d, 9), values(3 * d, 10), values(3 * d, 11));
    let exposures = values(10 * d, 12);
    let a = model.score(&long, &exposures, &e, &r_t, &r_n).unwrap();
    let b = model.score(&tail, &exposures, &e, &r_t, &r_n).unwrap();
    assert_eq!(a, b, "clicks beyond W_c = 50 are dropped, oldest first");
    let one = model
        .score(
            &tail,
            &exposures,
            &e[d..2 * d],
            &r_t[d..2 * d],
            &r_n[d..2 * d],
        )
        .unwrap();
    assert!((one[0] - a[1]).abs() < 1e-5, "{} vs {}", one[0], a[1]);
    let empty = model.score(&[], &[], &e, &r_t, &r_n).unwrap();
    assert_eq!(empty.len(), 3);
    assert!(model
        .score(&tail, &exposures, &[], &[], &[])
        .unwrap()
        .is_empty());
}

#[test]
fn bad_inputs_are_invalid_arguments() {
    let model = DeviceModel::load_dir(&fixture()).unwrap();
    let d = 32;
    let ok = values(d, 1);
    let bad = [
        model.score(&values(d + 1, 1), &[], &ok, &ok, &ok),
        model.score(&[], &[], &ok, &values(2 * d, 1), &ok),
        model.score(&[], &[], &ok, &ok, &[f32::NAN; 32]),
    ];
    for r in bad {
        assert!(matches!(r, Err(SlowFastError::InvalidArgument(_))), "{r:?}");
    }
    assert!(matches!(
        model.neg_step(&ok, &values(d - 1, 1)),
        Err(SlowFastError::InvalidArgument(_))
    ));
}

#[test]
fn a_flipped_byte_is_refused_by_its_hash() {
    let (manifest, mut files) = files();
    let fast = files.get_mut(FAST_ONNX).unwrap();
    let mid = fast.len() / 2;
    fast[mid] ^= 0x01;
    let (file, reason) = refusal(&manifest, &files);
    assert_eq!(file, FAST_ONNX);
    assert!(reason.contains("SHA-256"), "{reason}");
}

#[test]
fn a_missing_file_is_refused() {
    let (manifest, mut files) = files();
    files.remove(NEG_STEP_ONNX);
    let (file, reason) = refusal(&manifest, &files);
    assert_eq!(file, NEG_STEP_ONNX);
    assert!(reason.contains("missing"), "{reason}");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(MANIFEST_JSON), &manifest).unwrap();
    std::fs::write(dir.path().join(FAST_ONNX), &files[FAST_ONNX]).unwrap();
    let err = DeviceModel::load_dir(dir.path()).unwrap_err().to_string();
    assert!(
        err.contains(NEG_STEP_ONNX) && err.contains("cannot read"),
        "{err}"
    );
}

#[test]
fn a_wrong_shape_in_the_manifest_is_refused() {
    let (manifest, files) = files();
    let mut m = Manifest::from_json(&manifest).unwrap();
    let entry = m.files.get_mut(FAST_ONNX).unwrap();
    entry.inputs[0].shape = vec![Dim::Fixed(50), Dim::Fixed(31)];
    let (file, reason) = refusal(&serde_json::to_vec(&m).unwrap(), &files);
    assert_eq!(file, FAST_ONNX);
    assert!(
        reason.contains("clicks") && reason.contains("[50, 31]") && reason.contains("[50, 32]"),
        "{reason}"
    );
    // A manifest that agrees with the model but not with the contract (dim) is refused too.
    let mut m = Manifest::from_json(&manifest).unwrap();
    m.dim = 16;
    let (file, reason) = refusal(&serde_json::to_vec(&m).unwrap(), &files);
    assert_eq!(file, FAST_ONNX);
    assert!(reason.contains("contract"), "{reason}");
}

#[test]
fn a_newer_format_version_is_refused() {
    let (manifest, files) = files();
    let mut m = Manifest::from_json(&manifest).unwrap();
    m.format_version += 1;
    let (file, reason) = refusal(&serde_json::to_vec(&m).unwrap(), &files);
    assert_eq!(file, MANIFEST_JSON);
    assert!(reason.contains("newer"), "{reason}");
}
