//! Device benchmark figures (docs/architecture.md §10), measured on one core: what `slowfast bench
//! device --json` prints. Benchmarks are not tests: nothing here asserts a time.
//!
//! The ort side of `tract_over_ort_100` needs ONNX Runtime, which the device runtime does not
//! link: [`device`] leaves it `None` and the trainer's CLI fills it in from its own runs of
//! `fast.onnx` in both runtimes on identical inputs with [`DeviceBench::with_ort_ratio`].

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::ops::einsum::EinSum;
use tract_onnx::tract_core::ops::gru_seq::GruSeq;
use tract_onnx::tract_core::ops::Cost;

use crate::error::{Result, SlowFastError};
use crate::manifest::{io_contract, Dim, Manifest, DEVICE_FILES, FAST_ONNX, MANIFEST_JSON};
use crate::wire::{FeedItem, FeedResponse};
use crate::{Config, Durability, SlowFast};

/// The keys of `slowfast bench device --json` (plus the floor's inputs).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct DeviceBench {
    /// `rerank` of 100 candidates (new to the cache each time), full 50/50 windows, p50.
    pub rerank_100_p50_ms: f64,
    pub rerank_500_p50_ms: f64,
    /// The fast model's multiply-adds for 100 candidates at this core's measured FMA rate.
    pub rerank_100_floor_ms: f64,
    /// tract p50 over ort p50 of one `fast.onnx` call for 100 candidates (one thread each);
    /// `None` until the CLI adds ort's figure.
    pub tract_over_ort_100: Option<f64>,
    /// The two medians behind `tract_over_ort_100`.
    pub fast_tract_100_p50_ms: Option<f64>,
    pub fast_ort_100_p50_ms: Option<f64>,
    /// `record_exposure` of a known item (one `GRU_n` step + the durable write), p50, with
    /// the default [`Durability::Process`] …
    pub record_exposure_p50_us: f64,
    /// … and with [`Durability::PowerLoss`] (a sync of the WAL per call).
    pub record_exposure_power_loss_p50_us: f64,
    /// `SlowFast::open` of a store holding a bundle (verify + tract plans + restore), median.
    pub open_ms: f64,
    /// Resident memory of this process holding an open engine (Linux `VmRSS`).
    pub rss_mb: Option<f64>,
    /// `manifest.json` + the device files.
    pub bundle_bytes: u64,
    /// Multiply-adds of `fast.onnx` for 100 candidates (tract's cost model).
    pub fast_fma_100: u64,
    /// Single-core f32 GFLOP/s (2 per multiply-add) of tract's matmul, 256³.
    pub core_gflops: f64,
}

impl DeviceBench {
    /// Adds the medians of one `fast.onnx` call for 100 candidates in tract and in ort.
    pub fn with_ort_ratio(mut self, tract_p50_ms: f64, ort_p50_ms: f64) -> DeviceBench {
        self.tract_over_ort_100 = Some(tract_p50_ms / ort_p50_ms);
        self.fast_tract_100_p50_ms = Some(tract_p50_ms);
        self.fast_ort_100_p50_ms = Some(ort_p50_ms);
        self
    }
}

