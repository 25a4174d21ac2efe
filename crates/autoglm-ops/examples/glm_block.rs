//! The GLM-style decoder block of `shared/bench/graph/bench_torch.py` (hidden 512,
//! 8 query / 2 KV heads, rotary on half the head dim, SwiGLU 1408), built in the IR op
//! by op, optimised by the built-in rules, and timed through the executor.
//!
//! `cargo run --release -p autoglm-ops --example glm_block -- --batch 8 --threads 1 --json`
//!
//! `--dump FILE` also writes the weights, inputs and output as safetensors, so
//! `benches/graph/compare_torch.py` can run PyTorch on the very same numbers.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use autoglm_graph::zoo::{glm_block, BlockConfig};
use autoglm_graph::DType;
use autoglm_ops::{optimize, save_safetensors, Device, Executor, Options, Registry, Tensor};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Sequences per batch.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Sequence length.
    #[arg(long, default_value_t = 128)]
    seq: usize,
    /// Kernel threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Run the graph as built, without the rewrite rules.
    #[arg(long)]
    unfused: bool,
    /// Do not pack the weights once (every matrix product packs them itself).
    #[arg(long)]
    no_prepack: bool,
    /// After the warm-up, read a run count per line from stdin and answer each with
    /// one JSON line of that many run times (ms): lets a driver interleave short
    /// bursts of ours and a peer's runs, so both see the same machine state.
    #[arg(long)]
    serve: bool,
    /// Timed runs after warm-up (the median is reported).
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Print the time of each kernel (to stderr).
    #[arg(long)]
    profile: bool,
    /// Write weights, inputs and the output to this safetensors file.
    #[arg(long)]
    dump: Option<PathBuf>,
}

