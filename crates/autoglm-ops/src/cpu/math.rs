//! Branch-free f32 elementary functions that the compiler vectorises, and the hot
//! row loops built on them, compiled for AVX-512 and AVX2+FMA with a runtime choice
//! (`multiversion`) and a portable fallback. Polynomials use `mul_add`, which is one
//! instruction on every FMA target (the portable fallback, for x86-64 CPUs older than
//! Haswell, pays a library call for it).

use multiversion::multiversion;

/// eˣ: Cody–Waite range reduction and a degree-6 polynomial (Cephes `expf`), relative
/// error below 2e-7; 0 below −87.3 and clamped above 88.7.
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    let y = exp_in_range(x.clamp(-87.3, 88.7));
    if x < -87.3 {
        0.0
    } else {
        y
    }
}

/// eˣ for x in [−87.3, 88.7] (no range checks, for callers that guarantee it).
#[inline(always)]
fn exp_in_range(x: f32) -> f32 {
    // Adding 1.5·2²³ rounds to the nearest integer and leaves it in the low mantissa
    // bits, so 2ⁿ comes from integer ops on the bits (no float-to-int conversion, which
    // does not vectorise).
    const MAGIC: f32 = 12_582_912.0;
    let t = x * std::f32::consts::LOG2_E + MAGIC;
    let n = t - MAGIC;
    let r = n.mul_add(2.121_944_4e-4, n.mul_add(-0.693_359_4, x));
    let mut p = 1.987_569_1e-4_f32;
    p = p.mul_add(r, 1.398_199_9e-3);
    p = p.mul_add(r, 8.333_452e-3);
    p = p.mul_add(r, 4.166_579_6e-2);
    p = p.mul_add(r, 0.166_666_65);
    p = p.mul_add(r, 0.5);
    let y = (p * r).mul_add(r, r + 1.0);
    y * f32::from_bits(t.to_bits().wrapping_sub(MAGIC.to_bits() - 127) << 23)
}

/// erf x (Abramowitz & Stegun 7.1.26; absolute error below 5e-7 with f32 rounding).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    // erf 4 rounds to 1 in f32; clamping keeps exp's argument in [−16, 0].
    // (Written as a select so that NaN stays NaN.)
    let a = x.abs();
    let a = if a > 4.0 { 4.0 } else { a };
    let t = 1.0 / 0.327_591_1f32.mul_add(a, 1.0);
    let poly = 1.061_405_4f32
        .mul_add(t, -1.453_152_1)
        .mul_add(t, 1.421_413_8)
        .mul_add(t, -0.284_496_72)
        .mul_add(t, 0.254_829_6)
        * t;
    let y = (-poly).mul_add(exp_in_range(-a * a), 1.0);
    y.copysign(x)
}

/// tanh x = 1 − 2/(e²ˣ + 1), exact at the ends.
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    if x.abs() < 0.004 {
        // Avoid cancellation near 0: tanh x ≈ x − x³/3.
        x - x * x * x / 3.0
    } else {
        1.0 - 2.0 / (exp(2.0 * x) + 1.0)
    }
}

/// 1/(1+e⁻ˣ).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + exp(-x))
}

/// x·Φ(x).
#[inline(always)]
pub(crate) fn gelu(x: f32) -> f32 {
    let h = 0.5 * x;
    h.mul_add(erf(x * std::f32::consts::FRAC_1_SQRT_2), h)
}

/// The tanh form of GELU.
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    let c = 0.797_884_6_f32; // √(2/π)
    0.5 * x * (1.0 + tanh(c * (x + 0.044_715 * x * x * x)))
}

/// x·σ(x).
#[inline(always)]
pub(crate) fn silu(x: f32) -> f32 {
    x * sigmoid(x)
}

macro_rules! unary_loops {
    ($($name:ident = $f:expr;)*) => {$(
        /// Applies the function to every element, in place.
        #[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
        pub(crate) fn $name(x: &mut [f32]) {
            let f = $f;
            for v in x.iter_mut() {
                *v = f(*v);
            }
        }
    )*};
}

unary_loops! {
    neg_loop = |v: f32| -v;
    exp_loop = exp;
    log_loop = f32::ln;
    tanh_loop = tanh;
    erf_loop = erf;
    sqrt_loop = f32::sqrt;
    rsqrt_loop = |v: f32| 1.0 / v.sqrt();
    recip_loop = |v: f32| 1.0 / v;
    relu_loop = |v: f32| v.max(0.0);
    silu_loop = silu;
    gelu_loop = gelu;
    gelu_tanh_loop = gelu_tanh;
    sigmoid_loop = sigmoid;
    step_loop = |v: f32| if v > 0.0 { 1.0 } else { 0.0 };
}

