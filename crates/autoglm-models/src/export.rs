//! Writing a model back in the Hugging Face layout (`config.json` +
//! `model.safetensors`), so transformers' `from_pretrained` opens it: the inverse of
//! [`crate::load_weights`]. [`save_pretrained_as`] stores the weights in another
//! [`Storage`]:
//!
//! | storage | what `model.safetensors` holds | who reads it |
//! |---|---|---|
//! | `f32`, `f16`, `bf16` | every 2-D weight in that type (norms and biases f32) | transformers, and us |
//! | `q8_0`, `q4_0` | each 2-D weight whose rows are whole 32-blocks as `u8 [rows, bytes per row]`: ggml's blocks of that row ([`autoglm_ops::quant`]; the bytes per row tell `Q8_0` from `Q4_0`); the rest f16 | us (transformers refuses the unknown `quantization_config`); GGUF readers once converted |
//!
//! The output head (and a tied or untied embedding) is stored one step higher than the
//! body ([`crate::storage_plan`]); `__metadata__`'s `autoglm.storage` names the body's
//! storage, so a loader stores the weights as they were written.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use autoglm_ops::{Storage, Tensor};
use half::{bf16, f16};
use safetensors::tensor::{Dtype, TensorView};

use crate::config::{ModelConfig, ModelType};
use crate::error::{Error, Result};
use crate::model::{f32s, interleaved_to_halves, take_rows, transpose};

/// Rows of several tensors stacked.
fn stack_rows(parts: &[Tensor]) -> Tensor {
    let mut shape = parts[0].shape().to_vec();
    shape[0] = parts.iter().map(|p| p.shape()[0]).sum();
    let data: Vec<f32> = parts.iter().flat_map(|p| f32s(p).iter().copied()).collect();
    Tensor::from_f32(&shape, data).expect("stacked")
}

/// The inverse of a permutation.
fn inverse(order: &[usize]) -> Vec<usize> {
    let mut inv = vec![0; order.len()];
    for (i, &o) in order.iter().enumerate() {
        inv[o] = i;
    }
    inv
}

/// Writes `dir/config.json` and `dir/model.safetensors` (f32) for `config` and
/// weights in the graph's layout (as [`crate::load_weights`] returns them).
///
/// # Errors
/// [`Error::Input`] naming a missing weight; [`Error::Io`] / [`Error::Checkpoint`]
/// naming the file that could not be written.
pub fn save_pretrained(
    dir: &Path,
    config: &ModelConfig,
    weights: &BTreeMap<String, Tensor>,
) -> Result<()> {
    save_pretrained_as(dir, config, weights, Storage::F32).map(|_| ())
}

/// [`save_pretrained`] with the weights stored as `storage` (the module's table):
/// the 2-D weights rounded or quantized with ggml's reference quantizers, the head
/// and embedding one step higher, a tensor whose rows are not whole 32-blocks in
/// f16. Returns what each tensor was stored as, to report what fell back.
///
/// # Errors
/// As [`save_pretrained`].
pub fn save_pretrained_as(
    dir: &Path,
    config: &ModelConfig,
    weights: &BTreeMap<String, Tensor>,
    storage: Storage,
) -> Result<Vec<Stored>> {
    let head = crate::storage_plan(storage).storage_of("head.w");
    save_pretrained_with(dir, config, weights, storage, head)
}

