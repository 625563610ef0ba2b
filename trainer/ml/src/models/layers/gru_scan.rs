//! A fused CPU kernel for the masked GRU recurrence of [`Gru::forward`](super::Gru::forward),
//! with its backward pass through time.
//!
//! Run step by step, one GRU window costs about 15 candle ops per step forward and twice as
//! many backward, each allocating its result: on the fast component's windows (eq. 3 and 7)
//! that overhead, not arithmetic, bounded training speed. Here the whole window is one op:
//! per step one matrix product `h·W_hhᵀ` (gemm) and the gates in one pass over the rows.
//! A forward pass that will be differentiated (a training shard: its operands track their
//! ops and it is at most [`TRACE_LIMIT`] values) keeps its states and gates for the backward
//! pass; any other (scoring) keeps nothing, and were it ever differentiated the backward pass
//! would recompute them. The backward pass runs back through time with two products per
//! step (`dgh·W_hh` and `dghᵀ·h`).
//!
//! The gate layout is [`Gru`](super::Gru)'s (PyTorch's, ONNX
//! `linear_before_reset = 1`): with `gi = W_i x + b_i` already projected and
//! `gh = W_h h + b_h`, `r = σ(gi_r + gh_r)`, `z = σ(gi_z + gh_z)`, `n = tanh(gi_n + r ⊙ gh_n)`,
//! `h' = n + z ⊙ (h − n)`, and a step whose mask is 0 leaves the state unchanged:
//! `h ← h + m (h' − h)`.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Shape, Tensor};

use crate::error::Result;
use crate::models::cpu_ops::{backward3, gemm, operands, vectorized};

/// Runs the recurrence over projected inputs `gi` (B, T, 3H) with `mask` (B, T) from `h0`
/// (B, H) with the recurrent weights `w_hh` (3H, H) and `b_hh` (3H); returns the last state
/// (B, H), or with `all` the state after every step (B, T, H). Differentiable in `gi`, `h0`,
/// `w_hh` and `b_hh` (not in `mask`). CPU, f32 only.
pub fn scan(
    gi: &Tensor,
    mask: &Tensor,
    h0: &Tensor,
    (w_hh, b_hh): (&Tensor, &Tensor),
    all: bool,
) -> Result<Tensor> {
    let (batch, steps, three_h) = gi.dims3()?;
    let hidden = three_h / 3;
    let op = GruScan {
        mask: mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?,
        batch,
        steps,
        hidden,
        all,
        keep_trace: false,
        trace: std::sync::Mutex::new(None),
    };
    if op.mask.len() != batch * steps || h0.dims2()? != (batch, hidden) {
        return Err(candle_core::Error::Msg(format!(
            "GRU scan: mask {:?} and h0 {:?} do not fit inputs {:?}",
            mask.dims(),
            h0.dims(),
            gi.dims()
        ))
        .into());
    }
    // W_hh and b_hh travel as one (3H, H + 1) tensor: CustomOp3 takes three arguments.
    let wb = Tensor::cat(&[w_hh, &b_hh.unsqueeze(1)?], 1)?;
    let op = GruScan {
        keep_trace: (gi.track_op() || h0.track_op() || wb.track_op())
            && steps * batch * 5 * hidden <= TRACE_LIMIT,
        ..op
    };
    Ok(gi
        .contiguous()?
        .apply_op3_arc(&h0.contiguous()?, &wb, std::sync::Arc::new(Box::new(op)))?)
}

struct GruScan {
    mask: Vec<f32>,
    batch: usize,
    steps: usize,
    hidden: usize,
    /// Output every step's state (B, T, H) rather than the last (B, H).
    all: bool,
    /// Keep the forward pass's [`Trace`] for the backward pass.
    keep_trace: bool,
    trace: std::sync::Mutex<Option<Trace>>,
}

/// The most values (`T · B · 5H`) a kept [`Trace`] may hold: 16 MB, far above a training
/// shard's (20 · 128 · 160 on the fast component's windows), below a scoring batch's.
const TRACE_LIMIT: usize = 1 << 22;

