//! The block quantizers against ggml's, byte for byte: golden blocks written by the
//! `gguf` Python package (`scripts/quant_golden.py`, gguf 0.19.0; CI regenerates them
//! from PyPI and checks that they still match), and round-trip properties.

use autoglm_ops::quant::{dot, quantize_activations, BlockFormat, Isa, QuantMatrix, BLOCK};
use proptest::prelude::*;

fn golden() -> serde_json::Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/quant_golden.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|b| f32::from_bits(b.as_u64().unwrap() as u32))
        .collect()
}

#[test]
fn blocks_match_ggml_byte_for_byte() {
    let g = golden();
    let inputs: Vec<Vec<f32>> = g["inputs"].as_array().unwrap().iter().map(floats).collect();
    assert!(inputs.len() > 30);
    for f in BlockFormat::ALL {
        let want = &g[f.name()];
        for (i, x) in inputs.iter().enumerate() {
            let q = f.quantize(x).unwrap();
            let hex: String = q.iter().map(|b| format!("{b:02x}")).collect();
            assert_eq!(
                hex,
                want["blocks"][i].as_str().unwrap(),
                "{f}, block {i}: {x:?}"
            );
            let mut y = vec![0.0f32; BLOCK];
            f.dequantize(&q, &mut y).unwrap();
            let expect = floats(&want["dequantized"][i]);
            for (j, (a, b)) in y.iter().zip(&expect).enumerate() {
                assert_eq!(
                    a.to_bits(),
                    b.to_bits(),
                    "{f}, block {i}, value {j}: {a} vs {b}"
                );
            }
        }
    }
}

proptest! {
    /// Every value comes back within half a step of its block's grid, plus the error
    /// of the f16 scale; rows of several blocks quantize block by block.
    #[test]
    fn values_come_back_within_half_a_step(
        x in prop::collection::vec(-100.0f32..100.0, 3 * BLOCK),
    ) {
        for f in BlockFormat::ALL {
            let q = f.quantize(&x).unwrap();
            prop_assert_eq!(q.len(), 3 * f.block_bytes());
            let mut y = vec![0.0f32; x.len()];
            f.dequantize(&q, &mut y).unwrap();
            for (b, (xs, ys)) in x.chunks(BLOCK).zip(y.chunks(BLOCK)).enumerate() {
                let (lo, hi) = xs.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
                let amax = lo.abs().max(hi.abs());
                let step = match f {
                    BlockFormat::Q8_0 => amax / 127.0,
                    BlockFormat::Q4_0 => amax / 8.0,
                    BlockFormat::Q4_1 => (hi - lo) / 15.0,
                };
                // Q4_0's grid runs from −8 to 7 steps: the value opposite the extreme
                // can be clamped a whole step away; f16 scales move the grid by up to
                // 16 · 2⁻¹¹ of its span, f16 minimums by 2⁻¹¹ of their size.
                let slack = match f {
                    BlockFormat::Q4_0 => step,
                    _ => step / 2.0,
                } + amax * 2e-3 + 1e-6;
                for (j, (a, c)) in xs.iter().zip(ys).enumerate() {
                    prop_assert!((a - c).abs() <= slack, "{} block {} value {}: {} → {}", f, b, j, a, c);
                }
                let q1 = f.quantize(xs).unwrap();
                prop_assert_eq!(&q1[..], &q[b * f.block_bytes()..(b + 1) * f.block_bytes()]);
            }
        }
    }
}

