//! The built-in operations and their attributes.

use serde::{Deserialize, Serialize};

use crate::types::{DType, Shape, TensorType};

/// Elementwise functions of one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnaryOp {
    /// −x.
    Neg,
    /// eˣ.
    Exp,
    /// ln x.
    Log,
    /// tanh x.
    Tanh,
    /// The error function.
    Erf,
    /// √x.
    Sqrt,
    /// 1/√x.
    Rsqrt,
    /// 1/x.
    Recip,
    /// max(x, 0).
    Relu,
    /// x·σ(x).
    Silu,
    /// x·Φ(x) (the erf form).
    Gelu,
    /// The tanh approximation of GELU.
    GeluTanh,
    /// The logistic function 1/(1+e⁻ˣ).
    Sigmoid,
    /// The unit step: 1 where x > 0, else 0 (the derivative of ReLU, as PyTorch takes
    /// it).
    Step,
}

impl UnaryOp {
    /// Every unary function.
    pub const ALL: [UnaryOp; 14] = [
        UnaryOp::Neg,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Tanh,
        UnaryOp::Erf,
        UnaryOp::Sqrt,
        UnaryOp::Rsqrt,
        UnaryOp::Recip,
        UnaryOp::Relu,
        UnaryOp::Silu,
        UnaryOp::Gelu,
        UnaryOp::GeluTanh,
        UnaryOp::Sigmoid,
        UnaryOp::Step,
    ];
}

/// Elementwise functions of two inputs, with broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BinaryOp {
    /// a + b.
    Add,
    /// a − b.
    Sub,
    /// a · b.
    Mul,
    /// a / b.
    Div,
    /// aᵇ.
    Pow,
    /// max(a, b).
    Max,
    /// min(a, b).
    Min,
}

impl BinaryOp {
    /// Every binary function.
    pub const ALL: [BinaryOp; 7] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Max,
        BinaryOp::Min,
    ];
}

/// Reductions over axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReduceOp {
    /// Sum.
    Sum,
    /// Arithmetic mean.
    Mean,
    /// Maximum.
    Max,
    /// Minimum.
    Min,
}

