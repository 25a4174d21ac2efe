//! The GPU conformance suite (`autoglm_ops::gpu::conformance`) on every compiled
//! backend: wgpu (CI: Mesa's lavapipe, checked to be a Vulkan adapter, not the GL
//! fallback, before f16) and CUDA (ignored here; run on a GPU machine by
//! `cargo xtask gpu-check`).
#![cfg(any(feature = "wgpu", feature = "cuda"))]

use autoglm_graph::{BinaryOp, DType, OpKind};
use autoglm_ops::gpu::conformance::{glm_block_matches, suite};
use autoglm_ops::gpu::Gpu;
use autoglm_ops::Tensor;

#[cfg(feature = "wgpu")]
mod wgpu {
    use super::*;
    use autoglm_ops::gpu::WgpuRuntime;

    /// The Vulkan adapter (never wgpu's GL fallback, where f16 does not compile).
    fn device() -> &'static Gpu<WgpuRuntime> {
        static GPU: std::sync::OnceLock<Gpu<WgpuRuntime>> = std::sync::OnceLock::new();
        GPU.get_or_init(|| {
            let (gpu, adapter) = Gpu::vulkan().expect("a Vulkan adapter (Mesa lavapipe in CI)");
            eprintln!("wgpu adapter: {adapter}");
            assert!(adapter.starts_with("Vulkan"), "{adapter}");
            gpu
        })
    }

    #[test]
    fn f32_kernels_match_the_cpu() {
        let worst = suite(device(), DType::F32);
        eprintln!("{} f32: worst scaled error {worst:.2e}", device().name());
    }

    #[test]
    fn f16_kernels_match_the_cpu() {
        let worst = suite(device(), DType::F16);
        eprintln!("{} f16: worst scaled error {worst:.2e}", device().name());
    }

    #[test]
    fn the_glm_block_runs_on_the_device_and_matches_the_cpu() {
        let gpu = || device().clone();
        let (plain, fused) = glm_block_matches(gpu, DType::F32);
        eprintln!(
            "GLM block on {}, f32: max |Δ| / max |y| {plain:.2e} unoptimised, {fused:.2e} fused",
            device().name()
        );
        assert!(plain < 1e-5 && fused < 1e-5, "{plain} {fused}");
        let (plain, fused) = glm_block_matches(gpu, DType::F16);
        eprintln!(
            "GLM block on {}, f16: max |Δ| / max |y| {plain:.2e} unoptimised, {fused:.2e} fused",
            device().name()
        );
        assert!(plain < 1e-2 && fused < 1e-2, "{plain} {fused}");
    }

    #[test]
    fn bad_requests_are_errors() {
        let gpu = device();
        let x = gpu
            .upload(&Tensor::from_f32(&[2, 3], vec![0.0; 6]).unwrap())
            .unwrap();
        let y = gpu
            .upload(&Tensor::from_f32(&[4], vec![0.0; 4]).unwrap())
            .unwrap();
        let add = OpKind::Binary { f: BinaryOp::Add };
        let e = gpu.run(&add, &[&x, &y], &[2, 4]).unwrap_err();
        assert!(
            matches!(
                &e,
                autoglm_ops::Error::Kernel {
                    node: None,
                    source: autoglm_ops::KernelError::Broadcast { .. },
                    ..
                }
            ),
            "{e:?}"
        );
        let e = e.to_string();
        assert!(e.contains("does not broadcast"), "{e}");
        let e = gpu
            .run(&OpKind::MatMul, &[&x, &x], &[2, 2])
            .unwrap_err()
            .to_string();
        assert!(e.contains("matmul: [2, 3] · [2, 3]"), "{e}");
        let e = gpu
            .run(&OpKind::Where, &[&x, &x, &x], &[2, 3])
            .unwrap_err()
            .to_string();
        assert!(e.contains("no GPU kernel"), "{e}");
        let e = gpu
            .upload(&Tensor::new(&[1], autoglm_ops::Data::Bool(vec![true])).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unsupported: bool"), "{e}");
        let e = gpu
            .upload(&Tensor::new(&[1], autoglm_ops::Data::I64(vec![1 << 40])).unwrap())
            .unwrap_err()
            .to_string();
        assert!(e.contains("does not fit"), "{e}");
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use super::*;
    use autoglm_ops::gpu::CudaRuntime;

    fn device() -> Gpu<CudaRuntime> {
        Gpu::new(&Default::default())
    }

    /// Run on a machine with an NVIDIA GPU (`cargo test --features cuda -- --ignored`
    /// or the prebuilt binary of `cargo xtask gpu-check`).
    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn cuda_f32_kernels_match_the_cpu() {
        let _ = suite(&device(), DType::F32);
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn cuda_f16_kernels_match_the_cpu() {
        let _ = suite(&device(), DType::F16);
    }

    #[test]
    #[ignore = "needs an NVIDIA GPU"]
    fn cuda_bf16_kernels_match_the_cpu() {
        let _ = suite(&device(), DType::BF16);
    }
}
