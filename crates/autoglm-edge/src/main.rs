//! `autoglm-edge --model DIR --prompt TEXT --max-new-tokens N [--memory-budget MiB]`:
//! generates for one prompt from a mapped quantized model, within a memory budget.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use autoglm_edge::{run, CountingAlloc, EdgeOptions};
use clap::Parser;

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Generate for one prompt from a quantized model mapped from disk.
#[derive(Debug, Parser)]
#[command(name = "autoglm-edge", version)]
struct Args {
    /// Model directory: config.json, model.safetensors (from `autoglm quantize`) and
    /// tokenizer.json.
    #[arg(long)]
    model: PathBuf,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Tokens to generate at most.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Refuse to run when the run needs more than this many MiB.
    #[arg(long)]
    memory_budget: Option<f64>,
    /// Positions the key/value cache holds (default: the prompt's and the new tokens').
    #[arg(long)]
    context: Option<usize>,
    /// Kernel threads (default: every core).
    #[arg(long)]
    threads: Option<usize>,
    /// Prompt tokens per step.
    #[arg(long, default_value_t = 32)]
    chunk: usize,
    /// Go on past the model's end-of-sequence tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print a JSON report (need, timings, peak heap and resident set) on stderr.
    #[arg(long)]
    report: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let mut opts = EdgeOptions::new(args.model, args.prompt, args.max_new_tokens);
    opts.memory_budget = args.memory_budget.map(|m| (m * (1 << 20) as f64) as usize);
    opts.context = args.context;
    opts.chunk = args.chunk;
    opts.ignore_eos = args.ignore_eos;
    if let Some(t) = args.threads {
        opts.threads = t;
    }
    let mut out = std::io::stdout().lock();
    let result = run(&opts, &mut |text| {
        let _ = out.write_all(text.as_bytes());
        let _ = out.flush();
    });
    let _ = writeln!(out);
    match result {
        Ok(report) => {
            if args.report {
                eprintln!(
                    "{}",
                    serde_json::to_string(&report).expect("a report serialises")
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("autoglm-edge: {e}");
            ExitCode::FAILURE
        }
    }
}
