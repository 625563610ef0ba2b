//! Slow-fast learning (paper §4.5, Algorithm 1) and the scorers the evaluation runs.
//!
//! Each round: the slow component trains with the negative memory `r̂2` that GRU_n folds from
//! the exposures (step "receive r̂2"), then the fast component trains with the slow
//! component's priors `r_t, r_n` (S2F), updating GRU_n, which yields the next round's `r̂2`.
//!
//! Who owns what: the item embeddings `e_i` belong to the cloud (the server sends them with
//! every candidate), so only slow training updates them; GRU_n is trained by both sides.

use std::sync::Arc;

use candle_core::{Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::fast::FastNet;
use super::features::{positives, Batch, Moment, Needs, Phase, Positives, Row};
use super::slow::SlowNet;
use super::train::{fit, EpochLog, TrainConfig};
use super::{device, seed_init, ModelConfig, Net, Shared};
use crate::data::split::Split;
use crate::error::Result;
use crate::eval::protocol::{Query, Scorer, View};

/// Which of the paper's slow-fast models to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Variant {
    /// The independent slow component, DIN (eq. 1–2).
    Din,
    /// MC²-SF: slow with F2S (eq. 5–6) and fast with S2F (eq. 7–8), Algorithm 1.
    Mc2sf,
    /// MC²-SF whose fast component first also learns from every slow-phase click with its
    /// real-time windows, then is tuned with the priors on the fast phase (beyond the paper).
    Mc2sfPlus,
}

/// Training curves of every fit, in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainLog {
    pub fits: Vec<(String, Vec<EpochLog>)>,
}

/// The parameters of a slow-fast model.
pub struct SlowFast {
    pub varmap: VarMap,
    pub shared: Shared,
    pub slow: SlowNet,
    /// `None` for [`Variant::Din`].
    pub fast: Option<FastNet>,
    pub config: ModelConfig,
    pub variant: Variant,
}

impl SlowFast {
    /// A freshly initialised model for `num_items` items.
    pub fn new(
        variant: Variant,
        num_items: usize,
        config: ModelConfig,
        seed: u64,
    ) -> Result<SlowFast> {
        let device = device()?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &device);
        let (d, hidden) = (config.dim, config.hidden);
        let with_fast = variant != Variant::Din;
        let model = SlowFast {
            shared: Shared::new(vb.clone(), num_items, d)?,
            slow: SlowNet::new(vb.pp("slow"), d, hidden, with_fast)?,
            fast: if with_fast {
                Some(FastNet::new(vb.pp("fast"), d, hidden, true)?)
            } else {
                None
            },
            varmap,
            config,
            variant,
        };
        seed_init(&model.varmap, seed)?;
        Ok(model)
    }

    /// Trains with Algorithm 1 for `rounds` rounds (one slow fit for [`Variant::Din`]).
    pub fn train(&self, split: &Split, cfg: &TrainConfig, rounds: usize) -> Result<TrainLog> {
        let mut log = TrainLog::default();
        self.train_rounds(split, cfg, 1..=rounds, &mut |_, round_log| {
            log.fits.extend(round_log.fits.iter().cloned());
            Ok(())
        })?;
        Ok(log)
    }

    /// Trains rounds `rounds` of Algorithm 1 (a checkpoint resumes after the last round it
    /// saved) and calls `after_round` with each finished round and its fits.
    pub fn train_rounds(
        &self,
        split: &Split,
        cfg: &TrainConfig,
        rounds: std::ops::RangeInclusive<usize>,
        after_round: &mut dyn FnMut(usize, &TrainLog) -> Result<()>,
    ) -> Result<()> {
        let w = self.config.windows;
        let slow_data = positives(split, Phase::Slow);
        let fast_data = positives(split, Phase::Fast);
        let slow_vars = self.vars(&["item_emb", "slow.", "gru_n."]);
        let fast_vars = self.vars(&["fast.", "gru_n."]);
        let rounds = if self.fast.is_some() {
            *rounds.start()..=(*rounds.end()).max(1)
        } else {
            *rounds.start()..=1
        };
        for round in rounds {
            let mut log = TrainLog::default();
            let cfg = TrainConfig {
                seed: cfg.seed.wrapping_add(round as u64),
                ..*cfg
            };
            let mut run = |label: String,
                           net: &dyn Net,
                           vars: &[(String, Var)],
                           data: &Positives<'_>|
             -> Result<()> {
                let curve = fit(net, vars, data, split.num_items, w, &cfg, &label)?;
                log.fits.push((label, curve));
                Ok(())
            };
            run(
                format!("slow round {round}"),
                &SlowPart(self),
                &slow_vars,
                &slow_data,
            )?;
            if self.fast.is_none() {
                after_round(round, &log)?;
                continue;
            }
            if self.variant == Variant::Mc2sfPlus && round == 1 {
                let pre_data = positives(split, Phase::SlowRealTime);
                let label = "fast pre-training on slow-phase clicks".to_owned();
                run(label, &FastPart(self), &fast_vars, &pre_data)?;
            }
            run(
                format!("fast round {round}"),
                &FastPart(self),
                &fast_vars,
                &fast_data,
            )?;
            after_round(round, &log)?;
        }
        Ok(())
    }

    /// The variables whose names start with one of `prefixes`, in name order.
    fn vars(&self, prefixes: &[&str]) -> Vec<(String, Var)> {
        let data = self.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
        let mut named: Vec<(String, Var)> = data
            .iter()
            .filter(|(n, _)| prefixes.iter().any(|p| n.starts_with(p)))
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        named.sort_by(|a, b| a.0.cmp(&b.0));
        named
    }

    /// The slow component's priors `(r_t, r_n)` for each row, detached (eq. 1 and 5).
    pub fn priors(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let out = self.slow.forward(&self.shared, batch)?;
        Ok((out.r_t.detach(), out.r_n.detach()))
    }
}

/// The slow component as a trainable net.
struct SlowPart<'a>(&'a SlowFast);

impl Net for SlowPart<'_> {
    fn needs(&self) -> Needs {
        self.0.slow.needs()
    }
    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        Ok(self.0.slow.forward(&self.0.shared, batch)?.logits)
    }
}

/// The fast component with the slow component's priors as a trainable net.
struct FastPart<'a>(&'a SlowFast);

impl Net for FastPart<'_> {
    fn needs(&self) -> Needs {
        let slow = self.0.slow.needs();
        Needs {
            realtime: true,
            ..slow
        }
    }
    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let m = self.0;
        let fast = m
            .fast
            .as_ref()
            .ok_or_else(|| crate::TrainerError::InvalidArgument("no fast component".into()))?;
        fast.forward(&m.shared, batch, Some(&m.priors(batch)?))
    }
}

/// Scores with the slow component (cloud view) or the fast one (device view).
pub struct SlowFastScorer {
    pub model: Arc<SlowFast>,
    pub view: View,
}

impl Scorer for SlowFastScorer {
    fn view(&self) -> View {
        self.view
    }

    fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>> {
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
        let net: &dyn Net = match self.view {
            View::Slow => &SlowPart(&self.model),
            View::RealTime => &FastPart(&self.model),
        };
        let device = self.model.shared.item_emb.device();
        let batch = Batch::new(
            &moments,
            &rows,
            net.needs(),
            self.model.config.windows,
            device,
        )?;
        Ok(net.logits(&batch)?.flatten_all()?.to_vec1()?)
    }
}
