//! The learned baselines of paper §5.1.3 as one trainable, scoreable type: which data each
//! trains on, which history it may see at test time, and the shared training loop.
//!
//! As the paper reads, "each component is trained in the corresponding phase" (§5.1.1): a
//! slow-side baseline (Caser, SASRec) trains on the slow-phase clicks like DIN and sees the
//! slow phase only; a fast-side baseline `X` (FM, NeuMF, GRU4Rec, taken "as the fast
//! component", §5.1.3) trains on the fast-phase clicks, the ones MC²-SF's fast component learns
//! from, and sees every event before the target at test time. This is the reading of the
//! protocol that `docs/protocol.md` sets out ("Which data each row learns from").
//!
//! `X+` goes beyond the paper as `MC2-SF+` does: the fast-side `X` trained on every
//! training-phase click with its real-time windows (slow and fast phases; the fast phase's
//! last click of each user is held out for early stopping), the on-device model an engineer
//! would train without the slow-fast split.

use candle_core::DType;
use candle_nn::{VarBuilder, VarMap};

use super::caser::Caser;
use super::fm::Fm;
use super::gru4rec::Gru4Rec;
use super::neumf::NeuMf;
use super::sasrec::SasRec;
use super::{Sizes, ZooConfig};
use crate::error::{Result, TrainerError};
use crate::models::features::{positives, realtime_positives, Phase, Positives, Windows};
use crate::models::slowfast::TrainLog;
use crate::models::train::{fit, score_queries, TrainConfig};
use crate::models::{device, named_vars, seed_init, Net};
use slowfast_data::protocol::{Query, Scorer, View};
use slowfast_data::split::Split;

/// The fast-side baselines (paper §5.1.3: "as the fast component").
pub const FAST_ARCHS: [Arch; 3] = [Arch::Fm, Arch::NeuMf, Arch::Gru4Rec];

/// A learned baseline's architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Arch {
    Fm,
    NeuMf,
    Gru4Rec,
    Caser,
    SasRec,
}

impl Arch {
    /// The results.json name.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Fm => "FM",
            Arch::NeuMf => "NeuMF",
            Arch::Gru4Rec => "GRU4Rec",
            Arch::Caser => "Caser",
            Arch::SasRec => "SASRec",
        }
    }

    /// The results.json name of the fast-side `X` trained on every training click (`X+`).
    pub fn every_click_name(self) -> String {
        format!("{}+", self.name())
    }

    /// The fast-side architecture whose [`Arch::every_click_name`] is `name` (ASCII case
    /// ignored).
    pub fn parse_every_click(name: &str) -> Option<Arch> {
        FAST_ARCHS
            .into_iter()
            .find(|arch| arch.every_click_name().eq_ignore_ascii_case(name))
    }

    /// The prefix of the architecture's parameters.
    fn prefix(self) -> &'static str {
        match self {
            Arch::Fm => "fm",
            Arch::NeuMf => "neumf",
            Arch::Gru4Rec => "gru4rec",
            Arch::Caser => "caser",
            Arch::SasRec => "sasrec",
        }
    }

    /// The history the model may see at test time.
    pub fn view(self) -> View {
        match self {
            Arch::Fm | Arch::NeuMf | Arch::Gru4Rec => View::RealTime,
            Arch::Caser | Arch::SasRec => View::Slow,
        }
    }

    /// A freshly built network with its parameters under `vb` (at the architecture's prefix).
    pub fn build(self, vb: VarBuilder, s: Sizes) -> Result<Box<dyn Net + Send + Sync>> {
        let vb = vb.pp(self.prefix());
        Ok(match self {
            Arch::Fm => Box::new(Fm::new(vb, s)?),
            Arch::NeuMf => Box::new(NeuMf::new(vb, s)?),
            Arch::Gru4Rec => Box::new(Gru4Rec::new(vb, s)?),
            Arch::Caser => Box::new(Caser::new(vb, s)?),
            Arch::SasRec => Box::new(SasRec::new(vb, s)?),
        })
    }

    /// The training positives of the architecture's own phase (see the module doc).
    pub fn positives(self, split: &Split) -> Positives<'_> {
        match self.view() {
            View::Slow => positives(split, Phase::Slow),
            View::RealTime => positives(split, Phase::Fast),
        }
    }
}

