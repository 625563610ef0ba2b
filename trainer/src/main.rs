//! `slowfast`: the command line of the slowfast trainer (docs/architecture.md §8).

mod cli_export;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use slowfast_trainer::baselines::{self, ZooConfig};
use slowfast_trainer::bench;
use slowfast_trainer::data::{self, Dataset, Format, ReadOptions};
use slowfast_trainer::demo::{self, arms::Arm, DemoConfig};
use slowfast_trainer::eval::resume::SeedStore;
use slowfast_trainer::eval::sampler::NegativePool;
use slowfast_trainer::eval::{chart, curves, rerank, runner};
use slowfast_trainer::models::train::{TrainConfig, Validation};
use slowfast_trainer::serve::ratelimit::RateLimit;
use slowfast_trainer::serve::retrieval::Retrieval;
use slowfast_trainer::serve::Connections;
use slowfast_trainer::synth::{self, SynthConfig};
use slowfast_trainer::{Result, TrainerError};

/// Training allocates and frees large tensors every step; glibc's malloc serves them with
/// fresh mmaps (page faults were a quarter of the run time), mimalloc reuses them (see
/// [`keep_freed_memory`]).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Keeps the memory mimalloc frees instead of purging it back to the OS after its default
/// 10 ms: each training step frees and reallocates the same large tensors, and with purging
/// every step faulted in and zeroed fresh (huge) pages again: `slowfast bench trainer` (one
/// thread, two runs each) took 108–116k page faults and 32.9–33.2 s of CPU, against 0.9k and
/// 25.2–27.7 s with this; peak RSS 542–544 → 558 MB.
fn keep_freed_memory() {
    /// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (libmimalloc-sys 0.1.49, pinned
    /// in Cargo.lock, builds v3 and names no constant for it); -1 means never purge.
    const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets a process-wide option; mimalloc options may be set at any time.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[derive(Parser)]
#[command(
    name = "slowfast",
    version,
    about = "MC²-SF slow-fast recommendation: data, training, evaluation"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a synthetic event log (CSV; gzip when the name ends in .gz).
    Synth(SynthArgs),
    /// Inspect a data set.
    #[command(subcommand)]
    Data(DataCommand),
    /// Evaluate models with the paper's protocol; writes results.json, results.md, results.svg.
    Eval(EvalArgs),
    /// The slow-fast loop online on the synthetic default: train → export → serve → simulated
    /// phones → nightly retraining; CTR@10 and NDCG@10 per day for four arms.
    Demo(DemoArgs),
    /// The sync server: uploads, feeds ranked by the slow model, model files (see `serve` docs).
    Serve(ServeArgs),
    /// Mint a bearer token for one user, signed with the server's secret.
    Token(TokenArgs),
    /// Train MC²-SF (Algorithm 1) and write a resumable checkpoint.
    Train(cli_export::TrainArgs),
    /// Export a checkpoint (or seeded random weights) as a model bundle.
    Export(cli_export::ExportArgs),
    /// Check model bundles.
    #[command(subcommand)]
    Bundle(cli_export::BundleCommand),
    /// Benchmarks: one JSON object of figures per target.
    Bench(BenchArgs),
}

/// Where the server's signing secret comes from: `--secret`, else `SLOWFAST_SECRET`, else
/// `--secret-file`.
#[derive(Args)]
struct SecretArgs {
    #[arg(long)]
    secret: Option<String>,
    #[arg(long)]
    secret_file: Option<PathBuf>,
}

impl SecretArgs {
    fn resolve(&self) -> Result<slowfast_trainer::serve::auth::Secret> {
        slowfast_trainer::serve::auth::Secret::resolve(
            self.secret.as_deref(),
            self.secret_file.as_deref(),
        )
    }
}

