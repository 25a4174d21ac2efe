//! Block-quantized weight formats: ggml's `Q8_0`, `Q4_0` and `Q4_1`, byte for byte.
//!
//! A row of weights is cut into blocks of [`BLOCK`] (32) consecutive values; each block
//! stores an f16 scale (and for `Q4_1` an f16 minimum) beside its 32 codes:
//!
//! | format | block layout (little-endian) | bytes | bits per weight | value |
//! |---|---|---|---|---|
//! | [`BlockFormat::Q8_0`] | `d: f16, qs: [i8; 32]` | 34 | 8.5 | `d · qs[j]` |
//! | [`BlockFormat::Q4_0`] | `d: f16, qs: [u8; 16]` | 18 | 4.5 | `d · (nibble − 8)` |
//! | [`BlockFormat::Q4_1`] | `d: f16, m: f16, qs: [u8; 16]` | 20 | 5.0 | `d · nibble + m` |
//!
//! In the 4-bit formats value `j` of a block is the low nibble of `qs[j]` and value
//! `j + 16` its high nibble. The quantizers are ggml's reference ones
//! (`quantize_row_*_ref`), which llama.cpp's `llama-quantize` runs without an
//! importance matrix, with their rounding exactly: `Q8_0` rounds half away from zero,
//! `Q4_0` and `Q4_1` truncate `x·id + 8.5` and `(x − min)·id + 0.5`, codes are computed
//! with the f32 scale before it is rounded to f16, and no multiply-add is fused (as in
//! the `gguf` 0.19.0 Python package, which the golden test compares against).
//!
//! ```
//! use autoglm_ops::quant::{BlockFormat, BLOCK};
//! let x: Vec<f32> = (0..2 * BLOCK).map(|i| (i as f32 - 20.0) / 7.0).collect();
//! let q = BlockFormat::Q8_0.quantize(&x).unwrap();
//! assert_eq!(q.len(), 2 * 34);
//! let mut y = vec![0.0; x.len()];
//! BlockFormat::Q8_0.dequantize(&q, &mut y).unwrap();
//! // Each value is within half a quantization step (amax / 127 / 2) of the original,
//! // plus what rounding the scale to f16 moves it (at most 127 · 2⁻¹¹ of a step).
//! let amax = 43.0 / 7.0;
//! assert!(x.iter().zip(&y).all(|(a, b)| (a - b).abs() <= amax * (1.0 / 254.0 + 1e-3)));
//! ```

use std::ops::Range;
use std::sync::Arc;

use half::f16;

use crate::error::{Error, Result};

/// Values per block.
pub const BLOCK: usize = 32;

/// Bytes of a `Q8_0` block (an f16 scale and 32 codes): the activations' blocks.
const Q8_0_BYTES: usize = 2 + BLOCK;

/// A block-quantized format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BlockFormat {
    /// 8-bit codes and an f16 scale per block (ggml type 8).
    Q8_0,
    /// 4-bit codes around 8 and an f16 scale per block (ggml type 2).
    Q4_0,
    /// 4-bit codes, an f16 scale and an f16 minimum per block (ggml type 3).
    Q4_1,
}

impl BlockFormat {
    /// Every format.
    pub const ALL: [BlockFormat; 3] = [BlockFormat::Q8_0, BlockFormat::Q4_0, BlockFormat::Q4_1];

    /// Bytes of one block.
    pub fn block_bytes(self) -> usize {
        match self {
            BlockFormat::Q8_0 => Q8_0_BYTES,
            BlockFormat::Q4_0 => 18,
            BlockFormat::Q4_1 => 20,
        }
    }

    /// Stored bits per weight, scales included.
    pub fn bits_per_weight(self) -> f64 {
        (self.block_bytes() * 8) as f64 / BLOCK as f64
    }

    /// ggml's type id (`GGMLQuantizationType`).
    pub fn ggml_type(self) -> u32 {
        match self {
            BlockFormat::Q8_0 => 8,
            BlockFormat::Q4_0 => 2,
            BlockFormat::Q4_1 => 3,
        }
    }

    /// The format's name as ggml writes it (`q8_0`, …).
    pub fn name(self) -> &'static str {
        match self {
            BlockFormat::Q8_0 => "q8_0",
            BlockFormat::Q4_0 => "q4_0",
            BlockFormat::Q4_1 => "q4_1",
        }
    }

    /// Bytes that `n` values take (`n` a multiple of [`BLOCK`]).
    pub fn bytes_for(self, n: usize) -> usize {
        n / BLOCK * self.block_bytes()
    }

    /// Quantizes `x` (a whole number of blocks) into the format's blocks.
    ///
    /// # Errors
    /// [`Error::Shape`] when `x.len()` is not a multiple of [`BLOCK`].
    pub fn quantize(self, x: &[f32]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; self.bytes_for(blocks(x.len(), "values")?)];
        for (b, o) in x
            .chunks_exact(BLOCK)
            .zip(out.chunks_exact_mut(self.block_bytes()))
        {
            let b: &[f32; BLOCK] = b.try_into().expect("a whole block");
            match self {
                BlockFormat::Q8_0 => q8_0(b, o),
                BlockFormat::Q4_0 => q4_0(b, o),
                BlockFormat::Q4_1 => q4_1(b, o),
            }
        }
        Ok(out)
    }

    /// Expands blocks back to f32 values into `out` (as long as the blocks hold).
    ///
    /// # Errors
    /// [`Error::Shape`] when `data` is not a whole number of blocks or `out` is not as
    /// long as they hold.
    pub fn dequantize(self, data: &[u8], out: &mut [f32]) -> Result<()> {
        let bb = self.block_bytes();
        if !data.len().is_multiple_of(bb) || data.len() / bb * BLOCK != out.len() {
            return Err(Error::Shape(format!(
                "{}: {} bytes are not {} values' blocks of {bb} bytes",
                self.name(),
                data.len(),
                out.len()
            )));
        }
        for (b, o) in data.chunks_exact(bb).zip(out.chunks_exact_mut(BLOCK)) {
            let d = half(b, 0);
            match self {
                BlockFormat::Q8_0 => {
                    for (o, &q) in o.iter_mut().zip(&b[2..]) {
                        *o = d * f32::from(q as i8);
                    }
                }
                BlockFormat::Q4_0 => nibbles(&b[2..], o, |q| d * (q as f32 - 8.0)),
                BlockFormat::Q4_1 => {
                    let m = half(b, 2);
                    nibbles(&b[4..], o, |q| d * q as f32 + m);
                }
            }
        }
        Ok(())
    }
}

impl std::fmt::Display for BlockFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The number of blocks in `n` values.
fn blocks(n: usize, what: &str) -> Result<usize> {
    if !n.is_multiple_of(BLOCK) {
        return Err(Error::Shape(format!(
            "{n} {what} are not a whole number of {BLOCK}-value blocks"
        )));
    }
    Ok(n)
}

fn half(b: &[u8], at: usize) -> f32 {
    f16::from_bits(u16::from_le_bytes([b[at], b[at + 1]])).to_f32()
}

