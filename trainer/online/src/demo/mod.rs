//! `slowfast demo`: the slow-fast loop running online on the synthetic default
//! (docs/architecture.md §1 and §8).
//!
//! Per seed ([`DemoConfig::seeds`]; seed `s` draws the world and its log from
//! `synth.seed + s − train.seed` and trains from seed `s`):
//!
//! 1. Generate the synthetic world and its logged history; train MC²-SF (Algorithm 1) on it;
//!    export a bundle and verify it (hashes, shapes, candle/ort/tract parity). The world then
//!    runs with a live feed's dynamics ([`DemoConfig::dynamics`], `synth::Dynamics`): new items
//!    arrive each day, a liked item may be clicked again after a day, fatigue wears off.
//! 2. Per arm ([`slowfast_trainer::arms`]): start the sync server on loopback with an embedded SQLite store
//!    ([`cloud`]) holding the simulated users' logged history, and open one
//!    `slowfast_core::SlowFast` engine per planted user, each with its own store ([`devices`]).
//! 3. Each simulated day every phone visits the app `visits_per_day` times (feed → re-rank →
//!    show the top 10 → the planted user browses → record → sync on the thresholds) and uploads
//!    what is pending at the end of the day.
//! 4. After each day but the last, the server adds the day's new items to the model's
//!    vocabulary (`Checkpoint::extend_items`: a new item is not served before that, the server
//!    has no embedding for it), trains the next round of Algorithm 1 from what the devices
//!    uploaded ([`crate::retrain`], as `slowfast train --from-db`), verifies and swaps in the
//!    new bundle; the phones pick it up with a conditional GET (`update_model`).
//! 5. Report CTR@10 and NDCG@10 against the planted preferences per day and arm, mean ± sd
//!    over the seeds, and each arm's CTR@10 lift over slow only with a 95 % paired bootstrap
//!    interval ([`report`], [`ab`]).
//!
//! Every arm runs the same users from the same state with the same random streams and starts
//! from the same bundle; each arm's server retrains only on its own arm's uploads.

pub mod ab;
pub mod cloud;
pub mod devices;
pub mod metrics;
pub mod report;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::error::{OnlineError, Result};
use crate::retrain::{export_verified, NextRound};
use cloud::Cloud;
use devices::{item_id, world_item, Link, Phone, Visit};
use report::{DayRow, Online, SeedRun, Tally, UserCounts};
use slowfast_core::Cancel;
use slowfast_data::synth::{self, Dynamics, SynthConfig, World};
use slowfast_data::FileError;
use slowfast_data::{Dataset, EventKind, EventLog};
use slowfast_feed::retrieval::Retrieval;
use slowfast_server::auth::Secret;
use slowfast_trainer::arms::Arm;
use slowfast_trainer::checkpoint::{
    source_commit, Checkpoint, CheckpointConfig, NewItem, Vocabulary, FORMAT_VERSION,
};
use slowfast_trainer::models::slowfast::Variant;
use slowfast_trainer::models::train::{TrainConfig, Validation};
use slowfast_trainer::models::ModelConfig;

/// Everything the demo does, sized to finish in minutes on two cores by default.
#[derive(Clone, Debug)]
pub struct DemoConfig {
    /// Where the checkpoints, bundles, server databases and reports go.
    pub out: PathBuf,
    /// The synthetic world and its logged history (the initial training data) of the first
    /// seed; seed `k` after it draws from `synth.seed + k`.
    pub synth: SynthConfig,
    /// The world's online dynamics (new items, revisits, fatigue recovery).
    pub dynamics: Dynamics,
    /// Seeds run, from `train.seed` on: each one a world, a log, an initial training and the
    /// users' random draws of its own.
    pub seeds: usize,
    /// Simulated phones per arm: world users `0..devices`.
    pub devices: usize,
    pub days: usize,
    pub visits_per_day: usize,
    /// Candidates per feed (`GET /v1/feed?k=`); the app shows the top 10 of them.
    pub feed_k: usize,
    /// The servers' retrieval pool and seen filter (`slowfast serve --pool --seen`).
    pub retrieval: Retrieval,
    pub model: ModelConfig,
    /// The initial training (epochs, learning rate, seed).
    pub train: TrainConfig,
    /// Rounds of Algorithm 1 of the initial training.
    pub rounds: usize,
    /// The nightly next round.
    pub retrain: NextRound,
    /// A phone syncs once this many events are pending (and at the end of each day).
    pub sync_max_events: usize,
    /// Threads driving the phones.
    pub threads: usize,
    pub arms: Vec<Arm>,
}

