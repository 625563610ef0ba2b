//! Three-way parity of a bundle: the candle model it was exported from, ONNX Runtime and
//! tract, on seeded random inputs and on a batch of trained item embeddings, for batch sizes
//! 1 and 100 and empty, partial and full windows (max absolute difference ≤ [`TOLERANCE`]).

use std::collections::BTreeMap;

use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use slowfast_core::manifest::{ItemTable, Manifest, FAST_ONNX, NEG_STEP_ONNX, SLOW_ONNX};

use super::runtimes::{Data, Feed, OrtModel, TractModel};
use crate::error::{Result, TrainerError};
use crate::models::layers::length_mask;
use crate::models::slowfast::SlowFastNet;

/// The largest absolute difference allowed between two runtimes (float32).
pub const TOLERANCE: f32 = 1e-5;

/// Inputs for one model file.
#[derive(Clone, Debug)]
pub struct Case {
    pub file: &'static str,
    pub label: String,
    pub feeds: Vec<Feed>,
}

/// The max absolute differences of one case (`None`: candle was not run).
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    pub file: String,
    pub case: String,
    pub candle_ort: Option<f32>,
    pub candle_tract: Option<f32>,
    pub ort_tract: f32,
}

impl Row {
    pub fn max(&self) -> f32 {
        [self.candle_ort, self.candle_tract, Some(self.ort_tract)]
            .into_iter()
            .flatten()
            .fold(0.0, f32::max)
    }
}

/// Every case's differences.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub rows: Vec<Row>,
}

impl Report {
    /// The largest difference over every case (NaN if any output was NaN).
    pub fn max(&self) -> f32 {
        self.rows.iter().map(Row::max).fold(0.0, |a, b| {
            if a.is_nan() || b.is_nan() {
                f32::NAN
            } else {
                a.max(b)
            }
        })
    }

    pub fn passes(&self) -> bool {
        self.max() <= TOLERANCE
    }

    /// A Markdown table of the differences.
    pub fn markdown(&self) -> String {
        let fmt = |v: Option<f32>| v.map_or_else(|| "—".to_owned(), |v| format!("{v:.2e}"));
        let mut s = String::from(
            "| file | case | candle–ort | candle–tract | ort–tract |\n|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            s.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                r.file,
                r.case,
                fmt(r.candle_ort),
                fmt(r.candle_tract),
                fmt(Some(r.ort_tract))
            ));
        }
        s
    }
}

/// The window fills every check covers: empty, partial and full.
fn fills(w: usize) -> [(&'static str, usize); 3] {
    [("empty", 0), ("partial", w.div_ceil(3)), ("full", w)]
}

/// Seeded random inputs: every file, batch sizes 1 and 100, empty/partial/full windows.
pub fn random_cases(manifest: &Manifest, seed: u64) -> Vec<Case> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut draw = |n: usize| -> Vec<f32> { (0..n).map(|_| rng.random_range(-1.0..1.0)).collect() };
    let (d, w) = (manifest.dim, manifest.windows);
    let mut cases = Vec::new();
    for n in [1usize, 100] {
        for k in 0..3 {
            let fill = fills(1)[k].0;
            let len = |w: usize| fills(w)[k].1;
            let label = format!("random N={n} {fill} windows");
            cases.push(fast_case(
                &label,
                d,
                (draw(w.clicks * d), len(w.clicks), w.clicks),
                (draw(w.exposures * d), len(w.exposures), w.exposures),
                [draw(n * d), draw(n * d), draw(n * d)],
            ));
            cases.push(slow_case(
                &label,
                d,
                (
                    draw(w.slow_history * d),
                    len(w.slow_history),
                    w.slow_history,
                ),
                draw(d),
                draw(n * d),
            ));
        }
        cases.push(Case {
            file: NEG_STEP_ONNX,
            label: format!("random B={n}"),
            feeds: vec![
                Feed::f32("state", &[n, d], draw(n * d)),
                Feed::f32("e", &[n, d], draw(n * d)),
            ],
        });
    }
    cases
}

