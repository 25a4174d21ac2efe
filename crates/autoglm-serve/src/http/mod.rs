//! The HTTP API (axum): the model repository's REST calls (`admin`), inference
//! (`rest`), an OpenAI-compatible `/v1/completions` with server-sent events
//! (`openai`), llama.cpp's `/completion` (`llama`, so the same load generators
//! drive both servers), health, readiness, Prometheus metrics and the OpenAPI
//! document; the gRPC service is mounted on the same router.
//!
//! Every error is a JSON body `{"error": {"message", "type", "code"}}` with the HTTP
//! status (and `Retry-After` on 503); request bodies are read and parsed here, so a
//! body that is too large, not JSON or of the wrong shape gets such an error naming
//! the field, line and column.

pub(crate) mod admin;
pub(crate) mod llama;
pub(crate) mod openai;
pub(crate) mod rest;

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::Event as SseEvent;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde_json::{json, Value};

use crate::engine::Summary;
use crate::error::ServeError;
use crate::request::Step;
use crate::state::AppState;

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut r = (status, Json(error_json(&self))).into_response();
        if let Some(s) = self.retry_after() {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

pub(crate) type ApiResult<T> = Result<T, ServeError>;

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("../openapi.json");

/// The router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route(
            "/v1/models",
            get(admin::list_models).post(admin::register_model),
        )
        .route(
            "/v1/models/{name}/versions/{version}/{action}",
            post(admin::model_action),
        )
        .route("/v1/models/{name}/infer", post(rest::infer))
        .route("/v1/completions", post(openai::completions))
        .route("/completion", post(llama::completion))
        .with_state(Arc::clone(&state))
        .merge(
            tonic::service::Routes::new(crate::grpc::service(Arc::clone(&state)))
                .into_axum_router(),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(state, guard))
}

/// Authentication and the per-route HTTP counter.
async fn guard(State(st): State<Arc<AppState>>, req: Request, next: Next) -> Response {
    let route = route_label(req.uri().path());
    // gRPC checks its own token and answers with gRPC statuses.
    let open = matches!(req.uri().path(), "/health" | "/ready") || route == "grpc";
    let bearer = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let resp = if open || st.admits(bearer) {
        next.run(req).await
    } else {
        let mut r =
            ServeError::Unauthorized("a valid bearer token is required".into()).into_response();
        r.headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    };
    st.metrics.http(route, resp.status().as_u16());
    resp
}

/// Route labels for metrics: fixed strings, never the raw path.
fn route_label(path: &str) -> &'static str {
    match path {
        "/health" => "/health",
        "/ready" => "/ready",
        "/metrics" => "/metrics",
        "/openapi.json" => "/openapi.json",
        "/v1/models" => "/v1/models",
        "/v1/completions" => "/v1/completions",
        "/completion" => "/completion",
        p if p.starts_with("/v1/models/") && p.ends_with("/infer") => "/v1/models/{name}/infer",
        p if p.starts_with("/v1/models/") => "/v1/models/{name}/versions/{version}/{action}",
        p if p.starts_with("/autoglm.serve.v1.") => "grpc",
        _ => "other",
    }
}

async fn not_found() -> ServeError {
    ServeError::NotFound("no such route".into())
}

async fn method_not_allowed() -> ServeError {
    ServeError::MethodNotAllowed
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(st): State<Arc<AppState>>) -> Response {
    let loaded = st.repo.loaded().len();
    if st.draining.load(Ordering::Acquire) {
        ServeError::Unavailable {
            message: "shutting down".into(),
            retry_after: 5,
        }
        .into_response()
    } else if loaded == 0 {
        ServeError::Unavailable {
            message: "no model is loaded".into(),
            retry_after: 5,
        }
        .into_response()
    } else {
        Json(json!({"status": "ready", "models_loaded": loaded})).into_response()
    }
}

async fn metrics(State(st): State<Arc<AppState>>) -> Response {
    let mut text = st.metrics.render();
    let (entries, bytes, hits, misses) = st.cache.stats();
    // The cache's figures, appended in the same exposition format.
    text = text.trim_end_matches("# EOF\n").to_string();
    text.push_str(&format!(
        "# HELP autoglm_response_cache_entries Cached responses.\n# TYPE autoglm_response_cache_entries gauge\nautoglm_response_cache_entries {entries}\n\
         # HELP autoglm_response_cache_bytes Bytes of cached responses.\n# TYPE autoglm_response_cache_bytes gauge\nautoglm_response_cache_bytes {bytes}\n\
         # HELP autoglm_response_cache_hits Cache hits.\n# TYPE autoglm_response_cache_hits counter\nautoglm_response_cache_hits_total {hits}\n\
         # HELP autoglm_response_cache_misses Cache misses.\n# TYPE autoglm_response_cache_misses counter\nautoglm_response_cache_misses_total {misses}\n\
         # HELP autoglm_memory_used_bytes Bytes charged by loaded models.\n# TYPE autoglm_memory_used_bytes gauge\nautoglm_memory_used_bytes {}\n# EOF\n",
        st.repo.used_bytes()
    ));
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

/// Reads and parses a JSON body within the size limit, with errors naming what is
/// wrong.
pub(crate) async fn json_body<T: DeserializeOwned>(st: &AppState, body: Body) -> ApiResult<T> {
    let bytes: Bytes = axum::body::to_bytes(body, st.limits.max_body_bytes)
        .await
        .map_err(|_| {
            ServeError::TooLarge(format!(
                "the request body is over {} bytes (or was cut off)",
                st.limits.max_body_bytes
            ))
        })?;
    parse_body(&bytes)
}

/// Parses a whole JSON body into a request type; errors name the field, line and
/// column.
pub(crate) fn parse_body<T: DeserializeOwned>(bytes: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = T::deserialize(&mut de)
        .map_err(|e| ServeError::BadRequest(format!("invalid request body: {e}")))?;
    de.end()
        .map_err(|e| ServeError::BadRequest(format!("invalid JSON body: {e}")))?;
    Ok(v)
}

/// `max_tokens` when a request names none.
pub(crate) fn default_max_tokens() -> usize {
    16
}

/// A `Summary`'s times for a whole response.
pub(crate) fn timings(s: &Summary) -> Value {
    json!({
        "queued_ms": s.queued.as_secs_f64() * 1e3,
        "ttft_ms": s.ttft.as_secs_f64() * 1e3,
        "total_ms": s.latency.as_secs_f64() * 1e3,
        "preempted": s.preempted,
    })
}

/// An error as a JSON value (the body of an error response, or an SSE event).
pub(crate) fn error_json(e: &ServeError) -> Value {
    json!({"error": {"message": e.to_string(), "type": e.kind(), "code": e.status()}})
}

/// The SSE stream of a request: one event per step, then `[DONE]` if `done_marker`.
pub(crate) fn sse(
    steps: impl Stream<Item = Step> + Send + 'static,
    mut render: impl FnMut(Step) -> Value + Send + 'static,
    done_marker: bool,
) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> + Send {
    let events = steps.map(move |step| Ok(SseEvent::default().data(render(step).to_string())));
    let tail = stream::iter(done_marker.then(|| Ok(SseEvent::default().data("[DONE]"))));
    events.chain(tail)
}