/// What the backward pass needs from the forward: every state and every step's gates.
struct Trace {
    /// (T + 1, B, H): `states[t]` is the state before step `t`.
    states: Vec<f32>,
    /// (T, B, 3H): `r, z, n` of each step (H values of each gate in turn).
    gates: Vec<f32>,
    /// (T, B, H): `gh_n = W_hn h + b_hn`, which the reset gate multiplies.
    gh_n: Vec<f32>,
}

/// `eˣ` in pure f32 arithmetic (Cephes' `expf`: `x = n ln 2 + r`, a degree-6 polynomial in
/// `r`, `2ⁿ` built in the exponent bits; relative error ≈ 2e-7 on the clamped range), so the
/// gate loops below vectorise: libm's `expf` and `tanhf` are scalar calls, and they were half
/// of the fast component's training time.
#[inline(always)]
fn exp(x: f32) -> f32 {
    // 1.5 · 2²³: adding and subtracting it rounds to the nearest integer without a call.
    const ROUND: f32 = 12_582_912.0;
    let x = x.clamp(-87.0, 88.0);
    let rounded = x * std::f32::consts::LOG2_E + ROUND;
    let n = rounded - ROUND;
    // `n` as an integer from the low bits (a float-to-int cast would not vectorise).
    let n_bits = rounded.to_bits().wrapping_sub(ROUND.to_bits());
    // ln 2 in two parts, so that `x − n ln 2` is exact for the large `n`.
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let p = 1.987_569_2e-4_f32;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 0.166_666_65;
    let p = p * r + 0.5;
    let y = p * r * r + r + 1.0;
    y * f32::from_bits(n_bits.wrapping_add(127) << 23)
}

#[inline(always)]
fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// `tanh x = 1 − 2 / (e²ˣ + 1)`: absolute error ≈ 1e-7, which is what the states need.
#[inline(always)]
fn tanh(x: f32) -> f32 {
    1.0 - 2.0 / (exp(2.0 * x) + 1.0)
}

/// One step for one row (eq. of the module doc): from the projected input `x` and the
/// recurrent projection `g` (3H each, gates `r, z, n` in that order) moves the state `s` (H)
/// by its mask `m`, and writes the step's `r, z, n` into `gates` (3H).
#[inline(always)]
fn step_row(x: &[f32], g: &[f32], s: &mut [f32], m: f32, gates: &mut [f32]) {
    let h = s.len();
    let (x, g, gates) = (&x[..3 * h], &g[..3 * h], &mut gates[..3 * h]);
    let (xr, xz, xn) = (&x[..h], &x[h..2 * h], &x[2 * h..]);
    let (gr, gz, gn) = (&g[..h], &g[h..2 * h], &g[2 * h..]);
    let (rs, rest) = gates.split_at_mut(h);
    let (zs, ns) = rest.split_at_mut(h);
    for j in 0..h {
        let r = sigmoid(xr[j] + gr[j]);
        let z = sigmoid(xz[j] + gz[j]);
        let n = tanh(xn[j] + r * gn[j]);
        let next = n + z * (s[j] - n);
        s[j] += m * (next - s[j]);
        (rs[j], zs[j], ns[j]) = (r, z, n);
    }
}

