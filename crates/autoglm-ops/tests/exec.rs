//! The executor on whole graphs: rewrites keep results, threads keep results, memory
//! reuse, binding errors, user operators; rules as text, code and JSON agree.

use std::sync::Arc;

use autoglm_graph::zoo::{glm_block, BlockConfig};
use autoglm_graph::{
    apply_rules, builtin_rules, Attrs, BinaryOp, DType, Dim, Graph, NodeId, OpDef, OpKind, Pattern,
    Rule, TensorType, UnaryOp,
};
use autoglm_ops::{
    optimize, Device, Error, Executor, Kernel, KernelError, Operator, Options, Registry, Tensor,
};

fn small() -> BlockConfig {
    BlockConfig::small()
}

fn block_inputs(cfg: &BlockConfig, b: usize, t: usize) -> Vec<(String, Tensor)> {
    let h = cfg.hidden as usize;
    let rot = cfg.rot as usize;
    let mut mask = vec![0.0f32; t * t];
    for i in 0..t {
        for j in i + 1..t {
            mask[i * t + j] = f32::NEG_INFINITY;
        }
    }
    vec![
        (
            "x".into(),
            Tensor::random(DType::F32, &[b, t, h], -2.0, 2.0, 1),
        ),
        (
            "cos".into(),
            Tensor::random(DType::F32, &[t, rot], -1.0, 1.0, 2),
        ),
        (
            "sin".into(),
            Tensor::random(DType::F32, &[t, rot], -1.0, 1.0, 3),
        ),
        ("mask".into(), Tensor::from_f32(&[t, t], mask).unwrap()),
    ]
}

fn run_block(
    g: &Graph,
    cfg: &BlockConfig,
    threads: usize,
    b: usize,
) -> (Tensor, autoglm_ops::RunStats) {
    let reg = Registry::with_cpu_kernels();
    let mut e = Executor::new(
        g,
        &reg,
        Options {
            device: Device::Cpu,
            threads,
            ..Options::default()
        },
    )
    .unwrap();
    for (i, (name, shape)) in cfg.parameters().into_iter().enumerate() {
        let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        e.set_parameter(
            &name,
            Tensor::random(DType::F32, &shape, -0.3, 0.3, 10 + i as u64),
        )
        .unwrap();
    }
    let inputs = block_inputs(cfg, b, 16);
    let feed: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let out = e.run(&feed).unwrap().remove(0);
    (out, e.stats())
}

fn max_rel(a: &Tensor, b: &Tensor) -> f64 {
    let (x, y) = (a.to_f64_vec(), b.to_f64_vec());
    let scale = x.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    x.iter()
        .zip(&y)
        .fold(0.0f64, |m, (p, q)| m.max((p - q).abs()))
        / scale
}

#[test]
fn optimised_block_matches_unoptimised_and_threads_agree() {
    let cfg = small();
    let g = glm_block(&cfg, DType::F32).unwrap();
    let mut opt = g.clone();
    let reg = Registry::with_cpu_kernels();
    let r = optimize(&mut opt, &reg, Device::Cpu, None).unwrap();
    assert_eq!(r.rules.total(), 9, "{r:?}");
    assert_eq!(r.rules.fired.get("grouped_attention"), Some(&1), "{r:?}");
    let (plain, s1) = run_block(&g, &cfg, 1, 3);
    let (fused, s2) = run_block(&opt, &cfg, 1, 3);
    let (fused2, _) = run_block(&opt, &cfg, 2, 3);
    assert!(
        max_rel(&plain, &fused) < 1e-5,
        "{}",
        max_rel(&plain, &fused)
    );
    assert!(
        max_rel(&fused, &fused2) < 1e-6,
        "{}",
        max_rel(&fused, &fused2)
    );
    // Liveness-based reuse keeps the peak well below the sum of all intermediates.
    for s in [s1, s2] {
        assert!(s.peak_bytes * 2 < s.naive_bytes, "{s:?}");
        assert!(s.inplace_steps > 0, "{s:?}");
    }
    assert!(s2.steps < s1.steps);
}