/// A batch of the trained item embeddings: a user's windows and 100 candidates drawn from
/// `items`, the priors `r_t, r_n` from `slow.onnx` in ONNX Runtime (as the server sends them)
/// and `r̂2` folded by the GRU_n cell.
pub fn data_cases(
    manifest: &Manifest,
    items: &ItemTable,
    slow: &mut OrtModel,
    neg_step: &mut OrtModel,
    seed: u64,
) -> Result<Vec<Case>> {
    let d = manifest.dim;
    let w = manifest.windows;
    let count = items.ids.len();
    if count == 0 || items.embeddings.len() != count * d {
        return Err(TrainerError::Unusable(format!(
            "items.json has {} ids and {} embedding values for d = {d}",
            count,
            items.embeddings.len()
        )));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows = |n: usize| -> Vec<f32> {
        (0..n)
            .flat_map(|_| {
                let i = rng.random_range(0..count);
                items.embeddings[i * d..(i + 1) * d].to_vec()
            })
            .collect()
    };
    let n = 100;
    let exposures = rows(w.exposures);
    let mut neg_memory = vec![0f32; d];
    for e in exposures.chunks(d).take(w.exposures / 2) {
        let out = neg_step.run(&[
            Feed::f32("state", &[1, d], neg_memory.clone()),
            Feed::f32("e", &[1, d], e.to_vec()),
        ])?;
        neg_memory = first(out)?;
    }
    let slow_case = slow_case(
        "data N=100 partial history",
        d,
        (rows(w.slow_history), w.slow_history / 2, w.slow_history),
        neg_memory.clone(),
        rows(n),
    );
    let e_i = f32_feed(&slow_case.feeds, "e_i")?.to_vec();
    let mut priors = slow.run(&slow_case.feeds)?.into_iter().skip(1);
    let (r_t, r_n) = (
        priors.next().unwrap_or_default(),
        priors.next().unwrap_or_default(),
    );
    let fast = fast_case(
        "data N=100 partial windows",
        d,
        (rows(w.clicks), w.clicks / 2, w.clicks),
        (exposures, w.exposures / 2, w.exposures),
        [e_i, r_t, r_n],
    );
    let step = Case {
        file: NEG_STEP_ONNX,
        label: "data B=1 from r̂2".into(),
        feeds: vec![
            Feed::f32("state", &[1, d], neg_memory),
            Feed::f32("e", &[1, d], rows(1)),
        ],
    };
    Ok(vec![slow_case, fast, step])
}

fn first(out: Vec<Vec<f32>>) -> Result<Vec<f32>> {
    out.into_iter()
        .next()
        .ok_or_else(|| TrainerError::Unusable("the model returned no output".into()))
}

/// `fast.onnx` inputs: windows as `(values W×d, valid length, W)`, then `[e_i, r_t, r_n]`.
fn fast_case(
    label: &str,
    d: usize,
    clicks: (Vec<f32>, usize, usize),
    exposures: (Vec<f32>, usize, usize),
    [e_i, r_t, r_n]: [Vec<f32>; 3],
) -> Case {
    let n = e_i.len() / d;
    Case {
        file: FAST_ONNX,
        label: label.into(),
        feeds: vec![
            Feed::f32("clicks", &[clicks.2, d], padded(clicks.0, clicks.1, d)),
            Feed::i64("clicks_len", clicks.1 as i64),
            Feed::f32(
                "exposures",
                &[exposures.2, d],
                padded(exposures.0, exposures.1, d),
            ),
            Feed::i64("exposures_len", exposures.1 as i64),
            Feed::f32("e_i", &[n, d], e_i),
            Feed::f32("r_t", &[n, d], r_t),
            Feed::f32("r_n", &[n, d], r_n),
        ],
    }
}

/// `slow.onnx` inputs: the history as `(values W×d, valid length, W)`, `r̂2`, `e_i`.
fn slow_case(
    label: &str,
    d: usize,
    history: (Vec<f32>, usize, usize),
    neg_memory: Vec<f32>,
    e_i: Vec<f32>,
) -> Case {
    let n = e_i.len() / d;
    Case {
        file: SLOW_ONNX,
        label: label.into(),
        feeds: vec![
            Feed::f32("history", &[history.2, d], padded(history.0, history.1, d)),
            Feed::i64("history_len", history.1 as i64),
            Feed::f32("neg_memory", &[1, d], neg_memory),
            Feed::f32("e_i", &[n, d], e_i),
        ],
    }
}

/// Zeros after the first `len` rows, as the device pads.
fn padded(mut v: Vec<f32>, len: usize, d: usize) -> Vec<f32> {
    v[len * d..].iter_mut().for_each(|x| *x = 0.0);
    v
}

fn feed<'a>(feeds: &'a [Feed], name: &str) -> Result<&'a Feed> {
    feeds
        .iter()
        .find(|f| f.name == name)
        .ok_or_else(|| TrainerError::InvalidArgument(format!("no input {name:?}")))
}

