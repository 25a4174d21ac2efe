//! Single-precision GEMM against a right operand packed once: `c = a · b (+ bias)`
//! where `b` is a weight matrix that does not change between runs.
//!
//! General-purpose GEMMs (`matrixmultiply`, OpenBLAS) copy both operands into
//! cache-friendly panels on every call; for a decoder's projections at small batch
//! that copy of the weights is a quarter of the block's time. Here the weights are
//! laid out once, when the executor binds them ([`PackedB::new`]), in panels of
//! [`NR`] columns with each row of a panel contiguous, and the AVX-512 micro-kernel
//! broadcasts one element of the left operand (the activations) at a time against
//! two vectors of the panel: a 12 × 32 tile of `c` lives in 24 registers for the
//! whole depth of a `KC` block. Where several panels pass over a row block, the
//! activations are first copied into blocks with a fixed row stride (a plain copy,
//! cheap next to the product) so the kernel addresses them from one pointer. This
//! is the scheme of ONNX Runtime's MLAS SGEMM with pre-packed weights.
//!
//! Products of one to four rows (decoding) are bound by the memory bandwidth of
//! reading the weights, not by arithmetic: a wide kernel keeps the whole depth in
//! registers and reads up to eight panels side by side, because one core streams
//! several sequential regions faster than one.
//!
//! Only built for x86-64 machines with AVX-512F (checked at run time); elsewhere
//! [`PackedB::new`] declines and the caller uses the general GEMM.

/// Columns per packed panel (two 16-lane vectors).
pub(crate) const NR: usize = 32;
/// Rows of `c` per micro-kernel tile.
const MR: usize = 12;
/// Depth of one pass over a panel: 256 × 32 floats (32 KiB) stay in L1.
const KC: usize = 256;
/// Floats of the left operand per row block (512 KiB, a quarter of a 2 MiB L2).
const A_BLOCK_FLOATS: usize = 128 * 1024;
/// The fewest rows a block of `a` has before the depth is cut into chunks.
const MIN_ROW_BLOCK: usize = 96;
/// Products with at most this many rows (decoding a few sequences) read several
/// panels side by side instead ([`x86::wide_dispatch`]).
const WIDE_ROWS: usize = 4;
/// Panels the wide kernel reads side by side for one row: each panel is a separate
/// sequential stream, and one core's memory bandwidth grows with the number of
/// streams it has in flight (about 10 GB/s with one, 16 GB/s with eight on the
/// development VM), which is what bounds a matrix–vector product.
const WIDE_PANELS: usize = 8;

/// What a packed panel stores: f32, or f16 / bf16 widened to f32 in registers as
/// the kernel loads them (exactly, so a half panel's product has the same bits as
/// the f32 panel of the widened values).
pub(crate) trait PanelElem:
    Copy + Default + Send + Sync + std::fmt::Debug + 'static
{
    /// How the kernels widen it.
    const KIND: ElemKind;
    /// The element nearest `x` (round to nearest even).
    fn from_f32(x: f32) -> Self;
}

/// The panel element types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ElemKind {
    F32,
    F16,
    Bf16,
}

impl PanelElem for f32 {
    const KIND: ElemKind = ElemKind::F32;
    fn from_f32(x: f32) -> f32 {
        x
    }
}

impl PanelElem for half::f16 {
    const KIND: ElemKind = ElemKind::F16;
    fn from_f32(x: f32) -> half::f16 {
        half::f16::from_f32(x)
    }
}

impl PanelElem for half::bf16 {
    const KIND: ElemKind = ElemKind::Bf16;
    fn from_f32(x: f32) -> half::bf16 {
        half::bf16::from_f32(x)
    }
}

/// A `k × n` row-major matrix in panels of [`NR`] columns (zero-padded), each
/// panel `k × NR` contiguous, 64-byte aligned, of f32 or (`E`) a half type.
pub(crate) struct PackedB<E: PanelElem = f32> {
    k: usize,
    n: usize,
    buf: Vec<E>,
    /// Index of the first panel element in `buf` (for alignment).
    start: usize,
}

impl<E: PanelElem> std::fmt::Debug for PackedB<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PackedB")
            .field("k", &self.k)
            .field("n", &self.n)
            .field("elem", &E::KIND)
            .finish_non_exhaustive()
    }
}