/// Adam's learning rate of the demo's nightly rounds (see [`DemoConfig::default`]).
pub const RETRAIN_LR: f64 = 2e-3;

impl Default for DemoConfig {
    fn default() -> Self {
        DemoConfig {
            out: PathBuf::from("out/demo"),
            synth: SynthConfig::default(),
            dynamics: Dynamics::live_feed(SynthConfig::default().items),
            seeds: 3,
            // 3 seeds of 5 days with 100 phones per arm ran in 7 min 38 s on 2 cores
            // (docs/results/demo.md), within the 10 minutes a first run may take.
            devices: 100,
            days: 5,
            visits_per_day: 10,
            feed_k: 50,
            retrieval: Retrieval::default(),
            model: ModelConfig::default(),
            // The device model trains on what the phone showed (the fast component's fits,
            // initial and nightly): each click against every unclicked item of its impression
            // (the app shows `SHOWN`), on top of one uniform negative, and its epochs are kept
            // by how they rank a held-out click within its impression. On the initial training
            // of seeds 1–3 that validation rose from 0.709 (no impression negatives) to 0.771.
            train: TrainConfig {
                max_epochs: 3,
                lr: 1e-2,
                impressions: metrics::SHOWN - 1,
                validation: Validation::Impressions,
                ..TrainConfig::default()
            },
            rounds: 1,
            // A fifth of the initial rate: each night's round starts Adam afresh from trained
            // weights (see `NextRound::lr`). At 1e-2 the first night's MC²-SF round kept its
            // starting weights on seeds 1 and 2 of the demo; at 2e-3 every round changed the
            // model, and MC²-SF's CTR@10 over the three days rose 0.0912 → 0.0945 (seed 1) and
            // 0.0953 → 0.0992 (seed 2), on the log of 3-item slates with one session-topic slot
            // (`--slate-size 3 --context-slots 1`).
            retrain: NextRound {
                rounds: 1,
                epochs: 1,
                lr: Some(RETRAIN_LR),
            },
            sync_max_events: 50,
            threads: 2,
            arms: Arm::ALL.to_vec(),
        }
    }
}

/// What one arm did, beyond its metrics: the checks the end-to-end test makes.
#[derive(Clone, Debug, Default)]
pub struct ArmRun {
    /// Items the server's model knows on each day.
    pub vocabulary: Vec<usize>,
    /// Items that arrived after the initial training, per day: in the feeds, and shown.
    pub new_in_feeds: Vec<usize>,
    pub new_shown: Vec<usize>,
    /// Logged history events imported into the arm's server.
    pub imported: usize,
    /// Events the phones uploaded (the server's events beyond the imported history).
    pub uploaded: usize,
    /// The server's model version on each day.
    pub versions: Vec<String>,
    /// Phones running the server's model version at the start of each day.
    pub phones_current: Vec<usize>,
}

/// The demo's outcome.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub online: Online,
    /// Per seed, the bundle of the initial training, verified, and what each arm did.
    pub seeds: Vec<SeedOutcome>,
}

/// One seed's outcome.
#[derive(Clone, Debug)]
pub struct SeedOutcome {
    pub seed: u64,
    /// The seed's directory under [`DemoConfig::out`].
    pub dir: PathBuf,
    pub bundle: PathBuf,
    pub arms: Vec<(Arm, ArmRun)>,
}

