//! Checkpoints of a trained [`SlowFastNet`]: the weights as safetensors (`weights.safetensors`,
//! candle's `VarMap::save`) and `checkpoint.json` beside them with everything needed to
//! rebuild, resume (Algorithm 1 saves after each round) and export the model.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, TrainerError};
use crate::models::slowfast::{SlowFastNet, TrainLog, Variant};
use crate::models::train::TrainConfig;
use crate::models::ModelConfig;
use slowfast_data::split::Split;
use slowfast_data::FileError;
use slowfast_data::{EventKind, EventLog};

/// The checkpoint format this build reads and writes.
pub const FORMAT_VERSION: u32 = 1;
pub const WEIGHTS: &str = "weights.safetensors";
pub const CONFIG: &str = "checkpoint.json";
/// The name of the item embedding table `e_i` among the weights.
const ITEM_EMB: &str = "item_emb";

/// The item vocabulary: raw ids in index order and their click counts in the training phases.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Vocabulary {
    pub ids: Vec<String>,
    pub popularity: Vec<u32>,
    /// How many of the last ids the latest [`Checkpoint::extend_items`] added (`items.json`'s
    /// `added`: the server's fresh share).
    #[serde(default)]
    pub added: usize,
}

impl Vocabulary {
    /// The vocabulary of a split log: every item index, and its slow- and fast-phase clicks
    /// (never test-phase ones).
    pub fn from_split(log: &EventLog, split: &Split) -> Result<Vocabulary> {
        let ids = (0..split.num_items as u32)
            .map(|i| {
                log.items.raw(i).map(str::to_owned).ok_or_else(|| {
                    TrainerError::Unusable(format!("item index {i} has no raw id in the log"))
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
        Ok(Vocabulary {
            ids,
            popularity,
            added: 0,
        })
    }

    /// Ids `i0, i1, …` with no clicks, for models that were never trained.
    pub fn synthetic(items: usize) -> Vocabulary {
        Vocabulary {
            ids: (0..items).map(|i| format!("i{i}")).collect(),
            popularity: vec![0; items],
            added: 0,
        }
    }
}

/// An item joining a trained model's vocabulary ([`Checkpoint::extend_items`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NewItem {
    /// Its raw id.
    pub id: String,
    /// Known items like it, e.g. the items of its category in the catalogue: its first
    /// embedding `e_i` is the mean of theirs (ids the vocabulary does not know are skipped),
    /// or the mean of every known item when none is known.
    pub like: Vec<String>,
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
    pub model: SlowFastNet,
    pub config: CheckpointConfig,
}

impl Checkpoint {
    /// A freshly initialised model for `config` (its `round` is ignored).
    pub fn init(config: CheckpointConfig) -> Result<Checkpoint> {
        let model = SlowFastNet::new(
            config.variant,
            config.items.ids.len(),
            config.model,
            config.seed,
        )?;
        Ok(Checkpoint { model, config })
    }

    /// Appends `items` to the vocabulary (ids it knows already are skipped): the item
    /// embedding table `item_emb` grows by one row per new item, initialised as
    /// [`NewItem::like`] says, with no click counted yet; every other weight is kept. The
    /// next round of Algorithm 1 then trains the new rows on what the devices upload. Returns
    /// the number of items added.
    pub fn extend_items(&mut self, items: &[NewItem]) -> Result<usize> {
        use candle_core::Tensor;
        use std::collections::HashMap;
        let index: HashMap<&str, usize> = (self.config.items.ids.iter())
            .enumerate()
            .map(|(i, id)| (id.as_str(), i))
            .collect();
        let mut seen = std::collections::HashSet::new();
        let fresh: Vec<&NewItem> = items
            .iter()
            .filter(|n| !index.contains_key(n.id.as_str()) && seen.insert(n.id.as_str()))
            .collect();
        self.config.items.added = fresh.len();
        if fresh.is_empty() {
            return Ok(0);
        }
        let emb = self.model.shared.item_emb.clone();
        let all = emb.mean_keepdim(0)?;
        let rows = fresh
            .iter()
            .map(|n| {
                let like: Vec<u32> = (n.like.iter())
                    .filter_map(|id| index.get(id.as_str()).map(|&i| i as u32))
                    .collect();
                if like.is_empty() {
                    return Ok(all.clone());
                }
                let ids = Tensor::from_vec(like.clone(), like.len(), emb.device())?;
                Ok(emb.index_select(&ids, 0)?.mean_keepdim(0)?)
            })
            .collect::<Result<Vec<Tensor>>>()?;
        let table = Tensor::cat(&[std::slice::from_ref(&emb), &rows[..]].concat(), 0)?;
        let mut config = self.config.clone();
        for n in &fresh {
            config.items.ids.push(n.id.clone());
            config.items.popularity.push(0);
        }
        let mut grown = Checkpoint::init(config)?;
        for (name, var) in crate::models::named_vars(&self.model.varmap, &[]) {
            let value = if name == ITEM_EMB {
                table.clone()
            } else {
                var.as_tensor().clone()
            };
            grown.model.varmap.set_one(&name, value)?;
        }
        *self = grown;
        Ok(fresh.len())
    }

    /// Writes the weights, then `checkpoint.json` (renamed into place, so a checkpoint whose
    /// config reads is complete).
    pub fn save(&self, dir: &Path) -> Result<()> {
        save_parts(&self.model, &self.config, dir)
    }

    /// Reads a checkpoint written by [`Checkpoint::save`].
    pub fn load(dir: &Path) -> Result<Checkpoint> {
        let path = dir.join(CONFIG);
        let bytes = std::fs::read(&path).map_err(|e| FileError::new(&path, e))?;
        let config: CheckpointConfig = serde_json::from_slice(&bytes)
            .map_err(slowfast_data::JsonError::of(path.display().to_string()))?;
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

fn save_parts(model: &SlowFastNet, config: &CheckpointConfig, dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
    model.varmap.save(dir.join(WEIGHTS))?;
    let json = serde_json::to_vec_pretty(config).map_err(slowfast_data::JsonError::of(CONFIG))?;
    let tmp = dir.join(format!("{CONFIG}.tmp"));
    std::fs::write(&tmp, json).map_err(|e| FileError::new(&tmp, e))?;
    let path = dir.join(CONFIG);
    std::fs::rename(&tmp, &path).map_err(|e| FileError::new(&path, e).into())
}

/// `model_version`: the first 16 hex digits of the SHA-256 over every weight (name, shape and
/// little-endian f32 values, in name order), so identical weights give identical versions.
pub fn model_version(model: &SlowFastNet) -> Result<String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::features::Windows;

    fn tiny(items: usize) -> Checkpoint {
        Checkpoint::init(CheckpointConfig {
            format_version: FORMAT_VERSION,
            variant: Variant::Mc2sf,
            model: ModelConfig {
                dim: 4,
                hidden: [8, 4],
                windows: Windows {
                    slow_history: 3,
                    clicks: 3,
                    exposures: 3,
                },
            },
            train: TrainConfig::default(),
            seed: 5,
            rounds: 1,
            round: 1,
            dataset: "test".into(),
            commit: "test".into(),
            items: Vocabulary::synthetic(items),
            log: TrainLog::default(),
        })
        .unwrap()
    }

    fn rows(ckpt: &Checkpoint) -> Vec<Vec<f32>> {
        ckpt.model.shared.item_emb.to_vec2().unwrap()
    }

    #[test]
    fn new_items_get_rows_from_their_like_items_and_every_other_weight_is_kept() {
        let mut ckpt = tiny(5);
        let before = rows(&ckpt);
        let others: Vec<(String, Vec<f32>)> = crate::models::named_vars(&ckpt.model.varmap, &[])
            .into_iter()
            .filter(|(n, _)| n != ITEM_EMB)
            .map(|(n, v)| (n, v.as_tensor().flatten_all().unwrap().to_vec1().unwrap()))
            .collect();
        let new = |id: &str, like: &[&str]| NewItem {
            id: id.into(),
            like: like.iter().map(|s| s.to_string()).collect(),
        };
        let added = ckpt
            .extend_items(&[
                new("n1", &["i1", "i3", "unknown"]),
                new("i2", &["i0"]),
                new("n2", &[]),
                new("n1", &["i0"]),
            ])
            .unwrap();
        assert_eq!(added, 2, "known ids and repeats are skipped");
        assert_eq!(ckpt.config.items.ids[5..], ["n1", "n2"]);
        assert_eq!(ckpt.config.items.popularity, vec![0; 7]);
        assert_eq!(ckpt.config.items.added, 2);
        let after = rows(&ckpt);
        assert_eq!(after.len(), 7);
        assert_eq!(after[..5], before[..]);
        for k in 0..4 {
            let like = (before[1][k] + before[3][k]) / 2.0;
            assert!((after[5][k] - like).abs() < 1e-6, "mean of its like items");
            let all = before.iter().map(|r| r[k]).sum::<f32>() / 5.0;
            assert!((after[6][k] - all).abs() < 1e-6, "mean of every item");
        }
        for (name, values) in others {
            let var = crate::models::named_vars(&ckpt.model.varmap, &[name.as_str()]);
            let now: Vec<f32> = var[0]
                .1
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap();
            assert_eq!(now, values, "{name}");
        }
        // The grown model saves and loads like any checkpoint.
        let dir = tempfile::tempdir().unwrap();
        ckpt.save(dir.path()).unwrap();
        let back = Checkpoint::load(dir.path()).unwrap();
        assert_eq!(rows(&back), after);
        assert_eq!(ckpt.extend_items(&[new("n2", &[])]).unwrap(), 0);
        assert_eq!(ckpt.config.items.added, 0, "nothing new this time");
    }

    /// A checkpoint whose config is not its JSON (a truncated copy) is refused with serde's
    /// error, which says where; one missing its config is a file error naming the file.
    #[test]
    fn a_damaged_checkpoint_is_refused_with_the_cause() {
        let dir = tempfile::tempdir().unwrap();
        tiny(3).save(dir.path()).unwrap();
        let path = dir.path().join(CONFIG);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, &text[..text.len() / 2]).unwrap();
        let err = Checkpoint::load(dir.path())
            .err()
            .expect("a truncated config");
        let TrainerError::Json(json) = &err else {
            panic!("expected a JSON error, got {err:?}");
        };
        assert!(json.source.is_eof(), "{err}");
        assert!(err.to_string().contains(CONFIG), "{err}");

        std::fs::remove_file(&path).unwrap();
        let err = Checkpoint::load(dir.path()).err().expect("no config");
        let TrainerError::Io(file) = &err else {
            panic!("expected a file error, got {err:?}");
        };
        assert_eq!(file.path, path);
        assert_eq!(file.source.kind(), std::io::ErrorKind::NotFound);
    }
}
