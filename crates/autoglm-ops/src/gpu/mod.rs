//! GPU kernels in CubeCL (features `wgpu` and `cuda`): device-resident tensors and the
//! built-in ops on them, checked against the CPU kernels by one conformance suite
//! (`tests/gpu_conformance.rs`) on every compiled backend.
//!
//! ```no_run
//! # #[cfg(feature = "wgpu")]
//! # fn main() -> Result<(), autoglm_ops::Error> {
//! use autoglm_graph::{OpKind, UnaryOp};
//! use autoglm_ops::gpu::{Gpu, WgpuRuntime};
//! use autoglm_ops::Tensor;
//!
//! let gpu = Gpu::<WgpuRuntime>::new(&Default::default());
//! let x = gpu.upload(&Tensor::from_f32(&[2, 3], vec![-1.0, 0.0, 1.0, 2.0, 3.0, 4.0])?)?;
//! let y = gpu.run(&OpKind::Unary { f: UnaryOp::Gelu }, &[&x], &[2, 3])?;
//! println!("{:?}", gpu.download(&y)?.to_f32_vec());
//! # Ok(()) }
//! # #[cfg(not(feature = "wgpu"))]
//! # fn main() {}
//! ```

pub mod conformance;
mod exec;
mod kernels;

pub use exec::{has_gpu_kernel, GpuExecutor, GpuRunStats};

use autoglm_graph::{BinaryOp, DType, OpKind, ReduceOp, UnaryOp};
use cubecl::prelude::*;
use cubecl::server::Handle;
use half::{bf16, f16};

use crate::error::{Error, KernelError, Result};
use crate::tensor::{Data, Tensor};

#[cfg(feature = "cuda")]
pub use cubecl::cuda::CudaRuntime;
#[cfg(feature = "wgpu")]
pub use cubecl::wgpu::WgpuRuntime;
pub use cubecl::Runtime;

/// A tensor in device memory: its buffer, shape and element type.
#[derive(Debug, Clone)]
pub struct GpuTensor {
    handle: Handle,
    shape: Vec<usize>,
    dtype: DType,
}

impl GpuTensor {
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether it has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// One GPU device of runtime `R` (e.g. `WgpuRuntime`, `CudaRuntime`).
pub struct Gpu<R: Runtime> {
    client: ComputeClient<R>,
}

impl<R: Runtime> Clone for Gpu<R> {
    /// Another handle on the same device (and memory).
    fn clone(&self) -> Gpu<R> {
        Gpu {
            client: self.client.clone(),
        }
    }
}

impl<R: Runtime> std::fmt::Debug for Gpu<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gpu")
            .field("runtime", &R::name(&self.client))
            .finish()
    }
}

/// A kernel's result.
type KResult<T> = std::result::Result<T, KernelError>;

/// The error for a tensor beyond the GPU kernels' 32-bit indices.
fn too_large(shape: &[usize]) -> KernelError {
    KernelError::TooLarge {
        shape: shape.to_vec(),
        bits: 32,
    }
}

fn element_size(dtype: DType) -> Option<usize> {
    match dtype {
        DType::F32 | DType::I32 => Some(4),
        DType::F16 | DType::BF16 => Some(2),
        _ => None,
    }
}

fn unary_code(f: UnaryOp) -> u32 {
    match f {
        UnaryOp::Neg => 0,
        UnaryOp::Exp => 1,
        UnaryOp::Log => 2,
        UnaryOp::Tanh => 3,
        UnaryOp::Erf => 4,
        UnaryOp::Sqrt => 5,
        UnaryOp::Rsqrt => 6,
        UnaryOp::Recip => 7,
        UnaryOp::Relu => 8,
        UnaryOp::Silu => 9,
        UnaryOp::Gelu => 10,
        UnaryOp::GeluTanh => 11,
        UnaryOp::Sigmoid => 12,
        UnaryOp::Step => 13,
    }
}

fn binary_code(f: BinaryOp) -> u32 {
    match f {
        BinaryOp::Add => 0,
        BinaryOp::Sub => 1,
        BinaryOp::Mul => 2,
        BinaryOp::Div => 3,
        BinaryOp::Pow => 4,
        BinaryOp::Max => 5,
        BinaryOp::Min => 6,
    }
}

/// Strides of `shape` (row-major) broadcast to `out` (right-aligned; 0 where `shape`
/// has 1 or lacks the dimension).
fn broadcast_strides(shape: &[usize], out: &[usize]) -> KResult<Vec<u32>> {
    let no_broadcast = || KernelError::Broadcast {
        what: "operand",
        from: shape.to_vec(),
        to: out.to_vec(),
    };
    let mut strides = vec![0u32; out.len()];
    let mut stride = 1usize;
    for k in 0..shape.len() {
        let d = shape[shape.len() - 1 - k];
        let o = out.len().checked_sub(1 + k).ok_or_else(no_broadcast)?;
        if d == out[o] {
            strides[o] = u32::try_from(stride).map_err(|_| too_large(shape))?;
        } else if d != 1 {
            return Err(no_broadcast());
        }
        stride *= d;
    }
    Ok(strides)
}