#[derive(Args)]
struct ServeArgs {
    /// The model bundle directory.
    #[arg(long)]
    bundle: PathBuf,
    /// A SQLite file (created on first start) or a `postgres://` URL.
    #[arg(long, default_value = "slowfast.db")]
    db: String,
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Candidates retrieved per feed before ranking.
    #[arg(long, default_value_t = Retrieval::default().pool)]
    pool: usize,
    /// The feed's seen filter: items among the user's latest N uploaded exposures (shown and
    /// not clicked) are not served; 0 turns it off.
    #[arg(long, value_name = "N", default_value_t = Retrieval::default().seen)]
    seen: usize,
    /// Seconds a client may take to send a request's headers, and a kept-alive connection
    /// may wait idle for its next request, before it is closed.
    #[arg(long, default_value_t = Connections::default().header_timeout.as_secs_f64())]
    header_timeout: f64,
    /// Seconds a request body may pause between two reads before the request is refused
    /// and its connection closed.
    #[arg(long, default_value_t = Connections::default().body_timeout.as_secs_f64())]
    body_timeout: f64,
    /// Connections open at once; further clients wait in the listen backlog. Keep it below
    /// the process's open-file limit (`ulimit -n`).
    #[arg(long, default_value_t = Connections::default().max)]
    max_connections: usize,
    /// Requests per second each token's user may make on average (fractions allowed); past
    /// it a request gets 429 with Retry-After. No limit when absent.
    #[arg(long, value_name = "PER_SECOND")]
    rate_limit: Option<f64>,
    /// Requests a user may make at once before --rate-limit applies (default: one second's
    /// worth, at least 1).
    #[arg(long, requires = "rate_limit")]
    rate_burst: Option<u32>,
    #[command(flatten)]
    secret: SecretArgs,
}

#[derive(Args)]
struct TokenArgs {
    #[arg(long)]
    user: String,
    /// Seconds the token stays valid.
    #[arg(long, default_value_t = 30 * 24 * 3600)]
    ttl: i64,
    #[command(flatten)]
    secret: SecretArgs,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(value_enum)]
    target: BenchTarget,
    /// The event log to train on (`trainer`); the synthetic default when left out.
    #[arg(long)]
    data: Option<PathBuf>,
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// The model bundle (`device`, `server`); a randomly initialised one of the default shape
    /// (d = 32, windows 50/50) when left out — speed does not depend on the weights' values.
    #[arg(long)]
    bundle: Option<PathBuf>,
    /// Concurrent loopback clients (`server`).
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// Seconds per phase (`server`: uploads, then feeds).
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Items per feed (`server`).
    #[arg(long, default_value_t = 50)]
    k: usize,
    /// Candidates retrieved and ranked per feed (`server`).
    #[arg(long, default_value_t = Retrieval::default().pool)]
    pool: usize,
    /// Print the figures as one JSON object (else pretty-printed JSON with a heading).
    #[arg(long)]
    json: bool,
}

/// Which evaluation protocol `slowfast eval` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum EvalProtocol {
    /// Each test click against 99 sampled items.
    Sampled,
    /// Each test click within the server's feed, re-ranked as on the phone.
    Rerank,
}

#[derive(Clone, Copy, PartialEq, clap::ValueEnum)]
enum BenchTarget {
    /// Training samples/s of the slow and fast components, seconds per epoch, peak memory.
    Trainer,
    /// Device runtime: rerank of 100/500, record_exposure, open, memory, bundle size, tract/ort.
    Device,
    /// Sync server: upload and feed throughput, p50/p99 latency under a loopback load.
    Server,
    /// Every target above, side by side in one object.
    All,
    /// The device figures without ort, measured in this process (what `device` runs in a
    /// child process so that the memory figure is an engine's alone).
    #[value(hide = true)]
    DeviceRuntime,
}

