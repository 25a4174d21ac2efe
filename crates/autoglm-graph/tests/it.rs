//! Integration tests of autoglm-graph through its public API.

use autoglm_graph::{
    BinaryOp, DType, Dim, Error, Graph, NodeId, OpKind, ReduceOp, TensorType, UnaryOp,
};
use proptest::prelude::*;

/// A GLM-style pre-norm MLP: RMSNorm, two projections, SiLU gate, residual.
fn mlp() -> (Graph, NodeId) {
    let f = |dims: &[Dim]| TensorType {
        dtype: DType::F32,
        shape: dims.iter().cloned().collect(),
    };
    let (b, s) = (Dim::sym("batch"), Dim::sym("seq"));
    let mut g = Graph::new();
    let x = g
        .input("x", f(&[b.clone(), s.clone(), 512.into()]))
        .unwrap();
    let gamma = g.parameter("norm.weight", f(&[512.into()])).unwrap();
    let n = g.add(OpKind::RmsNorm { eps: 1e-5 }, &[x, gamma]).unwrap();
    let w1 = g.parameter("w1", f(&[512.into(), 1408.into()])).unwrap();
    let w3 = g.parameter("w3", f(&[512.into(), 1408.into()])).unwrap();
    let w2 = g.parameter("w2", f(&[1408.into(), 512.into()])).unwrap();
    let a = g.add(OpKind::MatMul, &[n, w1]).unwrap();
    let gate = g.add(OpKind::Unary { f: UnaryOp::Silu }, &[a]).unwrap();
    let up = g.add(OpKind::MatMul, &[n, w3]).unwrap();
    let h = g
        .add(OpKind::Binary { f: BinaryOp::Mul }, &[gate, up])
        .unwrap();
    let down = g.add(OpKind::MatMul, &[h, w2]).unwrap();
    let out = g
        .add(OpKind::Binary { f: BinaryOp::Add }, &[x, down])
        .unwrap();
    g.set_outputs(&[out]).unwrap();
    (g, out)
}

#[test]
fn a_glm_mlp_infers_and_verifies() {
    let (g, out) = mlp();
    assert_eq!(g.node(out).unwrap().ty.to_string(), "f32[batch,seq,512]");
    g.verify().unwrap();
    assert_eq!(g.node_count(), 12);
    let order = g.topo_order().unwrap();
    for id in g.node_ids() {
        let at = |n: NodeId| order.iter().position(|&o| o == n).unwrap();
        for i in g.inputs(id).unwrap() {
            assert!(at(i) < at(id));
        }
    }
}

