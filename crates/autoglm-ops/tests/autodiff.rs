//! Every gradient rule of `autoglm_graph::grad` against central finite differences in
//! f64: for each op, random inputs, a loss `Σ op(x) ⊙ r` with a random `r`, and the
//! analytic gradient of every float input compared with (L(x + h) − L(x − h)) / 2h,
//! element by element; the relative error (max-norm) must be at most 1e-6.

use autoglm_graph::zoo::{glm_block, BlockConfig};
use autoglm_graph::{
    grad, BinaryOp, DType, Dim, Graph, NodeId, OpKind, ReduceOp, TensorType, UnaryOp,
};
use autoglm_ops::{Data, Executor, Options, Registry, Tensor};

/// A test case: named inputs (f64 ones are differentiated), and the op's output.
struct Case {
    g: Graph,
    feed: Vec<(String, Tensor)>,
    /// Inputs to differentiate by.
    wrt: Vec<(String, NodeId)>,
}

impl Case {
    fn new() -> Case {
        Case {
            g: Graph::new(),
            feed: Vec::new(),
            wrt: Vec::new(),
        }
    }

    /// A differentiated f64 input with values in `lo..hi`.
    fn x(&mut self, shape: &[usize], lo: f64, hi: f64) -> NodeId {
        let name = format!("x{}", self.feed.len());
        let seed = 17 + self.feed.len() as u64 * 7919;
        let t = Tensor::random(DType::F64, shape, lo, hi, seed);
        let ty = TensorType::new(DType::F64, shape.iter().map(|&d| d as u64));
        let id = self.g.input(&name, ty).unwrap();
        self.feed.push((name.clone(), t));
        self.wrt.push((name, id));
        id
    }

    /// An input that is not differentiated.
    fn fixed(&mut self, t: Tensor) -> NodeId {
        let name = format!("c{}", self.feed.len());
        let ty = TensorType::new(t.dtype(), t.shape().iter().map(|&d| d as u64));
        let id = self.g.input(&name, ty).unwrap();
        self.feed.push((name, t));
        id
    }

    fn add(&mut self, op: OpKind, ins: &[NodeId]) -> NodeId {
        self.g.add(op, ins).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Checks the gradients of `Σ y ⊙ r`; returns the worst relative error.
    fn check(mut self, what: &str, y: NodeId) -> f64 {
        let shape: Vec<usize> = self
            .g
            .node(y)
            .unwrap()
            .ty
            .shape
            .iter()
            .map(|d| d.known().unwrap() as usize)
            .collect();
        let r = Tensor::random(DType::F64, &shape, -1.0, 1.0, 99);
        let rn = self.fixed(r);
        let p = self.add(OpKind::Binary { f: BinaryOp::Mul }, &[y, rn]);
        let loss = self.add(
            OpKind::Reduce {
                f: ReduceOp::Sum,
                axes: (0..shape.len() as i64).collect(),
                keep_dims: false,
            },
            &[p],
        );
        self.g.set_outputs(&[loss]).unwrap();
        let ids: Vec<NodeId> = self.wrt.iter().map(|w| w.1).collect();
        let d = grad(&self.g, loss, &ids).unwrap_or_else(|e| panic!("{what}: {e}"));
        let reg = Registry::with_cpu_kernels();
        let mut back = Executor::new(&d.graph, &reg, Options::default())
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let mut fwd = Executor::new(&self.g, &reg, Options::default()).unwrap();
        let run = |e: &mut Executor, feed: &[(String, Tensor)]| -> Vec<Tensor> {
            let f: Vec<(&str, &Tensor)> = feed.iter().map(|(n, t)| (n.as_str(), t)).collect();
            e.run(&f).unwrap_or_else(|e| panic!("{what}: {e}"))
        };
        let out = run(&mut back, &self.feed);
        let base = run(&mut fwd, &self.feed)[0].to_f64_vec()[0];
        assert!(
            (out[0].to_f64_vec()[0] - base).abs() <= 1e-12 * base.abs().max(1.0),
            "{what}: loss differs"
        );
        let mut worst = 0.0f64;
        for (k, (name, _)) in self.wrt.iter().enumerate() {
            let analytic = out[1 + k].to_f64_vec();
            let pos = self.feed.iter().position(|(n, _)| n == name).unwrap();
            let x0 = self.feed[pos].1.clone();
            let mut fd = Vec::with_capacity(x0.len());
            for i in 0..x0.len() {
                let v = x0.to_f64_vec()[i];
                let h = 1e-5 * v.abs().max(1.0);
                let mut at = |delta: f64| {
                    let mut vals = x0.to_f64_vec();
                    vals[i] = v + delta;
                    self.feed[pos].1 = Tensor::new(x0.shape(), Data::F64(vals)).unwrap();
                    run(&mut fwd, &self.feed)[0].to_f64_vec()[0]
                };
                let (lp, lm) = (at(h), at(-h));
                fd.push((lp - lm) / (2.0 * h));
            }
            self.feed[pos].1 = x0;
            let scale = fd.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-3);
            let err = analytic
                .iter()
                .zip(&fd)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()))
                / scale;
            assert!(
                err <= 1e-6,
                "{what}: d/d{name}: relative error {err:.2e}\n analytic {analytic:?}\n finite differences {fd:?}"
            );
            worst = worst.max(err);
        }
        worst
    }
}

