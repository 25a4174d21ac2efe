#![doc = include_str!("../README.md")]

pub mod cache;
pub mod engine;
mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod grpc;
pub mod http;
pub mod metrics;
pub mod policy;
pub mod repo;
mod request;
mod state;

use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::Deserialize;

pub use engine::{Engine, EngineConfig, Event, FinishReason, GenRequest, Summary};
pub use error::ServeError;
pub use metrics::Metrics;
pub use policy::{BatchPolicy, PolicyConfig};
pub use repo::{RepoConfig, Repository, VersionPolicy};
pub use state::{AppState, Limits};

/// Everything a server needs.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Where to listen (loopback by default).
    pub addr: SocketAddr,
    /// The model repository.
    pub repo: RepoConfig,
    /// Bearer token required on every route but `/health` and `/ready`.
    pub token: Option<String>,
    /// Request limits.
    pub limits: Limits,
    /// Bytes of the response cache (0 disables it).
    pub cache_bytes: usize,
}

impl ServerConfig {
    /// Defaults for a repository at `root`: 127.0.0.1:8080, 8 GiB budget, one
    /// kernel thread, the feedback policy, 64 MiB of response cache.
    pub fn new(root: PathBuf) -> ServerConfig {
        ServerConfig {
            addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            repo: RepoConfig {
                root,
                memory_budget: 8 << 30,
                threads: 1,
                weights: None,
                engine: EngineConfig::default(),
                default_policy: PolicyConfig::default(),
            },
            token: None,
            limits: Limits::default(),
            cache_bytes: 64 << 20,
        }
    }
}

/// A model to register at start (`serve.yaml`'s `models`, or `--model`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpec {
    /// Name.
    pub name: String,
    /// Directory (under the root).
    pub path: PathBuf,
    /// Version (default: next).
    #[serde(default)]
    pub version: Option<u64>,
    /// Batching policy.
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// Version policy.
    #[serde(default)]
    pub version_policy: Option<VersionPolicy>,
}

/// `serve.yaml`: the server's settings and the models to register at start.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeFile {
    /// Address to listen on (default 127.0.0.1).
    #[serde(default)]
    pub host: Option<String>,
    /// Port (default 8080).
    #[serde(default)]
    pub port: Option<u16>,
    /// Repository root (default: the file's directory).
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Memory budget for loaded models, MiB.
    #[serde(default)]
    pub memory_budget_mib: Option<usize>,
    /// Kernel threads per model.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Key/value cache per model, MiB.
    #[serde(default)]
    pub kv_cache_mib: Option<usize>,
    /// Tokens per engine step.
    #[serde(default)]
    pub token_budget: Option<usize>,
    /// Requests that may wait per model.
    #[serde(default)]
    pub max_waiting: Option<usize>,
    /// Response cache, MiB (0 disables).
    #[serde(default)]
    pub response_cache_mib: Option<usize>,
    /// Largest `max_tokens`.
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// Environment variable holding the bearer token (the token itself is never
    /// written in the file).
    #[serde(default)]
    pub token_env: Option<String>,
    /// Batching policy of models that name none.
    #[serde(default)]
    pub policy: Option<PolicyConfig>,
    /// Models to register and load.
    #[serde(default)]
    pub models: Vec<ModelSpec>,
}

/// A bound server, ready to run.
pub struct Server {
    state: Arc<AppState>,
    listener: tokio::net::TcpListener,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("addr", &self.listener.local_addr().ok())
            .finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the repository (reloading what its registry says was loaded), registers
    /// and loads `models`, and binds the address. Returns the server and warnings
    /// (versions that did not reload).
    ///
    /// # Errors
    /// [`ServeError`] for a repository that cannot be opened, a model that does not
    /// register or load, or an address that cannot be bound.
    pub async fn bind(
        config: ServerConfig,
        models: &[ModelSpec],
    ) -> Result<(Server, Vec<String>), ServeError> {
        let metrics = Arc::new(Metrics::new());
        let repo_cfg = config.repo.clone();
        let m = Arc::clone(&metrics);
        let specs = models.to_vec();
        let (repo, warnings) = tokio::task::spawn_blocking(move || {
            let (repo, warnings) = Repository::open(repo_cfg, m)?;
            for s in &specs {
                // A model already in the registry at that path is reused.
                let existing = repo
                    .list()
                    .into_iter()
                    .find(|v| v.name == s.name && s.version.is_none_or(|x| x == v.version));
                let v = match existing {
                    Some(v) => v.version,
                    None => repo.register(
                        &s.name,
                        &s.path,
                        s.version,
                        s.policy.clone(),
                        s.version_policy,
                    )?,
                };
                repo.load(&s.name, v)?;
            }
            Ok::<_, ServeError>((repo, warnings))
        })
        .await
        .map_err(|source| ServeError::Task {
            context: "start".into(),
            source,
        })??;
        let listener = tokio::net::TcpListener::bind(config.addr)
            .await
            .map_err(|source| ServeError::Io {
                context: format!("bind {}", config.addr),
                source,
            })?;
        let state = Arc::new(AppState {
            repo: Arc::new(repo),
            metrics,
            cache: cache::ResponseCache::new(config.cache_bytes),
            token: config.token,
            limits: config.limits,
            draining: Default::default(),
        });
        Ok((Server { state, listener }, warnings))
    }

    /// The bound address.
    ///
    /// # Errors
    /// The socket's error.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (repository, metrics).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes, then drains: stops accepting
    /// connections, lets in-flight requests (streams included) finish, and stops
    /// every engine once its queue is empty.
    ///
    /// # Errors
    /// The listener's I/O errors.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = Arc::clone(&self.state);
        let app = http::router(Arc::clone(&self.state));
        let st = Arc::clone(&state);
        axum::serve(self.listener, app)
            .with_graceful_shutdown(async move {
                shutdown.await;
                st.draining.store(true, Ordering::Release);
            })
            .await?;
        let loaded = state.repo.unload_all();
        // Engines join their threads as the last handle drops: off the runtime.
        let _ = tokio::task::spawn_blocking(move || drop(loaded)).await;
        Ok(())
    }
}
