//! SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018): the click
//! history plus learned position embeddings passes through `b` causal self-attention blocks
//! (one head, pre-layer-norm queries, point-wise feed-forward, residuals); the last position's
//! output `F` scores an item by the shared embedding, `ŷ(i) = ⟨F, e_i⟩`.
//!
//! Sizes from the SASRec paper's ML-1M setting: `b = 2` blocks, `n = 50` positions (the slow
//! history window). Dropout is left out (no model here uses it). Positions are those of
//! SASRec's left-padded input: a history of `L` clicks sits at positions `n − L .. n`.
//!
//! Training is SASRec's own (§III-E): a user's slow-phase clicks are cut into sequences of
//! at most `n` inputs, and the output at every position predicts the next click (BCE against
//! sampled negatives, as for every model here), so one causal pass gives up to `n` targets.
//! A slow-side baseline.

use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use super::Sizes;
use crate::error::Result;
use crate::models::features::{Batch, Needs, Padded};
use crate::models::layers::{embed, masked_softmax, LayerNorm};
use crate::models::{Net, SequenceNet};

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
    /// Learned position embeddings (n, d), row `p` = position `p` of the left-padded input.
    pos_emb: Tensor,
    /// The positions `n` (the slow history window).
    n: usize,
    blocks: Vec<Block>,
    ln_out: LayerNorm,
}

impl SasRec {
    pub fn new(vb: VarBuilder, s: Sizes) -> Result<SasRec> {
        let (d, n) = (s.model.dim, s.model.windows.slow_history.max(1));
        Ok(SasRec {
            item_emb: vb.get((s.items, d), "item_emb")?,
            pos_emb: vb.get((n, d), "pos_emb")?,
            n,
            blocks: (0..BLOCKS)
                .map(|b| Block::new(vb.pp(format!("block{b}")), d))
                .collect::<Result<_>>()?,
            ln_out: LayerNorm::new(vb.pp("ln_out"), d, 1e-8)?,
        })
    }
}

impl SequenceNet for SasRec {
    fn window(&self) -> usize {
        self.n
    }

    fn states(&self, hist: &Padded) -> Result<Tensor> {
        let (m, t) = hist.ids.dims2()?;
        let d = self.item_emb.dim(1)?;
        let device = hist.ids.device();
        let n = self.n;
        let mut pos = Vec::with_capacity(m * t);
        for &len in &hist.lens {
            // Left padding: the latest click at `n − 1`; padded steps (masked) at 0.
            let first = n.saturating_sub(len);
            pos.extend((0..t).map(|j| if j < len { (first + j).min(n - 1) } else { 0 } as u32));
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
        Ok(self.ln_out.forward(&x)?.broadcast_mul(&mask)?)
    }

    /// `ŷ(i) = ⟨F, e_i⟩`.
    fn score(&self, states: &Tensor, items: &Tensor) -> Result<Tensor> {
        Ok((states * embed(&self.item_emb, items)?)?.sum_keepdim(1)?)
    }
}

impl Net for SasRec {
    fn needs(&self) -> Needs {
        Needs {
            slow_history: true,
            ..Needs::default()
        }
    }

    /// The output `F` at each moment's latest click (zeros for an empty history) scores its rows.
    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let hist = batch.window(&batch.slow_history, "slow history")?;
        let states = self.states(hist)?;
        let (m, t, d) = states.dims3()?;
        let last: Vec<u32> = (hist.lens.iter().enumerate())
            .map(|(row, &len)| (row * t + len.saturating_sub(1)) as u32)
            .collect();
        let last = Tensor::from_vec(last, m, states.device())?;
        let f = states.reshape((m * t, d))?.index_select(&last, 0)?;
        self.score(&batch.per_row(&f)?, &batch.items)
    }

    fn sequence(&self) -> Option<&dyn SequenceNet> {
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{DType, Device};
    use candle_nn::VarMap;

    use super::*;
    use crate::models::{seed_init, ModelConfig};

    fn sasrec() -> SasRec {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let mut model = ModelConfig::default();
        model.windows.slow_history = 6;
        let net = SasRec::new(
            vb,
            Sizes {
                users: 1,
                items: 30,
                model,
            },
        )
        .unwrap();
        seed_init(&varmap, 7).unwrap();
        net
    }

    fn states(net: &SasRec, rows: &[Vec<u32>]) -> Vec<Vec<Vec<f32>>> {
        let padded = Padded::new(rows, &Device::Cpu).unwrap();
        net.states(&padded).unwrap().to_vec3().unwrap()
    }

    fn max_diff(a: &[f32], b: &[f32]) -> f32 {
        a.iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f32::max)
    }

    /// Training reads the output at every position as the prediction of the next click, so a
    /// position must not see a later click.
    #[test]
    fn a_position_never_sees_a_later_click() {
        let net = sasrec();
        let s = states(&net, &[vec![3, 9, 4, 12, 7], vec![3, 9, 4, 20, 21]]);
        for (k, (a, b)) in s[0].iter().zip(&s[1]).take(3).enumerate() {
            assert!(max_diff(a, b) < 1e-6, "position {k}");
        }
        assert!(
            max_diff(&s[0][3], &s[1][3]) > 1e-3,
            "the changed click counts"
        );
    }

    /// Padding a short sequence to a batch's longest (training batches mix lengths) changes
    /// none of its outputs, and padded steps output zeros.
    #[test]
    fn padding_changes_no_output() {
        let net = sasrec();
        let alone = states(&net, &[vec![5, 6]]);
        let padded = states(&net, &[vec![5, 6], vec![1, 2, 3, 4, 5, 6]]);
        for (k, (a, b)) in alone[0].iter().zip(&padded[0]).enumerate() {
            assert!(max_diff(a, b) < 1e-6, "position {k}");
        }
        assert!(padded[0][2..].iter().flatten().all(|&x| x == 0.0));
    }
}
