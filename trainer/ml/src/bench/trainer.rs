//! Training throughput (docs/architecture.md §10): samples per second of the slow component
//! (DIN w/ F2S, and plain DIN with the same history window) and of the fast component
//! (MC²-SF's S2F fast model), the seconds one epoch of each takes on the data given, and the
//! peak memory. A sample is one scored (moment, item) row: a positive or a sampled negative.

use serde::Serialize;

use crate::error::{Result, TrainerError};
use crate::models::slowfast::{SlowFastNet, TrainLog, Variant};
use crate::models::train::{EpochLog, TrainConfig};
use crate::models::ModelConfig;
use slowfast_data::split::Split;

/// The figures of `slowfast bench trainer --json`.
#[derive(Clone, Debug, Serialize)]
pub struct TrainerBench {
    pub dataset: String,
    pub batch: usize,
    /// The slow component of MC²-SF (DIN with F2S, eq. 5–6).
    pub slow_samples_per_s: f64,
    /// The independent slow component, DIN (eq. 1–2).
    pub din_samples_per_s: f64,
    /// The fast component with S2F (eq. 7–8).
    pub fast_samples_per_s: f64,
    /// One epoch of the slow component plus one of the fast component: one Algorithm-1
    /// round at one epoch per fit.
    pub epoch_s: f64,
    pub slow_epoch_s: f64,
    pub fast_epoch_s: f64,
    /// `None` where the OS does not report it.
    pub peak_rss_mb: Option<f64>,
}

/// One training epoch of each component on `split` (validation on 200 held-out clicks).
pub fn run(
    dataset: &str,
    split: &Split,
    model: ModelConfig,
    train: TrainConfig,
) -> Result<TrainerBench> {
    let cfg = TrainConfig {
        max_epochs: 1,
        max_valid: 200,
        ..train
    };
    let first = |log: &TrainLog, fit: usize| -> Result<EpochLog> {
        log.fits
            .get(fit)
            .and_then(|(_, epochs)| epochs.first().copied())
            .ok_or_else(|| TrainerError::Unusable("no training positives to time".into()))
    };
    let din = SlowFastNet::new(Variant::Din, split.num_items, model, cfg.seed)?;
    let din = first(&din.train(split, &cfg, 1)?, 0)?;
    let mc2sf = SlowFastNet::new(Variant::Mc2sf, split.num_items, model, cfg.seed)?;
    let log = mc2sf.train(split, &cfg, 1)?;
    let (slow, fast) = (first(&log, 0)?, first(&log, 1)?);
    Ok(TrainerBench {
        dataset: dataset.to_owned(),
        batch: cfg.batch,
        slow_samples_per_s: slow.samples_per_s,
        din_samples_per_s: din.samples_per_s,
        fast_samples_per_s: fast.samples_per_s,
        epoch_s: slow.train_s + fast.train_s,
        slow_epoch_s: slow.train_s,
        fast_epoch_s: fast.train_s,
        peak_rss_mb: super::peak_rss_mb(),
    })
}
