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
