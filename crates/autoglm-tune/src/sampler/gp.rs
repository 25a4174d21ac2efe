//! Gaussian-process Bayesian optimisation: a Matérn-5/2 kernel with one length scale
//! per dimension (a Hamming distance for categorical ones), hyperparameters fitted by
//! maximum marginal likelihood with priors, log expected improvement computed stably,
//! and an acquisition search of quasi-random candidates refined by projected gradient
//! ascent on continuous dimensions and exhaustive moves on discrete ones.

use std::collections::BTreeMap;

use nalgebra::{DMatrix, DVector};
use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use super::{RandomSampler, Sampler, SamplerContext};
use crate::pareto;
use crate::space::Distribution;
use crate::study::Direction;
use crate::trial::{FrozenTrial, TrialState};
use crate::Seed;

/// GP sampler options.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct GpConfig {
    /// Random trials before the model is used.
    pub n_startup_trials: usize,
    /// Quasi-random candidates scored before the local search.
    pub n_preliminary: usize,
    /// Starting points of the local search.
    pub n_local_search: usize,
    /// Smallest noise variance (on standardised values). The noise variance is fitted
    /// with the other hyperparameters; this floor only binds when the observations look
    /// noise-free, and it limits how precisely such an objective's optimum is located.
    pub minimum_noise: f64,
    /// Warp the standardised objective values with a Yeo–Johnson power transform whose
    /// exponent is fitted by maximum likelihood, so that a few very bad (or very good)
    /// values do not dominate the length scales.
    pub output_warping: bool,
    /// Refit the kernel hyperparameters on every `refit_interval`-th suggestion only,
    /// reusing the previous ones in between (1 = every suggestion).
    pub refit_interval: usize,
}

impl Default for GpConfig {
    fn default() -> Self {
        GpConfig {
            n_startup_trials: 10,
            n_preliminary: 2048,
            n_local_search: 10,
            minimum_noise: 1e-10,
            output_warping: true,
            refit_interval: 1,
        }
    }
}

impl GpConfig {
    /// A cheaper configuration (a sixth to a tenth of the default's cost per
    /// suggestion): hyperparameters refitted on every 4th suggestion, 256 quasi-random
    /// candidates and 3 local searches. On the shared benchmark its regret is close to
    /// the default's (see `BENCHMARKS.md`); `AutoSampler` uses it.
    pub fn economical() -> Self {
        GpConfig {
            n_preliminary: 256,
            n_local_search: 3,
            refit_interval: 4,
            ..GpConfig::default()
        }
    }
}

/// The GP sampler.
#[derive(Debug, Clone)]
pub struct GpSampler {
    config: GpConfig,
    seed: Seed,
    rng: Pcg64Mcg,
    random: RandomSampler,
    /// Last fitted raw hyperparameters (warm start), with their dimension count.
    warm: Option<Vec<f64>>,
    qmc_seed: u32,
}

impl GpSampler {
    /// A GP sampler with default options.
    pub fn new(seed: Seed) -> Self {
        GpSampler::with_config(seed, GpConfig::default())
    }

    /// Its options.
    pub fn config(&self) -> &GpConfig {
        &self.config
    }

    /// A GP sampler with `config`.
    pub fn with_config(seed: Seed, config: GpConfig) -> Self {
        GpSampler {
            config,
            seed,
            rng: Pcg64Mcg::seed_from_u64(seed.0 ^ 0x5851_f42d_4c95_7f2d),
            random: RandomSampler::new(seed),
            warm: None,
            qmc_seed: seed.0 as u32 ^ 0x2545_f491,
        }
    }
}

/// One dimension of the normalised space.
#[derive(Debug, Clone)]
enum Dim {
    /// In [0, 1]; `grid` = number of grid points if discrete.
    Num { grid: Option<usize> },
    /// A choice index; distance is 0 or 1.
    Cat(usize),
}

const SQRT5: f64 = 2.236_067_977_499_79;

/// Matérn 5/2 as a function of the squared scaled distance, and its derivative.
#[inline]
fn matern52(r2: f64) -> (f64, f64) {
    let r = r2.max(0.0).sqrt();
    let e = (-SQRT5 * r).exp();
    let k = (1.0 + SQRT5 * r + 5.0 / 3.0 * r2) * e;
    let dk_dr2 = -5.0 / 6.0 * (1.0 + SQRT5 * r) * e;
    (k, dk_dr2)
}

/// Per-dimension contribution to the squared distance.
#[inline]
fn sqd(dims: &[Dim], a: &[f64], b: &[f64], k: usize) -> f64 {
    match dims[k] {
        Dim::Num { .. } => (a[k] - b[k]).powi(2),
        Dim::Cat(_) => f64::from(u8::from(a[k] != b[k])),
    }
}

/// A fitted GP on standardised observations.
struct Gp {
    dims: Vec<Dim>,
    x: Vec<Vec<f64>>,
    ils: Vec<f64>,
    scale: f64,
    /// The lower Cholesky factor, for variances with a single triangular solve.
    lower: DMatrix<f64>,
    /// K⁻¹, for the variances of many points at once by one matrix product.
    kinv: DMatrix<f64>,
    alpha: DVector<f64>,
}

/// Kernel hyperparameters decoded from the raw (log) parameters
/// `[ln ils.., ln scale, ln(noise − 0.99·min)]` that the fit optimises.
struct Hyper {
    ils: Vec<f64>,
    scale: f64,
    noise: f64,
}

impl Hyper {
    fn decode(raw: &[f64], d: usize, min_noise: f64) -> Hyper {
        Hyper {
            ils: raw[..d].iter().map(|v| v.exp()).collect(),
            scale: raw[d].exp(),
            noise: raw[d + 1].exp() + 0.99 * min_noise,
        }
    }
}

