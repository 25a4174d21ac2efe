//! The built-in CPU kernels: f32 compute (vectorised loops, matrix products through
//! ndarray's `matrixmultiply` GEMM), f16/bf16 computed in f32, data movement on every
//! element type.

pub(crate) mod attention;
pub(crate) mod gemm;
pub(crate) mod math;
mod reference;

use autoglm_graph::{BinaryOp, DType, OpKind, ReduceOp, UnaryOp};
use ndarray::{
    linalg::general_mat_mul, ArrayView2, ArrayViewD, ArrayViewMut2, ArrayViewMutD, Axis, IxDyn, Zip,
};
use rayon::prelude::*;

use crate::error::KernelError;
use crate::registry::{Device, Kernel, KernelFn, Prepacked, Registry};
use crate::tensor::{Data, Tensor};
use math::Rhs;
use std::sync::Arc;

type KResult = Result<(), KernelError>;

/// Elements per task below which a kernel does not split its work across threads.
const PAR_GRAIN: usize = 1 << 15;

/// The error for a tensor of type `got` where the kernel takes f32.
fn not_f32(what: &'static str, got: DType) -> KernelError {
    KernelError::DType {
        what,
        expected: DType::F32,
        got,
    }
}

fn f32s(t: &Tensor) -> Result<&[f32], KernelError> {
    t.as_f32().ok_or_else(|| not_f32("an input", t.dtype()))
}

fn f32s_mut(t: &mut Tensor) -> Result<&mut [f32], KernelError> {
    let d = t.dtype();
    t.as_f32_mut().ok_or_else(|| not_f32("the output", d))
}

fn f32_view(t: &Tensor) -> Result<ArrayViewD<'_, f32>, KernelError> {
    t.view_f32().ok_or_else(|| not_f32("an input", t.dtype()))
}

fn f32_view_mut(t: &mut Tensor) -> Result<ArrayViewMutD<'_, f32>, KernelError> {
    let d = t.dtype();
    t.view_f32_mut().ok_or_else(|| not_f32("the output", d))
}

/// The error for a kernel called for an op it does not compute.
pub(crate) fn wrong_op(kernel: &'static str, op: &OpKind) -> KernelError {
    KernelError::WrongOp {
        kernel,
        op: op.name(),
    }
}

fn axis_of(a: i64, rank: usize) -> usize {
    if a < 0 {
        (a + rank as i64) as usize
    } else {
        a as usize
    }
}

/// Runs `f(first_row, rows)` over `out` split into blocks of whole rows of length
/// `row`, in parallel when the pool has several threads and the work is large.
fn par_rows(out: &mut [f32], row: usize, f: impl Fn(usize, &mut [f32]) + Sync + Send) {
    let threads = rayon::current_num_threads();
    let rows = out.len() / row.max(1);
    if threads <= 1 || out.len() < 2 * PAR_GRAIN || rows < 2 {
        f(0, out);
        return;
    }
    let per = rows
        .div_ceil(threads * 4)
        .max(PAR_GRAIN.div_ceil(row).min(rows));
    out.par_chunks_mut(per * row)
        .enumerate()
        .for_each(|(i, c)| f(i * per, c));
}

fn unary_loop(f: UnaryOp) -> fn(&mut [f32]) {
    match f {
        UnaryOp::Neg => math::neg_loop,
        UnaryOp::Exp => math::exp_loop,
        UnaryOp::Log => math::log_loop,
        UnaryOp::Tanh => math::tanh_loop,
        UnaryOp::Erf => math::erf_loop,
        UnaryOp::Sqrt => math::sqrt_loop,
        UnaryOp::Rsqrt => math::rsqrt_loop,
        UnaryOp::Recip => math::recip_loop,
        UnaryOp::Relu => math::relu_loop,
        UnaryOp::Silu => math::silu_loop,
        UnaryOp::Gelu => math::gelu_loop,
        UnaryOp::GeluTanh => math::gelu_tanh_loop,
        UnaryOp::Sigmoid => math::sigmoid_loop,
        UnaryOp::Step => math::step_loop,
    }
}

/// The f32 unary kernel: copy in cache-sized blocks, then apply in place.
fn unary_kernel() -> Kernel {
    fn f_of(op: &OpKind) -> Result<fn(&mut [f32]), KernelError> {
        match op {
            OpKind::Unary { f } => Ok(unary_loop(*f)),
            other => Err(wrong_op("unary", other)),
        }
    }
    Kernel::new(|op, ins, out| {
        let f = f_of(op)?;
        let x = f32s(ins[0])?;
        par_rows(f32s_mut(out)?, 1, |first, o| {
            // This piece's inputs only: the last block of `x[first..]` may run
            // past the piece.
            let xs = &x[first..first + o.len()];
            for (ob, xb) in o.chunks_mut(4096).zip(xs.chunks(4096)) {
                ob.copy_from_slice(xb);
                f(ob);
            }
        });
        Ok(())
    })
    .with_inplace(|op, io, _| {
        let f = f_of(op)?;
        par_rows(f32s_mut(io)?, 1, |_, o| f(o));
        Ok(())
    })
}

