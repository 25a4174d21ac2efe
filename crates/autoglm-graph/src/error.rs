//! The crate's error type.

use thiserror::Error;

use crate::graph::NodeId;

/// Everything that can go wrong building, checking or reading a graph.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A node's inputs do not fit its op.
    #[error("node {node} ({op}): {reason}")]
    Type {
        /// The node (or the one being added).
        node: NodeId,
        /// Its op's name.
        op: String,
        /// What does not fit.
        reason: String,
    },
    /// A node id that is not in the graph.
    #[error("no node {0}")]
    UnknownNode(NodeId),
    /// The graph failed verification; every problem is listed.
    #[error("the graph is invalid:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// A rewrite rule could not be parsed.
    #[error("rule {0}")]
    Rule(String),
    /// A gradient that cannot be formed (see [`crate::grad`]).
    #[error("gradient at node {node} ({op}): {reason}")]
    Grad {
        /// The node whose rule failed (or the loss / a requested node).
        node: NodeId,
        /// Its op's name.
        op: String,
        /// Why.
        reason: String,
    },
    /// Serialized graph text could not be parsed.
    #[error("graph JSON: {0}")]
    Json(String),
}

/// `Result` with this crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
