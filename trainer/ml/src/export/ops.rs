//! The candle layers of `models/` written as standard ONNX ops.

use candle_core::Tensor;
use candle_nn::Linear;

use super::graph::{Attr, Graph};
use crate::error::{Result, TrainerError};
use crate::models::layers::{Gru, Mlp};

/// A tensor's values, row-major, as f32.
pub fn values(t: &Tensor) -> Result<Vec<f32>> {
    Ok(t.to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?)
}

/// A candle `Linear` (weight `[out, in]`) registered as initializers, applied with `Gemm`.
pub struct LinearInit {
    w: String,
    b: String,
}

impl LinearInit {
    pub fn new(g: &mut Graph, layer: &Linear, hint: &str) -> Result<LinearInit> {
        let w = layer.weight();
        let (out, inp) = w.dims2()?;
        let b = match layer.bias() {
            Some(b) => values(b)?,
            None => vec![0.0; out],
        };
        Ok(LinearInit {
            w: g.floats(&format!("{hint}_w"), &[out, inp], values(w)?),
            b: g.floats(&format!("{hint}_b"), &[out], b),
        })
    }

    /// `x Wᵀ + b` on a 2-D `x`: one `Gemm` with `transB = 1`.
    pub fn apply(&self, g: &mut Graph, x: &str) -> String {
        g.op(
            "Gemm",
            &[x, &self.w, &self.b],
            vec![("transB", Attr::Int(1))],
        )
    }
}

/// `x Wᵀ + b` for a candle `Linear` used once.
pub fn linear(g: &mut Graph, x: &str, layer: &Linear, hint: &str) -> Result<String> {
    Ok(LinearInit::new(g, layer, hint)?.apply(g, x))
}

/// The 3-layer MLP of [`Mlp::forward`] registered once, applicable to several 2-D inputs.
pub struct MlpInit([LinearInit; 3]);

impl MlpInit {
    pub fn new(g: &mut Graph, net: &Mlp, hint: &str) -> Result<MlpInit> {
        let [l0, l1, l2] = net.layers();
        Ok(MlpInit([
            LinearInit::new(g, l0, &format!("{hint}_l0"))?,
            LinearInit::new(g, l1, &format!("{hint}_l1"))?,
            LinearInit::new(g, l2, &format!("{hint}_l2"))?,
        ]))
    }

    pub fn apply(&self, g: &mut Graph, x: &str) -> String {
        let [l0, l1, l2] = &self.0;
        let h = l0.apply(g, x);
        let h = g.op("Relu", &[&h], vec![]);
        let h = l1.apply(g, &h);
        let h = g.op("Relu", &[&h], vec![]);
        l2.apply(g, &h)
    }
}

/// An MLP used once.
pub fn mlp(g: &mut Graph, x: &str, net: &Mlp, hint: &str) -> Result<String> {
    Ok(MlpInit::new(g, net, hint)?.apply(g, x))
}

/// Re-stacks candle's `r, z, n` gate blocks (rows of `[3H, …]`) in ONNX's `z, r, h` order.
fn zrh(t: &Tensor, hidden: usize) -> Result<Vec<f32>> {
    let v = values(t)?;
    let block = v.len() / 3;
    if block * 3 != v.len() || block % hidden != 0 {
        return Err(TrainerError::InvalidArgument(format!(
            "GRU tensor of {} values is not 3 gate blocks of hidden size {hidden}",
            v.len()
        )));
    }
    Ok([&v[block..2 * block], &v[..block], &v[2 * block..]].concat())
}

/// The outputs of [`gru`]: all states `Y` `[T, 1, B, H]` and the last one `Y_h` `[1, B, H]`.
pub struct GruOut {
    pub y: String,
    pub y_h: String,
}

