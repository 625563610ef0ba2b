//! The HTTP side of the sync protocol ([`crate::wire`]): one blocking reqwest client (rustls),
//! one method per call, every failure typed. Retries and thresholds live in the engine.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH, RETRY_AFTER};
use reqwest::StatusCode;

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

/// A client of one sync server for one user (the bearer token names the user).
pub struct SyncClient {
    base: String,
    token: String,
    timeout: Duration,
    /// Built on the first request: building starts reqwest's runtime thread, which an engine
    /// that never syncs (or not yet) does not need.
    http: OnceLock<Client>,
}

impl SyncClient {
    pub fn new(base_url: &str, token: &str, timeout_ms: u64) -> SyncClient {
        SyncClient {
            base: base_url.trim_end_matches('/').to_string(),
            token: token.to_string(),
            timeout: Duration::from_millis(timeout_ms.max(1)),
            http: OnceLock::new(),
        }
    }

    fn http(&self) -> Result<&Client> {
        if let Some(c) = self.http.get() {
            return Ok(c);
        }
        let client = Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.timeout)
            .build()
            .map_err(|e| SlowFastError::Network(format!("building the HTTP client: {e}")))?;
        Ok(self.http.get_or_init(|| client))
    }

    fn url(&self, path: &str) -> String {
        format!("{}{API_PREFIX}{path}", self.base)
    }

    /// `POST /v1/upload`, one attempt.
    pub fn upload(&self, request: &UploadRequest) -> Result<UploadResponse> {
        let resp = self
            .http()?
            .post(self.url("/upload"))
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .json(request)
            .send()
            .map_err(network)?;
        json(check(resp)?)
    }

    /// `GET /v1/feed?k=K`, one attempt.
    pub fn feed(&self, k: usize) -> Result<FeedResponse> {
        let resp = self
            .http()?
            .get(self.url(&format!("/feed?k={k}")))
            .header(AUTHORIZATION, format!("Bearer {}", self.token))
            .send()
            .map_err(network)?;
        json(check(resp)?)
    }

    /// `GET /v1/model` (`file = None`, the manifest) or `GET /v1/model/{file}`, conditional on
    /// `etag` when given.
    pub fn model_file(&self, file: Option<&str>, etag: Option<&str>) -> Result<Conditional> {
        let path = match file {
            Some(f) => format!("/model/{f}"),
            None => "/model".to_string(),
        };
        let mut req = self
            .http()?
            .get(self.url(&path))
            .header(AUTHORIZATION, format!("Bearer {}", self.token));
        if let Some(etag) = etag {
            req = req.header(IF_NONE_MATCH, etag);
        }
        let resp = req.send().map_err(network)?;
        if resp.status() == StatusCode::NOT_MODIFIED {
            return Ok(Conditional::NotModified);
        }
        let resp = check(resp)?;
        let etag = resp
            .headers()
            .get(ETAG)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let bytes = resp.bytes().map_err(network)?.to_vec();
        Ok(Conditional::Fetched { bytes, etag })
    }
}

fn network(e: reqwest::Error) -> SlowFastError {
    SlowFastError::Network(e.to_string())
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
/// [`SlowFastError::RateLimited`] for 429 (with its `Retry-After`),
/// [`SlowFastError::Conflict`] for 409 `idempotency_conflict`, else
/// [`SlowFastError::Server`].
fn check(resp: Response) -> Result<Response> {
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
    let text = resp.text().unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error, body.message),
        Err(_) => (
            status.canonical_reason().unwrap_or("error").to_string(),
            text.chars().take(200).collect(),
        ),
    };
    Err(match status {
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

fn json<T: serde::de::DeserializeOwned>(resp: Response) -> Result<T> {
    let bytes = resp.bytes().map_err(network)?;
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
