//! `autoglm-edge`: one sequence on a small device.
//!
//! The runtime maps a quantized checkpoint (`autoglm quantize --to q4 --head q4`) and
//! reads its weights in place ([`PagedModel::map`]): the q8_0/q4_0 matrices run on the
//! file's blocks, embedding rows are read from the file as tokens need them, and only
//! norms, biases, the key/value cache and a step's buffers live on the heap. The
//! prompt is encoded with the whole tokenizer, which is then swapped for a copy that
//! only decodes ([`TextTokenizer::decoding_only`]). Before it reads a weight the
//! runtime computes what the run needs ([`Need`]: the weights every step touches,
//! cache, buffers, what the process already holds, and the tokenizer's build) and
//! refuses, naming each part, when that exceeds the memory budget. It has no HTTP,
//! gRPC or async stack (`cargo xtask deps` checks).
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! use autoglm_edge::{run, EdgeOptions};
//! use autoglm_models::{init_weights, save_pretrained_with, ModelConfig, Storage};
//! use tokenizers::models::bpe::BPE;
//! use tokenizers::pre_tokenizers::byte_level::ByteLevel;
//!
//! // A small random GLM stored as q4_0 throughout, with a byte-level tokenizer.
//! let dir = tempfile::tempdir()?;
//! let cfg = ModelConfig::from_json(
//!     r#"{"model_type": "glm", "vocab_size": 288, "hidden_size": 64,
//!         "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
//!         "num_key_value_heads": 2, "head_dim": 16, "max_position_embeddings": 128}"#,
//!     dir.path(),
//! )?;
//! let weights = init_weights(&cfg, 0.02, 0)?;
//! save_pretrained_with(dir.path(), &cfg, &weights, Storage::Q4_0, Storage::Q4_0)?;
//! let mut bytes: Vec<char> = ByteLevel::alphabet().into_iter().collect();
//! bytes.sort();
//! let vocab: tokenizers::models::bpe::Vocab =
//!     bytes.iter().enumerate().map(|(i, c)| (c.to_string(), i as u32)).collect();
//! let mut tok = tokenizers::Tokenizer::new(BPE::builder().vocab_and_merges(vocab, vec![]).build()?);
//! tok.with_pre_tokenizer(Some(ByteLevel::default()));
//! tok.with_decoder(Some(ByteLevel::default()));
//! tok.save(dir.path().join("tokenizer.json"), false)?;
//!
//! let opts = EdgeOptions {
//!     memory_budget: Some(64 << 20), // limit to 64 MiB
//!     ..EdgeOptions::new(dir.path().into(), "The Eagle is a pub".into(), 8)
//! };
//! let report = run(&opts, &mut |text| print!("{text}"))?;
//! // One token per byte, with the space the pre-tokenizer puts in front.
//! assert_eq!(report.prompt_tokens, 19);
//! assert_eq!(report.generated_tokens, 8);
//! assert!(report.need.total() <= 64 << 20);
//! # Ok(())
//! # }
//! ```

mod alloc;

use std::path::PathBuf;
use std::time::Instant;

use autoglm_models::{
    Chunk, GenerationOptions, MemoryNeed, PagedCache, PagedModel, Sampler, StreamDecoder,
    TextTokenizer,
};
use serde::Serialize;

pub use alloc::{heap_in_use, heap_peak, CountingAlloc};

/// Positions per key/value cache block.
const BLOCK: usize = 16;

/// What the process takes on once it runs the model, beyond its measured need: the
/// code of the kernels paged in by the first step, the kernel threads' stacks and
/// allocator arenas (0.7 MB on the serving benchmark's model, one thread).
pub const RUNTIME_MARGIN: usize = 1 << 20;

/// Errors of a run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The model, its files or a step failed.
    #[error(transparent)]
    Model(#[from] autoglm_models::Error),
    /// The run would not fit the budget.
    #[error("the run needs {} MiB but the memory budget is {} MiB: {}", mib(*need), mib(*budget), explain(parts))]
    Budget {
        /// Bytes needed in all.
        need: usize,
        /// The budget in bytes.
        budget: usize,
        /// What the need is made of.
        parts: Box<Need>,
    },
    /// Bad options or input.
    #[error("{0}")]
    Input(String),
}

fn mib(bytes: usize) -> String {
    format!("{:.1}", bytes as f64 / (1 << 20) as f64)
}

fn explain(n: &Need) -> String {
    let m = &n.model;
    format!(
        "weights read every step {} MiB, embedding rows {} MiB, weights copied to memory {} MiB, \
         key/value cache for {} positions {} MiB, buffers {} MiB, and the process so far {} MiB; \
         building the tokenizer peaked at {} MiB",
        mib(m.mapped),
        mib(m.embedding),
        mib(m.heap),
        n.positions,
        mib(m.cache),
        mib(m.scratch),
        mib(n.process),
        mib(n.tokenizer_peak)
    )
}

