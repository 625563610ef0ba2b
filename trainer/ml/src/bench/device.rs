//! `slowfast bench device`: the device runtime's figures ([`slowfast_core::bench::device`]) on
//! a bundle, plus the one figure the device cannot measure itself: the same `fast.onnx` run by
//! ONNX Runtime, as the ratio `tract_over_ort_100`. Both runtimes get identical inputs (full
//! windows, 100 candidates) and one thread; the ratio compares the model calls alone.

use std::path::Path;
use std::time::Instant;

use slowfast_core::bench::DeviceBench;
use slowfast_core::manifest::{Manifest, FAST_ONNX, MANIFEST_JSON};
use slowfast_data::FileError;

use crate::checkpoint::{source_commit, Vocabulary};
use crate::error::{Result, TrainerError};
use crate::export::bundle::{write_bundle, Provenance};
use crate::export::runtimes::{Feed, OrtModel, TractModel};
use crate::models::features::Windows;
use crate::models::slowfast::{SlowFastNet, Variant};
use crate::models::ModelConfig;

/// Calls of each runtime behind the ratio's medians.
const REPS: usize = 200;

/// The device figures of the bundle in `bundle`, or of a randomly initialised bundle of the
/// default shape (d = 32, windows 50/50) when `bundle` is `None` (speed does not depend on the
/// weights' values).
///
/// `runner` is the `slowfast-device-bench` binary, which measures in a process of its own.
pub fn run(bundle: Option<&Path>, runner: &Path) -> Result<DeviceBench> {
    with_bundle(bundle, |dir| {
        let figures = in_child(runner, dir)?;
        let ort_p50 = ort_fast_p50(dir, 100)?;
        let tract_p50 = tract_fast_p50(dir, 100)?;
        Ok(figures.with_ort_ratio(tract_p50, ort_p50))
    })
}

/// [`slowfast_core::bench::device`] in a child process, `runner` (`slowfast-device-bench`),
/// so that `rss_mb` is the memory of a process holding an engine and nothing of the trainer.
/// Its allocator (mimalloc, as the CLI's) commits its arenas eagerly by default, which counts
/// pages no allocation uses; the child turns that off, as an app's own allocator would not
/// have it.
fn in_child(runner: &Path, bundle: &Path) -> Result<DeviceBench> {
    let out = std::process::Command::new(runner)
        .arg(bundle)
        .env("RUST_LOG", "warn")
        .env("MIMALLOC_ARENA_EAGER_COMMIT", "0")
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(|e| FileError::new(runner, e))?;
    if !out.status.success() {
        return Err(TrainerError::Child {
            program: runner.to_path_buf(),
            status: out.status,
        });
    }
    Ok(serde_json::from_slice(&out.stdout)
        .map_err(slowfast_data::JsonError::of("device benchmark figures"))?)
}

/// Calls `f` with `bundle`, or with a randomly initialised bundle of the default shape written
/// to a temporary directory (removed afterwards) when `bundle` is `None`.
pub fn with_bundle<T, E: From<TrainerError>>(
    bundle: Option<&Path>,
    f: impl FnOnce(&Path) -> Result<T, E>,
) -> Result<T, E> {
    match bundle {
        Some(dir) => f(dir),
        None => {
            let scratch = tempfile::tempdir()
                .map_err(|e| TrainerError::from(FileError::new("temporary directory", e)))?;
            random_bundle(scratch.path())?;
            f(scratch.path())
        }
    }
}

/// A randomly initialised MC²-SF bundle with d = 32 and windows 50/50 in `dir`.
fn random_bundle(dir: &Path) -> Result<()> {
    let config = ModelConfig {
        windows: Windows {
            slow_history: 50,
            clicks: 50,
            exposures: 50,
        },
        ..ModelConfig::default()
    };
    let items = 1000;
    let model = SlowFastNet::new(Variant::Mc2sf, items, config, 1)?;
    let from = Provenance {
        trained_on: "untrained (random init, seed 1), for the device benchmark".into(),
        commit: source_commit(),
    };
    write_bundle(&model, &Vocabulary::synthetic(items), &from, dir)?;
    Ok(())
}

/// `fast.onnx`'s inputs for `n` candidates with both windows full.
fn fast_feeds(manifest: &Manifest, n: usize) -> Vec<Feed> {
    let d = manifest.dim;
    let w = manifest.windows;
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut values = |len: usize| -> Vec<f32> {
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
            })
            .collect()
    };
    vec![
        Feed::f32("clicks", &[w.clicks, d], values(w.clicks * d)),
        Feed::i64("clicks_len", w.clicks as i64),
        Feed::f32("exposures", &[w.exposures, d], values(w.exposures * d)),
        Feed::i64("exposures_len", w.exposures as i64),
        Feed::f32("e_i", &[n, d], values(n * d)),
        Feed::f32("r_t", &[n, d], values(n * d)),
        Feed::f32("r_n", &[n, d], values(n * d)),
    ]
}

fn read(dir: &Path, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    std::fs::read(&path).map_err(|e| FileError::new(path, e).into())
}

fn p50_ms(mut call: impl FnMut() -> Result<()>) -> Result<f64> {
    for _ in 0..10 {
        call()?;
    }
    let mut times = Vec::with_capacity(REPS);
    for _ in 0..REPS {
        let t = Instant::now();
        call()?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[REPS / 2])
}

/// Median of one `fast.onnx` call in ONNX Runtime (one thread) for `n` candidates.
pub fn ort_fast_p50(dir: &Path, n: usize) -> Result<f64> {
    let manifest = Manifest::from_json(&read(dir, MANIFEST_JSON)?)?;
    let feeds = fast_feeds(&manifest, n);
    let mut model = OrtModel::new(&read(dir, FAST_ONNX)?)?;
    p50_ms(|| model.run(&feeds).map(drop))
}

/// Median of one `fast.onnx` call in tract, optimized as the device loads it.
pub fn tract_fast_p50(dir: &Path, n: usize) -> Result<f64> {
    let manifest = Manifest::from_json(&read(dir, MANIFEST_JSON)?)?;
    let feeds = fast_feeds(&manifest, n);
    let model = TractModel::new(&read(dir, FAST_ONNX)?)?;
    p50_ms(|| model.run(&feeds).map(drop))
}