/// One step back for one row: from the step's `gates` (`r, z, n`, H each) and `gh_n` (H),
/// the state before it `hp` (H) and its mask `m`, turns the gradient `dh` (H) of the state
/// after the step into that of the state before it, and writes the gradients of the step's
/// input projection `d_gi` and recurrent projection `d_gh` (3H each). Every operand is sliced
/// to its length first, so the loop runs without bounds checks and vectorises.
#[inline(always)]
fn back_row(
    (gates, gh_n): (&[f32], &[f32]),
    hp: &[f32],
    m: f32,
    dh: &mut [f32],
    d_gi: &mut [f32],
    d_gh: &mut [f32],
) {
    let h = dh.len();
    let (hp, gh_n) = (&hp[..h], &gh_n[..h]);
    let (rs, zs, ns) = (&gates[..h], &gates[h..2 * h], &gates[2 * h..3 * h]);
    let (gi_r, rest) = d_gi[..3 * h].split_at_mut(h);
    let (gi_z, gi_n) = rest.split_at_mut(h);
    let (gh_r, rest) = d_gh[..3 * h].split_at_mut(h);
    let (gh_z, gh_nn) = rest.split_at_mut(h);
    for j in 0..h {
        let (r, z, n) = (rs[j], zs[j], ns[j]);
        let d = dh[j];
        let d_next = m * d;
        let d_n = d_next * (1.0 - z);
        let d_z = d_next * (hp[j] - n);
        let da_n = d_n * (1.0 - n * n);
        let da_r = da_n * gh_n[j] * r * (1.0 - r);
        let da_z = d_z * z * (1.0 - z);
        gi_r[j] = da_r;
        gi_z[j] = da_z;
        gi_n[j] = da_n;
        gh_r[j] = da_r;
        gh_z[j] = da_z;
        gh_nn[j] = da_n * r;
        // The state's direct paths: the masked carry and z ⊙ h.
        dh[j] = (1.0 - m) * d + d_next * z;
    }
}

impl GruScan {
    /// The forward recurrence: the output (the last state, or every step's with
    /// [`GruScan::all`]); with `trace`, also what [`GruScan::backward`] needs. Inlined into
    /// its callers' [`vectorized`] copies.
    #[inline(always)]
    fn forward(&self, gi: &[f32], h0: &[f32], wb: &[f32], trace: bool) -> (Vec<f32>, Trace) {
        let (b, t, h) = (self.batch, self.steps, self.hidden);
        let mut state = h0.to_vec();
        let mut every = vec![0f32; if self.all { b * t * h } else { 0 }];
        let mut gh = vec![0f32; b * 3 * h];
        let mut gates = vec![0f32; 3 * h];
        let b_hh: Vec<f32> = (0..3 * h).map(|j| wb[j * (h + 1) + h]).collect();
        let mut tr = Trace {
            states: Vec::with_capacity(if trace { (t + 1) * b * h } else { 0 }),
            gates: Vec::with_capacity(if trace { t * b * 3 * h } else { 0 }),
            gh_n: Vec::with_capacity(if trace { t * b * h } else { 0 }),
        };
        for step in 0..t {
            if trace {
                tr.states.extend_from_slice(&state);
            }
            // gh = h · W_hhᵀ + b_hh; W_hh[j, i] sits at wb[j (H + 1) + i], b_hh[j] at wb[j (H + 1) + H].
            for row in gh.chunks_exact_mut(3 * h) {
                row.copy_from_slice(&b_hh);
            }
            gemm(
                (b, 3 * h, h),
                &mut gh,
                3 * h,
                true,
                &state,
                (h, 1),
                wb,
                (1, h + 1),
            );
            for row in 0..b {
                let m = self.mask[row * t + step];
                let x = &gi[(row * t + step) * 3 * h..][..3 * h];
                let g = &gh[row * 3 * h..][..3 * h];
                let s = &mut state[row * h..][..h];
                step_row(x, g, s, m, &mut gates);
                if trace {
                    tr.gates.extend_from_slice(&gates);
                    tr.gh_n.extend_from_slice(&g[2 * h..]);
                }
                if !every.is_empty() {
                    every[(row * t + step) * h..][..h].copy_from_slice(s);
                }
            }
        }
        if trace {
            tr.states.extend_from_slice(&state);
        }
        (if self.all { every } else { state }, tr)
    }

