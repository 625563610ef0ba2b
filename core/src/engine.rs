//! [`SlowFast`], the engine the apps embed (docs/architecture.md §6): records real-time clicks and
//! exposures, keeps the negative memory `r̂2` (eq. 5), re-ranks the candidates the cloud sends
//! with the fast model (eq. 7–8), and syncs with the server (F2S upload, S2F feed, model
//! updates).
//!
//! # Unknown items
//! An event for an item whose embedding is not cached yet is stored and enters its window like
//! any other, but contributes nothing until the embedding arrives with a feed (`rerank` or
//! `fetch_feed`): the windows hand the fast model only the items whose embeddings are known,
//! and `r̂2` skips the exposure. When a feed brings the embedding of an exposure in the
//! retained log that was skipped, `r̂2` is recomputed: `GRU_n` folded from zero, in time
//! order, over the retained exposures (the newest [`NEG_LOG_LEN`], or the exposure window if
//! longer) whose embeddings are then known — the same recompute as after a model change.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::backoff::{self, Backoff};
use crate::embeddings::EmbeddingCache;
use crate::error::{Result, SlowFastError};
use crate::manifest::{Manifest, DEVICE_FILES, MANIFEST_JSON};
use crate::model::DeviceModel;
use crate::store::{Batch, BundleFiles, Durability, EventKind, Store, STORE_FILE};
use crate::sync::{Cancel, Conditional, SyncClient};
use crate::window::{Window, WindowEvent};
use crate::wire::{
    FeedResponse, SignedToken, UploadRequest, WireEvent, MAX_EVENTS_PER_UPLOAD, MAX_FEED_K,
    MAX_ID_BYTES,
};

/// Exposures retained for recomputing `r̂2` (at least this many; more if the exposure window
/// is longer).
pub const NEG_LOG_LEN: usize = 200;
/// Most batches one `sync_now` uploads (each up to `MAX_EVENTS_PER_UPLOAD` events).
pub const MAX_BATCHES_PER_SYNC: usize = 16;
/// The file in the data directory an open engine holds an exclusive lock on.
pub const LOCK_FILE: &str = "slowfast.lock";

/// How to open an engine. [`Config::new`] fills in the defaults.
#[derive(Clone, Debug)]
pub struct Config {
    /// Directory of the store (created if missing). One user per directory.
    pub data_dir: PathBuf,
    /// The sync server, e.g. `https://sync.example.com` (the `/v1` prefix is added).
    pub server_url: String,
    /// Bearer token; it names the user to the server. A token in the sync server's format
    /// ([`crate::wire::TokenClaims`]) must name [`Config::user`]; other tokens are passed on
    /// as they are. Replace it on an open engine with [`SlowFast::set_token`].
    pub token: String,
    /// The user the store belongs to; opening a store created for another user is refused.
    pub user: String,
    /// Real-time clicks fed to the fast model, `H^F_p` (eq. 7); capped by the bundle's `W_c`.
    pub click_window: usize,
    /// Real-time exposures fed to the fast model, `H^F_n` (eq. 7); capped by the bundle's `W_e`.
    pub exposure_window: usize,
    /// `sync_now` uploads once this long has passed since the last upload (at once before the
    /// first upload; `u64::MAX` leaves only the count threshold after it) …
    pub sync_interval_ms: u64,
    /// … or once this many events are pending, whichever comes first.
    pub sync_max_events: usize,
    /// Item embeddings kept by the LRU cache (items in the windows are kept besides).
    pub embedding_cache: usize,
    /// A bundle shipped with the app, installed when the store has none.
    pub initial_bundle: Option<PathBuf>,
    /// Timeout of each HTTP request.
    pub http_timeout_ms: u64,
    /// What a recorded event survives once its call returned: the app's process dying
    /// (default) or power loss too, at one storage sync per call ([`Durability`]).
    pub durability: Durability,
}

