//! A fused CPU kernel for DIN's target attention (eq. 1, Zhou et al., KDD 2018), the
//! [`target_attention`](super::target_attention) of every slow component: for each row
//! `b` (a candidate `e_b` against its moment's history `h_1 … h_L`),
//!
//! `z_j = W_h h_j + W_e e_b + W_he (h_j ⊙ e_b) + b₁`, `s_j = w₃ · relu(W₂ relu(z_j) + b₂) + b₃`,
//! `w = masked softmax(s)`, `r_t = Σ_j w_j h_j`,
//!
//! with `(W_h, W_e, W_he)` the first layer's weights regrouped
//! ([`first_layer_terms`](super::first_layer_terms)); `W_h h_j` is computed once per
//! moment and `W_e e_b` once per row.
//!
//! Run as candle ops, the (B, L, H1) and (B, L, H2) activations went through a dozen ops
//! forward and more backward, each writing a tensor the size of the activations, and candle's
//! backward pass zero-fills an accumulator for every gradient before adding to it: `perf` on
//! `slowfast bench trainer` put memset, memmove and element-wise maps at a third of the slow
//! component's training time. Here rows are processed in blocks whose activations stay in
//! cache and padded positions are skipped (their softmax weight and every gradient through them
//! are exactly 0). In a training step ([`training_step`](crate::models::grad_mode::training_step)) the
//! forward pass keeps each block's activations for the backward pass (about 0.8 kB per valid
//! position, 5 MB for a shard of 128 rows with full histories of 50); elsewhere it keeps
//! nothing, and a backward pass without them recomputes them block by block, the same values
//! bit for bit. Keeping them saves the backward pass a quarter of its products. ReLU passes its gradient
//! where its input is `≥ 0`, as candle's does; the softmax is shifted by the largest valid
//! score, as [`masked_softmax`](super::masked_softmax) is.

mod backward;

use std::ops::Range;
use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use super::{first_layer_terms, target_attention_ops, Mlp};
use crate::error::Result;
use crate::models::cpu_ops::{backward3, gemm, operands, vectorized};
use crate::models::grad_mode::keeps_activations;

/// Positions per block: a block's activations, `BLOCK · (d + 2 H1 + 2 H2)` values, stay in L2
/// at the default sizes (d = 32, H1 = 64, H2 = 32: 200 kB).
const BLOCK: usize = 256;

/// [`target_attention`](super::target_attention) on the CPU in f32 (see the module
/// doc). Differentiable in `hist`, `e` and the MLP's weights; an MLP layer without a bias runs
/// as candle ops instead.
pub fn attend(
    att: &Mlp,
    hist: &Tensor,
    mask: &Tensor,
    e: &Tensor,
    row_moment: Option<&Tensor>,
) -> Result<Tensor> {
    let [first, second, third] = att.layers();
    let (Some(b1), Some(b2), Some(b3)) = (first.bias(), second.bias(), third.bias()) else {
        return target_attention_ops(att, hist, mask, e, row_moment);
    };
    let (m, l, d) = hist.dims3()?;
    let b = e.dim(0)?;
    let (h1, h2) = (first.weight().dim(0)?, second.weight().dim(0)?);
    let moments: Vec<usize> = match row_moment {
        Some(at) => (at.to_dtype(DType::U32)?.to_vec1::<u32>()?.into_iter())
            .map(|k| k as usize)
            .collect(),
        None => (0..b).collect(),
    };
    let mask: Vec<f32> = mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
    let fits = e.dims2()? == (b, d)
        && mask.len() == m * l
        && moments.len() == b
        && moments.iter().all(|&k| k < m)
        && first.weight().dims2()? == (h1, 4 * d)
        && second.weight().dims2()? == (h2, h1)
        && third.weight().dims2()? == (1, h2);
    if !fits {
        return Err(candle_core::Error::Msg(format!(
            "target attention: history {:?}, mask of {} values, candidates {:?}, {} row moments \
             and the MLP {:?} → {:?} → {:?} do not fit",
            hist.dims(),
            mask.len(),
            e.dims(),
            moments.len(),
            first.weight().dims(),
            second.weight().dims(),
            third.weight().dims()
        ))
        .into());
    }
    if mask.iter().any(|&v| v != 0.0 && v != 1.0) {
        return Err(
            candle_core::Error::Msg("target attention: the mask holds 0s and 1s".into()).into(),
        );
    }
    let (w_h, w_e, w_he) = first_layer_terms(first, d)?;
    // The weights travel as one tensor (CustomOp3 takes three operands), in the order of
    // [`Weights`].
    let flat = [
        &w_h,
        &w_e,
        &w_he,
        b1,
        second.weight(),
        b2,
        third.weight(),
        b3,
    ]
    .map(|t| t.flatten_all())
    .into_iter()
    .collect::<candle_core::Result<Vec<_>>>()?;
    let weights = Tensor::cat(&flat, 0)?;
    let mut op = Attend::new(Dims { m, l, d, b, h1, h2 }, &mask, moments);
    if keeps_activations() && [hist, e, &weights].iter().any(|t| t.track_op()) {
        op.kept = Some(Mutex::new(Vec::new()));
    }
    Ok(hist.contiguous()?.apply_op3_arc(
        &e.contiguous()?,
        &weights,
        std::sync::Arc::new(Box::new(op)),
    )?)
}