/// An in-place binary loop: `io`, the other operand, and whether to swap them.
type BinaryLoop = fn(&mut [f32], Rhs<'_>, bool);

fn binary_loop(op: &OpKind) -> Result<BinaryLoop, KernelError> {
    Ok(match op {
        OpKind::Binary { f } => match f {
            BinaryOp::Add => math::add_loop,
            BinaryOp::Sub => math::sub_loop,
            BinaryOp::Mul => math::mul_loop,
            BinaryOp::Div => math::div_loop,
            BinaryOp::Pow => math::pow_loop,
            BinaryOp::Max => math::max_loop,
            BinaryOp::Min => math::min_loop,
        },
        OpKind::SwiGlu => math::swiglu_loop,
        other => return Err(wrong_op("binary", other)),
    })
}

fn binary_scalar(op: &OpKind) -> fn(f32, f32) -> f32 {
    match op {
        OpKind::Binary { f } => match f {
            BinaryOp::Add => |x, y| x + y,
            BinaryOp::Sub => |x, y| x - y,
            BinaryOp::Mul => |x, y| x * y,
            BinaryOp::Div => |x, y| x / y,
            BinaryOp::Pow => f32::powf,
            BinaryOp::Max => f32::max,
            BinaryOp::Min => f32::min,
        },
        _ => |g, u| math::silu(g) * u,
    }
}

/// How `b` (of shape `sb`) lines up with an operand of the output's shape `so`.
fn rhs_layout<'a>(b: &'a [f32], sb: &[usize], so: &[usize]) -> Option<Rhs<'a>> {
    if b.len() == 1 {
        return Some(Rhs::Scalar(b[0]));
    }
    if sb == so {
        return Some(Rhs::Same(b));
    }
    let lead = sb.iter().take_while(|&&d| d == 1).count();
    let tail = &sb[lead..];
    (so.ends_with(tail) && !tail.is_empty()).then_some(Rhs::Rows(b))
}

/// Applies `f` to the first operand in place (it already holds the output's shape),
/// the second broadcast against it.
fn binary_into(op: &OpKind, io: &mut Tensor, b: &Tensor, swap: bool) -> KResult {
    let f = binary_loop(op)?;
    let so = io.shape().to_vec();
    let bs = f32s(b)?;
    match rhs_layout(bs, b.shape(), &so) {
        Some(Rhs::Rows(r)) => {
            let n = r.len();
            par_rows(f32s_mut(io)?, n, |_, o| f(o, Rhs::Rows(r), swap));
        }
        Some(Rhs::Same(s)) => par_rows(f32s_mut(io)?, 1, |first, o| {
            f(o, Rhs::Same(&s[first..first + o.len()]), swap)
        }),
        Some(rhs) => par_rows(f32s_mut(io)?, 1, |_, o| f(o, rhs, swap)),
        None => {
            let g = binary_scalar(op);
            let bv = f32_view(b)?;
            let mut v = f32_view_mut(io)?;
            let bb = bv
                .broadcast(v.raw_dim())
                .ok_or_else(|| KernelError::Broadcast {
                    what: "operand",
                    from: b.shape().to_vec(),
                    to: so.clone(),
                })?;
            Zip::from(&mut v).and(&bb).for_each(|x, &y| {
                *x = if swap { g(y, *x) } else { g(*x, y) };
            });
        }
    }
    Ok(())
}

fn binary_kernel() -> Kernel {
    Kernel::new(|op, ins, out| {
        let (a, b) = (ins[0], ins[1]);
        let so = out.shape().to_vec();
        // Start from whichever operand has the output's shape, then combine the other.
        let (first, second, swap) = if a.shape() == so.as_slice() {
            (a, b, false)
        } else if b.shape() == so.as_slice() {
            (b, a, true)
        } else {
            // Both broadcast: materialise the first at the output's shape.
            let av = f32_view(a)?;
            let ab = av
                .broadcast(IxDyn(&so))
                .ok_or_else(|| KernelError::Broadcast {
                    what: "operand",
                    from: a.shape().to_vec(),
                    to: so.clone(),
                })?;
            f32_view_mut(out)?.assign(&ab);
            return binary_into(op, out, b, false);
        };
        f32s_mut(out)?.copy_from_slice(f32s(first)?);
        binary_into(op, out, second, swap)
    })
    .with_inplace(|op, io, rest| binary_into(op, io, rest[0], false))
}

/// Rows of the last axis.
fn norm_kernel() -> Kernel {
    Kernel::new(|op, ins, out| {
        let x = f32s(ins[0])?;
        let g = f32s(ins[1])?;
        let n = g.len();
        let o = f32s_mut(out)?;
        match op {
            OpKind::LayerNorm { eps } | OpKind::FusedLayerNormGelu { eps } => {
                let b = f32s(ins[2])?;
                let fused = matches!(op, OpKind::FusedLayerNormGelu { .. });
                let eps = *eps as f32;
                par_rows(o, n, |r0, o| {
                    let xs = &x[r0 * n..r0 * n + o.len()];
                    if fused {
                        math::layer_norm_gelu(xs, g, b, eps, o);
                    } else {
                        math::layer_norm(xs, g, b, eps, o);
                    }
                });
            }
            OpKind::RmsNorm { eps } => {
                let eps = *eps as f32;
                par_rows(o, n, |r0, o| {
                    math::rms_norm(&x[r0 * n..r0 * n + o.len()], g, eps, o);
                });
            }
            other => return Err(wrong_op("norm", other)),
        }
        Ok(())
    })
}

fn softmax_kernel() -> Kernel {
    fn apply(op: &OpKind, io: &mut Tensor) -> KResult {
        let OpKind::Softmax { axis } = op else {
            return Err(wrong_op("softmax", op));
        };
        let ax = axis_of(*axis, io.shape().len());
        let n = io.shape()[ax];
        if ax + 1 == io.shape().len() {
            par_rows(f32s_mut(io)?, n, |_, o| math::softmax_rows(o, n));
        } else {
            let mut v = f32_view_mut(io)?;
            let mut tmp = vec![0.0f32; n];
            for mut lane in v.lanes_mut(Axis(ax)) {
                tmp.iter_mut().zip(lane.iter()).for_each(|(t, &x)| *t = x);
                math::softmax_rows(&mut tmp, n);
                lane.iter_mut().zip(&tmp).for_each(|(x, &t)| *x = t);
            }
        }
        Ok(())
    }
    Kernel::new(|op, ins, out| {
        f32s_mut(out)?.copy_from_slice(f32s(ins[0])?);
        apply(op, out)
    })
    .with_inplace(|op, io, _| apply(op, io))
}

