//! The HTTP API (axum): the model repository's REST calls, inference, an
//! OpenAI-compatible `/v1/completions` with server-sent events, llama.cpp's
//! `/completion` (so the same load generators drive both servers), health,
//! readiness, Prometheus metrics and the OpenAPI document.
//!
//! Every error is a JSON body `{"error": {"message", "type", "code"}}` with the HTTP
//! status (and `Retry-After` on 503); request bodies are read and parsed here, so a
//! body that is too large, not JSON or of the wrong shape gets such an error naming
//! the field, line and column.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use autoglm_models::SamplingOptions;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream::{self, Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::cache::{CacheKey, Cached, ResponseCache};
use crate::engine::{Event, FinishReason, GenRequest, Summary};
use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::policy::PolicyConfig;
use crate::repo::{Loaded, Repository, VersionPolicy};

/// Request limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_tokens: 4096,
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The models.
    pub repo: Arc<Repository>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The response cache.
    pub cache: ResponseCache,
    /// Bearer token required on every route but `/health` and `/ready`.
    pub token: Option<String>,
    /// Request limits.
    pub limits: Limits,
    /// Set when shutdown starts (`/ready` then answers 503).
    pub draining: AtomicBool,
}

impl IntoResponse for ServeError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body =
            json!({"error": {"message": self.message, "type": self.kind, "code": self.status}});
        let mut r = (status, Json(body)).into_response();
        if let Some(s) = self.retry_after {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        r
    }
}

type ApiResult<T> = Result<T, ServeError>;

/// The OpenAPI document served at `/openapi.json`.
pub const OPENAPI: &str = include_str!("openapi.json");

/// The router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/ready", get(ready))
        .route("/metrics", get(metrics))
        .route("/openapi.json", get(openapi))
        .route("/v1/models", get(list_models).post(register_model))
        .route(
            "/v1/models/{name}/versions/{version}/{action}",
            post(model_action),
        )
        .route("/v1/models/{name}/infer", post(infer))
        .route("/v1/completions", post(completions))
        .route("/completion", post(llama_completion))
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
    let resp = match (&st.token, open) {
        (Some(token), false) => {
            let ok = req
                .headers()
                .get(header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes()));
            if ok {
                next.run(req).await
            } else {
                let mut r =
                    ServeError::unauthorized("a valid bearer token is required").into_response();
                r.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
                r
            }
        }
        _ => next.run(req).await,
    };
    st.metrics.http(route, resp.status().as_u16());
    resp
}

pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
    ServeError::not_found("no such route")
}

async fn method_not_allowed() -> ServeError {
    ServeError {
        status: 405,
        kind: "invalid_request_error",
        message: "method not allowed on this route".into(),
        retry_after: None,
    }
}

