//! The tree-structured Parzen estimator (Bergstra et al. 2011), with Optuna 5's
//! defaults: multivariate kernels over the parameters all complete trials share,
//! neighbour-gap bandwidths with the "magic clip", a prior kernel, age-ramped weights,
//! 24 expected-improvement candidates and the constant liar for running trials.

use std::collections::BTreeMap;

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::{RandomSampler, Sampler, SamplerContext};
use crate::pareto;
use crate::space::Distribution;
use crate::study::Direction;
use crate::trial::{FrozenTrial, TrialState};
use crate::Seed;

/// TPE options (Optuna's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct TpeConfig {
    /// Random trials before the model is used.
    pub n_startup_trials: usize,
    /// Candidates drawn from the good-trial density per suggestion.
    pub n_ei_candidates: usize,
    /// Weight of the prior kernel.
    pub prior_weight: f64,
    /// Model the shared parameters jointly (Optuna 5's default).
    pub multivariate: bool,
    /// Treat running trials as bad ones so parallel workers spread out.
    pub constant_liar: bool,
    /// Model jointly each group of conditional parameters that always occur together
    /// (Optuna's `group=True`), instead of one at a time. Off by default, as in
    /// Optuna: on small budgets the wider multivariate bandwidths can cost more than
    /// the joint model gains.
    pub group: bool,
}

impl Default for TpeConfig {
    fn default() -> Self {
        TpeConfig {
            n_startup_trials: 10,
            n_ei_candidates: 24,
            prior_weight: 1.0,
            multivariate: true,
            constant_liar: true,
            group: false,
        }
    }
}

/// The TPE sampler.
#[derive(Debug, Clone)]
pub struct TpeSampler {
    config: TpeConfig,
    seed: Seed,
    rng: Pcg64Mcg,
    random: RandomSampler,
    /// Joint proposals for the rest of a parameter group, by trial number.
    grouped: BTreeMap<u64, BTreeMap<String, (Distribution, f64)>>,
}

impl TpeSampler {
    /// A TPE sampler with Optuna's defaults.
    pub fn new(seed: Seed) -> Self {
        TpeSampler::with_config(seed, TpeConfig::default())
    }

    /// A TPE sampler with `config`.
    pub fn with_config(seed: Seed, config: TpeConfig) -> Self {
        TpeSampler {
            config,
            seed,
            rng: Pcg64Mcg::seed_from_u64(seed.0 ^ 0x7f4a_7c15_9e37_79b9),
            random: RandomSampler::new(seed),
            grouped: BTreeMap::new(),
        }
    }
}

/// The group of `name`: the parameters that occur in exactly the same complete trials
/// (with the same distributions), with their distributions, sorted by name.
fn group_of(trials: &[FrozenTrial], name: &str, d: &Distribution) -> Vec<(String, Distribution)> {
    let with: Vec<&FrozenTrial> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter(|t| t.distributions.get(name) == Some(d))
        .collect();
    let Some(first) = with.first() else {
        return Vec::new();
    };
    let without = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete && !t.distributions.contains_key(name));
    first
        .distributions
        .iter()
        .filter(|(k, v)| with.iter().all(|t| t.distributions.get(*k) == Some(*v)))
        .filter(|(k, _)| without.clone().all(|t| !t.distributions.contains_key(*k)))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// Optuna's default gamma: the number of "good" trials.
fn gamma(n: usize) -> usize {
    ((0.1 * n as f64).ceil() as usize).min(25)
}

