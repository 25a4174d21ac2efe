//! `autoglm train`: train a Hugging Face GLM-family checkpoint on JSONL data.

use std::io::Write;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Result};
use autoglm_models::TextTokenizer;
use autoglm_train::{
    Control, Dataset, OptimizerKind, RunOptions, Schedule, Tokenize, TrainConfig, TrainRun,
};
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
    /// this many steps (0: never).
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
            decay_steps: 0,
            decay_shape: Default::default(),
            min_lr_ratio: 0.0,
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

/// `autoglm train`.
///
/// # Errors
/// Unreadable model or data (naming the file and line), invalid options, a loss that
/// is not finite, or files that cannot be written.
pub fn run(args: TrainArgs, out: &mut dyn Write) -> Result<()> {
    let config = args.config()?;
    let options = RunOptions {
        save_every: args.save_every.and_then(NonZeroU64::new),
        keep_last: NonZeroUsize::new(1),
        resume: args.resume,
        copy_files_from: Some(args.model.clone()),
    };
    let mut run = TrainRun::start_or_resume(&args.output, &args.model, config, options)?;
    if let Some(ck) = run.resumed_from() {
        writeln!(
            out,
            "resuming from {} (step {})",
            ck.path.display(),
            ck.step
        )?;
    }
    let tokenizer = TextTokenizer::from_dir(&args.model)?;
    let data = Dataset::read_jsonl(
        &args.data,
        tokenizer.as_ref().map(|t| t as &dyn Tokenize),
        run.trainer().model_config().vocab_size,
        run.trainer().config().max_len,
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
    let started = Instant::now();
    let total = run.trainer().config().steps;
    let last = run.fit(&data, |_, r| {
        let _ = writeln!(
            out,
            "step {}/{total}  loss {:.6}  lr {:.3e}  grad norm {:.4}",
            r.step, r.loss, r.lr, r.grad_norm
        );
        Ok(Control::Continue)
    })?;
    let summary = serde_json::json!({
        "steps": run.trainer().steps_done(),
        "final_loss": last.map_or(f64::NAN, |r| r.loss),
        "seconds": started.elapsed().as_secs_f64(),
        "peak_step_bytes": run.trainer().peak_step_bytes(),
        "output": args.output,
    });
    writeln!(out, "{summary}")?;
    Ok(())
}