async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn ready(State(st): State<Arc<AppState>>) -> Response {
    let loaded = st.repo.loaded().len();
    if st.draining.load(Ordering::Acquire) {
        ServeError::unavailable("shutting down", 5).into_response()
    } else if loaded == 0 {
        ServeError::unavailable("no model is loaded", 5).into_response()
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
async fn json_body<T: DeserializeOwned>(st: &AppState, body: Body) -> ApiResult<T> {
    let bytes: Bytes = axum::body::to_bytes(body, st.limits.max_body_bytes)
        .await
        .map_err(|_| {
            ServeError::too_large(format!(
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
        .map_err(|e| ServeError::bad_request(format!("invalid request body: {e}")))?;
    de.end()
        .map_err(|e| ServeError::bad_request(format!("invalid JSON body: {e}")))?;
    Ok(v)
}

#[derive(Debug, Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<Value>,
    memory_budget_bytes: usize,
    memory_used_bytes: usize,
}

async fn list_models(State(st): State<Arc<AppState>>) -> Json<ModelList> {
    let data = st
        .repo
        .list()
        .into_iter()
        .map(|v| {
            let mut x = serde_json::to_value(&v).unwrap_or(Value::Null);
            if let Value::Object(o) = &mut x {
                o.insert("id".into(), json!(format!("{}:{}", v.name, v.version)));
                o.insert("object".into(), json!("model"));
                o.insert("owned_by".into(), json!("autoglm"));
            }
            x
        })
        .collect();
    Json(ModelList {
        object: "list",
        data,
        memory_budget_bytes: st.repo.memory_budget(),
        memory_used_bytes: st.repo.used_bytes(),
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RegisterBody {
    name: String,
    path: PathBuf,
    #[serde(default)]
    version: Option<u64>,
    #[serde(default)]
    policy: Option<PolicyConfig>,
    #[serde(default)]
    version_policy: Option<VersionPolicy>,
    #[serde(default = "yes")]
    load: bool,
}

fn yes() -> bool {
    true
}

async fn register_model(State(st): State<Arc<AppState>>, body: Body) -> ApiResult<Response> {
    let b: RegisterBody = json_body(&st, body).await?;
    let repo = Arc::clone(&st.repo);
    let (name, load) = (b.name.clone(), b.load);
    let version = tokio::task::spawn_blocking(move || -> ApiResult<u64> {
        let v = repo.register(&b.name, &b.path, b.version, b.policy, b.version_policy)?;
        if b.load {
            repo.load(&b.name, v)?;
        }
        Ok(v)
    })
    .await
    .map_err(|e| ServeError::internal(format!("register: {e}")))??;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "version": version, "loaded": load})),
    )
        .into_response())
}

async fn model_action(
    State(st): State<Arc<AppState>>,
    UrlPath((name, version, action)): UrlPath<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let v: u64 = version
        .parse()
        .map_err(|_| ServeError::bad_request(format!("version '{version}' is not a number")))?;
    let repo = Arc::clone(&st.repo);
    let n = name.clone();
    let act = action.clone();
    tokio::task::spawn_blocking(move || match act.as_str() {
        "load" => repo.load(&n, v),
        "unload" => repo.unload(&n, v),
        other => Err(ServeError::not_found(format!(
            "no action '{other}' (load, unload)"
        ))),
    })
    .await
    .map_err(|e| ServeError::internal(format!("{action}: {e}")))??;
    Ok(Json(
        json!({"name": name, "version": v, "loaded": action == "load"}),
    ))
}

/// A prompt: text (tokenized with the model's tokenizer) or token ids.
#[derive(Debug)]
pub(crate) enum Prompt {
    /// Text.
    Text(String),
    /// Token ids.
    Ids(Vec<u32>),
}

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Prompt::Text(s)),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect::<Option<Vec<u32>>>()
                .map(Prompt::Ids)
                .ok_or_else(|| {
                    D::Error::custom(
                        "prompt: a list must hold token ids (integers from 0 to 2^32 - 1)",
                    )
                }),
            _ => Err(D::Error::custom(
                "prompt must be a string or a list of token ids",
            )),
        }
    }
}

/// Stop strings: one or several.
#[derive(Debug)]
pub(crate) struct Stops(Vec<String>);

impl<'de> Deserialize<'de> for Stops {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Stops(vec![s])),
            Value::Array(a) => a
                .into_iter()
                .map(|x| match x {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect::<Option<Vec<String>>>()
                .map(Stops)
                .ok_or_else(|| D::Error::custom("stop: a list must hold strings")),
            _ => Err(D::Error::custom(
                "stop must be a string or a list of strings",
            )),
        }
    }
}

/// The generation parameters every endpoint shares.
#[derive(Debug, Deserialize)]
pub(crate) struct GenParams {
    pub(crate) prompt: Prompt,
    #[serde(default)]
    pub(crate) temperature: Option<f64>,
    #[serde(default)]
    pub(crate) top_p: Option<f64>,
    #[serde(default)]
    pub(crate) top_k: Option<u32>,
    #[serde(default)]
    pub(crate) repetition_penalty: Option<f64>,
    #[serde(default)]
    pub(crate) seed: Option<u64>,
    #[serde(default)]
    pub(crate) stop: Option<Stops>,
    #[serde(default)]
    pub(crate) ignore_eos: bool,
    #[serde(default)]
    pub(crate) stream: bool,
}

