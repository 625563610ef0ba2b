//! Shared by the core's integration tests: the fixture bundle and a small in-test sync server
//! that speaks `slowfast_core::wire` (upload with idempotency keys, feed, conditional model
//! GETs), with knobs to fail uploads.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use slowfast_core::manifest::{Manifest, DEVICE_FILES, MANIFEST_JSON};
use slowfast_core::store::BundleFiles;
use slowfast_core::wire::{ErrorBody, FeedItem, FeedResponse, UploadRequest, UploadResponse};

/// The fixture bundle (random weights, d = 32, windows 50/50).
pub fn bundle_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/bundle")
}

pub fn fixture_manifest() -> Manifest {
    let bytes = std::fs::read(bundle_dir().join(MANIFEST_JSON)).unwrap();
    Manifest::from_json(&bytes).unwrap()
}

/// A copy of the fixture bundle in `dir` whose manifest says `version` (same weights).
pub fn bundle_as_version(dir: &Path, version: &str) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    let mut m = fixture_manifest();
    m.model_version = version.to_string();
    std::fs::write(
        dir.join(MANIFEST_JSON),
        serde_json::to_vec_pretty(&m).unwrap(),
    )
    .unwrap();
    for f in DEVICE_FILES {
        std::fs::copy(bundle_dir().join(f), dir.join(f)).unwrap();
    }
    dir.to_path_buf()
}

/// A deterministic pseudo-random vector in [-1, 1).
pub fn vector(seed: u64, d: usize) -> Vec<f32> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..d)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// A feed of `items` for model `version`, vectors derived from the item ids.
pub fn feed(version: &str, items: &[&str], d: usize) -> FeedResponse {
    FeedResponse {
        model_version: version.to_string(),
        items: items
            .iter()
            .enumerate()
            .map(|(i, it)| {
                let h = it
                    .bytes()
                    .fold(7u64, |a, b| a.wrapping_mul(31).wrapping_add(b as u64));
                FeedItem {
                    item: it.to_string(),
                    embedding: vector(h, d),
                    r_t: vector(h ^ 0xa, d),
                    r_n: vector(h ^ 0xb, d),
                    slow_score: -(i as f32),
                }
            })
            .collect(),
    }
}

/// What the test server holds.
#[derive(Default)]
pub struct ServerState {
    /// Uploads stored, one per idempotency key.
    pub stored: Vec<UploadRequest>,
    answers: HashMap<String, UploadResponse>,
    /// Every upload request received, in order, retries included.
    pub received: Vec<UploadRequest>,
    /// Answer this many upload requests with 500 without storing.
    pub fail_uploads: usize,
    /// Store this many uploads but answer 500 (the answer is "lost").
    pub lose_answers: usize,
    /// Answer this many upload requests with 429 and `Retry-After: secs`, without storing.
    pub rate_limit: (usize, u64),
    /// Answer this many upload requests with 409 `idempotency_conflict`, without storing.
    pub conflicts: usize,
    /// When each upload request arrived, in order.
    pub received_at: Vec<std::time::Instant>,
    /// Hold every upload request unanswered while set (it is received, then waits).
    pub hold_uploads: bool,
    /// Answer feed requests with 403.
    pub forbid_feed: bool,
    pub feed: Option<FeedResponse>,
    /// `manifest.json` bytes and the device files, served under an ETag of the version.
    pub bundle: Option<BundleFiles>,
    pub token: String,
}

pub type Shared = Arc<Mutex<ServerState>>;

/// A running test server; stops when dropped.
pub struct TestServer {
    pub url: String,
    pub state: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Loads a bundle directory into what the server serves.
pub fn serve_bundle(dir: &Path) -> BundleFiles {
    let manifest = std::fs::read(dir.join(MANIFEST_JSON)).unwrap();
    let files = DEVICE_FILES
        .iter()
        .map(|f| (f.to_string(), std::fs::read(dir.join(f)).unwrap()))
        .collect();
    (manifest, files)
}

pub fn start(token: &str) -> TestServer {
    start_on("127.0.0.1:0".parse().unwrap(), token)
}

pub fn start_on(addr: SocketAddr, token: &str) -> TestServer {
    let state: Shared = Arc::new(Mutex::new(ServerState {
        token: token.to_string(),
        ..Default::default()
    }));
    let app = Router::new()
        .route("/v1/upload", post(upload))
        .route("/v1/feed", get(feed_route))
        .route("/v1/model", get(manifest_route))
        .route("/v1/model/{file}", get(file_route))
        .with_state(state.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let (addr_tx, addr_rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            addr_tx.send(listener.local_addr().unwrap()).unwrap();
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
    });
    let addr = addr_rx.recv().unwrap();
    TestServer {
        url: format!("http://{addr}"),
        state,
        shutdown: Some(tx),
        thread: Some(thread),
    }
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(ErrorBody {
            error: code.into(),
            field: None,
            message: message.into(),
        }),
    )
        .into_response()
}

