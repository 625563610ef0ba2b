//! Slow-fast learning (paper §4.5, Algorithm 1) and the scorers the evaluation runs.
//!
//! Each round: the slow component trains with the negative memory `r̂2` that GRU_n folds from
//! the exposures (step "receive r̂2"), then the fast component trains with the slow
//! component's priors `r_t, r_n` (S2F), updating GRU_n, which yields the next round's `r̂2`.
//!
//! Who owns what: the item embeddings `e_i` belong to the cloud (the server sends them with
//! every candidate), so only the cloud's fits update them: slow training, and MC²-SF+'s fast
//! pre-training, which runs in the cloud on slow-phase clicks. The device's fast rounds never
//! do. GRU_n is trained by both sides.

use std::sync::Arc;

use candle_core::{Tensor, Var};
use candle_nn::{VarBuilder, VarMap};
use serde::{Deserialize, Serialize};

use super::fast::FastNet;
use super::features::{positives, Batch, Needs, Phase};
use super::grad_mode::inference;
use super::slow::SlowNet;
use super::train::{fit, score_queries, EpochLog, TrainConfig};
use super::{device, named_vars, seed_init, ModelConfig, Net, Shared};
use crate::error::{Result, TrainerError};
use slowfast_data::protocol::{Query, Scorer, View};
use slowfast_data::split::Split;

/// Which of the paper's slow-fast models to train.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Variant {
    /// The independent slow component, DIN (eq. 1–2).
    Din,
    /// MC²-SF: slow with F2S (eq. 5–6) and fast with S2F (eq. 7–8), Algorithm 1.
    Mc2sf,
    /// MC²-SF whose fast component first also learns from every slow-phase click with its
    /// real-time windows, tuning the item embeddings with it (a cloud job), then is tuned with
    /// the priors on the fast phase (beyond the paper).
    Mc2sfPlus,
}

/// One fit of Algorithm 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Round `r`'s slow training, with the negative memory `r̂2` (F2S) where there is a fast
    /// component.
    Slow(usize),
    /// MC²-SF+ only, in round 1 before the fast phase: the fast component and the item
    /// embeddings learn from every slow-phase click with its real-time windows. This runs in
    /// the cloud, which owns the embeddings; slow round 2 then refits the slow component to
    /// them.
    PreTrain,
    /// Round `r`'s fast training with the slow component's priors (S2F).
    Fast(usize),
}

/// Training curves of every fit, in order.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TrainLog {
    pub fits: Vec<(String, Vec<EpochLog>)>,
}

/// The parameters of a slow-fast model.
pub struct SlowFastNet {
    pub varmap: VarMap,
    pub shared: Shared,
    pub slow: SlowNet,
    /// `None` for [`Variant::Din`].
    pub fast: Option<FastNet>,
    pub config: ModelConfig,
    pub variant: Variant,
}

impl SlowFastNet {
    /// A freshly initialised model for `num_items` items.
    pub fn new(
        variant: Variant,
        num_items: usize,
        config: ModelConfig,
        seed: u64,
    ) -> Result<SlowFastNet> {
        let device = device()?;
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, candle_core::DType::F32, &device);
        let (d, hidden) = (config.dim, config.hidden);
        let with_fast = variant != Variant::Din;
        let model = SlowFastNet {
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
        let fits = (self.steps(1..=rounds).into_iter())
            .map(|step| self.fit_step(split, cfg, step))
            .collect::<Result<_>>()?;
        Ok(TrainLog { fits })
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
        for round in self.rounds(rounds) {
            let mut log = TrainLog::default();
            for step in self.round_steps(round) {
                log.fits.push(self.fit_step(split, cfg, step)?);
            }
            after_round(round, &log)?;
        }
        Ok(())
    }

    /// The rounds of `rounds` this model trains: [`Variant::Din`] has nothing to alternate
    /// with and trains round 1 only; the others train at least round 1.
    fn rounds(&self, rounds: std::ops::RangeInclusive<usize>) -> std::ops::RangeInclusive<usize> {
        if self.fast.is_some() {
            *rounds.start()..=(*rounds.end()).max(1)
        } else {
            *rounds.start()..=1
        }
    }

    /// The fits of rounds `rounds` of Algorithm 1, in order.
    pub fn steps(&self, rounds: std::ops::RangeInclusive<usize>) -> Vec<Step> {
        self.rounds(rounds)
            .flat_map(|round| self.round_steps(round))
            .collect()
    }

