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
use candle_core::{Tensor, Var};

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
    /// (variable, first moment, second moment, is an embedding table).
    vars: Vec<(Var, Tensor, Tensor, bool)>,
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
                Ok((v.clone(), zeros.clone(), zeros, name.ends_with("_emb")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Adam { vars, t: 0, cfg })
    }

    /// One update from the gradients of the loss; variables without a gradient are left alone.
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        self.t += 1;
        let c = self.cfg;
        let bias1 = 1.0 - c.beta1.powi(self.t);
        let bias2 = 1.0 - c.beta2.powi(self.t);
        for (var, m, v, table) in &mut self.vars {
            let Some(g) = grads.get(var.as_tensor()) else {
                continue;
            };
            let penalty = (var.as_tensor() * c.l2)?;
            let penalty = if *table {
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
            let update = ((&*m / bias1)? / ((&*v / bias2)?.sqrt()? + c.eps)?)?;
            var.set(&(var.as_tensor() - (update * c.lr)?)?)?;
        }
        Ok(())
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
        for (_, m, v, _) in &opt.vars {
            assert!(!m.track_op() && !v.track_op());
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
