//! The training loop shared by every model: BCE on each positive and `negatives` sampled
//! negatives (uniform over all items), Adam with L2, and early stopping on the validation
//! NDCG@10 of held-out training-phase clicks (never the test phase).
//!
//! Data parallelism: each mini-batch is cut into [`TrainConfig::shards`] contiguous shards
//! whose losses (weighted by their share of the rows) are differentiated separately and
//! whose gradients are summed: the gradient of the whole batch's mean loss. The shards run on
//! up to [`set_threads`] threads. The result depends on the shard count (floating-point
//! summation order), never on the thread count, so runs reproduce on any machine.

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};

use candle_core::{Device, Tensor, Var};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::denormals::FlushToZero;
use super::features::{sample_negatives, Batch, Moment, Padded, Positive, Positives, Row, Windows};
use super::grad_mode::training_step;
use super::layers::bce_with_logits;
use super::optim::{Adam, AdamConfig};
use super::{Net, SequenceNet};
use crate::data::EventKind;
use crate::error::{Result, TrainerError};
use crate::eval::metrics::{pessimistic_rank, Metric};
use crate::eval::protocol::Query;
use crate::eval::sampler::NegativePool;

/// How a component is trained.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    /// Adam's learning rate (paper: 5e-4); the first of [`TrainConfig::rates`].
    pub lr: f64,
    /// Further learning rates each fit tries (none by default): see [`fit`].
    #[serde(default, skip_serializing_if = "MoreRates::is_empty")]
    pub more_lrs: MoreRates,
    pub l2: f64,
    /// Rows (positives and their negatives) per mini-batch (paper: 256).
    pub batch: usize,
    /// Sampled negatives per positive for the BCE (1:`negatives`).
    pub negatives: usize,
    /// Impression negatives per positive (0: none): the items of the impression the click
    /// came from that were shown and not clicked — the exposures since the user's previous
    /// click, strictly before the click, most recent first — on top of the `negatives`
    /// uniform ones. Only moments with a real-time history have them (the fast component's
    /// fits and the real-time baselines): what the device re-ranks is a feed of shown items.
    #[serde(default)]
    pub impressions: usize,
    /// What validation ranks, and so which epoch and learning rate a fit keeps.
    #[serde(default)]
    pub validation: Validation,
    pub max_epochs: usize,
    /// Epochs without a better validation NDCG@10 before stopping.
    pub patience: usize,
    /// Validation positives used (each ranked against 99 sampled negatives): the first
    /// `max_valid` held-out clicks; the rest are trained on like any other click.
    pub max_valid: usize,
    pub seed: u64,
    /// Which items may be validation negatives (and, in `slowfast eval`, test negatives):
    /// the pool of the evaluation protocol, restricted to what is visible at the moment.
    #[serde(default)]
    pub negative_pool: NegativePool,
    /// Shards per mini-batch (see the module doc); 1 differentiates the batch at once.
    #[serde(default = "default_shards")]
    pub shards: usize,
}

fn default_shards() -> usize {
    TrainConfig::default().shards
}

impl TrainConfig {
    /// The learning rates a fit tries, in order: `lr`, then `more_lrs`.
    pub fn rates(&self) -> Vec<f64> {
        std::iter::once(self.lr)
            .chain(self.more_lrs.as_slice().iter().copied())
            .collect()
    }

    /// `self` trying `rates` (the first becomes `lr`): at least one and at most
    /// `1 + MoreRates::MAX`, each finite and non-negative, none twice.
    pub fn with_rates(self, rates: &[f64]) -> Result<TrainConfig> {
        let (&lr, more) = rates.split_first().ok_or_else(|| {
            TrainerError::InvalidArgument("at least one learning rate is needed".into())
        })?;
        if let Some(r) = rates
            .iter()
            .enumerate()
            .find_map(|(k, r)| rates[..k].contains(r).then_some(r))
        {
            return Err(TrainerError::InvalidArgument(format!(
                "learning rate {r} is listed twice"
            )));
        }
        check_rate(lr)?;
        Ok(TrainConfig {
            lr,
            more_lrs: MoreRates::new(more)?,
            ..self
        })
    }
}

fn check_rate(lr: f64) -> Result<()> {
    if lr.is_finite() && lr >= 0.0 {
        Ok(())
    } else {
        Err(TrainerError::InvalidArgument(format!(
            "learning rate {lr} is not a finite non-negative number"
        )))
    }
}

/// The learning rates a fit tries after [`TrainConfig::lr`] (at most [`MoreRates::MAX`]):
/// a list in JSON, `Copy` like the rest of the configuration.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MoreRates {
    len: usize,
    rates: [f64; MoreRates::MAX],
}

