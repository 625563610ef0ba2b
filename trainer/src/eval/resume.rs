//! Finished seeds of a long `slowfast eval`, kept under `<out>/seeds/` so that a run stopped
//! part-way (a crash, a closed terminal, a machine taken back) resumes where it stopped: the
//! same command run again reuses every finished seed whose fingerprint matches and evaluates
//! only the others. A seed takes tens of minutes on ML-1M with every model on 2 cores.
//!
//! The fingerprint covers what a seed's numbers depend on: the events after filtering, the
//! model list, the model and training configuration, and this build's version. A file with
//! another fingerprint, or one that cannot be read, is ignored (and overwritten when the seed
//! finishes), never mixed into the results.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::curves::Curve;
use super::metrics::METRICS;
use crate::baselines::ZooConfig;
use crate::data::Dataset;
use crate::error::{Result, TrainerError};

/// One seed's outcome: the metric means of each model (in the run's model order), the number
/// of cases, and the training curves.
pub type SeedOutcome = (Vec<[f64; METRICS.len()]>, usize, Vec<Curve>);

/// The file of one finished seed.
#[derive(Serialize, Deserialize)]
struct SeedRecord {
    fingerprint: String,
    seed: u64,
    models: Vec<String>,
    rows: Vec<[f64; METRICS.len()]>,
    cases: usize,
    curves: Vec<Curve>,
}

/// The finished seeds of one evaluation (one output directory, one fingerprint).
pub struct SeedStore {
    dir: PathBuf,
    fingerprint: String,
    models: Vec<String>,
    rerun: Vec<String>,
}

impl SeedStore {
    /// The store under `out/seeds/` for `models` on `data` trained with `config`.
    pub fn new(out: &Path, data: &Dataset, models: &[String], config: &ZooConfig) -> SeedStore {
        SeedStore {
            dir: out.join("seeds"),
            fingerprint: fingerprint(data, models, config),
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
        match serde_json::from_slice::<SeedRecord>(&bytes) {
            Ok(r)
                if r.fingerprint == self.fingerprint
                    && r.seed == seed
                    && r.models == self.models =>
            {
                tracing::info!(seed, path = %path.display(), "seed already evaluated: reused");
                Some((r.rows, r.cases, r.curves))
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
        std::fs::create_dir_all(&self.dir).map_err(|e| TrainerError::io(&self.dir, e))?;
        let record = SeedRecord {
            fingerprint: self.fingerprint.clone(),
            seed,
            models: self.models.clone(),
            rows: outcome.0.clone(),
            cases: outcome.1,
            curves: outcome.2.clone(),
        };
        let json = serde_json::to_vec(&record).map_err(|source| TrainerError::Json {
            what: format!("seed {seed}"),
            source,
        })?;
        let path = self.path(seed);
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, json).map_err(|e| TrainerError::io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| TrainerError::io(&path, e))
    }
}

/// SHA-256 over the filtered events, the model list, the configuration and the build version.
fn fingerprint(data: &Dataset, models: &[String], config: &ZooConfig) -> String {
    let mut h = Sha256::new();
    h.update(env!("CARGO_PKG_VERSION").as_bytes());
    h.update(format!("{models:?}|{config:?}").as_bytes());
    for e in &data.log.events {
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
    use crate::data::{EventKind, EventLog};

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

    #[test]
    fn a_seed_is_reused_only_by_the_same_evaluation() {
        let dir = tempfile::tempdir().unwrap();
        let models = vec!["Pop".to_owned()];
        let config = ZooConfig::default();
        let store = SeedStore::new(dir.path(), &data(0), &models, &config);
        assert!(store.load(1).is_none());
        let outcome: SeedOutcome = (vec![[0.5, 0.25, 0.1, 0.2, 0.3, 0.4]], 7, vec![]);
        store.save(1, &outcome).unwrap();
        assert_eq!(store.load(1).unwrap().0, outcome.0);
        assert!(store.load(2).is_none(), "another seed");

        let other_data = SeedStore::new(dir.path(), &data(1), &models, &config);
        assert!(other_data.load(1).is_none(), "other events");
        let other_models = SeedStore::new(dir.path(), &data(0), &["Random".to_owned()], &config);
        assert!(other_models.load(1).is_none(), "other models");
        let mut longer = config;
        longer.train.max_epochs += 1;
        let other_config = SeedStore::new(dir.path(), &data(0), &models, &longer);
        assert!(
            other_config.load(1).is_none(),
            "other training configuration"
        );

        std::fs::write(store.path(1), b"{ torn").unwrap();
        assert!(
            store.load(1).is_none(),
            "a torn file is ignored, not an error"
        );
    }
}
