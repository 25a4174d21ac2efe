//! Every CPU kernel against a naive f64 reference on random shapes (odd sizes,
//! broadcasting), in f32 and in the half types (computed in f32, so only rounding of
//! the result separates them from the reference).

use autoglm_graph::{BinaryOp, DType, Graph, OpKind, ReduceOp, TensorType, UnaryOp};
use autoglm_ops::{Executor, Options, Registry, Tensor};
use ndarray::{ArrayD, Axis, Dimension, IxDyn};
use proptest::prelude::*;

/// Runs one op on concrete inputs through the executor.
fn run(op: OpKind, inputs: &[Tensor]) -> Result<Tensor, String> {
    let mut g = Graph::new();
    let ids = inputs
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let ty = TensorType::new(t.dtype(), t.shape().iter().map(|&d| d as u64));
            g.input(&format!("i{i}"), ty).map_err(|e| e.to_string())
        })
        .collect::<Result<Vec<_>, _>>()?;
    let y = g.add(op, &ids).map_err(|e| e.to_string())?;
    g.set_outputs(&[y]).map_err(|e| e.to_string())?;
    let mut e = Executor::new(&g, &Registry::with_cpu_kernels(), Options::default())
        .map_err(|e| e.to_string())?;
    let names: Vec<String> = (0..inputs.len()).map(|i| format!("i{i}")).collect();
    let feed: Vec<(&str, &Tensor)> = names.iter().map(String::as_str).zip(inputs).collect();
    Ok(e.run(&feed).map_err(|e| e.to_string())?.remove(0))
}

fn arr(t: &Tensor) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(t.shape()), t.to_f64_vec()).unwrap()
}

/// Random inputs in `dtype` (values in `lo..hi`).
fn input(dtype: DType, shape: &[usize], lo: f64, hi: f64, seed: u64) -> Tensor {
    Tensor::random(DType::F32, shape, lo, hi, seed).cast(dtype)
}

fn tol(dtype: DType) -> f64 {
    match dtype {
        DType::BF16 => 2e-2,
        DType::F16 => 4e-3,
        _ => 2e-5,
    }
}

/// Checks `got` against `want` within the type's tolerance relative to max(1, max|want|).
fn close(got: &Tensor, want: &ArrayD<f64>, dtype: DType, what: &str) -> Result<(), TestCaseError> {
    prop_assert_eq!(got.shape(), want.shape(), "{}: shape", what);
    prop_assert_eq!(got.dtype(), dtype, "{}: dtype", what);
    let scale = want
        .iter()
        .filter(|x| x.is_finite())
        .fold(1.0f64, |m, x| m.max(x.abs()));
    for (i, (g, w)) in got.to_f64_vec().iter().zip(want.iter()).enumerate() {
        let ok = (g.is_nan() && w.is_nan()) || g == w || (g - w).abs() <= tol(dtype) * scale;
        prop_assert!(
            ok,
            "{}: element {} is {} but the reference says {}",
            what,
            i,
            g,
            w
        );
    }
    Ok(())
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn unary_ref(f: UnaryOp, x: f64) -> f64 {
    match f {
        UnaryOp::Neg => -x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Erf => libm::erf(x),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Rsqrt => 1.0 / x.sqrt(),
        UnaryOp::Recip => 1.0 / x,
        UnaryOp::Relu => x.max(0.0),
        UnaryOp::Silu => x * sigmoid(x),
        UnaryOp::Gelu => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
        UnaryOp::GeluTanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
        }
        UnaryOp::Sigmoid => sigmoid(x),
        UnaryOp::Step => f64::from(u8::from(x > 0.0)),
    }
}

fn binary_ref(f: BinaryOp, a: f64, b: f64) -> f64 {
    match f {
        BinaryOp::Add => a + b,
        BinaryOp::Sub => a - b,
        BinaryOp::Mul => a * b,
        BinaryOp::Div => a / b,
        BinaryOp::Pow => a.powf(b),
        BinaryOp::Max => a.max(b),
        BinaryOp::Min => a.min(b),
    }
}

