//! The window GRUs of `fast.onnx` (eq. 7) run for `N` candidates that share one window.
//!
//! `fast.onnx` writes each window GRU as the standard ONNX `GRU` op over the user's window
//! broadcast to every candidate (`[W, d]` → `[N, W, d]`), because only the initial state
//! `ReLU(W r_f + b)` depends on the candidate. tract runs that as one `GruSeq`, which computes
//! the input products `W_i x_t` once per candidate (N times the same numbers) and evaluates
//! the gates row by row. [`share_window_inputs`] replaces such a `GruSeq` by [`WindowGru`]:
//! the input products once per window (`W × 3H × d` multiply-adds instead of `N ×` that), the
//! recurrent product of all candidates as one matrix product per step, and the gates over
//! all candidates at once (a state laid out gate-major, `[H, N]`). Same equations, so the
//! bundle stays plain ONNX and ONNX Runtime still runs it as written.

use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::*;
use tract_onnx::tract_core::ndarray::{linalg::general_mat_mul, ArrayView2, ArrayViewMut2};
use tract_onnx::tract_core::ops::array::MultiBroadcastTo;
use tract_onnx::tract_core::ops::gru_seq::GruSeq;
use tract_onnx::tract_core::ops::Cost;
use tract_onnx::tract_core::tract_linalg::element_wise::ElementWise;
use tract_onnx::tract_core::tract_linalg::routines::Func;

/// The ONNX GRU (`linear_before_reset = 1`, gate blocks in ONNX order z, r, h) over one input
/// sequence `x` `[1, T, I]` shared by `N` initial states `h0` `[N, 1, H]`; outputs all states
/// `Y` `[N, T, H]` and the last one `Y_h` `[N, 1, H]`, as the `GruSeq` it replaces:
///
/// `z = σ(W_z x + b_Wz + R_z h + b_Rz)`, `r = σ(W_r x + b_Wr + R_r h + b_Rr)`,
/// `n = tanh(W_h x + b_Wh + r ⊙ (R_h h + b_Rh))`, `h' = n + z ⊙ (h − n)`.
#[derive(Clone, Debug, PartialEq)]
pub struct WindowGru {
    hidden: usize,
    /// Whether `Y` is filled (`false`: `[N, 0, H]`, for a graph that reads only `Y_h`).
    emit_y: bool,
    input: usize,
    /// `W` `[3H, I]`, row-major.
    w: Vec<f32>,
    /// `R` `[3H, H]`, row-major.
    r: Vec<f32>,
    /// `b_W` `[3H]`.
    wb: Vec<f32>,
    /// `b_R` `[3H]`.
    rb: Vec<f32>,
}

/// Weights come from a verified bundle, which refuses non-finite values, so `==` on them is
/// an equivalence (tract compares ops when it deduplicates nodes).
impl Eq for WindowGru {}

impl WindowGru {
    /// A GRU of hidden size `hidden` from `W` `[3H, I]`, `R` `[3H, H]` and the ONNX bias
    /// `[b_W, b_R]` (`6H` values; `None`: zeros).
    pub fn new(
        hidden: usize,
        emit_y: bool,
        w: &Tensor,
        r: &Tensor,
        bias: Option<&Tensor>,
    ) -> TractResult<Self> {
        let h3 = 3 * hidden;
        ensure!(
            w.rank() == 2 && w.shape()[0] == h3,
            "GRU W must be [{h3}, I], got {:?}",
            w.shape()
        );
        ensure!(
            r.shape() == [h3, hidden],
            "GRU R must be [{h3}, {hidden}], got {:?}",
            r.shape()
        );
        let floats = |t: &Tensor| -> TractResult<Vec<f32>> {
            Ok(t.cast_to::<f32>()?
                .to_plain_array_view::<f32>()?
                .iter()
                .copied()
                .collect())
        };
        let b = match bias {
            Some(b) => floats(b)?,
            None => vec![0.0; 2 * h3],
        };
        ensure!(
            b.len() == 2 * h3,
            "GRU B must hold {} values, got {}",
            2 * h3,
            b.len()
        );
        Ok(WindowGru {
            hidden,
            emit_y,
            input: w.shape()[1],
            w: floats(w)?,
            r: floats(r)?,
            wb: b[..h3].to_vec(),
            rb: b[h3..].to_vec(),
        })
    }

