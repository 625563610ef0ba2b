//! The server benchmark (docs/architecture.md §10): `slowfast serve` started as a separate process on a
//! fresh SQLite file, loaded over loopback by `concurrency` clients, each its own user.
//! First uploads (each with a fresh idempotency key, `r̂2` and a few clicks), then feeds of `k`
//! items; throughput and p50/p99 latency of each. The feed phase needs a bundle with
//! `slow.onnx`; without one its figures are `null`.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;
use slowfast_core::manifest::{ItemTable, Manifest, ITEMS_JSON, MANIFEST_JSON, SLOW_ONNX};
use slowfast_core::wire::{UploadRequest, WireEvent};
use slowfast_data::FileError;

use super::auth::{unix_now, Secret};
use crate::error::{Result, ServerError};

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    pub bundle: PathBuf,
    /// Concurrent clients (paper-independent; 16 by default).
    pub concurrency: usize,
    /// Candidate pool per feed.
    pub pool: usize,
    pub k: usize,
    /// Length of each phase.
    pub duration: Duration,
}

/// The figures `slowfast bench server --json` prints.
#[derive(Clone, Debug, Serialize)]
pub struct ServerFigures {
    pub concurrency: usize,
    pub pool: usize,
    pub k: usize,
    pub upload_rps: f64,
    pub upload_p50_ms: f64,
    pub upload_p99_ms: f64,
    pub feed_rps: Option<f64>,
    pub feed_p50_ms: Option<f64>,
    pub feed_p99_ms: Option<f64>,
    /// The floor of one feed: `slow.onnx`'s multiply-adds for `pool` candidates at this
    /// core's measured rate (one core; the ranking is the only arithmetic of a feed).
    pub feed_floor_ms: Option<f64>,
    /// Multiply-adds of ranking one feed's pool with `slow.onnx` (tract's cost model + GRUs).
    pub slow_fma_per_feed: Option<u64>,
    /// Single-core f32 GFLOP/s behind the floor.
    pub core_gflops: Option<f64>,
    /// Median latency of a feed with a single client (no queueing).
    pub feed_single_client_p50_ms: Option<f64>,
}

struct ServerProcess(Child);

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `slowfast serve` (this executable) on a free port; returns it and its base URL.
fn spawn_server(cfg: &BenchConfig, db: &str, secret: &str) -> Result<(ServerProcess, String)> {
    use std::io::BufRead;
    let exe = std::env::current_exe().map_err(|e| FileError::new("current executable", e))?;
    let mut child = Command::new(exe)
        .args(["serve", "--bundle"])
        .arg(&cfg.bundle)
        .args(["--db", db, "--listen", "127.0.0.1:0", "--secret", secret])
        .args(["--pool", &cfg.pool.to_string()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| FileError::new("slowfast serve", e))?;
    let stdout = child
        .stdout
        .take()
        .ok_or_else(|| ServerError::InvalidArgument("server has no stdout".into()))?;
    let child = ServerProcess(child);
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .map_err(|e| FileError::new("slowfast serve", e))?;
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| ServerError::InvalidArgument(format!("server did not start: {line:?}")))?;
    Ok((child, format!("http://{addr}")))
}

/// Latencies of one phase → (requests/s, p50 ms, p99 ms).
fn summarise(mut lat: Vec<Duration>, wall: Duration) -> (f64, f64, f64) {
    lat.sort();
    let q = |p: f64| {
        lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1))
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    (lat.len() as f64 / wall.as_secs_f64(), q(0.50), q(0.99))
}

/// Runs `concurrency` clients calling `call(client, worker, i)` until `duration` passes.
async fn phase<F, Fut>(concurrency: usize, duration: Duration, call: F) -> Result<(f64, f64, f64)>
where
    F: Fn(usize, usize) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|w| {
            let call = call.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut i = 0;
                while start.elapsed() < duration {
                    let t = Instant::now();
                    call(w, i).await?;
                    lat.push(t.elapsed());
                    i += 1;
                }
                Ok::<_, ServerError>(lat)
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(
            t.await
                .map_err(|e| ServerError::InvalidArgument(format!("client task: {e}")))??,
        );
    }
    Ok(summarise(all, start.elapsed()))
}

