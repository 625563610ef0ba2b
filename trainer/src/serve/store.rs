//! The sync server's store: uploads (idempotent), the users' clicks and exposures, and each
//! user's latest `neg_memory` (`r̂2`, eq. 5).
//!
//! One code path over `sqlx::Any`: SQLite (a file, created on first start; WAL) or PostgreSQL
//! (`postgres://`), with the same migrations (`trainer/migrations/`). Idempotency lives in the
//! database (a primary key on `(user, idempotency_key)` inside the upload's transaction), so
//! several server instances on one PostgreSQL behave as one.

use std::collections::HashMap;

use slowfast_core::wire::{UploadRequest, UploadResponse, WireEvent};
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Row};

use crate::data::{EventKind, EventLog};
use crate::error::{Result, TrainerError};

/// The migrations, embedded at build time.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Rows per multi-row `INSERT` of events (6 parameters each, far below both databases' limits).
const EVENT_ROWS_PER_INSERT: usize = 500;

/// A connection pool to the server's database.
#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// SQLite has one writer at a time; queueing writers here instead of in SQLite's busy
    /// handler (which sleeps and retries) keeps upload latency flat. `None` on PostgreSQL.
    write_lock: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
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
        MIGRATOR
            .run(&pool)
            .await
            .map_err(|e| TrainerError::Store(format!("migrations: {e}")))?;
        let write_lock = sqlite.then(|| std::sync::Arc::new(tokio::sync::Mutex::new(())));
        Ok(Store { pool, write_lock })
    }

    /// Stores a validated upload of `user` once. A repeated `(user, idempotency_key)` stores
    /// nothing and returns the first answer with `duplicate = true`, across instances too.
    pub async fn record_upload(
        &self,
        user: &str,
        req: &UploadRequest,
        now_ms: i64,
    ) -> Result<UploadResponse> {
        let neg_memory =
            serde_json::to_string(&req.neg_memory).map_err(|e| TrainerError::Json {
                what: "neg_memory".into(),
                source: e,
            })?;
        let answer = UploadResponse {
            accepted_clicks: req.clicks.len() as u32,
            accepted_exposures: req.exposures.len() as u32,
            duplicate: false,
        };
        let _writer = match &self.write_lock {
            Some(lock) => Some(lock.lock().await),
            None => None,
        };
        let mut tx = self.pool.begin().await.map_err(db_err("begin"))?;
        let inserted = sqlx::query(
            "INSERT INTO uploads (user_id, idempotency_key, model_version, neg_memory, \
             accepted_clicks, accepted_exposures, received_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (user_id, idempotency_key) DO NOTHING",
        )
        .bind(user)
        .bind(&req.idempotency_key)
        .bind(&req.model_version)
        .bind(&neg_memory)
        .bind(i64::from(answer.accepted_clicks))
        .bind(i64::from(answer.accepted_exposures))
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err("insert upload"))?
        .rows_affected();
        if inserted == 0 {
            tx.rollback().await.map_err(db_err("rollback"))?;
            return self.first_answer(user, &req.idempotency_key).await;
        }
        let events = req
            .clicks
            .iter()
            .map(|e| ("click", e))
            .chain(req.exposures.iter().map(|e| ("exposure", e)))
            .collect::<Vec<_>>();
        for (chunk_no, chunk) in events.chunks(EVENT_ROWS_PER_INSERT).enumerate() {
            insert_events(
                &mut tx,
                user,
                &req.idempotency_key,
                chunk_no * EVENT_ROWS_PER_INSERT,
                chunk,
            )
            .await?;
        }
        sqlx::query(
            "INSERT INTO user_state (user_id, model_version, neg_memory, updated_ms) \
             VALUES ($1, $2, $3, $4) \
             ON CONFLICT (user_id) DO UPDATE SET model_version = excluded.model_version, \
             neg_memory = excluded.neg_memory, updated_ms = excluded.updated_ms",
        )
        .bind(user)
        .bind(&req.model_version)
        .bind(&neg_memory)
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err("update user state"))?;
        tx.commit().await.map_err(db_err("commit"))?;
        Ok(answer)
    }

    async fn first_answer(&self, user: &str, key: &str) -> Result<UploadResponse> {
        let row = sqlx::query(
            "SELECT accepted_clicks, accepted_exposures FROM uploads \
             WHERE user_id = $1 AND idempotency_key = $2",
        )
        .bind(user)
        .bind(key)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("read first answer"))?;
        let count = |col: &str| -> Result<u32> {
            let v: i64 = row.try_get(col).map_err(db_err("read first answer"))?;
            u32::try_from(v).map_err(|_| TrainerError::Store(format!("{col} out of range: {v}")))
        };
        Ok(UploadResponse {
            accepted_clicks: count("accepted_clicks")?,
            accepted_exposures: count("accepted_exposures")?,
            duplicate: true,
        })
    }

    /// The user's most recent `limit` clicked items, oldest first (the slow history `H^S`).
    pub async fn recent_clicks(&self, user: &str, limit: usize) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT item FROM events WHERE user_id = $1 AND kind = 'click' \
             ORDER BY ts DESC, idempotency_key DESC, seq DESC LIMIT $2",
        )
        .bind(user)
        .bind(limit as i64)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err("read history"))?;
        let mut items = rows
            .iter()
            .map(|r| r.try_get::<String, _>("item"))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(db_err("read history"))?;
        items.reverse();
        Ok(items)
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

    /// Closes the pool, waiting for connections in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

type ConnectFuture<'c> =
    std::pin::Pin<Box<dyn std::future::Future<Output = sqlx::Result<()>> + Send + 'c>>;

/// WAL lets readers run beside the writer; `synchronous = NORMAL` syncs at checkpoints, which
/// keeps every commit durable against process crashes; writers wait for the lock.
fn sqlite_pragmas(
    conn: &mut sqlx::AnyConnection,
    _: sqlx::pool::PoolConnectionMetadata,
) -> ConnectFuture<'_> {
    Box::pin(async move {
        for pragma in [
            "PRAGMA journal_mode = WAL",
            "PRAGMA synchronous = NORMAL",
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

async fn insert_events(
    tx: &mut sqlx::Transaction<'_, sqlx::Any>,
    user: &str,
    key: &str,
    first_seq: usize,
    events: &[(&str, &WireEvent)],
) -> Result<()> {
    let mut sql =
        String::from("INSERT INTO events (user_id, idempotency_key, seq, kind, item, ts) VALUES ");
    for i in 0..events.len() {
        let p = 6 * i;
        if i > 0 {
            sql.push_str(", ");
        }
        sql.push_str(&format!(
            "(${}, ${}, ${}, ${}, ${}, ${})",
            p + 1,
            p + 2,
            p + 3,
            p + 4,
            p + 5,
            p + 6
        ));
    }
    let mut q = sqlx::query(&sql);
    for (i, (kind, e)) in events.iter().enumerate() {
        q = q
            .bind(user)
            .bind(key)
            .bind((first_seq + i) as i64)
            .bind(*kind)
            .bind(e.item.as_str())
            .bind(e.ts);
    }
    q.execute(&mut **tx)
        .await
        .map_err(db_err("insert events"))?;
    Ok(())
}
