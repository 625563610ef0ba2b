//! FM, the factorization machine (Rendle, "Factorization Machines", ICDM 2010), with the
//! user and item ids as its two one-hot feature fields (paper §5.1.3: "Here we treat the IDs
//! of a user and an item as input features"):
//!
//! `ŷ(u, i) = w0 + w_u + w_i + ⟨v_u, v_i⟩`.
//!
//! With one-hot fields the second-order sum `Σ_{j<k} ⟨v_j, v_k⟩ x_j x_k` reduces to the single
//! user–item interaction. A fast-side baseline: its factors are trained on the fast phase
//! (`FM+`: on every training-phase click, see [`super::learned`]).

use candle_core::Tensor;
use candle_nn::VarBuilder;

use super::Sizes;
use crate::error::Result;
use crate::models::features::{Batch, Needs};
use crate::models::layers::embed;
use crate::models::Net;

/// FM's parameters (`fm.*`).
#[derive(Clone, Debug)]
pub struct Fm {
    /// `v_u`, (U, d).
    user_emb: Tensor,
    /// `v_i`, (N, d).
    item_emb: Tensor,
    /// `w_u`, (U, 1).
    user_bias_emb: Tensor,
    /// `w_i`, (N, 1).
    item_bias_emb: Tensor,
    /// `w0`, (1).
    bias: Tensor,
}

impl Fm {
    pub fn new(vb: VarBuilder, s: Sizes) -> Result<Fm> {
        let d = s.model.dim;
        Ok(Fm {
            user_emb: vb.get((s.users, d), "user_emb")?,
            item_emb: vb.get((s.items, d), "item_emb")?,
            user_bias_emb: vb.get((s.users, 1), "user_bias_emb")?,
            item_bias_emb: vb.get((s.items, 1), "item_bias_emb")?,
            bias: vb.get(1, "bias")?,
        })
    }
}

impl Net for Fm {
    fn needs(&self) -> Needs {
        Needs::default()
    }

    fn logits(&self, batch: &Batch) -> Result<Tensor> {
        let v_u = embed(&self.user_emb, &batch.users)?;
        let v_i = embed(&self.item_emb, &batch.items)?;
        let pair = (v_u * v_i)?.sum_keepdim(1)?;
        let linear = (embed(&self.user_bias_emb, &batch.users)?
            + embed(&self.item_bias_emb, &batch.items)?)?;
        Ok((pair + linear)?.broadcast_add(&self.bias)?)
    }
}