impl Config {
    /// Windows 50/50, sync every 15 minutes or 100 events, 10 000 cached embeddings, 10 s
    /// HTTP timeout, no shipped bundle, [`Durability::Process`].
    pub fn new(
        data_dir: impl Into<PathBuf>,
        server_url: impl Into<String>,
        token: impl Into<String>,
        user: impl Into<String>,
    ) -> Config {
        Config {
            data_dir: data_dir.into(),
            server_url: server_url.into(),
            token: token.into(),
            user: user.into(),
            click_window: 50,
            exposure_window: 50,
            sync_interval_ms: 15 * 60 * 1000,
            sync_max_events: 100,
            embedding_cache: 10_000,
            initial_bundle: None,
            http_timeout_ms: 10_000,
            durability: Durability::default(),
        }
    }

    fn validate(&self) -> Result<()> {
        let bad = |m: &str| Err(SlowFastError::InvalidArgument(m.to_string()));
        if self.user.trim().is_empty() {
            return bad("config.user is empty");
        }
        if self.click_window == 0 || self.exposure_window == 0 {
            return bad("config windows must be positive");
        }
        if self.embedding_cache == 0 {
            return bad("config.embedding_cache must be positive");
        }
        if self.sync_max_events == 0 {
            return bad("config.sync_max_events must be positive");
        }
        check_token_user(&self.token, &self.user)
    }
}

/// One re-ranked candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct Scored {
    pub item: String,
    /// The fast model's logit `y_F` (eq. 8, before `σ`); the order of `rerank`.
    pub score: f32,
    /// The slow model's logit the feed carried (eq. 6).
    pub slow_score: f32,
}

/// What a sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub uploaded_clicks: usize,
    pub uploaded_exposures: usize,
    /// Batches the server acknowledged in this call.
    pub batches: usize,
    /// Of those, batches the server had already stored (a retry after a lost answer).
    pub duplicates: usize,
    /// Transient failures retried inside this call.
    pub retries: u32,
    /// Nothing was due (thresholds not reached, nothing pending, no model yet) or the
    /// backoff after an earlier failure has not run out.
    pub skipped: bool,
    /// Milliseconds of backoff left when skipped for that reason.
    pub backoff_ms: u64,
    /// Events still waiting for upload after the call.
    pub pending: usize,
}

/// The device runtime. `Send + Sync`; every method takes `&self`. Only `sync_now`,
/// `upload_pending`, `fetch_feed` and `update_model` touch the network; each blocks its
/// caller's thread until done or cancelled ([`Cancel`]), and none holds the lock that
/// recording and re-ranking take, nor waits for another kind of network call, while a request
/// is in flight. One engine per data directory: a second one is refused with
/// [`SlowFastError::InUse`] until the first is dropped.
pub struct SlowFast {
    state: Mutex<Engine>,
    /// Serialises uploads so two syncs never send the same batch concurrently.
    uploading: Mutex<()>,
    /// Serialises model updates.
    updating: Mutex<()>,
    client: SyncClient,
    /// Holds the data directory's exclusive lock while the engine lives.
    _dir_lock: File,
}

struct Engine {
    store: Store,
    model: Option<Arc<DeviceModel>>,
    /// `H^F_p`, the newest `click_window` clicks.
    clicks: Window,
    /// The retained exposure log; its newest `exposure_window` are `H^F_n`.
    exposures: Window,
    cache: EmbeddingCache,
    /// `r̂2` (eq. 5) for the installed model; empty without one.
    neg_memory: Vec<f32>,
    backoff: Backoff,
    config: Config,
}