/// Cube counts for one cube per row: a 2-D grid when rows exceed one dimension.
fn row_grid(rows: usize) -> CubeCount {
    const MAX: usize = 65_535;
    let x = rows.clamp(1, MAX);
    let y = rows.div_ceil(MAX).max(1);
    CubeCount::Static(x as u32, y as u32, 1)
}

/// Cube counts for one unit per element, 256 units a cube.
fn element_grid(n: usize) -> CubeCount {
    const MAX: usize = 65_535;
    let cubes = n.div_ceil(256).max(1);
    if cubes <= MAX {
        CubeCount::Static(cubes as u32, 1, 1)
    } else {
        CubeCount::Static(MAX as u32, cubes.div_ceil(MAX) as u32, 1)
    }
}

/// `[..., m, k]·[..., k, n]` with batch dimensions broadcast to `out`'s: `(m, k, n)`
/// and, per output batch in row-major order, the element offsets of its `a` and `b`
/// matrices.
#[allow(clippy::type_complexity)]
fn matmul_offsets(
    a: &[usize],
    b: &[usize],
    out: &[usize],
) -> KResult<(usize, usize, usize, Vec<u32>, Vec<u32>)> {
    let bad = || KernelError::Shape(format!("{a:?} · {b:?} → {out:?}"));
    if a.len() < 2 || b.len() < 2 || out.len() < 2 {
        return Err(bad());
    }
    let (m, k) = (a[a.len() - 2], a[a.len() - 1]);
    let (k2, n) = (b[b.len() - 2], b[b.len() - 1]);
    if k != k2 || out[out.len() - 2] != m || out[out.len() - 1] != n {
        return Err(bad());
    }
    let ob = &out[..out.len() - 2];
    let sa = broadcast_strides(&a[..a.len() - 2], ob)?;
    let sb = broadcast_strides(&b[..b.len() - 2], ob)?;
    let batches: usize = ob.iter().product();
    let (mut oa, mut obb) = (Vec::with_capacity(batches), Vec::with_capacity(batches));
    for z in 0..batches {
        let (mut rem, mut ia, mut ib) = (z, 0usize, 0usize);
        for d in (0..ob.len()).rev() {
            let c = rem % ob[d];
            rem /= ob[d];
            ia += c * sa[d] as usize;
            ib += c * sb[d] as usize;
        }
        let fit = |x: usize| u32::try_from(x).map_err(|_| too_large(out));
        oa.push(fit(ia * m * k)?);
        obb.push(fit(ib * k * n)?);
    }
    Ok((m, k, n, oa, obb))
}

/// Row-major strides of `shape`.
fn row_major(shape: &[usize]) -> Vec<usize> {
    let mut s = vec![1usize; shape.len()];
    for d in (0..shape.len().saturating_sub(1)).rev() {
        s[d] = s[d + 1] * shape[d + 1];
    }
    s
}

/// A possibly negative axis (the attribute `name`) of a rank-`r` tensor.
fn axis_index(name: &str, axis: i64, r: usize) -> KResult<usize> {
    let a = if axis < 0 { axis + r as i64 } else { axis };
    usize::try_from(a)
        .ok()
        .filter(|&a| a < r)
        .ok_or_else(|| KernelError::Attribute {
            name: name.to_owned(),
            reason: format!("axis {axis} of rank {r}"),
        })
}

/// A small array of u32 launch parameters in device memory.
struct U32s {
    handle: Handle,
    len: usize,
}

impl U32s {
    fn new<R: Runtime>(gpu: &Gpu<R>, v: &[u32]) -> U32s {
        U32s {
            handle: gpu.client.create_from_slice(u32::as_bytes(v)),
            len: v.len(),
        }
    }

    fn arg<R: Runtime>(&self) -> ArrayArg<R> {
        // SAFETY: the handle was created from a slice of `len` u32s.
        unsafe { ArrayArg::from_raw_parts(self.handle.clone(), self.len) }
    }
}

impl<R: Runtime> Gpu<R> {
    /// The device `device` of runtime `R`.
    pub fn new(device: &R::Device) -> Gpu<R> {
        Gpu {
            client: R::client(device),
        }
    }

