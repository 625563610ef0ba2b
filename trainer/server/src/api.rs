//! The HTTP handlers of `/v1` and their JSON errors ([`ErrorBody`]).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{FromRequest, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use slowfast_core::wire::{ErrorBody, FeedItem, FeedResponse, UploadRequest};

use super::auth::{unix_now, Secret};
use super::bundle::{Bundle, Served};
use super::limits::{check_k, check_upload, FieldError};
use super::metrics::Metrics;
use super::openapi;
use super::ranker::{SlowInput, SlowRanker};
use super::ratelimit::{retry_after_seconds, Limiter};
use super::store::Store;
use crate::error::ServerError;
use slowfast_feed::retrieval::{self, Retrieval};

/// What a bundle gives the server: the files it hands out, the slow model and the
/// popularity order retrieval falls back on. Swapped as a whole by [`AppState::reload`].
pub struct Model {
    pub bundle: Bundle,
    /// `None` when the bundle has no `slow.onnx`: the feed answers 503.
    pub ranker: Option<Arc<SlowRanker>>,
    /// Item indices by popularity, most popular first.
    pub popular: Vec<u32>,
    /// The OpenAPI document with this bundle's constraints, as served.
    pub openapi: Bytes,
}

impl Model {
    /// Opens and verifies the bundle in `dir` and loads `slow.onnx` with ort when it has one
    /// (one single-threaded session per core).
    pub fn load(dir: &std::path::Path) -> crate::Result<Model> {
        let bundle = Bundle::open(dir)?;
        let ranker = match &bundle.slow_onnx {
            Some(path) => {
                let sessions = std::thread::available_parallelism().map_or(1, |n| n.get());
                let m = &bundle.manifest;
                Some(Arc::new(SlowRanker::load(
                    path,
                    m.dim,
                    m.windows.slow_history,
                    sessions,
                )?))
            }
            None => {
                tracing::warn!(bundle = %dir.display(), "no slow.onnx in the bundle: /v1/feed answers 503");
                None
            }
        };
        let popular = retrieval::by_popularity(&bundle.items);
        let files: Vec<&str> = bundle.files.keys().map(String::as_str).collect();
        let openapi = serde_json::to_vec(&openapi::document(&openapi::Constraints {
            dim: bundle.manifest.dim,
            items: &bundle.items.ids,
            files: &files,
        }))
        .map_err(slowfast_data::JsonError::of("the OpenAPI document"))?;
        Ok(Model {
            bundle,
            ranker,
            popular,
            openapi: openapi.into(),
        })
    }
}

/// What every handler shares.
pub struct AppState {
    model: RwLock<Arc<Model>>,
    pub store: Store,
    pub secret: Secret,
    /// How feeds retrieve their candidates.
    pub retrieval: Retrieval,
    /// The per-token rate limit, when one is set.
    pub limiter: Option<Limiter>,
    pub metrics: Metrics,
}

impl AppState {
    pub fn new(
        model: Model,
        store: Store,
        secret: Secret,
        retrieval: Retrieval,
        limiter: Option<Limiter>,
    ) -> AppState {
        let metrics = Metrics::new(store.group_sizes());
        AppState {
            model: RwLock::new(Arc::new(model)),
            store,
            secret,
            retrieval: Retrieval {
                pool: retrieval.pool.max(1),
                ..retrieval
            },
            limiter,
            metrics,
        }
    }

    /// The bundle being served; a request keeps the one it started with.
    pub fn model(&self) -> Arc<Model> {
        self.model.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Verifies the bundle in `dir` and swaps it in (the next round of Algorithm 1): later
    /// requests rank with its `slow.onnx` and `GET /v1/model` serves it under its new ETag.
    /// A bundle that fails to load is refused and the current one kept. Returns the new
    /// model version.
    pub fn reload(&self, dir: &std::path::Path) -> crate::Result<String> {
        let model = Model::load(dir)?;
        let version = model.bundle.manifest.model_version.clone();
        *self.model.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(model);
        tracing::info!(model_version = %version, bundle = %dir.display(), "bundle swapped in");
        Ok(version)
    }
}

/// An error response: a status and an [`ErrorBody`].
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorBody,
    /// Sent as `Retry-After` (whole seconds) with a 429.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, field: Option<String>, message: String) -> Self {
        ApiError {
            status,
            body: ErrorBody {
                error: code.into(),
                field,
                message,
            },
            retry_after: None,
        }
    }

    fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            None,
            message.into(),
        )
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", None, message.into())
    }
}

