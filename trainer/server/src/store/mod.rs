//! The sync server's store: uploads (idempotent), the users' clicks and exposures, and each
//! user's latest `neg_memory` (`r̂2`, eq. 5).
//!
//! One code path over `sqlx::Any`: SQLite (a file, created on first start; WAL) or PostgreSQL
//! (`postgres://`), with the same migrations (`trainer/server/migrations/`). Idempotency lives in the
//! database (a primary key on `(user, idempotency_key)` inside the upload's transaction), so
//! several server instances on one PostgreSQL behave as one. Uploads are written in groups by
//! one writer task per server ([`writer`], group commit) with a fixed number of
//! statements per group ([`upload::write_uploads`]).

use std::collections::HashMap;

use slowfast_core::wire::{UploadRequest, UploadResponse};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod upload;
pub mod writer;

use crate::error::{Result, ServerError};
use slowfast_data::{EventKind, EventLog};
use upload::NewUpload;
use writer::Writer;

/// The migrations of `trainer/server/migrations/`, embedded at build time: `(version, description,
/// SQL)`, in version order. The checksum sqlx records for each (SHA-384 of the SQL) is the one
/// `sqlx::migrate!` would record for the same file, so databases it migrated keep working.
/// Embedding them by hand instead of with that macro keeps sqlx's proc-macro crate, which
/// compiles a second copy of sqlx's drivers and of SQLite, out of the build.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "sync store",
        include_str!("../../migrations/0001_sync_store.sql"),
    ),
    (
        2,
        "upload digest",
        include_str!("../../migrations/0002_upload_digest.sql"),
    ),
];

/// What [`sqlx::migrate::MigrationSource::resolve`] returns.
type Resolved<'s> = std::pin::Pin<
    Box<
        dyn std::future::Future<
                Output = std::result::Result<
                    Vec<sqlx::migrate::Migration>,
                    sqlx::error::BoxDynError,
                >,
            > + Send
            + 's,
    >,
>;

/// [`MIGRATIONS`] as a source for [`sqlx::migrate::Migrator`].
#[derive(Debug)]
struct Embedded;

impl<'s> sqlx::migrate::MigrationSource<'s> for Embedded {
    fn resolve(self) -> Resolved<'s> {
        let migrations = MIGRATIONS.iter().map(|&(version, description, sql)| {
            sqlx::migrate::Migration::new(
                version,
                description.into(),
                sqlx::migrate::MigrationType::Simple,
                sql.into(),
                false,
            )
        });
        Box::pin(std::future::ready(Ok(migrations.collect())))
    }
}

/// Rows per multi-row `INSERT` of events (6 parameters each, far below both databases' limits).
const EVENT_ROWS_PER_INSERT: usize = 500;

/// A connection pool to the server's database, and the writer task every upload goes through.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    writer: Writer,
}
/// A database URL: `postgres://…`, `sqlite:…`, or a plain file path (SQLite, created if absent).
pub fn normalise_url(url: &str) -> String {
    if url.starts_with("postgres://")
        || url.starts_with("postgresql://")
        || url.starts_with("sqlite:")
    {
        url.to_string()
    } else {
        format!("sqlite://{url}?mode=rwc")
    }
}

/// How the `events.kind` column names an event kind.
fn kind_name(kind: EventKind) -> &'static str {
    match kind {
        EventKind::Click => "click",
        EventKind::Exposure => "exposure",
    }
}

/// A database error with what the store was doing.
fn db_err(what: &str) -> impl Fn(sqlx::Error) -> ServerError + '_ {
    move |source| ServerError::Database {
        what: what.to_owned(),
        source,
    }
}

