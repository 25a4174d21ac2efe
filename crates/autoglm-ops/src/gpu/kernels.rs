//! The CubeCL kernels. Every kernel reads and writes its element type `F` (f32, f16,
//! bf16) and computes in f32, so f16 results differ from the CPU kernels (which also
//! compute in f32) by the final rounding only.

use cubecl::prelude::*;

/// Units per cube of the row kernels (a power of two; the tree reductions below are
/// written out for it).
pub(super) const BLOCK: u32 = 256;

/// The unary functions, numbered as [`unary_code`] maps them.
#[cube]
fn apply_unary(v: f32, #[comptime] f: u32) -> f32 {
    let mut r = v;
    if comptime!(f == 0) {
        r = -v;
    }
    if comptime!(f == 1) {
        r = v.exp();
    }
    if comptime!(f == 2) {
        r = v.ln();
    }
    if comptime!(f == 3) {
        r = v.tanh();
    }
    if comptime!(f == 4) {
        r = Erf::erf(v);
    }
    if comptime!(f == 5) {
        r = v.sqrt();
    }
    if comptime!(f == 6) {
        r = v.inverse_sqrt();
    }
    if comptime!(f == 7) {
        r = v.recip();
    }
    if comptime!(f == 8) {
        r = v.max(0.0f32);
    }
    if comptime!(f == 9) {
        r = v / (1.0f32 + (-v).exp());
    }
    if comptime!(f == 10) {
        r = gelu(v);
    }
    if comptime!(f == 11) {
        let inner = 0.797_884_6f32 * (v + 0.044_715f32 * v * v * v);
        r = 0.5f32 * v * (1.0f32 + inner.tanh());
    }
    if comptime!(f == 12) {
        r = 1.0f32 / (1.0f32 + (-v).exp());
    }
    if comptime!(f == 13) {
        r = 0.0f32;
        if v > 0.0f32 {
            r = 1.0f32;
        }
    }
    r
}

/// GELU, the erf form.
#[cube]
fn gelu(v: f32) -> f32 {
    0.5f32 * v * (1.0f32 + Erf::erf(v * 0.707_106_77f32))
}

/// The binary functions, numbered as [`binary_code`] maps them.
#[cube]
fn apply_binary(a: f32, b: f32, #[comptime] f: u32) -> f32 {
    let mut r = a;
    if comptime!(f == 0) {
        r = a + b;
    }
    if comptime!(f == 1) {
        r = a - b;
    }
    if comptime!(f == 2) {
        r = a * b;
    }
    if comptime!(f == 3) {
        r = a / b;
    }
    if comptime!(f == 4) {
        r = a.powf(b);
    }
    if comptime!(f == 5) {
        r = a.max(b);
    }
    if comptime!(f == 6) {
        r = a.min(b);
    }
    if comptime!(f == 7) {
        // SwiGLU: silu(a) · b.
        r = a / (1.0f32 + (-a).exp()) * b;
    }
    r
}

/// `out[i] = f(x[i])`.
#[cube(launch_unchecked)]
pub(super) fn unary<F: Float>(x: &Array<F>, out: &mut Array<F>, #[comptime] f: u32) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        out[i] = F::cast_from(apply_unary(f32::cast_from(x[i]), f));
    }
}

/// `out = f(a, b)` with broadcasting: `shape` is the output's, `sa`/`sb` the inputs'
/// strides over it (0 along broadcast dimensions).
#[cube(launch_unchecked)]
pub(super) fn binary<F: Float>(
    a: &Array<F>,
    b: &Array<F>,
    out: &mut Array<F>,
    shape: &Array<u32>,
    sa: &Array<u32>,
    sb: &Array<u32>,
    #[comptime] f: u32,
) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        let rank = shape.len();
        let mut rem = u32::cast_from(i);
        let mut ia = 0u32;
        let mut ib = 0u32;
        for k in 0..rank {
            let d = rank - 1 - k;
            let n = shape[d];
            let c = rem % n;
            rem /= n;
            ia += c * sa[d];
            ib += c * sb[d];
        }
        let va = f32::cast_from(a[usize::cast_from(ia)]);
        let vb = f32::cast_from(b[usize::cast_from(ib)]);
        out[i] = F::cast_from(apply_binary(va, vb, f));
    }
}

