//! A model directory (Hugging Face layout, any storage) written as one GGUF file that
//! llama.cpp runs: `glm` as llama.cpp's `chatglm` architecture, `glm4` as `glm4`
//! (both rotate adjacent pairs, llama.cpp's "normal" rope, so the interleaved q/k
//! rows go in unpermuted), `gpt_neox` as `gptneox` (rotating halves, as ours; the
//! fused q/k/v rows regrouped), with the byte-level BPE vocabulary of
//! `tokenizer.json`. llama.cpp's gptneox computes GELU with its tanh approximation
//! whatever the model's activation (`autoglm.hidden_act` records the model's own).
//! Tensor names, metadata keys and their types follow llama.cpp's loader
//! (`docs/notes/issue-27-gguf-glm.md`); unlike its converter for `glm`, the context
//! length, RMS epsilon, rotary width and base are the model's own.
//!
//! Norms are f32; the other tensors take the type asked for, except that the
//! embedding and output head follow [`crate::storage_plan`] (one step higher under
//! the block formats, as `llama-quantize` keeps them higher) and a matrix whose
//! rows are not whole 32-blocks is f16 (as `llama-quantize` does).

use std::path::Path;

use autoglm_ops::Storage;

use crate::checkpoint::Checkpoint;
use crate::config::{ModelConfig, ModelType};
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, GgufWriter, Value};
use crate::model::f32s;

/// What [`export_gguf`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufExport {
    /// llama.cpp's architecture name.
    pub arch: String,
    /// Tensors written, with their types.
    pub tensors: Vec<(String, GgmlType)>,
    /// Bytes of the file.
    pub bytes: usize,
}

fn ggml_type(s: Storage) -> GgmlType {
    match s {
        Storage::F16 => GgmlType::F16,
        Storage::Bf16 => GgmlType::BF16,
        Storage::Q8_0 => GgmlType::Q8_0,
        Storage::Q4_0 => GgmlType::Q4_0,
        _ => GgmlType::F32,
    }
}

/// llama.cpp's `general.file_type` (`llama_ftype`) for a body storage.
fn file_type(s: Storage) -> u32 {
    match s {
        Storage::F16 => 1,
        Storage::Q4_0 => 2,
        Storage::Q8_0 => 7,
        Storage::Bf16 => 32,
        _ => 0,
    }
}

