//! The models the evaluation harness can rank with, by their results.json names.
//!
//! `Random` and `Pop` check the harness itself: Random must land at HR@10 ≈ 0.10 with 99
//! negatives, and Pop must beat it on any data with a popularity skew.

mod caser;
pub mod din_plus;
mod fm;
mod gru4rec;
pub mod learned;
mod neumf;
mod pop;
mod random;
mod sasrec;

pub use caser::Caser;
pub use fm::Fm;
pub use gru4rec::Gru4Rec;
pub use learned::{Arch, Learned};
pub use neumf::NeuMf;
pub use pop::Pop;
pub use random::RandomScorer;
pub use sasrec::SasRec;

use std::collections::HashMap;
use std::sync::Arc;

use crate::data::split::Split;
use crate::error::{Result, TrainerError};
use crate::eval::protocol::{Scorer, View};
use crate::models::slowfast::{SlowFast, SlowFastScorer, Step, TrainLog, Variant};
use crate::models::train::{EpochLog, TrainConfig};
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

/// The fast-side rows on equal data with MC²-SF's fast component, which learns from the fast
/// phase only: `X (fast phase)` (see [`learned`]), then the vanilla combinations
/// `DIN+X (fast phase)` and `DIN+X (fast phase with DIN e_i)` (see [`din_plus::Start`]).
/// `--models` names them, `all` leaves them out, as the paper has no such rows.
pub fn equal_data_models() -> Vec<String> {
    let alone = learned::FAST_ARCHS.map(Arch::fast_phase_name);
    let combined = (learned::FAST_ARCHS.into_iter()).flat_map(|arch| {
        (din_plus::Start::ALL.into_iter())
            .filter(|s| *s != din_plus::Start::Trained)
            .map(move |s| s.name(arch))
    });
    alone.into_iter().chain(combined).collect()
}

/// Every name `--models` accepts besides `all`.
fn known_models() -> String {
    let mut known: Vec<String> = ALL_MODELS.iter().map(|m| m.to_string()).collect();
    known.extend(equal_data_models());
    known.join(", ")
}

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
/// `MC2-SF` the fast component of the same Algorithm-1 run, and `MC2-SF+` forks that run
/// after its slow round 1.
pub struct Zoo<'a> {
    split: &'a Split,
    seed: u64,
    config: ZooConfig,
    trained: HashMap<Variant, Arc<SlowFast>>,
    /// MC²-SF's parameters after slow round 1 and that fit's curve, for MC²-SF+ (or the
    /// other way round, whichever trains first): the two start from the same parameters and
    /// fit round 1's slow component on the same data with the same seed, so the fit is the
    /// same and is done once per seed.
    slow_round_1: Option<(SlowFast, (String, Vec<EpochLog>))>,
    learned: HashMap<Arch, Arc<Learned>>,
    /// The training curves of every model trained so far, by model name.
    pub logs: Vec<(String, TrainLog)>,
}

impl<'a> Zoo<'a> {
    pub fn new(split: &'a Split, seed: u64, config: ZooConfig) -> Self {
        Zoo {
            split,
            seed,
            config,
            trained: HashMap::new(),
            slow_round_1: None,
            learned: HashMap::new(),
            logs: Vec::new(),
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
            "FM" => Ok(Box::new(self.learned(Arch::Fm)?)),
            "NeuMF" => Ok(Box::new(self.learned(Arch::NeuMf)?)),
            "GRU4Rec" => Ok(Box::new(self.learned(Arch::Gru4Rec)?)),
            "Caser" => Ok(Box::new(self.learned(Arch::Caser)?)),
            "SASRec" => Ok(Box::new(self.learned(Arch::SasRec)?)),
            other => match (Arch::parse_fast_phase(other), din_plus::parse(other)) {
                (Some(arch), _) => Ok(Box::new(self.fast_phase(arch)?)),
                (None, Some((arch, start))) => self.din_plus(arch, start),
                (None, None) => Err(TrainerError::InvalidArgument(format!(
                    "unknown model {other:?}; known: {}",
                    known_models()
                ))),
            },
        }
    }