impl MoreRates {
    pub const MAX: usize = 3;

    /// The rates, each finite and non-negative; at most [`MoreRates::MAX`].
    pub fn new(rates: &[f64]) -> Result<MoreRates> {
        if rates.len() > Self::MAX {
            return Err(TrainerError::InvalidArgument(format!(
                "at most {} learning rates per fit, got {}",
                Self::MAX + 1,
                rates.len() + 1
            )));
        }
        let mut more = MoreRates::default();
        for &lr in rates {
            check_rate(lr)?;
            more.rates[more.len] = lr;
            more.len += 1;
        }
        Ok(more)
    }

    pub fn as_slice(&self) -> &[f64] {
        &self.rates[..self.len]
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl Serialize for MoreRates {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        self.as_slice().serialize(s)
    }
}

impl<'de> Deserialize<'de> for MoreRates {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let rates = Vec::<f64>::deserialize(d)?;
        MoreRates::new(&rates).map_err(serde::de::Error::custom)
    }
}

static THREADS: AtomicUsize = AtomicUsize::new(1);
static JOBS: AtomicUsize = AtomicUsize::new(0);

/// The threads training may use for the shards of a batch and for validation (default 1),
/// shared by the [`Job`]s running at once. The CLI sets it to the cores.
pub fn set_threads(threads: usize) {
    THREADS.store(threads.max(1), Ordering::Relaxed);
}

/// A training job (one evaluation seed) while it lives: the jobs alive share
/// [`set_threads`]'s threads evenly, read again at every batch, so a job left alone takes
/// every thread when the others finish. Results never depend on it (see the module doc).
pub struct Job(());

impl Job {
    pub fn start() -> Job {
        JOBS.fetch_add(1, Ordering::Relaxed);
        Job(())
    }
}

impl Drop for Job {
    fn drop(&mut self) {
        JOBS.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) fn threads() -> usize {
    let jobs = JOBS.load(Ordering::Relaxed).max(1);
    (THREADS.load(Ordering::Relaxed) / jobs).max(1)
}

/// `f` over `items` on up to [`threads`] scoped threads, in order.
pub(crate) fn par_map<T: Sync, R: Send>(
    items: &[T],
    f: impl Fn(&T) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let n = threads().min(items.len());
    if n <= 1 {
        return items.iter().map(f).collect();
    }
    let per = items.len().div_ceil(n);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(per)
            .map(|part| s.spawn(|| part.iter().map(&f).collect::<Result<Vec<R>>>()))
            .collect();
        let mut out = Vec::with_capacity(items.len());
        for h in handles {
            let part = h.join().map_err(|_| {
                TrainerError::InvalidArgument("a training thread panicked".into())
            })??;
            out.extend(part);
        }
        Ok(out)
    })
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            lr: 5e-4,
            more_lrs: MoreRates::default(),
            l2: 1e-4,
            batch: 256,
            negatives: 1,
            impressions: 0,
            validation: Validation::Sampled,
            max_epochs: 20,
            patience: 2,
            max_valid: 1000,
            seed: 1,
            negative_pool: NegativePool::NotClicked,
            shards: 2,
        }
    }
}

/// What a fit's held-out clicks are ranked against for early stopping and model selection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Validation {
    /// 99 items of the negative pool, as visible at the click (the sampled protocol, paper
    /// §5.1.2).
    #[default]
    Sampled,
    /// The other items of the click's impression, shown with it and not clicked
    /// ([`impression`]): what a device re-ranks. Held-out clicks without an impression are
    /// left out; a fit none of whose held-out clicks has one (no real-time history, as the
    /// slow component's) validates as `Sampled`.
    Impressions,
}

impl Validation {
    fn is_sampled(&self) -> bool {
        *self == Validation::Sampled
    }
}

/// One epoch's training loss and validation NDCG@10.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    pub epoch: usize,
    /// The learning rate of the epoch's run (see [`fit`]); 0 in logs written before it was
    /// recorded.
    #[serde(default)]
    pub lr: f64,
    pub loss: f64,
    pub valid_ndcg10: f64,
    /// What `valid_ndcg10` ranked the held-out clicks against (after a fit without
    /// impressions fell back to `Sampled`).
    #[serde(default, skip_serializing_if = "Validation::is_sampled")]
    pub validation: Validation,
    pub samples_per_s: f64,
    /// Seconds spent on the epoch's training steps (validation excluded).
    #[serde(default)]
    pub train_s: f64,
    /// Whether the fit ended with this epoch's weights: the best validation epoch, or the
    /// last one when there is nothing to validate on. A fit with no kept epoch ended with the
    /// weights it started from, because no epoch beat them on validation (as a further round
    /// of Algorithm 1 on new uploads may: see [`fit`]).
    #[serde(default)]
    pub kept: bool,
}

