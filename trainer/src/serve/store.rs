//! The sync server's store: uploads (idempotent), the users' clicks and exposures, and each
//! user's latest `neg_memory` (`r̂2`, eq. 5).
//!
//! One code path over `sqlx::Any`: SQLite (a file, created on first start; WAL) or PostgreSQL
//! (`postgres://`), with the same migrations (`trainer/migrations/`). Idempotency lives in the
//! database (a primary key on `(user, idempotency_key)` inside the upload's transaction), so
//! several server instances on one PostgreSQL behave as one. Uploads are written in groups by
//! one writer task per server ([`writer`](super::writer), group commit) with a fixed number of
//! statements per group ([`write_uploads`]).

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use slowfast_core::wire::{UploadRequest, UploadResponse, WireEvent};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use super::writer::Writer;
use crate::data::{EventKind, EventLog};
use crate::error::{Result, TrainerError};

/// The migrations of `trainer/migrations/`, embedded at build time: `(version, description,
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

fn db_err(what: &str) -> impl Fn(sqlx::Error) -> TrainerError + '_ {
    move |e| TrainerError::Store(format!("{what}: {e}"))
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
        let migrate =
            |e: sqlx::migrate::MigrateError| TrainerError::Store(format!("migrations: {e}"));
        (sqlx::migrate::Migrator::new(Embedded)
            .await
            .map_err(migrate)?)
        .run(&pool)
        .await
        .map_err(migrate)?;
        let writer = Writer::spawn(pool.clone());
        Ok(Store { pool, writer })
    }

    /// Stores a validated upload of `user` once. A repeated `(user, idempotency_key)` stores
    /// nothing and returns the first answer with `duplicate = true`, across instances too.
    /// Answers after the commit that holds the upload ([`writer`](super::writer): group
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
                other => return Err(TrainerError::Store(format!("unknown event kind {other:?}"))),
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
            Ok::<u64, TrainerError>(n.max(0) as u64)
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
    pub fn group_sizes(&self) -> &super::writer::GroupSizes {
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
    let v = serde_json::from_str(&json).map_err(|e| TrainerError::Json {
        what: "stored neg_memory".into(),
        source: e,
    })?;
    Ok((version, v))
}

/// One validated upload on its way to the database; `neg_memory` (`r̂2`) already as JSON.
#[derive(Debug)]
pub(super) struct NewUpload {
    user: String,
    req: UploadRequest,
    neg_memory: String,
    /// Hex SHA-256 of the request re-serialised (its content, whatever the client's spacing or
    /// key order): a repeated key is a retry only with the same digest.
    digest: String,
    now_ms: i64,
}

impl NewUpload {
    pub(super) fn new(user: &str, req: UploadRequest, now_ms: i64) -> Result<NewUpload> {
        let neg_memory =
            serde_json::to_string(&req.neg_memory).map_err(|e| TrainerError::Json {
                what: "neg_memory".into(),
                source: e,
            })?;
        let mut digest = Sha256::new();
        serde_json::to_writer(&mut digest, &req).map_err(|e| TrainerError::Json {
            what: "upload".into(),
            source: e,
        })?;
        Ok(NewUpload {
            user: user.to_string(),
            digest: hex::encode(digest.finalize()),
            req,
            neg_memory,
            now_ms,
        })
    }

    /// Clicks and exposures in this upload.
    pub(super) fn events(&self) -> usize {
        self.req.clicks.len() + self.req.exposures.len()
    }

    fn key(&self) -> (&str, &str) {
        (&self.user, &self.req.idempotency_key)
    }

    /// The refusal of this upload when its key is stored with the content `stored_digest`
    /// ('' for an upload stored before digests were kept: any content is its retry).
    fn conflict_with(&self, stored_digest: &str) -> Option<TrainerError> {
        (!stored_digest.is_empty() && stored_digest != self.digest).then(|| {
            TrainerError::KeyConflict {
                key: self.req.idempotency_key.clone(),
            }
        })
    }

    fn answer(&self) -> UploadResponse {
        UploadResponse {
            accepted_clicks: self.req.clicks.len() as u32,
            accepted_exposures: self.req.exposures.len() as u32,
            duplicate: false,
        }
    }
}