const UNARY: [UnaryOp; 14] = UnaryOp::ALL;
const BINARY: [BinaryOp; 7] = BinaryOp::ALL;

const FLOATS: [DType; 3] = [DType::F32, DType::BF16, DType::F16];

fn shape(max_rank: usize) -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(1usize..8, 1..=max_rank)
}

/// A shape and a second one that broadcasts against it (dims dropped on the left or
/// set to 1).
fn broadcast_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (shape(4), any::<u64>()).prop_map(|(a, bits)| {
        let drop = (bits % (a.len() as u64 + 1)) as usize;
        let b: Vec<usize> = a[drop..]
            .iter()
            .enumerate()
            .map(|(i, &d)| if bits >> (8 + i) & 1 == 1 { 1 } else { d })
            .collect();
        if bits >> 40 & 1 == 1 {
            (b, a)
        } else {
            (a, b)
        }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn unary_ops(s in shape(4), seed in any::<u64>(), k in 0usize..13, d in 0usize..3) {
        let (f, dtype) = (UNARY[k], FLOATS[d]);
        // Positive inputs where the function needs them.
        let (lo, hi) = match f {
            UnaryOp::Log | UnaryOp::Sqrt | UnaryOp::Rsqrt | UnaryOp::Recip => (0.1, 4.0),
            _ => (-6.0, 6.0),
        };
        let x = input(dtype, &s, lo, hi, seed);
        let want = arr(&x).mapv(|v| unary_ref(f, v));
        let got = run(OpKind::Unary { f }, &[x]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, &format!("{f:?}"))?;
    }

    #[test]
    fn binary_ops_broadcast((sa, sb) in broadcast_pair(), seed in any::<u64>(), k in 0usize..7, d in 0usize..3) {
        let (f, dtype) = (BINARY[k], FLOATS[d]);
        let (lo, hi) = if matches!(f, BinaryOp::Pow | BinaryOp::Div) { (0.5, 2.0) } else { (-3.0, 3.0) };
        let a = input(dtype, &sa, lo, hi, seed);
        let b = input(dtype, &sb, lo, hi, seed ^ 1);
        let (xa, xb) = (arr(&a), arr(&b));
        let out_shape = autoglm_graph::broadcast(
            &autoglm_graph::shape(sa.iter().map(|&d| d as u64)),
            &autoglm_graph::shape(sb.iter().map(|&d| d as u64)),
        ).unwrap();
        let os: Vec<usize> = out_shape.iter().map(|d| d.known().unwrap() as usize).collect();
        let (ba, bb) = (xa.broadcast(IxDyn(&os)).unwrap(), xb.broadcast(IxDyn(&os)).unwrap());
        let mut want = ArrayD::zeros(IxDyn(&os));
        ndarray::Zip::from(&mut want).and(&ba).and(&bb).for_each(|w, &x, &y| *w = binary_ref(f, x, y));
        let got = run(OpKind::Binary { f }, &[a, b]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, &format!("{f:?} {sa:?} {sb:?}"))?;
    }

    #[test]
    fn matmul_batched_broadcast(m in 1usize..9, k in 1usize..9, n in 1usize..9, batch in shape(2), bits in any::<u8>(), seed in any::<u64>(), d in 0usize..3) {
        let dtype = FLOATS[d];
        let mut ba = batch.clone();
        let mut bb = batch.clone();
        if bits & 1 == 1 { ba[0] = 1; }
        if bits & 2 == 2 { bb.clear(); }
        let sa: Vec<usize> = ba.iter().copied().chain([m, k]).collect();
        let sb: Vec<usize> = bb.iter().copied().chain([k, n]).collect();
        let a = input(dtype, &sa, -1.0, 1.0, seed);
        let b = input(dtype, &sb, -1.0, 1.0, seed ^ 7);
        let (xa, xb) = (arr(&a), arr(&b));
        let ob: Vec<usize> = if bb.is_empty() { ba.clone() } else { batch.clone() };
        let os: Vec<usize> = ob.iter().copied().chain([m, n]).collect();
        let pa: Vec<usize> = ob.iter().copied().chain([m, k]).collect();
        let pb: Vec<usize> = ob.iter().copied().chain([k, n]).collect();
        let (xa, xb) = (xa.broadcast(IxDyn(&pa)).unwrap().to_owned(), xb.broadcast(IxDyn(&pb)).unwrap().to_owned());
        let mut want = ArrayD::zeros(IxDyn(&os));
        for (idx, w) in want.indexed_iter_mut() {
            let s = idx.as_array_view().to_vec();
            let r = s.len();
            let mut acc = 0.0;
            for kk in 0..k {
                let mut ia = s.clone(); ia[r - 1] = kk;
                let mut ib = s.clone(); ib[r - 2] = kk;
                acc += xa[IxDyn(&ia)] * xb[IxDyn(&ib)];
            }
            *w = acc;
        }
        let got = run(OpKind::MatMul, &[a, b]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "matmul")?;
    }

    /// `x · w (+ b)` with `w` (and `b`) bound as parameters, so the executor packs
    /// the weight once (where the machine runs the packed kernel), against the same
    /// product with packing off and the f64 reference; sizes cross the kernel's tile
    /// (12 × 32) and depth block (256) edges, on one and two threads.
    #[test]
    fn matmul_and_linear_with_packed_weights(rows in 1usize..80, k in 1usize..600, n in 1usize..80, lead in 1usize..3, bias in any::<bool>(), seed in any::<u64>(), threads in 1usize..3) {
        let mut g = Graph::new();
        let f32t = |s: &[usize]| TensorType::new(DType::F32, s.iter().map(|&d| d as u64));
        let x = g.input("x", f32t(&[lead, rows, k])).unwrap();
        let w = g.parameter("w", f32t(&[k, n])).unwrap();
        let y = if bias {
            let b = g.parameter("b", f32t(&[n])).unwrap();
            g.add(OpKind::Linear, &[x, w, b]).unwrap()
        } else {
            g.add(OpKind::MatMul, &[x, w]).unwrap()
        };
        g.set_outputs(&[y]).unwrap();
        let xt = input(DType::F32, &[lead, rows, k], -1.0, 1.0, seed);
        let wt = input(DType::F32, &[k, n], -1.0, 1.0, seed ^ 3);
        let bt = input(DType::F32, &[n], -1.0, 1.0, seed ^ 5);
        let (xa, wa, ba) = (arr(&xt), arr(&wt), arr(&bt));
        let mut want = ArrayD::zeros(IxDyn(&[lead, rows, n]));
        for (idx, v) in want.indexed_iter_mut() {
            let (l, i, j) = (idx[0], idx[1], idx[2]);
            *v = (0..k).map(|p| xa[[l, i, p]] * wa[[p, j]]).sum::<f64>()
                + if bias { ba[[j]] } else { 0.0 };
        }
        for prepack in [true, false] {
            let opts = Options { threads, prepack, ..Options::default() };
            let mut e = Executor::new(&g, &Registry::with_cpu_kernels(), opts).unwrap();
            e.set_parameter("w", wt.clone()).unwrap();
            if bias {
                e.set_parameter("b", bt.clone()).unwrap();
            }
            let got = e.run(&[("x", &xt)]).unwrap().remove(0);
            close(&got, &want, DType::F32, &format!("prepack {prepack} {lead}×{rows}×{k}×{n}"))?;
        }
    }

    #[test]
    fn reductions_and_softmax(s in shape(4), seed in any::<u64>(), axis_bits in any::<u8>(), keep in any::<bool>(), k in 0usize..4, d in 0usize..3) {
        let dtype = FLOATS[d];
        let f = [ReduceOp::Sum, ReduceOp::Mean, ReduceOp::Max, ReduceOp::Min][k];
        let rank = s.len();
        let mut axes: Vec<i64> = (0..rank).filter(|i| axis_bits >> i & 1 == 1).map(|i| i as i64).collect();
        if axes.is_empty() { axes.push(-1); }
        let x = input(dtype, &s, -3.0, 3.0, seed);
        let mut want = arr(&x);
        let mut idx: Vec<usize> = axes.iter().map(|&a| if a < 0 { (a + rank as i64) as usize } else { a as usize }).collect();
        idx.sort_unstable();
        for &a in idx.iter().rev() {
            let n = want.shape()[a] as f64;
            want = want.map_axis(Axis(a), |l| match f {
                ReduceOp::Sum => l.sum(),
                ReduceOp::Mean => l.sum() / n,
                ReduceOp::Max => l.fold(f64::NEG_INFINITY, |m, &v| m.max(v)),
                ReduceOp::Min => l.fold(f64::INFINITY, |m, &v| m.min(v)),
            });
            if keep { want.insert_axis_inplace(Axis(a)); }
        }
        let got = run(OpKind::Reduce { f, axes: axes.clone(), keep_dims: keep }, std::slice::from_ref(&x)).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, &format!("{f:?} {axes:?}"))?;
        // Softmax along one of the axes.
        let ax = idx[0];
        let mut sm = arr(&x);
        for mut lane in sm.lanes_mut(Axis(ax)) {
            let m = lane.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
            lane.mapv_inplace(|v| (v - m).exp());
            let s: f64 = lane.sum();
            lane.mapv_inplace(|v| v / s);
        }
        let got = run(OpKind::Softmax { axis: ax as i64 }, &[x]).map_err(TestCaseError::fail)?;
        close(&got, &sm, dtype, "softmax")?;
    }

    #[test]
    fn norms(rows in shape(3), n in 1usize..40, seed in any::<u64>(), d in 0usize..3) {
        let dtype = FLOATS[d];
        let s: Vec<usize> = rows.iter().copied().chain([n]).collect();
        let x = input(dtype, &s, -3.0, 3.0, seed);
        let g = input(dtype, &[n], 0.5, 1.5, seed ^ 3);
        let b = input(dtype, &[n], -1.0, 1.0, seed ^ 5);
        let (xs, gs, bs) = (x.to_f64_vec(), g.to_f64_vec(), b.to_f64_vec());
        let eps = 1e-5;
        let mut ln = Vec::new();
        let mut rms = Vec::new();
        for row in xs.chunks(n) {
            let mean = row.iter().sum::<f64>() / n as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n as f64;
            let ms = row.iter().map(|v| v * v).sum::<f64>() / n as f64;
            for (j, v) in row.iter().enumerate() {
                ln.push((v - mean) / (var + eps).sqrt() * gs[j] + bs[j]);
                rms.push(v / (ms + eps).sqrt() * gs[j]);
            }
        }
        let ln = ArrayD::from_shape_vec(IxDyn(&s), ln).unwrap();
        let rms = ArrayD::from_shape_vec(IxDyn(&s), rms).unwrap();
        let got = run(OpKind::LayerNorm { eps }, &[x.clone(), g.clone(), b.clone()]).map_err(TestCaseError::fail)?;
        close(&got, &ln, dtype, "layer_norm")?;
        let gelu = ln.mapv(|v| unary_ref(UnaryOp::Gelu, v));
        let got = run(OpKind::FusedLayerNormGelu { eps }, &[x.clone(), g.clone(), b]).map_err(TestCaseError::fail)?;
        close(&got, &gelu, dtype, "fused_layer_norm_gelu")?;
        let got = run(OpKind::RmsNorm { eps }, &[x, g]).map_err(TestCaseError::fail)?;
        close(&got, &rms, dtype, "rms_norm")?;
    }

    #[test]
    fn linear_swiglu_attention_rope(t in 1usize..70, s in 1usize..70, dh in 1usize..5, e in 1usize..6, heads in 1usize..4, seed in any::<u64>(), d in 0usize..3) {
        let dtype = FLOATS[d];
        let dd = 2 * dh;
        // linear
        let x = input(dtype, &[heads, t, dd], -1.0, 1.0, seed);
        let w = input(dtype, &[dd, e], -1.0, 1.0, seed ^ 1);
        let b = input(dtype, &[e], -1.0, 1.0, seed ^ 2);
        let (xa, wa, ba) = (arr(&x), arr(&w), arr(&b));
        let mut want = ArrayD::zeros(IxDyn(&[heads, t, e]));
        for ((h, i, j), v) in want.view_mut().into_dimensionality::<ndarray::Ix3>().unwrap().indexed_iter_mut() {
            *v = (0..dd).map(|k| xa[[h, i, k]] * wa[[k, j]]).sum::<f64>() + ba[[j]];
        }
        let got = run(OpKind::Linear, &[x.clone(), w, b]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "linear")?;
        // swiglu
        let u = input(dtype, &[heads, t, dd], -3.0, 3.0, seed ^ 3);
        let want = ndarray::Zip::from(&xa).and(&arr(&u)).map_collect(|&g, &u| unary_ref(UnaryOp::Silu, g) * u);
        let got = run(OpKind::SwiGlu, &[x.clone(), u]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "swiglu")?;
        // attention with a mask over the last two dims
        let kt = input(dtype, &[heads, dd, s], -1.0, 1.0, seed ^ 4);
        let v = input(dtype, &[heads, s, e], -1.0, 1.0, seed ^ 5);
        let mut mv = vec![0.0f32; t * s];
        for i in 0..t { for j in 0..s { if j > i + 1 { mv[i * s + j] = f32::NEG_INFINITY; } } }
        let mask = Tensor::from_f32(&[t, s], mv).unwrap().cast(dtype);
        let scale = 0.35;
        let (ka, va, ma) = (arr(&kt), arr(&v), arr(&mask));
        let mut want = ArrayD::zeros(IxDyn(&[heads, t, e]));
        for h in 0..heads {
            for i in 0..t {
                let sc: Vec<f64> = (0..s).map(|j| (0..dd).map(|k| xa[[h, i, k]] * ka[[h, k, j]]).sum::<f64>() * scale + ma[[i, j]]).collect();
                let m = sc.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                let ex: Vec<f64> = sc.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = ex.iter().sum();
                for c in 0..e {
                    want[[h, i, c]] = (0..s).map(|j| ex[j] / z * va[[h, j, c]]).sum::<f64>();
                }
            }
        }
        let got = run(OpKind::Attention { scale }, &[x.clone(), kt, v, mask]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "attention")?;
        // rope on the first 2·dh' dims
        let rot = 2 * (1 + (seed as usize % dh));
        let cos = input(dtype, &[t, rot], -1.0, 1.0, seed ^ 6);
        let sin = input(dtype, &[t, rot], -1.0, 1.0, seed ^ 7);
        let (ca, sa) = (arr(&cos), arr(&sin));
        let half = rot / 2;
        let mut want = xa.clone();
        for h in 0..heads { for i in 0..t { for j in 0..half {
            let (x1, x2) = (xa[[h, i, j]], xa[[h, i, j + half]]);
            want[[h, i, j]] = x1 * ca[[i, j]] - x2 * sa[[i, j]];
            want[[h, i, j + half]] = x2 * ca[[i, j + half]] + x1 * sa[[i, j + half]];
        }}}
        let got = run(OpKind::Rope { rot: rot as u64 }, &[x, cos, sin]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "rope")?;
    }

    #[test]
    fn grouped_attention_shares_key_heads(t in 1usize..40, s in 1usize..70, dh in 1usize..5, e in 1usize..6, kvh in 1usize..3, group in 1usize..4, seed in any::<u64>(), d in 0usize..3) {
        let dtype = FLOATS[d];
        let (dd, hq, b) = (2 * dh, kvh * group, 2);
        let q = input(dtype, &[b, hq, t, dd], -1.0, 1.0, seed);
        let k = input(dtype, &[b, kvh, s, dd], -1.0, 1.0, seed ^ 1);
        let v = input(dtype, &[b, kvh, s, e], -1.0, 1.0, seed ^ 2);
        // Each batch row its own mask (a padding column in row 1), broadcast over heads.
        let mut mv = vec![0.0f32; b * t * s];
        for r in 0..b { for i in 0..t { for j in 0..s {
            if j > i + s.saturating_sub(t) || (r == 1 && j == 0 && i + s > t) {
                mv[(r * t + i) * s + j] = f32::NEG_INFINITY;
            }
        }}}
        let mask = Tensor::from_f32(&[b, 1, t, s], mv).unwrap().cast(dtype);
        let scale = 0.35;
        let (qa, ka, va, ma) = (arr(&q), arr(&k), arr(&v), arr(&mask));
        let mut want = ArrayD::zeros(IxDyn(&[b, hq, t, e]));
        for r in 0..b { for h in 0..hq {
            let kv = h / group;
            for i in 0..t {
                let sc: Vec<f64> = (0..s).map(|j| (0..dd).map(|c| qa[[r, h, i, c]] * ka[[r, kv, j, c]]).sum::<f64>() * scale + ma[[r, 0, i, j]]).collect();
                let m = sc.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
                let ex: Vec<f64> = sc.iter().map(|v| (v - m).exp()).collect();
                let z: f64 = ex.iter().sum();
                for c in 0..e {
                    want[[r, h, i, c]] = (0..s).map(|j| ex[j] / z * va[[r, kv, j, c]]).sum::<f64>();
                }
            }
        }}
        let got = run(OpKind::GroupedAttention { scale }, &[q, k, v, mask]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "grouped_attention")?;
    }

    #[test]
    fn data_movement_every_type(s in shape(4), seed in any::<u64>(), perm_seed in any::<u64>(), d in 0usize..7) {
        let dtype = [DType::F32, DType::BF16, DType::F16, DType::F64, DType::I64, DType::I32, DType::Bool][d];
        let x = Tensor::random(dtype, &s, -5.0, 5.0, seed);
        let xa = arr(&x);
        let rank = s.len();
        // permute
        let mut perm: Vec<usize> = (0..rank).collect();
        let mut r = perm_seed;
        for i in (1..rank).rev() { perm.swap(i, (r % (i as u64 + 1)) as usize); r /= 7; }
        let want = xa.clone().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned();
        let got = run(OpKind::Permute { perm: perm.clone() }, std::slice::from_ref(&x)).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "permute")?;
        // reshape to flat
        let n: usize = s.iter().product();
        let got = run(OpKind::Reshape { shape: autoglm_graph::shape([n as u64]) }, std::slice::from_ref(&x)).map_err(TestCaseError::fail)?;
        close(&got, &xa.clone().into_shape_with_order(IxDyn(&[n])).unwrap(), dtype, "reshape")?;
        // slice, concat and repeat_interleave along a random axis
        let ax = (perm_seed % rank as u64) as usize;
        let (start, end) = (s[ax] / 3, s[ax] - s[ax] / 4);
        let want = xa.slice_axis(Axis(ax), ndarray::Slice::from(start..end)).to_owned();
        let got = run(OpKind::Slice { axis: ax as i64, start: start as u64, end: end as u64 }, std::slice::from_ref(&x)).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "slice")?;
        let want = ndarray::concatenate(Axis(ax), &[xa.view(), xa.view()]).unwrap();
        let got = run(OpKind::Concat { axis: ax as i64 }, &[x.clone(), x.clone()]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "concat")?;
        let parts: Vec<_> = xa.axis_iter(Axis(ax)).flat_map(|l| [l.clone(), l]).collect();
        let views: Vec<_> = parts.iter().map(|p| p.view().insert_axis(Axis(ax))).collect();
        let want = ndarray::concatenate(Axis(ax), &views).unwrap();
        let got = run(OpKind::RepeatInterleave { axis: ax as i64, repeats: 2 }, std::slice::from_ref(&x)).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "repeat_interleave")?;
        // gather along the axis
        let idx = Tensor::random(DType::I64, &[3], 0.0, s[ax] as f64, seed ^ 9);
        let ids: Vec<usize> = idx.to_f64_vec().iter().map(|&v| v as usize).collect();
        let want = xa.select(Axis(ax), &ids);
        let got = run(OpKind::Gather { axis: ax as i64 }, &[x.clone(), idx]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "gather")?;
        // cast to f32 and where
        let got = run(OpKind::Cast { to: DType::F32 }, std::slice::from_ref(&x)).map_err(TestCaseError::fail)?;
        close(&got, &xa, DType::F32, "cast")?;
        let c = Tensor::random(DType::Bool, &s[rank - 1..], 0.0, 1.0, seed ^ 11);
        let y = Tensor::random(dtype, &s, -5.0, 5.0, seed ^ 13);
        let (ca, ya) = (arr(&c), arr(&y));
        let cb = ca.broadcast(IxDyn(&s)).unwrap();
        let want = ndarray::Zip::from(&cb).and(&xa).and(&ya).map_collect(|&c, &a, &b| if c != 0.0 { a } else { b });
        let got = run(OpKind::Where, &[c, x, y]).map_err(TestCaseError::fail)?;
        close(&got, &want, dtype, "where")?;
    }
}

