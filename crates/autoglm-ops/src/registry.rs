//! Kernels keyed by op × device × element type, and the [`Operator`] trait for user ops.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use autoglm_graph::{Attrs, DType, Graph, KernelSupport, OpDef, OpKind, TensorType};

use crate::error::{Error, KernelError, Result};
use crate::tensor::Tensor;

/// Where a kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Device {
    /// The host CPU.
    Cpu,
    /// A CUDA device, by ordinal.
    Cuda(usize),
    /// A WebGPU/Vulkan device, by ordinal.
    Wgpu(usize),
}

/// Whether this build can run kernels on `device`: the CPU always; a GPU device when
/// the crate was built with its backend's feature (`wgpu`, `cuda`).
///
/// # Errors
/// [`Error::Device`] naming the missing feature.
pub fn backend_compiled(device: Device) -> crate::Result<()> {
    let missing = |feature: &str| crate::Error::Device {
        device,
        reason: format!(
            "this build of autoglm-ops has no {feature} backend (enable its `{feature}` feature)"
        ),
    };
    match device {
        Device::Cpu => Ok(()),
        Device::Wgpu(_) if cfg!(feature = "wgpu") => Ok(()),
        Device::Wgpu(_) => Err(missing("wgpu")),
        Device::Cuda(_) if cfg!(feature = "cuda") => Ok(()),
        Device::Cuda(_) => Err(missing("cuda")),
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
            Device::Wgpu(i) => write!(f, "wgpu:{i}"),
        }
    }
}

/// A kernel computing a node's value into `out` (allocated by the caller with the
/// node's concrete shape and type) from its inputs; it reports a failure as a
/// [`KernelError`], which the executor wraps in [`Error::Kernel`] with the node.
pub type KernelFn =
    Arc<dyn Fn(&OpKind, &[&Tensor], &mut Tensor) -> Result<(), KernelError> + Send + Sync>;

/// A kernel that overwrites its first input with the result (`io`), given the other
/// inputs; the executor uses it when the first input is not needed afterwards and has
/// the result's shape and type.
pub type InplaceFn =
    Arc<dyn Fn(&OpKind, &mut Tensor, &[&Tensor]) -> Result<(), KernelError> + Send + Sync>;

/// What a kernel derived once from an input that does not change between runs (a
/// bound parameter): a weight matrix in the layout the kernel's
/// inner loop reads, for example. The kernel downcasts it back.
pub type Prepacked = Arc<dyn std::any::Any + Send + Sync>;

/// Derives a [`Prepacked`] form of input number `index` (the value given), stored as
/// the [`Storage`](crate::Storage) the executor's plan asks for where the kernel can
/// (kernels that have one form only ignore it), or declines with `None` (this shape,
/// type or machine gains nothing).
pub type PrepackFn =
    Arc<dyn Fn(&OpKind, usize, &Tensor, crate::Storage) -> Option<Prepacked> + Send + Sync>;

/// A kernel given, besides its inputs, the prepacked form of each input that has one.
/// The tensors are passed as well, unchanged.
pub type PackedKernelFn = Arc<
    dyn Fn(&OpKind, &[&Tensor], &[Option<&Prepacked>], &mut Tensor) -> Result<(), KernelError>
        + Send
        + Sync,
>;

/// A kernel: how to compute an op on one device and element type.
#[derive(Clone)]
pub struct Kernel {
    /// Computes into a fresh output.
    pub run: KernelFn,
    /// Computes in place over the first input, if the kernel can.
    pub inplace: Option<InplaceFn>,
    /// Prepacking of constant inputs and the kernel that uses it, if the kernel has
    /// one. The executor packs when a parameter is bound, and calls the packed form whenever at least one input of the step is packed.
    pub prepack: Option<(PrepackFn, PackedKernelFn)>,
}

impl fmt::Debug for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernel")
            .field("inplace", &self.inplace.is_some())
            .field("prepack", &self.prepack.is_some())
            .finish_non_exhaustive()
    }
}

impl Kernel {
    /// A kernel from a function.
    pub fn new(
        run: impl Fn(&OpKind, &[&Tensor], &mut Tensor) -> Result<(), KernelError>
            + Send
            + Sync
            + 'static,
    ) -> Kernel {
        Kernel {
            run: Arc::new(run),
            inplace: None,
            prepack: None,
        }
    }

    /// Adds prepacking: `pack` derives a kernel-specific form of a constant input once
    /// (returning `None` to decline), and `run` computes with it.
    #[must_use]
    pub fn with_prepack(
        mut self,
        pack: impl Fn(&OpKind, usize, &Tensor, crate::Storage) -> Option<Prepacked>
            + Send
            + Sync
            + 'static,
        run: impl Fn(&OpKind, &[&Tensor], &[Option<&Prepacked>], &mut Tensor) -> Result<(), KernelError>
            + Send
            + Sync
            + 'static,
    ) -> Kernel {
        self.prepack = Some((Arc::new(pack), Arc::new(run)));
        self
    }

    /// Adds an in-place form.
    #[must_use]
    pub fn with_inplace(
        mut self,
        f: impl Fn(&OpKind, &mut Tensor, &[&Tensor]) -> Result<(), KernelError> + Send + Sync + 'static,
    ) -> Kernel {
        self.inplace = Some(Arc::new(f));
        self
    }
}