/// Runs the demo (see the module documentation); each stage's failure names the stage.
pub fn run(cfg: &DemoConfig) -> Result<Outcome> {
    check(cfg)?;
    let mut runs = Vec::new();
    let mut units = Vec::new();
    let mut seeds = Vec::new();
    for k in 0..cfg.seeds as u64 {
        let seed = cfg.train.seed + k;
        let (run, counts, outcome) = run_seed(cfg, seed, k)?;
        runs.push(run);
        units.push(counts);
        seeds.push(outcome);
    }
    let shape = (
        cfg.devices,
        cfg.days,
        cfg.visits_per_day,
        cfg.dynamics.arrivals_per_day,
    );
    let online = Online::new(shape, runs, &units);
    online.write(&cfg.out).map_err(stage("report"))?;
    Ok(Outcome { online, seeds })
}

/// Wraps a stage's error with its name.
fn stage<E: Into<OnlineError>>(name: &str) -> impl Fn(E) -> OnlineError {
    let name = name.to_owned();
    move |source| OnlineError::Stage {
        stage: name.clone(),
        source: Box::new(source.into()),
    }
}

/// One seed: the world and log of `synth.seed + k`, the initial training from `seed`, and
/// every arm online.
fn run_seed(
    cfg: &DemoConfig,
    seed: u64,
    k: u64,
) -> Result<(SeedRun, Vec<UserCounts>, SeedOutcome)> {
    let synth = SynthConfig {
        seed: cfg.synth.seed + k,
        ..cfg.synth.clone()
    };
    let (world, log) = synth::generate_with_world(&synth).map_err(stage("synthetic data"))?;
    let world = world
        .with_dynamics(cfg.dynamics)
        .map_err(stage("synthetic data"))?
        .with_arrivals(cfg.days, synth.seed);
    let dir = cfg.out.join(format!("seed-{seed}"));
    let bundle = dir.join("bundle");
    let checkpoint = dir.join("checkpoint");
    let version = train_initial(cfg, seed, &log, &checkpoint, &bundle)
        .map_err(stage("train, export, verify"))?;
    println!(
        "seed {seed}: trained MC²-SF on the synthetic log; bundle {} verified (model version \
         {version})",
        bundle.display()
    );
    let secret = Secret::new(format!("{}{}", uuid::Uuid::new_v4(), uuid::Uuid::new_v4()))?;
    let mut run = SeedRun {
        seed,
        ..SeedRun::default()
    };
    let mut counts = Vec::new();
    let mut arms = Vec::new();
    for &arm in &cfg.arms {
        let inputs = ArmInputs {
            world: &world,
            log: &log,
            dir: &dir,
            bundle: &bundle,
            checkpoint: &checkpoint,
            secret: secret.clone(),
            seed,
        };
        let (rows, overall, users, arm_run) = run_arm(cfg, arm, &inputs)
            .map_err(stage(&format!("seed {seed}, online, {}", arm.name())))?;
        run.days_rows.extend(rows);
        run.overall.push(overall);
        counts.extend(users);
        arms.push((arm, arm_run));
    }
    let outcome = SeedOutcome {
        seed,
        dir,
        bundle,
        arms,
    };
    Ok((run, counts, outcome))
}

fn check(cfg: &DemoConfig) -> Result<()> {
    let bad = |m: String| Err(OnlineError::InvalidArgument(format!("demo: {m}")));
    if cfg.devices == 0 || cfg.devices > cfg.synth.users {
        return bad(format!(
            "devices must be in 1..={} (the synthetic users), got {}",
            cfg.synth.users, cfg.devices
        ));
    }
    if cfg.days == 0
        || cfg.visits_per_day == 0
        || cfg.threads == 0
        || cfg.arms.is_empty()
        || cfg.seeds == 0
    {
        return bad("days, visits per day, threads, arms and seeds must be at least 1".into());
    }
    if (1..cfg.arms.len()).any(|i| cfg.arms[..i].contains(&cfg.arms[i])) {
        return bad(format!("each arm may run once, got {:?}", cfg.arms));
    }
    cfg.dynamics.validate()?;
    if cfg.feed_k < metrics::SHOWN || cfg.feed_k > slowfast_core::wire::MAX_FEED_K {
        return bad(format!(
            "feed size must be in {}..={}, got {}",
            metrics::SHOWN,
            slowfast_core::wire::MAX_FEED_K,
            cfg.feed_k
        ));
    }
    Ok(())
}

