//! A fused CPU kernel for DIN's target attention (eq. 1, Zhou et al., KDD 2018), the
//! [`target_attention`](super::layers::target_attention) of every slow component: for each row
//! `b` (a candidate `e_b` against its moment's history `h_1 … h_L`),
//!
//! `z_j = W_h h_j + W_e e_b + W_he (h_j ⊙ e_b) + b₁`, `s_j = w₃ · relu(W₂ relu(z_j) + b₂) + b₃`,
//! `w = masked softmax(s)`, `r_t = Σ_j w_j h_j`,
//!
//! with `(W_h, W_e, W_he)` the first layer's weights regrouped
//! ([`first_layer_terms`](super::layers::first_layer_terms)); `W_h h_j` is computed once per
//! moment and `W_e e_b` once per row.
//!
//! Run as candle ops, the (B, L, H1) and (B, L, H2) activations went through a dozen ops
//! forward and more backward, each writing a tensor the size of the activations, and candle's
//! backward pass zero-fills an accumulator for every gradient before adding to it: `perf` on
//! `slowfast bench trainer` put memset, memmove and element-wise maps at a third of the slow
//! component's training time. Here rows are processed in blocks whose activations stay in
//! cache and padded positions are skipped (their softmax weight and every gradient through them
//! are exactly 0). In a training step ([`training_step`](super::grad_mode::training_step)) the
//! forward pass keeps each block's activations for the backward pass (about 0.8 kB per valid
//! position, 5 MB for a shard of 128 rows with full histories of 50); elsewhere it keeps
//! nothing, and a backward pass without them recomputes them block by block, the same values
//! bit for bit. Keeping them saves the backward pass a quarter of its products. ReLU passes its gradient
//! where its input is `≥ 0`, as candle's does; the softmax is shifted by the largest valid
//! score, as [`masked_softmax`](super::layers::masked_softmax) is.

use std::ops::Range;

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use super::cpu_ops::{backward3, gemm, values, vectorized};
use super::grad_mode::keeps_activations;
use super::layers::{first_layer_terms, target_attention_ops, Mlp};
use crate::error::Result;

/// Positions per block: a block's activations, `BLOCK · (d + 2 H1 + 2 H2)` values, stay in L2
/// at the default sizes (d = 32, H1 = 64, H2 = 32: 200 kB).
const BLOCK: usize = 256;