fn ints(shape: &[usize], values: Vec<i64>) -> Tensor {
    Tensor::new(shape, Data::I64(values)).unwrap()
}

#[test]
fn unary_ops() {
    for f in UnaryOp::ALL {
        let (lo, hi) = match f {
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip => (0.3, 2.0),
            _ => (-2.0, 2.0),
        };
        let mut c = Case::new();
        let x = c.x(&[3, 5], lo, hi);
        let y = c.add(OpKind::Unary { f }, &[x]);
        c.check(&format!("{f:?}"), y);
    }
}

#[test]
fn binary_ops_with_broadcasting() {
    for f in BinaryOp::ALL {
        for (sa, sb) in [
            (vec![3, 4], vec![3, 4]),
            (vec![2, 3, 4], vec![4]),
            (vec![3, 1], vec![2, 1, 4]),
        ] {
            let mut c = Case::new();
            let (lo, hi) = if f == BinaryOp::Pow {
                (0.5, 2.0)
            } else {
                (-2.0, 2.0)
            };
            let a = c.x(&sa, lo, hi);
            let b = c.x(&sb, if f == BinaryOp::Div { 0.5 } else { lo }, hi);
            let y = c.add(OpKind::Binary { f }, &[a, b]);
            c.check(&format!("{f:?} {sa:?} {sb:?}"), y);
        }
    }
}

#[test]
fn matmul_and_linear() {
    for (sa, sb) in [
        (vec![3, 4], vec![4, 5]),
        (vec![2, 3, 4], vec![4, 5]),
        (vec![2, 3, 4], vec![2, 4, 5]),
        (vec![3, 4], vec![2, 4, 5]),
        (vec![2, 1, 3, 4], vec![3, 4, 2]),
    ] {
        let mut c = Case::new();
        let a = c.x(&sa, -1.0, 1.0);
        let b = c.x(&sb, -1.0, 1.0);
        let y = c.add(OpKind::MatMul, &[a, b]);
        c.check(&format!("matmul {sa:?} {sb:?}"), y);
    }
    let mut c = Case::new();
    let x = c.x(&[2, 3, 4], -1.0, 1.0);
    let w = c.x(&[4, 5], -1.0, 1.0);
    let b = c.x(&[5], -1.0, 1.0);
    let y = c.add(OpKind::Linear, &[x, w, b]);
    c.check("linear", y);
}

