//! The models the evaluation harness can rank with, by their results.json names.
//!
//! `Random` and `Pop` check the harness itself: Random must land at HR@10 ≈ 0.10 with 99
//! negatives, and Pop must beat it on any data with a popularity skew.

mod pop;
mod random;

pub use pop::Pop;
pub use random::RandomScorer;

use std::collections::HashMap;
use std::sync::Arc;

use crate::data::split::Split;
use crate::error::{Result, TrainerError};
use crate::eval::protocol::{Scorer, View};
use crate::models::slowfast::{SlowFast, SlowFastScorer, Variant};
use crate::models::train::TrainConfig;
use crate::models::ModelConfig;

/// Every model name of results.json, in the paper's Table 2 order (harness checks first).
pub const ALL_MODELS: [&str; 14] = [
    "Random",
    "Pop",
    "FM",
    "NeuMF",
    "GRU4Rec",
    "Caser",
    "SASRec",
    "DIN",
    "DIN+FM",
    "DIN+NeuMF",
    "DIN+GRU4Rec",
    "DIN w/ F2S",
    "MC2-SF",
    "MC2-SF+",
];

/// The models implemented so far.
pub const AVAILABLE: [&str; 6] = ["Random", "Pop", "DIN", "DIN w/ F2S", "MC2-SF", "MC2-SF+"];

/// How the learned models are trained.
#[derive(Clone, Copy, Debug)]
pub struct ZooConfig {
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// Rounds of Algorithm 1.
    pub rounds: usize,
}

impl Default for ZooConfig {
    fn default() -> Self {
        ZooConfig {
            model: ModelConfig::default(),
            train: TrainConfig::default(),
            rounds: 2,
        }
    }
}

/// Trains the models one seed needs, each once: `DIN w/ F2S` is the slow component and
/// `MC2-SF` the fast component of the same Algorithm-1 run.
pub struct Zoo<'a> {
    split: &'a Split,
    seed: u64,
    config: ZooConfig,
    trained: HashMap<Variant, Arc<SlowFast>>,
}

impl<'a> Zoo<'a> {
    pub fn new(split: &'a Split, seed: u64, config: ZooConfig) -> Self {
        Zoo {
            split,
            seed,
            config,
            trained: HashMap::new(),
        }
    }

    /// The model called `name`, trained on the training phases of the split with the seed.
    pub fn scorer(&mut self, name: &str) -> Result<Box<dyn Scorer>> {
        let slowfast = |zoo: &mut Self, variant, view| -> Result<Box<dyn Scorer>> {
            Ok(Box::new(SlowFastScorer {
                model: zoo.slowfast(variant)?,
                view,
            }))
        };
        match name {
            "Random" => Ok(Box::new(RandomScorer::new(self.seed))),
            "Pop" => Ok(Box::new(Pop::fit(self.split))),
            "DIN" => slowfast(self, Variant::Din, View::Slow),
            "DIN w/ F2S" => slowfast(self, Variant::Mc2sf, View::Slow),
            "MC2-SF" => slowfast(self, Variant::Mc2sf, View::RealTime),
            "MC2-SF+" => slowfast(self, Variant::Mc2sfPlus, View::RealTime),
            other if ALL_MODELS.contains(&other) => Err(TrainerError::InvalidArgument(format!(
                "model {other:?} is not implemented yet; available: {}",
                AVAILABLE.join(", ")
            ))),
            other => Err(TrainerError::InvalidArgument(format!(
                "unknown model {other:?}; known: {}",
                ALL_MODELS.join(", ")
            ))),
        }
    }

    fn slowfast(&mut self, variant: Variant) -> Result<Arc<SlowFast>> {
        if let Some(m) = self.trained.get(&variant) {
            return Ok(m.clone());
        }
        let c = self.config;
        let model = SlowFast::new(variant, self.split.num_items, c.model, self.seed)?;
        let train = TrainConfig {
            seed: self.seed,
            ..c.train
        };
        model.train(self.split, &train, c.rounds)?;
        let model = Arc::new(model);
        self.trained.insert(variant, model.clone());
        Ok(model)
    }
}

/// Expands a comma-separated model list; `all` means every available model.
pub fn parse_list(list: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("all") {
            names.extend(AVAILABLE.iter().map(|n| n.to_string()));
        } else if let Some(known) = ALL_MODELS.iter().find(|m| m.eq_ignore_ascii_case(name)) {
            names.push(known.to_string());
        } else {
            return Err(TrainerError::InvalidArgument(format!(
                "unknown model {name:?}; known: {}",
                ALL_MODELS.join(", ")
            )));
        }
    }
    names.dedup();
    if names.is_empty() {
        return Err(TrainerError::InvalidArgument("empty model list".into()));
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_list_parsing() {
        assert_eq!(parse_list("pop, Random").unwrap(), ["Pop", "Random"]);
        assert_eq!(parse_list("all").unwrap(), AVAILABLE);
        assert!(parse_list("Popp")
            .unwrap_err()
            .to_string()
            .contains("unknown model"));
        assert!(parse_list(" , ").is_err());
    }
}