fn f32_feed<'a>(feeds: &'a [Feed], name: &str) -> Result<&'a [f32]> {
    match &feed(feeds, name)?.data {
        Data::F32(v) => Ok(v),
        Data::I64(_) => Err(TrainerError::InvalidArgument(format!(
            "{name} is not float32"
        ))),
    }
}

fn len_feed(feeds: &[Feed], name: &str) -> Result<usize> {
    match &feed(feeds, name)?.data {
        Data::I64(v) => Ok(v.first().copied().unwrap_or(0).max(0) as usize),
        Data::F32(_) => Err(TrainerError::InvalidArgument(format!(
            "{name} is not int64"
        ))),
    }
}

/// A feed as a candle tensor.
fn tensor(feeds: &[Feed], name: &str) -> Result<Tensor> {
    let f = feed(feeds, name)?;
    Ok(Tensor::from_vec(
        f32_feed(feeds, name)?.to_vec(),
        f.shape.as_slice(),
        &Device::Cpu,
    )?)
}

/// A `[W, d]` window repeated for `n` candidates with its `[n, W]` mask.
fn window(feeds: &[Feed], name: &str, n: usize) -> Result<(Tensor, Tensor)> {
    let x = tensor(feeds, name)?;
    let (w, d) = x.dims2()?;
    let len = len_feed(feeds, &format!("{name}_len"))?;
    let x = x.unsqueeze(0)?.broadcast_as((n, w, d))?.contiguous()?;
    Ok((x, length_mask(&vec![len; n], w, &Device::Cpu)?))
}

/// The candle model's outputs for a case, in the file's output order.
pub fn candle_outputs(model: &SlowFastNet, case: &Case) -> Result<Vec<Vec<f32>>> {
    let flat = |t: &Tensor| -> Result<Vec<f32>> { Ok(t.flatten_all()?.to_vec1()?) };
    let f = &case.feeds;
    let gru_n = &model.shared.gru_n;
    match case.file {
        FAST_ONNX => {
            let fast = model.fast.as_ref().ok_or_else(|| {
                TrainerError::InvalidArgument("the model has no fast component".into())
            })?;
            let e = tensor(f, "e_i")?;
            let n = e.dim(0)?;
            let clicks = window(f, "clicks", n)?;
            let exposures = window(f, "exposures", n)?;
            let priors = (tensor(f, "r_t")?, tensor(f, "r_n")?);
            let logits = fast.s2f_logits(
                gru_n,
                &e,
                (&clicks.0, &clicks.1),
                (&exposures.0, &exposures.1),
                &priors,
            )?;
            Ok(vec![flat(&logits)?])
        }
        NEG_STEP_ONNX => Ok(vec![flat(
            &gru_n.cell(&tensor(f, "e")?, &tensor(f, "state")?)?,
        )?]),
        SLOW_ONNX => {
            let e = tensor(f, "e_i")?;
            let n = e.dim(0)?;
            let (h, mask) = window(f, "history", n)?;
            let neg_memory = tensor(f, "neg_memory")?
                .broadcast_as(e.dims())?
                .contiguous()?;
            let out = model
                .slow
                .forward_embedded(gru_n, &e, &h, &mask, Some(&neg_memory))?;
            Ok(vec![flat(&out.logits)?, flat(&out.r_t)?, flat(&out.r_n)?])
        }
        other => Err(TrainerError::InvalidArgument(format!(
            "{other} is not a model file"
        ))),
    }
}