#[test]
fn causal_mask_and_errors() {
    let x = Tensor::zeros(DType::I64, &[2, 3]);
    let m = run(OpKind::CausalMask { dtype: DType::F32 }, &[x]).unwrap();
    let v = m.to_f64_vec();
    assert_eq!(m.shape(), &[3, 3]);
    assert_eq!(&v[..3], &[0.0, f64::NEG_INFINITY, f64::NEG_INFINITY]);
    assert_eq!(&v[6..], &[0.0, 0.0, 0.0]);
    let lens = Tensor::new(&[2], autoglm_ops::Data::I64(vec![1, 3])).unwrap();
    let like = Tensor::zeros(DType::I64, &[2, 3]);
    let m = run(OpKind::PaddingMask { dtype: DType::BF16 }, &[lens, like]).unwrap();
    assert_eq!(m.shape(), &[2, 1, 1, 3]);
    let inf = f64::NEG_INFINITY;
    assert_eq!(m.to_f64_vec(), [0.0, inf, inf, 0.0, 0.0, 0.0]);
    // Out-of-range gather indices are an error naming the node, not a panic.
    let data = Tensor::zeros(DType::F32, &[4, 2]);
    let idx = Tensor::new(&[1], autoglm_ops::Data::I64(vec![9])).unwrap();
    let e = run(OpKind::Gather { axis: 0 }, &[data, idx]).unwrap_err();
    assert!(e.contains("gather") && e.contains("outside 0..4"), "{e}");
    // Integer matrix products have no kernel: an explicit error, no fallback.
    let x = Tensor::zeros(DType::I32, &[2, 2]);
    let e = run(OpKind::MatMul, &[x.clone(), x]).unwrap_err();
    assert!(e.contains("no cpu kernel for matmul on i32"), "{e}");
    // f64 runs every compute op (the reference kernels).
    let x = Tensor::zeros(DType::F64, &[2]);
    assert_eq!(
        run(OpKind::Unary { f: UnaryOp::Exp }, &[x])
            .unwrap()
            .to_f64_vec(),
        [1.0, 1.0]
    );
}