fn put_half(o: &mut [u8], at: usize, x: f32) {
    o[at..at + 2].copy_from_slice(&f16::from_f32(x).to_bits().to_le_bytes());
}

/// The inverse of a scale, 0 for a zero scale.
fn inverse(d: f32) -> f32 {
    if d == 0.0 {
        0.0
    } else {
        1.0 / d
    }
}

/// Unpacks 16 bytes of nibbles (value `j` low, `j + 16` high) through `f`.
fn nibbles(qs: &[u8], out: &mut [f32], f: impl Fn(u8) -> f32) {
    let (lo, hi) = out.split_at_mut(BLOCK / 2);
    for ((&q, l), h) in qs.iter().zip(lo).zip(hi) {
        *l = f(q & 0x0F);
        *h = f(q >> 4);
    }
}

/// Packs 32 codes of 0..=15 into 16 bytes (value `j` low, `j + 16` high).
fn pack(codes: &[u8; BLOCK], qs: &mut [u8]) {
    for (j, q) in qs.iter_mut().enumerate().take(BLOCK / 2) {
        *q = codes[j] | (codes[j + BLOCK / 2] << 4);
    }
}

/// `quantize_row_q8_0_ref`.
fn q8_0(x: &[f32; BLOCK], o: &mut [u8]) {
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = inverse(d);
    put_half(o, 0, d);
    for (q, &v) in o[2..].iter_mut().zip(x) {
        *q = (v * id).round() as i8 as u8;
    }
}

/// The signed value of largest magnitude (the first of equals), as ggml picks it.
fn signed_max(x: &[f32; BLOCK]) -> f32 {
    let (mut amax, mut max) = (0.0f32, 0.0f32);
    for &v in x {
        if amax < v.abs() {
            amax = v.abs();
            max = v;
        }
    }
    max
}

/// `quantize_row_q4_0_ref`.
fn q4_0(x: &[f32; BLOCK], o: &mut [u8]) {
    let d = signed_max(x) / -8.0;
    let id = inverse(d);
    put_half(o, 0, d);
    let mut codes = [0u8; BLOCK];
    for (c, &v) in codes.iter_mut().zip(x) {
        // (int8_t)(x*id + 8.5f), at most 15: truncation, then the clamp.
        *c = ((v * id + 8.5) as i8).min(15) as u8;
    }
    pack(&codes, &mut o[2..]);
}

