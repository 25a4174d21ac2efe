//! User-defined ops: what the graph needs to know about an op it has no built-in
//! definition for.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::Result;
use crate::graph::{Graph, NodeId};
use crate::types::TensorType;

/// The attributes of a custom op, by name.
pub type Attrs = BTreeMap<String, f64>;

/// The description of a user-defined op: its name, how many inputs it takes, how its
/// output type follows from its inputs and attributes, and optionally how to express it
/// with built-in ops (so targets without a kernel for it can still run it).
///
/// Register it with [`Graph::register_op`]; nodes then use
/// [`OpKind::Custom`](crate::OpKind::Custom) with the same name. `autoglm-ops`'s
/// `Operator` trait extends this one with kernels and a cost estimate.
///
/// # Examples
/// ```
/// use autoglm_graph::{Attrs, BinaryOp, DType, Graph, NodeId, OpDef, OpKind, TensorType};
/// use std::sync::Arc;
///
/// /// `x · a + b` for scalar attributes `a`, `b`.
/// #[derive(Debug)]
/// struct Affine;
///
/// impl OpDef for Affine {
///     fn name(&self) -> &str { "affine" }
///     fn arity(&self) -> Option<usize> { Some(1) }
///     fn infer(&self, _: &Attrs, inputs: &[&TensorType]) -> Result<TensorType, String> {
///         Ok(inputs[0].clone())
///     }
///     fn decompose(&self, g: &mut Graph, attrs: &Attrs, inputs: &[NodeId])
///         -> Option<autoglm_graph::Result<NodeId>> {
///         let dtype = g.node(inputs[0]).ok()?.ty.dtype;
///         Some((|| {
///             let a = g.constant(attrs["a"], dtype)?;
///             let b = g.constant(attrs["b"], dtype)?;
///             let m = g.add(OpKind::Binary { f: BinaryOp::Mul }, &[inputs[0], a])?;
///             g.add(OpKind::Binary { f: BinaryOp::Add }, &[m, b])
///         })())
///     }
/// }
///
/// # fn main() -> autoglm_graph::Result<()> {
/// let mut g = Graph::new();
/// g.register_op(Arc::new(Affine));
/// let x = g.input("x", TensorType::new(DType::F32, [4u64]))?;
/// let attrs = Attrs::from([("a".to_owned(), 2.0), ("b".to_owned(), 1.0)]);
/// let y = g.add(OpKind::Custom { name: "affine".into(), attrs }, &[x])?;
/// g.set_outputs(&[y])?;
/// assert_eq!(g.decompose_custom_ops()?, 1);
/// assert!(g.node_ids().all(|n| !matches!(g.node(n).unwrap().op, OpKind::Custom { .. })));
/// # Ok(()) }
/// ```
pub trait OpDef: Send + Sync + fmt::Debug {
    /// The op's name (unique among the ops registered with a graph).
    fn name(&self) -> &str;

    /// The number of inputs it takes (`None`: any number, at least one).
    fn arity(&self) -> Option<usize>;

    /// Its output type for these attributes and input types.
    ///
    /// # Errors
    /// A message saying what does not fit.
    fn infer(&self, attrs: &Attrs, inputs: &[&TensorType]) -> Result<TensorType, String>;

    /// Builds the op from built-in ops in `g` on `inputs`, returning the node that
    /// replaces it; `None` if it has no decomposition.
    fn decompose(&self, g: &mut Graph, attrs: &Attrs, inputs: &[NodeId]) -> Option<Result<NodeId>> {
        let _ = (g, attrs, inputs);
        None
    }
}