/// The unit-scale Matérn matrix over the training points, and its derivative with
/// respect to the squared scaled distance.
fn matern_matrices(dims: &[Dim], x: &[Vec<f64>], ils: &[f64]) -> (DMatrix<f64>, DMatrix<f64>) {
    let n = x.len();
    let mut m = DMatrix::<f64>::zeros(n, n);
    let mut dm = DMatrix::<f64>::zeros(n, n);
    for i in 0..n {
        for j in 0..=i {
            let r2: f64 = (0..dims.len())
                .map(|k| ils[k] * sqd(dims, &x[i], &x[j], k))
                .sum();
            let (kv, dk) = matern52(r2);
            m[(i, j)] = kv;
            m[(j, i)] = kv;
            dm[(i, j)] = dk;
            dm[(j, i)] = dk;
        }
    }
    (m, dm)
}

/// `scale·M + noise·I`.
fn covariance(m: &DMatrix<f64>, scale: f64, noise: f64) -> DMatrix<f64> {
    let mut k = m * scale;
    for i in 0..k.nrows() {
        k[(i, i)] += noise;
    }
    k
}

/// The per-dimension squared distances of every pair `i > j` of training points,
/// pair-major (`sq[p·d + k]`): constant while the hyperparameters are fitted.
struct Pairs {
    n: usize,
    d: usize,
    index: Vec<(usize, usize)>,
    sq: Vec<f64>,
}

impl Pairs {
    fn new(dims: &[Dim], x: &[Vec<f64>]) -> Pairs {
        let (n, d) = (x.len(), dims.len());
        let n_pairs = n * n.saturating_sub(1) / 2;
        let mut index = Vec::with_capacity(n_pairs);
        let mut sq = Vec::with_capacity(n_pairs * d);
        for i in 0..n {
            for j in 0..i {
                index.push((i, j));
                sq.extend((0..d).map(|k| sqd(dims, &x[i], &x[j], k)));
            }
        }
        Pairs { n, d, index, sq }
    }
}

/// Negative log marginal likelihood plus log prior, and its gradient, at raw
/// parameters `[ln ils.., ln scale, ln(noise − 0.99·min)]`.
fn loss(pairs: &Pairs, y: &DVector<f64>, raw: &[f64], min_noise: f64, grad: &mut [f64]) -> f64 {
    let (n, d) = (pairs.n, pairs.d);
    let Hyper { ils, scale, noise } = Hyper::decode(raw, d, min_noise);
    // Matérn values and derivatives (in r²) per pair.
    let (m, dm): (Vec<f64>, Vec<f64>) = pairs
        .sq
        .chunks_exact(d.max(1))
        .take(pairs.index.len())
        .map(|s| matern52(s.iter().zip(&ils).map(|(a, b)| a * b).sum()))
        .unzip();
    let mut kmat = DMatrix::<f64>::from_diagonal_element(n, n, scale + noise);
    for (p, &(i, j)) in pairs.index.iter().enumerate() {
        kmat[(i, j)] = scale * m[p];
        kmat[(j, i)] = scale * m[p];
    }
    let Some(chol) = kmat.cholesky() else {
        return f64::INFINITY;
    };
    let alpha = chol.solve(y);
    let logdet: f64 = 2.0 * (0..n).map(|i| chol.l_dirty()[(i, i)].ln()).sum::<f64>();
    let mll =
        -0.5 * y.dot(&alpha) - 0.5 * logdet - 0.5 * n as f64 * (2.0 * std::f64::consts::PI).ln();
    let prior: f64 = ils.iter().map(|l| -(0.1 / l + 0.1 * l)).sum::<f64>() + scale.ln() - scale
        + 0.1 * noise.ln()
        - 30.0 * noise;
    // Gradient: 0.5 tr(W dK), W = αα' − K⁻¹; off-diagonal pairs count twice.
    let kinv = chol.inverse();
    let w = |i: usize, j: usize| alpha[i] * alpha[j] - kinv[(i, j)];
    let trace_w: f64 = (0..n).map(|i| w(i, i)).sum();
    let mut dils = vec![0.0; d];
    let mut wm = trace_w;
    for (p, &(i, j)) in pairs.index.iter().enumerate() {
        let wij = w(i, j);
        wm += 2.0 * wij * m[p];
        let c = 2.0 * wij * dm[p];
        for (g, s) in dils.iter_mut().zip(&pairs.sq[p * d..(p + 1) * d]) {
            *g += c * s;
        }
    }
    for k in 0..d {
        let dmll = 0.5 * dils[k] * scale * ils[k];
        let dprior = 0.1 / ils[k] - 0.1 * ils[k];
        grad[k] = -(dmll + dprior);
    }
    grad[d] = -(0.5 * wm * scale + 1.0 - scale);
    let nz = noise - 0.99 * min_noise;
    grad[d + 1] = -(0.5 * trace_w * nz + (0.1 / noise - 30.0) * nz);
    -(mll + prior)
}