impl SlowFast {
    /// Opens or creates the store in `config.data_dir`, loads and verifies the installed
    /// bundle (installing `config.initial_bundle` when there is none), restores the windows,
    /// the embedding cache and `r̂2`. Nothing touches the network.
    ///
    /// A stored `r̂2` that fails its checksum or belongs to another model version is
    /// recomputed from the exposure log. A stored bundle that fails verification is replaced
    /// by `initial_bundle`, or dropped (the engine records but cannot score until
    /// `update_model`/`install_bundle`).
    pub fn open(config: Config) -> Result<SlowFast> {
        config.validate()?;
        let client = SyncClient::new(&config.server_url, &config.token, config.http_timeout_ms)?;
        std::fs::create_dir_all(&config.data_dir)?;
        let dir_lock = lock_dir(&config.data_dir)?;
        let mut store = Store::open(&config.data_dir.join(STORE_FILE), config.durability)?;
        store.bind_user(&config.user)?;
        let log_len = config.exposure_window.max(NEG_LOG_LEN);
        let mut engine = Engine {
            model: None,
            clicks: Window::new(config.click_window),
            exposures: Window::new(log_len),
            cache: EmbeddingCache::new(config.embedding_cache),
            neg_memory: Vec::new(),
            backoff: Backoff::default(),
            store,
            config,
        };
        engine.restore()?;
        Ok(SlowFast {
            state: Mutex::new(engine),
            uploading: Mutex::new(()),
            updating: Mutex::new(()),
            client,
            _dir_lock: dir_lock,
        })
    }

    /// Replaces the bearer token (after the app refreshed it): calls started afterwards send
    /// the new one. A token in the sync server's format that names another user than the
    /// engine's is refused with [`SlowFastError::Config`] and the old token kept.
    pub fn set_token(&self, token: &str) -> Result<()> {
        let mut st = self.lock()?;
        check_token_user(token, &st.config.user)?;
        st.config.token = token.to_string();
        self.client.set_token(token);
        Ok(())
    }

    /// Records a click on `item` at `ts_ms` (Unix ms). Durable when it returns.
    pub fn record_click(&self, item: &str, ts_ms: i64) -> Result<()> {
        check_id(item)?;
        self.lock()?.record(EventKind::Click, item, ts_ms)
    }

    /// Records that `item` was shown at `ts_ms` and not clicked (yet). Advances `r̂2` by one
    /// `GRU_n` step (eq. 5) when the item's embedding is known. Durable when it returns.
    pub fn record_exposure(&self, item: &str, ts_ms: i64) -> Result<()> {
        check_id(item)?;
        self.lock()?.record(EventKind::Exposure, item, ts_ms)
    }

    /// Scores every candidate of `feed` with the fast model in one batched call and returns
    /// them best first; ties keep the feed's order. The feed's embeddings enter the cache.
    pub fn rerank(&self, feed: &FeedResponse) -> Result<Vec<Scored>> {
        let (model, clicks, exposures) = {
            let mut st = self.lock()?;
            let model = st.model.clone().ok_or(SlowFastError::NoModel)?;
            check_feed(model.manifest(), feed)?;
            st.ingest(feed)?;
            let (clicks, exposures) = st.window_inputs(model.manifest());
            (model, clicks, exposures)
        };
        if feed.items.is_empty() {
            return Ok(Vec::new());
        }
        let d = model.manifest().dim;
        let n = feed.items.len();
        let (mut e_i, mut r_t, mut r_n) = (
            Vec::with_capacity(n * d),
            Vec::with_capacity(n * d),
            Vec::with_capacity(n * d),
        );
        for it in &feed.items {
            e_i.extend_from_slice(&it.embedding);
            r_t.extend_from_slice(&it.r_t);
            r_n.extend_from_slice(&it.r_n);
        }
        let logits = model.score(&clicks, &exposures, &e_i, &r_t, &r_n)?;
        if logits.len() != n {
            return Err(SlowFastError::Model(format!(
                "fast model returned {} scores for {n} candidates",
                logits.len()
            )));
        }
        let mut scored: Vec<Scored> = feed
            .items
            .iter()
            .zip(logits)
            .map(|(it, score)| Scored {
                item: it.item.clone(),
                score,
                slow_score: it.slow_score,
            })
            .collect();
        scored.sort_by(|a, b| b.score.total_cmp(&a.score));
        Ok(scored)
    }