    /// Backward through time: the gradients of `gi` (B, T, 3H), `h0` (B, H) and `wb`
    /// (3H, H + 1) from the gradient `d_out` of the output: of the last state (B, H), or with
    /// [`GruScan::all`] of every step's state (B, T, H). Inlined into the caller's
    /// [`vectorized`] copy.
    #[inline(always)]
    fn backward(
        &self,
        gi: &[f32],
        h0: &[f32],
        wb: &[f32],
        d_out: &[f32],
    ) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (b, t, h) = (self.batch, self.steps, self.hidden);
        let kept = self.trace.lock().ok().and_then(|mut kept| kept.take());
        let tr = kept.unwrap_or_else(|| self.forward(gi, h0, wb, true).1);
        let mut dh = if self.all {
            vec![0f32; b * h]
        } else {
            d_out.to_vec()
        };
        let mut dgi = vec![0f32; b * t * 3 * h];
        let mut dwb = vec![0f32; 3 * h * (h + 1)];
        let mut dgh = vec![0f32; b * 3 * h];
        for step in (0..t).rev() {
            if self.all {
                // The state after this step is also read directly.
                for row in 0..b {
                    let d = &d_out[(row * t + step) * h..][..h];
                    for (acc, g) in dh[row * h..][..h].iter_mut().zip(d) {
                        *acc += g;
                    }
                }
            }
            let prev = &tr.states[step * b * h..][..b * h];
            for row in 0..b {
                let at = (step * b + row) * h;
                back_row(
                    (&tr.gates[at * 3..][..3 * h], &tr.gh_n[at..][..h]),
                    &prev[row * h..][..h],
                    self.mask[row * t + step],
                    &mut dh[row * h..][..h],
                    &mut dgi[(row * t + step) * 3 * h..][..3 * h],
                    &mut dgh[row * 3 * h..][..3 * h],
                );
            }
            // dh += dgh · W_hh (B×3H · 3H×H).
            gemm(
                (b, h, 3 * h),
                &mut dh,
                h,
                true,
                &dgh,
                (3 * h, 1),
                wb,
                (h + 1, 1),
            );
            // dW_hh += dghᵀ · h_prev (3H×B · B×H), into the first H columns of dwb.
            gemm(
                (3 * h, h, b),
                &mut dwb,
                h + 1,
                true,
                &dgh,
                (1, 3 * h),
                prev,
                (h, 1),
            );
            for row in dgh.chunks_exact(3 * h) {
                for (j, g) in row.iter().enumerate() {
                    dwb[j * (h + 1) + h] += g;
                }
            }
        }
        (dgi, dh, dwb)
    }
}

