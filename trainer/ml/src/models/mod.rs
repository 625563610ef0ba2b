//! The MC²-SF models (paper §4, docs/architecture.md §3) and their training (Algorithm 1), in candle.
//!
//! Parameter names (the export issue and checkpoints depend on them): `item_emb` (N×d),
//! `gru_n.{weight_ih,weight_hh,bias_ih,bias_hh}` (shared by both components), `slow.*`
//! ([`slow::SlowNet`]) and `fast.*` ([`fast::FastNet`]).

mod cpu_ops;
pub mod denormals;
pub mod fast;
pub mod features;
pub mod grad_mode;
pub mod layers;
pub mod optim;
pub mod slow;
pub mod slowfast;
pub mod train;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use self::features::{Batch, Needs, Padded, Windows};
use self::layers::{embed, Gru};
use crate::error::Result;

/// Sizes shared by every model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Embedding size d (paper: 32 for every model).
    pub dim: usize,
    /// Hidden sizes of the 3-layer MLPs.
    pub hidden: [usize; 2],
    pub windows: Windows,
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            dim: 32,
            hidden: [64, 32],
            windows: Windows::default(),
        }
    }
}

/// Parameters both components use: the item embeddings `e_i` that the cloud sends with every
/// candidate, and GRU_n (eq. 3 and 5), whose last state over the exposures is `r̂2`.
#[derive(Clone, Debug)]
pub struct Shared {
    pub item_emb: Tensor,
    pub gru_n: Gru,
}

impl Shared {
    pub fn new(vb: VarBuilder, num_items: usize, d: usize) -> Result<Shared> {
        let init = candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 0.1,
        };
        Ok(Shared {
            item_emb: vb.get_with_hints((num_items, d), "item_emb", init)?,
            gru_n: Gru::new(vb.pp("gru_n"), d, d)?,
        })
    }

    /// The negative memory `r̂2` of each moment: GRU_n's last state over its slow-phase
    /// exposures, from a zero state (what the device uploads; eq. 5).
    pub fn neg_memory(&self, batch: &Batch) -> Result<Tensor> {
        let w = batch.window(&batch.neg_memory, "negative-memory")?;
        let x = embed(&self.item_emb, &w.ids)?;
        let h0 = Tensor::zeros((x.dim(0)?, self.gru_n.hidden()), DType::F32, x.device())?;
        self.gru_n.forward(&x, &w.mask, &h0)
    }
}

/// The variables of `varmap` whose names start with one of `prefixes` (all of them for an
/// empty list), in name order: what an optimiser steps and a checkpoint saves.
pub fn named_vars(
    varmap: &candle_nn::VarMap,
    prefixes: &[&str],
) -> Vec<(String, candle_core::Var)> {
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut named: Vec<(String, candle_core::Var)> = data
        .iter()
        .filter(|(n, _)| prefixes.is_empty() || prefixes.iter().any(|p| n.starts_with(p)))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect();
    named.sort_by(|a, b| a.0.cmp(&b.0));
    named
}

/// A model the training loop can fit: it names its windows and scores rows.
/// `Sync`: the shards of a batch run on several threads ([`train`]).
pub trait Net: Sync {
    fn needs(&self) -> Needs;
    /// (B, 1) logits for the rows of `batch`.
    fn logits(&self, batch: &Batch) -> Result<Tensor>;
    /// The model as a [`SequenceNet`] when it trains on whole click sequences; `None` (the
    /// default) trains it on one positive per moment.
    fn sequence(&self) -> Option<&dyn SequenceNet> {
        None
    }
}

/// A model that reads a click sequence causally and trains on every position at once, as
/// SASRec does (Kang & McAuley 2018, §III-E): the output at each position predicts the next
/// click, so one pass over a sequence of `n` clicks gives `n` training targets.
pub trait SequenceNet: Sync {
    /// The longest input sequence (the model's history window `n`).
    fn window(&self) -> usize;
    /// The output at every position of the right-padded `inputs`, (M, T, d); position `k`
    /// sees clicks `0..=k` only.
    fn states(&self, inputs: &Padded) -> Result<Tensor>;
    /// (R, 1) logits of `items` (R) against the outputs `states` (R, d).
    fn score(&self, states: &Tensor, items: &Tensor) -> Result<Tensor>;
}

