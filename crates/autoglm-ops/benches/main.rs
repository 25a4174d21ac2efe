//! Kernel and executor timings: LayerNorm→GELU fused and unfused on [2048, 512], the
//! benchmark decoder block at batch 1 (optimised), and a 512³ matrix product; one
//! thread; one decoding step's 2048² product in f32, Q8_0 and Q4_0. Side-by-side figures against PyTorch come from
//! `benches/graph/compare_torch.py`.
use std::hint::black_box;

use autoglm_graph::zoo::{glm_block, BlockConfig};
use autoglm_graph::{DType, Dim, Graph, OpKind, TensorType, UnaryOp};
use autoglm_ops::quant::{BlockFormat, QuantMatrix};
use autoglm_ops::{optimize, Device, Executor, Options, PackedMatrix, Registry, Storage, Tensor};
use criterion::{criterion_group, criterion_main, Criterion};

fn ln_gelu(cols: u64) -> Graph {
    let mut g = Graph::new();
    let x = g
        .input(
            "x",
            TensorType::new(DType::F32, [Dim::sym("rows"), Dim::Known(cols)]),
        )
        .expect("input");
    let gm = g
        .parameter("g", TensorType::new(DType::F32, [cols]))
        .expect("param");
    let bt = g
        .parameter("b", TensorType::new(DType::F32, [cols]))
        .expect("param");
    let ln = g
        .add(OpKind::LayerNorm { eps: 1e-5 }, &[x, gm, bt])
        .expect("ln");
    let y = g
        .add(OpKind::Unary { f: UnaryOp::Gelu }, &[ln])
        .expect("gelu");
    g.set_outputs(&[y]).expect("outputs");
    g
}

fn time(c: &mut Criterion, name: &str, exec: &mut Executor, feed: &[(&str, &Tensor)]) {
    c.bench_function(name, |b| {
        b.iter(|| {
            let out = exec.run(feed).expect("runs");
            for o in out {
                exec.recycle(black_box(o));
            }
        })
    });
}

fn benches(c: &mut Criterion) {
    let reg = Registry::with_cpu_kernels();
    let opts = Options::default();
    let x = Tensor::random(DType::F32, &[2048, 512], -3.0, 3.0, 1);
    for fused in [false, true] {
        let mut g = ln_gelu(512);
        if fused {
            optimize(&mut g, &reg, Device::Cpu, None).expect("optimise");
        }
        let mut e = Executor::new(&g, &reg, opts).expect("compile");
        e.set_parameter("g", Tensor::random(DType::F32, &[512], 0.5, 1.5, 2))
            .expect("g");
        e.set_parameter("b", Tensor::random(DType::F32, &[512], -0.5, 0.5, 3))
            .expect("b");
        let name = if fused {
            "ln_gelu/2048x512/fused"
        } else {
            "ln_gelu/2048x512/unfused"
        };
        time(c, name, &mut e, &[("x", &x)]);
    }
    let cfg = BlockConfig::bench();
    let mut g = glm_block(&cfg, DType::F32).expect("block");
    optimize(&mut g, &reg, Device::Cpu, None).expect("optimise");
    let mut e = Executor::new(&g, &reg, opts).expect("compile");
    for (i, (name, shape)) in cfg.parameters().into_iter().enumerate() {
        let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        e.set_parameter(
            &name,
            Tensor::random(DType::F32, &shape, -0.05, 0.05, 10 + i as u64),
        )
        .expect("param");
    }
    let t = 128;
    let xb = Tensor::random(DType::F32, &[1, t, 512], -2.0, 2.0, 4);
    let cos = Tensor::random(DType::F32, &[t, 32], -1.0, 1.0, 5);
    let sin = Tensor::random(DType::F32, &[t, 32], -1.0, 1.0, 6);
    let mask = Tensor::zeros(DType::F32, &[t, t]);
    time(
        c,
        "glm_block/b1_t128",
        &mut e,
        &[("x", &xb), ("cos", &cos), ("sin", &sin), ("mask", &mask)],
    );
    let mut g = Graph::new();
    let ty = TensorType::new(DType::F32, [512u64, 512]);
    let a = g.input("a", ty.clone()).expect("a");
    let bb = g.input("b", ty).expect("b");
    let m = g.add(OpKind::MatMul, &[a, bb]).expect("matmul");
    g.set_outputs(&[m]).expect("outputs");
    let mut e = Executor::new(&g, &reg, opts).expect("compile");
    let xa = Tensor::random(DType::F32, &[512, 512], -1.0, 1.0, 7);
    time(c, "matmul/512", &mut e, &[("a", &xa), ("b", &xa)]);
    // One decoding step's product, 2048 × 2048 weights and one row, on one thread:
    // f32 packed against Q8_0 and Q4_0 rows (bytes read per token: 16, 4.25, 2.25 MiB).
    let (k, n) = (2048, 2048);
    let w = Tensor::random(DType::F32, &[k, n], -0.05, 0.05, 8);
    let w = w.as_f32().expect("f32");
    let x = Tensor::random(DType::F32, &[1, k], -1.0, 1.0, 9);
    let x = x.as_f32().expect("f32");
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut out = vec![0.0f32; n];
    for storage in [Storage::F32, Storage::F16, Storage::Bf16] {
        let f = PackedMatrix::with_storage(w, k, n, storage).expect("packed");
        c.bench_function(&format!("matvec/2048/{storage}"), |b| {
            b.iter(|| pool.install(|| f.matmul(black_box(x), None, &mut out).expect("runs")))
        });
    }
    for format in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
        let q = QuantMatrix::from_f32(w, k, n, format).expect("quantized");
        c.bench_function(&format!("matvec/2048/{format}"), |b| {
            b.iter(|| pool.install(|| q.matmul(black_box(x), &mut out).expect("runs")))
        });
    }
}

// criterion_group! generates an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(all, benches);
}
use group::all;
criterion_main!(all);
