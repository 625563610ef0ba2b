//! The engine object: [`slowfast_core::SlowFast`] behind uniffi. Every fallible call runs in
//! [`guard`], so core errors arrive typed and a panic arrives as `Internal`.

use std::path::Path;
use std::sync::Arc;

use slowfast_core::{Cancel, Scored};

use crate::config::{Config, SyncReport};
use crate::error::{guard, SlowFastError};
use crate::wire::{FeedResponse, Vector};

/// One re-ranked candidate.
#[uniffi::remote(Record)]
pub struct Scored {
    pub item: String,
    /// The fast model's logit `y_F` (eq. 8, before `σ`); the order of `rerank`.
    pub score: f32,
    /// The slow model's logit the feed carried (eq. 6).
    pub slow_score: f32,
}

/// Cancels the network calls it was given (`fetchFeed`, `syncNow`, `updateModel`): they
/// return `Cancelled` at once, in flight or not yet started. A signal stays cancelled; use a
/// new one per call.
#[derive(uniffi::Object, Default)]
pub struct Cancellation(Cancel);

#[uniffi::export]
impl Cancellation {
    #[uniffi::constructor]
    pub fn new() -> Arc<Cancellation> {
        Arc::new(Cancellation::default())
    }

    /// Cancels every call given this signal. Idempotent; callable from any thread.
    pub fn cancel(&self) {
        self.0.cancel()
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.is_cancelled()
    }
}

/// The on-device MC²-SF engine: records clicks and exposures, keeps the negative memory
/// `r̂2` (eq. 5), re-ranks the server's feed with the fast model (eq. 7–8) and syncs.
/// Thread-safe; close it (Kotlin `close()`/`use {}`) to release the store and its data
/// directory. The network calls block their thread until done or cancelled.
///
/// In Rust this is the [`Engine`] object; Kotlin and Swift see it as `SlowFast`, the engine
/// their apps use.
#[derive(uniffi::Object)]
#[uniffi(name = "SlowFast")]
pub struct Engine(slowfast_core::SlowFast);

#[uniffi::export(name = "SlowFast")]
impl Engine {
    /// Opens or creates the store in `config.data_dir` and loads the installed bundle (or
    /// `config.initial_bundle`). Touches no network.
    #[uniffi::constructor]
    pub fn new(config: Config) -> Result<Arc<Engine>, SlowFastError> {
        let config = slowfast_core::Config::try_from(config)?;
        guard(|| slowfast_core::SlowFast::open(config)).map(|e| Arc::new(Engine(e)))
    }

    /// Replaces the bearer token; calls started afterwards send the new one. A token that
    /// names another user than the engine's is refused with `InvalidConfig`.
    pub fn set_token(&self, token: String) -> Result<(), SlowFastError> {
        guard(|| self.0.set_token(&token))
    }

    /// Records a click on `item` at `ts_ms` (Unix ms). Durable when it returns.
    pub fn record_click(&self, item: String, ts_ms: i64) -> Result<(), SlowFastError> {
        guard(|| self.0.record_click(&item, ts_ms))
    }

    /// Records that `item` was shown at `ts_ms`; advances `r̂2` by one `GRU_n` step (eq. 5).
    pub fn record_exposure(&self, item: String, ts_ms: i64) -> Result<(), SlowFastError> {
        guard(|| self.0.record_exposure(&item, ts_ms))
    }

    /// Scores the whole feed with the fast model in one batched call; best first.
    pub fn rerank(&self, feed: FeedResponse) -> Result<Vec<Scored>, SlowFastError> {
        let feed = slowfast_core::wire::FeedResponse::from(feed);
        guard(|| self.0.rerank(&feed))
    }

    /// The server's top `k` (1..=500) candidates with their priors; kept as `lastFeed`.
    /// Blocks until done or cancelled.
    pub fn fetch_feed(&self, k: i32, cancel: &Cancellation) -> Result<FeedResponse, SlowFastError> {
        let k = usize::try_from(k).unwrap_or(0);
        guard(|| self.0.fetch_feed(k, &cancel.0)).map(FeedResponse::from)
    }

    /// The last feed fetched for the installed model, kept durably with its priors: what to
    /// re-rank while the network is down.
    pub fn last_feed(&self) -> Result<Option<FeedResponse>, SlowFastError> {
        guard(|| self.0.last_feed()).map(|feed| feed.map(FeedResponse::from))
    }

    /// Uploads `r̂2` and pending events when a time or count threshold says so. Blocks until
    /// done or cancelled.
    pub fn sync_now(&self, cancel: &Cancellation) -> Result<SyncReport, SlowFastError> {
        guard(|| self.0.sync_now(&cancel.0)).map(SyncReport::from)
    }

    /// Downloads, verifies and installs a newer bundle; returns whether the model changed.
    /// Blocks until done or cancelled.
    pub fn update_model(&self, cancel: &Cancellation) -> Result<bool, SlowFastError> {
        guard(|| self.0.update_model(&cancel.0))
    }

    /// Verifies the bundle in directory `dir` and installs it atomically; returns whether the
    /// model changed (`false` for the version already installed).
    pub fn install_bundle(&self, dir: String) -> Result<bool, SlowFastError> {
        guard(|| self.0.install_bundle(Path::new(&dir)))
    }

    /// The installed bundle's model version, if any.
    pub fn model_version(&self) -> Option<String> {
        self.0.model_version()
    }

    /// The negative memory `r̂2` (eq. 5), `d` floats; empty without a model.
    pub fn neg_memory(&self) -> Vector {
        Vector(self.0.neg_memory())
    }

    /// Events recorded but not yet acknowledged by the server.
    pub fn pending_uploads(&self) -> Result<i64, SlowFastError> {
        guard(|| self.0.pending_uploads()).map(|n| i64::try_from(n).unwrap_or(i64::MAX))
    }
}