/// An operation: what a node computes from its inputs. Axes may be negative (counted
/// from the last dimension).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum OpKind {
    /// A graph input fed at run time.
    Input {
        /// Its name (unique among inputs).
        name: String,
        /// Its type.
        ty: TensorType,
    },
    /// A trained parameter (weights), bound by name.
    Parameter {
        /// Its name (unique among parameters).
        name: String,
        /// Its type.
        ty: TensorType,
    },
    /// A scalar constant (shape `[]`), broadcast by the ops that use it.
    Constant {
        /// The value.
        value: f64,
        /// Its element type.
        dtype: DType,
    },
    /// An elementwise function.
    Unary {
        /// Which.
        f: UnaryOp,
    },
    /// An elementwise function of two broadcast inputs.
    Binary {
        /// Which.
        f: BinaryOp,
    },
    /// Batched matrix product `[..., m, k] × [..., k, n]`, batch dimensions broadcast.
    MatMul,
    /// A reduction.
    Reduce {
        /// Which.
        f: ReduceOp,
        /// Reduced axes.
        axes: Vec<i64>,
        /// Keep reduced axes as size 1.
        keep_dims: bool,
    },
    /// Softmax along an axis.
    Softmax {
        /// The axis.
        axis: i64,
    },
    /// Layer normalisation over the last axis: inputs `x`, `gamma`, `beta`.
    LayerNorm {
        /// Added to the variance.
        eps: f64,
    },
    /// `gelu(layer_norm(x, gamma, beta))` in one pass (the erf GELU).
    FusedLayerNormGelu {
        /// Added to the variance.
        eps: f64,
    },
    /// RMS normalisation over the last axis: inputs `x`, `gamma`.
    RmsNorm {
        /// Added to the mean square.
        eps: f64,
    },
    /// The same elements in a new shape.
    Reshape {
        /// The new shape.
        shape: Shape,
    },
    /// Axes reordered: output axis `i` is input axis `perm[i]`.
    Permute {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Inputs joined along an axis.
    Concat {
        /// The axis.
        axis: i64,
    },
    /// `start..end` along an axis.
    Slice {
        /// The axis.
        axis: i64,
        /// First index.
        start: u64,
        /// One past the last index.
        end: u64,
    },
    /// Rows of the first input selected along an axis by the (integer) second input:
    /// `out[..a, idx.., a+1..]` — an embedding lookup with `axis = 0`.
    Gather {
        /// The axis of the first input that the indices select along.
        axis: i64,
    },
    /// Each slice along an axis repeated `repeats` times in place (`[a, b] → [a, a, b,
    /// b]`), as grouped-query attention shares key/value heads.
    RepeatInterleave {
        /// The axis.
        axis: i64,
        /// Copies of each slice.
        repeats: u64,
    },
    /// Elements converted to another type.
    Cast {
        /// The new element type.
        to: DType,
    },
    /// `cond ? a : b`, all three broadcast.
    Where,
    /// `x·w + b`: inputs `x [..., k]`, `w [k, n]`, `b [n]`.
    Linear,
    /// `silu(gate) · up`: inputs `gate`, `up` of one shape (the gated MLP of GLM/LLaMA).
    SwiGlu,
    /// Scaled masked softmax attention, `softmax(q·kt·scale + mask)·v`: inputs
    /// `q [..., t, d]`, `kt [..., d, s]` (keys transposed), `v [..., s, e]` and `mask`
    /// (broadcast to `[..., t, s]`, `-inf` where attention is not allowed).
    Attention {
        /// Multiplies the scores (usually 1/√d).
        scale: f64,
    },
    /// [`OpKind::Attention`] over keys as they are cached, shared by groups of query
    /// heads (grouped-query attention): inputs `q [..., hq, t, d]`, `k [..., hkv, s,
    /// d]` (not transposed), `v [..., hkv, s, e]` and `mask` (broadcast to `[..., hq,
    /// t, s]`), `hq` a multiple of `hkv`; query head `h` reads key/value head `h /
    /// (hq / hkv)`. What `attention(q, permute(repeat_interleave(k)), …)` computes,
    /// without the copies.
    GroupedAttention {
        /// Multiplies the scores (usually 1/√d).
        scale: f64,
    },
    /// Rotary position embedding on the first `rot` dims of the last axis (the two
    /// halves rotated, GPT-NeoX style), the rest passed through: inputs `x [..., t, d]`,
    /// `cos [t, rot]`, `sin [t, rot]`.
    Rope {
        /// How many leading dims of each head rotate (even).
        rot: u64,
    },
    /// A causal attention mask `[t, t]` (0 on and below the diagonal, −∞ above) for the
    /// last axis `t` of its input; the element type is `dtype`.
    CausalMask {
        /// The mask's element type.
        dtype: DType,
    },
    /// An additive padding mask `[b, 1, 1, t]` (0 at positions `< lengths[b]`, −∞ from
    /// there on) that broadcasts against attention scores `[b, heads, q, t]`: inputs
    /// `lengths [b]` (integers) and `like [b, t, …]`, whose first two dims give `b`, `t`.
    PaddingMask {
        /// The mask's element type.
        dtype: DType,
    },
    /// Log-softmax along an axis (`x - log Σ exp x`, computed stably).
    LogSoftmax {
        /// The axis (negative counts from the end).
        axis: i64,
    },
    /// Mean cross-entropy of `logits [..., vocab]` against integer `labels [...]` over
    /// the positions whose label is not `ignore_index` (transformers' causal-LM loss;
    /// NaN when every label is ignored, as PyTorch). The result is a scalar (rank 0).
    CrossEntropy {
        /// Labels equal to this take no part (−100 in transformers).
        ignore_index: i64,
    },
    /// The gradient of [`OpKind::CrossEntropy`] with respect to its logits: inputs
    /// `logits`, `labels` and the loss's gradient `dy` (a scalar); `(softmax(logits) −
    /// onehot(label)) · dy / count` on counted positions, 0 on ignored ones.
    CrossEntropyBackward {
        /// As in the forward op.
        ignore_index: i64,
    },
    /// The adjoint of [`OpKind::Gather`]: inputs `like` (only its type is used),
    /// integer `indices` and `updates` (shaped as gather's result); a tensor of
    /// `like`'s type, zero except that each update is added at its index along `axis`
    /// (repeated indices accumulate, as PyTorch's `index_add`).
    ScatterAdd {
        /// The axis of `like` the indices select along.
        axis: i64,
    },
    /// `x` broadcast to the shape of `like` (only its type is used), as PyTorch's
    /// `expand_as`.
    ExpandAs,
    /// Zeros added on both sides of an axis (the adjoint of [`OpKind::Slice`]).
    Pad {
        /// The axis.
        axis: i64,
        /// Zeros before.
        before: u64,
        /// Zeros after.
        after: u64,
    },
    /// A user-defined op, described by an [`crate::OpDef`] registered with the graph.
    Custom {
        /// Its name (the registered definition's).
        name: String,
        /// Its attributes.
        #[serde(default)]
        attrs: std::collections::BTreeMap<String, f64>,
    },
}