/// A request made ready for the engine.
pub(crate) struct Prepared {
    pub(crate) model: Arc<Loaded>,
    pub(crate) prompt: Vec<u32>,
    pub(crate) sampling: SamplingOptions,
    pub(crate) stop_strings: Vec<String>,
    pub(crate) key: Option<CacheKey>,
}

/// A request's number as f32: beyond f32's range is an error naming the field; a
/// positive value stays positive (below f32's range it would round to 0, which the
/// sampler rightly refuses).
fn to_f32(name: &str, x: f64) -> ApiResult<f32> {
    if x.abs() > f64::from(f32::MAX) {
        return Err(ServeError::bad_request(format!(
            "{name} {x} is beyond the range of a 32-bit float"
        )));
    }
    Ok(if x > 0.0 {
        (x as f32).max(f32::MIN_POSITIVE)
    } else {
        x as f32
    })
}

pub(crate) fn prepare(
    st: &AppState,
    model: Option<&str>,
    version: Option<u64>,
    p: &GenParams,
    max_tokens: Option<usize>,
    default_temperature: f32,
) -> ApiResult<Prepared> {
    let name = match model {
        Some(m) => m.to_string(),
        None => st.repo.sole_model().ok_or_else(|| {
            ServeError::bad_request("'model' is required when more than one model is loaded")
        })?,
    };
    // `name:version` as listed by GET /v1/models.
    let (name, version) = match (name.rsplit_once(':'), version) {
        (Some((n, v)), None) if v.parse::<u64>().is_ok() => (n.to_string(), v.parse().ok()),
        _ => (name, version),
    };
    let model = st.repo.get(&name, version)?;
    let prompt = match &p.prompt {
        Prompt::Ids(ids) => ids.clone(),
        Prompt::Text(t) => {
            let tok = model.tokenizer.as_ref().ok_or_else(|| {
                ServeError::bad_request("this model has no tokenizer: send the prompt as token ids")
            })?;
            if t.len() > st.limits.max_body_bytes {
                return Err(ServeError::too_large("the prompt is too long"));
            }
            let ids = tok
                .encode(t)
                .map_err(|e| ServeError::bad_request(e.to_string()))?;
            match model.template {
                Some((bos, sep)) => std::iter::once(bos)
                    .chain(ids)
                    .chain(std::iter::once(sep))
                    .collect(),
                None => ids,
            }
        }
    };
    // No max_tokens (llama.cpp's n_predict −1): up to the model's context.
    let max_tokens = max_tokens.unwrap_or_else(|| {
        st.limits
            .max_tokens
            .min(
                model
                    .config
                    .max_position_embeddings
                    .saturating_sub(prompt.len()),
            )
            .max(1)
    });
    if max_tokens == 0 {
        return Err(ServeError::bad_request("max_tokens must be at least 1"));
    }
    if max_tokens > st.limits.max_tokens {
        return Err(ServeError::bad_request(format!(
            "max_tokens {max_tokens} is over this server's limit of {}",
            st.limits.max_tokens
        )));
    }
    let sampling = SamplingOptions {
        max_new_tokens: max_tokens,
        temperature: match p.temperature {
            Some(t) => to_f32("temperature", t)?,
            None => default_temperature,
        },
        top_k: p.top_k.unwrap_or(0) as usize,
        // A positive top_p below f32's range still keeps the most likely token.
        top_p: p.top_p.map_or(1.0, |x| {
            if x > 0.0 {
                (x as f32).max(f32::MIN_POSITIVE)
            } else {
                x as f32
            }
        }),
        repetition_penalty: p
            .repetition_penalty
            .map_or(Ok(1.0), |x| to_f32("repetition_penalty", x))?,
        stop_tokens: Vec::new(),
        ignore_eos: p.ignore_eos,
        seed: p.seed.unwrap_or(0),
    };
    // Bad sampling options are the request's fault: 400 now, not an error event later.
    autoglm_models::Sampler::new(sampling.clone())
        .map_err(|e| ServeError::bad_request(e.to_string()))?;
    let stop_strings = p.stop.as_ref().map(|s| s.0.clone()).unwrap_or_default();
    if stop_strings.len() > 4 || stop_strings.iter().any(|s| s.is_empty() || s.len() > 256) {
        return Err(ServeError::bad_request(
            "stop takes at most 4 non-empty strings of at most 256 bytes",
        ));
    }
    if !stop_strings.is_empty() && model.tokenizer.is_none() {
        return Err(ServeError::bad_request(
            "stop strings need a model with a tokenizer",
        ));
    }
    let key = (sampling.temperature == 0.0 && stop_strings.is_empty()).then(|| CacheKey {
        model: model.name.clone(),
        version: model.version,
        prompt: prompt.clone(),
        max_new: max_tokens,
        stops: Vec::new(),
        ignore_eos: sampling.ignore_eos,
        repetition_penalty: sampling.repetition_penalty.to_bits(),
    });
    Ok(Prepared {
        model,
        prompt,
        sampling,
        stop_strings,
        key,
    })
}

