#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod autodiff;
mod custom;
mod error;
pub mod fuzz;
mod graph;
mod infer;
mod op;
mod rules;
mod types;
pub mod zoo;

pub use autodiff::{grad, Gradients};
pub use custom::{Attrs, OpDef};
pub use error::{Error, Result};
pub use graph::{Graph, Node, NodeId};
pub use infer::{broadcast, infer};
pub use op::{BinaryOp, OpKind, ReduceOp, UnaryOp};
pub use rules::{
    apply_rules, builtin_rules, AnyKernel, GuardFn, KernelSupport, Match, Pattern, Report, Rule,
    BUILTIN_RULES,
};
pub use types::{shape, DType, Dim, Shape, TensorType};