/// An estimate of what running an op costs.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Cost {
    /// Floating-point operations (a multiply-add is two).
    pub flops: f64,
    /// Bytes read and written.
    pub bytes: f64,
}

/// A user-defined operator: its graph description ([`OpDef`]: name, arity, type
/// inference, optional decomposition), its kernels and a cost estimate. Register it
/// with [`Registry::register_operator`]; the registry's [`Registry::register_ops_with`]
/// makes graphs know it, and from then on it is an op like any other.
pub trait Operator: OpDef {
    /// Its kernels, by device and element type.
    fn kernels(&self) -> Vec<(Device, DType, Kernel)>;

    /// What running it costs; by default reading the inputs and writing the output
    /// once, with one operation per output element.
    fn cost(&self, attrs: &Attrs, inputs: &[&TensorType], output: &TensorType) -> Cost {
        let _ = attrs;
        let bytes =
            |t: &TensorType| t.num_elements().unwrap_or(0) as f64 * t.dtype.size_bytes() as f64;
        Cost {
            flops: output.num_elements().unwrap_or(0) as f64,
            bytes: inputs.iter().map(|t| bytes(t)).sum::<f64>() + bytes(output),
        }
    }
}

/// Kernels by op name × device × element type (the element type of the op's result),
/// and the user operators they came from.
#[derive(Clone, Default)]
pub struct Registry {
    kernels: HashMap<(String, Device, DType), Kernel>,
    operators: BTreeMap<String, Arc<dyn Operator>>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("kernels", &self.kernels.len())
            .field("operators", &self.operators.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry::default()
    }

    /// A registry with the built-in CPU kernels: every built-in op on f32, f16 and bf16
    /// (the half types computed in f32), data movement on every type.
    pub fn with_cpu_kernels() -> Registry {
        let mut r = Registry::new();
        crate::cpu::register(&mut r);
        r
    }

    /// Registers (or replaces) the kernel for the op called `op` (as
    /// [`OpKind::name`] gives it) on `device` and `dtype`.
    pub fn register(&mut self, op: &str, device: Device, dtype: DType, kernel: Kernel) {
        self.kernels.insert((op.to_owned(), device, dtype), kernel);
    }

    /// Registers a user operator and all its kernels.
    pub fn register_operator(&mut self, op: Arc<dyn Operator>) {
        for (device, dtype, k) in op.kernels() {
            self.register(op.name(), device, dtype, k);
        }
        self.operators.insert(op.name().to_owned(), op);
    }

    /// The user operator called `name`.
    pub fn operator(&self, name: &str) -> Option<&Arc<dyn Operator>> {
        self.operators.get(name)
    }

    /// Makes `g` know every registered user operator.
    pub fn register_ops_with(&self, g: &mut Graph) {
        for op in self.operators.values() {
            let def: Arc<dyn OpDef> = op.clone();
            g.register_op(def);
        }
    }

    /// The user operators as graph op definitions (for [`Graph::from_json_with_ops`]).
    pub fn op_defs(&self) -> Vec<Arc<dyn OpDef>> {
        self.operators
            .values()
            .map(|op| op.clone() as Arc<dyn OpDef>)
            .collect()
    }

    /// The kernel for `op` on `device` with result type `dtype`.
    ///
    /// # Errors
    /// [`Error::NoKernel`].
    pub fn kernel(&self, op: &OpKind, device: Device, dtype: DType) -> Result<&Kernel> {
        self.kernels
            .get(&(op.name(), device, dtype))
            .ok_or_else(|| Error::NoKernel {
                op: op.name(),
                device,
                dtype,
                node: None,
            })
    }

    /// Whether there is a kernel for `op` on `device` and `dtype`.
    pub fn has_kernel(&self, op: &OpKind, device: Device, dtype: DType) -> bool {
        self.kernels.contains_key(&(op.name(), device, dtype))
    }

    /// The [`KernelSupport`] of one device, for the rewriter.
    pub fn support(&self, device: Device) -> DeviceSupport<'_> {
        DeviceSupport {
            registry: self,
            device,
        }
    }

    /// What `op` costs on inputs and output of these (concrete) types.
    pub fn cost(&self, op: &OpKind, inputs: &[&TensorType], output: &TensorType) -> Cost {
        if let OpKind::Custom { name, attrs } = op {
            if let Some(o) = self.operators.get(name) {
                return o.cost(attrs, inputs, output);
            }
        }
        crate::cost::builtin_cost(op, inputs, output)
    }
}

/// One device's kernels, as the rewriter asks about them.
#[derive(Debug, Clone, Copy)]
pub struct DeviceSupport<'a> {
    registry: &'a Registry,
    device: Device,
}

impl KernelSupport for DeviceSupport<'_> {
    fn supports(&self, op: &OpKind, dtype: DType) -> bool {
        self.registry.has_kernel(op, self.device, dtype)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_backends_are_typed_errors() {
        assert!(backend_compiled(Device::Cpu).is_ok());
        for (d, compiled) in [
            (Device::Wgpu(0), cfg!(feature = "wgpu")),
            (Device::Cuda(0), cfg!(feature = "cuda")),
        ] {
            match backend_compiled(d) {
                Ok(()) => assert!(compiled, "{d}"),
                Err(e) => {
                    assert!(!compiled, "{d}");
                    assert!(matches!(e, Error::Device { device, .. } if device == d));
                    assert!(e.to_string().contains("feature"), "{e}");
                }
            }
        }
    }
}