#[derive(Clone, Copy, Debug)]
struct Dims {
    /// Moments (histories).
    m: usize,
    /// History length.
    l: usize,
    d: usize,
    /// Rows (candidates).
    b: usize,
    h1: usize,
    h2: usize,
}

impl Dims {
    /// Values of the packed weights.
    fn weights(&self) -> usize {
        let Dims { d, h1, h2, .. } = *self;
        3 * h1 * d + h1 + h2 * h1 + 2 * h2 + 1
    }
}

struct Attend {
    dims: Dims,
    /// Each row's moment.
    moments: Vec<usize>,
    /// The unpadded positions of each moment's history.
    valid: Vec<Vec<usize>>,
    /// Consecutive rows whose valid positions together fit a block (a row's positions are
    /// never split: its softmax needs all of them).
    blocks: Vec<Range<usize>>,
    /// The largest block, in positions.
    widest: usize,
    /// In a training step, each block's activations from the forward pass, taken by the
    /// backward pass.
    kept: Option<Mutex<Vec<Block>>>,
}

/// The packed weights, read in place.
struct Weights<'a> {
    /// `W_h`, `W_e`, `W_he`: H1 × d each.
    w_h: &'a [f32],
    w_e: &'a [f32],
    w_he: &'a [f32],
    b1: &'a [f32],
    /// H2 × H1.
    w2: &'a [f32],
    b2: &'a [f32],
    w3: &'a [f32],
    b3: f32,
}

impl<'a> Weights<'a> {
    fn read(dims: &Dims, packed: &'a [f32]) -> Weights<'a> {
        let Dims { d, h1, h2, .. } = *dims;
        let (w_h, rest) = packed.split_at(h1 * d);
        let (w_e, rest) = rest.split_at(h1 * d);
        let (w_he, rest) = rest.split_at(h1 * d);
        let (b1, rest) = rest.split_at(h1);
        let (w2, rest) = rest.split_at(h2 * h1);
        let (b2, rest) = rest.split_at(h2);
        let (w3, rest) = rest.split_at(h2);
        Weights {
            w_h,
            w_e,
            w_he,
            b1,
            w2,
            b2,
            w3,
            b3: rest[0],
        }
    }
}

/// Where each gradient of [`Weights`] sits in the packed gradient.
struct Offsets {
    w_h: usize,
    w_e: usize,
    w_he: usize,
    b1: usize,
    w2: usize,
    b2: usize,
    w3: usize,
    b3: usize,
}

impl Offsets {
    fn of(dims: &Dims) -> Offsets {
        let Dims { d, h1, h2, .. } = *dims;
        let w_he = 2 * h1 * d;
        let b1 = w_he + h1 * d;
        let w2 = b1 + h1;
        let b2 = w2 + h2 * h1;
        Offsets {
            w_h: 0,
            w_e: h1 * d,
            w_he,
            b1,
            w2,
            b2,
            w3: b2 + h2,
            b3: b2 + 2 * h2,
        }
    }
}

/// One block's activations, position by position: `he = h ⊙ e` (d), `z` (H1), `a = relu(z)`,
/// `u = W₂ a + b₂` (H2), the score `s` and the softmax weight `w`; `rows` lists each row of the
/// block with its first position in the block.
struct Block {
    he: Vec<f32>,
    z: Vec<f32>,
    a: Vec<f32>,
    u: Vec<f32>,
    s: Vec<f32>,
    w: Vec<f32>,
    rows: Vec<(usize, Range<usize>)>,
}

impl Attend {
    fn new(dims: Dims, mask: &[f32], moments: Vec<usize>) -> Attend {
        let l = dims.l;
        let valid: Vec<Vec<usize>> = (0..dims.m)
            .map(|k| (0..l).filter(|&j| mask[k * l + j] != 0.0).collect())
            .collect();
        let mut blocks = Vec::new();
        let (mut start, mut filled, mut widest) = (0, 0, 0);
        for (row, &k) in moments.iter().enumerate() {
            let n = valid[k].len();
            if filled > 0 && filled + n > BLOCK {
                blocks.push(start..row);
                widest = widest.max(filled);
                (start, filled) = (row, 0);
            }
            filled += n;
        }
        blocks.push(start..moments.len());
        widest = widest.max(filled);
        Attend {
            dims,
            moments,
            valid,
            blocks,
            widest,
            kept: None,
        }
    }