fn reduce_kernel() -> Kernel {
    Kernel::new(|op, ins, out| {
        let OpKind::Reduce { f, axes, .. } = op else {
            return Err(wrong_op("reduce", op));
        };
        let x = ins[0];
        let rank = x.shape().len();
        let mut ax: Vec<usize> = axes.iter().map(|&a| axis_of(a, rank)).collect();
        ax.sort_unstable();
        let o = f32s_mut(out)?;
        // The last axis alone: one pass per row.
        if ax == [rank - 1] {
            let n = x.shape()[rank - 1];
            let xs = f32s(x)?;
            for (o, row) in o.iter_mut().zip(xs.chunks_exact(n.max(1))) {
                *o = reduce_slice(*f, row.iter().copied(), n);
            }
            return Ok(());
        }
        let mut v = f32_view(x)?.to_owned();
        for &a in ax.iter().rev() {
            let n = v.shape()[a];
            v = v.map_axis(Axis(a), |lane| reduce_slice(*f, lane.iter().copied(), n));
        }
        o.iter_mut().zip(v.iter()).for_each(|(o, &r)| *o = r);
        Ok(())
    })
}

fn reduce_slice(f: ReduceOp, xs: impl Iterator<Item = f32>, n: usize) -> f32 {
    match f {
        ReduceOp::Sum => xs.sum(),
        ReduceOp::Mean => xs.sum::<f32>() / n as f32,
        ReduceOp::Max => xs.fold(f32::NEG_INFINITY, f32::max),
        ReduceOp::Min => xs.fold(f32::INFINITY, f32::min),
    }
}

/// `c = a · b` for row-major slices.
fn gemm(a: &[f32], b: &[f32], c: &mut [f32], m: usize, k: usize, n: usize) -> KResult {
    let av = ArrayView2::from_shape((m, k), a)?;
    let bv = ArrayView2::from_shape((k, n), b)?;
    let mut cv = ArrayViewMut2::from_shape((m, n), c)?;
    general_mat_mul(1.0, &av, &bv, 0.0, &mut cv);
    Ok(())
}

/// Offsets of each output batch element into an operand with batch dims `dims`
/// (right-aligned, size-1 dims broadcast), elements per matrix `size`.
fn batch_offsets(dims: &[usize], out_dims: &[usize], size: usize) -> Vec<usize> {
    let pad = out_dims.len() - dims.len();
    let total: usize = out_dims.iter().product();
    let mut strides = vec![0usize; out_dims.len()];
    let mut s = size;
    for i in (0..dims.len()).rev() {
        strides[pad + i] = if dims[i] == 1 { 0 } else { s };
        s *= dims[i];
    }
    (0..total)
        .map(|mut idx| {
            let mut off = 0;
            for i in (0..out_dims.len()).rev() {
                off += (idx % out_dims[i]) * strides[i];
                idx /= out_dims[i];
            }
            off
        })
        .collect()
}

/// Rows of the left operand from which a product with an unpacked right operand
/// packs it first.
const PACK_ON_THE_FLY_ROWS: usize = 48;

thread_local! {
    /// The memory of right operands packed on the fly, kept between calls.
    static SCRATCH_B: std::cell::Cell<Vec<f32>> = const { std::cell::Cell::new(Vec::new()) };
}

/// Batched `[..., m, k] × [..., k, n]` with broadcast batch dims.
fn matmul_into(a: &Tensor, b: &Tensor, out: &mut Tensor) -> KResult {
    let (sa, sb) = (a.shape().to_vec(), b.shape().to_vec());
    let (ra, rb) = (sa.len(), sb.len());
    let (m, k, n) = (sa[ra - 2], sa[ra - 1], sb[rb - 1]);
    let so = out.shape().to_vec();
    let (xa, xb) = (f32s(a)?, f32s(b)?);
    let o = f32s_mut(out)?;
    if rb == 2 {
        // x [..., m, k] · w [k, n]: one product over all rows, split by rows.
        let rows = xa.len() / k.max(1);
        // Enough rows pay for laying the right operand out for the packed kernel
        // (a copy of it) once: the products of a backward pass, mostly.
        if rows >= PACK_ON_THE_FLY_ROWS {
            let buf = SCRATCH_B.take();
            if let Some(w) = gemm::PackedB::new_reusing(xb, k, n, buf) {
                let r = packed_matmul_into(a, &w, None, out);
                SCRATCH_B.set(w.into_buffer());
                return r;
            }
        }
        let threads = rayon::current_num_threads();
        if threads <= 1 || rows < 64 {
            return gemm(xa, xb, o, rows, k, n);
        }
        let per = rows.div_ceil(threads);
        return o
            .par_chunks_mut(per * n)
            .enumerate()
            .try_for_each(|(i, c)| {
                let r = c.len() / n;
                gemm(&xa[i * per * k..(i * per + r) * k], xb, c, r, k, n)
            });
    }
    let out_batch = &so[..so.len() - 2];
    let oa = batch_offsets(&sa[..ra - 2], out_batch, m * k);
    let ob = batch_offsets(&sb[..rb - 2], out_batch, k * n);
    let job = |(i, c): (usize, &mut [f32])| {
        gemm(
            &xa[oa[i]..oa[i] + m * k],
            &xb[ob[i]..ob[i] + k * n],
            c,
            m,
            k,
            n,
        )
    };
    if rayon::current_num_threads() > 1 {
        o.par_chunks_mut((m * n).max(1))
            .enumerate()
            .try_for_each(job)
    } else {
        o.chunks_mut((m * n).max(1)).enumerate().try_for_each(job)
    }
}

