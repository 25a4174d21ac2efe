#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
pub mod fuzz;
mod importance;
mod multifidelity;
mod pareto;
mod pruner;
pub mod sampler;
mod space;
mod storage;
mod study;
mod trial;

pub use error::{Error, Result};
pub use importance::param_importances;
pub use multifidelity::{
    Bracket, BudgetModel, FidelityRunner, Hyperband, MultiFidelity, MultiFidelityReport,
    MultiFidelityStop, Rung, HYPERBAND_ATTR,
};
pub use pruner::{HyperbandPruner, MedianPruner, NopPruner, Pruner, SuccessiveHalvingPruner};
pub use sampler::{
    AutoSampler, GpConfig, GpSampler, Nsga2Config, Nsga2Sampler, QmcSampler, RandomSampler,
    Sampler, SamplerContext, TpeConfig, TpeSampler,
};
pub use space::{Condition, Distribution, ParamSpec, ParamValue, Params, SearchSpace};
pub use storage::{intersection_space, Storage};
pub use study::{Direction, OptimizeReport, Outcome, StopReason, Study, TrialError};
pub use trial::{FrozenTrial, Trial, TrialState};

/// A random seed: every sampler's suggestions are a function of the seed and the
/// study's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seed(pub u64);
