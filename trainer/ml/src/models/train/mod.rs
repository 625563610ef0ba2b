//! The training loop shared by every model: BCE on each positive and `negatives` sampled
//! negatives (uniform over all items), Adam with L2, and early stopping on the validation
//! NDCG@10 of held-out training-phase clicks (never the test phase).
//!
//! Data parallelism: each mini-batch is cut into [`TrainConfig::shards`] contiguous shards
//! whose losses (weighted by their share of the rows) are differentiated separately and
//! whose gradients are summed: the gradient of the whole batch's mean loss. The shards run on
//! up to [`set_threads`](slowfast_data::parallel::set_threads) threads. The result depends on the shard count (floating-point
//! summation order), never on the thread count, so runs reproduce on any machine.

use std::collections::HashSet;

use candle_core::{Device, Tensor, Var};
use indicatif::{ProgressBar, ProgressStyle};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::denormals::FlushToZero;
use super::features::{sample_negatives, Batch, Moment, Positive, Positives, Row, Windows};
use super::grad_mode::training_step;
use super::optim::{Adam, AdamConfig};
use super::Net;
use crate::error::{Result, TrainerError};
use slowfast_data::parallel::par_map;
use slowfast_data::protocol::metrics::{pessimistic_rank, Metric};
use slowfast_data::protocol::sampler::NegativePool;
use slowfast_data::protocol::Query;
use slowfast_data::EventKind;

mod config;
mod units;

pub use config::{MoreRates, TrainConfig, Validation};
use units::{Shard, Units};

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
            let chunks = self.units.batches(&order, self.per_batch());
            let every = progress_every(chunks.len());
            for chunk in &chunks {
                loss_sum += self.step(chunk, &mut rng, &mut opt)?;
                batches += 1;
                bar.inc(1);
                // Where no bar is drawn (stderr is not a terminal: a CI job, a batch
                // scheduler), the log says how far the fit is.
                if bar.is_hidden() && batches % every == 0 {
                    tracing::info!(
                        label,
                        lr,
                        epoch,
                        batches,
                        of = chunks.len(),
                        loss = loss_sum / batches as f64,
                        "training"
                    );
                }
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
            tracing::info!(
                label,
                lr,
                epoch,
                loss = log.loss,
                valid_ndcg10 = ndcg,
                samples_per_s = log.samples_per_s,
                train_s,
                "epoch"
            );
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
                Ok::<_, TrainerError>((loss.to_scalar::<f32>()?, loss.backward()?))
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

/// Scores every candidate of `queries` with `net` in one batch: the rows of the evaluation
/// harness's [`slowfast_data::protocol::Scorer::score`], one logit per candidate in query order.
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

/// Every how many of an epoch's `batches` a fit whose bar is hidden logs its progress: ten
/// lines an epoch.
fn progress_every(batches: usize) -> usize {
    batches.div_ceil(10).max(1)
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
            Ok::<_, TrainerError>(sum)
        })?;
        Ok(sums.iter().sum::<f64>() / self.cases.len() as f64)
    }
}

#[cfg(test)]
mod tests;