/// Writes a group of uploads on `conn`, inside the caller's transaction, with a fixed number
/// of statements whatever the group's size: one multi-row `INSERT … ON CONFLICT DO NOTHING
/// RETURNING` of the uploads, one read of the first answers of keys already stored, the events
/// of the new uploads, one upsert of `user_state` (`r̂2`). A key repeated inside the group is a
/// duplicate of its first occurrence. Rows are written in `(user, key)` order so that
/// instances sharing a PostgreSQL take row locks in one order. Answers in `uploads` order:
/// a repeated key with content other than the stored one's gets
/// [`TrainerError::KeyConflict`] and changes nothing; the outer error is the database's.
pub(super) async fn write_uploads(
    conn: &mut sqlx::AnyConnection,
    uploads: &[&NewUpload],
) -> Result<Vec<Result<UploadResponse>>> {
    let mut first: HashMap<(&str, &str), usize> = HashMap::new();
    for (i, u) in uploads.iter().enumerate() {
        first.entry(u.key()).or_insert(i);
    }
    let mut distinct: Vec<&NewUpload> = first.values().map(|&i| uploads[i]).collect();
    distinct.sort_by(|a, b| a.key().cmp(&b.key()));
    let inserted = insert_uploads(conn, &distinct).await?;
    // New: the first occurrence of a key the insert stored; everything else is a duplicate.
    let is_new: Vec<bool> = (0..uploads.len())
        .map(|i| first[&uploads[i].key()] == i && inserted.contains(&key_of(uploads[i])))
        .collect();
    let stored: Vec<&NewUpload> = distinct
        .iter()
        .copied()
        .filter(|u| !inserted.contains(&key_of(u)))
        .collect();
    let mut answers = first_answers(conn, &stored).await?;
    let new: Vec<&NewUpload> = (0..uploads.len())
        .filter(|&i| is_new[i])
        .map(|i| uploads[i])
        .collect();
    for u in &new {
        answers.insert(key_of(u), (u.answer(), u.digest.clone()));
    }
    insert_events(conn, &new).await?;
    upsert_user_state(conn, &new).await?;
    uploads
        .iter()
        .zip(is_new)
        .map(|(u, is_new)| {
            let (first, stored_digest) = answers.get(&key_of(u)).ok_or_else(|| {
                TrainerError::Store(format!("upload {:?} neither stored nor new", u.key()))
            })?;
            if let Some(conflict) = u.conflict_with(stored_digest) {
                return Ok(Err(conflict));
            }
            Ok(Ok(UploadResponse {
                duplicate: !is_new,
                ..first.clone()
            }))
        })
        .collect()
}

type Key = (String, String);

fn key_of(u: &NewUpload) -> Key {
    (u.user.clone(), u.req.idempotency_key.clone())
}