/// Minimises `f` with L-BFGS (memory 10) and a backtracking Armijo line search.
fn lbfgs(
    mut f: impl FnMut(&[f64], &mut [f64]) -> f64,
    x0: Vec<f64>,
    max_iter: usize,
    gtol: f64,
) -> Vec<f64> {
    let n = x0.len();
    let mut x = x0;
    let mut g = vec![0.0; n];
    let mut fx = f(&x, &mut g);
    if !fx.is_finite() {
        return x;
    }
    let mut hist: Vec<(Vec<f64>, Vec<f64>, f64)> = Vec::new();
    for _ in 0..max_iter {
        if g.iter().map(|v| v.abs()).fold(0.0, f64::max) < gtol {
            break;
        }
        // Two-loop recursion.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(hist.len());
        for (s, y, rho) in hist.iter().rev() {
            let a = rho * dot(s, &q);
            for i in 0..n {
                q[i] -= a * y[i];
            }
            alphas.push(a);
        }
        if let Some((s, y, _)) = hist.last() {
            let gamma = dot(s, y) / dot(y, y);
            for v in &mut q {
                *v *= gamma;
            }
        }
        for ((s, y, rho), a) in hist.iter().zip(alphas.iter().rev()) {
            let b = rho * dot(y, &q);
            for i in 0..n {
                q[i] += s[i] * (a - b);
            }
        }
        let mut dir: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&dir, &g);
        if slope >= 0.0 {
            dir = g.iter().map(|v| -v).collect();
            slope = dot(&dir, &g);
            hist.clear();
        }
        let mut step = if hist.is_empty() {
            1.0 / g.iter().map(|v| v.abs()).fold(1e-12, f64::max).max(1.0)
        } else {
            1.0
        };
        let mut g_new = vec![0.0; n];
        let mut accepted = None;
        for _ in 0..30 {
            let x_new: Vec<f64> = x.iter().zip(&dir).map(|(a, b)| a + step * b).collect();
            let f_new = f(&x_new, &mut g_new);
            if f_new.is_finite() && f_new <= fx + 1e-4 * step * slope {
                accepted = Some((x_new, f_new));
                break;
            }
            step *= 0.5;
        }
        let Some((x_new, f_new)) = accepted else {
            break;
        };
        let s: Vec<f64> = x_new.iter().zip(&x).map(|(a, b)| a - b).collect();
        let y: Vec<f64> = g_new.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-12 {
            hist.push((s, y, 1.0 / sy));
            if hist.len() > 10 {
                hist.remove(0);
            }
        }
        let improvement = fx - f_new;
        x = x_new;
        fx = f_new;
        g.copy_from_slice(&g_new);
        if improvement.abs() < 1e-10 * (1.0 + fx.abs()) {
            break;
        }
    }
    x
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;
const SQRT_HALF: f64 = std::f64::consts::FRAC_1_SQRT_2;

/// erfcx(x) = exp(x²)·erfc(x) for x ≥ 0.
fn erfcx(x: f64) -> f64 {
    if x < 25.0 {
        (x * x).exp() * libm::erfc(x)
    } else {
        let x2 = x * x;
        (1.0 - 0.5 / x2 + 0.75 / (x2 * x2)) / (x * std::f64::consts::PI.sqrt())
    }
}

/// log E[max(0, ξ + z)] for ξ ~ N(0, 1), stable for very negative z (Ament et al. 2023).
fn standard_logei(z: f64) -> f64 {
    if z > -1.0 {
        (0.5 * z * libm::erfc(-SQRT_HALF * z) + (-0.5 * z * z).exp() * INV_SQRT_2PI).ln()
    } else {
        // h(z) = φ(z)·(1 + z·Φ(z)/φ(z)) and Φ(z)/φ(z) = √(π/2)·erfcx(−z/√2).
        let t = (std::f64::consts::PI / 2.0).sqrt() * erfcx(-SQRT_HALF * z);
        let inner = 1.0 + z * t;
        let log_inner = if inner > 1e-10 {
            inner.ln()
        } else {
            -2.0 * (-z).ln()
        };
        -0.5 * z * z + INV_SQRT_2PI.ln() + log_inner
    }
}

/// Φ(z)/h(z), the derivative of log h at z.
fn dlogh(z: f64) -> f64 {
    (log_ndtr(z) - standard_logei(z)).exp()
}

impl Gp {
    fn fit(
        dims: Vec<Dim>,
        x: Vec<Vec<f64>>,
        y: &DVector<f64>,
        raw: &[f64],
        min_noise: f64,
    ) -> Option<Gp> {
        let Hyper { ils, scale, noise } = Hyper::decode(raw, dims.len(), min_noise);
        let kmat = covariance(&matern_matrices(&dims, &x, &ils).0, scale, noise);
        let chol = kmat.cholesky()?;
        let alpha = chol.solve(y);
        let lower = chol.l();
        let kinv = chol.inverse();
        Some(Gp {
            dims,
            x,
            ils,
            scale,
            lower,
            kinv,
            alpha,
        })
    }

    /// Posterior means and standard deviations at many points (columns of the kernel
    /// matrix between training points and `points`, then one matrix product with K⁻¹).
    fn posterior_batch(&self, points: &[Vec<f64>]) -> (Vec<f64>, Vec<f64>) {
        let n = self.x.len();
        let mut kc = DMatrix::<f64>::zeros(n, points.len());
        for (c, p) in points.iter().enumerate() {
            for i in 0..n {
                let r2: f64 = (0..self.dims.len())
                    .map(|j| self.ils[j] * sqd(&self.dims, p, &self.x[i], j))
                    .sum();
                kc[(i, c)] = self.scale * matern52(r2).0;
            }
        }
        let solved = &self.kinv * &kc;
        (0..points.len())
            .map(|c| {
                let (k, v) = (kc.column(c), solved.column(c));
                let var = (self.scale - k.dot(&v)).max(1e-12);
                (k.dot(&self.alpha), var.sqrt())
            })
            .unzip()
    }