/// A trained baseline: its parameters, its network, and its training curves.
pub struct Learned {
    pub varmap: VarMap,
    pub net: Box<dyn Net + Send + Sync>,
    pub view: View,
    pub windows: Windows,
    pub log: TrainLog,
}

impl Learned {
    /// An untrained model whose variables are seeded; `build` adds the network.
    pub fn init(
        split: &Split,
        config: &ZooConfig,
        seed: u64,
        view: View,
        build: impl FnOnce(VarBuilder, Sizes) -> Result<Box<dyn Net + Send + Sync>>,
    ) -> Result<Learned> {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &device()?);
        let sizes = Sizes {
            users: split.num_users,
            items: split.num_items,
            model: config.model,
        };
        let net = build(vb, sizes)?;
        seed_init(&varmap, seed)?;
        Ok(Learned {
            varmap,
            net,
            view,
            windows: config.model.windows,
            log: TrainLog::default(),
        })
    }

    /// `arch` trained on the positives of its own phase of `split` with the seed (the
    /// paper's row `X`).
    pub fn train(split: &Split, arch: Arch, config: &ZooConfig, seed: u64) -> Result<Learned> {
        let data = arch.positives(split);
        Learned::train_on(split, arch, &data, config, seed, arch.name())
    }

    /// The fast-side `arch` trained on every training-phase click with its real-time windows
    /// (`X+`, see the module doc); every event before the target at test time.
    pub fn train_every_click(
        split: &Split,
        arch: Arch,
        config: &ZooConfig,
        seed: u64,
    ) -> Result<Learned> {
        if !FAST_ARCHS.contains(&arch) {
            return Err(TrainerError::InvalidArgument(format!(
                "{} is a slow-side baseline; it has no every-click row",
                arch.name()
            )));
        }
        let data = realtime_positives(split);
        Learned::train_on(split, arch, &data, config, seed, &arch.every_click_name())
    }

    fn train_on(
        split: &Split,
        arch: Arch,
        data: &Positives<'_>,
        config: &ZooConfig,
        seed: u64,
        label: &str,
    ) -> Result<Learned> {
        let mut model = Learned::init(split, config, seed, arch.view(), |vb, s| arch.build(vb, s))?;
        model.fit(split, data, &config.train, seed, label)?;
        Ok(model)
    }

    /// Fits every variable on `data` and appends the curve to the log.
    pub fn fit(
        &mut self,
        split: &Split,
        data: &Positives<'_>,
        train: &TrainConfig,
        seed: u64,
        label: &str,
    ) -> Result<()> {
        let cfg = TrainConfig { seed, ..*train };
        let vars = named_vars(&self.varmap, &[]);
        let curve = fit(
            &*self.net,
            &vars,
            data,
            split.num_items,
            self.windows,
            &cfg,
            label,
        )?;
        self.log.fits.push((label.to_owned(), curve));
        Ok(())
    }
}

impl Scorer for Learned {
    type Error = TrainerError;

    fn view(&self) -> View {
        self.view
    }

    fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>> {
        let device = device()?;
        score_queries(&*self.net, self.windows, &device, queries)
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A log sink the test reads back.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// Every epoch of a fit is a line of the log at the default level, with the figures its
    /// training curve keeps: a run whose output is not a terminal still shows its progress.
    #[test]
    fn each_epoch_is_logged_with_its_loss_and_validation() -> Result<()> {
        let data = crate::testing::tiny();
        let config = ZooConfig {
            train: TrainConfig {
                max_epochs: 3,
                patience: 3,
                ..TrainConfig::default()
            },
            ..ZooConfig::default()
        };
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let model = tracing::subscriber::with_default(subscriber, || {
            Learned::train(&data.split, Arch::Fm, &config, 1)
        })?;
        let text = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let epochs: Vec<&str> = text.lines().filter(|l| l.contains(": epoch ")).collect();
        let (label, logs) = &model.log.fits[0];
        assert_eq!(epochs.len(), logs.len(), "{text}");
        assert_eq!(logs.len(), 3);
        for (line, log) in epochs.iter().zip(logs) {
            for field in [
                format!("label=\"{label}\""),
                format!("epoch={}", log.epoch),
                format!("loss={:?}", log.loss),
                format!("valid_ndcg10={:?}", log.valid_ndcg10),
            ] {
                assert!(line.contains(&field), "{field} not in {line}");
            }
        }
        Ok(())
    }
}