/// `x [..., m, k] · w (+ bias)` with `w` packed once ([`gemm::PackedB`]), split by
/// rows over the pool's threads.
fn packed_matmul_into(
    x: &Tensor,
    w: &gemm::PackedB,
    bias: Option<&[f32]>,
    out: &mut Tensor,
) -> KResult {
    let (k, n) = (w.k(), w.n());
    if x.shape().last() != Some(&k) || out.shape().last() != Some(&n) {
        return Err(KernelError::Shape(format!(
            "{:?} · packed [{k}, {n}] → {:?}",
            x.shape(),
            out.shape()
        )));
    }
    packed_matmul_slices(f32s(x)?, w, bias, f32s_mut(out)?)
}

/// `o = xa · w (+ bias)` for row-major slices, split over the current pool's threads:
/// by rows, or for a few rows by columns.
pub(crate) fn packed_matmul_slices<E: gemm::PanelElem>(
    xa: &[f32],
    w: &gemm::PackedB<E>,
    bias: Option<&[f32]>,
    o: &mut [f32],
) -> KResult {
    let (k, n) = (w.k(), w.n());
    let rows = xa.len() / k;
    let threads = rayon::current_num_threads();
    if threads <= 1 || rows < 2 * threads {
        if w.gemm_split_columns(xa, bias, o, threads).is_none() {
            w.gemm(xa, bias, o);
        }
        return Ok(());
    }
    let per = rows.div_ceil(threads);
    o.par_chunks_mut(per * n).enumerate().for_each(|(i, c)| {
        let r = c.len() / n;
        w.gemm(&xa[i * per * k..(i * per + r) * k], bias, c);
    });
    Ok(())
}

/// `o = xa · w (+ bias)` with the general GEMM (machines without the packed kernel).
pub(crate) fn plain_matmul_slices(
    xa: &[f32],
    w: &[f32],
    bias: Option<&[f32]>,
    o: &mut [f32],
    m: usize,
    k: usize,
    n: usize,
) -> KResult {
    gemm(xa, w, o, m, k, n)?;
    if let Some(bias) = bias {
        par_rows(o, n, |_, row| math::add_loop(row, Rhs::Rows(bias), false));
    }
    Ok(())
}

fn matmul_kernel() -> Kernel {
    Kernel::new(|op, ins, out| match op {
        OpKind::MatMul => matmul_into(ins[0], ins[1], out),
        OpKind::Linear => {
            matmul_into(ins[0], ins[1], out)?;
            let bias = f32s(ins[2])?;
            let n = bias.len();
            par_rows(f32s_mut(out)?, n, |_, o| {
                math::add_loop(o, Rhs::Rows(bias), false)
            });
            Ok(())
        }
        other => Err(wrong_op("matmul", other)),
    })
    .with_prepack(
        // A rank-2 f32 right operand (a weight) is laid out in the storage asked for
        // (f16 panels where a block format does not fit its rows); nothing else is.
        |op, index, t, storage| {
            let ok = matches!(op, OpKind::MatMul | OpKind::Linear) && index == 1;
            let (shape, data) = (t.shape(), t.as_f32()?);
            if !ok || shape.len() != 2 {
                return None;
            }
            let (k, n) = (shape[0], shape[1]);
            if storage == crate::Storage::F32 && !gemm::available() {
                return None;
            }
            crate::PackedMatrix::with_storage(data, k, n, storage.or_fallback(k))
                .ok()
                .map(|p| Arc::new(p) as Prepacked)
        },
        |op, ins, packed, out| {
            let w = packed
                .get(1)
                .copied()
                .flatten()
                .and_then(|p| p.downcast_ref::<crate::PackedMatrix>())
                .ok_or("the packed kernel was called without a packed weight")?;
            let bias = match op {
                OpKind::Linear => Some(f32s(ins[2])?),
                _ => None,
            };
            let (k, n) = (w.k(), w.n());
            if ins[0].shape().last() != Some(&k) || out.shape().last() != Some(&n) {
                return Err(KernelError::Shape(format!(
                    "{:?} · packed [{k}, {n}] → {:?}",
                    ins[0].shape(),
                    out.shape()
                )));
            }
            w.matmul_slices(f32s(ins[0])?, bias, f32s_mut(out)?)
        },
    )
}

/// Attention with at most this many query rows per head (decoding) skips laying out
/// the keys and values for the GEMM.
const FEW_QUERY_ROWS: usize = 4;

/// How an attention op holds its keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keys {
    /// `kt [..., d, s]`, one key head per query head ([`OpKind::Attention`]).
    Transposed,
    /// `k [..., hkv, s, d]` as cached, shared by groups of query heads
    /// ([`OpKind::GroupedAttention`]).
    Rows,
}

fn attention_kernel() -> Kernel {
    Kernel::new(|op, ins, out| match op {
        OpKind::Attention { scale } => attention(ins, out, *scale as f32, Keys::Transposed),
        OpKind::GroupedAttention { scale } => attention(ins, out, *scale as f32, Keys::Rows),
        other => Err(wrong_op("attention", other)),
    })
}

