//! Runs the protocol for several models over several seeds and collects [`Results`].
//!
//! For each seed: candidates are sampled once (the same for every model), each model is fitted
//! with that seed and scored on every case.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use indexmap::IndexMap;
use indicatif::{ProgressBar, ProgressStyle};

use super::curves::{curves, Curve};
use super::metrics::METRICS;
use super::protocol::evaluate;
use super::report::{Protocol, Results};
use super::resume::{SeedOutcome, SeedStore};
use super::sampler::{sample_cases, NEGATIVES};
use crate::baselines::{Zoo, ZooConfig};
use crate::data::{filter, Dataset};
use crate::error::{Result, TrainerError};
use crate::models::train::{Job, TrainConfig};

/// Evaluates `models` on `data` for each seed, one seed at a time.
pub fn run(data: &Dataset, models: &[String], seeds: &[u64], config: ZooConfig) -> Result<Results> {
    Ok(run_with_curves(data, models, seeds, config, 1, None)?.0)
}

/// [`run`] with up to `jobs` seeds evaluated at once (each seed trains its own models, so seeds
/// are independent; the results do not depend on `jobs`), also returning the training curves
/// of every model and seed. With a `store`, seeds it holds are reused and each seed is saved
/// as soon as it finishes (see [`super::resume`]).
pub fn run_with_curves(
    data: &Dataset,
    models: &[String],
    seeds: &[u64],
    config: ZooConfig,
    jobs: usize,
    store: Option<&SeedStore>,
) -> Result<(Results, Vec<Curve>)> {
    let bar = ProgressBar::new((models.len() * seeds.len()) as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} eval [{bar:30}] {pos}/{len} {msg} ({eta})")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (next, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
    let outcomes: Vec<Option<Result<SeedOutcome>>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..jobs.clamp(1, seeds.len().max(1)))
            .map(|_| {
                scope.spawn(|| {
                    let mut done = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        let Some(&seed) = seeds.get(k) else {
                            return done;
                        };
                        let rerun = store.map_or(&[][..], SeedStore::rerun);
                        let outcome = match store.and_then(|s| s.load(seed)) {
                            Some(saved) if rerun.is_empty() => {
                                bar.inc(models.len() as u64);
                                Ok(saved)
                            }
                            saved => {
                                let keep = saved.map(|s| (s, rerun));
                                let _job = Job::start();
                                run_seed(data, models, seed, config, &bar, keep).and_then(|o| {
                                    store.map_or(Ok(()), |s| s.save(seed, &o))?;
                                    Ok(o)
                                })
                            }
                        };
                        if outcome.is_err() {
                            // Seeds are taken in order, so the first error comes before
                            // any seed left unevaluated: the others finish theirs and stop.
                            stop.store(true, Ordering::Relaxed);
                        }
                        done.push((k, outcome));
                        if stop.load(Ordering::Relaxed) {
                            return done;
                        }
                    }
                })
            })
            .collect();
        let mut slots: Vec<Option<Result<SeedOutcome>>> = seeds.iter().map(|_| None).collect();
        for worker in workers {
            let done = worker
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            for (k, outcome) in done {
                slots[k] = Some(outcome);
            }
        }
        slots
    });
    bar.finish_and_clear();
    let mut per_model: IndexMap<String, Vec<[f64; METRICS.len()]>> =
        models.iter().map(|m| (m.clone(), Vec::new())).collect();
    let mut cases_per_seed = 0;
    let mut all_curves = Vec::new();
    for (seed, outcome) in seeds.iter().zip(outcomes) {
        let (rows, cases, curves) = outcome
            .ok_or_else(|| TrainerError::Data(format!("seed {seed} was not evaluated")))??;
        for (model_rows, row) in per_model.values_mut().zip(rows) {
            model_rows.push(row);
        }
        cases_per_seed = cases;
        all_curves.extend(curves);
    }
    let results = Results {
        dataset: data.name.clone(),
        protocol: protocol(data, cases_per_seed, &config.train),
        seeds: seeds.to_vec(),
        models: per_model
            .into_iter()
            .map(|(name, rows)| (name, Results::model_entry(&rows)))
            .collect(),
        command: String::new(),
    };
    Ok((results, all_curves))
}

