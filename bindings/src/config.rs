//! The engine's configuration and sync report as records. Counts are `u32`/`u64` because
//! uniffi has no `usize`; paths are strings (Kotlin `File.path`, Swift `URL.path`).

use std::path::PathBuf;

/// How to open an engine; [`default_config`] fills in the defaults.
#[derive(Clone, Debug, uniffi::Record)]
pub struct Config {
    /// Directory of the on-device store (created if missing). One user per directory.
    pub data_dir: String,
    /// The sync server, e.g. `https://sync.example.com` (the `/v1` prefix is added).
    pub server_url: String,
    /// Bearer token; it names the user to the server.
    pub token: String,
    /// The user the store belongs to; opening a store created for another user is refused.
    pub user: String,
    /// Real-time clicks fed to the fast model, `H^F_p` (eq. 7).
    pub click_window: u32,
    /// Real-time exposures fed to the fast model, `H^F_n` (eq. 7).
    pub exposure_window: u32,
    /// `sync_now` uploads once this long has passed since the last upload …
    pub sync_interval_ms: u64,
    /// … or once this many events are pending, whichever comes first.
    pub sync_max_events: u32,
    /// Item embeddings kept by the LRU cache.
    pub embedding_cache: u32,
    /// A bundle directory shipped with the app, installed when the store has none.
    pub initial_bundle: Option<String>,
    /// Timeout of each HTTP request.
    pub http_timeout_ms: u64,
    /// What a recorded event survives once its call returned.
    pub durability: Durability,
}

/// What an acknowledged write survives (Kotlin `Durability.PROCESS`, Swift `.process`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, uniffi::Enum)]
pub enum Durability {
    /// The app's process dying (crash, kill, memory reclaim); a power cut may lose the most
    /// recent events. The default, as for the Android framework's WAL databases.
    Process,
    /// Power loss and OS crashes too, at one storage sync per recorded event.
    PowerLoss,
}

impl From<slowfast_core::Durability> for Durability {
    fn from(d: slowfast_core::Durability) -> Self {
        match d {
            slowfast_core::Durability::Process => Durability::Process,
            slowfast_core::Durability::PowerLoss => Durability::PowerLoss,
        }
    }
}

impl From<Durability> for slowfast_core::Durability {
    fn from(d: Durability) -> Self {
        match d {
            Durability::Process => slowfast_core::Durability::Process,
            Durability::PowerLoss => slowfast_core::Durability::PowerLoss,
        }
    }
}

/// The defaults of the core runtime for this store, server and user.
#[uniffi::export]
pub fn default_config(data_dir: String, server_url: String, token: String, user: String) -> Config {
    let c = slowfast_core::Config::new(data_dir, server_url, token, user);
    Config {
        data_dir: c.data_dir.to_string_lossy().into_owned(),
        server_url: c.server_url,
        token: c.token,
        user: c.user,
        click_window: saturate(c.click_window),
        exposure_window: saturate(c.exposure_window),
        sync_interval_ms: c.sync_interval_ms,
        sync_max_events: saturate(c.sync_max_events),
        embedding_cache: saturate(c.embedding_cache),
        initial_bundle: c.initial_bundle.map(|p| p.to_string_lossy().into_owned()),
        http_timeout_ms: c.http_timeout_ms,
        durability: c.durability.into(),
    }
}

impl From<Config> for slowfast_core::Config {
    fn from(c: Config) -> Self {
        // u32 → usize is lossless on every target the SDK ships to (32- and 64-bit).
        slowfast_core::Config {
            data_dir: PathBuf::from(c.data_dir),
            server_url: c.server_url,
            token: c.token,
            user: c.user,
            click_window: c.click_window as usize,
            exposure_window: c.exposure_window as usize,
            sync_interval_ms: c.sync_interval_ms,
            sync_max_events: c.sync_max_events as usize,
            embedding_cache: c.embedding_cache as usize,
            initial_bundle: c.initial_bundle.map(PathBuf::from),
            http_timeout_ms: c.http_timeout_ms,
            durability: c.durability.into(),
        }
    }
}

/// What one `sync_now` did.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    pub uploaded_clicks: u64,
    pub uploaded_exposures: u64,
    /// Batches the server acknowledged in this call.
    pub batches: u64,
    /// Of those, batches the server had already stored (a retry after a lost answer).
    pub duplicates: u64,
    /// Transient failures retried inside this call.
    pub retries: u32,
    /// Nothing was due, or the backoff after an earlier failure has not run out.
    pub skipped: bool,
    /// Milliseconds of backoff left when skipped for that reason.
    pub backoff_ms: u64,
    /// Events still waiting for upload after the call.
    pub pending: u64,
}

impl From<slowfast_core::SyncReport> for SyncReport {
    fn from(r: slowfast_core::SyncReport) -> Self {
        SyncReport {
            uploaded_clicks: r.uploaded_clicks as u64,
            uploaded_exposures: r.uploaded_exposures as u64,
            batches: r.batches as u64,
            duplicates: r.duplicates as u64,
            retries: r.retries,
            skipped: r.skipped,
            backoff_ms: r.backoff_ms,
            pending: r.pending as u64,
        }
    }
}

fn saturate(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_round_trips_into_the_core_config() {
        let c = default_config(
            "/data/sf".into(),
            "https://s".into(),
            "t".into(),
            "u".into(),
        );
        let core = slowfast_core::Config::from(c.clone());
        let expected = slowfast_core::Config::new("/data/sf", "https://s", "t", "u");
        assert_eq!(format!("{core:?}"), format!("{expected:?}"));
        assert_eq!(c.click_window as usize, expected.click_window);
        assert_eq!(c.initial_bundle, None);
    }
}
