//! The decoder built in the graph IR, its weights arranged from a checkpoint, and the
//! forward pass.
//!
//! Weights are renamed to the graph's parameter names and laid out for it once, at
//! load time: linear weights transposed to `[in, out]`; gpt_neox's fused per-head
//! `query_key_value` split into q, k and v; glm's fused `gate_up_proj` split into gate
//! and up; and for glm/glm4 the rotary dims of every query and key head reordered from
//! interleaved pairs (`x0 x1 x2 x3 …`, transformers' `rotate_half` on `0::2`/`1::2`) to
//! halves (`x0 x2 … | x1 x3 …`). Attention scores are dot products over a head's dims,
//! so one order applied to both queries and keys leaves them unchanged, and the
//! half-split rotary (gpt_neox's, the `rope` kernel's) then computes exactly glm's.

use std::collections::BTreeMap;
use std::path::Path;

use autoglm_graph::zoo::rope_halves;
use autoglm_graph::{BinaryOp, DType, Dim, Graph, NodeId, OpKind, TensorType, UnaryOp};
use autoglm_ops::{
    optimize, Device, Executor, Optimized, Options, Registry, Storage, StoragePlan, Tensor,
};

use crate::checkpoint::Checkpoint;
use crate::config::{Activation, ModelConfig, ModelType};
use crate::error::{Error, Result};

/// How to load and run a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Kernel threads.
    pub threads: usize,
    /// Apply the fusion rules (on by default; off runs the graph as built).
    pub optimize: bool,
    /// How the linear weights are stored for the products ([`storage_plan`]: the
    /// output head one step above the rest); `None` (the default): as the checkpoint
    /// stores them ([`Checkpoint::storage`]), f32 for weights given in memory.
    pub storage: Option<Storage>,
    /// Each weight's storage by name, overriding `storage` (what a GGUF file stores,
    /// [`crate::import_gguf`]).
    pub plan: Option<StoragePlan>,
}

/// Whether `path` is a GGUF file (a file named `*.gguf`) rather than a model directory.
pub(crate) fn is_gguf(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("gguf"))
}

/// The storage of a model's linear weights when the body is stored as `body`: the
/// output head (`head.w`) one step higher, since its errors go straight into the
/// logits (llama.cpp keeps it at 6 bits in its 4-bit types): `q4_0` → `q8_0`,
/// `q8_0` → `f16`; the half types and f32 keep the head as the body.
pub fn storage_plan(body: Storage) -> StoragePlan {
    let head = match body {
        Storage::Q4_0 => Storage::Q8_0,
        Storage::Q8_0 => Storage::F16,
        other => other,
    };
    StoragePlan::uniform(body).with("head.w", head)
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            threads: 1,
            optimize: true,
            storage: None,
            plan: None,
        }
    }
}

/// A loaded decoder ready to run.
pub struct Model {
    config: ModelConfig,
    exec: Executor,
    optimized: Option<Optimized>,
    /// The cache inputs' names per layer (`past_k{l}`, `past_v{l}`), made once.
    cache_inputs: Vec<(String, String)>,
}