/// The events of a prepared request: from the cache, or from the engine.
fn start(st: &AppState, p: &Prepared) -> ApiResult<(UnboundedReceiver<Event>, bool)> {
    let (tx, rx) = unbounded_channel();
    if let Some(hit) = p.key.as_ref().and_then(|k| st.cache.get(k)) {
        for &t in &hit.tokens {
            let _ = tx.send(Event::Token(t));
        }
        let _ = tx.send(Event::Done(Summary {
            finish: hit.finish,
            prompt_tokens: p.prompt.len(),
            completion_tokens: hit.tokens.len(),
            queued: std::time::Duration::ZERO,
            ttft: std::time::Duration::ZERO,
            latency: std::time::Duration::ZERO,
            preempted: 0,
        }));
        return Ok((rx, true));
    }
    p.model.engine.submit(GenRequest {
        prompt: p.prompt.clone(),
        sampling: p.sampling.clone(),
        events: tx,
    })?;
    Ok((rx, false))
}

/// Follows a request's tokens, turning them into text and applying stop strings.
struct Follow {
    st: Arc<AppState>,
    model: Arc<Loaded>,
    tokens: Vec<u32>,
    /// Tokens not yet reported (their text ends inside a character).
    pending: Vec<u32>,
    text_sent: usize,
    text: String,
    stops: Vec<String>,
    key: Option<CacheKey>,
    from_cache: bool,
    done: Option<(FinishReason, Summary)>,
    started: Instant,
}

pub(crate) enum Step {
    /// New tokens and the text they completed.
    Delta(Vec<u32>, String),
    /// The end.
    Done(FinishReason, Summary),
    /// A failure.
    Failed(ServeError),
}

impl Follow {
    fn new(st: &Arc<AppState>, p: &Prepared, from_cache: bool) -> Follow {
        Follow {
            st: Arc::clone(st),
            model: Arc::clone(&p.model),
            tokens: Vec::new(),
            pending: Vec::new(),
            text_sent: 0,
            text: String::new(),
            stops: p.stop_strings.clone(),
            key: p.key.clone(),
            from_cache,
            done: None,
            started: Instant::now(),
        }
    }

    /// The text of the tokens so far, held back while it ends inside a character.
    fn push(&mut self, t: u32) -> Option<(Vec<u32>, String)> {
        self.tokens.push(t);
        self.pending.push(t);
        self.emit(false)
    }

