//! The building blocks of every model: 3-layer MLPs, a GRU with PyTorch's (and candle's) gate
//! layout, DIN's target attention, and a numerically stable BCE.

use candle_core::{DType, Tensor, D};
use candle_nn::{linear, Linear, VarBuilder};

mod activation_unit;
mod gru_scan;

use super::cpu_ops::{add_bias, add_rows, mul_rows, relu};
use crate::error::Result;

/// `x Wᵀ + b` of a linear layer on 2-D `x`: candle_nn's `Linear::forward`, with the bias
/// through [`add_bias`] so that its gradient is a contiguous sum.
pub fn affine(layer: &Linear, x: &Tensor) -> Result<Tensor> {
    let y = x.matmul(&layer.weight().t()?)?;
    match layer.bias() {
        Some(b) => add_bias(&y, b),
        None => Ok(y),
    }
}

/// A 3-layer MLP `in → h1 → h2 → out` with ReLU between layers (paper §5.1.4: "the number of
/// layers used in MLP is set to 3").
#[derive(Clone, Debug)]
pub struct Mlp {
    layers: [Linear; 3],
}

impl Mlp {
    /// Parameters `l0`, `l1`, `l2` under `vb`.
    pub fn new(vb: VarBuilder, input: usize, hidden: [usize; 2], out: usize) -> Result<Mlp> {
        Ok(Mlp {
            layers: [
                linear(input, hidden[0], vb.pp("l0"))?,
                linear(hidden[0], hidden[1], vb.pp("l1"))?,
                linear(hidden[1], out, vb.pp("l2"))?,
            ],
        })
    }

    /// Applies the MLP to the last dimension (any leading shape). Leading axes are flattened
    /// first so each layer is one 2-D matmul rather than a batch of small ones.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let dims = xs.dims().to_vec();
        let xs = xs.reshape(((), dims[dims.len() - 1]))?;
        let xs = relu(&affine(&self.layers[0], &xs)?)?;
        let xs = relu(&affine(&self.layers[1], &xs)?)?;
        let xs = affine(&self.layers[2], &xs)?;
        let mut out = dims;
        if let Some(last) = out.last_mut() {
            *last = xs.dim(1)?;
        }
        Ok(xs.reshape(out)?)
    }

    /// The three linear layers (for export).
    pub fn layers(&self) -> &[Linear; 3] {
        &self.layers
    }
}

/// A GRU with the gate layout of PyTorch and candle: `weight_ih` (3H×I) and `weight_hh`
/// (3H×H) stack the reset `r`, update `z` and new `n` gates in that order, and the reset gate
/// multiplies the recurrent product *after* its linear (ONNX `linear_before_reset = 1`):
///
/// `r = σ(W_ir x + b_ir + W_hr h + b_hr)`, `z = σ(W_iz x + b_iz + W_hz h + b_hz)`,
/// `n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))`, `h' = (1 − z) ⊙ n + z ⊙ h`.
#[derive(Clone, Debug)]
pub struct Gru {
    pub weight_ih: Tensor,
    pub weight_hh: Tensor,
    pub bias_ih: Tensor,
    pub bias_hh: Tensor,
    hidden: usize,
}

impl Gru {
    /// Parameters `weight_ih`, `weight_hh`, `bias_ih`, `bias_hh` under `vb`, initialised
    /// uniformly in ±1/√H as PyTorch does.
    pub fn new(vb: VarBuilder, input: usize, hidden: usize) -> Result<Gru> {
        let k = 1.0 / (hidden as f64).sqrt();
        let init = candle_nn::Init::Uniform { lo: -k, up: k };
        Ok(Gru {
            weight_ih: vb.get_with_hints((3 * hidden, input), "weight_ih", init)?,
            weight_hh: vb.get_with_hints((3 * hidden, hidden), "weight_hh", init)?,
            bias_ih: vb.get_with_hints(3 * hidden, "bias_ih", init)?,
            bias_hh: vb.get_with_hints(3 * hidden, "bias_hh", init)?,
            hidden,
        })
    }

