//! CPU kernels with a cheap backward pass for the ops that dominated training time in
//! candle's generic implementations (profiled with `perf` on `slowfast bench trainer`).
//!
//! - `x (A, L, K) + y (A, K)` and `x ⊙ y` broadcast over `L`: the broadcasts of every bias
//!   (`A = 1`, `L` = rows) and of DIN's candidate terms (eq. 1: one candidate per row against
//!   its `L` history positions). candle differentiates a broadcast by summing the gradient
//!   over the broadcast axis, and its CPU sum over a leading or middle axis costs two integer
//!   divisions per element: a fifth of all training time went there. Summing rows of a
//!   contiguous (A, L, K) block is a plain vector add instead.
//! - ReLU, whose candle backward builds a zeros tensor, a comparison, a cast and a product
//!   (an eighth of the time on the attention MLP's (B·L, 64) activations); here it is one
//!   pass.
//!
//! - [`gemm`], the single-threaded matrix product of the fused kernels
//!   ([`super::layers::gru_scan`], [`super::layers::activation_unit`]), and [`vectorized`], which runs their
//!   own loops with the widest vector instructions the CPU has.
//!
//! Off the CPU (or in another dtype) each falls back to candle's own op.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Shape, Tensor};

use crate::error::Result;

/// Runs `f` compiled for the widest vector instructions the CPU has, chosen at run time
/// (pulp's dispatch; on x86-64 AVX-512 where the CPU has it, else AVX2 with FMA), so that the
/// loops the compiler vectorises inside it use sixteen or eight lanes instead of the four of
/// the baseline x86-64 target. `f` and what it calls must be `#[inline(always)]`: only code
/// inlined into the dispatched copy gets its instructions. The results are bit for bit those
/// of the baseline build: Rust never contracts `a * b + c` into a fused multiply-add and never
/// reorders a float sum, so the lane count changes how many elements go at once, not a value.
#[inline(always)]
pub fn vectorized<R>(f: impl FnOnce() -> R) -> R {
    pulp::Arch::new().dispatch(f)
}

/// `x (A, L, K) + y (A, K)` broadcast over `L`.
pub fn add_rows(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    apply(x, y, Kind::Add)
}

/// `x (A, L, K) ⊙ y (A, K)` broadcast over `L`.
pub fn mul_rows(x: &Tensor, y: &Tensor) -> Result<Tensor> {
    apply(x, y, Kind::Mul)
}

/// `x (…, K) + b (K)`: a bias on the last axis of any shape.
pub fn add_bias(x: &Tensor, bias: &Tensor) -> Result<Tensor> {
    let k = bias.dim(0)?;
    let shape = x.shape().clone();
    let rows = x.elem_count() / k.max(1);
    Ok(add_rows(&x.reshape((1, rows, k))?, &bias.reshape((1, k))?)?.reshape(shape)?)
}

fn apply(x: &Tensor, y: &Tensor, kind: Kind) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        // Other devices reduce well on their own: candle's broadcast ops.
        let y = y.unsqueeze(1)?;
        return Ok(match kind {
            Kind::Add => x.broadcast_add(&y)?,
            Kind::Mul => x.broadcast_mul(&y)?,
        });
    }
    let (a, l, k) = x.dims3()?;
    if y.dims2()? != (a, k) {
        return Err(candle_core::Error::Msg(format!(
            "row broadcast: {:?} does not fit {:?}",
            y.dims(),
            x.dims()
        ))
        .into());
    }
    Ok(x.contiguous()?.apply_op2_arc(
        &y.contiguous()?,
        std::sync::Arc::new(Box::new(RowBroadcast { kind, a, l, k })),
    )?)
}

#[derive(Clone, Copy, Debug)]
enum Kind {
    Add,
    Mul,
}

struct RowBroadcast {
    kind: Kind,
    a: usize,
    l: usize,
    k: usize,
}