    /// `gi[t] = W x_t + b_W`, plus `b_R` on the z and r blocks (they are simply added): `[T, 3H]`.
    fn input_products(&self, x: &[f32], steps: usize) -> TractResult<Vec<f32>> {
        let h3 = 3 * self.hidden;
        let x = ArrayView2::from_shape((steps, self.input), x)?;
        let w = ArrayView2::from_shape((h3, self.input), &self.w)?;
        let mut gi = vec![0f32; steps * h3];
        general_mat_mul(
            1.0,
            &x,
            &w.t(),
            0.0,
            &mut ArrayViewMut2::from_shape((steps, h3), &mut gi)?,
        );
        for row in gi.chunks_exact_mut(h3) {
            for (j, v) in row.iter_mut().enumerate() {
                *v += self.wb[j] + if j < 2 * self.hidden { self.rb[j] } else { 0.0 };
            }
        }
        Ok(gi)
    }

    /// Runs the recurrence; returns `Y` `[N, T, H]` and the last state `[N, H]`.
    fn run(&self, x: &[f32], steps: usize, h0: &[f32]) -> TractResult<(Vec<f32>, Vec<f32>)> {
        let h = self.hidden;
        let n = h0.len() / h;
        let gi = self.input_products(x, steps)?;
        let sigmoid = Func::Sigmoid.ew_f32()?;
        let tanh = Func::Tanh.ew_f32()?;
        let r = ArrayView2::from_shape((3 * h, h), &self.r)?;
        // The state gate-major, [H, N]: row j holds unit j of every candidate.
        let mut state = vec![0f32; h * n];
        for (c, row) in h0.chunks_exact(h).enumerate() {
            for (j, v) in row.iter().enumerate() {
                state[j * n + c] = *v;
            }
        }
        let mut rh = vec![0f32; 3 * h * n];
        let y_steps = if self.emit_y { steps } else { 0 };
        let mut y = vec![0f32; n * y_steps * h];
        for t in 0..steps {
            {
                let hv = ArrayView2::from_shape((h, n), &state)?;
                let mut out = ArrayViewMut2::from_shape((3 * h, n), &mut rh)?;
                general_mat_mul(1.0, &r, &hv, 0.0, &mut out);
            }
            self.gates(
                &gi[t * 3 * h..(t + 1) * 3 * h],
                &mut rh,
                &mut state,
                n,
                &*sigmoid,
                &*tanh,
            )?;
            if self.emit_y {
                for (c, out) in y.chunks_exact_mut(steps * h).enumerate() {
                    for (j, v) in out[t * h..(t + 1) * h].iter_mut().enumerate() {
                        *v = state[j * n + c];
                    }
                }
            }
        }
        let mut last = vec![0f32; n * h];
        for (c, out) in last.chunks_exact_mut(h).enumerate() {
            for (j, v) in out.iter_mut().enumerate() {
                *v = state[j * n + c];
            }
        }
        Ok((y, last))
    }

    /// One step's gates for every candidate at once: `rh` `[3H, N]` holds `R h`, `gi` the
    /// step's `[3H]` input products; `state` `[H, N]` becomes `h'`.
    fn gates(
        &self,
        gi: &[f32],
        rh: &mut [f32],
        state: &mut [f32],
        n: usize,
        sigmoid: &dyn ElementWise<f32>,
        tanh: &dyn ElementWise<f32>,
    ) -> TractResult<()> {
        let h = self.hidden;
        let (zr, cand) = rh.split_at_mut(2 * h * n);
        for (row, g) in zr.chunks_exact_mut(n).zip(gi) {
            row.iter_mut().for_each(|v| *v += g);
        }
        sigmoid.run(zr)?;
        let (z, r) = zr.split_at(h * n);
        for j in 0..h {
            let (g, b) = (gi[2 * h + j], self.rb[2 * h + j]);
            let rows = j * n..(j + 1) * n;
            for (c, rr) in cand[rows.clone()].iter_mut().zip(&r[rows]) {
                *c = g + rr * (*c + b);
            }
        }
        tanh.run(cand)?;
        for ((s, c), zz) in state.iter_mut().zip(cand.iter()).zip(z) {
            *s = c + zz * (*s - c);
        }
        Ok(())
    }
}