#[test]
fn binding_errors_name_the_input() {
    let cfg = small();
    let g = glm_block(&cfg, DType::F32).unwrap();
    let reg = Registry::with_cpu_kernels();
    let mut e = Executor::new(&g, &reg, Options::default()).unwrap();
    let inputs = block_inputs(&cfg, 1, 4);
    let feed: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (n.as_str(), t)).collect();
    let err = e.run(&feed).unwrap_err().to_string();
    assert!(err.contains("parameter 'ln1.w' is not set"), "{err}");
    let err = e
        .set_parameter("ln1.w", Tensor::zeros(DType::F32, &[3]))
        .unwrap_err()
        .to_string();
    assert!(err.contains("'ln1.w' should be f32[64]"), "{err}");
    assert!(e
        .set_parameter("nope", Tensor::zeros(DType::F32, &[3]))
        .is_err());
    for (name, shape) in cfg.parameters() {
        let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
        e.set_parameter(&name, Tensor::zeros(DType::F32, &shape))
            .unwrap();
    }
    let err = e.run(&feed[..3]).unwrap_err().to_string();
    assert!(err.contains("input 'mask' is missing"), "{err}");
    // The sequence length bound by x must agree with the mask's.
    let wrong = Tensor::zeros(DType::F32, &[5, 5]);
    let mut bad = feed.clone();
    bad[3] = ("mask", &wrong);
    let err = e.run(&bad).unwrap_err().to_string();
    assert!(err.contains("'t' is 4 elsewhere but 5 here"), "{err}");
    let extra = Tensor::zeros(DType::F32, &[1]);
    let mut more = feed.clone();
    more.push(("typo", &extra));
    assert!(e
        .run(&more)
        .unwrap_err()
        .to_string()
        .contains("no input 'typo'"));
}

/// `x·a + b` as a user operator with a CPU kernel and a decomposition.
#[derive(Debug)]
struct Affine;

impl OpDef for Affine {
    fn name(&self) -> &str {
        "affine"
    }
    fn arity(&self) -> Option<usize> {
        Some(1)
    }
    fn infer(&self, _: &Attrs, inputs: &[&TensorType]) -> Result<TensorType, String> {
        Ok(inputs[0].clone())
    }
    fn decompose(
        &self,
        g: &mut Graph,
        attrs: &Attrs,
        inputs: &[NodeId],
    ) -> Option<autoglm_graph::Result<NodeId>> {
        let dtype = g.node(inputs[0]).ok()?.ty.dtype;
        Some((|| {
            let a = g.constant(attrs["a"], dtype)?;
            let b = g.constant(attrs["b"], dtype)?;
            let m = g.add(OpKind::Binary { f: BinaryOp::Mul }, &[inputs[0], a])?;
            g.add(OpKind::Binary { f: BinaryOp::Add }, &[m, b])
        })())
    }
}

impl Operator for Affine {
    fn kernels(&self) -> Vec<(Device, DType, Kernel)> {
        let k = Kernel::new(|op, ins, out| {
            let OpKind::Custom { attrs, .. } = op else {
                return Err("not affine".into());
            };
            let (a, b) = (attrs["a"] as f32, attrs["b"] as f32);
            let x = ins[0].as_f32().ok_or("f32 only")?;
            let o = out.as_f32_mut().ok_or("f32 only")?;
            o.iter_mut().zip(x).for_each(|(o, &x)| *o = x * a + b);
            Ok(())
        });
        vec![(Device::Cpu, DType::F32, k)]
    }
}