    /// Kernel vector and its per-dimension derivative factors for a point.
    fn kvec(&self, p: &[f64]) -> (DVector<f64>, Vec<f64>) {
        let d = self.dims.len();
        let n = self.x.len();
        let mut k = DVector::zeros(n);
        let mut dk = vec![0.0; n];
        for i in 0..n {
            let r2: f64 = (0..d)
                .map(|j| self.ils[j] * sqd(&self.dims, p, &self.x[i], j))
                .sum();
            let (kv, dkv) = matern52(r2);
            k[i] = self.scale * kv;
            dk[i] = self.scale * dkv;
        }
        (k, dk)
    }

    /// Posterior mean and standard deviation at `p` and, if asked, their gradients on
    /// numerical dimensions (zero on categorical ones).
    fn posterior(&self, p: &[f64], grad: Option<(&mut [f64], &mut [f64])>) -> (f64, f64) {
        let (k, dk) = self.kvec(p);
        let mean = k.dot(&self.alpha);
        // var = s − k'K⁻¹k = s − |L⁻¹k|².
        let half = self
            .lower
            .solve_lower_triangular(&k)
            .expect("the Cholesky factor has a positive diagonal");
        let var = (self.scale - half.norm_squared()).max(1e-12);
        let sigma = var.sqrt();
        if let Some((gm, gs)) = grad {
            let v_solved = self
                .lower
                .tr_solve_lower_triangular(&half)
                .expect("the Cholesky factor has a positive diagonal");
            for j in 0..p.len() {
                gm[j] = 0.0;
                gs[j] = 0.0;
                if let Dim::Cat(_) = self.dims[j] {
                    continue;
                }
                let mut dvar = 0.0;
                for i in 0..self.x.len() {
                    let dki = dk[i] * 2.0 * self.ils[j] * (p[j] - self.x[i][j]);
                    gm[j] += self.alpha[i] * dki;
                    dvar -= 2.0 * v_solved[i] * dki;
                }
                if var > 1e-12 {
                    gs[j] = dvar / (2.0 * sigma);
                }
            }
        }
        (mean, sigma)
    }

    /// `log h(z) + extra(z)` at `z = (mean − f0)/σ` and its gradient, where `value_of`
    /// gives the value and derivative in `z` and `scale_term` adds `log σ`.
    fn z_term(
        &self,
        p: &[f64],
        f0: f64,
        scale_term: bool,
        value_of: impl Fn(f64) -> (f64, f64),
        grad: Option<&mut [f64]>,
    ) -> f64 {
        let d = p.len();
        match grad {
            None => {
                let (m, s) = self.posterior(p, None);
                let (v, _) = value_of((m - f0) / s);
                v + if scale_term { s.ln() } else { 0.0 }
            }
            Some(g) => {
                let (mut gm, mut gs) = (vec![0.0; d], vec![0.0; d]);
                let (m, s) = self.posterior(p, Some((&mut gm, &mut gs)));
                let z = (m - f0) / s;
                let (v, dv) = value_of(z);
                for j in 0..d {
                    let dz = (gm[j] - z * gs[j]) / s;
                    g[j] = dv * dz + if scale_term { gs[j] / s } else { 0.0 };
                }
                v + if scale_term { s.ln() } else { 0.0 }
            }
        }
    }

    /// Log EI over `f0` at `p` and, if asked, its gradient on numerical dimensions.
    fn logei(&self, p: &[f64], f0: f64, grad: Option<&mut [f64]>) -> f64 {
        self.z_term(p, f0, true, |z| (standard_logei(z), dlogh(z)), grad)
    }

    /// Log probability that the modelled value exceeds `threshold`, and its gradient.
    fn log_pf(&self, p: &[f64], threshold: f64, grad: Option<&mut [f64]>) -> f64 {
        self.z_term(
            p,
            threshold,
            false,
            |z| {
                let lc = log_ndtr(z);
                (lc, (-0.5 * z * z + INV_SQRT_2PI.ln() - lc).exp())
            },
            grad,
        )
    }
}

/// What the acquisition search maximises: log EI of the objective model over the best
/// feasible value (left out while no trial is feasible) plus, for each constraint
/// model, the log probability that the constraint holds.
struct Acquisition {
    objective: Gp,
    f0: Option<f64>,
    constraints: Vec<(Gp, f64)>,
}

