//! `autoglm train`: train a Hugging Face GLM-family checkpoint on JSONL data.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use autoglm_models::TextTokenizer;
use autoglm_train::{Control, Dataset, OptimizerKind, Schedule, Tokenize, TrainConfig, Trainer};
use clap::Args;

/// `autoglm train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Checkpoint directory to start from (`config.json`, safetensors, optionally
    /// `tokenizer.json` for text rows).
    #[arg(long)]
    pub model: PathBuf,
    /// JSONL rows `{"text": …}` or `{"input_ids": […], "labels": […]}` (−100: no loss).
    #[arg(long)]
    pub data: PathBuf,
    /// Where the trained model (Hugging Face layout), `losses.jsonl` and checkpoints go.
    #[arg(long)]
    pub output: PathBuf,
    /// Optimizer steps.
    #[arg(long)]
    pub steps: u64,
    /// Examples per batch.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Batches whose gradients are averaged into one step.
    #[arg(long, default_value_t = 1)]
    pub grad_accum: usize,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: f64,
    /// `adamw` or `sgd`.
    #[arg(long, default_value = "adamw")]
    pub optimizer: String,
    /// Weight decay (decoupled for AdamW, L2 for SGD).
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    /// AdamW's β₁,β₂.
    #[arg(long, value_delimiter = ',', default_values_t = [0.9, 0.999])]
    pub betas: Vec<f64>,
    /// AdamW's ε.
    #[arg(long, default_value_t = 1e-8)]
    pub eps: f64,
    /// SGD's momentum.
    #[arg(long, default_value_t = 0.0)]
    pub momentum: f64,
    /// Learning-rate shape after the warm-up: constant, linear or cosine.
    #[arg(long, default_value = "constant")]
    pub schedule: Schedule,
    /// Steps of linear warm-up from 0.
    #[arg(long, default_value_t = 0)]
    pub warmup_steps: u64,
    /// Clip the gradients' global norm to this.
    #[arg(long)]
    pub clip_norm: Option<f64>,
    /// Batches in file order (otherwise a seeded permutation per epoch).
    #[arg(long)]
    pub no_shuffle: bool,
    /// Seed of the data order.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Cut examples to this many tokens.
    #[arg(long)]
    pub max_len: Option<usize>,
    /// Kernel threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Keep only the residual stream for the backward pass and recompute the rest of
    /// each block there: less memory, about one more forward pass of time.
    #[arg(long)]
    pub gradient_checkpointing: bool,
    /// Batch examples of similar length together (less padding).
    #[arg(long)]
    pub group_by_length: bool,
    /// Storage type of weights, activations and gradients: f32, or bf16 / f16 for
    /// mixed precision (f32 master weights; f16 with dynamic loss scaling).
    #[arg(long, default_value = "f32", value_parser = ["f32", "bf16", "f16"])]
    pub dtype: String,
    /// Write a checkpoint (`OUTPUT/checkpoint-STEP`, the previous one removed) every
    /// this many steps.
    #[arg(long)]
    pub save_every: Option<u64>,
    /// Continue from the latest checkpoint in `--output` (its settings; `--steps`
    /// and `--threads` from this command line).
    #[arg(long)]
    pub resume: bool,
}

impl TrainArgs {
    fn config(&self) -> Result<TrainConfig> {
        let optimizer = match self.optimizer.as_str() {
            "adamw" => {
                let [b1, b2] = self.betas[..] else {
                    bail!("--betas takes two numbers, got {:?}", self.betas);
                };
                OptimizerKind::AdamW {
                    betas: (b1, b2),
                    eps: self.eps,
                    weight_decay: self.weight_decay,
                }
            }
            "sgd" => OptimizerKind::Sgd {
                momentum: self.momentum,
                dampening: 0.0,
                nesterov: false,
                weight_decay: self.weight_decay,
            },
            other => bail!("unknown optimizer '{other}' (adamw or sgd)"),
        };
        Ok(TrainConfig {
            steps: self.steps,
            batch_size: self.batch_size,
            grad_accum: self.grad_accum,
            lr: self.lr,
            optimizer,
            schedule: self.schedule,
            warmup_steps: self.warmup_steps,
            clip_norm: self.clip_norm,
            shuffle: !self.no_shuffle,
            seed: self.seed,
            threads: self.threads,
            max_len: self.max_len,
            checkpointing: self.gradient_checkpointing,
            group_by_length: self.group_by_length,
            dtype: match self.dtype.as_str() {
                "bf16" => autoglm_graph::DType::BF16,
                "f16" => autoglm_graph::DType::F16,
                _ => autoglm_graph::DType::F32,
            },
        })
    }
}

