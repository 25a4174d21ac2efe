//! The crate's error type.

use autoglm_graph::{DType, NodeId};
use thiserror::Error;

use crate::registry::Device;

/// Everything that can go wrong compiling or running a graph.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// No kernel for an op on a device and element type (there is no silent fallback
    /// to another device or type).
    #[error("no {device} kernel for {op} on {dtype}{}", .node.map(|n| format!(" (node {n})")).unwrap_or_default())]
    NoKernel {
        /// The op's name.
        op: String,
        /// The device asked for.
        device: Device,
        /// The element type.
        dtype: DType,
        /// The node that needs it, if any.
        node: Option<NodeId>,
    },
    /// A tensor's shape or type does not fit.
    #[error("shape: {0}")]
    Shape(String),
    /// A graph input or parameter is missing or does not fit its declared type.
    #[error("binding: {0}")]
    Binding(String),
    /// A kernel failed: on a graph's node (in an executor), or called directly
    /// (`gpu::Gpu::run`, [`PackedMatrix::matmul`](crate::PackedMatrix::matmul)).
    #[error("{}: {source}", .node.map_or_else(|| op.clone(), |n| format!("node {n} ({op})")))]
    Kernel {
        /// The node, if the kernel ran for one.
        node: Option<NodeId>,
        /// The op's name.
        op: String,
        /// What went wrong.
        #[source]
        source: KernelError,
    },
    /// An error from the graph.
    #[error(transparent)]
    Graph(#[from] autoglm_graph::Error),
    /// A device this build cannot use: its backend's cargo feature is off, or it
    /// failed to start.
    #[error("{device}: {reason}")]
    Device {
        /// The device asked for.
        device: Device,
        /// Why it cannot be used.
        reason: String,
    },
    /// A type or operation this device does not support (bf16 on wgpu, for one).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// A rule failed verification.
    #[error("rule {rule}: {reason}")]
    Verify {
        /// The rule's name.
        rule: String,
        /// What differs.
        reason: String,
    },
}

/// Why a kernel failed: what the functions of a [`Kernel`](crate::Kernel) return, and
/// the source of [`Error::Kernel`] (which adds the node and the op's name).
///
/// A kernel that has nothing more specific to say can return a message:
/// `KernelError` converts from `String` and `&str` (into [`KernelError::Other`]), so
/// `Err("...".into())` and `.ok_or("...")?` work in a kernel closure.
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum KernelError {
    /// The kernel was called for an op it does not compute (it is registered under
    /// another op's name).
    #[error("{kernel} kernel given {op}")]
    WrongOp {
        /// Which kernel (`"unary"`, `"matmul"`, ...).
        kernel: &'static str,
        /// The op's name.
        op: String,
    },
    /// The kernel has no in-place form for this op.
    #[error("{op} has no in-place form")]
    NoInplace {
        /// The op's name.
        op: String,
    },
    /// The wrong number of inputs.
    #[error("takes {expected} inputs, got {got}")]
    Arity {
        /// How many the op takes.
        expected: usize,
        /// How many it was given.
        got: usize,
    },
    /// A tensor of another element type than the kernel computes with.
    #[error("expected {expected} elements in {what}, got {got}")]
    DType {
        /// Which tensor (`"an input"`, `"the output"`, `"the condition"`, ...).
        what: &'static str,
        /// The type the kernel takes.
        expected: DType,
        /// The tensor's type.
        got: DType,
    },
    /// Tensors that must share an element type do not.
    #[error("element types differ: {first} and {second}")]
    MixedDTypes {
        /// One type.
        first: DType,
        /// Another.
        second: DType,
    },
    /// An element type the kernels of a device (or a kernel) do not compute with.
    #[error("{dtype} is not supported by {by}")]
    UnsupportedDType {
        /// The element type.
        dtype: DType,
        /// Whose support is missing: a runtime's name (`"wgpu<wgsl>"`), `"the GPU kernels"`.
        by: String,
    },
    /// A tensor that does not broadcast to the shape it must take.
    #[error("{what} {from:?} does not broadcast to {to:?}")]
    Broadcast {
        /// Which tensor (`"operand"`, `"mask"`, `"condition"`, ...).
        what: &'static str,
        /// Its shape.
        from: Vec<usize>,
        /// The shape it must broadcast to.
        to: Vec<usize>,
    },
    /// Input or output shapes the op is not defined on; the message names the shapes.
    #[error("{0}")]
    Shape(String),
    /// A tensor too large for the kernel's index arithmetic (the GPU kernels index
    /// with 32 bits).
    #[error("{shape:?} is too large for the kernel's {bits}-bit indices")]
    TooLarge {
        /// Its shape.
        shape: Vec<usize>,
        /// The width of the kernel's indices.
        bits: u32,
    },
    /// An attribute value the kernel cannot use (or a missing attribute of a custom op).
    #[error("attribute {name}: {reason}")]
    Attribute {
        /// The attribute's name.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An index input (gather, scatter-add) pointing outside the axis it indexes.
    #[error("index {index} is outside 0..{size}")]
    IndexOutOfRange {
        /// The index.
        index: f64,
        /// The axis's size.
        size: usize,
    },
    /// A cross-entropy label that is neither a class nor the ignore index.
    #[error("label {label} at position {position} is outside 0..{classes} (and not the ignore index {ignore_index})")]
    LabelOutOfRange {
        /// The label.
        label: i64,
        /// Its position among the labels.
        position: usize,
        /// The number of classes.
        classes: usize,
        /// The ignore index.
        ignore_index: i64,
    },
    /// A negative sequence length given to `padding_mask`.
    #[error("length {length} of row {row} is negative")]
    NegativeLength {
        /// The row.
        row: usize,
        /// Its length.
        length: f64,
    },
    /// A case the kernel does not cover (yet): an op without a GPU kernel, a head size
    /// above a kernel's limit.
    #[error("{0}")]
    Unsupported(String),
    /// A symbolic size of the node's type that no input binds, so the output's shape
    /// is unknown.
    #[error("the size '{symbol}' is not bound by any input")]
    UnboundSize {
        /// The size's name (or expression).
        symbol: String,
    },
    /// A buffer that does not fit the shape an array view gives it.
    #[error("array layout: {0}")]
    Layout(#[from] ndarray::ShapeError),
    /// Anything else, as a message (what a user kernel returns with `.into()` or `?`
    /// on a `String` or `&str`).
    #[error("{0}")]
    Other(String),
}

impl From<String> for KernelError {
    fn from(message: String) -> KernelError {
        KernelError::Other(message)
    }
}

impl From<&str> for KernelError {
    fn from(message: &str) -> KernelError {
        KernelError::Other(message.to_owned())
    }
}

/// `Result` with this crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