#[test]
fn json_round_trips_and_errors_name_the_node() {
    let (g, _) = mlp();
    let json = g.to_json();
    let back = Graph::from_json(&json).unwrap();
    assert_eq!(back.to_json(), json);
    back.verify().unwrap();
    // An input that is not an earlier node.
    let bad = json.replacen(
        "\"inputs\": [\n        0,\n        1\n      ]",
        "\"inputs\": [\n        0,\n        7\n      ]",
        1,
    );
    assert_ne!(bad, json, "the fixture edit applies");
    let e = Graph::from_json(&bad).unwrap_err().to_string();
    assert!(
        e.contains("nodes[2]") && e.contains("not an earlier node"),
        "{e}"
    );
    // An unknown op field names line and column.
    let e =
        Graph::from_json(r#"{"nodes": [{"op": "softmax", "axis": 0, "axes": 1}], "outputs": []}"#)
            .unwrap_err()
            .to_string();
    assert!(e.contains("axes") && e.contains("line 1"), "{e}");
    // Inputs that do not fit the op name the node.
    let e = Graph::from_json(
        r#"{"nodes": [
            {"op": "input", "name": "a", "ty": {"dtype": "f32", "shape": [2, 3]}},
            {"op": "input", "name": "b", "ty": {"dtype": "f32", "shape": [4, 5]}},
            {"op": "mat_mul", "inputs": [0, 1]}], "outputs": [2]}"#,
    )
    .unwrap_err();
    assert!(
        matches!(
            e,
            Error::Type {
                node: NodeId(2),
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn add_rejects_ill_typed_nodes_and_leaves_the_graph_unchanged() {
    let (mut g, out) = mlp();
    let before = g.node_count();
    let e = g
        .add(OpKind::Softmax { axis: 3 }, &[out])
        .unwrap_err()
        .to_string();
    assert!(e.contains("axis 3 is out of range for rank 3"), "{e}");
    let i = g
        .input("mask", TensorType::new(DType::Bool, [Dim::sym("seq")]))
        .unwrap();
    let e = g
        .add(OpKind::Unary { f: UnaryOp::Exp }, &[i])
        .unwrap_err()
        .to_string();
    assert!(e.contains("floating-point"), "{e}");
    assert_eq!(g.node_count(), before + 1);
    assert!(g.add(OpKind::MatMul, &[NodeId(999), out]).is_err());
}

#[test]
fn verifier_lists_every_problem() {
    let mut g = Graph::new();
    let t = TensorType::new(DType::F32, [4u64]);
    let a = g.input("x", t.clone()).unwrap();
    let b = g.parameter("x", t.clone()).unwrap();
    let c = g.add(OpKind::Binary { f: BinaryOp::Add }, &[a, b]).unwrap();
    g.set_outputs(&[c]).unwrap();
    let Err(Error::Invalid(problems)) = g.verify() else {
        panic!("duplicate names must be reported")
    };
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].contains("'x' is used twice"));
}

#[test]
fn dot_export_lists_nodes_and_edges() {
    let (g, _) = mlp();
    let dot = g.to_dot();
    assert!(dot.starts_with("digraph {"));
    assert_eq!(dot.matches(" -> ").count(), 13);
    assert!(
        dot.contains("rms_norm")
            && dot.contains("f32[batch,seq,1408]")
            && dot.contains("peripheries=2")
    );
}

fn dim() -> impl Strategy<Value = Dim> {
    prop_oneof![
        (1u64..6).prop_map(Dim::Known),
        prop::sample::select(vec!["b", "s"]).prop_map(Dim::sym),
    ]
}

proptest! {
    #[test]
    fn broadcasting_is_symmetric_and_idempotent(
        a in prop::collection::vec(dim(), 0..4),
        b in prop::collection::vec(dim(), 0..4),
    ) {
        let (sa, sb) = (a.into_iter().collect(), b.into_iter().collect());
        let ab = autoglm_graph::broadcast(&sa, &sb);
        let ba = autoglm_graph::broadcast(&sb, &sa);
        prop_assert_eq!(ab.is_ok(), ba.is_ok());
        if let (Ok(x), Ok(y)) = (ab, ba) {
            prop_assert_eq!(&x, &y);
            prop_assert_eq!(autoglm_graph::broadcast(&x, &sa).unwrap(), x.clone());
            prop_assert_eq!(x.len(), sa.len().max(sb.len()));
        }
    }

    #[test]
    fn reductions_drop_or_keep_axes(
        dims in prop::collection::vec(dim(), 1..5),
        axis in 0usize..5,
        keep in any::<bool>(),
    ) {
        let t = TensorType { dtype: DType::F32, shape: dims.iter().cloned().collect() };
        let op = OpKind::Reduce { f: ReduceOp::Sum, axes: vec![axis as i64], keep_dims: keep };
        let r = autoglm_graph::infer(&op, &[&t]);
        prop_assert_eq!(r.is_ok(), axis < dims.len());
        if let Ok(out) = r {
            prop_assert_eq!(out.rank(), if keep { dims.len() } else { dims.len() - 1 });
        }
    }
}

#[test]
fn cse_and_dce_merge_duplicates_and_drop_unused_nodes() {
    let (mut g, out) = mlp();
    let x = g.node_ids().next().unwrap();
    // A duplicate of the first matmul chain and an unused branch.
    let gamma = g.inputs(g.node_ids().nth(2).unwrap()).unwrap()[1];
    let n2 = g.add(OpKind::RmsNorm { eps: 1e-5 }, &[x, gamma]).unwrap();
    let unused = g.add(OpKind::Unary { f: UnaryOp::Exp }, &[n2]).unwrap();
    let c1 = g.constant(2.0, DType::F32).unwrap();
    let c2 = g.constant(2.0, DType::F32).unwrap();
    let scaled = g
        .add(OpKind::Binary { f: BinaryOp::Mul }, &[out, c1])
        .unwrap();
    let scaled2 = g
        .add(OpKind::Binary { f: BinaryOp::Mul }, &[out, c2])
        .unwrap();
    let sum = g
        .add(OpKind::Binary { f: BinaryOp::Add }, &[scaled, scaled2])
        .unwrap();
    g.set_outputs(&[sum]).unwrap();
    let before = g.node_count();
    // n2 duplicates the first norm; c2 duplicates c1, and then scaled2 duplicates scaled.
    assert_eq!(g.eliminate_common_subexpressions(), 3);
    assert_eq!(g.inputs(sum).unwrap(), [scaled, scaled]);
    assert_eq!(g.users(n2).unwrap(), []);
    // unused, the now-unused n2, c2 and scaled2 go; the input x stays.
    assert_eq!(g.eliminate_dead_code(), 4);
    assert_eq!(g.node_count(), before - 4);
    assert!(g.node(unused).is_err());
    g.verify().unwrap();
    let json = g.to_json();
    assert_eq!(Graph::from_json(&json).unwrap().to_json(), json);
}

#[test]
fn replace_uses_checks_types_and_cycles() {
    let (mut g, out) = mlp();
    let x = g.node_ids().next().unwrap();
    let e = g.add(OpKind::Unary { f: UnaryOp::Exp }, &[out]).unwrap();
    // e depends on out: redirecting out's users to e would make a cycle.
    assert!(g
        .replace_uses(out, e)
        .unwrap_err()
        .to_string()
        .contains("depends on"));
    let gamma = g.inputs(g.node_ids().nth(2).unwrap()).unwrap()[1];
    assert!(g
        .replace_uses(x, gamma)
        .unwrap_err()
        .to_string()
        .contains("type"));
    let neg = g.add(OpKind::Unary { f: UnaryOp::Neg }, &[x]).unwrap();
    let users_of_x = g.users(x).unwrap().len();
    g.replace_uses(x, neg).unwrap_err(); // neg uses x: refused
    assert_eq!(g.users(x).unwrap().len(), users_of_x);
}

#[test]
fn the_benchmark_glm_block_builds_verifies_and_fuses() {
    use autoglm_graph::zoo::{glm_block, BlockConfig};
    use autoglm_graph::{apply_rules, builtin_rules, AnyKernel};
    let mut g = glm_block(&BlockConfig::bench(), DType::F32).unwrap();
    let out = g.outputs()[0];
    assert_eq!(g.node(out).unwrap().ty.to_string(), "f32[b,t,512]");
    g.verify().unwrap();
    let json = g.to_json();
    assert_eq!(Graph::from_json(&json).unwrap().to_json(), json);
    // The two norms share their constants 2 and eps.
    assert_eq!(g.eliminate_common_subexpressions(), 2);
    assert_eq!(g.eliminate_dead_code(), 2);
    let before = g.node_count();
    let r = apply_rules(&mut g, &builtin_rules(), &AnyKernel, 16).unwrap();
    g.verify().unwrap();
    let fired = |n: &str| r.fired.get(n).copied().unwrap_or(0);
    assert_eq!(fired("rms_norm"), 2, "{r:?}");
    assert_eq!(fired("rope"), 2, "{r:?}");
    assert_eq!(fired("rope_partial"), 2, "{r:?}");
    assert_eq!(fired("attention"), 1, "{r:?}");
    assert_eq!(fired("swiglu"), 1, "{r:?}");
    assert!(!r.hit_limit);
    let ops: Vec<String> = g.node_ids().map(|n| g.node(n).unwrap().op.name()).collect();
    for gone in ["softmax", "rsqrt", "silu", "neg", "concat", "reduce_mean"] {
        assert!(!ops.iter().any(|o| o == gone), "{gone} left: {ops:?}");
    }
    assert!(
        g.node_count() + 30 < before,
        "{} → {}",
        before,
        g.node_count()
    );
}

#[test]
fn embedding_lookup_and_grouped_heads() {
    let mut g = Graph::new();
    let table = g
        .parameter("emb", TensorType::new(DType::F32, [32000u64, 512]))
        .unwrap();
    let ids = g
        .input(
            "ids",
            TensorType::new(DType::I64, [Dim::sym("b"), Dim::sym("t")]),
        )
        .unwrap();
    let e = g.add(OpKind::Gather { axis: 0 }, &[table, ids]).unwrap();
    assert_eq!(g.node(e).unwrap().ty.to_string(), "f32[b,t,512]");
    let bad = g
        .add(OpKind::Gather { axis: 0 }, &[table, e])
        .unwrap_err()
        .to_string();
    assert!(bad.contains("integer indices"), "{bad}");
    let r = g
        .add(
            OpKind::RepeatInterleave {
                axis: -1,
                repeats: 3,
            },
            &[e],
        )
        .unwrap();
    assert_eq!(g.node(r).unwrap().ty.to_string(), "f32[b,t,1536]");
    let sym = g
        .add(
            OpKind::RepeatInterleave {
                axis: 0,
                repeats: 2,
            },
            &[e],
        )
        .unwrap_err();
    assert!(sym.to_string().contains("symbolic"), "{sym}");
}

#[test]
fn scalar_constants_fold() {
    let mut g = Graph::new();
    let x = g
        .input("x", TensorType::new(DType::F32, [Dim::sym("n")]))
        .unwrap();
    let d = g.constant(64.0, DType::F32).unwrap();
    let r = g.add(OpKind::Unary { f: UnaryOp::Rsqrt }, &[d]).unwrap();
    let two = g.constant(2.0, DType::F32).unwrap();
    let s = g
        .add(OpKind::Binary { f: BinaryOp::Mul }, &[r, two])
        .unwrap();
    let y = g.add(OpKind::Binary { f: BinaryOp::Mul }, &[x, s]).unwrap();
    let e = g.add(OpKind::Unary { f: UnaryOp::Erf }, &[two]).unwrap();
    let z = g.add(OpKind::Binary { f: BinaryOp::Add }, &[y, e]).unwrap();
    g.set_outputs(&[z]).unwrap();
    // rsqrt(64) then ·2 fold; erf is left to the kernels; x·0.25 is not constant.
    assert_eq!(g.fold_constants(), 2);
    let folded = g.inputs(y).unwrap()[1];
    assert_eq!(
        g.node(folded).unwrap().op,
        OpKind::Constant {
            value: 0.25,
            dtype: DType::F32
        }
    );
    assert_eq!(g.eliminate_dead_code(), 4); // 64, rsqrt, the old mul, and its folded rsqrt constant
    g.verify().unwrap();
    // Integer division is not folded.
    let mut h = Graph::new();
    let a = h.constant(7.0, DType::I64).unwrap();
    let b = h.constant(2.0, DType::I64).unwrap();
    let q = h.add(OpKind::Binary { f: BinaryOp::Div }, &[a, b]).unwrap();
    h.set_outputs(&[q]).unwrap();
    assert_eq!(h.fold_constants(), 0);
}

mod rules {
    use super::*;
    use autoglm_graph::{apply_rules, builtin_rules, AnyKernel, KernelSupport, Rule};

    fn ln_gelu() -> (Graph, NodeId) {
        let mut g = Graph::new();
        let t = |d: &[u64]| TensorType::new(DType::F32, d.iter().copied());
        let x = g
            .input(
                "x",
                TensorType::new(DType::F32, [Dim::sym("rows"), Dim::Known(64)]),
            )
            .unwrap();
        let gm = g.parameter("g", t(&[64])).unwrap();
        let bt = g.parameter("b", t(&[64])).unwrap();
        let ln = g
            .add(OpKind::LayerNorm { eps: 1e-5 }, &[x, gm, bt])
            .unwrap();
        let y = g.add(OpKind::Unary { f: UnaryOp::Gelu }, &[ln]).unwrap();
        let z = g.add(OpKind::Unary { f: UnaryOp::Tanh }, &[y]).unwrap();
        g.set_outputs(&[z]).unwrap();
        (g, ln)
    }

    #[test]
    fn layer_norm_gelu_fuses() {
        let (mut g, _) = ln_gelu();
        let report = apply_rules(&mut g, &builtin_rules(), &AnyKernel, 10).unwrap();
        assert_eq!(report.fired["fuse_layer_norm_gelu"], 1);
        assert_eq!(report.passes, 2);
        assert!(!report.hit_limit);
        g.verify().unwrap();
        let names: Vec<String> = g.node_ids().map(|n| g.node(n).unwrap().op.name()).collect();
        assert!(
            names.contains(&"fused_layer_norm_gelu".to_owned()),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n == "layer_norm" || n == "gelu"),
            "{names:?}"
        );
        let fused = g
            .node_ids()
            .find(|&n| g.node(n).unwrap().op.name() == "fused_layer_norm_gelu")
            .unwrap();
        assert_eq!(
            g.node(fused).unwrap().op,
            OpKind::FusedLayerNormGelu { eps: 1e-5 }
        );
        assert_eq!(g.node(fused).unwrap().ty.to_string(), "f32[rows,64]");
    }

    #[test]
    fn rules_respect_kernel_support_and_shared_inner_nodes() {
        struct NoFused;
        impl KernelSupport for NoFused {
            fn supports(&self, op: &OpKind, _: DType) -> bool {
                !matches!(op, OpKind::FusedLayerNormGelu { .. })
            }
        }
        let (mut g, _) = ln_gelu();
        let r = apply_rules(&mut g, &builtin_rules(), &NoFused, 10).unwrap();
        assert!(r.fired.is_empty());
        // The LayerNorm result is also an output: fusing would compute it twice.
        let (mut g, ln) = ln_gelu();
        let mut outs = g.outputs().to_vec();
        outs.push(ln);
        g.set_outputs(&outs).unwrap();
        let r = apply_rules(&mut g, &builtin_rules(), &AnyKernel, 10).unwrap();
        assert!(r.fired.is_empty(), "{r:?}");
    }

    #[test]
    fn user_rules_with_attributes_and_errors() {
        // Attribute literals must match; variables bind them.
        let r = Rule::parse(
            "(gelu (layer_norm ?x ?g ?b 0.001)) => (fused_layer_norm_gelu ?x ?g ?b 0.001)",
        )
        .unwrap();
        let (mut g, _) = ln_gelu();
        assert!(apply_rules(&mut g, &[r], &AnyKernel, 10)
            .unwrap()
            .fired
            .is_empty());
        // exp(log x) => x.
        let r = Rule::parse("exp_log: (exp (log ?x)) => ?x").unwrap();
        let mut g = Graph::new();
        let x = g.input("x", TensorType::new(DType::F32, [4u64])).unwrap();
        let l = g.add(OpKind::Unary { f: UnaryOp::Log }, &[x]).unwrap();
        let e = g.add(OpKind::Unary { f: UnaryOp::Exp }, &[l]).unwrap();
        let s = g.add(OpKind::Binary { f: BinaryOp::Add }, &[e, x]).unwrap();
        g.set_outputs(&[s]).unwrap();
        let rep = apply_rules(&mut g, &[r], &AnyKernel, 10).unwrap();
        assert_eq!(rep.fired["exp_log"], 1);
        assert_eq!(g.inputs(s).unwrap(), [x, x]);
        assert_eq!(g.node_count(), 2);
        for (text, msg) in [
            ("(gelu ?x) => (frob ?x)", "unknown op 'frob'"),
            ("(gelu ?x ?y) => ?x", "takes 1 inputs and 0 attributes"),
            ("(gelu ?x) => ?y", "?y is not bound"),
            ("?x => (gelu ?x)", "left side must be an op"),
            ("(gelu ?x)", "'lhs => rhs'"),
            ("(gelu (exp ?x) => ?x", "not closed"),
        ] {
            let e = Rule::parse(text).unwrap_err().to_string();
            assert!(e.contains(msg), "{text}: {e}");
        }
        let e =
            Rule::parse_set("# ok\n(exp (log ?x)) => ?x\n\n(gelu ?x) => (frob ?x)\n").unwrap_err();
        assert!(e.to_string().contains("line 4"), "{e}");
    }
}

