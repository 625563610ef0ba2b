//! SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018): the click
//! history plus learned position embeddings passes through `b` causal self-attention blocks
//! (one head, pre-layer-norm queries, point-wise feed-forward, residuals); the last position's
//! output `F` scores an item by the shared embedding, `ŷ(i) = ⟨F, e_i⟩`.
//!
//! Sizes from the SASRec paper's ML-1M setting: `b = 2` blocks, `n = 50` positions (the slow
//! history window). Dropout is left out (no model here uses it). Positions count back from
//! the latest click, which is what SASRec's left padding amounts to. A slow-side baseline.

use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use super::learned::Sizes;
use crate::error::Result;
use crate::models::features::{Batch, Needs, Padded};
use crate::models::layers::{embed, masked_softmax, LayerNorm};
use crate::models::Net;

/// Self-attention blocks.
const BLOCKS: usize = 2;

/// One self-attention block: `S = SA(x)`, `F = FFN(S)`, with residuals and layer norms.
#[derive(Clone, Debug)]
struct Block {
    ln_att: LayerNorm,
    q: Linear,
    k: Linear,
    v: Linear,
    ln_ffn: LayerNorm,
    ffn: [Linear; 2],
}

impl Block {
    fn new(vb: VarBuilder, d: usize) -> Result<Block> {
        Ok(Block {
            ln_att: LayerNorm::new(vb.pp("ln_att"), d, 1e-8)?,
            q: linear(d, d, vb.pp("q"))?,
            k: linear(d, d, vb.pp("k"))?,
            v: linear(d, d, vb.pp("v"))?,
            ln_ffn: LayerNorm::new(vb.pp("ln_ffn"), d, 1e-8)?,
            ffn: [linear(d, d, vb.pp("ffn0"))?, linear(d, d, vb.pp("ffn1"))?],
        })
    }

    /// `x` (M, T, d) with `att_mask` (M, T, T) of allowed (query, key) pairs and `mask`
    /// (M, T, 1) of real positions.
    fn forward(&self, x: &Tensor, att_mask: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let d = x.dim(2)?;
        let q_in = self.ln_att.forward(x)?;
        let (q, k, v) = (
            self.q.forward(&q_in)?,
            self.k.forward(x)?,
            self.v.forward(x)?,
        );
        let scores = (q.matmul(&k.transpose(1, 2)?.contiguous()?)? / (d as f64).sqrt())?;
        let att = masked_softmax(&scores, att_mask)?.matmul(&v)?;
        let s = self.ln_ffn.forward(&(q_in + att)?)?;
        let f = self.ffn[1].forward(&self.ffn[0].forward(&s)?.relu()?)?;
        Ok((f + s)?.broadcast_mul(mask)?)
    }
}

/// SASRec's parameters (`sasrec.*`).
#[derive(Clone, Debug)]
pub struct SasRec {
    item_emb: Tensor,
    /// Learned position embeddings, row `p` = `p` clicks before the latest.
    pos_emb: Tensor,
    blocks: Vec<Block>,
    ln_out: LayerNorm,
}

impl SasRec {
    pub fn new(vb: VarBuilder, s: Sizes) -> Result<SasRec> {
        let d = s.model.dim;
        Ok(SasRec {
            item_emb: vb.get((s.items, d), "item_emb")?,
            pos_emb: vb.get((s.model.windows.slow_history.max(1), d), "pos_emb")?,
            blocks: (0..BLOCKS)
                .map(|b| Block::new(vb.pp(format!("block{b}")), d))
                .collect::<Result<_>>()?,
            ln_out: LayerNorm::new(vb.pp("ln_out"), d, 1e-8)?,
        })
    }

    /// The output `F` at each moment's latest click, (M, d); zeros for an empty history.
    fn sequence(&self, hist: &Padded) -> Result<Tensor> {
        let (m, t) = hist.ids.dims2()?;
        let d = self.item_emb.dim(1)?;
        let device = hist.ids.device();
        let max_pos = self.pos_emb.dim(0)? - 1;
        let (mut pos, mut last) = (Vec::with_capacity(m * t), Vec::with_capacity(m));
        for (row, &len) in hist.lens.iter().enumerate() {
            pos.extend((0..t).map(|j| len.saturating_sub(j + 1).min(max_pos) as u32));
            last.push((row * t + len.saturating_sub(1)) as u32);
        }
        let pos = Tensor::from_vec(pos, (m, t), device)?;
        let mask = hist.mask.unsqueeze(2)?;
        let x = (embed(&self.item_emb, &hist.ids)? * (d as f64).sqrt())?;
        let mut x = (x + embed(&self.pos_emb, &pos)?)?.broadcast_mul(&mask)?;
        // Causal: a position attends to itself and earlier clicks, never to padding.
        let causal = Tensor::tril2(t, candle_core::DType::F32, device)?;
        let att_mask = causal
            .unsqueeze(0)?
            .broadcast_mul(&hist.mask.unsqueeze(1)?)?;
        for block in &self.blocks {
            x = block.forward(&x, &att_mask, &mask)?;
        }
        let x = self.ln_out.forward(&x)?.broadcast_mul(&mask)?;
        let last = Tensor::from_vec(last, m, device)?;
        Ok(x.reshape((m * t, d))?.index_select(&last, 0)?)
    }
}

impl Net for SasRec {
    fn needs(&self) -> Needs {
        Needs {
            slow_history: true,
            ..Needs::default()
        }
    }

    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let hist = batch.window(&batch.slow_history, "slow history")?;
        let f = batch.per_row(&self.sequence(hist)?)?;
        let e = embed(&self.item_emb, &batch.items)?;
        Ok((f * e)?.sum_keepdim(1)?)
    }
}