    /// The fits of round `round` of Algorithm 1, in order.
    fn round_steps(&self, round: usize) -> Vec<Step> {
        let mut steps = vec![Step::Slow(round)];
        if self.fast.is_some() {
            if self.variant == Variant::Mc2sfPlus && round == 1 {
                steps.push(Step::PreTrain);
            }
            steps.push(Step::Fast(round));
        }
        steps
    }

    /// Runs one fit of Algorithm 1 and returns its label and curve. The fits of round `r`
    /// sample with the seed `cfg.seed + r`.
    pub fn fit_step(
        &self,
        split: &Split,
        cfg: &TrainConfig,
        step: Step,
    ) -> Result<(String, Vec<EpochLog>)> {
        let (round, label) = match step {
            Step::Slow(r) => (r, format!("slow round {r}")),
            Step::PreTrain => (1, "fast pre-training on slow-phase clicks".to_owned()),
            Step::Fast(r) => (r, format!("fast round {r}")),
        };
        let cfg = TrainConfig {
            seed: cfg.seed.wrapping_add(round as u64),
            ..*cfg
        };
        let (net, vars, phase): (&dyn Net, _, _) = match step {
            Step::Slow(_) => (
                &SlowPart(self),
                self.vars(&["item_emb", "slow.", "gru_n."]),
                Phase::Slow,
            ),
            Step::PreTrain => (
                &FastPart(self, PriorSource::Slow),
                self.vars(&["item_emb", "fast.", "gru_n."]),
                Phase::SlowRealTime,
            ),
            Step::Fast(_) => (
                &FastPart(self, PriorSource::Slow),
                self.vars(&["fast.", "gru_n."]),
                Phase::Fast,
            ),
        };
        let data = positives(split, phase);
        let curve = fit(
            net,
            &vars,
            &data,
            split.num_items,
            self.config.windows,
            &cfg,
            &label,
        )?;
        Ok((label, curve))
    }

    /// A copy of the parameters as the model `variant`, which must have the same components
    /// (MC²-SF and MC²-SF+ differ only in how the fast side trains: their slow round 1 is
    /// the same fit, done once and forked by the evaluation's zoo).
    pub fn fork(&self, variant: Variant) -> Result<SlowFastNet> {
        if (variant == Variant::Din) != self.fast.is_none() {
            return Err(crate::TrainerError::InvalidArgument(format!(
                "cannot fork {:?} parameters as {variant:?}: the components differ",
                self.variant
            )));
        }
        let copy = SlowFastNet::new(variant, self.shared.item_emb.dim(0)?, self.config, 0)?;
        let (from, to) = (self.vars(&[]), copy.vars(&[]));
        if from.iter().map(|v| &v.0).ne(to.iter().map(|v| &v.0)) {
            return Err(crate::TrainerError::InvalidArgument(format!(
                "cannot fork {:?} parameters as {variant:?}: the parameter names differ",
                self.variant
            )));
        }
        for ((_, from), (_, to)) in from.iter().zip(&to) {
            to.set(from.as_tensor())?;
        }
        Ok(copy)
    }

    /// The variables whose names start with one of `prefixes`, in name order.
    fn vars(&self, prefixes: &[&str]) -> Vec<(String, Var)> {
        named_vars(&self.varmap, prefixes)
    }

    /// The slow component's priors `(r_t, r_n)` for each row, detached (eq. 1 and 5).
    pub fn priors(&self, batch: &Batch) -> Result<(Tensor, Tensor)> {
        let out = inference(|| self.slow.forward(&self.shared, batch))?;
        Ok((out.r_t.detach(), out.r_n.detach()))
    }
}

/// The slow component as a trainable net.
struct SlowPart<'a>(&'a SlowFastNet);

impl Net for SlowPart<'_> {
    fn needs(&self) -> Needs {
        self.0.slow.needs()
    }
    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        Ok(self.0.slow.forward(&self.0.shared, batch)?.logits)
    }
}

/// Where the fast component's S2F inputs `r_t, r_n` (eq. 7) come from when it scores.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PriorSource {
    /// The slow component's priors for the same candidates (eq. 1 and 5): MC²-SF.
    Slow,
    /// Zeros: the fast model of a device that gets no prior knowledge from the cloud, as the
    /// online demo's "fast only" arm feeds `fast.onnx`.
    Zero,
}