/// `softmax(q·kᵀ·scale + mask)·v` per query head, scores in a per-task buffer; a task
/// takes the query heads that share one key/value head, so their keys and values are
/// laid out for the GEMM once.
fn attention(ins: &[&Tensor], out: &mut Tensor, scale: f32, keys: Keys) -> KResult {
    let (q, k, v, mask) = (ins[0], ins[1], ins[2], ins[3]);
    let r = q.shape().len();
    let (t, d) = (q.shape()[r - 2], q.shape()[r - 1]);
    let (s, group) = match keys {
        Keys::Transposed => (k.shape()[r - 1], 1),
        Keys::Rows => {
            let (hq, hkv) = (q.shape()[r - 3], k.shape()[r - 3]);
            if hkv == 0 || hq % hkv != 0 {
                return Err(KernelError::Shape(format!(
                    "{hq} query heads do not share {hkv} key heads"
                )));
            }
            (k.shape()[r - 2], hq / hkv)
        }
    };
    let e = v.shape()[r - 1];
    let (xq, xk, xv) = (f32s(q)?, f32s(k)?, f32s(v)?);
    // The mask as one [t, s] matrix per query head (offsets), broadcasting.
    let batch: Vec<usize> = q.shape()[..r - 2].to_vec();
    let ms = mask.shape();
    let mut mshape = vec![1usize; (r).saturating_sub(ms.len())];
    mshape.extend_from_slice(ms);
    let full_rows = mshape[r - 2] == t && mshape[r - 1] == s;
    let owned;
    let (xm, moff): (&[f32], Vec<usize>) = if full_rows {
        (f32s(mask)?, batch_offsets(&mshape[..r - 2], &batch, t * s))
    } else {
        // Broadcast the mask's last two dims to [t, s] once.
        let mv = f32_view(mask)?;
        let mut target = batch.clone();
        target.extend([t, s]);
        owned = mv
            .broadcast(IxDyn(&target))
            .ok_or_else(|| KernelError::Broadcast {
                what: "mask",
                from: ms.to_vec(),
                to: target.clone(),
            })?
            .as_standard_layout()
            .into_owned();
        let n: usize = batch.iter().product();
        (
            owned
                .as_slice()
                .ok_or("the broadcast mask is not contiguous")?,
            (0..n).map(|i| i * t * s).collect(),
        )
    };
    let o = f32s_mut(out)?;
    // Rows go in blocks; a block only computes the key columns before the last one
    // its mask leaves open (a causal mask halves the work), which gives exactly the
    // same result: the skipped columns would have had weight exp(−∞) = 0.
    const ROWS: usize = 32;
    let job = |(kv, c): (usize, &mut [f32])| -> KResult {
        let mut scores = vec![0.0f32; ROWS * s];
        let (k_i, v_i) = (
            &xk[kv * d * s..(kv + 1) * d * s],
            &xv[kv * s * e..(kv + 1) * s * e],
        );
        // Where the packed GEMM runs, both products use it: this head's keys and
        // values are laid out once and every row block of every query head sharing
        // them reads them in place. A few query rows (decoding) read them directly.
        let few = t <= FEW_QUERY_ROWS;
        let packed = if few {
            None
        } else {
            let kp = match keys {
                Keys::Transposed => gemm::PackedB::new(k_i, d, s),
                Keys::Rows => gemm::PackedB::new_transposed(k_i, d, s),
            };
            kp.zip(gemm::PackedB::new(v_i, s, e))
        };
        for (h, head_out) in c.chunks_mut((t * e).max(1)).enumerate() {
            let i = kv * group + h;
            let mask = &xm[moff[i]..moff[i] + t * s];
            for (b, out_rows) in head_out.chunks_mut(ROWS * e).enumerate() {
                let (r0, rows) = (b * ROWS, out_rows.len() / e.max(1));
                let open = mask[r0 * s..(r0 + rows) * s]
                    .chunks_exact(s)
                    .map(|m| {
                        m.iter()
                            .rposition(|&v| v != f32::NEG_INFINITY)
                            .map_or(0, |j| j + 1)
                    })
                    .collect::<Vec<_>>();
                // A fully masked row keeps all columns (and so PyTorch's NaN).
                let width = if open.contains(&0) {
                    s
                } else {
                    open.into_iter().max().unwrap_or(s)
                };
                let sc = &mut scores[..rows * width];
                let q_rows = &xq[(i * t + r0) * d..(i * t + r0 + rows) * d];
                if few {
                    for (sr, qr) in sc
                        .chunks_exact_mut(width.max(1))
                        .zip(q_rows.chunks_exact(d))
                    {
                        match keys {
                            Keys::Transposed => math::vec_mat(qr, k_i, s, &mut sr[..width]),
                            Keys::Rows => math::mat_vec(&k_i[..width * d], qr, &mut sr[..width]),
                        }
                    }
                } else if let Some((kp, _)) = &packed {
                    let q_op = gemm::Operand {
                        data: q_rows,
                        rows,
                        ld: d,
                    };
                    kp.gemm_part(q_op, d, width, None, sc, width);
                } else {
                    let qv = ArrayView2::from_shape((rows, d), q_rows)?;
                    let mut cv = ArrayViewMut2::from_shape((rows, width), &mut *sc)?;
                    match keys {
                        Keys::Transposed => {
                            let kv = ArrayView2::from_shape((d, s), k_i)?;
                            let kv = kv.slice(ndarray::s![.., ..width]);
                            general_mat_mul(1.0, &qv, &kv, 0.0, &mut cv);
                        }
                        Keys::Rows => {
                            let kv = ArrayView2::from_shape((s, d), k_i)?;
                            let kv = kv.slice(ndarray::s![..width, ..]);
                            general_mat_mul(1.0, &qv, &kv.t(), 0.0, &mut cv);
                        }
                    }
                }
                for (r, row) in sc.chunks_exact_mut(width.max(1)).enumerate() {
                    let m = &mask[(r0 + r) * s..(r0 + r) * s + width];
                    math::scale_mask_softmax(row, scale, m);
                }
                match &packed {
                    _ if few => {
                        for (orow, p) in out_rows
                            .chunks_exact_mut(e.max(1))
                            .zip(sc.chunks_exact(width.max(1)))
                        {
                            math::vec_mat(&p[..width], v_i, e, orow);
                        }
                    }
                    Some((_, vp)) => {
                        let p_op = gemm::Operand {
                            data: sc,
                            rows,
                            ld: width,
                        };
                        vp.gemm_part(p_op, width, e, None, out_rows, e);
                    }
                    None => gemm(sc, &v_i[..width * e], out_rows, rows, width, e)?,
                }
            }
        }
        Ok(())
    };
    let chunk = (group * t * e).max(1);
    if rayon::current_num_threads() > 1 {
        o.par_chunks_mut(chunk).enumerate().try_for_each(job)
    } else {
        o.chunks_mut(chunk).enumerate().try_for_each(job)
    }
}