#[derive(Args)]
struct SynthArgs {
    #[arg(long, default_value_t = SynthConfig::default().users)]
    users: usize,
    #[arg(long, default_value_t = SynthConfig::default().items)]
    items: usize,
    #[arg(long, default_value_t = SynthConfig::default().seed)]
    seed: u64,
    /// Each user's top N taste topics fade: disliked from 15–30 clicks before the end of the
    /// user's history (a negative impression only the exposures show; at most 3).
    #[arg(long, default_value_t = SynthConfig::default().fading_topics)]
    fading_topics: usize,
    /// Probability per session break that a user starts a temporary aversion: one of their top
    /// three taste topics is ignored for the next 15–40 clicks (in [0, 1]).
    #[arg(long, default_value_t = SynthConfig::default().aversion_rate)]
    aversion_rate: f64,
    /// Items the logging policy shows per step (the user clicks at most one).
    #[arg(long, default_value_t = SynthConfig::default().slate_size)]
    slate_size: usize,
    /// Slots of each slate the logging policy fills from the session topic (1 to the slate
    /// size): with 2 or more the exposures show what the user is browsing now.
    #[arg(long, default_value_t = SynthConfig::default().context_slots)]
    context_slots: usize,
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
enum DataCommand {
    /// Users, items, clicks, exposures before/after the 20-core filter, and the split sizes.
    Stats {
        #[command(flatten)]
        input: Input,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Args)]
struct Input {
    /// The event log: CSV (`user,item,timestamp,kind`), ML-1M `ratings.dat` or Steam reviews.
    #[arg(long)]
    data: PathBuf,
    /// The file format; guessed from the name when left out.
    #[arg(long, value_enum)]
    format: Option<Format>,
    /// Skip and count malformed records instead of stopping at the first.
    #[arg(long)]
    lenient: bool,
}

impl Input {
    fn load(&self) -> Result<Dataset> {
        let format = self.format.unwrap_or_else(|| Format::guess(&self.data));
        let data = Dataset::load(
            &self.data,
            format,
            ReadOptions {
                lenient: self.lenient,
            },
        )?;
        if data.log.skipped > 0 {
            tracing::warn!(
                skipped = data.log.skipped,
                "malformed records skipped (--lenient)"
            );
        }
        Ok(data)
    }
}

#[derive(Args)]
struct EvalArgs {
    #[command(flatten)]
    input: Input,
    /// Comma-separated model names, or `all` (every row of the paper's tables, then
    /// `GRU4Rec+`, `DIN+GRU4Rec+` and `MC2-SF+`, which learn from every training click).
    /// `FM+`, `NeuMF+`, `DIN+FM+`, `DIN+NeuMF+` and `DIN+X (from scratch)` for X in FM,
    /// NeuMF, GRU4Rec are named one by one; an unknown name's error lists every known one.
    /// Default: `all` with `--protocol sampled`; with `--protocol rerank`, the rows after the
    /// four online arms, `Pop,GRU4Rec,GRU4Rec+`.
    #[arg(long)]
    models: Option<String>,
    /// `sampled`: each test click against 99 sampled items (paper §5.1.2). `rerank`: each
    /// test click within the feed the sync server would send (the top `--feed-k` of a
    /// retrieval pool of `--pool` by MC2-SF's slow component), re-ranked by the demo's four
    /// online arms and the `--models` rows; writes results.{json,md} and ranks.json (every
    /// case's rank per row).
    #[arg(long, value_enum, default_value_t = EvalProtocol::Sampled)]
    protocol: EvalProtocol,
    /// `--protocol rerank`: items per feed, re-ranked on the device (the demo's feed size).
    #[arg(long, default_value_t = DemoConfig::default().feed_k)]
    feed_k: usize,
    /// `--protocol rerank`: items retrieved per feed before the slow model ranks them (the
    /// server's default).
    #[arg(long, default_value_t = Retrieval::default().pool)]
    pool: usize,
    /// `--protocol rerank`: the server's seen filter (`slowfast serve --seen`): the items of
    /// the user's latest N uploaded exposures are not in the feed; 0 turns it off.
    #[arg(long, value_name = "N", default_value_t = Retrieval::default().seen)]
    seen: usize,
    /// Number of seeds (1, 2, …, N); results are mean ± std over them.
    #[arg(long, default_value_t = 3)]
    seeds: u64,
    /// Seeds evaluated at once (default: the CPU cores). They share the training threads
    /// evenly, and a seed left running alone takes them all; the results do not depend on it.
    #[arg(long)]
    jobs: Option<usize>,
    /// Where results.{json,md,svg} and curves.{json,svg} go; each finished seed is kept under
    /// `<out>/seeds/`, so the same command run again resumes a stopped evaluation.
    #[arg(long)]
    out: PathBuf,
    /// Evaluates seed K of 1..=N alone and keeps it under `<out>/seeds/`, writing no results:
    /// spreads one evaluation's seeds over processes or machines sharing `<out>`. The command
    /// without it then reuses every finished seed and writes the results.
    #[arg(long, value_name = "K")]
    only_seed: Option<u64>,
    /// Comma-separated models to evaluate again in every saved seed under `<out>/seeds/`
    /// (after a fix to them), keeping the other models' saved rows and curves; seeds not saved
    /// yet are evaluated whole.
    #[arg(long, value_name = "MODELS")]
    rerun: Option<String>,
    /// Test users whose cases are also ranked against the whole catalogue (full HR@10 and
    /// NDCG@10: every item but the user's earlier clicks), drawn once with a fixed seed; every
    /// user when at least their number. Each such case costs every model about as many scores
    /// as the catalogue has items.
    #[arg(long, value_name = "N", default_value_t = slowfast_trainer::eval::full::DEFAULT_USERS)]
    full_ranking_users: usize,
    #[command(flatten)]
    training: TrainingArgs,
}

/// How learned models are trained (paper §5.1.4 defaults).
#[derive(Args)]
struct TrainingArgs {
    /// Rounds of Algorithm 1 (slow-fast learning).
    #[arg(long, default_value_t = 2)]
    rounds: usize,
    /// The most epochs per fit; early stopping on validation NDCG@10 usually stops sooner.
    #[arg(long, default_value_t = 20)]
    epochs: usize,
    /// Sampled negatives per positive in the BCE.
    #[arg(long, default_value_t = 1)]
    negatives: usize,
    /// Impression negatives per positive in the BCE, on top of the sampled ones: the items
    /// shown with the click's impression and not clicked (fits on real-time moments only).
    #[arg(long, default_value_t = TrainConfig::default().impressions)]
    impressions: usize,
    /// What each fit's held-out clicks are ranked against for early stopping: `sampled` (99
    /// items of the negative pool, the paper's) or `impressions` (the rest of the click's
    /// impression, what a device re-ranks; fits without real-time history use `sampled`).
    #[arg(long, value_enum, default_value_t = TrainConfig::default().validation)]
    validation: Validation,
    /// Adam's learning rate (paper: 5e-4). Several, comma-separated (at most 4): every fit
    /// runs once per rate from the same start and keeps the best validation epoch of all.
    #[arg(long, value_delimiter = ',', default_value = "5e-4")]
    lr: Vec<f64>,
    /// Epochs without a better validation NDCG@10 before a fit stops.
    #[arg(long, default_value_t = TrainConfig::default().patience)]
    patience: usize,
    /// Validation clicks per fit (one held-out click per user, in user order), each ranked
    /// against 99 sampled negatives for the early-stopping NDCG@10; the other users'
    /// held-out clicks train.
    #[arg(long, default_value_t = TrainConfig::default().max_valid)]
    max_valid: usize,
    /// Shards per mini-batch, differentiated on separate threads and summed (results depend
    /// on the shard count, not on the threads).
    #[arg(long, default_value_t = TrainConfig::default().shards)]
    shards: usize,
    /// Which items may be negatives in validation and, in `eval`, in the test: `not-clicked`
    /// (items the user never clicked; items only shown are eligible, as in a deployed feed)
    /// or `not-interacted` (no click and no exposure: the paper's reading).
    #[arg(long, value_enum, default_value_t = NegativePool::default())]
    negative_pool: NegativePool,
}

impl TrainingArgs {
    fn zoo(&self) -> Result<ZooConfig> {
        let d = ZooConfig::default();
        Ok(ZooConfig {
            rounds: self.rounds,
            train: TrainConfig {
                max_epochs: self.epochs,
                negatives: self.negatives,
                impressions: self.impressions,
                validation: self.validation,
                patience: self.patience,
                max_valid: self.max_valid,
                shards: self.shards,
                negative_pool: self.negative_pool,
                ..d.train
            }
            .with_rates(&self.lr)?,
            ..d
        })
    }
}

/// Training runs its batch shards on the cores itself (`models::train`), so each candle op runs
/// inline on its caller's thread: candle's per-op pool serialises concurrent callers behind
/// one lock and its threads spin at a barrier (over half the CPU time, perf), and with
/// `RAYON_NUM_THREADS` unset candle re-reads `/proc/cpuinfo` for every matrix product.
/// `CANDLE_NUM_THREADS`, when set, is the number of training threads.
fn single_threaded_ops() {
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let threads = std::env::var("CANDLE_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(cores);
    slowfast_trainer::models::train::set_threads(threads);
    // Before any thread or candle op exists: nothing reads the environment concurrently.
    std::env::set_var("CANDLE_NUM_THREADS", "1");
    std::env::set_var("RAYON_NUM_THREADS", "1");
}

/// `slowfast demo` (see `slowfast_trainer::demo`); the defaults finish in minutes on 2 cores.
#[derive(Args)]
struct DemoArgs {
    /// Where the demo writes checkpoints, bundles, server databases and reports.
    #[arg(long, default_value = "out/demo")]
    out: PathBuf,
    /// Simulated phones per arm (world users 0..N).
    #[arg(long, default_value_t = DemoConfig::default().devices)]
    devices: usize,
    /// Simulated days; the server retrains after each day but the last.
    #[arg(long, default_value_t = DemoConfig::default().days)]
    days: usize,
    /// App visits per phone and day (each shows the top 10 of a feed).
    #[arg(long, default_value_t = DemoConfig::default().visits_per_day)]
    visits: usize,
    /// Candidates per feed that the device re-ranks.
    #[arg(long, default_value_t = DemoConfig::default().feed_k)]
    feed: usize,
    /// Users of the synthetic world (its logged history is the initial training data).
    #[arg(long, default_value_t = SynthConfig::default().users)]
    users: usize,
    /// Items of the synthetic world.
    #[arg(long, default_value_t = SynthConfig::default().items)]
    items: usize,
    /// Items the world's logging policy showed per step in the logged history.
    #[arg(long, default_value_t = SynthConfig::default().slate_size)]
    slate_size: usize,
    /// Slots of each logged slate filled from the session topic.
    #[arg(long, default_value_t = SynthConfig::default().context_slots)]
    context_slots: usize,
    /// The most epochs per fit of the initial training.
    #[arg(long, default_value_t = DemoConfig::default().train.max_epochs)]
    epochs: usize,
    /// The most epochs per fit of each nightly next round.
    #[arg(long, default_value_t = DemoConfig::default().retrain.epochs)]
    retrain_epochs: usize,
    /// Adam's learning rate: the paper's 5e-4 needs many more epochs than a demo can spend.
    #[arg(long, default_value_t = DemoConfig::default().train.lr)]
    lr: f64,
    /// Adam's learning rate of each nightly next round.
    #[arg(long, default_value_t = slowfast_trainer::demo::RETRAIN_LR)]
    retrain_lr: f64,
    /// The first seed: the `k`-th seed (from 0) `seed + k` trains from `seed + k` and draws the
    /// world, its log and the users' random streams from the synthetic seed `42 + k`.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Seeds run (`seed`, `seed + 1`, …); the report gives mean ± sd over them and the lift
    /// intervals pool their users.
    #[arg(long, default_value_t = DemoConfig::default().seeds)]
    seeds: usize,
    /// Items arriving in the world per simulated day (servable after the next nightly round).
    #[arg(long, default_value_t = DemoConfig::default().dynamics.arrivals_per_day)]
    item_arrivals: usize,
    /// Seconds (of a user's clock) after a click before the user may click the item again and
    /// the app shows it again; `off`: never.
    #[arg(long, default_value = "86400")]
    revisit: OrOff<i64>,
    /// Half-life in seconds of an item's fatigue (unclicked shows); `off`: fatigue never
    /// wears off.
    #[arg(long, default_value = "86400")]
    fatigue_half_life: OrOff<f64>,
    /// Threads driving the phones.
    #[arg(long, default_value_t = DemoConfig::default().threads)]
    threads: usize,
    /// The arms to run, comma-separated (the lifts need `slow`, the control).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "slow,fast,vanilla,mc2sf"
    )]
    arms: Vec<Arm>,
    /// Impression negatives per click for the device model's fits, initial and nightly: the
    /// items shown with the clicked one and not clicked.
    #[arg(long, default_value_t = DemoConfig::default().train.impressions)]
    impressions: usize,
    /// What the device model's fits validate on, initial and nightly (`slowfast train
    /// --validation`).
    #[arg(long, value_enum, default_value_t = DemoConfig::default().train.validation)]
    validation: Validation,
    /// The servers' seen filter (`slowfast serve --seen`): items among a user's latest N
    /// uploaded exposures are not served; 0 turns it off.
    #[arg(long, value_name = "N", default_value_t = DemoConfig::default().retrieval.seen)]
    seen: usize,
}

