//! `slowfast train`: Algorithm 1 on an event log, or the next round from a sync server's store.

use std::path::{Path, PathBuf};

use clap::Args;
use slowfast_data::FileError;
use slowfast_online::retrain::{next_round, NextRound, Uploads};
use slowfast_server::store::Store;
use slowfast_trainer::baselines::DEFAULT_ROUNDS;
use slowfast_trainer::checkpoint::{
    model_version, source_commit, Checkpoint, CheckpointConfig, Vocabulary, FORMAT_VERSION,
};
use slowfast_trainer::models::slowfast::Variant;
use slowfast_trainer::models::train::TrainConfig;
use slowfast_trainer::models::ModelConfig;

use crate::error::{CliError, Result};
use crate::input::OrSynthetic;

#[derive(Args)]
pub struct TrainArgs {
    #[command(flatten)]
    input: OrSynthetic,
    /// The checkpoint directory (weights.safetensors + checkpoint.json).
    #[arg(long)]
    out: PathBuf,
    /// Rounds of Algorithm 1 [default: 2; with --from-db: further rounds, default 1].
    #[arg(long)]
    rounds: Option<usize>,
    /// Seed of the initial weights and of training.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The most epochs per fit (early stopping on validation NDCG@10 may stop sooner).
    #[arg(long, default_value_t = TrainConfig::default().max_epochs)]
    epochs: usize,
    /// Adam's learning rate [default: 5e-4, the paper's; with --resume or --from-db: the
    /// checkpoint's].
    #[arg(long)]
    lr: Option<f64>,
    /// Continue the checkpoint in `--out` from the round after the last one it saved.
    #[arg(long)]
    resume: bool,
    /// Train the next round from what devices uploaded to a sync server's database (a SQLite
    /// file or `postgres://` URL), continuing `--checkpoint` (the model the devices run).
    #[arg(long, requires = "checkpoint", conflicts_with_all = ["data", "resume"])]
    from_db: Option<String>,
    /// The checkpoint to continue with --from-db; the next round is saved to `--out`.
    #[arg(long, requires = "from_db")]
    checkpoint: Option<PathBuf>,
}

pub fn run(a: &TrainArgs) -> Result<()> {
    if let (Some(url), Some(checkpoint)) = (&a.from_db, &a.checkpoint) {
        return train_from_db(a, url, checkpoint);
    }
    let data = a.input.load()?;
    let mut ckpt = if a.resume {
        let mut ckpt = Checkpoint::load(&a.out)?;
        if ckpt.config.dataset != data.name {
            return Err(CliError::InvalidArgument(format!(
                "{} was trained on {:?}, not {:?}",
                a.out.display(),
                ckpt.config.dataset,
                data.name
            )));
        }
        ckpt.config.rounds = a.rounds.unwrap_or(DEFAULT_ROUNDS);
        if let Some(lr) = a.lr {
            ckpt.config.train.lr = lr;
        }
        ckpt
    } else {
        Checkpoint::init(CheckpointConfig {
            format_version: FORMAT_VERSION,
            variant: Variant::Mc2sf,
            model: ModelConfig::default(),
            train: TrainConfig {
                max_epochs: a.epochs,
                lr: a.lr.unwrap_or(TrainConfig::default().lr),
                seed: a.seed,
                ..TrainConfig::default()
            },
            seed: a.seed,
            rounds: a.rounds.unwrap_or(DEFAULT_ROUNDS),
            round: 0,
            dataset: data.name.clone(),
            commit: source_commit(),
            items: Vocabulary::from_split(&data.log, &data.split)?,
            log: Default::default(),
        })?
    };
    ckpt.train(&data.split, &a.out)?;
    println!(
        "{}: MC2-SF after round {} of {} on {} (model version {})",
        a.out.display(),
        ckpt.config.round,
        ckpt.config.rounds,
        data.name,
        model_version(&ckpt.model)?
    );
    Ok(())
}

/// `train --from-db`: the uploads in the sync server's database → the next round of
/// Algorithm 1 from `checkpoint` (the path the demo's nightly retraining takes).
fn train_from_db(a: &TrainArgs, url: &str, checkpoint: &Path) -> Result<()> {
    let mut ckpt = Checkpoint::load(checkpoint)?;
    let version = model_version(&ckpt.model)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| FileError::new("tokio runtime", e))?;
    let uploads = rt.block_on(async {
        let store = Store::connect(url).await?;
        let uploads = Uploads::read(&store, &ckpt.config.items, &version).await;
        store.close().await;
        uploads
    })?;
    println!(
        "{url}: {} events of {} users ({} trainable), {} on unknown items left out; \
         {} devices uploaded r̂2 with model {version}",
        uploads.log.events.len(),
        uploads.log.users.len(),
        uploads.split.timelines.len(),
        uploads.unknown_items,
        uploads.neg_memories
    );
    let next = NextRound {
        rounds: a.rounds.unwrap_or(1),
        epochs: a.epochs,
        lr: a.lr,
    };
    next_round(&mut ckpt, &uploads, next, url, &a.out)?;
    let after = model_version(&ckpt.model)?;
    let change = if after == version {
        format!(
            "model version {version} unchanged: no fit beat the weights it started from \
             on validation NDCG@10, so they were kept"
        )
    } else {
        format!("model version {version} → {after}")
    };
    println!(
        "{}: MC2-SF after round {} (from {}, {change})",
        a.out.display(),
        ckpt.config.round,
        checkpoint.display(),
    );
    Ok(())
}
