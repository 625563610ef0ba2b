//! A fused CPU kernel for DIN's activation unit (eq. 1, Zhou et al., KDD 2018) after its first
//! linear layer: for every history position `j` of every row,
//!
//! `s_j = w₃ · relu(W₂ relu(p_j + c) + b₂) + b₃`,
//!
//! where `p_j` (B, L, H1) is the first layer's per-position term and `c` (B, H1) its
//! per-candidate term, bias included (see [`target_attention`](super::layers::target_attention)).
//!
//! Run as candle ops, the (B·L, H1) and (B·L, H2) activations went through eight ops forward
//! and more backward, each writing a tensor the size of the activations, and candle's backward
//! pass zero-fills an accumulator for every gradient before adding to it: `perf` on
//! `slowfast bench trainer` put memset, memmove and element-wise maps at a third of the slow
//! component's training time. Here the rows are processed in blocks that stay in cache: the
//! forward pass keeps nothing, and the backward pass recomputes each block's activations (one
//! more product) rather than storing them. ReLU passes its gradient where its input is `≥ 0`,
//! as candle's does.
//!
//! Off the CPU, in another dtype or for layers without biases it runs the same equations as
//! candle ops.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};
use candle_nn::Linear;

use super::cpu_ops::{add_rows, gemm, relu, values};
use super::layers::affine;
use crate::error::Result;

/// Rows (history positions) per block: the block's activations, `BLOCK · (2 H1 + H2)` values,
/// stay in L2 at the default sizes (H1 = 64, H2 = 32: 160 kB).
const BLOCK: usize = 256;

/// The activation unit's scores `s` (B, L) from the first layer's per-position term `per_pos`
/// (B, L, H1) and per-candidate term `per_cand` (B, H1), through `second` (H1 → H2) and
/// `third` (H2 → 1), each followed by the ReLU that precedes it in the MLP.
/// Differentiable in every operand.
pub fn scores(
    per_pos: &Tensor,
    per_cand: &Tensor,
    second: &Linear,
    third: &Linear,
) -> Result<Tensor> {
    let (b, l, h1) = per_pos.dims3()?;
    let (h2, h1_w) = second.weight().dims2()?;
    let third_shape = third.weight().dims2()?;
    if per_cand.dims2()? != (b, h1) || h1_w != h1 || third_shape != (1, h2) {
        return Err(candle_core::Error::Msg(format!(
            "activation unit: per-position {:?}, per-candidate {:?}, layers {:?} and {:?} do \
             not fit",
            per_pos.dims(),
            per_cand.dims(),
            second.weight().dims(),
            third.weight().dims()
        ))
        .into());
    }
    let (Some(b2), Some(b3), true, DType::F32) = (
        second.bias(),
        third.bias(),
        per_pos.device().is_cpu(),
        per_pos.dtype(),
    ) else {
        let z = relu(&add_rows(per_pos, per_cand)?)?;
        let z = relu(&affine(second, &z.reshape((b * l, h1))?)?)?;
        return Ok(affine(third, &z)?.reshape((b, l))?);
    };
    // The four parameters travel as one tensor (CustomOp3 takes three operands):
    // `[W₂ | b₂]` row by row (H2 × (H1 + 1)), then `w₃` (H2), then `b₃`.
    let weights = Tensor::cat(
        &[
            Tensor::cat(&[second.weight(), &b2.unsqueeze(1)?], 1)?.flatten_all()?,
            third.weight().flatten_all()?,
            b3.flatten_all()?,
        ],
        0,
    )?;
    let op = ActivationUnit { b, l, h1, h2 };
    Ok(per_pos.contiguous()?.apply_op3_arc(
        &per_cand.contiguous()?,
        &weights,
        std::sync::Arc::new(Box::new(op)),
    )?)
}

struct ActivationUnit {
    b: usize,
    l: usize,
    h1: usize,
    h2: usize,
}

/// The packed weights of [`scores`], read in place.
struct Weights<'a> {
    /// `[W₂ | b₂]`, H2 rows of H1 + 1.
    w2b2: &'a [f32],
    b2: Vec<f32>,
    w3: &'a [f32],
    b3: f32,
}

