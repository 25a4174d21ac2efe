//! Kernels generic over the float type, written for clarity rather than speed: every
//! compute op in f64 (finite-difference checks of gradients, users who need double
//! precision), and the training ops (log-softmax, cross-entropy and its gradient,
//! scatter-add) in f32 as well.

use autoglm_graph::{BinaryOp, DType, OpKind, ReduceOp, UnaryOp};
use ndarray::linalg::general_mat_mul;
use ndarray::{ArrayView2, ArrayViewD, ArrayViewMut2, ArrayViewMutD, Axis, IxDyn, Zip};

use super::{axis_of, batch_offsets, wrong_op, KResult};
use crate::error::KernelError;
use crate::registry::Kernel;
use crate::tensor::{Data, Tensor};

/// A float element type the generic kernels run on.
pub(crate) trait Real:
    num_traits::Float
    + ndarray::LinalgScalar
    + std::iter::Sum
    + std::ops::AddAssign
    + Send
    + Sync
    + std::fmt::Debug
    + 'static
{
    /// The element type.
    const DTYPE: DType;
    /// The error function.
    fn erf(self) -> Self;
    /// A tensor's elements, if of this type.
    fn of(t: &Tensor) -> Option<&[Self]>;
    /// A tensor's elements, if of this type.
    fn of_mut(t: &mut Tensor) -> Option<&mut [Self]>;
}

impl Real for f32 {
    const DTYPE: DType = DType::F32;
    fn erf(self) -> f32 {
        libm::erff(self)
    }
    fn of(t: &Tensor) -> Option<&[f32]> {
        t.as_f32()
    }
    fn of_mut(t: &mut Tensor) -> Option<&mut [f32]> {
        t.as_f32_mut()
    }
}

impl Real for f64 {
    const DTYPE: DType = DType::F64;
    fn erf(self) -> f64 {
        libm::erf(self)
    }
    fn of(t: &Tensor) -> Option<&[f64]> {
        match t.data() {
            Data::F64(v) => Some(v),
            _ => None,
        }
    }
    fn of_mut(t: &mut Tensor) -> Option<&mut [f64]> {
        match t.data_mut() {
            Data::F64(v) => Some(v),
            _ => None,
        }
    }
}

fn c<T: Real>(x: f64) -> T {
    T::from(x).expect("a float constant")
}

fn xs<T: Real>(t: &Tensor) -> Result<&[T], KernelError> {
    T::of(t).ok_or_else(|| KernelError::DType {
        what: "an input",
        expected: T::DTYPE,
        got: t.dtype(),
    })
}

fn xs_mut<T: Real>(t: &mut Tensor) -> Result<&mut [T], KernelError> {
    let d = t.dtype();
    T::of_mut(t).ok_or(KernelError::DType {
        what: "the output",
        expected: T::DTYPE,
        got: d,
    })
}

fn view<T: Real>(t: &Tensor) -> Result<ArrayViewD<'_, T>, KernelError> {
    Ok(ArrayViewD::from_shape(IxDyn(t.shape()), xs(t)?)?)
}

fn view_mut<T: Real>(t: &mut Tensor) -> Result<ArrayViewMutD<'_, T>, KernelError> {
    let shape = t.shape().to_vec();
    Ok(ArrayViewMutD::from_shape(IxDyn(&shape), xs_mut(t)?)?)
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

fn gelu<T: Real>(x: T) -> T {
    c::<T>(0.5) * x * (T::one() + (x * c(std::f64::consts::FRAC_1_SQRT_2)).erf())
}