    /// `GET /v1/feed?k=K`: the server's top `k` (1 ..= 500) candidates with their priors.
    /// A feed for the installed model version is checked, its embeddings enter the cache and
    /// it is kept as [`Self::last_feed`].
    pub fn fetch_feed(&self, k: usize, cancel: &Cancel) -> Result<FeedResponse> {
        if k == 0 || k > MAX_FEED_K {
            return Err(SlowFastError::InvalidArgument(format!(
                "k = {k}, expected 1..={MAX_FEED_K}"
            )));
        }
        let feed = self.client.feed(k, cancel)?;
        let mut st = self.lock()?;
        if let Some(model) = st.model.clone() {
            if feed.model_version == model.manifest().model_version {
                check_feed(model.manifest(), &feed)?;
                st.ingest(&feed)?;
                st.store.save_last_feed(&feed)?;
            }
        }
        Ok(feed)
    }

    /// The last feed [`Self::fetch_feed`] returned for the installed model, kept durably with
    /// its priors: what to re-rank while the network is down. `None` before the first feed
    /// and after a model change (a feed is only valid for the model that computed it).
    pub fn last_feed(&self) -> Result<Option<FeedResponse>> {
        let st = self.lock()?;
        let feed = st.store.last_feed()?;
        Ok(feed.filter(|f| st.version() == Some(f.model_version.as_str())))
    }

    /// Uploads `r̂2` and the events recorded since the last acknowledged upload when a
    /// threshold says so: `sync_max_events` pending, or `sync_interval_ms` since the last
    /// upload, or a batch left in flight by an earlier failure or crash. After a failed call,
    /// later calls are skipped until the backoff delay ran out. See [`Self::upload_pending`].
    pub fn sync_now(&self, cancel: &Cancel) -> Result<SyncReport> {
        self.sync(false, cancel)
    }

    /// Uploads everything pending now, ignoring thresholds and backoff.
    ///
    /// Each batch is stored with a fresh idempotency key before it is sent and resent with
    /// the same key until the server acknowledges it (at-least-once; the server
    /// de-duplicates). A transient failure (network, 5xx, 408, 429) is retried twice inside
    /// the call with exponential backoff and jitter ([`crate::backoff`]). Uploads need an
    /// installed model: `r̂2` is tagged with its version.
    pub fn upload_pending(&self, cancel: &Cancel) -> Result<SyncReport> {
        self.sync(true, cancel)
    }

    /// Asks the server for a newer bundle (conditional GET on the manifest's ETag); downloads,
    /// verifies (hashes, shapes, tract load) and installs it atomically. Returns whether the
    /// model changed. A bundle that fails verification is refused and the old one kept.
    pub fn update_model(&self, cancel: &Cancel) -> Result<bool> {
        let _updating = self.updating.lock().unwrap_or_else(|p| p.into_inner());
        let etag = self.lock()?.store.bundle_etag()?;
        let (manifest_bytes, etag) = match self.client.model_file(None, etag.as_deref(), cancel)? {
            Conditional::NotModified => return Ok(false),
            Conditional::Fetched { bytes, etag } => (bytes, etag),
        };
        let manifest = Manifest::from_json(&manifest_bytes)?;
        if self.model_version().as_deref() == Some(manifest.model_version.as_str()) {
            return Ok(false);
        }
        let mut files = BTreeMap::new();
        for name in DEVICE_FILES {
            match self.client.model_file(Some(name), None, cancel)? {
                Conditional::Fetched { bytes, .. } => {
                    files.insert(name.to_string(), bytes);
                }
                Conditional::NotModified => {
                    return Err(SlowFastError::Bundle {
                        file: name.to_string(),
                        reason: "server answered 304 to an unconditional GET".into(),
                    })
                }
            }
        }
        let model = DeviceModel::load_files(&manifest_bytes, &files)?;
        self.lock()?
            .install(model, &manifest_bytes, &files, etag.as_deref())?;
        Ok(true)
    }

