//! Group commit: one writer task per server stores every upload.
//!
//! Handlers send their validated upload with a reply channel over a bounded queue. The writer
//! takes what is queued (at least one, at most [`MAX_GROUP_UPLOADS`] uploads or about
//! [`MAX_GROUP_EVENTS`] events), writes the group with [`write_uploads`] — a fixed number of
//! statements whatever the group's size — in ONE transaction, commits once, then answers every
//! handler. Under load the round trips to the database and the commit are paid once per group
//! instead of once per upload; a lone upload is written at once, nothing waits for a group to
//! fill.
//!
//! If the group's transaction fails, it is rolled back and the group is written again one
//! upload per `SAVEPOINT` in one transaction: an upload that fails rolls back to its savepoint
//! and gets its own error, the others commit. The SQL is the same (a group of one).
//!
//! Crash safety: a handler is answered only after `COMMIT` of the transaction that holds its
//! upload returned, so an acknowledged upload is in the database. On SQLite (WAL,
//! `synchronous = FULL`) the commit has written the upload's frames to the WAL file and synced
//! it before it returns, so it survives a crash of the server process, of the OS, or a power
//! loss; on PostgreSQL the commit is durable as the database is configured (`fsync`,
//! `synchronous_commit` on by default). An upload not yet answered may or may not be stored;
//! the device retries with the same idempotency key and gets the first answer. On SIGTERM the
//! server stops accepting, and every request it accepted is answered once its group commits.

use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use slowfast_core::wire::UploadResponse;
use sqlx::{Acquire, AnyPool};
use tokio::sync::{mpsc, oneshot};

use super::db_err;
use super::upload::{write_uploads, NewUpload};
use crate::error::{Result, ServerError};

/// Most uploads in one group (8 parameters each in the uploads' insert).
pub const MAX_GROUP_UPLOADS: usize = 64;
/// A group stops taking uploads once it holds this many events.
pub const MAX_GROUP_EVENTS: usize = 8_000;
/// Uploads waiting for the writer before handlers wait to enqueue (backpressure).
const QUEUE: usize = 1_024;

struct Job {
    upload: NewUpload,
    reply: oneshot::Sender<Result<UploadResponse>>,
}

/// How large the committed groups were (uploads, events), for `/metrics`.
#[derive(Clone, Debug)]
pub struct GroupSizes {
    pub uploads: Histogram,
    pub events: Histogram,
}

impl GroupSizes {
    fn new() -> GroupSizes {
        GroupSizes {
            // 1 to 64 uploads, 1 to 8,192 events, doubling.
            uploads: Histogram::new(exponential_buckets(1.0, 2.0, 7)),
            events: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        }
    }
}

/// The handle handlers submit uploads through; the writer task stops when every handle is
/// dropped.
#[derive(Clone)]
pub struct Writer {
    queue: mpsc::Sender<Job>,
    groups: GroupSizes,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("queued", &self.queued())
            .finish()
    }
}

impl Writer {
    /// Spawns the writer task on the current tokio runtime.
    pub(super) fn spawn(pool: AnyPool) -> Writer {
        let (queue, jobs) = mpsc::channel(QUEUE);
        let groups = GroupSizes::new();
        tokio::spawn(run(pool, jobs, groups.clone()));
        Writer { queue, groups }
    }

    /// Uploads waiting for the writer now.
    pub(super) fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// The sizes of the groups committed so far.
    pub(super) fn group_sizes(&self) -> &GroupSizes {
        &self.groups
    }

    /// Queues `upload` and waits for its answer, given after the commit that holds it.
    pub(super) async fn submit(&self, upload: NewUpload) -> Result<UploadResponse> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(Job { upload, reply })
            .await
            .map_err(|_| ServerError::WriterStopped)?;
        answer.await.map_err(|_| ServerError::WriterStopped)?
    }
}

async fn run(pool: AnyPool, mut jobs: mpsc::Receiver<Job>, sizes: GroupSizes) {
    while let Some(job) = jobs.recv().await {
        let mut events = job.upload.events();
        let mut group = vec![job];
        while group.len() < MAX_GROUP_UPLOADS && events < MAX_GROUP_EVENTS {
            let Ok(job) = jobs.try_recv() else { break };
            events += job.upload.events();
            group.push(job);
        }
        let uploads: Vec<&NewUpload> = group.iter().map(|j| &j.upload).collect();
        let answers = commit_group(&pool, &uploads).await;
        tracing::debug!(uploads = uploads.len(), events, "group written");
        sizes.uploads.observe(uploads.len() as f64);
        sizes.events.observe(events as f64);
        for (job, answer) in group.into_iter().zip(answers) {
            // A handler whose client went away no longer waits; its upload is stored anyway.
            let _ = job.reply.send(answer);
        }
    }
}