impl CustomOp3 for GruScan {
    fn name(&self) -> &'static str {
        "gru-scan"
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
        let (b, t, h) = (self.batch, self.steps, self.hidden);
        let [gi, h0, wb] = operands(
            self.name(),
            [
                (s1, l1, "gi", b * t * 3 * h),
                (s2, l2, "h0", b * h),
                (s3, l3, "W_hh", 3 * h * (h + 1)),
            ],
        )?;
        let (out, trace) = vectorized(
            #[inline(always)]
            || self.forward(gi, h0, wb, self.keep_trace),
        );
        if self.keep_trace {
            if let Ok(mut kept) = self.trace.lock() {
                *kept = Some(trace);
            }
        }
        let shape = if self.all {
            Shape::from((b, t, h))
        } else {
            Shape::from((b, h))
        };
        Ok((CpuStorage::F32(out), shape))
    }

    fn bwd(
        &self,
        gi: &Tensor,
        h0: &Tensor,
        wb: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        backward3([gi, h0, wb], grad_res, |[gi, h0, wb], g| {
            vectorized(
                #[inline(always)]
                || self.backward(gi, h0, wb, g),
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};
    use candle_nn::{VarBuilder, VarMap};

    use super::*;
    use crate::models::layers::{length_mask, Gru};
    use crate::models::testing::{assert_same_op, bits, max_abs_diff};

    /// A GRU (input 3, hidden `h`) with random weights, random inputs (B, T, 3) and states.
    fn setup(b: usize, t: usize, h: usize) -> Result<(VarMap, Gru, Var, Var)> {
        let map = VarMap::new();
        let gru = Gru::new(
            VarBuilder::from_varmap(&map, DType::F32, &Device::Cpu),
            3,
            h,
        )?;
        let xs = Var::randn(0f32, 1.0, (b, t, 3), &Device::Cpu)?;
        let h0 = Var::randn(0f32, 0.5, (b, h), &Device::Cpu)?;
        Ok((map, gru, xs, h0))
    }

    #[test]
    fn the_gate_activations_match_the_standard_library() {
        // Every 1/64 over the range the gates see, and the saturated tails.
        for k in -6400..=6400 {
            let x = k as f32 / 64.0;
            // exp clamps its argument to [−87, 88], where f32 stays normal.
            let e = f64::from(x.clamp(-87.0, 88.0)).exp();
            assert!(
                (f64::from(exp(x)) - e).abs() <= 4e-7 * e,
                "exp({x}) = {} vs {e}",
                exp(x)
            );
            let s = 1.0 / (1.0 + (-f64::from(x)).exp());
            assert!((f64::from(sigmoid(x)) - s).abs() <= 2e-7, "sigmoid({x})");
            assert!(
                (f64::from(tanh(x)) - f64::from(x).tanh()).abs() <= 3e-7,
                "tanh({x})"
            );
        }
        assert!(sigmoid(-200.0) < 1e-37 && sigmoid(200.0) == 1.0);
        assert_eq!((tanh(-200.0), tanh(200.0)), (-1.0, 1.0));
        assert!(exp(f32::NAN).is_nan() && tanh(f32::NAN).is_nan());
    }

    /// Compiled for the CPU's widest vectors ([`vectorized`], as the op runs) the scan gives
    /// the baseline build's states and gradients bit for bit.
    #[test]
    fn the_vectorised_scan_is_bit_for_bit_the_baseline() {
        let (b, t, h) = (5, 7, 19);
        let wave = |n: usize, phase: f32| -> Vec<f32> {
            (0..n).map(|i| ((i as f32) * 0.377 + phase).sin()).collect()
        };
        let (gi, h0) = (wave(b * t * 3 * h, 0.1), wave(b * h, 0.8));
        let (wb, d_out) = (wave(3 * h * (h + 1), 1.3), wave(b * t * h, 2.1));
        let op = GruScan {
            mask: (0..b * t)
                .map(|k| f32::from(u8::from(k % 6 != 5)))
                .collect(),
            batch: b,
            steps: t,
            hidden: h,
            all: true,
            keep_trace: false,
            trace: std::sync::Mutex::new(None),
        };
        let (plain, _) = op.forward(&gi, &h0, &wb, false);
        let (wide, _) = vectorized(
            #[inline(always)]
            || op.forward(&gi, &h0, &wb, false),
        );
        assert_eq!(bits(plain), bits(wide));
        let (a, b, c) = op.backward(&gi, &h0, &wb, &d_out);
        let (x, y, z) = vectorized(
            #[inline(always)]
            || op.backward(&gi, &h0, &wb, &d_out),
        );
        assert_eq!((bits(a), bits(b), bits(c)), (bits(x), bits(y), bits(z)));
    }

    #[test]
    fn a_backward_pass_without_a_kept_trace_recomputes_the_same_gradients() {
        let (b, t, h) = (3, 4, 2);
        let values = |n: usize, scale: f32| -> Vec<f32> {
            (0..n)
                .map(|k| ((k * 7919 % 23) as f32 / 11.0 - 1.0) * scale)
                .collect()
        };
        let (gi, h0, wb) = (
            values(b * t * 3 * h, 1.0),
            values(b * h, 0.5),
            values(3 * h * (h + 1), 0.4),
        );
        let d_out = values(b * t * h, 1.0);
        let op = |keep_trace| GruScan {
            mask: vec![1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
            batch: b,
            steps: t,
            hidden: h,
            all: true,
            keep_trace,
            trace: std::sync::Mutex::new(None),
        };
        let kept = op(true);
        let (out, trace) = kept.forward(&gi, &h0, &wb, true);
        assert_eq!(out, op(false).forward(&gi, &h0, &wb, false).0);
        *kept.trace.lock().expect("unpoisoned") = Some(trace);
        assert_eq!(
            kept.backward(&gi, &h0, &wb, &d_out),
            op(false).backward(&gi, &h0, &wb, &d_out)
        );
        assert!(
            kept.trace.lock().expect("unpoisoned").is_none(),
            "the trace is used once"
        );
    }

    #[test]
    fn the_fused_scan_matches_the_step_by_step_recurrence_and_its_gradients() -> Result<()> {
        let (b, t, h) = (5, 7, 4);
        let (map, gru, xs, h0) = setup(b, t, h)?;
        // Lengths 0 (h0 passes through), partial and full windows.
        let mask = length_mask(&[0, 1, 3, 7, 6], t, &Device::Cpu)?;
        let probe = Tensor::randn(0f32, 1.0, (b, h), &Device::Cpu)?;
        let fused = gru.forward(&xs, &mask, &h0)?;
        let stepped = gru.forward_steps(&xs, &mask, &h0)?;
        // A zero-length window passes h0 through exactly.
        assert_eq!(
            max_abs_diff(&fused.narrow(0, 0, 1)?, &h0.narrow(0, 0, 1)?)?,
            0.0
        );
        let vars = map.all_vars();
        assert_eq!(vars.len(), 4);
        let mut all: Vec<&Var> = vars.iter().collect();
        all.extend([&xs, &h0]);
        assert_same_op(&fused, &stepped, &probe, &all, 1e-4)?;
        Ok(())
    }

    #[test]
    fn every_steps_state_is_the_last_state_of_its_prefix_with_the_same_gradients() -> Result<()> {
        let (b, t, h) = (4, 6, 3);
        let (map, gru, xs, h0) = setup(b, t, h)?;
        // An empty row (h0 repeated), partial rows (padded steps repeat the state) and a full one.
        let mask = length_mask(&[0, 2, 6, 5], t, &Device::Cpu)?;
        let probe = Tensor::randn(0f32, 1.0, (b, t, h), &Device::Cpu)?;
        let fused = gru.forward_all(&xs, &mask, &h0)?;
        let prefixes = (1..=t)
            .map(|k| gru.forward_steps(&xs.narrow(1, 0, k)?, &mask.narrow(1, 0, k)?, &h0))
            .collect::<Result<Vec<_>>>()?;
        let reference = Tensor::stack(&prefixes, 1)?;
        let vars = map.all_vars();
        let mut all: Vec<&Var> = vars.iter().collect();
        all.extend([&xs, &h0]);
        assert_same_op(&fused, &reference, &probe, &all, 1e-4)?;
        Ok(())
    }

    #[test]
    fn the_scan_gradient_matches_finite_differences() -> Result<()> {
        let (b, t, h) = (2, 3, 3);
        let [gi, h0, w, bias] = [
            Var::randn(0f32, 1.0, (b, t, 3 * h), &Device::Cpu)?,
            Var::randn(0f32, 0.5, (b, h), &Device::Cpu)?,
            Var::randn(0f32, 0.4, (3 * h, h), &Device::Cpu)?,
            Var::randn(0f32, 0.3, 3 * h, &Device::Cpu)?,
        ];
        let mask = length_mask(&[3, 2], t, &Device::Cpu)?;
        let loss = |w: &Tensor| -> Result<f64> {
            let out = scan(&gi, &mask, &h0, (w, &bias), false)?;
            Ok(f64::from(out.sqr()?.sum_all()?.to_scalar::<f32>()?))
        };
        let grads = scan(&gi, &mask, &h0, (&w, &bias), false)?
            .sqr()?
            .sum_all()?
            .backward()?;
        let Some(analytic) = grads.get(&w) else {
            panic!("no gradient for W_hh");
        };
        let analytic = analytic.flatten_all()?.to_vec1::<f32>()?;
        let base = w.flatten_all()?.to_vec1::<f32>()?;
        let eps = 1e-2f32;
        let at =
            |v: Vec<f32>| -> Result<f64> { loss(&Tensor::from_vec(v, w.shape(), &Device::Cpu)?) };
        for (i, &a) in analytic.iter().enumerate() {
            let (mut plus, mut minus) = (base.clone(), base.clone());
            plus[i] += eps;
            minus[i] -= eps;
            let numeric = (at(plus)? - at(minus)?) / (2.0 * f64::from(eps));
            assert!(
                (numeric - f64::from(a)).abs() < 2e-3 + 1e-2 * numeric.abs(),
                "dW_hh[{i}]: analytic {a} vs numeric {numeric}"
            );
        }
        Ok(())
    }
}
