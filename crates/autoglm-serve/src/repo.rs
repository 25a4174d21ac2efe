//! The model repository: models registered by name and version, each version an
//! exported Hugging Face-layout directory under the repository root, loaded and
//! unloaded at run time within a memory budget, with a version policy per model.
//! The registry is saved (`autoglm-registry.json` in the root, written atomically)
//! on every change and read back at start, reloading what was loaded.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use autoglm_models::{
    storage_plan, Checkpoint, ModelConfig, PagedCache, PagedModel, Storage, TextTokenizer,
};
use serde::{Deserialize, Serialize};

use crate::engine::{Engine, EngineConfig};
use crate::error::ServeError;
use crate::metrics::Metrics;
use crate::policy::PolicyConfig;

/// The registry file's name in the root.
pub const REGISTRY_FILE: &str = "autoglm-registry.json";

/// Which versions of a model serve requests (Triton's version policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", tag = "kind", content = "version")]
pub enum VersionPolicy {
    /// Only the highest loaded version.
    #[default]
    Latest,
    /// Only this version.
    Pinned(u64),
    /// Every loaded version (a request without a version gets the highest).
    All,
}

/// Repository settings.
#[derive(Debug, Clone)]
pub struct RepoConfig {
    /// Model directories must lie under this directory; the registry is kept here.
    pub root: PathBuf,
    /// Bytes all loaded models (weights and key/value caches) may take together.
    pub memory_budget: usize,
    /// Kernel threads per model.
    pub threads: usize,
    /// How models store their linear weights (`None`: as each checkpoint stores
    /// them; the output head one step higher, [`autoglm_models::storage_plan`]).
    pub weights: Option<Storage>,
    /// Engine settings of every model.
    pub engine: EngineConfig,
    /// The batching policy of models registered without one.
    pub default_policy: PolicyConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedVersion {
    path: PathBuf,
    loaded: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedModel {
    #[serde(default)]
    version_policy: VersionPolicy,
    policy: PolicyConfig,
    versions: BTreeMap<u64, SavedVersion>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    models: BTreeMap<String, SavedModel>,
}

/// A loaded model version: its engine and what requests need to use it.
#[derive(Debug)]
pub struct Loaded {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// The engine.
    pub engine: Engine,
    /// The model's structure.
    pub config: ModelConfig,
    /// Text in and out, when the directory has `tokenizer.json`.
    pub tokenizer: Option<TextTokenizer>,
    /// Bytes charged against the budget.
    pub bytes: usize,
    /// The batching policy.
    pub policy: PolicyConfig,
    /// For a model exported by `autoglm run` (`autoglm.json` beside it), the ids of
    /// `<s>` and `<sep>`: text prompts are the task's inputs and are wrapped as
    /// `<s> input <sep>`, the form the model was trained on.
    pub template: Option<(u32, u32)>,
}

struct Version {
    path: PathBuf,
    loaded: Option<Arc<Loaded>>,
}

struct Model {
    version_policy: VersionPolicy,
    policy: PolicyConfig,
    versions: BTreeMap<u64, Version>,
}

impl Model {
    /// Whether the version policy lets version `v` serve (`Latest`: the highest
    /// loaded version).
    fn serves(&self, v: u64) -> bool {
        match self.version_policy {
            VersionPolicy::All => true,
            VersionPolicy::Pinned(p) => v == p,
            VersionPolicy::Latest => {
                self.versions
                    .iter()
                    .rev()
                    .find(|(_, x)| x.loaded.is_some())
                    .map(|(&k, _)| k)
                    == Some(v)
            }
        }
    }
}

/// What `GET /v1/models` lists per version.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct VersionInfo {
    /// Model name.
    pub name: String,
    /// Version.
    pub version: u64,
    /// Directory, relative to the root.
    pub path: String,
    /// Whether it is loaded.
    pub loaded: bool,
    /// Whether the version policy lets it serve.
    pub serving: bool,
    /// Bytes charged against the budget while loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<usize>,
    /// The batching policy.
    pub policy: String,
    /// Requests waiting and sequences running.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<(usize, usize)>,
}

/// The repository.
pub struct Repository {
    cfg: RepoConfig,
    root: PathBuf,
    models: Mutex<BTreeMap<String, Model>>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Repository {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

/// Model names: 1–64 of `A-Z a-z 0-9 . _ -`, not starting with a dot.
pub fn check_name(name: &str) -> Result<(), ServeError> {
    let ok = (1..=64).contains(&name.len())
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(ServeError::BadRequest(format!(
            "model name '{}' must be 1-64 characters of A-Z a-z 0-9 . _ - (not starting with '.')",
            name.chars().take(80).collect::<String>()
        )))
    }
}

impl Repository {
    /// Opens the repository at `cfg.root`, reading the registry if there is one and
    /// loading the versions it marks loaded.
    ///
    /// # Errors
    /// A 500 error naming the root or the registry file if they cannot be read; a
    /// version that no longer loads is reported and left unloaded, not fatal.
    pub fn open(
        cfg: RepoConfig,
        metrics: Arc<Metrics>,
    ) -> Result<(Repository, Vec<String>), ServeError> {
        let root = cfg.root.canonicalize().map_err(|e| ServeError::Io {
            context: format!("repository root {}", cfg.root.display()),
            source: e,
        })?;
        let repo = Repository {
            cfg,
            root,
            models: Mutex::new(BTreeMap::new()),
            metrics,
        };
        let file = repo.root.join(REGISTRY_FILE);
        let mut warnings = Vec::new();
        if file.exists() {
            let text = std::fs::read_to_string(&file).map_err(|source| ServeError::Io {
                context: file.display().to_string(),
                source,
            })?;
            let saved: Saved =
                serde_json::from_str(&text).map_err(|source| ServeError::Registry {
                    context: file.display().to_string(),
                    source,
                })?;
            {
                let mut models = repo.lock();
                for (name, m) in &saved.models {
                    models.insert(
                        name.clone(),
                        Model {
                            version_policy: m.version_policy,
                            policy: m.policy.clone(),
                            versions: m
                                .versions
                                .iter()
                                .map(|(&v, s)| {
                                    (
                                        v,
                                        Version {
                                            path: s.path.clone(),
                                            loaded: None,
                                        },
                                    )
                                })
                                .collect(),
                        },
                    );
                }
            }
            for (name, m) in &saved.models {
                for (&v, s) in &m.versions {
                    if s.loaded {
                        if let Err(e) = repo.load(name, v) {
                            warnings.push(format!("{name} version {v} not reloaded: {e}"));
                        }
                    }
                }
            }
        }
        Ok((repo, warnings))
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Model>> {
        // A panic while holding the lock cannot leave the map half-changed (every
        // change is one insert or field store), so a poisoned lock is still usable.
        self.models.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The root (canonical).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The memory budget in bytes.
    pub fn memory_budget(&self) -> usize {
        self.cfg.memory_budget
    }

    /// Resolves `path` (relative to the root, or absolute) to a directory under the
    /// root, relative form.
    fn confine(&self, path: &Path) -> Result<PathBuf, ServeError> {
        let full = if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.root.join(path)
        };
        let canon = full.canonicalize().map_err(|e| ServeError::NoDirectory {
            path: path.to_path_buf(),
            source: e,
        })?;
        let rel = canon.strip_prefix(&self.root).map_err(|_| {
            ServeError::Forbidden(format!(
                "model directory {} is outside the repository root",
                path.display()
            ))
        })?;
        if !canon.is_dir() || !canon.join("config.json").is_file() {
            return Err(ServeError::NotFound(format!(
                "{} is not a model directory (no config.json)",
                path.display()
            )));
        }
        Ok(rel.to_path_buf())
    }

    /// Registers `path` as version `version` (default: one above the highest) of
    /// model `name`; the first registration sets the model's batching and version
    /// policies. Returns the version.
    ///
    /// # Errors
    /// 400 for a bad name or policy, 404 for a directory that does not exist or
    /// holds no `config.json`, 403 outside the root, 409 if that version exists.
    pub fn register(
        &self,
        name: &str,
        path: &Path,
        version: Option<u64>,
        policy: Option<PolicyConfig>,
        version_policy: Option<VersionPolicy>,
    ) -> Result<u64, ServeError> {
        check_name(name)?;
        if let Some(p) = &policy {
            p.check().map_err(ServeError::BadRequest)?;
        }
        let rel = self.confine(path)?;
        ModelConfig::from_file(&self.root.join(&rel).join("config.json"))?;
        let v = {
            let mut models = self.lock();
            let m = models.entry(name.to_string()).or_insert_with(|| Model {
                version_policy: version_policy.unwrap_or_default(),
                policy: policy
                    .clone()
                    .unwrap_or_else(|| self.cfg.default_policy.clone()),
                versions: BTreeMap::new(),
            });
            if let Some(vp) = version_policy {
                m.version_policy = vp;
            }
            if let Some(p) = policy {
                m.policy = p;
            }
            let v = version.unwrap_or_else(|| m.versions.keys().next_back().map_or(1, |&v| v + 1));
            if v == 0 {
                return Err(ServeError::BadRequest("versions start at 1".into()));
            }
            if m.versions.contains_key(&v) {
                return Err(ServeError::Conflict(format!(
                    "model '{name}' already has version {v}"
                )));
            }
            m.versions.insert(
                v,
                Version {
                    path: rel,
                    loaded: None,
                },
            );
            v
        };
        self.save()?;
        Ok(v)
    }

    /// Bytes a version would take loaded: its weights as f32 (the output head twice
    /// when tied, once packed) and the key/value cache.
    /// The bytes a model will hold before it is loaded: its weights in the storage
    /// they will have (the embedding f32, the linear weights as stored or as
    /// `weights` asks, the head one step higher) and its key/value cache.
    fn estimate(&self, dir: &Path, cfg: &ModelConfig) -> Result<usize, ServeError> {
        let ck = Checkpoint::open(dir)?;
        let storage = self.cfg.weights.map_or_else(|| ck.storage(), Ok)?;
        let head = storage_plan(storage).storage_of("head.w");
        let mut weights = 0;
        for name in ck.names() {
            let Some(shape) = ck.shape(name) else {
                continue;
            };
            let n: usize = shape.iter().product();
            let is_head = name.starts_with("lm_head") || name.starts_with("embed_out");
            weights += match shape[..] {
                _ if name.contains("embed_tokens") || name.contains("embed_in") => {
                    4 * n
                        + if cfg.tie_word_embeddings {
                            head.or_fallback(cfg.hidden_size).bytes_for(n)
                        } else {
                            0
                        }
                }
                [_, cols] if is_head => head.or_fallback(cols).bytes_for(n),
                [_, cols] => storage.or_fallback(cols).bytes_for(n),
                _ => 4 * n,
            };
        }
        Ok(weights + self.kv_bytes(cfg))
    }

    /// The key/value cache a model gets.
    fn kv_bytes(&self, cfg: &ModelConfig) -> usize {
        let block = PagedCache::bytes_per_block(cfg, self.cfg.engine.block_size);
        block * (self.cfg.engine.kv_cache_bytes / block.max(1)).max(1)
    }

    /// Loads a registered version (no-op if loaded).
    ///
    /// # Errors
    /// 404 for an unknown model or version, 409 when it would exceed the memory
    /// budget, 400/500 when the directory does not load.
    pub fn load(&self, name: &str, version: u64) -> Result<(), ServeError> {
        let (path, policy) = {
            let models = self.lock();
            let m = models
                .get(name)
                .ok_or_else(|| ServeError::NotFound(format!("no model '{name}'")))?;
            let v = m.versions.get(&version).ok_or_else(|| {
                ServeError::NotFound(format!("model '{name}' has no version {version}"))
            })?;
            if v.loaded.is_some() {
                return Ok(());
            }
            (self.root.join(&v.path), m.policy.clone())
        };
        let config = ModelConfig::from_file(&path.join("config.json"))?;
        let bytes = self.estimate(&path, &config)?;
        let used = self.used_bytes();
        if used + bytes > self.cfg.memory_budget {
            return Err(ServeError::Conflict(format!(
                "loading '{name}' version {version} needs {} MiB, but {} MiB of the {} MiB budget are in use",
                bytes >> 20,
                used >> 20,
                self.cfg.memory_budget >> 20
            )));
        }
        let model =
            PagedModel::load_as(&path, self.cfg.threads, self.cfg.weights).map_err(|source| {
                ServeError::Load {
                    path: path.clone(),
                    source,
                }
            })?;
        // What it holds, now that it is known.
        let bytes = model.weight_bytes() + self.kv_bytes(&config);
        let tokenizer = TextTokenizer::from_dir(&path)?;
        let template = tokenizer
            .as_ref()
            .filter(|_| path.join("autoglm.json").is_file())
            .and_then(|t| Some((t.token_id("<s>")?, t.token_id("<sep>")?)));
        let engine = Engine::start(
            model,
            self.cfg.engine.clone(),
            policy.build(),
            self.metrics.model(name, version),
        )?;
        let loaded = Arc::new(Loaded {
            name: name.to_string(),
            version,
            engine,
            config,
            tokenizer,
            bytes,
            policy,
            template,
        });
        {
            let mut models = self.lock();
            // Re-check under the lock: another load may have raced this one.
            let used = used_bytes(&models);
            let v = models
                .get_mut(name)
                .and_then(|m| m.versions.get_mut(&version))
                .ok_or_else(|| {
                    ServeError::NotFound(format!("model '{name}' version {version} was removed"))
                })?;
            if v.loaded.is_some() {
                return Ok(());
            }
            if used + bytes > self.cfg.memory_budget {
                return Err(ServeError::Conflict(format!(
                    "loading '{name}' version {version} would exceed the {} MiB budget",
                    self.cfg.memory_budget >> 20
                )));
            }
            v.loaded = Some(loaded);
        }
        self.save()
    }

    /// Unloads a version: it stops taking requests at once, finishes the ones it
    /// has (in the background) and frees its memory.
    ///
    /// # Errors
    /// 404 for an unknown model or version.
    pub fn unload(&self, name: &str, version: u64) -> Result<(), ServeError> {
        let taken = {
            let mut models = self.lock();
            let v = models
                .get_mut(name)
                .and_then(|m| m.versions.get_mut(&version))
                .ok_or_else(|| {
                    ServeError::NotFound(format!("model '{name}' has no version {version}"))
                })?;
            v.loaded.take()
        };
        if let Some(l) = taken {
            l.engine
                .state()
                .closed
                .store(true, std::sync::atomic::Ordering::Release);
            // The engine drains and its thread ends when the last request holding
            // the Arc lets go; dropping here only gives up the repository's share.
            drop(l);
        }
        self.save()
    }

    /// The loaded version serving `name` (`version`, or the policy's choice).
    ///
    /// # Errors
    /// 404 when the model, the version or a loaded serving version is missing.
    pub fn get(&self, name: &str, version: Option<u64>) -> Result<Arc<Loaded>, ServeError> {
        let models = self.lock();
        let m = models
            .get(name)
            .ok_or_else(|| ServeError::NotFound(format!("no model '{name}'")))?;
        let pick = match version {
            Some(v) => {
                if !m.serves(v) {
                    return Err(ServeError::NotFound(format!(
                        "version {v} of model '{name}' is not served (version policy {:?})",
                        m.version_policy
                    )));
                }
                m.versions.get(&v)
            }
            None => m
                .versions
                .iter()
                .rev()
                .find(|(&k, x)| x.loaded.is_some() && m.serves(k))
                .map(|(_, x)| x),
        };
        pick.and_then(|x| x.loaded.clone()).ok_or_else(|| {
            ServeError::NotFound(format!(
                "model '{name}'{} is not loaded",
                version.map(|v| format!(" version {v}")).unwrap_or_default()
            ))
        })
    }

    /// The only loaded model's name, if exactly one model has loaded versions
    /// (requests may then leave the model out).
    pub fn sole_model(&self) -> Option<String> {
        let models = self.lock();
        let mut it = models
            .iter()
            .filter(|(_, m)| m.versions.values().any(|v| v.loaded.is_some()));
        match (it.next(), it.next()) {
            (Some((n, _)), None) => Some(n.clone()),
            _ => None,
        }
    }

    /// Every registered version.
    pub fn list(&self) -> Vec<VersionInfo> {
        let models = self.lock();
        let mut out = Vec::new();
        for (name, m) in models.iter() {
            for (&v, x) in &m.versions {
                let serving = x.loaded.is_some() && m.serves(v);
                out.push(VersionInfo {
                    name: name.clone(),
                    version: v,
                    path: x.path.display().to_string(),
                    loaded: x.loaded.is_some(),
                    serving,
                    bytes: x.loaded.as_ref().map(|l| l.bytes),
                    policy: m.policy.name().to_string(),
                    queue: x.loaded.as_ref().map(|l| {
                        let s = l.engine.state();
                        (
                            s.waiting.load(std::sync::atomic::Ordering::Relaxed),
                            s.running.load(std::sync::atomic::Ordering::Relaxed),
                        )
                    }),
                });
            }
        }
        out
    }

    /// Bytes charged by loaded versions.
    pub fn used_bytes(&self) -> usize {
        used_bytes(&self.lock())
    }

    /// Every loaded version (for shutdown).
    pub fn loaded(&self) -> Vec<Arc<Loaded>> {
        self.lock()
            .values()
            .flat_map(|m| m.versions.values().filter_map(|v| v.loaded.clone()))
            .collect()
    }

    /// Forgets every loaded version (shutdown): engines drain as their last
    /// requests finish.
    pub fn unload_all(&self) -> Vec<Arc<Loaded>> {
        let mut models = self.lock();
        models
            .values_mut()
            .flat_map(|m| m.versions.values_mut().filter_map(|v| v.loaded.take()))
            .collect()
    }

    fn save(&self) -> Result<(), ServeError> {
        let saved = {
            let models = self.lock();
            Saved {
                models: models
                    .iter()
                    .map(|(n, m)| {
                        (
                            n.clone(),
                            SavedModel {
                                version_policy: m.version_policy,
                                policy: m.policy.clone(),
                                versions: m
                                    .versions
                                    .iter()
                                    .map(|(&v, x)| {
                                        (
                                            v,
                                            SavedVersion {
                                                path: x.path.clone(),
                                                loaded: x.loaded.is_some(),
                                            },
                                        )
                                    })
                                    .collect(),
                            },
                        )
                    })
                    .collect(),
            }
        };
        let file = self.root.join(REGISTRY_FILE);
        let tmp = self.root.join(format!("{REGISTRY_FILE}.tmp"));
        let text = serde_json::to_string_pretty(&saved).map_err(|source| ServeError::Registry {
            context: "registry".into(),
            source,
        })?;
        std::fs::write(&tmp, text)
            .and_then(|()| std::fs::rename(&tmp, &file))
            .map_err(|source| ServeError::Io {
                context: file.display().to_string(),
                source,
            })
    }
}

fn used_bytes(models: &BTreeMap<String, Model>) -> usize {
    models
        .values()
        .flat_map(|m| m.versions.values())
        .filter_map(|v| v.loaded.as_ref().map(|l| l.bytes))
        .sum()
}
