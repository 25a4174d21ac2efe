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

/// Queries [`attend`] runs through the blocks together (a multiple of every
/// grouped-query group of up to eight heads).
pub const ATTENTION_TILE: usize = crate::cpu::attention::TILE;

/// One key/value head of a paged cache, as [`attend`] reads it: block `b` of the
/// keys is `keys[b]`, stored transposed (`[head_dim][block]`: element `j` of the
/// key at slot `s` is `keys[b][j · block + s]`), and block `b` of the values is
/// `values[b]`, row-major (`[block][head_dim]`).
#[derive(Debug, Clone, Copy)]
pub struct KvBlocks<'a> {
    /// Key blocks, each `head_dim · block` long.
    pub keys: &'a [&'a [f32]],
    /// Value blocks, each `block · head_dim` long.
    pub values: &'a [&'a [f32]],
    /// Positions per block.
    pub block: usize,
    /// Elements per key and value.
    pub head_dim: usize,
}

/// Softmax attention of queries that share one key/value head:
/// `out[i] = softmax(scale · q_i · K[..lens[i]]ᵀ) · V[..lens[i]]`, where position `p`
/// is slot `p % block` of block `p / block`. Up to eight queries at a time go through
/// the blocks together (register tiles), and a query's result has the same bits
/// whatever queries share its tile. `scores` is scratch, reused between calls.
///
/// # Panics
/// If `queries`, `lens` and `out` differ in length, a length needs more blocks than
/// `kv` holds, or a query or output is shorter than `head_dim`.
pub fn attend(
    kv: &KvBlocks<'_>,
    queries: &[&[f32]],
    lens: &[usize],
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [&mut [f32]],
) {
    assert!(
        queries.len() == lens.len() && lens.len() == out.len(),
        "attend: {} queries, {} lengths, {} outputs",
        queries.len(),
        lens.len(),
        out.len()
    );
    let need = lens.iter().max().map_or(0, |l| l.div_ceil(kv.block.max(1)));
    assert!(
        need <= kv.keys.len() && need <= kv.values.len(),
        "attend: a length needs {need} blocks, the head has {}",
        kv.keys.len().min(kv.values.len())
    );
    crate::cpu::attention::attend(
        kv.keys,
        kv.values,
        kv.block,
        kv.head_dim,
        queries,
        lens,
        scale,
        scores,
        out,
    );
}