/// One step of a shared-memory tree reduction: sum (`max` false) or maximum.
#[cube]
fn tree_step(s: &mut SharedMemory<f32>, u: u32, stride: u32, #[comptime] max: bool) {
    if u < stride {
        let a = s[usize::cast_from(u)];
        let b = s[usize::cast_from(u + stride)];
        if comptime!(max) {
            s[usize::cast_from(u)] = a.max(b);
        } else {
            s[usize::cast_from(u)] = a + b;
        }
    }
    sync_cube();
}

/// Reduces the [`BLOCK`] values in `s` (each unit wrote its own) to `s[0]`, which
/// every unit then returns.
#[cube]
fn block_reduce(s: &mut SharedMemory<f32>, u: u32, v: f32, #[comptime] max: bool) -> f32 {
    s[usize::cast_from(u)] = v;
    sync_cube();
    tree_step(s, u, 128u32, max);
    tree_step(s, u, 64u32, max);
    tree_step(s, u, 32u32, max);
    tree_step(s, u, 16u32, max);
    tree_step(s, u, 8u32, max);
    tree_step(s, u, 4u32, max);
    tree_step(s, u, 2u32, max);
    tree_step(s, u, 1u32, max);
    let r = s[0];
    sync_cube();
    r
}

/// The row this cube works on (cubes are laid out on a 2-D grid when there are more
/// rows than one grid dimension allows). Cubes past the last row redo the last row
/// and write nothing (see [`row_valid`]): every unit reaches every barrier, with no
/// branch around them.
#[cube]
fn row_index(rows: u32) -> u32 {
    (CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X).min(rows - 1)
}

/// Whether this cube's row exists.
#[cube]
fn row_valid(rows: u32) -> bool {
    CUBE_POS_Y * CUBE_COUNT_X + CUBE_POS_X < rows
}

/// Softmax of each row of `cols` elements (max subtracted first), one cube per row.
#[cube(launch_unchecked)]
pub(super) fn softmax_rows<F: Float>(x: &Array<F>, out: &mut Array<F>, rows: u32, cols: u32) {
    let row = row_index(rows);
    let valid = row_valid(rows);
    let u = UNIT_POS;
    let base = row * cols;
    let mut s = SharedMemory::<f32>::new(256usize);
    // Every row has at least one element (empty rows are not launched).
    let mut m = f32::cast_from(x[usize::cast_from(base)]);
    {
        let mut j = u;
        while j < cols {
            m = m.max(f32::cast_from(x[usize::cast_from(base + j)]));
            j += 256u32;
        }
        let m = block_reduce(&mut s, u, m, true);
        let mut sum = 0.0f32;
        let mut j = u;
        while j < cols {
            sum += (f32::cast_from(x[usize::cast_from(base + j)]) - m).exp();
            j += 256u32;
        }
        let sum = block_reduce(&mut s, u, sum, false);
        let inv = 1.0f32 / sum;
        let mut j = u;
        while valid && j < cols {
            let k = usize::cast_from(base + j);
            out[k] = F::cast_from((f32::cast_from(x[k]) - m).exp() * inv);
            j += 256u32;
        }
    }
}

/// Normalisation of each row, one cube per row: `kind` 0 LayerNorm (`γ·(x−μ)/σ + β`),
/// 1 LayerNorm then the erf GELU (one pass), 2 RMSNorm (`γ·x/rms`, `beta` unread).
/// Statistics in f32, the variance as the mean of squared deviations (two passes, as
/// the CPU kernels).
#[cube(launch_unchecked)]
pub(super) fn norm_rows<F: Float>(
    x: &Array<F>,
    gamma: &Array<F>,
    beta: &Array<F>,
    out: &mut Array<F>,
    rows: u32,
    cols: u32,
    eps: f32,
    #[comptime] kind: u32,
) {
    let row = row_index(rows);
    let valid = row_valid(rows);
    {
        let u = UNIT_POS;
        let base = row * cols;
        let n = f32::cast_from(cols);
        let mut s = SharedMemory::<f32>::new(256usize);
        let mut mean = 0.0f32;
        if comptime!(kind != 2) {
            let mut acc = 0.0f32;
            let mut j = u;
            while j < cols {
                acc += f32::cast_from(x[usize::cast_from(base + j)]);
                j += 256u32;
            }
            mean = block_reduce(&mut s, u, acc, false) / n;
        }
        let mut acc = 0.0f32;
        let mut j = u;
        while j < cols {
            let d = f32::cast_from(x[usize::cast_from(base + j)]) - mean;
            acc += d * d;
            j += 256u32;
        }
        let inv = (block_reduce(&mut s, u, acc, false) / n + eps).inverse_sqrt();
        let mut j = u;
        while valid && j < cols {
            let k = usize::cast_from(base + j);
            let g = f32::cast_from(gamma[usize::cast_from(j)]);
            let mut y = (f32::cast_from(x[k]) - mean) * inv * g;
            if comptime!(kind != 2) {
                y += f32::cast_from(beta[usize::cast_from(j)]);
            }
            if comptime!(kind == 1) {
                y = gelu(y);
            }
            out[k] = F::cast_from(y);
            j += 256u32;
        }
    }
}