/// The f32 cross-entropy and its gradient: per row the log-sum-exp in vector lanes
/// (rows split over the pool's threads), the mean over counted rows in row order.
fn cross_entropy_kernel() -> Kernel {
    Kernel::new(|op, ins, out| {
        let (ignore, backward) = match op {
            OpKind::CrossEntropy { ignore_index } => (*ignore_index, false),
            OpKind::CrossEntropyBackward { ignore_index } => (*ignore_index, true),
            other => return Err(wrong_op("cross-entropy", other)),
        };
        let vocab = *ins[0]
            .shape()
            .last()
            .ok_or_else(|| KernelError::Shape("logits of rank 0".into()))?;
        let x = f32s(ins[0])?;
        let rows = x.len() / vocab.max(1);
        let targets = reference::ce_targets(ins[1], ignore, rows, vocab)?;
        let count = targets.iter().filter(|t| t.is_some()).count() as f32;
        if !backward {
            let per_row: Vec<f32> = x
                .par_chunks(vocab.max(1))
                .zip(&targets)
                .map(|(row, t)| match t {
                    Some(t) => {
                        let (m, z) = math::max_sum_exp(row);
                        m + z.ln() - row[*t]
                    }
                    None => 0.0,
                })
                .collect();
            f32s_mut(out)?[0] = per_row.iter().sum::<f32>() / count;
            return Ok(());
        }
        let k = f32s(ins[2])?.first().copied().unwrap_or(0.0) / count;
        par_rows(f32s_mut(out)?, vocab, |r0, o| {
            for (i, orow) in o.chunks_exact_mut(vocab).enumerate() {
                let row = &x[(r0 + i) * vocab..(r0 + i + 1) * vocab];
                match targets[r0 + i] {
                    None => orow.fill(0.0),
                    Some(t) => {
                        let (m, z) = math::max_sum_exp(row);
                        math::scaled_exp(row, m, k / z, orow);
                        orow[t] -= k;
                    }
                }
            }
        });
        Ok(())
    })
}

fn rope_kernel() -> Kernel {
    Kernel::new(|op, ins, out| {
        let OpKind::Rope { rot } = op else {
            return Err(wrong_op("rope", op));
        };
        let rot = *rot as usize;
        let half = rot / 2;
        let (x, cos, sin) = (f32s(ins[0])?, f32s(ins[1])?, f32s(ins[2])?);
        let sh = ins[0].shape();
        let (t, d) = (sh[sh.len() - 2], sh[sh.len() - 1]);
        par_rows(f32s_mut(out)?, d, |r0, o| {
            for (j, (orow, xrow)) in o
                .chunks_exact_mut(d)
                .zip(x[r0 * d..].chunks_exact(d))
                .enumerate()
            {
                let ti = (r0 + j) % t;
                let (c, s) = (
                    &cos[ti * rot..(ti + 1) * rot],
                    &sin[ti * rot..(ti + 1) * rot],
                );
                for i in 0..half {
                    let (x1, x2) = (xrow[i], xrow[i + half]);
                    orow[i] = x1 * c[i] - x2 * s[i];
                    orow[i + half] = x2 * c[i + half] + x1 * s[i + half];
                }
                orow[rot..].copy_from_slice(&xrow[rot..]);
            }
        });
        Ok(())
    })
}

fn causal_mask_kernel() -> Kernel {
    Kernel::new(|_, _, out| {
        let t = out.shape()[0];
        let o = f32s_mut(out)?;
        for (i, row) in o.chunks_exact_mut(t.max(1)).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                *v = if j <= i { 0.0 } else { f32::NEG_INFINITY };
            }
        }
        Ok(())
    })
}

fn padding_mask_kernel() -> Kernel {
    Kernel::new(|_, ins, out| {
        let t = out.shape()[3];
        let lens = ins[0];
        let o = f32s_mut(out)?;
        for (b, row) in o.chunks_exact_mut(t.max(1)).enumerate() {
            let n = lens.data().get_f64(b);
            if n < 0.0 {
                return Err(KernelError::NegativeLength { row: b, length: n });
            }
            for (j, v) in row.iter_mut().enumerate() {
                *v = if (j as f64) < n {
                    0.0
                } else {
                    f32::NEG_INFINITY
                };
            }
        }
        Ok(())
    })
}

/// Pairs the input and output element vectors of one type, or fails.
macro_rules! same_type {
    ($a:expr, $o:expr, ($x:ident, $y:ident) => $body:expr) => {
        match ($a, $o) {
            (Data::F32($x), Data::F32($y)) => $body,
            (Data::F16($x), Data::F16($y)) => $body,
            (Data::BF16($x), Data::BF16($y)) => $body,
            (Data::F64($x), Data::F64($y)) => $body,
            (Data::I64($x), Data::I64($y)) => $body,
            (Data::I32($x), Data::I32($y)) => $body,
            (Data::Bool($x), Data::Bool($y)) => $body,
            (a, o) => Err(KernelError::MixedDTypes {
                first: a.dtype(),
                second: o.dtype(),
            }),
        }
    };
}

