//! `config.json` of the three transformers model types this crate builds, read into one
//! normalised [`ModelConfig`].
//!
//! Fields follow transformers 5 (`rope_parameters`), with the older spellings
//! (`rope_theta`, `partial_rotary_factor`, `rotary_pct`, `rotary_emb_base` at the top
//! level) accepted too; absent fields take the defaults of the transformers config
//! class. Fields that change the computation in ways this crate does not build (rope
//! scaling, other activations, sliding windows…) are errors naming the field; fields
//! that do not (dropout, initializer range, `architectures`…) are ignored.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// The transformers model type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelType {
    /// `glm` (GLM-4 in transformers' `GlmForCausalLM`): RMSNorm, SwiGLU with a fused
    /// `gate_up_proj`, interleaved partial rotary, grouped-query attention.
    Glm,
    /// `glm4` (`Glm4ForCausalLM`): `glm` plus RMSNorms after attention and after the MLP.
    Glm4,
    /// `gpt_neox` (`GPTNeoXForCausalLM`): LayerNorm, GELU MLP, fused per-head
    /// `query_key_value`, half-split partial rotary, optionally parallel residual.
    GptNeox,
}

impl ModelType {
    /// The `model_type` string.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelType::Glm => "glm",
            ModelType::Glm4 => "glm4",
            ModelType::GptNeox => "gpt_neox",
        }
    }

    /// The `architectures` entry transformers writes for the causal LM.
    pub fn architecture(self) -> &'static str {
        match self {
            ModelType::Glm => "GlmForCausalLM",
            ModelType::Glm4 => "Glm4ForCausalLM",
            ModelType::GptNeox => "GPTNeoXForCausalLM",
        }
    }
}

/// The MLP's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    /// `silu` (gated: `silu(gate) · up`).
    Silu,
    /// `gelu` (erf form).
    Gelu,
    /// `gelu_new` / `gelu_pytorch_tanh` (tanh form).
    GeluTanh,
}

/// A decoder's structure, whatever model type it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which transformers model type.
    pub model_type: ModelType,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width of the residual stream.
    pub hidden_size: usize,
    /// Decoder layers.
    pub num_layers: usize,
    /// Query heads.
    pub num_heads: usize,
    /// Key/value heads (grouped-query attention when fewer than `num_heads`).
    pub num_kv_heads: usize,
    /// Per-head width.
    pub head_dim: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Leading dims of each head that rotate (even; `head_dim · partial_rotary_factor`).
    pub rotary_dim: usize,
    /// Rotary base.
    pub rope_theta: f64,
    /// Norm epsilon.
    pub norm_eps: f64,
    /// Biases on the query/key/value projections.
    pub qkv_bias: bool,
    /// Bias on the attention output projection.
    pub out_bias: bool,
    /// Biases on the MLP projections.
    pub mlp_bias: bool,
    /// The output head shares the embedding matrix.
    pub tie_word_embeddings: bool,
    /// `x + attn(ln1(x)) + mlp(ln2(x))` instead of two residual steps (gpt_neox).
    pub parallel_residual: bool,
    /// The MLP activation.
    pub activation: Activation,
    /// Beginning-of-sequence token.
    pub bos_token_id: Option<u32>,
    /// End-of-sequence tokens (generation stops at any).
    pub eos_token_ids: Vec<u32>,
    /// Padding token.
    pub pad_token_id: Option<u32>,
    /// Longest sequence the model was configured for.
    pub max_position_embeddings: usize,
}

/// Reads fields of one JSON object, naming the file and field in errors.
struct Fields<'a> {
    path: &'a Path,
    obj: &'a Map<String, Value>,
}