/// Fits `net`'s variables `vars` on `train`, keeping the weights of the best validation epoch.
/// The weights it starts from are validated first and compete too: a fit whose every epoch
/// scores below them ends where it started, and no epoch of its log is [`EpochLog::kept`].
/// Without validation cases (a tiny or freshly uploaded data set) there is nothing to stop
/// early on: every epoch runs and the last weights are kept.
///
/// With several learning rates ([`TrainConfig::rates`]) the fit runs once per rate, each
/// from the same starting weights with the same shuffles and negatives, and keeps the best
/// validation epoch over all of them: the learning rate is chosen on the validation slice
/// like the epoch is. Without validation cases only the first rate runs.
pub fn fit(
    net: &dyn Net,
    vars: &[(String, Var)],
    data: &Positives<'_>,
    num_items: usize,
    windows: Windows,
    cfg: &TrainConfig,
    label: &str,
) -> Result<Vec<EpochLog>> {
    // Before the shards' threads exist, so that they inherit it (see `denormals`).
    let _flush = FlushToZero::set();
    let device = vars
        .first()
        .map_or(Device::Cpu, |(_, v)| v.device().clone());
    let (train, held) = data.carve(cfg.max_valid);
    let units = Units::new(net, &train);
    let valid = match cfg.validation {
        Validation::Impressions => ValidSet::impressions(held),
        Validation::Sampled => None,
    }
    .unwrap_or_else(|| ValidSet::new(held, num_items, cfg.seed, cfg.negative_pool));
    let validated = !valid.cases.is_empty();
    let mut rates = cfg.rates();
    if !validated {
        tracing::warn!(
            label,
            "no validation cases: training every epoch, no early stopping"
        );
        if rates.len() > 1 {
            tracing::warn!(label, lr = rates[0], "nothing to choose a learning rate on");
            rates.truncate(1);
        }
    }
    let run = Run {
        net,
        vars,
        units: &units,
        valid: &valid,
        num_items,
        windows,
        cfg,
        device: &device,
    };
    let per_batch = run.per_batch();
    let targets: usize = (0..units.len()).map(|u| units.targets(u)).sum();
    let bar = progress(
        rates.len() * cfg.max_epochs * targets.div_ceil(per_batch),
        label,
    );
    // The best validation NDCG@10, the index in `logs` of the epoch it came from (`None`:
    // the starting weights), and them.
    let start = valid.ndcg10(net, windows, &device)?;
    let from = snapshot(vars)?;
    let mut best = Best {
        ndcg: start,
        at: None,
        weights: from.clone(),
    };
    let mut logs = Vec::new();
    for (k, &lr) in rates.iter().enumerate() {
        if k > 0 {
            restore(vars, &from)?;
        }
        run.epochs(lr, start, &bar, label, &mut best, &mut logs)?;
    }
    bar.finish_and_clear();
    let kept = if validated {
        restore(vars, &best.weights)?;
        best.at
    } else {
        logs.len().checked_sub(1)
    };
    match kept {
        Some(at) => logs[at].kept = true,
        None if !logs.is_empty() => tracing::info!(
            label,
            start,
            "no epoch beat the starting weights' validation NDCG@10: kept them"
        ),
        None => {}
    }
    Ok(logs)
}

/// The best weights a [`fit`] has seen so far.
struct Best {
    ndcg: f64,
    /// The epoch's index in the fit's log; `None` for the starting weights.
    at: Option<usize>,
    weights: Vec<Tensor>,
}

/// What one [`fit`] trains on, shared by its runs at each learning rate.
struct Run<'r, 'a> {
    net: &'r dyn Net,
    vars: &'r [(String, Var)],
    units: &'r Units<'a>,
    valid: &'r ValidSet<'a>,
    num_items: usize,
    windows: Windows,
    cfg: &'r TrainConfig,
    device: &'r Device,
}

impl Run<'_, '_> {
    /// Positives per mini-batch: `batch` rows with their negatives.
    fn per_batch(&self) -> usize {
        (self.cfg.batch / (1 + self.cfg.negatives)).max(1)
    }