/// Optuna's default weights: older trials weigh less once there are more than 25.
fn weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            if ramp == 1 {
                1.0 / n as f64
            } else {
                1.0 / n as f64 + (1.0 - 1.0 / n as f64) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

/// One dimension of the model, in the transformed (log where asked) space.
#[derive(Debug, Clone)]
enum Dim {
    /// A numerical dimension: bounds, and the grid step if discrete.
    Num { lo: f64, hi: f64, step: Option<f64> },
    /// A categorical dimension with this many choices.
    Cat(usize),
}

impl Dim {
    fn of(d: &Distribution) -> Dim {
        match *d {
            Distribution::Float {
                low,
                high,
                log,
                step,
            } => {
                if log {
                    Dim::Num {
                        lo: low.ln(),
                        hi: high.ln(),
                        step: None,
                    }
                } else if let Some(s) = step {
                    Dim::Num {
                        lo: low - s / 2.0,
                        hi: high + s / 2.0,
                        step: Some(s),
                    }
                } else {
                    Dim::Num {
                        lo: low,
                        hi: high,
                        step: None,
                    }
                }
            }
            Distribution::Int {
                low,
                high,
                log,
                step,
            } => {
                if log {
                    Dim::Num {
                        lo: (low as f64 - 0.5).ln(),
                        hi: (high as f64 + 0.5).ln(),
                        step: None,
                    }
                } else {
                    let s = step as f64;
                    Dim::Num {
                        lo: low as f64 - s / 2.0,
                        hi: high as f64 + s / 2.0,
                        step: Some(s),
                    }
                }
            }
            Distribution::Categorical { ref choices } => Dim::Cat(choices.len()),
        }
    }
}

/// Internal value → model coordinate.
fn to_model(d: &Distribution, x: f64) -> f64 {
    match *d {
        Distribution::Float { log: true, .. } | Distribution::Int { log: true, .. } => x.ln(),
        _ => x,
    }
}

/// Model coordinate → internal value on the distribution's grid.
fn from_model(d: &Distribution, t: f64) -> f64 {
    match *d {
        Distribution::Float {
            low,
            high,
            log,
            step,
        } => {
            let x = if log { t.exp() } else { t };
            match step {
                Some(s) => (low + ((x - low) / s).round() * s).clamp(low, high),
                None => x.clamp(low, high),
            }
        }
        Distribution::Int {
            low,
            high,
            log,
            step,
        } => {
            let x = if log { t.exp() } else { t };
            let k = ((x - low as f64) / step as f64).round() as i64;
            (low + k * step).clamp(low, high) as f64
        }
        Distribution::Categorical { .. } => t,
    }
}

const SQRT2: f64 = std::f64::consts::SQRT_2;

/// Φ(b) − Φ(a) for a ≤ b, accurate in both tails.
fn ndtr_diff(a: f64, b: f64) -> f64 {
    if a > 0.0 {
        0.5 * (libm::erfc(a / SQRT2) - libm::erfc(b / SQRT2))
    } else if b < 0.0 {
        0.5 * (libm::erfc(-b / SQRT2) - libm::erfc(-a / SQRT2))
    } else {
        1.0 - 0.5 * (libm::erfc(-a / SQRT2) + libm::erfc(b / SQRT2))
    }
}

/// A Parzen estimator: weighted product kernels (the last one is the prior).
struct Parzen {
    dims: Vec<Dim>,
    weights: Vec<f64>,
    /// Per kernel, per dimension: (mu, sigma) for numerical dims, probabilities for categorical.
    kernels: Vec<Vec<Kernel>>,
}

#[derive(Debug, Clone)]
enum Kernel {
    Normal(f64, f64),
    Probs(Vec<f64>),
}

impl Parzen {
    /// `obs[i][k]`: model coordinate (or choice index) of observation i in dimension k.
    fn new(dims: Vec<Dim>, obs: &[Vec<f64>], obs_weights: &[f64], prior_weight: f64) -> Parzen {
        let n = obs.len();
        let mut weights: Vec<f64> = obs_weights.to_vec();
        weights.push(prior_weight);
        let total: f64 = weights.iter().sum();
        for w in &mut weights {
            *w /= total;
        }
        let n_kernels = n + 1;
        let mut kernels: Vec<Vec<Kernel>> = vec![Vec::with_capacity(dims.len()); n_kernels];
        for (k, dim) in dims.iter().enumerate() {
            match *dim {
                Dim::Num { lo, hi, .. } => {
                    let width = hi - lo;
                    let mus: Vec<f64> = obs.iter().map(|o| o[k]).collect();
                    let prior_mu = 0.5 * (lo + hi);
                    // Optuna 5's bandwidths, for the joint and the single-parameter model
                    // alike: the larger gap to a neighbouring centre (bounds count as
                    // neighbours, except that the outermost centres use their inner gap).
                    let mut order: Vec<usize> = (0..n).collect();
                    order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
                    let mut ext = Vec::with_capacity(n + 2);
                    ext.push(lo);
                    ext.extend(order.iter().map(|&i| mus[i]));
                    ext.push(hi);
                    let mut sorted_sigmas: Vec<f64> = (1..=n)
                        .map(|j| (ext[j] - ext[j - 1]).max(ext[j + 1] - ext[j]))
                        .collect();
                    if n >= 2 {
                        sorted_sigmas[0] = ext[2] - ext[1];
                        sorted_sigmas[n - 1] = ext[n] - ext[n - 1];
                    }
                    let mut sigmas = vec![0.0; n];
                    for (rank, &i) in order.iter().enumerate() {
                        sigmas[i] = sorted_sigmas[rank];
                    }
                    // Optuna's magic clip.
                    let min_sigma = width / (100.0f64).min(1.0 + n_kernels as f64);
                    for (i, (&m, &s)) in mus.iter().zip(&sigmas).enumerate() {
                        kernels[i].push(Kernel::Normal(m, s.clamp(min_sigma, width)));
                    }
                    kernels[n].push(Kernel::Normal(prior_mu, width));
                }
                Dim::Cat(c) => {
                    for (i, o) in obs.iter().enumerate() {
                        let mut p = vec![prior_weight / n_kernels as f64; c];
                        p[o[k] as usize] += 1.0;
                        let t: f64 = p.iter().sum();
                        kernels[i].push(Kernel::Probs(p.into_iter().map(|x| x / t).collect()));
                    }
                    kernels[n].push(Kernel::Probs(vec![1.0 / c as f64; c]));
                }
            }
        }
        Parzen {
            dims,
            weights,
            kernels,
        }
    }

    fn sample(&self, rng: &mut Pcg64Mcg) -> Vec<f64> {
        let u: f64 = rng.random::<f64>();
        let mut acc = 0.0;
        let mut which = self.weights.len() - 1;
        for (i, w) in self.weights.iter().enumerate() {
            acc += w;
            if u < acc {
                which = i;
                break;
            }
        }
        self.dims
            .iter()
            .zip(&self.kernels[which])
            .map(|(dim, k)| match (dim, k) {
                (Dim::Num { lo, hi, .. }, Kernel::Normal(mu, s)) => {
                    for _ in 0..100 {
                        let z = standard_normal(rng);
                        let x = mu + s * z;
                        if x >= *lo && x <= *hi {
                            return x;
                        }
                    }
                    lo + rng.random::<f64>() * (hi - lo)
                }
                (Dim::Cat(_), Kernel::Probs(p)) => {
                    let u: f64 = rng.random::<f64>();
                    let mut acc = 0.0;
                    for (i, q) in p.iter().enumerate() {
                        acc += q;
                        if u < acc {
                            return i as f64;
                        }
                    }
                    (p.len() - 1) as f64
                }
                _ => unreachable!("kernels match their dimensions"),
            })
            .collect()
    }

    fn log_pdf(&self, x: &[f64]) -> f64 {
        let mut terms = Vec::with_capacity(self.weights.len());
        for (w, kern) in self.weights.iter().zip(&self.kernels) {
            let mut lp = w.ln();
            for ((dim, k), &xk) in self.dims.iter().zip(kern).zip(x) {
                lp += match (dim, k) {
                    (Dim::Num { lo, hi, step }, Kernel::Normal(mu, s)) => {
                        let z_norm = ndtr_diff((lo - mu) / s, (hi - mu) / s).max(1e-300);
                        match step {
                            Some(st) => {
                                let a = ((xk - st / 2.0).max(*lo) - mu) / s;
                                let b = ((xk + st / 2.0).min(*hi) - mu) / s;
                                (ndtr_diff(a, b).max(1e-300) / z_norm).ln()
                            }
                            None => {
                                let z = (xk - mu) / s;
                                -0.5 * z * z
                                    - (s * (2.0 * std::f64::consts::PI).sqrt()).ln()
                                    - z_norm.ln()
                            }
                        }
                    }
                    (Dim::Cat(_), Kernel::Probs(p)) => p[xk as usize].max(1e-300).ln(),
                    _ => unreachable!("kernels match their dimensions"),
                };
            }
            terms.push(lp);
        }
        let m = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        m + terms.iter().map(|t| (t - m).exp()).sum::<f64>().ln()
    }
}

pub(crate) fn standard_normal(rng: &mut Pcg64Mcg) -> f64 {
    // Box–Muller.
    let u1: f64 = 1.0 - rng.random::<f64>();
    let u2: f64 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
}

/// Splits usable trials into good and bad ones (ordered by trial number), with their
/// model coordinates for `names`.
fn split(
    trials: &[FrozenTrial],
    directions: &[Direction],
    names: &[&str],
    dists: &[&Distribution],
    constant_liar: bool,
    current: u64,
) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
    let coords = |t: &FrozenTrial| -> Option<Vec<f64>> {
        names
            .iter()
            .zip(dists)
            .map(|(n, d)| {
                if t.distributions.get(*n) != Some(*d) {
                    return None;
                }
                t.internal(n).map(|x| to_model(d, x))
            })
            .collect()
    };
    let mut complete: Vec<(&FrozenTrial, Vec<f64>)> = Vec::new();
    let mut rest: Vec<(u64, Vec<f64>)> = Vec::new();
    let mut n_pruned = 0;
    for t in trials {
        if t.number == current {
            continue;
        }
        let Some(c) = coords(t) else { continue };
        match t.state {
            TrialState::Complete => complete.push((t, c)),
            TrialState::Pruned => {
                n_pruned += 1;
                rest.push((t.number, c));
            }
            TrialState::Running if constant_liar => rest.push((t.number, c)),
            _ => {}
        }
    }
    // Best first: feasible by value (or Pareto front and crowding), then infeasible by
    // violation.
    let refs: Vec<&FrozenTrial> = complete.iter().map(|(t, _)| *t).collect();
    let order = pareto::rank(&refs, directions);
    let n_below = gamma(complete.len() + n_pruned).min(complete.len());
    let mut below: Vec<(u64, Vec<f64>)> = order[..n_below]
        .iter()
        .map(|&i| (complete[i].0.number, complete[i].1.clone()))
        .collect();
    let mut above: Vec<(u64, Vec<f64>)> = order[n_below..]
        .iter()
        .map(|&i| (complete[i].0.number, complete[i].1.clone()))
        .collect();
    above.extend(rest);
    below.sort_by_key(|x| x.0);
    above.sort_by_key(|x| x.0);
    (
        below.into_iter().map(|x| x.1).collect(),
        above.into_iter().map(|x| x.1).collect(),
    )
}