    /// The blocks the forward pass kept, in block order, if it kept them all (empty
    /// otherwise: the backward pass then recomputes every block).
    fn take_kept(&self) -> Vec<Block> {
        let Some(kept) = &self.kept else {
            return Vec::new();
        };
        let kept = std::mem::take(&mut *kept.lock().unwrap_or_else(|e| e.into_inner()));
        if kept.len() == self.blocks.len() {
            kept
        } else {
            Vec::new()
        }
    }

    /// An empty block with room for the widest one: [`Attend::activate`] fills it by
    /// appending, so no buffer is zeroed first (zeroing the blocks the forward pass keeps took
    /// about 4 % of a slow-component epoch, perf).
    fn block(&self) -> Block {
        let Dims { d, h1, h2, .. } = self.dims;
        let n = self.widest;
        Block {
            he: Vec::with_capacity(n * d),
            z: Vec::with_capacity(n * h1),
            a: Vec::with_capacity(n * h1),
            u: Vec::with_capacity(n * h2),
            s: Vec::with_capacity(n),
            w: Vec::with_capacity(n),
            rows: Vec::new(),
        }
    }

    /// The history term `W_h h` of every position (M·L × H1) and the candidate term
    /// `W_e e + b₁` of every row (B × H1).
    #[inline(always)]
    fn terms(&self, hist: &[f32], e: &[f32], w: &Weights) -> (Vec<f32>, Vec<f32>) {
        let Dims { m, l, d, b, h1, .. } = self.dims;
        let mut per_pos = vec![0f32; m * l * h1];
        gemm(
            (m * l, h1, d),
            &mut per_pos,
            h1,
            false,
            hist,
            (d, 1),
            w.w_h,
            (1, d),
        );
        let mut per_cand: Vec<f32> = (0..b).flat_map(|_| w.b1.iter().copied()).collect();
        gemm(
            (b, h1, d),
            &mut per_cand,
            h1,
            true,
            e,
            (d, 1),
            w.w_e,
            (1, d),
        );
        (per_pos, per_cand)
    }