/// How the second operand of an in-place binary loop lines up with the first.
#[derive(Clone, Copy)]
pub(crate) enum Rhs<'a> {
    /// Element by element.
    Same(&'a [f32]),
    /// One value for all.
    Scalar(f32),
    /// Repeating along rows of its length.
    Rows(&'a [f32]),
}

macro_rules! binary_loops {
    ($($name:ident = $f:expr;)*) => {$(
        /// `io[i] = f(io[i], b[i])`, or `f(b[i], io[i])` when `swap`.
        #[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
        pub(crate) fn $name<'a>(io: &mut [f32], b: Rhs<'a>, swap: bool) {
            let f = $f;
            match (b, swap) {
                (Rhs::Same(b), false) => io.iter_mut().zip(b).for_each(|(x, &y)| *x = f(*x, y)),
                (Rhs::Same(b), true) => io.iter_mut().zip(b).for_each(|(x, &y)| *x = f(y, *x)),
                (Rhs::Scalar(y), false) => io.iter_mut().for_each(|x| *x = f(*x, y)),
                (Rhs::Scalar(y), true) => io.iter_mut().for_each(|x| *x = f(y, *x)),
                (Rhs::Rows(b), swap) => {
                    for row in io.chunks_exact_mut(b.len()) {
                        if swap {
                            row.iter_mut().zip(b).for_each(|(x, &y)| *x = f(y, *x));
                        } else {
                            row.iter_mut().zip(b).for_each(|(x, &y)| *x = f(*x, y));
                        }
                    }
                }
            }
        }
    )*};
}

binary_loops! {
    add_loop = |x: f32, y: f32| x + y;
    sub_loop = |x: f32, y: f32| x - y;
    mul_loop = |x: f32, y: f32| x * y;
    div_loop = |x: f32, y: f32| x / y;
    pow_loop = f32::powf;
    max_loop = f32::max;
    min_loop = f32::min;
    swiglu_loop = |g: f32, u: f32| silu(g) * u;
}

/// Sum of a row, in eight lanes (vectorisable, and more accurate than one chain).
#[inline(always)]
pub(crate) fn lane_sum(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; 16];
    let chunks = x.chunks_exact(16);
    let rest = chunks.remainder();
    for c in chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += f(v);
        }
    }
    let mut s: f32 = acc.iter().sum();
    for &v in rest {
        s += f(v);
    }
    s
}

/// Row-wise layer normalisation (two passes over the row for a stable variance), then
/// `act` on each element.
#[inline(always)]
fn layer_norm_rows(
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
    out: &mut [f32],
    act: impl Fn(f32) -> f32,
) {
    let n = gamma.len();
    for (orow, xrow) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        let mean = lane_sum(xrow, |v| v) / n as f32;
        let var = lane_sum(xrow, |v| (v - mean) * (v - mean)) / n as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for (((o, &v), &g), &b) in orow.iter_mut().zip(xrow).zip(gamma).zip(beta) {
            *o = act((v - mean).mul_add(inv * g, b));
        }
    }
}

/// LayerNorm over rows of length `gamma.len()`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
pub(crate) fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    layer_norm_rows(x, gamma, beta, eps, out, |v| v);
}

/// GELU(LayerNorm) over rows in one pass over the output.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
pub(crate) fn layer_norm_gelu(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32, out: &mut [f32]) {
    layer_norm_rows(x, gamma, beta, eps, out, gelu);
}

/// RMSNorm over rows of length `gamma.len()`.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
pub(crate) fn rms_norm(x: &[f32], gamma: &[f32], eps: f32, out: &mut [f32]) {
    let n = gamma.len();
    for (orow, xrow) in out.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        let ms = lane_sum(xrow, |v| v * v) / n as f32;
        let inv = 1.0 / (ms + eps).sqrt();
        for ((o, &v), &g) in orow.iter_mut().zip(xrow).zip(gamma) {
            *o = v * inv * g;
        }
    }
}

/// `out = Σ_i w[i] · m[i·stride .. i·stride + out.len()]`: a vector times the first
/// `out.len()` columns of a row-major matrix, as one axpy per row. For a few query
/// rows of attention, where laying out the keys or values for a GEMM costs more than
/// the product.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
pub(crate) fn vec_mat(w: &[f32], m: &[f32], stride: usize, out: &mut [f32]) {
    out.fill(0.0);
    let n = out.len();
    for (i, &wi) in w.iter().enumerate() {
        for (o, &x) in out.iter_mut().zip(&m[i * stride..i * stride + n]) {
            *o += wi * x;
        }
    }
}