impl Fields<'_> {
    fn err(&self, field: &str, reason: impl Into<String>) -> Error {
        Error::Config {
            path: self.path.to_path_buf(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    fn get(&self, field: &str) -> Option<&Value> {
        self.obj.get(field).filter(|v| !v.is_null())
    }

    fn usize_or(&self, field: &str, default: Option<usize>) -> Result<usize> {
        match self.get(field) {
            None => default.ok_or_else(|| self.err(field, "missing")),
            Some(v) => v
                .as_u64()
                .filter(|&n| n > 0)
                .and_then(|n| usize::try_from(n).ok())
                .ok_or_else(|| self.err(field, format!("expected a positive integer, got {v}"))),
        }
    }

    fn f64_or(&self, field: &str, default: f64) -> Result<f64> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .filter(|x| x.is_finite())
                .ok_or_else(|| self.err(field, format!("expected a number, got {v}"))),
        }
    }

    fn bool_or(&self, field: &str, default: bool) -> Result<bool> {
        match self.get(field) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(field, format!("expected true or false, got {v}"))),
        }
    }

    fn token(&self, field: &str) -> Result<Option<u32>> {
        Ok(self.tokens(field)?.first().copied())
    }

    fn tokens(&self, field: &str) -> Result<Vec<u32>> {
        let one = |v: &Value| {
            v.as_u64()
                .and_then(|n| u32::try_from(n).ok())
                .ok_or_else(|| self.err(field, format!("expected a token id, got {v}")))
        };
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(a)) => a.iter().map(one).collect(),
            Some(v) => Ok(vec![one(v)?]),
        }
    }
}

impl ModelConfig {
    /// Reads `config.json` from a file.
    ///
    /// # Errors
    /// [`Error::Io`] if unreadable; [`Error::Config`] naming the field otherwise.
    pub fn from_file(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        ModelConfig::from_json(&text, path)
    }

    /// Parses `config.json` text; `path` names it in errors.
    ///
    /// # Errors
    /// [`Error::Config`] naming the field: malformed JSON (field `<json>`, with line
    /// and column), an unknown `model_type`, a value of the wrong kind, or a feature
    /// this crate does not build.
    pub fn from_json(text: &str, path: &Path) -> Result<ModelConfig> {
        let root: Value = serde_json::from_str(text).map_err(|e| Error::Config {
            path: path.to_path_buf(),
            field: "<json>".into(),
            reason: e.to_string(),
        })?;
        let Value::Object(obj) = &root else {
            return Err(Error::Config {
                path: path.to_path_buf(),
                field: "<json>".into(),
                reason: "expected an object".into(),
            });
        };
        let f = Fields { path, obj };
        let model_type = match f.get("model_type").and_then(Value::as_str) {
            Some("glm") => ModelType::Glm,
            Some("glm4") => ModelType::Glm4,
            Some("gpt_neox") => ModelType::GptNeox,
            Some(other) => {
                return Err(f.err(
                    "model_type",
                    format!("'{other}' is not built here (glm, glm4, gpt_neox are)"),
                ))
            }
            None => return Err(f.err("model_type", "missing")),
        };
        let neox = model_type == ModelType::GptNeox;
        let rope = rope_settings(&f, neox)?;
        // Computation-changing features we do not build.
        for field in ["sliding_window", "rope_scaling"] {
            if let Some(v) = f.get(field) {
                if field == "rope_scaling"
                    && v.get("rope_type").and_then(Value::as_str) == Some("default")
                {
                    continue;
                }
                return Err(f.err(field, format!("{v} is not supported")));
            }
        }
        let hidden_size = f.usize_or("hidden_size", None)?;
        let num_heads = f.usize_or("num_attention_heads", None)?;
        let (num_kv_heads, head_dim) = if neox {
            if !hidden_size.is_multiple_of(num_heads) {
                return Err(f.err(
                    "num_attention_heads",
                    format!("{num_heads} does not divide hidden_size {hidden_size}"),
                ));
            }
            (num_heads, hidden_size / num_heads)
        } else {
            (
                f.usize_or("num_key_value_heads", Some(2))?,
                f.usize_or("head_dim", Some(128))?,
            )
        };
        if !num_heads.is_multiple_of(num_kv_heads) {
            return Err(f.err(
                "num_key_value_heads",
                format!("{num_kv_heads} does not divide num_attention_heads {num_heads}"),
            ));
        }
        let rotary_dim = (head_dim as f64 * rope.partial) as usize;
        if !rotary_dim.is_multiple_of(2) || rotary_dim > head_dim {
            return Err(f.err(
                "partial_rotary_factor",
                format!("{} of head_dim {head_dim} gives {rotary_dim} rotary dims (must be even, ≤ head_dim)", rope.partial),
            ));
        }
        let act = f
            .get("hidden_act")
            .and_then(Value::as_str)
            .unwrap_or(if neox { "gelu" } else { "silu" });
        let activation = match (neox, act) {
            (false, "silu") => Activation::Silu,
            (true, "gelu") => Activation::Gelu,
            (true, "gelu_new" | "gelu_pytorch_tanh") => Activation::GeluTanh,
            _ => {
                return Err(f.err(
                    "hidden_act",
                    format!("'{act}' is not supported for {}", model_type.as_str()),
                ))
            }
        };
        let attention_bias = f.bool_or("attention_bias", true)?;
        if !neox && f.bool_or("mlp_bias", false)? {
            return Err(f.err("mlp_bias", "true is not supported for glm models"));
        }
        Ok(ModelConfig {
            model_type,
            vocab_size: f.usize_or("vocab_size", None)?,
            hidden_size,
            num_layers: f.usize_or("num_hidden_layers", None)?,
            num_heads,
            num_kv_heads,
            head_dim,
            intermediate_size: f.usize_or("intermediate_size", None)?,
            rotary_dim,
            rope_theta: rope.theta,
            norm_eps: if neox {
                f.f64_or("layer_norm_eps", 1e-5)?
            } else {
                f.f64_or("rms_norm_eps", 1.5625e-7)?
            },
            qkv_bias: attention_bias,
            out_bias: neox && attention_bias,
            mlp_bias: neox,
            tie_word_embeddings: f.bool_or("tie_word_embeddings", false)?,
            parallel_residual: neox && f.bool_or("use_parallel_residual", true)?,
            activation,
            bos_token_id: f.token("bos_token_id")?,
            eos_token_ids: f.tokens("eos_token_id")?,
            pad_token_id: f.token("pad_token_id")?,
            max_position_embeddings: f.usize_or("max_position_embeddings", Some(2048))?,
        })
    }