/// The largest |a − b| over every output (NaN when shapes differ or a value is NaN).
pub fn max_abs_diff(a: &[Vec<f32>], b: &[Vec<f32>]) -> f32 {
    if a.len() != b.len() || a.iter().zip(b).any(|(x, y)| x.len() != y.len()) {
        return f32::NAN;
    }
    a.iter()
        .flatten()
        .zip(b.iter().flatten())
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, |m, v| {
            if m.is_nan() || v.is_nan() {
                f32::NAN
            } else {
                m.max(v)
            }
        })
}

/// The loaded runtimes of a bundle's three model files.
pub struct Runtimes {
    ort: BTreeMap<&'static str, OrtModel>,
    tract: BTreeMap<&'static str, TractModel>,
}

impl Runtimes {
    /// Loads each model file of `files` in ONNX Runtime and tract.
    pub fn load(files: &BTreeMap<String, Vec<u8>>) -> Result<Runtimes> {
        let mut ort = BTreeMap::new();
        let mut tract = BTreeMap::new();
        for name in [FAST_ONNX, NEG_STEP_ONNX, SLOW_ONNX] {
            let bytes = files.get(name).ok_or_else(|| {
                TrainerError::Core(slowfast_core::SlowFastError::Bundle {
                    file: name.into(),
                    reason: "missing from the bundle".into(),
                })
            })?;
            ort.insert(name, OrtModel::new(bytes)?);
            tract.insert(name, TractModel::new(bytes)?);
        }
        Ok(Runtimes { ort, tract })
    }

    /// The ort models of `slow.onnx` and `neg_step.onnx`, for [`data_cases`].
    pub fn ort_slow_and_step(&mut self) -> Result<(&mut OrtModel, &mut OrtModel)> {
        let mut it = self.ort.iter_mut().filter(|(k, _)| **k != FAST_ONNX);
        let (step, slow) = (it.next(), it.next());
        match (step, slow) {
            (Some((_, step)), Some((_, slow))) => Ok((slow, step)),
            _ => Err(TrainerError::InvalidArgument(
                "bundle runtimes not loaded".into(),
            )),
        }
    }

    /// Runs every case in ort, tract and (when given) candle.
    pub fn compare(&mut self, cases: &[Case], model: Option<&SlowFastNet>) -> Result<Report> {
        let mut report = Report::default();
        for case in cases {
            let ort = self
                .ort
                .get_mut(case.file)
                .ok_or_else(|| TrainerError::InvalidArgument(format!("no {}", case.file)))?
                .run(&case.feeds)?;
            let tract = self
                .tract
                .get(case.file)
                .ok_or_else(|| TrainerError::InvalidArgument(format!("no {}", case.file)))?
                .run(&case.feeds)?;
            let candle = model.map(|m| candle_outputs(m, case)).transpose()?;
            report.rows.push(Row {
                file: case.file.into(),
                case: case.label.clone(),
                candle_ort: candle.as_ref().map(|c| max_abs_diff(c, &ort)),
                candle_tract: candle.as_ref().map(|c| max_abs_diff(c, &tract)),
                ort_tract: max_abs_diff(&ort, &tract),
            });
        }
        Ok(report)
    }
}