/// Trains MC²-SF on the logged history, exports the bundle and verifies it; returns its
/// model version.
fn train_initial(
    cfg: &DemoConfig,
    seed: u64,
    log: &EventLog,
    checkpoint: &Path,
    bundle: &Path,
) -> Result<String> {
    let data = Dataset::from_log("synthetic", log.clone())?;
    let mut ckpt = Checkpoint::init(CheckpointConfig {
        format_version: FORMAT_VERSION,
        variant: Variant::Mc2sf,
        model: cfg.model,
        train: TrainConfig { seed, ..cfg.train },
        seed,
        rounds: cfg.rounds,
        round: 0,
        dataset: data.name.clone(),
        commit: source_commit(),
        items: Vocabulary::from_split(&data.log, &data.split)?,
        log: Default::default(),
    })?;
    ckpt.train(&data.split, checkpoint)?;
    Ok(export_verified(&ckpt, bundle, seed)?.model_version)
}

/// What every arm starts from.
struct ArmInputs<'a> {
    world: &'a World,
    log: &'a EventLog,
    /// The seed's directory.
    dir: &'a Path,
    bundle: &'a Path,
    checkpoint: &'a Path,
    secret: Secret,
    seed: u64,
}

/// The items that arrived on `day`, each like the initial catalogue's items of its topic.
fn arrivals(world: &World, day: usize) -> Vec<NewItem> {
    (world.items_by_day(day - 1)..world.items_by_day(day))
        .map(|i| {
            let topic = world.item_topic(i as u32);
            let like = (world.topic_items(topic).iter())
                .filter(|&&j| world.arrival_day(j) == 0)
                .map(|&j| item_id(j))
                .collect();
            NewItem {
                id: item_id(i as u32),
                like,
            }
        })
        .collect()
}

/// An arm's rows per day and over every day, its users' counts, and what it did.
type ArmResult = (Vec<DayRow>, DayRow, Vec<UserCounts>, ArmRun);

fn run_arm(cfg: &DemoConfig, arm: Arm, inputs: &ArmInputs<'_>) -> Result<ArmResult> {
    let dir = inputs.dir.join(arm.slug());
    // The arm's directory is the demo's own: each run starts its server and phones afresh,
    // never from an earlier run's database, whose uploads would change every number.
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| FileError::new(&dir, e))?;
    }
    let mut cloud = Cloud::start(
        &dir.join("server"),
        inputs.bundle,
        inputs.checkpoint,
        inputs.secret.clone(),
        cfg.retrieval,
    )?;
    let users: Vec<u32> = (0..cfg.devices as u32).collect();
    let mut run = ArmRun {
        imported: cloud.import_history(inputs.log, &users)?,
        ..ArmRun::default()
    };
    let mut phones = open_phones(cfg, &dir.join("devices"), &cloud, inputs)?;
    let bar = progress(cfg, arm);
    let (mut rows, mut users) = (Vec::new(), Vec::new());
    let mut all = vec![Tally::default(); phones.len()];
    for day in 1..=cfg.days {
        if day > 1 {
            bar.set_message(format!("{}: training the next round", arm.name()));
            let new = arrivals(inputs.world, day - 1);
            cloud.retrain(day - 1, cfg.retrain, inputs.seed, &new)?;
            for p in &phones {
                p.engine.update_model(&Cancel::default())?;
            }
        }
        run.vocabulary
            .push(cloud.server.state.model().bundle.items.len());
        run.versions.push(cloud.version.clone());
        run.phones_current.push(
            phones
                .iter()
                .filter(|p| p.engine.model_version().as_deref() == Some(cloud.version.as_str()))
                .count(),
        );
        bar.set_message(format!("{} day {day}/{}", arm.name(), cfg.days));
        let catalogue = inputs.world.items_by_day(day - 1);
        let tallies = simulate_day(cfg, arm, inputs.world, (day, catalogue), &mut phones, &bar)?;
        let mut tally = Tally::default();
        for (t, a) in tallies.iter().zip(&mut all) {
            tally.merge(t);
            a.merge(t);
        }
        run.new_in_feeds.push(tally.new_in_feed);
        run.new_shown.push(tally.new_shown);
        rows.push(DayRow::new(arm, day, &cloud.version, &tally));
        users.push(UserCounts::new(arm, day, &tallies));
    }
    bar.finish_and_clear();
    let (_, events) = cloud.server.block_on(cloud.server.state.store.counts())?;
    run.uploaded = (events as usize).saturating_sub(run.imported);
    let mut total = Tally::default();
    all.iter().for_each(|t| total.merge(t));
    let overall = DayRow::new(arm, 0, &cloud.version, &total);
    users.push(UserCounts::new(arm, 0, &all));
    drop(phones);
    cloud.server.stop()?;
    let devices = dir.join("devices");
    std::fs::remove_dir_all(&devices).map_err(|e| FileError::new(&devices, e))?;
    Ok((rows, overall, users, run))
}