/// [`save_pretrained_as`] with the output head and the embedding stored as `head`
/// (say q4_0 throughout, for a device whose memory the q8_0 head does not fit).
///
/// # Errors
/// As [`save_pretrained`].
pub fn save_pretrained_with(
    dir: &Path,
    config: &ModelConfig,
    weights: &BTreeMap<String, Tensor>,
    storage: Storage,
    head: Storage,
) -> Result<Vec<Stored>> {
    if head.block_format().is_some() && storage.block_format().is_none() {
        return Err(Error::Input(format!(
            "a {head} head needs a block-quantized body, not {storage}"
        )));
    }
    let out = hf_tensors(config, weights)?;
    // One key at most: safetensors writes `__metadata__` in a hash map's order, and a
    // file's bytes must not depend on it. Files transformers loads carry none.
    let meta = storage.block_format().map(|_| {
        HashMap::from([(
            crate::checkpoint::STORAGE_KEY.to_string(),
            storage.to_string(),
        )])
    });
    let mut stored = Vec::new();
    let mut encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    for (name, t) in &out {
        let v = f32s(t);
        let shape = t.shape().to_vec();
        let (asked, s) = match shape[..] {
            [_, cols] => {
                let embed_or_head = name.contains("embed") || name.starts_with("lm_head");
                let asked = if embed_or_head { head } else { storage };
                (asked, asked.or_fallback(cols))
            }
            _ => (Storage::F32, Storage::F32),
        };
        let cols = shape.last().copied().unwrap_or(1);
        let data = encode(v, cols, s)?;
        let (dtype, shape) = match s {
            Storage::F16 => (Dtype::F16, shape),
            Storage::Bf16 => (Dtype::BF16, shape),
            Storage::Q8_0 | Storage::Q4_0 => (Dtype::U8, vec![shape[0], data.len() / shape[0]]),
            _ => (Dtype::F32, shape),
        };
        stored.push(Stored {
            name: name.clone(),
            matrix: t.shape().len() == 2,
            asked,
            storage: s,
            bytes: data.len(),
        });
        encoded.push((name.clone(), dtype, shape, data));
    }
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let cfg_path = dir.join("config.json");
    let mut json = config.to_json();
    json["dtype"] = match storage {
        Storage::F16 => "float16",
        Storage::Bf16 => "bfloat16",
        _ => "float32",
    }
    .into();
    if storage.block_format().is_some() {
        json["quantization_config"] = serde_json::json!({
            "quant_method": "autoglm",
            "format": storage.to_string(),
            "head": head.to_string(),
            "layout": "ggml blocks, one u8 row of blocks per weight row",
        });
    }
    let text = serde_json::to_string_pretty(&json).expect("JSON");
    std::fs::write(&cfg_path, text).map_err(|source| Error::Io {
        path: cfg_path,
        source,
    })?;
    let st = dir.join("model.safetensors");
    let ckpt = |reason: String| Error::Checkpoint {
        path: st.clone(),
        reason,
    };
    let views = encoded
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ckpt(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    safetensors::serialize_to_file(views, meta, &st).map_err(|e| ckpt(e.to_string()))?;
    Ok(stored)
}

/// `v` (rows of `cols` values) as `storage` holds it: little-endian f32, f16 or bf16
/// (rounded to nearest even), or each row's ggml blocks (reference quantizers).
///
/// # Errors
/// A block format for rows that are not whole 32-blocks.
pub(crate) fn encode(v: &[f32], cols: usize, storage: Storage) -> Result<Vec<u8>> {
    Ok(match storage {
        Storage::F16 => v
            .iter()
            .flat_map(|&x| f16::from_f32(x).to_bits().to_le_bytes())
            .collect(),
        Storage::Bf16 => v
            .iter()
            .flat_map(|&x| bf16::from_f32(x).to_bits().to_le_bytes())
            .collect(),
        Storage::Q8_0 | Storage::Q4_0 => {
            let format = storage.block_format().expect("a block storage");
            let mut data = Vec::with_capacity(v.len() / cols.max(1) * format.bytes_for(cols));
            for row in v.chunks_exact(cols) {
                data.extend(format.quantize(row)?);
            }
            data
        }
        _ => v.iter().flat_map(|x| x.to_le_bytes()).collect(),
    })
}

/// How [`save_pretrained_as`] stored one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    /// The tensor's name in the file.
    pub name: String,
    /// Whether it is a 2-D weight (the rest, norms and biases, stays f32).
    pub matrix: bool,
    /// The storage asked for it.
    pub asked: Storage,
    /// The storage it got (the fallback where its rows are not whole 32-blocks).
    pub storage: Storage,
    /// Bytes written.
    pub bytes: usize,
}

