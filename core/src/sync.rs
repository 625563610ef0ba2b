//! The HTTP side of the sync protocol ([`crate::wire`]): one blocking reqwest client (rustls),
//! one method per call, every failure typed. Retries and thresholds live in the engine.

use std::sync::OnceLock;
use std::time::Duration;

use reqwest::blocking::{Client, Response};
use reqwest::header::{AUTHORIZATION, ETAG, IF_NONE_MATCH};
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

/// Turns an error status into [`SlowFastError::Server`], with the server's [`ErrorBody`].
fn check(resp: Response) -> Result<Response> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let text = resp.text().unwrap_or_default();
    let (code, message) = match serde_json::from_str::<ErrorBody>(&text) {
        Ok(body) => (body.error, body.message),
        Err(_) => (
            status.canonical_reason().unwrap_or("error").to_string(),
            text.chars().take(200).collect(),
        ),
    };
    Err(SlowFastError::Server {
        status: status.as_u16(),
        code,
        message,
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