/// Writes `uploads` in one transaction, or one savepoint each when that fails. One answer per
/// upload, in order; none is `Ok` unless its transaction committed.
pub(super) async fn commit_group(
    pool: &AnyPool,
    uploads: &[&NewUpload],
) -> Vec<Result<UploadResponse>> {
    match in_one_transaction(pool, uploads).await {
        Ok(answers) => answers,
        Err(e) if uploads.len() == 1 => vec![Err(e)],
        Err(e) => {
            tracing::warn!(error = %e, uploads = uploads.len(), "group commit failed: one savepoint per upload");
            one_savepoint_each(pool, uploads).await
        }
    }
}

async fn in_one_transaction(
    pool: &AnyPool,
    uploads: &[&NewUpload],
) -> Result<Vec<Result<UploadResponse>>> {
    let mut tx = pool.begin().await.map_err(db_err("begin"))?;
    let answers = write_uploads(&mut tx, uploads).await?;
    tx.commit().await.map_err(db_err("commit"))?;
    Ok(answers)
}

/// Every upload in its own savepoint of one transaction: a failing upload rolls back to its
/// savepoint and gets its error; the others commit together.
async fn one_savepoint_each(pool: &AnyPool, uploads: &[&NewUpload]) -> Vec<Result<UploadResponse>> {
    let all_fail = |what: &str, e: &dyn std::fmt::Display| {
        uploads
            .iter()
            .map(|_| {
                Err(ServerError::GroupWrite {
                    what: what.to_owned(),
                    reason: e.to_string(),
                })
            })
            .collect()
    };
    let mut tx = match pool.begin().await {
        Ok(tx) => tx,
        Err(e) => return all_fail("begin", &e),
    };
    let mut answers = Vec::with_capacity(uploads.len());
    for upload in uploads {
        let mut savepoint = match tx.begin().await {
            Ok(sp) => sp,
            Err(e) => return all_fail("savepoint", &e),
        };
        match write_uploads(&mut savepoint, std::slice::from_ref(upload)).await {
            Ok(mut one) => match (savepoint.commit().await, one.pop()) {
                (Ok(()), Some(answer)) => answers.push(answer),
                (Err(e), _) => return all_fail("release savepoint", &e),
                (Ok(()), None) => return all_fail("write upload", &"no answer"),
            },
            Err(e) => {
                if let Err(rollback) = savepoint.rollback().await {
                    return all_fail("rollback to savepoint", &rollback);
                }
                answers.push(Err(e));
            }
        }
    }
    match tx.commit().await {
        Ok(()) => answers,
        Err(e) => all_fail("commit", &e),
    }
}

#[cfg(test)]
mod tests {
    use slowfast_core::wire::{UploadRequest, WireEvent};
    use sqlx::Row;

    use super::*;
    use crate::store::Store;

    fn upload(user: &str, key: &str, clicks: &[&str], neg: f32) -> NewUpload {
        let events = |ids: &[&str]| {
            ids.iter()
                .enumerate()
                .map(|(i, id)| WireEvent {
                    item: id.to_string(),
                    ts: i as i64,
                })
                .collect()
        };
        let req = UploadRequest {
            user: None,
            idempotency_key: key.into(),
            model_version: "v1".into(),
            neg_memory: vec![neg; 2],
            clicks: events(clicks),
            exposures: events(&["x"]),
        };
        NewUpload::new(user, req, 7).unwrap()
    }

    fn answer(clicks: u32, duplicate: bool) -> UploadResponse {
        UploadResponse {
            accepted_clicks: clicks,
            accepted_exposures: 1,
            duplicate,
        }
    }

    /// A trigger that fails the events of any upload keyed `poison`, after its `uploads` row
    /// went in: a database-side failure in the middle of one upload.
    const POISON_SQLITE: &[&str] = &["CREATE TRIGGER poison BEFORE INSERT ON events \
         WHEN NEW.idempotency_key = 'poison' BEGIN SELECT RAISE(ABORT, 'poisoned upload'); END"];
    const POISON_PG: &[&str] = &[
        "CREATE FUNCTION poison() RETURNS trigger AS $$ BEGIN \
         IF NEW.idempotency_key = 'poison' THEN RAISE EXCEPTION 'poisoned upload'; END IF; \
         RETURN NEW; END $$ LANGUAGE plpgsql",
        "CREATE TRIGGER poison BEFORE INSERT ON events FOR EACH ROW EXECUTE FUNCTION poison()",
    ];