/// The ONNX `GRU` op (forward, `linear_before_reset = 1`) with [`Gru`]'s weights: `x`
/// `[T, B, I]`, `h0` `[1, B, H]`. `all_states` asks for `Y` too.
pub fn gru(
    g: &mut Graph,
    x: &str,
    h0: &str,
    cell: &Gru,
    hint: &str,
    all_states: bool,
) -> Result<GruOut> {
    let h = cell.hidden();
    let (_, inp) = cell.weight_ih.dims2()?;
    let w = g.floats(
        &format!("{hint}_W"),
        &[1, 3 * h, inp],
        zrh(&cell.weight_ih, h)?,
    );
    let r = g.floats(
        &format!("{hint}_R"),
        &[1, 3 * h, h],
        zrh(&cell.weight_hh, h)?,
    );
    let bias = [zrh(&cell.bias_ih, h)?, zrh(&cell.bias_hh, h)?].concat();
    let b = g.floats(&format!("{hint}_B"), &[1, 6 * h], bias);
    let y_name = if all_states { hint } else { "" };
    let outs = g.op_multi(
        "GRU",
        &[x, &w, &r, &b, "", h0],
        &[y_name, &format!("{hint}_h")],
        vec![
            ("hidden_size", Attr::Int(h as i64)),
            ("linear_before_reset", Attr::Int(1)),
        ],
    );
    Ok(GruOut {
        y: outs[0].clone(),
        y_h: outs[1].clone(),
    })
}

/// `Unsqueeze` of `x` at `axes` (opset 13+: axes as an input).
pub fn unsqueeze(g: &mut Graph, x: &str, axes: &[i64]) -> String {
    let axes = g.ints("axes", axes);
    g.op("Unsqueeze", &[x, &axes], vec![])
}

/// `Squeeze` of `x` at `axes`.
pub fn squeeze(g: &mut Graph, x: &str, axes: &[i64]) -> String {
    let axes = g.ints("axes", axes);
    g.op("Squeeze", &[x, &axes], vec![])
}

/// `Concat` along `axis`.
pub fn concat(g: &mut Graph, xs: &[&str], axis: i64) -> String {
    g.op("Concat", xs, vec![("axis", Attr::Int(axis))])
}

/// Columns `from..to` of a 2-D `x`.
pub fn columns(g: &mut Graph, x: &str, from: i64, to: i64) -> String {
    let starts = g.ints("starts", &[from]);
    let ends = g.ints("ends", &[to]);
    let axes = g.ints("axes", &[1]);
    g.op("Slice", &[x, &starts, &ends, &axes], vec![])
}

/// A float32 scalar constant.
pub fn scalar(g: &mut Graph, hint: &str, v: f32) -> String {
    g.floats(hint, &[], vec![v])
}

/// Runs a GRU from the per-candidate initial states `h0` `[N, H]` over one user's right-padded
/// window `x` `[W, d]` broadcast to every candidate, and picks the state after the first `len`
/// steps (`len` `[1]` int64; 0 gives `h0`): the masked GRU of [`Gru::forward`].
pub fn window_gru(
    g: &mut Graph,
    window: &str,
    len: &str,
    h0: &str,
    cell: &Gru,
    steps: usize,
    hint: &str,
) -> Result<String> {
    // [W, d] → [W, 1, d] → [W, N, d]: the window is the same for every candidate.
    let x = unsqueeze(g, window, &[1]);
    let n = g.op(
        "Shape",
        &[h0],
        vec![("start", Attr::Int(0)), ("end", Attr::Int(1))],
    );
    let head = g.ints("steps", &[steps as i64]);
    let d = cell.weight_ih.dims2()?.1 as i64;
    let tail = g.ints("dim", &[d]);
    let shape = concat(g, &[&head, &n, &tail], 0);
    let x = g.op("Expand", &[&x, &shape], vec![]);
    let h0 = unsqueeze(g, h0, &[0]);
    let out = gru(g, &x, &h0, cell, hint, true)?;
    // states[t] = state after t steps: [h0, Y_0, …, Y_{W−1}], so states[len] is the answer.
    let y = squeeze(g, &out.y, &[1]);
    let states = concat(g, &[&h0, &y], 0);
    let index = squeeze(g, len, &[0]);
    Ok(g.op("Gather", &[&states, &index], vec![("axis", Attr::Int(0))]))
}