    /// Epochs at `lr` from the starting weights (validation NDCG@10 `start`) until
    /// `patience` epochs pass without beating this run's best (or `max_epochs`), appending
    /// each epoch to `logs` and keeping the weights of any epoch that beats `best`.
    fn epochs(
        &self,
        lr: f64,
        start: f64,
        bar: &ProgressBar,
        label: &str,
        best: &mut Best,
        logs: &mut Vec<EpochLog>,
    ) -> Result<()> {
        let (cfg, vars, device) = (self.cfg, self.vars, self.device);
        let mut opt = Adam::new(
            vars,
            AdamConfig {
                lr,
                l2: cfg.l2,
                ..AdamConfig::default()
            },
        )?;
        let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
        let mut order: Vec<usize> = (0..self.units.len()).collect();
        let targets: usize = order.iter().map(|&u| self.units.targets(u)).sum();
        let validated = !self.valid.cases.is_empty();
        let (mut run_best, mut since_best) = (start, 0);
        for epoch in 1..=cfg.max_epochs {
            order.shuffle(&mut rng);
            let started = std::time::Instant::now();
            let (mut loss_sum, mut batches) = (0.0, 0usize);
            for chunk in self.units.batches(&order, self.per_batch()) {
                loss_sum += self.step(chunk, &mut rng, &mut opt)?;
                batches += 1;
                bar.inc(1);
            }
            let samples = (targets * (1 + cfg.negatives)) as f64;
            let train_s = started.elapsed().as_secs_f64();
            let ndcg = self.valid.ndcg10(self.net, self.windows, device)?;
            let log = EpochLog {
                epoch,
                lr,
                loss: loss_sum / batches.max(1) as f64,
                valid_ndcg10: ndcg,
                validation: self.valid.kind,
                samples_per_s: samples / train_s.max(1e-9),
                train_s,
                kept: false,
            };
            tracing::debug!(label, ?log, "epoch");
            bar.set_message(format!(
                "{label} lr {lr:e} epoch {epoch}: loss {:.4} valid NDCG@10 {ndcg:.4}",
                log.loss
            ));
            logs.push(log);
            if !validated {
                continue;
            }
            if ndcg > best.ndcg {
                *best = Best {
                    ndcg,
                    at: Some(logs.len() - 1),
                    weights: snapshot(vars)?,
                };
            }
            if ndcg > run_best {
                (run_best, since_best) = (ndcg, 0);
            } else {
                since_best += 1;
                if since_best >= cfg.patience {
                    break;
                }
            }
        }
        Ok(())
    }

    /// One optimiser step on the units `chunk`; returns the batch's mean loss.
    fn step(&self, chunk: &[usize], rng: &mut ChaCha8Rng, opt: &mut Adam) -> Result<f64> {
        let (cfg, vars, device) = (self.cfg, self.vars, self.device);
        // Negatives are drawn here, in batch order, so the shards do not change them.
        let shards: Vec<Shard<'_>> = chunk
            .chunks(chunk.len().div_ceil(cfg.shards.max(1)))
            .map(|part| self.units.sample(part, rng, self.num_items, cfg))
            .collect();
        let rows: usize = shards.iter().map(Shard::rows).sum();
        let parts = par_map(&shards, |s| {
            training_step(|| {
                let loss = s.loss(self.net, self.windows, device)?;
                // Weighted by its share of the rows: the shards' sum is the batch mean.
                let loss = (loss * (s.rows() as f64 / rows as f64))?;
                Ok((loss.to_scalar::<f32>()?, loss.backward()?))
            })
        })?;
        let mut parts = parts.into_iter();
        let Some((loss, mut grads)) = parts.next() else {
            return Ok(0.0);
        };
        let mut loss = f64::from(loss);
        for (l, g) in parts {
            loss += f64::from(l);
            for (_, var) in vars {
                if let Some(more) = g.get(var.as_tensor()) {
                    let sum = match grads.get(var.as_tensor()) {
                        Some(have) => (have + more)?,
                        None => more.clone(),
                    };
                    grads.insert(var.as_tensor(), sum);
                }
            }
        }
        opt.step(&grads)?;
        Ok(loss)
    }
}

/// What an epoch iterates over, in shuffled order.
enum Units<'a> {
    /// One positive per moment, with its own windows.
    Moments(&'a [Positive<'a>]),
    /// Click sequences whose every position predicts the next click ([`SequenceNet`]).
    Sequences {
        net: &'a dyn SequenceNet,
        clicks: Vec<Vec<u32>>,
    },
}