/// One seed: candidates sampled once (the same for every model), each model fitted with the
/// seed and scored on every case. With `keep` (a saved outcome of this seed and the models to
/// evaluate again), only those models are trained and scored; the others keep their saved
/// rows and curves.
fn run_seed(
    data: &Dataset,
    models: &[String],
    seed: u64,
    config: ZooConfig,
    bar: &ProgressBar,
    keep: Option<(SeedOutcome, &[String])>,
) -> Result<SeedOutcome> {
    let split = &data.split;
    let cases = sample_cases(split, seed, NEGATIVES, config.train.negative_pool)?;
    let mut zoo = Zoo::new(split, seed, config);
    let mut rows = Vec::with_capacity(models.len());
    for (k, name) in models.iter().enumerate() {
        if let Some(((saved, _, _), rerun)) = &keep {
            if !rerun.contains(name) {
                rows.push(saved[k]);
                bar.inc(1);
                continue;
            }
        }
        bar.set_message(format!("{name} seed {seed}"));
        let model = zoo.scorer(name)?;
        let sums = evaluate(split, &cases, model.as_ref(), |_| bar.tick())?;
        rows.push(sums.means());
        bar.inc(1);
        tracing::info!(model = name.as_str(), seed, "evaluated");
    }
    let fresh = curves(seed, &zoo.logs);
    let all_curves = match keep {
        None => fresh,
        Some(((_, _, saved), rerun)) => {
            // A curve is labelled "<model> seed <s>…": the re-run models' curves are replaced.
            let rerun_model = |c: &Curve| {
                let model = c.label.split(" seed ").next().unwrap_or_default();
                rerun.iter().any(|m| m == model)
            };
            let kept = saved.into_iter().filter(|c| !rerun_model(c));
            kept.chain(fresh.into_iter().filter(rerun_model)).collect()
        }
    };
    Ok((rows, cases.len(), all_curves))
}

/// The protocol description written with the results.
fn protocol(data: &Dataset, cases_per_seed: usize, train: &TrainConfig) -> Protocol {
    let max_valid = train.max_valid;
    let rates = train.rates();
    let choice =
        match rates.as_slice() {
            [_] => String::new(),
            _ => {
                format!(
            "; each fit runs once per learning rate ({}) from the same start and keeps the \
             best validation epoch of all",
            rates.iter().map(|r| format!("{r:e}")).collect::<Vec<_>>().join(", ")
        )
            }
        };
    Protocol {
        min_interactions: filter::MIN_INTERACTIONS,
        split: "per user by time (stable on ties): last 5 clicks = test, clicks l-9..l-5 = fast \
                training, the rest = slow training; exposures follow the same cut-offs"
            .into(),
        negatives: NEGATIVES,
        negative_sampling: format!(
            "99 {}, uniform without replacement, fixed per (seed, user, case)",
            train.negative_pool.describe()
        ),
        ties: "pessimistic: negatives scoring >= the positive rank above it".into(),
        slow_view: "the slow-training phase only, with the negative memory r̂2 (F2S) the device \
                    uploaded when the fast phase ended (every exposure before the test phase)"
            .into(),
        fast_view: "every event strictly earlier in time than the target (real time; events \
                    of the same second are simultaneous and do not see each other)"
            .into(),
        training: "each component in its own phase (paper §5.1.1): the slow side (Caser, \
                   SASRec, DIN, DIN w/ F2S) on the slow phase, the fast side (FM, NeuMF, \
                   GRU4Rec, DIN+X, MC2-SF) on the fast phase; rows ending in + (beyond the \
                   paper) also on the slow phase's clicks with their real-time windows"
            .into(),
        validation: format!(
            "early stopping on NDCG@10 of the first {max_valid} users' last click of the \
             phase a fit trains on (held out of training, against 99 items drawn from the \
             same pool as the test negatives, as far as visible before it); the other users' \
             last clicks train{choice}"
        ),
        spread: "sample standard deviation (n-1) of per-seed means".into(),
        users: data.split.timelines.len(),
        items: data.split.num_items,
        cases_per_seed,
    }
}
