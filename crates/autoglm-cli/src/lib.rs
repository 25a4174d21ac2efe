//! The `autoglm` command line of Open-AutoGLM.
//!
//! Argument parsing (clap) and file input/output for every subcommand live here and
//! call the library crates' public APIs; no library crate depends on clap.
//! The binary is `autoglm`; [`run`] is its whole behaviour, so tests drive it in-process.
//!
//! ```text
//! autoglm eval bleu  --hyp out.txt --ref ref.txt [--ref ref2.txt] [--json] [--sentence]
//! autoglm eval chrf  --hyp out.txt --refs-jsonl refs.jsonl --chrf-word-order 2
//! autoglm eval ter   --hyp out.txt --ref ref.txt --ter-normalized
//! autoglm eval rouge --hyp out.txt --refs-jsonl refs.jsonl --types rouge1,rougeL --stem --json
//! autoglm graph verify-rules my_rules.txt --dtype f32 --dtype bf16 [--builtin] [--json]
//! autoglm train --model DIR --data train.jsonl --steps 100 --batch-size 8 --lr 1e-4 --schedule cosine --warmup-steps 10 --output OUT
//! autoglm serve --model runs/quickstart/model [--policy feedback:5000] [--port 8080] [--weights q8_0]
//! autoglm quantize --model runs/quickstart/model --to q4 [--method awq|rtn] --out runs/quickstart/model-q4_0
//! autoglm bench-serve --url http://127.0.0.1:8080 --mode poisson --rates 1,2,4 --gen-tokens 64
//! autoglm schedule --dag dag.json --platform platform.json --algo heft|cpop|heft-dup [--history runs.jsonl] [--out schedule.json]
//! ```

#![forbid(unsafe_code)]

pub mod auto;
pub mod eval;
pub mod graph;
pub mod io;
pub mod model;
pub mod quantize;
pub mod schedule;
pub mod serve;
pub mod train;

use clap::{Parser, Subcommand};

/// Open-AutoGLM: automatic building of GLM-family language models.
#[derive(Debug, Parser)]
#[command(name = "autoglm", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Score system outputs with BLEU, chrF, TER or ROUGE (sacrebleu / rouge-score numbers).
    Eval(eval::EvalArgs),
    /// Tensor-graph tools: verify rewrite rules by execution.
    Graph(graph::GraphArgs),
    /// Schedule a task DAG onto heterogeneous workers (HEFT, CPOP, a trained GCN, auto), or
    /// retrain the GCN (`schedule train`).
    Schedule(schedule::ScheduleArgs),
    /// Continue prompts with a GLM-family checkpoint (greedy or sampled; streams).
    Generate(model::GenerateArgs),
    /// Last-layer logits of a checkpoint for token ids, as JSON.
    Forward(model::ForwardArgs),
    /// Train a checkpoint on JSONL data (AdamW/SGD, schedules, clipping, checkpoints).
    Train(train::TrainArgs),
    /// Run a YAML task end to end: clean, tokenize, search, evaluate, export.
    Run(auto::RunArgs),
    /// Redraw a run directory's `report.html` (also for a run still going or cut
    /// short: what cannot be read is listed, the rest drawn).
    Report(auto::ReportArgs),
    /// Serve exported models over HTTP (REST, OpenAI-compatible completions with
    /// streaming, metrics) with continuous batching.
    Serve(serve::ServeArgs),
    /// Store a model's weights as f16, bf16, q8_0 or q4_0 (calibrated on the task's
    /// training rows, scored against the original), in the Hugging Face layout.
    Quantize(quantize::QuantizeArgs),
    /// Write a model as one GGUF file that llama.cpp runs (glm as `chatglm`, glm4).
    Gguf(quantize::GgufArgs),
    /// Load-test a completion server (ours or llama.cpp's): sequential, Poisson or
    /// closed-loop; JSON lines of throughput and latency.
    BenchServe(serve::BenchServeArgs),
}

/// Runs the command line `cli`, writing results to `out`.
///
/// # Errors
/// Input, option or metric errors, with the file and line where they apply.
pub fn run(cli: Cli, out: &mut dyn std::io::Write) -> anyhow::Result<()> {
    match cli.command {
        Command::Eval(args) => eval::run(args, out),
        Command::Graph(args) => graph::run(args, out),
        Command::Schedule(args) => schedule::run(args, out),
        Command::Generate(args) => model::generate(args, out),
        Command::Forward(args) => model::forward(args, out),
        Command::Train(args) => train::run(args, out),
        Command::Run(args) => auto::run(args, out),
        Command::Report(args) => auto::report(args, out),
        Command::Serve(args) => serve::serve(args, out),
        Command::BenchServe(args) => serve::bench_serve(args, out),
        Command::Quantize(args) => quantize::run(args, out),
        Command::Gguf(args) => quantize::gguf(args, out),
    }
}