/// Rotary tables as the reference computes them: angle t·10000^(−2i/rot), halves
/// repeated.
fn rope_tables(seq: usize, rot: usize) -> (Tensor, Tensor) {
    let mut cos = Vec::with_capacity(seq * rot);
    let mut sin = Vec::with_capacity(seq * rot);
    for t in 0..seq {
        for j in 0..rot {
            let i = (j % (rot / 2)) * 2;
            let inv = 1.0 / 10000f32.powf(i as f32 / rot as f32);
            let a = t as f32 * inv;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (
        Tensor::from_f32(&[seq, rot], cos).expect("sized"),
        Tensor::from_f32(&[seq, rot], sin).expect("sized"),
    )
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let cfg = BlockConfig::bench();
    let reg = Registry::with_cpu_kernels();
    let mut g = glm_block(&cfg, DType::F32)?;
    let nodes_built = g.node_count();
    let report = if a.unfused {
        None
    } else {
        Some(optimize(&mut g, &reg, Device::Cpu, None)?)
    };
    let fused_nodes = g
        .node_ids()
        .filter(|&n| g.node(n).is_ok_and(|x| x.op.is_fused()))
        .count();
    let mut exec = Executor::new(
        &g,
        &reg,
        Options {
            device: Device::Cpu,
            threads: a.threads,
            prepack: !a.no_prepack,
        },
    )?;
    // Weights as nn.Linear initialises them (uniform ±1/√fan_in); norm weights near 1.
    let mut tensors = BTreeMap::new();
    for (i, (name, shape)) in cfg.parameters().into_iter().enumerate() {
        let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        let t = if shape.len() == 1 {
            Tensor::random(DType::F32, &shape, 0.5, 1.5, 100 + i as u64)
        } else {
            let bound = 1.0 / (shape[0] as f64).sqrt();
            Tensor::random(DType::F32, &shape, -bound, bound, 100 + i as u64)
        };
        exec.set_parameter(&name, t.clone())?;
        tensors.insert(name, t);
    }
    let (b, t, h) = (a.batch, a.seq, cfg.hidden as usize);
    let x = Tensor::random(DType::F32, &[b, t, h], -2.0, 2.0, 7);
    let (cos, sin) = rope_tables(t, cfg.rot as usize);
    let mut mask = vec![0.0f32; t * t];
    for i in 0..t {
        for j in i + 1..t {
            mask[i * t + j] = f32::NEG_INFINITY;
        }
    }
    let mask = Tensor::from_f32(&[t, t], mask)?;
    let feed = [("x", &x), ("cos", &cos), ("sin", &sin), ("mask", &mask)];
    let mut out = exec.run(&feed)?;
    let stats = exec.stats();
    for _ in 0..5 {
        let o = exec.run(&feed)?;
        o.into_iter().for_each(|o| exec.recycle(o));
    }
    if a.serve {
        use std::io::{BufRead, Write};
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "{}", serde_json::json!({"ready": true}))?;
        stdout.flush()?;
        for line in std::io::stdin().lock().lines() {
            let n: usize = line?.trim().parse()?;
            let mut ts = Vec::with_capacity(n);
            for _ in 0..n {
                let t0 = Instant::now();
                let o = exec.run(&feed)?;
                ts.push(t0.elapsed().as_secs_f64() * 1e3);
                o.into_iter().for_each(|o| exec.recycle(o));
            }
            writeln!(stdout, "{}", serde_json::json!({ "ms": ts }))?;
            stdout.flush()?;
        }
        return Ok(());
    }
    let mut ts = Vec::with_capacity(a.runs);
    for _ in 0..a.runs {
        let t0 = Instant::now();
        let o = exec.run(&feed)?;
        ts.push(t0.elapsed().as_secs_f64() * 1e3);
        o.into_iter().for_each(|o| exec.recycle(o));
    }
    ts.sort_by(f64::total_cmp);
    if a.profile {
        exec.set_profiling(true);
        for _ in 0..a.runs {
            let o = exec.run(&feed)?;
            o.into_iter().for_each(|o| exec.recycle(o));
        }
        for (node, op, secs) in exec.profile() {
            eprintln!(
                "{node:>6} {op:20} {:8.3} ms/run",
                secs * 1e3 / a.runs as f64
            );
        }
    }
    let median_ms = ts[ts.len() / 2];
    // FLOPs as bench_torch.py counts them: the matrix products only.
    let d = cfg.head_dim() as f64;
    let (hh, nq, nkv, inter) = (
        h as f64,
        cfg.heads as f64,
        cfg.kv_heads as f64,
        cfg.inter as f64,
    );
    let lin =
        2.0 * hh * nq * d + 2.0 * 2.0 * hh * nkv * d + 2.0 * nq * d * hh + 3.0 * 2.0 * hh * inter;
    let attn = 2.0 * 2.0 * nq * d * t as f64;
    let gflop = (b * t) as f64 * (lin + attn) / 1e9;
    if let Some(path) = &a.dump {
        tensors.insert("x".into(), x.clone());
        tensors.insert("cos".into(), cos.clone());
        tensors.insert("sin".into(), sin.clone());
        tensors.insert("mask".into(), mask.clone());
        tensors.insert("out".into(), out.remove(0));
        save_safetensors(path, &tensors)?;
    }
    let fired = report
        .as_ref()
        .map(|r| r.rules.fired.clone())
        .unwrap_or_default();
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "batch": b, "seq": t, "threads": a.threads, "fused": !a.unfused,
                "median_ms": median_ms, "best_ms": ts[0], "gflop": gflop,
                "gflops": gflop / median_ms * 1e3,
                "fused_nodes": fused_nodes, "nodes_built": nodes_built, "nodes": g.node_count(),
                "peak_bytes": stats.peak_bytes, "naive_bytes": stats.naive_bytes,
                "inplace_steps": stats.inplace_steps, "steps": stats.steps,
                "rules_fired": fired,
            })
        );
    } else {
        println!(
            "block b={b} t={t} threads {}: {median_ms:.3} ms median ({:.1} GFLOP/s), {fused_nodes} fused nodes, {} → {} nodes, peak {:.1} MiB vs {:.1} MiB naive; rules {fired:?}",
            a.threads,
            gflop / median_ms * 1e3,
            nodes_built,
            g.node_count(),
            stats.peak_bytes as f64 / 1048576.0,
            stats.naive_bytes as f64 / 1048576.0
        );
    }
    Ok(())
}
