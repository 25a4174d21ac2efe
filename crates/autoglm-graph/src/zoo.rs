//! Reference graphs: the GLM-style decoder block that benchmarks and tests share,
//! written op by op the way the PyTorch reference writes it (so the built-in rules
//! have something to recognise).

use crate::error::Result;
use crate::graph::{Graph, NodeId};
use crate::op::{BinaryOp, OpKind, ReduceOp, UnaryOp};
use crate::types::{DType, Dim, TensorType};

/// The sizes of a GLM-style decoder block: pre-RMSNorm grouped-query attention with
/// partial rotary embedding, then a pre-RMSNorm SwiGLU MLP, both residual.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BlockConfig {
    /// Model width.
    pub hidden: u64,
    /// Query heads.
    pub heads: u64,
    /// Key/value heads (dividing `heads`).
    pub kv_heads: u64,
    /// Leading dims of each head that rotate (even, at most the head dim).
    pub rot: u64,
    /// SwiGLU width.
    pub inter: u64,
    /// RMSNorm epsilon.
    pub eps: f64,
}

impl BlockConfig {
    /// The block of `shared/bench/graph/bench_torch.py`: hidden 512, 8 query / 2 KV
    /// heads of 64, rotary on 32 dims, SwiGLU width 1408.
    pub fn bench() -> BlockConfig {
        BlockConfig {
            hidden: 512,
            heads: 8,
            kv_heads: 2,
            rot: 32,
            inter: 1408,
            eps: 1e-5,
        }
    }

    /// A small block for tests: hidden 64, 4 query / 2 KV heads of 16, rotary on 8
    /// dims, SwiGLU width 96.
    pub fn small() -> BlockConfig {
        BlockConfig {
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            rot: 8,
            inter: 96,
            eps: 1e-5,
        }
    }

    /// The head dim.
    pub fn head_dim(&self) -> u64 {
        self.hidden / self.heads
    }

    /// The parameters by name and shape. Projection weights are `[in, out]` (PyTorch's
    /// `nn.Linear.weight` transposed); norm weights are `[hidden]`.
    pub fn parameters(&self) -> Vec<(String, Vec<u64>)> {
        let (h, d) = (self.hidden, self.head_dim());
        vec![
            ("ln1.w".into(), vec![h]),
            ("q.weight".into(), vec![h, self.heads * d]),
            ("k.weight".into(), vec![h, self.kv_heads * d]),
            ("v.weight".into(), vec![h, self.kv_heads * d]),
            ("o.weight".into(), vec![self.heads * d, h]),
            ("ln2.w".into(), vec![h]),
            ("gate.weight".into(), vec![h, self.inter]),
            ("up.weight".into(), vec![h, self.inter]),
            ("down.weight".into(), vec![self.inter, h]),
        ]
    }
}

