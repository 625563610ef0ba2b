use super::*;
use candle_core::{Device, Var};
use candle_nn::VarMap;

fn vb(map: &VarMap) -> VarBuilder<'_> {
    VarBuilder::from_varmap(map, DType::F32, &Device::Cpu)
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .max_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// The GRU step against a scalar re-implementation of the documented equations.
#[test]
fn gru_step_matches_the_equations() {
    let map = VarMap::new();
    let gru = Gru::new(vb(&map), 2, 3).unwrap();
    let x = Tensor::new(&[[0.3f32, -0.7]], &Device::Cpu).unwrap();
    let h = Tensor::new(&[[0.1f32, 0.2, -0.4]], &Device::Cpu).unwrap();
    let got = to_vec(&gru.cell(&x, &h).unwrap());
    let wi: Vec<Vec<f32>> = gru.weight_ih.to_vec2().unwrap();
    let wh: Vec<Vec<f32>> = gru.weight_hh.to_vec2().unwrap();
    let (bi, bh): (Vec<f32>, Vec<f32>) = (
        gru.bias_ih.to_vec1().unwrap(),
        gru.bias_hh.to_vec1().unwrap(),
    );
    let (xv, hv) = ([0.3f32, -0.7], [0.1f32, 0.2, -0.4]);
    let dot = |w: &Vec<f32>, v: &[f32]| w.iter().zip(v).map(|(a, b)| a * b).sum::<f32>();
    let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
    for j in 0..3 {
        let r = sig(dot(&wi[j], &xv) + bi[j] + dot(&wh[j], &hv) + bh[j]);
        let z = sig(dot(&wi[3 + j], &xv) + bi[3 + j] + dot(&wh[3 + j], &hv) + bh[3 + j]);
        let n = (dot(&wi[6 + j], &xv) + bi[6 + j] + r * (dot(&wh[6 + j], &hv) + bh[6 + j])).tanh();
        let want = (1.0 - z) * n + z * hv[j];
        assert!(
            (got[j] - want).abs() < 1e-6,
            "unit {j}: {} vs {want}",
            got[j]
        );
    }
}

#[test]
fn padding_does_not_change_the_gru_state() {
    let map = VarMap::new();
    let gru = Gru::new(vb(&map), 4, 5).unwrap();
    let dev = Device::Cpu;
    let xs = Tensor::randn(0f32, 1.0, (1, 3, 4), &dev).unwrap();
    let h0 = Tensor::zeros((1, 5), DType::F32, &dev).unwrap();
    let exact = gru
        .forward(&xs, &length_mask(&[3], 3, &dev).unwrap(), &h0)
        .unwrap();
    let pad = Tensor::randn(0f32, 1.0, (1, 2, 4), &dev).unwrap();
    let padded = Tensor::cat(&[&xs, &pad], 1).unwrap();
    let masked = gru
        .forward(&padded, &length_mask(&[3], 5, &dev).unwrap(), &h0)
        .unwrap();
    let diff = max_abs_diff(&exact, &masked);
    assert_eq!(diff, 0.0);
    let empty = gru
        .forward(&padded, &length_mask(&[0], 5, &dev).unwrap(), &h0)
        .unwrap();
    assert_eq!(to_vec(&empty), vec![0.0; 5], "an empty window returns h0");
}

#[test]
fn attention_equals_the_mlp_over_concatenated_features() {
    let map = VarMap::new();
    let att = Mlp::new(vb(&map), 16, [8, 4], 1).unwrap();
    let dev = Device::Cpu;
    let hist = Tensor::randn(0f32, 1.0, (3, 5, 4), &dev).unwrap();
    let e = Tensor::randn(0f32, 1.0, (3, 4), &dev).unwrap();
    let mask = length_mask(&[5, 2, 0], 5, &dev).unwrap();
    let got = target_attention(&att, &hist, &mask, &e, None).unwrap();
    let eb = e.unsqueeze(1).unwrap().broadcast_as((3, 5, 4)).unwrap();
    let feats = Tensor::cat(
        &[&hist, &eb, &(&hist - &eb).unwrap(), &(&hist * &eb).unwrap()],
        D::Minus1,
    )
    .unwrap();
    let scores = att.forward(&feats).unwrap().squeeze(D::Minus1).unwrap();
    let w = masked_softmax(&scores, &mask).unwrap();
    let want = w
        .unsqueeze(1)
        .unwrap()
        .matmul(&hist)
        .unwrap()
        .squeeze(1)
        .unwrap();
    let diff = max_abs_diff(&got, &want);
    assert!(diff < 1e-5, "{diff}");
}

