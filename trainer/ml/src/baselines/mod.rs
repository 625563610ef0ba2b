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

use crate::error::{Result, TrainerError};
use crate::models::slowfast::{PriorSource, SlowFastNet, SlowFastScorer, Step, TrainLog, Variant};
use crate::models::train::{EpochLog, TrainConfig};
use crate::models::ModelConfig;
use slowfast_data::protocol::{Scorer, View};
use slowfast_data::split::Split;

/// The table sizes a baseline needs.
#[derive(Clone, Copy, Debug)]
pub struct Sizes {
    pub users: usize,
    pub items: usize,
    pub model: ModelConfig,
}

/// Every model name of results.json, in the paper's Table 2 order (harness checks first),
/// then the rows beyond the paper: the strongest fast side trained on every click (`GRU4Rec+`,
/// `DIN+GRU4Rec+`, see [`learned`]) and `MC2-SF+`, whose fast component learns from the same
/// clicks.
pub const ALL_MODELS: [&str; 16] = [
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
    "GRU4Rec+",
    "DIN+GRU4Rec+",
    "MC2-SF+",
];

/// The rows `--models` names one by one and `all` leaves out: `FM+`, `NeuMF+` and their
/// `DIN+X+` (the weaker fast sides on every click, see [`learned`]), and `DIN+X (from
/// scratch)` for every fast-side `X` (see [`din_plus::Start`]).
pub fn extra_models() -> Vec<String> {
    let alone = learned::FAST_ARCHS.map(Arch::every_click_name);
    let combined = (learned::FAST_ARCHS.into_iter()).flat_map(|arch| {
        (din_plus::Start::ALL.into_iter())
            .filter(|s| *s != din_plus::Start::DinEmbeddings)
            .map(move |s| s.name(arch))
    });
    (alone.into_iter().chain(combined))
        .filter(|name| !ALL_MODELS.contains(&name.as_str()))
        .collect()
}

/// Every name `--models` accepts besides `all`.
fn known_models() -> String {
    let mut known: Vec<String> = ALL_MODELS.iter().map(|m| m.to_string()).collect();
    known.extend(extra_models());
    known.join(", ")
}

