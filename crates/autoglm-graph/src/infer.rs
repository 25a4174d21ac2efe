//! Type and shape inference for every built-in op.

use crate::op::{OpKind, UnaryOp};
use crate::types::{shape, DType, Dim, Shape, TensorType};

/// An axis (negative counts from the end) as an index into a rank-`rank` shape.
fn axis(a: i64, rank: usize) -> Result<usize, String> {
    let r = rank as i64;
    let i = if a < 0 { a + r } else { a };
    if (0..r).contains(&i) {
        Ok(i as usize)
    } else {
        Err(format!("axis {a} is out of range for rank {rank}"))
    }
}

/// NumPy broadcasting of two shapes (aligned on the right; a dimension of 1 stretches;
/// symbolic dimensions must match by name).
pub fn broadcast(a: &Shape, b: &Shape) -> Result<Shape, String> {
    let n = a.len().max(b.len());
    let one = Dim::Known(1);
    let at = |s: &Shape, i: usize| -> Dim {
        let pad = n - s.len();
        if i < pad {
            one.clone()
        } else {
            s[i - pad].clone()
        }
    };
    (0..n)
        .map(|i| {
            let (x, y) = (at(a, i), at(b, i));
            if x == y || y == one {
                Ok(x)
            } else if x == one {
                Ok(y)
            } else {
                Err(format!(
                    "shapes {a:?} and {b:?} do not broadcast (dimension {x} vs {y})"
                ))
            }
        })
        .collect()
}

fn same_dtype(types: &[&TensorType]) -> Result<DType, String> {
    let d = types[0].dtype;
    match types.iter().find(|t| t.dtype != d) {
        Some(t) => Err(format!("element types differ: {d} and {}", t.dtype)),
        None => Ok(d),
    }
}

fn float(t: &TensorType, what: &str) -> Result<(), String> {
    if t.dtype.is_float() {
        Ok(())
    } else {
        Err(format!(
            "{what} needs a floating-point input, got {}",
            t.dtype
        ))
    }
}

/// Symbols and known-size product of a shape, for comparing element counts (a
/// product symbol `b*t` counts as its factors).
fn volume(s: &Shape) -> (Vec<&str>, u64) {
    let mut syms = Vec::new();
    let mut known = 1u64;
    for d in s {
        match d {
            Dim::Known(n) => known = known.saturating_mul(*n),
            Dim::Sym(x) if x.contains('*') && !x.contains('+') => {
                for f in x.split('*') {
                    match f.parse::<u64>() {
                        Ok(n) => known = known.saturating_mul(n),
                        Err(_) => syms.push(f),
                    }
                }
            }
            Dim::Sym(x) => syms.push(x.as_str()),
        }
    }
    syms.sort_unstable();
    (syms, known)
}