impl Op for WindowGru {
    fn name(&self) -> StaticName {
        "WindowGru".into()
    }

    fn info(&self) -> TractResult<Vec<String>> {
        Ok(vec![format!("hidden={} input={}", self.hidden, self.input)])
    }

    op_as_typed_op!();
}

impl EvalOp for WindowGru {
    op_out_of_plan!();

    fn eval(&self, _ctx: &EvalContext, inputs: TVec<TValue>) -> TractResult<TVec<TValue>> {
        let h = self.hidden;
        let (x, h0) = (&inputs[0], &inputs[1]);
        ensure!(
            x.rank() == 3 && x.shape()[0] == 1 && x.shape()[2] == self.input,
            "WindowGru expects x [1, T, {}], got {:?}",
            self.input,
            x.shape()
        );
        ensure!(
            h0.rank() == 3 && h0.shape()[1..] == [1, h],
            "WindowGru expects h0 [N, 1, {h}], got {:?}",
            h0.shape()
        );
        let (steps, n) = (x.shape()[1], h0.shape()[0]);
        let floats = |t: &TValue| -> TractResult<Vec<f32>> {
            Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect())
        };
        let (y, last) = self.run(&floats(x)?, steps, &floats(h0)?)?;
        let y_steps = if self.emit_y { steps } else { 0 };
        Ok(tvec!(
            Tensor::from_shape(&[n, y_steps, h], &y)?.into_tvalue(),
            Tensor::from_shape(&[n, 1, h], &last)?.into_tvalue()
        ))
    }
}

impl TypedOp for WindowGru {
    fn output_facts(&self, inputs: &[&TypedFact]) -> TractResult<TVec<TypedFact>> {
        let n = inputs[1].shape[0].clone();
        let steps = if self.emit_y {
            inputs[0].shape[1].clone()
        } else {
            0.to_dim()
        };
        Ok(tvec!(
            f32::fact([n.clone(), steps, self.hidden.to_dim()]),
            f32::fact([n, 1.to_dim(), self.hidden.to_dim()])
        ))
    }

    /// Multiply-adds: the input products once per step, the recurrent one per candidate.
    fn cost(&self, inputs: &[&TypedFact]) -> TractResult<TVec<(Cost, TDim)>> {
        let steps = inputs[0].shape[1].clone();
        let n = inputs[1].shape[0].clone();
        let h3 = (3 * self.hidden) as i64;
        let fma = steps.clone() * (h3 * self.input as i64) + steps * n * (h3 * self.hidden as i64);
        Ok(tvec!((Cost::FMA(f32::datum_type()), fma)))
    }

    as_op!();
}