impl<'a> Units<'a> {
    /// Sequences when `net` trains on them, cut from each user's positives in `train` in
    /// time order (the fast-side baselines' positives list a user's phases in separate
    /// runs); moments otherwise.
    fn new(net: &'a dyn Net, train: &'a [Positive<'a>]) -> Units<'a> {
        let Some(seq) = net.sequence() else {
            return Units::Moments(train);
        };
        let mut timed: Vec<&Positive<'_>> = train.iter().collect();
        timed.sort_by_key(|p| (p.moment.user, p.moment.at()));
        let clicks = timed
            .chunk_by(|a, b| a.moment.user == b.moment.user)
            .flat_map(|run| {
                cut_sequences(
                    &run.iter().map(|p| p.item).collect::<Vec<_>>(),
                    seq.window(),
                )
            })
            .collect();
        Units::Sequences { net: seq, clicks }
    }

    fn len(&self) -> usize {
        match self {
            Units::Moments(train) => train.len(),
            Units::Sequences { clicks, .. } => clicks.len(),
        }
    }

    /// The training positives of unit `u`.
    fn targets(&self, u: usize) -> usize {
        match self {
            Units::Moments(_) => 1,
            Units::Sequences { clicks, .. } => clicks[u].len() - 1,
        }
    }

    /// Consecutive runs of `order` with at least `per_batch` positives each (the last may
    /// have fewer): exactly `per_batch` units when every unit is one positive.
    fn batches<'o>(&self, order: &'o [usize], per_batch: usize) -> Vec<&'o [usize]> {
        let mut out = Vec::new();
        let (mut start, mut have) = (0, 0);
        for (k, &u) in order.iter().enumerate() {
            have += self.targets(u);
            if have >= per_batch {
                out.push(&order[start..=k]);
                (start, have) = (k + 1, 0);
            }
        }
        if start < order.len() {
            out.push(&order[start..]);
        }
        out
    }

    /// The shard of units `part`: each positive, its impression negatives (moments only) and
    /// `negatives` sampled negatives.
    fn sample(
        &self,
        part: &[usize],
        rng: &mut ChaCha8Rng,
        num_items: usize,
        cfg: &TrainConfig,
    ) -> Shard<'a> {
        let negatives = cfg.negatives;
        let mut rows = Vec::new();
        let mut push = |at: usize, item: u32, rng: &mut ChaCha8Rng| {
            rows.push(Row {
                moment: at,
                item,
                label: 1.0,
            });
            for negative in sample_negatives(rng, num_items, item, negatives) {
                rows.push(Row {
                    moment: at,
                    item: negative,
                    label: 0.0,
                });
            }
        };
        match self {
            Units::Moments(train) => {
                for (m, &i) in part.iter().enumerate() {
                    push(m, train[i].item, rng);
                }
                for (m, &i) in part.iter().enumerate() {
                    for item in impression(&train[i], cfg.impressions) {
                        rows.push(Row {
                            moment: m,
                            item,
                            label: 0.0,
                        });
                    }
                }
                let moments = part.iter().map(|&i| train[i].moment).collect();
                Shard::Moments { moments, rows }
            }
            Units::Sequences { net, clicks } => {
                // A row's `moment` is its position in the flattened (sequence, step) grid.
                let steps = part.iter().map(|&u| clicks[u].len() - 1).max().unwrap_or(1);
                for (m, &u) in part.iter().enumerate() {
                    for (k, &item) in clicks[u][1..].iter().enumerate() {
                        push(m * steps + k, item, rng);
                    }
                }
                let inputs = part
                    .iter()
                    .map(|&u| clicks[u][..clicks[u].len() - 1].to_vec())
                    .collect();
                Shard::Sequences {
                    net: *net,
                    inputs,
                    rows,
                }
            }
        }
    }
}

/// A user's clicks cut into sequences of at most `n + 1` clicks that overlap by one (`n`
/// inputs, each predicting the click after it), from the latest back, so that the most
/// recent clicks get the longest context. The first click is never a target: it has no
/// history.
fn cut_sequences(items: &[u32], n: usize) -> Vec<Vec<u32>> {
    let mut out = Vec::new();
    let mut end = items.len();
    while end > 1 {
        let start = end.saturating_sub(n + 1);
        out.push(items[start..end].to_vec());
        end = start + 1;
    }
    out.reverse();
    out
}

/// One shard of a mini-batch: its units and their positive and negative rows.
enum Shard<'a> {
    Moments {
        moments: Vec<Moment<'a>>,
        rows: Vec<Row>,
    },
    Sequences {
        net: &'a dyn SequenceNet,
        inputs: Vec<Vec<u32>>,
        rows: Vec<Row>,
    },
}

