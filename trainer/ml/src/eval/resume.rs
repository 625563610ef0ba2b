//! Finished seeds of a long `slowfast eval`, kept under `<out>/seeds/` so that a run stopped
//! part-way (a crash, a closed terminal, a machine taken back) resumes where it stopped: the
//! same command run again reuses every finished seed whose fingerprint matches and evaluates
//! only the others. A seed takes tens of minutes on ML-1M with every model on 2 cores.
//!
//! A seed keeps every model's per-case ranks (the bootstrap of [`super::bootstrap`] reads
//! them), not only its metric means. The fingerprint covers what a seed's numbers depend on:
//! the events after filtering, the model list, the model and training configuration, the
//! users ranked in full, and this build's version. A file with another fingerprint, of an
//! older layout (without per-case ranks), or one that cannot be read, is ignored (and
//! overwritten when the seed finishes), never mixed into the results.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::curves::Curve;
use crate::baselines::ZooConfig;
use crate::error::{Result, TrainerError};
use slowfast_data::protocol::metrics::{mean_at, Ranking, COLUMNS};
use slowfast_data::Dataset;
use slowfast_data::FileError;

/// The layout of a seed file; a file of another layout is evaluated again.
const FORMAT: u32 = 2;

/// One model's ranks in one seed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CaseRanks {
    /// The 0-based rank of each case's positive among its sampled candidates, in case order.
    pub sampled: Vec<u32>,
    /// The 0-based rank of the positive in the whole catalogue, for each of the seed's
    /// [`SeedOutcome::full_cases`].
    pub full: Vec<u32>,
}

impl CaseRanks {
    /// The ranks a column's metric is read from.
    pub fn of(&self, ranking: Ranking) -> &[u32] {
        match ranking {
            Ranking::Sampled => &self.sampled,
            Ranking::Full => &self.full,
        }
    }

    /// The mean of every column over the cases, in [`COLUMNS`] order.
    pub fn means(&self) -> [f64; COLUMNS.len()] {
        COLUMNS.map(|c| mean_at(c.metric, self.of(c.ranking)))
    }
}

/// One seed's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeedOutcome {
    /// The user of each case, in case order (the cases are the same for every model).
    pub users: Vec<u32>,
    /// The indices of the cases also ranked against the whole catalogue.
    pub full_cases: Vec<u32>,
    /// Each model's ranks, in the run's model order.
    pub ranks: Vec<CaseRanks>,
    /// The training curves.
    pub curves: Vec<Curve>,
}

/// The file of one finished seed.
#[derive(Serialize, Deserialize)]
struct SeedRecord {
    format: u32,
    fingerprint: String,
    seed: u64,
    models: Vec<String>,
    outcome: SeedOutcome,
}

/// The part of a seed file every layout has.
#[derive(Deserialize)]
struct Layout {
    #[serde(default)]
    format: u32,
}

/// The finished seeds of one evaluation (one output directory, one fingerprint).
pub struct SeedStore {
    dir: PathBuf,
    fingerprint: String,
    models: Vec<String>,
    rerun: Vec<String>,
}

impl SeedStore {
    /// The store under `out/seeds/` for `models` on `data` trained with `config`, with the
    /// cases of `full_users` users ranked in full.
    pub fn new(
        out: &Path,
        data: &Dataset,
        models: &[String],
        config: &ZooConfig,
        full_users: usize,
    ) -> SeedStore {
        SeedStore {
            dir: out.join("seeds"),
            fingerprint: fingerprint(data, models, config, full_users),
            models: models.to_vec(),
            rerun: Vec::new(),
        }
    }

    /// The same store, whose saved seeds have `models` evaluated again (after a fix to one of
    /// them) while every other model's saved row and curves are kept. Each of `models` must be
    /// one of the evaluation's.
    pub fn rerunning(self, models: Vec<String>) -> Result<SeedStore> {
        if let Some(m) = models.iter().find(|m| !self.models.contains(m)) {
            return Err(TrainerError::InvalidArgument(format!(
                "cannot re-run {m:?}: it is not one of the evaluated models ({})",
                self.models.join(", ")
            )));
        }
        Ok(SeedStore {
            rerun: models,
            ..self
        })
    }

    /// The models whose saved rows are evaluated again.
    pub fn rerun(&self) -> &[String] {
        &self.rerun
    }

    fn path(&self, seed: u64) -> PathBuf {
        self.dir.join(format!("seed-{seed}.json"))
    }

    /// The saved outcome of `seed`, when a finished run of the same evaluation left one.
    pub fn load(&self, seed: u64) -> Option<SeedOutcome> {
        let path = self.path(seed);
        let bytes = std::fs::read(&path).ok()?;
        match serde_json::from_slice::<Layout>(&bytes) {
            Ok(l) if l.format != FORMAT => {
                tracing::warn!(
                    seed,
                    path = %path.display(),
                    format = l.format,
                    "saved seed of an older layout (without per-case ranks): evaluated again"
                );
                return None;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(seed, path = %path.display(), error = %e, "unreadable saved seed: ignored");
                return None;
            }
        }
        match serde_json::from_slice::<SeedRecord>(&bytes) {
            Ok(r)
                if r.fingerprint == self.fingerprint
                    && r.seed == seed
                    && r.models == self.models
                    && r.outcome.ranks.len() == self.models.len() =>
            {
                tracing::info!(seed, path = %path.display(), "seed already evaluated: reused");
                Some(r.outcome)
            }
            Ok(_) => {
                tracing::info!(seed, path = %path.display(), "saved seed is of another evaluation: ignored");
                None
            }
            Err(e) => {
                tracing::warn!(seed, path = %path.display(), error = %e, "unreadable saved seed: ignored");
                None
            }
        }
    }