/// Writes the model in `dir` (`config.json`, the weights, and `tokenizer.json` if
/// there is one: without it the file has no vocabulary, which `llama-bench` accepts
/// and `llama-server` does not) to `path` as GGUF with its linear weights in
/// `storage`.
///
/// # Errors
/// [`Error::Input`] for an architecture or shape llama.cpp's loader would refuse
/// (`glm` needs heads × head_dim = hidden), a non-BPE `tokenizer.json`; checkpoint
/// and I/O errors naming the file.
pub fn export_gguf(dir: &Path, path: &Path, storage: Storage) -> Result<GgufExport> {
    let cfg = ModelConfig::from_file(&dir.join("config.json"))?;
    let ck = Checkpoint::open(dir)?;
    let arch = match cfg.model_type {
        ModelType::Glm if cfg.num_heads * cfg.head_dim == cfg.hidden_size => "chatglm",
        ModelType::Glm => {
            return Err(Error::Input(format!(
                "llama.cpp's chatglm architecture needs heads × head_dim = hidden ({} × {} ≠ {})",
                cfg.num_heads, cfg.head_dim, cfg.hidden_size
            )))
        }
        ModelType::Glm4 => "glm4",
        ModelType::GptNeox => "gptneox",
    };
    let neox = cfg.model_type == ModelType::GptNeox;
    if cfg.out_bias && !neox {
        return Err(Error::Input(
            "llama.cpp's chatglm/glm4 have no output-projection bias".into(),
        ));
    }
    let mut w = GgufWriter::new(arch);
    let u32v = |x: usize| Value::U32(x as u32);
    let key = |k: &str| format!("{arch}.{k}");
    w.add("general.type", Value::String("model".into()))?;
    w.add("general.quantization_version", Value::U32(2))?;
    w.add("general.file_type", Value::U32(file_type(storage)))?;
    w.add(&key("context_length"), u32v(cfg.max_position_embeddings))?;
    w.add(&key("embedding_length"), u32v(cfg.hidden_size))?;
    w.add(&key("feed_forward_length"), u32v(cfg.intermediate_size))?;
    w.add(&key("block_count"), u32v(cfg.num_layers))?;
    w.add(&key("attention.head_count"), u32v(cfg.num_heads))?;
    w.add(&key("attention.head_count_kv"), u32v(cfg.num_kv_heads))?;
    w.add(&key("attention.key_length"), u32v(cfg.head_dim))?;
    w.add(&key("attention.value_length"), u32v(cfg.head_dim))?;
    if neox {
        w.add(
            &key("attention.layer_norm_epsilon"),
            Value::F32(cfg.norm_eps as f32),
        )?;
        w.add(
            &key("use_parallel_residual"),
            Value::Bool(cfg.parallel_residual),
        )?;
        // llama.cpp's gptneox applies its (tanh) GELU whatever the model's; the name
        // lets our reader run the model's own.
        let act = cfg.to_json()["hidden_act"]
            .as_str()
            .unwrap_or("gelu")
            .to_string();
        w.add("autoglm.hidden_act", Value::String(act))?;
    } else {
        w.add(
            &key("attention.layer_norm_rms_epsilon"),
            Value::F32(cfg.norm_eps as f32),
        )?;
    }
    w.add(&key("rope.dimension_count"), u32v(cfg.rotary_dim))?;
    w.add(&key("rope.freq_base"), Value::F32(cfg.rope_theta as f32))?;
    if dir.join("tokenizer.json").exists() {
        vocabulary(&mut w, dir, &cfg)?;
    } else {
        // No vocabulary: llama-bench and llama-perplexity run it, llama-server (which
        // detokenizes) does not.
        w.add("tokenizer.ggml.model", Value::String("none".into()))?;
        w.add(&key("vocab_size"), u32v(cfg.vocab_size))?;
    }

    let plan = crate::storage_plan(storage);
    let head = plan.storage_of("head.w");
    let mut out = Out {
        w,
        tensors: Vec::new(),
    };
    let read = |hf: &str| -> Result<(Vec<usize>, Vec<f32>)> {
        let shape = ck
            .shape(hf)
            .ok_or_else(|| Error::Input(format!("tensor '{hf}' is missing")))?;
        let t = ck.tensor(hf, &shape)?;
        Ok((shape, f32s(&t).to_vec()))
    };
    let put = |out: &mut Out, hf: &str, gguf: &str, asked: Storage| -> Result<()> {
        let (shape, v) = read(hf)?;
        out.put(gguf, &shape, &v, asked)
    };
    if cfg.model_type == ModelType::GptNeox {
        neox_tensors(&mut out, &cfg, &read, storage, head)?;
    } else {
        put(
            &mut out,
            "model.embed_tokens.weight",
            "token_embd.weight",
            head,
        )?;
        let glm4 = cfg.model_type == ModelType::Glm4;
        for l in 0..cfg.num_layers {
            for (gguf, hf, _) in crate::gguf_import::glm_layer(l) {
                let optional_absent = (hf.ends_with(".bias") && !cfg.qkv_bias)
                    || (hf.contains("post_self_attn") || hf.contains("post_mlp")) && !glm4;
                if !optional_absent {
                    // Norms and biases are 1-D, which `put` keeps in f32.
                    put(&mut out, &hf, &gguf, storage)?;
                }
            }
        }
        put(
            &mut out,
            "model.norm.weight",
            "output_norm.weight",
            Storage::F32,
        )?;
        if !cfg.tie_word_embeddings {
            put(&mut out, "lm_head.weight", "output.weight", head)?;
        }
    }
    let Out { w, tensors } = out;
    let bytes = w.to_bytes();
    std::fs::write(path, &bytes).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    Ok(GgufExport {
        arch: arch.into(),
        tensors,
        bytes: bytes.len(),
    })
}

/// The file being written and what went into it.
struct Out {
    w: GgufWriter,
    tensors: Vec<(String, GgmlType)>,
}