impl OpKind {
    /// The number of inputs the op takes (`None`: one or more).
    pub fn arity(&self) -> Option<usize> {
        Some(match self {
            OpKind::Input { .. } | OpKind::Parameter { .. } | OpKind::Constant { .. } => 0,
            OpKind::Unary { .. }
            | OpKind::Reduce { .. }
            | OpKind::Softmax { .. }
            | OpKind::Reshape { .. }
            | OpKind::Permute { .. }
            | OpKind::Slice { .. }
            | OpKind::RepeatInterleave { .. }
            | OpKind::CausalMask { .. }
            | OpKind::Cast { .. }
            | OpKind::LogSoftmax { .. }
            | OpKind::Pad { .. } => 1,
            OpKind::Binary { .. }
            | OpKind::MatMul
            | OpKind::RmsNorm { .. }
            | OpKind::SwiGlu
            | OpKind::PaddingMask { .. }
            | OpKind::Gather { .. }
            | OpKind::CrossEntropy { .. }
            | OpKind::ExpandAs => 2,
            OpKind::LayerNorm { .. }
            | OpKind::FusedLayerNormGelu { .. }
            | OpKind::Where
            | OpKind::Linear
            | OpKind::Rope { .. }
            | OpKind::CrossEntropyBackward { .. }
            | OpKind::ScatterAdd { .. } => 3,
            OpKind::Attention { .. } | OpKind::GroupedAttention { .. } => 4,
            OpKind::Concat { .. } | OpKind::Custom { .. } => return None,
        })
    }