/// Whether this machine runs the packed kernel.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

impl<E: PanelElem> PackedB<E> {
    /// Packs row-major `b` (`k × n`), rounded to `E`, or `None` where the kernel
    /// cannot run.
    pub(crate) fn from_f32(b: &[f32], k: usize, n: usize) -> Option<PackedB<E>> {
        if b.len() != k * n {
            return None;
        }
        PackedB::pack_into(Vec::new(), k, n, |row, j0, dst| {
            let src = &b[row * n + j0..row * n + j0 + dst.len()];
            for (d, &s) in dst.iter_mut().zip(src) {
                *d = E::from_f32(s);
            }
        })
    }

    /// Bytes held (the panels with their zero padding).
    pub(crate) fn bytes(&self) -> usize {
        self.buf.len() * std::mem::size_of::<E>()
    }

    fn pack_into(
        mut buf: Vec<E>,
        k: usize,
        n: usize,
        fill: impl Fn(usize, usize, &mut [E]),
    ) -> Option<PackedB<E>> {
        if !available() || k == 0 || n == 0 {
            return None;
        }
        let panels = n.div_ceil(NR);
        let len = panels * k * NR;
        // Room to start the panels on a 64-byte boundary.
        let pad = 64 / std::mem::size_of::<E>();
        buf.clear();
        buf.resize(len + pad, E::default());
        let start = buf.as_ptr().align_offset(64).min(pad);
        let data = &mut buf[start..start + len];
        for p in 0..panels {
            let j0 = p * NR;
            let w = NR.min(n - j0);
            let panel = &mut data[p * k * NR..(p + 1) * k * NR];
            for (row, dst) in panel.chunks_exact_mut(NR).enumerate() {
                fill(row, j0, &mut dst[..w]);
            }
        }
        Some(PackedB { k, n, buf, start })
    }
}

impl PackedB<f32> {
    /// Packs row-major `b` (`k × n`), or `None` where the kernel cannot run.
    pub(crate) fn new(b: &[f32], k: usize, n: usize) -> Option<PackedB> {
        PackedB::from_f32(b, k, n)
    }

    /// Packs the transpose of row-major `bt` (`n × k`): the `k × n` matrix whose
    /// column `j` is row `j` of `bt` (keys as cached, for scores `q · kᵀ`).
    pub(crate) fn new_transposed(bt: &[f32], k: usize, n: usize) -> Option<PackedB> {
        if bt.len() != k * n {
            return None;
        }
        PackedB::pack_into(Vec::new(), k, n, |row, j0, dst| {
            for (c, x) in dst.iter_mut().enumerate() {
                *x = bt[(j0 + c) * k + row];
            }
        })
    }

    /// [`PackedB::new`] into `buf`'s memory (grown if needed): products that pack
    /// their right operand on every call reuse one buffer instead of faulting in
    /// fresh pages each time. [`PackedB::into_buffer`] gives the memory back.
    pub(crate) fn new_reusing(
        b: &[f32],
        k: usize,
        n: usize,
        buf: Vec<f32>,
    ) -> Option<PackedB<f32>> {
        if b.len() != k * n {
            return None;
        }
        PackedB::pack_into(buf, k, n, |row, j0, dst| {
            dst.copy_from_slice(&b[row * n + j0..row * n + j0 + dst.len()]);
        })
    }

    /// The packed memory, for [`PackedB::new_reusing`].
    pub(crate) fn into_buffer(self) -> Vec<f32> {
        self.buf
    }
}

impl<E: PanelElem> PackedB<E> {
    /// Rows (the inner dimension of the product).
    pub(crate) fn k(&self) -> usize {
        self.k
    }

    /// Columns.
    pub(crate) fn n(&self) -> usize {
        self.n
    }

    fn panel(&self, p: usize) -> &[E] {
        let len = self.k * NR;
        &self.buf[self.start + p * len..self.start + (p + 1) * len]
    }

    /// `c = a · self (+ bias)` for row-major `a` (`m × k`) and `c` (`m × n`).
    pub(crate) fn gemm(&self, a: &[f32], bias: Option<&[f32]>, c: &mut [f32]) {
        let (k, n) = (self.k, self.n);
        let m = a.len() / k;
        assert!(a.len() == m * k && c.len() == m * n, "gemm operand sizes");
        self.gemm_part(
            Operand {
                data: a,
                rows: m,
                ld: k,
            },
            k,
            n,
            bias,
            c,
            n,
        );
    }

