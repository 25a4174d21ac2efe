//! Softmax attention of a tile of queries against paged key/value blocks, register
//! tiled: up to [`TILE`] queries that share one key/value head go through each block
//! together, so every key and value row loaded is used by all of them.
//!
//! Keys are kept transposed per block (`[head_dim][block]`: key `s`'s element `j` at
//! `j · block + s`), so a query's scores against 16 keys are one vector accumulated
//! over `head_dim` fused multiply-adds with no horizontal sums; values are row-major
//! (`[block][head_dim]`). A query's arithmetic does not depend on which queries share
//! its tile: its scores are `Σ_j q[j]·k[j]` fused in `j` order, its output
//! `Σ_s p[s]·v[s]` fused in position order, then divided by the softmax's total, the
//! same bits on every target (`mul_add` is one instruction on the FMA targets and a
//! correctly rounded library call on the portable fallback).

use multiversion::multiversion;

use super::math::{exp, lane_max, lane_sum};

/// Queries per register tile.
pub(crate) const TILE: usize = 8;

/// `$call` with the const `$m` set to the tile's width `$n` (1 to [`TILE`]), so a
/// kernel is instantiated once per width.
macro_rules! by_width {
    ($n:expr, $m:ident => $call:expr) => {
        match $n {
            1 => {
                const $m: usize = 1;
                $call
            }
            2 => {
                const $m: usize = 2;
                $call
            }
            3 => {
                const $m: usize = 3;
                $call
            }
            4 => {
                const $m: usize = 4;
                $call
            }
            5 => {
                const $m: usize = 5;
                $call
            }
            6 => {
                const $m: usize = 6;
                $call
            }
            7 => {
                const $m: usize = 7;
                $call
            }
            _ => {
                const $m: usize = TILE;
                $call
            }
        }
    };
}
const LANES: usize = 16;

/// `out[i] = softmax(scale · q_i · K[..lens[i]]ᵀ) · V[..lens[i]]` for every query;
/// `keys[b]`/`values[b]` are block `b` of the head (`block` positions of `d`
/// elements), `scores` is scratch.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attend(
    keys: &[&[f32]],
    values: &[&[f32]],
    block: usize,
    d: usize,
    queries: &[&[f32]],
    lens: &[usize],
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [&mut [f32]],
) {
    #[cfg(target_arch = "x86_64")]
    let simd = avx512();
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    attend_on(
        simd, keys, values, block, d, queries, lens, scale, scores, out,
    );
}

/// [`attend`] on the AVX-512 kernels (`simd`, where this CPU has them) or the
/// portable ones.
#[allow(clippy::too_many_arguments)]
fn attend_on(
    simd: bool,
    keys: &[&[f32]],
    values: &[&[f32]],
    block: usize,
    d: usize,
    queries: &[&[f32]],
    lens: &[usize],
    scale: f32,
    scores: &mut Vec<f32>,
    out: &mut [&mut [f32]],
) {
    for ((q, l), o) in queries
        .chunks(TILE)
        .zip(lens.chunks(TILE))
        .zip(out.chunks_mut(TILE))
    {
        let len = l.iter().copied().max().unwrap_or(0);
        if len == 0 {
            continue;
        }
        let b = len.div_ceil(block);
        #[cfg(target_arch = "x86_64")]
        if simd && std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: this CPU has AVX-512F.
            unsafe { x86::tile(&keys[..b], &values[..b], block, d, q, l, scale, scores, o) };
            continue;
        }
        scores.clear();
        scores.resize(q.len() * len, 0.0);
        tile(&keys[..b], &values[..b], block, d, q, l, scale, scores, o);
    }
}

/// Whether the AVX-512 kernels run here: the CPU has AVX-512F and `AUTOGLM_ISA`
/// (read once) does not cap the kernels below VNNI's level.
#[cfg(target_arch = "x86_64")]
pub(crate) fn avx512() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        crate::quant::Isa::detect() == crate::quant::Isa::Vnni
            && std::arch::is_x86_feature_detected!("avx512f")
    })
}

/// Each query's softmax over its own length, in place on its row of `scores`
/// (rows of `len`), positions past it set to zero; returns `1 / Σ` per query.
#[inline(always)]
fn softmax<const M: usize>(scores: &mut [f32], len: usize, lens: &[usize]) -> [f32; M] {
    let mut inv = [0.0f32; M];
    for (i, row) in scores.chunks_exact_mut(len).enumerate().take(M) {
        let (live, dead) = row.split_at_mut(lens[i]);
        let max = lane_max(live);
        for v in live.iter_mut() {
            *v = exp(*v - max);
        }
        inv[i] = 1.0 / lane_sum(live, |v| v);
        // Positions past this query's length weigh nothing in the shared loop.
        dead.fill(0.0);
    }
    inv
}