    /// Fills `blk` with the activations of the rows of `rows`.
    #[inline(always)]
    fn activate(
        &self,
        (hist, e): (&[f32], &[f32]),
        w: &Weights,
        (per_pos, per_cand): (&[f32], &[f32]),
        rows: Range<usize>,
        blk: &mut Block,
    ) {
        let Dims { l, d, h1, h2, .. } = self.dims;
        let Block {
            he,
            z,
            a,
            u,
            s,
            w: wt,
            rows: spans,
        } = blk;
        for buffer in [&mut *he, &mut *z, &mut *a, &mut *u, &mut *s, &mut *wt] {
            buffer.clear();
        }
        spans.clear();
        let mut n = 0;
        for row in rows {
            let k = self.moments[row];
            let first = n;
            let (er, cr) = (&e[row * d..][..d], &per_cand[row * h1..][..h1]);
            for &j in &self.valid[k] {
                let at = k * l + j;
                let (h, pr) = (&hist[at * d..][..d], &per_pos[at * h1..][..h1]);
                he.extend(h.iter().zip(er).map(|(h, e)| h * e));
                z.extend(pr.iter().zip(cr).map(|(p, c)| p + c));
                n += 1;
            }
            spans.push((row, first..n));
        }
        // z += (h ⊙ e) · W_heᵀ, then u = relu(z) · W₂ᵀ + b₂.
        gemm((n, h1, d), z, h1, true, he, (d, 1), w.w_he, (1, d));
        a.extend(z.iter().map(|z| z.max(0.0)));
        (0..n).for_each(|_| u.extend_from_slice(w.b2));
        gemm((n, h2, h1), u, h2, true, a, (h1, 1), w.w2, (1, h1));
        s.extend(
            u.chunks_exact(h2)
                .map(|u| w.b3 + dot_by(u, w.w3, |u| u.max(0.0))),
        );
        // The softmax over each row's valid positions (the spans follow each other from 0).
        for (_, at) in spans.iter() {
            let s = &s[at.clone()];
            let max = s.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            wt.extend(s.iter().map(|s| {
                let w = (s - max).exp();
                sum += w;
                w
            }));
            let norm = 1.0 / (sum + 1e-12);
            wt[at.clone()].iter_mut().for_each(|w| *w *= norm);
        }
    }

    /// The flat history positions (`moment · L + j`) of the valid entries of `moment`.
    fn positions(&self, moment: usize) -> impl Iterator<Item = usize> + '_ {
        self.valid[moment]
            .iter()
            .map(move |&j| moment * self.dims.l + j)
    }

    #[inline(always)]
    fn forward(&self, hist: &[f32], e: &[f32], packed: &[f32]) -> Vec<f32> {
        let Dims { b, d, .. } = self.dims;
        let w = Weights::read(&self.dims, packed);
        let terms = self.terms(hist, e, &w);
        let mut blk = self.block();
        let mut kept = Vec::new();
        let mut out = vec![0f32; b * d];
        for rows in &self.blocks {
            self.activate((hist, e), &w, (&terms.0, &terms.1), rows.clone(), &mut blk);
            for (row, at) in &blk.rows {
                let r = &mut out[row * d..][..d];
                for (&wt, p) in blk.w[at.clone()]
                    .iter()
                    .zip(self.positions(self.moments[*row]))
                {
                    let h = &hist[p * d..][..d];
                    r.iter_mut().zip(h).for_each(|(r, h)| *r += wt * h);
                }
            }
            if self.kept.is_some() {
                kept.push(std::mem::replace(&mut blk, self.block()));
            }
        }
        if let Some(slot) = &self.kept {
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = kept;
        }
        out
    }
}

/// `Σ_i f(x_i) y_i` summed in eight lanes, so that it vectorises (a sequential float sum
/// does not).
#[inline(always)]
fn dot_by(x: &[f32], y: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let (xs, ys) = (x.chunks_exact(8), y.chunks_exact(8));
    let tail: f32 = (xs.remainder().iter().zip(ys.remainder()))
        .map(|(x, y)| f(*x) * y)
        .sum();
    let mut lanes = [0f32; 8];
    for (x, y) in xs.zip(ys) {
        for k in 0..8 {
            lanes[k] += f(x[k]) * y[k];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

impl CustomOp3 for Attend {
    fn name(&self) -> &'static str {
        "din-target-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let Dims { m, l, d, b, .. } = self.dims;
        let [hist, e, w] = operands(
            self.name(),
            [
                (s1, l1, "history", m * l * d),
                (s2, l2, "candidates", b * d),
                (s3, l3, "weights", self.dims.weights()),
            ],
        )?;
        Ok((
            CpuStorage::F32(vectorized(
                #[inline(always)]
                || self.forward(hist, e, w),
            )),
            Shape::from((b, d)),
        ))
    }

    fn bwd(
        &self,
        hist: &Tensor,
        e: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        backward3([hist, e, w], grad_res, |[h, e, w], g| {
            vectorized(
                #[inline(always)]
                || self.backward(h, e, w, g),
            )
        })
    }
}

#[cfg(test)]
mod tests;