/// Reduction of each row of `cols` elements to one value, one cube per row: `f` 0 sum,
/// 1 mean, 2 max, 3 min.
#[cube(launch_unchecked)]
pub(super) fn reduce_rows<F: Float>(
    x: &Array<F>,
    out: &mut Array<F>,
    rows: u32,
    cols: u32,
    #[comptime] f: u32,
) {
    let row = row_index(rows);
    let valid = row_valid(rows);
    {
        let u = UNIT_POS;
        let base = row * cols;
        let mut s = SharedMemory::<f32>::new(256usize);
        let is_max = comptime!(f >= 2);
        // Min as minus the max of minus x.
        let mut sign = 1.0f32;
        if comptime!(f == 3) {
            sign = -1.0f32;
        }
        let mut acc = 0.0f32;
        if comptime!(is_max) {
            // Rows are never empty (see the launcher).
            acc = sign * f32::cast_from(x[usize::cast_from(base)]);
        }
        let mut j = u;
        while j < cols {
            let v = sign * f32::cast_from(x[usize::cast_from(base + j)]);
            if comptime!(is_max) {
                acc = acc.max(v);
            } else {
                acc += v;
            }
            j += 256u32;
        }
        let mut r = block_reduce(&mut s, u, acc, is_max) * sign;
        if comptime!(f == 1) {
            r /= f32::cast_from(cols);
        }
        if valid && u == 0 {
            out[usize::cast_from(row)] = F::cast_from(r);
        }
    }
}

/// Side of the square tiles of [`matmul`] (its cubes are `TILE × TILE` units).
pub(super) const TILE: u32 = 16;

/// Batched `out[z] = a[z]·b[z] (+ bias)`, `[m, k]·[k, n]`, with the batch's element
/// offsets into `a` and `b` given (so batch dimensions broadcast). Shared-memory
/// tiles of [`TILE`]²; accumulation in f32.
#[cube(launch_unchecked)]
pub(super) fn matmul<F: Float>(
    a: &Array<F>,
    b: &Array<F>,
    bias: &Array<F>,
    out: &mut Array<F>,
    a_off: &Array<u32>,
    b_off: &Array<u32>,
    m: u32,
    k: u32,
    n: u32,
    #[comptime] has_bias: bool,
) {
    let z = CUBE_POS_Z;
    let ty = UNIT_POS_Y;
    let tx = UNIT_POS_X;
    let row = CUBE_POS_Y * 16u32 + ty;
    let col = CUBE_POS_X * 16u32 + tx;
    let mut sa = SharedMemory::<f32>::new(256usize);
    let mut sb = SharedMemory::<f32>::new(256usize);
    let ao = a_off[usize::cast_from(z)];
    let bo = b_off[usize::cast_from(z)];
    let mut acc = 0.0f32;
    let tiles = k.div_ceil(16u32);
    for t in 0..tiles {
        let ka = t * 16u32 + tx;
        let kb = t * 16u32 + ty;
        let mut va = 0.0f32;
        if row < m && ka < k {
            va = f32::cast_from(a[usize::cast_from(ao + row * k + ka)]);
        }
        let mut vb = 0.0f32;
        if kb < k && col < n {
            vb = f32::cast_from(b[usize::cast_from(bo + kb * n + col)]);
        }
        sa[usize::cast_from(ty * 16u32 + tx)] = va;
        sb[usize::cast_from(ty * 16u32 + tx)] = vb;
        sync_cube();
        #[unroll]
        for q in 0..16u32 {
            acc += sa[usize::cast_from(ty * 16u32 + q)] * sb[usize::cast_from(q * 16u32 + tx)];
        }
        sync_cube();
    }
    if row < m && col < n {
        if comptime!(has_bias) {
            acc += f32::cast_from(bias[usize::cast_from(col)]);
        }
        out[usize::cast_from(z * m * n + row * n + col)] = F::cast_from(acc);
    }
}