impl Acquisition {
    fn value(&self, p: &[f64], grad: Option<&mut [f64]>) -> f64 {
        let Some(g) = grad else {
            let ei = self.f0.map_or(0.0, |f0| self.objective.logei(p, f0, None));
            return ei
                + self
                    .constraints
                    .iter()
                    .map(|(c, t)| c.log_pf(p, *t, None))
                    .sum::<f64>();
        };
        g.fill(0.0);
        let mut part = vec![0.0; p.len()];
        let mut total = 0.0;
        if let Some(f0) = self.f0 {
            total += self.objective.logei(p, f0, Some(&mut part));
            g.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
        for (c, t) in &self.constraints {
            total += c.log_pf(p, *t, Some(&mut part));
            g.iter_mut().zip(&part).for_each(|(a, b)| *a += b);
        }
        total
    }
}

impl Acquisition {
    /// The acquisition at many points (no gradients).
    fn values(&self, points: &[Vec<f64>]) -> Vec<f64> {
        let mut out = vec![0.0; points.len()];
        if let Some(f0) = self.f0 {
            let (m, s) = self.objective.posterior_batch(points);
            for (o, (m, s)) in out.iter_mut().zip(m.iter().zip(&s)) {
                *o += standard_logei((m - f0) / s) + s.ln();
            }
        }
        for (c, t) in &self.constraints {
            let (m, s) = c.posterior_batch(points);
            for (o, (m, s)) in out.iter_mut().zip(m.iter().zip(&s)) {
                *o += log_ndtr((m - t) / s);
            }
        }
        out
    }
}

/// Point `i` of a scrambled Sobol sequence mapped onto the model's dimensions (grid
/// centres for discrete numbers, indices for choices), using Sobol dimensions
/// `offset..offset + dims.len()`.
fn quasi_random_point(dims: &[Dim], i: u32, offset: usize, seed: u32) -> Vec<f64> {
    dims.iter()
        .enumerate()
        .map(|(k, dim)| {
            let u = super::qmc::sobol_coordinate(i, k + offset, seed);
            match *dim {
                Dim::Cat(c) => ((u * c as f64).floor()).min(c as f64 - 1.0),
                Dim::Num { grid: Some(g) } => {
                    (((u * g as f64).floor()).min(g as f64 - 1.0) + 0.5) / g as f64
                }
                Dim::Num { grid: None } => u,
            }
        })
        .collect()
}

/// log Φ(z), accurate far into the lower tail.
fn log_ndtr(z: f64) -> f64 {
    if z > -30.0 {
        (0.5 * libm::erfc(-SQRT_HALF * z)).ln()
    } else {
        -0.5 * z * z + INV_SQRT_2PI.ln() - (-z).ln()
    }
}

/// The model's dimensions for a space, and the trials' coordinates: unit
/// coordinates for numbers (log-scaled where the distribution is), indices for choices.
fn design(
    space: &BTreeMap<String, Distribution>,
    complete: &[&FrozenTrial],
) -> (Vec<Dim>, Vec<Vec<f64>>) {
    let dims: Vec<Dim> = space
        .values()
        .map(|d| match d {
            Distribution::Categorical { choices } => Dim::Cat(choices.len()),
            Distribution::Float { log: true, .. } | Distribution::Int { log: true, .. } => {
                Dim::Num { grid: None }
            }
            other => Dim::Num {
                grid: other.cardinality().map(|c| c as usize).filter(|&c| c <= 64),
            },
        })
        .collect();
    let x = complete
        .iter()
        .map(|t| {
            space
                .iter()
                .zip(&dims)
                .map(|((n, d), dim)| {
                    let v = t
                        .internal(n)
                        .expect("complete trials have their parameters");
                    match dim {
                        Dim::Cat(_) => v,
                        _ => d.to_unit(v).clamp(0.0, 1.0),
                    }
                })
                .collect()
        })
        .collect();
    (dims, x)
}

/// Mean and (population) standard deviation, the latter 1 for constant values.
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let std = (v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n).sqrt();
    (mean, if std > 1e-12 { std } else { 1.0 })
}

/// Zero mean, unit (population) standard deviation.
fn standardize(v: &[f64]) -> Vec<f64> {
    let (mean, std) = mean_std(v);
    v.iter().map(|x| (x - mean) / std).collect()
}

/// Fits the kernel hyperparameters by maximum a-posteriori from `warm` (the previous
/// fit) if given, else from the defaults (unit length scales, scale and noise), and
/// factorises the kernel matrix, adding jitter if near-duplicate points make it
/// numerically singular. Returns the model and its raw parameters.
fn fit(
    dims: &[Dim],
    x: &[Vec<f64>],
    y: &DVector<f64>,
    warm: Option<Vec<f64>>,
    min_noise: f64,
) -> Option<(Gp, Vec<f64>)> {
    let d = dims.len();
    let mut default = vec![0.0; d + 2];
    default[d + 1] = (1.0 - 0.99 * min_noise).ln();
    let pairs = Pairs::new(dims, x);
    let raw = lbfgs(
        |p, g| loss(&pairs, y, p, min_noise, g),
        warm.unwrap_or(default),
        100,
        1e-2,
    );
    factorize(dims, x, y, raw, min_noise)
}

/// The GP with hyperparameters `raw` conditioned on `(x, y)`, with more noise if
/// near-duplicate points make the kernel matrix numerically singular; returns the raw
/// parameters actually used.
fn factorize(
    dims: &[Dim],
    x: &[Vec<f64>],
    y: &DVector<f64>,
    raw: Vec<f64>,
    min_noise: f64,
) -> Option<(Gp, Vec<f64>)> {
    let d = dims.len();
    [0.0, 1e-8, 1e-6, 1e-4].iter().find_map(|&jitter| {
        let mut r = raw.clone();
        r[d + 1] = (r[d + 1].exp() + jitter).ln();
        Gp::fit(dims.to_vec(), x.to_vec(), y, &r, min_noise).map(|gp| (gp, r))
    })
}

/// The Yeo–Johnson transform of one value.
fn yj(v: f64, lambda: f64) -> f64 {
    if v >= 0.0 {
        if lambda.abs() < 1e-9 {
            v.ln_1p()
        } else {
            ((v + 1.0).powf(lambda) - 1.0) / lambda
        }
    } else if (lambda - 2.0).abs() < 1e-9 {
        -(-v).ln_1p()
    } else {
        -((1.0 - v).powf(2.0 - lambda) - 1.0) / (2.0 - lambda)
    }
}

/// Yeo–Johnson power transform with λ ∈ [−3, 3] chosen by maximum likelihood
/// (golden-section search), which makes skewed objective values closer to Gaussian.
fn yeo_johnson(v: &[f64]) -> Vec<f64> {
    let n = v.len() as f64;
    let jac: f64 = v.iter().map(|x| x.signum() * x.abs().ln_1p()).sum();
    let nll = |lambda: f64| {
        let t: Vec<f64> = v.iter().map(|&x| yj(x, lambda)).collect();
        let m = t.iter().sum::<f64>() / n;
        let var = t.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
        0.5 * n * var.max(1e-300).ln() - (lambda - 1.0) * jac
    };
    let (mut a, mut b) = (-3.0f64, 3.0f64);
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (nll(c), nll(d));
    for _ in 0..40 {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - g * (b - a);
            fc = nll(c);
        } else {
            a = c;
            c = d;
            fc = fd;
            d = a + g * (b - a);
            fd = nll(d);
        }
    }
    let lambda = 0.5 * (a + b);
    v.iter().map(|&x| yj(x, lambda)).collect()
}

