//! The HTTP side of the sync protocol ([`crate::wire`]): one reqwest client (rustls), one
//! method per call, every failure typed, every call cancellable ([`Cancel`]). Retries and
//! thresholds live in the engine.
//!
//! The client owns a tokio runtime with one worker thread, which drives reqwest's connections;
//! each call blocks its own caller's thread, racing the request against the caller's
//! [`Cancel`], so a cancelled call returns at once and two calls never wait for each other.

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use reqwest::{Client, RequestBuilder, Response, StatusCode, Url};
use tokio::runtime::Runtime;
use tokio::sync::Notify;

use crate::error::{Result, SlowFastError};
use crate::wire::{ErrorBody, FeedResponse, UploadRequest, UploadResponse, API_PREFIX};

/// What a conditional GET returned.
#[derive(Debug, PartialEq, Eq)]
pub enum Conditional {
    /// `304 Not Modified`.
    NotModified,
    /// `200` with the body and its `ETag`, if the server sent one.
    Fetched {
        bytes: Vec<u8>,
        etag: Option<String>,
    },
}

/// A cancellation signal for network calls: [`Cancel::cancel`] from any thread makes the calls
/// that were given this signal return [`SlowFastError::Cancelled`] at once, in flight or not
/// yet started. Clones share the signal; a signal stays cancelled.
#[derive(Clone, Debug, Default)]
pub struct Cancel(Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    cancelled: AtomicBool,
    notify: Notify,
}

impl Cancel {
    /// A signal not cancelled yet.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Cancels every call given this signal. Idempotent.
    pub fn cancel(&self) {
        self.0.cancelled.store(true, Ordering::SeqCst);
        self.0.notify.notify_waiters();
    }

    pub fn is_cancelled(&self) -> bool {
        self.0.cancelled.load(Ordering::SeqCst)
    }

    /// Resolves once cancelled.
    async fn cancelled(&self) {
        loop {
            let notified = self.0.notify.notified();
            tokio::pin!(notified);
            // Registered before the flag is read, so a `cancel` in between is not missed.
            notified.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }
}

/// A client of one sync server for one user (the bearer token names the user).
pub struct SyncClient {
    base: Url,
    token: RwLock<String>,
    timeout: Duration,
    /// Built on the first request: an engine that never syncs (or not yet) starts no thread.
    http: OnceLock<(Runtime, Client)>,
}

impl SyncClient {
    /// A client of the server at `base_url` (`http` or `https`, the `/v1` prefix is added).
    /// A URL that does not parse is a [`SlowFastError::Config`].
    pub fn new(base_url: &str, token: &str, timeout_ms: u64) -> Result<SyncClient> {
        let base = Url::parse(base_url.trim_end_matches('/'))
            .map_err(|e| SlowFastError::Config(format!("server URL {base_url:?}: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(SlowFastError::Config(format!(
                "server URL {base_url:?}: expected http:// or https://"
            )));
        }
        Ok(SyncClient {
            base,
            token: RwLock::new(token.to_string()),
            timeout: Duration::from_millis(timeout_ms.max(1)),
            http: OnceLock::new(),
        })
    }

    /// Replaces the bearer token; calls started afterwards send the new one.
    pub fn set_token(&self, token: &str) {
        *self.token.write().unwrap_or_else(|p| p.into_inner()) = token.to_string();
    }

    fn http(&self) -> Result<&(Runtime, Client)> {
        if let Some(h) = self.http.get() {
            return Ok(h);
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("slowfast-http")
            .enable_all()
            .build()?;
        let client = {
            let _in_runtime = runtime.enter();
            Client::builder()
                .timeout(self.timeout)
                .connect_timeout(self.timeout)
                .build()
                .map_err(|e| SlowFastError::Network(format!("building the HTTP client: {e}")))?
        };
        Ok(self.http.get_or_init(|| (runtime, client)))
    }

    /// Runs `call` to completion on this thread unless `cancel` fires first.
    fn run<T, F: Future<Output = Result<T>>>(
        &self,
        cancel: &Cancel,
        call: impl FnOnce(&Client) -> F,
    ) -> Result<T> {
        if cancel.is_cancelled() {
            return Err(SlowFastError::Cancelled);
        }
        let (runtime, client) = self.http()?;
        let call = call(client);
        runtime.block_on(async {
            tokio::select! {
                biased;
                () = cancel.cancelled() => Err(SlowFastError::Cancelled),
                r = call => r,
            }
        })
    }

    /// Waits `ms` milliseconds unless `cancel` fires first.
    pub fn pause(&self, ms: u64, cancel: &Cancel) -> Result<()> {
        self.run(cancel, |_| async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            Ok(())
        })
    }

    fn request(&self, client: &Client, method: reqwest::Method, path: &str) -> RequestBuilder {
        let token = self.token.read().unwrap_or_else(|p| p.into_inner());
        let mut url = self.base.clone();
        let joined = format!("{}{API_PREFIX}{path}", url.path().trim_end_matches('/'));
        url.set_path(&joined);
        client
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {}", *token))
    }

