//! The GGUF container against llama.cpp's own Python writer (gguf-py 0.19.0;
//! `scripts/gguf_golden.py` wrote `tests/data/golden.gguf` and the list of what it
//! holds, and CI checks that gguf from PyPI still writes the same): every key with
//! its type and value, every tensor with its dimensions, type, offset and bytes; the
//! same content written by `GgufWriter` is the same file byte for byte; and the
//! quantized tensors are what autoglm-ops' block quantizers make of the f32 one.

use std::path::Path;

use autoglm_models::gguf::{GgmlType, Gguf, GgufWriter, Value};
use autoglm_ops::quant::BlockFormat;
use serde_json::Value as Json;

fn data(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// A value as the golden list writes it.
fn json_of(v: &Value) -> Json {
    match v {
        Value::String(s) => Json::from(s.as_str()),
        Value::Bool(b) => Json::from(*b),
        Value::F32(x) => Json::from(f64::from(*x)),
        Value::F64(x) => Json::from(*x),
        Value::I8(x) => Json::from(*x),
        Value::I16(x) => Json::from(*x),
        Value::I32(x) => Json::from(*x),
        Value::I64(x) => Json::from(*x),
        Value::Array(_, items) => Json::Array(items.iter().map(json_of).collect()),
        other => Json::from(other.as_u64().unwrap()),
    }
}

#[test]
fn reads_and_writes_what_gguf_py_writes() {
    let (g, bytes) = Gguf::read(&data("golden.gguf")).unwrap();
    let want: Json =
        serde_json::from_str(&std::fs::read_to_string(data("golden.gguf.json")).unwrap()).unwrap();
    assert_eq!(g.version, 3);
    assert_eq!(g.data_start, want["data_offset"].as_u64().unwrap());
    let kv = want["metadata"].as_array().unwrap();
    assert_eq!(g.metadata.len(), kv.len());
    for ((k, v), w) in g.metadata.iter().zip(kv) {
        assert_eq!(k, w[0].as_str().unwrap());
        assert_eq!(u64::from(v.type_id()), w[1].as_u64().unwrap(), "{k}");
        if let Value::Array(sub, _) = v {
            assert_eq!(u64::from(*sub), w[2].as_u64().unwrap(), "{k}");
        }
        assert_eq!(json_of(v), w[3], "{k}");
    }
    let ts = want["tensors"].as_array().unwrap();
    assert_eq!(g.tensors.len(), ts.len());
    for (t, w) in g.tensors.iter().zip(ts) {
        assert_eq!(t.name, w["name"].as_str().unwrap());
        let dims: Vec<u64> = w["dims"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap())
            .collect();
        assert_eq!(t.dims, dims, "{}", t.name);
        assert_eq!(
            u64::from(t.ty.id()),
            w["type"].as_u64().unwrap(),
            "{}",
            t.name
        );
        assert_eq!(t.offset, w["offset"].as_u64().unwrap(), "{}", t.name);
        assert_eq!(
            g.data(&bytes, t),
            unhex(w["hex"].as_str().unwrap()),
            "{}",
            t.name
        );
    }
    // The writer, given what was read, writes gguf-py's bytes.
    let mut w = GgufWriter::new(g.get("general.architecture").unwrap().as_str().unwrap());
    for (k, v) in &g.metadata[1..] {
        w.add(k, v.clone()).unwrap();
    }
    for t in &g.tensors {
        w.add_tensor(&t.name, &t.dims, t.ty, g.data(&bytes, t).to_vec())
            .unwrap();
    }
    assert!(w.to_bytes() == bytes, "the rewritten file differs");
}

#[test]
fn quantized_tensors_are_autoglm_ops_blocks() {
    let (g, bytes) = Gguf::read(&data("golden.gguf")).unwrap();
    let f32s: Vec<f32> = g
        .data(&bytes, g.tensor("token_embd.weight").unwrap())
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect();
    for (name, f) in [
        ("blk.0.attn_k.weight", BlockFormat::Q8_0),
        ("blk.0.attn_v.weight", BlockFormat::Q4_0),
        ("blk.0.ffn_up.weight", BlockFormat::Q4_1),
    ] {
        let t = g.tensor(name).unwrap();
        assert_eq!(t.ty.id(), f.ggml_type(), "{name}");
        assert_eq!(f.quantize(&f32s).unwrap(), g.data(&bytes, t), "{name}");
    }
    let halves = |t: &str| -> Vec<u16> {
        g.data(&bytes, g.tensor(t).unwrap())
            .chunks_exact(2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
            .collect()
    };
    let f16: Vec<u16> = f32s
        .iter()
        .map(|&x| half::f16::from_f32(x).to_bits())
        .collect();
    let bf16: Vec<u16> = f32s
        .iter()
        .map(|&x| half::bf16::from_f32(x).to_bits())
        .collect();
    assert_eq!(halves("blk.0.attn_q.weight"), f16);
    assert_eq!(halves("blk.0.ffn_down.weight"), bf16);
    assert_eq!(
        g.tensor("blk.0.ffn_down.weight").unwrap().ty,
        GgmlType::BF16
    );
}