#[test]
fn a_user_operator_runs_by_kernel_or_by_decomposition() {
    let mut reg = Registry::with_cpu_kernels();
    reg.register_operator(Arc::new(Affine));
    let build = |reg: &Registry, dtype| {
        let mut g = Graph::new();
        reg.register_ops_with(&mut g);
        let x = g.input("x", TensorType::new(dtype, [4u64])).unwrap();
        let attrs = Attrs::from([("a".to_owned(), 3.0), ("b".to_owned(), -1.0)]);
        let y = g
            .add(
                OpKind::Custom {
                    name: "affine".into(),
                    attrs,
                },
                &[x],
            )
            .unwrap();
        let z = g.add(OpKind::Unary { f: UnaryOp::Relu }, &[y]).unwrap();
        g.set_outputs(&[z]).unwrap();
        g
    };
    let x = Tensor::from_f32(&[4], vec![-1.0, 0.0, 1.0, 2.0]).unwrap();
    let mut g = build(&reg, DType::F32);
    // JSON round trip with the operator's definition.
    let again = Graph::from_json_with_ops(&g.to_json(), &reg.op_defs()).unwrap();
    assert_eq!(again.to_json(), g.to_json());
    assert!(Graph::from_json(&g.to_json())
        .unwrap_err()
        .to_string()
        .contains("not registered"));
    let r = optimize(&mut g, &reg, Device::Cpu, None).unwrap();
    assert_eq!(r.decomposed, 0); // the CPU has its kernel
    let mut e = Executor::new(&g, &reg, Options::default()).unwrap();
    assert_eq!(
        e.run(&[("x", &x)]).unwrap()[0].as_f32().unwrap(),
        &[0.0, 0.0, 2.0, 5.0]
    );
    // In bf16 there is no kernel: optimize decomposes it into built-ins.
    let mut g = build(&reg, DType::BF16);
    let err = Executor::new(&g, &reg, Options::default()).unwrap_err();
    assert!(matches!(err, Error::NoKernel { .. }), "{err}");
    assert!(
        err.to_string().contains("no cpu kernel for affine on bf16"),
        "{err}"
    );
    let r = optimize(&mut g, &reg, Device::Cpu, None).unwrap();
    assert_eq!(r.decomposed, 1);
    let mut e = Executor::new(&g, &reg, Options::default()).unwrap();
    let out = e.run(&[("x", &x.cast(DType::BF16))]).unwrap();
    assert_eq!(out[0].to_f64_vec(), [0.0, 0.0, 2.0, 5.0]);
}

/// Runs `op` on `inputs` as a one-node graph.
fn run_one(reg: &Registry, op: OpKind, inputs: &[Tensor]) -> Result<Vec<Tensor>, Error> {
    let mut g = Graph::new();
    reg.register_ops_with(&mut g);
    let ids = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let ty = TensorType::new(t.dtype(), t.shape().iter().map(|&d| d as u64));
            g.input(&format!("i{i}"), ty)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let y = g.add(op, &ids)?;
    g.set_outputs(&[y])?;
    let names: Vec<String> = (0..inputs.len()).map(|i| format!("i{i}")).collect();
    let feed: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(inputs).collect();
    Executor::new(&g, reg, Options::default())?.run(&feed)
}

