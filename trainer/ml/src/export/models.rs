//! The three ONNX files of a bundle, written from a trained [`SlowFastNet`]'s candle weights.

use slowfast_core::manifest::{io_contract, WindowSpec, FAST_ONNX, NEG_STEP_ONNX, SLOW_ONNX};

use super::graph::{Attr, Graph};
use super::ops::{
    columns, concat, gru, linear, mlp, scalar, squeeze, unsqueeze, values, window_gru, MlpInit,
};
use crate::error::{Result, TrainerError};
use crate::models::fast::FastNet;
use crate::models::slowfast::SlowFastNet;

/// The manifest's window spec of a model.
pub fn window_spec(model: &SlowFastNet) -> WindowSpec {
    let w = model.config.windows;
    WindowSpec {
        slow_history: w.slow_history,
        clicks: w.clicks,
        exposures: w.exposures,
    }
}

/// A graph with `file`'s declared inputs; returns their names in contract order.
fn with_inputs(model: &SlowFastNet, file: &str) -> Result<(Graph, Vec<String>)> {
    let (inputs, _) = contract(model, file)?;
    let mut g = Graph::default();
    let names = inputs.iter().map(|s| g.input(s)).collect::<Result<_>>()?;
    Ok((g, names))
}

fn contract(
    model: &SlowFastNet,
    file: &str,
) -> Result<(
    Vec<slowfast_core::manifest::TensorSpec>,
    Vec<slowfast_core::manifest::TensorSpec>,
)> {
    io_contract(file, model.config.dim, &window_spec(model))
        .ok_or_else(|| TrainerError::InvalidArgument(format!("{file} is not a model file")))
}

/// Declares the outputs of `file` from `values`, in contract order, and encodes the model.
fn finish(model: &SlowFastNet, file: &str, mut g: Graph, values: &[&str]) -> Result<Vec<u8>> {
    let (_, outputs) = contract(model, file)?;
    for (spec, v) in outputs.iter().zip(values) {
        g.output(v, spec)?;
    }
    Ok(g.encode(file.trim_end_matches(".onnx")))
}

fn fast_net(model: &SlowFastNet) -> Result<&FastNet> {
    model.fast.as_ref().ok_or_else(|| {
        TrainerError::InvalidArgument(format!(
            "a {:?} model has no fast component to export",
            model.variant
        ))
    })
}

/// `fast.onnx`: the S2F fast component (eq. 7–8) for one user's windows and `N` candidates.
pub fn fast_onnx(model: &SlowFastNet) -> Result<Vec<u8>> {
    let fast = fast_net(model)?;
    let s2f = fast.s2f.as_ref().ok_or_else(|| {
        TrainerError::InvalidArgument("the fast component was built without S2F".into())
    })?;
    let w = model.config.windows;
    let (mut g, i) = with_inputs(model, FAST_ONNX)?;
    let [clicks, clicks_len, exposures, exposures_len, e, r_t, r_n] =
        [0, 1, 2, 3, 4, 5, 6].map(|k| i[k].as_str());
    let g = &mut g;
    // Eq. 7: α = σ(W0[r_n ⊕ r_t] + b0), r_f = α r_n + (1 − α) r_t.
    let nt = concat(g, &[r_n, r_t], 1);
    let alpha = linear(g, &nt, &s2f.w0, "w0")?;
    let alpha = g.op("Sigmoid", &[&alpha], vec![]);
    let one = scalar(g, "one", 1.0);
    let beta = g.op("Sub", &[&one, &alpha], vec![]);
    let a = g.op("Mul", &[&alpha, r_n], vec![]);
    let b = g.op("Mul", &[&beta, r_t], vec![]);
    let r_f = g.op("Add", &[&a, &b], vec![]);
    let hp = linear(g, &r_f, &s2f.w1, "w1")?;
    let hp = g.op("Relu", &[&hp], vec![]);
    let hn = linear(g, &r_f, &s2f.w2, "w2")?;
    let hn = g.op("Relu", &[&hn], vec![]);
    let r1 = window_gru(g, clicks, clicks_len, &hp, &fast.gru_p, w.clicks, "gru_p")?;
    let r2 = window_gru(
        g,
        exposures,
        exposures_len,
        &hn,
        &model.shared.gru_n,
        w.exposures,
        "gru_n",
    )?;
    // Eq. 3: target-aware softmax over the two interest vectors.
    let fuse = MlpInit::new(g, &fast.fuse, "fuse")?;
    let c1 = concat(g, &[&r1, e], 1);
    let s1 = fuse.apply(g, &c1);
    let c2 = concat(g, &[&r2, e], 1);
    let s2 = fuse.apply(g, &c2);
    let s = concat(g, &[&s1, &s2], 1);
    let wts = g.op("Softmax", &[&s], vec![("axis", Attr::Int(1))]);
    let w1 = columns(g, &wts, 0, 1);
    let w2 = columns(g, &wts, 1, 2);
    let a = g.op("Mul", &[&r1, &w1], vec![]);
    let b = g.op("Mul", &[&r2, &w2], vec![]);
    let r = g.op("Add", &[&a, &b], vec![]);
    // Eq. 8: y_F = σ(MLP(r ⊕ r_t ⊕ e_i)); the graph returns the logit.
    let x = concat(g, &[&r, r_t, e], 1);
    let y = mlp(g, &x, &fast.out, "out")?;
    let logit = squeeze(g, &y, &[1]);
    finish(model, FAST_ONNX, std::mem::take(g), &[&logit])
}

