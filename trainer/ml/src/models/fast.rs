//! The fast component (paper §4.2 and §4.4), run on the device.
//!
//! Independent (eq. 3–4): `r1 = GRU_p(H^F_p)`, `r2 = GRU_n(H^F_n)`,
//! `r = [r1 r2]ᵀ softmax([MLP(r1 ⊕ e_i), MLP(r2 ⊕ e_i)])`, `y_F = σ(MLP(r ⊕ e_i))`.
//! With S2F (eq. 7–8): `α = σ(W0[r_n ⊕ r_t] + b0)`, `r_f = α r_n + (1 − α) r_t`, GRU_p and GRU_n
//! start from `ReLU(W1 r_f + b1)` and `ReLU(W2 r_f + b2)`, and `y_F = σ(MLP(r ⊕ r_t ⊕ e_i))`.

use candle_core::{Module, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};

use super::features::{Batch, Needs};
use super::layers::{embed, Gru, Mlp};
use super::Shared;
use crate::error::Result;

/// `W0, W1, W2` of eq. 7.
#[derive(Clone, Debug)]
pub struct S2f {
    pub w0: Linear,
    pub w1: Linear,
    pub w2: Linear,
}

/// The fast component's own parameters (`fast.*`); GRU_n lives in [`Shared`].
#[derive(Clone, Debug)]
pub struct FastNet {
    pub gru_p: Gru,
    /// The target-aware fusion MLP of eq. 3 (one MLP scores both `r1 ⊕ e_i` and `r2 ⊕ e_i`).
    pub fuse: Mlp,
    /// The prediction MLP of eq. 4 (input `r ⊕ e_i`) or eq. 8 (`r ⊕ r_t ⊕ e_i`).
    pub out: Mlp,
    pub s2f: Option<S2f>,
}

/// The slow component's prior knowledge for each row (eq. 7): `(r_t, r_n)`, both (B, d).
pub type Priors = (Tensor, Tensor);

impl FastNet {
    pub fn new(vb: VarBuilder, d: usize, hidden: [usize; 2], s2f: bool) -> Result<FastNet> {
        Ok(FastNet {
            gru_p: Gru::new(vb.pp("gru_p"), d, d)?,
            fuse: Mlp::new(vb.pp("fuse"), 2 * d, hidden, 1)?,
            out: Mlp::new(vb.pp("out"), if s2f { 3 * d } else { 2 * d }, hidden, 1)?,
            s2f: if s2f {
                Some(S2f {
                    w0: linear(2 * d, d, vb.pp("w0"))?,
                    w1: linear(d, d, vb.pp("w1"))?,
                    w2: linear(d, d, vb.pp("w2"))?,
                })
            } else {
                None
            },
        })
    }

    /// The windows the fast component reads.
    pub fn needs(&self) -> Needs {
        Needs {
            slow_history: false,
            neg_memory: false,
            realtime: true,
        }
    }

    /// (B, 1) logits of `y_F`; `priors` are required with S2F and ignored without.
    pub fn forward(
        &self,
        shared: &Shared,
        batch: &Batch,
        priors: Option<&Priors>,
    ) -> Result<Tensor> {
        let e = embed(&shared.item_emb, &batch.items)?;
        let clicks = batch.window(&batch.clicks, "click")?;
        let exposures = batch.window(&batch.exposures, "exposure")?;
        let xp = embed(&shared.item_emb, &clicks.ids)?;
        let xn = embed(&shared.item_emb, &exposures.ids)?;
        match (&self.s2f, priors) {
            (Some(_), Some(priors)) => {
                // Every candidate of a moment reads the moment's windows: their input
                // projections are made once per moment, the recurrences run per row (eq. 7).
                let gp = batch.per_row(&self.gru_p.project(&xp)?)?;
                let gn = batch.per_row(&shared.gru_n.project(&xn)?)?;
                self.s2f_projected(
                    &shared.gru_n,
                    &e,
                    (&gp, &batch.per_row(&clicks.mask)?),
                    (&gn, &batch.per_row(&exposures.mask)?),
                    priors,
                )
            }
            (None, _) => {
                // Eq. 3: zero initial states, so the GRUs run once per moment.
                let h0 = Tensor::zeros((xp.dim(0)?, self.gru_p.hidden()), xp.dtype(), xp.device())?;
                let r1 = batch.per_row(&self.gru_p.forward(&xp, &clicks.mask, &h0)?)?;
                let r2 = batch.per_row(&shared.gru_n.forward(&xn, &exposures.mask, &h0)?)?;
                self.fuse_and_predict(&r1, &r2, None, &e)
            }
            (Some(_), None) => Err(crate::TrainerError::InvalidArgument(
                "the S2F fast component needs priors".into(),
            )),
        }
    }

