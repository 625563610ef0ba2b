//! Adam with an L2 penalty folded into the gradient (paper §5.1.4: Adam, lr 5e-4, β = (0.9,
//! 0.999), "L2 regularization added to the loss function" with weight 1e-4).
//!
//! Adding `λ/2 ‖θ‖²` to the loss adds `λ θ` to the gradient, which is what [`Adam::step`] does;
//! this differs from AdamW's decoupled decay, which the paper does not use.
//!
//! Embedding tables (variables named `*_emb`) are penalised only on the rows the batch looked
//! up, as TensorFlow recommenders do: a dense penalty would give every untouched row a
//! gradient that Adam normalises into a full-size step towards zero, erasing the embeddings.

use candle_core::backprop::GradStore;
use candle_core::{Storage, Tensor, Var};

use super::cpu_ops;

use crate::error::Result;

/// Adam's hyper-parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// L2 weight λ.
    pub l2: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        AdamConfig {
            lr: 5e-4,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            l2: 1e-4,
        }
    }
}

/// Adam over a fixed set of variables.
#[derive(Debug)]
pub struct Adam {
    vars: Vec<Slot>,
    t: i32,
    cfg: AdamConfig,
}

impl Adam {
    /// Adam over named variables; names ending in `_emb` are embedding tables. A learning
    /// rate or L2 weight that is negative or not finite, `eps` not above 0 or a β outside
    /// [0, 1) is an [`InvalidArgument`](crate::TrainerError::InvalidArgument): it would turn
    /// every weight into NaN or send it the wrong way.
    pub fn new(vars: &[(String, Var)], cfg: AdamConfig) -> Result<Adam> {
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
            l2,
        } = cfg;
        let valid = [lr, l2].iter().all(|x| x.is_finite() && *x >= 0.0)
            && eps.is_finite()
            && eps > 0.0
            && [beta1, beta2].iter().all(|b| (0.0..1.0).contains(b));
        if !valid {
            return Err(crate::TrainerError::InvalidArgument(format!(
                "Adam needs a finite learning rate and L2 weight >= 0, eps > 0 and betas in \
                 [0, 1); got lr {lr}, l2 {l2}, eps {eps}, betas ({beta1}, {beta2})"
            )));
        }
        let vars = vars
            .iter()
            .map(|(name, v)| {
                let zeros = v.zeros_like()?;
                Ok(Slot {
                    var: v.clone(),
                    m: zeros.clone(),
                    v: zeros,
                    table: name.ends_with("_emb"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Adam { vars, t: 0, cfg })
    }

    /// One update from the gradients of the loss; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let k = Coefficients::new(self.cfg, self.t);
        for slot in &mut self.vars {
            let Some(g) = grads.get(slot.var.as_tensor()) else {
                continue;
            };
            if !slot.update_fused(g, &k)? {
                slot.update_ops(g, &k)?;
            }
        }
        Ok(())
    }
}

/// The scalars of step `t`: the configuration and the bias corrections `1 − βᵗ`.
#[derive(Clone, Copy, Debug)]
struct Coefficients {
    c: AdamConfig,
    bias1: f64,
    bias2: f64,
}

impl Coefficients {
    fn new(c: AdamConfig, t: i32) -> Coefficients {
        Coefficients {
            c,
            bias1: 1.0 - c.beta1.powi(t),
            bias2: 1.0 - c.beta2.powi(t),
        }
    }
}

/// A variable, its first and second moments, and whether it is an embedding table.
#[derive(Debug)]
struct Slot {
    var: Var,
    m: Tensor,
    v: Tensor,
    table: bool,
}

impl Slot {
    /// The update from gradient `g` with candle's ops, on any device: L2 penalty (on looked-up
    /// rows only for a `table`), moments, bias-corrected step.
    fn update_ops(&mut self, g: &Tensor, k: &Coefficients) -> Result<()> {
        let Slot { var, m, v, table } = self;
        let (c, table) = (k.c, *table);
        let penalty = (var.as_tensor() * c.l2)?;
        let penalty = if table {
            // Rows looked up by the batch are those with a non-zero gradient.
            let used = g
                .abs()?
                .sum_keepdim(1)?
                .gt(0.0)?
                .to_dtype(penalty.dtype())?;
            penalty.broadcast_mul(&used)?
        } else {
            penalty
        };
        // The moments are plain state, not part of any graph: computed from the variable
        // (through the penalty) they would track an op chain back through every earlier
        // step and keep each step's tensors alive.
        let g = (g + penalty)?.detach();
        *m = ((&*m * c.beta1)? + (&g * (1.0 - c.beta1))?)?;
        *v = ((&*v * c.beta2)? + (g.sqr()? * (1.0 - c.beta2))?)?;
        let update = ((&*m / k.bias1)? / ((&*v / k.bias2)?.sqrt()? + c.eps)?)?;
        var.set(&(var.as_tensor() - (update * c.lr)?)?)?;
        Ok(())
    }

    /// [`Slot::update_ops`] in one pass over contiguous f32 CPU tensors, where the ops take
    /// about twenty (each allocating a tensor the size of the variable: most of an embedding
    /// table's step). Every value is computed as candle computes it — a scalar operand is
    /// candle's affine map `x·a + b` with `a`, `b` rounded to f32, so `x · s` is `x·s + 0` and
    /// `x + s` is `x·1 + s` — so the results are those of the ops to the bit. Returns `false`,
    /// changing nothing, where a tensor is elsewhere or not contiguous f32 (or a `table` is not a
    /// matrix).
    fn update_fused(&mut self, g: &Tensor, k: &Coefficients) -> Result<bool> {
        let Slot { var, m, v, table } = self;
        let table = *table;
        let shape = var.shape().clone();
        let row = match (table, shape.dims()) {
            (true, [_, d]) => (*d).max(1),
            (true, _) => return Ok(false),
            (false, _) => shape.elem_count().max(1),
        };
        let guards = [var.as_tensor(), &*m, &*v, g].map(|t| t.storage_and_layout());
        let slices: Option<Vec<&[f32]>> = guards
            .iter()
            .map(|(storage, layout)| match &**storage {
                Storage::Cpu(cpu) => cpu_ops::values(cpu, layout, "adam", "operand").ok(),
                _ => None,
            })
            .collect();
        let Some([theta, m0, v0, g0]) = slices.and_then(|s| <[&[f32]; 4]>::try_from(s).ok()) else {
            return Ok(false);
        };
        if [m0, v0, g0].iter().any(|x| x.len() != theta.len()) {
            return Ok(false);
        }
        let f = |x: f64| x as f32;
        let c = k.c;
        let (l2, b1, b2, one_b1, one_b2) = (
            f(c.l2),
            f(c.beta1),
            f(c.beta2),
            f(1.0 - c.beta1),
            f(1.0 - c.beta2),
        );
        let (inv_bias1, inv_bias2, eps, lr) =
            (f(1.0 / k.bias1), f(1.0 / k.bias2), f(c.eps), f(c.lr));
        let n = theta.len();
        let (mut theta1, mut m1, mut v1) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        cpu_ops::vectorized(
            #[inline(always)]
            || {
                let rows = theta
                    .chunks(row)
                    .zip(g0.chunks(row))
                    .zip(m0.chunks(row).zip(v0.chunks(row)))
                    .zip(theta1.chunks_mut(row))
                    .zip(m1.chunks_mut(row).zip(v1.chunks_mut(row)));
                for ((((th, gr), (mr, vr)), th1), (mr1, vr1)) in rows {
                    // A table's rows not looked up (gradient all zero) get no penalty; `· 1` is
                    // exact, so other variables take the same path.
                    let used = if !table || gr.iter().map(|x| x.abs()).sum::<f32>() > 0.0 {
                        1.0f32
                    } else {
                        0.0
                    };
                    let each = th.iter().zip(gr).zip(mr.iter().zip(vr));
                    let out = th1.iter_mut().zip(mr1.iter_mut().zip(vr1.iter_mut()));
                    for (((&th, &g), (&m, &v)), (th1, (m1, v1))) in each.zip(out) {
                        let g = g + (th * l2 + 0.0) * used;
                        let m = (m * b1 + 0.0) + (g * one_b1 + 0.0);
                        let v = (v * b2 + 0.0) + ((g * g) * one_b2 + 0.0);
                        let step =
                            (m * inv_bias1 + 0.0) / ((v * inv_bias2 + 0.0).sqrt() * 1.0 + eps);
                        *th1 = th - (step * lr + 0.0);
                        (*m1, *v1) = (m, v);
                    }
                }
            },
        );
        drop(guards);
        let device = var.device();
        *m = Tensor::from_vec(m1, shape.clone(), device)?;
        *v = Tensor::from_vec(v1, shape.clone(), device)?;
        var.set(&Tensor::from_vec(theta1, shape, device)?)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn adam_minimises_a_quadratic_and_l2_shrinks_the_optimum() {
        let run = |l2: f64| -> f32 {
            let x = Var::new(&[3.0f32], &Device::Cpu).unwrap();
            let mut opt = Adam::new(
                &[("x".to_owned(), x.clone())],
                AdamConfig {
                    lr: 0.05,
                    l2,
                    ..Default::default()
                },
            )
            .unwrap();
            for _ in 0..2000 {
                // (x − 1)²: optimum 1 without L2, 2/(2 + λ) with it.
                let loss = (x.as_tensor() - 1.0)
                    .unwrap()
                    .sqr()
                    .unwrap()
                    .sum_all()
                    .unwrap();
                opt.step(&loss.backward().unwrap()).unwrap();
            }
            x.as_tensor().to_vec1::<f32>().unwrap()[0]
        };
        assert!((run(0.0) - 1.0).abs() < 1e-2);
        assert!((run(1.0) - 2.0 / 3.0).abs() < 1e-2);
    }

    #[test]
    fn hyper_parameters_that_would_break_the_weights_are_refused() {
        let x = [("x".to_owned(), Var::new(&[3.0f32], &Device::Cpu).unwrap())];
        let d = AdamConfig::default();
        for bad in [
            AdamConfig { lr: f64::NAN, ..d },
            AdamConfig { lr: -1e-3, ..d },
            AdamConfig {
                lr: f64::INFINITY,
                ..d
            },
            AdamConfig { l2: -1.0, ..d },
            AdamConfig { eps: 0.0, ..d },
            AdamConfig { beta1: 1.0, ..d },
            AdamConfig { beta2: -0.1, ..d },
        ] {
            let err = Adam::new(&x, bad).unwrap_err().to_string();
            assert!(err.contains("Adam needs"), "{bad:?}: {err}");
        }
        assert!(Adam::new(
            &x,
            AdamConfig {
                lr: 0.0,
                l2: 0.0,
                ..d
            }
        )
        .is_ok());
    }

    #[test]
    fn the_moments_hold_no_graph_between_steps() {
        // A moment that tracked its op would chain every earlier step (memory grew by
        // hundreds of MB a second in a full training run).
        let x = Var::new(&[1.0f32, -2.0], &Device::Cpu).unwrap();
        let mut opt = Adam::new(&[("w".to_owned(), x.clone())], AdamConfig::default()).unwrap();
        for _ in 0..3 {
            let loss = x.as_tensor().sqr().unwrap().sum_all().unwrap();
            opt.step(&loss.backward().unwrap()).unwrap();
        }
        for slot in &opt.vars {
            assert!(!slot.m.track_op() && !slot.v.track_op());
        }
    }

    #[test]
    fn the_fused_update_equals_candles_ops_to_the_bit() {
        // A table with rows not looked up and a dense matrix; gradients with exact and negative
        // zeros, tiny and large values, over several steps (the bias corrections change).
        let (rows, d) = (7, 5);
        let values = |seed: u32| -> Vec<f32> {
            (0..rows * d)
                .map(|i| {
                    let x = ((i as u32).wrapping_mul(2_654_435_761) ^ seed) % 2001;
                    (x as f32 - 1000.0) * [1e-3, 1e-7, 3.0][i % 3]
                })
                .collect()
        };
        let cfg = AdamConfig {
            lr: 2e-3,
            l2: 1e-4,
            ..Default::default()
        };
        for table in [true, false] {
            let start = Tensor::from_vec(values(1), (rows, d), &Device::Cpu).unwrap();
            let slot = || Slot {
                var: Var::from_tensor(&start).unwrap(),
                m: start.zeros_like().unwrap(),
                v: start.zeros_like().unwrap(),
                table,
            };
            let (mut a, mut b) = (slot(), slot());
            for t in 1..=4 {
                let mut g = values(t as u32 * 77);
                g[2 * d..3 * d].fill(0.0);
                g[4 * d..5 * d].fill(-0.0);
                g[5 * d] = -0.0;
                let g = Tensor::from_vec(g, (rows, d), &Device::Cpu).unwrap();
                let k = Coefficients::new(cfg, t);
                assert!(a.update_fused(&g, &k).unwrap());
                b.update_ops(&g, &k).unwrap();
                for (x, y) in [
                    (a.var.as_tensor(), b.var.as_tensor()),
                    (&a.m, &b.m),
                    (&a.v, &b.v),
                ] {
                    let bits = |t: &Tensor| -> Vec<u32> {
                        let v: Vec<f32> = t.flatten_all().unwrap().to_vec1().unwrap();
                        v.iter().map(|x| x.to_bits()).collect()
                    };
                    assert_eq!(bits(x), bits(y), "table {table}, step {t}");
                }
            }
            let untouched: Vec<f32> = a.var.as_tensor().get(2).unwrap().to_vec1().unwrap();
            let first: Vec<f32> = start.get(2).unwrap().to_vec1().unwrap();
            assert_eq!(
                untouched == first,
                table,
                "an unused row stays put in a table only"
            );
        }
    }

    #[test]
    fn embedding_rows_outside_the_batch_are_not_decayed() {
        let table = Var::new(&[[1.0f32, 1.0], [1.0, 1.0]], &Device::Cpu).unwrap();
        let named = [("item_emb".to_owned(), table.clone())];
        let mut opt = Adam::new(
            &named,
            AdamConfig {
                lr: 0.1,
                l2: 1.0,
                ..Default::default()
            },
        )
        .unwrap();
        let ids = Tensor::new(&[0u32], &Device::Cpu).unwrap();
        let loss = table
            .as_tensor()
            .index_select(&ids, 0)
            .unwrap()
            .sum_all()
            .unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
        let rows: Vec<Vec<f32>> = table.as_tensor().to_vec2().unwrap();
        assert!(rows[0][0] < 1.0, "the looked-up row moves");
        assert_eq!(rows[1], [1.0, 1.0], "the untouched row keeps its value");
    }
}
