//! llama.cpp's `llama-bench` tests on the serving decoder (`PagedModel`): prompt
//! processing (`-p N`: one N-token prompt in one step) and text generation (`-n N`:
//! N single-token steps from an empty context), in tokens per second, one JSON line
//! per test with llama-bench's field names (`n_prompt`, `n_gen`, `n_threads`,
//! `avg_ts`, `stddev_ts`, `samples_ts`).
//!
//! `cargo run --release -p autoglm-models --example llama_bench -- --model DIR|FILE.gguf
//!  [--weights q8_0] -p 512 -n 128 -t 1 -r 5`

use std::path::PathBuf;
use std::time::Instant;

use autoglm_models::{Chunk, PagedCache, PagedModel, Storage};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// A model directory or a GGUF file.
    #[arg(long, short = 'm')]
    model: PathBuf,
    /// Store the weights this way (default: as the model stores them).
    #[arg(long)]
    weights: Option<Storage>,
    /// Prompt tokens (0: no prompt-processing test).
    #[arg(short = 'p', default_value_t = 512)]
    prompt: usize,
    /// Generated tokens (0: no generation test).
    #[arg(short = 'n', default_value_t = 128)]
    gen: usize,
    /// Kernel threads.
    #[arg(short = 't', default_value_t = 1)]
    threads: usize,
    /// Repetitions (after one warm-up).
    #[arg(short = 'r', default_value_t = 5)]
    reps: usize,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let mut m = PagedModel::load_as(&a.model, a.threads, a.weights)?;
    let cfg = m.config().clone();
    let block = 16;
    let len = a.prompt.max(a.gen);
    let mut cache = PagedCache::new(&cfg, block, len.div_ceil(block) + 1)?;
    let v = cfg.vocab_size as u32;
    // llama-bench's tokens are random; any in-vocabulary ids do.
    let ids: Vec<u32> = (0..len as u32).map(|i| (i * 7919 + 13) % v).collect();
    let mut run = |prompt: bool| -> Result<f64, Box<dyn std::error::Error>> {
        let mut table = Vec::new();
        if !cache.reserve(&mut table, len) {
            return Err("cache too small".into());
        }
        let started = Instant::now();
        if prompt {
            let chunk = Chunk {
                tokens: &ids[..a.prompt],
                start: 0,
                blocks: &table,
                logits: true,
            };
            m.step(&mut cache, &[chunk])?;
        } else {
            for (pos, t) in ids[..a.gen].iter().enumerate() {
                let chunk = Chunk {
                    tokens: std::slice::from_ref(t),
                    start: pos,
                    blocks: &table,
                    logits: true,
                };
                m.step(&mut cache, &[chunk])?;
            }
        }
        let s = started.elapsed().as_secs_f64();
        cache.release(&mut table);
        Ok(if prompt { a.prompt } else { a.gen } as f64 / s)
    };
    for (prompt, n) in [(true, a.prompt), (false, a.gen)] {
        if n == 0 {
            continue;
        }
        run(prompt)?;
        let samples: Vec<f64> = (0..a.reps.max(1))
            .map(|_| run(prompt))
            .collect::<Result<_, _>>()?;
        let avg = samples.iter().sum::<f64>() / samples.len() as f64;
        let sd = (samples.iter().map(|x| (x - avg).powi(2)).sum::<f64>()
            / (samples.len().max(2) - 1) as f64)
            .sqrt();
        let line = serde_json::json!({
            "model": a.model.display().to_string(),
            "weights": a.weights.map(|w| w.to_string()),
            "n_prompt": if prompt { n } else { 0 },
            "n_gen": if prompt { 0 } else { n },
            "n_threads": a.threads,
            "avg_ts": avg,
            "stddev_ts": sd,
            "samples_ts": samples,
        });
        println!("{line}");
    }
    Ok(())
}