impl TpeSampler {
    /// Finished trials, as Optuna's TPE counts them against `n_startup_trials`:
    /// complete and pruned (a pruned trial tells the model where not to look).
    fn n_finished(trials: &[FrozenTrial]) -> usize {
        trials
            .iter()
            .filter(|t| matches!(t.state, TrialState::Complete | TrialState::Pruned))
            .count()
    }

    /// Draws candidates from the good density and keeps the best log l(x) − log g(x).
    fn propose(
        &mut self,
        ctx: &SamplerContext<'_>,
        names: &[&str],
        dists: &[&Distribution],
    ) -> Option<Vec<f64>> {
        let (below, above) = split(
            ctx.trials,
            ctx.directions,
            names,
            dists,
            self.config.constant_liar,
            ctx.number,
        );
        if below.is_empty() {
            return None;
        }
        let dims: Vec<Dim> = dists.iter().map(|d| Dim::of(d)).collect();
        let l = Parzen::new(
            dims.clone(),
            &below,
            &weights(below.len()),
            self.config.prior_weight,
        );
        let g = Parzen::new(
            dims,
            &above,
            &weights(above.len()),
            self.config.prior_weight,
        );
        let mut best: Option<(f64, Vec<f64>)> = None;
        for _ in 0..self.config.n_ei_candidates.max(1) {
            let mut x = l.sample(&mut self.rng);
            // Snap discrete coordinates onto their grid before scoring.
            for ((xk, d), dim) in x.iter_mut().zip(dists).zip(&l.dims) {
                if let Dim::Num { .. } = dim {
                    *xk = to_model(d, from_model(d, *xk));
                }
            }
            let score = l.log_pdf(&x) - g.log_pdf(&x);
            if best.as_ref().is_none_or(|(b, _)| score > *b) {
                best = Some((score, x));
            }
        }
        best.map(|(_, x)| {
            x.iter()
                .zip(dists)
                .map(|(&t, d)| from_model(d, t))
                .collect()
        })
    }
}