    /// Saves a finished seed (written to a temporary file, then renamed into place).
    pub fn save(&self, seed: u64, outcome: &SeedOutcome) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| FileError::new(&self.dir, e))?;
        let record = SeedRecord {
            format: FORMAT,
            fingerprint: self.fingerprint.clone(),
            seed,
            models: self.models.clone(),
            outcome: outcome.clone(),
        };
        let json = serde_json::to_vec(&record)
            .map_err(slowfast_data::JsonError::of(format!("seed {seed}")))?;
        let path = self.path(seed);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| FileError::new(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| FileError::new(&path, e).into())
    }
}

/// SHA-256 over the split's events (user by user, in time order), the model list, the configuration, the number of users
/// ranked in full and the build version.
fn fingerprint(data: &Dataset, models: &[String], config: &ZooConfig, full_users: usize) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(format!("{models:?}|{config:?}|full ranking of {full_users} users").as_bytes());
    for e in data.split.timelines.iter().flat_map(|t| t.events.iter()) {
        h.update(e.user.to_le_bytes());
        h.update(e.item.to_le_bytes());
        h.update(e.ts.to_le_bytes());
        h.update([e.kind as u8]);
    }
    hex::encode(h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use slowfast_data::{EventKind, EventLog};

    fn data(shift: i64) -> Dataset {
        let mut log = EventLog::default();
        for u in 0..30 {
            for k in 0..30 {
                let kind = if k % 3 == 0 {
                    EventKind::Exposure
                } else {
                    EventKind::Click
                };
                log.push_raw(
                    &format!("u{u}"),
                    &format!("i{}", (u + k) % 25),
                    k + shift,
                    kind,
                );
            }
        }
        Dataset::from_log("t", log).unwrap()
    }

    fn outcome(models: usize) -> SeedOutcome {
        SeedOutcome {
            users: vec![4, 4, 9],
            full_cases: vec![2],
            ranks: (0..models as u32)
                .map(|m| CaseRanks {
                    sampled: vec![m, 3, 40],
                    full: vec![700 + m],
                })
                .collect(),
            curves: vec![],
        }
    }

    #[test]
    fn means_read_each_column_from_its_ranks() {
        let ranks = &outcome(1).ranks[0];
        let means = ranks.means();
        let names: Vec<String> = COLUMNS.iter().map(|c| c.name()).collect();
        let at = |name: &str| means[names.iter().position(|n| n == name).unwrap()];
        assert!((at("HR@1") - 1.0 / 3.0).abs() < 1e-12);
        assert!((at("HR@5") - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(at("full HR@10"), 0.0, "rank 700 of the catalogue");
    }

    #[test]
    fn a_seed_is_reused_only_by_the_same_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let models = vec!["Pop".to_owned()];
        let config = ZooConfig::default();
        let store = SeedStore::new(dir.path(), &data(0), &models, &config, 10);
        assert!(store.load(1).is_none());
        let outcome = outcome(1);
        store.save(1, &outcome).unwrap();
        assert_eq!(store.load(1).unwrap(), outcome);
        assert!(store.load(2).is_none(), "another seed");

        let other_data = SeedStore::new(dir.path(), &data(1), &models, &config, 10);
        assert!(other_data.load(1).is_none(), "other events");
        let other_models =
            SeedStore::new(dir.path(), &data(0), &["Random".to_owned()], &config, 10);
        assert!(other_models.load(1).is_none(), "other models");
        let mut longer = config;
        longer.train.max_epochs += 1;
        let other_config = SeedStore::new(dir.path(), &data(0), &models, &longer, 10);
        assert!(
            other_config.load(1).is_none(),
            "other training configuration"
        );
        let other_full = SeedStore::new(dir.path(), &data(0), &models, &config, 11);
        assert!(other_full.load(1).is_none(), "other users ranked in full");

        std::fs::write(store.path(1), b"{ torn").unwrap();
        assert!(
            store.load(1).is_none(),
            "a torn file is ignored, not an error"
        );
    }

    /// A seed file of the layout before per-case ranks (metric means only) is evaluated again,
    /// never read as ranks.
    #[test]
    fn a_seed_of_the_older_layout_is_evaluated_again() {
        let dir = tempfile::tempdir().unwrap();
        let models = vec!["Pop".to_owned()];
        let store = SeedStore::new(dir.path(), &data(0), &models, &ZooConfig::default(), 10);
        store.save(1, &outcome(1)).unwrap();
        let mut record: serde_json::Value =
            serde_json::from_slice(&std::fs::read(store.path(1)).unwrap()).unwrap();
        let fingerprint = record["fingerprint"].clone();
        record = serde_json::json!({
            "fingerprint": fingerprint,
            "seed": 1,
            "models": ["Pop"],
            "rows": [[0.5, 0.25, 0.1, 0.2, 0.3, 0.4]],
            "cases": 7,
            "curves": [],
        });
        std::fs::write(store.path(1), record.to_string()).unwrap();
        assert!(store.load(1).is_none());
    }
}