/// [`target_attention`](super::layers::target_attention) on the CPU in f32 (see the module
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

    /// The gradients of `hist` (M, L, d), `e` (B, d) and the packed weights from the gradient
    /// `d_out` (B, d) of `r_t`.
    #[inline(always)]
    fn backward(
        &self,
        hist: &[f32],
        e: &[f32],
        packed: &[f32],
        d_out: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let Dims { m, l, d, b, h1, h2 } = self.dims;
        let w = Weights::read(&self.dims, packed);
        let at = Offsets::of(&self.dims);
        let kept = self.take_kept();
        // Only recomputed activations need the first layer's terms.
        let (per_pos, per_cand) = if kept.is_empty() {
            self.terms(hist, e, &w)
        } else {
            Default::default()
        };
        let (mut kept, mut scratch) = (kept.into_iter(), None);
        let (mut d_hist, mut d_e) = (vec![0f32; hist.len()], vec![0f32; e.len()]);
        let mut dw = vec![0f32; packed.len()];
        let (mut d_pos, mut d_cand) = (vec![0f32; m * l * h1], vec![0f32; b * h1]);
        let n_max = self.widest;
        let (mut ds, mut du) = (vec![0f32; n_max], vec![0f32; n_max * h2]);
        let (mut da, mut d_he) = (vec![0f32; n_max * h1], vec![0f32; n_max * d]);
        let (mut dw3, mut db2, mut db3) = (vec![0f32; h2], vec![0f32; h2], 0f32);
        for rows in &self.blocks {
            let blk = match kept.next() {
                Some(blk) => scratch.insert(blk),
                None => {
                    let blk = scratch.get_or_insert_with(|| self.block());
                    self.activate((hist, e), &w, (&per_pos, &per_cand), rows.clone(), blk);
                    blk
                }
            };
            let n = blk.rows.last().map_or(0, |(_, at)| at.end);
            // Through `r_t = Σ_j w_j h_j` and the softmax: `∂s_j = w_j (g·h_j − Σ_k w_k g·h_k)`.
            for (row, span) in &blk.rows {
                let g = &d_out[row * d..][..d];
                let positions = self.positions(self.moments[*row]);
                let mut mean = 0f32;
                for ((ds, &wt), p) in ds[span.clone()]
                    .iter_mut()
                    .zip(&blk.w[span.clone()])
                    .zip(positions)
                {
                    let h = &hist[p * d..][..d];
                    *ds = dot_by(g, h, |g| g);
                    mean += wt * *ds;
                    let dh = &mut d_hist[p * d..][..d];
                    dh.iter_mut().zip(g).for_each(|(dh, g)| *dh += wt * g);
                }
                for (ds, &wt) in ds[span.clone()].iter_mut().zip(&blk.w[span.clone()]) {
                    *ds = wt * (*ds - mean);
                }
            }
            // Through `s = w₃ · relu(u) + b₃`.
            let units = du.chunks_exact_mut(h2).zip(blk.u.chunks_exact(h2));
            for ((du, u), &g) in units.zip(&ds[..n]) {
                let grads = dw3.iter_mut().zip(db2.iter_mut());
                for (((du, &u), &w3), (dw3, db2)) in du.iter_mut().zip(u).zip(w.w3).zip(grads) {
                    *dw3 += g * u.max(0.0);
                    *du = if u >= 0.0 { g * w3 } else { 0.0 };
                    *db2 += *du;
                }
                db3 += g;
            }
            let (du, a) = (&du[..n * h2], &blk.a[..n * h1]);
            // dW₂ += duᵀ · a (H2×n · n×H1); da = du · W₂ (n×H2 · H2×H1).
            let d_w2 = &mut dw[at.w2..at.w2 + h2 * h1];
            gemm((h2, h1, n), d_w2, h1, true, du, (1, h2), a, (h1, 1));
            let da = &mut da[..n * h1];
            gemm((n, h1, h2), da, h1, false, du, (h2, 1), w.w2, (h1, 1));
            // Through `a = relu(z)`: `da` becomes `∂z` (a select, which vectorises).
            for (da, &z) in da.iter_mut().zip(&blk.z[..n * h1]) {
                *da = if z >= 0.0 { *da } else { 0.0 };
            }
            let dz = &*da;
            // dW_he += ∂zᵀ · (h ⊙ e); ∂(h ⊙ e) = ∂z · W_he.
            let d_w_he = &mut dw[at.w_he..at.w_he + h1 * d];
            gemm(
                (h1, d, n),
                d_w_he,
                d,
                true,
                dz,
                (1, h1),
                &blk.he[..n * d],
                (d, 1),
            );
            let d_he = &mut d_he[..n * d];
            gemm((n, d, h1), d_he, d, false, dz, (h1, 1), w.w_he, (d, 1));
            // Into the per-moment and per-row terms and through `h ⊙ e`.
            for (row, span) in &blk.rows {
                let er = &e[row * d..][..d];
                let positions = self.positions(self.moments[*row]);
                for (q, p) in span.clone().zip(positions) {
                    let dz = &dz[q * h1..][..h1];
                    let dp = &mut d_pos[p * h1..][..h1];
                    dp.iter_mut().zip(dz).for_each(|(o, g)| *o += g);
                    let dc = &mut d_cand[row * h1..][..h1];
                    dc.iter_mut().zip(dz).for_each(|(o, g)| *o += g);
                    let (g, h) = (&d_he[q * d..][..d], &hist[p * d..][..d]);
                    let dh = &mut d_hist[p * d..][..d];
                    dh.iter_mut()
                        .zip(g.iter().zip(er))
                        .for_each(|(o, (g, e))| *o += g * e);
                    let de = &mut d_e[row * d..][..d];
                    de.iter_mut()
                        .zip(g.iter().zip(h))
                        .for_each(|(o, (g, h))| *o += g * h);
                }
            }
        }
        dw[at.w3..at.w3 + h2].copy_from_slice(&dw3);
        dw[at.b2..at.b2 + h2].copy_from_slice(&db2);
        dw[at.b3] = db3;
        // The history term: dW_h = ∂Pᵀ · h, ∂h += ∂P · W_h.
        gemm(
            (h1, d, m * l),
            &mut dw[at.w_h..at.w_h + h1 * d],
            d,
            false,
            &d_pos,
            (1, h1),
            hist,
            (d, 1),
        );
        gemm(
            (m * l, d, h1),
            &mut d_hist,
            d,
            true,
            &d_pos,
            (h1, 1),
            w.w_h,
            (d, 1),
        );
        // The candidate term: dW_e = ∂Cᵀ · e, ∂e += ∂C · W_e, db₁ = Σ ∂C.
        gemm(
            (h1, d, b),
            &mut dw[at.w_e..at.w_e + h1 * d],
            d,
            false,
            &d_cand,
            (1, h1),
            e,
            (d, 1),
        );
        gemm(
            (b, d, h1),
            &mut d_e,
            d,
            true,
            &d_cand,
            (h1, 1),
            w.w_e,
            (d, 1),
        );
        for dc in d_cand.chunks_exact(h1) {
            let db1 = &mut dw[at.b1..at.b1 + h1];
            db1.iter_mut().zip(dc).for_each(|(o, g)| *o += g);
        }
        (d_hist, d_e, dw)
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
        let (hist, e, w) = (
            values(s1, l1, self.name(), "history")?,
            values(s2, l2, self.name(), "candidates")?,
            values(s3, l3, self.name(), "weights")?,
        );
        let Dims { m, l, d, b, .. } = self.dims;
        if hist.len() != m * l * d || e.len() != b * d || w.len() != self.dims.weights() {
            return Err(candle_core::Error::Msg(
                "target attention: operand sizes do not match".into(),
            ));
        }
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
mod tests {
    use candle_core::{Device, Var};
    use candle_nn::{VarBuilder, VarMap};

    use super::*;
    use crate::models::grad_mode::training_step;
    use crate::models::layers::length_mask;
    use crate::models::testing::{assert_same_op, bits};

    /// Deterministic values in (−1, 1) that sit on no ReLU kink at these sizes.
    fn wave(shape: impl Into<Shape>, phase: f32) -> Result<Tensor> {
        let shape: Shape = shape.into();
        let v: Vec<f32> = (0..shape.elem_count())
            .map(|i| ((i as f32) * 0.731 + phase).sin())
            .collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    struct Case {
        map: VarMap,
        att: Mlp,
        hist: Var,
        e: Var,
        mask: Tensor,
        at: Tensor,
    }

    impl Case {
        /// `lens` valid positions in each of the moments' histories of `l`, rows mapped to
        /// moments by `at`.
        fn new(lens: &[usize], l: usize, at: &[u32], d: usize, hidden: [usize; 2]) -> Result<Case> {
            let map = VarMap::new();
            let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
            let att = Mlp::new(vb, 4 * d, hidden, 1)?;
            for (name, var) in map.data().lock().expect("var map").iter() {
                let phase = name.bytes().map(f32::from).sum::<f32>();
                var.set(&(wave(var.shape().clone(), phase)? * 0.7)?)?;
            }
            Ok(Case {
                att,
                hist: Var::from_tensor(&wave((lens.len(), l, d), 0.3)?)?,
                e: Var::from_tensor(&wave((at.len(), d), 1.1)?)?,
                mask: length_mask(lens, l, &Device::Cpu)?,
                at: Tensor::new(at, &Device::Cpu)?,
                map,
            })
        }

        fn vars(&self) -> Vec<Var> {
            let mut all = self.map.all_vars();
            all.extend([self.hist.clone(), self.e.clone()]);
            all
        }

        fn ours(&self) -> Result<Tensor> {
            attend(&self.att, &self.hist, &self.mask, &self.e, Some(&self.at))
        }
    }

    /// `r_t` and every gradient against the candle ops, over several blocks (rows of 40 valid
    /// positions, 6 to a block), with padded and empty histories and moments shared by rows.
    #[test]
    fn the_kernel_matches_the_candle_ops_and_their_gradients() -> Result<()> {
        let at: Vec<u32> = (0..20).map(|r| (r * 7 % 5) as u32).collect();
        let k = Case::new(&[40, 13, 0, 40, 1], 40, &at, 6, [7, 5])?;
        let theirs = target_attention_ops(&k.att, &k.hist, &k.mask, &k.e, Some(&k.at))?;
        let probe = wave((20, 6), 2.0)?;
        let vars = k.vars();
        assert_eq!(vars.len(), 8);
        assert_same_op(
            &k.ours()?,
            &theirs,
            &probe,
            &vars.iter().collect::<Vec<_>>(),
            1e-5,
        )
    }

    /// Central finite differences of `Σ probe ⊙ r_t` in every weight and input, in f32.
    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let k = Case::new(&[3, 2], 3, &[0, 1, 1], 4, [5, 3])?;
        let probe = wave((3, 4), 0.9)?;
        let loss = || -> Result<f32> { Ok((k.ours()? * &probe)?.sum_all()?.to_scalar::<f32>()?) };
        let grads = (k.ours()? * &probe)?.sum_all()?.backward()?;
        let eps = 1e-2f32;
        for var in k.vars() {
            let base: Vec<f32> = var.flatten_all()?.to_vec1()?;
            let analytic: Vec<f32> = grads
                .get(&var)
                .expect("a gradient")
                .flatten_all()?
                .to_vec1()?;
            let set = |v: Vec<f32>| var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu)?);
            for i in 0..base.len() {
                let bumped = |delta: f32| -> Result<f32> {
                    let mut v = base.clone();
                    v[i] += delta;
                    set(v)?;
                    loss()
                };
                let numeric = (bumped(eps)? - bumped(-eps)?) / (2.0 * eps);
                set(base.clone())?;
                assert!(
                    (numeric - analytic[i]).abs() < 2e-3 * (1.0 + analytic[i].abs()),
                    "[{i}]: numeric {numeric} vs analytic {}",
                    analytic[i]
                );
            }
        }
        Ok(())
    }

    /// A training step keeps every block's activations, and the backward pass that uses them
    /// gives the gradients of recomputing them, bit for bit (then lets them go).
    #[test]
    fn kept_activations_give_the_recomputed_gradients_bit_for_bit() {
        let dims = Dims {
            m: 5,
            l: 40,
            d: 6,
            b: 20,
            h1: 7,
            h2: 5,
        };
        let mask: Vec<f32> = ([40, 13, 0, 40, 1].into_iter())
            .flat_map(|n| (0..40).map(move |j| f32::from(u8::from(j < n))))
            .collect();
        let moments: Vec<usize> = (0..20).map(|r| r * 7 % 5).collect();
        let wave = |n: usize, phase: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32) * 0.731 + phase).sin()).collect()
        };
        let (hist, e) = (wave(5 * 40 * 6, 0.3), wave(20 * 6, 1.1));
        let (packed, grad) = (wave(dims.weights(), 0.5), wave(20 * 6, 2.0));
        let recomputing = Attend::new(dims, &mask, moments.clone());
        let mut keeping = Attend::new(dims, &mask, moments);
        keeping.kept = Some(Mutex::new(Vec::new()));
        let kept = |op: &Attend| op.kept.as_ref().map(|k| k.lock().expect("kept").len());
        assert_eq!(
            keeping.forward(&hist, &e, &packed),
            recomputing.forward(&hist, &e, &packed)
        );
        assert!(keeping.blocks.len() > 1, "the rows span blocks");
        assert_eq!(kept(&keeping), Some(keeping.blocks.len()));
        assert_eq!(kept(&recomputing), None);
        assert_eq!(
            keeping.backward(&hist, &e, &packed, &grad),
            recomputing.backward(&hist, &e, &packed, &grad)
        );
        assert_eq!(kept(&keeping), Some(0), "the backward pass took them");
    }

    /// Compiled for the CPU's widest vectors ([`vectorized`], as the op runs) the kernel gives
    /// the baseline build's values and gradients bit for bit.
    #[test]
    fn the_vectorised_kernel_is_bit_for_bit_the_baseline() {
        let dims = Dims {
            m: 3,
            l: 23,
            d: 19,
            b: 9,
            h1: 37,
            h2: 21,
        };
        let mask: Vec<f32> = ([23, 9, 1].into_iter())
            .flat_map(|n| (0..23).map(move |j| f32::from(u8::from(j < n))))
            .collect();
        let wave = |n: usize, phase: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32) * 0.613 + phase).sin()).collect()
        };
        let (hist, e) = (wave(3 * 23 * 19, 0.2), wave(9 * 19, 0.9));
        let (packed, grad) = (wave(dims.weights(), 0.4), wave(9 * 19, 1.7));
        let op = Attend::new(dims, &mask, (0..9).map(|r| r % 3).collect());
        let plain = op.forward(&hist, &e, &packed);
        let wide = vectorized(
            #[inline(always)]
            || op.forward(&hist, &e, &packed),
        );
        assert_eq!(bits(plain), bits(wide));
        let (a, b, c) = op.backward(&hist, &e, &packed, &grad);
        let (x, y, z) = vectorized(
            #[inline(always)]
            || op.backward(&hist, &e, &packed, &grad),
        );
        assert_eq!((bits(a), bits(b), bits(c)), (bits(x), bits(y), bits(z)));
    }

    /// Through candle: a training step's `r_t` and gradients are those of inference.
    #[test]
    fn a_training_step_changes_no_value_or_gradient() -> Result<()> {
        let at: Vec<u32> = (0..20).map(|r| (r * 7 % 5) as u32).collect();
        let k = Case::new(&[40, 13, 0, 40, 1], 40, &at, 6, [7, 5])?;
        let probe = wave((20, 6), 2.0)?;
        let run = || -> Result<Vec<Vec<f32>>> {
            let out = k.ours()?;
            let grads = (&out * &probe)?.sum_all()?.backward()?;
            let mut all = vec![out.flatten_all()?.to_vec1()?];
            for var in k.vars() {
                let g = grads.get(&var).expect("a gradient");
                all.push(g.flatten_all()?.to_vec1()?);
            }
            Ok(all)
        };
        assert_eq!(training_step(run)?, run()?);
        Ok(())
    }

    #[test]
    fn mismatched_operands_are_errors() -> Result<()> {
        let k = Case::new(&[3, 2], 3, &[0, 1, 1], 4, [5, 3])?;
        let wrong_e = Tensor::zeros((3, 5), DType::F32, &Device::Cpu)?;
        assert!(attend(&k.att, &k.hist, &k.mask, &wrong_e, Some(&k.at)).is_err());
        let beyond = Tensor::new(&[0u32, 1, 2], &Device::Cpu)?;
        assert!(attend(&k.att, &k.hist, &k.mask, &k.e, Some(&beyond)).is_err());
        let half = (&k.mask * 0.5)?;
        assert!(attend(&k.att, &k.hist, &half, &k.e, Some(&k.at)).is_err());
        Ok(())
    }
}
