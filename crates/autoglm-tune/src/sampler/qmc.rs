//! Quasi-random sampling with an Owen-scrambled Sobol sequence.

use std::collections::BTreeMap;

use super::{RandomSampler, Sampler, SamplerContext};
use crate::space::Distribution;
use crate::Seed;

/// Low-discrepancy sampling: the parameters shared by all complete trials take the
/// coordinates of point `n − 1` of trial `n` of an Owen-scrambled Sobol sequence (Burley 2020,
/// `sobol_burley`); others, and the first trial, are sampled uniformly at random.
#[derive(Debug, Clone)]
pub struct QmcSampler {
    seed: u32,
    fallback: RandomSampler,
    index: u32,
}

impl QmcSampler {
    /// A sampler whose suggestions are a function of `seed`.
    pub fn new(seed: Seed) -> Self {
        QmcSampler {
            seed: (seed.0 ^ (seed.0 >> 32)) as u32,
            fallback: RandomSampler::new(Seed(seed.0.wrapping_add(0x9e37_79b9_7f4a_7c15))),
            index: 0,
        }
    }
}

/// Coordinate `k` of point `i` of the Owen-scrambled Sobol sequence scrambled by
/// `seed`; past the sequence's 256 dimensions, dimensions repeat with another scramble.
pub(crate) fn sobol_coordinate(i: u32, k: usize, seed: u32) -> f64 {
    let n = sobol_burley::NUM_DIMENSIONS as usize;
    f64::from(sobol_burley::sample(
        i,
        (k % n) as u32,
        seed.wrapping_add((k / n) as u32),
    ))
}

impl Sampler for QmcSampler {
    fn begin_trial(&mut self, number: u64) {
        self.fallback.begin_trial(number);
        // The trial number fixes the point (trial 0, which has no shared space to
        // propose jointly, is sampled at random; trial n takes point n − 1), so a
        // resumed study continues the sequence where it was.
        self.index = number.saturating_sub(1) as u32;
    }

    fn sample_relative(
        &mut self,
        _ctx: &SamplerContext<'_>,
        space: &BTreeMap<String, Distribution>,
    ) -> BTreeMap<String, f64> {
        if space.is_empty() {
            return BTreeMap::new();
        }
        // Consecutive points from 0 fill the cube evenly (every aligned block of 2^k
        // points is a (0, k, d)-net in two dimensions). The sequence has 256
        // dimensions; further ones reuse it with another scramble seed.
        let i = self.index;
        space
            .iter()
            .enumerate()
            .map(|(k, (name, d))| {
                let u = sobol_coordinate(i, k, self.seed);
                (name.clone(), d.from_unit(u))
            })
            .collect()
    }

    fn sample_independent(
        &mut self,
        ctx: &SamplerContext<'_>,
        name: &str,
        d: &Distribution,
    ) -> f64 {
        self.fallback.sample_independent(ctx, name, d)
    }
}
