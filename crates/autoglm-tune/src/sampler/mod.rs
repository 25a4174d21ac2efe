//! Samplers: how the next parameters are chosen.
//!
//! A sampler may propose values for several parameters jointly at the start of a trial
//! ([`Sampler::sample_relative`], over the parameters every complete trial shares) and
//! proposes any other parameter on its own when the objective asks for it
//! ([`Sampler::sample_independent`]). Values are internal floats (see
//! [`crate::Distribution::from_unit`]).

mod auto;
mod gp;
mod nsga2;
mod qmc;
mod random;
pub(crate) mod seen;
mod tpe;

use std::collections::BTreeMap;

pub use auto::AutoSampler;
pub(crate) use gp::main_effects;
pub use gp::{GpConfig, GpSampler};
pub use nsga2::{Nsga2Config, Nsga2Sampler};
pub use qmc::QmcSampler;
pub use random::RandomSampler;
pub use tpe::{TpeConfig, TpeSampler};

use crate::space::Distribution;
use crate::study::Direction;
use crate::trial::FrozenTrial;

/// Whether `trial` has every parameter of `space`, drawn from the same distribution.
fn covers(trial: &FrozenTrial, space: &BTreeMap<String, Distribution>) -> bool {
    space
        .iter()
        .all(|(k, d)| trial.distributions.get(k) == Some(d))
}

/// What a sampler sees of the study.
#[derive(Debug, Clone, Copy)]
pub struct SamplerContext<'a> {
    /// Every trial so far (finished, running and the one being sampled).
    pub trials: &'a [FrozenTrial],
    /// Optimisation directions, one per objective.
    pub directions: &'a [Direction],
    /// The number of the trial being sampled.
    pub number: u64,
}

/// A strategy for choosing parameters.
pub trait Sampler: Send {
    /// Called by [`crate::Study::ask`] before the proposals of trial `number`. A
    /// sampler that draws random numbers restarts its generator here from its seed and
    /// `number` ([`crate::Seed::for_trial`]), so its proposals are a function of the
    /// seed, the trial number and the trials before it: a process that resumes a
    /// study proposes what an uninterrupted one would have. (The GP sampler also
    /// starts each kernel fit from its previous fit in the same process; a resumed
    /// process fits from the defaults, so its GP proposals can differ slightly.)
    fn begin_trial(&mut self, number: u64) {
        let _ = number;
    }

    /// The parameters to propose jointly at the start of a trial; `None` (the
    /// default) takes the study's intersection space (the parameters every complete
    /// trial shares, [`crate::intersection_space`]). A sampler that models another
    /// view of the trials ([`crate::BudgetModel`]) returns that view's space.
    fn relative_space(
        &mut self,
        ctx: &SamplerContext<'_>,
    ) -> Option<BTreeMap<String, Distribution>> {
        let _ = ctx;
        None
    }

    /// Joint proposal for `space` (parameter name → distribution) at the start of a
    /// trial, as internal values; parameters left out are sampled independently.
    fn sample_relative(
        &mut self,
        ctx: &SamplerContext<'_>,
        space: &BTreeMap<String, Distribution>,
    ) -> BTreeMap<String, f64> {
        let _ = (ctx, space);
        BTreeMap::new()
    }

    /// A value for one parameter, as an internal value of `distribution`.
    fn sample_independent(
        &mut self,
        ctx: &SamplerContext<'_>,
        name: &str,
        distribution: &Distribution,
    ) -> f64;
}