#[test]
fn fuzz_entry_points_accept_their_seed_inputs() {
    let graph = r#"{"nodes":[{"op":"input","name":"x","ty":{"dtype":"f32","shape":[4]}},{"op":"unary","f":"sigmoid","inputs":[0]},{"op":"binary","f":"mul","inputs":[0,1]}],"outputs":[2]}"#;
    let seed = format!("{}\n---\n{graph}", autoglm_graph::BUILTIN_RULES);
    autoglm_graph::fuzz::check_rules_and_graph(seed.as_bytes());
    autoglm_graph::fuzz::check_rules_and_graph(b"(gelu ?x) => (frob ?x)\n---\n{}");
    autoglm_graph::fuzz::check_rules_and_graph(b"a: (add ?x 1e400) => ?x if (== ?x");
    let g = autoglm_graph::zoo::glm_block(&autoglm_graph::zoo::BlockConfig::bench(), DType::F32)
        .unwrap();
    autoglm_graph::fuzz::check_graph_json(g.to_json().as_bytes());
}

#[test]
fn unnamed_rules_print_back_to_text_that_parses() {
    // Found by the graph_rules fuzz target: an unnamed rule printed its text as a name.
    autoglm_graph::fuzz::check_rules_and_graph(
        b"(div ?x (add (exp (neg ?x)) 2)) => (silu ?x)\n#c\n  a b: (exp ?x) => ?x",
    );
}