/// `quantize_row_q4_1_ref`.
fn q4_1(x: &[f32; BLOCK], o: &mut [u8]) {
    let (min, max) = x
        .iter()
        .fold((f32::MAX, f32::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let d = (max - min) / 15.0;
    let id = inverse(d);
    put_half(o, 0, d);
    put_half(o, 2, min);
    let mut codes = [0u8; BLOCK];
    for (c, &v) in codes.iter_mut().zip(x) {
        *c = (((v - min) * id + 0.5) as i8).min(15) as u8;
    }
    pack(&codes, &mut o[4..]);
}

/// The instruction sets the quantized dot products are written for, best first.
/// [`Isa::detect`] picks the best this CPU has; the environment variable
/// `AUTOGLM_ISA` (`vnni`, `avx2` or `scalar`) caps it, so that every path can be
/// forced and tested on a machine that has the best one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust.
    Scalar,
    /// AVX2, FMA and F16C: `vpmaddubsw` + `vpmaddwd`.
    Avx2,
    /// AVX-512 VNNI with VL: `vpdpbusd` on 256-bit vectors.
    Vnni,
}

impl Isa {
    /// Every level, lowest first.
    pub const ALL: [Isa; 3] = [Isa::Scalar, Isa::Avx2, Isa::Vnni];

    /// Whether this CPU runs `self`.
    pub fn available(self) -> bool {
        match self {
            Isa::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                    && std::arch::is_x86_feature_detected!("f16c")
            }
            #[cfg(target_arch = "x86_64")]
            Isa::Vnni => {
                Isa::Avx2.available()
                    && std::arch::is_x86_feature_detected!("avx512vnni")
                    && std::arch::is_x86_feature_detected!("avx512vl")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The best level this CPU runs, at most `AUTOGLM_ISA`'s when that is set.
    pub fn detect() -> Isa {
        let cap = match std::env::var("AUTOGLM_ISA").as_deref() {
            Ok("scalar") => Isa::Scalar,
            Ok("avx2") => Isa::Avx2,
            _ => Isa::Vnni,
        };
        Isa::ALL
            .into_iter()
            .rev()
            .find(|i| *i <= cap && i.available())
            .unwrap_or(Isa::Scalar)
    }
}

/// Values per `Q6_K` super-block (ggml's `QK_K`).
pub const Q6_K_VALUES: usize = 256;

/// Bytes of a `Q6_K` super-block: 128 bytes of low nibbles, 64 of high bit pairs, 16
/// signed 8-bit scales (one per 16 values) and an f16 super-block scale (6.5625 bits
/// per weight).
pub const Q6_K_BYTES: usize = 210;

/// Expands ggml's `Q6_K` super-blocks (what `llama-quantize` gives the output head of
/// its 4- and 5-bit types) into values, as ggml's `dequantize_row_q6_K`: value `v` of
/// a super-block is `d · scales[v / 16] · (q − 32)`, its 6-bit code `q` the low or
/// high nibble of a byte of the first 128 (by which quarter of its 128-value half
/// it is in) with two bits of the next 64 above it; `d · scale` is rounded to f32
/// before the code multiplies it.
///
/// # Errors
/// [`Error::Shape`] when `data` does not hold `out.len() / 256` whole super-blocks.
pub fn dequantize_q6_k(data: &[u8], out: &mut [f32]) -> Result<()> {
    if !out.len().is_multiple_of(Q6_K_VALUES) || data.len() != out.len() / Q6_K_VALUES * Q6_K_BYTES
    {
        return Err(Error::Shape(format!(
            "q6_K: {} bytes are not {} values' super-blocks of {Q6_K_BYTES} bytes",
            data.len(),
            out.len()
        )));
    }
    for (b, y) in data
        .chunks_exact(Q6_K_BYTES)
        .zip(out.chunks_exact_mut(Q6_K_VALUES))
    {
        let (ql, rest) = b.split_at(128);
        let (qh, rest) = rest.split_at(64);
        let (scales, d) = rest.split_at(16);
        let d = half(d, 0);
        for (v, y) in y.iter_mut().enumerate() {
            // Half `h` (128 values), quarter `j` within it, position `l` in the quarter.
            let (h, j, l) = (v / 128, v % 128 / 32, v % 32);
            let low = ql[64 * h + 32 * (j % 2) + l] >> (4 * (j / 2)) & 0x0F;
            let high = qh[32 * h + l] >> (2 * j) & 0x03;
            let q = i32::from(low | high << 4) - 32;
            *y = d * f32::from(scales[v / 16] as i8) * q as f32;
        }
    }
    Ok(())
}

/// Quantizes activations to `Q8_0` blocks for [`dot`]: ggml's run-time quantizer
/// (`quantize_row_q8_0`: `id = 127 / amax`, round half to even), which differs from
/// the reference one that files are written with.
///
/// # Errors
/// [`Error::Shape`] when `x.len()` is not a multiple of [`BLOCK`].
pub fn quantize_activations(x: &[f32]) -> Result<Vec<u8>> {
    let mut out = vec![0u8; BlockFormat::Q8_0.bytes_for(blocks(x.len(), "activations")?)];
    quantize_blocks(x, &mut out);
    Ok(out)
}

/// [`quantize_activations`]' loop, compiled for the vector extensions too (where
/// rounding to even is one instruction, not a call).
#[multiversion::multiversion(targets("x86_64+avx512f+avx512vl+avx512bw", "x86_64+avx2+fma"))]
fn quantize_blocks(x: &[f32], out: &mut [u8]) {
    for (b, o) in x.chunks_exact(BLOCK).zip(out.chunks_exact_mut(Q8_0_BYTES)) {
        // The largest magnitude, in 16 lanes (the same value as one chain: the
        // maximum does not depend on the order).
        let (lo, hi) = b.split_at(BLOCK / 2);
        // (`a > b` picks, which is one vector instruction; NaN aside it is `max`.)
        let big = |a: f32, b: f32| if a > b { a } else { b };
        let l16: [f32; 16] = std::array::from_fn(|l| big(lo[l].abs(), hi[l].abs()));
        let l8: [f32; 8] = std::array::from_fn(|l| big(l16[l], l16[l + 8]));
        let l4: [f32; 4] = std::array::from_fn(|l| big(l8[l], l8[l + 4]));
        let amax = big(big(l4[0], l4[2]), big(l4[1], l4[3]));
        let d = amax / 127.0;
        let id = if amax == 0.0 { 0.0 } else { 127.0 / amax };
        put_half(o, 0, d);
        for (q, &v) in o[2..].iter_mut().zip(b) {
            // Integer-valued and within ±127 (through i32: the same value, and a
            // conversion the compiler vectorises).
            *q = (v * id).round_ties_even() as i32 as i8 as u8;
        }
    }
}

/// Output rows a vector kernel computes at once.
const ROWS: usize = 8;

/// The dot product of a row of weight blocks `w` (`Q8_0` or `Q4_0`) with activations
/// in `Q8_0` blocks `x` (from [`quantize_activations`]), on instruction set `isa`.
/// Each block's integer product Σ w·x is exact; it is converted to f32 and added to
/// the accumulator with one fused multiply-add by the product of the two f16 scales
/// (rounded to f32), block after block, so every `isa` gives the same bits.
///
/// # Errors
/// [`Error::Shape`] when the rows hold different numbers of blocks, or `Q4_1`
/// (which pairs with activations carrying their sums); [`Error::Unsupported`] when
/// this CPU lacks `isa`.
pub fn dot(format: BlockFormat, w: &[u8], x: &[u8], isa: Isa) -> Result<f32> {
    let (wb, n) = (format.block_bytes(), x.len() / Q8_0_BYTES);
    if format == BlockFormat::Q4_1 || !x.len().is_multiple_of(Q8_0_BYTES) || w.len() != n * wb {
        return Err(Error::Shape(format!(
            "{format} · q8_0: {} weight bytes against {} activation bytes",
            w.len(),
            x.len()
        )));
    }
    if !isa.available() {
        return Err(Error::Unsupported(format!("{isa:?} on this CPU")));
    }
    Ok(dot_one(format, w, [x], isa)[0])
}

/// [`dot`] of one weight row against each of `C` activation rows, sizes already
/// checked and `isa` available.
fn dot_one<const C: usize>(format: BlockFormat, w: &[u8], xs: [&[u8]; C], isa: Isa) -> [f32; C] {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the callers checked that this CPU has `isa`.
        Isa::Vnni => unsafe { x86::one_vnni(format, w, xs) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::one_avx2(format, w, xs) },
        _ => xs.map(|x| row_scalar(format, w, x)),
    }
}

/// [`dot`] of [`ROWS`] weight rows against each of `C` activation rows (`[c][r]`),
/// sizes already checked and `isa` available; each product has [`dot`]'s bits.
fn dot_rows<const C: usize>(
    format: BlockFormat,
    ws: [&[u8]; ROWS],
    xs: [&[u8]; C],
    isa: Isa,
) -> [[f32; ROWS]; C] {
    match isa {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the callers checked that this CPU has `isa`.
        Isa::Vnni => unsafe { x86::rows_vnni(format, ws, xs) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Isa::Avx2 => unsafe { x86::rows_avx2(format, ws, xs) },
        _ => xs.map(|x| ws.map(|w| row_scalar(format, w, x))),
    }
}

/// [`dot`] in portable Rust.
fn row_scalar(format: BlockFormat, w: &[u8], x: &[u8]) -> f32 {
    let mut acc = 0.0f32;
    for (wb, xb) in w
        .chunks_exact(format.block_bytes())
        .zip(x.chunks_exact(Q8_0_BYTES))
    {
        let scale = half(wb, 0) * half(xb, 0);
        let xq = |i: usize| i32::from(xb[2 + i] as i8);
        let wq = |i: usize| match format {
            BlockFormat::Q8_0 => i32::from(wb[2 + i] as i8),
            _ => {
                let q = wb[2 + i % 16];
                i32::from(if i < 16 { q & 0x0F } else { q >> 4 }) - 8
            }
        };
        let isum: i32 = (0..BLOCK).map(|i| wq(i) * xq(i)).sum();
        acc = (isum as f32).mul_add(scale, acc);
    }
    acc
}

/// Bytes that rows are read from: a buffer of their own, or a range of one they
/// share (a memory-mapped file, say), which lives as long as any reader of it.
#[derive(Clone)]
pub struct SharedBytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    range: Range<usize>,
}

impl SharedBytes {
    /// `owner`'s bytes in `range`.
    ///
    /// # Errors
    /// [`Error::Shape`] when `range` does not lie inside `owner`.
    pub fn new(owner: Arc<dyn AsRef<[u8]> + Send + Sync>, range: Range<usize>) -> Result<Self> {
        let len = (*owner).as_ref().len();
        if range.start > range.end || range.end > len {
            return Err(Error::Shape(format!(
                "bytes {}..{} of a buffer of {len}",
                range.start, range.end
            )));
        }
        Ok(SharedBytes { owner, range })
    }

    /// A buffer of its own.
    pub fn owned(bytes: Vec<u8>) -> Self {
        let range = 0..bytes.len();
        SharedBytes {
            owner: Arc::new(bytes),
            range,
        }
    }
}

impl std::ops::Deref for SharedBytes {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.range.clone()]
    }
}

impl std::fmt::Debug for SharedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SharedBytes({}..{})", self.range.start, self.range.end)
    }
}

/// Consecutive output rows of a [`QuantMatrix`]: stored rows of some bytes, in their
/// order or in a given one.
#[derive(Debug, Clone)]
struct Segment {
    bytes: SharedBytes,
    /// Output row `i` of the segment is stored row `order[i]`.
    order: Option<Arc<[u32]>>,
    rows: usize,
}

