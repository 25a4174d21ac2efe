//! Calibrated quantization: the scaled model computes the same function, and on a
//! model with outlier input channels (what AWQ is for) it quantizes better than
//! round to nearest on held-out sequences.

use std::collections::BTreeMap;
use std::path::Path;

use autoglm_models::quantize::{calibrate, compare, Method};
use autoglm_models::{init_weights, LoadOptions, Model, ModelConfig, Storage};
use autoglm_ops::Tensor;

fn config(kind: &str) -> ModelConfig {
    let text = match kind {
        "glm" => {
            r#"{"model_type": "glm", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "intermediate_size": 128,
            "max_position_embeddings": 64, "partial_rotary_factor": 0.5, "tie_word_embeddings": true}"#
        }
        _ => {
            r#"{"model_type": "gpt_neox", "vocab_size": 256, "hidden_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 128, "max_position_embeddings": 64,
            "rotary_pct": 0.5, "use_parallel_residual": false, "tie_word_embeddings": false}"#
        }
    };
    ModelConfig::from_json(text, Path::new("config.json")).unwrap()
}

/// Random weights whose norms amplify a few input channels tenfold, as trained
/// language models' activations do.
fn weights(cfg: &ModelConfig) -> BTreeMap<String, Tensor> {
    let mut w = init_weights(cfg, 0.05, 7).unwrap();
    for (name, t) in w.clone() {
        if name.ends_with("ln1.w") || name.ends_with("ln2.w") {
            let v: Vec<f32> = t
                .as_f32()
                .unwrap()
                .iter()
                .enumerate()
                .map(|(i, x)| if i % 13 == 5 { x * 10.0 } else { *x })
                .collect();
            w.insert(name, Tensor::from_f32(t.shape(), v).unwrap());
        }
    }
    w
}

fn sequences(n: usize, seed: u32) -> Vec<Vec<u32>> {
    let mut s = seed;
    (0..n)
        .map(|i| {
            (0..20 + i % 7)
                .map(|_| {
                    s = s.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                    (s >> 16) % 256
                })
                .collect()
        })
        .collect()
}

fn model(cfg: &ModelConfig, w: &BTreeMap<String, Tensor>, storage: Storage) -> Model {
    let opts = LoadOptions {
        storage: Some(storage),
        ..LoadOptions::default()
    };
    Model::from_weights(cfg.clone(), w.clone(), &opts).unwrap()
}

#[test]
fn calibration_keeps_the_function_and_beats_round_to_nearest() {
    for kind in ["glm", "gpt_neox"] {
        let cfg = config(kind);
        let w = weights(&cfg);
        let calib = sequences(64, 1);
        let (scaled, choices) = calibrate(&cfg, &w, &calib, Storage::Q4_0, 1, false).unwrap();
        assert!(!choices.is_empty(), "{kind}");
        assert!(choices.iter().all(|c| c.error_scaled <= c.error_rtn));
        assert!(
            choices.iter().any(|c| c.alpha > 0.0),
            "{kind}: some group scales: {choices:?}"
        );
        // The same function in f32.
        let held: Vec<(Vec<u32>, usize)> = sequences(24, 99).into_iter().map(|s| (s, 4)).collect();
        let mut f = model(&cfg, &w, Storage::F32);
        let same = compare(&mut f, &mut model(&cfg, &scaled, Storage::F32), &held).unwrap();
        assert!(same.mean_kl < 1e-9, "{kind}: {same:?}");
        assert!(
            (same.perplexity_ratio - 1.0).abs() < 1e-5,
            "{kind}: {same:?}"
        );
        // Quantized: calibrated against round to nearest on held-out sequences.
        let rtn = compare(&mut f, &mut model(&cfg, &w, Storage::Q4_0), &held).unwrap();
        let awq = compare(&mut f, &mut model(&cfg, &scaled, Storage::Q4_0), &held).unwrap();
        let (clipped, choices) = calibrate(&cfg, &w, &calib, Storage::Q4_0, 1, true).unwrap();
        assert!(choices.iter().any(|c| c.clipped_blocks > 0), "{kind}");
        let awq_clip = compare(&mut f, &mut model(&cfg, &clipped, Storage::Q4_0), &held).unwrap();
        eprintln!("{kind}: rtn {rtn:?}\nawq {awq:?}\nawq+clip {awq_clip:?}");
        assert!(rtn.mean_kl > 0.0);
        assert!(
            awq.mean_kl < rtn.mean_kl && awq_clip.mean_kl < rtn.mean_kl,
            "{kind}: awq {awq:?}, with clipping {awq_clip:?}, against rtn {rtn:?}"
        );
        assert!(awq.top1_agreement <= 1.0 && awq.tokens == rtn.tokens);
    }
    assert_eq!("awq".parse::<Method>().unwrap(), Method::Awq);
    assert!("gptq".parse::<Method>().is_err());
    let cfg = config("glm");
    let err = calibrate(
        &cfg,
        &weights(&cfg),
        &sequences(2, 1),
        Storage::F16,
        1,
        true,
    )
    .unwrap_err();
    assert!(err.to_string().contains("f16"), "{err}");
}