    /// `c[:, ..cols] = a[:, ..depth] · self[..depth, ..cols] (+ bias)`: the product
    /// with the first `depth` rows and `cols` columns of the packed matrix (whole
    /// panels are cheap to cut this way), `c` with row stride `ldc`.
    pub(crate) fn gemm_part(
        &self,
        a: Operand<'_>,
        depth: usize,
        cols: usize,
        bias: Option<&[f32]>,
        c: &mut [f32],
        ldc: usize,
    ) {
        let (m, k, lda) = (a.rows, depth, a.ld);
        assert!(k <= self.k && cols <= self.n && k <= lda && cols <= ldc);
        assert!(
            m == 0 || a.data.len() >= (m - 1) * lda + k,
            "gemm left operand"
        );
        assert!(m == 0 || c.len() >= (m - 1) * ldc + cols, "gemm output");
        assert!(bias.is_none_or(|b| b.len() >= cols), "gemm bias size");
        assert!(available(), "PackedB exists only where the kernel runs");
        if m == 0 || cols == 0 {
            return;
        }
        if k == 0 {
            for row in c.chunks_mut(ldc).take(m) {
                match bias {
                    Some(b) => row[..cols].copy_from_slice(&b[..cols]),
                    None => row[..cols].fill(0.0),
                }
            }
            return;
        }
        let a = a.data;
        #[cfg(target_arch = "x86_64")]
        if m <= WIDE_ROWS {
            self.wide_columns(a, m, k, lda, 0..cols, bias, c, ldc);
            return;
        }
        // Rows go in blocks whose slice of `a` stays in L2 (about 512 KiB) while every
        // panel passes over it; each panel's `KC × NR` block stays in L1 across the
        // block's row tiles. Where several panels pass over a block, the block is
        // first copied tile by tile with rows `KC` apart, so the micro-kernel reads
        // it at constant offsets from one pointer instead of `MR` rows `lda` apart.
        // Blocks of equal size (whole tiles): every block streams all of `b` once, so
        // a small remainder block would cost a pass for little work.
        // Very deep products (a backward pass's `dy · wᵀ` over a vocabulary) go in
        // depth chunks, so that row blocks stay tall enough for `b` to be read from
        // memory a few times rather than once per handful of rows.
        let kd = if k * MIN_ROW_BLOCK <= A_BLOCK_FLOATS {
            k
        } else {
            (A_BLOCK_FLOATS / MIN_ROW_BLOCK / KC * KC).max(KC)
        };
        let packs = cols > PACK_A_MIN_COLS;
        #[cfg(target_arch = "x86_64")]
        PACKED_A.with_borrow_mut(|buf| {
            for d0 in (0..k).step_by(kd) {
                let d1 = (d0 + kd).min(k);
                let depth = d1 - d0;
                let blocks = m.div_ceil((A_BLOCK_FLOATS / depth).max(MR));
                let mc = m.div_ceil(blocks).next_multiple_of(MR);
                for m0 in (0..m).step_by(mc) {
                    let m1 = (m0 + mc).min(m);
                    if packs {
                        pack_a(a, lda, m0..m1, d0..d1, buf);
                    }
                    for p in 0..cols.div_ceil(NR) {
                        let j0 = p * NR;
                        let w = NR.min(cols - j0);
                        let panel = self.panel(p);
                        for k0 in (d0..d1).step_by(KC) {
                            let kc = KC.min(d1 - k0);
                            let bias = bias.filter(|_| k0 == 0).map(|b| &b[j0..j0 + w]);
                            let mut i0 = m0;
                            while i0 < m1 {
                                let rows = MR.min(m1 - i0);
                                let a = if packs {
                                    let at = packed_a_offset(
                                        (i0 - m0) / MR,
                                        (k0 - d0) / KC,
                                        depth.div_ceil(KC),
                                    );
                                    &buf[at..]
                                } else {
                                    &a[i0 * lda + k0..]
                                };
                                let tile = Tile {
                                    kc,
                                    a,
                                    lda: if packs { 0 } else { lda },
                                    b: &panel[k0 * NR..(k0 + kc) * NR],
                                    c: &mut c[i0 * ldc + j0..],
                                    ldc,
                                    cols: w,
                                    first: k0 == 0,
                                    bias,
                                };
                                // SAFETY: `available()` checked AVX-512F;
                                // `tile_dispatch` asserts the bounds.
                                unsafe { x86::tile_dispatch(rows, tile) };
                                i0 += rows;
                            }
                        }
                    }
                }
            }
        });
    }