/// A weight matrix stored as block-quantized rows, ggml's layout: `n` output rows of
/// `k` inputs each (`[out, in]`), every row `k / 32` blocks of `format`. Products
/// quantize their input rows to `Q8_0` and take [`dot`] per output.
///
/// The rows need not be one buffer of its own: [`QuantMatrix::from_segments`] reads
/// them in place from shared bytes (a mapped file), several tensors side by side and
/// each in any row order (a fused q‖k‖v product whose rows a loader permutes),
/// without copying a block.
///
/// ```
/// use autoglm_ops::quant::{BlockFormat, QuantMatrix};
/// // 64 inputs × 2 outputs, in the graph's `[in, out]` layout.
/// let w: Vec<f32> = (0..128).map(|i| if i % 2 == 0 { 1.0 } else { -0.5 }).collect();
/// let m = QuantMatrix::from_f32(&w, 64, 2, BlockFormat::Q8_0).unwrap();
/// let mut out = [0.0f32; 2];
/// m.matmul(&[1.0; 64], &mut out).unwrap();
/// assert!((out[0] - 64.0).abs() < 0.5 && (out[1] + 32.0).abs() < 0.5);
/// ```
#[derive(Clone)]
pub struct QuantMatrix {
    format: BlockFormat,
    k: usize,
    n: usize,
    /// The rows from `tail` on (all of them unless repacked).
    segments: Vec<Segment>,
    /// Whole groups of [`ROWS`] rows repacked for the VNNI kernel ([`panels`]); rows
    /// before `tail` live only here.
    panels: Option<Arc<[u8]>>,
    tail: usize,
    isa: Isa,
}

impl std::fmt::Debug for QuantMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuantMatrix")
            .field("format", &self.format)
            .field("k", &self.k)
            .field("n", &self.n)
            .field("panels", &self.panels.as_ref().map(|p| p.len()))
            .field("segments", &self.segments.len())
            .field("isa", &self.isa)
            .finish()
    }
}

impl QuantMatrix {
    /// Quantizes `w`, row-major `k × n` (`[in, out]`, the graph's linear layout,
    /// as [`crate::PackedMatrix::new`] takes it), into rows of its columns.
    ///
    /// # Errors
    /// [`Error::Shape`] when `w` does not hold `k · n` values or `k` is not a
    /// multiple of [`BLOCK`]; [`Error::Unsupported`] for `Q4_1` (no kernel yet).
    pub fn from_f32(w: &[f32], k: usize, n: usize, format: BlockFormat) -> Result<QuantMatrix> {
        if w.len() != k * n || n == 0 {
            return Err(Error::Shape(format!(
                "a {k} × {n} matrix needs {} values, got {}",
                k * n,
                w.len()
            )));
        }
        blocks(k, "inputs per row")?;
        let mut data = Vec::with_capacity(n * format.bytes_for(k));
        let mut row = vec![0.0f32; k];
        for j in 0..n {
            for (i, r) in row.iter_mut().enumerate() {
                *r = w[i * n + j];
            }
            data.extend(format.quantize(&row)?);
        }
        QuantMatrix::from_blocks(format, k, n, data)
    }

    /// Takes rows already in `format` (`n` rows of `k / 32` blocks: a GGUF tensor's
    /// bytes, say).
    ///
    /// # Errors
    /// [`Error::Shape`] when the sizes disagree; [`Error::Unsupported`] for `Q4_1`.
    pub fn from_blocks(
        format: BlockFormat,
        k: usize,
        n: usize,
        data: Vec<u8>,
    ) -> Result<QuantMatrix> {
        blocks(k, "inputs per row")?;
        let row = format.bytes_for(k);
        if data.len() != n * row {
            return Err(Error::Shape(format!(
                "{format}: {} bytes for {n} rows of {k}, which take {}",
                data.len(),
                n * row
            )));
        }
        Ok(
            QuantMatrix::from_segments(format, k, vec![(SharedBytes::owned(data), None)])?
                .repacked(),
        )
    }

    /// Output rows read in place from `parts`, one after the other: each part's
    /// bytes hold whole rows of `k / 32` blocks of `format`, read in their stored
    /// order, or where an order is given, output row `i` of the part is stored row
    /// `order[i]` (a subset or a permutation).
    ///
    /// # Errors
    /// [`Error::Shape`] when a part's bytes are not whole rows, an order names a row
    /// past them, or there are no rows; [`Error::Unsupported`] for `Q4_1`.
    pub fn from_segments(
        format: BlockFormat,
        k: usize,
        parts: Vec<(SharedBytes, Option<Vec<u32>>)>,
    ) -> Result<QuantMatrix> {
        if format == BlockFormat::Q4_1 {
            return Err(Error::Unsupported(
                "q4_1 rows have no product kernel yet (they pair with activations carrying their sums)".into(),
            ));
        }
        if blocks(k, "inputs per row")? == 0 {
            return Err(Error::Shape("a row of no inputs".into()));
        }
        let row = format.bytes_for(k);
        let mut segments = Vec::with_capacity(parts.len());
        for (i, (bytes, order)) in parts.into_iter().enumerate() {
            if !bytes.len().is_multiple_of(row) {
                return Err(Error::Shape(format!(
                    "{format} part {i}: {} bytes are not whole rows of {k} ({row} bytes each)",
                    bytes.len()
                )));
            }
            let stored = bytes.len() / row;
            if let Some(bad) = order.iter().flatten().find(|&&r| r as usize >= stored) {
                return Err(Error::Shape(format!(
                    "{format} part {i}: row {bad} of {stored}"
                )));
            }
            let rows = order.as_ref().map_or(stored, Vec::len);
            segments.push(Segment {
                bytes,
                order: order.map(Arc::from),
                rows,
            });
        }
        let n = segments.iter().map(|s| s.rows).sum();
        if n == 0 {
            return Err(Error::Shape(format!("a {format} matrix of no rows")));
        }
        Ok(QuantMatrix {
            format,
            k,
            n,
            segments,
            panels: None,
            tail: 0,
            isa: Isa::detect(),
        })
    }

    /// Its whole groups of eight rows repacked into interleaved panels (a copy in
    /// memory) where this CPU runs the VNNI kernels, which read them with one
    /// multiply-add per four bytes of eight rows and no per-block reduction; the
    /// rows left over stay as they are. The products keep their bits.
    /// [`QuantMatrix::from_f32`] and [`QuantMatrix::from_blocks`] repack by
    /// themselves; [`QuantMatrix::from_segments`] reads rows in place until this is
    /// called.
    pub fn repacked(mut self) -> QuantMatrix {
        if self.panels.is_some() || self.isa != Isa::Vnni || self.n < ROWS {
            return self;
        }
        let groups = self.n / ROWS;
        let mut out = Vec::with_capacity(groups * self.group_bytes());
        for g in 0..groups {
            let rows: [&[u8]; ROWS] = std::array::from_fn(|i| self.row(ROWS * g + i));
            panels::pack(self.format, rows, &mut out);
        }
        self.keep_rows_from(groups * ROWS, Vec::new());
        self.panels = Some(out.into());
        self
    }