    /// The `config.json` transformers would write for this structure (enough for
    /// `AutoModelForCausalLM.from_pretrained` to rebuild it).
    pub fn to_json(&self) -> Value {
        let mut v = serde_json::json!({
            "architectures": [self.model_type.architecture()],
            "model_type": self.model_type.as_str(),
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "intermediate_size": self.intermediate_size,
            "max_position_embeddings": self.max_position_embeddings,
            "tie_word_embeddings": self.tie_word_embeddings,
            "attention_bias": self.qkv_bias,
            "rope_parameters": {
                "rope_type": "default",
                "rope_theta": self.rope_theta,
                "partial_rotary_factor": self.rotary_dim as f64 / self.head_dim as f64,
            },
            "hidden_act": match self.activation {
                Activation::Silu => "silu",
                Activation::Gelu => "gelu",
                Activation::GeluTanh => "gelu_new",
            },
            "bos_token_id": self.bos_token_id,
            "pad_token_id": self.pad_token_id,
            "eos_token_id": match self.eos_token_ids.as_slice() {
                [] => Value::Null,
                [one] => Value::from(*one),
                many => Value::from(many.to_vec()),
            },
            "dtype": "float32",
        });
        let o = v.as_object_mut().expect("an object");
        if self.model_type == ModelType::GptNeox {
            o.insert("layer_norm_eps".into(), self.norm_eps.into());
            o.insert(
                "use_parallel_residual".into(),
                self.parallel_residual.into(),
            );
        } else {
            o.insert("rms_norm_eps".into(), self.norm_eps.into());
            o.insert("num_key_value_heads".into(), self.num_kv_heads.into());
            o.insert("head_dim".into(), self.head_dim.into());
        }
        v
    }

    /// Query heads per key/value head.
    pub fn group(&self) -> usize {
        self.num_heads / self.num_kv_heads
    }
}

struct Rope {
    theta: f64,
    partial: f64,
}

