//! Uniform random sampling.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::{Sampler, SamplerContext};
use crate::space::Distribution;
use crate::Seed;

/// Independent uniform sampling on each parameter's (log) scale.
#[derive(Debug, Clone)]
pub struct RandomSampler {
    seed: Seed,
    rng: Pcg64Mcg,
}

impl RandomSampler {
    /// A sampler whose suggestions are a function of `seed`.
    pub fn new(seed: Seed) -> Self {
        RandomSampler {
            seed,
            rng: Pcg64Mcg::seed_from_u64(seed.0),
        }
    }

    /// A uniform draw in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f64 {
        self.rng.random::<f64>()
    }
}

impl Sampler for RandomSampler {
    fn begin_trial(&mut self, number: u64) {
        self.rng = Pcg64Mcg::seed_from_u64(self.seed.for_trial(0x7261_6e64, number));
    }

    fn sample_independent(
        &mut self,
        _ctx: &SamplerContext<'_>,
        _name: &str,
        d: &Distribution,
    ) -> f64 {
        d.from_unit(self.unit())
    }
}