/// `out[j] = m[j] · x` for the rows of row-major `m` (`out.len() × x.len()`): the
/// dot products in 16 independent lanes (the same bits on every target: no
/// multiply-add is fused and the lanes are summed in order).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
pub(crate) fn mat_vec(m: &[f32], x: &[f32], out: &mut [f32]) {
    let d = x.len();
    for (o, row) in out.iter_mut().zip(m.chunks_exact(d.max(1))) {
        let mut lanes = [0.0f32; 16];
        let mut rc = row.chunks_exact(16);
        let mut xc = x.chunks_exact(16);
        for (a, b) in (&mut rc).zip(&mut xc) {
            for ((l, &a), &b) in lanes.iter_mut().zip(a).zip(b) {
                *l += a * b;
            }
        }
        let tail: f32 = rc
            .remainder()
            .iter()
            .zip(xc.remainder())
            .map(|(a, b)| a * b)
            .sum();
        *o = lanes.iter().sum::<f32>() + tail;
    }
}

/// Softmax of each row of length `n`, in place.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
pub(crate) fn softmax_rows(x: &mut [f32], n: usize) {
    for row in x.chunks_exact_mut(n) {
        softmax_row(row);
    }
}

/// The largest element of a row, in 16 independent lanes (−∞ for an empty row).
#[inline(always)]
pub(crate) fn lane_max(row: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (m, &v) in lanes.iter_mut().zip(c) {
            *m = if v > *m { v } else { *m };
        }
    }
    chunks
        .remainder()
        .iter()
        .chain(&lanes)
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m })
}

/// Softmax of one row, in place (a row of all −∞ gives NaN, as PyTorch). The max and
/// the sum run in 16 independent lanes, so they vectorise instead of waiting on one
/// long dependency chain.
#[inline(always)]
pub(crate) fn softmax_row(row: &mut [f32]) {
    let max = lane_max(row);
    let mut acc = [0.0f32; 16];
    let mut chunks = row.chunks_exact_mut(16);
    for c in &mut chunks {
        for (a, v) in acc.iter_mut().zip(c) {
            *v = exp(*v - max);
            *a += *v;
        }
    }
    let mut sum: f32 = acc.iter().sum();
    for v in chunks.into_remainder() {
        *v = exp(*v - max);
        sum += *v;
    }
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
}

/// `(max, Σ exp(x − max))` of a row (the pieces of its log-sum-exp), in 16 lanes.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
pub(crate) fn max_sum_exp(row: &[f32]) -> (f32, f32) {
    let max = lane_max(row);
    let mut acc = [0.0f32; 16];
    let mut chunks = row.chunks_exact(16);
    for c in &mut chunks {
        for (a, &v) in acc.iter_mut().zip(c) {
            *a += exp(v - max);
        }
    }
    let tail: f32 = chunks.remainder().iter().map(|&v| exp(v - max)).sum();
    (max, acc.iter().sum::<f32>() + tail)
}

/// `out = exp(x − max) · k` (softmax times a factor, given the row's max).
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
pub(crate) fn scaled_exp(row: &[f32], max: f32, k: f32, out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(row) {
        *o = exp(v - max) * k;
    }
}

/// `row = softmax(row · scale + mask)`, in place.
#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
pub(crate) fn scale_mask_softmax(row: &mut [f32], scale: f32, mask: &[f32]) {
    for (v, &m) in row.iter_mut().zip(mask) {
        *v = *v * scale + m;
    }
    softmax_row(row);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elementary_functions_match_std() {
        let mut worst = [0.0f64; 4];
        for i in -20000..=20000 {
            let x = i as f32 * 0.001;
            let e = (f64::from(exp(x)) - f64::from(x).exp()).abs() / f64::from(x).exp();
            worst[0] = worst[0].max(e);
            worst[1] = worst[1].max((f64::from(erf(x)) - libm::erf(f64::from(x))).abs());
            worst[2] = worst[2].max((f64::from(tanh(x)) - f64::from(x).tanh()).abs());
            let s = 1.0 / (1.0 + (-f64::from(x)).exp());
            worst[3] = worst[3].max((f64::from(sigmoid(x)) - s).abs());
        }
        assert!(worst[0] < 3e-7, "exp relative error {}", worst[0]);
        assert!(worst[1] < 5e-7, "erf error {}", worst[1]);
        assert!(worst[2] < 3e-7, "tanh error {}", worst[2]);
        assert!(worst[3] < 2e-7, "sigmoid error {}", worst[3]);
        assert_eq!(exp(-100.0), 0.0);
        for f in [exp, erf, tanh, sigmoid, gelu, gelu_tanh, silu] {
            assert!(f(f32::NAN).is_nan());
        }
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(88.0).is_finite());
    }
}