/// `rope_parameters` (transformers 5) or the older top-level fields.
fn rope_settings(f: &Fields<'_>, neox: bool) -> Result<Rope> {
    let default_partial = if neox { 0.25 } else { 0.5 };
    let mut theta = f.f64_or("rope_theta", 10000.0)?;
    let mut partial = f.f64_or("partial_rotary_factor", default_partial)?;
    if neox {
        theta = f.f64_or("rotary_emb_base", theta)?;
        partial = f.f64_or("rotary_pct", partial)?;
    }
    if let Some(rp) = f.get("rope_parameters") {
        let Value::Object(obj) = rp else {
            return Err(f.err("rope_parameters", format!("expected an object, got {rp}")));
        };
        let path: PathBuf = f.path.to_path_buf();
        let inner = Fields { path: &path, obj };
        let nested = |e: Error| match e {
            Error::Config {
                path,
                field,
                reason,
            } => Error::Config {
                path,
                field: format!("rope_parameters.{field}"),
                reason,
            },
            e => e,
        };
        match inner.get("rope_type").and_then(Value::as_str) {
            None | Some("default") => {}
            Some(other) => {
                return Err(f.err(
                    "rope_parameters.rope_type",
                    format!("'{other}' is not supported (only 'default')"),
                ))
            }
        }
        theta = inner.f64_or("rope_theta", theta).map_err(nested)?;
        partial = inner
            .f64_or("partial_rotary_factor", partial)
            .map_err(nested)?;
    }
    if !(partial > 0.0 && partial <= 1.0) {
        return Err(f.err(
            "partial_rotary_factor",
            format!("{partial} is not in (0, 1]"),
        ));
    }
    if theta <= 0.0 {
        return Err(f.err("rope_theta", format!("{theta} is not positive")));
    }
    Ok(Rope { theta, partial })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<ModelConfig> {
        ModelConfig::from_json(s, Path::new("config.json"))
    }

    #[test]
    fn errors_name_the_field() {
        let base = r#"{"model_type":"glm","vocab_size":10,"hidden_size":8,"num_hidden_layers":1,
            "num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,"intermediate_size":8"#;
        assert!(parse(&format!("{base}}}")).is_ok());
        for (extra, field) in [
            (
                r#","rope_parameters":{"rope_type":"yarn"}"#,
                "rope_parameters.rope_type",
            ),
            (r#","hidden_act":"relu""#, "hidden_act"),
            (r#","num_key_value_heads":3"#, "num_key_value_heads"),
            (
                r#","rope_parameters":{"partial_rotary_factor":0.3}"#,
                "partial_rotary_factor",
            ),
            (
                r#","rope_parameters":{"rope_theta":"x"}"#,
                "rope_parameters.rope_theta",
            ),
            (r#","sliding_window":16"#, "sliding_window"),
        ] {
            // A later duplicate key wins in serde_json's map.
            let e = parse(&format!("{base}{extra}}}")).unwrap_err().to_string();
            assert!(e.contains(&format!("'{field}'")), "{extra}: {e}");
        }
        let e = parse(r#"{"model_type":"llama"}"#).unwrap_err().to_string();
        assert!(e.contains("'model_type'") && e.contains("llama"), "{e}");
        let e = parse(r#"{"model_type":"glm","hidden_size":8"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 1"), "{e}");
        let e = parse(r#"{"model_type":"glm"}"#).unwrap_err().to_string();
        assert!(e.contains("'hidden_size'") && e.contains("missing"), "{e}");
    }

    #[test]
    fn neox_legacy_rotary_fields() {
        let c = parse(
            r#"{"model_type":"gpt_neox","vocab_size":10,"hidden_size":16,"num_hidden_layers":1,
            "num_attention_heads":2,"intermediate_size":8,"rotary_pct":0.5,"rotary_emb_base":500}"#,
        )
        .unwrap();
        assert_eq!((c.head_dim, c.rotary_dim, c.rope_theta), (8, 4, 500.0));
        assert!(c.parallel_residual && c.mlp_bias && c.out_bias);
        let back = parse(&c.to_json().to_string()).unwrap();
        assert_eq!(back, c);
    }
}