/// The values a discrete dimension can take, in normalised coordinates.
fn grid_points(dim: &Dim) -> Option<Vec<f64>> {
    match *dim {
        Dim::Num { grid: Some(g) } => Some((0..g).map(|k| (k as f64 + 0.5) / g as f64).collect()),
        Dim::Num { grid: None } => None,
        Dim::Cat(c) => Some((0..c).map(|k| k as f64).collect()),
    }
}

impl GpSampler {
    /// Local search from `x`: projected gradient ascent on continuous dimensions, then
    /// exhaustive moves on discrete ones, repeated while it improves.
    fn local_search(&self, acq: &Acquisition, mut x: Vec<f64>) -> (Vec<f64>, f64) {
        let gp = &acq.objective;
        let d = x.len();
        let mut fx = acq.value(&x, None);
        let cont: Vec<usize> = (0..d)
            .filter(|&j| matches!(gp.dims[j], Dim::Num { grid: None }))
            .collect();
        let discrete: Vec<(usize, Vec<f64>)> = (0..d)
            .filter_map(|j| grid_points(&gp.dims[j]).map(|g| (j, g)))
            .collect();
        for _round in 0..3 {
            let before = fx;
            if !cont.is_empty() {
                // L-BFGS on the continuous coordinates, with the box enforced by
                // evaluating at the clamped point (the gradient is zeroed where a bound
                // is active and pushes outward).
                // The search runs in length-scale units z = x / ℓ, where the acquisition
                // is equally curved in every direction (ℓ = 1/√ils), so one step size
                // suits all coordinates; the box becomes [0, 1/ℓ].
                let base = x.clone();
                let ell: Vec<f64> = cont.iter().map(|&j| 1.0 / gp.ils[j].sqrt()).collect();
                let start: Vec<f64> = cont.iter().zip(&ell).map(|(&j, l)| x[j] / l).collect();
                let mut full = vec![0.0; d];
                let opt = lbfgs(
                    |z, g| {
                        let mut p = base.clone();
                        for (i, &j) in cont.iter().enumerate() {
                            p[j] = (z[i] * ell[i]).clamp(0.0, 1.0);
                        }
                        let f = acq.value(&p, Some(&mut full));
                        for (i, &j) in cont.iter().enumerate() {
                            let outward =
                                (p[j] <= 0.0 && full[j] < 0.0) || (p[j] >= 1.0 && full[j] > 0.0);
                            g[i] = if outward { 0.0 } else { -full[j] * ell[i] };
                        }
                        -f
                    },
                    start,
                    200,
                    1e-6,
                );
                let mut xn = x.clone();
                for (i, &j) in cont.iter().enumerate() {
                    xn[j] = (opt[i] * ell[i]).clamp(0.0, 1.0);
                }
                let fnew = acq.value(&xn, None);
                if fnew > fx {
                    x = xn;
                    fx = fnew;
                }
            }
            for (j, pts) in &discrete {
                let keep = x[*j];
                let mut best = (fx, keep);
                for &v in pts {
                    if v == keep {
                        continue;
                    }
                    x[*j] = v;
                    let f = acq.value(&x, None);
                    if f > best.0 {
                        best = (f, v);
                    }
                }
                x[*j] = best.1;
                fx = best.0;
            }
            if fx <= before + 1e-9 {
                break;
            }
        }
        (x, fx)
    }
}

/// First-order (main-effect) variance fractions of each parameter of `space`, computed
/// on the posterior mean of a GP fitted to `values` (one per complete trial) with
/// Saltelli's (2010) estimator over `n` scrambled-Sobol pairs; the functional-ANOVA
/// main effects of fANOVA (Hutter et al. 2014), with the GP instead of a random forest
/// as the surrogate. `None` when the model cannot be fitted.
pub(crate) fn main_effects(
    space: &BTreeMap<String, Distribution>,
    complete: &[&FrozenTrial],
    values: &[f64],
    n: u32,
) -> Option<Vec<f64>> {
    let (dims, x) = design(space, complete);
    let y = DVector::from_vec(standardize(values));
    let (gp, _) = fit(&dims, &x, &y, None, 1e-6)?;
    let d = dims.len();
    let point = |i: u32, offset: usize| quasi_random_point(&dims, i, offset, 0x1f2e_3d4c);
    let mean = |p: &[f64]| gp.kvec(p).0.dot(&gp.alpha);
    let (mut sums, mut fa_all, mut fb_all) = (vec![0.0; d], Vec::new(), Vec::new());
    for i in 0..n {
        let (a, b) = (point(i, 0), point(i, d));
        let (fa, fb) = (mean(&a), mean(&b));
        for (j, s) in sums.iter_mut().enumerate() {
            let mut ab = a.clone();
            ab[j] = b[j];
            *s += fb * (mean(&ab) - fa);
        }
        fa_all.push(fa);
        fb_all.push(fb);
    }
    let all: Vec<f64> = fa_all.into_iter().chain(fb_all).collect();
    let (_, sd) = mean_std(&all);
    Some(
        sums.iter()
            .map(|s| (s / f64::from(n) / (sd * sd)).max(0.0))
            .collect(),
    )
}