    /// The held-back tokens and the new text, unless the text ends inside a
    /// character and `force` is off.
    fn emit(&mut self, force: bool) -> Option<(Vec<u32>, String)> {
        let Some(tok) = &self.model.tokenizer else {
            return Some((std::mem::take(&mut self.pending), String::new()));
        };
        let text = tok.decode(&self.tokens).unwrap_or_default();
        if text.ends_with('\u{FFFD}') && !force {
            return None;
        }
        self.text = text;
        let delta = self
            .text
            .get(self.text_sent..)
            .unwrap_or_default()
            .to_string();
        self.text_sent = self.text.len();
        Some((std::mem::take(&mut self.pending), delta))
    }

    /// Where a stop string starts in the text, if one appeared.
    fn stop_at(&self) -> Option<usize> {
        self.stops
            .iter()
            .filter_map(|s| self.text.find(s.as_str()))
            .min()
    }

    async fn next(&mut self, rx: &mut UnboundedReceiver<Event>) -> Option<Step> {
        if self.done.is_some() {
            return None;
        }
        let mut new_tokens = Vec::new();
        let mut delta = String::new();
        loop {
            let ev = rx.recv().await;
            match ev {
                Some(Event::Token(t)) => {
                    if let Some((ts, d)) = self.push(t) {
                        new_tokens.extend(ts);
                        delta.push_str(&d);
                        if let Some(at) = self.stop_at() {
                            // Cut the text at the stop string and end: dropping the
                            // receiver cancels the rest in the engine.
                            let keep_from = self.text_sent - delta.len();
                            let cut = at.saturating_sub(keep_from).min(delta.len());
                            delta.truncate(cut);
                            self.text.truncate(at);
                            let s = Summary {
                                finish: FinishReason::Stop,
                                prompt_tokens: 0,
                                completion_tokens: self.tokens.len(),
                                queued: std::time::Duration::ZERO,
                                ttft: std::time::Duration::ZERO,
                                latency: self.started.elapsed(),
                                preempted: 0,
                            };
                            self.done = Some((FinishReason::Stop, s));
                            rx.close();
                            return Some(Step::Delta(new_tokens, delta));
                        }
                        return Some(Step::Delta(new_tokens, delta));
                    }
                }
                Some(Event::Done(s)) => {
                    if let (Some(k), false) = (&self.key, self.from_cache) {
                        self.st.cache.put(
                            k.clone(),
                            Cached {
                                tokens: self.tokens.clone(),
                                finish: s.finish,
                            },
                        );
                    }
                    self.done = Some((s.finish, s));
                    if !self.pending.is_empty() {
                        if let Some((ts, d)) = self.emit(true) {
                            return Some(Step::Delta(ts, d));
                        }
                    }
                    return self.finish();
                }
                Some(Event::Error(e)) => return Some(Step::Failed(e)),
                None => {
                    return Some(Step::Failed(ServeError::internal(
                        "the engine dropped the request",
                    )))
                }
            }
        }
    }

    /// After a `Delta` that ended the request, the final step.
    fn finish(&mut self) -> Option<Step> {
        self.done.take().map(|(f, s)| Step::Done(f, s))
    }
}

/// The steps of a prepared request (from the cache or the engine), ending with
/// `Done` or `Failed`; dropping the stream cancels the request.
pub(crate) fn steps(
    st: &Arc<AppState>,
    p: &Prepared,
) -> ApiResult<impl Stream<Item = Step> + Send + 'static> {
    let (rx, cached) = start(st, p)?;
    let f = Follow::new(st, p, cached);
    Ok(stream::unfold(
        (f, rx, false),
        |(mut f, mut rx, ended)| async move {
            if ended {
                return None;
            }
            let step = match f.next(&mut rx).await {
                Some(s) => s,
                None => f.finish()?,
            };
            let end = matches!(step, Step::Done(..) | Step::Failed(_));
            Some((step, (f, rx, end)))
        },
    ))
}

