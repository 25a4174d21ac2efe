//! The block quantizers against ggml's, byte for byte: golden blocks written by the
//! `gguf` Python package (`scripts/quant_golden.py`, gguf 0.19.0; CI regenerates them
//! from PyPI and checks that they still match), and round-trip properties.

use autoglm_ops::quant::{BlockFormat, BLOCK};
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