/// Rotary embedding (GPT-NeoX halves) of the first `rot` of `d` elements of each row
/// of `x [rows, d]`, row `r` at position `r mod t`; `cos`, `sin` are `[t, rot]`.
#[cube(launch_unchecked)]
pub(super) fn rope<F: Float>(
    x: &Array<F>,
    cos: &Array<F>,
    sin: &Array<F>,
    out: &mut Array<F>,
    t: u32,
    d: u32,
    rot: u32,
) {
    let o = ABSOLUTE_POS;
    if o < out.len() {
        let o32 = u32::cast_from(o);
        let j = o32 % d;
        let r = o32 / d;
        let p = (r % t) * rot;
        let half = rot / 2u32;
        let base = r * d;
        let mut y = f32::cast_from(x[o]);
        if j < half {
            let x2 = f32::cast_from(x[usize::cast_from(base + j + half)]);
            y = y * f32::cast_from(cos[usize::cast_from(p + j)])
                - x2 * f32::cast_from(sin[usize::cast_from(p + j)]);
        } else if j < rot {
            let x1 = f32::cast_from(x[usize::cast_from(base + j - half)]);
            y = y * f32::cast_from(cos[usize::cast_from(p + j)])
                + x1 * f32::cast_from(sin[usize::cast_from(p + j)]);
        }
        out[o] = F::cast_from(y);
    }
}

/// `out[i, p, q] = x[i, ids[p], q]` over `outer × size × inner` (an embedding lookup
/// when `outer` is 1); an index outside `0..size` gives zeros (the launcher checks
/// indices it uploads).
#[cube(launch_unchecked)]
pub(super) fn gather<F: Float>(
    x: &Array<F>,
    ids: &Array<i32>,
    out: &mut Array<F>,
    size: u32,
    inner: u32,
) {
    let o = ABSOLUTE_POS;
    if o < out.len() {
        let o32 = u32::cast_from(o);
        let q = o32 % inner;
        let rest = o32 / inner;
        let nids = u32::cast_from(ids.len());
        let p = rest % nids;
        let i = rest / nids;
        let id = ids[usize::cast_from(p)];
        let mut v = F::new(0.0);
        if id >= 0i32 && u32::cast_from(id) < size {
            v = x[usize::cast_from((i * size + u32::cast_from(id)) * inner + q)];
        }
        out[o] = v;
    }
}

/// Largest value-head size [`attention`] accumulates in shared memory.
pub(super) const MAX_HEAD: usize = 1024;