/// The checkpoint directories in `dir`, by step.
fn checkpoints(dir: &Path) -> Vec<(u64, PathBuf)> {
    let mut out: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let step = name.strip_prefix("checkpoint-")?.parse().ok()?;
            Some((step, e.path()))
        })
        .collect();
    out.sort();
    out
}

/// Keeps the first `steps` lines of a `losses.jsonl` (a resumed run rewrites the rest).
fn truncate_losses(path: &Path, steps: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let kept: String = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s <= steps)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(path, kept).with_context(|| format!("writing {}", path.display()))
}

/// `autoglm train`.
///
/// # Errors
/// Unreadable model or data (naming the file and line), invalid options, a loss that
/// is not finite, or files that cannot be written.
pub fn run(args: TrainArgs, out: &mut dyn Write) -> Result<()> {
    let config = args.config()?;
    std::fs::create_dir_all(&args.output)
        .with_context(|| format!("creating {}", args.output.display()))?;
    let losses_path = args.output.join("losses.jsonl");
    let latest = if args.resume {
        checkpoints(&args.output).pop()
    } else {
        None
    };
    let mut trainer = match &latest {
        Some((step, dir)) => {
            truncate_losses(&losses_path, *step)?;
            writeln!(out, "resuming from {} (step {step})", dir.display())?;
            Trainer::resume_with(dir, |c| {
                c.steps = args.steps;
                c.threads = args.threads;
            })
            .with_context(|| format!("resuming from {}", dir.display()))?
        }
        None => {
            std::fs::write(&losses_path, "")
                .with_context(|| format!("writing {}", losses_path.display()))?;
            Trainer::from_pretrained(&args.model, config)
                .with_context(|| format!("loading {}", args.model.display()))?
        }
    };
    let tokenizer = TextTokenizer::from_dir(&args.model)?;
    let data = Dataset::read_jsonl(
        &args.data,
        tokenizer.as_ref().map(|t| t as &dyn Tokenize),
        trainer.model_config().vocab_size,
        trainer.config().max_len,
    )?;
    writeln!(
        out,
        "{}: {} examples ({} rows without a position to learn skipped{}, {} cut to --max-len)",
        args.data.display(),
        data.examples.len(),
        data.skipped.len(),
        if data.skipped.is_empty() {
            String::new()
        } else {
            format!(": lines {:?}", &data.skipped[..data.skipped.len().min(10)])
        },
        data.truncated
    )?;
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&losses_path)
        .with_context(|| format!("opening {}", losses_path.display()))?;
    let started = Instant::now();
    let total = trainer.config().steps;
    let mut last_loss = f64::NAN;
    let output = args.output.clone();
    trainer.fit(&data, |t, r| {
        last_loss = r.loss;
        let mut line = serde_json::json!({"step": r.step, "loss": r.loss, "lr": r.lr, "grad_norm": r.grad_norm});
        if r.skipped {
            line["skipped"] = true.into();
        }
        writeln!(log, "{line}").and_then(|()| log.flush()).map_err(|e| {
            autoglm_train::Error::Input(format!("{}: {e}", losses_path.display()))
        })?;
        let _ = writeln!(
            out,
            "step {}/{total}  loss {:.6}  lr {:.3e}  grad norm {:.4}",
            r.step, r.loss, r.lr, r.grad_norm
        );
        if args.save_every.is_some_and(|k| k > 0 && r.step % k == 0 && r.step < total) {
            let dir = output.join(format!("checkpoint-{}", r.step));
            t.save_checkpoint(&dir)?;
            for (_, old) in checkpoints(&output).into_iter().filter(|(s, _)| *s != r.step) {
                let _ = std::fs::remove_dir_all(old);
            }
        }
        Ok(Control::Continue)
    })?;
    trainer
        .save_pretrained(&args.output)
        .with_context(|| format!("writing {}", args.output.display()))?;
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ] {
        let src = args.model.join(f);
        if src.exists() {
            std::fs::copy(&src, args.output.join(f))
                .with_context(|| format!("copying {}", src.display()))?;
        }
    }
    let summary = serde_json::json!({
        "steps": trainer.steps_done(),
        "final_loss": last_loss,
        "seconds": started.elapsed().as_secs_f64(),
        "peak_step_bytes": trainer.peak_step_bytes(),
        "output": args.output,
    });
    writeln!(out, "{summary}")?;
    Ok(())
}
