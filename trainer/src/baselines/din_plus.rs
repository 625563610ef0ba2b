//! The vanilla slow+fast combinations DIN+FM, DIN+NeuMF and DIN+GRU4Rec (paper §5.1.3): "we
//! distribute [the] ranking list of candidate items from the slow component to the fast
//! component", which "produces more accurate recommendation results based on ranking features
//! from the slow component".
//!
//! The ranking feature is DIN's score of the candidate from the slow phase (what the cloud
//! sends with the candidate list), fed to the fast model as a real-valued input with a
//! learned weight and bias: `ŷ = X(u, i, H^F) + w·y_S(i) + b`. The fast model `X` starts from
//! its trained stand-alone weights and is tuned with the feature on the fast-training phase,
//! where, as at test time, DIN's scores come from a slow phase it has seen in full and the
//! targets are clicks it was not trained on. DIN's parameters stay fixed.

use std::sync::Arc;

use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use super::learned::{Arch, Learned};
use super::ZooConfig;
use crate::data::split::Split;
use crate::error::Result;
use crate::models::features::{positives, Batch, Needs, Phase};
use crate::models::grad_mode::inference;
use crate::models::slowfast::SlowFast;
use crate::models::Net;

/// A fast model with the slow component's score of each candidate as an extra feature.
struct DinPlus {
    din: Arc<SlowFast>,
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

/// `DIN+X`: `fast` (a trained `X`) tuned with DIN's scores as a feature.
pub fn train(
    split: &Split,
    din: Arc<SlowFast>,
    fast: &Learned,
    arch: Arch,
    config: &ZooConfig,
    seed: u64,
) -> Result<Learned> {
    let build = |vb: VarBuilder, sizes| -> Result<Box<dyn Net + Send + Sync>> {
        let fast = arch.build(vb.clone(), sizes)?;
        let fusion = linear(1, 1, vb.pp("fusion"))?;
        Ok(Box::new(DinPlus { din, fast, fusion }))
    };
    let mut model = Learned::init(split, config, seed, arch.view(), build)?;
    copy_vars(fast, &model)?;
    // Start from `X` alone plus the slow score at weight 1.
    for (name, var) in crate::models::named_vars(&model.varmap, &["fusion."]) {
        let value = if name.ends_with("weight") { 1.0 } else { 0.0 };
        var.set(&var.as_tensor().ones_like()?.affine(value, 0.0)?)?;
    }
    let label = format!("DIN+{}", arch.name());
    model.fit(
        split,
        &positives(split, Phase::Fast),
        &config.train,
        seed,
        &label,
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
