//! A llama.cpp GGUF file of the architectures [`crate::export_gguf`] writes
//! (`chatglm` → our `glm`, `glm4`), read as our model: the configuration from the
//! file's metadata, the weights expanded to their values and laid out as
//! [`crate::load_weights`] lays out a checkpoint, and the [`StoragePlan`] that stores
//! each weight as the file does (ggml's reference quantizers give back the blocks
//! they expand, so a Q8_0 or Q4_0 file made by `llama-quantize` runs on its own
//! blocks). Types: F32, F16, BF16, Q8_0, Q4_0, and Q4_1 and Q6_K (which
//! `llama-quantize` gives the output head of 4-bit models whose width is a multiple
//! of 256), which are expanded and run as f16.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use autoglm_ops::quant::BlockFormat;
use autoglm_ops::{Storage, StoragePlan, Tensor};
use safetensors::tensor::{Dtype, TensorView};

use crate::checkpoint::Checkpoint;
use crate::config::ModelConfig;
use crate::error::{Error, Result};
use crate::gguf::{GgmlType, Gguf, Value};

/// The model in a GGUF file: configuration, weights in the graph's layout, and the
/// storage of each weight as the file stores it.
///
/// # Errors
/// [`Error::Checkpoint`] naming the file and the key or tensor: an architecture other
/// than `chatglm`/`glm4`, a missing key or tensor, a type this crate does not expand.
pub fn import_gguf(path: &Path) -> Result<(ModelConfig, BTreeMap<String, Tensor>, StoragePlan)> {
    let (g, bytes) = Gguf::read(path)?;
    import_parsed(&g, &bytes, path)
}

/// Layer `l`'s tensors in a `chatglm`/`glm4` file: GGUF name, Hugging Face name, and
/// the graph weights it becomes (none for norms and biases). The writer and the
/// reader both name tensors from this table; which of the optional ones a model has
/// (q/k/v biases, glm4's two extra norms) its configuration says.
pub(crate) fn glm_layer(l: usize) -> Vec<(String, String, Vec<String>)> {
    let graph = |n: &str| vec![format!("l{l}.{n}.w")];
    [
        ("attn_norm.weight", "input_layernorm.weight", vec![]),
        ("attn_q.weight", "self_attn.q_proj.weight", graph("q")),
        ("attn_k.weight", "self_attn.k_proj.weight", graph("k")),
        ("attn_v.weight", "self_attn.v_proj.weight", graph("v")),
        ("attn_q.bias", "self_attn.q_proj.bias", vec![]),
        ("attn_k.bias", "self_attn.k_proj.bias", vec![]),
        ("attn_v.bias", "self_attn.v_proj.bias", vec![]),
        ("attn_output.weight", "self_attn.o_proj.weight", graph("o")),
        (
            "post_attention_norm.weight",
            "post_self_attn_layernorm.weight",
            vec![],
        ),
        ("ffn_norm.weight", "post_attention_layernorm.weight", vec![]),
        (
            "ffn_up.weight",
            "mlp.gate_up_proj.weight",
            [graph("gate"), graph("up")].concat(),
        ),
        ("ffn_down.weight", "mlp.down_proj.weight", graph("down")),
        ("post_ffw_norm.weight", "post_mlp_layernorm.weight", vec![]),
    ]
    .into_iter()
    .map(|(g, h, w)| (format!("blk.{l}.{g}"), format!("model.layers.{l}.{h}"), w))
    .collect()
}

