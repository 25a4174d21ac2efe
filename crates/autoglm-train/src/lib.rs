#![doc = include_str!("../README.md")]

mod data;
mod error;
pub mod fuzz;
mod optim;
mod run;
mod trainer;

pub use data::{Batch, Dataset, Example, Order, Tokenize};
pub use error::{Error, Result};
pub use optim::{
    clip_coefficient, clip_grad_norm, global_norm, DecayShape, LrSchedule, Optimizer,
    OptimizerKind, Schedule,
};
pub use run::{
    checkpoints, latest_checkpoint, read_loss_log, CheckpointDir, LossRecord, RunOptions, TrainRun,
    CHECKPOINT_PREFIX, LOSS_LOG, TOKENIZER_FILES,
};
pub use trainer::{Control, StepReport, TrainConfig, Trainer, TrainerSnapshot};