/// Re-initialises every variable of `varmap` from a seeded RNG so that training is
/// reproducible (candle's CPU initialisers draw from an unseeded RNG). Linear and GRU weights
/// and biases follow PyTorch's defaults, `U(±1/√fan_in)`; layer norms start at gain 1 and
/// shift 0; embedding tables draw `N(0, 0.1²)`, smaller than PyTorch's `nn.Embedding` default
/// `N(0, 1)` (a scale of 0.5 made DIN's early epochs faster on the synthetic log but not its
/// final fit at the tables' flags: `docs/results/training-choices.md`).
pub fn seed_init(varmap: &candle_nn::VarMap, seed: u64) -> Result<()> {
    use rand::{Rng, SeedableRng};
    let data = varmap.data().lock().unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for name in names {
        let var = &data[name];
        let dims = var.dims().to_vec();
        let n = var.elem_count();
        let values: Vec<f32> = if let Some(one) = layer_norm_value(name) {
            vec![one; n]
        } else if name.ends_with("item_emb") || name.ends_with("_emb") {
            let normal = rand_distr::Normal::new(0.0f32, 0.1)
                .map_err(|e| crate::TrainerError::InvalidArgument(e.to_string()))?;
            (0..n).map(|_| rng.sample(normal)).collect()
        } else {
            let fan_in = fan_in(&data, name, &dims);
            let k = 1.0 / (fan_in.max(1) as f32).sqrt();
            (0..n).map(|_| rng.random_range(-k..=k)).collect()
        };
        var.set(&Tensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

/// Layer norms (a path segment `ln*`) start as the identity: gain 1, shift 0.
fn layer_norm_value(name: &str) -> Option<f32> {
    let mut parts = name.rsplit('.');
    let leaf = parts.next()?;
    if !parts.next()?.starts_with("ln") {
        return None;
    }
    match leaf {
        "weight" => Some(1.0),
        "bias" => Some(0.0),
        _ => None,
    }
}

/// The fan-in of a weight (its input size) or of a bias (its layer's input size).
fn fan_in(
    data: &std::collections::HashMap<String, candle_core::Var>,
    name: &str,
    dims: &[usize],
) -> usize {
    if name.ends_with("weight_ih")
        || name.ends_with("weight_hh")
        || name.ends_with("bias_ih")
        || name.ends_with("bias_hh")
    {
        return dims[0] / 3; // GRU: U(±1/√H)
    }
    if dims.len() >= 2 {
        return dims[1];
    }
    let weight = format!("{}weight", name.trim_end_matches("bias"));
    data.get(&weight)
        .map_or(dims[0], |w| w.dims().get(1).copied().unwrap_or(1))
}

/// The device every model trains on: CPU, or the first CUDA GPU with the `cuda` feature.
pub fn device() -> Result<Device> {
    #[cfg(feature = "cuda")]
    {
        return Ok(Device::new_cuda(0)?);
    }
    #[cfg(not(feature = "cuda"))]
    Ok(Device::Cpu)
}

/// Checks and fixtures shared by the models' tests.
#[cfg(test)]
pub(crate) mod testing {
    use candle_core::{Tensor, Var};

    use crate::error::Result;

    /// The bit patterns of `v`: for results that must be identical, not merely close.
    pub fn bits(v: Vec<f32>) -> Vec<u32> {
        v.into_iter().map(f32::to_bits).collect()
    }

    pub fn max_abs_diff(a: &Tensor, b: &Tensor) -> Result<f32> {
        Ok((a - b)?.abs()?.flatten_all()?.max(0)?.to_scalar::<f32>()?)
    }

    /// `ours` and the reference `theirs` agree within `tol` in value and in the gradient of
    /// `Σ probe ⊙ out` with respect to every one of `vars`.
    pub fn assert_same_op(
        ours: &Tensor,
        theirs: &Tensor,
        probe: &Tensor,
        vars: &[&Var],
        tol: f32,
    ) -> Result<()> {
        assert!(max_abs_diff(ours, theirs)? <= tol, "values differ");
        let g1 = (ours * probe)?.sum_all()?.backward()?;
        let g2 = (theirs * probe)?.sum_all()?.backward()?;
        for v in vars {
            let (Some(a), Some(b)) = (g1.get(v), g2.get(v)) else {
                panic!("a gradient is missing");
            };
            assert!(max_abs_diff(a, b)? <= tol, "gradients differ");
        }
        Ok(())
    }

    /// A one-user split: user `u` clicks item `c{k}` at time `2k` and is shown `x{k}` without a
    /// click at `2k + 1`, for `k < clicks`.
    pub fn alternating(clicks: i64) -> slowfast_data::split::Split {
        let mut log = slowfast_data::EventLog::default();
        for k in 0..clicks {
            log.push_raw(
                "u",
                &format!("c{k}"),
                2 * k,
                slowfast_data::EventKind::Click,
            );
            log.push_raw(
                "u",
                &format!("x{k}"),
                2 * k + 1,
                slowfast_data::EventKind::Exposure,
            );
        }
        slowfast_data::split::Split::new(&log)
    }
}
