#![doc = include_str!("../README.md")]

mod data;
mod error;
pub mod fuzz;
mod optim;
mod trainer;

pub use data::{Batch, Dataset, Example, Order, Tokenize};
pub use error::{Error, Result};
pub use optim::{
    clip_coefficient, clip_grad_norm, global_norm, LrSchedule, Optimizer, OptimizerKind, Schedule,
};
pub use trainer::{Control, StepReport, TrainConfig, Trainer};
