//! The cloud side of one arm: the sync server on loopback with its own embedded SQLite store,
//! the users' logged history imported into it, and the nightly next round of Algorithm 1 from
//! what the devices uploaded ([`crate::retrain`], the path of `slowfast train --from-db`).

use std::path::{Path, PathBuf};

use slowfast_core::wire::{UploadRequest, WireEvent};
use slowfast_data::FileError;

use crate::error::Result;
use crate::retrain::{export_verified, next_round, NextRound, Uploads};
use slowfast_data::{EventKind, EventLog};
use slowfast_feed::retrieval::Retrieval;
use slowfast_server::auth::{unix_now, Secret};
use slowfast_server::{Running, ServeConfig};
use slowfast_trainer::checkpoint::{model_version, Checkpoint, NewItem};

/// The idempotency key and model version under which the logged history is imported.
pub const HISTORY: &str = "logged-history";

/// One arm's server and the checkpoint its current bundle was exported from.
pub struct Cloud {
    pub server: Running,
    secret: Secret,
    dir: PathBuf,
    checkpoint: PathBuf,
    /// The current bundle's model version.
    pub version: String,
}

impl Cloud {
    /// Starts a server in `dir` (its database `dir/sync.db`) serving `bundle`, exported from
    /// the checkpoint in `checkpoint`, retrieving feeds as `retrieval` says.
    pub fn start(
        dir: &Path,
        bundle: &Path,
        checkpoint: &Path,
        secret: Secret,
        retrieval: Retrieval,
    ) -> Result<Cloud> {
        std::fs::create_dir_all(dir).map_err(|e| FileError::new(dir, e))?;
        let db = dir.join("sync.db");
        let server = Running::start(
            &ServeConfig {
                bundle: bundle.to_path_buf(),
                db: db.display().to_string(),
                listen: ([127, 0, 0, 1], 0).into(),
                secret: secret.clone(),
                retrieval,
                connections: Default::default(),
                rate_limit: None,
            },
            2,
        )?;
        let version = server.state.model().bundle.manifest.model_version.clone();
        Ok(Cloud {
            server,
            secret,
            dir: dir.to_path_buf(),
            checkpoint: checkpoint.to_path_buf(),
            version,
        })
    }

    /// A bearer token for `user`, valid for a day.
    pub fn token(&self, user: &str) -> Result<String> {
        Ok(self.secret.mint(user, unix_now() + 86_400)?)
    }

    /// Stores the logged events of `users` (raw ids, `ts` in seconds) as if their phones had
    /// uploaded them before: the history `H^S` the slow model ranks with. Returns the number of
    /// events stored.
    pub fn import_history(&self, log: &EventLog, users: &[u32]) -> Result<usize> {
        let dim = self.server.state.model().bundle.manifest.dim;
        let mut requests: Vec<(String, UploadRequest)> = Vec::new();
        let mut index = vec![None; log.users.len()];
        for &u in users {
            let raw = format!("u{u}");
            if let Some(i) = log.users.get(&raw) {
                index[i as usize] = Some(requests.len());
                requests.push((raw, history_request(dim)));
            }
        }
        for e in &log.events {
            let (Some(k), Some(item)) = (index[e.user as usize], log.items.raw(e.item)) else {
                continue;
            };
            let w = WireEvent {
                item: item.to_owned(),
                ts: e.ts * 1000,
            };
            match e.kind {
                EventKind::Click => requests[k].1.clicks.push(w),
                EventKind::Exposure => requests[k].1.exposures.push(w),
            }
        }
        let store = &self.server.state.store;
        let now = unix_now() * 1000;
        let mut stored = 0;
        for (user, req) in &requests {
            let a = self.server.block_on(store.record_upload(user, req, now))?;
            stored += (a.accepted_clicks + a.accepted_exposures) as usize;
        }
        Ok(stored)
    }

    /// The next round: the day's new items (`arrivals`, from the catalogue) join the
    /// vocabulary (`Checkpoint::extend_items`) → the store's uploads → `next` more rounds of
    /// Algorithm 1 from the current checkpoint → a verified bundle in `dir/day{day}/bundle` →
    /// swapped into the server, which serves the new items from then on. Returns the new model
    /// version.
    pub fn retrain(
        &mut self,
        day: usize,
        next: NextRound,
        seed: u64,
        arrivals: &[NewItem],
    ) -> Result<String> {
        let mut ckpt = Checkpoint::load(&self.checkpoint)?;
        let version = model_version(&ckpt.model)?;
        ckpt.extend_items(arrivals)?;
        let store = &self.server.state.store;
        let uploads = self
            .server
            .block_on(Uploads::read(store, &ckpt.config.items, &version))?;
        tracing::info!(
            day,
            events = uploads.log.events.len(),
            users = uploads.split.timelines.len(),
            neg_memories = uploads.neg_memories,
            "training the next round from the uploads"
        );
        let out = self.dir.join(format!("day{day}"));
        let checkpoint = out.join("checkpoint");
        next_round(
            &mut ckpt,
            &uploads,
            next,
            "sync server uploads",
            &checkpoint,
        )?;
        let bundle = out.join("bundle");
        export_verified(&ckpt, &bundle, seed)?;
        self.version = self.server.state.reload(&bundle)?;
        self.checkpoint = checkpoint;
        Ok(self.version.clone())
    }
}

fn history_request(dim: usize) -> UploadRequest {
    UploadRequest {
        user: None,
        idempotency_key: HISTORY.into(),
        model_version: HISTORY.into(),
        neg_memory: vec![0.0; dim],
        clicks: Vec::new(),
        exposures: Vec::new(),
    }
}