    /// Verifies the bundle in `dir` and installs it atomically, as [`Self::update_model`]
    /// does; `true` when the model changed. Installing the version already installed changes
    /// nothing and returns `false`.
    pub fn install_bundle(&self, dir: &Path) -> Result<bool> {
        let (manifest, files) = read_bundle_dir(dir)?;
        let model = DeviceModel::load_files(&manifest, &files)?;
        let mut st = self.lock()?;
        if st.version() == Some(model.manifest().model_version.as_str()) {
            return Ok(false);
        }
        st.install(model, &manifest, &files, None)?;
        Ok(true)
    }

    /// The installed bundle's model version.
    pub fn model_version(&self) -> Option<String> {
        self.lock_anyway().version().map(str::to_string)
    }

    /// `r̂2`, `d` floats (empty without a model).
    pub fn neg_memory(&self) -> Vec<f32> {
        self.lock_anyway().neg_memory.clone()
    }

    /// Events recorded but not yet acknowledged by the server.
    pub fn pending_uploads(&self) -> Result<usize> {
        self.lock()?.store.pending_count()
    }

    fn sync(&self, force: bool, cancel: &Cancel) -> Result<SyncReport> {
        let _uploading = self.uploading.lock().unwrap_or_else(|p| p.into_inner());
        let mut report = SyncReport::default();
        for round in 0..MAX_BATCHES_PER_SYNC {
            let batch = {
                let mut st = self.lock()?;
                match st.next_batch(force || round > 0, &mut report)? {
                    Some(b) => b,
                    None => {
                        report.skipped = round == 0;
                        break;
                    }
                }
            };
            let result = self.upload_with_retries(&batch.request, &mut report, cancel);
            let mut st = self.lock()?;
            match result {
                Ok(resp) => {
                    st.ack(&batch)?;
                    report.batches += 1;
                    report.duplicates += usize::from(resp.duplicate);
                    report.uploaded_clicks += batch.request.clicks.len();
                    report.uploaded_exposures += batch.request.exposures.len();
                }
                // The batch stays in flight: the next sync sends it with the same key.
                Err(SlowFastError::Cancelled) => return Err(SlowFastError::Cancelled),
                Err(e) => {
                    if let SlowFastError::Conflict { .. } = e {
                        // Nothing of this batch is stored under its key: the same events go
                        // again, once, under a new one.
                        tracing::warn!("upload conflict ({e}); the batch gets a new key");
                        let mut batch = batch;
                        batch.request.idempotency_key = uuid::Uuid::new_v4().to_string();
                        st.store.save_batch(&batch)?;
                    }
                    st.backoff.failed(now_ms(), e.retry_after_ms());
                    return Err(e);
                }
            }
        }
        report.pending = self.lock()?.store.pending_count()?;
        Ok(report)
    }

