//! slowfast-server: `slowfast serve`, the sync server between devices and the slow component (docs/architecture.md §7,
//! paper §4.3–4.4). axum on tokio, sqlx for storage, ONNX Runtime (ort) for the slow model.
//!
//! # Endpoints (JSON types in `slowfast_core::wire`)
//!
//! | call | what |
//! |---|---|
//! | `POST /v1/upload` | F2S: the device's `r̂2` (`neg_memory`) and its clicks/exposures since the last upload, stored once per idempotency key; a repeat with the same content returns the first answer with `duplicate: true`, other content under a stored key gets 409 `idempotency_conflict` and stores nothing; the token is checked before the body is read |
//! | `GET /v1/feed?k=K` | retrieve a candidate pool ([`slowfast_feed::retrieval`]), rank it with `slow.onnx` in one batched ort call using the stored click history `H^S` and the latest `r̂2` ([`ranker`]), return the top K with `e_i`, `r_t` (eq. 1), `r_n` (eq. 5), the logit (eq. 6) and the model version |
//! | `GET /v1/model` | the bundle's `manifest.json`; `ETag`, `If-None-Match` → 304 |
//! | `GET /v1/model/{file}` | a device file (`fast.onnx`, `neg_step.onnx`); `ETag`, `If-None-Match` → 304 |
//! | `GET /v1/openapi.json` | the OpenAPI document ([`openapi`]) |
//! | `GET /healthz` | liveness, model version, whether the feed is available |
//! | `GET /metrics` | Prometheus text format ([`metrics`]): requests and latency by route and status, upload queue depth and group sizes, feed pool sizes, model version |
//!
//! # Auth ([`auth`])
//! `Authorization: Bearer <token>` on every `/v1` call but the OpenAPI document. A token is
//! `base64url(user|expiry).base64url(HMAC-SHA256(secret, user|expiry))`; it names the one user
//! whose data the request reads and writes (no body or query names a user). Missing,
//! malformed, forged or expired tokens get 401 with a message saying which. With
//! `--rate-limit` a user past its rate gets 429 with `Retry-After` ([`ratelimit`]).
//!
//! # Limits ([`limits`])
//! Body ≤ 1 MiB (413), ids ≤ 128 bytes, ≤ 2000 events of each kind, `neg_memory` exactly `d`
//! finite floats, item ids known to the bundle, `1 ≤ k ≤ 500`. A bad request gets a 4xx
//! [`ErrorBody`](slowfast_core::wire::ErrorBody) naming the field, and nothing is stored.
//!
//! # Storage ([`store`])
//! SQLite by default (`--db` a file path, created on first start); PostgreSQL when the URL
//! starts with `postgres://`. Same queries and migrations; idempotency is a primary key checked
//! inside the upload's transaction, so several instances on one PostgreSQL behave as one.
//! One writer task per server commits the uploads queued at a time together ([`store::writer`]: group
//! commit, a savepoint per upload when a group fails); an upload is answered after its commit.
//! [`store::Store::event_log`] hands what devices uploaded to the trainer (`--from-db`).
//!
//! # Model updates
//! [`api::AppState::reload`] verifies a new bundle and swaps it in while serving: requests in
//! flight finish on the old one, the next `GET /v1/model` carries the new ETag.

pub mod api;
pub mod auth;
pub mod bench;
pub mod bundle;
pub mod error;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod ranker;
pub mod ratelimit;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use axum::Router;
use slowfast_core::wire::MAX_BODY_BYTES;
use slowfast_data::FileError;

use api::{AppState, Model};
use auth::Secret;
pub use error::{Result, ServerError};
use store::Store;

/// How to start a server.
#[derive(Clone, Debug)]
pub struct ServeConfig {
    /// The model bundle directory (`manifest.json`, `items.json`, device files, `slow.onnx`).
    pub bundle: PathBuf,
    /// A SQLite file path or `sqlite:`/`postgres://` URL.
    pub db: String,
    pub listen: SocketAddr,
    pub secret: Secret,
    /// The feed's candidate pool and seen filter.
    pub retrieval: slowfast_feed::retrieval::Retrieval,
    /// Timeouts and the cap on open connections.
    pub connections: Connections,
    /// The per-token rate limit; none when `None`.
    pub rate_limit: Option<ratelimit::RateLimit>,
}

/// What a client may hold of the server: how long it may take to send a request's headers
/// (and how long a kept-alive connection may sit idle before its next request), how long a
/// request body may pause between two reads, and how many connections are open at once. A
/// client past a timeout has its connection closed; past the cap, new connections wait in the
/// listen backlog until one closes. Keep `max` below the process's open-file limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connections {
    pub header_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    pub max: usize,
}

impl Default for Connections {
    /// 10 s for headers or idleness, 30 s of silence inside a body, 1,024 connections: a
    /// phone's sync sends its request at once; a stalled or idle one frees its place in
    /// seconds.
    fn default() -> Self {
        Connections {
            header_timeout: std::time::Duration::from_secs(10),
            body_timeout: std::time::Duration::from_secs(30),
            max: 1024,
        }
    }
}