/// The contiguous f32 values of a CPU storage under `layout` (operand `what` of op `op`).
pub(super) fn values<'a>(
    s: &'a CpuStorage,
    layout: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    match (s, layout.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((start, end))) => Ok(&v[start..end]),
        _ => Err(candle_core::Error::Msg(format!(
            "{op}: {what} must be contiguous f32"
        ))),
    }
}

/// The f32 values of a custom op's operands, each `(storage, layout, name, len)` read in place
/// with [`values`] and checked against the number of values the op was built for.
pub(super) fn operands<'a, const N: usize>(
    op: &str,
    operands: [(&'a CpuStorage, &Layout, &str, usize); N],
) -> candle_core::Result<[&'a [f32]; N]> {
    let mut out = [&[] as &[f32]; N];
    for (slot, (s, layout, what, len)) in out.iter_mut().zip(operands) {
        let v = values(s, layout, op, what)?;
        if v.len() != len {
            return Err(candle_core::Error::Msg(format!(
                "{op}: {what} has {} values, expected {len}",
                v.len()
            )));
        }
        *slot = v;
    }
    Ok(out)
}

/// `dst (m×n) = [dst +] lhs (m×k) · rhs (k×n)` on row-major slices with explicit strides
/// (`(row, column)` strides of each operand), single-threaded: callers parallelise above.
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    (m, n, k): (usize, usize, usize),
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| {
        (rows.saturating_sub(1)) * rs + (cols.saturating_sub(1)) * cs
    };
    assert!(
        m == 0
            || n == 0
            || k == 0
            || (last(dst_rs, 1, m, n) < dst.len()
                && last(lhs_rs, lhs_cs, m, k) < lhs.len()
                && last(rhs_rs, rhs_cs, k, n) < rhs.len()),
        "gemm operands out of bounds"
    );
    // SAFETY: the assertion above keeps every index the product touches inside the slices,
    // and `dst` is borrowed mutably, so it aliases neither operand.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The gradients of a fused three-operand kernel: `backward` maps the flat values of the
/// operands and of the output's gradient `grad` to the flat gradients of the operands, which
/// come back shaped like them.
pub(super) fn backward3(
    operands: [&Tensor; 3],
    grad: &Tensor,
    backward: impl FnOnce([&[f32]; 3], &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>),
) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
    let flat = |x: &Tensor| x.flatten_all()?.to_vec1::<f32>();
    let [a, b, c] = operands;
    let (da, db, dc) = backward([&flat(a)?, &flat(b)?, &flat(c)?], &flat(grad)?);
    let shaped = |d: Vec<f32>, like: &Tensor| Tensor::from_vec(d, like.shape(), like.device());
    Ok((
        Some(shaped(da, a)?),
        Some(shaped(db, b)?),
        Some(shaped(dc, c)?),
    ))
}

