//! llama.cpp server's `POST /completion`, whole or streamed as server-sent events.

use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::response::sse::Sse;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{error_json, json_body, sse, timings, ApiResult};
use crate::engine::FinishReason;
use crate::error::ServeError;
use crate::request::{collect, prepare, steps, GenParams, Step};
use crate::state::AppState;

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

pub(super) async fn completion(State(st): State<Arc<AppState>>, body: Body) -> ApiResult<Response> {
    let b: LlamaBody = json_body(&st, body).await?;
    if b.n_predict < -1 {
        return Err(ServeError::BadRequest(
            "n_predict must be -1 (up to the end of the context) or positive".into(),
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
            Step::Failed(e) => error_json(&e),
        },
        false,
    );
    Ok(Sse::new(events).into_response())
}
