//! `autoglm serve` (the model server) and `autoglm bench-serve` (its load generator).

pub mod loadgen;

use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use autoglm_serve::{ModelSpec, PolicyConfig, ServeFile, Server, ServerConfig};
use clap::{Args, ValueEnum};
use loadgen::{Api, LoadConfig, Mode};

/// `autoglm serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Serve this exported model directory (registered as `--name`, version 1); its
    /// parent is the repository root unless `--root` says otherwise.
    #[arg(long, conflicts_with = "config")]
    pub model: Option<PathBuf>,
    /// Server settings and models to load (`serve.yaml`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Repository root (model directories must lie under it; the registry is kept
    /// there).
    #[arg(long)]
    pub root: Option<PathBuf>,
    /// The model's name with `--model`.
    #[arg(long, default_value = "glm")]
    pub name: String,
    /// Address to listen on.
    #[arg(long)]
    pub host: Option<IpAddr>,
    /// Port (0 picks a free one; the address is printed).
    #[arg(long)]
    pub port: Option<u16>,
    /// Kernel threads per model.
    #[arg(long)]
    pub threads: Option<usize>,
    /// Batching policy: `feedback[:TARGET_MS[:MAX_BATCH]]` (default),
    /// `rate-table`, `static[:MAX_BATCH[:DELAY_MS]]`, `continuous[:MAX_BATCH]`.
    #[arg(long)]
    pub policy: Option<String>,
    /// Key/value cache per model, MiB.
    #[arg(long)]
    pub kv_cache_mib: Option<usize>,
    /// Memory budget of all loaded models, MiB.
    #[arg(long)]
    pub memory_budget_mib: Option<usize>,
    /// Store every model's linear weights as `f32`, `f16`, `bf16`, `q8_0` or `q4_0`
    /// (the output head one step higher) instead of as its checkpoint stores them.
    #[arg(long)]
    pub weights: Option<autoglm_models::Storage>,
    /// Response cache, MiB (0 disables it).
    #[arg(long)]
    pub response_cache_mib: Option<usize>,
    /// Environment variable holding a bearer token to require.
    #[arg(long)]
    pub token_env: Option<String>,
    /// Stop after this many seconds (for scripts and tests; Ctrl-C always stops).
    #[arg(long)]
    pub exit_after_s: Option<f64>,
}

/// Builds the server configuration and the models from the arguments and file.
///
/// # Errors
/// Unreadable or invalid `serve.yaml`, a bad policy, a missing token variable.
pub fn server_config(args: &ServeArgs) -> Result<(ServerConfig, Vec<ModelSpec>)> {
    let file: ServeFile = match &args.config {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_saphyr::from_str(&text).map_err(|e| anyhow::anyhow!("{}: {e}", p.display()))?
        }
        None => ServeFile {
            host: None,
            port: None,
            root: None,
            memory_budget_mib: None,
            threads: None,
            kv_cache_mib: None,
            token_budget: None,
            max_waiting: None,
            response_cache_mib: None,
            max_tokens: None,
            token_env: None,
            policy: None,
            models: Vec::new(),
        },
    };
    let base = args
        .config
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let root = match (&args.root, &file.root, &args.model) {
        (Some(r), _, _) => r.clone(),
        (None, Some(r), _) => base.join(r),
        (None, None, Some(m)) => m
            .canonicalize()
            .with_context(|| format!("model directory {}", m.display()))?
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("/")),
        (None, None, None) if args.config.is_some() => {
            if base.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                base.clone()
            }
        }
        (None, None, None) => bail!("give --model DIR or --config serve.yaml"),
    };
    let mut cfg = ServerConfig::new(root);
    let host: IpAddr = match (args.host, &file.host) {
        (Some(h), _) => h,
        (None, Some(h)) => h.parse().with_context(|| format!("host '{h}'"))?,
        (None, None) => IpAddr::from([127, 0, 0, 1]),
    };
    cfg.addr = SocketAddr::new(host, args.port.or(file.port).unwrap_or(8080));
    if let Some(t) = args.threads.or(file.threads) {
        cfg.repo.threads = t.max(1);
    }
    if let Some(m) = args.memory_budget_mib.or(file.memory_budget_mib) {
        cfg.repo.memory_budget = m << 20;
    }
    cfg.repo.weights = args.weights;
    if let Some(m) = args.kv_cache_mib.or(file.kv_cache_mib) {
        cfg.repo.engine.kv_cache_bytes = m << 20;
    }
    if let Some(t) = file.token_budget {
        cfg.repo.engine.token_budget = t.max(1);
    }
    if let Some(w) = file.max_waiting {
        cfg.repo.engine.max_waiting = w;
    }
    if let Some(m) = args.response_cache_mib.or(file.response_cache_mib) {
        cfg.cache_bytes = m << 20;
    }
    if let Some(m) = file.max_tokens {
        cfg.limits.max_tokens = m;
    }
    if let Some(p) = &file.policy {
        p.check()
            .map_err(|e| anyhow::anyhow!("serve.yaml policy: {e}"))?;
        cfg.repo.default_policy = p.clone();
    }
    if let Some(p) = &args.policy {
        cfg.repo.default_policy = PolicyConfig::parse(p).map_err(anyhow::Error::msg)?;
    }
    if let Some(var) = args.token_env.as_ref().or(file.token_env.as_ref()) {
        let t = std::env::var(var).with_context(|| format!("bearer token variable {var}"))?;
        if t.is_empty() {
            bail!("bearer token variable {var} is empty");
        }
        cfg.token = Some(t);
    }
    let mut models = file.models.clone();
    if let Some(m) = &args.model {
        let dir = m
            .canonicalize()
            .with_context(|| format!("model directory {}", m.display()))?;
        models.push(ModelSpec {
            name: args.name.clone(),
            path: dir,
            version: None,
            policy: None,
            version_policy: None,
        });
    }
    Ok((cfg, models))
}