/// The output type of `op` applied to inputs of types `inputs`.
///
/// # Errors
/// A message saying what does not fit (wrong input count, element types, ranks,
/// dimensions or attributes).
pub fn infer(op: &OpKind, inputs: &[&TensorType]) -> Result<TensorType, String> {
    if let Some(n) = op.arity() {
        if inputs.len() != n {
            return Err(format!(
                "{} takes {n} inputs, got {}",
                op.name(),
                inputs.len()
            ));
        }
    } else if inputs.is_empty() {
        return Err(format!("{} needs at least one input", op.name()));
    }
    match op {
        OpKind::Input { ty, .. } | OpKind::Parameter { ty, .. } => Ok(ty.clone()),
        OpKind::Constant { dtype, .. } => Ok(TensorType::new::<Dim>(*dtype, [])),
        OpKind::Unary { f } => {
            let x = inputs[0];
            if *f != UnaryOp::Neg {
                float(x, &op.name())?;
            }
            Ok(x.clone())
        }
        OpKind::Binary { .. } => Ok(TensorType {
            dtype: same_dtype(inputs)?,
            shape: broadcast(&inputs[0].shape, &inputs[1].shape)?,
        }),
        OpKind::MatMul => {
            let (a, b) = (inputs[0], inputs[1]);
            let dtype = same_dtype(inputs)?;
            if a.rank() < 2 || b.rank() < 2 {
                return Err(format!("matmul needs rank ≥ 2, got {a} and {b}"));
            }
            let (ra, rb) = (a.rank(), b.rank());
            if a.shape[ra - 1] != b.shape[rb - 2] {
                return Err(format!("matmul inner dimensions differ: {a} × {b}"));
            }
            let batch_a: Shape = a.shape[..ra - 2].iter().cloned().collect();
            let batch_b: Shape = b.shape[..rb - 2].iter().cloned().collect();
            let mut shape = broadcast(&batch_a, &batch_b)?;
            shape.push(a.shape[ra - 2].clone());
            shape.push(b.shape[rb - 1].clone());
            Ok(TensorType { dtype, shape })
        }
        OpKind::Reduce {
            axes, keep_dims, ..
        } => {
            let x = inputs[0];
            let mut idx = axes
                .iter()
                .map(|&a| axis(a, x.rank()))
                .collect::<Result<Vec<_>, _>>()?;
            idx.sort_unstable();
            if idx.windows(2).any(|w| w[0] == w[1]) {
                return Err(format!("axes {axes:?} repeat an axis"));
            }
            let shape = x
                .shape
                .iter()
                .enumerate()
                .filter_map(|(i, d)| match (idx.contains(&i), keep_dims) {
                    (false, _) => Some(d.clone()),
                    (true, true) => Some(Dim::Known(1)),
                    (true, false) => None,
                })
                .collect();
            Ok(TensorType {
                dtype: x.dtype,
                shape,
            })
        }
        OpKind::LogSoftmax { axis: a } => {
            float(inputs[0], "log_softmax")?;
            axis(*a, inputs[0].rank())?;
            Ok(inputs[0].clone())
        }
        OpKind::CrossEntropy { .. } | OpKind::CrossEntropyBackward { .. } => {
            let (x, labels) = (inputs[0], inputs[1]);
            float(x, &op.name())?;
            if !matches!(labels.dtype, DType::I64 | DType::I32) {
                return Err(format!("{} needs integer labels, got {labels}", op.name()));
            }
            if x.rank() < 1 || labels.shape[..] != x.shape[..x.rank() - 1] {
                return Err(format!(
                    "{} needs logits [..., vocab] and labels [...]; got {x} and {labels}",
                    op.name()
                ));
            }
            if let Some(dy) = inputs.get(2) {
                if dy.dtype != x.dtype || dy.shape.iter().any(|d| *d != Dim::Known(1)) {
                    return Err(format!(
                        "cross_entropy_backward needs a scalar gradient of the logits' type, got {dy}"
                    ));
                }
                return Ok(x.clone());
            }
            Ok(TensorType::new::<Dim>(x.dtype, []))
        }
        OpKind::ScatterAdd { axis: a } => {
            let (like, idx, upd) = (inputs[0], inputs[1], inputs[2]);
            let gathered = infer(&OpKind::Gather { axis: *a }, &[like, idx])?;
            if upd.shape != gathered.shape || upd.dtype != like.dtype {
                return Err(format!(
                    "scatter_add updates must be {gathered} (gather's result), got {upd}"
                ));
            }
            Ok(like.clone())
        }
        OpKind::ExpandAs => {
            let (x, like) = (inputs[0], inputs[1]);
            if broadcast(&x.shape, &like.shape)? != like.shape {
                return Err(format!("expand_as: {x} does not broadcast to {like}"));
            }
            Ok(TensorType {
                dtype: x.dtype,
                shape: like.shape.clone(),
            })
        }
        OpKind::Pad {
            axis: a,
            before,
            after,
        } => {
            let x = inputs[0];
            let ax = axis(*a, x.rank())?;
            let size = x.shape[ax]
                .known()
                .ok_or_else(|| format!("pad axis {a} has the symbolic size {}", x.shape[ax]))?;
            let mut shape = x.shape.clone();
            shape[ax] = Dim::Known(before + size + after);
            Ok(TensorType {
                dtype: x.dtype,
                shape,
            })
        }
        OpKind::Softmax { axis: a } => {
            float(inputs[0], "softmax")?;
            axis(*a, inputs[0].rank())?;
            Ok(inputs[0].clone())
        }
        OpKind::LayerNorm { .. } | OpKind::RmsNorm { .. } | OpKind::FusedLayerNormGelu { .. } => {
            let x = inputs[0];
            float(x, &op.name())?;
            same_dtype(inputs)?;
            let Some(last) = x.shape.last() else {
                return Err(format!("{} needs rank ≥ 1", op.name()));
            };
            for p in &inputs[1..] {
                if p.shape.len() != 1 || &p.shape[0] != last {
                    return Err(format!(
                        "{}: scale/shift {p} must be [{last}] (the last dimension of {x})",
                        op.name()
                    ));
                }
            }
            Ok(x.clone())
        }
        OpKind::Reshape { shape } => {
            let x = inputs[0];
            if volume(&x.shape) != volume(shape) {
                return Err(format!(
                    "reshape of {x} to {:?} changes the number of elements",
                    shape.iter().map(ToString::to_string).collect::<Vec<_>>()
                ));
            }
            Ok(TensorType {
                dtype: x.dtype,
                shape: shape.clone(),
            })
        }
        OpKind::Permute { perm } => {
            let x = inputs[0];
            let mut seen = vec![false; x.rank()];
            if perm.len() != x.rank()
                || perm
                    .iter()
                    .any(|&p| p >= x.rank() || std::mem::replace(&mut seen[p], true))
            {
                return Err(format!(
                    "{perm:?} is not a permutation of the {} axes of {x}",
                    x.rank()
                ));
            }
            Ok(TensorType {
                dtype: x.dtype,
                shape: perm.iter().map(|&p| x.shape[p].clone()).collect(),
            })
        }
        OpKind::Concat { axis: a } => {
            let dtype = same_dtype(inputs)?;
            let first = inputs[0];
            let ax = axis(*a, first.rank())?;
            let mut total = 0u64;
            let mut terms: Vec<&str> = Vec::new();
            for t in inputs {
                if t.rank() != first.rank()
                    || t.shape
                        .iter()
                        .zip(&first.shape)
                        .enumerate()
                        .any(|(i, (x, y))| i != ax && x != y)
                {
                    return Err(format!("concat inputs {first} and {t} differ off axis {a}"));
                }
                match &t.shape[ax] {
                    Dim::Known(n) => total += n,
                    Dim::Sym(s) => terms.push(s),
                }
            }
            let mut shape = first.shape.clone();
            // Symbolic sizes add up to a sum symbol (`p+t`), which the executor
            // evaluates from its terms.
            shape[ax] = if terms.is_empty() {
                Dim::Known(total)
            } else {
                let mut name = terms.join("+");
                if total > 0 {
                    name.push_str(&format!("+{total}"));
                }
                Dim::Sym(name)
            };
            Ok(TensorType { dtype, shape })
        }
        OpKind::Slice {
            axis: a,
            start,
            end,
        } => {
            let x = inputs[0];
            let ax = axis(*a, x.rank())?;
            let size = x.shape[ax]
                .known()
                .ok_or_else(|| format!("slice axis {a} has the symbolic size {}", x.shape[ax]))?;
            if start > end || *end > size {
                return Err(format!("slice {start}..{end} is outside 0..{size} of {x}"));
            }
            let mut shape = x.shape.clone();
            shape[ax] = Dim::Known(end - start);
            Ok(TensorType {
                dtype: x.dtype,
                shape,
            })
        }
        OpKind::Gather { axis: a } => {
            let (data, idx) = (inputs[0], inputs[1]);
            if !matches!(idx.dtype, DType::I64 | DType::I32) {
                return Err(format!("gather needs integer indices, got {idx}"));
            }
            let ax = axis(*a, data.rank())?;
            let shape = data.shape[..ax]
                .iter()
                .chain(&idx.shape)
                .chain(&data.shape[ax + 1..])
                .cloned()
                .collect();
            Ok(TensorType {
                dtype: data.dtype,
                shape,
            })
        }
        OpKind::RepeatInterleave { axis: a, repeats } => {
            let x = inputs[0];
            let ax = axis(*a, x.rank())?;
            let size = x.shape[ax].known().ok_or_else(|| {
                format!(
                    "repeat_interleave axis {a} has the symbolic size {}",
                    x.shape[ax]
                )
            })?;
            if *repeats == 0 {
                return Err("repeat_interleave needs repeats ≥ 1".into());
            }
            let mut shape = x.shape.clone();
            shape[ax] = Dim::Known(size * repeats);
            Ok(TensorType {
                dtype: x.dtype,
                shape,
            })
        }
        OpKind::Cast { to } => Ok(TensorType {
            dtype: *to,
            shape: inputs[0].shape.clone(),
        }),
        OpKind::Where => {
            let (c, a, b) = (inputs[0], inputs[1], inputs[2]);
            if c.dtype != DType::Bool {
                return Err(format!("where needs a bool condition, got {c}"));
            }
            let dtype = same_dtype(&inputs[1..])?;
            let shape = broadcast(&broadcast(&c.shape, &a.shape)?, &b.shape)?;
            Ok(TensorType { dtype, shape })
        }
        OpKind::Linear => {
            let (x, w, b) = (inputs[0], inputs[1], inputs[2]);
            let dtype = same_dtype(inputs)?;
            if x.rank() < 1 || w.rank() != 2 || b.rank() != 1 {
                return Err(format!(
                    "linear needs x [..., k], w [k, n], b [n]; got {x}, {w}, {b}"
                ));
            }
            if x.shape[x.rank() - 1] != w.shape[0] || w.shape[1] != b.shape[0] {
                return Err(format!("linear dimensions differ: {x} · {w} + {b}"));
            }
            let mut shape = x.shape.clone();
            *shape.last_mut().expect("rank ≥ 1") = w.shape[1].clone();
            Ok(TensorType { dtype, shape })
        }
        OpKind::SwiGlu => {
            float(inputs[0], "swiglu")?;
            same_dtype(inputs)?;
            if inputs[0].shape != inputs[1].shape {
                return Err(format!(
                    "swiglu needs equal shapes, got {} and {}",
                    inputs[0], inputs[1]
                ));
            }
            Ok(inputs[0].clone())
        }
        OpKind::Attention { .. } => {
            let (q, kt, v, m) = (inputs[0], inputs[1], inputs[2], inputs[3]);
            float(q, "attention")?;
            let dtype = same_dtype(inputs)?;
            let r = q.rank();
            if r < 2 || kt.rank() != r || v.rank() != r {
                return Err(format!(
                    "attention needs q, kt, v of one rank ≥ 2; got {q}, {kt}, {v}"
                ));
            }
            if q.shape[..r - 2] != kt.shape[..r - 2] || q.shape[..r - 2] != v.shape[..r - 2] {
                return Err(format!("attention batch dimensions differ: {q}, {kt}, {v}"));
            }
            if q.shape[r - 1] != kt.shape[r - 2] || kt.shape[r - 1] != v.shape[r - 2] {
                return Err(format!(
                    "attention needs q [..,t,d], kt [..,d,s], v [..,s,e]; got {q}, {kt}, {v}"
                ));
            }
            let mut scores = q.shape.clone();
            scores[r - 1] = kt.shape[r - 1].clone();
            if broadcast(&scores, &m.shape)? != scores {
                return Err(format!(
                    "attention mask {m} does not broadcast to the scores {scores:?}"
                ));
            }
            let mut shape = q.shape.clone();
            shape[r - 1] = v.shape[r - 1].clone();
            Ok(TensorType { dtype, shape })
        }
        OpKind::GroupedAttention { .. } => {
            let (q, k, v, m) = (inputs[0], inputs[1], inputs[2], inputs[3]);
            float(q, "grouped_attention")?;
            let dtype = same_dtype(inputs)?;
            let r = q.rank();
            if r < 3 || k.rank() != r || v.rank() != r {
                return Err(format!(
                    "grouped_attention needs q, k, v of one rank ≥ 3; got {q}, {k}, {v}"
                ));
            }
            if q.shape[..r - 3] != k.shape[..r - 3] || k.shape[..r - 2] != v.shape[..r - 2] {
                return Err(format!(
                    "grouped_attention batch dimensions differ: {q}, {k}, {v}"
                ));
            }
            if q.shape[r - 1] != k.shape[r - 1] || k.shape[r - 2] != v.shape[r - 2] {
                return Err(format!(
                    "grouped_attention needs q [..,hq,t,d], k [..,hkv,s,d], v [..,hkv,s,e]; got {q}, {k}, {v}"
                ));
            }
            match (q.shape[r - 3].known(), k.shape[r - 3].known()) {
                (Some(hq), Some(hkv)) if hkv > 0 && hq % hkv == 0 => {}
                (Some(_), Some(_)) => {
                    return Err(format!(
                        "grouped_attention needs a multiple of the key heads as query heads; got {q}, {k}"
                    ))
                }
                _ if q.shape[r - 3] == k.shape[r - 3] => {}
                _ => {
                    return Err(format!(
                        "grouped_attention needs known head counts where q and k differ; got {q}, {k}"
                    ))
                }
            }
            let mut scores = q.shape.clone();
            scores[r - 1] = k.shape[r - 2].clone();
            if broadcast(&scores, &m.shape)? != scores {
                return Err(format!(
                    "grouped_attention mask {m} does not broadcast to the scores {scores:?}"
                ));
            }
            let mut shape = q.shape.clone();
            shape[r - 1] = v.shape[r - 1].clone();
            Ok(TensorType { dtype, shape })
        }
        OpKind::Rope { rot } => {
            let (x, cos, sin) = (inputs[0], inputs[1], inputs[2]);
            float(x, "rope")?;
            same_dtype(inputs)?;
            let r = x.rank();
            if r < 2 || rot % 2 != 0 || *rot == 0 {
                return Err(format!(
                    "rope needs x [..., t, d] and an even rot > 0; got {x}, rot {rot}"
                ));
            }
            let d = x.shape[r - 1]
                .known()
                .ok_or_else(|| format!("rope: head dim of {x} must be known"))?;
            if *rot > d {
                return Err(format!("rope: rot {rot} exceeds the head dim {d}"));
            }
            let table = shape([x.shape[r - 2].clone(), Dim::Known(*rot)]);
            if cos.shape != table || sin.shape != table {
                return Err(format!(
                    "rope tables must be {table:?}, got {cos} and {sin}"
                ));
            }
            Ok(x.clone())
        }
        OpKind::CausalMask { dtype } => {
            if !dtype.is_float() {
                return Err(format!(
                    "causal_mask needs a float element type, got {dtype}"
                ));
            }
            let t = inputs[0]
                .shape
                .last()
                .ok_or("causal_mask needs an input of rank ≥ 1")?;
            Ok(TensorType {
                dtype: *dtype,
                shape: shape([t.clone(), t.clone()]),
            })
        }
        OpKind::PaddingMask { dtype } => {
            let (len, like) = (inputs[0], inputs[1]);
            if !dtype.is_float() {
                return Err(format!(
                    "padding_mask needs a float element type, got {dtype}"
                ));
            }
            if !matches!(len.dtype, DType::I64 | DType::I32) || len.rank() != 1 {
                return Err(format!("padding_mask needs integer lengths [b], got {len}"));
            }
            if like.rank() < 2 || like.shape[0] != len.shape[0] {
                return Err(format!(
                    "padding_mask needs like [b, t, …] with b from {len}, got {like}"
                ));
            }
            Ok(TensorType {
                dtype: *dtype,
                shape: shape([
                    like.shape[0].clone(),
                    Dim::Known(1),
                    Dim::Known(1),
                    like.shape[1].clone(),
                ]),
            })
        }
        OpKind::Custom { name, .. } => Err(format!(
            "custom op '{name}' is not registered with the graph (Graph::register_op)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::op::{BinaryOp, ReduceOp};
    use crate::types::shape;

    fn t(dims: &[Dim]) -> TensorType {
        TensorType {
            dtype: DType::F32,
            shape: dims.iter().cloned().collect(),
        }
    }

    #[test]
    fn broadcasting_with_symbols() {
        let b = Dim::sym("batch");
        let a = t(&[b.clone(), 1.into(), 8.into()]);
        let c = t(&[4.into(), 1.into()]);
        let add = OpKind::Binary { f: BinaryOp::Add };
        assert_eq!(
            infer(&add, &[&a, &c]).unwrap(),
            t(&[b.clone(), 4.into(), 8.into()])
        );
        let bad = t(&[Dim::sym("seq"), 4.into(), 8.into()]);
        let e = infer(&add, &[&a, &bad]).unwrap_err();
        assert!(e.contains("do not broadcast"), "{e}");
    }

    #[test]
    fn matmul_reduce_reshape_permute() {
        let s = Dim::sym("s");
        let x = t(&[2.into(), s.clone(), 64.into()]);
        let w = t(&[64.into(), 128.into()]);
        assert_eq!(
            infer(&OpKind::MatMul, &[&x, &w]).unwrap(),
            t(&[2.into(), s.clone(), 128.into()])
        );
        assert!(infer(&OpKind::MatMul, &[&w, &x])
            .unwrap_err()
            .contains("inner"));
        let r = OpKind::Reduce {
            f: ReduceOp::Mean,
            axes: vec![-1],
            keep_dims: true,
        };
        assert_eq!(
            infer(&r, &[&x]).unwrap(),
            t(&[2.into(), s.clone(), 1.into()])
        );
        let rs = OpKind::Reshape {
            shape: shape([Dim::Known(2), s.clone(), 8.into(), 8.into()]),
        };
        assert_eq!(infer(&rs, &[&x]).unwrap().rank(), 4);
        let bad = OpKind::Reshape {
            shape: shape([Dim::Known(2), 64.into()]),
        };
        assert!(infer(&bad, &[&x])
            .unwrap_err()
            .contains("number of elements"));
        let p = OpKind::Permute {
            perm: vec![1, 0, 2],
        };
        assert_eq!(
            infer(&p, &[&x]).unwrap(),
            t(&[s.clone(), 2.into(), 64.into()])
        );
        assert!(infer(
            &OpKind::Permute {
                perm: vec![0, 0, 1]
            },
            &[&x]
        )
        .is_err());
        let sl = OpKind::Slice {
            axis: -1,
            start: 0,
            end: 32,
        };
        assert_eq!(infer(&sl, &[&x]).unwrap(), t(&[2.into(), s, 32.into()]));
    }
}