impl Sampler for TpeSampler {
    fn begin_trial(&mut self, number: u64) {
        self.rng = Pcg64Mcg::seed_from_u64(self.seed.for_trial(0x7f4a_7c15_9e37_79b9, number));
        self.random.begin_trial(number);
    }

    fn sample_relative(
        &mut self,
        ctx: &SamplerContext<'_>,
        space: &BTreeMap<String, Distribution>,
    ) -> BTreeMap<String, f64> {
        if !self.config.multivariate
            || space.is_empty()
            || Self::n_finished(ctx.trials) < self.config.n_startup_trials
        {
            return BTreeMap::new();
        }
        let names: Vec<&str> = space.keys().map(String::as_str).collect();
        let dists: Vec<&Distribution> = space.values().collect();
        match self.propose(ctx, &names, &dists) {
            Some(x) => names.iter().map(|n| (*n).to_owned()).zip(x).collect(),
            None => BTreeMap::new(),
        }
    }

    fn sample_independent(
        &mut self,
        ctx: &SamplerContext<'_>,
        name: &str,
        d: &Distribution,
    ) -> f64 {
        if Self::n_finished(ctx.trials) < self.config.n_startup_trials {
            return self.random.sample_independent(ctx, name, d);
        }
        self.grouped.retain(|&n, _| n == ctx.number);
        if let Some((gd, x)) = self
            .grouped
            .get_mut(&ctx.number)
            .and_then(|g| g.remove(name))
        {
            if gd == *d {
                return x;
            }
        }
        if self.config.group && self.config.multivariate {
            let group = group_of(ctx.trials, name, d);
            if group.len() > 1 {
                let names: Vec<&str> = group.iter().map(|(n, _)| n.as_str()).collect();
                let dists: Vec<&Distribution> = group.iter().map(|(_, d)| d).collect();
                if let Some(x) = self.propose(ctx, &names, &dists) {
                    let mut joint: BTreeMap<String, (Distribution, f64)> = group
                        .into_iter()
                        .zip(x)
                        .map(|((n, d), v)| (n, (d, v)))
                        .collect();
                    let (_, mine) = joint.remove(name).expect("the group holds the parameter");
                    self.grouped.insert(ctx.number, joint);
                    return mine;
                }
            }
        }
        match self.propose(ctx, &[name], &[d]) {
            Some(x) => x[0],
            None => self.random.sample_independent(ctx, name, d),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditional_groups_are_proposed_jointly() {
        use crate::{Direction, Seed};
        let f = |name: &str| Distribution::float(0.0, 1.0).validated(name).unwrap();
        let trials: Vec<FrozenTrial> = (0..30u64)
            .map(|i| {
                let mut t = FrozenTrial::new(i, TrialState::Complete);
                let u = (i as f64 * 0.618).fract();
                let mut put = |n: &str, v: f64| {
                    t.distributions.insert(n.to_owned(), f(n));
                    t.params.insert(n.to_owned(), v.into());
                };
                put("lr", u);
                if i % 2 == 0 {
                    put("b1", u);
                    put("b2", 1.0 - u);
                } else {
                    put("momentum", u);
                }
                t.values = Some(vec![u]);
                t
            })
            .collect();
        let names =
            |g: Vec<(String, Distribution)>| g.into_iter().map(|(n, _)| n).collect::<Vec<_>>();
        assert_eq!(names(group_of(&trials, "b1", &f("b1"))), ["b1", "b2"]);
        assert_eq!(
            names(group_of(&trials, "momentum", &f("momentum"))),
            ["momentum"]
        );
        assert_eq!(names(group_of(&trials, "lr", &f("lr"))), ["lr"]);
        let config = TpeConfig {
            group: true,
            ..TpeConfig::default()
        };
        let mut tpe = TpeSampler::with_config(Seed(1), config);
        let mut all = trials.clone();
        all.push(FrozenTrial::new(30, TrialState::Running));
        let ctx = SamplerContext {
            trials: &all,
            directions: &[Direction::Minimize],
            number: 30,
        };
        tpe.sample_independent(&ctx, "b1", &f("b1"));
        // b2 was proposed with b1 and waits for its turn.
        let (_, b2) = tpe.grouped[&30]["b2"].clone();
        assert_eq!(tpe.sample_independent(&ctx, "b2", &f("b2")), b2);
        assert!(tpe.grouped[&30].is_empty());
    }

    #[test]
    fn pruned_trials_count_towards_the_random_start() {
        use crate::{Direction, Seed};
        let d = Distribution::float(0.0, 1.0).validated("x").unwrap();
        let trial = |i: u64, state: TrialState| {
            let mut t = FrozenTrial::new(i, state);
            t.distributions.insert("x".into(), d.clone());
            t.params.insert("x".into(), (0.1 * i as f64).into());
            if state == TrialState::Complete {
                t.values = Some(vec![0.1 * i as f64]);
            }
            t
        };
        // One complete and three pruned trials: four finished, as Optuna counts them.
        let mut trials: Vec<FrozenTrial> = vec![trial(0, TrialState::Complete)];
        trials.extend((1..4).map(|i| trial(i, TrialState::Pruned)));
        trials.push(FrozenTrial::new(4, TrialState::Running));
        let ctx = SamplerContext {
            trials: &trials,
            directions: &[Direction::Minimize],
            number: 4,
        };
        let config = |n| TpeConfig {
            n_startup_trials: n,
            ..TpeConfig::default()
        };
        assert_eq!(TpeSampler::n_finished(&trials), 4);
        let random = TpeSampler::with_config(Seed(3), config(5)).sample_independent(&ctx, "x", &d);
        let model = TpeSampler::with_config(Seed(3), config(4)).sample_independent(&ctx, "x", &d);
        // Still starting: the same draw as the random sampler; started: another.
        assert_eq!(
            random,
            RandomSampler::new(Seed(3)).sample_independent(&ctx, "x", &d)
        );
        assert_ne!(model, random);
    }

    #[test]
    fn optuna_gamma_and_weights() {
        assert_eq!(gamma(10), 1);
        assert_eq!(gamma(11), 2);
        assert_eq!(gamma(1000), 25);
        assert_eq!(weights(3), [1.0; 3]);
        let w = weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12 && w[4] == 1.0 && w[29] == 1.0);
    }

    #[test]
    fn truncated_normal_mass_is_one() {
        let p = Parzen::new(
            vec![Dim::Num {
                lo: 0.0,
                hi: 1.0,
                step: None,
            }],
            &[vec![0.3]],
            &[1.0],
            1.0,
        );
        let n = 20_000;
        let integral: f64 = (0..n)
            .map(|i| p.log_pdf(&[(i as f64 + 0.5) / n as f64]).exp() / n as f64)
            .sum();
        assert!((integral - 1.0).abs() < 1e-3, "{integral}");
        let p = Parzen::new(
            vec![Dim::Num {
                lo: -0.5,
                hi: 4.5,
                step: Some(1.0),
            }],
            &[vec![2.0]],
            &[1.0],
            1.0,
        );
        let total: f64 = (0..5).map(|k| p.log_pdf(&[k as f64]).exp()).sum();
        assert!((total - 1.0).abs() < 1e-9, "{total}");
    }
}