    /// A short name for the op (`"add"`, `"matmul"`, …).
    pub fn name(&self) -> String {
        // The serde (snake_case) names of the function enums.
        fn lower<T: Serialize>(v: &T) -> String {
            serde_json::to_value(v)
                .ok()
                .and_then(|j| j.as_str().map(str::to_owned))
                .unwrap_or_default()
        }
        match self {
            OpKind::Input { .. } => "input".into(),
            OpKind::Parameter { .. } => "parameter".into(),
            OpKind::Constant { .. } => "constant".into(),
            OpKind::Unary { f } => lower(f),
            OpKind::Binary { f } => lower(f),
            OpKind::MatMul => "matmul".into(),
            OpKind::Reduce { f, .. } => format!("reduce_{}", lower(f)),
            OpKind::Softmax { .. } => "softmax".into(),
            OpKind::LayerNorm { .. } => "layer_norm".into(),
            OpKind::FusedLayerNormGelu { .. } => "fused_layer_norm_gelu".into(),
            OpKind::RmsNorm { .. } => "rms_norm".into(),
            OpKind::Reshape { .. } => "reshape".into(),
            OpKind::Permute { .. } => "permute".into(),
            OpKind::Concat { .. } => "concat".into(),
            OpKind::Slice { .. } => "slice".into(),
            OpKind::Gather { .. } => "gather".into(),
            OpKind::RepeatInterleave { .. } => "repeat_interleave".into(),
            OpKind::Cast { .. } => "cast".into(),
            OpKind::Where => "where".into(),
            OpKind::Linear => "linear".into(),
            OpKind::SwiGlu => "swiglu".into(),
            OpKind::Attention { .. } => "attention".into(),
            OpKind::GroupedAttention { .. } => "grouped_attention".into(),
            OpKind::Rope { .. } => "rope".into(),
            OpKind::CausalMask { .. } => "causal_mask".into(),
            OpKind::PaddingMask { .. } => "padding_mask".into(),
            OpKind::LogSoftmax { .. } => "log_softmax".into(),
            OpKind::CrossEntropy { .. } => "cross_entropy".into(),
            OpKind::CrossEntropyBackward { .. } => "cross_entropy_backward".into(),
            OpKind::ScatterAdd { .. } => "scatter_add".into(),
            OpKind::ExpandAs => "expand_as".into(),
            OpKind::Pad { .. } => "pad".into(),
            OpKind::Custom { name, .. } => name.clone(),
        }
    }

    /// Whether the op stands for several elementary ones (norms, fused and composite
    /// ops the built-in rules produce), for reports of what fusion left.
    pub fn is_fused(&self) -> bool {
        matches!(
            self,
            OpKind::FusedLayerNormGelu { .. }
                | OpKind::LayerNorm { .. }
                | OpKind::RmsNorm { .. }
                | OpKind::Linear
                | OpKind::SwiGlu
                | OpKind::Attention { .. }
                | OpKind::GroupedAttention { .. }
                | OpKind::Rope { .. }
        )
    }
}

impl OpKind {
    /// The op's scalar attributes, in the order rule patterns list them after the
    /// inputs (`eps` of the norms, `axis` of softmax, a permutation's entries); `None`
    /// for ops whose attributes are shapes, lists of axes or types, which rules cannot
    /// mention.
    pub fn scalar_attrs(&self) -> Option<Vec<f64>> {
        Some(match self {
            OpKind::Unary { .. }
            | OpKind::Binary { .. }
            | OpKind::MatMul
            | OpKind::Where
            | OpKind::Linear
            | OpKind::SwiGlu
            | OpKind::ExpandAs => vec![],
            OpKind::LayerNorm { eps }
            | OpKind::RmsNorm { eps }
            | OpKind::FusedLayerNormGelu { eps } => vec![*eps],
            OpKind::Softmax { axis } | OpKind::Concat { axis } | OpKind::LogSoftmax { axis } => {
                vec![*axis as f64]
            }
            OpKind::CrossEntropy { ignore_index }
            | OpKind::CrossEntropyBackward { ignore_index } => vec![*ignore_index as f64],
            OpKind::Attention { scale } | OpKind::GroupedAttention { scale } => vec![*scale],
            OpKind::Rope { rot } => vec![*rot as f64],
            OpKind::Permute { perm } => perm.iter().map(|&a| a as f64).collect(),
            OpKind::RepeatInterleave { axis, repeats } => vec![*axis as f64, *repeats as f64],
            OpKind::Constant { value, .. } => vec![*value],
            OpKind::Slice { axis, start, end } => vec![*axis as f64, *start as f64, *end as f64],
            OpKind::Reduce {
                axes, keep_dims, ..
            } if axes.len() == 1 => vec![axes[0] as f64, f64::from(u8::from(*keep_dims))],
            _ => return None,
        })
    }

