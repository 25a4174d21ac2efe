//! Times training steps (forward, backward, AdamW) of a checkpoint on a fixed batch
//! of pseudo-random tokens, for `benches/train/step_speed.py`.
//!
//! `cargo run --release -p autoglm-train --example step_bench -- --model DIR --batch 8 --seq 128`
//! `--serve`: after one warm-up step, read `step N` lines from stdin and answer each
//! with one JSON line of N step times in ms. `--profile`: kernel times to stderr.
//! `--checkpointing`: gradient checkpointing; `--dtype bf16|f16`: half storage.

use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

use autoglm_graph::DType;
use autoglm_train::{Batch, Example, TrainConfig, Trainer};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut model = PathBuf::new();
    let (mut batch, mut seq, mut runs, mut threads) = (8usize, 128usize, 5usize, 1usize);
    let (mut serve, mut profile, mut checkpointing) = (false, false, false);
    let mut dtype = DType::F32;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--model" => model = PathBuf::from(val()?),
            "--batch" => batch = val()?.parse()?,
            "--seq" => seq = val()?.parse()?,
            "--runs" => runs = val()?.parse()?,
            "--threads" => threads = val()?.parse()?,
            "--serve" => serve = true,
            "--profile" => profile = true,
            "--checkpointing" => checkpointing = true,
            "--dtype" => {
                dtype = match val()?.as_str() {
                    "bf16" => DType::BF16,
                    "f16" => DType::F16,
                    "f32" => DType::F32,
                    other => return Err(format!("unknown dtype {other}").into()),
                }
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    let config = TrainConfig {
        steps: u64::MAX,
        batch_size: batch,
        lr: 1e-5,
        clip_norm: Some(1.0),
        threads,
        checkpointing,
        dtype,
        ..TrainConfig::default()
    };
    let mut t = Trainer::from_pretrained(&model, config)?;
    let v = t.model_config().vocab_size as u32;
    let exs: Vec<Example> = (0..batch)
        .map(|r| {
            let ids: Vec<u32> = (0..seq)
                .map(|i| ((r * 7919 + i * 104_729 + 13) as u32) % (v - 3) + 3)
                .collect();
            let labels = ids.iter().map(|&x| i64::from(x)).collect();
            Example {
                input_ids: ids,
                labels,
            }
        })
        .collect();
    let refs: Vec<&Example> = exs.iter().collect();
    let b = Batch::new(&refs, t.model_config())?;
    let step_ms = |t: &mut Trainer| -> Result<f64, Box<dyn std::error::Error>> {
        let t0 = Instant::now();
        t.step(std::slice::from_ref(&b))?;
        Ok(t0.elapsed().as_secs_f64() * 1e3)
    };
    step_ms(&mut t)?;
    if serve {
        let mut stdout = std::io::stdout().lock();
        writeln!(
            stdout,
            "{}",
            serde_json::json!({"ready": true, "peak_step_bytes": t.peak_step_bytes(),
                "peak_live_bytes": t.peak_live_bytes()})
        )?;
        stdout.flush()?;
        for line in std::io::stdin().lock().lines() {
            let n: usize = line?.split_whitespace().nth(1).unwrap_or("1").parse()?;
            let xs = (0..n)
                .map(|_| step_ms(&mut t))
                .collect::<Result<Vec<_>, _>>()?;
            writeln!(stdout, "{}", serde_json::json!({ "step": xs }))?;
            stdout.flush()?;
        }
        return Ok(());
    }
    t.set_profiling(profile);
    let mut xs = (0..runs)
        .map(|_| step_ms(&mut t))
        .collect::<Result<Vec<_>, _>>()?;
    xs.sort_by(f64::total_cmp);
    println!(
        "{}",
        serde_json::json!({"batch": batch, "seq": seq, "median_ms": xs[xs.len() / 2],
            "best_ms": xs[0], "peak_step_bytes": t.peak_step_bytes(),
            "peak_live_bytes": t.peak_live_bytes()})
    );
    if profile {
        let mut by_op: std::collections::BTreeMap<String, f64> = Default::default();
        for (node, op, secs) in t.profile().into_iter().take(40) {
            eprintln!(
                "  {node:>6} {op:24} {:9.2} ms/step",
                secs * 1e3 / runs as f64
            );
        }
        for (_, op, secs) in t.profile() {
            *by_op.entry(op).or_default() += secs * 1e3 / runs as f64;
        }
        let mut v: Vec<_> = by_op.into_iter().collect();
        v.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (op, ms) in v {
            eprintln!("{op:28} {ms:9.2} ms/step");
        }
    }
    Ok(())
}
