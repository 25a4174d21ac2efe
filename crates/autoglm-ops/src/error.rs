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
    /// A kernel failed.
    #[error("node {node} ({op}): {reason}")]
    Kernel {
        /// The node.
        node: NodeId,
        /// Its op's name.
        op: String,
        /// What went wrong.
        reason: String,
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

/// `Result` with this crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