/// Measures every figure for the bundle in `bundle_dir`, in a scratch directory under the
/// system temp dir (removed afterwards).
pub fn device(bundle_dir: &Path) -> Result<DeviceBench> {
    let scratch = std::env::temp_dir().join(format!("slowfast-bench-{}", uuid::Uuid::new_v4()));
    let result = run(bundle_dir, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn run(bundle_dir: &Path, scratch: &Path) -> Result<DeviceBench> {
    let manifest = Manifest::from_json(&std::fs::read(bundle_dir.join(MANIFEST_JSON))?)?;
    let config = || {
        let mut c = Config::new(scratch, "http://127.0.0.1:9", "bench", "bench");
        c.initial_bundle = Some(bundle_dir.to_path_buf());
        c
    };
    let record_exposures = |sf: &SlowFast, n: usize, items: &FeedResponse| -> Result<f64> {
        let mut times = Vec::with_capacity(n);
        for i in 0..n {
            let item = &items.items[i % items.items.len()].item;
            let t = Instant::now();
            sf.record_exposure(item, 1000 + i as i64)?;
            times.push(ms(t) * 1000.0);
        }
        Ok(median(times))
    };
    drop(SlowFast::open(config())?);
    let mut opens = Vec::new();
    for _ in 0..5 {
        let t = Instant::now();
        drop(SlowFast::open(config())?);
        opens.push(ms(t));
    }
    let sf = SlowFast::open(config())?;
    let rss_mb = rss_mb();

    // Fill both windows with known items.
    let history = candidates(&manifest, "h", 0, 100);
    sf.rerank(&history)?;
    for (i, it) in history.items.iter().enumerate() {
        if i % 2 == 0 {
            sf.record_click(&it.item, i as i64)?;
        } else {
            sf.record_exposure(&it.item, i as i64)?;
        }
    }
    let record_exposure_p50_us = record_exposures(&sf, 1000, &history)?;
    let rerank = |n: usize, reps: usize| -> Result<f64> {
        let mut times = Vec::with_capacity(reps);
        for r in 0..reps {
            let feed = candidates(&manifest, "c", (r * n) as u64, n);
            let t = Instant::now();
            sf.rerank(&feed)?;
            times.push(ms(t));
        }
        Ok(median(times))
    };
    let rerank_100_p50_ms = rerank(100, 200)?;
    let rerank_500_p50_ms = rerank(500, 60)?;
    drop(sf);
    let sf = SlowFast::open(Config {
        durability: Durability::PowerLoss,
        ..config()
    })?;
    let record_exposure_power_loss_p50_us = record_exposures(&sf, 300, &history)?;
    drop(sf);
    let fast_fma_100 = model_fma(
        &std::fs::read(bundle_dir.join(FAST_ONNX))?,
        &manifest,
        FAST_ONNX,
        100,
    )?;
    let core_gflops = core_gflops()?;
    let mut bundle_bytes = std::fs::metadata(bundle_dir.join(MANIFEST_JSON))?.len();
    for file in DEVICE_FILES {
        bundle_bytes += manifest.file(file)?.bytes;
    }
    Ok(DeviceBench {
        rerank_100_p50_ms,
        rerank_500_p50_ms,
        rerank_100_floor_ms: 2.0 * fast_fma_100 as f64 / (core_gflops * 1e9) * 1e3,
        tract_over_ort_100: None,
        fast_tract_100_p50_ms: None,
        fast_ort_100_p50_ms: None,
        record_exposure_p50_us,
        record_exposure_power_loss_p50_us,
        open_ms: median(opens),
        rss_mb,
        bundle_bytes,
        fast_fma_100,
        core_gflops,
    })
}

/// A feed of `n` candidates `{prefix}{start}…` with deterministic pseudo-random vectors, for
/// the installed bundle's version and dimension.
pub fn candidates(manifest: &Manifest, prefix: &str, start: u64, n: usize) -> FeedResponse {
    let d = manifest.dim;
    let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ start;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        ((x >> 40) as f32 / (1u64 << 24) as f32) - 0.5
    };
    let items = (0..n)
        .map(|i| FeedItem {
            item: format!("{prefix}{}", start + i as u64),
            embedding: (0..d).map(|_| next()).collect(),
            r_t: (0..d).map(|_| next()).collect(),
            r_n: (0..d).map(|_| next()).collect(),
            slow_score: 0.0,
        })
        .collect();
    FeedResponse {
        model_version: manifest.model_version.clone(),
        items,
    }
}

/// Multiply-adds of the bundle's model `file` (`fast.onnx`, `slow.onnx`, …) for `n` rows on
/// its dynamic axis with full windows, as the device runs it ([`crate::model::device_graph`]:
/// `fast.onnx`'s window GRUs take their input products once per window): tract's cost model,
/// plus the fused GRUs that model does not count — per step and batch row the input product
/// (`3h × in`, unless projected out of the op) and the recurrent one (`3h × h`).
pub fn model_fma(bytes: &[u8], manifest: &Manifest, file: &str, n: usize) -> Result<u64> {
    let (inputs, _) = io_contract(file, manifest.dim, &manifest.windows)
        .ok_or_else(|| model_err(format!("{file} is not a model file")))?;
    let mut model = tract_onnx::onnx()
        .model_for_read(&mut &*bytes)
        .map_err(model_err)?;
    for (i, spec) in inputs.iter().enumerate() {
        let shape: Vec<usize> = spec
            .shape
            .iter()
            .map(|d| match d {
                Dim::Fixed(k) => *k,
                Dim::Dynamic(_) => n,
            })
            .collect();
        let dt = if spec.dtype == "int64" {
            i64::datum_type()
        } else {
            f32::datum_type()
        };
        model = model
            .with_input_fact(i, InferenceFact::dt_shape(dt, shape))
            .map_err(model_err)?;
    }
    let typed = crate::model::device_graph(model).map_err(model_err)?;
    let mut fma = 0u64;
    for node in typed.nodes() {
        let facts = typed.node_input_facts(node.id).map_err(model_err)?;
        if let Some(gru) = node.op_as::<GruSeq>() {
            let x = facts[0]
                .shape
                .as_concrete()
                .ok_or_else(|| model_err("GRU input shape"))?;
            let (rows, steps) = (x[0] as u64, x[1] as u64);
            let h = gru.hidden as u64;
            let input = if gru.projected { 0 } else { x[2] as u64 };
            fma += rows * steps * 3 * h * (input + h);
        }
        for (cost, count) in node.op.cost(&facts).map_err(model_err)? {
            if matches!(cost, Cost::FMA(_)) {
                fma += count.to_i64().map_err(model_err)?.max(0) as u64;
            }
        }
    }
    Ok(fma)
}

/// Single-core f32 GFLOP/s of tract's own matmul on 256×256×256.
pub fn core_gflops() -> Result<f64> {
    let n = 256;
    let mut m = TypedModel::default();
    let a = m.add_source("a", f32::fact([n, n])).map_err(model_err)?;
    let b = m
        .add_const(
            "b",
            Tensor::from_shape(&[n, n], &vec![0.5f32; n * n]).map_err(model_err)?,
        )
        .map_err(model_err)?;
    let axes = "mk,kn->mn".parse().map_err(model_err)?;
    let c = m
        .wire_node("mm", EinSum::new(axes, f32::datum_type()), &[a, b])
        .map_err(model_err)?;
    m.select_output_outlets(&c).map_err(model_err)?;
    let plan = m
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(model_err)?;
    let input = Tensor::from_shape(&[n, n], &vec![0.25f32; n * n]).map_err(model_err)?;
    let mut best = f64::MAX;
    for _ in 0..30 {
        let t = Instant::now();
        plan.run(tvec![input.clone().into_tvalue()])
            .map_err(model_err)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(2.0 * (n * n * n) as f64 / best / 1e9)
}

fn model_err(e: impl std::fmt::Display) -> SlowFastError {
    SlowFastError::Model(format!("bench: {e:#}"))
}

fn ms(t: Instant) -> f64 {
    t.elapsed().as_secs_f64() * 1e3
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

/// `VmRSS` of this process in MiB (Linux; `None` elsewhere).
pub fn rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()?;
    Some(kb / 1024.0)
}