fn authorized(state: &ServerState, headers: &HeaderMap) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        == Some(format!("Bearer {}", state.token).as_str())
}

async fn upload(State(s): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let held = {
        let mut st = s.lock().unwrap();
        if st.hold_uploads {
            if let Ok(req) = serde_json::from_slice::<UploadRequest>(&body) {
                st.received.push(req);
            }
        }
        st.hold_uploads
    };
    if held {
        while s.lock().unwrap().hold_uploads {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "held",
            "held, then released",
        );
    }
    let mut st = s.lock().unwrap();
    if !authorized(&st, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "bad token");
    }
    let req: UploadRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return error(StatusCode::BAD_REQUEST, "invalid_json", &e.to_string()),
    };
    st.received.push(req.clone());
    st.received_at.push(std::time::Instant::now());
    if st.rate_limit.0 > 0 {
        st.rate_limit.0 -= 1;
        let mut r = error(StatusCode::TOO_MANY_REQUESTS, "rate_limited", "slow down");
        r.headers_mut()
            .insert(header::RETRY_AFTER, st.rate_limit.1.into());
        return r;
    }
    if st.conflicts > 0 {
        st.conflicts -= 1;
        return error(
            StatusCode::CONFLICT,
            "idempotency_conflict",
            "key stored with other content",
        );
    }
    if st.fail_uploads > 0 {
        st.fail_uploads -= 1;
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "planned failure",
        );
    }
    if let Some(first) = st.answers.get(&req.idempotency_key) {
        let mut again = first.clone();
        again.duplicate = true;
        return Json(again).into_response();
    }
    let answer = UploadResponse {
        accepted_clicks: req.clicks.len() as u32,
        accepted_exposures: req.exposures.len() as u32,
        duplicate: false,
    };
    st.answers
        .insert(req.idempotency_key.clone(), answer.clone());
    st.stored.push(req);
    if st.lose_answers > 0 {
        st.lose_answers -= 1;
        return error(StatusCode::BAD_GATEWAY, "lost", "answer lost on the way");
    }
    Json(answer).into_response()
}

#[derive(serde::Deserialize)]
struct K {
    k: usize,
}

async fn feed_route(State(s): State<Shared>, headers: HeaderMap, Query(q): Query<K>) -> Response {
    let st = s.lock().unwrap();
    if !authorized(&st, &headers) {
        return error(StatusCode::UNAUTHORIZED, "unauthorized", "bad token");
    }
    if st.forbid_feed {
        return error(StatusCode::FORBIDDEN, "forbidden", "not this user's feed");
    }
    match &st.feed {
        Some(f) => {
            let mut f = f.clone();
            f.items.truncate(q.k);
            Json(f).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no feed"),
    }
}

fn conditional(headers: &HeaderMap, etag: String, bytes: Vec<u8>) -> Response {
    let inm = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok());
    if inm == Some(etag.as_str()) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (StatusCode::OK, [(header::ETAG, etag)], bytes).into_response()
}

async fn manifest_route(State(s): State<Shared>, headers: HeaderMap) -> Response {
    let st = s.lock().unwrap();
    match &st.bundle {
        Some((m, _)) => {
            let etag = format!("\"{}\"", slowfast_core::manifest::sha256_hex(m));
            conditional(&headers, etag, m.clone())
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no model"),
    }
}

async fn file_route(
    State(s): State<Shared>,
    headers: HeaderMap,
    UrlPath(file): UrlPath<String>,
) -> Response {
    let st = s.lock().unwrap();
    match st.bundle.as_ref().and_then(|(_, f)| f.get(&file)) {
        Some(bytes) => {
            let etag = format!("\"{}\"", slowfast_core::manifest::sha256_hex(bytes));
            conditional(&headers, etag, bytes.clone())
        }
        None => error(StatusCode::NOT_FOUND, "not_found", "no such file"),
    }
}