    /// The wide kernel over columns `cols` (`cols.start` on a panel boundary) for
    /// `m ≤ WIDE_ROWS` rows: `c`'s column 0 is column `cols.start`; `bias` is indexed
    /// by absolute column.
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    fn wide_columns(
        &self,
        a: &[f32],
        m: usize,
        k: usize,
        lda: usize,
        cols: std::ops::Range<usize>,
        bias: Option<&[f32]>,
        c: &mut [f32],
        ldc: usize,
    ) {
        debug_assert!(cols.start.is_multiple_of(NR) && cols.end <= self.n);
        let group = WIDE_PANELS / m.next_power_of_two();
        let stride = self.k * NR;
        let (first, last) = (cols.start / NR, cols.end.div_ceil(NR));
        for p0 in (first..last).step_by(group) {
            let g = group.min(last - p0);
            let j0 = p0 * NR;
            let w = (g * NR).min(cols.end - j0);
            let wide = Wide {
                k,
                a,
                lda,
                b: &self.buf[self.start + p0 * stride..],
                stride,
                c: &mut c[j0 - cols.start..],
                ldc,
                cols: w,
                bias: bias.map(|b| &b[j0..j0 + w]),
            };
            // SAFETY: `available()` checked AVX-512F; `wide_dispatch` asserts the
            // bounds.
            unsafe { x86::wide_dispatch(m, g, wide) };
        }
    }

    /// `c = a · self (+ bias)` for at most [`WIDE_ROWS`] rows with the columns split
    /// over the current rayon pool: a matrix–vector product is bound by reading the
    /// weights, and each core streams its own share. `None` where that does not apply
    /// (more rows, or too few panels to share).
    pub(crate) fn gemm_split_columns(
        &self,
        a: &[f32],
        bias: Option<&[f32]>,
        c: &mut [f32],
        threads: usize,
    ) -> Option<()> {
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (a, bias, c, threads);
            return None;
        }
        use rayon::prelude::*;
        let (k, n) = (self.k, self.n);
        let m = a.len() / k;
        let panels = n.div_ceil(NR);
        if !(1..=WIDE_ROWS).contains(&m) || threads < 2 || panels < 2 * WIDE_PANELS {
            return None;
        }
        assert!(a.len() == m * k && c.len() == m * n, "gemm operand sizes");
        // Whole groups of panels per share.
        let per = panels.div_ceil(threads).next_multiple_of(WIDE_PANELS) * NR;
        #[cfg(target_arch = "x86_64")]
        if m == 1 {
            c.par_chunks_mut(per).enumerate().for_each(|(i, part)| {
                let j0 = i * per;
                let w = part.len();
                self.wide_columns(a, 1, k, k, j0..j0 + w, bias, part, w);
            });
        } else {
            let parts: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(per))
                .into_par_iter()
                .map(|i| {
                    let (j0, j1) = (i * per, ((i + 1) * per).min(n));
                    let mut part = vec![0.0f32; m * (j1 - j0)];
                    self.wide_columns(a, m, k, k, j0..j1, bias, &mut part, j1 - j0);
                    (j0, part)
                })
                .collect();
            for (j0, part) in parts {
                let w = part.len() / m;
                for (row, src) in c.chunks_exact_mut(n).zip(part.chunks_exact(w)) {
                    row[j0..j0 + w].copy_from_slice(src);
                }
            }
        }
        Some(())
    }
}

/// Products wider than this many columns copy the left operand into tiles first.
const PACK_A_MIN_COLS: usize = 2 * NR;