impl Shard<'_> {
    fn rows(&self) -> usize {
        match self {
            Shard::Moments { rows, .. } | Shard::Sequences { rows, .. } => rows.len(),
        }
    }

    /// The mean BCE of the shard's rows.
    fn loss(&self, net: &dyn Net, windows: Windows, device: &Device) -> Result<Tensor> {
        match self {
            Shard::Moments { moments, rows } => {
                let batch = Batch::new(moments, rows, net.needs(), windows, device)?;
                bce_with_logits(&net.logits(&batch)?, &batch.labels)
            }
            Shard::Sequences { net, inputs, rows } => {
                let states = net.states(&Padded::new(inputs, device)?)?;
                let (m, t, d) = states.dims3()?;
                let n = rows.len();
                let at = Tensor::from_vec(
                    rows.iter().map(|r| r.moment as u32).collect::<Vec<_>>(),
                    n,
                    device,
                )?;
                let items = Tensor::from_vec(rows.iter().map(|r| r.item).collect(), n, device)?;
                let labels =
                    Tensor::from_vec(rows.iter().map(|r| r.label).collect(), (n, 1), device)?;
                let states = states.reshape((m * t, d))?.index_select(&at, 0)?;
                bce_with_logits(&net.score(&states, &items)?, &labels)
            }
        }
    }
}

