//! Writing a group of uploads in one transaction, with a fixed number of statements whatever
//! the group's size ([`write_uploads`]); the [`writer`](super::writer) task calls it.

use std::collections::HashMap;

use sha2::{Digest, Sha256};
use slowfast_core::wire::{UploadRequest, UploadResponse, WireEvent};
use sqlx::Row;

use super::{db_err, kind_name, EVENT_ROWS_PER_INSERT};
use crate::error::{Result, ServerError};
use slowfast_data::EventKind;

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
        let neg_memory = serde_json::to_string(&req.neg_memory)
            .map_err(slowfast_data::JsonError::of("neg_memory"))?;
        let mut digest = Sha256::new();
        serde_json::to_writer(&mut digest, &req).map_err(slowfast_data::JsonError::of("upload"))?;
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
    fn conflict_with(&self, stored_digest: &str) -> Option<ServerError> {
        (!stored_digest.is_empty() && stored_digest != self.digest).then(|| {
            ServerError::KeyConflict {
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
/// [`ServerError::KeyConflict`] and changes nothing; the outer error is the database's.
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
                ServerError::Corrupt(format!("upload {:?} neither stored nor new", u.key()))
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
                u32::try_from(v).map_err(|_| ServerError::Corrupt(format!("{c} out of range: {v}")))
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
