#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]

mod error;
pub mod fuzz;
mod importance;
mod multifidelity;
pub mod optuna;
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
    iteration_of, BatchRunner, Bracket, BudgetModel, FidelityRunner, Hyperband, MultiFidelity,
    MultiFidelityReport, Rung, RungDone, RungJob, HYPERBAND_ATTR,
};
pub use pruner::{HyperbandPruner, MedianPruner, NopPruner, Pruner, SuccessiveHalvingPruner};
pub use sampler::{
    AutoSampler, GpConfig, GpSampler, Nsga2Config, Nsga2Sampler, QmcSampler, RandomSampler,
    Sampler, SamplerContext, TpeConfig, TpeSampler,
};
pub use space::{Condition, Distribution, ParamSpec, ParamValue, Params, SearchSpace};
pub use storage::{intersection_space, Storage};
pub use study::{Direction, Heartbeat, OptimizeReport, Outcome, StopReason, Study, TrialError};
pub use trial::{FrozenTrial, Trial, TrialState};

/// A random seed: every sampler's suggestions are a function of the seed and the
/// study's history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Seed(pub u64);

impl Seed {
    /// The seed of a generator for trial `number` of a stream `salt` (one per
    /// sampler kind): a SplitMix64 mix of the three, so samplers that restart their
    /// generator per trial ([`Sampler::begin_trial`]) draw independent streams.
    pub fn for_trial(self, salt: u64, number: u64) -> u64 {
        let mut z = self.0 ^ salt.rotate_left(17) ^ number.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