impl std::fmt::Debug for Model {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Model")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

pub(crate) fn f32s(t: &Tensor) -> &[f32] {
    t.as_f32().expect("checkpoint tensors are read as f32")
}

/// `[r, c] → [c, r]`.
pub(crate) fn transpose(t: &Tensor) -> Tensor {
    let (r, c) = (t.shape()[0], t.shape()[1]);
    let x = f32s(t);
    let mut o = vec![0.0f32; r * c];
    for i in 0..r {
        for j in 0..c {
            o[j * r + i] = x[i * c + j];
        }
    }
    Tensor::from_f32(&[c, r], o).expect("same volume")
}

/// Rows `rows` of a `[n, c]` tensor (or elements of a vector), in that order.
pub(crate) fn take_rows(t: &Tensor, rows: &[usize]) -> Tensor {
    let c: usize = t.shape()[1..].iter().product();
    let x = f32s(t);
    let data: Vec<f32> = rows
        .iter()
        .flat_map(|&r| x[r * c..(r + 1) * c].iter().copied())
        .collect();
    let mut shape = t.shape().to_vec();
    shape[0] = rows.len();
    Tensor::from_f32(&shape, data).expect("rows × width")
}

/// For each of `heads` heads of width `d`, the order that moves the first `rot` dims
/// from interleaved pairs to halves: new position `j < rot/2` takes old `2j`, new
/// `rot/2 + j` takes old `2j + 1`.
pub(crate) fn interleaved_to_halves(heads: usize, d: usize, rot: usize) -> Vec<usize> {
    let half = rot / 2;
    (0..heads * d)
        .map(|i| {
            let (h, j) = (i / d, i % d);
            let old = if j < half {
                2 * j
            } else if j < rot {
                2 * (j - half) + 1
            } else {
                j
            };
            h * d + old
        })
        .collect()
}

/// Where one graph weight comes from in a Hugging Face checkpoint: rows of a tensor,
/// transposed to the graph's `[in, out]` when it is a linear weight. The one table of
/// the checkpoint layouts: [`load_weights`] reads through it, and
/// [`crate::PagedModel::map`] reads the linear weights in place through it.
#[derive(Debug, Clone)]
pub(crate) struct Source {
    /// The graph weight (`l0.q.w`).
    pub(crate) graph: String,
    /// The checkpoint tensor (`model.layers.0.self_attn.q_proj.weight`).
    pub(crate) hf: String,
    /// Its shape in the checkpoint.
    pub(crate) shape: Vec<usize>,
    /// The rows (outputs) taken, in this order; `None`: all, as stored.
    pub(crate) rows: Option<Vec<usize>>,
    /// A linear weight: `[out, in]` in the checkpoint, transposed in the graph.
    pub(crate) linear: bool,
}

/// Every graph weight of `cfg`'s model and where it comes from.
pub(crate) fn sources(cfg: &ModelConfig) -> Vec<Source> {
    let (h, nh, nkv, d, inter, v) = (
        cfg.hidden_size,
        cfg.num_heads,
        cfg.num_kv_heads,
        cfg.head_dim,
        cfg.intermediate_size,
        cfg.vocab_size,
    );
    let mut out = Vec::new();
    let mut add = |graph: String, hf: String, shape: &[usize], rows: Option<Vec<usize>>| {
        let linear = graph.ends_with(".w") && shape.len() == 2;
        out.push(Source {
            graph,
            hf,
            shape: shape.to_vec(),
            rows,
            linear,
        });
    };
    let (embed, head, norm, pre) = match cfg.model_type {
        ModelType::Glm | ModelType::Glm4 => (
            "model.embed_tokens.weight",
            "lm_head.weight",
            "model.norm",
            "model.layers",
        ),
        ModelType::GptNeox => (
            "gpt_neox.embed_in.weight",
            "embed_out.weight",
            "gpt_neox.final_layer_norm",
            "gpt_neox.layers",
        ),
    };
    add("embed".into(), embed.into(), &[v, h], None);
    // A linear layer `hf.weight` (and `hf.bias`), rows taken in `rows`' order.
    macro_rules! lin {
        ($ours:expr, $hf:expr, $shape:expr, $rows:expr, $bias:expr $(,)?) => {{
            let (ours, hf, shape, rows): (String, &str, [usize; 2], Option<Vec<usize>>) =
                ($ours, $hf, $shape, $rows);
            if $bias {
                add(
                    format!("{ours}.b"),
                    format!("{hf}.bias"),
                    &[shape[0]],
                    rows.clone(),
                );
            }
            add(format!("{ours}.w"), format!("{hf}.weight"), &shape, rows);
        }};
    }
    for l in 0..cfg.num_layers {
        let ours = |n: &str| format!("l{l}.{n}");
        let theirs = |n: &str| format!("{pre}.{l}.{n}");
        let mut norms = vec![
            ("ln1", "input_layernorm"),
            ("ln2", "post_attention_layernorm"),
        ];
        match cfg.model_type {
            ModelType::Glm | ModelType::Glm4 => {
                let at = |n: &str| theirs(&format!("self_attn.{n}"));
                // Rotary pairs from interleaved to halves: a reorder of q's and k's
                // output rows.
                let qo = interleaved_to_halves(nh, d, cfg.rotary_dim);
                let ko = interleaved_to_halves(nkv, d, cfg.rotary_dim);
                let b = cfg.qkv_bias;
                lin!(ours("q"), &at("q_proj"), [nh * d, h], Some(qo), b);
                lin!(ours("k"), &at("k_proj"), [nkv * d, h], Some(ko), b,);
                lin!(ours("v"), &at("v_proj"), [nkv * d, h], None, b);
                lin!(ours("o"), &at("o_proj"), [h, nh * d], None, false);
                let gu = theirs("mlp.gate_up_proj.weight");
                add(
                    ours("gate.w"),
                    gu.clone(),
                    &[2 * inter, h],
                    Some((0..inter).collect()),
                );
                add(
                    ours("up.w"),
                    gu,
                    &[2 * inter, h],
                    Some((inter..2 * inter).collect()),
                );
                lin!(
                    ours("down"),
                    &theirs("mlp.down_proj"),
                    [h, inter],
                    None,
                    false,
                );
                if cfg.model_type == ModelType::Glm4 {
                    norms.push(("post_attn", "post_self_attn_layernorm"));
                    norms.push(("post_mlp", "post_mlp_layernorm"));
                }
            }
            ModelType::GptNeox => {
                // Rows per head: [q (d), k (d), v (d)].
                let qkv = theirs("attention.query_key_value");
                for (which, name) in ["q", "k", "v"].into_iter().enumerate() {
                    let rows: Vec<usize> = (0..nh)
                        .flat_map(|hh| (0..d).map(move |j| hh * 3 * d + which * d + j))
                        .collect();
                    lin!(ours(name), &qkv, [3 * h, h], Some(rows), cfg.qkv_bias,);
                }
                let (o, b) = (theirs("attention.dense"), cfg.out_bias);
                lin!(ours("o"), &o, [h, h], None, b);
                lin!(
                    ours("fc1"),
                    &theirs("mlp.dense_h_to_4h"),
                    [inter, h],
                    None,
                    true,
                );
                lin!(
                    ours("fc2"),
                    &theirs("mlp.dense_4h_to_h"),
                    [h, inter],
                    None,
                    true,
                );
            }
        }
        let bias = cfg.model_type == ModelType::GptNeox;
        for (o, t) in norms {
            add(
                ours(&format!("{o}.w")),
                theirs(&format!("{t}.weight")),
                &[h],
                None,
            );
            if bias {
                add(
                    ours(&format!("{o}.b")),
                    theirs(&format!("{t}.bias")),
                    &[h],
                    None,
                );
            }
        }
    }
    add("norm.w".into(), format!("{norm}.weight"), &[h], None);
    if cfg.model_type == ModelType::GptNeox {
        add("norm.b".into(), format!("{norm}.bias"), &[h], None);
    }
    let head = if cfg.tie_word_embeddings { embed } else { head };
    add("head.w".into(), head.into(), &[v, h], None);
    out
}

/// The graph's parameters, by name (`embed`, `l0.q.w`, `l0.q.b`, …, `norm.w`,
/// `head.w`; linear weights `[in, out]`), from a checkpoint: what [`build_graph`]
/// and [`Model::from_weights`] take and [`crate::save_pretrained`] writes back.
///
/// # Errors
/// [`Error::Checkpoint`] naming a missing tensor or one of the wrong shape.
pub fn load_weights(cfg: &ModelConfig, ck: &Checkpoint) -> Result<BTreeMap<String, Tensor>> {
    sources(cfg)
        .into_iter()
        .map(|s| Ok((s.graph.clone(), read_source(ck, &s)?)))
        .collect()
}

/// One graph weight read from a checkpoint as f32.
pub(crate) fn read_source(ck: &Checkpoint, s: &Source) -> Result<Tensor> {
    let t = ck.tensor(&s.hf, &s.shape)?;
    let t = match &s.rows {
        Some(rows) => take_rows(&t, rows),
        None => t,
    };
    Ok(if s.linear { transpose(&t) } else { t })
}

/// Builds the decoder graph. Inputs: `ids [b, t]` (i64), `cos`/`sin [t, rot]` (the
/// rotary tables of the new positions), `mask [b, 1, t, p+t]` (additive, over cached
/// and new keys), `keep [k]` (i64: which of the `t` new positions get logits — all of
/// them for a forward pass, the last one when generating, which spares the output
/// head for the rest of a prompt) and, per layer `l`, the key/value cache
/// `past_k{l}`/`past_v{l}` `[b, kv_heads, p, head_dim]` (`p = 0` for a plain forward
/// pass). Outputs: logits `[b, k, vocab]`, then per layer the cache extended by the
/// new positions, `[b, kv_heads, p+t, head_dim]` (keys after rotary). Ops are emitted
/// in their plain form (matmul + bias, silu · up, the rotary slices, scaled masked
/// softmax) so the built-in rules fuse them.
pub fn build_graph(cfg: &ModelConfig, params: &BTreeMap<String, Tensor>) -> Result<Graph> {
    decoder(cfg, params, false, DType::F32)
}

/// Builds the training graph: the decoder of [`build_graph`] without a cache and with
/// the causal-LM loss. Inputs: `ids [b, t]` (i64), `cos`/`sin [t, rot]`, `mask [b, 1,
/// t, t]` (additive) and `labels [b, t]` (i64: the token each position must predict,
/// −100 where no loss is taken — transformers' labels shifted left by one). Output:
/// the mean cross-entropy over the counted positions (a scalar). With tied embeddings
/// the output head is the embedding's transpose, so both uses train one tensor and
/// `head.w` is not a parameter.
///
/// `dtype` is the storage type of the weights, the float inputs and every activation
/// (f32, or bf16/f16 for mixed-precision training, whose kernels compute in f32 and
/// round their results); the logits are cast to f32 for the loss, which is f32.
///
/// # Errors
/// As [`build_graph`]; [`Error::Input`] for a `dtype` that is not f32, bf16 or f16.
pub fn build_training_graph(
    cfg: &ModelConfig,
    params: &BTreeMap<String, Tensor>,
    dtype: DType,
) -> Result<Graph> {
    if !matches!(dtype, DType::F32 | DType::BF16 | DType::F16) {
        return Err(Error::Input(format!(
            "training stores f32, bf16 or f16 values, not {dtype:?}"
        )));
    }
    decoder(cfg, params, true, dtype)
}

fn decoder(
    cfg: &ModelConfig,
    params: &BTreeMap<String, Tensor>,
    train: bool,
    dtype: DType,
) -> Result<Graph> {
    let act = |dims: Vec<Dim>| TensorType {
        dtype,
        shape: dims.into_iter().collect(),
    };
    let (b, t, past) = (Dim::sym("b"), Dim::sym("t"), Dim::sym("p"));
    let total = Dim::sym("p+t");
    let k = |n: usize| Dim::Known(n as u64);
    let (d, rot) = (cfg.head_dim, cfg.rotary_dim);
    let mut g = Graph::new();
    let ids = g.input(
        "ids",
        TensorType {
            dtype: DType::I64,
            shape: [b.clone(), t.clone()].into_iter().collect(),
        },
    )?;
    let (cos, sin) = if rot > 0 {
        (
            Some(g.input("cos", act(vec![t.clone(), k(rot)]))?),
            Some(g.input("sin", act(vec![t.clone(), k(rot)]))?),
        )
    } else {
        (None, None)
    };
    let int = |dims: Vec<Dim>| TensorType {
        dtype: DType::I64,
        shape: dims.into_iter().collect(),
    };
    let mask_keys = if train { t.clone() } else { total };
    let mask = g.input("mask", act(vec![b.clone(), k(1), t.clone(), mask_keys]))?;
    let (keep, labels) = if train {
        (
            None,
            Some(g.input("labels", int(vec![b.clone(), t.clone()]))?),
        )
    } else {
        (Some(g.input("keep", int(vec![Dim::sym("k")]))?), None)
    };
    let mut pasts = Vec::with_capacity(cfg.num_layers);
    for l in 0..cfg.num_layers {
        let ty = act(vec![b.clone(), k(cfg.num_kv_heads), past.clone(), k(d)]);
        pasts.push(if train {
            None
        } else {
            Some((
                g.input(&format!("past_k{l}"), ty.clone())?,
                g.input(&format!("past_v{l}"), ty)?,
            ))
        });
    }
    let mut presents = Vec::with_capacity(2 * cfg.num_layers);
    let mut pid = BTreeMap::new();
    for (name, value) in params {
        if train && cfg.tie_word_embeddings && name == "head.w" {
            continue;
        }
        let ty = TensorType::new(dtype, value.shape().iter().map(|&x| x as u64));
        pid.insert(name.clone(), g.parameter(name, ty)?);
    }
    if train && cfg.tie_word_embeddings {
        let embed = *pid
            .get("embed")
            .ok_or_else(|| Error::Input("internal: no parameter 'embed'".into()))?;
        let head = g.add(OpKind::Permute { perm: vec![1, 0] }, &[embed])?;
        pid.insert("head.w".into(), head);
    }
    let p = |name: &str| -> Result<NodeId> {
        pid.get(name)
            .copied()
            .ok_or_else(|| Error::Input(format!("internal: no parameter '{name}'")))
    };
    let bin =
        |g: &mut Graph, f: BinaryOp, a: NodeId, c: NodeId| g.add(OpKind::Binary { f }, &[a, c]);
    let lin = |g: &mut Graph, x: NodeId, name: &str| -> Result<NodeId> {
        let y = g.add(OpKind::MatMul, &[x, p(&format!("{name}.w"))?])?;
        Ok(match pid.get(&format!("{name}.b")) {
            Some(&bias) => bin(g, BinaryOp::Add, y, bias)?,
            None => y,
        })
    };
    let norm = |g: &mut Graph, x: NodeId, name: &str| -> Result<NodeId> {
        let w = p(&format!("{name}.w"))?;
        Ok(match pid.get(&format!("{name}.b")) {
            Some(&bias) => g.add(OpKind::LayerNorm { eps: cfg.norm_eps }, &[x, w, bias])?,
            None => g.add(OpKind::RmsNorm { eps: cfg.norm_eps }, &[x, w])?,
        })
    };
    // [b, t, n·d] → [b, n, t, d]
    let heads = |g: &mut Graph, x: NodeId, n: usize| -> Result<NodeId> {
        let shape = [b.clone(), t.clone(), k(n), k(d)].into_iter().collect();
        let r = g.add(OpKind::Reshape { shape }, &[x])?;
        Ok(g.add(
            OpKind::Permute {
                perm: vec![0, 2, 1, 3],
            },
            &[r],
        )?)
    };
    let rope = |g: &mut Graph, x: NodeId| -> Result<NodeId> {
        match (cos, sin) {
            (Some(cos), Some(sin)) => Ok(rope_halves(g, x, cos, sin, rot as u64, d as u64)?),
            _ => Ok(x),
        }
    };
    let scale = g.constant(1.0 / (d as f64).sqrt(), dtype)?;
    let mut x = g.add(OpKind::Gather { axis: 0 }, &[p("embed")?, ids])?;
    for (l, past) in pasts.iter().enumerate() {
        let h1 = norm(&mut g, x, &format!("l{l}.ln1"))?;
        let q = lin(&mut g, h1, &format!("l{l}.q"))?;
        let kk = lin(&mut g, h1, &format!("l{l}.k"))?;
        let v = lin(&mut g, h1, &format!("l{l}.v"))?;
        let q = heads(&mut g, q, cfg.num_heads)?;
        let kk = heads(&mut g, kk, cfg.num_kv_heads)?;
        let v = heads(&mut g, v, cfg.num_kv_heads)?;
        let q = rope(&mut g, q)?;
        let kk = rope(&mut g, kk)?;
        let (mut kk, mut v) = match *past {
            Some((pk, pv)) => {
                let kk = g.add(OpKind::Concat { axis: 2 }, &[pk, kk])?;
                let v = g.add(OpKind::Concat { axis: 2 }, &[pv, v])?;
                presents.push(kk);
                presents.push(v);
                (kk, v)
            }
            None => (kk, v),
        };
        if cfg.group() > 1 {
            let rep = OpKind::RepeatInterleave {
                axis: 1,
                repeats: cfg.group() as u64,
            };
            kk = g.add(rep.clone(), &[kk])?;
            v = g.add(rep, &[v])?;
        }
        let kt = g.add(
            OpKind::Permute {
                perm: vec![0, 1, 3, 2],
            },
            &[kk],
        )?;
        let s = g.add(OpKind::MatMul, &[q, kt])?;
        let s = bin(&mut g, BinaryOp::Mul, s, scale)?;
        let s = bin(&mut g, BinaryOp::Add, s, mask)?;
        let s = g.add(OpKind::Softmax { axis: -1 }, &[s])?;
        let y = g.add(OpKind::MatMul, &[s, v])?;
        let y = g.add(
            OpKind::Permute {
                perm: vec![0, 2, 1, 3],
            },
            &[y],
        )?;
        let shape = [b.clone(), t.clone(), k(cfg.num_heads * d)]
            .into_iter()
            .collect();
        let y = g.add(OpKind::Reshape { shape }, &[y])?;
        let mut o = lin(&mut g, y, &format!("l{l}.o"))?;
        if cfg.model_type == ModelType::Glm4 {
            o = norm(&mut g, o, &format!("l{l}.post_attn"))?;
        }
        let mlp = |g: &mut Graph, h2: NodeId| -> Result<NodeId> {
            match cfg.activation {
                Activation::Silu => {
                    let gate = lin(g, h2, &format!("l{l}.gate"))?;
                    let up = lin(g, h2, &format!("l{l}.up"))?;
                    let act = g.add(OpKind::Unary { f: UnaryOp::Silu }, &[gate])?;
                    let m = bin(g, BinaryOp::Mul, act, up)?;
                    lin(g, m, &format!("l{l}.down"))
                }
                Activation::Gelu | Activation::GeluTanh => {
                    let f = if cfg.activation == Activation::Gelu {
                        UnaryOp::Gelu
                    } else {
                        UnaryOp::GeluTanh
                    };
                    let a = lin(g, h2, &format!("l{l}.fc1"))?;
                    let a = g.add(OpKind::Unary { f }, &[a])?;
                    lin(g, a, &format!("l{l}.fc2"))
                }
            }
        };
        if cfg.parallel_residual {
            let h2 = norm(&mut g, x, &format!("l{l}.ln2"))?;
            let m = mlp(&mut g, h2)?;
            let xo = bin(&mut g, BinaryOp::Add, x, o)?;
            x = bin(&mut g, BinaryOp::Add, xo, m)?;
        } else {
            x = bin(&mut g, BinaryOp::Add, x, o)?;
            let h2 = norm(&mut g, x, &format!("l{l}.ln2"))?;
            let mut m = mlp(&mut g, h2)?;
            if cfg.model_type == ModelType::Glm4 {
                m = norm(&mut g, m, &format!("l{l}.post_mlp"))?;
            }
            x = bin(&mut g, BinaryOp::Add, x, m)?;
        }
    }
    let x = match keep {
        Some(keep) => g.add(OpKind::Gather { axis: 1 }, &[x, keep])?,
        None => x,
    };
    let x = norm(&mut g, x, "norm")?;
    let mut logits = g.add(OpKind::MatMul, &[x, p("head.w")?])?;
    if dtype != DType::F32 {
        logits = g.add(OpKind::Cast { to: DType::F32 }, &[logits])?;
    }
    let mut outs = match labels {
        Some(labels) => vec![g.add(
            OpKind::CrossEntropy {
                ignore_index: IGNORE_INDEX,
            },
            &[logits, labels],
        )?],
        None => vec![logits],
    };
    outs.extend(presents);
    g.set_outputs(&outs)?;
    Ok(g)
}

/// The label of positions that take no part in the loss (transformers' −100).
pub const IGNORE_INDEX: i64 = -100;

/// `cos`/`sin` tables `[positions, rot]` as transformers computes them (f32 inverse
/// frequencies `1 / θ^(2i/rot)`, angles `pos · inv_freq` in f32, both halves equal).
pub fn rope_tables(positions: &[usize], rot: usize, theta: f64) -> (Tensor, Tensor) {
    let half = rot / 2;
    let inv: Vec<f32> = (0..half)
        .map(|i| 1.0 / (theta as f32).powf((2 * i) as f32 / rot as f32))
        .collect();
    let mut cos = Vec::with_capacity(positions.len() * rot);
    let mut sin = Vec::with_capacity(positions.len() * rot);
    for &p in positions {
        let start = cos.len();
        for &f in &inv {
            let a = f64::from(p as f32 * f);
            cos.push(a.cos() as f32);
            sin.push(a.sin() as f32);
        }
        // Both halves are equal.
        cos.extend_from_within(start..);
        sin.extend_from_within(start..);
    }
    let n = positions.len();
    (
        Tensor::from_f32(&[n, rot], cos).expect("n × rot"),
        Tensor::from_f32(&[n, rot], sin).expect("n × rot"),
    )
}

impl Model {
    /// Loads `dir/config.json` and the checkpoint's weights.
    ///
    /// # Errors
    /// [`Error::Config`], [`Error::Checkpoint`] or [`Error::Io`] naming the file,
    /// field or tensor.
    pub fn load(dir: &Path, options: &LoadOptions) -> Result<Model> {
        if is_gguf(dir) {
            let (config, weights, plan) = crate::import_gguf(dir)?;
            let options = LoadOptions {
                plan: options
                    .plan
                    .clone()
                    .or_else(|| options.storage.is_none().then_some(plan)),
                ..options.clone()
            };
            return Model::from_weights(config, weights, &options);
        }
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let ck = Checkpoint::open(dir)?;
        Model::from_checkpoint(config, &ck, options)
    }

