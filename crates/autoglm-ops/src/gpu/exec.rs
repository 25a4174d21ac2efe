//! The device-resident executor: a graph compiled for one GPU, every intermediate value
//! kept in device memory from the step that makes it to its last use.

use std::collections::HashMap;

use autoglm_graph::{DType, Graph, NodeId, OpKind, TensorType};
use cubecl::Runtime;

use super::{Gpu, GpuTensor};
use crate::error::{Error, KernelError, Result};
use crate::exec::{check_shape, concrete, named_input, plan, Plan, Source};
use crate::tensor::Tensor;

struct Step {
    node: NodeId,
    op: OpKind,
    ty: TensorType,
    inputs: Vec<usize>,
    out: usize,
    /// Slots whose last use is this step: their device buffers go back to the
    /// runtime's memory pool, which serves later allocations of the run from them.
    free: Vec<usize>,
}

/// Whether [`Gpu::run`] has a kernel for `op`.
pub fn has_gpu_kernel(op: &OpKind) -> bool {
    matches!(
        op,
        OpKind::Unary { .. }
            | OpKind::Binary { .. }
            | OpKind::SwiGlu
            | OpKind::Reduce { .. }
            | OpKind::Softmax { .. }
            | OpKind::LayerNorm { .. }
            | OpKind::FusedLayerNormGelu { .. }
            | OpKind::RmsNorm { .. }
            | OpKind::MatMul
            | OpKind::Linear
            | OpKind::Rope { .. }
            | OpKind::Gather { .. }
            | OpKind::Attention { .. }
            | OpKind::GroupedAttention { .. }
            | OpKind::Reshape { .. }
            | OpKind::Permute { .. }
            | OpKind::Slice { .. }
            | OpKind::Concat { .. }
            | OpKind::RepeatInterleave { .. }
            | OpKind::ExpandAs
            | OpKind::Cast { .. }
    )
}

/// A graph compiled for a GPU: parameters are uploaded once, and a run moves only its
/// inputs to the device and its outputs back.
///
/// ```no_run
/// # #[cfg(feature = "wgpu")]
/// # fn main() -> Result<(), autoglm_ops::Error> {
/// use autoglm_graph::{DType, Dim, Graph, OpKind, TensorType, UnaryOp};
/// use autoglm_ops::gpu::{Gpu, GpuExecutor, WgpuRuntime};
/// use autoglm_ops::Tensor;
///
/// let mut g = Graph::new();
/// let x = g.input("x", TensorType::new(DType::F32, [Dim::sym("n")]))?;
/// let y = g.add(OpKind::Unary { f: UnaryOp::Silu }, &[x])?;
/// g.set_outputs(&[y])?;
/// let mut exec = GpuExecutor::new(&g, Gpu::<WgpuRuntime>::new(&Default::default()))?;
/// let out = exec.run(&[("x", &Tensor::from_f32(&[3], vec![-1.0, 0.0, 1.0])?)])?;
/// println!("{:?}", out[0].to_f32_vec());
/// # Ok(()) }
/// # #[cfg(not(feature = "wgpu"))]
/// # fn main() {}
/// ```
pub struct GpuExecutor<R: Runtime> {
    gpu: Gpu<R>,
    sources: Vec<Source>,
    params: Vec<Option<GpuTensor>>,
    steps: Vec<Step>,
    outputs: Vec<usize>,
    stats: GpuRunStats,
}

/// What the last run did with device memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GpuRunStats {
    /// Kernel calls (reshapes are views and count too).
    pub steps: usize,
    /// The most bytes the live intermediate values needed at once.
    pub peak_live_bytes: usize,
    /// The bytes of every intermediate value added up (what a runtime without reuse
    /// would hold).
    pub naive_bytes: usize,
    /// The bytes the device's memory pool had reserved after the run (parameters,
    /// inputs and pooled free memory included).
    pub reserved_bytes: u64,
}

impl<R: Runtime> std::fmt::Debug for GpuExecutor<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuExecutor")
            .field("gpu", &self.gpu)
            .field("steps", &self.steps.len())
            .finish_non_exhaustive()
    }
}

impl<R: Runtime> GpuExecutor<R> {
    /// Compiles `graph` for `gpu`.
    ///
    /// # Errors
    /// [`Error::Unsupported`] naming the first node whose op has no GPU kernel;
    /// [`Error::Graph`] for an invalid graph.
    pub fn new(graph: &Graph, gpu: Gpu<R>) -> Result<GpuExecutor<R>> {
        let Plan {
            sources,
            steps: planned,
            outputs,
            dying,
            ..
        } = plan(graph)?;
        let mut steps = Vec::with_capacity(planned.len());
        for (p, free) in planned.into_iter().zip(dying) {
            if !has_gpu_kernel(&p.op) {
                return Err(Error::Unsupported(format!(
                    "node {}: no {} kernel for {} on {}",
                    p.node,
                    gpu.name(),
                    p.op.name(),
                    p.ty.dtype
                )));
            }
            steps.push(Step {
                node: p.node,
                op: p.op,
                ty: p.ty,
                inputs: p.inputs,
                out: p.out,
                free,
            });
        }
        let params = (0..sources.len()).map(|_| None).collect();
        Ok(GpuExecutor {
            gpu,
            sources,
            params,
            steps,
            outputs,
            stats: GpuRunStats::default(),
        })
    }