    /// One group: new uploads, a key repeated inside the group and a key stored before (each
    /// once with the same content, a retry, and once with other content, a conflict), and
    /// (when `poison`) an upload the database refuses half-way.
    async fn group_is_stored_once_each(url: &str, poison: &[&str]) {
        let store = Store::connect(url).await.unwrap();
        let pool = AnyPool::connect(&crate::store::normalise_url(url))
            .await
            .unwrap();
        for sql in poison {
            sqlx::query(sql).execute(&pool).await.unwrap();
        }
        let before = upload("alice", "k0", &["a"], 0.0);
        assert_eq!(
            commit_group(&pool, &[&before]).await[0].as_ref().unwrap(),
            &answer(1, false)
        );
        let group = [
            upload("alice", "k1", &["a", "b"], 1.0),
            upload("bob", "k1", &["c"], 2.0),
            upload("alice", "k1", &["z", "z", "z"], 3.0),
            upload("carol", "poison", &["d"], 4.0),
            upload("alice", "k0", &["y", "y"], 5.0),
            upload("alice", "k2", &["e"], 6.0),
            upload("alice", "k1", &["a", "b"], 1.0),
            upload("alice", "k0", &["a"], 0.0),
        ];
        let refs: Vec<&NewUpload> = group.iter().collect();
        let answers = commit_group(&pool, &refs).await;
        let ok = |i: usize| answers[i].as_ref().unwrap().clone();
        assert_eq!(ok(0), answer(2, false));
        assert_eq!(ok(1), answer(1, false));
        assert_eq!(
            ok(6),
            answer(2, true),
            "a retry of a key new in the group gets the first answer"
        );
        assert_eq!(
            ok(7),
            answer(1, true),
            "a retry of a stored key gets the stored answer"
        );
        for (i, key) in [(2, "k1"), (4, "k0")] {
            match &answers[i] {
                Err(ServerError::KeyConflict { key: k }) => assert_eq!(k, key),
                other => panic!("upload {i}: other content under {key} gave {other:?}"),
            }
        }
        assert_eq!(ok(5), answer(1, false));
        if poison.is_empty() {
            assert_eq!(ok(3), answer(1, false));
        } else {
            let err = answers[3].as_ref().unwrap_err().to_string();
            assert!(err.contains("poisoned upload"), "{err}");
        }
        let carol = usize::from(poison.is_empty());
        // k0 (1 click + 1 exposure), alice/k1 (2 + 1), bob/k1 (1 + 1), alice/k2 (1 + 1), carol.
        assert_eq!(
            store.counts().await.unwrap(),
            (4 + carol as u64, 9 + 2 * carol as u64)
        );
        let items: Vec<String> = sqlx::query(
            "SELECT item FROM events WHERE user_id = 'alice' AND kind = 'click' ORDER BY item",
        )
        .fetch_all(&pool)
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<String, _>("item"))
        .collect();
        assert_eq!(
            items,
            ["a", "a", "b", "e"],
            "no event of a retry or a conflict is stored"
        );
        let state = store.neg_memories().await.unwrap();
        assert_eq!(
            state["alice"].1,
            vec![6.0; 2],
            "the user's last new upload sets r̂2"
        );
        assert_eq!(state["bob"].1, vec![2.0; 2]);
        assert_eq!(state.contains_key("carol"), poison.is_empty());
        pool.close().await;
        store.close().await;
    }

    fn on_runtime(f: impl std::future::Future<Output = ()>) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn sqlite_url(dir: &tempfile::TempDir) -> String {
        dir.path().join("sync.db").display().to_string()
    }

    #[test]
    fn a_group_stores_each_key_once_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        on_runtime(group_is_stored_once_each(&sqlite_url(&dir), &[]));
    }

    #[test]
    fn a_failing_upload_rolls_back_to_its_savepoint_and_the_group_commits_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        on_runtime(group_is_stored_once_each(&sqlite_url(&dir), POISON_SQLITE));
    }

    #[test]
    #[ignore = "needs PostgreSQL"]
    fn a_group_stores_each_key_once_postgres() {
        let url = crate::store::testing::fresh_postgres_database();
        on_runtime(group_is_stored_once_each(&url, &[]));
    }

    #[test]
    #[ignore = "needs PostgreSQL"]
    fn a_failing_upload_rolls_back_to_its_savepoint_and_the_group_commits_postgres() {
        let url = crate::store::testing::fresh_postgres_database();
        on_runtime(group_is_stored_once_each(&url, POISON_PG));
    }
}