impl From<FieldError> for ApiError {
    fn from(e: FieldError) -> Self {
        let message = format!("{}: {}", e.field, e.message);
        Self::new(
            StatusCode::BAD_REQUEST,
            "invalid_field",
            Some(e.field),
            message,
        )
    }
}

impl From<ServerError> for ApiError {
    fn from(e: ServerError) -> Self {
        match e {
            ServerError::Token(m) => Self::unauthorized(m),
            e @ ServerError::KeyConflict { .. } => Self::new(
                StatusCode::CONFLICT,
                "idempotency_conflict",
                Some("idempotency_key".into()),
                format!("{e}; a retry must resend the same content, new content needs a new key"),
            ),
            other => {
                tracing::error!(error = %other, "request failed");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    None,
                    "internal error; see the server log".into(),
                )
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(wait) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, retry_after_seconds(wait).into());
        }
        r
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The user named by the request's `Authorization: Bearer` token, once the user's rate limit
/// (when one is set) lets the request through.
fn user_of(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let user = token_user(state, headers)?;
    if let Some(limiter) = &state.limiter {
        if let Err(wait) = limiter.check(&user) {
            state.metrics.rate_limited.inc();
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                None,
                format!(
                    "too many requests for this token; retry in {} s",
                    retry_after_seconds(wait)
                ),
            );
            e.retry_after = Some(wait);
            return Err(e);
        }
    }
    Ok(user)
}

fn token_user(state: &AppState, headers: &HeaderMap) -> ApiResult<String> {
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| ApiError::unauthorized("missing `Authorization: Bearer <token>` header"))?;
    let token = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| {
            ApiError::unauthorized("the Authorization header must be `Bearer <token>`")
        })?;
    Ok(state.secret.verify(token.trim(), unix_now())?)
}

/// Refuses (403) a request that names a user other than its token's.
fn check_owner(user: &str, named: Option<&str>) -> ApiResult<()> {
    match named {
        Some(named) if named != user => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            Some("user".into()),
            format!("this token is for user {user:?}; it cannot act for user {named:?}"),
        )),
        _ => Ok(()),
    }
}

/// `POST /v1/upload`. The token is checked before a byte of the body is read: a request
/// without a valid one gets its 401 at once and the server holds none of its body.
pub async fn upload(State(state): State<Arc<AppState>>, request: Request) -> ApiResult<Response> {
    let user = user_of(&state, request.headers())?;
    // Read only now, within the router's `DefaultBodyLimit`.
    let body = Bytes::from_request(request, &()).await.map_err(|r| {
        let status = r.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "body_too_large"
        } else {
            "bad_body"
        };
        ApiError::new(status, code, None, r.body_text())
    })?;
    let de = &mut serde_json::Deserializer::from_slice(&body);
    let req: UploadRequest = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = (path != ".").then_some(path);
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            field,
            format!("cannot read the upload: {e}"),
        )
    })?;
    check_owner(&user, req.user.as_deref())?;
    check_upload(&req, &state.model().bundle.items)?;
    let answer = state
        .store
        .record_upload(&user, &req, unix_now().saturating_mul(1000))
        .await?;
    tracing::debug!(
        user,
        key = req.idempotency_key,
        duplicate = answer.duplicate,
        "upload"
    );
    Ok(Json(answer).into_response())
}

