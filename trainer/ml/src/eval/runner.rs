//! Runs the protocol for several models over several seeds and collects [`Results`].
//!
//! For each seed: candidates are sampled once (the same for every model), each model is fitted
//! with that seed and scored on every case, and on the cases of a fixed subsample of users
//! against the whole catalogue (see [`super::full`]). Every model's per-case ranks are kept,
//! so the differences the report states come with paired-bootstrap intervals over users (see
//! [`super::bootstrap`]).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use indexmap::IndexMap;
use indicatif::{ProgressBar, ProgressStyle};

use super::bootstrap::{self, Paired};
use super::curves::{curves, Curve};
use super::full::{self, chosen_cases, chosen_timelines, full_ranks};
use super::report::{stated_pairs, Difference, Protocol, Results};
use super::resume::{CaseRanks, SeedOutcome, SeedStore};
use crate::baselines::{Zoo, ZooConfig};
use crate::error::{Result, TrainerError};
use crate::models::train::TrainConfig;
use slowfast_data::parallel::Job;
use slowfast_data::protocol::metrics::{Ranking, COLUMNS};
use slowfast_data::protocol::ranks;
use slowfast_data::protocol::sampler::{sample_cases, NEGATIVES};
use slowfast_data::{filter, Dataset};

/// Evaluates `models` on `data` for each seed, one seed at a time, with the cases of
/// [`full::DEFAULT_USERS`] users ranked in full.
pub fn run(data: &Dataset, models: &[String], seeds: &[u64], config: ZooConfig) -> Result<Results> {
    Ok(run_with_curves(data, models, seeds, config, full::DEFAULT_USERS, 1, None)?.0)
}