/// One block's activations: `z = p + c` (rows × H1), `a = relu(z)`, `u = a W₂ᵀ + b₂`
/// (rows × H2).
struct Block {
    z: Vec<f32>,
    a: Vec<f32>,
    u: Vec<f32>,
}

impl ActivationUnit {
    fn weights<'a>(&self, packed: &'a [f32]) -> Weights<'a> {
        let (h1, h2) = (self.h1, self.h2);
        let (w2b2, rest) = packed.split_at(h2 * (h1 + 1));
        Weights {
            w2b2,
            b2: (0..h2).map(|j| w2b2[j * (h1 + 1) + h1]).collect(),
            w3: &rest[..h2],
            b3: rest[h2],
        }
    }

    fn block(&self) -> Block {
        Block {
            z: vec![0f32; BLOCK * self.h1],
            a: vec![0f32; BLOCK * self.h1],
            u: vec![0f32; BLOCK * self.h2],
        }
    }

    /// Fills `blk` for the `rows` positions from flat position `start` (row `b`, position `j`
    /// is flat position `b L + j`).
    fn activate(
        &self,
        p: &[f32],
        c: &[f32],
        w: &Weights,
        start: usize,
        rows: usize,
        blk: &mut Block,
    ) {
        let (h1, h2) = (self.h1, self.h2);
        for r in 0..rows {
            let n = start + r;
            let (pn, cn) = (&p[n * h1..][..h1], &c[(n / self.l) * h1..][..h1]);
            let (z, a) = (&mut blk.z[r * h1..][..h1], &mut blk.a[r * h1..][..h1]);
            for i in 0..h1 {
                z[i] = pn[i] + cn[i];
                a[i] = z[i].max(0.0);
            }
            blk.u[r * h2..][..h2].copy_from_slice(&w.b2);
        }
        // u += a · W₂ᵀ: W₂[j, i] sits at w2b2[j (H1 + 1) + i].
        let (u, a) = (&mut blk.u[..rows * h2], &blk.a[..rows * h1]);
        gemm((rows, h2, h1), u, h2, true, a, (h1, 1), w.w2b2, (1, h1 + 1));
    }

    fn forward(&self, p: &[f32], c: &[f32], packed: &[f32]) -> Vec<f32> {
        let (w, mut blk) = (self.weights(packed), self.block());
        let mut out = vec![0f32; self.b * self.l];
        for (k, out) in out.chunks_mut(BLOCK).enumerate() {
            self.activate(p, c, &w, k * BLOCK, out.len(), &mut blk);
            for (s, u) in out.iter_mut().zip(blk.u.chunks_exact(self.h2)) {
                *s = w.b3 + u.iter().zip(w.w3).map(|(u, w)| u.max(0.0) * w).sum::<f32>();
            }
        }
        out
    }

    /// The gradients of `p` (B, L, H1), `c` (B, H1) and the packed weights from the
    /// gradient `d_out` (B, L) of the scores.
    fn backward(
        &self,
        p: &[f32],
        c: &[f32],
        packed: &[f32],
        d_out: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (h1, h2, l) = (self.h1, self.h2, self.l);
        let (w, mut blk) = (self.weights(packed), self.block());
        let mut dp = vec![0f32; p.len()];
        let mut dc = vec![0f32; c.len()];
        let mut dw = vec![0f32; packed.len()];
        let (mut du, mut da) = (vec![0f32; BLOCK * h2], vec![0f32; BLOCK * h1]);
        let (mut dw3, mut db2, mut db3) = (vec![0f32; h2], vec![0f32; h2], 0f32);
        for (k, d_out) in d_out.chunks(BLOCK).enumerate() {
            let (start, rows) = (k * BLOCK, d_out.len());
            self.activate(p, c, &w, start, rows, &mut blk);
            // Through `s = w₃ · relu(u) + b₃`.
            let units = du.chunks_exact_mut(h2).zip(blk.u.chunks_exact(h2));
            for ((du, u), &g) in units.zip(d_out) {
                let grads = dw3.iter_mut().zip(db2.iter_mut());
                for (((du, &u), &w3), (dw3, db2)) in du.iter_mut().zip(u).zip(w.w3).zip(grads) {
                    *dw3 += g * u.max(0.0);
                    *du = if u >= 0.0 { g * w3 } else { 0.0 };
                    *db2 += *du;
                }
                db3 += g;
            }
            let du = &du[..rows * h2];
            // dW₂ += duᵀ · a (H2×rows · rows×H1), into the first H1 columns of each row.
            let a = &blk.a[..rows * h1];
            gemm(
                (h2, h1, rows),
                &mut dw,
                h1 + 1,
                true,
                du,
                (1, h2),
                a,
                (h1, 1),
            );
            // da = du · W₂ (rows×H2 · H2×H1).
            let da = &mut da[..rows * h1];
            gemm(
                (rows, h1, h2),
                da,
                h1,
                false,
                du,
                (h2, 1),
                w.w2b2,
                (h1 + 1, 1),
            );
            // Through `a = relu(z)` and `z = p + c`.
            let positions = dp[start * h1..][..rows * h1].chunks_exact_mut(h1);
            for (r, ((dp, z), da)) in positions
                .zip(blk.z.chunks_exact(h1))
                .zip(da.chunks_exact(h1))
                .enumerate()
            {
                let dc = &mut dc[((start + r) / l) * h1..][..h1];
                for (((dp, &z), &da), dc) in dp.iter_mut().zip(z).zip(da).zip(dc) {
                    *dp = if z >= 0.0 { da } else { 0.0 };
                    *dc += *dp;
                }
            }
        }
        for j in 0..h2 {
            dw[j * (h1 + 1) + h1] = db2[j];
        }
        let w3_at = h2 * (h1 + 1);
        dw[w3_at..w3_at + h2].copy_from_slice(&dw3);
        dw[w3_at + h2] = db3;
        (dp, dc, dw)
    }
}

