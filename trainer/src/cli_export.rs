//! The `train`, `export` and `bundle verify` subcommands of the `slowfast` binary.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use slowfast_trainer::checkpoint::{
    model_version, source_commit, Checkpoint, CheckpointConfig, Vocabulary, FORMAT_VERSION,
};
use slowfast_trainer::data::{Dataset, Format, ReadOptions};
use slowfast_trainer::export::bundle::{write_bundle, Provenance};
use slowfast_trainer::export::parity::TOLERANCE;
use slowfast_trainer::export::verify::{parity, read_verified};
use slowfast_trainer::models::features::Windows;
use slowfast_trainer::models::slowfast::{SlowFast, Variant};
use slowfast_trainer::models::train::TrainConfig;
use slowfast_trainer::models::ModelConfig;
use slowfast_trainer::retrain::{next_round, NextRound, Uploads};
use slowfast_trainer::serve::store::Store;
use slowfast_trainer::synth::{self, SynthConfig};
use slowfast_trainer::{Result, TrainerError};

/// Rounds of Algorithm 1 of a fresh or resumed training.
const DEFAULT_ROUNDS: usize = 2;

#[derive(Args)]
pub struct TrainArgs {
    /// The event log; the synthetic default data set when left out.
    #[arg(long)]
    data: Option<PathBuf>,
    /// The file format; guessed from the name when left out.
    #[arg(long, value_enum)]
    format: Option<Format>,
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

#[derive(Args)]
pub struct ExportArgs {
    /// The checkpoint to export.
    #[arg(
        long,
        required_unless_present = "random_init",
        conflicts_with = "random_init"
    )]
    checkpoint: Option<PathBuf>,
    /// Export seeded random weights with a synthetic vocabulary instead (test fixtures).
    #[arg(long)]
    random_init: bool,
    /// Seed of the random weights (with --random-init).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Items of the synthetic vocabulary (with --random-init).
    #[arg(long, default_value_t = 100)]
    items: usize,
    /// Embedding size d (with --random-init).
    #[arg(long, default_value_t = 32)]
    dim: usize,
    /// Window lengths W_c, W_e, W_s (with --random-init).
    #[arg(long, default_value_t = 50)]
    clicks: usize,
    #[arg(long, default_value_t = 50)]
    exposures: usize,
    #[arg(long, default_value_t = 50)]
    history: usize,
    /// The bundle directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Subcommand)]
pub enum BundleCommand {
    /// Check hashes, names and shapes, then parity of candle, ort and tract (exits non-zero
    /// above 1e-5).
    Verify {
        bundle: PathBuf,
        /// The checkpoint the bundle was exported from, to compare with candle.
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Seed of the random inputs.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
}

fn load_data(data: Option<&Path>, format: Option<Format>) -> Result<Dataset> {
    match data {
        Some(path) => {
            let format = format.unwrap_or_else(|| Format::guess(path));
            Dataset::load(path, format, ReadOptions::default())
        }
        None => Dataset::from_log("synthetic", synth::generate(&SynthConfig::default())?),
    }
}

pub fn train(a: &TrainArgs) -> Result<()> {
    if let (Some(url), Some(checkpoint)) = (&a.from_db, &a.checkpoint) {
        return train_from_db(a, url, checkpoint);
    }
    let data = load_data(a.data.as_deref(), a.format)?;
    let mut ckpt = if a.resume {
        let mut ckpt = Checkpoint::load(&a.out)?;
        if ckpt.config.dataset != data.name {
            return Err(TrainerError::InvalidArgument(format!(
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
        .map_err(|e| TrainerError::io("tokio runtime", e))?;
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

pub fn export(a: &ExportArgs) -> Result<()> {
    let (model, items, from) = match &a.checkpoint {
        Some(dir) => {
            let Checkpoint { model, config } = Checkpoint::load(dir)?;
            let from = Provenance {
                trained_on: config.dataset,
                commit: config.commit,
            };
            (model, config.items, from)
        }
        None => {
            let config = ModelConfig {
                dim: a.dim,
                windows: Windows {
                    slow_history: a.history,
                    clicks: a.clicks,
                    exposures: a.exposures,
                },
                ..ModelConfig::default()
            };
            let model = SlowFast::new(Variant::Mc2sf, a.items, config, a.seed)?;
            let from = Provenance {
                trained_on: format!("untrained (random init, seed {})", a.seed),
                commit: source_commit(),
            };
            (model, Vocabulary::synthetic(a.items), from)
        }
    };
    let manifest = write_bundle(&model, &items, &from, &a.out)?;
    println!(
        "wrote {} (model version {})",
        a.out.display(),
        manifest.model_version
    );
    for (name, f) in &manifest.files {
        println!("  {name}: {} bytes, sha256 {}", f.bytes, f.sha256);
    }
    Ok(())
}

pub fn bundle(c: &BundleCommand) -> Result<()> {
    let BundleCommand::Verify {
        bundle,
        checkpoint,
        seed,
    } = c;
    let verified = read_verified(bundle)?;
    println!(
        "{}: hashes, names and shapes match the manifest (model version {})",
        bundle.display(),
        verified.manifest.model_version
    );
    let ckpt = checkpoint.as_deref().map(Checkpoint::load).transpose()?;
    if let Some(c) = &ckpt {
        let version = model_version(&c.model)?;
        if version != verified.manifest.model_version {
            return Err(TrainerError::InvalidArgument(format!(
                "the checkpoint's model version {version} is not the bundle's {}",
                verified.manifest.model_version
            )));
        }
    }
    let report = parity(&verified, ckpt.as_ref().map(|c| &c.model), *seed)?;
    println!("{}", report.markdown());
    let max = report.max();
    if !report.passes() {
        return Err(TrainerError::Data(format!(
            "max absolute difference {max:e} exceeds {TOLERANCE:e}"
        )));
    }
    println!("max absolute difference {max:.2e} ≤ {TOLERANCE:e}");
    Ok(())
}