/// Rounds of Algorithm 1 unless a command says otherwise (`slowfast eval`, `slowfast train`).
pub const DEFAULT_ROUNDS: usize = 2;

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
            rounds: DEFAULT_ROUNDS,
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
    trained: HashMap<Variant, Arc<SlowFastNet>>,
    /// MC²-SF's parameters after slow round 1 and that fit's curve, for MC²-SF+ (or the
    /// other way round, whichever trains first): the two start from the same parameters and
    /// fit round 1's slow component on the same data with the same seed, so the fit is the
    /// same and is done once per seed.
    slow_round_1: Option<(SlowFastNet, (String, Vec<EpochLog>))>,
    /// The stand-alone learned baselines by architecture and whether on every click (`X+`).
    learned: HashMap<(Arch, bool), Arc<Learned>>,
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
    pub fn scorer(&mut self, name: &str) -> Result<Box<dyn Scorer<Error = TrainerError>>> {
        let slowfast =
            |zoo: &mut Self, variant, view| -> Result<Box<dyn Scorer<Error = TrainerError>>> {
                Ok(Box::new(SlowFastScorer {
                    model: zoo.slowfast(variant)?,
                    view,
                    priors: PriorSource::Slow,
                }))
            };
        match name {
            "Random" => Ok(Box::new(RandomScorer::new(self.seed))),
            "Pop" => Ok(Box::new(Pop::fit(self.split))),
            "DIN" => slowfast(self, Variant::Din, View::Slow),
            "DIN w/ F2S" => slowfast(self, Variant::Mc2sf, View::Slow),
            "MC2-SF" => slowfast(self, Variant::Mc2sf, View::RealTime),
            "MC2-SF+" => slowfast(self, Variant::Mc2sfPlus, View::RealTime),
            "FM" => Ok(Box::new(self.learned(Arch::Fm, false)?)),
            "NeuMF" => Ok(Box::new(self.learned(Arch::NeuMf, false)?)),
            "GRU4Rec" => Ok(Box::new(self.learned(Arch::Gru4Rec, false)?)),
            "Caser" => Ok(Box::new(self.learned(Arch::Caser, false)?)),
            "SASRec" => Ok(Box::new(self.learned(Arch::SasRec, false)?)),
            other => match (Arch::parse_every_click(other), din_plus::parse(other)) {
                (Some(arch), _) => Ok(Box::new(self.learned(arch, true)?)),
                (None, Some((arch, start))) => self.din_plus(arch, start),
                (None, None) => Err(TrainerError::InvalidArgument(format!(
                    "unknown model {other:?}; known: {}",
                    known_models()
                ))),
            },
        }
    }

    /// The slow-fast model `variant` (both components), trained once per seed.
    pub fn slowfast(&mut self, variant: Variant) -> Result<Arc<SlowFastNet>> {
        if let Some(m) = self.trained.get(&variant) {
            return Ok(m.clone());
        }
        let c = self.config;
        let train = TrainConfig {
            seed: self.seed,
            ..c.train
        };
        let (model, log) = if variant == Variant::Din {
            let model = SlowFastNet::new(variant, self.split.num_items, c.model, self.seed)?;
            let log = model.train(self.split, &train, c.rounds)?;
            (model, log)
        } else {
            let (model, first) = match &self.slow_round_1 {
                Some((after, fit)) => (after.fork(variant)?, fit.clone()),
                None => {
                    let model =
                        SlowFastNet::new(variant, self.split.num_items, c.model, self.seed)?;
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
    /// The learned baseline `arch` (on every click: `X+`), trained once per seed.
    fn learned(&mut self, arch: Arch, every_click: bool) -> Result<Arc<Learned>> {
        if let Some(m) = self.learned.get(&(arch, every_click)) {
            return Ok(m.clone());
        }
        let (model, name) = if every_click {
            let model = Learned::train_every_click(self.split, arch, &self.config, self.seed)?;
            (model, arch.every_click_name())
        } else {
            let model = Learned::train(self.split, arch, &self.config, self.seed)?;
            (model, arch.name().to_owned())
        };
        self.logs.push((name, model.log.clone()));
        let model = Arc::new(model);
        self.learned.insert((arch, every_click), model.clone());
        Ok(model)
    }

    /// `DIN+X` (paper §5.1.3): `X`, started as `start` says, tuned with DIN's scores as a
    /// feature.
    fn din_plus(
        &mut self,
        arch: Arch,
        start: din_plus::Start,
    ) -> Result<Box<dyn Scorer<Error = TrainerError>>> {
        let din = self.slowfast(Variant::Din)?;
        let trained = match start {
            din_plus::Start::EveryClick => Some(self.learned(arch, true)?),
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
        } else if let Some(arch) = Arch::parse_every_click(name) {
            names.push(arch.every_click_name());
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
            parse_list("din+gru4rec (FROM SCRATCH), DIN+fm+, fm+, gru4rec+, din+neumf").unwrap(),
            [
                "DIN+GRU4Rec (from scratch)",
                "DIN+FM+",
                "FM+",
                "GRU4Rec+",
                "DIN+NeuMF"
            ]
        );
        let all = parse_list("all").unwrap();
        let extra = extra_models();
        assert_eq!(
            extra,
            [
                "FM+",
                "NeuMF+",
                "DIN+FM+",
                "DIN+FM (from scratch)",
                "DIN+NeuMF+",
                "DIN+NeuMF (from scratch)",
                "DIN+GRU4Rec (from scratch)"
            ]
        );
        for name in &extra {
            assert!(!all.contains(name), "`all` leaves out {name}");
            assert_eq!(parse_list(name).unwrap(), std::slice::from_ref(name));
        }
        for name in ALL_MODELS.map(String::from).into_iter().chain(extra) {
            assert!(!name.contains(','), "{name}: lists are comma-separated");
        }
        assert!(parse_list("Caser+").is_err(), "a slow-side baseline");
        let err = parse_list("DIN+GRU4Rec (fast phase)")
            .unwrap_err()
            .to_string();
        assert!(err.contains("DIN+NeuMF (from scratch)"), "{err}");
        assert!(parse_list("Popp")
            .unwrap_err()
            .to_string()
            .contains("unknown model"));
        assert!(parse_list(" , ").is_err());
    }
}
