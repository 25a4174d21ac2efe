//! `auto`: picks the sampler from the search space's structure and the budget.

use std::collections::BTreeMap;

use super::{GpConfig, GpSampler, Sampler, SamplerContext, TpeConfig, TpeSampler};
use crate::space::Distribution;
use crate::trial::TrialState;
use crate::Seed;

/// Chooses per trial, from the space and the budget only:
/// the GP sampler in its economical configuration ([`GpConfig::economical`]) for flat
/// spaces (every complete trial
/// has the same parameters) of up to 32 parameters when the budget is at most 500
/// trials (its cost grows with the cube of the number of trials), TPE otherwise;
/// parameters outside the shared space (conditional ones) always go to TPE.
#[derive(Debug, Clone)]
pub struct AutoSampler {
    gp: GpSampler,
    tpe: TpeSampler,
    budget: Option<usize>,
}

impl AutoSampler {
    /// An automatic sampler for a study of `budget` trials (if known).
    pub fn new(seed: Seed, budget: Option<usize>) -> Self {
        AutoSampler {
            gp: GpSampler::with_config(seed, GpConfig::economical()),
            tpe: TpeSampler::new(seed),
            budget,
        }
    }

    /// As [`AutoSampler::new`], with `n` random trials before either model is used
    /// (10 by default, as Optuna's samplers; a budget of a dozen trials wants fewer,
    /// or the search never leaves its random start).
    pub fn with_startup_trials(seed: Seed, budget: Option<usize>, n: usize) -> Self {
        let mut gp = GpConfig::economical();
        gp.n_startup_trials = n;
        let tpe = TpeConfig {
            n_startup_trials: n,
            ..TpeConfig::default()
        };
        AutoSampler {
            gp: GpSampler::with_config(seed, gp),
            tpe: TpeSampler::with_config(seed, tpe),
            budget,
        }
    }

    fn use_gp(&self, ctx: &SamplerContext<'_>, space: &BTreeMap<String, Distribution>) -> bool {
        let complete: Vec<_> = ctx
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .collect();
        let flat = complete
            .iter()
            .all(|t| t.distributions.len() == space.len());
        // The GP models complete trials only; until it has its start-up share of them
        // (pruning can keep that count low for a long time), TPE, which also learns
        // from pruned trials, proposes.
        flat && space.len() <= 32
            && self.budget.is_none_or(|b| b <= 500)
            && complete.len() >= self.gp.config().n_startup_trials
    }
}

impl Sampler for AutoSampler {
    fn begin_trial(&mut self, number: u64) {
        self.gp.begin_trial(number);
        self.tpe.begin_trial(number);
    }

    fn sample_relative(
        &mut self,
        ctx: &SamplerContext<'_>,
        space: &BTreeMap<String, Distribution>,
    ) -> BTreeMap<String, f64> {
        if self.use_gp(ctx, space) {
            self.gp.sample_relative(ctx, space)
        } else {
            self.tpe.sample_relative(ctx, space)
        }
    }

    fn sample_independent(
        &mut self,
        ctx: &SamplerContext<'_>,
        name: &str,
        d: &Distribution,
    ) -> f64 {
        self.tpe.sample_independent(ctx, name, d)
    }
}