proptest! {
    /// Every instruction set this CPU has gives the scalar path's bits, and the
    /// product is close to the f32 dot product of what the blocks hold.
    #[test]
    fn dot_products_agree_on_every_isa(
        w in prop::collection::vec(-2.0f32..2.0, 4 * BLOCK),
        x in prop::collection::vec(-3.0f32..3.0, 4 * BLOCK),
    ) {
        let xq = quantize_activations(&x).unwrap();
        let mut xd = vec![0.0f32; x.len()];
        BlockFormat::Q8_0.dequantize(&xq, &mut xd).unwrap();
        for f in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
            let wq = f.quantize(&w).unwrap();
            let scalar = dot(f, &wq, &xq, Isa::Scalar).unwrap();
            for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
                prop_assert_eq!(dot(f, &wq, &xq, isa).unwrap().to_bits(), scalar.to_bits(), "{:?} {}", isa, f);
            }
            let mut wd = vec![0.0f32; w.len()];
            f.dequantize(&wq, &mut wd).unwrap();
            let exact: f64 = wd.iter().zip(&xd).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
            let scale: f64 = wd.iter().zip(&xd).map(|(a, b)| f64::from((a * b).abs())).sum::<f64>() + 1e-6;
            prop_assert!((f64::from(scalar) - exact).abs() <= 1e-5 * scale + 1e-6, "{} {} vs {}", f, scalar, exact);
        }
    }
}

#[test]
fn activations_quantize_as_ggml_runs_them_and_bad_rows_are_errors() {
    // ggml's run-time quantizer rounds half to even: with amax 127, id = 1.
    let mut x = [0.0f32; BLOCK];
    x[0] = 127.0;
    x[1] = 2.5;
    x[2] = -3.5;
    let q = quantize_activations(&x).unwrap();
    assert_eq!((q[2] as i8, q[3] as i8, q[4] as i8), (127, 2, -4));
    assert!(quantize_activations(&[1.0; 31]).is_err());
    let w = BlockFormat::Q8_0.quantize(&x).unwrap();
    assert!(dot(BlockFormat::Q8_0, &w, &q[..30], Isa::Scalar).is_err());
    assert!(dot(
        BlockFormat::Q4_1,
        &BlockFormat::Q4_1.quantize(&x).unwrap(),
        &q,
        Isa::Scalar
    )
    .is_err());
    // The detected level runs here and never exceeds the cap.
    assert!(Isa::detect().available());
    std::env::set_var("AUTOGLM_ISA", "scalar");
    assert_eq!(Isa::detect(), Isa::Scalar);
    std::env::set_var("AUTOGLM_ISA", "avx2");
    assert!(Isa::detect() <= Isa::Avx2);
    std::env::remove_var("AUTOGLM_ISA");
}

#[test]
fn a_quantized_matrix_multiplies_like_the_f32_one() {
    // 42 outputs: ten passes of four rows and two rows on their own.
    let (k, n, m) = (96, 42, 3);
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 60.0)
        .collect();
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 13 % 29) as f32 - 14.0) / 9.0)
        .collect();
    let f = autoglm_ops::PackedMatrix::new(&w, k, n).unwrap();
    let mut want = vec![0.0f32; m * n];
    f.matmul(&x, None, &mut want).unwrap();
    for (format, tol) in [(BlockFormat::Q8_0, 0.02), (BlockFormat::Q4_0, 0.25)] {
        let q = QuantMatrix::from_f32(&w, k, n, format).unwrap();
        // As rows; repacked for VNNI (whole groups of eight rows), Q8_0 carries each
        // block's weight sums too.
        let rows = n * k / BLOCK * format.block_bytes();
        let as_rows = q.clone().with_isa(Isa::Scalar).unwrap();
        assert_eq!(as_rows.bytes(), rows);
        assert!(
            q.bytes() >= rows && q.bytes() * 17 <= rows * 19,
            "{}",
            q.bytes()
        );
        let mut got = vec![0.0f32; m * n];
        q.matmul(&x, &mut got).unwrap();
        let norm = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
        for (a, b) in got.iter().zip(&want) {
            assert!(
                (a - b).abs() <= tol * norm,
                "{format}: {a} vs {b} (max {norm})"
            );
        }
        // Every path gives the same bits.
        for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
            let mut again = vec![0.0f32; m * n];
            q.clone()
                .with_isa(isa)
                .unwrap()
                .matmul(&x, &mut again)
                .unwrap();
            assert_eq!(again, got, "{isa:?}");
        }
    }
    assert!(QuantMatrix::from_f32(&w, k, n, BlockFormat::Q4_1).is_err());
    assert!(QuantMatrix::from_f32(&w[..k * n - 1], k, n, BlockFormat::Q8_0).is_err());
    assert!(QuantMatrix::from_f32(&w[..(k - 1) * n], k - 1, n, BlockFormat::Q8_0).is_err());
    let q = QuantMatrix::from_f32(&w, k, n, BlockFormat::Q8_0).unwrap();
    assert!(q.matmul(&x[..k + 1], &mut [0.0; 42]).is_err());
    // Each output has the bits of its row's `dot`.
    let mut got = vec![0.0f32; n];
    q.matmul(&x[..k], &mut got).unwrap();
    let xq = quantize_activations(&x[..k]).unwrap();
    let row = BlockFormat::Q8_0.bytes_for(k);
    let wq: Vec<u8> = (0..n)
        .flat_map(|j| {
            let col: Vec<f32> = (0..k).map(|i| w[i * n + j]).collect();
            BlockFormat::Q8_0.quantize(&col).unwrap()
        })
        .collect();
    for (j, g) in got.iter().enumerate() {
        let d = dot(
            BlockFormat::Q8_0,
            &wq[j * row..(j + 1) * row],
            &xq,
            Isa::detect(),
        )
        .unwrap();
        assert_eq!(g.to_bits(), d.to_bits(), "output {j}");
    }
}