#[multiversion(targets("x86_64+avx512f+avx512vl+avx512bw+avx512dq", "x86_64+avx2+fma"))]
#[allow(clippy::too_many_arguments)]
fn tile(
    keys: &[&[f32]],
    values: &[&[f32]],
    block: usize,
    d: usize,
    q: &[&[f32]],
    lens: &[usize],
    scale: f32,
    scores: &mut [f32],
    out: &mut [&mut [f32]],
) {
    let t = Tile {
        keys,
        values,
        block,
        d,
        len: scores.len() / q.len(),
    };
    by_width!(q.len(), M => t.run::<M>(q, lens, scale, scores, out))
}

/// One head's blocks and the tile's longest length (`len`, the scores' row stride).
struct Tile<'a> {
    keys: &'a [&'a [f32]],
    values: &'a [&'a [f32]],
    block: usize,
    d: usize,
    len: usize,
}

impl Tile<'_> {
    #[inline(always)]
    fn run<const M: usize>(
        &self,
        q: &[&[f32]],
        lens: &[usize],
        scale: f32,
        scores: &mut [f32],
        out: &mut [&mut [f32]],
    ) {
        let q: [&[f32]; M] = std::array::from_fn(|i| &q[i][..self.d]);
        self.scores::<M>(&q, scale, scores);
        let inv = softmax::<M>(scores, self.len, lens);
        self.weighted::<M>(scores, &inv, out);
    }

    /// `scores[i·len + p] = scale · q_i · key p` for every position up to `len`
    /// (whole 16-key groups past it may be written too, within the row).
    #[inline(always)]
    fn scores<const M: usize>(&self, q: &[&[f32]; M], scale: f32, scores: &mut [f32]) {
        let (d, bs, len) = (self.d, self.block, self.len);
        for (b, kt) in self.keys.iter().enumerate() {
            let used = (len - b * bs).min(bs);
            let base = b * bs;
            let mut s0 = 0;
            // Whole groups of 16 keys, the last one possibly past `used` but inside
            // the block (those lanes are not stored).
            while s0 < used && s0 + LANES <= bs {
                let mut acc = [[0.0f32; LANES]; M];
                for j in 0..d {
                    let row: &[f32; LANES] = kt[j * bs + s0..j * bs + s0 + LANES]
                        .try_into()
                        .expect("16 keys");
                    for (a, qi) in acc.iter_mut().zip(q) {
                        let x = qi[j];
                        for (l, &k) in a.iter_mut().zip(row) {
                            *l = x.mul_add(k, *l);
                        }
                    }
                }
                let n = (used - s0).min(LANES);
                for (i, a) in acc.iter().enumerate() {
                    let dst = &mut scores[i * len + base + s0..i * len + base + s0 + n];
                    for (o, &v) in dst.iter_mut().zip(a) {
                        *o = v * scale;
                    }
                }
                s0 += LANES;
            }
            // A block narrower than 16 keys (or its last few): one key at a time,
            // the same arithmetic.
            for s in s0..used {
                for (i, qi) in q.iter().enumerate() {
                    let mut a = 0.0f32;
                    for (j, &x) in qi.iter().enumerate() {
                        a = x.mul_add(kt[j * bs + s], a);
                    }
                    scores[i * len + base + s] = a * scale;
                }
            }
        }
    }

    /// `out[i] = inv[i] · Σ_p p_i[p] · value p`, 16 elements of the head at a time.
    #[inline(always)]
    fn weighted<const M: usize>(&self, p: &[f32], inv: &[f32; M], out: &mut [&mut [f32]]) {
        let (d, bs, len) = (self.d, self.block, self.len);
        let mut c0 = 0;
        while c0 + LANES <= d {
            let mut acc = [[0.0f32; LANES]; M];
            for (b, v) in self.values.iter().enumerate() {
                let used = (len - b * bs).min(bs);
                for s in 0..used {
                    let row: &[f32; LANES] = v[s * d + c0..s * d + c0 + LANES]
                        .try_into()
                        .expect("16 elements");
                    for (i, a) in acc.iter_mut().enumerate() {
                        let w = p[i * len + b * bs + s];
                        for (l, &x) in a.iter_mut().zip(row) {
                            *l = w.mul_add(x, *l);
                        }
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                for (o, &x) in out[i][c0..c0 + LANES].iter_mut().zip(a) {
                    *o = x * inv[i];
                }
            }
            c0 += LANES;
        }
        for c in c0..d {
            for (i, o) in out.iter_mut().enumerate().take(M) {
                let mut a = 0.0f32;
                for (b, v) in self.values.iter().enumerate() {
                    let used = (len - b * bs).min(bs);
                    for s in 0..used {
                        a = p[i * len + b * bs + s].mul_add(v[s * d + c], a);
                    }
                }
                o[c] = a * inv[i];
            }
        }
    }
}

/// The AVX-512 kernels: the portable loops' arithmetic (the same bits), with the
/// tile's queries transposed into scratch (`[head_dim][M]`, every broadcast a fixed
/// offset from one pointer), the accumulators held in registers, and masked loads
/// for a block or head narrower than 16.
#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::{softmax, LANES, TILE};

    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx2,fma")]
    pub(super) fn tile(
        keys: &[&[f32]],
        values: &[&[f32]],
        block: usize,
        d: usize,
        q: &[&[f32]],
        lens: &[usize],
        scale: f32,
        scratch: &mut Vec<f32>,
        out: &mut [&mut [f32]],
    ) {
        by_width!(q.len(), M => run::<M>(keys, values, block, d, q, lens, scale, scratch, out))
    }

    /// Lanes `0..n` of a vector.
    #[inline(always)]
    fn mask(n: usize) -> __mmask16 {
        if n >= LANES {
            0xFFFF
        } else {
            ((1u32 << n) - 1) as __mmask16
        }
    }

    #[allow(clippy::too_many_arguments)]
    #[inline]
    #[target_feature(enable = "avx512f,avx2,fma")]
    fn run<const M: usize>(
        keys: &[&[f32]],
        values: &[&[f32]],
        bs: usize,
        d: usize,
        q: &[&[f32]],
        lens: &[usize],
        scale: f32,
        scratch: &mut Vec<f32>,
        out: &mut [&mut [f32]],
    ) {
        let len = lens[..M].iter().copied().max().unwrap_or(0);
        // Scratch: the queries transposed, then the scores (rows of `len`).
        scratch.clear();
        scratch.resize(d * M + M * len, 0.0);
        let (qt, scores) = scratch.split_at_mut(d * M);
        for (i, qi) in q.iter().enumerate().take(M) {
            for (j, &x) in qi[..d].iter().enumerate() {
                qt[j * M + i] = x;
            }
        }
        let vscale = _mm512_set1_ps(scale);
        for (b, kt) in keys.iter().enumerate() {
            let used = (len - b * bs).min(bs);
            assert!(kt.len() >= d * bs, "a key block is {} long", kt.len());
            let mut s0 = 0;
            while s0 < used {
                let n = (used - s0).min(LANES);
                let m = mask((bs - s0).min(LANES));
                let mut acc = [_mm512_setzero_ps(); M];
                let mut k = kt[s0..].as_ptr();
                let mut qp = qt.as_ptr();
                for _ in 0..d {
                    // SAFETY: lanes `s0..s0 + 16` within the block row (`m`), and
                    // row `j < d` of a block `d · bs` long; `qp` walks `qt`'s `d · M`.
                    unsafe {
                        let kv = _mm512_maskz_loadu_ps(m, k);
                        for (i, a) in acc.iter_mut().enumerate() {
                            *a = _mm512_fmadd_ps(_mm512_set1_ps(*qp.add(i)), kv, *a);
                        }
                        k = k.add(bs);
                        qp = qp.add(M);
                    }
                }
                for (i, a) in acc.iter().enumerate() {
                    let dst = &mut scores[i * len + b * bs + s0..i * len + b * bs + s0 + n];
                    // SAFETY: `n` lanes into a slice of `n`.
                    unsafe {
                        _mm512_mask_storeu_ps(dst.as_mut_ptr(), mask(n), _mm512_mul_ps(*a, vscale))
                    };
                }
                s0 += LANES;
            }
        }
        let inv = softmax::<M>(scores, len, lens);
        let rows: [*const f32; M] = std::array::from_fn(|i| scores[i * len..].as_ptr());
        let mut c0 = 0;
        while c0 < d {
            let m = mask(d - c0);
            let mut acc = [_mm512_setzero_ps(); M];
            for (b, v) in values.iter().enumerate() {
                let used = (len - b * bs).min(bs);
                assert!(v.len() >= used * d, "a value block is {} long", v.len());
                let mut vp = v[c0..].as_ptr();
                for s in b * bs..b * bs + used {
                    // SAFETY: lanes `c0..c0 + 16` of a row of `d` (`m`), rows below
                    // `used`; position `s < len` of each row of scores.
                    unsafe {
                        let x = _mm512_maskz_loadu_ps(m, vp);
                        for (i, a) in acc.iter_mut().enumerate() {
                            *a = _mm512_fmadd_ps(_mm512_set1_ps(*rows[i].add(s)), x, *a);
                        }
                        vp = vp.add(d);
                    }
                }
            }
            for (i, a) in acc.iter().enumerate() {
                let o = &mut out[i][c0..d];
                // SAFETY: `min(16, d − c0)` lanes into a slice that long.
                unsafe {
                    _mm512_mask_storeu_ps(
                        o.as_mut_ptr(),
                        m,
                        _mm512_mul_ps(*a, _mm512_set1_ps(inv[i])),
                    )
                };
            }
            c0 += LANES;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain formula in f64, for blocks laid out as `attend` expects.
    fn reference(k: &[Vec<f32>], v: &[Vec<f32>], q: &[f32], len: usize, scale: f32) -> Vec<f64> {
        let s: Vec<f64> = (0..len)
            .map(|p| {
                scale as f64
                    * q.iter()
                        .zip(&k[p])
                        .map(|(&a, &b)| a as f64 * b as f64)
                        .sum::<f64>()
            })
            .collect();
        let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
        let t: f64 = e.iter().sum();
        (0..q.len())
            .map(|c| (0..len).map(|p| e[p] * v[p][c] as f64).sum::<f64>() / t)
            .collect()
    }

    fn value(seed: &mut u64) -> f32 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    #[test]
    fn tiles_match_the_formula_and_do_not_depend_on_their_neighbours() {
        for &(block, d, n) in &[
            (16usize, 64usize, 40usize),
            (4, 24, 13),
            (32, 40, 70),
            (16, 16, 1),
            (8, 80, 33),
        ] {
            let mut seed = (block * 1000 + d) as u64;
            let k: Vec<Vec<f32>> = (0..n)
                .map(|_| (0..d).map(|_| value(&mut seed)).collect())
                .collect();
            let v: Vec<Vec<f32>> = (0..n)
                .map(|_| (0..d).map(|_| value(&mut seed)).collect())
                .collect();
            let nb = n.div_ceil(block);
            let mut kb = vec![vec![0.5f32; d * block]; nb];
            let mut vb = vec![vec![0.25f32; d * block]; nb];
            for p in 0..n {
                for j in 0..d {
                    kb[p / block][j * block + p % block] = k[p][j];
                    vb[p / block][(p % block) * d + j] = v[p][j];
                }
            }
            let keys: Vec<&[f32]> = kb.iter().map(|b| b.as_slice()).collect();
            let values: Vec<&[f32]> = vb.iter().map(|b| b.as_slice()).collect();
            let queries: Vec<Vec<f32>> = (0..11)
                .map(|_| (0..d).map(|_| 3.0 * value(&mut seed)).collect())
                .collect();
            let lens: Vec<usize> = (0..11).map(|i| n - (i * 7) % n.max(1)).collect();
            let qs: Vec<&[f32]> = queries.iter().map(|q| q.as_slice()).collect();
            let scale = 1.0 / (d as f32).sqrt();
            let mut scratch = Vec::new();
            let mut all = vec![vec![0.0f32; d]; 11];
            let mut outs: Vec<&mut [f32]> = all.iter_mut().map(|o| o.as_mut_slice()).collect();
            attend(
                &keys,
                &values,
                block,
                d,
                &qs,
                &lens,
                scale,
                &mut scratch,
                &mut outs,
            );
            for (i, o) in all.iter().enumerate() {
                let r = reference(&k, &v, &queries[i], lens[i], scale);
                for (a, b) in o.iter().zip(&r) {
                    assert!(
                        (*a as f64 - b).abs() < 1e-5,
                        "block {block} d {d} query {i}: {a} vs {b}"
                    );
                }
                // Alone in its tile, and on either kernel: the same bits.
                for simd in [false, true] {
                    let mut one = vec![0.0f32; d];
                    attend_on(
                        simd,
                        &keys,
                        &values,
                        block,
                        d,
                        &qs[i..=i],
                        &lens[i..=i],
                        scale,
                        &mut scratch,
                        &mut [one.as_mut_slice()],
                    );
                    assert_eq!(o, &one, "block {block} d {d} query {i} simd {simd}");
                }
            }
        }
    }
}