/// `neg_step.onnx`: one GRU_n cell step, `r̂2 ← GRUcell_n(e | r̂2)` (eq. 5's negative memory).
pub fn neg_step_onnx(model: &SlowFastNet) -> Result<Vec<u8>> {
    let (mut g, i) = with_inputs(model, NEG_STEP_ONNX)?;
    let g = &mut g;
    let x = unsqueeze(g, &i[1], &[0]);
    let h0 = unsqueeze(g, &i[0], &[0]);
    let out = gru(g, &x, &h0, &model.shared.gru_n, "gru_n", false)?;
    let next = squeeze(g, &out.y_h, &[0]);
    finish(model, NEG_STEP_ONNX, std::mem::take(g), &[&next])
}

/// `slow.onnx`: DIN's target attention (eq. 1) and F2S (eq. 5–6) for one user's history and
/// negative memory `r̂2` against `N` candidates; outputs the logit, `r_t` and `r_n`.
pub fn slow_onnx(model: &SlowFastNet) -> Result<Vec<u8>> {
    let slow = &model.slow;
    let w_s = slow.w_s.as_ref().ok_or_else(|| {
        TrainerError::InvalidArgument(format!(
            "a {:?} model has no F2S slow component to export",
            model.variant
        ))
    })?;
    let d = model.config.dim;
    let steps = model.config.windows.slow_history;
    let (mut g, i) = with_inputs(model, SLOW_ONNX)?;
    let [hist, hist_len, neg_memory, e] = [0, 1, 2, 3].map(|k| i[k].as_str());
    let g = &mut g;
    // Eq. 1, as in `target_attention`: the first attention layer's weight [A B C D] over
    // [h, e, h − e, h ⊙ e] splits into (A + C) h + (B − C) e + D (h ⊙ e).
    let [first, second, third] = slow.att.layers();
    let wt = first.weight();
    let block = |k: usize| wt.narrow(1, k * d, d);
    let w_h = (block(0)? + block(2)?)?.t()?;
    let w_e = (block(1)? - block(2)?)?.t()?;
    let w_he = block(3)?.t()?;
    let h1 = w_h.dim(1)?;
    let w_h = g.floats("att_wh", &[d, h1], values(&w_h)?);
    let w_he = g.floats("att_whe", &[d, h1], values(&w_he)?);
    let w_e = g.floats("att_we", &[d, h1], values(&w_e)?);
    let b0 = match first.bias() {
        Some(b) => values(b)?,
        None => vec![0.0; h1],
    };
    let b0 = g.floats("att_b0", &[h1], b0);
    let per_pos = g.op("MatMul", &[hist, &w_h], vec![]); // [W, h1]
    let hist3 = unsqueeze(g, hist, &[0]); // [1, W, d]
    let e3 = unsqueeze(g, e, &[1]); // [N, 1, d]
    let he = g.op("Mul", &[&hist3, &e3], vec![]); // [N, W, d]
    let he = g.op("MatMul", &[&he, &w_he], vec![]); // [N, W, h1]
    let per_row = g.op("MatMul", &[e, &w_e], vec![]);
    let per_row = g.op("Add", &[&per_row, &b0], vec![]);
    let per_row = unsqueeze(g, &per_row, &[1]); // [N, 1, h1]
    let z = g.op("Add", &[&he, &per_pos], vec![]);
    let z = g.op("Add", &[&z, &per_row], vec![]);
    let z = g.op("Relu", &[&z], vec![]);
    let z = batched_linear(g, &z, second, "att_l1")?;
    let z = g.op("Relu", &[&z], vec![]);
    let z = batched_linear(g, &z, third, "att_l2")?;
    let scores = squeeze(g, &z, &[2]); // [N, W]
                                       // The masked softmax of `masked_softmax`, with the mask built from `history_len`.
    let positions: Vec<i64> = (0..steps as i64).collect();
    let positions = g.ints("positions", &positions);
    let valid = g.op("Less", &[&positions, hist_len], vec![]);
    let mask = g.op("Cast", &[&valid], vec![("to", Attr::Int(1))]);
    let one = scalar(g, "one", 1.0);
    let big = scalar(g, "big", 1e4);
    let off = g.op("Sub", &[&mask, &one], vec![]);
    let off = g.op("Mul", &[&off, &big], vec![]);
    let shifted = g.op("Add", &[&scores, &off], vec![]);
    let max = g.op(
        "ReduceMax",
        &[&shifted],
        vec![("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))],
    );
    let ex = g.op("Sub", &[&shifted, &max], vec![]);
    let ex = g.op("Exp", &[&ex], vec![]);
    let ex = g.op("Mul", &[&ex, &mask], vec![]);
    let axes = g.ints("axes", &[-1]);
    let sum = g.op("ReduceSum", &[&ex, &axes], vec![("keepdims", Attr::Int(1))]);
    let eps = scalar(g, "eps", 1e-12);
    let sum = g.op("Add", &[&sum, &eps], vec![]);
    let weights = g.op("Div", &[&ex, &sum], vec![]);
    let r_t = g.op("MatMul", &[&weights, hist], vec![]); // [N, d]
                                                         // Eq. 5: r2 = GRUcell_n(e_i | r̂2), r_n = r2 ⊙ σ(W_S[r2 ⊕ e_i] + b_S).
    let x = unsqueeze(g, e, &[0]);
    let n = g.op(
        "Shape",
        &[e],
        vec![("start", Attr::Int(0)), ("end", Attr::Int(1))],
    );
    let one_i = g.ints("one", &[1]);
    let dim = g.ints("dim", &[d as i64]);
    let shape = concat(g, &[&one_i, &n, &dim], 0);
    let h0 = unsqueeze(g, neg_memory, &[0]);
    let h0 = g.op("Expand", &[&h0, &shape], vec![]);
    let r2 = gru(g, &x, &h0, &model.shared.gru_n, "gru_n", false)?;
    let r2 = squeeze(g, &r2.y_h, &[0]);
    let re = concat(g, &[&r2, e], 1);
    let gate = linear(g, &re, w_s, "w_s")?;
    let gate = g.op("Sigmoid", &[&gate], vec![]);
    let r_n = g.op("Mul", &[&r2, &gate], vec![]);
    // Eq. 6: y_S = σ(MLP(r_n ⊕ r_t ⊕ e_i)).
    let x = concat(g, &[&r_n, &r_t, e], 1);
    let y = mlp(g, &x, &slow.out, "out")?;
    let logit = squeeze(g, &y, &[1]);
    finish(model, SLOW_ONNX, std::mem::take(g), &[&logit, &r_t, &r_n])
}

/// `x Wᵀ + b` on a 3-D input (`MatMul` broadcasts over the leading axis; `Gemm` is 2-D only).
fn batched_linear(g: &mut Graph, x: &str, layer: &candle_nn::Linear, hint: &str) -> Result<String> {
    let w = layer.weight().t()?;
    let (inp, out) = w.dims2()?;
    let w = g.floats(&format!("{hint}_w"), &[inp, out], values(&w)?);
    let y = g.op("MatMul", &[x, &w], vec![]);
    match layer.bias() {
        Some(b) => {
            let b = g.floats(&format!("{hint}_b"), &[out], values(b)?);
            Ok(g.op("Add", &[&y, &b], vec![]))
        }
        None => Ok(y),
    }
}
