//! Runs the protocol for several models over several seeds and collects [`Results`].
//!
//! For each seed: candidates are sampled once (the same for every model), each model is fitted
//! with that seed and scored on every case.

use indexmap::IndexMap;
use indicatif::{ProgressBar, ProgressStyle};

use super::curves::{curves, Curve};
use super::metrics::METRICS;
use super::protocol::evaluate;
use super::report::{Protocol, Results};
use super::sampler::{sample_cases, NEGATIVES};
use crate::baselines::{Zoo, ZooConfig};
use crate::data::{filter, Dataset};
use crate::error::Result;

/// Evaluates `models` on `data` for each seed.
pub fn run(data: &Dataset, models: &[String], seeds: &[u64], config: ZooConfig) -> Result<Results> {
    Ok(run_with_curves(data, models, seeds, config)?.0)
}

/// [`run`], also returning the training curves of every model and seed.
pub fn run_with_curves(
    data: &Dataset,
    models: &[String],
    seeds: &[u64],
    config: ZooConfig,
) -> Result<(Results, Vec<Curve>)> {
    let split = &data.split;
    let mut per_model: IndexMap<String, Vec<[f64; METRICS.len()]>> =
        models.iter().map(|m| (m.clone(), Vec::new())).collect();
    let mut cases_per_seed = 0;
    let mut all_curves = Vec::new();
    let bar = ProgressBar::new((models.len() * seeds.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} eval [{bar:30}] {pos}/{len} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    for &seed in seeds {
        let cases = sample_cases(split, seed, NEGATIVES)?;
        cases_per_seed = cases.len();
        let mut zoo = Zoo::new(split, seed, config);
        for (name, rows) in per_model.iter_mut() {
            bar.set_message(format!("{name} seed {seed}"));
            let model = zoo.scorer(name)?;
            let sums = evaluate(split, &cases, model.as_ref(), |_| bar.tick())?;
            rows.push(sums.means());
            bar.inc(1);
        }
        all_curves.extend(curves(seed, &zoo.logs));
    }
    bar.finish_and_clear();
    let results = Results {
        dataset: data.name.clone(),
        protocol: protocol(data, cases_per_seed),
        seeds: seeds.to_vec(),
        models: per_model
            .into_iter()
            .map(|(name, rows)| (name, Results::model_entry(&rows)))
            .collect(),
        command: String::new(),
    };
    Ok((results, all_curves))
}

/// The protocol description written with the results.
fn protocol(data: &Dataset, cases_per_seed: usize) -> Protocol {
    Protocol {
        min_interactions: filter::MIN_INTERACTIONS,
        split: "per user by time (stable on ties): last 5 clicks = test, clicks l-9..l-5 = fast \
                training, the rest = slow training; exposures follow the same cut-offs"
            .into(),
        negatives: NEGATIVES,
        negative_sampling: "99 items the user never interacted with (any phase, clicks or \
                            exposures), uniform without replacement, fixed per (seed, user, case)"
            .into(),
        ties: "pessimistic: negatives scoring >= the positive rank above it".into(),
        slow_view: "the slow-training phase only".into(),
        fast_view: "every event before the target (real time)".into(),
        spread: "sample standard deviation (n-1) of per-seed means".into(),
        users: data.split.timelines.len(),
        items: data.split.num_items,
        cases_per_seed,
    }
}