thread_local! {
    /// The left operand's current row block in tile order, reused between calls.
    static PACKED_A: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Copies rows `rows` (columns `depth`) of `a` into `buf` in micro-kernel
/// order: for each tile of `MR` rows and each depth block of `KC`, the tile's rows
/// `KC` apart (a short tile or block keeps the strides and leaves the rest unread),
/// so the kernel finds element `(i, p)` of a block at the constant offset `i·KC + p`.
fn pack_a(
    a: &[f32],
    lda: usize,
    rows: std::ops::Range<usize>,
    depth: std::ops::Range<usize>,
    buf: &mut Vec<f32>,
) {
    let blocks = depth.len().div_ceil(KC);
    let len = rows.len().div_ceil(MR) * blocks * MR * KC;
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
    for (t, i0) in rows.clone().step_by(MR).enumerate() {
        for i in i0..rows.end.min(i0 + MR) {
            let row = &a[i * lda + depth.start..i * lda + depth.end];
            for (kb, seg) in row.chunks(KC).enumerate() {
                let at = packed_a_offset(t, kb, blocks) + (i - i0) * KC;
                buf[at..at + seg.len()].copy_from_slice(seg);
            }
        }
    }
}

/// Where [`pack_a`] puts depth block `kb` of tile `t` (of `blocks` per tile).
fn packed_a_offset(t: usize, kb: usize, blocks: usize) -> usize {
    (t * blocks + kb) * MR * KC
}

/// A row-major left operand: `rows` rows, `ld` elements apart.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Operand<'a> {
    /// The elements.
    pub data: &'a [f32],
    /// Rows used.
    pub rows: usize,
    /// Elements from one row's start to the next's.
    pub ld: usize,
}

/// One micro-kernel call: `rows × cols` of `c` (rows ≤ MR, cols ≤ NR) over `kc`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Tile<'a, E> {
    kc: usize,
    a: &'a [f32],
    /// Row stride of `a`; 0: `a` is a packed block, rows `KC` apart ([`pack_a`]).
    lda: usize,
    b: &'a [E],
    c: &'a mut [f32],
    ldc: usize,
    cols: usize,
    /// The first depth block: start from the bias (or zero), not from `c`.
    first: bool,
    bias: Option<&'a [f32]>,
}