    /// [`Gpu::new`], reporting a runtime that cannot start (no driver, no device) as
    /// an error instead of a panic.
    ///
    /// # Errors
    /// [`Error::Unsupported`] naming the runtime.
    pub fn try_new(device: &R::Device) -> Result<Gpu<R>> {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let gpu = Gpu::new(device);
            let probe = gpu.client.create_from_slice(f32::as_bytes(&[0.0]));
            let _ = gpu.client.read_one(probe);
            gpu
        }));
        std::panic::set_hook(hook);
        r.map_err(|_| {
            Error::Unsupported(format!(
                "the {} runtime did not start (no driver or device?)",
                std::any::type_name::<R>()
                    .rsplit("::")
                    .next()
                    .unwrap_or("GPU")
            ))
        })
    }

    /// Waits until every kernel launched so far has finished.
    ///
    /// # Errors
    /// [`Error::Unsupported`] if the device reports an error.
    pub fn sync(&self) -> Result<()> {
        cubecl::future::block_on(self.client.sync())
            .map_err(|e| Error::Unsupported(format!("{}: {e:?}", self.name())))
    }

    /// The bytes the device's memory pool holds reserved (0 if it cannot tell).
    pub fn reserved_bytes(&self) -> u64 {
        self.client.memory_usage().map_or(0, |u| u.bytes_reserved)
    }

    /// The runtime's name (e.g. `wgpu<wgsl>`, `cuda`).
    pub fn name(&self) -> String {
        R::name(&self.client).to_string()
    }

    /// Whether the device computes with `dtype` (bf16 needs CUDA; wgpu has none).
    pub fn supports(&self, dtype: DType) -> bool {
        let props = self.client.properties();
        match dtype {
            DType::F32 | DType::I32 | DType::I64 => true,
            DType::F16 => props.supports_type(f16::as_type_native_unchecked()),
            DType::BF16 => props.supports_type(bf16::as_type_native_unchecked()),
            _ => false,
        }
    }

    fn require(&self, dtype: DType) -> Result<()> {
        if self.supports(dtype) {
            Ok(())
        } else {
            Err(Error::Unsupported(format!("{dtype} on {}", self.name())))
        }
    }

    /// Copies a host tensor to the device (f32, f16 and bf16 where [`Gpu::supports`]
    /// them; i32/i64 indices as i32).
    ///
    /// # Errors
    /// [`Error::Unsupported`] for a type the device lacks, [`Error::Shape`] for other
    /// element types or indices beyond i32.
    pub fn upload(&self, t: &Tensor) -> Result<GpuTensor> {
        self.require(t.dtype())?;
        let handle = match t.data() {
            Data::F32(v) => self.client.create_from_slice(f32::as_bytes(v)),
            Data::F16(v) => self.client.create_from_slice(f16::as_bytes(v)),
            Data::BF16(v) => self.client.create_from_slice(bf16::as_bytes(v)),
            // Indices: i32 on the device.
            Data::I32(v) => self.client.create_from_slice(i32::as_bytes(v)),
            Data::I64(v) => {
                let narrow = v
                    .iter()
                    .map(|&x| {
                        i32::try_from(x).map_err(|_| {
                            Error::Shape(format!("index {x} does not fit the GPU's i32 indices"))
                        })
                    })
                    .collect::<Result<Vec<i32>>>()?;
                self.client.create_from_slice(i32::as_bytes(&narrow))
            }
            other => {
                return Err(Error::Shape(format!(
                    "the GPU kernels take f32, f16 and bf16 tensors (and i32/i64 indices), not {}",
                    other.dtype()
                )))
            }
        };
        let dtype = match t.dtype() {
            DType::I64 => DType::I32,
            d => d,
        };
        Ok(GpuTensor {
            handle,
            shape: t.shape().to_vec(),
            dtype,
        })
    }

    /// Copies a device tensor back to the host.
    ///
    /// # Errors
    /// [`Error::Shape`] if the device buffer cannot be read.
    pub fn download(&self, t: &GpuTensor) -> Result<Tensor> {
        let bytes = self
            .client
            .read_one(t.handle.clone())
            .map_err(|e| Error::Shape(format!("reading a device buffer: {e:?}")))?;
        let n = t.len();
        let data = match t.dtype {
            DType::F32 => Data::F32(f32::from_bytes(&bytes)[..n].to_vec()),
            DType::F16 => Data::F16(f16::from_bytes(&bytes)[..n].to_vec()),
            DType::BF16 => Data::BF16(bf16::from_bytes(&bytes)[..n].to_vec()),
            DType::I32 => Data::I32(i32::from_bytes(&bytes)[..n].to_vec()),
            other => return Err(Error::Shape(format!("no {other} GPU tensors"))),
        };
        Tensor::new(&t.shape, data)
    }

    /// An uninitialised device tensor.
    fn empty(&self, shape: &[usize], dtype: DType) -> KResult<GpuTensor> {
        let size = element_size(dtype).ok_or_else(|| KernelError::UnsupportedDType {
            dtype,
            by: "the GPU kernels".into(),
        })?;
        let n: usize = shape.iter().product();
        Ok(GpuTensor {
            handle: self.client.empty((n * size).max(4)),
            shape: shape.to_vec(),
            dtype,
        })
    }

    /// Computes `op` on device-resident inputs into a new device tensor of shape
    /// `out_shape` (the node's inferred shape) and the first input's element type.
    /// Supported: elementwise unary and binary (broadcasting), SwiGLU, reductions
    /// over any axes and softmax along any axis (other than the last through a
    /// permuted copy), LayerNorm, RMSNorm, fused
    /// LayerNorm+GELU, batched matrix products (batch dimensions broadcast) and
    /// `linear`, rotary embedding, gather (embedding lookup; indices uploaded as
    /// i32, out-of-range ones give zeros), and attention and grouped-query attention
    /// (online softmax; value heads up to 1,024), and the data movement of the
    /// models: reshape (a view), permute, slice, concat, repeat-interleave,
    /// expand-as and casts between the float types.
    ///
    /// # Errors
    /// [`Error::Kernel`] (without a node) for an op, type or shape the GPU kernels do
    /// not cover, or inputs that do not fit; its [`KernelError`] says which.
    pub fn run(
        &self,
        op: &OpKind,
        inputs: &[&GpuTensor],
        out_shape: &[usize],
    ) -> Result<GpuTensor> {
        self.run_kernel(op, inputs, out_shape)
            .map_err(|source| Error::Kernel {
                node: None,
                op: op.name(),
                source,
            })
    }

    /// [`Gpu::run`], the error not yet wrapped.
    pub(crate) fn run_kernel(
        &self,
        op: &OpKind,
        inputs: &[&GpuTensor],
        out_shape: &[usize],
    ) -> KResult<GpuTensor> {
        let first = inputs
            .first()
            .ok_or_else(|| KernelError::Shape("no inputs".into()))?;
        // Every input has the first one's type, but gather's indices (i32).
        let index_slot = matches!(op, OpKind::Gather { .. }).then_some(1);
        if let Some(t) = inputs
            .iter()
            .enumerate()
            .find(|&(i, t)| Some(i) != index_slot && t.dtype != first.dtype)
            .map(|(_, t)| t)
        {
            return Err(KernelError::MixedDTypes {
                first: first.dtype,
                second: t.dtype,
            });
        }
        match op {
            // A view: the same buffer under the new shape.
            OpKind::Reshape { .. } => {
                if out_shape.iter().product::<usize>() != first.len() {
                    return Err(KernelError::Shape(format!(
                        "{:?} to {out_shape:?}",
                        first.shape
                    )));
                }
                return Ok(GpuTensor {
                    handle: first.handle.clone(),
                    shape: out_shape.to_vec(),
                    dtype: first.dtype,
                });
            }
            OpKind::Cast { to } => return self.cast(first, *to),
            _ => {}
        }
        let out = self.empty(out_shape, first.dtype)?;
        match first.dtype {
            DType::F32 => self.launch::<f32>(op, inputs, &out)?,
            DType::F16 => self.launch::<f16>(op, inputs, &out)?,
            DType::BF16 => self.launch::<bf16>(op, inputs, &out)?,
            other => {
                return Err(KernelError::UnsupportedDType {
                    dtype: other,
                    by: "the GPU kernels".into(),
                })
            }
        }
        Ok(out)
    }

    fn launch<F: Float + CubeElement>(
        &self,
        op: &OpKind,
        inputs: &[&GpuTensor],
        out: &GpuTensor,
    ) -> KResult<()> {
        let arity = |k: usize| {
            if inputs.len() == k {
                Ok(())
            } else {
                Err(KernelError::Arity {
                    expected: k,
                    got: inputs.len(),
                })
            }
        };
        // Every launch below: the handles hold at least the lengths given (tensors are
        // allocated from their shapes), and every kernel bounds-checks its accesses
        // against the output length or the row count.
        let arg = |t: &GpuTensor| {
            // SAFETY: `t.handle` holds `t.len()` elements (allocated from its shape).
            unsafe { ArrayArg::from_raw_parts(t.handle.clone(), t.len()) }
        };
        let rows_cols = |t: &GpuTensor| -> KResult<(usize, usize)> {
            let cols = *t.shape.last().unwrap_or(&1);
            let rows = t.len().checked_div(cols).unwrap_or(0);
            if u32::try_from(t.len()).is_err() {
                return Err(too_large(&t.shape));
            }
            Ok((rows, cols))
        };
        match op {
            OpKind::Unary { f } => {
                arity(1)?;
                if inputs[0].shape != out.shape {
                    return Err(KernelError::Shape(format!(
                        "{:?} → {:?}",
                        inputs[0].shape, out.shape
                    )));
                }
                if out.is_empty() {
                    return Ok(());
                }
                // SAFETY: the arguments fit their buffers and the kernel bounds-checks (above).
                unsafe {
                    kernels::unary::launch_unchecked::<F, R>(
                        &self.client,
                        element_grid(out.len()),
                        CubeDim::new_1d(256),
                        arg(inputs[0]),
                        arg(out),
                        unary_code(*f),
                    )
                };
            }
            OpKind::Binary { .. } | OpKind::SwiGlu => {
                arity(2)?;
                let code = match op {
                    OpKind::Binary { f } => binary_code(*f),
                    _ if inputs[0].shape == inputs[1].shape => 7,
                    _ => {
                        return Err(KernelError::Shape(format!(
                            "gate {:?} and up {:?} differ",
                            inputs[0].shape, inputs[1].shape
                        )))
                    }
                };
                if out.is_empty() {
                    return Ok(());
                }
                let sa = broadcast_strides(&inputs[0].shape, &out.shape)?;
                let sb = broadcast_strides(&inputs[1].shape, &out.shape)?;
                let shape: Vec<u32> = out.shape.iter().map(|&d| d as u32).collect();
                let (shape, sa, sb) = if shape.is_empty() {
                    (vec![1u32], vec![0u32], vec![0u32])
                } else {
                    (shape, sa, sb)
                };
                let (hs, ha, hb) = (
                    U32s::new(self, &shape),
                    U32s::new(self, &sa),
                    U32s::new(self, &sb),
                );
                // SAFETY: the arguments fit their buffers and the kernel bounds-checks (above).
                unsafe {
                    kernels::binary::launch_unchecked::<F, R>(
                        &self.client,
                        element_grid(out.len()),
                        CubeDim::new_1d(256),
                        arg(inputs[0]),
                        arg(inputs[1]),
                        arg(out),
                        hs.arg(),
                        ha.arg(),
                        hb.arg(),
                        code,
                    )
                };
            }
            OpKind::Softmax { axis } => {
                arity(1)?;
                let x = inputs[0];
                let r = x.shape.len();
                let ax = axis_index("axis", *axis, r)?;
                // Another axis: moved last, normalised as rows, moved back.
                let perm: Vec<usize> = (0..r).filter(|&d| d != ax).chain([ax]).collect();
                let (src, dst) = if ax + 1 == r {
                    (x.clone(), out.clone())
                } else {
                    let t = self.permuted::<F>(x, &perm)?;
                    let o = self.empty(&t.shape, t.dtype)?;
                    (t, o)
                };
                let (rows, cols) = rows_cols(&src)?;
                if rows > 0 {
                    // SAFETY: the arguments fit their buffers and the kernel bounds-checks (above).
                    unsafe {
                        kernels::softmax_rows::launch_unchecked::<F, R>(
                            &self.client,
                            row_grid(rows),
                            CubeDim::new_1d(kernels::BLOCK),
                            arg(&src),
                            arg(&dst),
                            rows as u32,
                            cols as u32,
                        )
                    };
                }
                if ax + 1 != r {
                    let mut back = vec![0usize; r];
                    for (i, &p) in perm.iter().enumerate() {
                        back[p] = i;
                    }
                    let ds = row_major(&dst.shape);
                    let src_strides: Vec<usize> = back.iter().map(|&b| ds[b]).collect();
                    self.copy::<F>(
                        &dst,
                        out,
                        &out.shape,
                        &src_strides,
                        0,
                        &row_major(&out.shape),
                        0,
                        None,
                    )?;
                }
            }
            OpKind::LayerNorm { eps }
            | OpKind::FusedLayerNormGelu { eps }
            | OpKind::RmsNorm { eps } => {
                let (kind, k) = match op {
                    OpKind::LayerNorm { .. } => (0, 3),
                    OpKind::FusedLayerNormGelu { .. } => (1, 3),
                    _ => (2, 2),
                };
                arity(k)?;
                let (rows, cols) = rows_cols(inputs[0])?;
                for t in &inputs[1..] {
                    if t.len() != cols {
                        return Err(KernelError::Shape(format!(
                            "scale/shift of {:?} for rows of {cols}",
                            t.shape
                        )));
                    }
                }
                if rows == 0 {
                    return Ok(());
                }
                let beta = inputs[k - 1];
                // SAFETY: the arguments fit their buffers and the kernel bounds-checks (above).
                unsafe {
                    kernels::norm_rows::launch_unchecked::<F, R>(
                        &self.client,
                        row_grid(rows),
                        CubeDim::new_1d(kernels::BLOCK),
                        arg(inputs[0]),
                        arg(inputs[1]),
                        arg(beta),
                        arg(out),
                        rows as u32,
                        cols as u32,
                        *eps as f32,
                        kind,
                    )
                };
            }
            OpKind::Reduce { f, axes, .. } => {
                arity(1)?;
                let x = inputs[0];
                let r = x.shape.len();
                let mut reduced = axes
                    .iter()
                    .map(|&a| axis_index("axes", a, r))
                    .collect::<KResult<Vec<usize>>>()?;
                reduced.sort_unstable();
                reduced.dedup();
                if reduced.is_empty() {
                    return Err(KernelError::Attribute {
                        name: "axes".into(),
                        reason: "no axes".into(),
                    });
                }
                // The reduced axes moved last (in order) make rows of `cols` elements.
                let perm: Vec<usize> = (0..r)
                    .filter(|d| !reduced.contains(d))
                    .chain(reduced.iter().copied())
                    .collect();
                let src = if perm.iter().enumerate().all(|(i, &p)| i == p) {
                    x.clone()
                } else {
                    self.permuted::<F>(x, &perm)?
                };
                let cols: usize = reduced.iter().map(|&d| x.shape[d]).product();
                let rows = x.len().checked_div(cols).unwrap_or(0);
                if cols == 0 {
                    return Err(KernelError::Shape(format!(
                        "{:?}: an empty axis among {reduced:?}",
                        x.shape
                    )));
                }
                if rows == 0 {
                    return Ok(());
                }
                let code = match f {
                    ReduceOp::Sum => 0,
                    ReduceOp::Mean => 1,
                    ReduceOp::Max => 2,
                    ReduceOp::Min => 3,
                };
                // SAFETY: the arguments fit their buffers and the kernel bounds-checks (above).
                unsafe {
                    kernels::reduce_rows::launch_unchecked::<F, R>(
                        &self.client,
                        row_grid(rows),
                        CubeDim::new_1d(kernels::BLOCK),
                        arg(&src),
                        arg(out),
                        rows as u32,
                        cols as u32,
                        code,
                    )
                };
            }
            OpKind::MatMul | OpKind::Linear => {
                let linear = matches!(op, OpKind::Linear);
                arity(if linear { 3 } else { 2 })?;
                let (a, b) = (inputs[0], inputs[1]);
                let (m, k, n, a_off, b_off) = if linear {
                    let k = *a.shape.last().unwrap_or(&0);
                    if b.shape.len() != 2 || b.shape[0] != k || inputs[2].len() != b.shape[1] {
                        return Err(KernelError::Shape(format!(
                            "x {:?}, w {:?}, b {:?}",
                            a.shape, b.shape, inputs[2].shape
                        )));
                    }
                    let m = a.len().checked_div(k).unwrap_or(0);
                    (m, k, b.shape[1], vec![0u32], vec![0u32])
                } else {
                    matmul_offsets(&a.shape, &b.shape, &out.shape)?
                };
                if out.is_empty() {
                    return Ok(());
                }
                if k == 0 {
                    return Err(KernelError::Shape(format!(
                        "{:?} · {:?}: an empty inner dimension",
                        a.shape, b.shape
                    )));
                }
                let batches = a_off.len();
                let (ha, hb) = (U32s::new(self, &a_off), U32s::new(self, &b_off));
                let t = kernels::TILE as usize;
                let grid =
                    CubeCount::Static(n.div_ceil(t) as u32, m.div_ceil(t) as u32, batches as u32);
                let bias = if linear { inputs[2] } else { out };
                // SAFETY: the arguments fit their buffers and the kernel bounds-checks (above).
                unsafe {
                    kernels::matmul::launch_unchecked::<F, R>(
                        &self.client,
                        grid,
                        CubeDim::new_2d(kernels::TILE, kernels::TILE),
                        arg(a),
                        arg(b),
                        arg(bias),
                        arg(out),
                        ha.arg(),
                        hb.arg(),
                        m as u32,
                        k as u32,
                        n as u32,
                        linear,
                    )
                };
            }
            OpKind::Rope { rot } => {
                arity(3)?;
                let x = inputs[0];
                let r = x.shape.len();
                if r < 2 {
                    return Err(KernelError::Shape(format!(
                        "x {:?} needs [..., t, d]",
                        x.shape
                    )));
                }
                let (t, d, rot) = (x.shape[r - 2], x.shape[r - 1], *rot as usize);
                if rot > d
                    || rot % 2 != 0
                    || inputs[1].len() != t * rot
                    || inputs[2].len() != t * rot
                {
                    return Err(KernelError::Shape(format!(
                        "x {:?}, cos {:?}, sin {:?}, rot {rot}",
                        x.shape, inputs[1].shape, inputs[2].shape
                    )));
                }
                if out.is_empty() {
                    return Ok(());
                }
                // SAFETY: the arguments fit their buffers and the kernel bounds-checks (above).
                unsafe {
                    kernels::rope::launch_unchecked::<F, R>(
                        &self.client,
                        element_grid(out.len()),
                        CubeDim::new_1d(256),
                        arg(x),
                        arg(inputs[1]),
                        arg(inputs[2]),
                        arg(out),
                        t as u32,
                        d as u32,
                        rot as u32,
                    )
                };
            }
            OpKind::Gather { axis } => {
                arity(2)?;
                let (x, ids) = (inputs[0], inputs[1]);
                if ids.dtype != DType::I32 {
                    return Err(KernelError::DType {
                        what: "the indices",
                        expected: DType::I32,
                        got: ids.dtype,
                    });
                }
                let r = x.shape.len() as i64;
                let ax = if *axis < 0 { axis + r } else { *axis };
                if !(0..r).contains(&ax) {
                    return Err(KernelError::Attribute {
                        name: "axis".into(),
                        reason: format!("axis {axis} of rank {r}"),
                    });
                }
                let ax = ax as usize;
                let size = x.shape[ax];
                let inner: usize = x.shape[ax + 1..].iter().product();
                if out.is_empty() || ids.is_empty() {
                    return Ok(());
                }
                // SAFETY: the arguments fit their buffers and the kernel bounds-checks (above).
                unsafe {
                    kernels::gather::launch_unchecked::<F, R>(
                        &self.client,
                        element_grid(out.len()),
                        CubeDim::new_1d(256),
                        arg(x),
                        arg(ids),
                        arg(out),
                        size as u32,
                        inner.max(1) as u32,
                    )
                };
            }
            OpKind::Attention { scale } | OpKind::GroupedAttention { scale } => {
                arity(4)?;
                let (q, kk, v, mask) = (inputs[0], inputs[1], inputs[2], inputs[3]);
                let r = q.shape.len();
                let grouped = matches!(op, OpKind::GroupedAttention { .. });
                let bad = |why: &str| {
                    KernelError::Shape(format!(
                        "q {:?}, k {:?}, v {:?}, mask {:?}: {why}",
                        q.shape, kk.shape, v.shape, mask.shape
                    ))
                };
                if r < 2 || kk.shape.len() != r || v.shape.len() != r {
                    return Err(bad("ranks differ"));
                }
                let (t, d) = (q.shape[r - 2], q.shape[r - 1]);
                let (s, e) = (v.shape[r - 2], v.shape[r - 1]);
                let (group, ks_d, ks_s) = if grouped {
                    if r < 3 || kk.shape[r - 2] != s || kk.shape[r - 1] != d {
                        return Err(bad("keys are not [..., s, d]"));
                    }
                    let (hq, hkv) = (q.shape[r - 3], kk.shape[r - 3]);
                    if hkv == 0 || hq % hkv != 0 || v.shape[r - 3] != hkv {
                        return Err(bad("query heads are not a multiple of key heads"));
                    }
                    if q.shape[..r - 3] != kk.shape[..r - 3]
                        || kk.shape[..r - 2] != v.shape[..r - 2]
                    {
                        return Err(bad("batch dimensions differ"));
                    }
                    (hq / hkv, 1, d)
                } else {
                    if kk.shape[r - 2] != d || kk.shape[r - 1] != s {
                        return Err(bad("keys are not [..., d, s]"));
                    }
                    if q.shape[..r - 2] != kk.shape[..r - 2] || q.shape[..r - 2] != v.shape[..r - 2]
                    {
                        return Err(bad("batch dimensions differ"));
                    }
                    (1, s, 1)
                };
                if e > kernels::MAX_HEAD {
                    return Err(KernelError::Unsupported(format!(
                        "value heads of {e} elements (at most {} on the GPU)",
                        kernels::MAX_HEAD
                    )));
                }
                let rows = q.len().checked_div(d).unwrap_or(0);
                if rows == 0 || e == 0 {
                    return Ok(());
                }
                if s == 0 || d == 0 {
                    return Err(bad("no keys"));
                }
                let mut score = q.shape[..r - 1].to_vec();
                score.push(s);
                let mstride = broadcast_strides(&mask.shape, &score)?;
                let mshape: Vec<u32> = score.iter().map(|&x| x as u32).collect();
                let dims: Vec<u32> = [rows, t, s, d, e, group, ks_d, ks_s]
                    .iter()
                    .map(|&x| x as u32)
                    .collect();
                let (hs, hm, hd) = (
                    U32s::new(self, &mshape),
                    U32s::new(self, &mstride),
                    U32s::new(self, &dims),
                );
                // SAFETY: the arguments fit their buffers and the kernel bounds-checks (above).
                unsafe {
                    kernels::attention::launch_unchecked::<F, R>(
                        &self.client,
                        row_grid(rows),
                        CubeDim::new_1d(kernels::BLOCK),
                        arg(q),
                        arg(kk),
                        arg(v),
                        arg(mask),
                        arg(out),
                        hs.arg(),
                        hm.arg(),
                        hd.arg(),
                        *scale as f32,
                    )
                };
            }
            OpKind::Permute { perm } => {
                arity(1)?;
                let x = inputs[0];
                let r = x.shape.len();
                let mut seen = vec![false; r];
                if perm.len() != r
                    || perm
                        .iter()
                        .any(|&p| p >= r || std::mem::replace(&mut seen[p], true))
                {
                    return Err(KernelError::Attribute {
                        name: "perm".into(),
                        reason: format!("{perm:?} does not permute the axes of {:?}", x.shape),
                    });
                }
                let xs = row_major(&x.shape);
                let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
                let src: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
                self.copy::<F>(x, out, &shape, &src, 0, &row_major(&shape), 0, None)?;
            }
            OpKind::Slice { axis, start, end } => {
                arity(1)?;
                let x = inputs[0];
                let ax = axis_index("axis", *axis, x.shape.len())?;
                let (a, b) = (*start as usize, (*end as usize).min(x.shape[ax]));
                if a > b {
                    return Err(KernelError::Attribute {
                        name: "start".into(),
                        reason: format!("slice {a}..{b} of axis {ax} of {:?}", x.shape),
                    });
                }
                let xs = row_major(&x.shape);
                let mut shape = x.shape.clone();
                shape[ax] = b - a;
                self.copy::<F>(x, out, &shape, &xs, a * xs[ax], &row_major(&shape), 0, None)?;
            }
            OpKind::Concat { axis } => {
                let ax = axis_index("axis", *axis, out.shape.len())?;
                let os = row_major(&out.shape);
                let mut at = 0usize;
                for x in inputs {
                    if x.shape.len() != out.shape.len() {
                        return Err(KernelError::Shape(format!(
                            "{:?} into {:?}",
                            x.shape, out.shape
                        )));
                    }
                    self.copy::<F>(
                        x,
                        out,
                        &x.shape,
                        &row_major(&x.shape),
                        0,
                        &os,
                        at * os[ax],
                        None,
                    )?;
                    at += x.shape[ax];
                }
                if at != out.shape[ax] {
                    return Err(KernelError::Shape(format!(
                        "the inputs fill {at} of {:?}",
                        out.shape
                    )));
                }
            }
            OpKind::RepeatInterleave { axis, repeats } => {
                arity(1)?;
                let x = inputs[0];
                let ax = axis_index("axis", *axis, x.shape.len())?;
                let mut shape = x.shape.clone();
                shape[ax] *= *repeats as usize;
                let mut div = vec![1usize; shape.len()];
                div[ax] = (*repeats as usize).max(1);
                let xs = row_major(&x.shape);
                self.copy::<F>(x, out, &shape, &xs, 0, &row_major(&shape), 0, Some(&div))?;
            }
            OpKind::ExpandAs => {
                arity(2)?;
                let x = inputs[0];
                let xs: Vec<usize> = broadcast_strides(&x.shape, &out.shape)?
                    .into_iter()
                    .map(|v| v as usize)
                    .collect();
                self.copy::<F>(x, out, &out.shape, &xs, 0, &row_major(&out.shape), 0, None)?;
            }
            _ => return Err(KernelError::Unsupported("no GPU kernel yet".into())),
        }
        Ok(())
    }

    /// Launches [`kernels::copy_strided`] over the region `shape`.
    #[allow(clippy::too_many_arguments)]
    fn copy<F: Float + CubeElement>(
        &self,
        x: &GpuTensor,
        out: &GpuTensor,
        shape: &[usize],
        xs: &[usize],
        x_off: usize,
        os: &[usize],
        o_off: usize,
        div: Option<&[usize]>,
    ) -> KResult<()> {
        let count: usize = shape.iter().product();
        if count == 0 {
            return Ok(());
        }
        let r = shape.len();
        let mut meta = Vec::with_capacity(3 + 4 * r);
        meta.extend([r, x_off, o_off]);
        meta.extend_from_slice(shape);
        meta.extend_from_slice(xs);
        meta.extend_from_slice(os);
        match div {
            Some(d) => meta.extend_from_slice(d),
            None => meta.extend(std::iter::repeat_n(1, r)),
        }
        let meta: Vec<u32> = meta
            .into_iter()
            .map(|v| u32::try_from(v).map_err(|_| too_large(shape)))
            .collect::<KResult<_>>()?;
        let h = self.client.create_from_slice(u32::as_bytes(&meta));
        // SAFETY: `x` and `out` hold their shapes' elements, the meta handle `meta.len()`
        // u32s, and the region's indices stay inside both (checked by the callers'
        // shape arithmetic); the kernel bounds-checks the element count.
        unsafe {
            kernels::copy_strided::launch_unchecked::<F, R>(
                &self.client,
                element_grid(count),
                CubeDim::new_1d(256),
                ArrayArg::from_raw_parts(x.handle.clone(), x.len()),
                ArrayArg::from_raw_parts(out.handle.clone(), out.len()),
                ArrayArg::from_raw_parts(h, meta.len()),
                count as u32,
            )
        };
        Ok(())
    }

    /// `x` converted to `dtype` (f32, f16, bf16).
    fn cast(&self, x: &GpuTensor, dtype: DType) -> KResult<GpuTensor> {
        if !self.supports(dtype) {
            return Err(KernelError::UnsupportedDType {
                dtype,
                by: self.name(),
            });
        }
        if x.dtype == dtype {
            return Ok(x.clone());
        }
        let out = self.empty(&x.shape, dtype)?;
        if x.is_empty() {
            return Ok(out);
        }
        macro_rules! go {
            ($f:ty, $g:ty) => {
                // SAFETY: both handles hold the shape's elements; the kernel
                // bounds-checks against the output length.
                unsafe {
                    kernels::convert::launch_unchecked::<$f, $g, R>(
                        &self.client,
                        element_grid(x.len()),
                        CubeDim::new_1d(256),
                        ArrayArg::from_raw_parts(x.handle.clone(), x.len()),
                        ArrayArg::from_raw_parts(out.handle.clone(), out.len()),
                    )
                }
            };
        }
        match (x.dtype, dtype) {
            (DType::F32, DType::F16) => go!(f32, f16),
            (DType::F32, DType::BF16) => go!(f32, bf16),
            (DType::F16, DType::F32) => go!(f16, f32),
            (DType::F16, DType::BF16) => go!(f16, bf16),
            (DType::BF16, DType::F32) => go!(bf16, f32),
            (DType::BF16, DType::F16) => go!(bf16, f16),
            (a, b) => {
                return Err(KernelError::Unsupported(format!(
                    "no GPU cast from {a} to {b}"
                )))
            }
        }
        Ok(out)
    }

    /// `x` with its axes permuted (`perm[i]` is the source axis of axis `i`).
    fn permuted<F: Float + CubeElement>(
        &self,
        x: &GpuTensor,
        perm: &[usize],
    ) -> KResult<GpuTensor> {
        let shape: Vec<usize> = perm.iter().map(|&p| x.shape[p]).collect();
        let xs = row_major(&x.shape);
        let src: Vec<usize> = perm.iter().map(|&p| xs[p]).collect();
        let t = self.empty(&shape, x.dtype)?;
        self.copy::<F>(x, &t, &shape, &src, 0, &row_major(&shape), 0, None)?;
        Ok(t)
    }
}