/// Runs `autoglm serve` until Ctrl-C (or `--exit-after-s`), then drains.
///
/// # Errors
/// Configuration, start-up and I/O errors.
pub fn serve(args: ServeArgs, out: &mut dyn Write) -> Result<()> {
    let (cfg, models) = server_config(&args)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    rt.block_on(async {
        let (server, warnings) = Server::bind(cfg, &models)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        for w in warnings {
            writeln!(out, "warning: {w}")?;
        }
        let addr = server.local_addr()?;
        for v in server.state().repo.list() {
            writeln!(
                out,
                "model {} version {} ({}; {}{})",
                v.name,
                v.version,
                v.path,
                v.policy,
                if v.loaded { ", loaded" } else { "" }
            )?;
        }
        writeln!(out, "listening on http://{addr}")?;
        out.flush()?;
        let exit_after = args.exit_after_s;
        server
            .run(async move {
                match exit_after {
                    Some(s) => {
                        tokio::select! {
                            _ = tokio::signal::ctrl_c() => {}
                            _ = tokio::time::sleep(Duration::from_secs_f64(s)) => {}
                        }
                    }
                    None => {
                        let _ = tokio::signal::ctrl_c().await;
                    }
                }
            })
            .await?;
        writeln!(out, "stopped")?;
        Ok(())
    })
}

/// Load generation modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadMode {
    /// Sequential requests.
    Single,
    /// Open-loop Poisson arrivals at each of `--rates`.
    Poisson,
    /// Closed loop with `--concurrency` clients.
    Closed,
}

/// Which API to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadApi {
    /// llama.cpp's `/completion` (ours serves it too).
    Llama,
    /// OpenAI's `/v1/completions`.
    Openai,
}