impl CustomOp2 for RowBroadcast {
    fn name(&self) -> &'static str {
        match self.kind {
            Kind::Add => "add-rows",
            Kind::Mul => "mul-rows",
        }
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let (a, l, k) = (self.a, self.l, self.k);
        let [x, y] = operands(
            self.name(),
            [(s1, l1, "x", a * l * k), (s2, l2, "y", a * k)],
        )?;
        let mut out = Vec::with_capacity(x.len());
        for (block, yr) in x.chunks_exact(l * k).zip(y.chunks_exact(k)) {
            for xr in block.chunks_exact(k) {
                match self.kind {
                    Kind::Add => out.extend(xr.iter().zip(yr).map(|(p, q)| p + q)),
                    Kind::Mul => out.extend(xr.iter().zip(yr).map(|(p, q)| p * q)),
                }
            }
        }
        Ok((CpuStorage::F32(out), Shape::from((a, l, k))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        let (l, k) = (self.l, self.k);
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        // dy[a] = Σ_l g[a, l] (add) or Σ_l g[a, l] ⊙ x[a, l] (mul).
        let mut dy = vec![0f32; self.a * k];
        let dx = match self.kind {
            Kind::Add => {
                for (block, d) in g.chunks_exact(l * k).zip(dy.chunks_exact_mut(k)) {
                    for gr in block.chunks_exact(k) {
                        d.iter_mut().zip(gr).for_each(|(d, g)| *d += g);
                    }
                }
                grad.clone()
            }
            Kind::Mul => {
                let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                let blocks = g.chunks_exact(l * k).zip(xs.chunks_exact(l * k));
                for ((gb, xb), d) in blocks.zip(dy.chunks_exact_mut(k)) {
                    for (gr, xr) in gb.chunks_exact(k).zip(xb.chunks_exact(k)) {
                        d.iter_mut()
                            .zip(gr.iter().zip(xr))
                            .for_each(|(d, (g, x))| *d += g * x);
                    }
                }
                mul_rows(grad, y).map_err(|e| candle_core::Error::Msg(e.to_string()))?
            }
        };
        Ok((Some(dx), Some(Tensor::from_vec(dy, y.shape(), y.device())?)))
    }
}

/// `max(x, 0)`, with the gradient passed where `x ≥ 0` (candle's convention).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if !x.device().is_cpu() || x.dtype() != candle_core::DType::F32 {
        return Ok(x.relu()?);
    }
    Ok(x.contiguous()?
        .apply_op1_arc(std::sync::Arc::new(Box::new(Relu)))?)
}

struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "relu-fused"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let x = values(s, l, self.name(), "x")?;
        Ok((
            CpuStorage::F32(x.iter().map(|v| v.max(0.0)).collect()),
            l.shape().clone(),
        ))
    }

    fn bwd(&self, x: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let g = grad.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let d: Vec<f32> = xs
            .iter()
            .zip(&g)
            .map(|(x, g)| if *x >= 0.0 { *g } else { 0.0 })
            .collect();
        Ok(Some(Tensor::from_vec(d, x.shape(), x.device())?))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};

    use super::*;
    use crate::models::testing::{assert_same_op, max_abs_diff};

    /// Both ops and their gradients against candle's own broadcasts.
    #[test]
    fn row_broadcasts_match_candles_broadcasts_and_their_gradients() -> Result<()> {
        let x = Var::randn(0f32, 1.0, (3, 4, 5), &Device::Cpu)?;
        let y = Var::randn(0f32, 1.0, (3, 5), &Device::Cpu)?;
        let probe = Tensor::randn(0f32, 1.0, (3, 4, 5), &Device::Cpu)?;
        let theirs = x.broadcast_add(&y.unsqueeze(1)?)?;
        assert_same_op(&add_rows(&x, &y)?, &theirs, &probe, &[&x, &y], 1e-5)?;
        let theirs = x.broadcast_mul(&y.unsqueeze(1)?)?;
        assert_same_op(&mul_rows(&x, &y)?, &theirs, &probe, &[&x, &y], 1e-5)
    }

    #[test]
    fn relu_matches_candles_relu_and_its_gradient() -> Result<()> {
        let x = Var::randn(0f32, 1.0, (4, 6), &Device::Cpu)?;
        let probe = Tensor::randn(0f32, 1.0, (4, 6), &Device::Cpu)?;
        assert_same_op(&relu(&x)?, &x.relu()?, &probe, &[&x], 0.0)
    }

    #[test]
    fn a_bias_is_added_to_the_last_axis_of_any_shape() -> Result<()> {
        let x = Tensor::randn(0f32, 1.0, (2, 3, 4), &Device::Cpu)?;
        let b = Tensor::new(&[1f32, -2.0, 3.0, 0.5], &Device::Cpu)?;
        assert!(max_abs_diff(&add_bias(&x, &b)?, &x.broadcast_add(&b)?)? < 1e-6);
        let wrong = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu)?;
        assert!(add_rows(&x, &wrong).is_err());
        Ok(())
    }
}
