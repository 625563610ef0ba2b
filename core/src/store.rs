//! The durable on-device store: one SQLite file (bundled SQLite, WAL journal) in the data
//! directory.
//!
//! | table | holds |
//! |---|---|
//! | `events` | every recorded click and exposure not yet both uploaded and out of the windows |
//! | `upload_batch` | the batch being uploaded, with its idempotency key (at most one) |
//! | `neg_memory` | `r̂2` (eq. 5), the model version it was computed with, and a checksum |
//! | `embeddings` | the item-embedding cache, with an insertion tick for LRU pruning |
//! | `bundle` | the installed model bundle's files, `manifest.json` included |
//! | `meta` | schema version, upload cursor, last upload time, the bundle's ETag, the last feed (JSON) |
//!
//! Every write that a public call acknowledges is one SQLite transaction, so after a crash at
//! any point the store holds either all of it or none of it. What a committed transaction
//! survives is the app's choice ([`Durability`]): the death of the process (`synchronous =
//! NORMAL` in WAL mode, the default), or power loss as well (`FULL`, one sync of the WAL per
//! commit). Neither setting lets a power loss corrupt the file. Opening runs
//! SQLite's `quick_check`; rows that do not decode, a failed check or a newer schema are
//! refused with [`SlowFastError::StoreCorrupt`], and a damaged `r̂2` (checksum, length,
//! non-finite values) is reported as absent so the engine recomputes it.

use std::collections::BTreeMap;
use std::path::Path;

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::error::{Result, SlowFastError};
use crate::manifest::{sha256_hex, MANIFEST_JSON};
use crate::wire::{FeedResponse, UploadRequest};

/// What an acknowledged write (a recorded event, an acknowledged upload, an installed bundle)
/// survives.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// The app's process dying at any point (a crash, SIGKILL, the OS reclaiming memory):
    /// SQLite `synchronous = NORMAL` in WAL mode. A commit is in the WAL file when the call
    /// returns and reaches the disk at the next checkpoint or when the OS writes it back; a
    /// power cut or kernel crash before that may lose the most recent events (never the
    /// file). The Android framework's own default for WAL databases.
    #[default]
    Process,
    /// Power loss and OS crashes too: `synchronous = FULL`, every commit syncs the WAL to
    /// storage before the call returns (one fsync per recorded event).
    PowerLoss,
}

impl Durability {
    fn pragma(self) -> &'static str {
        match self {
            Durability::Process => "PRAGMA synchronous = NORMAL;",
            Durability::PowerLoss => "PRAGMA synchronous = FULL;",
        }
    }
}

/// The store's file name inside the data directory.
pub const STORE_FILE: &str = "slowfast.sqlite3";
/// The schema this build writes; a store with a newer one is refused.
pub const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS events(
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    kind INTEGER NOT NULL CHECK (kind IN (0, 1)),
    item TEXT NOT NULL CHECK (length(item) > 0),
    ts INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS events_kind_seq ON events(kind, seq);
CREATE TABLE IF NOT EXISTS upload_batch(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    last_seq INTEGER NOT NULL,
    body BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS neg_memory(
    id INTEGER PRIMARY KEY CHECK (id = 1),
    model_version TEXT NOT NULL,
    vec BLOB NOT NULL,
    checksum TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embeddings(
    item TEXT PRIMARY KEY,
    vec BLOB NOT NULL,
    tick INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS embeddings_tick ON embeddings(tick);
CREATE TABLE IF NOT EXISTS bundle(file TEXT PRIMARY KEY, bytes BLOB NOT NULL);
";

/// A bundle's `manifest.json` bytes and its other files by name.
pub type BundleFiles = (Vec<u8>, BTreeMap<String, Vec<u8>>);

/// Click or exposure.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKind {
    Click,
    Exposure,
}

impl EventKind {
    fn code(self) -> i64 {
        match self {
            EventKind::Click => 0,
            EventKind::Exposure => 1,
        }
    }

    fn from_code(code: i64) -> Result<EventKind> {
        match code {
            0 => Ok(EventKind::Click),
            1 => Ok(EventKind::Exposure),
            other => Err(SlowFastError::StoreCorrupt(format!(
                "events: unknown kind {other}"
            ))),
        }
    }
}

/// One stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// Monotone, never reused (SQLite `AUTOINCREMENT`).
    pub seq: i64,
    pub kind: EventKind,
    pub item: String,
    pub ts: i64,
}

/// An upload batch, persisted before it is sent so that a retry (even after a crash) sends
/// the same idempotency key and content.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// The newest event sequence number the batch covers.
    pub last_seq: i64,
    pub request: UploadRequest,
}

/// `r̂2` as stored, with the model version it was computed with.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredNegMemory {
    pub model_version: String,
    pub values: Vec<f32>,
}

