//! The model repository's routes: list, register (and load), load and unload.

use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::{json_body, ApiResult};
use crate::error::ServeError;
use crate::policy::PolicyConfig;
use crate::repo::VersionPolicy;
use crate::state::AppState;

#[derive(Debug, Serialize)]
pub(super) struct ModelList {
    object: &'static str,
    data: Vec<Value>,
    memory_budget_bytes: usize,
    memory_used_bytes: usize,
}

pub(super) async fn list_models(State(st): State<Arc<AppState>>) -> Json<ModelList> {
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

pub(super) async fn register_model(
    State(st): State<Arc<AppState>>,
    body: Body,
) -> ApiResult<Response> {
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
    .map_err(|source| ServeError::Task {
        context: "register".into(),
        source,
    })??;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "version": version, "loaded": load})),
    )
        .into_response())
}

pub(super) async fn model_action(
    State(st): State<Arc<AppState>>,
    UrlPath((name, version, action)): UrlPath<(String, String, String)>,
) -> ApiResult<Json<Value>> {
    let v: u64 = version
        .parse()
        .map_err(|_| ServeError::BadRequest(format!("version '{version}' is not a number")))?;
    let repo = Arc::clone(&st.repo);
    let n = name.clone();
    let act = action.clone();
    tokio::task::spawn_blocking(move || match act.as_str() {
        "load" => repo.load(&n, v),
        "unload" => repo.unload(&n, v),
        other => Err(ServeError::NotFound(format!(
            "no action '{other}' (load, unload)"
        ))),
    })
    .await
    .map_err(|source| ServeError::Task {
        context: action.clone(),
        source,
    })??;
    Ok(Json(
        json!({"name": name, "version": v, "loaded": action == "load"}),
    ))
}