/// Builds the block with symbolic batch `b` and sequence `t`, element type `dtype`.
/// Inputs: `x [b, t, hidden]`, `cos`, `sin [t, rot]`, `mask [t, t]` (additive); one
/// output `[b, t, hidden]`. Norms, rotary embedding, attention and the gated MLP are
/// spelled out in elementary ops, as the PyTorch module computes them.
///
/// # Errors
/// [`crate::Error::Type`] for inconsistent sizes (heads not dividing, rot too large).
pub fn glm_block(cfg: &BlockConfig, dtype: DType) -> Result<Graph> {
    let (b, t) = (Dim::sym("b"), Dim::sym("t"));
    let k = Dim::Known;
    let ty = |dims: Vec<Dim>| TensorType {
        dtype,
        shape: dims.into_iter().collect(),
    };
    let (h, d) = (cfg.hidden, cfg.head_dim());
    let mut g = Graph::new();
    let x = g.input("x", ty(vec![b.clone(), t.clone(), k(h)]))?;
    let cos = g.input("cos", ty(vec![t.clone(), k(cfg.rot)]))?;
    let sin = g.input("sin", ty(vec![t.clone(), k(cfg.rot)]))?;
    let mask = g.input("mask", ty(vec![t.clone(), t.clone()]))?;
    let mut params = std::collections::BTreeMap::new();
    for (name, shape) in cfg.parameters() {
        let p = g.parameter(&name, TensorType::new(dtype, shape))?;
        params.insert(name, p);
    }
    let bin =
        |g: &mut Graph, f: BinaryOp, a: NodeId, c: NodeId| g.add(OpKind::Binary { f }, &[a, c]);
    let un = |g: &mut Graph, f: UnaryOp, a: NodeId| g.add(OpKind::Unary { f }, &[a]);
    // x * rsqrt(mean(x², -1) + eps) * w
    let rms = |g: &mut Graph, x: NodeId, w: NodeId| -> Result<NodeId> {
        let two = g.constant(2.0, dtype)?;
        let sq = bin(g, BinaryOp::Pow, x, two)?;
        let m = g.add(
            OpKind::Reduce {
                f: ReduceOp::Mean,
                axes: vec![-1],
                keep_dims: true,
            },
            &[sq],
        )?;
        let eps = g.constant(cfg.eps, dtype)?;
        let s = bin(g, BinaryOp::Add, m, eps)?;
        let r = un(g, UnaryOp::Rsqrt, s)?;
        let n = bin(g, BinaryOp::Mul, x, r)?;
        bin(g, BinaryOp::Mul, n, w)
    };
    let hn = rms(&mut g, x, params["ln1.w"])?;
    let heads = |g: &mut Graph, w: NodeId, n: u64| -> Result<NodeId> {
        let p = g.add(OpKind::MatMul, &[hn, w])?;
        let shape = [b.clone(), t.clone(), k(n), k(d)].into_iter().collect();
        let r = g.add(OpKind::Reshape { shape }, &[p])?;
        g.add(
            OpKind::Permute {
                perm: vec![0, 2, 1, 3],
            },
            &[r],
        )
    };
    let q = heads(&mut g, params["q.weight"], cfg.heads)?;
    let kk = heads(&mut g, params["k.weight"], cfg.kv_heads)?;
    let v = heads(&mut g, params["v.weight"], cfg.kv_heads)?;
    // cat(xr·cos + cat(−x2, x1)·sin, xp) on the first `rot` dims.
    let q = rope_halves(&mut g, q, cos, sin, cfg.rot, d)?;
    let kk = rope_halves(&mut g, kk, cos, sin, cfg.rot, d)?;
    let group = cfg.heads / cfg.kv_heads.max(1);
    let rep = OpKind::RepeatInterleave {
        axis: 1,
        repeats: group,
    };
    let kk = g.add(rep.clone(), &[kk])?;
    let v = g.add(rep, &[v])?;
    let kt = g.add(
        OpKind::Permute {
            perm: vec![0, 1, 3, 2],
        },
        &[kk],
    )?;
    let att = g.add(OpKind::MatMul, &[q, kt])?;
    let scale = g.constant(1.0 / (d as f64).sqrt(), dtype)?;
    let att = bin(&mut g, BinaryOp::Mul, att, scale)?;
    let att = bin(&mut g, BinaryOp::Add, att, mask)?;
    let att = g.add(OpKind::Softmax { axis: -1 }, &[att])?;
    let y = g.add(OpKind::MatMul, &[att, v])?;
    let y = g.add(
        OpKind::Permute {
            perm: vec![0, 2, 1, 3],
        },
        &[y],
    )?;
    let y = g.add(
        OpKind::Reshape {
            shape: [b.clone(), t.clone(), k(cfg.heads * d)]
                .into_iter()
                .collect(),
        },
        &[y],
    )?;
    let o = g.add(OpKind::MatMul, &[y, params["o.weight"]])?;
    let x2 = bin(&mut g, BinaryOp::Add, x, o)?;
    let h2 = rms(&mut g, x2, params["ln2.w"])?;
    let gate = g.add(OpKind::MatMul, &[h2, params["gate.weight"]])?;
    let gate = un(&mut g, UnaryOp::Silu, gate)?;
    let up = g.add(OpKind::MatMul, &[h2, params["up.weight"]])?;
    let m = bin(&mut g, BinaryOp::Mul, gate, up)?;
    let down = g.add(OpKind::MatMul, &[m, params["down.weight"]])?;
    let out = bin(&mut g, BinaryOp::Add, x2, down)?;
    g.set_outputs(&[out])?;
    Ok(g)
}

/// Rotary embedding of the first `rot` dims of `x`'s last axis (of width `d`), the two
/// halves rotated (GPT-NeoX / LLaMA style), written in plain ops as models spell it —
/// `cat(xr·cos + cat(−x2, x1)·sin, xp)` with `xr`, `xp` the rotated and passed-through
/// parts and `x1`, `x2` the halves of `xr` — which the built-in `rope` rules fuse into
/// one node. `cos`/`sin` are `[t, rot]` tables.
///
/// # Errors
/// A type error from one of the ops (a `rot` above `d`, tables of the wrong width).
pub fn rope_halves(
    g: &mut Graph,
    x: NodeId,
    cos: NodeId,
    sin: NodeId,
    rot: u64,
    d: u64,
) -> Result<NodeId> {
    let slice = |g: &mut Graph, x: NodeId, start: u64, end: u64| {
        g.add(
            OpKind::Slice {
                axis: -1,
                start,
                end,
            },
            &[x],
        )
    };
    let bin =
        |g: &mut Graph, f: BinaryOp, a: NodeId, c: NodeId| g.add(OpKind::Binary { f }, &[a, c]);
    let xr = if rot == d { x } else { slice(g, x, 0, rot)? };
    let x1 = slice(g, xr, 0, rot / 2)?;
    let x2 = slice(g, xr, rot / 2, rot)?;
    let n2 = g.add(OpKind::Unary { f: UnaryOp::Neg }, &[x2])?;
    let rh = g.add(OpKind::Concat { axis: -1 }, &[n2, x1])?;
    let a = bin(g, BinaryOp::Mul, xr, cos)?;
    let c = bin(g, BinaryOp::Mul, rh, sin)?;
    let s = bin(g, BinaryOp::Add, a, c)?;
    if rot == d {
        Ok(s)
    } else {
        let xp = slice(g, x, rot, d)?;
        g.add(OpKind::Concat { axis: -1 }, &[s, xp])
    }
}
