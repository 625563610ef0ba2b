//! GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
//! ICLR 2016): a GRU reads the session's clicks and its last state scores every item through
//! an output layer, `ŷ(i) = ⟨h, o_i⟩ + b_i`.
//!
//! The session is the real-time click window `H^F_p` (every click before the target, the
//! latest 20), so this is a fast-side baseline that sees the test phase as it happens.
//!
//! Training is the paper's (§3.1.1, session-parallel mini-batches): a user's training clicks
//! are cut into sequences of at most 20 inputs, and the state after every click predicts the
//! next one, so one pass of the GRU gives a target per click. The loss is the shared BCE with
//! sampled negatives rather than the paper's TOP1/BPR, so that every model is trained the
//! same way.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::Sizes;
use crate::error::Result;
use crate::models::features::{Batch, Needs, Padded};
use crate::models::layers::{embed, Gru};
use crate::models::{Net, SequenceNet};

/// GRU4Rec's parameters (`gru4rec.*`).
#[derive(Clone, Debug)]
pub struct Gru4Rec {
    /// Input embeddings of the clicked items.
    item_emb: Tensor,
    gru: Gru,
    /// Output layer: `o_i` (N, d) and `b_i` (N, 1).
    out_emb: Tensor,
    out_bias_emb: Tensor,
    /// The session window: the latest clicks read (`H^F_p`).
    window: usize,
}

impl Gru4Rec {
    pub fn new(vb: VarBuilder, s: Sizes) -> Result<Gru4Rec> {
        let d = s.model.dim;
        Ok(Gru4Rec {
            item_emb: vb.get((s.items, d), "item_emb")?,
            gru: Gru::new(vb.pp("gru"), d, d)?,
            out_emb: vb.get((s.items, d), "out_emb")?,
            out_bias_emb: vb.get((s.items, 1), "out_bias_emb")?,
            window: s.model.windows.clicks.max(1),
        })
    }
}

impl Net for Gru4Rec {
    fn needs(&self) -> Needs {
        Needs {
            realtime: true,
            ..Needs::default()
        }
    }

    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let clicks = batch.window(&batch.clicks, "click")?;
        let x = embed(&self.item_emb, &clicks.ids)?;
        let h0 = Tensor::zeros((x.dim(0)?, self.gru.hidden()), DType::F32, x.device())?;
        // One GRU run per moment, then its state is repeated for the moment's rows.
        let h = batch.per_row(&self.gru.forward(&x, &clicks.mask, &h0)?)?;
        self.score(&h, &batch.items)
    }

    fn sequence(&self) -> Option<&dyn SequenceNet> {
        Some(self)
    }
}

impl SequenceNet for Gru4Rec {
    fn window(&self) -> usize {
        self.window
    }

    /// The GRU's state after every click, from a zero state.
    fn states(&self, inputs: &Padded) -> Result<Tensor> {
        let x = embed(&self.item_emb, &inputs.ids)?;
        let h0 = Tensor::zeros((x.dim(0)?, self.gru.hidden()), DType::F32, x.device())?;
        self.gru.forward_all(&x, &inputs.mask, &h0)
    }

    /// `ŷ(i) = ⟨h, o_i⟩ + b_i`.
    fn score(&self, states: &Tensor, items: &Tensor) -> Result<Tensor> {
        let o = embed(&self.out_emb, items)?;
        Ok(((states * o)?.sum_keepdim(1)? + embed(&self.out_bias_emb, items)?)?)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;
    use candle_nn::VarMap;

    use super::*;
    use crate::models::features::{Moment, Row};
    use crate::models::{seed_init, ModelConfig};
    use slowfast_data::EventKind;

    /// Training reads the state after each click of a sequence as the prediction of the next
    /// click: it must score exactly as the moment right after that click does at test time.
    #[test]
    fn a_sequence_position_scores_as_the_moment_after_its_click() -> Result<()> {
        let split = crate::models::testing::alternating(14);
        let t = &split.timelines[0];
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let model = ModelConfig::default();
        let sizes = Sizes {
            users: 1,
            items: split.num_items,
            model,
        };
        let net = Gru4Rec::new(vb, sizes)?;
        seed_init(&varmap, 3)?;
        let clicks: Vec<usize> = (0..t.events.len())
            .filter(|&j| t.events[j].kind == EventKind::Click)
            .take(9)
            .collect();
        let ids: Vec<u32> = clicks.iter().map(|&j| t.events[j].item).collect();
        let states = net
            .states(&Padded::new(&[ids], &Device::Cpu)?)?
            .squeeze(0)?;
        let item = Tensor::new(&[4u32], &Device::Cpu)?;
        for (k, &j) in clicks.iter().enumerate() {
            let moment = Moment {
                user: t.user,
                slow: &[],
                realtime: t.before(j + 1),
                uploaded: &[],
            };
            let row = Row {
                moment: 0,
                item: 4,
                label: 0.0,
            };
            let batch = Batch::new(&[moment], &[row], net.needs(), model.windows, &Device::Cpu)?;
            let at_test = net.logits(&batch)?.flatten_all()?.to_vec1::<f32>()?[0];
            let trained = net.score(&states.narrow(0, k, 1)?, &item)?;
            let trained = trained.flatten_all()?.to_vec1::<f32>()?[0];
            assert!(
                (at_test - trained).abs() < 1e-5,
                "click {k}: {at_test} vs {trained}"
            );
        }
        Ok(())
    }
}