impl Out {
    /// Adds `v` (row-major `shape`) as `gguf`: 1-D in f32, a matrix in `asked` or its
    /// fallback.
    fn put(&mut self, gguf: &str, shape: &[usize], v: &[f32], asked: Storage) -> Result<()> {
        let (s, dims): (Storage, Vec<u64>) = match shape[..] {
            [rows, cols] => (asked.or_fallback(cols), vec![cols as u64, rows as u64]),
            [n] => (Storage::F32, vec![n as u64]),
            _ => return Err(Error::Input(format!("tensor '{gguf}' has shape {shape:?}"))),
        };
        let data = crate::export::encode(v, *shape.last().unwrap_or(&1), s)?;
        let ty = ggml_type(s);
        self.w.add_tensor(gguf, &dims, ty, data)?;
        self.tensors.push((gguf.to_string(), ty));
        Ok(())
    }
}

/// A checkpoint's tensor by name: its shape and values.
type Read<'a> = dyn Fn(&str) -> Result<(Vec<usize>, Vec<f32>)> + 'a;

/// gpt_neox as llama.cpp's `gptneox`: the fused q/k/v rows regrouped from per head
/// `[q, k, v]` to all q, all k, all v (biases alike); every bias written (zeros where
/// the model has none, since llama.cpp requires them), and the output head written
/// even when tied (llama.cpp's gptneox has no tied fallback).
fn neox_tensors(
    out: &mut Out,
    cfg: &ModelConfig,
    read: &Read<'_>,
    storage: Storage,
    head: Storage,
) -> Result<()> {
    let (h, nh, d) = (cfg.hidden_size, cfg.num_heads, cfg.head_dim);
    let (eshape, embed) = read("gpt_neox.embed_in.weight")?;
    out.put("token_embd.weight", &eshape, &embed, head)?;
    let bias_or_zero = |name: &str, n: usize| -> Result<Vec<f32>> {
        match read(name) {
            Ok((_, v)) => Ok(v),
            Err(_) => Ok(vec![0.0; n]),
        }
    };
    // Row `r` of the regrouped matrix comes from HF row `order[r]`.
    let order: Vec<usize> = (0..3)
        .flat_map(|which| {
            (0..nh).flat_map(move |hh| (0..d).map(move |j| hh * 3 * d + which * d + j))
        })
        .collect();
    for l in 0..cfg.num_layers {
        let (hf, g) = (format!("gpt_neox.layers.{l}"), format!("blk.{l}"));
        for (ours, theirs) in [
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "ffn_norm"),
        ] {
            for part in ["weight", "bias"] {
                let (shape, v) = read(&format!("{hf}.{ours}.{part}"))?;
                out.put(&format!("{g}.{theirs}.{part}"), &shape, &v, Storage::F32)?;
            }
        }
        let (shape, qkv) = read(&format!("{hf}.attention.query_key_value.weight"))?;
        let cols = shape[1];
        let regrouped: Vec<f32> = order
            .iter()
            .flat_map(|&r| qkv[r * cols..(r + 1) * cols].iter().copied())
            .collect();
        out.put(&format!("{g}.attn_qkv.weight"), &shape, &regrouped, storage)?;
        let b = bias_or_zero(&format!("{hf}.attention.query_key_value.bias"), 3 * h)?;
        let b: Vec<f32> = order.iter().map(|&r| b[r]).collect();
        out.put(&format!("{g}.attn_qkv.bias"), &[3 * h], &b, Storage::F32)?;
        for (ours, theirs, n) in [
            ("attention.dense", "attn_output", h),
            ("mlp.dense_h_to_4h", "ffn_up", cfg.intermediate_size),
            ("mlp.dense_4h_to_h", "ffn_down", h),
        ] {
            let (shape, v) = read(&format!("{hf}.{ours}.weight"))?;
            out.put(&format!("{g}.{theirs}.weight"), &shape, &v, storage)?;
            let b = bias_or_zero(&format!("{hf}.{ours}.bias"), n)?;
            out.put(&format!("{g}.{theirs}.bias"), &[n], &b, Storage::F32)?;
        }
    }
    for part in ["weight", "bias"] {
        let (shape, v) = read(&format!("gpt_neox.final_layer_norm.{part}"))?;
        out.put(&format!("output_norm.{part}"), &shape, &v, Storage::F32)?;
    }
    let (shape, v) = if cfg.tie_word_embeddings {
        (eshape, embed)
    } else {
        read("embed_out.weight")?
    };
    out.put("output.weight", &shape, &v, head)
}