#[test]
fn reductions_and_softmaxes() {
    for f in [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min] {
        for (axes, keep) in [(vec![-1], true), (vec![0, 2], false), (vec![1], false)] {
            let mut c = Case::new();
            let x = c.x(&[2, 3, 4], -2.0, 2.0);
            let y = c.add(
                OpKind::Reduce {
                    f,
                    axes: axes.clone(),
                    keep_dims: keep,
                },
                &[x],
            );
            c.check(&format!("{f:?} {axes:?} {keep}"), y);
        }
    }
    for axis in [-1, 0] {
        let mut c = Case::new();
        let x = c.x(&[3, 5], -2.0, 2.0);
        let y = c.add(OpKind::Softmax { axis }, &[x]);
        c.check("softmax", y);
        let mut c = Case::new();
        let x = c.x(&[3, 5], -2.0, 2.0);
        let y = c.add(OpKind::LogSoftmax { axis }, &[x]);
        c.check("log_softmax", y);
    }
}

#[test]
fn norms() {
    for op in [
        OpKind::LayerNorm { eps: 1e-5 },
        OpKind::FusedLayerNormGelu { eps: 1e-5 },
        OpKind::RmsNorm { eps: 1e-6 },
    ] {
        let mut c = Case::new();
        let x = c.x(&[2, 3, 6], -2.0, 2.0);
        let g = c.x(&[6], 0.5, 1.5);
        let mut ins = vec![x, g];
        if !matches!(op, OpKind::RmsNorm { .. }) {
            ins.push(c.x(&[6], -0.5, 0.5));
        }
        let y = c.add(op.clone(), &ins);
        c.check(&op.name(), y);
    }
}

#[test]
fn data_movement() {
    let mut c = Case::new();
    let x = c.x(&[2, 3, 4], -1.0, 1.0);
    let y = c.add(
        OpKind::Reshape {
            shape: autoglm_graph::shape([6u64, 4]),
        },
        &[x],
    );
    c.check("reshape", y);
    let mut c = Case::new();
    let x = c.x(&[2, 3, 4], -1.0, 1.0);
    let y = c.add(
        OpKind::Permute {
            perm: vec![2, 0, 1],
        },
        &[x],
    );
    c.check("permute", y);
    let mut c = Case::new();
    let a = c.x(&[2, 3], -1.0, 1.0);
    let b = c.x(&[2, 2], -1.0, 1.0);
    let y = c.add(OpKind::Concat { axis: 1 }, &[a, b]);
    c.check("concat", y);
    let mut c = Case::new();
    let x = c.x(&[2, 5, 3], -1.0, 1.0);
    let y = c.add(
        OpKind::Slice {
            axis: 1,
            start: 1,
            end: 4,
        },
        &[x],
    );
    c.check("slice", y);
    let mut c = Case::new();
    let x = c.x(&[2, 3], -1.0, 1.0);
    let y = c.add(
        OpKind::Pad {
            axis: -1,
            before: 2,
            after: 1,
        },
        &[x],
    );
    c.check("pad", y);
    let mut c = Case::new();
    let x = c.x(&[2, 3, 2], -1.0, 1.0);
    let y = c.add(
        OpKind::RepeatInterleave {
            axis: 1,
            repeats: 3,
        },
        &[x],
    );
    c.check("repeat_interleave", y);
    let mut c = Case::new();
    let x = c.x(&[3, 1], -1.0, 1.0);
    let like = c.fixed(Tensor::zeros(DType::F32, &[2, 3, 4]));
    let y = c.add(OpKind::ExpandAs, &[x, like]);
    c.check("expand_as", y);
    let mut c = Case::new();
    let x = c.x(&[3, 4], -1.0, 1.0);
    let y = c.add(OpKind::Cast { to: DType::F64 }, &[x]);
    c.check("cast", y);
    // An embedding lookup with a repeated index, and its adjoint.
    let mut c = Case::new();
    let table = c.x(&[6, 4], -1.0, 1.0);
    let ids = c.fixed(ints(&[2, 3], vec![0, 5, 2, 2, 1, 5]));
    let y = c.add(OpKind::Gather { axis: 0 }, &[table, ids]);
    c.check("gather", y);
    let mut c = Case::new();
    let x = c.x(&[2, 4, 3], -1.0, 1.0);
    let ids = c.fixed(ints(&[3], vec![3, 0, 3]));
    let y = c.add(OpKind::Gather { axis: 1 }, &[x, ids]);
    c.check("gather axis 1", y);
    let mut c = Case::new();
    let like = c.fixed(Tensor::zeros(DType::F64, &[5, 2]));
    let ids = c.fixed(ints(&[4], vec![4, 1, 4, 0]));
    let upd = c.x(&[4, 2], -1.0, 1.0);
    let y = c.add(OpKind::ScatterAdd { axis: 0 }, &[like, ids, upd]);
    c.check("scatter_add", y);
    let mut c = Case::new();
    let cond = c.fixed(
        Tensor::new(
            &[2, 3],
            Data::Bool(vec![true, false, true, false, false, true]),
        )
        .unwrap(),
    );
    let a = c.x(&[2, 3], -1.0, 1.0);
    let b = c.x(&[3], -1.0, 1.0);
    let y = c.add(OpKind::Where, &[cond, a, b]);
    c.check("where", y);
}

