//! The GPU conformance suite, written once and run on every compiled backend: by the
//! integration tests (`tests/gpu_conformance.rs`) and by the `gpu_check` example on a
//! machine with a GPU. Every GPU kernel is compared with the CPU kernel of the same
//! op on random shapes (odd sizes, rows shorter and longer than a cube,
//! broadcasting), f32 within 1e-5 and f16/bf16 within 3e-3 of `1 + |expected|`; a
//! mismatch panics with the op, shape, type, position and both values.
#![doc(hidden)]
#![allow(clippy::missing_panics_doc)]

use autoglm_graph::zoo::{glm_block, BlockConfig};
use autoglm_graph::{BinaryOp, DType, OpKind, ReduceOp, UnaryOp};

use super::{Gpu, GpuExecutor, Runtime};
use crate::{optimize, Device, Executor, Options, Registry, Tensor};

/// Shapes the suite runs each op on: scalars-as-vectors, odd lengths, rows shorter
/// and longer than a cube (256), many rows.
const SHAPES: &[&[usize]] = &[
    &[1],
    &[7],
    &[3, 5],
    &[2, 3, 257],
    &[4, 1000],
    &[1, 1, 513],
    &[300, 3],
    &[2, 2, 2, 9],
];

fn tolerance(dtype: DType) -> f64 {
    match dtype {
        DType::F32 => 1e-5,
        _ => 3e-3,
    }
}

/// Inputs in the op's domain: positive for logarithms and roots, away from zero for
/// divisors and reciprocals.
fn input(dtype: DType, shape: &[usize], op: &OpKind, slot: usize, seed: u64) -> Tensor {
    let (lo, hi) = match op {
        OpKind::Unary {
            f: UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip,
        } => (0.1, 4.0),
        OpKind::Binary { f: BinaryOp::Pow } if slot == 0 => (0.1, 3.0),
        OpKind::Binary { f: BinaryOp::Pow } => (-2.0, 2.0),
        OpKind::Binary { f: BinaryOp::Div } if slot == 1 => (0.5, 3.0),
        _ => (-3.0, 3.0),
    };
    Tensor::random(dtype, shape, lo, hi, seed)
}

fn cpu(reg: &Registry, op: &OpKind, inputs: &[&Tensor], out_shape: &[usize]) -> Tensor {
    let dtype = inputs[0].dtype();
    let kernel = reg.kernel(op, Device::Cpu, dtype).expect("a CPU kernel");
    let mut out = Tensor::zeros(dtype, out_shape);
    (kernel.run)(op, inputs, &mut out).expect("the CPU kernel runs");
    out
}

/// Runs `op` on both devices and compares; returns the worst scaled error.
fn check<R: Runtime>(
    gpu: &Gpu<R>,
    reg: &Registry,
    op: &OpKind,
    inputs: &[Tensor],
    out_shape: &[usize],
) -> f64 {
    let host: Vec<&Tensor> = inputs.iter().collect();
    let want = cpu(reg, op, &host, out_shape);
    let dev: Vec<_> = inputs.iter().map(|t| gpu.upload(t).unwrap()).collect();
    let dev_refs: Vec<_> = dev.iter().collect();
    let got = gpu
        .download(&gpu.run(op, &dev_refs, out_shape).unwrap())
        .unwrap();
    assert_eq!(got.shape(), want.shape(), "{op:?}");
    let tol = tolerance(inputs[0].dtype());
    let (g, w) = (got.to_f64_vec(), want.to_f64_vec());
    let mut worst = 0.0f64;
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let err = (a - b).abs() / (1.0 + b.abs());
        assert!(
            err <= tol,
            "{op:?} {:?} {} at {i}: GPU {a} vs CPU {b}",
            inputs[0].shape(),
            inputs[0].dtype()
        );
        worst = worst.max(err);
    }
    worst
}

fn broadcast(a: &[usize], b: &[usize]) -> Vec<usize> {
    let n = a.len().max(b.len());
    (0..n)
        .map(|k| {
            let x = if k + a.len() >= n {
                a[k + a.len() - n]
            } else {
                1
            };
            let y = if k + b.len() >= n {
                b[k + b.len() - n]
            } else {
                1
            };
            x.max(y)
        })
        .collect()
}