/// Runs a request to the end (non-streaming): tokens, text, the end.
pub(crate) async fn collect(
    st: &Arc<AppState>,
    p: &Prepared,
) -> ApiResult<(Vec<u32>, String, FinishReason, Summary)> {
    let mut all = Box::pin(steps(st, p)?);
    let mut tokens = Vec::new();
    let mut text = String::new();
    while let Some(step) = all.next().await {
        match step {
            Step::Delta(ts, t) => {
                tokens.extend(ts);
                text.push_str(&t);
            }
            Step::Done(reason, s) => return Ok((tokens, text, reason, s)),
            Step::Failed(e) => return Err(e),
        }
    }
    Err(ServeError::internal("the request ended without a result"))
}

/// A unique completion id: the start time and a counter.
fn completion_id() -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64);
    format!("cmpl-{t:x}-{n}")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn timings(s: &Summary) -> Value {
    json!({
        "queued_ms": s.queued.as_secs_f64() * 1e3,
        "ttft_ms": s.ttft.as_secs_f64() * 1e3,
        "total_ms": s.latency.as_secs_f64() * 1e3,
        "preempted": s.preempted,
    })
}

#[derive(Debug, Deserialize)]
pub(crate) struct InferBody {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default = "default_max_tokens")]
    max_tokens: usize,
    #[serde(flatten)]
    params: GenParams,
}

fn default_max_tokens() -> usize {
    16
}

async fn infer(
    State(st): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    body: Body,
) -> ApiResult<Response> {
    let b: InferBody = json_body(&st, body).await?;
    if b.params.stream {
        return Err(ServeError::bad_request(
            "infer does not stream; use /v1/completions with \"stream\": true",
        ));
    }
    let p = prepare(
        &st,
        Some(&name),
        b.version,
        &b.params,
        Some(b.max_tokens),
        0.0,
    )?;
    let (tokens, text, finish, s) = collect(&st, &p).await?;
    Ok(Json(json!({
        "model": p.model.name,
        "version": p.model.version,
        "tokens": tokens,
        "text": p.model.tokenizer.as_ref().map(|_| text),
        "finish_reason": finish.as_str(),
        "usage": {"prompt_tokens": p.prompt.len(), "completion_tokens": tokens.len()},
        "timings": timings(&s),
    }))
    .into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct CompletionBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default = "default_max_tokens")]
    max_tokens: usize,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    logprobs: Option<Value>,
    #[serde(default)]
    echo: Option<bool>,
    /// OpenAI's end-user id (accepted, not used).
    #[serde(default)]
    #[allow(dead_code)]
    user: Option<String>,
    #[serde(flatten)]
    params: GenParams,
}

async fn completions(State(st): State<Arc<AppState>>, body: Body) -> ApiResult<Response> {
    let b: CompletionBody = json_body(&st, body).await?;
    if b.n.is_some_and(|n| n != 1) {
        return Err(ServeError::bad_request("only n = 1 is supported"));
    }
    if b.logprobs.as_ref().is_some_and(|v| !v.is_null()) || b.echo == Some(true) {
        return Err(ServeError::bad_request(
            "logprobs and echo are not supported",
        ));
    }
    // OpenAI's default temperature is 1.
    let p = prepare(
        &st,
        b.model.as_deref(),
        None,
        &b.params,
        Some(b.max_tokens),
        1.0,
    )?;
    let id = completion_id();
    let model_id = format!("{}:{}", p.model.name, p.model.version);
    let created = now_secs();
    if !b.params.stream {
        let (tokens, text, finish, _) = collect(&st, &p).await?;
        return Ok(Json(json!({
            "id": id, "object": "text_completion", "created": created, "model": model_id,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish.as_str(),
                         "tokens": tokens}],
            "usage": {"prompt_tokens": p.prompt.len(), "completion_tokens": tokens.len(),
                      "total_tokens": p.prompt.len() + tokens.len()},
        }))
        .into_response());
    }
    let prompt_len = p.prompt.len();
    let events = sse(
        steps(&st, &p)?,
        move |step| match step {
            Step::Delta(ts, text) => json!({
                "id": id, "object": "text_completion", "created": created, "model": model_id,
                "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": null, "tokens": ts}],
            }),
            Step::Done(reason, s) => json!({
                "id": id, "object": "text_completion", "created": created, "model": model_id,
                "choices": [{"text": "", "index": 0, "logprobs": null, "finish_reason": reason.as_str()}],
                "usage": {"prompt_tokens": prompt_len, "completion_tokens": s.completion_tokens,
                          "total_tokens": prompt_len + s.completion_tokens},
            }),
            Step::Failed(e) => {
                json!({"error": {"message": e.message, "type": e.kind, "code": e.status}})
            }
        },
        true,
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// The SSE stream of a request: one event per step, then `[DONE]` if `done_marker`.
fn sse(
    steps: impl Stream<Item = Step> + Send + 'static,
    mut render: impl FnMut(Step) -> Value + Send + 'static,
    done_marker: bool,
) -> impl Stream<Item = Result<SseEvent, std::convert::Infallible>> + Send {
    let events = steps.map(move |step| Ok(SseEvent::default().data(render(step).to_string())));
    let tail = stream::iter(done_marker.then(|| Ok(SseEvent::default().data("[DONE]"))));
    events.chain(tail)
}