/// A run's settings.
#[derive(Debug, Clone)]
pub struct EdgeOptions {
    /// The model directory (`config.json`, `model.safetensors`, `tokenizer.json`).
    pub model: PathBuf,
    /// The prompt text.
    pub prompt: String,
    /// Tokens to generate at most.
    pub max_new_tokens: usize,
    /// Positions the cache holds (`None`: the prompt's and the new tokens').
    pub context: Option<usize>,
    /// Bytes the run may take in all (`None`: no limit).
    pub memory_budget: Option<usize>,
    /// Kernel threads.
    pub threads: usize,
    /// Prompt tokens per step.
    pub chunk: usize,
    /// Go on past the model's end-of-sequence tokens.
    pub ignore_eos: bool,
}

impl EdgeOptions {
    /// Greedy generation of up to `max_new_tokens` for `prompt` on every core, no
    /// budget, prompt steps of 32 tokens.
    pub fn new(model: PathBuf, prompt: String, max_new_tokens: usize) -> EdgeOptions {
        EdgeOptions {
            model,
            prompt,
            max_new_tokens,
            context: None,
            memory_budget: None,
            threads: std::thread::available_parallelism().map_or(1, usize::from),
            chunk: 32,
            ignore_eos: false,
        }
    }
}

/// What a run needs, computed before loading.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Need {
    /// The model's part ([`PagedModel::memory_need`]).
    #[serde(serialize_with = "need_json")]
    pub model: MemoryNeed,
    /// What the process held when the need was computed (resident set on Linux, else
    /// the counted heap): code, the tokenizer.
    pub process: usize,
    /// Positions the cache holds.
    pub positions: usize,
    /// The resident set's peak while the tokenizer was built (its build allocates
    /// several times what it keeps).
    pub tokenizer_peak: usize,
}

impl Need {
    /// Bytes in all: the larger of the run (with [`RUNTIME_MARGIN`]) and the
    /// tokenizer's build.
    pub fn total(&self) -> usize {
        (self.model.total() + self.process + RUNTIME_MARGIN).max(self.tokenizer_peak)
    }
}

fn need_json<S: serde::Serializer>(m: &MemoryNeed, s: S) -> Result<S::Ok, S::Error> {
    serde_json::json!({
        "mapped": m.mapped,
        "embedding": m.embedding,
        "heap": m.heap,
        "cache": m.cache,
        "scratch": m.scratch,
    })
    .serialize(s)
}

/// What a run did.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Tokens generated.
    pub generated_tokens: usize,
    /// The generated tokens.
    pub tokens: Vec<u32>,
    /// The generated text.
    pub text: String,
    /// What was computed before loading.
    pub need: Need,
    /// Seconds to map the model.
    pub load_s: f64,
    /// Seconds for the prompt.
    pub prompt_s: f64,
    /// Seconds for the generated tokens after the first.
    pub decode_s: f64,
    /// Generated tokens per second after the first (each is one step).
    pub decode_tokens_per_s: f64,
    /// The most heap in use at once (zero without [`CountingAlloc`]).
    pub heap_peak: usize,
    /// Peak resident set, anonymous and file-backed (`VmHWM`; Linux only).
    pub vm_hwm: Option<usize>,
    /// The resident set when generation ended: anonymous (heap, stacks) and
    /// file-backed (mapped weights, code) (`RssAnon`, `RssFile`; Linux only).
    pub rss_anon: Option<usize>,
    /// See `rss_anon`.
    pub rss_file: Option<usize>,
    /// The resident set and its peak so far after each phase (Linux only).
    pub phases: Vec<Phase>,
}

/// The resident set after a phase of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// What had just been done.
    pub after: &'static str,
    /// `VmRSS`.
    pub rss: Option<usize>,
    /// `VmHWM`.
    pub peak: Option<usize>,
}