/// `f(x)` for one element.
pub(crate) fn unary<T: Real>(f: UnaryOp, x: T) -> T {
    match f {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Erf => x.erf(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => T::one() / x.sqrt(),
        UnaryOp::Recip => T::one() / x,
        UnaryOp::Relu => x.max(T::zero()),
        UnaryOp::Silu => x * sigmoid(x),
        UnaryOp::Gelu => gelu(x),
        UnaryOp::GeluTanh => {
            let k: T = c((2.0 / std::f64::consts::PI).sqrt());
            c::<T>(0.5) * x * (T::one() + (k * (x + c::<T>(0.044715) * x * x * x)).tanh())
        }
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Step => {
            if x > T::zero() {
                T::one()
            } else {
                T::zero()
            }
        }
    }
}

fn binary<T: Real>(f: BinaryOp, a: T, b: T) -> T {
    match f {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
        // NaN-propagating, as PyTorch's maximum/minimum.
        BinaryOp::Max => {
            if a.is_nan() || b.is_nan() {
                T::nan()
            } else {
                a.max(b)
            }
        }
        BinaryOp::Min => {
            if a.is_nan() || b.is_nan() {
                T::nan()
            } else {
                a.min(b)
            }
        }
    }
}

/// Every compute op of the graph (the f64 kernels).
pub(crate) fn compute_kernel<T: Real>() -> Kernel {
    Kernel::new(|op, ins, out| compute::<T>(op, ins, out))
}

fn compute<T: Real>(op: &OpKind, ins: &[&Tensor], out: &mut Tensor) -> KResult {
    match op {
        OpKind::Unary { f } => {
            let x = xs::<T>(ins[0])?;
            for (o, &v) in xs_mut::<T>(out)?.iter_mut().zip(x) {
                *o = unary(*f, v);
            }
            Ok(())
        }
        OpKind::Binary { f } => broadcast2::<T>(ins[0], ins[1], out, |a, b| binary(*f, a, b)),
        OpKind::SwiGlu => broadcast2::<T>(ins[0], ins[1], out, |g, u| g * sigmoid(g) * u),
        OpKind::LayerNorm { eps }
        | OpKind::FusedLayerNormGelu { eps }
        | OpKind::RmsNorm { eps } => norm::<T>(op, *eps, ins, out),
        OpKind::Reduce { f, axes, .. } => reduce::<T>(*f, axes, ins[0], out),
        OpKind::MatMul => matmul::<T>(ins[0], ins[1], out),
        OpKind::Linear => {
            matmul::<T>(ins[0], ins[1], out)?;
            let b = xs::<T>(ins[2])?;
            for row in xs_mut::<T>(out)?.chunks_exact_mut(b.len().max(1)) {
                for (o, &v) in row.iter_mut().zip(b) {
                    *o += v;
                }
            }
            Ok(())
        }
        OpKind::Softmax { axis } | OpKind::LogSoftmax { axis } => {
            let log = matches!(op, OpKind::LogSoftmax { .. });
            let ax = axis_of(*axis, ins[0].shape().len());
            let x = view::<T>(ins[0])?;
            let mut o = view_mut::<T>(out)?;
            o.assign(&x);
            for mut lane in o.lanes_mut(Axis(ax)) {
                let m = lane.fold(T::neg_infinity(), |m, &v| m.max(v));
                let m = if m.is_finite() { m } else { T::zero() };
                lane.mapv_inplace(|v| v - m);
                let z: T = lane.iter().map(|v| v.exp()).sum();
                if log {
                    let lz = z.ln();
                    lane.mapv_inplace(|v| v - lz);
                } else {
                    lane.mapv_inplace(|v| v.exp() / z);
                }
            }
            Ok(())
        }
        OpKind::Attention { scale } | OpKind::GroupedAttention { scale } => {
            attention::<T>(op, c(*scale), ins, out)
        }
        OpKind::Rope { rot } => {
            let rot = *rot as usize;
            let half = rot / 2;
            let (x, cos, sin) = (xs::<T>(ins[0])?, xs::<T>(ins[1])?, xs::<T>(ins[2])?);
            let sh = ins[0].shape();
            let (t, d) = (sh[sh.len() - 2], sh[sh.len() - 1]);
            let o = xs_mut::<T>(out)?;
            for (r, (orow, xrow)) in o.chunks_exact_mut(d).zip(x.chunks_exact(d)).enumerate() {
                let ti = r % t;
                let (cs, sn) = (
                    &cos[ti * rot..(ti + 1) * rot],
                    &sin[ti * rot..(ti + 1) * rot],
                );
                orow.copy_from_slice(xrow);
                for i in 0..half {
                    let (x1, x2) = (xrow[i], xrow[i + half]);
                    orow[i] = x1 * cs[i] - x2 * sn[i];
                    orow[i + half] = x2 * cs[i + half] + x1 * sn[i + half];
                }
            }
            Ok(())
        }
        OpKind::CausalMask { .. } => {
            let t = out.shape()[0];
            for (i, row) in xs_mut::<T>(out)?.chunks_exact_mut(t.max(1)).enumerate() {
                for (j, v) in row.iter_mut().enumerate() {
                    *v = if j <= i { T::zero() } else { T::neg_infinity() };
                }
            }
            Ok(())
        }
        OpKind::PaddingMask { .. } => {
            let t = out.shape()[3];
            let lens = ins[0];
            for (b, row) in xs_mut::<T>(out)?.chunks_exact_mut(t.max(1)).enumerate() {
                let n = lens.data().get_f64(b);
                if n < 0.0 {
                    return Err(KernelError::NegativeLength { row: b, length: n });
                }
                for (j, v) in row.iter_mut().enumerate() {
                    *v = if (j as f64) < n {
                        T::zero()
                    } else {
                        T::neg_infinity()
                    };
                }
            }
            Ok(())
        }
        OpKind::CrossEntropy { ignore_index } => {
            cross_entropy::<T>(*ignore_index, ins[0], ins[1], None, out)
        }
        OpKind::CrossEntropyBackward { ignore_index } => {
            let dy = xs::<T>(ins[2])?.first().copied().unwrap_or_else(T::zero);
            cross_entropy::<T>(*ignore_index, ins[0], ins[1], Some(dy), out)
        }
        OpKind::ScatterAdd { axis } => scatter_add::<T>(*axis, ins, out),
        other => Err(wrong_op("generic", other)),
    }
}

/// `out = f(a, b)` with NumPy broadcasting.
fn broadcast2<T: Real>(a: &Tensor, b: &Tensor, out: &mut Tensor, f: impl Fn(T, T) -> T) -> KResult {
    let to = out.shape().to_vec();
    let so = IxDyn(&to);
    let (av, bv) = (view::<T>(a)?, view::<T>(b)?);
    let no_broadcast = |t: &Tensor| KernelError::Broadcast {
        what: "operand",
        from: t.shape().to_vec(),
        to: to.clone(),
    };
    let ab = av.broadcast(so.clone()).ok_or_else(|| no_broadcast(a))?;
    let bb = bv.broadcast(so.clone()).ok_or_else(|| no_broadcast(b))?;
    let mut o = view_mut::<T>(out)?;
    Zip::from(&mut o)
        .and(&ab)
        .and(&bb)
        .for_each(|o, &x, &y| *o = f(x, y));
    Ok(())
}

fn norm<T: Real>(op: &OpKind, eps: f64, ins: &[&Tensor], out: &mut Tensor) -> KResult {
    let x = xs::<T>(ins[0])?;
    let g = xs::<T>(ins[1])?;
    let b = ins.get(2).map(|t| xs::<T>(t)).transpose()?;
    let n = g.len().max(1);
    let nf: T = c(n as f64);
    let eps: T = c(eps);
    for (orow, xrow) in xs_mut::<T>(out)?.chunks_exact_mut(n).zip(x.chunks_exact(n)) {
        if let OpKind::RmsNorm { .. } = op {
            let ms = xrow.iter().map(|&v| v * v).sum::<T>() / nf;
            let r = T::one() / (ms + eps).sqrt();
            for ((o, &v), &w) in orow.iter_mut().zip(xrow).zip(g) {
                *o = v * r * w;
            }
            continue;
        }
        let mean = xrow.iter().copied().sum::<T>() / nf;
        let var = xrow.iter().map(|&v| (v - mean) * (v - mean)).sum::<T>() / nf;
        let r = T::one() / (var + eps).sqrt();
        let b = b.ok_or(KernelError::Arity {
            expected: 3,
            got: ins.len(),
        })?;
        for (((o, &v), &w), &s) in orow.iter_mut().zip(xrow).zip(g).zip(b) {
            let y = (v - mean) * r * w + s;
            *o = if let OpKind::FusedLayerNormGelu { .. } = op {
                gelu(y)
            } else {
                y
            };
        }
    }
    Ok(())
}

fn reduce<T: Real>(f: ReduceOp, axes: &[i64], x: &Tensor, out: &mut Tensor) -> KResult {
    let sx = x.shape().to_vec();
    let idx: Vec<usize> = axes.iter().map(|&a| axis_of(a, sx.len())).collect();
    let init = match f {
        ReduceOp::Sum | ReduceOp::Mean => T::zero(),
        ReduceOp::Max => T::neg_infinity(),
        ReduceOp::Min => T::infinity(),
    };
    let o = xs_mut::<T>(out)?;
    o.fill(init);
    // Output strides over the input's axes (0 on reduced axes).
    let mut strides = vec![0usize; sx.len()];
    let mut s = 1;
    for i in (0..sx.len()).rev() {
        if !idx.contains(&i) {
            strides[i] = s;
            s *= sx[i];
        }
    }
    let count: usize = idx.iter().map(|&i| sx[i]).product();
    for (flat, &v) in xs::<T>(x)?.iter().enumerate() {
        let (mut rem, mut at) = (flat, 0);
        for i in (0..sx.len()).rev() {
            at += (rem % sx[i]) * strides[i];
            rem /= sx[i];
        }
        let acc = &mut o[at];
        *acc = match f {
            ReduceOp::Sum | ReduceOp::Mean => *acc + v,
            ReduceOp::Max => binary(BinaryOp::Max, *acc, v),
            ReduceOp::Min => binary(BinaryOp::Min, *acc, v),
        };
    }
    if f == ReduceOp::Mean {
        let n: T = c(count as f64);
        o.iter_mut().for_each(|v| *v = *v / n);
    }
    Ok(())
}

/// Batched `[..., m, k] × [..., k, n]` with broadcast batch dims.
fn matmul<T: Real>(a: &Tensor, b: &Tensor, out: &mut Tensor) -> KResult {
    let (sa, sb, so) = (a.shape().to_vec(), b.shape().to_vec(), out.shape().to_vec());
    let (ra, rb, ro) = (sa.len(), sb.len(), so.len());
    if ra < 2 || rb < 2 || ro < 2 {
        return Err(KernelError::Shape(format!(
            "matrix product of {sa:?} and {sb:?} into {so:?}"
        )));
    }
    let (m, k, n) = (sa[ra - 2], sa[ra - 1], sb[rb - 1]);
    // Linear's weight is rank 2 under an input of any rank: fold the rows.
    let batch_out = &so[..ro - 2];
    let (oa, ob) = (
        batch_offsets(&sa[..ra - 2], batch_out, m * k),
        batch_offsets(&sb[..rb - 2], batch_out, k * n),
    );
    let (xa, xb) = (xs::<T>(a)?, xs::<T>(b)?);
    let o = xs_mut::<T>(out)?;
    for (i, oc) in o
        .chunks_exact_mut((m * n).max(1))
        .enumerate()
        .take(oa.len())
    {
        let av = ArrayView2::from_shape((m, k), &xa[oa[i]..oa[i] + m * k])?;
        let bv = ArrayView2::from_shape((k, n), &xb[ob[i]..ob[i] + k * n])?;
        let mut ov = ArrayViewMut2::from_shape((m, n), oc)?;
        general_mat_mul(T::one(), &av, &bv, T::zero(), &mut ov);
    }
    Ok(())
}

fn attention<T: Real>(op: &OpKind, scale: T, ins: &[&Tensor], out: &mut Tensor) -> KResult {
    let grouped = matches!(op, OpKind::GroupedAttention { .. });
    let (q, k, v, mask) = (ins[0], ins[1], ins[2], ins[3]);
    let r = q.shape().len();
    let (t, d) = (q.shape()[r - 2], q.shape()[r - 1]);
    let (s, group) = if grouped {
        let (hq, hkv) = (q.shape()[r - 3], k.shape()[r - 3]);
        if hkv == 0 || hq % hkv != 0 {
            return Err(KernelError::Shape(format!(
                "{hq} query heads do not share {hkv} key heads"
            )));
        }
        (k.shape()[r - 2], hq / hkv)
    } else {
        (k.shape()[r - 1], 1)
    };
    let e = v.shape()[r - 1];
    let (xq, xk, xv) = (xs::<T>(q)?, xs::<T>(k)?, xs::<T>(v)?);
    let mut target = q.shape()[..r - 2].to_vec();
    target.extend([t, s]);
    let mv = view::<T>(mask)?;
    let m = mv
        .broadcast(IxDyn(&target))
        .ok_or_else(|| KernelError::Broadcast {
            what: "mask",
            from: mask.shape().to_vec(),
            to: target.clone(),
        })?
        .as_standard_layout()
        .into_owned();
    let xm = m.as_slice().ok_or("the broadcast mask is not contiguous")?;
    let o = xs_mut::<T>(out)?;
    let mut sc = vec![T::zero(); s];
    for (i, oh) in o.chunks_exact_mut((t * e).max(1)).enumerate() {
        let kv = i / group;
        let (ki, vi) = (
            &xk[kv * s * d..(kv + 1) * s * d],
            &xv[kv * s * e..(kv + 1) * s * e],
        );
        for (row, orow) in oh.chunks_exact_mut(e.max(1)).enumerate() {
            let qr = &xq[(i * t + row) * d..(i * t + row + 1) * d];
            let mrow = &xm[(i * t + row) * s..(i * t + row + 1) * s];
            for (j, x) in sc.iter_mut().enumerate() {
                let dot: T = (0..d)
                    .map(|c| {
                        qr[c]
                            * if grouped {
                                ki[j * d + c]
                            } else {
                                ki[c * s + j]
                            }
                    })
                    .sum();
                *x = dot * scale + mrow[j];
            }
            let mx = sc.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
            let z: T = sc.iter().map(|&x| (x - mx).exp()).sum();
            for (cc, ov) in orow.iter_mut().enumerate() {
                *ov = (0..s)
                    .map(|j| (sc[j] - mx).exp() / z * vi[j * e + cc])
                    .sum();
            }
        }
    }
    Ok(())
}

/// Each row's target class, `None` for an ignored one.
pub(super) fn ce_targets(
    labels: &Tensor,
    ignore: i64,
    rows: usize,
    vocab: usize,
) -> Result<Vec<Option<usize>>, KernelError> {
    (0..rows)
        .map(|i| {
            let l = labels.data().get_f64(i) as i64;
            if l == ignore {
                Ok(None)
            } else if l < 0 || l as usize >= vocab {
                Err(KernelError::LabelOutOfRange {
                    label: l,
                    position: i,
                    classes: vocab,
                    ignore_index: ignore,
                })
            } else {
                Ok(Some(l as usize))
            }
        })
        .collect()
}

/// Mean cross-entropy over counted rows, or with `dy` its gradient.
fn cross_entropy<T: Real>(
    ignore: i64,
    logits: &Tensor,
    labels: &Tensor,
    dy: Option<T>,
    out: &mut Tensor,
) -> KResult {
    let vocab = *logits
        .shape()
        .last()
        .ok_or_else(|| KernelError::Shape("logits of rank 0".into()))?;
    let x = xs::<T>(logits)?;
    let targets = ce_targets(labels, ignore, x.len() / vocab.max(1), vocab)?;
    let count = targets.iter().filter(|t| t.is_some()).count();
    let n: T = c(count as f64);
    let lse = |row: &[T]| {
        let m = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
        let z: T = row.iter().map(|&v| (v - m).exp()).sum();
        (m, z)
    };
    match dy {
        None => {
            let mut total = T::zero();
            for (row, t) in x.chunks_exact(vocab.max(1)).zip(&targets) {
                if let Some(t) = t {
                    let (m, z) = lse(row);
                    total += m + z.ln() - row[*t];
                }
            }
            xs_mut::<T>(out)?[0] = total / n;
        }
        Some(dy) => {
            let k = dy / n;
            let o = xs_mut::<T>(out)?;
            for ((orow, row), t) in o
                .chunks_exact_mut(vocab.max(1))
                .zip(x.chunks_exact(vocab.max(1)))
                .zip(&targets)
            {
                match t {
                    None => orow.fill(T::zero()),
                    Some(t) => {
                        let (m, z) = lse(row);
                        for (ov, &v) in orow.iter_mut().zip(row) {
                            *ov = (v - m).exp() / z * k;
                        }
                        orow[*t] = orow[*t] - k;
                    }
                }
            }
        }
    }
    Ok(())
}

fn scatter_add<T: Real>(axis: i64, ins: &[&Tensor], out: &mut Tensor) -> KResult {
    let sx = ins[0].shape().to_vec();
    let ax = axis_of(axis, sx.len());
    let (idx, upd) = (ins[1], xs::<T>(ins[2])?);
    let size = sx[ax];
    let outer: usize = sx[..ax].iter().product();
    let inner: usize = sx[ax + 1..].iter().product();
    let o = xs_mut::<T>(out)?;
    o.fill(T::zero());
    let mut p = 0;
    for i in 0..outer {
        for n in 0..idx.len() {
            let v = idx.data().get_f64(n);
            if v < 0.0 || v >= size as f64 {
                return Err(KernelError::IndexOutOfRange { index: v, size });
            }
            let dst = (i * size + v as usize) * inner;
            for (a, &b) in o[dst..dst + inner].iter_mut().zip(&upd[p..p + inner]) {
                *a += b;
            }
            p += inner;
        }
    }
    Ok(())
}