/// The f32 cross-entropy kernels (vector exp, rows split over threads) against the f64
/// ones, with ignored positions and a large vocabulary; NaN when nothing is counted.
#[test]
fn cross_entropy_f32_matches_f64() {
    for threads in [1, 2] {
        for (rows, vocab) in [(7usize, 33usize), (64, 1000)] {
            let x = Tensor::random(DType::F64, &[rows, vocab], -8.0, 8.0, rows as u64);
            let labels: Vec<i64> = (0..rows)
                .map(|i| {
                    if i % 3 == 1 {
                        -100
                    } else {
                        ((i * 7919) % vocab) as i64
                    }
                })
                .collect();
            let l = Tensor::new(&[rows], autoglm_ops::Data::I64(labels)).unwrap();
            let dy = Tensor::scalar(0.75, DType::F64);
            let fwd = |dtype: DType, threads: usize| {
                let mut g = Graph::new();
                let xi = g
                    .input("x", TensorType::new(dtype, [rows as u64, vocab as u64]))
                    .unwrap();
                let li = g
                    .input("l", TensorType::new(DType::I64, [rows as u64]))
                    .unwrap();
                let di = g
                    .input("d", TensorType::new(dtype, Vec::<u64>::new()))
                    .unwrap();
                let ce = g
                    .add(OpKind::CrossEntropy { ignore_index: -100 }, &[xi, li])
                    .unwrap();
                let back = g
                    .add(
                        OpKind::CrossEntropyBackward { ignore_index: -100 },
                        &[xi, li, di],
                    )
                    .unwrap();
                g.set_outputs(&[ce, back]).unwrap();
                let opts = Options {
                    threads,
                    ..Options::default()
                };
                let mut e = Executor::new(&g, &Registry::with_cpu_kernels(), opts).unwrap();
                let (xv, dv) = (x.cast(dtype), dy.cast(dtype));
                e.run(&[("x", &xv), ("l", &l), ("d", &dv)]).unwrap()
            };
            let (want, got) = (fwd(DType::F64, 1), fwd(DType::F32, threads));
            let (w0, g0) = (want[0].to_f64_vec()[0], got[0].to_f64_vec()[0]);
            assert!((w0 - g0).abs() <= 1e-6 * w0.abs(), "loss {g0} vs {w0}");
            let (wb, gb) = (want[1].to_f64_vec(), got[1].to_f64_vec());
            let err = wb
                .iter()
                .zip(&gb)
                .fold(0.0f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= 1e-7, "gradient differs by {err}");
        }
    }
    // Every label ignored: NaN, as PyTorch.
    let mut g = Graph::new();
    let xi = g
        .input("x", TensorType::new(DType::F32, [2u64, 3]))
        .unwrap();
    let li = g.input("l", TensorType::new(DType::I64, [2u64])).unwrap();
    let ce = g
        .add(OpKind::CrossEntropy { ignore_index: -100 }, &[xi, li])
        .unwrap();
    g.set_outputs(&[ce]).unwrap();
    let mut e = Executor::new(&g, &Registry::with_cpu_kernels(), Options::default()).unwrap();
    let x = Tensor::random(DType::F32, &[2, 3], -1.0, 1.0, 1);
    let l = Tensor::new(&[2], autoglm_ops::Data::I64(vec![-100, -100])).unwrap();
    assert!(e.run(&[("x", &x), ("l", &l)]).unwrap()[0].to_f64_vec()[0].is_nan());
    let bad = Tensor::new(&[2], autoglm_ops::Data::I64(vec![0, 3])).unwrap();
    let err = e.run(&[("x", &x), ("l", &bad)]).unwrap_err().to_string();
    assert!(err.contains("label 3"), "{err}");
}

