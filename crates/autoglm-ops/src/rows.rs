//! The CPU backend's vectorised row kernels, for callers that drive their own loop
//! (the serving runtime's ragged batches) instead of running a graph. Each works on
//! row-major rows of the weight's length, exactly as the graph kernels of the same
//! name do.

use crate::cpu::math;

/// RMSNorm of every row of `x` (rows of `gamma.len()`) into `out`.
pub fn rms_norm(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    math::rms_norm(x, gamma, eps, out);
}

/// LayerNorm of every row of `x` (rows of `gamma.len()`) into `out`.
pub fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    math::layer_norm(x, gamma, beta, eps, out);
}

/// SiLU in place.
pub fn silu(x: &mut [f32]) {
    math::silu_loop(x);
}

/// GELU (erf form) in place.
pub fn gelu(x: &mut [f32]) {
    math::gelu_loop(x);
}

/// GELU (tanh approximation) in place.
pub fn gelu_tanh(x: &mut [f32]) {
    math::gelu_tanh_loop(x);
}

/// `out = Σ_i w[i] · m[i·stride .. i·stride + out.len()]`: a weighted sum of rows of a
/// row-major matrix (attention's probabilities times cached values).
pub fn weighted_rows(w: &[f32], m: &[f32], stride: usize, out: &mut [f32]) {
    math::vec_mat(w, m, stride, out);
}

/// `out[j] = m[j] · x` for the rows of row-major `m` (`out.len() × x.len()`):
/// attention's scores of one query against cached keys.
pub fn dot_rows(m: &[f32], x: &[f32], out: &mut [f32]) {
    math::mat_vec(m, x, out);
}

/// `x[i] = exp(x[i] − max)` in place, returning the sum: the numerator and
/// denominator of a softmax.
pub fn exp_shifted(x: &mut [f32], max: f32) -> f32 {
    x.iter_mut().for_each(|v| *v -= max);
    math::exp_loop(x);
    x.iter().sum()
}