impl CustomOp3 for ActivationUnit {
    fn name(&self) -> &'static str {
        "din-activation-unit"
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
        let (p, c, w) = (
            values(s1, l1, self.name(), "per-position term")?,
            values(s2, l2, self.name(), "per-candidate term")?,
            values(s3, l3, self.name(), "weights")?,
        );
        let (b, l, h1, h2) = (self.b, self.l, self.h1, self.h2);
        if p.len() != b * l * h1 || c.len() != b * h1 || w.len() != h2 * (h1 + 2) + 1 {
            return Err(candle_core::Error::Msg(
                "activation unit: operand sizes do not match".into(),
            ));
        }
        Ok((CpuStorage::F32(self.forward(p, c, w)), Shape::from((b, l))))
    }

    fn bwd(
        &self,
        p: &Tensor,
        c: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let flat = |x: &Tensor| x.flatten_all()?.to_vec1::<f32>();
        let (dp, dc, dw) = self.backward(&flat(p)?, &flat(c)?, &flat(w)?, &flat(grad_res)?);
        let device = p.device();
        Ok((
            Some(Tensor::from_vec(dp, p.shape(), device)?),
            Some(Tensor::from_vec(dc, c.shape(), device)?),
            Some(Tensor::from_vec(dw, w.shape(), device)?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Module, Var};
    use candle_nn::{VarBuilder, VarMap};

    use super::*;
    use crate::models::testing::assert_same_op;

    /// Deterministic values in (−1, 1) that rarely sit on a ReLU's kink.
    fn wave(shape: impl Into<Shape>, phase: f32) -> Result<Tensor> {
        let shape: Shape = shape.into();
        let v: Vec<f32> = (0..shape.elem_count())
            .map(|i| ((i as f32) * 0.731 + phase).sin())
            .collect();
        Ok(Tensor::from_vec(v, shape, &Device::Cpu)?)
    }

    struct Case {
        map: VarMap,
        p: Var,
        c: Var,
        second: Linear,
        third: Linear,
    }

    fn case(b: usize, l: usize, h1: usize, h2: usize) -> Result<Case> {
        let map = VarMap::new();
        let vb = VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu);
        let (second, third) = (
            candle_nn::linear(h1, h2, vb.pp("l1"))?,
            candle_nn::linear(h2, 1, vb.pp("l2"))?,
        );
        // Deterministic weights too, so that no value sits on a ReLU's kink by chance.
        for (name, var) in map.data().lock().expect("var map").iter() {
            let phase = name.bytes().map(f32::from).sum::<f32>();
            var.set(&wave(var.shape().clone(), phase)?)?;
        }
        Ok(Case {
            p: Var::from_tensor(&wave((b, l, h1), 0.3)?)?,
            c: Var::from_tensor(&(wave((b, h1), 1.1)? * 0.5)?)?,
            map,
            second,
            third,
        })
    }

    /// The candle ops the kernel replaces.
    fn reference(k: &Case) -> Result<Tensor> {
        let (b, l, h1) = k.p.dims3()?;
        let z = k.p.broadcast_add(&k.c.unsqueeze(1)?)?.relu()?;
        let z = k.second.forward(&z.reshape((b * l, h1))?)?.relu()?;
        Ok(k.third.forward(&z)?.reshape((b, l))?)
    }

    /// Values and every gradient against candle's ops, over several blocks with a partial
    /// last one (3 · 100 positions = 256 + 44).
    #[test]
    fn the_kernel_matches_candles_ops_and_their_gradients() -> Result<()> {
        let k = case(3, 100, 7, 5)?;
        let probe = wave((3, 100), 2.0)?;
        let ours = scores(&k.p, &k.c, &k.second, &k.third)?;
        let vars = k.map.all_vars();
        let mut all: Vec<&Var> = vars.iter().collect();
        all.extend([&k.p, &k.c]);
        assert_eq!(all.len(), 6);
        assert_same_op(&ours, &reference(&k)?, &probe, &all, 1e-5)
    }

    /// Central finite differences of `Σ probe ⊙ s` in every weight and input, in f32.
    #[test]
    fn gradients_match_finite_differences() -> Result<()> {
        let k = case(2, 3, 5, 4)?;
        let probe = wave((2, 3), 0.9)?;
        let loss = |k: &Case| -> Result<f32> {
            let s = scores(&k.p, &k.c, &k.second, &k.third)?;
            Ok((s * &probe)?.sum_all()?.to_scalar::<f32>()?)
        };
        let grads = (scores(&k.p, &k.c, &k.second, &k.third)? * &probe)?
            .sum_all()?
            .backward()?;
        let vars = k.map.all_vars();
        let mut all: Vec<&Var> = vars.iter().collect();
        all.extend([&k.p, &k.c]);
        let eps = 1e-2f32;
        for var in all {
            let base: Vec<f32> = var.flatten_all()?.to_vec1()?;
            let analytic: Vec<f32> = grads
                .get(var)
                .expect("a gradient")
                .flatten_all()?
                .to_vec1()?;
            for i in 0..base.len() {
                let mut bumped = |delta: f32| -> Result<f32> {
                    let mut v = base.clone();
                    v[i] += delta;
                    var.set(&Tensor::from_vec(v, var.shape(), &Device::Cpu)?)?;
                    loss(&k)
                };
                let numeric = (bumped(eps)? - bumped(-eps)?) / (2.0 * eps);
                var.set(&Tensor::from_vec(base.clone(), var.shape(), &Device::Cpu)?)?;
                assert!(
                    (numeric - analytic[i]).abs() < 2e-3 * (1.0 + analytic[i].abs()),
                    "[{i}]: numeric {numeric} vs analytic {}",
                    analytic[i]
                );
            }
        }
        Ok(())
    }

    #[test]
    fn mismatched_shapes_are_an_error() -> Result<()> {
        let k = case(2, 3, 5, 4)?;
        let wrong = Tensor::zeros((3, 5), DType::F32, &Device::Cpu)?;
        assert!(scores(&k.p, &wrong, &k.second, &k.third).is_err());
        Ok(())
    }
}