/// One phone per simulated user, continuing from the end of the user's logged history.
fn open_phones(
    cfg: &DemoConfig,
    dir: &Path,
    cloud: &Cloud,
    inputs: &ArmInputs<'_>,
) -> Result<Vec<Phone>> {
    let url = cloud.server.url();
    let mut clicked: Vec<HashMap<u32, i64>> = vec![HashMap::new(); cfg.devices];
    for e in inputs
        .log
        .events
        .iter()
        .filter(|e| e.kind == EventKind::Click)
    {
        let (Some(user), Some(item)) = (inputs.log.users.raw(e.user), inputs.log.items.raw(e.item))
        else {
            continue;
        };
        let user: Option<usize> = user.strip_prefix('u').and_then(|n| n.parse().ok());
        if let Some(set) = user.and_then(|u| clicked.get_mut(u)) {
            set.insert(world_item(item)?, e.ts);
        }
    }
    clicked
        .into_iter()
        .enumerate()
        .map(|(u, clicked)| {
            let user = u as u32;
            let link = Link {
                server_url: &url,
                token: cloud.token(&format!("u{user}"))?,
                bundle: inputs.bundle,
                sync_max_events: cfg.sync_max_events,
            };
            let state = synth::state_after_history(inputs.world, user)?;
            Phone::open(
                &dir.join(format!("u{user}")),
                &link,
                user,
                state,
                clicked,
                inputs.seed,
            )
        })
        .collect()
}

/// Every phone's visits of simulated day `day` (which starts a day of the user's clock after
/// the day before, `Phone::start_day`), on `cfg.threads` threads, then the end-of-day upload;
/// one tally per phone, in phone order. `catalogue`: the items the server can serve.
fn simulate_day(
    cfg: &DemoConfig,
    arm: Arm,
    world: &World,
    (day, catalogue): (usize, usize),
    phones: &mut [Phone],
    bar: &ProgressBar,
) -> Result<Vec<Tally>> {
    let per_thread = phones.len().div_ceil(cfg.threads);
    let tallies: Vec<Result<Vec<Tally>>> = std::thread::scope(|s| {
        let handles: Vec<_> = phones
            .chunks_mut(per_thread)
            .map(|chunk| {
                s.spawn(move || {
                    let mut tallies = Vec::with_capacity(chunk.len());
                    for phone in chunk {
                        phone.start_day(world, day);
                        let mut tally = Tally::default();
                        for _ in 0..cfg.visits_per_day {
                            let v: Visit = phone.visit(world, arm, cfg.feed_k, catalogue)?;
                            tally.add(&v);
                            bar.inc(1);
                        }
                        phone.engine.upload_pending(&Cancel::default())?;
                        tallies.push(tally);
                    }
                    Ok(tallies)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(OnlineError::Unusable("a phone thread panicked".into()))
                })
            })
            .collect()
    });
    let mut day = Vec::with_capacity(phones.len());
    for t in tallies {
        day.extend(t?);
    }
    Ok(day)
}

fn progress(cfg: &DemoConfig, arm: Arm) -> ProgressBar {
    let visits = cfg.devices * cfg.days * cfg.visits_per_day;
    let bar = ProgressBar::new(visits as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} online [{bar:30}] {pos}/{len} visits {msg} ({eta})",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(arm.name().to_owned());
    bar
}
