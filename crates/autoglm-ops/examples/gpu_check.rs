//! The GPU check for a machine with a GPU and no Rust toolchain (built, stripped and
//! packed by `cargo xtask gpu-check`): the conformance suite on one backend (f32,
//! f16, and bf16 where the device has it, plus the GLM block end to end), then kernel
//! timings — fused LayerNorm+GELU at [8192, 4096] (f32, f16) as bandwidth, matrix
//! products at 4096³ (bf16, f16, f32) as TFLOP/s, and this runtime's own
//! device-to-device copy — written as JSON for `benches/gpu/roofline.py`, which
//! measures PyTorch's copy bandwidth and cuBLAS matmul on the same card and writes the
//! table.
//!
//! `gpu_check [--backend cuda|wgpu] [--quick] [--out FILE]` (`--quick`: small shapes,
//! for a try on lavapipe).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::time::Instant;

use autoglm_graph::{DType, OpKind};
use autoglm_ops::gpu::conformance::{glm_block_matches, suite};
use autoglm_ops::gpu::{Gpu, Runtime};
use autoglm_ops::Tensor;
use serde_json::{json, Value};

/// Median seconds of `reps` calls of `f` (each followed by a device sync), after two
/// warm-up calls.
fn time<R: Runtime>(gpu: &Gpu<R>, reps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..2 {
        f();
    }
    gpu.sync().expect("device sync");
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let t0 = Instant::now();
            f();
            gpu.sync().expect("device sync");
            t0.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn check<R: Runtime>(gpu: &Gpu<R>, quick: bool) -> Value {
    let mut conformance = serde_json::Map::new();
    for dtype in [DType::F32, DType::F16, DType::BF16] {
        if !gpu.supports(dtype) {
            conformance.insert(dtype.to_string(), json!("not supported by this device"));
            continue;
        }
        let r = catch_unwind(AssertUnwindSafe(|| suite(gpu, dtype)));
        conformance.insert(
            dtype.to_string(),
            match r {
                Ok(worst) => json!({"pass": true, "worst_scaled_error": worst}),
                Err(e) => json!({"pass": false, "failure": panic_text(&e)}),
            },
        );
        let r = catch_unwind(AssertUnwindSafe(|| {
            glm_block_matches(|| gpu.clone(), dtype)
        }));
        conformance.insert(
            format!("glm_block_{dtype}"),
            match r {
                Ok((plain, fused)) => {
                    let tol = if dtype == DType::F32 { 1e-5 } else { 1e-2 };
                    json!({"pass": plain < tol && fused < tol, "unoptimised": plain, "fused": fused})
                }
                Err(e) => json!({"pass": false, "failure": panic_text(&e)}),
            },
        );
    }
    let mut timings = Vec::new();
    let (rows, cols) = if quick { (512, 1024) } else { (8192, 4096) };
    let n = if quick { 256 } else { 4096 };
    let reps = if quick { 3 } else { 20 };
    for dtype in [DType::F32, DType::F16] {
        if !gpu.supports(dtype) {
            continue;
        }
        let size = if dtype == DType::F32 { 4.0 } else { 2.0 };
        let x = gpu
            .upload(&Tensor::random(dtype, &[rows, cols], -2.0, 2.0, 1))
            .unwrap();
        let g = gpu
            .upload(&Tensor::random(dtype, &[cols], 0.5, 1.5, 2))
            .unwrap();
        let b = gpu
            .upload(&Tensor::random(dtype, &[cols], -0.5, 0.5, 3))
            .unwrap();
        let op = OpKind::FusedLayerNormGelu { eps: 1e-5 };
        let secs = time(gpu, reps, || {
            gpu.run(&op, &[&x, &g, &b], &[rows, cols]).unwrap();
        });
        let bytes = 2.0 * (rows * cols) as f64 * size;
        timings.push(json!({"kernel": "fused_layernorm_gelu", "shape": [rows, cols], "dtype": dtype.to_string(),
            "ms": secs * 1e3, "gb_per_s": bytes / secs / 1e9}));
        // This runtime's own copy (a permute by the identity: one read, one write).
        let id = OpKind::Permute { perm: vec![0, 1] };
        let secs = time(gpu, reps, || {
            gpu.run(&id, &[&x], &[rows, cols]).unwrap();
        });
        timings.push(
            json!({"kernel": "copy", "shape": [rows, cols], "dtype": dtype.to_string(),
            "ms": secs * 1e3, "gb_per_s": bytes / secs / 1e9}),
        );
    }
    for dtype in [DType::BF16, DType::F16, DType::F32] {
        if !gpu.supports(dtype) {
            continue;
        }
        let a = gpu
            .upload(&Tensor::random(dtype, &[n, n], -1.0, 1.0, 4))
            .unwrap();
        let b = gpu
            .upload(&Tensor::random(dtype, &[n, n], -1.0, 1.0, 5))
            .unwrap();
        let secs = time(gpu, reps.min(10), || {
            gpu.run(&OpKind::MatMul, &[&a, &b], &[n, n]).unwrap();
        });
        timings.push(
            json!({"kernel": "matmul", "shape": [n, n, n], "dtype": dtype.to_string(),
            "ms": secs * 1e3, "tflop_per_s": 2.0 * (n as f64).powi(3) / secs / 1e12}),
        );
    }
    json!({"runtime": gpu.name(), "conformance": conformance, "timings": timings})
}

fn panic_text(e: &Box<dyn std::any::Any + Send>) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .map(|i| args.get(i + 1).cloned())
    };
    let backend = flag("--backend").flatten().unwrap_or_else(|| "cuda".into());
    let out = flag("--out").flatten();
    let quick = args.iter().any(|a| a == "--quick");
    let report = match backend.as_str() {
        #[cfg(feature = "cuda")]
        "cuda" => {
            let gpu = Gpu::<autoglm_ops::gpu::CudaRuntime>::try_new(&Default::default())?;
            check(&gpu, quick)
        }
        #[cfg(feature = "wgpu")]
        "wgpu" => {
            let (gpu, adapter) = Gpu::vulkan()?;
            let mut r = check(&gpu, quick);
            r["adapter"] = json!(adapter);
            r
        }
        other => return Err(format!("backend '{other}' is not compiled into this binary").into()),
    };
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = out {
        std::fs::write(path, text + "\n")?;
    }
    let failed = report["conformance"]
        .as_object()
        .is_some_and(|m| m.values().any(|v| v["pass"] == json!(false)));
    if failed {
        return Err("the conformance suite failed (see above)".into());
    }
    Ok(())
}
