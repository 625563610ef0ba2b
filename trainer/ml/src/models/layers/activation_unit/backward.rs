//! The backward pass of [`Attend`]: one sweep per block, recomputing (or taking the kept)
//! activations of the forward pass.

use super::{dot_by, Attend, Dims, Offsets, Weights};
use crate::models::cpu_ops::gemm;

impl Attend {
    /// The gradients of `hist` (M, L, d), `e` (B, d) and the packed weights from the gradient
    /// `d_out` (B, d) of `r_t`.
    #[inline(always)]
    pub(super) fn backward(
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
