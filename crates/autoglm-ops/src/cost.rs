//! Cost estimates of the built-in ops.

use autoglm_graph::{OpKind, TensorType};

use crate::registry::Cost;

fn elems(t: &TensorType) -> f64 {
    t.num_elements().unwrap_or(0) as f64
}

fn dim(t: &TensorType, from_end: usize) -> f64 {
    t.shape
        .get(t.rank().wrapping_sub(from_end))
        .and_then(|d| d.known())
        .unwrap_or(0) as f64
}

/// FLOPs counted as the benchmark scripts count them (2 per multiply-add of the
/// matrix products, one per element otherwise) and bytes read plus written.
pub(crate) fn builtin_cost(op: &OpKind, inputs: &[&TensorType], out: &TensorType) -> Cost {
    let bytes = inputs
        .iter()
        .map(|t| elems(t) * t.dtype.size_bytes() as f64)
        .sum::<f64>()
        + elems(out) * out.dtype.size_bytes() as f64;
    let flops = match op {
        // out [..., m, n] from a [..., m, k]
        OpKind::MatMul | OpKind::Linear => 2.0 * elems(out) * dim(inputs[0], 1),
        // q [..., t, d] · kt [..., d, s], then p [..., t, s] · v [..., s, e]
        OpKind::Attention { .. } => {
            let (t, d, s, e) = (
                dim(inputs[0], 2),
                dim(inputs[0], 1),
                dim(inputs[1], 1),
                dim(inputs[2], 1),
            );
            let batch = if t > 0.0 {
                elems(inputs[0]) / (t * d.max(1.0))
            } else {
                0.0
            };
            2.0 * batch * t * s * (d + e)
        }
        // q [..., hq, t, d] · k [..., hkv, s, d]ᵀ, then p [..., hq, t, s] · v [..., hkv, s, e]
        OpKind::GroupedAttention { .. } => {
            let (d, s, e) = (dim(inputs[0], 1), dim(inputs[1], 2), dim(inputs[2], 1));
            2.0 * elems(inputs[0]) / d.max(1.0) * s * (d + e)
        }
        OpKind::Input { .. } | OpKind::Parameter { .. } | OpKind::Constant { .. } => 0.0,
        _ => elems(out),
    };
    Cost { flops, bytes }
}