/// `GET /v1/feed?k=K`: retrieve a pool, rank it with the slow model, return the top `k`.
pub async fn feed(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> ApiResult<Json<FeedResponse>> {
    let user = user_of(&state, &headers)?;
    let Query(query) = query.map_err(|r| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_query",
            None,
            r.body_text(),
        )
    })?;
    check_owner(&user, query.get("user").map(String::as_str))?;
    let k = check_k(query.get("k").map(String::as_str))?;
    let model = state.model();
    let Some(ranker) = model.ranker.clone() else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "model_unavailable",
            None,
            "this server's bundle has no slow.onnx, so it cannot rank a feed".into(),
        ));
    };
    let items = &model.bundle.items;
    let m = &model.bundle.manifest;
    let d = m.dim;
    // Ids the bundle does not know (an item dropped from the catalogue) are skipped.
    let known =
        |ids: Vec<String>| -> Vec<u32> { ids.iter().filter_map(|id| items.index(id)).collect() };
    // The three reads are independent: one round trip's wait, not three.
    let store = &state.store;
    let (clicks, stored_memory, exposures) = tokio::try_join!(
        store.recent_clicks(&user, m.windows.slow_history),
        store.neg_memory(&user),
        store.recent_exposures(&user, state.retrieval.seen),
    )?;
    let (history, shown) = (known(clicks), known(exposures));
    // `r̂2` from another model version came from other GRU_n weights (eq. 5): start from zeros.
    let neg_memory = match stored_memory {
        Some((version, v)) if version == m.model_version && v.len() == d => v,
        _ => vec![0.0; d],
    };
    let pool = retrieval::candidates(
        items,
        &model.popular,
        &history,
        &shown,
        state.retrieval.pool,
    );
    state.metrics.feed_pool(pool.len());
    let gather = |ids: &[u32]| -> Vec<f32> {
        ids.iter()
            .flat_map(|&i| items.embedding(i))
            .copied()
            .collect()
    };
    let out = ranker
        .rank(SlowInput {
            history: &gather(&history),
            neg_memory: &neg_memory,
            e_i: &gather(&pool),
        })
        .await?;
    let order = retrieval::feed_order(&out.logit, |j| items.is_fresh(pool[j]), k);
    let row = |v: &[f32], j: usize| v[j * d..(j + 1) * d].to_vec();
    let items = order
        .into_iter()
        .map(|j| FeedItem {
            item: items.ids[pool[j] as usize].clone(),
            embedding: items.embedding(pool[j]).to_vec(),
            r_t: row(&out.r_t, j),
            r_n: row(&out.r_n, j),
            slow_score: out.logit[j],
        })
        .collect();
    Ok(Json(FeedResponse {
        model_version: m.model_version.clone(),
        items,
    }))
}

/// Whether `If-None-Match` names `etag` (or is `*`).
fn not_modified(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == etag || t == "*")
}

fn conditional(headers: &HeaderMap, served: &Served, content_type: &'static str) -> Response {
    let etag = HeaderValue::from_str(&served.etag).unwrap_or(HeaderValue::from_static("\"\""));
    if not_modified(headers, &served.etag) {
        return (StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response();
    }
    (
        [
            (header::ETAG, etag),
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
        ],
        served.bytes.clone(),
    )
        .into_response()
}

/// `GET /v1/model`: the manifest, with its ETag.
pub async fn model(State(state): State<Arc<AppState>>, headers: HeaderMap) -> ApiResult<Response> {
    user_of(&state, &headers)?;
    Ok(conditional(
        &headers,
        &state.model().bundle.manifest_file,
        "application/json",
    ))
}

/// `GET /v1/model/{file}`: one device file of the bundle, with its ETag.
pub async fn model_file(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    file: Result<Path<String>, axum::extract::rejection::PathRejection>,
) -> ApiResult<Response> {
    user_of(&state, &headers)?;
    let Path(file) = file.map_err(|r| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_path",
            Some("file".into()),
            r.body_text(),
        )
    })?;
    let model = state.model();
    let served = model.bundle.files.get(&file).ok_or_else(|| {
        ApiError::not_found(format!(
            "no device file {file:?} in this bundle (it has: {})",
            model
                .bundle
                .files
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })?;
    Ok(conditional(&headers, served, "application/octet-stream"))
}

/// `GET /v1/openapi.json`: the document for the bundle being served.
pub async fn openapi_document(State(state): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        state.model().openapi.clone(),
    )
        .into_response()
}

/// `GET /healthz`.
pub async fn healthz(State(state): State<Arc<AppState>>) -> Json<serde_json::Value> {
    let model = state.model();
    Json(serde_json::json!({
        "status": "ok",
        "model_version": model.bundle.manifest.model_version,
        "feed": model.ranker.is_some(),
    }))
}

/// Unknown paths.
pub async fn no_route() -> ApiError {
    ApiError::not_found("no such endpoint; see /v1/openapi.json")
}

/// Known paths with another method.
pub async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        None,
        "method not allowed on this endpoint; see /v1/openapi.json".into(),
    )
}

/// Middleware: counts and times every request by method, route template and status
/// ([`Metrics::request`]).
pub async fn track(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().as_str().to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str)
        .to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16();
    (state.metrics).request(method, route, status, started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics` ([`super::metrics`]).
pub async fn scrape(State(state): State<Arc<AppState>>) -> Response {
    let model = state.model();
    let rendered = state.metrics.render(
        state.store.queued(),
        &model.bundle.manifest.model_version,
        model.bundle.items.ids.len(),
    );
    match rendered {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            )],
            text,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "encoding metrics");
            axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}