/// Replaces every forward `GruSeq` of `model` whose input is one sequence broadcast over the
/// batch (`[1, T, I]` → `[N, T, I]`), with constant weights, by a [`WindowGru`] on the
/// un-broadcast sequence. Returns how many it replaced. [`WindowGru`] keeps no state between
/// calls (every call starts from `h0`, the ONNX contract), so a plan must not rely on the
/// `GruSeq` habit of carrying the state from one call of a session to the next — the device
/// runs every call on a fresh state anyway.
pub fn share_window_inputs(model: &mut TypedModel) -> TractResult<usize> {
    let mut replaced = 0;
    for id in model.eval_order()? {
        let node = model.node(id);
        let Some(gru) = node.op_as::<GruSeq>() else {
            continue;
        };
        if gru.projected || gru.chunk != 1 {
            continue;
        }
        let source = node.inputs[0];
        let broadcast = model.node(source.node);
        if broadcast.op_as::<MultiBroadcastTo>().is_none() {
            continue;
        }
        let x = broadcast.inputs[0];
        if model.outlet_fact(x)?.shape.first() != Some(&1.to_dim()) {
            continue;
        }
        let konst = |slot: usize| -> TractResult<Option<Arc<Tensor>>> {
            Ok(model.outlet_fact(node.inputs[slot])?.konst.clone())
        };
        let (Some(w), Some(r)) = (konst(1)?, konst(2)?) else {
            continue;
        };
        let bias = if gru.has_bias {
            match konst(3)? {
                Some(b) => Some(b),
                None => continue,
            }
        } else {
            None
        };
        let op = WindowGru::new(gru.hidden, gru.emit_y, &w, &r, bias.as_deref())?;
        let h0 = *node.inputs.last().context("GruSeq without inputs")?;
        let mut patch = TypedModelPatch::default();
        let taps = patch.taps(model, &[x, h0])?;
        let outputs = patch.wire_node(&node.name, op, &taps)?;
        for (ix, o) in outputs.iter().enumerate() {
            patch.shunt_outside(model, OutletId::new(id, ix), *o)?;
        }
        patch.apply(model)?;
        replaced += 1;
    }
    Ok(replaced)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::fixture_bundle;
    use crate::manifest::{FAST_ONNX, NEG_STEP_ONNX};

    fn load(file: &str) -> InferenceModel {
        tract_onnx::onnx()
            .model_for_path(fixture_bundle().join(file))
            .unwrap()
    }

    fn count<O: Op>(model: &TypedModel) -> usize {
        model.nodes().iter().filter(|n| n.op_is::<O>()).count()
    }

    fn values(len: usize, seed: f32) -> Vec<f32> {
        (0..len).map(|i| (i as f32 * seed).sin() * 0.8).collect()
    }

    /// `fast.onnx`'s inputs (windows 50/50, d = 32) with `n` candidates and window lengths.
    fn fast_inputs(n: usize, clicks_len: usize, exposures_len: usize) -> TVec<TValue> {
        let (w, d) = (50, 32);
        let window = |len: usize, seed: f32| {
            let mut v = values(w * d, seed);
            v[len * d..].iter_mut().for_each(|x| *x = 0.0);
            Tensor::from_shape(&[w, d], &v).unwrap().into_tvalue()
        };
        let len = |l: usize| Tensor::from_shape(&[1], &[l as i64]).unwrap().into_tvalue();
        let rows = |seed: f32| Tensor::from_shape(&[n, d], &values(n * d, seed)).unwrap();
        tvec![
            window(clicks_len, 0.37),
            len(clicks_len),
            window(exposures_len, 0.71),
            len(exposures_len),
            rows(1.3).into_tvalue(),
            rows(0.53).into_tvalue(),
            rows(0.91).into_tvalue(),
        ]
    }

    #[test]
    fn both_window_grus_of_fast_onnx_share_their_input_products() {
        let graph = super::super::device_graph(load(FAST_ONNX)).unwrap();
        let graph = graph.into_decluttered().unwrap();
        assert_eq!(count::<WindowGru>(&graph), 2);
        assert_eq!(count::<GruSeq>(&graph), 0);
    }

    #[test]
    fn a_gru_without_a_broadcast_input_is_left_alone() {
        let graph = super::super::device_graph(load(NEG_STEP_ONNX)).unwrap();
        let plain = load(NEG_STEP_ONNX)
            .into_typed()
            .and_then(|m| m.into_decluttered())
            .unwrap();
        assert_eq!(count::<WindowGru>(&graph), 0);
        assert_eq!(graph.nodes().len(), plain.nodes().len());
    }

    /// The device's plan against tract's own `GruSeq` plan of the same file, for one and
    /// several candidates and empty, partial and full windows (max |Δ| ≤ 1e-5).
    #[test]
    fn window_gru_scores_as_the_gru_seq_it_replaces() {
        let plain = load(FAST_ONNX)
            .into_optimized()
            .unwrap()
            .into_runnable()
            .unwrap();
        let device = super::super::device_graph(load(FAST_ONNX))
            .and_then(|m| m.into_optimized())
            .and_then(|m| m.into_runnable())
            .unwrap();
        for n in [1, 7] {
            for (clicks, exposures) in [(0, 0), (1, 50), (17, 3), (50, 0), (50, 50)] {
                let run = |plan: &Arc<TypedRunnableModel>| -> Vec<f32> {
                    let out = plan.run(fast_inputs(n, clicks, exposures)).unwrap();
                    let v = out[0].to_plain_array_view::<f32>().unwrap();
                    v.iter().copied().collect()
                };
                let (want, got) = (run(&plain), run(&device));
                assert_eq!(got.len(), n);
                let diff = want
                    .iter()
                    .zip(&got)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0f32, f32::max);
                assert!(
                    diff <= 1e-5,
                    "N={n} lens {clicks}/{exposures}: max |Δ| {diff}"
                );
            }
        }
    }

    /// A GRU with hidden size 2 and input size 1 against the equations by hand, for two
    /// initial states sharing one 2-step sequence; `Y` holds both steps, `Y_h` the last.
    #[test]
    fn window_gru_follows_the_onnx_equations() {
        let (h, steps) = (2, 2);
        let w = Tensor::from_shape(&[6, 1], &values(6, 0.9)).unwrap();
        let r = Tensor::from_shape(&[6, 2], &values(12, 1.7)).unwrap();
        let b = Tensor::from_shape(&[12], &values(12, 2.3)).unwrap();
        let op = WindowGru::new(h, true, &w, &r, Some(&b)).unwrap();
        let x = [0.4f32, -0.9];
        let h0 = [0.1f32, -0.2, 0.5, 0.3];
        let out = op
            .eval(
                &EvalContext::out_of_plan(),
                tvec![
                    Tensor::from_shape(&[1, steps, 1], &x)
                        .unwrap()
                        .into_tvalue(),
                    Tensor::from_shape(&[2, 1, h], &h0).unwrap().into_tvalue(),
                ],
            )
            .unwrap();
        let (w, r, b) = (values(6, 0.9), values(12, 1.7), values(12, 2.3));
        let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
        let y = out[0].to_plain_array_view::<f32>().unwrap();
        let y_h = out[1].to_plain_array_view::<f32>().unwrap();
        assert_eq!(y.shape(), [2, steps, h]);
        assert_eq!(y_h.shape(), [2, 1, h]);
        for c in 0..2 {
            let mut state = [h0[c * h], h0[c * h + 1]];
            for (t, xt) in x.iter().enumerate() {
                // Row k of gate g (ONNX order z, r, h) is g·H + k.
                let lin = |g: usize, k: usize, s: &[f32; 2]| {
                    let row = g * h + k;
                    (
                        w[row] * xt + b[row],
                        r[row * h] * s[0] + r[row * h + 1] * s[1] + b[6 + row],
                    )
                };
                let next: Vec<f32> = (0..h)
                    .map(|k| {
                        let (zx, zh) = lin(0, k, &state);
                        let (rx, rh) = lin(1, k, &state);
                        let (nx, nh) = lin(2, k, &state);
                        let (z, r) = (sigmoid(zx + zh), sigmoid(rx + rh));
                        let n = (nx + r * nh).tanh();
                        (1.0 - z) * n + z * state[k]
                    })
                    .collect();
                state = [next[0], next[1]];
                for k in 0..h {
                    assert!((y[[c, t, k]] - state[k]).abs() < 1e-5, "Y[{c}, {t}, {k}]");
                }
            }
            for k in 0..h {
                assert!((y_h[[c, 0, k]] - state[k]).abs() < 1e-5, "Y_h[{c}, {k}]");
            }
        }
    }

    /// The input products count once per window, the recurrent ones per candidate.
    #[test]
    fn cost_counts_the_input_products_once() {
        let w = Tensor::zero::<f32>(&[96, 5]).unwrap();
        let r = Tensor::zero::<f32>(&[96, 32]).unwrap();
        let op = WindowGru::new(32, true, &w, &r, None).unwrap();
        let x = f32::fact([1, 50, 5]);
        let h0 = f32::fact([100, 1, 32]);
        let cost = op.cost(&[&x, &h0]).unwrap();
        assert_eq!(
            cost[0].1,
            (50 * 96 * 5 + 100 * 50 * 96 * 32).to_dim(),
            "{cost:?}"
        );
    }
}