/// Loads the bundle (and `slow.onnx` with ort when the bundle has one) and opens the store.
pub async fn state(cfg: &ServeConfig) -> Result<Arc<AppState>> {
    let limiter = cfg.rate_limit.map(ratelimit::Limiter::new).transpose()?;
    let model = Model::load(&cfg.bundle)?;
    let store = Store::connect(&cfg.db).await?;
    Ok(Arc::new(AppState::new(
        model,
        store,
        cfg.secret.clone(),
        cfg.retrieval,
        limiter,
    )))
}

/// The routes of the sync API.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/upload", post(api::upload))
        .route("/v1/feed", get(api::feed))
        .route("/v1/model", get(api::model))
        .route("/v1/model/{file}", get(api::model_file))
        .route("/v1/openapi.json", get(api::openapi_document))
        .route("/healthz", get(api::healthz))
        .route("/metrics", get(api::scrape))
        .fallback(api::no_route)
        .method_not_allowed_fallback(api::wrong_method)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            api::track,
        ))
        .layer(tower_http::trace::TraceLayer::new_for_http())
        .with_state(state)
}

/// Resolves on Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutdown signal: finishing requests in flight");
}

/// Runs the server until Ctrl-C or SIGTERM, then drains requests in flight and closes the
/// store. Prints `listening on ADDR` on stdout once it accepts connections.
pub fn run(cfg: ServeConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| FileError::new("tokio runtime", e))?;
    rt.block_on(async move {
        let state = state(&cfg).await?;
        let (listener, addr) = bind(cfg.listen).await?;
        tracing::info!(%addr, model_version = %state.model().bundle.manifest.model_version, "serving");
        println!("listening on {addr}");
        serve_until(listener, state, cfg.connections, shutdown_signal()).await
    })
}

async fn bind(listen: SocketAddr) -> Result<(tokio::net::TcpListener, SocketAddr)> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|e| FileError::new(listen.to_string(), e))?;
    let addr = listener
        .local_addr()
        .map_err(|e| FileError::new(listen.to_string(), e))?;
    Ok((listener, addr))
}

/// Serves until `shutdown` resolves, then stops accepting, drains the requests in flight
/// (every accepted upload is answered) and closes the store. Each connection is served by
/// hyper with `limits`' header and idle timeout, each request body with its read timeout, and
/// at most `limits.max` connections are open at once.
async fn serve_until(
    listener: tokio::net::TcpListener,
    state: Arc<AppState>,
    limits: Connections,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto;
    use hyper_util::service::TowerToHyperService;

    let store = state.store.clone();
    let app = router(state.clone()).layer(tower_http::timeout::RequestBodyTimeoutLayer::new(
        limits.body_timeout,
    ));
    // HTTP/1.1 only (devices and load balancers speak it): guessing the version would first
    // wait, without any timeout, for a silent client's first bytes. hyper's header timeout
    // runs from the moment a connection waits for a request, fresh or kept alive: it is the
    // idle timeout too.
    let mut http = auto::Builder::new(TokioExecutor::new()).http1_only();
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    let places = Arc::new(tokio::sync::Semaphore::new(limits.max.max(1)));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        let place = tokio::select! {
            place = places.clone().acquire_owned() => place,
            () = &mut shutdown => break,
        };
        let Ok(place) = place else { break };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors or a connection reset before accept: the
                    // listener itself is fine; try again shortly.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let conn = http
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app.clone()))
            .into_owned();
        let conn = graceful.watch(conn);
        let open = state.metrics.open_connections.clone();
        open.inc();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection closed with an error");
            }
            open.dec();
            drop(place);
        });
    }
    drop(listener);
    graceful.shutdown().await;
    store.close().await;
    tracing::info!("shut down cleanly");
    Ok(())
}

/// A server running in this process on its own tokio runtime (the demo and tests): its
/// address, its state (store, [`AppState::reload`]) and a runtime handle to await the store.
pub struct Running {
    pub addr: SocketAddr,
    pub state: Arc<AppState>,
    runtime: tokio::runtime::Runtime,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<Result<()>>>,
}

impl Running {
    /// Starts a server for `cfg` on a runtime with `workers` threads; `cfg.listen` may use
    /// port 0 (see [`Running::addr`]).
    pub fn start(cfg: &ServeConfig, workers: usize) -> Result<Running> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers.max(1))
            .enable_all()
            .build()
            .map_err(|e| FileError::new("tokio runtime", e))?;
        let (state, listener, addr) = runtime.block_on(async {
            let state = state(cfg).await?;
            let (listener, addr) = bind(cfg.listen).await?;
            Ok::<_, ServerError>((state, listener, addr))
        })?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let served = runtime.spawn(serve_until(
            listener,
            state.clone(),
            cfg.connections,
            async {
                let _ = stopped.await;
            },
        ));
        Ok(Running {
            addr,
            state,
            runtime,
            stop: Some(stop),
            served: Some(served),
        })
    }

    /// `http://ADDR`, the base URL devices sync with.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Runs a future (a store query) on the server's runtime from a plain thread.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Stops accepting, drains requests in flight and closes the store.
    pub fn stop(mut self) -> Result<()> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<()> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.served.take() {
            Some(served) => self.runtime.block_on(served)?,
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            tracing::warn!("stopping the in-process server: {e}");
        }
    }
}