    /// The device.
    pub fn gpu(&self) -> &Gpu<R> {
        &self.gpu
    }

    /// Memory figures of the last run.
    pub fn stats(&self) -> GpuRunStats {
        self.stats
    }

    /// Uploads a parameter's value (kept on the device for every run).
    ///
    /// # Errors
    /// [`Error::Binding`] for an unknown name or a value of the wrong type or shape.
    pub fn set_parameter(&mut self, name: &str, value: &Tensor) -> Result<()> {
        let i = self
            .sources
            .iter()
            .position(|s| matches!(s, Source::Parameter(n, _) if n == name))
            .ok_or_else(|| Error::Binding(format!("the graph has no parameter '{name}'")))?;
        if let Source::Parameter(_, ty) = &self.sources[i] {
            check_shape(name, ty, value.dtype(), value.shape(), &mut HashMap::new())?;
        }
        self.params[i] = Some(self.gpu.upload(value)?);
        Ok(())
    }

    /// Runs on host inputs: uploads them, runs every step on the device and downloads
    /// the outputs.
    ///
    /// # Errors
    /// [`Error::Binding`] for missing, unknown or ill-typed inputs or unset
    /// parameters; [`Error::Kernel`] naming the node whose kernel refused its inputs.
    pub fn run(&mut self, inputs: &[(&str, &Tensor)]) -> Result<Vec<Tensor>> {
        let mut syms = HashMap::new();
        let mut dev = Vec::with_capacity(inputs.len());
        for (name, t) in inputs {
            if let Some(Source::Input(_, ty)) = self
                .sources
                .iter()
                .find(|s| matches!(s, Source::Input(n, _) if n == name))
            {
                check_shape(name, ty, t.dtype(), t.shape(), &mut syms)?;
            }
            dev.push((*name, self.gpu.upload(t)?));
        }
        let refs: Vec<(&str, &GpuTensor)> = dev.iter().map(|(n, t)| (*n, t)).collect();
        let out = self.run_on_device(&refs)?;
        out.iter().map(|t| self.gpu.download(t)).collect()
    }

    /// Runs on inputs already on the device; the outputs stay there.
    ///
    /// # Errors
    /// As [`GpuExecutor::run`].
    pub fn run_on_device(&mut self, inputs: &[(&str, &GpuTensor)]) -> Result<Vec<GpuTensor>> {
        let mut syms = HashMap::new();
        let mut values: Vec<Option<GpuTensor>> = (0..self.sources.len()).map(|_| None).collect();
        for (i, s) in self.sources.iter().enumerate() {
            values[i] = match s {
                Source::Input(name, ty) => {
                    let t = named_input(inputs, name)?;
                    // Integer inputs live as i32 on the device; their declared type is
                    // checked on the host (`run`).
                    let dtype = match (t.dtype(), ty.dtype) {
                        (DType::I32, DType::I64) => DType::I64,
                        (d, _) => d,
                    };
                    check_shape(name, ty, dtype, t.shape(), &mut syms)?;
                    Some(t.clone())
                }
                Source::Parameter(name, _) => Some(
                    self.params[i]
                        .clone()
                        .ok_or_else(|| Error::Binding(format!("parameter '{name}' is not set")))?,
                ),
                Source::Constant(t) => Some(self.gpu.upload(t)?),
                Source::Step => None,
            };
        }
        if let Some((n, _)) = inputs.iter().find(|(n, _)| {
            !self
                .sources
                .iter()
                .any(|s| matches!(s, Source::Input(m, _) if m == n))
        }) {
            return Err(Error::Binding(format!("the graph has no input '{n}'")));
        }
        let bytes = |t: &GpuTensor| t.len() * t.dtype().size_bytes();
        let mut stats = GpuRunStats::default();
        let mut live = 0usize;
        let mut owned = vec![0usize; self.sources.len()];
        for s in &self.steps {
            let fail = |source: KernelError| Error::Kernel {
                node: Some(s.node),
                op: s.op.name(),
                source,
            };
            let shape = concrete(&s.ty, &syms).map_err(fail)?;
            let ins: Vec<&GpuTensor> = s
                .inputs
                .iter()
                .map(|&x| {
                    values[x]
                        .as_ref()
                        .expect("inputs come earlier in the order")
                })
                .collect();
            let out = self.gpu.run_kernel(&s.op, &ins, &shape).map_err(fail)?;
            // A reshape is a view of its input's buffer: it adds no bytes (its
            // bytes are counted with its source until the source's last use).
            let b = if matches!(s.op, OpKind::Reshape { .. }) {
                0
            } else {
                bytes(&out)
            };
            owned[s.out] = b;
            live += b;
            stats.naive_bytes += b;
            stats.peak_live_bytes = stats.peak_live_bytes.max(live);
            stats.steps += 1;
            values[s.out] = Some(out);
            for &x in &s.free {
                values[x] = None;
                live -= std::mem::take(&mut owned[x]);
            }
        }
        stats.reserved_bytes = self.gpu.reserved_bytes();
        self.stats = stats;
        Ok(self
            .outputs
            .iter()
            .map(|&o| values[o].clone().expect("outputs are computed"))
            .collect())
    }
}