    /// Eq. 7–8 on embeddings, one row per candidate: `e` (B, d), each window `(x, mask)` as
    /// (B, T, d) and (B, T), `priors` `(r_t, r_n)`; returns (B, 1) logits. This is what
    /// `fast.onnx` computes (the export's parity reference).
    pub fn s2f_logits(
        &self,
        gru_n: &Gru,
        e: &Tensor,
        clicks: (&Tensor, &Tensor),
        exposures: (&Tensor, &Tensor),
        priors: &Priors,
    ) -> Result<Tensor> {
        let gp = self.gru_p.project(clicks.0)?;
        let gn = gru_n.project(exposures.0)?;
        self.s2f_projected(gru_n, e, (&gp, clicks.1), (&gn, exposures.1), priors)
    }

    /// [`FastNet::s2f_logits`] from the windows' input projections (B, T, 3d) of GRU_p and
    /// GRU_n ([`Gru::project`]).
    fn s2f_projected(
        &self,
        gru_n: &Gru,
        e: &Tensor,
        clicks: (&Tensor, &Tensor),
        exposures: (&Tensor, &Tensor),
        priors: &Priors,
    ) -> Result<Tensor> {
        let (r_t, r_n) = priors;
        let s2f = self.s2f.as_ref().ok_or_else(|| {
            crate::TrainerError::InvalidArgument("the fast component has no S2F".into())
        })?;
        // Eq. 7: the GRUs start from the slow component's priors, one run per row.
        let alpha = candle_nn::ops::sigmoid(&s2f.w0.forward(&Tensor::cat(&[r_n, r_t], 1)?)?)?;
        let r_f = ((&alpha * r_n)? + ((1.0 - &alpha)? * r_t)?)?;
        let hp = s2f.w1.forward(&r_f)?.relu()?;
        let hn = s2f.w2.forward(&r_f)?.relu()?;
        let r1 = self.gru_p.forward_projected(clicks.0, clicks.1, &hp)?;
        let r2 = gru_n.forward_projected(exposures.0, exposures.1, &hn)?;
        self.fuse_and_predict(&r1, &r2, Some(r_t), e)
    }

    /// Eq. 3's target-aware fusion of `r1, r2` into `r`, then eq. 4 (`r ⊕ e_i`) or eq. 8
    /// (`r ⊕ r_t ⊕ e_i`).
    fn fuse_and_predict(
        &self,
        r1: &Tensor,
        r2: &Tensor,
        r_t: Option<&Tensor>,
        e: &Tensor,
    ) -> Result<Tensor> {
        let scores = Tensor::cat(
            &[
                &self.fuse.forward(&Tensor::cat(&[r1, e], 1)?)?,
                &self.fuse.forward(&Tensor::cat(&[r2, e], 1)?)?,
            ],
            1,
        )?;
        let w = candle_nn::ops::softmax(&scores, D::Minus1)?;
        let r =
            (r1.broadcast_mul(&w.narrow(1, 0, 1)?)? + r2.broadcast_mul(&w.narrow(1, 1, 1)?)?)?;
        let input = match r_t {
            Some(r_t) => Tensor::cat(&[&r, r_t, e], 1)?,
            None => Tensor::cat(&[&r, e], 1)?,
        };
        self.out.forward(&input)
    }
}