/// Rows that share a moment read its history once (`row_moment`): the same `r_t` and the
/// same gradients as the history repeated per row.
#[test]
fn attention_per_moment_equals_attention_per_row() -> Result<()> {
    let map = VarMap::new();
    let att = Mlp::new(vb(&map), 16, [8, 4], 1)?;
    let dev = Device::Cpu;
    let hist = Var::randn(0f32, 1.0, (2, 5, 4), &dev)?;
    let e = Var::randn(0f32, 1.0, (5, 4), &dev)?;
    let mask = length_mask(&[5, 2], 5, &dev)?;
    let at = Tensor::new(&[0u32, 1, 1, 0, 1], &dev)?;
    let shared = target_attention(&att, &hist, &mask, &e, Some(&at))?;
    let repeated = target_attention(
        &att,
        &hist.index_select(&at, 0)?,
        &mask.index_select(&at, 0)?,
        &e,
        None,
    )?;
    let probe = Tensor::randn(0f32, 1.0, (5, 4), &dev)?;
    let vars = map.all_vars();
    let mut all: Vec<&Var> = vars.iter().collect();
    all.extend([&hist, &e]);
    crate::models::testing::assert_same_op(&shared, &repeated, &probe, &all, 1e-5)
}

#[test]
fn padding_does_not_change_attention() {
    let map = VarMap::new();
    let att = Mlp::new(vb(&map), 16, [8, 4], 1).unwrap();
    let dev = Device::Cpu;
    let hist = Tensor::randn(0f32, 1.0, (1, 2, 4), &dev).unwrap();
    let e = Tensor::randn(0f32, 1.0, (1, 4), &dev).unwrap();
    let exact =
        target_attention(&att, &hist, &length_mask(&[2], 2, &dev).unwrap(), &e, None).unwrap();
    let pad = Tensor::randn(0f32, 5.0, (1, 3, 4), &dev).unwrap();
    let padded = Tensor::cat(&[&hist, &pad], 1).unwrap();
    let masked = target_attention(
        &att,
        &padded,
        &length_mask(&[2], 5, &dev).unwrap(),
        &e,
        None,
    )
    .unwrap();
    let diff = max_abs_diff(&exact, &masked);
    assert!(diff < 1e-5, "{diff}");
    let none = target_attention(
        &att,
        &padded,
        &length_mask(&[0], 5, &dev).unwrap(),
        &e,
        None,
    )
    .unwrap();
    assert_eq!(
        to_vec(&none),
        vec![0.0; 4],
        "an empty history gives r_t = 0"
    );
}

#[test]
fn bce_is_stable_and_correct() {
    let dev = Device::Cpu;
    let logits = Tensor::new(&[0.0f32, 100.0, -100.0, 2.0], &dev).unwrap();
    let labels = Tensor::new(&[1.0f32, 1.0, 0.0, 0.0], &dev).unwrap();
    let loss = bce_with_logits(&logits, &labels)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    let want = (2f32.ln() + 0.0 + 0.0 + (1.0 + 2f32.exp()).ln()) / 4.0;
    assert!((loss - want).abs() < 1e-5, "{loss} vs {want}");
}

