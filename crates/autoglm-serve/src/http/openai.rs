//! OpenAI's `POST /v1/completions`, whole or streamed as server-sent events.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::State;
use axum::response::sse::{KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::{json, Value};

use super::{default_max_tokens, error_json, json_body, sse, ApiResult};
use crate::error::ServeError;
use crate::request::{collect, prepare, steps, GenParams, Step};
use crate::state::AppState;

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

pub(super) async fn completions(
    State(st): State<Arc<AppState>>,
    body: Body,
) -> ApiResult<Response> {
    let b: CompletionBody = json_body(&st, body).await?;
    if b.n.is_some_and(|n| n != 1) {
        return Err(ServeError::BadRequest("only n = 1 is supported".into()));
    }
    if b.logprobs.as_ref().is_some_and(|v| !v.is_null()) || b.echo == Some(true) {
        return Err(ServeError::BadRequest(
            "logprobs and echo are not supported".into(),
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
            Step::Failed(e) => error_json(&e),
        },
        true,
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
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