/// Elementwise kernels split their output across threads in pieces that need not
/// be multiples of their inner block: every unary op gives the same bits on 1, 2, 3
/// threads for lengths around the split sizes (a piece once read past its end).
#[test]
fn unary_ops_split_across_threads_like_one_thread() {
    for n in [65_537usize, 300_007, 500_003] {
        let x = Tensor::random(DType::F32, &[n], 0.1, 2.0, n as u64);
        for f in UnaryOp::ALL {
            let run = |threads: usize| {
                let mut g = Graph::new();
                let i = g
                    .input("x", TensorType::new(DType::F32, [n as u64]))
                    .unwrap();
                let y = g.add(OpKind::Unary { f }, &[i]).unwrap();
                let z = g.add(OpKind::Unary { f: UnaryOp::Neg }, &[y]).unwrap();
                g.set_outputs(&[y, z]).unwrap();
                let opts = Options {
                    threads,
                    ..Options::default()
                };
                let mut e = Executor::new(&g, &Registry::with_cpu_kernels(), opts).unwrap();
                e.run(&[("x", &x)]).unwrap()
            };
            let (a, b, c) = (run(1), run(2), run(3));
            assert_eq!(
                a[0].as_f32().unwrap(),
                c[0].as_f32().unwrap(),
                "{f:?} n={n}"
            );
            assert_eq!(
                a[0].as_f32().unwrap(),
                b[0].as_f32().unwrap(),
                "{f:?} n={n}"
            );
            assert_eq!(
                a[1].as_f32().unwrap(),
                b[1].as_f32().unwrap(),
                "{f:?} n={n}"
            );
        }
    }
}
