//! Shared by the sync server's integration tests: a bundle on disk, `slowfast serve` as a child
//! process on loopback, tokens, per-test databases (SQLite files, fresh PostgreSQL databases).
#![allow(dead_code)] // each test binary uses a different part

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use slowfast_core::manifest::{
    sha256_hex, FileEntry, ItemTable, Manifest, WindowSpec, FAST_ONNX, FORMAT_VERSION, ITEMS_JSON,
    MANIFEST_JSON,
};
use slowfast_server::auth::{unix_now, Secret};
use slowfast_server::store::Store;

pub const SECRET: &str = "integration-test-secret-0123456789";
pub const DIM: usize = 4;
pub const ITEMS: usize = 30;
pub const FAST_BYTES: &[u8] = b"opaque fast model bytes";

/// Writes a bundle of [`ITEMS`] items (`i0`, `i1`, …) of dimension [`DIM`], an opaque
/// `fast.onnx` the server only serves, and no `slow.onnx`.
pub fn write_bundle(dir: &Path) {
    let items = ItemTable {
        ids: (0..ITEMS).map(|i| format!("i{i}")).collect(),
        popularity: (0..ITEMS as u32).rev().collect(),
        embeddings: (0..ITEMS * DIM)
            .map(|x| ((x % 7) as f32 - 3.0) / 10.0)
            .collect(),
        added: 0,
    };
    let files = [
        (ITEMS_JSON, serde_json::to_vec(&items).unwrap()),
        (FAST_ONNX, FAST_BYTES.to_vec()),
    ];
    let mut entries = BTreeMap::new();
    for (name, bytes) in &files {
        std::fs::write(dir.join(name), bytes).unwrap();
        entries.insert(
            name.to_string(),
            FileEntry {
                sha256: sha256_hex(bytes),
                bytes: bytes.len() as u64,
                inputs: vec![],
                outputs: vec![],
            },
        );
    }
    let m = Manifest {
        format_version: FORMAT_VERSION,
        model_version: "v1".into(),
        dim: DIM,
        windows: WindowSpec {
            slow_history: 8,
            clicks: 4,
            exposures: 4,
        },
        files: entries,
        trained_on: "test".into(),
        commit: "test".into(),
        created_at: "2026-11-23T00:00:00Z".into(),
    };
    std::fs::write(dir.join(MANIFEST_JSON), serde_json::to_vec(&m).unwrap()).unwrap();
}

/// A token for `user`, valid for an hour.
pub fn token(user: &str) -> String {
    Secret::new(SECRET)
        .unwrap()
        .mint(user, unix_now() + 3600)
        .unwrap()
}

/// Where a test's data lives.
#[derive(Clone, Copy, Debug)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh database for one test: a SQLite file under `dir`, or a new PostgreSQL database on
/// `SLOWFAST_TEST_PG_URL`'s server. The PostgreSQL tests are `#[ignore = "needs PostgreSQL"]`,
/// so this runs for them only when asked (`-- --ignored`), and then fails when the server is
/// not configured rather than pass without testing anything.
pub fn fresh_db(backend: Backend, dir: &Path) -> String {
    match backend {
        Backend::Sqlite => dir.join("sync.db").display().to_string(),
        Backend::Postgres => slowfast_server::store::testing::fresh_postgres_database(),
    }
}

pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

/// `(uploads, events)` stored in `db`.
pub fn counts(db: &str) -> (u64, u64) {
    block_on(async {
        let s = Store::connect(db).await.unwrap();
        let c = s.counts().await.unwrap();
        s.close().await;
        c
    })
}

/// `slowfast serve` running as a child process; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub log: PathBuf,
}

impl Server {
    /// Starts a server on `bundle` and `db`, listening on a free loopback port.
    pub fn start(bundle: &Path, db: &str, log_dir: &Path) -> Server {
        Server::start_with(bundle, db, log_dir, &[])
    }

    /// [`Server::start`] with further `slowfast serve` flags.
    pub fn start_with(bundle: &Path, db: &str, log_dir: &Path, flags: &[&str]) -> Server {
        let log = log_dir.join(format!("serve-{}.log", uuid::Uuid::new_v4().simple()));
        let mut child = Command::new(env!("CARGO_BIN_EXE_slowfast"))
            .args(["serve", "--bundle"])
            .arg(bundle)
            .args(["--db", db, "--listen", "127.0.0.1:0", "--secret", SECRET])
            .args(flags)
            .env("RUST_LOG", "info")
            .env_remove("SLOWFAST_SECRET")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| {
                panic!(
                    "server did not start: {line:?}\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        Server {
            base: format!("http://{addr}"),
            child,
            log,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::new()
}

/// A valid upload body for the test bundle.
pub fn upload_body(key: &str, clicks: &[&str], exposures: &[&str]) -> serde_json::Value {
    let events = |ids: &[&str]| -> Vec<serde_json::Value> {
        ids.iter()
            .enumerate()
            .map(|(i, id)| serde_json::json!({"item": id, "ts": 1_700_000_000_000i64 + i as i64}))
            .collect()
    };
    serde_json::json!({
        "idempotency_key": key,
        "model_version": "v1",
        "neg_memory": vec![0.25f32; DIM],
        "clicks": events(clicks),
        "exposures": events(exposures),
    })
}