#[cfg(feature = "wgpu")]
impl Gpu<WgpuRuntime> {
    /// The default wgpu device on the Vulkan backend explicitly (wgpu's automatic
    /// choice falls back to GL when no Vulkan driver loads, where f16 shaders do not
    /// compile), and a description of its adapter: backend, name, device type
    /// (`Vulkan llvmpipe (LLVM 15.0.6, 256 bits) (Cpu)` on Mesa's lavapipe).
    ///
    /// # Errors
    /// [`Error::Device`] when no Vulkan adapter is available.
    pub fn vulkan() -> Result<(Gpu<WgpuRuntime>, String)> {
        use cubecl::wgpu::{init_setup, RuntimeOptions, Vulkan, WgpuDevice};
        let device = WgpuDevice::DefaultDevice;
        let setup =
            std::panic::catch_unwind(|| init_setup::<Vulkan>(&device, RuntimeOptions::default()))
                .map_err(|_| Error::Device {
                device: crate::Device::Wgpu(0),
                reason: "no Vulkan adapter (install a Vulkan driver, e.g. Mesa's lavapipe: \
                     mesa-vulkan-drivers)"
                    .into(),
            })?;
        let info = setup.adapter.get_info();
        let about = format!("{:?} {} ({:?})", info.backend, info.name, info.device_type);
        Ok((Gpu::new(&device), about))
    }
}