/// `($1, $2, …), ($k+1, …), …`: `rows` placeholder tuples of `width` parameters.
fn placeholders(rows: usize, width: usize) -> String {
    (0..rows)
        .map(|r| {
            let row = (1..=width)
                .map(|c| format!("${}", r * width + c))
                .collect::<Vec<_>>()
                .join(", ");
            format!("({row})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Inserts the uploads' rows; the keys that were new (a stored key is left as it is).
async fn insert_uploads(
    conn: &mut sqlx::AnyConnection,
    uploads: &[&NewUpload],
) -> Result<std::collections::HashSet<Key>> {
    let sql = format!(
        "INSERT INTO uploads (user_id, idempotency_key, model_version, neg_memory, \
         accepted_clicks, accepted_exposures, received_ms, body_sha256) VALUES {} \
         ON CONFLICT (user_id, idempotency_key) DO NOTHING \
         RETURNING user_id, idempotency_key",
        placeholders(uploads.len(), 8)
    );
    let mut q = sqlx::query(&sql);
    for u in uploads {
        let a = u.answer();
        q = q
            .bind(u.user.as_str())
            .bind(u.req.idempotency_key.as_str())
            .bind(u.req.model_version.as_str())
            .bind(u.neg_memory.as_str())
            .bind(i64::from(a.accepted_clicks))
            .bind(i64::from(a.accepted_exposures))
            .bind(u.now_ms)
            .bind(u.digest.as_str());
    }
    let rows = q
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err("insert upload"))?;
    rows.iter()
        .map(|r| {
            Ok((
                r.try_get("user_id").map_err(db_err("insert upload"))?,
                r.try_get("idempotency_key")
                    .map_err(db_err("insert upload"))?,
            ))
        })
        .collect()
}

/// The answers stored with keys that were already there (what a retry gets back), each with
/// the stored content's digest.
async fn first_answers(
    conn: &mut sqlx::AnyConnection,
    stored: &[&NewUpload],
) -> Result<HashMap<Key, (UploadResponse, String)>> {
    if stored.is_empty() {
        return Ok(HashMap::new());
    }
    let which = (0..stored.len())
        .map(|i| {
            format!(
                "(user_id = ${} AND idempotency_key = ${})",
                2 * i + 1,
                2 * i + 2
            )
        })
        .collect::<Vec<_>>()
        .join(" OR ");
    let sql = format!(
        "SELECT user_id, idempotency_key, accepted_clicks, accepted_exposures, body_sha256 \
         FROM uploads WHERE {which}"
    );
    let mut q = sqlx::query(&sql);
    for u in stored {
        q = q.bind(u.user.as_str()).bind(u.req.idempotency_key.as_str());
    }
    let rows = q
        .fetch_all(&mut *conn)
        .await
        .map_err(db_err("read first answer"))?;
    rows.iter()
        .map(|row| {
            let get = |c: &str| {
                row.try_get::<String, _>(c)
                    .map_err(db_err("read first answer"))
            };
            let count = |c: &str| -> Result<u32> {
                let v: i64 = row.try_get(c).map_err(db_err("read first answer"))?;
                u32::try_from(v).map_err(|_| TrainerError::Store(format!("{c} out of range: {v}")))
            };
            let answer = UploadResponse {
                accepted_clicks: count("accepted_clicks")?,
                accepted_exposures: count("accepted_exposures")?,
                duplicate: true,
            };
            Ok((
                (get("user_id")?, get("idempotency_key")?),
                (answer, get("body_sha256")?),
            ))
        })
        .collect()
}

/// The clicks and exposures of new uploads, `seq` numbering each upload's events from 0.
async fn insert_events(conn: &mut sqlx::AnyConnection, new: &[&NewUpload]) -> Result<()> {
    let rows: Vec<(&NewUpload, usize, &str, &WireEvent)> = new
        .iter()
        .flat_map(|u| {
            let clicks = (u.req.clicks.iter()).map(|e| (kind_name(EventKind::Click), e));
            let exposures = (u.req.exposures.iter()).map(|e| (kind_name(EventKind::Exposure), e));
            clicks
                .chain(exposures)
                .enumerate()
                .map(move |(seq, (kind, e))| (*u, seq, kind, e))
        })
        .collect();
    for chunk in rows.chunks(EVENT_ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO events (user_id, idempotency_key, seq, kind, item, ts) VALUES {}",
            placeholders(chunk.len(), 6)
        );
        let mut q = sqlx::query(&sql);
        for (u, seq, kind, e) in chunk {
            q = q
                .bind(u.user.as_str())
                .bind(u.req.idempotency_key.as_str())
                .bind(*seq as i64)
                .bind(*kind)
                .bind(e.item.as_str())
                .bind(e.ts);
        }
        q.execute(&mut *conn)
            .await
            .map_err(db_err("insert events"))?;
    }
    Ok(())
}

/// Each user's latest `r̂2`: the user's last upload in `new` (arrival order) wins, one row per
/// user (PostgreSQL refuses to update a row twice in one statement).
async fn upsert_user_state(conn: &mut sqlx::AnyConnection, new: &[&NewUpload]) -> Result<()> {
    let mut latest: HashMap<&str, &NewUpload> = HashMap::new();
    for u in new {
        latest.insert(&u.user, u);
    }
    if latest.is_empty() {
        return Ok(());
    }
    let mut latest: Vec<&NewUpload> = latest.into_values().collect();
    latest.sort_by(|a, b| a.user.cmp(&b.user));
    let sql = format!(
        "INSERT INTO user_state (user_id, model_version, neg_memory, updated_ms) VALUES {} \
         ON CONFLICT (user_id) DO UPDATE SET model_version = excluded.model_version, \
         neg_memory = excluded.neg_memory, updated_ms = excluded.updated_ms",
        placeholders(latest.len(), 4)
    );
    let mut q = sqlx::query(&sql);
    for u in latest {
        q = q
            .bind(u.user.as_str())
            .bind(u.req.model_version.as_str())
            .bind(u.neg_memory.as_str())
            .bind(u.now_ms);
    }
    q.execute(&mut *conn)
        .await
        .map_err(db_err("update user state"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::MIGRATIONS;

    /// Every file of `trainer/migrations/` is embedded, under the version and description
    /// `sqlx::migrate!` reads from its name (`0001_sync_store.sql`: 1, "sync store"), with its
    /// exact text, and nothing else is.
    #[test]
    fn the_embedded_migrations_are_the_migrations_directory() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
        let mut files: Vec<(i64, String, String)> = std::fs::read_dir(&dir)
            .expect("trainer/migrations/")
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