    /// Builds the model for `config` with weights from `ck`.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] for a missing tensor or a shape the config does not imply.
    pub fn from_checkpoint(
        config: ModelConfig,
        ck: &Checkpoint,
        options: &LoadOptions,
    ) -> Result<Model> {
        let params = load_weights(&config, ck)?;
        let options = LoadOptions {
            storage: Some(options.storage.map_or_else(|| ck.storage(), Ok)?),
            ..options.clone()
        };
        Model::from_weights(config, params, &options)
    }

    /// Builds the model for `config` from weights in the graph's layout (see
    /// [`load_weights`]); with tied embeddings `head.w` may be left out (it is the
    /// embedding's transpose, as a trainer's weights give it).
    ///
    /// # Errors
    /// [`Error::Graph`] or [`Error::Ops`] if a weight is missing or has the wrong shape.
    pub fn from_weights(
        config: ModelConfig,
        mut params: BTreeMap<String, Tensor>,
        options: &LoadOptions,
    ) -> Result<Model> {
        if config.tie_word_embeddings && !params.contains_key("head.w") {
            if let Some(e) = params.get("embed") {
                let head = transpose(e);
                params.insert("head.w".into(), head);
            }
        }
        let mut g = build_graph(&config, &params)?;
        let registry = Registry::with_cpu_kernels();
        let optimized = if options.optimize {
            Some(optimize(&mut g, &registry, Device::Cpu, None)?)
        } else {
            None
        };
        let mut exec = Executor::new(
            &g,
            &registry,
            Options {
                threads: options.threads.max(1),
                ..Options::default()
            },
        )?;
        exec.set_storage_plan(
            options
                .plan
                .clone()
                .unwrap_or_else(|| storage_plan(options.storage.unwrap_or_default())),
        );
        for (name, t) in params {
            exec.set_parameter(&name, t)?;
        }
        let cache_inputs = (0..config.num_layers)
            .map(|l| (format!("past_k{l}"), format!("past_v{l}")))
            .collect();
        Ok(Model {
            config,
            exec,
            optimized,
            cache_inputs,
        })
    }