impl Phase {
    fn now(after: &'static str) -> Phase {
        Phase {
            after,
            rss: proc_status("VmRSS"),
            peak: proc_status("VmHWM"),
        }
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`); `None` off Linux.
pub fn proc_status(key: &str) -> Option<usize> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kb: usize = line[key.len()..]
        .trim_start_matches(':')
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Hands the allocator's free pages back to the system. glibc keeps freed heap
/// resident where it is not at the top of the heap: building the tokenizer frees
/// megabytes that would otherwise stay in the resident set for the whole run. Pages
/// in use (weights, cache) are never dropped.
fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only returns memory the allocator holds free.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Generates for one prompt, calling `on_text` with each piece of text as it is
/// released.
///
/// # Errors
/// [`Error::Budget`] before anything is loaded when the run would exceed the
/// budget; [`Error::Input`] for an empty prompt, a model without a tokenizer or a
/// context shorter than the run; [`Error::Model`] for the model's files and steps.
pub fn run(opts: &EdgeOptions, on_text: &mut dyn FnMut(&str)) -> Result<Report, Error> {
    // The prompt is encoded with the whole tokenizer, which is then dropped for a
    // copy that only decodes: splitting text on a large added vocabulary takes
    // automata of megabytes that generating does not need.
    let whole = TextTokenizer::from_dir(&opts.model)?.ok_or_else(|| {
        Error::Input(format!(
            "{}: no tokenizer.json (the edge runtime takes text)",
            opts.model.display()
        ))
    })?;
    let prompt = whole.encode(&opts.prompt)?;
    let tokenizer = whole.decoding_only();
    drop(whole);
    release_free_heap();
    let mut phases = vec![Phase::now("tokenizer built, prompt encoded")];
    if prompt.is_empty() {
        return Err(Error::Input("the prompt has no tokens".into()));
    }
    let wanted = prompt.len() + opts.max_new_tokens;
    let positions = opts.context.unwrap_or(wanted);
    if positions < wanted {
        return Err(Error::Input(format!(
            "a context of {positions} positions does not hold the prompt's {} tokens and {} new ones",
            prompt.len(),
            opts.max_new_tokens
        )));
    }
    let chunk = opts.chunk.max(1);
    let need = Need {
        model: PagedModel::memory_need(&opts.model, positions, chunk, BLOCK)?,
        process: proc_status("VmRSS").unwrap_or_else(heap_in_use),
        positions,
        tokenizer_peak: proc_status("VmHWM").unwrap_or_else(heap_peak),
    };
    if let Some(budget) = opts.memory_budget {
        if need.total() > budget {
            return Err(Error::Budget {
                need: need.total(),
                budget,
                parts: Box::new(need),
            });
        }
    }

    let t0 = Instant::now();
    let mut model = PagedModel::map(&opts.model, opts.threads)?;
    let load_s = t0.elapsed().as_secs_f64();
    phases.push(Phase::now("model mapped"));
    let cfg = model.config().clone();
    let mut cache = PagedCache::new(&cfg, BLOCK, positions.div_ceil(BLOCK))?;
    let mut table = Vec::new();
    if !cache.reserve(&mut table, positions) {
        return Err(Error::Input(format!("a cache of {positions} positions")));
    }
    let t1 = Instant::now();
    let mut logits = Vec::new();
    for (i, part) in prompt.chunks(chunk).enumerate() {
        let start = i * chunk;
        logits = model.step(
            &mut cache,
            &[Chunk {
                tokens: part,
                start,
                blocks: &table,
                logits: start + part.len() == prompt.len(),
            }],
        )?;
    }
    let prompt_s = t1.elapsed().as_secs_f64();
    phases.push(Phase::now("prompt run"));

    let options = GenerationOptions {
        max_new_tokens: opts.max_new_tokens,
        ignore_eos: opts.ignore_eos,
        ..GenerationOptions::default()
    };
    let stops = options.stops(&cfg);
    let mut sampler = Sampler::new(options)?;
    let mut seen = prompt.clone();
    let mut stream = StreamDecoder::new();
    let mut first_done = None;
    for n in 0..opts.max_new_tokens {
        let next = sampler.next(&mut logits, &seen);
        seen.push(next);
        if let Some(d) = stream.push(Some(&tokenizer), next)? {
            on_text(&d.text);
        }
        if n == 0 {
            first_done = Some(Instant::now());
        }
        if stops.contains(&next) || n + 1 == opts.max_new_tokens {
            break;
        }
        logits = model.step(
            &mut cache,
            &[Chunk {
                tokens: &[next],
                start: seen.len() - 1,
                blocks: &table,
                logits: true,
            }],
        )?;
    }
    let decode_s = first_done.map_or(0.0, |t| t.elapsed().as_secs_f64());
    phases.push(Phase::now("tokens generated"));
    let rest = stream.finish(Some(&tokenizer))?;
    on_text(&rest.text);
    let generated = seen.len() - prompt.len();
    Ok(Report {
        prompt_tokens: prompt.len(),
        generated_tokens: generated,
        tokens: seen[prompt.len()..].to_vec(),
        text: stream.text().to_string(),
        need,
        load_s,
        prompt_s,
        decode_s,
        decode_tokens_per_s: if decode_s > 0.0 && generated > 1 {
            (generated - 1) as f64 / decode_s
        } else {
            0.0
        },
        heap_peak: heap_peak(),
        vm_hwm: proc_status("VmHWM"),
        rss_anon: proc_status("RssAnon"),
        rss_file: proc_status("RssFile"),
        phases,
    })
}