/// Reshape, permute, slice, concat, gather, repeat_interleave, expand_as, pad: any
/// element type.
fn movement_kernel() -> Kernel {
    Kernel::new(|op, ins, out| {
        let so = out.shape().to_vec();
        let x = ins[0];
        let sx = x.shape().to_vec();
        match op {
            OpKind::Reshape { .. } => same_type!(x.data(), out.data_mut(), (a, o) => {
                o.clone_from_slice(a);
                Ok(())
            }),
            OpKind::Permute { perm } => same_type!(x.data(), out.data_mut(), (a, o) => {
                let v = ArrayViewD::from_shape(IxDyn(&sx), &a[..])?;
                let mut ov = ArrayViewMutD::from_shape(IxDyn(&so), &mut o[..])?;
                ov.assign(&v.permuted_axes(IxDyn(perm)));
                Ok(())
            }),
            OpKind::Slice { axis, start, end } => same_type!(x.data(), out.data_mut(), (a, o) => {
                let ax = axis_of(*axis, sx.len());
                let outer: usize = sx[..ax].iter().product();
                let inner: usize = sx[ax + 1..].iter().product();
                let (s, e) = (*start as usize * inner, *end as usize * inner);
                let w = e - s;
                for i in 0..outer {
                    let base = i * sx[ax] * inner;
                    o[i * w..(i + 1) * w].clone_from_slice(&a[base + s..base + e]);
                }
                Ok(())
            }),
            OpKind::ExpandAs => same_type!(x.data(), out.data_mut(), (a, o) => {
                let v = ArrayViewD::from_shape(IxDyn(&sx), &a[..])?;
                let b = v.broadcast(IxDyn(&so)).ok_or_else(|| KernelError::Broadcast {
                    what: "input",
                    from: sx.clone(),
                    to: so.clone(),
                })?;
                for (dst, src) in o.iter_mut().zip(b.iter()) {
                    dst.clone_from(src);
                }
                Ok(())
            }),
            OpKind::Pad {
                axis,
                before,
                after,
            } => same_type!(x.data(), out.data_mut(), (a, o) => {
                let ax = axis_of(*axis, sx.len());
                let outer: usize = sx[..ax].iter().product();
                let inner: usize = sx[ax + 1..].iter().product();
                let (lo, w, hi) = (*before as usize * inner, sx[ax] * inner, *after as usize * inner);
                for (i, row) in o.chunks_exact_mut((lo + w + hi).max(1)).enumerate().take(outer) {
                    row[..lo].fill(Default::default());
                    row[lo..lo + w].clone_from_slice(&a[i * w..(i + 1) * w]);
                    row[lo + w..].fill(Default::default());
                }
                Ok(())
            }),
            OpKind::Concat { axis } => {
                let ax = axis_of(*axis, so.len());
                let outer: usize = so[..ax].iter().product();
                let inner: usize = so[ax + 1..].iter().product();
                let row = so[ax] * inner;
                let mut off = 0;
                for t in ins {
                    let w = t.shape()[ax] * inner;
                    same_type!(t.data(), out.data_mut(), (a, o) => {
                        for i in 0..outer {
                            o[i * row + off..i * row + off + w].clone_from_slice(&a[i * w..(i + 1) * w]);
                        }
                        Ok(())
                    })?;
                    off += w;
                }
                Ok(())
            }
            OpKind::Gather { axis } => {
                let ax = axis_of(*axis, sx.len());
                let idx = ins[1];
                let size = sx[ax];
                let ids = (0..idx.len())
                    .map(|i| {
                        let v = idx.data().get_f64(i);
                        if v < 0.0 || v >= size as f64 {
                            Err(KernelError::IndexOutOfRange { index: v, size })
                        } else {
                            Ok(v as usize)
                        }
                    })
                    .collect::<Result<Vec<usize>, KernelError>>()?;
                let outer: usize = sx[..ax].iter().product();
                let inner: usize = sx[ax + 1..].iter().product();
                same_type!(x.data(), out.data_mut(), (a, o) => {
                    let mut p = 0;
                    for i in 0..outer {
                        for &j in &ids {
                            let src = (i * size + j) * inner;
                            o[p..p + inner].clone_from_slice(&a[src..src + inner]);
                            p += inner;
                        }
                    }
                    Ok(())
                })
            }
            OpKind::RepeatInterleave { axis, repeats } => {
                let ax = axis_of(*axis, sx.len());
                let outer: usize = sx[..ax].iter().product();
                let inner: usize = sx[ax + 1..].iter().product();
                same_type!(x.data(), out.data_mut(), (a, o) => {
                    let mut p = 0;
                    for i in 0..outer * sx[ax] {
                        for _ in 0..*repeats {
                            o[p..p + inner].clone_from_slice(&a[i * inner..(i + 1) * inner]);
                            p += inner;
                        }
                    }
                    Ok(())
                })
            }
            other => Err(wrong_op("movement", other)),
        }
    })
}

fn cast_kernel() -> Kernel {
    Kernel::new(|op, ins, out| {
        let OpKind::Cast { to } = op else {
            return Err(wrong_op("cast", op));
        };
        let c = ins[0].cast(*to);
        *out.data_mut() = c.into_parts().1;
        Ok(())
    })
}