/// [`import_gguf`] of a parsed file and its bytes (`path` names it in errors).
pub(crate) fn import_parsed(
    g: &Gguf,
    bytes: &[u8],
    path: &Path,
) -> Result<(ModelConfig, BTreeMap<String, Tensor>, StoragePlan)> {
    let bad = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let arch = g
        .get("general.architecture")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("no general.architecture".into()))?
        .to_string();
    let model_type = match arch.as_str() {
        "chatglm" => "glm",
        "glm4" => "glm4",
        "gptneox" => "gpt_neox",
        other => {
            return Err(bad(format!(
                "architecture '{other}': this crate reads chatglm, glm4 and gptneox"
            )))
        }
    };
    let neox = model_type == "gpt_neox";
    let num = |k: &str| -> Result<u64> {
        g.get(&format!("{arch}.{k}"))
            .and_then(Value::as_u64)
            .ok_or_else(|| bad(format!("no '{arch}.{k}'")))
    };
    let float = |k: &str| g.get(&format!("{arch}.{k}")).and_then(Value::as_f64);
    let embd = g
        .tensor("token_embd.weight")
        .ok_or_else(|| bad("tensor 'token_embd.weight' is missing".into()))?;
    let (hidden, heads) = (num("embedding_length")?, num("attention.head_count")?);
    let head_dim = num("attention.key_length").unwrap_or(hidden / heads.max(1));
    let rot = num("rope.dimension_count").unwrap_or(head_dim);
    let token = |k: &str| {
        g.get(&format!("tokenizer.ggml.{k}"))
            .and_then(Value::as_u64)
    };
    let mut config = serde_json::json!({
        "model_type": model_type,
        "vocab_size": embd.dims.get(1).copied().unwrap_or(0),
        "hidden_size": hidden,
        "num_hidden_layers": num("block_count")?,
        "num_attention_heads": heads,
        "num_key_value_heads": num("attention.head_count_kv").unwrap_or(heads),
        "head_dim": head_dim,
        "intermediate_size": num("feed_forward_length")?,
        "max_position_embeddings": num("context_length")?,
        "rms_norm_eps": float("attention.layer_norm_rms_epsilon").unwrap_or(1e-5),
        "rope_theta": float("rope.freq_base").unwrap_or(10000.0),
        "partial_rotary_factor": rot as f64 / head_dim.max(1) as f64,
        "tie_word_embeddings": g.tensor("output.weight").is_none() && !neox,
        "attention_bias": g.tensor("blk.0.attn_q.bias").is_some(),
        "bos_token_id": token("bos_token_id"),
        "eos_token_id": token("eos_token_id"),
        "pad_token_id": token("padding_token_id"),
    });
    if neox {
        let o = config.as_object_mut().expect("an object");
        o.insert(
            "layer_norm_eps".into(),
            float("attention.layer_norm_epsilon").unwrap_or(1e-5).into(),
        );
        o.insert(
            "use_parallel_residual".into(),
            matches!(
                g.get(&format!("{arch}.use_parallel_residual")),
                Some(Value::Bool(true))
            )
            .into(),
        );
        let act = g
            .get("autoglm.hidden_act")
            .and_then(Value::as_str)
            .unwrap_or("gelu");
        o.insert("hidden_act".into(), act.into());
        o.insert("attention_bias".into(), true.into());
        o.insert("rotary_pct".into(), o["partial_rotary_factor"].clone());
        o.remove("partial_rotary_factor");
        o.remove("rms_norm_eps");
    }
    let config = ModelConfig::from_json(&config.to_string(), path)?;
    // Every layer has tensors: a block count beyond them is a lie (and would make the
    // name map below as large as it says).
    if config.num_layers > g.tensors.len() {
        return Err(bad(format!(
            "{arch}.block_count is {}, but the file holds {} tensors",
            config.num_layers,
            g.tensors.len()
        )));
    }

    // GGUF name → Hugging Face name, and the graph weight(s) it becomes.
    let mut names: HashMap<String, (String, Vec<String>)> = HashMap::new();
    let mut name = |gguf: String, hf: String, graph: Vec<String>| {
        names.insert(gguf, (hf, graph));
    };
    if neox {
        name(
            "token_embd.weight".into(),
            "gpt_neox.embed_in.weight".into(),
            vec![],
        );
        name(
            "output.weight".into(),
            "embed_out.weight".into(),
            vec!["head.w".into()],
        );
        for part in ["weight", "bias"] {
            name(
                format!("output_norm.{part}"),
                format!("gpt_neox.final_layer_norm.{part}"),
                vec![],
            );
        }
        for l in 0..config.num_layers {
            let (b, h) = (format!("blk.{l}"), format!("gpt_neox.layers.{l}"));
            let lin = |n: &str| vec![format!("l{l}.{n}.w")];
            for (ours, theirs, graph) in [
                ("attn_norm", "input_layernorm", vec![]),
                ("ffn_norm", "post_attention_layernorm", vec![]),
                (
                    "attn_qkv",
                    "attention.query_key_value",
                    [lin("q"), lin("k"), lin("v")].concat(),
                ),
                ("attn_output", "attention.dense", lin("o")),
                ("ffn_up", "mlp.dense_h_to_4h", lin("fc1")),
                ("ffn_down", "mlp.dense_4h_to_h", lin("fc2")),
            ] {
                name(
                    format!("{b}.{ours}.weight"),
                    format!("{h}.{theirs}.weight"),
                    graph,
                );
                name(
                    format!("{b}.{ours}.bias"),
                    format!("{h}.{theirs}.bias"),
                    vec![],
                );
            }
        }
    }
    if !neox {
        name(
            "token_embd.weight".into(),
            "model.embed_tokens.weight".into(),
            if config.tie_word_embeddings {
                vec!["head.w".into()]
            } else {
                vec![]
            },
        );
        name(
            "output_norm.weight".into(),
            "model.norm.weight".into(),
            vec![],
        );
        name(
            "output.weight".into(),
            "lm_head.weight".into(),
            vec!["head.w".into()],
        );
        for l in 0..config.num_layers {
            for (gguf, hf, graph) in glm_layer(l) {
                name(gguf, hf, graph);
            }
        }
    }

    let mut encoded: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut stored: Vec<(Vec<String>, Storage, usize)> = Vec::new();
    for t in &g.tensors {
        let (hf, graph) = names
            .get(&t.name)
            .ok_or_else(|| bad(format!("tensor '{}' is not part of a {arch} model", t.name)))?;
        let shape: Vec<usize> = t.dims.iter().rev().map(|&d| d as usize).collect();
        let n = t.elements() as usize;
        let raw = g.data(bytes, t);
        let mut v = vec![0.0f32; n];
        let expand = |e: autoglm_ops::Error| bad(format!("tensor '{}': {e}", t.name));
        let storage = match t.ty {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 | GgmlType::Q8_0 | GgmlType::Q4_0 => {
                let storage = match t.ty {
                    GgmlType::F32 => Storage::F32,
                    GgmlType::F16 => Storage::F16,
                    GgmlType::BF16 => Storage::Bf16,
                    GgmlType::Q8_0 => Storage::Q8_0,
                    _ => Storage::Q4_0,
                };
                crate::checkpoint::decode(raw, storage, &mut v).map_err(expand)?;
                storage
            }
            // No product kernel for Q4_1: expanded, and run as f16.
            GgmlType::Q4_1 => {
                BlockFormat::Q4_1.dequantize(raw, &mut v).map_err(expand)?;
                Storage::F16
            }
            // llama-quantize's head format for its 4- and 5-bit types: expanded, and
            // run as f16 (no 6-bit product kernel; f16 holds every Q6_K value to
            // 2⁻¹¹ relative).
            GgmlType::Q6_K => {
                autoglm_ops::quant::dequantize_q6_k(raw, &mut v).map_err(expand)?;
                Storage::F16
            }
        };
        if neox && t.name.contains(".attn_qkv.") {
            // All q, all k, all v back to per head [q, k, v] (HF's row order).
            let (nh, d) = (config.num_heads, config.head_dim);
            let cols = if shape.len() == 2 { shape[1] } else { 1 };
            if shape.first() != Some(&(3 * nh * d)) || shape.len() > 2 {
                return Err(bad(format!(
                    "tensor '{}' has shape {shape:?}; {nh} heads of {d} need {} rows",
                    t.name,
                    3 * nh * d
                )));
            }
            let mut back = vec![0.0f32; v.len()];
            for (r, row) in v.chunks_exact(cols).enumerate() {
                let (which, rest) = (r / (nh * d), r % (nh * d));
                let (hh, j) = (rest / d, rest % d);
                let to = hh * 3 * d + which * d + j;
                back[to * cols..(to + 1) * cols].copy_from_slice(row);
            }
            v = back;
        }
        if shape.len() == 2 && !graph.is_empty() {
            stored.push((graph.clone(), storage, shape[1]));
        }
        encoded.push((
            hf.clone(),
            shape,
            v.iter().flat_map(|x| x.to_le_bytes()).collect(),
        ));
    }
    let views = encoded
        .iter()
        .map(|(n, s, b)| {
            TensorView::new(Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| bad(e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let st = safetensors::serialize(views, None).map_err(|e| bad(e.to_string()))?;
    let ck = Checkpoint::from_bytes(path, st)?;
    let weights = crate::load_weights(&config, &ck)?;
    // The body's storage is the q projections'; each weight stored otherwise is named.
    let body = stored
        .iter()
        .find(|(g, _, _)| g.first().is_some_and(|n| n.ends_with(".q.w")))
        .map_or(Storage::F32, |e| e.1);
    let mut plan = StoragePlan::uniform(body);
    for (graph, s, cols) in stored {
        if s != body.or_fallback(cols) {
            for name in graph {
                plan.by_name.insert(name, s);
            }
        }
    }
    Ok((config, weights, plan))
}
