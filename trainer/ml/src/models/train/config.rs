//! How a component is trained: [`TrainConfig`], the learning rates a fit tries, and what its
//! validation ranks.

use serde::{Deserialize, Serialize};
use slowfast_data::protocol::sampler::NegativePool;

use crate::error::{Result, TrainerError};

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
    /// ([`impression`](super::impression)): what a device re-ranks. Held-out clicks without an impression are
    /// left out; a fit none of whose held-out clicks has one (no real-time history, as the
    /// slow component's) validates as `Sampled`.
    Impressions,
}

impl Validation {
    pub(super) fn is_sampled(&self) -> bool {
        *self == Validation::Sampled
    }
}