fn where_kernel() -> Kernel {
    Kernel::new(|_, ins, out| {
        let so = IxDyn(out.shape());
        let Data::Bool(c) = ins[0].data() else {
            return Err(KernelError::DType {
                what: "the condition",
                expected: DType::Bool,
                got: ins[0].dtype(),
            });
        };
        let to = out.shape().to_vec();
        let no_broadcast = |what: &'static str, t: &Tensor| KernelError::Broadcast {
            what,
            from: t.shape().to_vec(),
            to: to.clone(),
        };
        let cv = ArrayViewD::from_shape(IxDyn(ins[0].shape()), &c[..])?;
        let cb = cv
            .broadcast(so.clone())
            .ok_or_else(|| no_broadcast("condition", ins[0]))?;
        let (sa, sb) = (IxDyn(ins[1].shape()), IxDyn(ins[2].shape()));
        let oshape = so.clone();
        same_type!(ins[1].data(), out.data_mut(), (a, o) => {
            let Some(b) = typed_like(ins[2].data(), a) else {
                return Err(KernelError::MixedDTypes {
                    first: ins[1].dtype(),
                    second: ins[2].dtype(),
                });
            };
            let av = ArrayViewD::from_shape(sa.clone(), &a[..])?;
            let bv = ArrayViewD::from_shape(sb.clone(), b)?;
            let ab = av.broadcast(so.clone()).ok_or_else(|| no_broadcast("value", ins[1]))?;
            let bb = bv.broadcast(so.clone()).ok_or_else(|| no_broadcast("value", ins[2]))?;
            let mut ov = ArrayViewMutD::from_shape(oshape.clone(), &mut o[..])?;
            Zip::from(&mut ov).and(&cb).and(&ab).and(&bb).for_each(|o, &c, x, y| {
                *o = if c { *x } else { *y };
            });
            Ok(())
        })
    })
}

/// `d`'s elements if they have the type of `like`.
fn typed_like<'a, T: 'static>(d: &'a Data, _like: &[T]) -> Option<&'a [T]> {
    use std::any::Any;
    let any: &dyn Any = match d {
        Data::F32(v) => v,
        Data::F16(v) => v,
        Data::BF16(v) => v,
        Data::F64(v) => v,
        Data::I64(v) => v,
        Data::I32(v) => v,
        Data::Bool(v) => v,
    };
    any.downcast_ref::<Vec<T>>().map(Vec::as_slice)
}

/// An f32 kernel run on f16/bf16 tensors: float inputs converted to f32, the result
/// rounded back (so accumulation is in f32).
fn via_f32(k: &Kernel) -> Kernel {
    let run: KernelFn = k.run.clone();
    Kernel::new(move |op, ins, out| {
        let conv: Vec<Tensor> = ins
            .iter()
            .map(|t| match t.dtype() {
                DType::F16 | DType::BF16 => t.cast(DType::F32),
                _ => (*t).clone(),
            })
            .collect();
        let refs: Vec<&Tensor> = conv.iter().collect();
        let mut tmp = Tensor::zeros(DType::F32, out.shape());
        run(op, &refs, &mut tmp)?;
        *out.data_mut() = tmp.cast(out.dtype()).into_parts().1;
        Ok(())
    })
}

const ALL_TYPES: [DType; 7] = [
    DType::F32,
    DType::F16,
    DType::BF16,
    DType::F64,
    DType::I64,
    DType::I32,
    DType::Bool,
];

/// Registers every built-in CPU kernel.
pub(crate) fn register(r: &mut Registry) {
    let mut compute: Vec<(String, Kernel)> = Vec::new();
    let unary = unary_kernel();
    for f in UnaryOp::ALL {
        compute.push((OpKind::Unary { f }.name(), unary.clone()));
    }
    let binary = binary_kernel();
    for f in BinaryOp::ALL {
        compute.push((OpKind::Binary { f }.name(), binary.clone()));
    }
    compute.push(("swiglu".into(), binary));
    let norm = norm_kernel();
    for n in ["layer_norm", "fused_layer_norm_gelu", "rms_norm"] {
        compute.push((n.into(), norm.clone()));
    }
    let reduce = reduce_kernel();
    for n in ["reduce_sum", "reduce_mean", "reduce_max", "reduce_min"] {
        compute.push((n.into(), reduce.clone()));
    }
    let mm = matmul_kernel();
    compute.push(("matmul".into(), mm.clone()));
    compute.push(("linear".into(), mm));
    compute.push(("softmax".into(), softmax_kernel()));
    compute.push(("attention".into(), attention_kernel()));
    compute.push(("grouped_attention".into(), attention_kernel()));
    compute.push(("rope".into(), rope_kernel()));
    compute.push(("causal_mask".into(), causal_mask_kernel()));
    compute.push(("padding_mask".into(), padding_mask_kernel()));
    // The training ops in f32 by the generic kernels.
    let generic = reference::compute_kernel::<f32>();
    for n in ["log_softmax", "scatter_add"] {
        compute.push((n.into(), generic.clone()));
    }
    let ce = cross_entropy_kernel();
    compute.push(("cross_entropy".into(), ce.clone()));
    compute.push(("cross_entropy_backward".into(), ce));
    // Every compute op in f64 by the generic kernels.
    let double = reference::compute_kernel::<f64>();
    for (name, _) in &compute {
        r.register(name, Device::Cpu, DType::F64, double.clone());
    }
    for (name, k) in compute {
        r.register(&name, Device::Cpu, DType::F32, k.clone());
        let half = via_f32(&k);
        r.register(&name, Device::Cpu, DType::F16, half.clone());
        r.register(&name, Device::Cpu, DType::BF16, half);
    }
    let mv = movement_kernel().with_inplace(|op, _io, _| match op {
        // A reshape of a dead input only relabels it (the executor sets the shape).
        OpKind::Reshape { .. } => Ok(()),
        other => Err(KernelError::NoInplace { op: other.name() }),
    });
    let plain_mv = movement_kernel();
    for t in ALL_TYPES {
        r.register("reshape", Device::Cpu, t, mv.clone());
        for n in [
            "permute",
            "slice",
            "concat",
            "gather",
            "repeat_interleave",
            "expand_as",
            "pad",
        ] {
            r.register(n, Device::Cpu, t, plain_mv.clone());
        }
        r.register("cast", Device::Cpu, t, cast_kernel());
        r.register("where", Device::Cpu, t, where_kernel());
    }
}