/// Several input rows run as 4 × 8 tiles (two groups of four, then a row on its own;
/// or enough groups of four for every thread to take its own; 42 outputs, so the
/// last output group is partial): every output still has the bits of `dot` on its
/// weight row and input row, on every path.
#[test]
fn tiled_rows_keep_the_bits_of_dot() {
    for m in [9, 4 * 4 * rayon::current_num_threads() + 5] {
        tiled_rows_keep_the_bits_of_dot_for(m);
    }
}

fn tiled_rows_keep_the_bits_of_dot_for(m: usize) {
    let (k, n) = (128, 42);
    let w: Vec<f32> = (0..k * n)
        .map(|i| ((i * 53 % 97) as f32 - 48.0) / 50.0)
        .collect();
    let x: Vec<f32> = (0..m * k)
        .map(|i| ((i * 17 % 31) as f32 - 15.0) / 7.0)
        .collect();
    for format in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
        let row = format.bytes_for(k);
        let wq: Vec<u8> = (0..n)
            .flat_map(|j| {
                let col: Vec<f32> = (0..k).map(|i| w[i * n + j]).collect();
                format.quantize(&col).unwrap()
            })
            .collect();
        for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
            let q = QuantMatrix::from_f32(&w, k, n, format)
                .unwrap()
                .with_isa(isa)
                .unwrap();
            let mut got = vec![0.0f32; m * n];
            q.matmul(&x, &mut got).unwrap();
            for i in 0..m {
                let xq = quantize_activations(&x[i * k..(i + 1) * k]).unwrap();
                for j in 0..n {
                    let d = dot(format, &wq[j * row..(j + 1) * row], &xq, isa).unwrap();
                    assert_eq!(
                        got[i * n + j].to_bits(),
                        d.to_bits(),
                        "{format} {isa:?} ({i}, {j})"
                    );
                }
            }
        }
    }
}

