//! `POST /v1/models/{name}/infer`: a whole (non-streaming) inference with the
//! model's own defaults (greedy).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::json;

use super::{default_max_tokens, json_body, timings, ApiResult};
use crate::error::ServeError;
use crate::request::{collect, prepare, GenParams};
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub(crate) struct InferBody {
    #[serde(default)]
    version: Option<u64>,
    #[serde(default = "default_max_tokens")]
    max_tokens: usize,
    #[serde(flatten)]
    params: GenParams,
}

pub(super) async fn infer(
    State(st): State<Arc<AppState>>,
    UrlPath(name): UrlPath<String>,
    body: Body,
) -> ApiResult<Response> {
    let b: InferBody = json_body(&st, body).await?;
    if b.params.stream {
        return Err(ServeError::BadRequest(
            "infer does not stream; use /v1/completions with \"stream\": true".into(),
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