/// A causal mask `[t, s]` over the last `t` of `s` positions, with −∞.
fn causal(t: usize, s: usize) -> Tensor {
    let mut m = vec![0.0f64; t * s];
    for i in 0..t {
        for j in 0..s {
            if j > i + (s - t) {
                m[i * s + j] = f64::NEG_INFINITY;
            }
        }
    }
    Tensor::new(&[t, s], Data::F64(m)).unwrap()
}

#[test]
fn fused_ops() {
    let mut c = Case::new();
    let g = c.x(&[2, 5], -2.0, 2.0);
    let u = c.x(&[2, 5], -2.0, 2.0);
    let y = c.add(OpKind::SwiGlu, &[g, u]);
    c.check("swiglu", y);
    // Attention with a causal mask and a differentiated additive bias.
    let (t, s, d, e) = (3, 4, 4, 3);
    let mut c = Case::new();
    let q = c.x(&[2, t, d], -1.0, 1.0);
    let kt = c.x(&[2, d, s], -1.0, 1.0);
    let v = c.x(&[2, s, e], -1.0, 1.0);
    let m = c.fixed(causal(t, s));
    let bias = c.x(&[t, s], -0.5, 0.5);
    let mask = c.add(OpKind::Binary { f: BinaryOp::Add }, &[m, bias]);
    let y = c.add(OpKind::Attention { scale: 0.4 }, &[q, kt, v, mask]);
    c.check("attention", y);
    for (hq, hkv) in [(4, 2), (2, 2)] {
        let mut c = Case::new();
        let q = c.x(&[2, hq, t, d], -1.0, 1.0);
        let k = c.x(&[2, hkv, s, d], -1.0, 1.0);
        let v = c.x(&[2, hkv, s, e], -1.0, 1.0);
        let m = c.fixed(causal(t, s));
        let y = c.add(OpKind::GroupedAttention { scale: 0.5 }, &[q, k, v, m]);
        c.check(&format!("grouped_attention {hq}/{hkv}"), y);
    }
    for rot in [4, 2] {
        let mut c = Case::new();
        let x = c.x(&[2, 3, 4], -1.0, 1.0);
        let cos = c.fixed(Tensor::random(DType::F64, &[3, rot], -1.0, 1.0, 5));
        let sin = c.fixed(Tensor::random(DType::F64, &[3, rot], -1.0, 1.0, 6));
        let y = c.add(OpKind::Rope { rot: rot as u64 }, &[x, cos, sin]);
        c.check(&format!("rope {rot}"), y);
    }
}

#[test]
fn cross_entropy_with_ignored_positions() {
    let mut c = Case::new();
    let logits = c.x(&[2, 3, 5], -2.0, 2.0);
    let labels = c.fixed(ints(&[2, 3], vec![4, -100, 0, 2, 2, -100]));
    let y = c.add(
        OpKind::CrossEntropy { ignore_index: -100 },
        &[logits, labels],
    );
    c.check("cross_entropy", y);
}