/// The whole suite on one device and element type.
pub fn suite<R: Runtime>(gpu: &Gpu<R>, dtype: DType) -> f64 {
    let reg = Registry::with_cpu_kernels();
    let mut seed = 1u64;
    let mut next = || {
        seed += 1;
        seed
    };
    let mut worst = 0.0f64;
    for &shape in SHAPES {
        for f in UnaryOp::ALL {
            let op = OpKind::Unary { f };
            let x = input(dtype, shape, &op, 0, next());
            worst = worst.max(check(gpu, &reg, &op, &[x], shape));
        }
        // Same shapes, a trailing row broadcast, a leading column broadcast, a scalar.
        let row: Vec<usize> = vec![*shape.last().unwrap()];
        let mut col = shape.to_vec();
        *col.last_mut().unwrap() = 1;
        for other in [shape.to_vec(), row, col, vec![1]] {
            for f in BinaryOp::ALL {
                let op = OpKind::Binary { f };
                let out = broadcast(shape, &other);
                let a = input(dtype, shape, &op, 0, next());
                let b = input(dtype, &other, &op, 1, next());
                worst = worst.max(check(gpu, &reg, &op, &[a.clone(), b.clone()], &out));
                // And the other way round.
                let a2 = input(dtype, &other, &op, 0, next());
                let b2 = input(dtype, shape, &op, 1, next());
                worst = worst.max(check(gpu, &reg, &op, &[a2, b2], &out));
            }
        }
        let cols = *shape.last().unwrap();
        let x = input(dtype, shape, &OpKind::Softmax { axis: -1 }, 0, next());
        worst = worst.max(check(
            gpu,
            &reg,
            &OpKind::Softmax { axis: -1 },
            std::slice::from_ref(&x),
            shape,
        ));
        let gamma = Tensor::random(dtype, &[cols], 0.5, 1.5, next());
        let beta = Tensor::random(dtype, &[cols], -0.5, 0.5, next());
        for op in [
            OpKind::LayerNorm { eps: 1e-5 },
            OpKind::FusedLayerNormGelu { eps: 1e-5 },
        ] {
            let inputs = [x.clone(), gamma.clone(), beta.clone()];
            worst = worst.max(check(gpu, &reg, &op, &inputs, shape));
        }
        let op = OpKind::RmsNorm { eps: 1e-6 };
        worst = worst.max(check(gpu, &reg, &op, &[x.clone(), gamma.clone()], shape));
        // Other axes: softmax along the first, reductions over the first and over
        // the first and last together. (The reduction inputs are positive: a sum's
        // rounding depends on its order, which differs from the CPU's, and is
        // bounded relative to the sum of magnitudes, not to a sum that cancels.)
        if shape.len() > 1 {
            let op = OpKind::Softmax { axis: 0 };
            worst = worst.max(check(gpu, &reg, &op, std::slice::from_ref(&x), shape));
            let x = Tensor::random(dtype, shape, 0.1, 3.0, next());
            for (axes, out) in [
                (vec![0i64], shape[1..].to_vec()),
                (vec![0, -1], shape[1..shape.len() - 1].to_vec()),
            ] {
                for f in [ReduceOp::Sum, ReduceOp::Max] {
                    let op = OpKind::Reduce {
                        f,
                        axes: axes.clone(),
                        keep_dims: false,
                    };
                    worst = worst.max(check(gpu, &reg, &op, std::slice::from_ref(&x), &out));
                }
            }
        }
        for f in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
            let op = OpKind::Reduce {
                f,
                axes: vec![-1],
                keep_dims: false,
            };
            let out = &shape[..shape.len() - 1];
            worst = worst.max(check(gpu, &reg, &op, std::slice::from_ref(&x), out));
        }
    }
    // Products: odd sizes, broadcast batch dimensions, inner sizes across tiles.
    for (a, b, out) in [
        (&[1usize, 1][..], &[1usize, 1][..], &[1usize, 1][..]),
        (&[3, 5], &[5, 7], &[3, 7]),
        (&[2, 17, 33], &[33, 9], &[2, 17, 9]),
        (&[2, 1, 4, 16], &[3, 16, 5], &[2, 3, 4, 5]),
        (&[65, 300], &[300, 31], &[65, 31]),
    ] {
        let x = Tensor::random(dtype, a, -1.0, 1.0, next());
        let w = Tensor::random(dtype, b, -1.0, 1.0, next());
        worst = worst.max(check(gpu, &reg, &OpKind::MatMul, &[x, w], out));
    }
    for (x, k, n) in [
        (&[1usize, 1][..], 1usize, 1usize),
        (&[2, 3, 33], 33, 17),
        (&[70, 64], 64, 129),
    ] {
        let xs = Tensor::random(dtype, x, -1.0, 1.0, next());
        let w = Tensor::random(dtype, &[k, n], -1.0, 1.0, next());
        let b = Tensor::random(dtype, &[n], -1.0, 1.0, next());
        let mut out = x.to_vec();
        *out.last_mut().unwrap() = n;
        worst = worst.max(check(gpu, &reg, &OpKind::Linear, &[xs, w, b], &out));
    }
    for shape in [&[7usize][..], &[3, 257], &[2, 2, 9]] {
        let g = Tensor::random(dtype, shape, -3.0, 3.0, next());
        let u = Tensor::random(dtype, shape, -3.0, 3.0, next());
        worst = worst.max(check(gpu, &reg, &OpKind::SwiGlu, &[g, u], shape));
    }
    for (shape, rot) in [
        (&[1usize, 2][..], 2u64),
        (&[2, 3, 5, 8], 4),
        (&[2, 3, 5, 8], 8),
        (&[7, 66], 64),
    ] {
        let t = shape[shape.len() - 2];
        let x = Tensor::random(dtype, shape, -2.0, 2.0, next());
        let cos = Tensor::random(dtype, &[t, rot as usize], -1.0, 1.0, next());
        let sin = Tensor::random(dtype, &[t, rot as usize], -1.0, 1.0, next());
        worst = worst.max(check(
            gpu,
            &reg,
            &OpKind::Rope { rot },
            &[x, cos, sin],
            shape,
        ));
    }
    // Embedding lookups (axis 0, i64 ids as the models feed them) and another axis.
    let table = Tensor::random(dtype, &[50, 7], -1.0, 1.0, next());
    let ids = Tensor::new(
        &[3, 4],
        crate::Data::I64(vec![0, 49, 3, 3, 7, 11, 0, 20, 48, 1, 2, 9]),
    )
    .unwrap();
    worst = worst.max(check(
        gpu,
        &reg,
        &OpKind::Gather { axis: 0 },
        &[table, ids],
        &[3, 4, 7],
    ));
    let x = Tensor::random(dtype, &[3, 10, 4], -1.0, 1.0, next());
    let ids = Tensor::new(&[2], crate::Data::I32(vec![9, 0])).unwrap();
    worst = worst.max(check(
        gpu,
        &reg,
        &OpKind::Gather { axis: 1 },
        &[x, ids],
        &[3, 2, 4],
    ));
    // Attention: keys transposed or as rows shared by query-head groups, masks of
    // several broadcast shapes, key counts across the 256-key blocks, a causal mask
    // with -inf above the diagonal.
    let causal = |t: usize| {
        let v: Vec<f32> = (0..t * t)
            .map(|i| {
                if i % t <= i / t {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
            .collect();
        Tensor::from_f32(&[t, t], v).unwrap().cast(dtype)
    };
    let rnd = |shape: &[usize], seed: u64| Tensor::random(dtype, shape, -1.0, 1.0, seed);
    let plain = OpKind::Attention { scale: 0.25 };
    for (q, kt, v, mask) in [
        (
            rnd(&[2, 5, 8], next()),
            rnd(&[2, 8, 300], next()),
            rnd(&[2, 300, 6], next()),
            Tensor::random(dtype, &[5, 300], -2.0, 0.0, next()),
        ),
        (
            rnd(&[1, 3, 7, 16], next()),
            rnd(&[1, 3, 16, 7], next()),
            rnd(&[1, 3, 7, 16], next()),
            causal(7),
        ),
        (
            rnd(&[1, 1], next()),
            rnd(&[1, 1], next()),
            rnd(&[1, 1], next()),
            Tensor::random(dtype, &[1], -1.0, 0.0, next()),
        ),
    ] {
        let mut out = q.shape().to_vec();
        *out.last_mut().unwrap() = *v.shape().last().unwrap();
        worst = worst.max(check(gpu, &reg, &plain, &[q, kt, v, mask], &out));
    }
    let grouped = OpKind::GroupedAttention { scale: 0.125 };
    for (q, k, v, mask) in [
        (
            rnd(&[2, 4, 3, 16], next()),
            rnd(&[2, 2, 300, 16], next()),
            rnd(&[2, 2, 300, 12], next()),
            Tensor::random(dtype, &[3, 300], -1.0, 0.0, next()),
        ),
        (
            rnd(&[1, 6, 9, 8], next()),
            rnd(&[1, 2, 9, 8], next()),
            rnd(&[1, 2, 9, 8], next()),
            causal(9),
        ),
        (
            rnd(&[3, 1, 64], next()),
            rnd(&[1, 513, 64], next()),
            rnd(&[1, 513, 64], next()),
            Tensor::random(dtype, &[3, 1, 513], -1.0, 0.0, next()),
        ),
    ] {
        let mut out = q.shape().to_vec();
        *out.last_mut().unwrap() = *v.shape().last().unwrap();
        worst = worst.max(check(gpu, &reg, &grouped, &[q, k, v, mask], &out));
    }
    // Data movement (exact).
    let x = rnd(&[2, 3, 5, 4], next());
    for perm in [vec![0, 2, 1, 3], vec![3, 2, 1, 0], vec![0, 1, 2, 3]] {
        let out: Vec<usize> = perm.iter().map(|&p| x.shape()[p]).collect();
        worst = worst.max(check(
            gpu,
            &reg,
            &OpKind::Permute { perm },
            std::slice::from_ref(&x),
            &out,
        ));
    }
    for (axis, start, end) in [(2i64, 1u64, 4u64), (-1, 0, 2), (0, 1, 2), (1, 3, 3)] {
        let mut out = x.shape().to_vec();
        let ax = if axis < 0 { axis + 4 } else { axis } as usize;
        out[ax] = (end - start) as usize;
        let op = OpKind::Slice { axis, start, end };
        worst = worst.max(check(gpu, &reg, &op, std::slice::from_ref(&x), &out));
    }
    let (a, b) = (rnd(&[2, 3, 1, 4], next()), rnd(&[2, 3, 6, 4], next()));
    worst = worst.max(check(
        gpu,
        &reg,
        &OpKind::Concat { axis: 2 },
        &[a.clone(), b],
        &[2, 3, 7, 4],
    ));
    let c = rnd(&[2, 3, 5, 4], next());
    worst = worst.max(check(
        gpu,
        &reg,
        &OpKind::Concat { axis: 0 },
        &[x.clone(), c],
        &[4, 3, 5, 4],
    ));
    let op = OpKind::RepeatInterleave {
        axis: 1,
        repeats: 3,
    };
    worst = worst.max(check(
        gpu,
        &reg,
        &op,
        std::slice::from_ref(&x),
        &[2, 9, 5, 4],
    ));
    let like = rnd(&[2, 3, 5, 4], next());
    worst = worst.max(check(
        gpu,
        &reg,
        &OpKind::ExpandAs,
        &[a.clone(), like],
        &[2, 3, 5, 4],
    ));
    // Reshape is a view; casts round like the CPU's.
    let op = OpKind::Reshape {
        shape: [autoglm_graph::Dim::Known(6), autoglm_graph::Dim::Known(20)]
            .into_iter()
            .collect(),
    };
    worst = worst.max(check(gpu, &reg, &op, std::slice::from_ref(&x), &[6, 20]));
    for to in [DType::F32, DType::F16, DType::BF16] {
        if !gpu.supports(to) {
            let e = gpu
                .run(&OpKind::Cast { to }, &[&gpu.upload(&x).unwrap()], x.shape())
                .unwrap_err();
            assert!(
                matches!(
                    e,
                    crate::Error::Kernel {
                        source: crate::KernelError::UnsupportedDType { .. },
                        ..
                    }
                ),
                "{e}"
            );
            continue;
        }
        let got = gpu
            .download(
                &gpu.run(&OpKind::Cast { to }, &[&gpu.upload(&x).unwrap()], x.shape())
                    .unwrap(),
            )
            .unwrap();
        let want = x.cast(to);
        assert_eq!(got.dtype(), to);
        assert_eq!(got.to_f64_vec(), want.to_f64_vec(), "cast {dtype} → {to}");
    }
    worst
}

/// The GLM block of the graph crate (grouped-query attention, rotary, RMSNorm, gated
/// MLP), unoptimised and after the built-in fusions, on the GPU against the CPU
/// executor: the largest difference over the largest output, `dtype` weights and
/// activations. Returns the two errors.
pub fn glm_block_matches<R: Runtime>(gpu: impl Fn() -> Gpu<R>, dtype: DType) -> (f64, f64) {
    let cfg = BlockConfig::small();
    let (b, t) = (2usize, 19usize);
    let reg = Registry::with_cpu_kernels();
    let plain = glm_block(&cfg, dtype).unwrap();
    let mut fused = plain.clone();
    let report = optimize(&mut fused, &reg, Device::Cpu, None).unwrap();
    assert!(report.rules.total() > 0);
    let mut mask = vec![0.0f32; t * t];
    for i in 0..t {
        for j in i + 1..t {
            mask[i * t + j] = f32::NEG_INFINITY;
        }
    }
    let h = cfg.hidden as usize;
    let rot = cfg.rot as usize;
    let inputs = [
        ("x", Tensor::random(dtype, &[b, t, h], -2.0, 2.0, 1)),
        ("cos", Tensor::random(dtype, &[t, rot], -1.0, 1.0, 2)),
        ("sin", Tensor::random(dtype, &[t, rot], -1.0, 1.0, 3)),
        ("mask", Tensor::from_f32(&[t, t], mask).unwrap().cast(dtype)),
    ];
    let feed: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (*n, t)).collect();
    let params: Vec<(String, Tensor)> = cfg
        .parameters()
        .into_iter()
        .enumerate()
        .map(|(i, (name, shape))| {
            let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
            (
                name,
                Tensor::random(dtype, &shape, -0.3, 0.3, 10 + i as u64),
            )
        })
        .collect();
    let mut errors = [0.0f64; 2];
    for (k, g) in [&plain, &fused].into_iter().enumerate() {
        let mut cpu = Executor::new(g, &reg, Options::default()).unwrap();
        let mut dev = GpuExecutor::new(g, gpu()).unwrap();
        for (name, value) in &params {
            cpu.set_parameter(name, value.clone()).unwrap();
            dev.set_parameter(name, value).unwrap();
        }
        let want = cpu.run(&feed).unwrap().remove(0);
        let got = dev.run(&feed).unwrap().remove(0);
        // Buffer reuse: values die at their last use, and a second run is served from
        // the memory the first one left in the device's pool.
        let first = dev.stats();
        assert!(first.peak_live_bytes * 2 < first.naive_bytes, "{first:?}");
        let again = dev.run(&feed).unwrap().remove(0);
        let second = dev.stats();
        assert!(
            second.reserved_bytes <= first.reserved_bytes,
            "{first:?} then {second:?}"
        );
        assert_eq!(again.to_f64_vec(), got.to_f64_vec(), "runs differ");
        eprintln!(
            "GLM block ({}, {dtype}) on {}: {} steps, peak live {} B of {} B produced, {} B reserved after two runs",
            ["unoptimised", "fused"][k],
            dev.gpu().name(),
            second.steps,
            second.peak_live_bytes,
            second.naive_bytes,
            second.reserved_bytes
        );
        assert_eq!(got.shape(), want.shape());
        let (x, y) = (got.to_f64_vec(), want.to_f64_vec());
        let scale = y.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        // The block must do something beyond its residual path for the comparison
        // to mean anything.
        let moved = inputs[0]
            .1
            .to_f64_vec()
            .iter()
            .zip(&y)
            .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()));
        assert!(
            moved > 0.05 * scale,
            "the block barely changes its input: {moved} of {scale}"
        );
        errors[k] = x
            .iter()
            .zip(&y)
            .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()))
            / scale;
    }
    (errors[0], errors[1])
}