async fn send(req: reqwest::RequestBuilder) -> Result<()> {
    let r = req
        .send()
        .await
        .map_err(|e| ServerError::InvalidArgument(format!("bench request: {e}")))?;
    let status = r.status();
    let body = r
        .bytes()
        .await
        .map_err(|e| ServerError::InvalidArgument(format!("bench response: {e}")))?;
    if !status.is_success() {
        return Err(ServerError::InvalidArgument(format!(
            "bench request failed with {status}: {}",
            String::from_utf8_lossy(&body)
        )));
    }
    Ok(())
}

/// Measures upload and feed throughput and latency against a fresh server.
pub fn run(cfg: &BenchConfig) -> Result<ServerFigures> {
    let read = |name: &str| {
        let p = cfg.bundle.join(name);
        std::fs::read(&p).map_err(|e| FileError::new(p, e))
    };
    let manifest = Manifest::from_json(&read(MANIFEST_JSON)?)?;
    let items: ItemTable = serde_json::from_slice(&read(ITEMS_JSON)?)
        .map_err(slowfast_data::JsonError::of(ITEMS_JSON))?;
    let has_slow = manifest.files.contains_key(SLOW_ONNX);
    let dir = std::env::temp_dir().join(format!("slowfast-bench-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).map_err(|e| FileError::new(&dir, e))?;
    let db = dir.join("bench.db").display().to_string();
    let secret = uuid::Uuid::new_v4().simple().to_string();
    let result = (|| {
        let (_server, base) = spawn_server(cfg, &db, &secret)?;
        let signer = Secret::new(secret.as_bytes())?;
        let tokens = (0..cfg.concurrency)
            .map(|w| signer.mint(&format!("bench-{w}"), unix_now() + 3600))
            .collect::<Result<Vec<_>>>()?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .map_err(|e| FileError::new("tokio runtime", e))?;
        rt.block_on(async {
            let http = reqwest::Client::new();
            let ids = std::sync::Arc::new(items.ids);
            let (tokens, version, dim) = (
                std::sync::Arc::new(tokens),
                manifest.model_version.clone(),
                manifest.dim,
            );
            let upload = {
                let (http, base, tokens, ids) =
                    (http.clone(), base.clone(), tokens.clone(), ids.clone());
                move |w: usize, i: usize| {
                    let clicks = (0..5)
                        .map(|j| WireEvent {
                            item: ids[(w * 31 + i * 7 + j) % ids.len()].clone(),
                            ts: (i * 5 + j) as i64,
                        })
                        .collect();
                    let body = UploadRequest {
                        user: None,
                        idempotency_key: format!("{w}-{i}"),
                        model_version: version.clone(),
                        neg_memory: vec![0.1; dim],
                        clicks,
                        exposures: vec![],
                    };
                    let req = http
                        .post(format!("{base}/v1/upload"))
                        .bearer_auth(&tokens[w])
                        .json(&body);
                    send(req)
                }
            };
            let (upload_rps, upload_p50_ms, upload_p99_ms) =
                phase(cfg.concurrency, cfg.duration, upload).await?;
            let mut figures = ServerFigures {
                concurrency: cfg.concurrency,
                pool: cfg.pool,
                k: cfg.k,
                upload_rps,
                upload_p50_ms,
                upload_p99_ms,
                feed_rps: None,
                feed_p50_ms: None,
                feed_p99_ms: None,
                feed_floor_ms: None,
                slow_fma_per_feed: None,
                core_gflops: None,
                feed_single_client_p50_ms: None,
            };
            if has_slow {
                let k = cfg.k;
                let feed = {
                    let (http, base, tokens) = (http.clone(), base.clone(), tokens.clone());
                    move |w: usize, _: usize| {
                        send(
                            http.get(format!("{base}/v1/feed?k={k}"))
                                .bearer_auth(&tokens[w]),
                        )
                    }
                };
                let (_, single, _) = phase(1, cfg.duration / 4, feed.clone()).await?;
                let (rps, p50, p99) = phase(cfg.concurrency, cfg.duration, feed).await?;
                figures.feed_rps = Some(rps);
                figures.feed_p50_ms = Some(p50);
                figures.feed_p99_ms = Some(p99);
                figures.feed_single_client_p50_ms = Some(single);
                let fma = slowfast_core::bench::model_fma(
                    &read(SLOW_ONNX)?,
                    &manifest,
                    SLOW_ONNX,
                    cfg.pool,
                )?;
                let gflops = slowfast_core::bench::core_gflops()?;
                figures.slow_fma_per_feed = Some(fma);
                figures.core_gflops = Some(gflops);
                figures.feed_floor_ms = Some(2.0 * fma as f64 / (gflops * 1e9) * 1e3);
            }
            Ok(figures)
        })
    })();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