/// The on-device store. Not `Sync`: the engine holds it behind its mutex.
pub struct Store {
    conn: Connection,
}

impl Store {
    /// Opens or creates the store at `path` with `durability`, checks its integrity and
    /// schema version.
    pub fn open(path: &Path, durability: Durability) -> Result<Store> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(SlowFastError::Store(format!(
                "could not enable WAL (journal_mode = {mode})"
            )));
        }
        conn.execute_batch(durability.pragma())?;
        let check: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        if check != "ok" {
            return Err(SlowFastError::StoreCorrupt(format!(
                "integrity check failed: {check}"
            )));
        }
        conn.execute_batch(&format!("BEGIN IMMEDIATE; {SCHEMA} COMMIT;"))?;
        let store = Store { conn };
        match store.meta_i64("schema_version")? {
            None => store.set_meta_i64("schema_version", SCHEMA_VERSION)?,
            Some(v) if v > SCHEMA_VERSION => {
                return Err(SlowFastError::StoreCorrupt(format!(
                    "schema version {v} is newer than this build reads ({SCHEMA_VERSION})"
                )))
            }
            Some(_) => {}
        }
        Ok(store)
    }

    /// Appends one event and, in the same transaction, the `r̂2` it produced (for an exposure
    /// with a known embedding). Returns the event's sequence number.
    pub fn append_event(
        &mut self,
        kind: EventKind,
        item: &str,
        ts: i64,
        neg_memory: Option<(&str, &[f32])>,
    ) -> Result<i64> {
        let tx = self.conn.transaction()?;
        tx.prepare_cached("INSERT INTO events(kind, item, ts) VALUES (?1, ?2, ?3)")?
            .execute(params![kind.code(), item, ts])?;
        let seq = tx.last_insert_rowid();
        if let Some((version, values)) = neg_memory {
            write_neg_memory(&tx, version, values)?;
        }
        tx.commit()?;
        Ok(seq)
    }

    /// The newest `limit` events of `kind`, oldest first.
    pub fn recent_events(&self, kind: EventKind, limit: usize) -> Result<Vec<Event>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, kind, item, ts FROM events WHERE kind = ?1 ORDER BY seq DESC LIMIT ?2",
        )?;
        let mut events = collect_events(stmt.query(params![kind.code(), limit as i64])?)?;
        events.reverse();
        Ok(events)
    }

    /// Events with `seq > after`, oldest first, at most `limit`.
    pub fn events_after(&self, after: i64, limit: usize) -> Result<Vec<Event>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT seq, kind, item, ts FROM events WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )?;
        let events = collect_events(stmt.query(params![after, limit as i64])?)?;
        Ok(events)
    }

    /// The newest sequence number the server acknowledged (0 before the first upload).
    pub fn uploaded_seq(&self) -> Result<i64> {
        Ok(self.meta_i64("uploaded_seq")?.unwrap_or(0))
    }

    /// Unix milliseconds of the last acknowledged upload (`None` before the first).
    pub fn last_upload_ms(&self) -> Result<Option<i64>> {
        self.meta_i64("last_upload_ms")
    }

    /// Events recorded but not yet acknowledged by the server.
    pub fn pending_count(&self) -> Result<usize> {
        let after = self.uploaded_seq()?;
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM events WHERE seq > ?1")?
            .query_row([after], |r| r.get(0))?;
        Ok(n as usize)
    }

    /// Persists `batch` as the one in flight.
    pub fn save_batch(&mut self, batch: &Batch) -> Result<()> {
        let body = serde_json::to_vec(&batch.request)?;
        self.conn.execute(
            "INSERT OR REPLACE INTO upload_batch(id, last_seq, body) VALUES (1, ?1, ?2)",
            params![batch.last_seq, body],
        )?;
        Ok(())
    }

    /// The batch in flight, if any.
    pub fn load_batch(&self) -> Result<Option<Batch>> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .query_row(
                "SELECT last_seq, body FROM upload_batch WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        row.map(|(last_seq, body)| {
            let request = serde_json::from_slice(&body).map_err(|e| {
                SlowFastError::StoreCorrupt(format!("upload_batch does not decode: {e}"))
            })?;
            Ok(Batch { last_seq, request })
        })
        .transpose()
    }

    /// The server acknowledged the batch in flight: advance the cursor, drop the batch, and
    /// delete acknowledged events older than the newest `keep_clicks` clicks and
    /// `keep_exposures` exposures (those still feed the windows and `r̂2`).
    pub fn ack_batch(
        &mut self,
        last_seq: i64,
        now_ms: i64,
        keep_clicks: usize,
        keep_exposures: usize,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        set_meta(&tx, "uploaded_seq", last_seq)?;
        set_meta(&tx, "last_upload_ms", now_ms)?;
        tx.execute("DELETE FROM upload_batch", [])?;
        for (kind, keep) in [
            (EventKind::Click, keep_clicks),
            (EventKind::Exposure, keep_exposures),
        ] {
            tx.execute(
                "DELETE FROM events WHERE kind = ?1 AND seq <= ?2 AND seq < coalesce(
                     (SELECT min(seq) FROM (SELECT seq FROM events WHERE kind = ?1
                      ORDER BY seq DESC LIMIT ?3)), ?2 + 1)",
                params![kind.code(), last_seq, keep as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// The stored `r̂2`, or `None` when absent or damaged (wrong checksum, length not a multiple
    /// of 4, non-finite values): the caller recomputes it from the exposure log.
    pub fn neg_memory(&self) -> Result<Option<StoredNegMemory>> {
        let row: Option<(String, Vec<u8>, String)> = self
            .conn
            .query_row(
                "SELECT model_version, vec, checksum FROM neg_memory WHERE id = 1",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        let Some((model_version, bytes, checksum)) = row else {
            return Ok(None);
        };
        if checksum != neg_checksum(&model_version, &bytes) {
            tracing::warn!("stored r̂2 fails its checksum; it will be recomputed");
            return Ok(None);
        }
        let Some(values) = decode_f32s(&bytes).filter(|v| v.iter().all(|x| x.is_finite())) else {
            tracing::warn!("stored r̂2 does not decode; it will be recomputed");
            return Ok(None);
        };
        Ok(Some(StoredNegMemory {
            model_version,
            values,
        }))
    }

    /// Replaces `r̂2`.
    pub fn save_neg_memory(&mut self, model_version: &str, values: &[f32]) -> Result<()> {
        let tx = self.conn.transaction()?;
        write_neg_memory(&tx, model_version, values)?;
        tx.commit()?;
        Ok(())
    }

    /// Writes new or changed cache entries and, in the same transaction, a recomputed `r̂2`;
    /// then prunes the table to the newest `capacity` entries plus those events refer to.
    pub fn put_embeddings(
        &mut self,
        entries: &[(&str, &[f32])],
        neg_memory: Option<(&str, &[f32])>,
        capacity: usize,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        let tick: i64 = tx.query_row("SELECT coalesce(max(tick), 0) FROM embeddings", [], |r| {
            r.get(0)
        })?;
        {
            let mut put = tx.prepare_cached(
                "INSERT OR REPLACE INTO embeddings(item, vec, tick) VALUES (?1, ?2, ?3)",
            )?;
            for (i, (item, vec)) in entries.iter().enumerate() {
                put.execute(params![item, encode_f32s(vec), tick + 1 + i as i64])?;
            }
        }
        if let Some((version, values)) = neg_memory {
            write_neg_memory(&tx, version, values)?;
        }
        let count: i64 = tx.query_row("SELECT count(*) FROM embeddings", [], |r| r.get(0))?;
        // Prune in amortised steps: only once the table is a quarter over capacity.
        if count as usize > capacity + capacity / 4 {
            tx.execute(
                "DELETE FROM embeddings WHERE tick <= (SELECT tick FROM embeddings
                     ORDER BY tick DESC LIMIT 1 OFFSET ?1)
                 AND item NOT IN (SELECT item FROM events)",
                [capacity as i64],
            )?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Up to `limit` cache entries, oldest first, followed by every entry events refer to.
    pub fn load_embeddings(&self, limit: usize) -> Result<Vec<(String, Vec<f32>)>> {
        let mut stmt = self.conn.prepare(
            "SELECT item, vec FROM (SELECT item, vec, tick FROM embeddings
                 ORDER BY tick DESC LIMIT ?1)
             UNION SELECT item, vec FROM embeddings WHERE item IN (SELECT item FROM events)",
        )?;
        let mut rows = stmt.query([limit as i64])?;
        let mut out = Vec::new();
        while let Some(row) = rows.next()? {
            let item: String = row.get(0)?;
            let bytes: Vec<u8> = row.get(1)?;
            let vec = decode_f32s(&bytes).ok_or_else(|| {
                SlowFastError::StoreCorrupt(format!("embedding of {item:?} does not decode"))
            })?;
            out.push((item, vec));
        }
        Ok(out)
    }

    /// Installs a verified bundle in one transaction: replaces the files, forgets the cached
    /// embeddings (they belong to the old model), stores `r̂2` recomputed for the new model
    /// and the bundle's ETag.
    pub fn install_bundle(
        &mut self,
        manifest: &[u8],
        files: &BTreeMap<String, Vec<u8>>,
        neg_memory: (&str, &[f32]),
        etag: Option<&str>,
    ) -> Result<()> {
        let tx = self.conn.transaction()?;
        tx.execute("DELETE FROM bundle", [])?;
        tx.execute("DELETE FROM embeddings", [])?;
        {
            let mut put = tx.prepare("INSERT INTO bundle(file, bytes) VALUES (?1, ?2)")?;
            put.execute(params![MANIFEST_JSON, manifest])?;
            for (name, bytes) in files {
                put.execute(params![name, bytes])?;
            }
        }
        write_neg_memory(&tx, neg_memory.0, neg_memory.1)?;
        match etag {
            Some(etag) => set_meta(&tx, "bundle_etag", etag)?,
            None => {
                tx.execute("DELETE FROM meta WHERE key = 'bundle_etag'", [])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The installed bundle: `manifest.json` and the other files by name.
    pub fn load_bundle(&self) -> Result<Option<BundleFiles>> {
        let mut stmt = self.conn.prepare("SELECT file, bytes FROM bundle")?;
        let mut rows = stmt.query([])?;
        let mut files = BTreeMap::new();
        while let Some(row) = rows.next()? {
            files.insert(row.get::<_, String>(0)?, row.get::<_, Vec<u8>>(1)?);
        }
        Ok(files
            .remove(MANIFEST_JSON)
            .map(|manifest| (manifest, files)))
    }

    /// The ETag of the installed bundle's manifest, for a conditional GET.
    pub fn bundle_etag(&self) -> Result<Option<String>> {
        Ok(self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'bundle_etag'",
                [],
                |r| r.get(0),
            )
            .optional()?)
    }

    /// Keeps `feed` as the last feed (one row, replaced by the next).
    pub fn save_last_feed(&self, feed: &FeedResponse) -> Result<()> {
        set_meta(&self.conn, "last_feed", serde_json::to_vec(feed)?)
    }

    /// The feed [`Self::save_last_feed`] kept; one that does not decode is
    /// [`SlowFastError::StoreCorrupt`].
    pub fn last_feed(&self) -> Result<Option<FeedResponse>> {
        let bytes: Option<Vec<u8>> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'last_feed'", [], |r| {
                r.get(0)
            })
            .optional()?;
        bytes
            .map(|b| {
                serde_json::from_slice(&b)
                    .map_err(|e| SlowFastError::StoreCorrupt(format!("last feed: {e}")))
            })
            .transpose()
    }

    /// Ties the store to `user` on first use; a store created for another user is refused.
    pub fn bind_user(&mut self, user: &str) -> Result<()> {
        let owner: Option<String> = self
            .conn
            .query_row("SELECT value FROM meta WHERE key = 'user'", [], |r| {
                r.get(0)
            })
            .optional()?;
        match owner {
            None => set_meta(&self.conn, "user", user),
            Some(owner) if owner == user => Ok(()),
            Some(owner) => Err(SlowFastError::InvalidArgument(format!(
                "the store in this data directory belongs to user {owner:?}, not {user:?}"
            ))),
        }
    }

    fn meta_i64(&self, key: &str) -> Result<Option<i64>> {
        Ok(self
            .conn
            .prepare_cached("SELECT value FROM meta WHERE key = ?1")?
            .query_row([key], |r| r.get(0))
            .optional()?)
    }

    fn set_meta_i64(&self, key: &str, value: i64) -> Result<()> {
        set_meta(&self.conn, key, value)
    }
}

fn set_meta(conn: &Connection, key: &str, value: impl rusqlite::ToSql) -> Result<()> {
    conn.prepare_cached("INSERT OR REPLACE INTO meta(key, value) VALUES (?1, ?2)")?
        .execute(params![key, value])?;
    Ok(())
}

fn write_neg_memory(tx: &Transaction<'_>, model_version: &str, values: &[f32]) -> Result<()> {
    let bytes = encode_f32s(values);
    let checksum = neg_checksum(model_version, &bytes);
    tx.prepare_cached(
        "INSERT OR REPLACE INTO neg_memory(id, model_version, vec, checksum)
         VALUES (1, ?1, ?2, ?3)",
    )?
    .execute(params![model_version, bytes, checksum])?;
    Ok(())
}

fn collect_events(mut rows: rusqlite::Rows<'_>) -> Result<Vec<Event>> {
    let mut out = Vec::new();
    while let Some(row) = rows.next()? {
        out.push(Event {
            seq: row.get(0)?,
            kind: EventKind::from_code(row.get(1)?)?,
            item: row.get(2)?,
            ts: row.get(3)?,
        });
    }
    Ok(out)
}

fn neg_checksum(model_version: &str, bytes: &[u8]) -> String {
    let mut data = Vec::with_capacity(model_version.len() + 1 + bytes.len());
    data.extend_from_slice(model_version.as_bytes());
    data.push(0);
    data.extend_from_slice(bytes);
    sha256_hex(&data)
}

/// Little-endian `f32`s.
pub(crate) fn encode_f32s(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

pub(crate) fn decode_f32s(bytes: &[u8]) -> Option<Vec<f32>> {
    if !bytes.len().is_multiple_of(4) {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn open(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join(STORE_FILE), Durability::Process).unwrap()
    }

    #[test]
    fn events_and_neg_memory_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir);
        s.append_event(EventKind::Click, "a", 1, None).unwrap();
        s.append_event(EventKind::Exposure, "b", 2, Some(("v1", &[0.5, -1.0])))
            .unwrap();
        drop(s);
        let s = open(&dir);
        let clicks = s.recent_events(EventKind::Click, 10).unwrap();
        assert_eq!(clicks.len(), 1);
        assert_eq!(clicks[0].item, "a");
        let neg = s.neg_memory().unwrap().unwrap();
        assert_eq!(neg.model_version, "v1");
        assert_eq!(neg.values, vec![0.5, -1.0]);
        assert_eq!(s.pending_count().unwrap(), 2);
    }

    #[test]
    fn damaged_neg_memory_reads_as_absent() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = open(&dir);
        s.save_neg_memory("v1", &[1.0, 2.0]).unwrap();
        s.conn
            .execute("UPDATE neg_memory SET vec = x'0000803f'", [])
            .unwrap();
        assert_eq!(s.neg_memory().unwrap(), None);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_refused_with_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(STORE_FILE);
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        match Store::open(&path, Durability::Process) {
            Err(SlowFastError::StoreCorrupt(_)) => {}
            other => panic!("expected StoreCorrupt, got {:?}", other.err()),
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(&dir);
        s.set_meta_i64("schema_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(s);
        let err = Store::open(&dir.path().join(STORE_FILE), Durability::Process)
            .err()
            .unwrap();
        assert!(matches!(err, SlowFastError::StoreCorrupt(_)), "{err}");
    }

    #[derive(Clone, Debug)]
    enum Op {
        Record(bool, u8),
        Upload(usize),
        Reopen,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (any::<bool>(), any::<u8>()).prop_map(|(c, i)| Op::Record(c, i)),
            1 => (1usize..20).prop_map(Op::Upload),
            1 => Just(Op::Reopen),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Against a plain in-memory model: pending events are exactly those after the cursor,
        /// the newest `keep` events of each kind are always retained, uploads never lose an
        /// unacknowledged event, and reopening changes nothing.
        #[test]
        fn store_matches_a_model(ops in proptest::collection::vec(op(), 1..60)) {
            let dir = tempfile::tempdir().unwrap();
            let mut s = open(&dir);
            let keep = 3;
            let mut all: Vec<Event> = Vec::new();
            let mut cursor = 0i64;
            for (t, op) in ops.into_iter().enumerate() {
                match op {
                    Op::Record(click, i) => {
                        let kind = if click { EventKind::Click } else { EventKind::Exposure };
                        let item = format!("i{i}");
                        let seq = s.append_event(kind, &item, t as i64, None).unwrap();
                        prop_assert!(all.last().is_none_or(|e| e.seq < seq));
                        all.push(Event { seq, kind, item, ts: t as i64 });
                    }
                    Op::Upload(n) => {
                        let batch = s.events_after(cursor, n).unwrap();
                        let expect: Vec<Event> =
                            all.iter().filter(|e| e.seq > cursor).take(n).cloned().collect();
                        prop_assert_eq!(&batch, &expect);
                        if let Some(last) = batch.last() {
                            cursor = last.seq;
                            s.ack_batch(cursor, t as i64, keep, keep).unwrap();
                        }
                    }
                    Op::Reopen => {
                        drop(s);
                        s = open(&dir);
                    }
                }
                prop_assert_eq!(s.uploaded_seq().unwrap(), cursor);
                let pending = all.iter().filter(|e| e.seq > cursor).count();
                prop_assert_eq!(s.pending_count().unwrap(), pending);
                for kind in [EventKind::Click, EventKind::Exposure] {
                    let of_kind: Vec<&Event> = all.iter().filter(|e| e.kind == kind).collect();
                    let newest: Vec<Event> = of_kind[of_kind.len().saturating_sub(keep)..]
                        .iter().map(|e| (*e).clone()).collect();
                    prop_assert_eq!(s.recent_events(kind, keep).unwrap(), newest);
                }
            }
        }
    }
}