    /// The structure.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// Each linear weight's storage and bytes as the products read it (the f32
    /// parameters stay bound beside them).
    pub fn stored_weights(&self) -> Vec<(String, Storage, usize)> {
        self.exec.stored_weights()
    }

    /// What the optimiser did (rules fired, nodes before and after), if it ran.
    pub fn optimized(&self) -> Option<&Optimized> {
        self.optimized.as_ref()
    }

    /// Logits `[b, t, vocab]` for a batch of equally long token sequences (causal
    /// attention, positions from 0).
    ///
    /// # Errors
    /// [`Error::Input`] for an empty batch, unequal lengths or ids outside the
    /// vocabulary.
    pub fn forward(&mut self, ids: &[Vec<u32>]) -> Result<Tensor> {
        let t = ids.first().map_or(0, Vec::len);
        if t == 0 || ids.iter().any(|r| r.len() != t) {
            return Err(Error::Input(
                "forward needs a non-empty batch of equally long, non-empty sequences".into(),
            ));
        }
        let mut cache = KvCache::new(&self.config, ids.len());
        let valid = vec![vec![true; t]; ids.len()];
        let logits = self.step(ids, &valid, &mut cache, false);
        self.release(cache);
        logits
    }

    /// Returns a cache's buffers to the executor's pool (a dropped cache would take
    /// them along, and the next pass would fault in fresh pages).
    pub(crate) fn release(&mut self, cache: KvCache) {
        for (k, v) in cache.layers {
            self.exec.recycle(k);
            self.exec.recycle(v);
        }
    }