/// One wide micro-kernel call: `rows × cols` of `c` (rows ≤ [`WIDE_ROWS`], `cols`
/// spanning up to [`WIDE_PANELS`] panels) over the whole depth `k`.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Wide<'a, E> {
    k: usize,
    a: &'a [f32],
    lda: usize,
    /// From the first panel's start; panel `i` starts at `i * stride`.
    b: &'a [E],
    stride: usize,
    c: &'a mut [f32],
    ldc: usize,
    cols: usize,
    bias: Option<&'a [f32]>,
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{ElemKind, PanelElem, Tile, Wide, KC, MR, NR, WIDE_PANELS};
    use std::arch::x86_64::*;

    /// Sixteen panel elements from `p` as f32 (widened exactly).
    ///
    /// # Safety
    /// AVX-512F; 16 elements readable at `p`, which for f32 is 64-byte aligned.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn load16<E: PanelElem>(p: *const E) -> __m512 {
        // SAFETY: as the caller promises.
        unsafe {
            match E::KIND {
                ElemKind::F32 => _mm512_load_ps(p.cast()),
                ElemKind::F16 => _mm512_cvtph_ps(_mm256_loadu_si256(p.cast())),
                ElemKind::Bf16 => _mm512_castsi512_ps(_mm512_slli_epi32::<16>(
                    _mm512_cvtepu16_epi32(_mm256_loadu_si256(p.cast())),
                )),
            }
        }
    }

    /// Calls the micro-kernel for `rows` rows.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    pub(super) unsafe fn tile_dispatch<E: PanelElem>(rows: usize, mut t: Tile<'_, E>) {
        assert!((1..=MR).contains(&rows) && (1..=NR).contains(&t.cols));
        if t.lda == 0 {
            assert!(t.kc <= KC && t.a.len() >= (rows - 1) * KC + t.kc);
        } else {
            assert!(t.a.len() >= (rows - 1) * t.lda + t.kc);
        }
        assert!(t.b.len() >= t.kc * NR);
        assert!(t.c.len() >= (rows - 1) * t.ldc + t.cols);
        assert!(t.bias.is_none_or(|b| b.len() >= t.cols));
        // SAFETY: bounds asserted above; AVX-512F by the caller.
        unsafe {
            if t.lda == 0 {
                tile_rows::<E, true>(rows, &mut t);
            } else {
                tile_rows::<E, false>(rows, &mut t);
            }
        }
    }

    /// [`tile`] for a row count known only at run time.
    ///
    /// # Safety
    /// As [`tile`].
    #[target_feature(enable = "avx512f")]
    unsafe fn tile_rows<E: PanelElem, const PACKED: bool>(rows: usize, t: &mut Tile<'_, E>) {
        // SAFETY: forwarded.
        unsafe {
            match rows {
                12 => tile::<E, 12, PACKED>(t),
                11 => tile::<E, 11, PACKED>(t),
                10 => tile::<E, 10, PACKED>(t),
                9 => tile::<E, 9, PACKED>(t),
                8 => tile::<E, 8, PACKED>(t),
                7 => tile::<E, 7, PACKED>(t),
                6 => tile::<E, 6, PACKED>(t),
                5 => tile::<E, 5, PACKED>(t),
                4 => tile::<E, 4, PACKED>(t),
                3 => tile::<E, 3, PACKED>(t),
                2 => tile::<E, 2, PACKED>(t),
                _ => tile::<E, 1, PACKED>(t),
            }
        }
    }

    /// Calls the wide micro-kernel for `rows` rows and `panels` panels.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    pub(super) unsafe fn wide_dispatch<E: PanelElem>(
        rows: usize,
        panels: usize,
        mut t: Wide<'_, E>,
    ) {
        assert!((1..=4).contains(&rows) && rows * panels <= WIDE_PANELS.max(rows));
        assert!(t.cols > (panels - 1) * NR && t.cols <= panels * NR);
        assert!(t.k >= 1 && t.k * NR <= t.stride);
        assert!(t.a.len() >= (rows - 1) * t.lda + t.k);
        assert!(t.b.len() >= (panels - 1) * t.stride + t.k * NR);
        assert!(t.c.len() >= (rows - 1) * t.ldc + t.cols);
        assert!(t.bias.is_none_or(|b| b.len() >= t.cols));
        // SAFETY: bounds asserted above; AVX-512F by the caller.
        unsafe {
            match (rows, panels) {
                (1, 8) => wide::<E, 1, 8>(&mut t),
                (1, 7) => wide::<E, 1, 7>(&mut t),
                (1, 6) => wide::<E, 1, 6>(&mut t),
                (1, 5) => wide::<E, 1, 5>(&mut t),
                (_, 4) => wide_rows::<E, 4>(rows, &mut t),
                (_, 3) => wide_rows::<E, 3>(rows, &mut t),
                (_, 2) => wide_rows::<E, 2>(rows, &mut t),
                _ => wide_rows::<E, 1>(rows, &mut t),
            }
        }
    }

    /// [`wide`] for a row count known only at run time.
    ///
    /// # Safety
    /// As [`wide`].
    #[target_feature(enable = "avx512f")]
    unsafe fn wide_rows<E: PanelElem, const P: usize>(rows: usize, t: &mut Wide<'_, E>) {
        // SAFETY: forwarded.
        unsafe {
            match rows {
                1 => wide::<E, 1, P>(t),
                2 => wide::<E, 2, P>(t),
                3 => wide::<E, 3, P>(t),
                _ => wide::<E, 4, P>(t),
            }
        }
    }

    /// `R` rows × `P` panels of `c` over the whole depth: `2·R·P` accumulators, one
    /// sequential stream per panel.
    ///
    /// # Safety
    /// AVX-512F; the bounds `wide_dispatch` asserts.
    #[target_feature(enable = "avx512f")]
    unsafe fn wide<E: PanelElem, const R: usize, const P: usize>(t: &mut Wide<'_, E>) {
        let a = t.a.as_ptr();
        let b = t.b.as_ptr();
        let c = t.c.as_mut_ptr();
        let last = masks(t.cols - (P - 1) * NR);
        let mask = |j: usize| if j + 1 == P { last } else { (!0, !0) };
        let mut acc = [[[_mm512_setzero_ps(); 2]; P]; R];
        // SAFETY: every pointer read and write below is within the slices, as
        // `wide_dispatch` asserted; masked lanes are not touched.
        unsafe {
            if let Some(bias) = t.bias {
                let p = bias.as_ptr();
                for j in 0..P {
                    let (m0, m1) = mask(j);
                    let v = [
                        _mm512_maskz_loadu_ps(m0, p.add(j * NR)),
                        _mm512_maskz_loadu_ps(m1, p.add(j * NR + 16)),
                    ];
                    for row in acc.iter_mut() {
                        row[j] = v;
                    }
                }
            }
            for p in 0..t.k {
                let mut bv = [[_mm512_setzero_ps(); 2]; P];
                for (j, v) in bv.iter_mut().enumerate() {
                    let q = b.add(j * t.stride + p * NR);
                    *v = [load16(q), load16(q.add(16))];
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(*a.add(i * t.lda + p));
                    for (r, v) in row.iter_mut().zip(&bv) {
                        r[0] = _mm512_fmadd_ps(av, v[0], r[0]);
                        r[1] = _mm512_fmadd_ps(av, v[1], r[1]);
                    }
                }
            }
            for (i, row) in acc.iter().enumerate() {
                for (j, r) in row.iter().enumerate() {
                    let (m0, m1) = mask(j);
                    let q = c.add(i * t.ldc + j * NR);
                    _mm512_mask_storeu_ps(q, m0, r[0]);
                    _mm512_mask_storeu_ps(q.add(16), m1, r[1]);
                }
            }
        }
    }

    /// Lane masks for the two vectors of a `cols`-wide row.
    fn masks(cols: usize) -> (__mmask16, __mmask16) {
        let m = if cols >= NR {
            u32::MAX
        } else {
            (1u32 << cols) - 1
        };
        (m as u16, (m >> 16) as u16)
    }

    /// `R` rows of `c` over one depth block; `PACKED`: `a` is in tile order
    /// ([`super::pack_a`]), else `R` rows `lda` apart.
    ///
    /// # Safety
    /// AVX-512F; the bounds `tile_dispatch` asserts.
    #[target_feature(enable = "avx512f")]
    unsafe fn tile<E: PanelElem, const R: usize, const PACKED: bool>(t: &mut Tile<'_, E>) {
        let (m0, m1) = masks(t.cols);
        let a = t.a.as_ptr();
        let b = t.b.as_ptr();
        let c = t.c.as_mut_ptr();
        let mut acc = [[_mm512_setzero_ps(); 2]; R];
        // SAFETY: every pointer read and write below is within the slices, as
        // `tile_dispatch` asserted; masked lanes are not touched.
        unsafe {
            if t.first {
                if let Some(bias) = t.bias {
                    let p = bias.as_ptr();
                    let v = [
                        _mm512_maskz_loadu_ps(m0, p),
                        _mm512_maskz_loadu_ps(m1, p.add(16)),
                    ];
                    acc = [v; R];
                }
            } else {
                for (i, row) in acc.iter_mut().enumerate() {
                    let p = c.add(i * t.ldc);
                    row[0] = _mm512_maskz_loadu_ps(m0, p);
                    row[1] = _mm512_maskz_loadu_ps(m1, p.add(16));
                }
            }
            for p in 0..t.kc {
                let b0 = load16(b.add(p * NR));
                let b1 = load16(b.add(p * NR + 16));
                for (i, row) in acc.iter_mut().enumerate() {
                    let av = _mm512_set1_ps(if PACKED {
                        *a.add(i * KC + p)
                    } else {
                        *a.add(i * t.lda + p)
                    });
                    row[0] = _mm512_fmadd_ps(av, b0, row[0]);
                    row[1] = _mm512_fmadd_ps(av, b1, row[1]);
                }
            }
            for (i, row) in acc.iter().enumerate() {
                let p = c.add(i * t.ldc);
                _mm512_mask_storeu_ps(p, m0, row[0]);
                _mm512_mask_storeu_ps(p.add(16), m1, row[1]);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], bias: Option<&[f32]>, m: usize, k: usize, n: usize) -> Vec<f64> {
        (0..m * n)
            .map(|idx| {
                let (i, j) = (idx / n, idx % n);
                let s: f64 = (0..k)
                    .map(|p| f64::from(a[i * k + p]) * f64::from(b[p * n + j]))
                    .sum();
                s + bias.map_or(0.0, |b| f64::from(b[j]))
            })
            .collect()
    }

    #[test]
    fn partial_products_leave_the_rest_alone() {
        if !available() {
            return;
        }
        for m in [29, 1, 2, 3, 4] {
            partial_products(m);
        }
    }

    fn partial_products(m: usize) {
        let (k, n) = (70, 300);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104_729) % 11) as f32 - 5.0)
            .collect();
        let pb = PackedB::new(&b, k, n).expect("packs");
        for (depth, cols) in [
            (70, 75),
            (33, 40),
            (1, 1),
            (0, 9),
            (64, 32),
            (70, 300),
            (5, 290),
        ] {
            let ldc = cols + 3;
            let mut c = vec![-1.0f32; m * ldc];
            let a_op = Operand {
                data: &a,
                rows: m,
                ld: k,
            };
            pb.gemm_part(a_op, depth, cols, None, &mut c, ldc);
            for i in 0..m {
                for j in 0..ldc {
                    let want = if j < cols {
                        (0..depth).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>()
                    } else {
                        -1.0
                    };
                    assert_eq!(c[i * ldc + j], want, "depth {depth} cols {cols} at {i},{j}");
                }
            }
        }
    }

    #[test]
    fn column_split_matches_naive() {
        if !available() {
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .expect("pool");
        for (m, k, n) in [(1, 70, 1000), (2, 33, 515), (4, 5, 2048), (3, 64, 600)] {
            let a: Vec<f32> = (0..m * k).map(|i| ((i * 31) % 17) as f32 - 8.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| ((i * 13) % 7) as f32 - 3.0).collect();
            let bias: Vec<f32> = (0..n).map(|j| (j % 5) as f32).collect();
            let pb = PackedB::new(&b, k, n).expect("packs");
            let mut c = vec![f32::NAN; m * n];
            let done = pool.install(|| pb.gemm_split_columns(&a, Some(&bias), &mut c, 3));
            assert!(done.is_some(), "{m}×{k}×{n} is split");
            assert_eq!(
                c,
                naive(&a, &b, Some(&bias), m, k, n)
                    .iter()
                    .map(|&x| x as f32)
                    .collect::<Vec<_>>(),
                "{m}×{k}×{n}"
            );
        }
        // Too few panels to share, or too many rows: declined.
        let pb = PackedB::new(&[1.0; 64 * 4], 4, 64).expect("packs");
        assert!(pb
            .gemm_split_columns(&[1.0; 4], None, &mut [0.0; 64], 2)
            .is_none());
        let pb = PackedB::new(&vec![1.0; 1000], 1, 1000).expect("packs");
        assert!(pb
            .gemm_split_columns(&[1.0; 5], None, &mut vec![0.0; 5000], 2)
            .is_none());
    }

    #[test]
    fn matches_naive_on_edge_shapes() {
        if !available() {
            eprintln!("no AVX-512F here: the packed GEMM is not used on this machine");
            return;
        }
        let mut seed = 7u32;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for &(m, k, n) in &[
            (1, 1, 1),
            (13, 3, 33),
            (12, 256, 32),
            (25, 257, 31),
            (7, 600, 65),
            (128, 512, 96),
            // Three row blocks of 72 for this depth: crosses two block edges.
            (200, 1500, 40),
            // The wide kernel: 1–4 rows, panel groups with a remainder.
            (1, 512, 300),
            (2, 7, 257),
            (3, 100, 33),
            (4, 64, 1000),
            (1, 3, 16),
        ] {
            let a: Vec<f32> = (0..m * k).map(|_| next()).collect();
            let b: Vec<f32> = (0..k * n).map(|_| next()).collect();
            let bias: Vec<f32> = (0..n).map(|_| next()).collect();
            let pb = PackedB::new(&b, k, n).expect("packs");
            for with_bias in [false, true] {
                let bias = with_bias.then_some(&bias[..]);
                let mut c = vec![f32::NAN; m * n];
                pb.gemm(&a, bias, &mut c);
                let want = naive(&a, &b, bias, m, k, n);
                for (x, y) in c.iter().zip(&want) {
                    assert!(
                        (f64::from(*x) - y).abs() <= 1e-5 * (k as f64).sqrt() + 1e-6,
                        "{m}×{k}×{n}: {x} vs {y}"
                    );
                }
            }
        }
    }
}