/// The fast component with its S2F priors as a trainable net.
struct FastPart<'a>(&'a SlowFastNet, PriorSource);

impl Net for FastPart<'_> {
    fn needs(&self) -> Needs {
        match self.1 {
            PriorSource::Slow => Needs {
                realtime: true,
                ..self.0.slow.needs()
            },
            // No slow pass: the fast component reads the real-time windows only.
            PriorSource::Zero => Needs {
                realtime: true,
                ..Needs::default()
            },
        }
    }
    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let m = self.0;
        let fast = m
            .fast
            .as_ref()
            .ok_or_else(|| crate::TrainerError::InvalidArgument("no fast component".into()))?;
        let priors = match self.1 {
            PriorSource::Slow => m.priors(batch)?,
            PriorSource::Zero => {
                let zeros = Tensor::zeros(
                    (batch.items.dim(0)?, m.config.dim),
                    candle_core::DType::F32,
                    batch.items.device(),
                )?;
                (zeros.clone(), zeros)
            }
        };
        fast.forward(&m.shared, batch, Some(&priors))
    }
}

/// Scores with the slow component (cloud view) or the fast one (device view, with its S2F
/// inputs from `priors`; the slow view ignores it).
pub struct SlowFastScorer {
    pub model: Arc<SlowFastNet>,
    pub view: View,
    pub priors: PriorSource,
}

impl Scorer for SlowFastScorer {
    type Error = TrainerError;

    fn view(&self) -> View {
        self.view
    }

