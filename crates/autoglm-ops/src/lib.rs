#![doc = include_str!("../README.md")]

mod cost;
mod cpu;
mod error;
mod exec;
#[cfg(feature = "gpu")]
pub mod gpu;
mod io;
mod linear;
pub mod quant;
mod registry;
pub mod rows;
mod tensor;
mod verify;

pub use error::{Error, KernelError, Result};
pub use exec::{Executor, Options, RunStats};
pub use io::{load_safetensors, save_safetensors};
pub use linear::{PackedMatrix, Storage, StoragePlan};
pub use registry::{
    backend_compiled, Cost, Device, DeviceSupport, InplaceFn, Kernel, KernelFn, Operator,
    PackedKernelFn, PrepackFn, Prepacked, Registry,
};
pub use tensor::{Data, Tensor};
pub use verify::{verify_rule, verify_rules, RuleCheck, VerifyOptions};

use autoglm_graph::{apply_rules, builtin_rules, Graph, Report, Rule};

/// What [`optimize`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Optimized {
    /// Scalar constants folded.
    pub folded: usize,
    /// Duplicate nodes merged.
    pub merged: usize,
    /// Custom ops replaced by their decompositions (no kernel on the device).
    pub decomposed: usize,
    /// What the rewrite rules did.
    pub rules: Report,
    /// Nodes before and after.
    pub nodes_before: usize,
    /// Nodes after.
    pub nodes_after: usize,
}

/// The standard pipeline: fold constants, merge common subexpressions, then apply
/// `rules` (the built-in ones if `None`) to a fixpoint wherever `device` has kernels for
/// the result, and clean up.
///
/// # Errors
/// An error from a custom op's decomposition, or [`Error::Graph`] for a cyclic graph.
pub fn optimize(
    g: &mut Graph,
    registry: &Registry,
    device: Device,
    rules: Option<&[Rule]>,
) -> Result<Optimized> {
    let nodes_before = g.node_count();
    let folded = g.fold_constants();
    let merged = g.eliminate_common_subexpressions();
    g.eliminate_dead_code();
    let decomposed = decompose_unsupported(g, registry, device)?;
    let builtin;
    let rules = match rules {
        Some(r) => r,
        None => {
            builtin = builtin_rules();
            &builtin
        }
    };
    let report = apply_rules(g, rules, &registry.support(device), 32)?;
    let merged = merged + g.eliminate_common_subexpressions();
    g.eliminate_dead_code();
    Ok(Optimized {
        folded,
        merged,
        decomposed,
        rules: report,
        nodes_before,
        nodes_after: g.node_count(),
    })
}

/// Decomposes the custom ops that `device` has no kernel for.
fn decompose_unsupported(g: &mut Graph, registry: &Registry, device: Device) -> Result<usize> {
    let missing = g.node_ids().any(|n| {
        g.node(n).is_ok_and(|x| {
            matches!(x.op, autoglm_graph::OpKind::Custom { .. })
                && !registry.has_kernel(&x.op, device, x.ty.dtype)
        })
    });
    Ok(if missing {
        g.decompose_custom_ops()?
    } else {
        0
    })
}
