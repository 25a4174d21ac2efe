//! NSGA-II (Deb et al. 2002) for multi-objective studies, with Optuna's defaults.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::{RandomSampler, Sampler, SamplerContext};
use crate::pareto;
use crate::space::Distribution;
use crate::trial::{FrozenTrial, TrialState};
use crate::Seed;

/// NSGA-II options.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct Nsga2Config {
    /// Trials per generation; trial `n` belongs to generation `n / population_size`.
    pub population_size: usize,
    /// Probability that a child mixes two parents (else it copies the first).
    pub crossover_prob: f64,
    /// Probability that uniform crossover takes a parameter from the second parent.
    pub swapping_prob: f64,
    /// Probability that a parameter is redrawn at random; `None` = 1 / parameters.
    pub mutation_prob: Option<f64>,
}

impl Default for Nsga2Config {
    fn default() -> Self {
        Nsga2Config {
            population_size: 50,
            crossover_prob: 0.9,
            swapping_prob: 0.5,
            mutation_prob: None,
        }
    }
}

/// The NSGA-II sampler: the first generation is random; each later one breeds from the
/// elite of all complete trials of earlier generations — ranked by constrained
/// domination (feasible before infeasible, then non-dominated front, then crowding
/// distance) — by binary tournaments, uniform crossover and random-reset mutation.
/// Works for one objective too (the ranking is then by value).
#[derive(Debug, Clone)]
pub struct Nsga2Sampler {
    config: Nsga2Config,
    seed: Seed,
    rng: Pcg64Mcg,
    random: RandomSampler,
}

impl Nsga2Sampler {
    /// NSGA-II with default options.
    pub fn new(seed: Seed) -> Self {
        Nsga2Sampler::with_config(seed, Nsga2Config::default())
    }

    /// NSGA-II with `config`.
    pub fn with_config(seed: Seed, config: Nsga2Config) -> Self {
        Nsga2Sampler {
            config,
            seed,
            rng: Pcg64Mcg::seed_from_u64(seed.0 ^ 0x6e73_6761_3200_0001),
            random: RandomSampler::new(seed),
        }
    }

    /// Index (into `parents`, best first) of a binary-tournament winner.
    fn tournament(&mut self, n: usize) -> usize {
        let a = self.rng.random_range(0..n);
        let b = self.rng.random_range(0..n);
        a.min(b)
    }
}

impl Sampler for Nsga2Sampler {
    fn begin_trial(&mut self, number: u64) {
        self.rng = Pcg64Mcg::seed_from_u64(self.seed.for_trial(0x6e73_6761_3200_0001, number));
        self.random.begin_trial(number);
    }

    fn sample_relative(
        &mut self,
        ctx: &SamplerContext<'_>,
        space: &BTreeMap<String, Distribution>,
    ) -> BTreeMap<String, f64> {
        let pop = self.config.population_size.max(2);
        let generation = ctx.number as usize / pop;
        if generation == 0 || space.is_empty() {
            return BTreeMap::new();
        }
        let limit = (generation * pop) as u64;
        let complete: Vec<&FrozenTrial> = ctx
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Complete && t.number < limit)
            .filter(|t| super::covers(t, space))
            .collect();
        if complete.len() < 2 {
            return BTreeMap::new();
        }
        let order = pareto::rank(&complete, ctx.directions);
        let parents: Vec<&FrozenTrial> = order.iter().take(pop).map(|&i| complete[i]).collect();
        let p1 = parents[self.tournament(parents.len())];
        let p2 = parents[self.tournament(parents.len())];
        let cross = self.rng.random::<f64>() < self.config.crossover_prob;
        let mutation = self
            .config
            .mutation_prob
            .unwrap_or(1.0 / space.len() as f64);
        let mut child = BTreeMap::new();
        for name in space.keys() {
            let from = if cross && self.rng.random::<f64>() < self.config.swapping_prob {
                p2
            } else {
                p1
            };
            // A mutated parameter is left out, so the study draws it at random.
            if self.rng.random::<f64>() >= mutation {
                if let Some(v) = from.internal(name) {
                    child.insert(name.clone(), v);
                }
            }
        }
        child
    }

    fn sample_independent(
        &mut self,
        ctx: &SamplerContext<'_>,
        name: &str,
        d: &Distribution,
    ) -> f64 {
        self.random.sample_independent(ctx, name, d)
    }
}