/// `softmax(q·kᵀ·scale + mask)·v`, one cube per query row, keys in blocks of 256 with
/// an online softmax (running maximum and sum rescale the accumulator, as flash
/// attention does): the scores never go to memory. Query row `r` (of `rows`, `t` per
/// head) reads key/value head `(r / t) / group` (grouped-query attention; 1 for
/// plain attention). Key `j` of element `i` sits at `i·ks_d + j·ks_s` in its head
/// (`[d, s]` transposed keys or `[s, d]` rows); the mask element of (row, key) at the
/// row's offset over `mshape`/`mstride` (its broadcast strides) plus `key·mstride[-1]`.
#[cube(launch_unchecked)]
pub(super) fn attention<F: Float>(
    q: &Array<F>,
    k: &Array<F>,
    v: &Array<F>,
    mask: &Array<F>,
    out: &mut Array<F>,
    mshape: &Array<u32>,
    mstride: &Array<u32>,
    dims: &Array<u32>,
    scale: f32,
) {
    // dims: rows, t, s, d, e, group, ks_d, ks_s.
    let rows = dims[0];
    let t = dims[1];
    let s = dims[2];
    let d = dims[3];
    let e = dims[4];
    let group = dims[5];
    let ks_d = dims[6];
    let ks_s = dims[7];
    let r = row_index(rows);
    let valid = row_valid(rows);
    let u = UNIT_POS;
    let zk = (r / t) / group;
    let qbase = r * d;
    let kbase = zk * s * d;
    let vbase = zk * s * e;
    let rank = mshape.len();
    let mut rem = r;
    let mut moff = 0u32;
    for i in 0..rank - 1 {
        let dim = rank - 2 - i;
        let n = mshape[dim];
        moff += (rem % n) * mstride[dim];
        rem /= n;
    }
    let mlast = mstride[rank - 1];
    let mut red = SharedMemory::<f32>::new(256usize);
    let mut p_sh = SharedMemory::<f32>::new(256usize);
    let mut acc = SharedMemory::<f32>::new(1024usize);
    let mut j = u;
    while j < e {
        acc[usize::cast_from(j)] = 0.0f32;
        j += 256u32;
    }
    // A running maximum that starts far below any score (an expression, not a
    // literal, so that it is a runtime value).
    let mut m = f32::cast_from(q[usize::cast_from(qbase)]) * 0.0f32 - 3.0e38f32;
    let mut l = 0.0f32;
    let blocks = s.div_ceil(256u32);
    for b in 0..blocks {
        let key = b * 256u32 + u;
        let mut sc = m;
        if key < s {
            let mut dot = 0.0f32;
            for i in 0..d {
                let qv = f32::cast_from(q[usize::cast_from(qbase + i)]);
                let kv = f32::cast_from(k[usize::cast_from(kbase + i * ks_d + key * ks_s)]);
                dot += qv * kv;
            }
            sc = dot * scale + f32::cast_from(mask[usize::cast_from(moff + key * mlast)]);
        }
        let m_new = block_reduce(&mut red, u, sc, true).max(m);
        let mut p = 0.0f32;
        if key < s {
            p = (sc - m_new).exp();
        }
        let alpha = (m - m_new).exp();
        l = l * alpha + block_reduce(&mut red, u, p, false);
        p_sh[usize::cast_from(u)] = p;
        sync_cube();
        let kmax = (s - b * 256u32).min(256u32);
        let mut j = u;
        while j < e {
            let mut a = acc[usize::cast_from(j)] * alpha;
            for kk in 0..kmax {
                let vv = f32::cast_from(v[usize::cast_from(vbase + (b * 256u32 + kk) * e + j)]);
                a += p_sh[usize::cast_from(kk)] * vv;
            }
            acc[usize::cast_from(j)] = a;
            j += 256u32;
        }
        sync_cube();
        m = m_new;
    }
    let inv = 1.0f32 / l;
    let mut j = u;
    while valid && j < e {
        out[usize::cast_from(r * e + j)] = F::cast_from(acc[usize::cast_from(j)] * inv);
        j += 256u32;
    }
}

/// Copies a strided region: element `i` of the `count` (row-major over `shape`) goes
/// from `x[x_off + Σ (c_d / div_d)·xs_d]` to `out[o_off + Σ c_d·os_d]`. `meta` holds
/// `rank, x_off, o_off`, then `shape`, `xs`, `os` and `div` (rank each). Permute,
/// slice, concat (one call per input), repeat-interleave (`div` = repeats) and
/// broadcasting copies are all this kernel.
#[cube(launch_unchecked)]
pub(super) fn copy_strided<F: Float>(
    x: &Array<F>,
    out: &mut Array<F>,
    meta: &Array<u32>,
    count: u32,
) {
    let i = ABSOLUTE_POS;
    if i < usize::cast_from(count) {
        let rank = meta[0];
        let mut src = meta[1];
        let mut dst = meta[2];
        let mut rem = u32::cast_from(i);
        for k in 0..rank {
            let d = rank - 1 - k;
            let n = meta[usize::cast_from(3u32 + d)];
            let c = rem % n;
            rem /= n;
            src += (c / meta[usize::cast_from(3u32 + 3u32 * rank + d)])
                * meta[usize::cast_from(3u32 + rank + d)];
            dst += c * meta[usize::cast_from(3u32 + 2u32 * rank + d)];
        }
        out[usize::cast_from(dst)] = x[usize::cast_from(src)];
    }
}

/// `out[i] = x[i]` converted from `F` to `G`.
#[cube(launch_unchecked)]
pub(super) fn convert<F: Float, G: Float>(x: &Array<F>, out: &mut Array<G>) {
    let i = ABSOLUTE_POS;
    if i < out.len() {
        out[i] = G::cast_from(x[i]);
    }
}
