//! Checkpoints of a trained [`SlowFast`]: the weights as safetensors (`weights.safetensors`,
//! candle's `VarMap::save`) and `checkpoint.json` beside them with everything needed to
//! rebuild, resume (Algorithm 1 saves after each round) and export the model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::split::Split;
use crate::data::{EventKind, EventLog};
use crate::error::{Result, TrainerError};
use crate::models::slowfast::{SlowFast, TrainLog, Variant};
use crate::models::train::TrainConfig;
use crate::models::ModelConfig;

/// The checkpoint format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
pub const WEIGHTS: &str = "weights.safetensors";
pub const CONFIG: &str = "checkpoint.json";

/// The item vocabulary: raw ids in index order and their click counts in the training phases.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    pub ids: Vec<String>,
    pub popularity: Vec<u32>,
}

impl Vocabulary {
    /// The vocabulary of a split log: every item index, and its slow- and fast-phase clicks
    /// (never test-phase ones).
    pub fn from_split(log: &EventLog, split: &Split) -> Result<Vocabulary> {
        let ids = (0..split.num_items as u32)
            .map(|i| {
                log.items.raw(i).map(str::to_owned).ok_or_else(|| {
                    TrainerError::Data(format!("item index {i} has no raw id in the log"))
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut popularity = vec![0u32; ids.len()];
        for t in &split.timelines {
            for e in &t.events[..t.test_start] {
                if e.kind == EventKind::Click {
                    if let Some(p) = popularity.get_mut(e.item as usize) {
                        *p += 1;
                    }
                }
            }
        }
        Ok(Vocabulary { ids, popularity })
    }

    /// Ids `i0, i1, …` with no clicks, for models that were never trained.
    pub fn synthetic(items: usize) -> Vocabulary {
        Vocabulary {
            ids: (0..items).map(|i| format!("i{i}")).collect(),
            popularity: vec![0; items],
        }
    }
}

/// `checkpoint.json`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckpointConfig {
    pub format_version: u32,
    pub variant: Variant,
    /// Embedding size, MLP sizes and the windows (`W_s`, `W_c`, `W_e`).
    pub model: ModelConfig,
    pub train: TrainConfig,
    /// The seed of the initial weights.
    pub seed: u64,
    /// Rounds of Algorithm 1 asked for.
    pub rounds: usize,
    /// Rounds completed; the weights are those after this round.
    pub round: usize,
    /// The data set the model was trained on.
    pub dataset: String,
    /// The trainer's source commit.
    pub commit: String,
    pub items: Vocabulary,
    /// Training curves of every fit so far.
    #[serde(default)]
    pub log: TrainLog,
}

/// A model and its configuration, as saved.
pub struct Checkpoint {
    pub model: SlowFast,
    pub config: CheckpointConfig,
}

impl Checkpoint {
    /// A freshly initialised model for `config` (its `round` is ignored).
    pub fn init(config: CheckpointConfig) -> Result<Checkpoint> {
        let model = SlowFast::new(
            config.variant,
            config.items.ids.len(),
            config.model,
            config.seed,
        )?;
        Ok(Checkpoint { model, config })
    }

    /// Writes the weights, then `checkpoint.json` (renamed into place, so a checkpoint whose
    /// config reads is complete).
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_parts(&self.model, &self.config, dir)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(dir: &Path) -> Result<Checkpoint> {
        let path = dir.join(CONFIG);
        let bytes = std::fs::read(&path).map_err(|e| TrainerError::io(&path, e))?;
        let config: CheckpointConfig =
            serde_json::from_slice(&bytes).map_err(|e| TrainerError::Parse {
                file: path.display().to_string(),
                line: e.line() as u64,
                reason: e.to_string(),
            })?;
        if config.format_version > FORMAT_VERSION {
            return Err(TrainerError::InvalidArgument(format!(
                "{}: checkpoint format {} is newer than this build reads ({FORMAT_VERSION})",
                path.display(),
                config.format_version
            )));
        }
        let mut ckpt = Checkpoint::init(config)?;
        let weights: PathBuf = dir.join(WEIGHTS);
        ckpt.model
            .varmap
            .load(&weights)
            .map_err(|e| TrainerError::InvalidArgument(format!("{}: {e}", weights.display())))?;
        Ok(ckpt)
    }

    /// Trains the remaining rounds of Algorithm 1 on `split`, saving to `dir` after each.
    pub fn train(&mut self, split: &Split, dir: &Path) -> Result<()> {
        let from = self.config.round + 1;
        let to = self.config.rounds;
        let Checkpoint { model, config } = self;
        let train = config.train;
        let mut save = |round: usize, log: &TrainLog| -> Result<()> {
            config.round = round;
            config.log.fits.extend(log.fits.iter().cloned());
            save_parts(model, config, dir)?;
            tracing::info!(round, dir = %dir.display(), "checkpoint saved");
            Ok(())
        };
        model.train_rounds(split, &train, from..=to, &mut save)?;
        Ok(())
    }
}

fn save_parts(model: &SlowFast, config: &CheckpointConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| TrainerError::io(dir, e))?;
    model.varmap.save(dir.join(WEIGHTS))?;
    let json = serde_json::to_vec_pretty(config).map_err(|e| TrainerError::Json {
        what: CONFIG.into(),
        source: e,
    })?;
    let tmp = dir.join(format!("{CONFIG}.tmp"));
    std::fs::write(&tmp, json).map_err(|e| TrainerError::io(&tmp, e))?;
    let path = dir.join(CONFIG);
    std::fs::rename(&tmp, &path).map_err(|e| TrainerError::io(&path, e))
}

/// `model_version`: the first 16 hex digits of the SHA-256 over every weight (name, shape and
/// little-endian f32 values, in name order), so identical weights give identical versions.
pub fn model_version(model: &SlowFast) -> Result<String> {
    use sha2::Digest;
    let data = model
        .varmap
        .data()
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut h = sha2::Sha256::new();
    for name in names {
        let t = data[name].as_tensor();
        h.update(name.as_bytes());
        for d in t.dims() {
            h.update((*d as u64).to_le_bytes());
        }
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        for x in v {
            h.update(x.to_le_bytes());
        }
    }
    Ok(hex::encode(h.finalize())[..16].to_string())
}

/// The trainer's source commit: `SLOWFAST_COMMIT` at build time, else `git rev-parse HEAD`
/// in the crate's directory, else `unknown`.
pub fn source_commit() -> String {
    if let Some(c) = option_env!("SLOWFAST_COMMIT") {
        return c.to_owned();
    }
    std::process::Command::new("git")
        .args(["rev-parse", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|c| !c.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