#[test]
fn a_glm_block_end_to_end() {
    // The benchmark block's structure at a tiny size, every parameter and the input
    // differentiated at once through the fused graph's decomposed form.
    let cfg = BlockConfig {
        hidden: 8,
        heads: 4,
        kv_heads: 2,
        rot: 2,
        inter: 6,
        eps: 1e-5,
    };
    let block = glm_block(&cfg, DType::F64).unwrap();
    let (b, t) = (2usize, 3usize);
    let mut c = Case::new();
    // Rebuild the block's inputs as case inputs, then splice the block in by
    // running it on them (same names).
    let x = c.x(&[b, t, 8], -1.0, 1.0);
    let cos = c.fixed(Tensor::random(DType::F64, &[t, 2], -1.0, 1.0, 3));
    let sin = c.fixed(Tensor::random(DType::F64, &[t, 2], -1.0, 1.0, 4));
    let mask = c.fixed(causal(t, t));
    let mut map = std::collections::BTreeMap::new();
    let order = block.topo_order().unwrap();
    for n in order {
        let node = block.node(n).unwrap();
        let id = match &node.op {
            OpKind::Input { name, .. } => match name.as_str() {
                "x" => x,
                "cos" => cos,
                "sin" => sin,
                _ => mask,
            },
            OpKind::Parameter { ty, .. } => {
                let shape: Vec<usize> = ty
                    .shape
                    .iter()
                    .map(|d| d.known().unwrap() as usize)
                    .collect();
                let lo = if shape.len() == 1 { 0.5 } else { -0.5 };
                c.x(&shape, lo, lo + 1.0)
            }
            op => {
                let ins: Vec<NodeId> = block.inputs(n).unwrap().iter().map(|i| map[i]).collect();
                // The block's reshapes name the symbolic batch and length.
                let op = match op {
                    OpKind::Reshape { shape } => OpKind::Reshape {
                        shape: shape
                            .iter()
                            .map(|d| match d {
                                Dim::Sym(s) if s == "b" => Dim::Known(b as u64),
                                Dim::Sym(s) if s == "t" => Dim::Known(t as u64),
                                d => d.clone(),
                            })
                            .collect(),
                    },
                    op => op.clone(),
                };
                c.add(op, &ins)
            }
        };
        map.insert(n, id);
    }
    let y = map[&block.outputs()[0]];
    let err = c.check("glm block", y);
    assert!(err <= 1e-6);
}

#[test]
fn errors_name_the_problem() {
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F64, [3u64])).unwrap();
    let e = grad(&g, x, &[x]).unwrap_err().to_string();
    assert!(e.contains("scalar"), "{e}");
    let ids = g.input("ids", TensorType::new(DType::I64, [3u64])).unwrap();
    let s = g
        .add(
            OpKind::Reduce {
                f: ReduceOp::Sum,
                axes: vec![0],
                keep_dims: false,
            },
            &[x],
        )
        .unwrap();
    let e = grad(&g, s, &[ids]).unwrap_err().to_string();
    assert!(e.contains("cannot differentiate"), "{e}");
    // A node the loss does not depend on gets zeros.
    let other = g.input("y", TensorType::new(DType::F64, [2u64])).unwrap();
    let d = grad(&g, s, &[other]).unwrap();
    let mut e = Executor::new(&d.graph, &Registry::with_cpu_kernels(), Options::default()).unwrap();
    let xv = Tensor::random(DType::F64, &[3], 0.0, 1.0, 1);
    let yv = Tensor::random(DType::F64, &[2], 0.0, 1.0, 2);
    let iv = Tensor::new(&[3], Data::I64(vec![0, 1, 2])).unwrap();
    let out = e.run(&[("x", &xv), ("y", &yv), ("ids", &iv)]).unwrap();
    assert_eq!(out[1].to_f64_vec(), vec![0.0, 0.0]);
}

const ROWS: usize = 256;