/// Rows read in place from shared bytes — two tensors side by side in one buffer (a
/// mapped file), the first read in a permuted order, the second as stored — multiply
/// bit for bit like one matrix that owns the same rows in the same order; malformed
/// parts are errors.
#[test]
fn rows_read_in_place_in_any_order_multiply_like_owned_rows() {
    use autoglm_ops::quant::SharedBytes;
    use std::sync::Arc;
    let (k, m) = (64, 5);
    let (n1, n2) = (10, 7);
    for format in [BlockFormat::Q8_0, BlockFormat::Q4_0] {
        let row = format.bytes_for(k);
        let rows: Vec<Vec<u8>> = (0..n1 + n2)
            .map(|j| {
                let v: Vec<f32> = (0..k)
                    .map(|i| (((i + 3 * j) * 29 % 83) as f32 - 41.0) / 30.0)
                    .collect();
                format.quantize(&v).unwrap()
            })
            .collect();
        // A "file": a header of 13 bytes, then the two tensors.
        let mut file = vec![7u8; 13];
        file.extend(rows.concat());
        let file: Arc<dyn AsRef<[u8]> + Send + Sync> = Arc::new(file);
        let order: Vec<u32> = (0..n1 as u32).rev().collect();
        let first = SharedBytes::new(file.clone(), 13..13 + n1 * row).unwrap();
        let second = SharedBytes::new(file.clone(), 13 + n1 * row..13 + (n1 + n2) * row).unwrap();
        let mapped = QuantMatrix::from_segments(
            format,
            k,
            vec![(first.clone(), Some(order.clone())), (second, None)],
        )
        .unwrap();
        assert_eq!((mapped.n(), mapped.bytes()), (n1 + n2, (n1 + n2) * row));
        let owned_rows: Vec<u8> = order
            .iter()
            .map(|&r| rows[r as usize].clone())
            .chain(rows[n1..].iter().cloned())
            .flatten()
            .collect();
        let owned = QuantMatrix::from_blocks(format, k, n1 + n2, owned_rows).unwrap();
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7 % 19) as f32 - 9.0) / 4.0)
            .collect();
        for isa in Isa::ALL.into_iter().filter(|i| i.available()) {
            let (mut a, mut b) = (vec![0.0f32; m * (n1 + n2)], vec![0.0f32; m * (n1 + n2)]);
            mapped
                .clone()
                .with_isa(isa)
                .unwrap()
                .matmul(&x, &mut a)
                .unwrap();
            owned
                .clone()
                .with_isa(isa)
                .unwrap()
                .matmul(&x, &mut b)
                .unwrap();
            assert_eq!(
                a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                b.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
                "{format} {isa:?}"
            );
        }
        assert!(SharedBytes::new(file.clone(), 13..10_000).is_err());
        let ragged = SharedBytes::new(file.clone(), 13..13 + row + 1).unwrap();
        assert!(QuantMatrix::from_segments(format, k, vec![(ragged, None)]).is_err());
        let past = QuantMatrix::from_segments(format, k, vec![(first, Some(vec![n1 as u32]))]);
        assert!(past.unwrap_err().to_string().contains("row 10 of 10"));
        assert!(QuantMatrix::from_segments(format, k, vec![]).is_err());
    }
}

/// `Q6_K` super-blocks (llama-quantize's head format, read only) expand to gguf's
/// values bit for bit; a partial super-block is an error.
#[test]
fn q6_k_expands_as_ggml_does() {
    use autoglm_ops::quant::{dequantize_q6_k, Q6_K_BYTES, Q6_K_VALUES};
    let g = golden();
    let q = &g["q6_k"];
    let blocks = q["blocks"].as_array().unwrap();
    assert_eq!(blocks.len(), 8);
    for (b, want) in blocks.iter().zip(q["dequantized"].as_array().unwrap()) {
        let hex = b.as_str().unwrap();
        let bytes: Vec<u8> = (0..hex.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
            .collect();
        let mut y = vec![0.0f32; Q6_K_VALUES];
        dequantize_q6_k(&bytes, &mut y).unwrap();
        let want = floats(want);
        for (i, (a, b)) in y.iter().zip(&want).enumerate() {
            assert_eq!(a.to_bits(), b.to_bits(), "value {i}: {a} vs {b}");
        }
    }
    let mut y = vec![0.0f32; Q6_K_VALUES];
    assert!(dequantize_q6_k(&[0; Q6_K_BYTES - 1], &mut y).is_err());
    assert!(dequantize_q6_k(&[0; Q6_K_BYTES], &mut y[..255]).is_err());
}