/// Scores every candidate of `queries` with `net` in one batch: the rows of the evaluation
/// harness's [`crate::eval::protocol::Scorer::score`], one logit per candidate in query order.
pub fn score_queries(
    net: &dyn Net,
    windows: Windows,
    device: &Device,
    queries: &[Query<'_>],
) -> Result<Vec<f32>> {
    let moments: Vec<Moment<'_>> = queries.iter().map(Moment::from).collect();
    let rows: Vec<Row> = queries
        .iter()
        .enumerate()
        .flat_map(|(m, q)| {
            q.candidates.iter().map(move |&item| Row {
                moment: m,
                item,
                label: 0.0,
            })
        })
        .collect();
    let batch = Batch::new(&moments, &rows, net.needs(), windows, device)?;
    Ok(net.logits(&batch)?.flatten_all()?.to_vec1()?)
}

fn progress(len: usize, label: &str) -> ProgressBar {
    let bar = ProgressBar::new(len as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} train [{bar:30}] {percent}% {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(label.to_owned());
    bar
}

fn snapshot(vars: &[(String, Var)]) -> Result<Vec<Tensor>> {
    vars.iter()
        .map(|(_, v)| Ok(v.as_tensor().copy()?))
        .collect()
}

/// Up to `n` items of the impression `p` was clicked from: the exposures of the latest
/// impression strictly before the click — those sharing the timestamp of the last exposure in
/// its real-time window (a feed's items are shown together and clicked after; clicks in between
/// are other clicks on the same feed) — without repeats and without the clicked item. On data
/// without impressions (MovieLens: a rating ≤ 3 is an exposure) this reads as the items the user
/// turned down at the latest moment before the click.
pub fn impression(p: &Positive<'_>, n: usize) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    let mut shown_at = None;
    for e in p.moment.realtime.iter().rev() {
        if out.len() == n {
            break;
        }
        if e.kind == EventKind::Click {
            if shown_at.is_some() {
                break;
            }
            continue;
        }
        match shown_at {
            None => shown_at = Some(e.ts),
            Some(ts) if ts != e.ts => break,
            Some(_) => {}
        }
        if e.item != p.item && !out.contains(&e.item) {
            out.push(e.item);
        }
    }
    out
}

fn restore(vars: &[(String, Var)], saved: &[Tensor]) -> Result<()> {
    for ((_, v), t) in vars.iter().zip(saved) {
        v.set(t)?;
    }
    Ok(())
}

/// Validation cases: each held-out positive first, then the items it is ranked against
/// ([`Validation`]); no event after the positive's moment is consulted.
struct ValidSet<'a> {
    kind: Validation,
    cases: Vec<(Moment<'a>, Vec<u32>)>,
}

impl<'a> ValidSet<'a> {
    fn new(valid: &[Positive<'a>], num_items: usize, seed: u64, pool: NegativePool) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x5eed);
        let cases = valid
            .iter()
            .filter_map(|p| {
                let seen: HashSet<u32> =
                    pool.excluded(p.moment.slow.iter().chain(p.moment.realtime));
                if num_items < seen.len() + 200 {
                    return None;
                }
                let mut candidates = vec![p.item];
                while candidates.len() < 100 {
                    let item = sample_negatives(&mut rng, num_items, p.item, 1)[0];
                    if !seen.contains(&item) && !candidates.contains(&item) {
                        candidates.push(item);
                    }
                }
                Some((p.moment, candidates))
            })
            .collect();
        ValidSet {
            kind: Validation::Sampled,
            cases,
        }
    }

    /// Each held-out positive against the rest of its impression ([`Validation::Impressions`]);
    /// `None` when no positive has one.
    fn impressions(valid: &[Positive<'a>]) -> Option<Self> {
        let cases: Vec<_> = valid
            .iter()
            .filter_map(|p| {
                let shown = impression(p, usize::MAX);
                (!shown.is_empty()).then(|| (p.moment, [vec![p.item], shown].concat()))
            })
            .collect();
        (!cases.is_empty()).then_some(ValidSet {
            kind: Validation::Impressions,
            cases,
        })
    }

    fn ndcg10(&self, net: &dyn Net, windows: Windows, device: &Device) -> Result<f64> {
        if self.cases.is_empty() {
            return Ok(0.0);
        }
        let chunks: Vec<_> = self.cases.chunks(32).collect();
        let sums = par_map(&chunks, |chunk| {
            let mut sum = 0.0;
            let moments: Vec<Moment<'_>> = chunk.iter().map(|(m, _)| *m).collect();
            let rows: Vec<Row> = chunk
                .iter()
                .enumerate()
                .flat_map(|(m, (_, c))| {
                    c.iter().map(move |&item| Row {
                        moment: m,
                        item,
                        label: 0.0,
                    })
                })
                .collect();
            let batch = Batch::new(&moments, &rows, net.needs(), windows, device)?;
            let scores: Vec<f32> = net.logits(&batch)?.flatten_all()?.to_vec1()?;
            let mut at = 0;
            for (_, c) in chunk.iter() {
                sum += Metric::Ndcg(10).at_rank(pessimistic_rank(&scores[at..at + c.len()]));
                at += c.len();
            }
            Ok(sum)
        })?;
        Ok(sums.iter().sum::<f64>() / self.cases.len() as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An event of user 0.
    fn ev(item: u32, ts: i64, kind: EventKind) -> crate::data::Event {
        crate::data::Event {
            user: 0,
            item,
            ts,
            kind,
        }
    }

    /// A click's impression: the exposures of the latest impression strictly before it (other
    /// clicks on the same feed skipped), never an earlier impression, the clicked item or a
    /// repeat, at most `n`.
    #[test]
    fn the_impression_is_the_latest_feed_shown_before_the_click() {
        use EventKind::{Click, Exposure};
        let realtime = [
            ev(1, 10, Exposure), // an earlier feed
            ev(2, 10, Exposure),
            ev(3, 12, Click),
            ev(4, 20, Exposure), // the latest feed: 4, 5, 4 again, 9 (the clicked item)
            ev(5, 20, Exposure),
            ev(4, 20, Exposure),
            ev(9, 20, Exposure),
            ev(6, 23, Click), // another click on the same feed
        ];
        let impression_of = |realtime: &[crate::data::Event], item, n| {
            let moment = Moment {
                user: 0,
                slow: &[],
                realtime,
                uploaded: &[],
            };
            impression(&Positive { moment, item }, n)
        };
        assert_eq!(impression_of(&realtime, 9, 10), [4, 5]);
        assert_eq!(impression_of(&realtime, 9, 1), [4]);
        assert!(impression_of(&realtime, 9, 0).is_empty());
        assert!(impression_of(&[ev(1, 1, Click)], 2, 5).is_empty());
    }

    /// Validating on impressions ranks each held-out click first against the rest of its
    /// impression and leaves out clicks without one; with none at all there is no such set.
    #[test]
    fn impression_validation_ranks_a_click_against_its_impression() {
        use EventKind::Exposure;
        let shown = [ev(4, 20, Exposure), ev(5, 20, Exposure)];
        let moment = |realtime| Moment {
            user: 0,
            slow: &[],
            realtime,
            uploaded: &[],
        };
        let held = [
            Positive {
                moment: moment(&shown),
                item: 9,
            },
            Positive {
                moment: moment(&[]),
                item: 3,
            },
        ];
        let valid = ValidSet::impressions(&held).unwrap();
        assert_eq!(valid.kind, Validation::Impressions);
        assert_eq!(valid.cases.len(), 1);
        assert_eq!(valid.cases[0].1, [9, 5, 4]);
        assert!(ValidSet::impressions(&held[1..]).is_none());
        let sampled = ValidSet::new(&held, 1000, 1, NegativePool::NotClicked);
        assert!(sampled.cases.iter().all(|(_, c)| c.len() == 100));
    }

    #[test]
    fn every_click_but_the_first_is_the_target_of_exactly_one_sequence() {
        for n in [1, 3, 50] {
            for len in 0..120u32 {
                let items: Vec<u32> = (0..len).collect();
                let cut = cut_sequences(&items, n);
                let targets: Vec<u32> = cut.iter().flat_map(|s| s[1..].to_vec()).collect();
                assert_eq!(targets, items.get(1..).unwrap_or(&[]), "n {n}, len {len}");
                assert!(cut.iter().all(|s| s.len() >= 2 && s.len() <= n + 1));
                if let Some(last) = cut.last() {
                    assert_eq!(last.len(), (len as usize).min(n + 1), "the latest is full");
                    assert_eq!(last.last(), items.last());
                }
            }
        }
    }

    /// The fast-side baselines' positives list each user's slow-phase clicks, then the slow
    /// phase's held-out click, then the fast phase's: sequences still follow every user's
    /// clicks in time order, each click (but the first) the target of one.
    #[test]
    fn sequences_follow_each_users_clicks_in_time_order_across_phases() -> Result<()> {
        use crate::baselines::learned::{realtime_positives, Sizes};
        use crate::baselines::Arch;
        use crate::data::split::Split;
        use crate::data::{EventKind, EventLog};

        let mut log = EventLog::default();
        for user in ["a", "b"] {
            for k in 0..30 {
                log.push_raw(user, &format!("c{user}{k}"), k, EventKind::Click);
            }
        }
        let split = Split::new(&log);
        let data = realtime_positives(&split);
        let varmap = candle_nn::VarMap::new();
        let vb = candle_nn::VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &Device::Cpu);
        let sizes = Sizes {
            users: 2,
            items: split.num_items,
            model: crate::models::ModelConfig::default(),
        };
        let net = Arch::Gru4Rec.build(vb, sizes)?;
        let Units::Sequences { clicks, .. } = Units::new(&*net, &data.train) else {
            panic!("GRU4Rec trains on sequences");
        };
        let targets: Vec<u32> = clicks.iter().flat_map(|s| s[1..].to_vec()).collect();
        // Per user: 20 slow-phase clicks and 4 fast-phase ones train (the fifth validates).
        let want: Vec<u32> = (split.timelines.iter())
            .flat_map(|t| t.events[1..24].iter().map(|e| e.item))
            .collect();
        assert_eq!(targets, want);
        Ok(())
    }

    #[test]
    fn learning_rates_are_checked_and_round_trip_through_json() -> Result<()> {
        let d = TrainConfig::default();
        let cfg = d.with_rates(&[2e-3, 1e-2])?;
        assert_eq!((cfg.lr, cfg.rates()), (2e-3, vec![2e-3, 1e-2]));
        let json = serde_json::to_string(&cfg).map_err(|e| TrainerError::Data(e.to_string()))?;
        assert!(json.contains("\"more_lrs\":[0.01]"), "{json}");
        let back: TrainConfig =
            serde_json::from_str(&json).map_err(|e| TrainerError::Data(e.to_string()))?;
        assert_eq!(back, cfg);
        // One rate writes the configuration as before the list existed, and reads it back.
        let one = serde_json::to_string(&d).map_err(|e| TrainerError::Data(e.to_string()))?;
        assert!(!one.contains("more_lrs"), "{one}");
        assert_eq!(serde_json::from_str::<TrainConfig>(&one).ok(), Some(d));
        for bad in [
            &[][..],
            &[1e-3, 1e-3],
            &[f64::NAN],
            &[1e-3, -1.0],
            &[1e-3, f64::INFINITY],
            &[1e-4, 1e-3, 1e-2, 1e-1, 1.0],
        ] {
            assert!(
                matches!(d.with_rates(bad), Err(TrainerError::InvalidArgument(_))),
                "{bad:?}"
            );
        }
        let too_many = json.replace("[0.01]", "[0.01,0.02,0.03,0.04]");
        assert!(serde_json::from_str::<TrainConfig>(&too_many).is_err());
        Ok(())
    }

    #[test]
    fn a_batch_of_moments_holds_exactly_per_batch_positives() {
        let order: Vec<usize> = (0..10).collect();
        let sizes: Vec<usize> = (Units::Moments(&[]).batches(&order, 3).iter())
            .map(|b| b.len())
            .collect();
        assert_eq!(sizes, [3, 3, 3, 1]);
    }
}
