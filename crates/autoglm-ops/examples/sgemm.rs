//! f32 matrix-product throughput of the CPU `matmul` kernel through the executor
//! (n×n by n×n, one thread by default), to compare with OpenBLAS's sgemm
//! (`shared/bench/graph/sgemm.py`).
//!
//! `cargo run --release -p autoglm-ops --example sgemm -- --sizes 256,512,1024 --json`

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
    /// One JSON object per size.
    #[arg(long)]
    json: bool,
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let reg = Registry::with_cpu_kernels();
    for &n in &a.sizes {
        let mut g = Graph::new();
        let ty = TensorType::new(DType::F32, [n as u64, n as u64]);
        let x = g.input("a", ty.clone())?;
        let y = g.input("b", ty)?;
        let z = g.add(OpKind::MatMul, &[x, y])?;
        g.set_outputs(&[z])?;
        let mut e = Executor::new(
            &g,
            &reg,
            Options {
                device: Device::Cpu,
                threads: a.threads,
                ..Options::default()
            },
        )?;
        let xa = Tensor::random(DType::F32, &[n, n], -1.0, 1.0, 1);
        let xb = Tensor::random(DType::F32, &[n, n], -1.0, 1.0, 2);
        let feed = [("a", &xa), ("b", &xb)];
        let flops = 2.0 * (n as f64).powi(3);
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
                serde_json::json!({"n": n, "threads": a.threads, "reps": reps, "median_ms": med * 1e3,
                    "gflops": flops / med / 1e9, "best_gflops": flops / best / 1e9})
            );
        } else {
            println!(
                "sgemm n={n:5} reps={reps:4} median {:9.3} ms {:7.1} GFLOP/s (best {:7.1})",
                med * 1e3,
                flops / med / 1e9,
                flops / best / 1e9
            );
        }
    }
    Ok(())
}