/// `autoglm bench-serve`.
#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// Server URL (`http://HOST:PORT`).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// API to call.
    #[arg(long, value_enum, default_value_t = LoadApi::Llama)]
    pub api: LoadApi,
    /// Model name (OpenAI API).
    #[arg(long)]
    pub model: Option<String>,
    /// Environment variable holding a bearer token.
    #[arg(long)]
    pub token_env: Option<String>,
    /// Mode.
    #[arg(long, value_enum, default_value_t = LoadMode::Closed)]
    pub mode: LoadMode,
    /// Prompts: a JSON list of token-id lists (as `make_prompts.py` writes);
    /// without it, random prompts of `--prompt-len` ids below `--vocab`.
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Prompt length of random prompts.
    #[arg(long, default_value_t = 32)]
    pub prompt_len: usize,
    /// Vocabulary of random prompts.
    #[arg(long, default_value_t = 32000)]
    pub vocab: u32,
    /// Tokens generated per request.
    #[arg(long, default_value_t = 64)]
    pub gen_tokens: usize,
    /// Requests (single mode).
    #[arg(long, default_value_t = 5)]
    pub n: usize,
    /// Rates in requests per second (Poisson mode), comma-separated.
    #[arg(long, default_value = "0.5,1,2,4,8")]
    pub rates: String,
    /// Clients (closed mode).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// Seconds per level.
    #[arg(long, default_value_t = 60.0)]
    pub max_s: f64,
    /// Requests per level at most.
    #[arg(long, default_value_t = 200)]
    pub max_req: usize,
    /// Seconds to wait for in-flight requests after the last Poisson arrival.
    #[arg(long, default_value_t = 90.0)]
    pub drain_s: f64,
    /// Skip higher rates once one saturates.
    #[arg(long)]
    pub stop_when_saturated: bool,
    /// Goodput counts requests finishing within this many milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub latency_target_ms: u64,
    /// Per-request timeout, seconds.
    #[arg(long, default_value_t = 300.0)]
    pub timeout_s: f64,
    /// Label of the result lines.
    #[arg(long, default_value = "autoglm")]
    pub label: String,
    /// Seed of the arrivals and random prompts.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Append the JSON lines here too.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `autoglm bench-serve`: one JSON line per level on `out`.
///
/// # Errors
/// A bad URL, unreadable prompts, no prompts.
pub fn bench_serve(args: BenchServeArgs, out: &mut dyn Write) -> Result<()> {
    let hostport = args
        .url
        .strip_prefix("http://")
        .with_context(|| format!("--url {} must start with http://", args.url))?
        .trim_end_matches('/');
    let addr: SocketAddr = std::net::ToSocketAddrs::to_socket_addrs(hostport)
        .with_context(|| format!("--url {}", args.url))?
        .next()
        .with_context(|| format!("--url {} resolves to nothing", args.url))?;
    let prompts: Vec<Vec<u32>> = match &args.prompts {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| {
                format!("{}: expected a JSON list of token-id lists", p.display())
            })?
        }
        None => loadgen::random_prompts(400, args.prompt_len, 16, args.vocab, args.seed),
    };
    if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
        bail!("no prompts (or an empty one)");
    }
    let token = match &args.token_env {
        Some(v) => Some(std::env::var(v).with_context(|| format!("token variable {v}"))?),
        None => None,
    };
    let mode = match args.mode {
        LoadMode::Single => Mode::Single { n: args.n },
        LoadMode::Closed => Mode::Closed {
            concurrency: args.concurrency,
            max_s: args.max_s,
            max_req: args.max_req,
        },
        LoadMode::Poisson => Mode::Poisson {
            rates: args
                .rates
                .split(',')
                .map(|r| {
                    r.trim()
                        .parse::<f64>()
                        .with_context(|| format!("rate '{r}'"))
                })
                .collect::<Result<_>>()?,
            max_s: args.max_s,
            max_req: args.max_req,
            drain_s: args.drain_s,
            stop_when_saturated: args.stop_when_saturated,
        },
    };
    let cfg = LoadConfig {
        addr,
        api: match args.api {
            LoadApi::Llama => Api::Llama,
            LoadApi::Openai => Api::OpenAi,
        },
        model: args.model.clone(),
        token,
        prompts,
        gen_tokens: args.gen_tokens,
        timeout: Duration::from_secs_f64(args.timeout_s),
        latency_target: Duration::from_millis(args.latency_target_ms),
        label: args.label.clone(),
        seed: args.seed,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let mut file = match &args.out {
        Some(p) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?,
        ),
        None => None,
    };
    let mut failed = None;
    rt.block_on(loadgen::run(cfg, mode, |s| {
        let line = serde_json::to_string(s).unwrap_or_default();
        let r = writeln!(out, "{line}").and_then(|()| out.flush());
        let r = r.and_then(|()| match &mut file {
            Some(f) => writeln!(f, "{line}"),
            None => Ok(()),
        });
        if let Err(e) = r {
            failed = Some(e);
        }
    }))
    .map_err(anyhow::Error::msg)?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    Ok(())
}