    /// Bytes of one group's panels.
    fn group_bytes(&self) -> usize {
        self.k / BLOCK * panels::block_bytes(self.format)
    }

    /// Makes the rows before `from` those in `before` (the rows out of panels, or
    /// none where panels keep them) and keeps rows `from..n` after them, all in one
    /// segment of their own.
    fn keep_rows_from(&mut self, from: usize, mut before: Vec<u8>) {
        before.extend((from..self.n).flat_map(|j| self.row(j).to_vec()));
        let rows = before.len() / self.format.bytes_for(self.k);
        self.segments = vec![Segment {
            bytes: SharedBytes::owned(before),
            order: None,
            rows,
        }];
        self.tail = self.n - rows;
    }

    /// Inputs per row.
    pub fn k(&self) -> usize {
        self.k
    }

    /// Output rows.
    pub fn n(&self) -> usize {
        self.n
    }

    /// The rows' format.
    pub fn format(&self) -> BlockFormat {
        self.format
    }

    /// The bytes it reads: its rows, or its panels and the rows left over.
    pub fn bytes(&self) -> usize {
        self.panels.as_ref().map_or(0, |p| p.len())
            + (self.n - self.tail) * self.format.bytes_for(self.k)
    }

    /// Output row `j`'s blocks (`tail ≤ j < n`).
    fn row(&self, j: usize) -> &[u8] {
        let mut j = j - self.tail;
        let len = self.format.bytes_for(self.k);
        for s in &self.segments {
            if j < s.rows {
                let r = s.order.as_ref().map_or(j, |o| o[j] as usize);
                return &s.bytes[r * len..(r + 1) * len];
            }
            j -= s.rows;
        }
        unreachable!("row {j} past the matrix's {} rows", self.n)
    }

    /// Runs its products on `isa` from now on (tests and benchmarks compare paths).
    ///
    /// # Errors
    /// [`Error::Unsupported`] when this CPU lacks `isa`.
    pub fn with_isa(mut self, isa: Isa) -> Result<QuantMatrix> {
        if !isa.available() {
            return Err(Error::Unsupported(format!("{isa:?} on this CPU")));
        }
        if isa != Isa::Vnni {
            if let Some(p) = self.panels.take() {
                // Back to rows: only the VNNI kernels read panels.
                let gb = self.group_bytes();
                let mut rows = Vec::with_capacity(self.n * self.format.bytes_for(self.k));
                for g in p.chunks_exact(gb) {
                    panels::unpack(self.format, g, &mut rows);
                }
                self.keep_rows_from(self.tail, rows);
            }
        }
        self.isa = isa;
        Ok(self)
    }

    /// `out = x · W` for row-major `x` (`m × k`) and `out` (`m × n`), the outputs
    /// split over the current rayon pool.
    ///
    /// # Errors
    /// [`Error::Shape`] when the sizes disagree.
    pub fn matmul(&self, x: &[f32], out: &mut [f32]) -> Result<()> {
        use rayon::prelude::*;
        let (k, n) = (self.k, self.n);
        let m = x.len() / k;
        if x.len() != m * k || out.len() != m * n {
            return Err(Error::Shape(format!(
                "quantized product: {} inputs, {} outputs against [{k}, {n}]",
                x.len(),
                out.len()
            )));
        }
        // Eight outputs per pass over the activations.
        let groups = n.div_ceil(ROWS);
        // Whole groups of four input rows: 4 × 8 tiles, each weight block read once
        // for four rows (prompt processing); the rest one row at a time. With
        // enough of them for every thread, the four-row groups are the parallel
        // unit (each writes its own output rows); else the weight groups are.
        let tiled = m / 4 * 4;
        if tiled / 4 >= 4 * rayon::current_num_threads() {
            // Panels take eight rows at a time (each weight block unpacked once for
            // eight), then four; the row kernels four.
            let wide = if self.panels.is_some() { m / 8 * 8 } else { 0 };
            x[..wide * k]
                .par_chunks_exact(8 * k)
                .zip(out[..wide * n].par_chunks_exact_mut(8 * n))
                .try_for_each(|(xg, og)| self.rows_tile::<8>(xg, og))?;
            x[wide * k..tiled * k]
                .par_chunks_exact(4 * k)
                .zip(out[wide * n..tiled * n].par_chunks_exact_mut(4 * n))
                .try_for_each(|(xg, og)| self.rows_tile::<4>(xg, og))?;
        } else {
            for (xg, og) in x[..tiled * k]
                .chunks_exact(4 * k)
                .zip(out[..tiled * n].chunks_exact_mut(4 * n))
            {
                let xq = quantize_activations(xg)?;
                let xs: [&[u8]; 4] =
                    std::array::from_fn(|c| &xq[c * xq.len() / 4..(c + 1) * xq.len() / 4]);
                let acts = panels::acts(self.format, self.panels.is_some(), xs);
                let tiles: Vec<[[f32; ROWS]; 4]> = (0..groups)
                    .into_par_iter()
                    .with_min_len(8)
                    .map(|g| self.tile(g, xs, &acts))
                    .collect();
                for (c, orow) in og.chunks_exact_mut(n).enumerate() {
                    for (o, t) in orow.chunks_mut(ROWS).zip(&tiles) {
                        o.copy_from_slice(&t[c][..o.len()]);
                    }
                }
            }
        }
        for (xr, or) in x[tiled * k..]
            .chunks_exact(k)
            .zip(out[tiled * n..].chunks_exact_mut(n))
        {
            let xq = quantize_activations(xr)?;
            let acts = panels::acts(self.format, self.panels.is_some(), [&xq[..]]);
            or.par_chunks_mut(ROWS)
                .enumerate()
                .with_min_len(8)
                .for_each(|(g, o)| {
                    let t = self.tile(g, [&xq[..]], &acts);
                    o.copy_from_slice(&t[0][..o.len()]);
                });
        }
        Ok(())
    }

    /// `C` activation rows `xg` against every output group, into their `C` output
    /// rows `og`.
    fn rows_tile<const C: usize>(&self, xg: &[f32], og: &mut [f32]) -> Result<()> {
        let n = self.n;
        let xq = quantize_activations(xg)?;
        let xs: [&[u8]; C] = std::array::from_fn(|c| &xq[c * xq.len() / C..(c + 1) * xq.len() / C]);
        let acts = panels::acts(self.format, self.panels.is_some(), xs);
        for g in 0..n.div_ceil(ROWS) {
            let t = self.tile(g, xs, &acts);
            for (c, orow) in og.chunks_exact_mut(n).enumerate() {
                let o = &mut orow[ROWS * g..(ROWS * g + ROWS).min(n)];
                o.copy_from_slice(&t[c][..o.len()]);
            }
        }
        Ok(())
    }