    /// Runs `ids [b, t]` after what `cache` holds, extending it; `valid[r][j]` says
    /// whether position `j` of row `r` (counting the cached ones) is a real token (a
    /// padding position is never attended to, except by itself). Returns the logits
    /// `[b, t, vocab]`, or with `last_only` those of the last position, `[b, 1, vocab]`.
    pub(crate) fn step(
        &mut self,
        ids: &[Vec<u32>],
        valid: &[Vec<bool>],
        cache: &mut KvCache,
        last_only: bool,
    ) -> Result<Tensor> {
        let (b, t) = (ids.len(), ids.first().map_or(0, Vec::len));
        let v = self.config.vocab_size;
        if let Some(bad) = ids.iter().flatten().find(|&&i| i as usize >= v) {
            return Err(Error::Input(format!(
                "token id {bad} is outside the vocabulary (size {v})"
            )));
        }
        let p = cache.len;
        let s = p + t;
        let flat: Vec<i64> = ids.iter().flatten().map(|&i| i64::from(i)).collect();
        let ids_t = Tensor::new(&[b, t], autoglm_ops::Data::I64(flat))?;
        let positions: Vec<usize> = (p..s).collect();
        let (cos, sin) = rope_tables(&positions, self.config.rotary_dim, self.config.rope_theta);
        let mut mask = vec![f32::NEG_INFINITY; b * t * s];
        for r in 0..b {
            for i in 0..t {
                let q = p + i;
                let row = &mut mask[(r * t + i) * s..(r * t + i + 1) * s];
                for (j, m) in row.iter_mut().enumerate().take(q + 1) {
                    if valid[r][j] || j == q {
                        *m = 0.0;
                    }
                }
            }
        }
        let mask = Tensor::from_f32(&[b, 1, t, s], mask)?;
        let kept: Vec<i64> = if last_only {
            vec![t as i64 - 1]
        } else {
            (0..t as i64).collect()
        };
        let keep = Tensor::new(&[kept.len()], autoglm_ops::Data::I64(kept))?;
        let mut feed: Vec<(&str, &Tensor)> =
            vec![("ids", &ids_t), ("mask", &mask), ("keep", &keep)];
        if self.config.rotary_dim > 0 {
            feed.push(("cos", &cos));
            feed.push(("sin", &sin));
        }
        for (l, (kn, vn)) in self.cache_inputs.iter().enumerate() {
            feed.push((kn, &cache.layers[l].0));
            feed.push((vn, &cache.layers[l].1));
        }
        let mut out = self.exec.run(&feed)?;
        let rest = out.split_off(1);
        let mut it = rest.into_iter();
        for layer in &mut cache.layers {
            let (k, v) = (it.next(), it.next());
            let (Some(k), Some(v)) = (k, v) else {
                return Err(Error::Input(
                    "internal: the graph returned too few cache outputs".into(),
                ));
            };
            let old = std::mem::replace(layer, (k, v));
            self.exec.recycle(old.0);
            self.exec.recycle(old.1);
        }
        cache.len = s;
        Ok(out.remove(0))
    }