/// The weights in the Hugging Face layout, by tensor name (f32).
fn hf_tensors(
    config: &ModelConfig,
    weights: &BTreeMap<String, Tensor>,
) -> Result<BTreeMap<String, Tensor>> {
    let w = |name: &str| -> Result<&Tensor> {
        weights
            .get(name)
            .ok_or_else(|| Error::Input(format!("weight '{name}' is missing")))
    };
    let (nh, nkv, d) = (config.num_heads, config.num_kv_heads, config.head_dim);
    let mut out: BTreeMap<String, Tensor> = BTreeMap::new();
    let mut put = |k: String, t: Tensor| {
        out.insert(k, t);
    };
    match config.model_type {
        ModelType::Glm | ModelType::Glm4 => {
            put("model.embed_tokens.weight".into(), w("embed")?.clone());
            for l in 0..config.num_layers {
                let pre = format!("model.layers.{l}");
                let back_q = inverse(&interleaved_to_halves(nh, d, config.rotary_dim));
                let back_k = inverse(&interleaved_to_halves(nkv, d, config.rotary_dim));
                for (ours, theirs, back) in [
                    ("q", "q_proj", Some(&back_q)),
                    ("k", "k_proj", Some(&back_k)),
                    ("v", "v_proj", None),
                    ("o", "o_proj", None),
                ] {
                    let hf = transpose(w(&format!("l{l}.{ours}.w"))?);
                    let hf = back.map_or(hf.clone(), |b| take_rows(&hf, b));
                    put(format!("{pre}.self_attn.{theirs}.weight"), hf);
                    if let Some(b) = weights.get(&format!("l{l}.{ours}.b")) {
                        let b = back.map_or(b.clone(), |o| take_rows(b, o));
                        put(format!("{pre}.self_attn.{theirs}.bias"), b);
                    }
                }
                let gate = transpose(w(&format!("l{l}.gate.w"))?);
                let up = transpose(w(&format!("l{l}.up.w"))?);
                put(
                    format!("{pre}.mlp.gate_up_proj.weight"),
                    stack_rows(&[gate, up]),
                );
                put(
                    format!("{pre}.mlp.down_proj.weight"),
                    transpose(w(&format!("l{l}.down.w"))?),
                );
                let mut norms = vec![
                    ("ln1", "input_layernorm"),
                    ("ln2", "post_attention_layernorm"),
                ];
                if config.model_type == ModelType::Glm4 {
                    norms.push(("post_attn", "post_self_attn_layernorm"));
                    norms.push(("post_mlp", "post_mlp_layernorm"));
                }
                for (ours, theirs) in norms {
                    put(
                        format!("{pre}.{theirs}.weight"),
                        w(&format!("l{l}.{ours}.w"))?.clone(),
                    );
                }
            }
            put("model.norm.weight".into(), w("norm.w")?.clone());
            if !config.tie_word_embeddings {
                put("lm_head.weight".into(), transpose(w("head.w")?));
            }
        }
        ModelType::GptNeox => {
            put("gpt_neox.embed_in.weight".into(), w("embed")?.clone());
            for l in 0..config.num_layers {
                let pre = format!("gpt_neox.layers.{l}");
                // Rows per head: [q (d), k (d), v (d)].
                let (q, k, v) = (
                    transpose(w(&format!("l{l}.q.w"))?),
                    transpose(w(&format!("l{l}.k.w"))?),
                    transpose(w(&format!("l{l}.v.w"))?),
                );
                let fused = stack_rows(&[q, k, v]);
                let order: Vec<usize> = (0..nh)
                    .flat_map(|hh| {
                        (0..3)
                            .flat_map(move |which| (0..d).map(move |j| which * nh * d + hh * d + j))
                    })
                    .collect();
                put(
                    format!("{pre}.attention.query_key_value.weight"),
                    take_rows(&fused, &order),
                );
                if config.qkv_bias {
                    let parts = [
                        w(&format!("l{l}.q.b"))?,
                        w(&format!("l{l}.k.b"))?,
                        w(&format!("l{l}.v.b"))?,
                    ];
                    let fused = stack_rows(&parts.map(Clone::clone));
                    put(
                        format!("{pre}.attention.query_key_value.bias"),
                        take_rows(&fused, &order),
                    );
                }
                for (ours, theirs) in [
                    ("o", "attention.dense"),
                    ("fc1", "mlp.dense_h_to_4h"),
                    ("fc2", "mlp.dense_4h_to_h"),
                ] {
                    put(
                        format!("{pre}.{theirs}.weight"),
                        transpose(w(&format!("l{l}.{ours}.w"))?),
                    );
                    if let Some(b) = weights.get(&format!("l{l}.{ours}.b")) {
                        put(format!("{pre}.{theirs}.bias"), b.clone());
                    }
                }
                for (ours, theirs) in [
                    ("ln1", "input_layernorm"),
                    ("ln2", "post_attention_layernorm"),
                ] {
                    put(
                        format!("{pre}.{theirs}.weight"),
                        w(&format!("l{l}.{ours}.w"))?.clone(),
                    );
                    put(
                        format!("{pre}.{theirs}.bias"),
                        w(&format!("l{l}.{ours}.b"))?.clone(),
                    );
                }
            }
            put(
                "gpt_neox.final_layer_norm.weight".into(),
                w("norm.w")?.clone(),
            );
            put(
                "gpt_neox.final_layer_norm.bias".into(),
                w("norm.b")?.clone(),
            );
            if !config.tie_word_embeddings {
                put("embed_out.weight".into(), transpose(w("head.w")?));
            }
        }
    }
    Ok(out)
}