/// A residual MLP of `depth` blocks `x ← x + tanh(x·Wᵢ)·Vᵢ`, loss `Σ x`.
fn residual_mlp(depth: usize, width: u64) -> (Graph, NodeId, NodeId, Vec<NodeId>) {
    let mut g = Graph::new();
    let f = |dims: &[u64]| TensorType::new(DType::F64, dims.iter().copied());
    let x0 = g.input("x", f(&[ROWS as u64, width])).unwrap();
    let mut x = x0;
    let mut wrt = vec![x0];
    for i in 0..depth {
        let w = g
            .parameter(&format!("w{i}"), f(&[width, 4 * width]))
            .unwrap();
        let v = g
            .parameter(&format!("v{i}"), f(&[4 * width, width]))
            .unwrap();
        let h = g.add(OpKind::MatMul, &[x, w]).unwrap();
        let a = g.add(OpKind::Unary { f: UnaryOp::Tanh }, &[h]).unwrap();
        let o = g.add(OpKind::MatMul, &[a, v]).unwrap();
        x = g.add(OpKind::Binary { f: BinaryOp::Add }, &[x, o]).unwrap();
        wrt.extend([w, v]);
    }
    let loss = g
        .add(
            OpKind::Reduce {
                f: ReduceOp::Sum,
                axes: vec![0, 1],
                keep_dims: false,
            },
            &[x],
        )
        .unwrap();
    (g, x0, loss, wrt)
}

#[test]
fn checkpointing_recomputes_inside_blocks_with_the_same_gradients_and_less_memory() {
    let (depth, width) = (6, 16);
    let (g, x, loss, wrt) = residual_mlp(depth, width);
    let cuts = g.cut_points(x, loss).unwrap();
    // The residual stream: each block's output (the last one feeds the loss).
    assert_eq!(cuts.len(), depth);
    let plain = grad(&g, loss, &wrt).unwrap();
    let mut ck = plain.clone();
    // Inside each block: the matmul and tanh outputs (`h`, `a`) the backward reads.
    let recomputed = ck.checkpoint(&cuts).unwrap();
    assert_eq!(recomputed, 2 * (depth - 1));
    // The first block lies before the first checkpoint: kept.
    let registry = Registry::with_cpu_kernels();
    let feed = vec![(
        "x".to_string(),
        Tensor::random(DType::F64, &[ROWS, width as usize], -1.0, 1.0, 1),
    )];
    let run = |graph: &Graph, feed: &[(String, Tensor)]| {
        let mut graph = graph.clone();
        autoglm_ops::optimize(&mut graph, &registry, autoglm_ops::Device::Cpu, None).unwrap();
        let lazy = graph
            .node_ids()
            .filter(|&n| graph.node(n).unwrap().recompute)
            .count();
        // Recomputed nodes run after the forward pass, each after its inputs.
        let order = graph.schedule().unwrap();
        let at = |n: NodeId| order.iter().position(|&m| m == n).unwrap();
        for &n in &order {
            if graph.node(n).unwrap().recompute {
                assert!(
                    at(n) > at(graph.outputs()[0]),
                    "{n} runs in the forward pass"
                );
            }
        }
        let mut exec = Executor::new(&graph, &registry, Options::default()).unwrap();
        for (i, w) in (0..depth)
            .flat_map(|i| [format!("w{i}"), format!("v{i}")])
            .enumerate()
        {
            let shape = if w.starts_with('w') {
                [width as usize, 4 * width as usize]
            } else {
                [4 * width as usize, width as usize]
            };
            exec.set_parameter(
                &w,
                Tensor::random(DType::F64, &shape, -0.3, 0.3, 10 + i as u64),
            )
            .unwrap();
        }
        let ins: Vec<(&str, &Tensor)> = feed.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let out = exec.run(&ins).unwrap();
        (out, exec.stats().peak_live_bytes, lazy)
    };
    let (a, plain_peak, none) = run(&plain.graph, &feed);
    let (b, ck_peak, lazy) = run(&ck.graph, &feed);
    assert_eq!(none, 0);
    assert_eq!(lazy, recomputed);
    // Same ops on the same values: the same bits.
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.to_f64_vec(), y.to_f64_vec());
    }
    // Plain keeps every block's tanh output (ROWS × 64 f64) for the backward pass;
    // checkpointed, the recomputed ones of one block at a time.
    eprintln!("peak {ck_peak} B checkpointed vs {plain_peak} B");
    assert!(
        ck_peak + (depth - 2) * ROWS * 64 * 8 <= plain_peak,
        "peak {ck_peak} B checkpointed vs {plain_peak} B"
    );
}
