//! `slowfast export` and `slowfast bundle verify`: a model bundle, and its checks.

use std::path::PathBuf;

use clap::{Args, Subcommand};
use slowfast_trainer::checkpoint::{model_version, source_commit, Checkpoint, Vocabulary};
use slowfast_trainer::export::bundle::{write_bundle, Provenance};
use slowfast_trainer::export::parity::TOLERANCE;
use slowfast_trainer::export::verify::{parity, read_verified};
use slowfast_trainer::models::features::Windows;
use slowfast_trainer::models::slowfast::{SlowFastNet, Variant};
use slowfast_trainer::models::ModelConfig;

use crate::error::{CliError, Result};

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

pub fn run(a: &ExportArgs) -> Result<()> {
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
            let model = SlowFastNet::new(Variant::Mc2sf, a.items, config, a.seed)?;
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

pub fn verify(c: &BundleCommand) -> Result<()> {
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
            return Err(CliError::InvalidArgument(format!(
                "the checkpoint's model version {version} is not the bundle's {}",
                verified.manifest.model_version
            )));
        }
    }
    let report = parity(&verified, ckpt.as_ref().map(|c| &c.model), *seed)?;
    println!("{}", report.markdown());
    let max = report.max();
    if !report.passes() {
        return Err(CliError::Unusable(format!(
            "max absolute difference {max:e} exceeds {TOLERANCE:e}"
        )));
    }
    println!("max absolute difference {max:.2e} ≤ {TOLERANCE:e}");
    Ok(())
}