/// [`run`] with the cases of `full_users` users ranked in full and up to `jobs` seeds
/// evaluated at once (each seed trains its own models, so seeds are independent; the results
/// do not depend on `jobs`), also returning the training curves of every model and seed. With
/// a `store` (made for the same `full_users`), seeds it holds are reused and each seed is saved
/// as soon as it finishes (see [`super::resume`]).
pub fn run_with_curves(
    data: &Dataset,
    models: &[String],
    seeds: &[u64],
    config: ZooConfig,
    full_users: usize,
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
                                let seed_run = SeedRun {
                                    data,
                                    models,
                                    seed,
                                    config,
                                    full_users,
                                };
                                seed_run.run(&bar, keep).and_then(|o| {
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
    let mut done = Vec::with_capacity(seeds.len());
    for (seed, outcome) in seeds.iter().zip(outcomes) {
        done.push(
            outcome.ok_or_else(|| {
                TrainerError::Unusable(format!("seed {seed} was not evaluated"))
            })??,
        );
    }
    let models_means: IndexMap<String, Vec<[f64; COLUMNS.len()]>> = (models.iter().enumerate())
        .map(|(k, m)| (m.clone(), done.iter().map(|o| o.ranks[k].means()).collect()))
        .collect();
    let differences = differences(&models_means, &done)?;
    let (cases, full_cases) = done
        .last()
        .map_or((0, 0), |o| (o.users.len(), o.full_cases.len()));
    let full_users = chosen_timelines(&data.split, full_users).len();
    let results = Results {
        dataset: data.name.clone(),
        protocol: protocol(data, (cases, full_users, full_cases), &config.train),
        seeds: seeds.to_vec(),
        models: models_means
            .iter()
            .map(|(name, rows)| (name.clone(), Results::model_entry(rows)))
            .collect(),
        differences,
        command: String::new(),
    };
    let all_curves = done.into_iter().flat_map(|o| o.curves).collect();
    Ok((results, all_curves))
}

/// The differences the report states in each column (see [`stated_pairs`]), each with its
/// paired-bootstrap interval over users, every seed's cases pooled.
fn differences(
    means: &IndexMap<String, Vec<[f64; COLUMNS.len()]>>,
    outcomes: &[SeedOutcome],
) -> Result<IndexMap<String, Vec<Difference>>> {
    let cases_of = |o: &SeedOutcome, ranking| match ranking {
        Ranking::Sampled => o.users.clone(),
        Ranking::Full => (o.full_cases.iter())
            .map(|&k| o.users[k as usize])
            .collect::<Vec<_>>(),
    };
    let mut out = IndexMap::new();
    for ranking in [Ranking::Sampled, Ranking::Full] {
        let users: Vec<u32> = outcomes.iter().flat_map(|o| cases_of(o, ranking)).collect();
        if users.is_empty() || means.len() < 2 {
            continue;
        }
        let boot = Paired::new(&users, bootstrap::RESAMPLES, bootstrap::SEED)?;
        for (j, column) in COLUMNS.iter().enumerate() {
            if column.ranking != ranking {
                continue;
            }
            // Per-case values of each model, seeds in order.
            let values: Vec<Vec<f64>> = (0..means.len())
                .map(|k| {
                    (outcomes.iter())
                        .flat_map(|o| o.ranks[k].of(ranking))
                        .map(|&r| column.metric.at_rank(r as usize))
                        .collect()
                })
                .collect();
            let column_means: Vec<(&str, f64)> = (means.iter())
                .map(|(m, rows)| {
                    let sum: f64 = rows.iter().map(|r| r[j]).sum();
                    (m.as_str(), sum / rows.len() as f64)
                })
                .collect();
            let index = |name: &str| {
                means
                    .get_index_of(name)
                    .ok_or_else(|| TrainerError::Unusable(format!("no ranks of {name} to compare")))
            };
            let mut stated = Vec::new();
            for (a, b) in stated_pairs(&column_means) {
                let interval = boot.interval(&values[index(a)?], &values[index(b)?])?;
                stated.push(Difference::new(a, b, interval));
            }
            out.insert(column.name(), stated);
        }
    }
    Ok(out)
}

/// One seed's evaluation of every model.
struct SeedRun<'a> {
    data: &'a Dataset,
    models: &'a [String],
    seed: u64,
    config: ZooConfig,
    full_users: usize,
}

impl SeedRun<'_> {
    /// Candidates sampled once (the same for every model), each model fitted with the seed
    /// and ranked on every case, and on the chosen users' cases against the whole catalogue.
    /// With `keep` (a saved outcome of this seed and the models to evaluate again), only those
    /// models are trained and ranked; the others keep their saved ranks and curves.
    fn run(
        &self,
        bar: &ProgressBar,
        keep: Option<(SeedOutcome, &[String])>,
    ) -> Result<SeedOutcome> {
        let (split, seed) = (&self.data.split, self.seed);
        let cases = sample_cases(split, seed, NEGATIVES, self.config.train.negative_pool)?;
        let users: Vec<u32> = (cases.iter())
            .map(|c| split.timelines[c.timeline].user)
            .collect();
        let full_cases = chosen_cases(&cases, &chosen_timelines(split, self.full_users));
        if let Some((saved, _)) = &keep {
            if saved.users != users || saved.full_cases != full_cases {
                return Err(TrainerError::Unusable(format!(
                    "the saved seed {seed} has other test cases than this build samples: \
                     evaluate it whole (without --rerun)"
                )));
            }
        }
        let mut zoo = Zoo::new(split, seed, self.config);
        let mut all_ranks = Vec::with_capacity(self.models.len());
        for (k, name) in self.models.iter().enumerate() {
            if let Some((saved, rerun)) = &keep {
                if !rerun.contains(name) {
                    all_ranks.push(saved.ranks[k].clone());
                    bar.inc(1);
                    continue;
                }
            }
            bar.set_message(format!("{name} seed {seed}"));
            let start = Instant::now();
            let model = zoo.scorer(name)?;
            let train_s = start.elapsed().as_secs_f64();
            let start = Instant::now();
            let sampled = ranks(split, &cases, model.as_ref(), |_| bar.tick())?;
            let sampled_s = start.elapsed().as_secs_f64();
            bar.set_message(format!("{name} seed {seed}, full ranking"));
            let full = full_ranks(split, &cases, &full_cases, model.as_ref(), |_| bar.tick())?;
            let full_s = start.elapsed().as_secs_f64() - sampled_s;
            all_ranks.push(CaseRanks { sampled, full });
            bar.inc(1);
            tracing::info!(
                model = name.as_str(),
                seed,
                train_s,
                sampled_s,
                full_s,
                "evaluated (seconds training, ranking the sampled cases and the full ones)"
            );
        }
        let fresh = curves(seed, &zoo.logs);
        let all_curves = match keep {
            None => fresh,
            Some((saved, rerun)) => {
                // A curve is labelled "<model> seed <s>…": the re-run models' curves are replaced.
                let rerun_model = |c: &Curve| {
                    let model = c.label.split(" seed ").next().unwrap_or_default();
                    rerun.iter().any(|m| m == model)
                };
                let kept = saved.curves.into_iter().filter(|c| !rerun_model(c));
                kept.chain(fresh.into_iter().filter(rerun_model)).collect()
            }
        };
        Ok(SeedOutcome {
            users,
            full_cases,
            ranks: all_ranks,
            curves: all_curves,
        })
    }
}

/// The protocol description written with the results; `cases` per seed: every test case, the
/// users ranked in full and their cases.
fn protocol(data: &Dataset, cases: (usize, usize, usize), train: &TrainConfig) -> Protocol {
    let (cases_per_seed, full_users, full_cases) = cases;
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
        full_ranking: match full_cases {
            0 => "not measured (--full-ranking-users 0)".into(),
            _ => format!(
                "full HR@10 and full NDCG@10 rank the positive against every item the user did \
                 not click before the target (the positive kept), ties pessimistic, for the \
                 {full_cases} test cases of {full_users} of the {} users (drawn once with a \
                 fixed seed, the same for every seed and model; --full-ranking-users); sampled \
                 metrics can order models differently from the full ranking (Krichene & Rendle, \
                 KDD 2020)",
                data.split.timelines.len()
            ),
        },
        significance: format!(
            "each stated difference mean(A) - mean(B) comes with the {:.0} % percentile interval \
             of a paired bootstrap over users: {} resamples of the users with replacement \
             (fixed seed), each user's cases of every seed drawn together, both models read on \
             the same resamples; significant when the interval excludes 0",
            bootstrap::LEVEL * 100.0,
            bootstrap::RESAMPLES
        ),
        users: data.split.timelines.len(),
        items: data.split.num_items,
        cases_per_seed,
    }
}