    /// The hidden size H.
    pub fn hidden(&self) -> usize {
        self.hidden
    }

    /// Input projections `W_i x + b_i` for every step at once: (B, T, I) → (B, T, 3H). They do
    /// not depend on the state, so one matmul serves the whole window.
    pub fn project(&self, xs: &Tensor) -> Result<Tensor> {
        let (b, t, i) = xs.dims3()?;
        let gi = xs.reshape((b * t, i))?.matmul(&self.weight_ih.t()?)?;
        Ok(add_bias(&gi, &self.bias_ih)?.reshape((b, t, 3 * self.hidden))?)
    }

    /// One step from projected inputs `gi` (B, 3H) and state `h` (B, H).
    pub fn step(&self, gi: &Tensor, h: &Tensor) -> Result<Tensor> {
        let hd = self.hidden;
        let gh = add_bias(&h.matmul(&self.weight_hh.t()?)?, &self.bias_hh)?;
        let rz = candle_nn::ops::sigmoid(&(gi.narrow(1, 0, 2 * hd)? + gh.narrow(1, 0, 2 * hd)?)?)?;
        let r = rz.narrow(1, 0, hd)?;
        let z = rz.narrow(1, hd, hd)?;
        let n = (gi.narrow(1, 2 * hd, hd)? + (r * gh.narrow(1, 2 * hd, hd)?)?)?.tanh()?;
        // h' = (1 − z) n + z h = n + z (h − n)
        Ok((&n + (z * (h - &n)?)?)?)
    }

    /// One step from a raw input `x` (B, I): the GRU cell used for `GRUcell_n(e_i | r̂2)`.
    pub fn cell(&self, x: &Tensor, h: &Tensor) -> Result<Tensor> {
        self.step(
            &add_bias(&x.matmul(&self.weight_ih.t()?)?, &self.bias_ih)?,
            h,
        )
    }

    /// Runs over a right-padded window `xs` (B, T, I) with `mask` (B, T) of 1/0 from `h0`
    /// (B, H) and returns the last valid state: padded steps leave the state unchanged, so an
    /// empty window returns `h0`.
    ///
    /// On the CPU in f32 the recurrence is one fused op ([`gru_scan`]); elsewhere it
    /// runs step by step ([`Gru::forward_steps`]).
    pub fn forward(&self, xs: &Tensor, mask: &Tensor, h0: &Tensor) -> Result<Tensor> {
        self.forward_projected(&self.project(xs)?, mask, h0)
    }

    /// [`Gru::forward`] from the window's input projections `gi` (B, T, 3H) of
    /// [`Gru::project`], so rows that read the same window can share one projection: the S2F
    /// fast component runs each moment's window from a different state for every candidate.
    pub fn forward_projected(&self, gi: &Tensor, mask: &Tensor, h0: &Tensor) -> Result<Tensor> {
        self.recur(gi, mask, h0, false)
    }

    /// The state after every step (B, T, H) of [`Gru::forward`]'s run: position `t` has read
    /// steps `0..=t` (a padded step repeats the state before it). GRU4Rec trains on it, each
    /// position predicting the next click.
    pub fn forward_all(&self, xs: &Tensor, mask: &Tensor, h0: &Tensor) -> Result<Tensor> {
        self.recur(&self.project(xs)?, mask, h0, true)
    }

    /// [`Gru::forward`] as a loop of [`Gru::step`]s: any device and dtype.
    pub fn forward_steps(&self, xs: &Tensor, mask: &Tensor, h0: &Tensor) -> Result<Tensor> {
        self.steps(&self.project(xs)?, mask, h0, false)
    }

    /// The recurrence over projected inputs `gi` (B, T, 3H), returning the last state or
    /// with `all` every step's. On the CPU in f32 it is one fused op ([`gru_scan`]);
    /// elsewhere it runs step by step.
    fn recur(&self, gi: &Tensor, mask: &Tensor, h0: &Tensor, all: bool) -> Result<Tensor> {
        if gi.device().is_cpu() && gi.dtype() == DType::F32 {
            let weights = (&self.weight_hh, &self.bias_hh);
            return gru_scan::scan(gi, mask, h0, weights, all);
        }
        self.steps(gi, mask, h0, all)
    }

