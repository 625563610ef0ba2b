//! The vanilla slow+fast combinations DIN+FM, DIN+NeuMF and DIN+GRU4Rec (paper §5.1.3): "we
//! distribute [the] ranking list of candidate items from the slow component to the fast
//! component", which "produces more accurate recommendation results based on ranking features
//! from the slow component".
//!
//! The ranking feature is DIN's score of the candidate from the slow phase (what the cloud
//! sends with the candidate list), fed to the fast model as a real-valued input with a
//! learned weight and bias: `ŷ = X(u, i, H^F) + w·y_S(i) + b`. The fast model `X` is tuned
//! with the feature on the fast-training phase, where, as at test time, DIN's scores come from
//! a slow phase it has seen in full and the targets are clicks it was not trained on. DIN's
//! parameters stay fixed.
//!
//! Where `X` starts ([`Start`]) is what the paper leaves open. The table's `DIN+X` starts
//! `X`'s item embeddings as DIN's trained `e_i`, the embeddings MC²-SF's fast component reads,
//! so that it learns from the same clicks (the fast phase, §5.1.1) and the same embeddings as
//! MC²-SF's fast component: the strongest combination on that data. `DIN+X+` (beyond the
//! paper, with `X+` and `MC2-SF+`) starts from the stand-alone `X+`, which has learned from
//! every training click of both phases; `DIN+X (from scratch)` starts `X` from its seeded
//! initialisation.

use std::sync::Arc;

use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use super::learned::{Arch, Learned, FAST_ARCHS};
use super::ZooConfig;
use crate::error::{Result, TrainerError};
use crate::models::features::{positives, Batch, Needs, Phase};
use crate::models::grad_mode::inference;
use crate::models::slowfast::SlowFastNet;
use crate::models::Net;
use slowfast_data::split::Split;

/// A fast model with the slow component's score of each candidate as an extra feature.
struct DinPlus {
    din: Arc<SlowFastNet>,
    fast: Box<dyn Net + Send + Sync>,
    /// `w, b` of the slow score.
    fusion: Linear,
}

impl Net for DinPlus {
    fn needs(&self) -> Needs {
        self.din.slow.needs().union(self.fast.needs())
    }

    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let slow = inference(|| self.din.slow.forward(&self.din.shared, batch))?
            .logits
            .detach();
        Ok((self.fast.logits(batch)? + self.fusion.forward(&slow)?)?)
    }
}

/// Where `X` starts before it is tuned with DIN's scores on the fast phase.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Start {
    /// From `X`'s seeded initialisation, with every item-embedding table of `X` (`*item_emb`,
    /// and GRU4Rec's output vectors `out_emb`) starting as DIN's trained `e_i`: the table's
    /// `DIN+X`.
    DinEmbeddings,
    /// From the stand-alone `X+`, trained on every training click (`DIN+X+`).
    EveryClick,
    /// From `X`'s seeded initialisation (`DIN+X (from scratch)`).
    Scratch,
}

impl Start {
    pub const ALL: [Start; 3] = [Start::DinEmbeddings, Start::EveryClick, Start::Scratch];

    /// The results.json name of `DIN+X` started this way.
    pub fn name(self, arch: Arch) -> String {
        let suffix = match self {
            Start::DinEmbeddings => "",
            Start::EveryClick => "+",
            Start::Scratch => " (from scratch)",
        };
        format!("DIN+{}{suffix}", arch.name())
    }
}

/// The combination called `name` (ASCII case ignored): its `X` and how `X` starts.
pub fn parse(name: &str) -> Option<(Arch, Start)> {
    FAST_ARCHS
        .into_iter()
        .flat_map(|arch| Start::ALL.map(|start| (arch, start)))
        .find(|(arch, start)| start.name(*arch).eq_ignore_ascii_case(name))
}

/// `DIN+X`: `X` started as `start` says (`trained` is the stand-alone `X+`, needed for
/// [`Start::EveryClick`] only), then tuned with DIN's scores as a feature on the fast phase.
pub fn train(
    split: &Split,
    din: Arc<SlowFastNet>,
    arch: Arch,
    start: Start,
    trained: Option<&Learned>,
    config: &ZooConfig,
    seed: u64,
) -> Result<Learned> {
    let din_emb = din.shared.item_emb.clone();
    let build = |vb: VarBuilder, sizes| -> Result<Box<dyn Net + Send + Sync>> {
        let fast = arch.build(vb.clone(), sizes)?;
        let fusion = linear(1, 1, vb.pp("fusion"))?;
        Ok(Box::new(DinPlus { din, fast, fusion }))
    };
    let mut model = Learned::init(split, config, seed, arch.view(), build)?;
    match (start, trained) {
        (Start::EveryClick, Some(trained)) => copy_vars(trained, &model)?,
        (Start::EveryClick, None) => {
            return Err(TrainerError::InvalidArgument(format!(
                "{} needs the trained stand-alone {}",
                start.name(arch),
                arch.every_click_name()
            )))
        }
        (Start::Scratch, _) => {}
        (Start::DinEmbeddings, _) => {
            for (name, var) in crate::models::named_vars(&model.varmap, &[]) {
                if (name.ends_with("item_emb") || name.ends_with("out_emb"))
                    && var.dims() == din_emb.dims()
                {
                    var.set(&din_emb)?;
                }
            }
        }
    }
    // The slow score enters at weight 1.
    for (name, var) in crate::models::named_vars(&model.varmap, &["fusion."]) {
        let value = if name.ends_with("weight") { 1.0 } else { 0.0 };
        var.set(&var.as_tensor().ones_like()?.affine(value, 0.0)?)?;
    }
    model.fit(
        split,
        &positives(split, Phase::Fast),
        &config.train,
        seed,
        &start.name(arch),
    )?;
    Ok(model)
}

/// Copies every variable of `from` into the variable of the same name in `to`.
fn copy_vars(from: &Learned, to: &Learned) -> Result<()> {
    let target = to.varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    for (name, var) in crate::models::named_vars(&from.varmap, &[]) {
        if let Some(dst) = target.get(&name) {
            dst.set(var.as_tensor())?;
        }
    }
    Ok(())
}
