//! f32 matrix-product throughput of the CPU `matmul` kernel through the executor
//! (n×n by n×n, one thread by default), to compare with OpenBLAS's sgemm
//! (`shared/bench/graph/sgemm.py`); with `--weights`, the right operand is a bound
//! parameter, so the kernel packs it once (the decoder projections' case), and
//! `--mkn` gives non-square shapes.
//!
//! `cargo run --release -p autoglm-ops --example sgemm -- --sizes 256,512,1024 --json`
//! `cargo run --release -p autoglm-ops --example sgemm -- --weights --mkn 1024x512x1408,1024x1408x512`

use std::time::Instant;

use autoglm_graph::{DType, Graph, OpKind, TensorType};
use autoglm_ops::{Device, Executor, Options, Registry, Tensor};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Matrix sizes.
    #[arg(long, value_delimiter = ',', default_values_t = [256usize, 512, 1024, 2048])]
    sizes: Vec<usize>,
    /// Kernel threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// `m×k×n` shapes (written `MxKxN`), instead of the square `--sizes`.
    #[arg(long, value_delimiter = ',')]
    mkn: Vec<String>,
    /// Bind the right operand as a parameter (packed once when bound).
    #[arg(long)]
    weights: bool,
    /// With `--weights`: do not pack (every call packs, as for an input).
    #[arg(long)]
    no_prepack: bool,
    /// One JSON object per size.
    #[arg(long)]
    json: bool,
}

/// Parses `MxKxN`.
fn parse_mkn(s: &str) -> Result<[usize; 3], String> {
    let v: Vec<usize> = s
        .split('x')
        .map(|d| d.trim().parse().map_err(|_| format!("bad --mkn '{s}'")))
        .collect::<Result<_, _>>()?;
    <[usize; 3]>::try_from(v).map_err(|_| format!("--mkn '{s}' is not MxKxN"))
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let reg = Registry::with_cpu_kernels();
    let shapes: Vec<[usize; 3]> = if a.mkn.is_empty() {
        a.sizes.iter().map(|&n| [n, n, n]).collect()
    } else {
        a.mkn
            .iter()
            .map(|s| parse_mkn(s))
            .collect::<Result<_, _>>()?
    };
    for [m, k, n] in shapes {
        let mut g = Graph::new();
        let ty = |r: usize, c: usize| TensorType::new(DType::F32, [r as u64, c as u64]);
        let x = g.input("a", ty(m, k))?;
        let y = if a.weights {
            g.parameter("b", ty(k, n))?
        } else {
            g.input("b", ty(k, n))?
        };
        let z = g.add(OpKind::MatMul, &[x, y])?;
        g.set_outputs(&[z])?;
        let mut e = Executor::new(
            &g,
            &reg,
            Options {
                device: Device::Cpu,
                threads: a.threads,
                prepack: !a.no_prepack,
            },
        )?;
        let xa = Tensor::random(DType::F32, &[m, k], -1.0, 1.0, 1);
        let xb = Tensor::random(DType::F32, &[k, n], -1.0, 1.0, 2);
        let feed: Vec<(&str, &Tensor)> = if a.weights {
            e.set_parameter("b", xb.clone())?;
            vec![("a", &xa)]
        } else {
            vec![("a", &xa), ("b", &xb)]
        };
        let flops = 2.0 * (m * k * n) as f64;
        let t0 = Instant::now();
        let out = e.run(&feed)?;
        let one = t0.elapsed().as_secs_f64();
        out.into_iter().for_each(|o| e.recycle(o));
        let reps = ((2.0 / one.max(1e-6)) as usize).clamp(5, 200);
        let mut ts = Vec::with_capacity(reps);
        for _ in 0..reps {
            let t0 = Instant::now();
            let out = e.run(&feed)?;
            ts.push(t0.elapsed().as_secs_f64());
            out.into_iter().for_each(|o| e.recycle(o));
        }
        ts.sort_by(f64::total_cmp);
        let (med, best) = (ts[ts.len() / 2], ts[0]);
        if a.json {
            println!(
                "{}",
                serde_json::json!({"n": n, "m": m, "k": k, "threads": a.threads, "weights": a.weights, "prepack": a.weights && !a.no_prepack, "reps": reps, "median_ms": med * 1e3,
                    "gflops": flops / med / 1e9, "best_gflops": flops / best / 1e9})
            );
        } else {
            println!(
                "sgemm {m}×{k}×{n} reps={reps:4} median {:9.3} ms {:7.1} GFLOP/s (best {:7.1})",
                med * 1e3,
                flops / med / 1e9,
                flops / best / 1e9
            );
        }
    }
    Ok(())
}