    /// The recurrence one [`Gru::step`] at a time.
    fn steps(&self, gi: &Tensor, mask: &Tensor, h0: &Tensor, all: bool) -> Result<Tensor> {
        let mut h = h0.clone();
        let mut every = Vec::new();
        for t in 0..gi.dim(1)? {
            let m = mask.narrow(1, t, 1)?;
            let next = self.step(&gi.narrow(1, t, 1)?.squeeze(1)?, &h)?;
            h = (&h + m.broadcast_mul(&(next - &h)?)?)?;
            if all {
                every.push(h.clone());
            }
        }
        if all {
            return Ok(Tensor::stack(&every, 1)?);
        }
        Ok(h)
    }
}

/// DIN's target attention (eq. 1, after Zhou et al., KDD 2018): each history item `h_j` is
/// scored against the candidate `e` by an MLP over `[h_j, e, h_j − e, h_j ⊙ e]`, the scores are
/// softmax-normalised over the valid (unpadded) positions, and `r_t = Σ_j w_j h_j`.
///
/// We normalise with a masked softmax (the DIN paper leaves weights unnormalised) because it
/// keeps `r_t` on the embeddings' scale for the GRU initial state of eq. 7; an empty history
/// gives `r_t = 0`.
///
/// The first layer is applied without materialising the (B, L, 4d) features: with its weight
/// split into column blocks `[A B C D]`, `W[h, e, h − e, h ⊙ e] = (A + C) h + (B − C) e + D (h ⊙ e)`,
/// so the candidate term is computed once per row and the history term once per moment.
///
/// `hist` (M, L, d) and `mask` (M, L, of 0s and 1s) are per moment; `row_moment` (B) maps each
/// of the `e` (B, d) rows to its moment (`None`: one row per moment, M = B). Returns `r_t`
/// (B, d). On the CPU in f32 it is one fused op ([`activation_unit`]); elsewhere it
/// runs as candle ops ([`target_attention_ops`]).
pub fn target_attention(
    att: &Mlp,
    hist: &Tensor,
    mask: &Tensor,
    e: &Tensor,
    row_moment: Option<&Tensor>,
) -> Result<Tensor> {
    if hist.device().is_cpu() && hist.dtype() == DType::F32 {
        return activation_unit::attend(att, hist, mask, e, row_moment);
    }
    target_attention_ops(att, hist, mask, e, row_moment)
}

/// [`target_attention`] as candle ops, on any device and dtype: the reference the fused CPU
/// kernel is tested against.
pub fn target_attention_ops(
    att: &Mlp,
    hist: &Tensor,
    mask: &Tensor,
    e: &Tensor,
    row_moment: Option<&Tensor>,
) -> Result<Tensor> {
    let (m, l, d) = hist.dims3()?;
    let b = e.dim(0)?;
    let per_row = |x: &Tensor| -> Result<Tensor> {
        Ok(match row_moment {
            Some(at) => x.index_select(at, 0)?,
            None => x.clone(),
        })
    };
    let [first, second, third] = att.layers();
    let (w_h, w_e, w_he) = first_layer_terms(first, d)?;
    let per_moment = hist.reshape((m * l, d))?.matmul(&w_h.t()?)?;
    let hist = per_row(hist)?;
    let he = mul_rows(&hist, e)?.reshape((b * l, d))?;
    let per_pos = (per_row(&per_moment.reshape((m, l, ()))?)?
        + he.matmul(&w_he.t()?)?.reshape((b, l, ()))?)?;
    let mut per_cand = e.matmul(&w_e.t()?)?;
    if let Some(bias) = first.bias() {
        per_cand = add_bias(&per_cand, bias)?;
    }
    let z = relu(&add_rows(&per_pos, &per_cand)?)?;
    let z = relu(&affine(second, &z.reshape((b * l, ()))?)?)?;
    let scores = affine(third, &z)?.reshape((b, l))?;
    let w = masked_softmax(&scores, &per_row(mask)?)?;
    Ok(w.unsqueeze(1)?.matmul(&hist)?.squeeze(1)?)
}