    fn slowfast(&mut self, variant: Variant) -> Result<Arc<SlowFast>> {
        if let Some(m) = self.trained.get(&variant) {
            return Ok(m.clone());
        }
        let c = self.config;
        let train = TrainConfig {
            seed: self.seed,
            ..c.train
        };
        let (model, log) = if variant == Variant::Din {
            let model = SlowFast::new(variant, self.split.num_items, c.model, self.seed)?;
            let log = model.train(self.split, &train, c.rounds)?;
            (model, log)
        } else {
            let (model, first) = match &self.slow_round_1 {
                Some((after, fit)) => (after.fork(variant)?, fit.clone()),
                None => {
                    let model = SlowFast::new(variant, self.split.num_items, c.model, self.seed)?;
                    let fit = model.fit_step(self.split, &train, Step::Slow(1))?;
                    self.slow_round_1 = Some((model.fork(variant)?, fit.clone()));
                    (model, fit)
                }
            };
            let mut log = TrainLog { fits: vec![first] };
            for step in model.steps(1..=c.rounds).into_iter().skip(1) {
                log.fits.push(model.fit_step(self.split, &train, step)?);
            }
            (model, log)
        };
        let name = match variant {
            Variant::Din => "DIN",
            Variant::Mc2sf => "MC2-SF",
            Variant::Mc2sfPlus => "MC2-SF+",
        };
        self.logs.push((name.to_owned(), log));
        let model = Arc::new(model);
        self.trained.insert(variant, model.clone());
        Ok(model)
    }
}

impl Zoo<'_> {
    /// The learned baseline `arch`, trained once per seed.
    fn learned(&mut self, arch: Arch) -> Result<Arc<Learned>> {
        if let Some(m) = self.learned.get(&arch) {
            return Ok(m.clone());
        }
        let model = Learned::train(self.split, arch, &self.config, self.seed)?;
        self.logs.push((arch.name().to_owned(), model.log.clone()));
        let model = Arc::new(model);
        self.learned.insert(arch, model.clone());
        Ok(model)
    }

    /// The fast-side `X` trained on the fast phase only (`X (fast phase)`).
    fn fast_phase(&mut self, arch: Arch) -> Result<Learned> {
        let model = Learned::train_fast_phase(self.split, arch, &self.config, self.seed)?;
        self.logs.push((arch.fast_phase_name(), model.log.clone()));
        Ok(model)
    }

    /// `DIN+X` (paper §5.1.3): `X`, started as `start` says, tuned with DIN's scores as a
    /// feature.
    fn din_plus(&mut self, arch: Arch, start: din_plus::Start) -> Result<Box<dyn Scorer>> {
        let din = self.slowfast(Variant::Din)?;
        let trained = match start {
            din_plus::Start::Trained => Some(self.learned(arch)?),
            _ => None,
        };
        let model = din_plus::train(
            self.split,
            din,
            arch,
            start,
            trained.as_deref(),
            &self.config,
            self.seed,
        )?;
        self.logs.push((start.name(arch), model.log.clone()));
        Ok(Box::new(model))
    }
}

/// Expands a comma-separated model list; `all` means every model of the paper's tables
/// ([`ALL_MODELS`]). Names are matched ignoring ASCII case.
pub fn parse_list(list: &str) -> Result<Vec<String>> {
    let mut names = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        if name.eq_ignore_ascii_case("all") {
            names.extend(ALL_MODELS.iter().map(|n| n.to_string()));
        } else if let Some(known) = ALL_MODELS.iter().find(|m| m.eq_ignore_ascii_case(name)) {
            names.push(known.to_string());
        } else if let Some(arch) = Arch::parse_fast_phase(name) {
            names.push(arch.fast_phase_name());
        } else if let Some((arch, start)) = din_plus::parse(name) {
            names.push(start.name(arch));
        } else {
            return Err(TrainerError::InvalidArgument(format!(
                "unknown model {name:?}; known: {}",
                known_models()
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
        assert_eq!(parse_list("all").unwrap(), ALL_MODELS);
        assert_eq!(
            parse_list(
                "din+gru4rec (FAST PHASE), DIN+FM (fast phase with DIN e_i), fm (Fast Phase)"
            )
            .unwrap(),
            [
                "DIN+GRU4Rec (fast phase)",
                "DIN+FM (fast phase with DIN e_i)",
                "FM (fast phase)"
            ]
        );
        let all = parse_list("all").unwrap();
        for extra in equal_data_models() {
            assert!(!all.contains(&extra), "`all` leaves out {extra}");
            assert_eq!(parse_list(&extra).unwrap(), std::slice::from_ref(&extra));
        }
        assert_eq!(equal_data_models().len(), 9);
        for name in ALL_MODELS
            .map(String::from)
            .into_iter()
            .chain(equal_data_models())
        {
            assert!(!name.contains(','), "{name}: lists are comma-separated");
        }
        assert!(
            parse_list("Caser (fast phase)").is_err(),
            "a slow-side baseline"
        );
        let err = parse_list("DIN+GRU4Rec (slow phase)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("DIN+NeuMF (fast phase with DIN e_i)"), "{err}");
        assert!(parse_list("Popp")
            .unwrap_err()
            .to_string()
            .contains("unknown model"));
        assert!(parse_list(" , ").is_err());
    }
}
