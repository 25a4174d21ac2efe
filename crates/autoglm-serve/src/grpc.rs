//! The gRPC service (`proto/autoglm_serve.proto`, package `autoglm.serve.v1`):
//! inference, whole or streamed, and the repository's load, unload and list. It
//! shares the HTTP API's request preparation (`request`), engine and response
//! cache, and is served on the same port (HTTP/2) by the HTTP router.

use std::pin::Pin;
use std::sync::Arc;

use futures_util::Stream;
use tonic::{Request, Response, Status};

use crate::error::ServeError;
use crate::request::{self, GenParams, Prepared, Prompt, Step};
use crate::state::AppState;

/// The generated messages, server and client.
#[allow(missing_docs, unreachable_pub, clippy::all, clippy::pedantic)]
pub mod proto {
    tonic::include_proto!("autoglm.serve.v1");
}

use proto::inference_server::{Inference, InferenceServer};
use proto::{
    InferChunk, InferRequest, InferResponse, ListModelsRequest, ListModelsResponse, ModelRef,
    ModelStatus, ModelVersion,
};

/// The service over the server's state.
#[derive(Debug, Clone)]
pub struct InferenceService {
    state: Arc<AppState>,
}

/// The tonic server of [`InferenceService`].
pub fn service(state: Arc<AppState>) -> InferenceServer<InferenceService> {
    InferenceServer::new(InferenceService { state })
}

fn status(e: ServeError) -> Status {
    let code = match e.status() {
        400 | 413 => tonic::Code::InvalidArgument,
        401 => tonic::Code::Unauthenticated,
        403 => tonic::Code::PermissionDenied,
        404 => tonic::Code::NotFound,
        409 => tonic::Code::FailedPrecondition,
        503 => tonic::Code::Unavailable,
        _ => tonic::Code::Internal,
    };
    Status::new(code, e.to_string())
}

impl InferenceService {
    fn check_token<T>(&self, req: &Request<T>) -> Result<(), Status> {
        let given = req
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if self.state.admits(given) {
            Ok(())
        } else {
            Err(Status::unauthenticated("a valid bearer token is required"))
        }
    }

    fn prepare(&self, r: &InferRequest) -> Result<Prepared, Status> {
        let prompt = if r.prompt_ids.is_empty() {
            Prompt::Text(r.prompt_text.clone())
        } else {
            Prompt::Ids(r.prompt_ids.clone())
        };
        let params = GenParams {
            prompt,
            temperature: Some(f64::from(r.temperature)),
            top_p: Some(if r.top_p == 0.0 {
                1.0
            } else {
                f64::from(r.top_p)
            }),
            top_k: Some(r.top_k),
            repetition_penalty: None,
            seed: Some(r.seed),
            stop: None,
            ignore_eos: r.ignore_eos,
            stream: false,
        };
        let model = (!r.model.is_empty()).then_some(r.model.as_str());
        let version = (r.version != 0).then_some(r.version);
        request::prepare(
            &self.state,
            model,
            version,
            &params,
            Some(r.max_tokens as usize),
            0.0,
        )
        .map_err(status)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&AppState) -> Result<T, ServeError> + Send + 'static,
    ) -> Result<T, Status> {
        let st = Arc::clone(&self.state);
        tokio::task::spawn_blocking(move || f(&st))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(status)
    }
}

type ChunkStream = Pin<Box<dyn Stream<Item = Result<InferChunk, Status>> + Send>>;

#[tonic::async_trait]
impl Inference for InferenceService {
    async fn infer(&self, req: Request<InferRequest>) -> Result<Response<InferResponse>, Status> {
        self.check_token(&req)?;
        let p = self.prepare(req.get_ref())?;
        let (tokens, text, finish, _) = request::collect(&self.state, &p).await.map_err(status)?;
        Ok(Response::new(InferResponse {
            model: p.model.name.clone(),
            version: p.model.version,
            completion_tokens: tokens.len() as u32,
            tokens,
            text,
            finish_reason: finish.as_str().into(),
            prompt_tokens: p.prompt.len() as u32,
        }))
    }

    type InferStreamStream = ChunkStream;

    async fn infer_stream(
        &self,
        req: Request<InferRequest>,
    ) -> Result<Response<Self::InferStreamStream>, Status> {
        self.check_token(&req)?;
        let p = self.prepare(req.get_ref())?;
        let steps = request::steps(&self.state, &p).map_err(status)?;
        let out = futures_util::StreamExt::map(steps, |step| match step {
            Step::Delta(tokens, text) => Ok(InferChunk {
                tokens,
                text,
                finish_reason: String::new(),
            }),
            Step::Done(reason, _) => Ok(InferChunk {
                tokens: Vec::new(),
                text: String::new(),
                finish_reason: reason.as_str().into(),
            }),
            Step::Failed(e) => Err(status(e)),
        });
        Ok(Response::new(Box::pin(out)))
    }

    async fn load(&self, req: Request<ModelRef>) -> Result<Response<ModelStatus>, Status> {
        self.check_token(&req)?;
        let r = req.into_inner();
        let (name, version) = (r.name.clone(), r.version);
        self.blocking(move |st| st.repo.load(&name, version))
            .await?;
        Ok(Response::new(ModelStatus {
            name: r.name,
            version: r.version,
            loaded: true,
        }))
    }

    async fn unload(&self, req: Request<ModelRef>) -> Result<Response<ModelStatus>, Status> {
        self.check_token(&req)?;
        let r = req.into_inner();
        let (name, version) = (r.name.clone(), r.version);
        self.blocking(move |st| st.repo.unload(&name, version))
            .await?;
        Ok(Response::new(ModelStatus {
            name: r.name,
            version: r.version,
            loaded: false,
        }))
    }

    async fn list_models(
        &self,
        req: Request<ListModelsRequest>,
    ) -> Result<Response<ListModelsResponse>, Status> {
        self.check_token(&req)?;
        let models = self
            .state
            .repo
            .list()
            .into_iter()
            .map(|v| ModelVersion {
                name: v.name,
                version: v.version,
                path: v.path,
                loaded: v.loaded,
                serving: v.serving,
                policy: v.policy,
            })
            .collect();
        Ok(Response::new(ListModelsResponse { models }))
    }
}