/// The layer norm equals candle-nn's fused kernel forward, and its gradients (which that
/// kernel does not have) match finite differences for the input, gain and shift.
#[test]
fn layer_norm_matches_candle_and_finite_differences() {
    let dev = Device::Cpu;
    // A gain around 1 and a shift around 0, neither constant.
    let randomise = |map: &VarMap, dtype: DType| {
        for (name, var) in map.data().lock().unwrap().iter() {
            let values = Tensor::randn(0f32, 0.5, 4, &dev).unwrap();
            let shift = if name.ends_with("weight") { 1.0 } else { 0.0 };
            var.set(&(values + shift).unwrap().to_dtype(dtype).unwrap())
                .unwrap();
        }
    };
    let map = VarMap::new();
    let ln = LayerNorm::new(vb(&map).pp("ln"), 4, 1e-5).unwrap();
    randomise(&map, DType::F32);
    let x = Tensor::randn(0f32, 2.0, (3, 4), &dev).unwrap();
    let fused = candle_nn::LayerNorm::new(ln.weight.clone(), ln.bias.clone(), 1e-5);
    let want = candle_core::Module::forward(&fused, &x).unwrap();
    assert!(max_abs_diff(&ln.forward(&x).unwrap(), &want) < 1e-5);

    let map = VarMap::new();
    let vbf = VarBuilder::from_varmap(&map, DType::F64, &dev);
    let ln = LayerNorm::new(vbf, 4, 1e-5).unwrap();
    randomise(&map, DType::F64);
    let x = Var::from_tensor(&Tensor::randn(0f64, 2.0, (3, 4), &dev).unwrap()).unwrap();
    let coeffs = Tensor::randn(0f64, 1.0, (3, 4), &dev).unwrap();
    let loss = |ln: &LayerNorm, x: &Tensor| {
        (ln.forward(x).unwrap() * &coeffs)
            .unwrap()
            .sqr()
            .unwrap()
            .sum_all()
            .unwrap()
    };
    let grads = loss(&ln, x.as_tensor()).backward().unwrap();
    let eps = 1e-6;
    for (name, t) in [
        ("x", x.as_tensor()),
        ("weight", &ln.weight),
        ("bias", &ln.bias),
    ] {
        let analytic = to_vec64(grads.get(t).unwrap());
        let base = to_vec64(t);
        for (i, &a) in analytic.iter().enumerate() {
            let bump = |delta: f64| {
                let mut v = base.clone();
                v[i] += delta;
                let moved = Tensor::from_vec(v, t.shape(), &dev).unwrap();
                let out = match name {
                    "x" => loss(&ln, &moved),
                    "weight" => loss(
                        &LayerNorm {
                            weight: moved,
                            ..ln.clone()
                        },
                        x.as_tensor(),
                    ),
                    _ => loss(
                        &LayerNorm {
                            bias: moved,
                            ..ln.clone()
                        },
                        x.as_tensor(),
                    ),
                };
                out.to_scalar::<f64>().unwrap()
            };
            let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps);
            assert!(
                (numeric - a).abs() < 1e-5 * (1.0 + a.abs()),
                "{name}[{i}]: numeric {numeric} vs autograd {a}"
            );
        }
        assert!(analytic.iter().any(|g| *g != 0.0), "{name} gets a gradient");
    }
}

fn to_vec64(t: &Tensor) -> Vec<f64> {
    t.flatten_all().unwrap().to_vec1().unwrap()
}

/// Finite differences against autograd for the GRU over a window and the attention.
#[test]
fn gradients_match_finite_differences() {
    let dev = Device::Cpu;
    let map = VarMap::new();
    let vbf = VarBuilder::from_varmap(&map, DType::F64, &dev);
    let gru = Gru::new(vbf.pp("gru"), 3, 4).unwrap();
    let att = Mlp::new(vbf.pp("att"), 16, [5, 3], 1).unwrap();
    let xs = Var::from_tensor(&Tensor::randn(0f64, 1.0, (2, 3, 3), &dev).unwrap()).unwrap();
    let mask = length_mask(&[3, 2], 3, &dev)
        .unwrap()
        .to_dtype(DType::F64)
        .unwrap();
    let h0 = Tensor::zeros((2, 4), DType::F64, &dev).unwrap();
    let e = Tensor::randn(0f64, 1.0, (2, 4), &dev).unwrap();
    let loss = |xs: &Tensor| -> f64 {
        let h = gru.forward(xs, &mask, &h0).unwrap();
        let hist = Tensor::stack(&[&h, &(&h * 0.5).unwrap()], 1).unwrap();
        let r = target_attention(&att, &hist, &mask.narrow(1, 0, 2).unwrap(), &e, None).unwrap();
        r.sqr()
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f64>()
            .unwrap()
    };
    let h = gru.forward(xs.as_tensor(), &mask, &h0).unwrap();
    let hist = Tensor::stack(&[&h, &(&h * 0.5).unwrap()], 1).unwrap();
    let r = target_attention(&att, &hist, &mask.narrow(1, 0, 2).unwrap(), &e, None).unwrap();
    let grads = r.sqr().unwrap().sum_all().unwrap().backward().unwrap();
    let analytic: Vec<f64> = grads
        .get(xs.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let base: Vec<f64> = xs.as_tensor().flatten_all().unwrap().to_vec1().unwrap();
    let eps = 1e-6;
    for (i, &a) in analytic.iter().enumerate() {
        let bump = |delta: f64| {
            let mut v = base.clone();
            v[i] += delta;
            loss(&Tensor::from_vec(v, (2, 3, 3), &dev).unwrap())
        };
        let numeric = (bump(eps) - bump(-eps)) / (2.0 * eps);
        assert!(
            (numeric - a).abs() < 1e-5 * (1.0 + a.abs()),
            "x[{i}]: numeric {numeric} vs autograd {a}"
        );
    }
    // The padded step of the second sequence gets no gradient.
    assert!(analytic[9 + 6..9 + 9].iter().all(|g| *g == 0.0));
}