    fn upload_with_retries(
        &self,
        request: &UploadRequest,
        report: &mut SyncReport,
        cancel: &Cancel,
    ) -> Result<crate::wire::UploadResponse> {
        let mut attempt = 0;
        loop {
            match self.client.upload(request, cancel) {
                Err(e)
                    if e.is_transient()
                        && attempt < backoff::RETRIES
                        && e.retry_after_ms() <= backoff::MAX_WAIT_IN_CALL_MS =>
                {
                    tracing::debug!("upload failed ({e}); retrying");
                    let wait = backoff::jittered_ms(attempt).max(e.retry_after_ms());
                    self.client.pause(wait, cancel)?;
                    attempt += 1;
                    report.retries += 1;
                }
                other => return other,
            }
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, Engine>> {
        self.state
            .lock()
            .map_err(|_| SlowFastError::Store("engine state poisoned by an earlier panic".into()))
    }

    /// For the infallible getters: the state read is a plain value, valid even after a panic.
    fn lock_anyway(&self) -> MutexGuard<'_, Engine> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Engine {
    fn version(&self) -> Option<&str> {
        self.model
            .as_ref()
            .map(|m| m.manifest().model_version.as_str())
    }

    /// Loads the bundle, windows, cache and `r̂2` from the store (see [`SlowFast::open`]).
    fn restore(&mut self) -> Result<()> {
        if let Some((manifest, files)) = self.store.load_bundle()? {
            match DeviceModel::load_files(&manifest, &files) {
                Ok(model) => self.model = Some(Arc::new(model)),
                Err(e) => tracing::warn!("installed bundle refused ({e}); dropping it"),
            }
        }
        for e in self
            .store
            .recent_events(EventKind::Click, self.clicks.capacity())?
        {
            self.push_window(EventKind::Click, window_event(e));
        }
        for e in self
            .store
            .recent_events(EventKind::Exposure, self.exposures.capacity())?
        {
            self.push_window(EventKind::Exposure, window_event(e));
        }
        if let Some(model) = self.model.clone() {
            for (item, vec) in self.store.load_embeddings(self.config.embedding_cache)? {
                if vec.len() == model.manifest().dim {
                    self.cache.insert(&item, &vec);
                }
            }
        }
        if self.model.is_none() {
            if let Some(dir) = self.config.initial_bundle.clone() {
                let (manifest, files) = read_bundle_dir(&dir)?;
                let model = DeviceModel::load_files(&manifest, &files)?;
                return self.install(model, &manifest, &files, None);
            }
            return Ok(());
        }
        let stored = self.store.neg_memory()?;
        let (version, dim) = match &self.model {
            Some(m) => (m.manifest().model_version.clone(), m.manifest().dim),
            None => return Ok(()),
        };
        match stored {
            Some(s) if s.model_version == version && s.values.len() == dim => {
                self.neg_memory = s.values;
            }
            _ => {
                tracing::info!("r̂2 missing, damaged or for another model: recomputing");
                self.neg_memory = self.recompute_neg_memory()?;
                self.store.save_neg_memory(&version, &self.neg_memory)?;
            }
        }
        Ok(())
    }

    fn record(&mut self, kind: EventKind, item: &str, ts: i64) -> Result<()> {
        let next = match (kind, &self.model, self.cache.get(item)) {
            (EventKind::Exposure, Some(model), Some(e)) => {
                Some(model.neg_step(&self.neg_memory, e)?)
            }
            _ => None,
        };
        let version = self.version().unwrap_or_default().to_string();
        let seq = self.store.append_event(
            kind,
            item,
            ts,
            next.as_deref().map(|n| (version.as_str(), n)),
        )?;
        if let Some(next) = next {
            self.neg_memory = next;
        }
        self.push_window(
            kind,
            WindowEvent {
                seq,
                item: item.to_string(),
                ts,
            },
        );
        Ok(())
    }

    fn push_window(&mut self, kind: EventKind, event: WindowEvent) {
        self.cache.pin(&event.item);
        let window = match kind {
            EventKind::Click => &mut self.clicks,
            EventKind::Exposure => &mut self.exposures,
        };
        if let Some(old) = window.push(event) {
            self.cache.unpin(&old.item);
        }
    }

    /// Caches the feed's embeddings; when one was missing for a retained exposure, recomputes
    /// `r̂2` and stores both in one transaction.
    fn ingest(&mut self, feed: &FeedResponse) -> Result<()> {
        let mut newly_known = HashSet::new();
        let mut changed: Vec<(&str, &[f32])> = Vec::new();
        for it in &feed.items {
            if !self.cache.contains(&it.item) {
                newly_known.insert(it.item.as_str());
            }
            if self.cache.insert(&it.item, &it.embedding) {
                changed.push((&it.item, &it.embedding));
            }
        }
        if changed.is_empty() {
            return Ok(());
        }
        let refold = self
            .exposures
            .iter()
            .any(|e| newly_known.contains(e.item.as_str()));
        let neg = if refold {
            Some(self.recompute_neg_memory()?)
        } else {
            None
        };
        let version = self.version().unwrap_or_default().to_string();
        self.store.put_embeddings(
            &changed,
            neg.as_deref().map(|n| (version.as_str(), n)),
            self.config.embedding_cache,
        )?;
        if let Some(neg) = neg {
            self.neg_memory = neg;
        }
        Ok(())
    }

    /// `r̂2` from zero: `GRU_n` over the retained exposures with known embeddings, in time
    /// order (eq. 5).
    fn recompute_neg_memory(&self) -> Result<Vec<f32>> {
        let Some(model) = &self.model else {
            return Ok(Vec::new());
        };
        let mut state = vec![0.0; model.manifest().dim];
        for e in self.exposures.iter() {
            if let Some(emb) = self.cache.get(&e.item) {
                state = model.neg_step(&state, emb)?;
            }
        }
        Ok(state)
    }

    /// The fast model's window inputs: the embeddings of the newest known clicks and
    /// exposures, oldest first, at most the configured and the bundle's window lengths.
    fn window_inputs(&self, manifest: &Manifest) -> (Vec<f32>, Vec<f32>) {
        let take = |w: &Window, n: usize| -> Vec<f32> {
            let known: Vec<&[f32]> = w
                .iter()
                .rev()
                .filter_map(|e| self.cache.get(&e.item).map(|v| &**v))
                .take(n)
                .collect();
            known.into_iter().rev().flatten().copied().collect()
        };
        (
            take(
                &self.clicks,
                self.config.click_window.min(manifest.windows.clicks),
            ),
            take(
                &self.exposures,
                self.config.exposure_window.min(manifest.windows.exposures),
            ),
        )
    }

    /// Installs a verified model: stores it with `r̂2` reset, forgets the old embeddings; `r̂2`
    /// is recomputed from the exposure log as the new model's embeddings arrive.
    fn install(
        &mut self,
        model: DeviceModel,
        manifest: &[u8],
        files: &BTreeMap<String, Vec<u8>>,
        etag: Option<&str>,
    ) -> Result<()> {
        let zeros = vec![0.0; model.manifest().dim];
        let version = model.manifest().model_version.clone();
        let device_files: BTreeMap<String, Vec<u8>> = files
            .iter()
            .filter(|(k, _)| DEVICE_FILES.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        self.store
            .install_bundle(manifest, &device_files, (&version, &zeros), etag)?;
        self.cache.clear();
        self.model = Some(Arc::new(model));
        self.neg_memory = zeros;
        tracing::info!("installed model {version}");
        Ok(())
    }

    /// The batch to send: the one in flight, else a new one when due (or `force`).
    fn next_batch(&mut self, force: bool, report: &mut SyncReport) -> Result<Option<Batch>> {
        let now = now_ms();
        if !force {
            let wait = self.backoff.wait_ms(now);
            if wait > 0 {
                report.backoff_ms = wait;
                return Ok(None);
            }
        }
        if let Some(b) = self.store.load_batch()? {
            return Ok(Some(b));
        }
        let Some(version) = self.version().map(str::to_string) else {
            return Ok(None);
        };
        if !force {
            let pending = self.store.pending_count()?;
            // Never uploaded: the interval has passed, whatever its length.
            let interval_passed = self.store.last_upload_ms()?.is_none_or(|last| {
                now.saturating_sub(last)
                    >= i64::try_from(self.config.sync_interval_ms).unwrap_or(i64::MAX)
            });
            let due = pending >= self.config.sync_max_events || (pending > 0 && interval_passed);
            if !due {
                return Ok(None);
            }
        }
        let events = self
            .store
            .events_after(self.store.uploaded_seq()?, MAX_EVENTS_PER_UPLOAD)?;
        let Some(last_seq) = events.last().map(|e| e.seq) else {
            return Ok(None);
        };
        let (mut clicks, mut exposures) = (Vec::new(), Vec::new());
        for e in events {
            let w = WireEvent {
                item: e.item,
                ts: e.ts,
            };
            match e.kind {
                EventKind::Click => clicks.push(w),
                EventKind::Exposure => exposures.push(w),
            }
        }
        let batch = Batch {
            last_seq,
            request: UploadRequest {
                user: Some(self.config.user.clone()),
                idempotency_key: uuid::Uuid::new_v4().to_string(),
                model_version: version,
                neg_memory: self.neg_memory.clone(),
                clicks,
                exposures,
            },
        };
        self.store.save_batch(&batch)?;
        Ok(Some(batch))
    }

    fn ack(&mut self, batch: &Batch) -> Result<()> {
        self.store.ack_batch(
            batch.last_seq,
            now_ms(),
            self.clicks.capacity(),
            self.exposures.capacity(),
        )?;
        self.backoff.succeeded();
        Ok(())
    }
}

fn window_event(e: crate::store::Event) -> WindowEvent {
    WindowEvent {
        seq: e.seq,
        item: e.item,
        ts: e.ts,
    }
}

/// Reads `manifest.json` and the device files of a bundle directory.
fn read_bundle_dir(dir: &Path) -> Result<BundleFiles> {
    let read = |name: &str| {
        std::fs::read(dir.join(name)).map_err(|e| SlowFastError::Bundle {
            file: name.to_string(),
            reason: format!("cannot read {}: {e}", dir.join(name).display()),
        })
    };
    let manifest = read(MANIFEST_JSON)?;
    let mut files = BTreeMap::new();
    for name in DEVICE_FILES {
        files.insert(name.to_string(), read(name)?);
    }
    Ok((manifest, files))
}

/// Takes the exclusive lock of `dir`'s [`LOCK_FILE`]; [`SlowFastError::InUse`] when another
/// engine, in this process or another, holds it. The operating system releases it when the
/// process dies.
fn lock_dir(dir: &Path) -> Result<File> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(TryLockError::WouldBlock) => Err(SlowFastError::InUse {
            dir: dir.display().to_string(),
        }),
        Err(TryLockError::Error(e)) => Err(e.into()),
    }
}

/// A token in the sync server's format must name `user`; other tokens pass unread.
fn check_token_user(token: &str, user: &str) -> Result<()> {
    let claims = SignedToken::parse(token).and_then(|t| t.claims());
    match claims {
        Ok(c) if c.user != user => Err(SlowFastError::Config(format!(
            "the token is for user {:?}, this engine's store is for {user:?}",
            c.user
        ))),
        _ => Ok(()),
    }
}

fn check_id(item: &str) -> Result<()> {
    if item.is_empty() || item.len() > MAX_ID_BYTES {
        return Err(SlowFastError::InvalidArgument(format!(
            "item id must be 1..={MAX_ID_BYTES} bytes, got {}",
            item.len()
        )));
    }
    Ok(())
}

/// A feed must be for the installed model, with `d` finite floats in each vector.
fn check_feed(manifest: &Manifest, feed: &FeedResponse) -> Result<()> {
    if feed.model_version != manifest.model_version {
        return Err(SlowFastError::VersionMismatch {
            feed: feed.model_version.clone(),
            device: manifest.model_version.clone(),
        });
    }
    let d = manifest.dim;
    for (i, it) in feed.items.iter().enumerate() {
        check_id(&it.item)?;
        for (name, v) in [
            ("embedding", &it.embedding),
            ("r_t", &it.r_t),
            ("r_n", &it.r_n),
        ] {
            if v.len() != d || !v.iter().all(|x| x.is_finite()) {
                return Err(SlowFastError::InvalidArgument(format!(
                    "feed item {i} ({}): {name} must be {d} finite floats, got {}",
                    it.item,
                    v.len()
                )));
            }
        }
    }
    Ok(())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