    /// How a rule pattern of the op called `name` with `args` arguments splits them:
    /// `(inputs, scalar attributes)`, or `None` for an op rules cannot build. Where
    /// the count fits no form of the op (a wrong pattern), its usual form, for the
    /// error message. A permutation takes as many attributes as its input has axes.
    pub fn rule_signature(name: &str, args: usize) -> Option<(usize, usize)> {
        let form = |k: usize| {
            let op = OpKind::from_name(name, &vec![0.0; k], DType::F32)?;
            // Concat takes any number of inputs; in patterns it joins two.
            Some((op.arity().unwrap_or(2), k))
        };
        (0..=args)
            .filter_map(form)
            .find(|&(i, k)| i + k == args)
            .or_else(|| (0..=3).find_map(form))
    }

    /// The op called `name` (as [`OpKind::name`] gives it) with scalar attributes
    /// `attrs`, for ops rules can build. A constant gets element type `dtype`.
    pub fn from_name(name: &str, attrs: &[f64], dtype: DType) -> Option<OpKind> {
        let (unary, binary) = (UnaryOp::ALL, BinaryOp::ALL);
        let op = match (name, attrs) {
            ("matmul", []) => OpKind::MatMul,
            ("where", []) => OpKind::Where,
            ("layer_norm", &[eps]) => OpKind::LayerNorm { eps },
            ("rms_norm", &[eps]) => OpKind::RmsNorm { eps },
            ("fused_layer_norm_gelu", &[eps]) => OpKind::FusedLayerNormGelu { eps },
            ("softmax", &[axis]) if axis.fract() == 0.0 => OpKind::Softmax { axis: axis as i64 },
            ("log_softmax", &[axis]) if axis.fract() == 0.0 => {
                OpKind::LogSoftmax { axis: axis as i64 }
            }
            ("cross_entropy", &[i]) if i.fract() == 0.0 => OpKind::CrossEntropy {
                ignore_index: i as i64,
            },
            ("expand_as", []) => OpKind::ExpandAs,
            ("concat", &[axis]) if axis.fract() == 0.0 => OpKind::Concat { axis: axis as i64 },
            ("linear", []) => OpKind::Linear,
            ("swiglu", []) => OpKind::SwiGlu,
            ("attention", &[scale]) => OpKind::Attention { scale },
            ("grouped_attention", &[scale]) => OpKind::GroupedAttention { scale },
            ("permute", perm) if !perm.is_empty() && perm.iter().all(|&a| whole(a)) => {
                OpKind::Permute {
                    perm: perm.iter().map(|&a| a as usize).collect(),
                }
            }
            ("repeat_interleave", &[axis, repeats]) if axis.fract() == 0.0 && whole(repeats) => {
                OpKind::RepeatInterleave {
                    axis: axis as i64,
                    repeats: repeats as u64,
                }
            }
            ("rope", &[rot]) if whole(rot) => OpKind::Rope { rot: rot as u64 },
            ("constant", &[value]) => OpKind::Constant { value, dtype },
            ("slice", &[axis, start, end]) if axis.fract() == 0.0 && whole(start) && whole(end) => {
                OpKind::Slice {
                    axis: axis as i64,
                    start: start as u64,
                    end: end as u64,
                }
            }
            (n, &[axis, keep]) if n.starts_with("reduce_") && axis.fract() == 0.0 => {
                let f = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min]
                    .into_iter()
                    .find(|f| n == format!("reduce_{}", format!("{f:?}").to_lowercase()))?;
                OpKind::Reduce {
                    f,
                    axes: vec![axis as i64],
                    keep_dims: keep != 0.0,
                }
            }
            (n, []) => {
                if let Some(&f) = unary.iter().find(|f| OpKind::Unary { f: **f }.name() == n) {
                    OpKind::Unary { f }
                } else {
                    let &f = binary
                        .iter()
                        .find(|f| OpKind::Binary { f: **f }.name() == n)?;
                    OpKind::Binary { f }
                }
            }
            _ => return None,
        };
        Some(op)
    }
}

/// A non-negative whole number.
fn whole(x: f64) -> bool {
    x >= 0.0 && x.fract() == 0.0
}