impl GpSampler {
    /// The quantity the GP maximises for each complete trial: the signed objective, or
    /// for several objectives ParEGO's augmented Chebyshev scalarisation (Knowles 2006)
    /// of the objectives normalised to [0, 1], with weights drawn uniformly from the
    /// simplex for each trial, so successive trials aim at different parts of the
    /// Pareto front.
    fn scalarized(&mut self, complete: &[&FrozenTrial], directions: &[Direction]) -> Vec<f64> {
        let losses: Vec<Vec<f64>> = complete
            .iter()
            .map(|t| pareto::losses(t.values.as_deref().expect("complete"), directions))
            .collect();
        if directions.len() == 1 {
            return losses.iter().map(|l| -l[0]).collect();
        }
        let m = directions.len();
        let (lo, hi): (Vec<f64>, Vec<f64>) = (0..m)
            .map(|k| {
                losses
                    .iter()
                    .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), l| {
                        (a.min(l[k]), b.max(l[k]))
                    })
            })
            .unzip();
        // Uniform on the simplex: normalised exponential draws.
        let mut w: Vec<f64> = (0..m)
            .map(|_| -(1.0 - self.rng.random::<f64>()).ln())
            .collect();
        let total: f64 = w.iter().sum();
        w.iter_mut().for_each(|x| *x /= total);
        losses
            .iter()
            .map(|l| {
                let z: Vec<f64> = (0..m)
                    .map(|k| {
                        let span = hi[k] - lo[k];
                        w[k] * if span > 0.0 {
                            (l[k] - lo[k]) / span
                        } else {
                            0.0
                        }
                    })
                    .collect();
                -(z.iter().copied().fold(f64::NEG_INFINITY, f64::max)
                    + 0.05 * z.iter().sum::<f64>())
            })
            .collect()
    }
}

impl Sampler for GpSampler {
    fn begin_trial(&mut self, number: u64) {
        self.rng = Pcg64Mcg::seed_from_u64(self.seed.for_trial(0x5851_f42d_4c95_7f2d, number));
        self.random.begin_trial(number);
    }

