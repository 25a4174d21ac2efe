//! Fresh weights for a model trained from scratch, initialised as transformers'
//! `_init_weights` does for these model types: linear and embedding weights normal
//! with standard deviation `initializer_range` (0.02 by default), biases zero, norm
//! weights one and norm biases zero.

use std::collections::BTreeMap;

use autoglm_ops::Tensor;
use rand::SeedableRng;
use rand_distr::{Distribution, Normal};
use rand_pcg::Pcg64Mcg;

use crate::config::{Activation, ModelConfig, ModelType};
use crate::error::{Error, Result};

/// Weights for `cfg` in the graph's layout (the names and shapes
/// [`crate::load_weights`] returns), drawn from `seed`; a tied output head is the
/// embedding's transpose. [`crate::save_pretrained`] writes them as a checkpoint
/// transformers opens.
///
/// ```
/// use autoglm_models::{init_weights, Model, LoadOptions, ModelConfig};
///
/// let cfg = ModelConfig::from_json(
///     r#"{"model_type": "glm", "vocab_size": 64, "hidden_size": 16, "num_hidden_layers": 1,
///         "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 8,
///         "intermediate_size": 32, "partial_rotary_factor": 0.5}"#,
///     "config.json".as_ref(),
/// )?;
/// let weights = init_weights(&cfg, 0.02, 7)?;
/// let mut model = Model::from_weights(cfg, weights, &LoadOptions::default())?;
/// assert_eq!(model.forward(&[vec![1, 2, 3]])?.shape(), &[1, 3, 64]);
/// # Ok::<(), autoglm_models::Error>(())
/// ```
///
/// # Errors
/// [`Error::Input`] for a standard deviation that is not positive and finite.
pub fn init_weights(cfg: &ModelConfig, std: f64, seed: u64) -> Result<BTreeMap<String, Tensor>> {
    let normal = Normal::new(0.0f32, std as f32)
        .ok()
        .filter(|_| std > 0.0 && std.is_finite())
        .ok_or_else(|| Error::Input(format!("initializer range {std} is not positive")))?;
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let (h, v, inter) = (cfg.hidden_size, cfg.vocab_size, cfg.intermediate_size);
    let (q, kv) = (
        cfg.num_heads * cfg.head_dim,
        cfg.num_kv_heads * cfg.head_dim,
    );
    let mut p = BTreeMap::new();
    let mut draw = |shape: &[usize]| {
        let n = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| normal.sample(&mut rng)).collect();
        Tensor::from_f32(shape, data).expect("shape and data agree")
    };
    let fill = |shape: &[usize], x: f32| {
        Tensor::from_f32(shape, vec![x; shape.iter().product()]).expect("shape and data agree")
    };
    let embed = draw(&[v, h]);
    // A linear layer `[in, out]` and its bias.
    let mut lin =
        |p: &mut BTreeMap<String, Tensor>, name: String, inp: usize, out: usize, bias: bool| {
            p.insert(format!("{name}.w"), draw(&[inp, out]));
            if bias {
                p.insert(format!("{name}.b"), fill(&[out], 0.0));
            }
        };
    let layer_norm = cfg.model_type == ModelType::GptNeox;
    for l in 0..cfg.num_layers {
        lin(&mut p, format!("l{l}.q"), h, q, cfg.qkv_bias);
        lin(&mut p, format!("l{l}.k"), h, kv, cfg.qkv_bias);
        lin(&mut p, format!("l{l}.v"), h, kv, cfg.qkv_bias);
        lin(&mut p, format!("l{l}.o"), q, h, cfg.out_bias);
        match (cfg.model_type, cfg.activation) {
            (ModelType::GptNeox, _) | (_, Activation::Gelu | Activation::GeluTanh) => {
                lin(&mut p, format!("l{l}.fc1"), h, inter, cfg.mlp_bias);
                lin(&mut p, format!("l{l}.fc2"), inter, h, cfg.mlp_bias);
            }
            _ => {
                lin(&mut p, format!("l{l}.gate"), h, inter, false);
                lin(&mut p, format!("l{l}.up"), h, inter, false);
                lin(&mut p, format!("l{l}.down"), inter, h, false);
            }
        }
        let mut norms = vec!["ln1", "ln2"];
        if cfg.model_type == ModelType::Glm4 {
            norms.extend(["post_attn", "post_mlp"]);
        }
        for n in norms {
            p.insert(format!("l{l}.{n}.w"), fill(&[h], 1.0));
            if layer_norm {
                p.insert(format!("l{l}.{n}.b"), fill(&[h], 0.0));
            }
        }
    }
    p.insert("norm.w".into(), fill(&[h], 1.0));
    if layer_norm {
        p.insert("norm.b".into(), fill(&[h], 0.0));
    }
    let head = if cfg.tie_word_embeddings {
        crate::model::transpose(&embed)
    } else {
        draw(&[h, v])
    };
    p.insert("head.w".into(), head);
    p.insert("embed".into(), embed);
    Ok(p)
}