    /// Keeps rows `rows` of `cache` (beam search's reordering).
    pub(crate) fn gather_cache(&mut self, cache: &mut KvCache, rows: &[usize]) -> Result<()> {
        cache.gather(rows, &mut self.exec)
    }

    /// Hands a tensor (logits no longer needed, say) back to the executor's buffer
    /// pool, so the next pass reuses its memory instead of faulting in fresh pages.
    pub fn recycle(&mut self, t: Tensor) {
        self.exec.recycle(t);
    }

    /// Starts (or, with `false`, stops and clears) timing every kernel.
    pub fn set_profiling(&mut self, on: bool) {
        self.exec.set_profiling(on);
    }

    /// Seconds per kernel since profiling started, slowest first (node, op, seconds).
    pub fn profile(&self) -> Vec<(autoglm_graph::NodeId, String, f64)> {
        self.exec.profile()
    }
}

/// Per layer, the keys (after rotary) and values of every position run so far.
pub(crate) struct KvCache {
    pub(crate) layers: Vec<(Tensor, Tensor)>,
    pub(crate) len: usize,
}

impl KvCache {
    /// Keeps rows `rows` of every layer's keys and values, in that order (a row may
    /// repeat), trading buffers with the executor's pool.
    pub(crate) fn gather(&mut self, rows: &[usize], exec: &mut Executor) -> Result<()> {
        for layer in &mut self.layers {
            for t in [&mut layer.0, &mut layer.1] {
                let x = t.as_f32().ok_or_else(|| {
                    Error::Input("internal: the key/value cache is not f32".into())
                })?;
                let c: usize = t.shape()[1..].iter().product();
                let mut data = exec.take_buffer(DType::F32, rows.len() * c);
                let out = match &mut data {
                    autoglm_ops::Data::F32(v) => v,
                    _ => unreachable!("an f32 buffer was asked for"),
                };
                for (o, &r) in out.chunks_exact_mut(c).zip(rows) {
                    o.copy_from_slice(&x[r * c..(r + 1) * c]);
                }
                let mut shape = t.shape().to_vec();
                shape[0] = rows.len();
                let kept = Tensor::new(&shape, data)?;
                exec.recycle(std::mem::replace(t, kept));
            }
        }
        Ok(())
    }

    pub(crate) fn new(cfg: &ModelConfig, batch: usize) -> KvCache {
        let empty = || {
            Tensor::from_f32(&[batch, cfg.num_kv_heads, 0, cfg.head_dim], Vec::new())
                .expect("empty")
        };
        KvCache {
            layers: (0..cfg.num_layers).map(|_| (empty(), empty())).collect(),
            len: 0,
        }
    }
}
