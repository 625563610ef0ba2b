//! The slow component (paper §4.1 and §4.3), run in the cloud.
//!
//! Independent (eq. 1–2): `r_t = DIN(H^S, e_i)`, `y_S = σ(MLP(r_t ⊕ e_i))`.
//! With F2S (eq. 5–6): `r2 = GRUcell_n(e_i | r̂2)`, `r_n = r2 ⊙ σ(W_S[r2 ⊕ e_i] + b_S)`,
//! `y_S = σ(MLP(r_n ⊕ r_t ⊕ e_i))`, where `r̂2` is the device's negative memory (GRU_n's last
//! state over the exposures) and GRU_n's weights are shared with the fast component.

use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use super::features::{Batch, Needs};
use super::layers::{embed, target_attention, Gru, Mlp};
use super::Shared;
use crate::error::Result;

/// The slow component's own parameters (`slow.*`).
#[derive(Clone, Debug)]
pub struct SlowNet {
    /// DIN's attention MLP over `[h, e, h − e, h ⊙ e]`.
    pub att: Mlp,
    /// The prediction MLP of eq. 2 (input `r_t ⊕ e_i`) or eq. 6 (`r_n ⊕ r_t ⊕ e_i`).
    pub out: Mlp,
    /// `W_S, b_S` of eq. 5; `None` for the independent slow component.
    pub w_s: Option<Linear>,
}

/// The slow component's outputs for a batch of rows.
#[derive(Clone, Debug)]
pub struct SlowOut {
    /// (B, 1) logits of `y_S`.
    pub logits: Tensor,
    /// (B, d) `r_t` of eq. 1.
    pub r_t: Tensor,
    /// (B, d) `r_n` of eq. 5 (zeros without F2S).
    pub r_n: Tensor,
}

impl SlowNet {
    pub fn new(vb: VarBuilder, d: usize, hidden: [usize; 2], f2s: bool) -> Result<SlowNet> {
        let inputs = if f2s { 3 * d } else { 2 * d };
        Ok(SlowNet {
            att: Mlp::new(vb.pp("att"), 4 * d, hidden, 1)?,
            out: Mlp::new(vb.pp("out"), inputs, hidden, 1)?,
            w_s: if f2s {
                Some(linear(2 * d, d, vb.pp("w_s"))?)
            } else {
                None
            },
        })
    }

    /// The windows the slow component reads.
    pub fn needs(&self) -> Needs {
        Needs {
            slow_history: true,
            neg_memory: self.w_s.is_some(),
            realtime: false,
        }
    }

    /// Eq. 1–2 or 5–6 for every row of the batch. The history is embedded once per moment
    /// (the rows of a moment share it).
    pub fn forward(&self, shared: &Shared, batch: &Batch) -> Result<SlowOut> {
        let e = embed(&shared.item_emb, &batch.items)?;
        let hist = batch.window(&batch.slow_history, "slow history")?;
        let h = embed(&shared.item_emb, &hist.ids)?;
        // r̂2 is what the device uploads (Algorithm 1, step 1); in training the cloud folds it
        // from the logged exposures with the shared GRU_n and differentiates through the fold,
        // so the slow loss trains GRU_n too (docs/architecture.md §3, "Ownership").
        let neg_memory = match self.w_s {
            Some(_) => Some(batch.per_row(&shared.neg_memory(batch)?)?),
            None => None,
        };
        let history = (&h, &hist.mask, Some(&batch.row_moment));
        self.forward_rows(&shared.gru_n, &e, history, neg_memory.as_ref())
    }

    /// Eq. 1–2 or 5–6 on embeddings, one row per candidate: `e` (B, d), the history `h`
    /// (B, T, d) with `mask` (B, T), and `r̂2` (B, d) with F2S. This is what `slow.onnx`
    /// computes (the export's parity reference).
    pub fn forward_embedded(
        &self,
        gru_n: &Gru,
        e: &Tensor,
        h: &Tensor,
        mask: &Tensor,
        neg_memory: Option<&Tensor>,
    ) -> Result<SlowOut> {
        self.forward_rows(gru_n, e, (h, mask, None), neg_memory)
    }

    /// Eq. 1–2 or 5–6 with the history `(h, mask, row_moment)` per moment as
    /// [`target_attention`] takes it.
    fn forward_rows(
        &self,
        gru_n: &Gru,
        e: &Tensor,
        (h, mask, row_moment): (&Tensor, &Tensor, Option<&Tensor>),
        neg_memory: Option<&Tensor>,
    ) -> Result<SlowOut> {
        let r_t = target_attention(&self.att, h, mask, e, row_moment)?;
        let Some(w_s) = &self.w_s else {
            let logits = self.out.forward(&Tensor::cat(&[&r_t, e], 1)?)?;
            let r_n = r_t.zeros_like()?;
            return Ok(SlowOut { logits, r_t, r_n });
        };
        let neg_memory = neg_memory.ok_or_else(|| {
            crate::TrainerError::InvalidArgument("the F2S slow component needs r̂2".into())
        })?;
        let r2 = gru_n.cell(e, neg_memory)?;
        let gate = candle_nn::ops::sigmoid(&w_s.forward(&Tensor::cat(&[&r2, e], 1)?)?)?;
        let r_n = (r2 * gate)?;
        let logits = self.out.forward(&Tensor::cat(&[&r_n, &r_t, e], 1)?)?;
        Ok(SlowOut { logits, r_t, r_n })
    }
}