/// The weights of the attention MLP's first layer on `[h, e, h − e, h ⊙ e]` regrouped by what
/// they multiply: `(A + C, B − C, D)` for the history, the candidate and `h ⊙ e`, from its
/// column blocks `[A B C D]` (each `h1 × d`).
pub(super) fn first_layer_terms(first: &Linear, d: usize) -> Result<(Tensor, Tensor, Tensor)> {
    let w = first.weight();
    let block = |k: usize| w.narrow(1, k * d, d);
    Ok((
        (block(0)? + block(2)?)?,
        (block(1)? - block(2)?)?,
        block(3)?,
    ))
}

/// Layer normalisation over the last axis (Ba, Kiros & Hinton 2016):
/// `γ ⊙ (x − μ) / √(σ² + ε) + β`, with `μ`, `σ²` the mean and (biased) variance of the last axis.
///
/// Built from differentiable tensor ops on purpose: candle-nn's `LayerNorm::forward` runs a
/// fused kernel without a backward pass on contiguous inputs (`apply_op3_no_bwd`), so no
/// gradient reaches anything before it (SASRec trained that way only ever fitted its output
/// embeddings).
#[derive(Clone, Debug)]
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// The gain `weight` and shift `bias` (`d` each) under `vb`.
    pub fn new(vb: VarBuilder, d: usize, eps: f64) -> Result<LayerNorm> {
        Ok(LayerNorm {
            weight: vb.get(d, "weight")?,
            bias: vb.get(d, "bias")?,
            eps,
        })
    }

    /// Normalises `x` (any leading shape, last axis `d`).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let d = x.dim(D::Minus1)? as f64;
        let centred = x.broadcast_sub(&(x.sum_keepdim(D::Minus1)? / d)?)?;
        let var = (centred.sqr()?.sum_keepdim(D::Minus1)? / d)?;
        let normed = centred.broadcast_div(&(var + self.eps)?.sqrt()?)?;
        Ok(normed
            .broadcast_mul(&self.weight)?
            .broadcast_add(&self.bias)?)
    }
}

/// Softmax over the last axis restricted to `mask` = 1 entries; rows without any valid entry
/// give all-zero weights instead of NaN.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor) -> Result<Tensor> {
    // The shift is the max over valid entries only, so padding cannot change the result.
    let shifted = (scores + ((mask - 1.0)? * 1e4)?)?;
    let max = shifted.max_keepdim(D::Minus1)?;
    let ex = (shifted.broadcast_sub(&max)?.exp()? * mask)?;
    let sum = (ex.sum_keepdim(D::Minus1)? + 1e-12)?;
    Ok(ex.broadcast_div(&sum)?)
}

/// Mean binary cross-entropy on logits, stable for large |x| (eq. 2 and 4):
/// `max(x, 0) − x·y + log(1 + e^{−|x|})`.
pub fn bce_with_logits(logits: &Tensor, labels: &Tensor) -> Result<Tensor> {
    let softplus = (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    let loss = ((logits.relu()? - (logits * labels)?)? + softplus)?;
    Ok(loss.mean_all()?)
}

/// Gathers rows of an embedding table for ids of any shape: `ids` (…) → (…, d).
pub fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let d = table.dim(1)?;
    let mut shape = ids.dims().to_vec();
    let flat = table.index_select(&ids.flatten_all()?, 0)?;
    shape.push(d);
    Ok(flat.reshape(shape)?)
}

/// A (B, T) f32 mask of 1s for the first `len[b]` positions of each row.
pub fn length_mask(lens: &[usize], steps: usize, device: &candle_core::Device) -> Result<Tensor> {
    let data: Vec<f32> = lens
        .iter()
        .flat_map(|&n| (0..steps).map(move |t| f32::from(u8::from(t < n))))
        .collect();
    Ok(Tensor::from_vec(data, (lens.len(), steps), device)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests;
