//! Caser (Tang & Wang, "Personalized Top-N Sequential Recommendation via Convolutional
//! Sequence Embedding", WSDM 2018): the embeddings of the last `L` clicks form an `L × d`
//! "image"; `n_h` horizontal filters of each height `h ∈ 1..=L` (max-pooled over time) catch
//! union-level sequential patterns, `n_v` vertical filters (weighted sums of the rows) catch
//! point-level ones; `z = ReLU(W[o_v, o_h] + b)` is concatenated with the user's general taste
//! `P_u` and scored by output item embeddings, `ŷ(i) = W'_i [z, P_u] + b'_i`.
//!
//! Sizes from the Caser paper: `L = 5`, `n_h = 16`, `n_v = 4`. Dropout is left out (no model
//! here uses it). A slow-side baseline: it reads the slow-phase click history only.

use candle_core::{Module, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};

use super::Sizes;
use crate::error::Result;
use crate::models::features::{Batch, Needs, Padded};
use crate::models::layers::embed;
use crate::models::Net;

/// Markov order `L`: the clicks the convolutions read.
pub const L: usize = 5;
/// Horizontal filters per height.
const N_H: usize = 16;
/// Vertical filters.
const N_V: usize = 4;

/// Caser's parameters (`caser.*`).
#[derive(Clone, Debug)]
pub struct Caser {
    item_emb: Tensor,
    /// `P_u`, (U, d).
    user_emb: Tensor,
    /// Vertical filters, (n_v, L).
    conv_v: Tensor,
    /// Horizontal filters of height `h` as a linear map from `h·d` to `n_h`, h = 1..=L.
    conv_h: Vec<Linear>,
    fc: Linear,
    /// `W'_i` (N, 2d) and `b'_i` (N, 1).
    out_emb: Tensor,
    out_bias_emb: Tensor,
}

impl Caser {
    pub fn new(vb: VarBuilder, s: Sizes) -> Result<Caser> {
        let d = s.model.dim;
        Ok(Caser {
            item_emb: vb.get((s.items, d), "item_emb")?,
            user_emb: vb.get((s.users, d), "user_emb")?,
            conv_v: vb.get((N_V, L), "conv_v")?,
            conv_h: (1..=L)
                .map(|h| linear(h * d, N_H, vb.pp(format!("conv_h{h}"))))
                .collect::<candle_core::Result<_>>()?,
            fc: linear(N_V * d + N_H * L, d, vb.pp("fc"))?,
            out_emb: vb.get((s.items, 2 * d), "out_emb")?,
            out_bias_emb: vb.get((s.items, 1), "out_bias_emb")?,
        })
    }

    /// The last `L` clicks of each moment's history, left-padded with zero rows: (M, L, d).
    fn image(&self, hist: &Padded) -> Result<Tensor> {
        let ids: Vec<Vec<u32>> = hist.ids.to_vec2()?;
        let mut last = Vec::with_capacity(ids.len() * L);
        let mut mask = Vec::with_capacity(ids.len() * L);
        for (row, &len) in ids.iter().zip(&hist.lens) {
            let pad = L.saturating_sub(len);
            last.extend(std::iter::repeat_n(0, pad));
            last.extend_from_slice(&row[len - (L - pad)..len]);
            mask.extend((0..L).map(|k| f32::from(u8::from(k >= pad))));
        }
        let device = hist.ids.device();
        let m = ids.len();
        let last = Tensor::from_vec(last, (m, L), device)?;
        let mask = Tensor::from_vec(mask, (m, L, 1), device)?;
        Ok(embed(&self.item_emb, &last)?.broadcast_mul(&mask)?)
    }

    /// `z` of each moment, (M, d).
    fn sequence(&self, e: &Tensor) -> Result<Tensor> {
        let (m, _, d) = e.dims3()?;
        let o_v = self
            .conv_v
            .unsqueeze(0)?
            .broadcast_as((m, N_V, L))?
            .matmul(e)?
            .reshape((m, N_V * d))?;
        let mut parts = vec![o_v];
        for (k, conv) in self.conv_h.iter().enumerate() {
            let h = k + 1;
            let positions = L - h + 1;
            let windows = (0..h)
                .map(|j| e.narrow(1, j, positions))
                .collect::<candle_core::Result<Vec<_>>>()?;
            let windows = Tensor::cat(&windows, D::Minus1)?.reshape((m * positions, h * d))?;
            let act = conv
                .forward(&windows)?
                .relu()?
                .reshape((m, positions, N_H))?;
            parts.push(act.max(1)?);
        }
        Ok(self.fc.forward(&Tensor::cat(&parts, 1)?)?.relu()?)
    }
}

impl Net for Caser {
    fn needs(&self) -> Needs {
        Needs {
            slow_history: true,
            ..Needs::default()
        }
    }

    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let hist = batch.window(&batch.slow_history, "slow history")?;
        let z = batch.per_row(&self.sequence(&self.image(hist)?)?)?;
        let zu = Tensor::cat(&[z, embed(&self.user_emb, &batch.users)?], 1)?;
        let w = embed(&self.out_emb, &batch.items)?;
        Ok(((zu * w)?.sum_keepdim(1)? + embed(&self.out_bias_emb, &batch.items)?)?)
    }
}