impl DemoArgs {
    fn config(&self) -> DemoConfig {
        let d = DemoConfig::default();
        DemoConfig {
            out: self.out.clone(),
            synth: SynthConfig {
                users: self.users,
                items: self.items,
                slate_size: self.slate_size,
                context_slots: self.context_slots,
                ..d.synth
            },
            dynamics: slowfast_trainer::synth::Dynamics {
                arrivals_per_day: self.item_arrivals,
                revisit_secs: self.revisit.0,
                fatigue_half_life_secs: self.fatigue_half_life.0,
            },
            seeds: self.seeds,
            devices: self.devices,
            days: self.days,
            visits_per_day: self.visits,
            feed_k: self.feed,
            train: TrainConfig {
                max_epochs: self.epochs,
                lr: self.lr,
                seed: self.seed,
                impressions: self.impressions,
                validation: self.validation,
                ..d.train
            },
            retrain: slowfast_trainer::retrain::NextRound {
                epochs: self.retrain_epochs,
                lr: Some(self.retrain_lr),
                ..d.retrain
            },
            threads: self.threads,
            arms: self.arms.clone(),
            retrieval: Retrieval {
                seen: self.seen,
                ..d.retrieval
            },
            ..d
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    single_threaded_ops();
    // Before any thread exists, so that every thread inherits it.
    slowfast_trainer::models::denormals::flush_to_zero();
    // A long-running server gives memory back; everything else here trains or runs briefly.
    if !matches!(cli.command, Command::Serve(_)) {
        keep_freed_memory();
    }
    // The demo's 800 phones would log every model install: it shows progress bars instead.
    let default_log = if matches!(cli.command, Command::Demo(_)) {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_log.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::Synth(a) => synth_cmd(&a),
        Command::Data(DataCommand::Stats { input, json }) => stats_cmd(&input, json),
        Command::Eval(a) => eval_cmd(&a),
        Command::Demo(a) => demo_cmd(&a),
        Command::Serve(a) => serve_cmd(&a),
        Command::Token(a) => token_cmd(&a),
        Command::Train(a) => cli_export::train(&a),
        Command::Export(a) => cli_export::export(&a),
        Command::Bundle(c) => cli_export::bundle(&c),
        Command::Bench(a) => bench_cmd(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn synth_cmd(a: &SynthArgs) -> Result<()> {
    let cfg = SynthConfig {
        users: a.users,
        items: a.items,
        seed: a.seed,
        fading_topics: a.fading_topics,
        aversion_rate: a.aversion_rate,
        slate_size: a.slate_size,
        context_slots: a.context_slots,
        ..SynthConfig::default()
    };
    write_synth(&cfg, &a.out)
}

fn write_synth(cfg: &SynthConfig, out: &Path) -> Result<()> {
    let log = synth::generate(cfg)?;
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| TrainerError::io(dir, e))?;
    }
    data::csv::write(&log, out)?;
    let (clicks, exposures) = log.counts();
    println!(
        "wrote {}: {} users, {} items, {clicks} clicks, {exposures} exposures (seed {})",
        out.display(),
        log.users.len(),
        log.items.len(),
        cfg.seed
    );
    Ok(())
}

fn stats_cmd(input: &Input, json: bool) -> Result<()> {
    let data = input.load()?;
    let f = &data.filter;
    let s = &data.split.report;
    if json {
        let v = serde_json::json!({
            "dataset": data.name, "skipped": data.log.skipped, "filter": f, "split": s,
        });
        println!("{v:#}");
        return Ok(());
    }
    println!("{} ({})", data.name, input.data.display());
    if data.log.skipped > 0 {
        println!("malformed records skipped: {}", data.log.skipped);
    }
    println!("| | users | items | clicks | exposures |\n|---|---|---|---|---|");
    for (name, c) in [("read", f.before), ("after 20-core filter", f.after)] {
        println!(
            "| {name} | {} | {} | {} | {} |",
            c.users, c.items, c.clicks, c.exposures
        );
    }
    println!(
        "filter: users and items with < {} interactions dropped in {} passes (the last drops nothing)",
        f.min_interactions, f.passes
    );
    println!(
        "split: {} users ({} with < 11 clicks left out)\n| phase | clicks | exposures |\n|---|---|---|",
        s.users, s.users_too_short
    );
    for (name, p) in [
        ("slow training", s.slow),
        ("fast training", s.fast),
        ("test", s.test),
    ] {
        println!("| {name} | {} | {} |", p.clicks, p.exposures);
    }
    Ok(())
}

fn eval_cmd(a: &EvalArgs) -> Result<()> {
    let data = a.input.load()?;
    if a.protocol == EvalProtocol::Rerank {
        return rerank_cmd(a, &data);
    }
    let models = baselines::parse_list(a.models.as_deref().unwrap_or("all"))?;
    // As a shell takes it back: `--models "DIN+GRU4Rec (from scratch)"` keeps its quotes.
    let command = command_line();
    let jobs = a.jobs.unwrap_or_else(|| {
        std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
    });
    let (seeds, out) = (a.seeds, &a.out);
    if seeds == 0 {
        return Err(TrainerError::InvalidArgument(
            "--seeds must be at least 1".into(),
        ));
    }
    let zoo = a.training.zoo()?;
    let full_users = a.full_ranking_users;
    let mut store = SeedStore::new(out, &data, &models, &zoo, full_users);
    if let Some(rerun) = &a.rerun {
        store = store.rerunning(baselines::parse_list(rerun)?)?;
    }
    if let Some(k) = a.only_seed {
        if !(1..=seeds).contains(&k) {
            return Err(TrainerError::InvalidArgument(format!(
                "--only-seed {k} is not one of the seeds 1..={seeds}"
            )));
        }
        runner::run_with_curves(&data, &models, &[k], zoo, full_users, jobs, Some(&store))?;
        println!("seed {k} saved under {}/seeds/", out.display());
        return Ok(());
    }
    let seeds: Vec<u64> = (1..=seeds).collect();
    let (mut results, training) =
        runner::run_with_curves(&data, &models, &seeds, zoo, full_users, jobs, Some(&store))?;
    results.command = command;
    results.write(out)?;
    chart::write_svg(&results, &out.join("results.svg"))?;
    curves::write(&training, out)?;
    println!("{}", results.markdown());
    println!(
        "wrote {}/results.{{json,md,svg}} and curves.{{json,svg}}",
        out.display()
    );
    Ok(())
}

/// The shell command that ran, as a shell takes it back.
fn command_line() -> String {
    let args: Vec<String> = std::env::args().collect();
    shlex::try_join(args.iter().map(String::as_str)).unwrap_or_else(|_| args.join(" "))
}

/// `slowfast eval --protocol rerank`.
fn rerank_cmd(a: &EvalArgs, data: &Dataset) -> Result<()> {
    if a.only_seed.is_some() || a.rerun.is_some() {
        return Err(TrainerError::InvalidArgument(
            "--only-seed and --rerun work with --protocol sampled only".into(),
        ));
    }
    if a.seeds == 0 {
        return Err(TrainerError::InvalidArgument(
            "--seeds must be at least 1".into(),
        ));
    }
    let models = match a.models.as_deref() {
        Some(list) => baselines::parse_list(list)?,
        None => ["Pop", "GRU4Rec", "GRU4Rec+"].map(String::from).to_vec(),
    };
    let seeds: Vec<u64> = (1..=a.seeds).collect();
    let feed = rerank::FeedConfig {
        retrieval: Retrieval {
            pool: a.pool,
            seen: a.seen,
        },
        k: a.feed_k,
    };
    let (mut results, ranks) = rerank::run(data, &models, &seeds, a.training.zoo()?, feed)?;
    results.command = command_line();
    results.write(&ranks, &a.out)?;
    println!("{}", results.markdown());
    println!(
        "wrote {}/results.{{json,md}} and ranks.json",
        a.out.display()
    );
    Ok(())
}

/// A number, or `off` for none.
#[derive(Clone, Copy, Debug)]
struct OrOff<T>(Option<T>);

impl<T: std::str::FromStr> std::str::FromStr for OrOff<T>
where
    T::Err: std::fmt::Display,
{
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "off" {
            return Ok(OrOff(None));
        }
        s.parse()
            .map(|v| OrOff(Some(v)))
            .map_err(|e| format!("{s:?}: {e} (a number or `off`)"))
    }
}

fn demo_cmd(a: &DemoArgs) -> Result<()> {
    let outcome = demo::run(&a.config())?;
    println!("{}", outcome.online.markdown());
    println!("wrote {}/online.{{json,md,svg}}", a.out.display());
    Ok(())
}

fn serve_cmd(a: &ServeArgs) -> Result<()> {
    slowfast_trainer::serve::run(slowfast_trainer::serve::ServeConfig {
        bundle: a.bundle.clone(),
        db: a.db.clone(),
        listen: a.listen,
        secret: a.secret.resolve()?,
        retrieval: Retrieval {
            pool: a.pool,
            seen: a.seen,
        },
        connections: Connections {
            header_timeout: seconds("--header-timeout", a.header_timeout)?,
            body_timeout: seconds("--body-timeout", a.body_timeout)?,
            max: a.max_connections,
        },
        rate_limit: a.rate_limit.map(|per_second| RateLimit {
            per_second,
            burst: a
                .rate_burst
                .unwrap_or_else(|| (per_second.ceil() as u32).max(1)),
        }),
    })
}

/// A positive, finite number of seconds given for `flag`.
fn seconds(flag: &str, s: f64) -> Result<std::time::Duration> {
    std::time::Duration::try_from_secs_f64(s)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            TrainerError::InvalidArgument(format!("{flag} must be a positive number of seconds"))
        })
}

