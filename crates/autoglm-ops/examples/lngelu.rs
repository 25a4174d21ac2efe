//! LayerNorm → GELU on `[rows, cols]` f32, unfused (two kernels) against fused (one),
//! through the executor, with the error of the fused result against an f64 reference.
//!
//! `cargo run --release -p autoglm-ops --example lngelu -- --rows 8192 --cols 1024 --threads 1 --json`

use std::time::Instant;

use autoglm_graph::{DType, Dim, Graph, OpKind, TensorType, UnaryOp};
use autoglm_ops::{optimize, Device, Executor, Options, Registry, Tensor};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Rows of the input.
    #[arg(long, default_value_t = 8192)]
    rows: usize,
    /// Columns (the normalised axis).
    #[arg(long, default_value_t = 1024)]
    cols: usize,
    /// Kernel threads.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Timed runs after warm-up (the median is reported).
    #[arg(long, default_value_t = 50)]
    runs: usize,
    /// Hand each run's output back to the executor (as a serving loop does), so runs
    /// reuse one output buffer instead of faulting in fresh memory.
    #[arg(long)]
    recycle: bool,
}

fn graph(cols: u64) -> Result<Graph, autoglm_graph::Error> {
    let mut g = Graph::new();
    let x = g.input(
        "x",
        TensorType::new(DType::F32, [Dim::sym("rows"), Dim::Known(cols)]),
    )?;
    let gm = g.parameter("gamma", TensorType::new(DType::F32, [cols]))?;
    let bt = g.parameter("beta", TensorType::new(DType::F32, [cols]))?;
    let ln = g.add(OpKind::LayerNorm { eps: 1e-5 }, &[x, gm, bt])?;
    let y = g.add(OpKind::Unary { f: UnaryOp::Gelu }, &[ln])?;
    g.set_outputs(&[y])?;
    Ok(g)
}

fn median_ms(
    exec: &mut Executor,
    x: &Tensor,
    runs: usize,
    recycle: bool,
) -> Result<f64, autoglm_ops::Error> {
    for _ in 0..5 {
        exec.run(&[("x", x)])?;
    }
    let mut ts = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let out = exec.run(&[("x", x)])?;
        ts.push(t.elapsed().as_secs_f64() * 1e3);
        if recycle {
            for t in out {
                exec.recycle(t);
            }
        }
    }
    ts.sort_by(f64::total_cmp);
    Ok(ts[ts.len() / 2])
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let a = Args::parse();
    let reg = Registry::with_cpu_kernels();
    let opts = Options {
        device: Device::Cpu,
        threads: a.threads,
        ..Options::default()
    };
    let x = Tensor::random(DType::F32, &[a.rows, a.cols], -3.0, 3.0, 1);
    let gamma = Tensor::random(DType::F32, &[a.cols], -1.0, 1.0, 2);
    let beta = Tensor::random(DType::F32, &[a.cols], -1.0, 1.0, 3);
    let unfused = graph(a.cols as u64)?;
    let mut fused = unfused.clone();
    let report = optimize(&mut fused, &reg, Device::Cpu, None)?;
    let mut e1 = Executor::new(&unfused, &reg, opts)?;
    let mut e2 = Executor::new(&fused, &reg, opts)?;
    for e in [&mut e1, &mut e2] {
        e.set_parameter("gamma", gamma.clone())?;
        e.set_parameter("beta", beta.clone())?;
    }
    let unfused_ms = median_ms(&mut e1, &x, a.runs, a.recycle)?;
    let fused_ms = median_ms(&mut e2, &x, a.runs, a.recycle)?;
    // f64 reference of the fused result.
    let y = e2.run(&[("x", &x)])?.remove(0).to_f64_vec();
    let (xs, g, b) = (x.to_f64_vec(), gamma.to_f64_vec(), beta.to_f64_vec());
    let mut max_abs_err = 0.0f64;
    for (r, row) in xs.chunks(a.cols).enumerate() {
        let mean = row.iter().sum::<f64>() / a.cols as f64;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / a.cols as f64;
        for (j, v) in row.iter().enumerate() {
            let z = (v - mean) / (var + 1e-5).sqrt() * g[j] + b[j];
            let gelu = 0.5 * z * (1.0 + libm::erf(z / std::f64::consts::SQRT_2));
            max_abs_err = max_abs_err.max((gelu - y[r * a.cols + j]).abs());
        }
    }
    if a.json {
        println!(
            "{}",
            serde_json::json!({
                "rows": a.rows, "cols": a.cols, "threads": a.threads,
                "unfused_ms": unfused_ms, "fused_ms": fused_ms, "max_abs_err": max_abs_err,
                "rules_fired": report.rules.fired,
            })
        );
    } else {
        println!(
            "[{}, {}] threads {}: unfused {unfused_ms:.3} ms, fused {fused_ms:.3} ms ({:.2}×), max |err| {max_abs_err:.2e}",
            a.rows, a.cols, a.threads, unfused_ms / fused_ms
        );
    }
    Ok(())
}