/// The `tokenizer.ggml.*` keys of a byte-level BPE `tokenizer.json`: every id below
/// the model's vocabulary size (absent ones as unused `[PADn]`), added special tokens
/// as control tokens, the merges, and the special ids from `config.json`.
fn vocabulary(w: &mut GgufWriter, dir: &Path, cfg: &ModelConfig) -> Result<()> {
    let path = dir.join("tokenizer.json");
    let text = std::fs::read_to_string(&path).map_err(|source| Error::Io {
        path: path.clone(),
        source,
    })?;
    let bad = |reason: String| Error::Checkpoint {
        path: path.clone(),
        reason,
    };
    let t: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let model = &t["model"];
    if model["type"] != "BPE" {
        return Err(bad(format!(
            "model.type is {}, llama.cpp's gpt2 vocabulary needs BPE",
            model["type"]
        )));
    }
    let n = cfg.vocab_size;
    let mut tokens: Vec<Option<(String, i32)>> = vec![None; n];
    let vocab = model["vocab"]
        .as_object()
        .ok_or_else(|| bad("model.vocab is not an object".into()))?;
    for (s, id) in vocab {
        if let Some(slot) = id.as_u64().and_then(|i| tokens.get_mut(i as usize)) {
            *slot = Some((s.clone(), 1));
        }
    }
    for a in t["added_tokens"].as_array().into_iter().flatten() {
        let (Some(id), Some(s)) = (a["id"].as_u64(), a["content"].as_str()) else {
            continue;
        };
        let kind = if a["special"].as_bool() == Some(true) {
            3
        } else {
            4
        };
        if let Some(slot) = tokens.get_mut(id as usize) {
            *slot = Some((s.to_string(), kind));
        }
    }
    let (names, kinds): (Vec<String>, Vec<Value>) = tokens
        .into_iter()
        .enumerate()
        .map(|(i, t)| {
            let (s, k) = t.unwrap_or_else(|| (format!("[PAD{i}]"), 5));
            (s, Value::I32(k))
        })
        .unzip();
    let merges: Vec<String> = model["merges"]
        .as_array()
        .ok_or_else(|| bad("model.merges is not a list".into()))?
        .iter()
        .map(|m| match m {
            serde_json::Value::String(s) => Ok(s.clone()),
            serde_json::Value::Array(p) if p.len() == 2 => {
                let part = |v: &serde_json::Value| {
                    v.as_str()
                        .map(|s| s.replace(' ', "\u{120}"))
                        .unwrap_or_default()
                };
                Ok(format!("{} {}", part(&p[0]), part(&p[1])))
            }
            other => Err(bad(format!("merge {other} is neither \"a b\" nor [a, b]"))),
        })
        .collect::<Result<_>>()?;
    w.add("tokenizer.ggml.model", Value::String("gpt2".into()))?;
    w.add("tokenizer.ggml.pre", Value::String("gpt-2".into()))?;
    w.add("tokenizer.ggml.tokens", Value::strings(names))?;
    w.add("tokenizer.ggml.token_type", Value::Array(5, kinds))?;
    w.add("tokenizer.ggml.merges", Value::strings(merges))?;
    let eos = cfg.eos_token_ids.first().copied();
    if let Some(b) = cfg.bos_token_id.or(eos) {
        w.add("tokenizer.ggml.bos_token_id", Value::U32(b))?;
    }
    if let Some(e) = eos {
        w.add("tokenizer.ggml.eos_token_id", Value::U32(e))?;
    }
    if let Some(p) = cfg.pad_token_id {
        w.add("tokenizer.ggml.padding_token_id", Value::U32(p))?;
    }
    w.add("tokenizer.ggml.add_bos_token", Value::Bool(false))?;
    Ok(())
}
