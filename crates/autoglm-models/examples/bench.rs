//! Times a checkpoint's forward pass and greedy decoding (for
//! `benches/models/compare_transformers.py`).
//!
//! `cargo run --release -p autoglm-models --example bench -- --model DIR --batch 8 --seq 128`
//! `cargo run --release -p autoglm-models --example bench -- --model DIR --decode 128 --seq 32`
//! `--serve`: after loading, read `forward N` or `decode N` lines from stdin and answer
//! each with one JSON line of N timings (ms per forward pass; tokens/s per decode run).

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use autoglm_models::{GenerationOptions, LoadOptions, Model};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Checkpoint directory.
    #[arg(long)]
    model: PathBuf,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Tokens per sequence (the prompt length with `--decode`).
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Time greedy decoding of this many new tokens (batch 1) instead of a forward pass.
    #[arg(long)]
    decode: Option<usize>,
    /// Timed runs after one warm-up.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// Kernel threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Answer `forward N` / `decode N` lines from stdin.
    #[arg(long)]
    serve: bool,
    /// Print the time of each kernel over the timed runs (to stderr).
    #[arg(long)]
    profile: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let opts = LoadOptions {
        threads: a.threads,
        ..LoadOptions::default()
    };
    let mut m = Model::load(&a.model, &opts)?;
    let v = m.config().vocab_size as u32;
    // Fixed pseudo-random ids (the same on every run).
    let ids = |b: usize, t: usize| -> Vec<Vec<u32>> {
        (0..b)
            .map(|r| {
                (0..t)
                    .map(|i| ((r * 7919 + i * 104_729 + 13) as u32) % (v - 3) + 3)
                    .collect()
            })
            .collect()
    };
    let batch = ids(a.batch, a.seq);
    let prompt = ids(1, a.seq);
    let new_tokens = a.decode.unwrap_or(128);
    let sampling = GenerationOptions {
        max_new_tokens: new_tokens,
        ignore_eos: true,
        ..GenerationOptions::default()
    };
    let forward_ms = |m: &mut Model| -> Result<f64, Box<dyn std::error::Error>> {
        let t0 = Instant::now();
        let out = m.forward(&batch)?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        m.recycle(out);
        Ok(ms)
    };
    let decode_tps = |m: &mut Model| -> Result<f64, Box<dyn std::error::Error>> {
        let t0 = Instant::now();
        let out = m.generate(&prompt, &sampling, |_, _| {})?;
        Ok(out[0].len() as f64 / t0.elapsed().as_secs_f64())
    };
    if a.serve {
        let mut stdout = std::io::stdout().lock();
        forward_ms(&mut m)?;
        writeln!(stdout, "{}", serde_json::json!({"ready": true}))?;
        stdout.flush()?;
        for line in std::io::stdin().lock().lines() {
            let line = line?;
            let mut parts = line.split_whitespace();
            let (what, n) = (
                parts.next().unwrap_or(""),
                parts.next().unwrap_or("1").parse()?,
            );
            let mut xs = Vec::with_capacity(n);
            for _ in 0..n {
                xs.push(if what == "decode" {
                    decode_tps(&mut m)?
                } else {
                    forward_ms(&mut m)?
                });
            }
            writeln!(stdout, "{}", serde_json::json!({ what: xs }))?;
            stdout.flush()?;
        }
        return Ok(());
    }
    m.set_profiling(a.profile);
    if a.decode.is_some() {
        decode_tps(&mut m)?;
        let mut xs: Vec<f64> = (0..a.runs)
            .map(|_| decode_tps(&mut m))
            .collect::<Result<_, _>>()?;
        xs.sort_by(f64::total_cmp);
        println!(
            "{}",
            serde_json::json!({"prompt": a.seq, "new_tokens": new_tokens,
            "median_tokens_per_s": xs[xs.len() / 2], "best_tokens_per_s": xs[xs.len() - 1]})
        );
    } else {
        forward_ms(&mut m)?;
        let mut xs: Vec<f64> = (0..a.runs)
            .map(|_| forward_ms(&mut m))
            .collect::<Result<_, _>>()?;
        xs.sort_by(f64::total_cmp);
        println!(
            "{}",
            serde_json::json!({"batch": a.batch, "seq": a.seq,
            "median_ms": xs[xs.len() / 2], "best_ms": xs[0]})
        );
    }
    for (node, op, secs) in m
        .profile()
        .into_iter()
        .take(if a.profile { 400 } else { 0 })
    {
        eprintln!(
            "{node:>6} {op:20} {:9.3} ms/run",
            secs * 1e3 / (a.runs + 1) as f64
        );
    }
    Ok(())
}
