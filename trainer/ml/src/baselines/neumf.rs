//! NeuMF, neural matrix factorisation (He et al., "Neural Collaborative Filtering", WWW 2017):
//! a GMF branch `φ_GMF = p_u ⊙ q_i` and an MLP branch `φ_MLP = MLP([p'_u, q'_i])` with their
//! own embeddings, fused by the NeuMF layer `ŷ = h^T [φ_GMF, φ_MLP]`.
//!
//! The MLP tower has 3 layers (`2d → 64 → 32 → d`, ReLU after each), as every MLP here
//! (paper §5.1.4). A fast-side baseline over user and item ids, like FM.

use candle_core::{Module, Tensor};
use candle_nn::{linear, Linear, VarBuilder};

use super::Sizes;
use crate::error::Result;
use crate::models::features::{Batch, Needs};
use crate::models::layers::{embed, Mlp};
use crate::models::Net;

/// NeuMF's parameters (`neumf.*`).
#[derive(Clone, Debug)]
pub struct NeuMf {
    /// `p_u`, `q_i` of the GMF branch.
    gmf_user_emb: Tensor,
    gmf_item_emb: Tensor,
    /// `p'_u`, `q'_i` of the MLP branch.
    mlp_user_emb: Tensor,
    mlp_item_emb: Tensor,
    tower: Mlp,
    /// `h` of the NeuMF layer.
    out: Linear,
}

impl NeuMf {
    pub fn new(vb: VarBuilder, s: Sizes) -> Result<NeuMf> {
        let d = s.model.dim;
        Ok(NeuMf {
            gmf_user_emb: vb.get((s.users, d), "gmf_user_emb")?,
            gmf_item_emb: vb.get((s.items, d), "gmf_item_emb")?,
            mlp_user_emb: vb.get((s.users, d), "mlp_user_emb")?,
            mlp_item_emb: vb.get((s.items, d), "mlp_item_emb")?,
            tower: Mlp::new(vb.pp("tower"), 2 * d, s.model.hidden, d)?,
            out: linear(2 * d, 1, vb.pp("out"))?,
        })
    }
}

impl Net for NeuMf {
    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let (u, i) = (&batch.users, &batch.items);
        let gmf = (embed(&self.gmf_user_emb, u)? * embed(&self.gmf_item_emb, i)?)?;
        let pair = Tensor::cat(
            &[embed(&self.mlp_user_emb, u)?, embed(&self.mlp_item_emb, i)?],
            1,
        )?;
        let mlp = self.tower.forward(&pair)?.relu()?;
        Ok(self.out.forward(&Tensor::cat(&[gmf, mlp], 1)?)?)
    }
}
