//! `autoglm quantize`: a model stored as f16, bf16, q8_0 or q4_0.
//!
//! For a model `autoglm run` exported (it carries `autoglm.json`), the calibration
//! rows are the task's training rows and the copy is scored against the original on
//! the task's dev and test data (perplexity ratio, mean KL, top-1 agreement, BLEU,
//! ROUGE-L). Any other checkpoint is rounded to nearest and written.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use autoglm::{AutoTrainer, Task};
use autoglm_models::quantize::Method;
use autoglm_models::{
    load_weights, save_pretrained_with, Checkpoint, ModelConfig, Storage, StoragePlan,
};
use clap::Args;

/// `autoglm quantize`.
#[derive(Debug, Args)]
pub struct QuantizeArgs {
    /// The model directory (`config.json`, `model.safetensors`).
    #[arg(long)]
    pub model: PathBuf,
    /// The storage: `f16`, `bf16`, `q8` (`q8_0`) or `q4` (`q4_0`).
    #[arg(long)]
    pub to: Storage,
    /// The output head's and the embedding's storage (default: one step above the
    /// body's: q8_0 for q4_0, f16 for q8_0; a block format needs a block body).
    #[arg(long)]
    pub head: Option<Storage>,
    /// `awq` (calibrated on training rows; needs a model `autoglm run` exported) or
    /// `rtn` (round to nearest).
    #[arg(long, default_value = "awq")]
    pub method: Method,
    /// Training rows to calibrate on.
    #[arg(long, default_value_t = autoglm::DEFAULT_CALIBRATION_ROWS)]
    pub calibration_rows: usize,
    /// Where the quantized model goes (replaced if it exists).
    #[arg(long)]
    pub out: PathBuf,
    /// Kernel threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

/// Runs `autoglm quantize`, printing what was stored and, for an `autoglm run` export,
/// the scores as JSON.
///
/// # Errors
/// Unreadable models, a calibrated method for a checkpoint without a task, or the
/// errors of quantizing and scoring.
pub fn run(a: QuantizeArgs, out: &mut dyn Write) -> Result<()> {
    let info = a.model.join("autoglm.json");
    if !info.exists() {
        if a.method == Method::Awq && a.to.block_format().is_some() {
            bail!(
                "{}: no autoglm.json, so no task to calibrate on; use --method rtn",
                a.model.display()
            );
        }
        return plain(&a, out);
    }
    let text =
        std::fs::read_to_string(&info).with_context(|| format!("reading {}", info.display()))?;
    let v: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", info.display()))?;
    let mut task: Task = serde_json::from_value(v["task"].clone())
        .with_context(|| format!("{}: field 'task'", info.display()))?;
    let work = a.out.with_extension("work");
    task.output = Some(work.clone());
    task.tokenizer.path = Some(a.model.join("tokenizer.json"));
    task.model.checkpoint = None;
    task.search.threads = a.threads.max(1);
    let decoding = match serde_json::from_value(v["scores"]["decoding"].clone()) {
        Ok(d) => d,
        Err(_) => task.search.decoding.candidates().swap_remove(0),
    };
    let at = AutoTrainer::new(task)?;
    let res = at.quantize_model(
        &a.model,
        &a.out,
        &plan(&a),
        a.method,
        &decoding,
        a.calibration_rows,
    );
    std::fs::remove_dir_all(&work).ok();
    let e = res?;
    writeln!(out, "{}", serde_json::to_string_pretty(&e)?)?;
    Ok(())
}

/// The body as asked, the head as `--head` says or one step above.
fn plan(a: &QuantizeArgs) -> StoragePlan {
    let plan = autoglm_models::storage_plan(a.to);
    match a.head {
        Some(h) => plan.with("head.w", h),
        None => plan,
    }
}

/// Round to nearest for a checkpoint without a task.
fn plain(a: &QuantizeArgs, out: &mut dyn Write) -> Result<()> {
    let config = ModelConfig::from_file(&a.model.join("config.json"))?;
    let ck = Checkpoint::open(&a.model)?;
    let weights = load_weights(&config, &ck)?;
    if a.out.exists() {
        std::fs::remove_dir_all(&a.out)
            .with_context(|| format!("replacing {}", a.out.display()))?;
    }
    let plan = plan(a);
    let stored = save_pretrained_with(&a.out, &config, &weights, a.to, plan.storage_of("head.w"))?;
    copy_side_files(&a.model, &a.out)?;
    let bytes: usize = stored.iter().map(|s| s.bytes).sum();
    let fallback: Vec<&str> = stored
        .iter()
        .filter(|s| s.storage != s.asked)
        .map(|s| s.name.as_str())
        .collect();
    writeln!(
        out,
        "{}: {} MiB as {} (round to nearest); fallback f16: {}",
        a.out.display(),
        bytes as f64 / (1 << 20) as f64,
        a.to,
        if fallback.is_empty() {
            "none".to_string()
        } else {
            fallback.join(", ")
        }
    )?;
    Ok(())
}

fn copy_side_files(from: &Path, to: &Path) -> Result<()> {
    for f in ["tokenizer.json", "generation_config.json"] {
        let p = from.join(f);
        if p.exists() {
            std::fs::copy(&p, to.join(f)).with_context(|| format!("copying {}", p.display()))?;
        }
    }
    Ok(())
}

/// `autoglm gguf`.
#[derive(Debug, Args)]
pub struct GgufArgs {
    /// The model directory (`config.json`, the weights, `tokenizer.json`).
    #[arg(long)]
    pub model: PathBuf,
    /// The linear weights' type: `f32`, `f16`, `bf16`, `q8` (`q8_0`) or `q4` (`q4_0`).
    #[arg(long, default_value = "f16")]
    pub to: Storage,
    /// The GGUF file to write.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `autoglm gguf`: the model as one GGUF file for llama.cpp.
///
/// # Errors
/// Unreadable models, architectures llama.cpp's loader would refuse, I/O errors.
pub fn gguf(a: GgufArgs, out: &mut dyn Write) -> Result<()> {
    let e = autoglm_models::export_gguf(&a.model, &a.out, a.to)?;
    let mut types = std::collections::BTreeMap::new();
    for (_, t) in &e.tensors {
        *types.entry(t.name()).or_insert(0usize) += 1;
    }
    writeln!(
        out,
        "{}: {} tensors ({}), arch {}, {:.2} MiB",
        a.out.display(),
        e.tensors.len(),
        types
            .iter()
            .map(|(t, n)| format!("{n} {t}"))
            .collect::<Vec<_>>()
            .join(", "),
        e.arch,
        e.bytes as f64 / (1 << 20) as f64
    )?;
    Ok(())
}