    fn sample_relative(
        &mut self,
        ctx: &SamplerContext<'_>,
        space: &BTreeMap<String, Distribution>,
    ) -> BTreeMap<String, f64> {
        let complete: Vec<_> = ctx
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .filter(|t| super::covers(t, space))
            .collect();
        if space.is_empty() || complete.len() < self.config.n_startup_trials {
            return BTreeMap::new();
        }
        let (dims, x) = design(space, &complete);
        let raw_y = self.scalarized(&complete, ctx.directions);
        let mut yv = standardize(&raw_y);
        if self.config.output_warping {
            yv = standardize(&yeo_johnson(&yv));
        }
        let y = DVector::from_vec(yv);
        let d = dims.len();
        let min_noise = self.config.minimum_noise;
        let warm = self.warm.take().filter(|w| w.len() == d + 2);
        let refit = warm.is_none() || complete.len() % self.config.refit_interval.max(1) == 0;
        let fitted = match warm {
            Some(w) if !refit => factorize(&dims, &x, &y, w, min_noise),
            w => fit(&dims, &x, &y, w, min_noise),
        };
        let Some((mut gp, raw)) = fitted else {
            return BTreeMap::new();
        };
        self.warm = Some(raw.clone());
        // Running trials (other workers): believe the model's mean there (the "Kriging
        // believer"): it becomes an observation, which removes the variance there and
        // may raise the incumbent, so parallel suggestions spread out instead of
        // coinciding.
        let running: Vec<&FrozenTrial> = ctx
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Running && t.number != ctx.number)
            .filter(|t| super::covers(t, space))
            .collect();
        // Pruned trials (stopped by a pruner, so worse than their peers where they
        // stopped): observed at the worst complete value (a pessimistic constant liar),
        // so the model does not propose their region again and again — the GP is fitted
        // on complete trials only, and would otherwise not know they were tried.
        let pruned: Vec<&FrozenTrial> = ctx
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Pruned)
            .filter(|t| super::covers(t, space))
            .collect();
        let mut believed_best = f64::NEG_INFINITY;
        if !running.is_empty() || !pruned.is_empty() {
            let (_, pending) = design(space, &running);
            let (believed, _) = gp.posterior_batch(&pending);
            believed_best = believed.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let worst = y.iter().copied().fold(f64::INFINITY, f64::min);
            let (_, stopped) = design(space, &pruned);
            let xa: Vec<Vec<f64>> = x.iter().cloned().chain(pending).chain(stopped).collect();
            let ya = DVector::from_iterator(
                xa.len(),
                y.iter()
                    .copied()
                    .chain(believed)
                    .chain(std::iter::repeat_n(worst, pruned.len())),
            );
            if let Some((g, _)) = factorize(&dims, &xa, &ya, raw, min_noise) {
                gp = g;
            }
        }
        // Constraint models, when every complete trial reported the same number of
        // constraint values: each models −c (standardised), feasible above the
        // standardised image of 0.
        let n_cons = complete[0].constraints.as_ref().map_or(0, Vec::len);
        let mut constraints = Vec::new();
        if n_cons > 0
            && complete
                .iter()
                .all(|t| t.constraints.as_ref().is_some_and(|c| c.len() == n_cons))
        {
            for k in 0..n_cons {
                let neg: Vec<f64> = complete
                    .iter()
                    .map(|t| -t.constraints.as_ref().expect("checked")[k])
                    .collect();
                let (mean, std) = mean_std(&neg);
                let yc = DVector::from_vec(standardize(&neg));
                let Some((gpc, _)) = fit(&dims, &x, &yc, None, min_noise) else {
                    return BTreeMap::new();
                };
                constraints.push((gpc, -mean / std));
            }
        }
        let f0 = (0..complete.len())
            .filter(|&i| constraints.is_empty() || complete[i].is_feasible())
            .map(|i| y[i])
            .reduce(f64::max)
            .map(|f| {
                if constraints.is_empty() {
                    f.max(believed_best)
                } else {
                    f
                }
            });
        let acq = Acquisition {
            objective: gp,
            f0,
            constraints,
        };
        // Quasi-random candidates, then the best of them and the best observed point
        // start local searches.
        let seed = self.qmc_seed.wrapping_add(ctx.number as u32);
        let points: Vec<Vec<f64>> = (0..self.config.n_preliminary as u32)
            .map(|i| quasi_random_point(&dims, i, 0, seed))
            .collect();
        let mut cands: Vec<(f64, Vec<f64>)> = acq.values(&points).into_iter().zip(points).collect();
        cands.sort_by(|a, b| b.0.total_cmp(&a.0));
        let best_obs = y
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .map(|(i, _)| x[i].clone());
        // Local searches start from the best candidate, from candidates drawn with
        // probability ∝ EI (a roulette wheel, so starts spread over several modes), and
        // from the best observed point.
        let mut starts: Vec<Vec<f64>> = Vec::with_capacity(self.config.n_local_search);
        if let Some(&(top, ref first)) = cands.first() {
            starts.push(first.clone());
            let mut weights: Vec<f64> = cands.iter().skip(1).map(|c| (c.0 - top).exp()).collect();
            for _ in 0..self.config.n_local_search.saturating_sub(2) {
                let total: f64 = weights.iter().sum();
                if total.is_nan() || total <= 0.0 {
                    break;
                }
                let mut u = self.rng.random::<f64>() * total;
                let pick = weights
                    .iter()
                    .position(|w| {
                        u -= w;
                        u <= 0.0
                    })
                    .unwrap_or(weights.len() - 1);
                weights[pick] = 0.0;
                starts.push(cands[pick + 1].1.clone());
            }
        }
        if let Some(b) = best_obs {
            starts.push(b);
        }
        let mut best: Option<(f64, Vec<f64>)> = None;
        for s in starts {
            let (p, f) = self.local_search(&acq, s);
            if best.as_ref().is_none_or(|(bf, _)| f > *bf) {
                best = Some((f, p));
            }
        }
        let Some((_, p)) = best else {
            return BTreeMap::new();
        };
        space
            .iter()
            .zip(&dims)
            .zip(&p)
            .map(|(((n, d), dim), &v)| {
                let internal = match dim {
                    Dim::Cat(_) => v,
                    _ => d.from_unit(v),
                };
                (n.clone(), internal)
            })
            .collect()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loss_gradient_matches_finite_differences() {
        let dims = vec![
            Dim::Num { grid: None },
            Dim::Num { grid: None },
            Dim::Cat(3),
        ];
        let x: Vec<Vec<f64>> = (0..12)
            .map(|i| {
                let t = i as f64 / 11.0;
                vec![t, (3.0 * t).sin().abs(), (i % 3) as f64]
            })
            .collect();
        let y = DVector::from_iterator(
            12,
            x.iter().map(|p| (p[0] - 0.3).powi(2) + p[1] + 0.1 * p[2]),
        );
        let raw = vec![0.3, -0.2, 0.1, 0.4, -3.0];
        let mut g = vec![0.0; 5];
        let pairs = Pairs::new(&dims, &x);
        let f = loss(&pairs, &y, &raw, 1e-6, &mut g);
        for k in 0..5 {
            let mut r = raw.clone();
            r[k] += 1e-6;
            let mut tmp = vec![0.0; 5];
            let f2 = loss(&pairs, &y, &r, 1e-6, &mut tmp);
            let fd = (f2 - f) / 1e-6;
            assert!(
                (fd - g[k]).abs() < 1e-3 * (1.0 + fd.abs()),
                "dim {k}: {fd} vs {}",
                g[k]
            );
        }
    }

    #[test]
    fn logei_is_stable_and_matches_the_direct_formula() {
        for z in [-3.0f64, -0.5, 0.0, 1.0, 4.0] {
            let phi = (-0.5 * z * z).exp() * INV_SQRT_2PI;
            let cdf = 0.5 * libm::erfc(-z * SQRT_HALF);
            assert!(
                (standard_logei(z) - (phi + z * cdf).ln()).abs() < 1e-9,
                "{z}"
            );
        }
        let mut prev = standard_logei(-5.0);
        for z in [-10.0, -40.0, -100.0, -1e4] {
            let v = standard_logei(z);
            assert!(v.is_finite() && v < prev, "{z}: {v}");
            prev = v;
        }
    }

    #[test]
    fn acquisition_gradient_matches_finite_differences() {
        let dims = vec![Dim::Num { grid: None }, Dim::Num { grid: None }];
        let x: Vec<Vec<f64>> = (0..15)
            .map(|i| vec![(i as f64 * 0.37) % 1.0, (i as f64 * 0.61) % 1.0])
            .collect();
        let y = DVector::from_iterator(
            15,
            x.iter()
                .map(|p| -((p[0] - 0.4).powi(2) + (p[1] - 0.6).powi(2))),
        );
        let gp = Gp::fit(dims, x, &y, &[1.0, 1.0, 0.0, -5.0], 1e-6).unwrap();
        let f0 = y.max();
        let p = [0.21, 0.73];
        let mut g = [0.0; 2];
        let f = gp.logei(&p, f0, Some(&mut g));
        for k in 0..2 {
            let mut q = p;
            q[k] += 1e-6;
            let fd = (gp.logei(&q, f0, None) - f) / 1e-6;
            assert!(
                (fd - g[k]).abs() < 1e-3 * (1.0 + fd.abs()),
                "{k}: {fd} vs {}",
                g[k]
            );
        }
    }
}