#[test]
fn kernel_errors_are_typed_sources() {
    use std::error::Error as _;
    let reg = Registry::with_cpu_kernels();
    // A built-in kernel's typed error, with the node around it and as its source.
    let data = Tensor::zeros(DType::F32, &[4, 2]);
    let idx = Tensor::new(&[1], autoglm_ops::Data::I64(vec![9])).unwrap();
    let err = run_one(&reg, OpKind::Gather { axis: 0 }, &[data, idx]).unwrap_err();
    let Error::Kernel {
        node: Some(_),
        op,
        source,
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(op, "gather");
    assert_eq!(
        source,
        &KernelError::IndexOutOfRange {
            index: 9.0,
            size: 4
        }
    );
    assert!(
        err.to_string()
            .ends_with("(gather): index 9 is outside 0..4"),
        "{err}"
    );
    let chained = err.source().expect("a source");
    assert_eq!(chained.to_string(), "index 9 is outside 0..4");
    assert!(chained.downcast_ref::<KernelError>().is_some());
    // Negative padding lengths, out-of-range labels: typed too.
    let lens = Tensor::new(&[1], autoglm_ops::Data::I64(vec![-2])).unwrap();
    let like = Tensor::zeros(DType::I64, &[1, 3]);
    let err = run_one(
        &reg,
        OpKind::PaddingMask { dtype: DType::F32 },
        &[lens, like],
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Kernel {
                source: KernelError::NegativeLength { row: 0, .. },
                ..
            }
        ),
        "{err}"
    );

    // A user kernel returning a plain message (`?` on a `&str`, `.into()` on a
    // `String`) gives `KernelError::Other`.
    #[derive(Debug)]
    struct Fails;
    impl OpDef for Fails {
        fn name(&self) -> &str {
            "fails"
        }
        fn arity(&self) -> Option<usize> {
            Some(1)
        }
        fn infer(&self, _: &Attrs, inputs: &[&TensorType]) -> Result<TensorType, String> {
            Ok(inputs[0].clone())
        }
    }
    impl Operator for Fails {
        fn kernels(&self) -> Vec<(Device, DType, Kernel)> {
            let k = Kernel::new(|_, ins, _| {
                let x = ins[0].as_f32().ok_or("f32 only")?;
                if x.iter().all(|&v| v == 0.0) {
                    return Err("all zeros".into());
                }
                Err(format!("failed on {} elements", x.len()).into())
            });
            vec![(Device::Cpu, DType::F32, k)]
        }
    }
    let mut reg = reg;
    reg.register_operator(Arc::new(Fails));
    let op = OpKind::Custom {
        name: "fails".into(),
        attrs: Attrs::new(),
    };
    let x = Tensor::zeros(DType::F32, &[3]);
    let err = run_one(&reg, op.clone(), &[x]).unwrap_err();
    assert!(
        matches!(&err, Error::Kernel { source: KernelError::Other(m), .. } if m == "all zeros"),
        "{err}"
    );
    let x = Tensor::from_f32(&[3], vec![1.0; 3]).unwrap();
    let err = run_one(&reg, op, &[x]).unwrap_err();
    assert!(
        err.to_string().ends_with("(fails): failed on 3 elements"),
        "{err}"
    );
}

#[test]
fn rules_from_text_code_and_json_agree() {
    let text = Rule::parse("swish: (mul ?x (sigmoid ?x)) => (silu ?x)").unwrap();
    let code = Rule::new(
        "swish",
        Pattern::op(
            "mul",
            [
                Pattern::var("x"),
                Pattern::op("sigmoid", [Pattern::var("x")]),
            ],
        ),
        Pattern::op("silu", [Pattern::var("x")]),
    )
    .unwrap();
    assert_eq!(text.to_string(), code.to_string());
    assert_eq!(
        Rule::parse(&text.to_string()).unwrap().to_string(),
        text.to_string()
    );
    // The same graph, built in code and read back from JSON, rewrites the same way.
    let mut g = Graph::new();
    let x = g.input("x", TensorType::new(DType::F32, [8u64])).unwrap();
    let s = g
        .add(
            OpKind::Unary {
                f: UnaryOp::Sigmoid,
            },
            &[x],
        )
        .unwrap();
    let m = g.add(OpKind::Binary { f: BinaryOp::Mul }, &[s, x]).unwrap();
    g.set_outputs(&[m]).unwrap();
    let mut h = Graph::from_json(&g.to_json()).unwrap();
    let mut g2 = g.clone();
    apply_rules(&mut g, &[text], &autoglm_graph::AnyKernel, 8).unwrap();
    apply_rules(&mut g2, &[code], &autoglm_graph::AnyKernel, 8).unwrap();
    apply_rules(&mut h, &builtin_rules(), &autoglm_graph::AnyKernel, 8).unwrap();
    assert_eq!(g.to_json(), g2.to_json());
    assert_eq!(g.to_json(), h.to_json());
    assert!(g.to_json().contains("\"silu\""));
}