fn token_cmd(a: &TokenArgs) -> Result<()> {
    if a.ttl <= 0 {
        return Err(TrainerError::InvalidArgument(
            "--ttl must be positive".into(),
        ));
    }
    let expiry = slowfast_trainer::serve::auth::unix_now().saturating_add(a.ttl);
    println!("{}", a.secret.resolve()?.mint(&a.user, expiry)?);
    Ok(())
}

fn bench_cmd(a: &BenchArgs) -> Result<()> {
    let json = |what: &str, v: std::result::Result<serde_json::Value, serde_json::Error>| {
        v.map_err(|source| TrainerError::Json {
            what: format!("{what} benchmark figures"),
            source,
        })
    };
    let wants = |t: BenchTarget| a.target == t || a.target == BenchTarget::All;
    let mut figures = serde_json::Map::new();
    if a.target == BenchTarget::DeviceRuntime {
        let bundle = a.bundle.as_deref().ok_or_else(|| {
            TrainerError::InvalidArgument("bench device-runtime needs --bundle".into())
        })?;
        let device = slowfast_core::bench::device(bundle)?;
        figures.insert(
            "device".into(),
            json("device", serde_json::to_value(device))?,
        );
    }
    if wants(BenchTarget::Device) {
        let device = bench::device::run(a.bundle.as_deref())?;
        figures.insert(
            "device".into(),
            json("device", serde_json::to_value(device))?,
        );
    }
    if wants(BenchTarget::Server) {
        let server = bench::device::with_bundle(a.bundle.as_deref(), |bundle| {
            slowfast_trainer::serve::bench::run(&slowfast_trainer::serve::bench::BenchConfig {
                bundle: bundle.to_path_buf(),
                concurrency: a.concurrency.max(1),
                pool: a.pool,
                k: a.k,
                duration: std::time::Duration::from_secs(a.seconds.max(1)),
            })
        })?;
        figures.insert(
            "server".into(),
            json("server", serde_json::to_value(server))?,
        );
    }
    if wants(BenchTarget::Trainer) {
        let data = match &a.data {
            Some(path) => Input {
                data: path.clone(),
                format: a.format,
                lenient: false,
            }
            .load()?,
            None => {
                let log = synth::generate(&SynthConfig::default())?;
                Dataset::from_log("synthetic", log)?
            }
        };
        let d = ZooConfig::default();
        let trainer = bench::trainer::run(&data.name, &data.split, d.model, d.train)?;
        let mut v = json("trainer", serde_json::to_value(trainer))?;
        v["data"] = serde_json::Value::String(data.name.clone());
        figures.insert("trainer".into(), v);
    }
    // One target prints its own object (the keys its issue names); `all` nests them.
    let out = match (a.target, figures.len()) {
        (BenchTarget::All, _) | (_, 0) => serde_json::Value::Object(figures),
        _ => figures
            .into_iter()
            .next()
            .map(|(_, v)| v)
            .unwrap_or_default(),
    };
    if a.json {
        println!("{out}");
    } else {
        println!("bench\n{out:#}");
    }
    Ok(())
}