    fn score(&self, queries: &[Query<'_>]) -> Result<Vec<f32>> {
        let fast = FastPart(&self.model, self.priors);
        let net: &dyn Net = match self.view {
            View::Slow => &SlowPart(&self.model),
            View::RealTime => &fast,
        };
        let device = self.model.shared.item_emb.device();
        score_queries(net, self.model.config.windows, device, queries)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::features::{Moment, Row};
    use slowfast_data::synth::{generate, SynthConfig};
    use slowfast_data::{Dataset, EventKind};

    /// F2S in training: the slow loss reaches GRU_n's fold of the exposures into `r̂2`, so it
    /// moves the embeddings of items that were only exposed (neither candidate nor history),
    /// and no others.
    #[test]
    fn the_slow_loss_trains_the_fold_of_the_negative_memory() -> Result<()> {
        let split = crate::models::testing::alternating(14);
        let t = &split.timelines[0];
        let model = SlowFastNet::new(Variant::Mc2sf, split.num_items, ModelConfig::default(), 1)?;
        let moment = Moment {
            user: t.user,
            slow: t.before(8),
            realtime: &[],
            uploaded: t.before(8),
        };
        let target = t.events[8].item;
        let row = Row {
            moment: 0,
            item: target,
            label: 1.0,
        };
        let net = SlowPart(&model);
        let device = model.shared.item_emb.device();
        let batch = Batch::new(&[moment], &[row], net.needs(), model.config.windows, device)?;
        let grads = net.logits(&batch)?.sum_all()?.backward()?;
        let g = grads
            .get(&model.shared.item_emb)
            .expect("e_i has a gradient");
        let norms: Vec<f32> = g.sqr()?.sum(1)?.to_vec1()?;
        let kinds = |kind| moment.slow.iter().filter(move |e| e.kind == kind);
        for e in kinds(EventKind::Exposure) {
            assert!(
                norms[e.item as usize] > 0.0,
                "exposed item {} got no gradient",
                e.item
            );
        }
        let touched: Vec<u32> = (kinds(EventKind::Click).chain(kinds(EventKind::Exposure)))
            .map(|e| e.item)
            .chain([target])
            .collect();
        for (item, &n) in norms.iter().enumerate() {
            if !touched.contains(&(item as u32)) {
                assert_eq!(n, 0.0, "item {item} is in no window but got a gradient");
            }
        }
        Ok(())
    }

    /// The item embeddings are the cloud's: MC²-SF+'s pre-training (a cloud job) tunes them,
    /// the device's fast rounds never change them.
    #[test]
    fn only_the_clouds_fits_update_the_item_embeddings() -> Result<()> {
        let cfg = SynthConfig {
            users: 30,
            items: 80,
            min_clicks_per_user: 30,
            max_clicks_per_user: 40,
            ..SynthConfig::default()
        };
        let data = Dataset::from_log("tiny", generate(&cfg)?)?;
        let split = &data.split;
        let model = SlowFastNet::new(
            Variant::Mc2sfPlus,
            split.num_items,
            ModelConfig::default(),
            1,
        )?;
        // No validation cases: the epoch's weights are kept, never restored.
        let train = TrainConfig {
            max_epochs: 1,
            max_valid: 0,
            ..TrainConfig::default()
        };
        let emb = || -> Result<Vec<f32>> { Ok(model.shared.item_emb.flatten_all()?.to_vec1()?) };
        let before = emb()?;
        model.fit_step(split, &train, Step::Fast(1))?;
        assert_eq!(emb()?, before, "a fast round changed e_i");
        model.fit_step(split, &train, Step::PreTrain)?;
        assert_ne!(emb()?, before, "the pre-training left e_i alone");
        Ok(())
    }

    #[test]
    fn projecting_each_moments_windows_once_changes_no_logit_or_gradient() -> Result<()> {
        use candle_core::Device;

        use crate::models::features::Padded;
        use crate::models::layers::embed;
        use crate::models::testing::assert_same_op;
        use slowfast_data::EventLog;

        let mut log = EventLog::default();
        for user in ["a", "b"] {
            for k in 0..14 {
                log.push_raw(user, &format!("c{k}"), 2 * k, EventKind::Click);
                log.push_raw(user, &format!("x{user}{k}"), 2 * k + 1, EventKind::Exposure);
            }
        }
        let split = Split::new(&log);
        let model = SlowFastNet::new(Variant::Mc2sf, split.num_items, ModelConfig::default(), 7)?;
        // Moments of different window lengths; three candidates each.
        let moments: Vec<Moment<'_>> = (split.timelines.iter().zip([3, 9]))
            .map(|(t, cut)| Moment {
                user: t.user,
                slow: t.slow(),
                realtime: t.before(t.test_start - cut),
                uploaded: t.slow(),
            })
            .collect();
        let rows: Vec<Row> = (0..6)
            .map(|k| Row {
                moment: k % 2,
                item: k as u32,
                label: f32::from(u8::from(k < 2)),
            })
            .collect();
        let fast = model.fast.as_ref().expect("MC2-SF has a fast component");
        let batch = Batch::new(
            &moments,
            &rows,
            fast.needs(),
            model.config.windows,
            &Device::Cpu,
        )?;
        let batch = Batch {
            slow_history: None,
            neg_memory: None,
            ..batch
        };
        let shared = &model.shared;
        let priors = (
            Tensor::randn(0f32, 1.0, (rows.len(), shared.gru_n.hidden()), &Device::Cpu)?,
            Tensor::randn(0f32, 1.0, (rows.len(), shared.gru_n.hidden()), &Device::Cpu)?,
        );
        let per_moment = fast.forward(shared, &batch, Some(&priors))?;
        // The reference: every row's windows embedded and projected on their own.
        let per_row = |w: &Option<Padded>| -> Result<(Tensor, Tensor)> {
            let w = batch.window(w, "window")?;
            let x = embed(&shared.item_emb, &w.ids)?;
            Ok((batch.per_row(&x)?, batch.per_row(&w.mask)?))
        };
        let (clicks, exposures) = (per_row(&batch.clicks)?, per_row(&batch.exposures)?);
        let reference = fast.s2f_logits(
            &shared.gru_n,
            &embed(&shared.item_emb, &batch.items)?,
            (&clicks.0, &clicks.1),
            (&exposures.0, &exposures.1),
            &priors,
        )?;
        let probe = Tensor::randn(0f32, 1.0, (rows.len(), 1), &Device::Cpu)?;
        // Everything the fast component trains, and the embeddings it reads.
        let vars = named_vars(&model.varmap, &["fast.", "gru_n.", "item_emb"]);
        assert_eq!(
            vars.len(),
            1 + 4 + 4 + 6 + 6 + 6,
            "emb, 2 GRUs, 2 MLPs, W0-2"
        );
        let vars: Vec<_> = vars.iter().map(|(_, v)| v).collect();
        assert_same_op(&per_moment, &reference, &probe, &vars, 1e-5)
    }
}