/// PyTorch's output for a small version of the benchmark block (written by
/// `benches/graph/make_golden.py` with `bench_torch.py`'s own `Block`), reproduced by
/// the IR built op by op, optimised, and run.
#[test]
fn the_block_matches_pytorch() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/glm_block_small.safetensors");
    let t = autoglm_ops::load_safetensors(&path).unwrap();
    let cfg = BlockConfig {
        hidden: 32,
        heads: 4,
        kv_heads: 2,
        rot: 4,
        inter: 64,
        eps: 1e-5,
    };
    let reg = Registry::with_cpu_kernels();
    for optimise in [false, true] {
        let mut g = glm_block(&cfg, DType::F32).unwrap();
        if optimise {
            let r = optimize(&mut g, &reg, Device::Cpu, None).unwrap();
            assert_eq!(r.rules.total(), 9, "{r:?}");
            assert_eq!(r.rules.fired.get("grouped_attention"), Some(&1), "{r:?}");
        }
        for threads in [1, 2] {
            let mut e = Executor::new(
                &g,
                &reg,
                Options {
                    device: Device::Cpu,
                    threads,
                    ..Options::default()
                },
            )
            .unwrap();
            for (name, _) in cfg.parameters() {
                e.set_parameter(&name, t[&name].clone()).unwrap();
            }
            let feed: Vec<(&str, &Tensor)> = ["x", "cos", "sin", "mask"]
                .iter()
                .map(|&n| (n, &t[n]))
                .collect();
            let out = e.run(&feed).unwrap().remove(0);
            let err = max_rel(&t["out"], &out);
            assert!(
                err <= 1e-5,
                "optimised {optimise}, {threads} threads: max|Δ|/max|ref| = {err:e}"
            );
        }
    }
}

/// A concatenation of symbolic sizes has a sum size (`p+t`), evaluated at run time,
/// including an empty first part (a key/value cache before the first token); an input
/// that declares the sum must agree with its terms.
#[test]
fn concat_of_symbolic_sizes() {
    let mut g = Graph::new();
    let ty = |n: &str| TensorType {
        dtype: DType::F32,
        shape: [Dim::Known(2), Dim::sym(n)].into_iter().collect(),
    };
    let a = g.input("past", ty("p")).unwrap();
    let b = g.input("new", ty("t")).unwrap();
    let c = g.add(OpKind::Concat { axis: 1 }, &[a, b]).unwrap();
    assert_eq!(g.node(c).unwrap().ty.shape[1], Dim::sym("p+t"));
    let like = g.input("like", ty("p+t")).unwrap();
    let s = g
        .add(OpKind::Binary { f: BinaryOp::Add }, &[c, like])
        .unwrap();
    g.set_outputs(&[s]).unwrap();
    let mut e = Executor::new(&g, &Registry::with_cpu_kernels(), Options::default()).unwrap();
    for p in [0usize, 3] {
        let past = Tensor::from_f32(&[2, p], (0..2 * p).map(|i| i as f32).collect()).unwrap();
        let new = Tensor::from_f32(&[2, 1], vec![10.0, 20.0]).unwrap();
        let like = Tensor::from_f32(&[2, p + 1], vec![0.5; 2 * (p + 1)]).unwrap();
        let out = e
            .run(&[("past", &past), ("new", &new), ("like", &like)])
            .unwrap();
        assert_eq!(out[0].shape(), &[2, p + 1]);
        assert_eq!(out[0].as_f32().unwrap()[p], 10.5);
        let wrong = Tensor::from_f32(&[2, p + 2], vec![0.5; 2 * (p + 2)]).unwrap();
        let err = e
            .run(&[("past", &past), ("new", &new), ("like", &wrong)])
            .unwrap_err();
        assert!(err.to_string().contains("'p+t'"), "{err}");
    }
}
