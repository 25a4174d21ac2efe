#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

pub mod baseline;
pub mod clean;
pub mod data;
mod error;
mod fidelity;
pub mod fuzz;
pub mod quickstart;
mod report;
mod rundir;
mod search;
pub mod space;
mod task;
pub mod tokenizer;
pub mod trial;

pub use error::{Error, Result};
pub use report::{write_report, Report};
pub use rundir::{DataDir, RunDir};
pub use search::{AutoTrainer, Evaluation, Event, QuantizedEval, Summary, TrialEnd};
pub use task::{DataConfig, ExportConfig, Format, OnMalformed, Split, Task, TestSource};