    /// Output group `g` (rows `8g..8g + 8`, fewer in the last, partial group: the
    /// rest of its tile is zero) against `C` activation rows `xs` (`[c][r]`): the
    /// panel kernel, the row kernel, or one row at a time for a partial group.
    /// `acts` is `xs` prepared for the panels, where there are panels.
    #[inline]
    fn tile<const C: usize>(&self, g: usize, xs: [&[u8]; C], acts: &[u32]) -> [[f32; ROWS]; C] {
        // `isa` was checked when it was set, and every row holds `k / 32` blocks.
        let (f, isa, n) = (self.format, self.isa, self.n);
        #[cfg(target_arch = "x86_64")]
        if let (Some(p), true) = (&self.panels, ROWS * g < self.tail) {
            let gb = self.group_bytes();
            let panel = &p[g * gb..(g + 1) * gb];
            // SAFETY: panels exist only where this CPU has VNNI (`repacked`,
            // `with_isa`).
            return unsafe { panels::x86::panel_vnni::<C>(f, panel, acts) };
        }
        if ROWS * g + ROWS <= n {
            dot_rows(f, std::array::from_fn(|i| self.row(ROWS * g + i)), xs, isa)
        } else {
            let mut t = [[0.0f32; ROWS]; C];
            for (i, j) in (ROWS * g..n).enumerate() {
                let r = dot_one(f, self.row(j), xs, isa);
                for (tc, v) in t.iter_mut().zip(r) {
                    tc[i] = v;
                }
            }
            t
        }
    }
}

/// Eight rows interleaved for the VNNI kernels. Per group of eight rows and per
/// block: the eight f16 scales (16 bytes); for `Q8_0` the eight rows' corrections
/// −128·Σw (eight i32: the kernel multiplies the weights by the activations plus
/// 128, which `vpdpbusd` takes as unsigned) and eight chunks of 32 bytes, chunk `q`
/// holding bytes `4q..4q+4` of each row's codes side by side; for `Q4_0` four such
/// chunks of the rows' 16 bytes of nibbles (the low nibbles of chunk `q` are values
/// `4q..4q+4`, the high ones `16+4q..`). One lane of a multiply-add is one row: no
/// reduction across lanes is needed.
mod panels {
    use super::{half, BlockFormat, Q8_0_BYTES, ROWS};

    /// Bytes of one block of a group.
    pub(super) fn block_bytes(format: BlockFormat) -> usize {
        match format {
            BlockFormat::Q8_0 => 16 + 32 + 256,
            _ => 16 + 128,
        }
    }

    /// Appends the panels of eight rows.
    pub(super) fn pack(format: BlockFormat, rows: [&[u8]; ROWS], out: &mut Vec<u8>) {
        let bb = format.block_bytes();
        let code_bytes = bb - 2;
        for b in 0..rows[0].len() / bb {
            let blocks = rows.map(|r| &r[b * bb..(b + 1) * bb]);
            for w in &blocks {
                out.extend_from_slice(&w[..2]);
            }
            if format == BlockFormat::Q8_0 {
                for w in &blocks {
                    let sum: i32 = w[2..].iter().map(|&q| i32::from(q as i8)).sum();
                    out.extend_from_slice(&(-128 * sum).to_le_bytes());
                }
            }
            for q in 0..code_bytes / 4 {
                for w in &blocks {
                    out.extend_from_slice(&w[2 + 4 * q..2 + 4 * q + 4]);
                }
            }
        }
    }

    /// Appends the eight rows of one group's panels (`pack`'s inverse).
    pub(super) fn unpack(format: BlockFormat, group: &[u8], out: &mut Vec<u8>) {
        let (bb, pb) = (format.block_bytes(), block_bytes(format));
        let blocks = group.len() / pb;
        let codes_at = if format == BlockFormat::Q8_0 { 48 } else { 16 };
        let mut rows = vec![vec![0u8; blocks * bb]; ROWS];
        for (b, p) in group.chunks_exact(pb).enumerate() {
            for (r, row) in rows.iter_mut().enumerate() {
                let w = &mut row[b * bb..(b + 1) * bb];
                w[..2].copy_from_slice(&p[2 * r..2 * r + 2]);
                for q in 0..(bb - 2) / 4 {
                    let at = codes_at + 32 * q + 4 * r;
                    w[2 + 4 * q..2 + 4 * q + 4].copy_from_slice(&p[at..at + 4]);
                }
            }
        }
        out.extend(rows.concat());
    }

    /// Words per block of `c` activation rows prepared by [`acts`].
    pub(super) const fn act_words(format: BlockFormat, c: usize) -> usize {
        match format {
            BlockFormat::Q8_0 => 9 * c,
            _ => 10 * c,
        }
    }

    /// `C` activation rows prepared for the panels (none where there are no panels),
    /// interleaved block by block so that a tile reads them through one pointer. Per
    /// block, for `Q4_0` weights: each row's codes four at a time (`8·C` words, row
    /// after row, as `i32` for broadcasting), each row's 8·Σ codes (`C`), each row's
    /// scale (`C`, f32 bits); for `Q8_0` weights the codes plus 128 (unsigned) four at
    /// a time (`8·C`) and the scales (`C`).
    pub(super) fn acts<const C: usize>(
        format: BlockFormat,
        panels: bool,
        xs: [&[u8]; C],
    ) -> Vec<u32> {
        if !panels {
            return Vec::new();
        }
        let q8 = format == BlockFormat::Q8_0;
        let nb = xs[0].len() / Q8_0_BYTES;
        let mut out = Vec::with_capacity(nb * act_words(format, C));
        for b in 0..nb {
            let blocks: [&[u8]; C] = xs.map(|x| &x[b * Q8_0_BYTES..(b + 1) * Q8_0_BYTES]);
            for blk in &blocks {
                let codes: &[u8; 32] = blk[2..].try_into().expect("32 codes");
                for q in 0..8 {
                    let w = u32::from_le_bytes([
                        codes[4 * q],
                        codes[4 * q + 1],
                        codes[4 * q + 2],
                        codes[4 * q + 3],
                    ]);
                    out.push(if q8 { w ^ 0x8080_8080 } else { w });
                }
            }
            if !q8 {
                for blk in &blocks {
                    let sum: i32 = blk[2..].iter().map(|&c| i32::from(c as i8)).sum();
                    out.push((8 * sum) as u32);
                }
            }
            for blk in &blocks {
                out.push(half(blk, 0).to_bits());
            }
        }
        out
    }

    #[cfg(target_arch = "x86_64")]
    pub(super) mod x86 {
        use std::arch::x86_64::*;

        use super::{act_words, block_bytes, BlockFormat};
        use crate::quant::x86::load;

        /// The eight rows' f16 scales of a panel block.
        #[inline]
        #[target_feature(enable = "avx2,f16c")]
        fn scales(p: &[u8]) -> __m256 {
            let s: &[u8; 16] = p[..16].try_into().expect("16 bytes");
            // SAFETY: `s` is 16 readable bytes; the load is unaligned.
            _mm256_cvtph_ps(unsafe { _mm_loadu_si128(s.as_ptr().cast()) })
        }