impl Store {
    /// Connects (creating a SQLite file on first start) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let url = normalise_url(url);
        let sqlite = url.starts_with("sqlite:");
        let mut options = AnyPoolOptions::new().max_connections(if sqlite { 4 } else { 16 });
        if sqlite {
            options = options.after_connect(sqlite_pragmas);
        }
        let pool = options
            .connect(&url)
            .await
            .map_err(db_err("cannot open the database"))?;
        (sqlx::migrate::Migrator::new(Embedded).await?)
            .run(&pool)
            .await?;
        let writer = Writer::spawn(pool.clone());
        Ok(Store { pool, writer })
    }

    /// Stores a validated upload of `user` once. A repeated `(user, idempotency_key)` stores
    /// nothing and returns the first answer with `duplicate = true`, across instances too.
    /// Answers after the commit that holds the upload ([`writer`]: group
    /// commit).
    pub async fn record_upload(
        &self,
        user: &str,
        req: &UploadRequest,
        now_ms: i64,
    ) -> Result<UploadResponse> {
        self.writer
            .submit(NewUpload::new(user, req.clone(), now_ms)?)
            .await
    }

    /// The user's most recent `limit` clicked items, oldest first (the slow history `H^S`).
    pub async fn recent_clicks(&self, user: &str, limit: usize) -> Result<Vec<String>> {
        let mut items = self.latest(user, EventKind::Click, limit).await?;
        items.reverse();
        Ok(items)
    }

    /// The items of the user's most recent `limit` exposures (shown, not clicked), newest
    /// first, repeats kept: the feed's seen filter.
    pub async fn recent_exposures(&self, user: &str, limit: usize) -> Result<Vec<String>> {
        self.latest(user, EventKind::Exposure, limit).await
    }

    /// The items of the user's most recent `limit` events of `kind`, newest first.
    async fn latest(&self, user: &str, kind: EventKind, limit: usize) -> Result<Vec<String>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let what = format!("read the latest {}s", kind_name(kind));
        let rows = sqlx::query(
            "SELECT item FROM events WHERE user_id = $1 AND kind = $2 \
             ORDER BY ts DESC, idempotency_key DESC, seq DESC LIMIT $3",
        )
        .bind(user)
        .bind(kind_name(kind))
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err(&what))?;
        rows.iter()
            .map(|r| r.try_get::<String, _>("item"))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db_err(&what))
    }

    /// The user's latest uploaded `r̂2` and the model version it was computed with.
    pub async fn neg_memory(&self, user: &str) -> Result<Option<(String, Vec<f32>)>> {
        let row =
            sqlx::query("SELECT model_version, neg_memory FROM user_state WHERE user_id = $1")
                .bind(user)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err("read neg_memory"))?;
        row.map(|r| state_of(&r)).transpose()
    }

    /// Every user's latest `r̂2` with its model version, for training the next round (F2S).
    pub async fn neg_memories(&self) -> Result<HashMap<String, (String, Vec<f32>)>> {
        let rows = sqlx::query("SELECT user_id, model_version, neg_memory FROM user_state")
            .fetch_all(&self.pool)
            .await
            .map_err(db_err("read neg_memory"))?;
        rows.iter()
            .map(|r| {
                let user: String = r.try_get("user_id").map_err(db_err("read user_state"))?;
                Ok((user, state_of(r)?))
            })
            .collect()
    }

    /// Everything devices uploaded as an [`EventLog`] with raw ids, in time order per user
    /// (`ts` in Unix milliseconds), for `slowfast train --from-db`.
    pub async fn event_log(&self) -> Result<EventLog> {
        let rows = sqlx::query(
            "SELECT user_id, item, ts, kind FROM events \
             ORDER BY user_id, ts, idempotency_key, seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("read events"))?;
        let mut log = EventLog::default();
        for r in &rows {
            let get = |c: &str| r.try_get::<String, _>(c).map_err(db_err("read events"));
            let ts: i64 = r.try_get("ts").map_err(db_err("read events"))?;
            let kind = match get("kind")?.as_str() {
                "click" => EventKind::Click,
                "exposure" => EventKind::Exposure,
                other => {
                    return Err(ServerError::Corrupt(format!(
                        "unknown event kind {other:?}"
                    )))
                }
            };
            log.push_raw(&get("user_id")?, &get("item")?, ts, kind);
        }
        Ok(log)
    }

    /// Numbers of stored uploads and events (for operators and tests).
    pub async fn counts(&self) -> Result<(u64, u64)> {
        let count = |sql: &'static str| async move {
            let n: i64 = sqlx::query(sql)
                .fetch_one(&self.pool)
                .await
                .and_then(|r| r.try_get(0))
                .map_err(db_err("count"))?;
            Ok::<u64, ServerError>(n.max(0) as u64)
        };
        Ok((
            count("SELECT COUNT(*) FROM uploads").await?,
            count("SELECT COUNT(*) FROM events").await?,
        ))
    }

    /// Uploads waiting for the writer now.
    pub fn queued(&self) -> usize {
        self.writer.queued()
    }

    /// The sizes of the groups the writer committed.
    pub fn group_sizes(&self) -> &writer::GroupSizes {
        self.writer.group_sizes()
    }

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

type ConnectFuture<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = sqlx::Result<()>> + Send + 'c>>;

/// WAL lets readers run beside the writer; `synchronous = FULL` syncs the WAL at every commit,
/// so an acknowledged upload survives power loss and OS crashes as well as the server's death
/// (a device deletes what the server acknowledged, so the server is its only copy). The group
/// commit ([`super::writer`]) pays that sync once per group. Writers wait for the lock.
fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> ConnectFuture<'_> {
    Box::pin(async move {
        for pragma in [
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = FULL",
            "PRAGMA busy_timeout = 10000",
        ] {
            sqlx::query(pragma).execute(&mut *conn).await?;
        }
        Ok(())
    })
}

fn state_of(r: &AnyRow) -> Result<(String, Vec<f32>)> {
    let version: String = r
        .try_get("model_version")
        .map_err(db_err("read user_state"))?;
    let json: String = r.try_get("neg_memory").map_err(db_err("read user_state"))?;
    let v =
        serde_json::from_str(&json).map_err(slowfast_data::JsonError::of("stored neg_memory"))?;
    Ok((version, v))
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// Every file of `trainer/server/migrations/` is embedded, under the version and description
    /// `sqlx::migrate!` reads from its name (`0001_sync_store.sql`: 1, "sync store"), with its
    /// exact text, and nothing else is.
    #[test]
    fn the_embedded_migrations_are_the_migrations_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
            .expect("trainer/server/migrations/")
            .map(|entry| {
                let path = entry.expect("a directory entry").path();
                let stem = path
                    .file_stem()
                    .and_then(|s| s.to_str())
                    .expect("a UTF-8 name");
                let (version, description) = stem.split_once('_').expect("VERSION_DESCRIPTION.sql");
                let sql = std::fs::read_to_string(&path).expect("a readable migration");
                (
                    version.parse().expect("a numeric version"),
                    description.replace('_', " "),
                    sql,
                )
            })
            .collect();
        files.sort();
        let embedded: Vec<(i64, String, String)> = (MIGRATIONS.iter())
            .map(|&(v, d, sql)| (v, d.to_owned(), sql.to_owned()))
            .collect();
        assert_eq!(embedded, files);
    }
}