/// llama.cpp server's `/completion` body (the fields its load generators send).
#[derive(Debug, Deserialize)]
pub(crate) struct LlamaBody {
    #[serde(default)]
    model: Option<String>,
    #[serde(default = "default_n_predict")]
    n_predict: i64,
    #[serde(flatten)]
    params: GenParams,
}

fn default_n_predict() -> i64 {
    -1
}

async fn llama_completion(State(st): State<Arc<AppState>>, body: Body) -> ApiResult<Response> {
    let b: LlamaBody = json_body(&st, body).await?;
    if b.n_predict < -1 {
        return Err(ServeError::bad_request(
            "n_predict must be -1 (up to the end of the context) or positive",
        ));
    }
    let max = usize::try_from(b.n_predict).ok();
    // llama.cpp's default temperature is 0.8.
    let p = prepare(&st, b.model.as_deref(), None, &b.params, max, 0.8)?;
    let prompt_len = p.prompt.len();
    if !b.params.stream {
        let (tokens, text, finish, s) = collect(&st, &p).await?;
        return Ok(Json(json!({
            "content": text, "tokens": tokens, "stop": true, "tokens_predicted": tokens.len(),
            "tokens_evaluated": prompt_len, "stop_type": if finish == FinishReason::Stop { "eos" } else { "limit" },
            "timings": timings(&s),
        }))
        .into_response());
    }
    let started = Instant::now();
    let events = sse(
        steps(&st, &p)?,
        move |step| match step {
            Step::Delta(ts, text) => json!({"content": text, "tokens": ts, "stop": false}),
            Step::Done(reason, s) => {
                let gen_ms = (s.latency.saturating_sub(s.ttft)).as_secs_f64() * 1e3;
                json!({
                    "content": "", "tokens": [], "stop": true, "tokens_predicted": s.completion_tokens,
                    "tokens_evaluated": prompt_len,
                    "stop_type": if reason == FinishReason::Stop { "eos" } else { "limit" },
                    "timings": {
                        "prompt_n": prompt_len, "prompt_ms": s.ttft.as_secs_f64() * 1e3,
                        "predicted_n": s.completion_tokens, "predicted_ms": gen_ms,
                        "predicted_per_second": if gen_ms > 0.0 { (s.completion_tokens.saturating_sub(1)) as f64 / gen_ms * 1e3 } else { 0.0 },
                        "total_ms": started.elapsed().as_secs_f64() * 1e3,
                    },
                })
            }
            Step::Failed(e) => {
                json!({"error": {"message": e.message, "type": e.kind, "code": e.status}})
            }
        },
        false,
    );
    Ok(Sse::new(events).into_response())
}
