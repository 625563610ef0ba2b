//! The engine's configuration and sync report as records. Integers are signed (`i32`/`i64`,
//! Kotlin `Int`/`Long`, Swift `Int32`/`Int64`): Kotlin and Java count in signed types, and a
//! negative value is refused with `InvalidArgument` when the engine opens. Paths are strings
//! (Kotlin `File.path`, Swift `URL.path`).

use std::path::PathBuf;

use crate::error::SlowFastError;

/// How to open an engine; `defaultConfig` fills in the defaults.
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
    pub click_window: i32,
    /// Real-time exposures fed to the fast model, `H^F_n` (eq. 7).
    pub exposure_window: i32,
    /// `syncNow` uploads once this long has passed since the last upload …
    pub sync_interval_ms: i64,
    /// … or once this many events are pending, whichever comes first.
    pub sync_max_events: i32,
    /// Item embeddings kept by the LRU cache.
    pub embedding_cache: i32,
    /// A bundle directory shipped with the app, installed when the store has none.
    pub initial_bundle: Option<String>,
    /// Timeout of each HTTP request.
    pub http_timeout_ms: i64,
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
        sync_interval_ms: saturate(c.sync_interval_ms),
        sync_max_events: saturate(c.sync_max_events),
        embedding_cache: saturate(c.embedding_cache),
        initial_bundle: c.initial_bundle.map(|p| p.to_string_lossy().into_owned()),
        http_timeout_ms: saturate(c.http_timeout_ms),
        durability: c.durability.into(),
    }
}

impl TryFrom<Config> for slowfast_core::Config {
    type Error = SlowFastError;

    fn try_from(c: Config) -> Result<Self, SlowFastError> {
        Ok(slowfast_core::Config {
            data_dir: PathBuf::from(c.data_dir),
            server_url: c.server_url,
            token: c.token,
            user: c.user,
            click_window: unsigned("clickWindow", c.click_window)?,
            exposure_window: unsigned("exposureWindow", c.exposure_window)?,
            sync_interval_ms: unsigned("syncIntervalMs", c.sync_interval_ms)?,
            sync_max_events: unsigned("syncMaxEvents", c.sync_max_events)?,
            embedding_cache: unsigned("embeddingCache", c.embedding_cache)?,
            initial_bundle: c.initial_bundle.map(PathBuf::from),
            http_timeout_ms: unsigned("httpTimeoutMs", c.http_timeout_ms)?,
            durability: c.durability.into(),
        })
    }
}

/// A signed setting as the core's unsigned type; a negative one is refused.
fn unsigned<S: Copy + std::fmt::Display, U: TryFrom<S>>(
    name: &str,
    value: S,
) -> Result<U, SlowFastError> {
    U::try_from(value).map_err(|_| SlowFastError::InvalidArgument {
        text: format!("invalid argument: config.{name} = {value}, expected ≥ 0"),
    })
}

/// A count or duration as the signed type of the bindings, saturating.
fn saturate<U, S: TryFrom<U> + Bounded>(n: U) -> S {
    S::try_from(n).unwrap_or(S::MAX)
}

/// The largest value of a signed integer type.
trait Bounded {
    const MAX: Self;
}

impl Bounded for i32 {
    const MAX: i32 = i32::MAX;
}

impl Bounded for i64 {
    const MAX: i64 = i64::MAX;
}

/// What one `syncNow` did.
#[derive(Clone, Debug, PartialEq, Eq, uniffi::Record)]
pub struct SyncReport {
    pub uploaded_clicks: i64,
    pub uploaded_exposures: i64,
    /// Batches the server acknowledged in this call.
    pub batches: i64,
    /// Of those, batches the server had already stored (a retry after a lost answer).
    pub duplicates: i64,
    /// Transient failures retried inside this call.
    pub retries: i32,
    /// Nothing was due, or the backoff after an earlier failure has not run out.
    pub skipped: bool,
    /// Milliseconds of backoff left when skipped for that reason.
    pub backoff_ms: i64,
    /// Events still waiting for upload after the call.
    pub pending: i64,
}

impl From<slowfast_core::SyncReport> for SyncReport {
    fn from(r: slowfast_core::SyncReport) -> Self {
        SyncReport {
            uploaded_clicks: saturate(r.uploaded_clicks),
            uploaded_exposures: saturate(r.uploaded_exposures),
            batches: saturate(r.batches),
            duplicates: saturate(r.duplicates),
            retries: saturate(r.retries),
            skipped: r.skipped,
            backoff_ms: saturate(r.backoff_ms),
            pending: saturate(r.pending),
        }
    }
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
        let core = slowfast_core::Config::try_from(c.clone()).unwrap();
        let expected = slowfast_core::Config::new("/data/sf", "https://s", "t", "u");
        assert_eq!(format!("{core:?}"), format!("{expected:?}"));
        assert_eq!(c.click_window as usize, expected.click_window);
        assert_eq!(c.initial_bundle, None);
        let negative = Config {
            sync_max_events: -1,
            ..c
        };
        assert!(matches!(
            slowfast_core::Config::try_from(negative),
            Err(SlowFastError::InvalidArgument { text }) if text.contains("syncMaxEvents")
        ));
    }
}
