//! GRU4Rec (Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks",
//! ICLR 2016): a GRU reads the session's clicks and its last state scores every item through
//! an output layer, `ŷ(i) = ⟨h, o_i⟩ + b_i`.
//!
//! The session is the real-time click window `H^F_p` (every click before the target, the
//! latest 20), so this is a fast-side baseline that sees the test phase as it happens. The
//! loss is the shared BCE with sampled negatives rather than the paper's TOP1/BPR, so that
//! every model is trained the same way.

use candle_core::{DType, Tensor};
use candle_nn::VarBuilder;

use super::learned::Sizes;
use crate::error::Result;
use crate::models::features::{Batch, Needs};
use crate::models::layers::{embed, Gru};
use crate::models::Net;

/// GRU4Rec's parameters (`gru4rec.*`).
#[derive(Clone, Debug)]
pub struct Gru4Rec {
    /// Input embeddings of the clicked items.
    item_emb: Tensor,
    gru: Gru,
    /// Output layer: `o_i` (N, d) and `b_i` (N, 1).
    out_emb: Tensor,
    out_bias_emb: Tensor,
}

impl Gru4Rec {
    pub fn new(vb: VarBuilder, s: Sizes) -> Result<Gru4Rec> {
        let d = s.model.dim;
        Ok(Gru4Rec {
            item_emb: vb.get((s.items, d), "item_emb")?,
            gru: Gru::new(vb.pp("gru"), d, d)?,
            out_emb: vb.get((s.items, d), "out_emb")?,
            out_bias_emb: vb.get((s.items, 1), "out_bias_emb")?,
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
        let o = embed(&self.out_emb, &batch.items)?;
        Ok(((h * o)?.sum_keepdim(1)? + embed(&self.out_bias_emb, &batch.items)?)?)
    }
}
