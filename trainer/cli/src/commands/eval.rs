//! `slowfast eval`: the sampled protocol's tables, or the re-rank protocol's.

use std::path::PathBuf;

use clap::Args;
use slowfast_data::protocol::sampler::NegativePool;
use slowfast_data::Dataset;
use slowfast_feed::retrieval::Retrieval;
use slowfast_online::demo::DemoConfig;
use slowfast_trainer::baselines::{self, ZooConfig, DEFAULT_ROUNDS};
use slowfast_trainer::eval::resume::SeedStore;
use slowfast_trainer::eval::{chart, curves, rerank, runner};
use slowfast_trainer::models::train::{TrainConfig, Validation};

use crate::error::{CliError, Result};
use crate::input::Input;

#[derive(Args)]
pub struct EvalArgs {
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

/// Which evaluation protocol `slowfast eval` runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum EvalProtocol {
    /// Each test click against 99 sampled items.
    Sampled,
    /// Each test click within the server's feed, re-ranked as on the phone.
    Rerank,
}

/// How learned models are trained (paper §5.1.4 defaults).
#[derive(Args)]
pub struct TrainingArgs {
    /// Rounds of Algorithm 1 (slow-fast learning).
    #[arg(long, default_value_t = DEFAULT_ROUNDS)]
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

pub fn run(a: &EvalArgs) -> Result<()> {
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
        return Err(CliError::InvalidArgument(
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
            return Err(CliError::InvalidArgument(format!(
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
        return Err(CliError::InvalidArgument(
            "--only-seed and --rerun work with --protocol sampled only".into(),
        ));
    }
    if a.seeds == 0 {
        return Err(CliError::InvalidArgument(
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