    /// `POST /v1/upload`, one attempt.
    pub fn upload(&self, request: &UploadRequest, cancel: &Cancel) -> Result<UploadResponse> {
        self.run(cancel, |c| {
            let req = self
                .request(c, reqwest::Method::POST, "/upload")
                .json(request);
            async move { json(check(req.send().await.map_err(network)?).await?).await }
        })
    }

    /// `GET /v1/feed?k=K`, one attempt.
    pub fn feed(&self, k: usize, cancel: &Cancel) -> Result<FeedResponse> {
        self.run(cancel, |c| {
            let req = self
                .request(c, reqwest::Method::GET, "/feed")
                .query(&[("k", k)]);
            async move { json(check(req.send().await.map_err(network)?).await?).await }
        })
    }

    /// `GET /v1/model` (`file = None`, the manifest) or `GET /v1/model/{file}`, conditional on
    /// `etag` when given.
    pub fn model_file(
        &self,
        file: Option<&str>,
        etag: Option<&str>,
        cancel: &Cancel,
    ) -> Result<Conditional> {
        let path = match file {
            Some(f) => format!("/model/{f}"),
            None => "/model".to_string(),
        };
        self.run(cancel, |c| {
            let mut req = self.request(c, reqwest::Method::GET, &path);
            if let Some(etag) = etag {
                req = req.header(IF_NONE_MATCH, etag);
            }
            async move {
                let resp = req.send().await.map_err(network)?;
                if resp.status() == StatusCode::NOT_MODIFIED {
                    return Ok(Conditional::NotModified);
                }
                let resp = check(resp).await?;
                let etag = resp
                    .headers()
                    .get(ETAG)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let bytes = resp.bytes().await.map_err(network)?.to_vec();
                Ok(Conditional::Fetched { bytes, etag })
            }
        })
    }
}

impl Drop for SyncClient {
    /// Stops the runtime without waiting for its worker (dropping a runtime that waits is
    /// refused inside an async context, where an app may drop its engine).
    fn drop(&mut self) {
        if let Some((runtime, _)) = self.http.take() {
            runtime.shutdown_background();
        }
    }
}

/// A transport failure with its whole cause chain (reqwest's own text names only the URL:
/// the refused connection, the timeout or the reset is in its sources).
fn network(e: reqwest::Error) -> SlowFastError {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    SlowFastError::Network(text)
}

/// Milliseconds a `Retry-After` value asks to wait: delay-seconds or an HTTP date (RFC 9110
/// §10.2.3); 0 for a date in the past, `None` when absent or unreadable.
pub fn retry_after_ms(value: Option<&str>, now: std::time::SystemTime) -> Option<u64> {
    let value = value?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(seconds.saturating_mul(1000));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(now)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
    )
}

/// Turns an error status into a typed error with the server's [`ErrorBody`]:
/// [`SlowFastError::Unauthorized`] for 401, [`SlowFastError::Forbidden`] for 403,
/// [`SlowFastError::RateLimited`] for 429 (with its `Retry-After`),
/// [`SlowFastError::Conflict`] for 409 `idempotency_conflict`, else
/// [`SlowFastError::Server`].
async fn check(resp: Response) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let retry_after = retry_after_ms(
        resp.headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok()),
        std::time::SystemTime::now(),
    );
    let text = resp.text().await.unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error, body.message),
        Err(_) => (
            status.canonical_reason().unwrap_or("error").to_string(),
            text.chars().take(200).collect(),
        ),
    };
    Err(match status {
        StatusCode::UNAUTHORIZED => SlowFastError::Unauthorized { message },
        StatusCode::FORBIDDEN => SlowFastError::Forbidden { message },
        StatusCode::TOO_MANY_REQUESTS => SlowFastError::RateLimited {
            retry_after_ms: retry_after.unwrap_or(0),
            message,
        },
        StatusCode::CONFLICT if code == "idempotency_conflict" => {
            SlowFastError::Conflict { message }
        }
        _ => SlowFastError::Server {
            status: status.as_u16(),
            code,
            message,
        },
    })
}

async fn json<T: serde::de::DeserializeOwned>(resp: Response) -> Result<T> {
    let bytes = resp.bytes().await.map_err(network)?;
    serde_json::from_slice(&bytes).map_err(|e| SlowFastError::Server {
        status: 200,
        code: "bad_response".into(),
        message: format!("response does not parse: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(retry_after_ms(Some("120"), now), Some(120_000));
        assert_eq!(retry_after_ms(Some(" 0 "), now), Some(0));
        // 2015-10-21 07:28:00 is `now`; 07:28:30 is 30 s later.
        assert_eq!(
            retry_after_ms(Some("Wed, 21 Oct 2015 07:28:30 GMT"), now),
            Some(30_000)
        );
        assert_eq!(
            retry_after_ms(Some("Wed, 21 Oct 2015 07:27:00 GMT"), now),
            Some(0)
        );
        assert_eq!(retry_after_ms(Some("soon"), now), None);
        assert_eq!(retry_after_ms(Some("-5"), now), None);
        assert_eq!(retry_after_ms(None, now), None);
    }
}