        /// `acc + f32(isum) · (wd · xd)`, one fused multiply-add.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        fn block_fma(acc: __m256, isum: __m256i, wd: __m256, xd: f32) -> __m256 {
            let scale = _mm256_mul_ps(wd, _mm256_set1_ps(xd));
            _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc)
        }

        /// One group's eight rows against `C` activation rows (`[c][r]`); every
        /// product has the bits of `super::super::dot`: each block's exact integer
        /// sum, one fused multiply-add by the rounded scale product. Up to four rows
        /// keep two integer accumulators each (shorter chains); wider tiles one.
        #[target_feature(enable = "avx2,fma,f16c,avx512vnni,avx512vl")]
        pub(in crate::quant) fn panel_vnni<const C: usize>(
            format: BlockFormat,
            panel: &[u8],
            acts: &[u32],
        ) -> [[f32; 8]; C] {
            let pb = block_bytes(format);
            let aw = act_words(format, C);
            let two = C <= 4;
            let mut acc = [_mm256_setzero_ps(); C];
            let blocks = panel.chunks_exact(pb).zip(acts.chunks_exact(aw));
            match format {
                BlockFormat::Q8_0 => {
                    for (p, a) in blocks {
                        let mut i0 = [_mm256_setzero_si256(); C];
                        let mut i1 = [_mm256_setzero_si256(); C];
                        for q in 0..8 {
                            let w = load(&p[48 + 32 * q..]);
                            for c in 0..C {
                                let x = _mm256_set1_epi32(a[8 * c + q] as i32);
                                if two && q % 2 == 1 {
                                    i1[c] = _mm256_dpbusd_epi32(i1[c], x, w);
                                } else {
                                    i0[c] = _mm256_dpbusd_epi32(i0[c], x, w);
                                }
                            }
                        }
                        let corr = load(&p[16..]);
                        let wd = scales(p);
                        for c in 0..C {
                            let isum = if two {
                                _mm256_add_epi32(_mm256_add_epi32(i0[c], i1[c]), corr)
                            } else {
                                _mm256_add_epi32(i0[c], corr)
                            };
                            acc[c] = block_fma(acc[c], isum, wd, f32::from_bits(a[8 * C + c]));
                        }
                    }
                }
                _ => {
                    let m = _mm256_set1_epi8(0x0F);
                    for (p, a) in blocks {
                        let mut i0 = [_mm256_setzero_si256(); C];
                        let mut i1 = [_mm256_setzero_si256(); C];
                        for q in 0..4 {
                            let v = load(&p[16 + 32 * q..]);
                            let lo = _mm256_and_si256(v, m);
                            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(v), m);
                            for c in 0..C {
                                let xl = _mm256_set1_epi32(a[8 * c + q] as i32);
                                let xh = _mm256_set1_epi32(a[8 * c + 4 + q] as i32);
                                i0[c] = _mm256_dpbusd_epi32(i0[c], lo, xl);
                                if two {
                                    i1[c] = _mm256_dpbusd_epi32(i1[c], hi, xh);
                                } else {
                                    i0[c] = _mm256_dpbusd_epi32(i0[c], hi, xh);
                                }
                            }
                        }
                        let wd = scales(p);
                        for c in 0..C {
                            let isum = if two {
                                _mm256_add_epi32(i0[c], i1[c])
                            } else {
                                i0[c]
                            };
                            let s8 = _mm256_set1_epi32(a[8 * C + c] as i32);
                            let xd = f32::from_bits(a[9 * C + c]);
                            acc[c] = block_fma(acc[c], _mm256_sub_epi32(isum, s8), wd, xd);
                        }
                    }
                }
            }
            acc.map(|a| {
                let mut o = [0.0f32; 8];
                // SAFETY: `o` is eight writable f32; the store is unaligned.
                unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
                o
            })
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::BlockFormat;

    /// 32 bytes, unaligned.
    #[inline]
    #[target_feature(enable = "avx2")]
    pub(in crate::quant) fn load(b: &[u8]) -> __m256i {
        let b: &[u8; 32] = b[..32].try_into().expect("32 bytes");
        // SAFETY: `b` is 32 readable bytes; the load is unaligned.
        unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
    }

    /// A `Q4_0` block's 16 bytes as 32 codes 0..=15 (value `j` low, `j + 16` high).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn codes(qs: &[u8]) -> __m256i {
        let qs: &[u8; 16] = qs[..16].try_into().expect("16 bytes");
        // SAFETY: `qs` is 16 readable bytes; the load is unaligned.
        let q = unsafe { _mm_loadu_si128(qs.as_ptr().cast()) };
        let m = _mm_set1_epi8(0x0F);
        _mm256_set_m128i(
            _mm_and_si128(_mm_srli_epi16::<4>(q), m),
            _mm_and_si128(q, m),
        )
    }

    /// A block's leading f16 scale (exactly as `half` converts it).
    #[inline]
    #[target_feature(enable = "f16c")]
    fn f16c(b: &[u8]) -> f32 {
        let bits = i32::from(u16::from_le_bytes([b[0], b[1]]));
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(bits)))
    }

    /// The eight i32 lanes' sum (exact).
    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256i) -> i32 {
        let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
        let t = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
        _mm_cvtsi128_si32(_mm_add_epi32(t, _mm_shuffle_epi32::<0b10_11_00_01>(t)))
    }

    /// Eight vectors' lane sums as one vector: lane `r` holds the (exact) sum of
    /// `p[r]`'s lanes.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn reduce8(p: [__m256i; 8]) -> __m256i {
        let a = _mm256_hadd_epi32(_mm256_hadd_epi32(p[0], p[1]), _mm256_hadd_epi32(p[2], p[3]));
        let b = _mm256_hadd_epi32(_mm256_hadd_epi32(p[4], p[5]), _mm256_hadd_epi32(p[6], p[7]));
        _mm256_add_epi32(
            _mm256_permute2x128_si256::<0x20>(a, b),
            _mm256_permute2x128_si256::<0x31>(a, b),
        )
    }

    /// Eight lanes of Σ w·x over four bytes each: `vpmaddubsw` (pairs stay within
    /// i16: |q| ≤ 127 on both sides, codes ≤ 15) then `vpmaddwd` by ones. Signed
    /// weights go through the sign trick: |w| unsigned times x with w's sign.
    #[inline]
    #[target_feature(enable = "avx2")]
    fn lanes_avx2(u: __m256i, s: __m256i) -> __m256i {
        _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1))
    }

    #[inline]
    #[target_feature(enable = "avx2,avx512vnni,avx512vl")]
    fn lanes_vnni(u: __m256i, s: __m256i) -> __m256i {
        _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s)
    }

    /// The block products of one weight block `wb` with activation vectors `xv`
    /// (unsigned × signed through `$lanes`), eight i32 lanes each; `sx` holds each
    /// activation block's sum for `Q4_0` (Σ (c − 8)·x = Σ c·x − 8·Σ x).
    macro_rules! block_fn {
        ($name:ident, $features:literal, $lanes:ident) => {
            #[inline]
            #[target_feature(enable = $features)]
            fn $name<const C: usize>(
                format: BlockFormat,
                wb: &[u8],
                xv: &[__m256i; C],
            ) -> [__m256i; C] {
                match format {
                    BlockFormat::Q8_0 => {
                        let wv = load(&wb[2..]);
                        let aw = _mm256_sign_epi8(wv, wv);
                        std::array::from_fn(|c| $lanes(aw, _mm256_sign_epi8(xv[c], wv)))
                    }
                    _ => {
                        let cw = codes(&wb[2..]);
                        std::array::from_fn(|c| $lanes(cw, xv[c]))
                    }
                }
            }
        };
    }

    /// The row products as functions compiled for `$features` (a macro, so that every
    /// intrinsic inlines into them): `$rows`, eight weight rows against `C`
    /// activation rows — each weight block loaded once for all `C`, each activation
    /// block (and its sum) once for all eight, the eight block sums reduced into one
    /// vector and scaled and accumulated with one multiply and one multiply-add per
    /// eight rows — and `$one`, one weight row; every product has the bits of `dot`.
    macro_rules! row_fns {
        ($rows:ident, $one:ident, $block:ident, $features:literal, $lanes:ident) => {
            block_fn!($block, $features, $lanes);

            /// Activation block `b` of each row: scale, codes, and for `Q4_0` 8·Σx.
            #[inline]
            #[target_feature(enable = $features)]
            fn activations<const C: usize>(
                format: BlockFormat,
                xs: [&[u8]; C],
                b: usize,
            ) -> ([f32; C], [__m256i; C], [i32; C]) {
                let mut d = [0.0f32; C];
                let mut v = [_mm256_setzero_si256(); C];
                let mut s = [0i32; C];
                for c in 0..C {
                    let xb =
                        &xs[c][b * crate::quant::Q8_0_BYTES..(b + 1) * crate::quant::Q8_0_BYTES];
                    d[c] = f16c(xb);
                    v[c] = load(&xb[2..]);
                    if format != BlockFormat::Q8_0 {
                        s[c] = 8 * hsum($lanes(_mm256_set1_epi8(1), v[c]));
                    }
                }
                (d, v, s)
            }

            #[target_feature(enable = $features)]
            pub(crate) fn $rows<const C: usize>(
                format: BlockFormat,
                ws: [&[u8]; 8],
                xs: [&[u8]; C],
            ) -> [[f32; 8]; C] {
                let bb = format.block_bytes();
                let blocks = xs[0].len() / crate::quant::Q8_0_BYTES;
                let mut acc = [_mm256_setzero_ps(); C];
                for b in 0..blocks {
                    let (xd, xv, sx) = activations(format, xs, b);
                    let mut scales = [0u16; 8];
                    let mut p = [[_mm256_setzero_si256(); 8]; C];
                    for r in 0..8 {
                        let wb = &ws[r][b * bb..(b + 1) * bb];
                        scales[r] = u16::from_le_bytes([wb[0], wb[1]]);
                        let lanes = $block(format, wb, &xv);
                        for c in 0..C {
                            p[c][r] = lanes[c];
                        }
                    }
                    // SAFETY: `scales` is 16 readable bytes; the load is unaligned.
                    let wd = _mm256_cvtph_ps(unsafe { _mm_loadu_si128(scales.as_ptr().cast()) });
                    for c in 0..C {
                        let s = _mm256_sub_epi32(reduce8(p[c]), _mm256_set1_epi32(sx[c]));
                        let scale = _mm256_mul_ps(wd, _mm256_set1_ps(xd[c]));
                        acc[c] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), scale, acc[c]);
                    }
                }
                acc.map(|a| {
                    let mut o = [0.0f32; 8];
                    // SAFETY: `o` is eight writable f32; the store is unaligned.
                    unsafe { _mm256_storeu_ps(o.as_mut_ptr(), a) };
                    o
                })
            }

            #[target_feature(enable = $features)]
            pub(crate) fn $one<const C: usize>(
                format: BlockFormat,
                w: &[u8],
                xs: [&[u8]; C],
            ) -> [f32; C] {
                let bb = format.block_bytes();
                let blocks = xs[0].len() / crate::quant::Q8_0_BYTES;
                let mut acc = [0.0f32; C];
                for b in 0..blocks {
                    let (xd, xv, sx) = activations(format, xs, b);
                    let wb = &w[b * bb..(b + 1) * bb];
                    let wd = f16c(wb);
                    let lanes = $block(format, wb, &xv);
                    for c in 0..C {
                        let isum = hsum(lanes[c]) - sx[c];
                        acc[c] = (isum as f32).mul_add(wd * xd[c], acc[c]);
                    }
                }
                acc
            }
        };
    }

    mod avx2 {
        use super::*;
        row_fns!(rows_avx2, one_avx2, block_avx2, "avx2,fma,f16c", lanes_avx2);
    }
    mod vnni {
        use super::*;
        row_fns!(
            rows_vnni,
            one_vnni,
            block_vnni,
            "avx2,fma,f16c,avx512vnni,avx512vl",
            lanes_vnni
        );
    }
    pub(super) use avx2::{one_avx2, rows_avx2};
    pub(super) use vnni::{one_vnni, rows_vnni};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_ggml_s() {
        assert_eq!(BlockFormat::Q8_0.bits_per_weight(), 8.5);
        assert_eq!(BlockFormat::Q4_0.bits_per_weight(), 4.5);
        assert_eq!(BlockFormat::Q4_1.bits_per_weight(), 5.0);
        assert_eq!(BlockFormat::Q4_0.bytes_for(64), 36);
    }

    #[test]
    fn a_partial_block_is_an_error() {
        for f in BlockFormat::ALL {
            let e = f.quantize(&[1.0; 33]).unwrap_err();
            assert!(e.to_string().contains("33 values"), "{e}");
            let mut out = [0.0; 32];
            assert!(f.dequantize(&[0; 7], &mut out).is_err());
        }
    }

    #[test]
    fn zero_blocks_stay_zero() {
        for f in BlockFormat::ALL {
            let q = f.quantize(&[0.0; BLOCK]).unwrap();
            let mut y = [1.0; BLOCK];
            f.dequantize(&q, &mut y).unwrap();
            assert!(y.iter().all(|&v| v == 0.0), "{f}: {y:?}");
        }
    }

    #[test]
    fn the_extremes_are_exact_up_to_the_f16_scale() {
        // Q4_0 maps the signed maximum to code 0 (−8 · d), Q4_1 the minimum to 0 and
        // the maximum to 15, Q8_0 the largest magnitude to ±127.
        let mut x = [0.0f32; BLOCK];
        x[3] = -2.0;
        x[7] = 1.5;
        for f in BlockFormat::ALL {
            let q = f.quantize(&x).unwrap();
            let mut y = [0.0; BLOCK];
            f.dequantize(&q, &mut y).unwrap();
            assert!((y[3] + 2.0).abs() < 2e-3, "{f}: {}", y[3]);
        }
        let q = BlockFormat::Q4_0.quantize(&x).unwrap();
        assert_eq!(q[2 + 3] & 0x0F, 0);
    }
}
