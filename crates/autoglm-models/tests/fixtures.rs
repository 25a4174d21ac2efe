//! Logits against transformers' on the committed fixtures (tiny random-weight `glm`,
//! `glm4` and `gpt_neox` checkpoints saved by transformers; see `make_fixtures.py`).

use std::path::{Path, PathBuf};

use autoglm_models::{
    init_weights, load_weights, save_pretrained, Checkpoint, GenerationOptions, LoadOptions, Model,
    ModelConfig,
};
use serde::Deserialize;

#[derive(Deserialize)]
struct Logits {
    shape: Vec<usize>,
    data: Vec<f32>,
}

#[derive(Deserialize)]
struct Greedy {
    prompt_ids: Vec<u32>,
    max_new_tokens: usize,
    output_ids: Vec<u32>,
}

#[derive(Deserialize)]
struct GreedyBatch {
    prompts: Vec<Vec<u32>>,
    max_new_tokens: usize,
    outputs: Vec<Vec<u32>>,
}

#[derive(Deserialize)]
struct Expected {
    weights_dtype: String,
    input_ids: Vec<Vec<u32>>,
    logits: Logits,
    greedy: Greedy,
    greedy_batch: GreedyBatch,
}

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("expected.json").exists())
        .collect();
    v.sort();
    assert!(v.len() >= 7, "fixtures missing under {}", root.display());
    v
}

fn expected(dir: &Path) -> Expected {
    serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap()
}

/// max |Δ| / max |ref|.
fn rel_err(got: &[f32], want: &[f32]) -> f64 {
    let scale = want.iter().fold(0.0f64, |m, &x| m.max(f64::from(x).abs()));
    let diff = got.iter().zip(want).fold(0.0f64, |m, (&a, &b)| {
        m.max((f64::from(a) - f64::from(b)).abs())
    });
    diff / scale
}

#[test]
fn logits_match_transformers() {
    for dir in fixtures() {
        let exp = expected(&dir);
        // Half-precision weights are compared with the f32 model's logits.
        let tol = if exp.weights_dtype == "float32" {
            1e-4
        } else {
            2e-2
        };
        for optimize in [true, false] {
            let opts = LoadOptions {
                optimize,
                ..LoadOptions::default()
            };
            let mut m =
                Model::load(&dir, &opts).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
            let got = m.forward(&exp.input_ids).unwrap();
            assert_eq!(got.shape(), exp.logits.shape.as_slice());
            let err = rel_err(got.as_f32().unwrap(), &exp.logits.data);
            eprintln!(
                "{} optimize={optimize}: max|Δ|/max|ref| = {err:.2e}",
                dir.display()
            );
            assert!(err <= tol, "{}: {err} > {tol}", dir.display());
            if optimize {
                let fired = &m.optimized().unwrap().rules.fired;
                assert!(
                    fired.get("attention").copied().unwrap_or(0) >= 1,
                    "{}: {fired:?}",
                    dir.display()
                );
            }
        }
    }
}

#[test]
fn greedy_by_repeated_forward_matches_transformers() {
    for dir in fixtures() {
        let exp = expected(&dir);
        if exp.weights_dtype != "float32" {
            continue;
        }
        let mut m = Model::load(&dir, &LoadOptions::default()).unwrap();
        let mut ids = exp.greedy.prompt_ids.clone();
        let v = m.config().vocab_size;
        for _ in 0..exp.greedy.max_new_tokens {
            let logits = m.forward(std::slice::from_ref(&ids)).unwrap();
            let last = &logits.as_f32().unwrap()[(ids.len() - 1) * v..ids.len() * v];
            let next = (0..v).fold(0, |best, i| if last[i] > last[best] { i } else { best });
            ids.push(next as u32);
        }
        assert_eq!(
            &ids[exp.greedy.prompt_ids.len()..],
            exp.greedy.output_ids.as_slice(),
            "{}",
            dir.display()
        );
    }
}

#[test]
fn greedy_generation_with_the_cache_matches_transformers() {
    for dir in fixtures() {
        let exp = expected(&dir);
        if exp.weights_dtype != "float32" {
            continue;
        }
        let mut m = Model::load(&dir, &LoadOptions::default()).unwrap();
        let opts = GenerationOptions {
            max_new_tokens: exp.greedy.max_new_tokens,
            ignore_eos: true,
            ..GenerationOptions::default()
        };
        let mut streamed = Vec::new();
        let out = m
            .generate(
                std::slice::from_ref(&exp.greedy.prompt_ids),
                &opts,
                |_, t| streamed.push(t),
            )
            .unwrap();
        assert_eq!(out[0], exp.greedy.output_ids, "{}", dir.display());
        assert_eq!(streamed, exp.greedy.output_ids);
    }
}

/// Prompts of different lengths in one batch continue as transformers' left-padded
/// batched `generate` continues them.
#[test]
fn batched_greedy_generation_matches_transformers() {
    for dir in fixtures() {
        let exp = expected(&dir);
        if exp.weights_dtype != "float32" {
            continue;
        }
        let mut m = Model::load(&dir, &LoadOptions::default()).unwrap();
        let gb = &exp.greedy_batch;
        let opts = GenerationOptions {
            max_new_tokens: gb.max_new_tokens,
            ignore_eos: true,
            ..GenerationOptions::default()
        };
        let out = m.generate(&gb.prompts, &opts, |_, _| {}).unwrap();
        assert_eq!(out, gb.outputs, "{}", dir.display());
    }
}

/// Left padding changes nothing: each prompt of a batch continues as it does alone.
#[test]
fn batched_generation_equals_one_by_one() {
    for dir in fixtures() {
        let mut m = Model::load(&dir, &LoadOptions::default()).unwrap();
        let prompts = vec![
            vec![5, 9, 33, 7, 120, 4],
            vec![17, 3],
            vec![250, 251, 252, 8],
        ];
        let opts = GenerationOptions {
            max_new_tokens: 6,
            ignore_eos: true,
            ..GenerationOptions::default()
        };
        let together = m.generate(&prompts, &opts, |_, _| {}).unwrap();
        for (p, t) in prompts.iter().zip(&together) {
            let alone = m
                .generate(std::slice::from_ref(p), &opts, |_, _| {})
                .unwrap();
            assert_eq!(&alone[0], t, "{}: prompt {p:?}", dir.display());
        }
    }
}

/// Weights written back in the Hugging Face layout load again to the same logits
/// (transformers opening the written files is checked by `make_fixtures.py --check-export`).
#[test]
fn export_round_trip() {
    for dir in fixtures() {
        let exp = expected(&dir);
        let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
        let ck = Checkpoint::open(&dir).unwrap();
        let weights = load_weights(&cfg, &ck).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        save_pretrained(tmp.path(), &cfg, &weights).unwrap();
        // Same tensor names as transformers wrote.
        let again = Checkpoint::open(tmp.path()).unwrap();
        assert_eq!(
            again.names().collect::<Vec<_>>(),
            ck.names().collect::<Vec<_>>(),
            "{}",
            dir.display()
        );
        let mut a = Model::load(&dir, &LoadOptions::default()).unwrap();
        let mut b = Model::load(tmp.path(), &LoadOptions::default()).unwrap();
        let (x, y) = (
            a.forward(&exp.input_ids).unwrap(),
            b.forward(&exp.input_ids).unwrap(),
        );
        assert_eq!(
            x.as_f32().unwrap(),
            y.as_f32().unwrap(),
            "{}",
            dir.display()
        );
    }
}

/// Fresh weights have exactly the names and shapes a checkpoint of the same config
/// loads to (every fixture's model type and options), survive a save and load
/// unchanged, and follow the initialisation's statistics.
#[test]
fn initialised_weights_have_the_checkpoint_layout() {
    for dir in fixtures() {
        let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
        let loaded = load_weights(&cfg, &Checkpoint::open(&dir).unwrap()).unwrap();
        let fresh = init_weights(&cfg, 0.02, 1).unwrap();
        let shapes = |w: &std::collections::BTreeMap<String, autoglm_ops::Tensor>| {
            w.iter()
                .map(|(k, t)| (k.clone(), t.shape().to_vec()))
                .collect::<Vec<_>>()
        };
        assert_eq!(shapes(&fresh), shapes(&loaded), "{}", dir.display());
        let tmp = tempfile::tempdir().unwrap();
        save_pretrained(tmp.path(), &cfg, &fresh).unwrap();
        let back = load_weights(&cfg, &Checkpoint::open(tmp.path()).unwrap()).unwrap();
        assert_eq!(back, fresh, "{}", dir.display());
        let e = fresh["embed"].as_f32().unwrap();
        let n = e.len() as f64;
        let mean = e.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let sd = (e
            .iter()
            .map(|&x| (f64::from(x) - mean).powi(2))
            .sum::<f64>()
            / n)
            .sqrt();
        assert!(
            mean.abs() < 0.003 && (sd - 0.02).abs() < 0.002,
            "{mean} {sd}"
        );
        assert!(fresh["norm.w"].as_f32().unwrap().iter().all(|&x| x == 1.0));
    }
    assert_ne!(
        init_weights(
            &ModelConfig::from_file(&fixtures()[0].join("config.json")).unwrap(),
            0.02,
            2
        )
        .unwrap()["embed"],
        init_weights(
            &ModelConfig::from_file(&fixtures()[0].join("config.json")).unwrap(),
            0.02,
            1
        )
        .unwrap()["embed"]
    );
}

/// A checkpoint split into shards with an index loads to the same logits; broken
/// checkpoints are errors naming the file and tensor, never panics.
#[test]
fn sharded_and_broken_checkpoints() {
    use std::collections::BTreeMap;
    let dir = fixtures()
        .into_iter()
        .find(|d| d.ends_with("glm4_mqa"))
        .unwrap();
    let exp = expected(&dir);
    let all = autoglm_ops::load_safetensors(&dir.join("model.safetensors")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let t = tmp.path();
    std::fs::copy(dir.join("config.json"), t.join("config.json")).unwrap();
    let (mut a, mut b) = (BTreeMap::new(), BTreeMap::new());
    let mut map = serde_json::Map::new();
    for (i, (name, tensor)) in all.iter().enumerate() {
        let (shard, file) = if i % 2 == 0 {
            (&mut a, "model-00001-of-00002.safetensors")
        } else {
            (&mut b, "model-00002-of-00002.safetensors")
        };
        shard.insert(name.clone(), tensor.clone());
        map.insert(name.clone(), file.into());
    }
    autoglm_ops::save_safetensors(&t.join("model-00001-of-00002.safetensors"), &a).unwrap();
    autoglm_ops::save_safetensors(&t.join("model-00002-of-00002.safetensors"), &b).unwrap();
    let index = serde_json::json!({"metadata": {}, "weight_map": map});
    std::fs::write(t.join("model.safetensors.index.json"), index.to_string()).unwrap();
    let mut m = Model::load(t, &LoadOptions::default()).unwrap();
    let got = m.forward(&exp.input_ids).unwrap();
    assert!(rel_err(got.as_f32().unwrap(), &exp.logits.data) <= 1e-4);
    let err = |dir: &Path| {
        Model::load(dir, &LoadOptions::default())
            .unwrap_err()
            .to_string()
    };
    // A shard truncated by one byte.
    let shard2 = t.join("model-00002-of-00002.safetensors");
    let bytes = std::fs::read(&shard2).unwrap();
    std::fs::write(&shard2, &bytes[..bytes.len() - 1]).unwrap();
    let e = err(t);
    assert!(
        e.contains("model-00002-of-00002.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
    // A missing shard.
    std::fs::remove_file(&shard2).unwrap();
    assert!(err(t).contains("model-00002-of-00002.safetensors"));
    // A tensor of the wrong shape, named.
    std::fs::remove_file(t.join("model.safetensors.index.json")).unwrap();
    let mut bad = all.clone();
    let name = "model.layers.1.self_attn.k_proj.weight";
    bad.insert(
        name.into(),
        autoglm_ops::Tensor::from_f32(&[4, 32], vec![0.0; 128]).unwrap(),
    );
    autoglm_ops::save_safetensors(&t.join("model.safetensors"), &bad).unwrap();
    let e = err(t);
    assert!(
        e.contains(name) && e.contains("[4, 32]") && e.contains("[8, 32]"),
        "{e}"
    );
    // A missing tensor, named.
    bad.remove(name);
    autoglm_ops::save_safetensors(&t.join("model.safetensors"), &bad).unwrap();
    let e = err(t);
    assert!(e.contains(name) && e.contains("missing"), "{e}");
    // No weights at all; no config.
    std::fs::remove_file(t.join("model.safetensors")).unwrap();
    assert!(err(t).contains("no model.safetensors"));
    std::fs::remove_file(t.join("config.json")).unwrap();
    assert!(err(t).contains("config.json"));
}

#[derive(Deserialize)]
struct BeamHyp {
    tokens: Vec<u32>,
    score: f32,
}

#[derive(Deserialize)]
struct BeamCase {
    prompts: Vec<Vec<u32>>,
    num_beams: usize,
    num_return_sequences: usize,
    max_new_tokens: usize,
    length_penalty: f32,
    early_stopping: serde_json::Value,
    repetition_penalty: f32,
    eos_token_id: u32,
    outputs: Vec<Vec<BeamHyp>>,
}

/// Beam search (several beam counts, n-best lists, length penalties, the three
/// early-stopping modes, repetition penalty; left-padded batches) returns transformers'
/// hypotheses with its scores (`make_beam_fixtures.py`).
#[test]
fn beam_search_matches_transformers() {
    use autoglm_models::EarlyStopping;
    let mut checked = 0;
    for dir in fixtures() {
        let Ok(text) = std::fs::read_to_string(dir.join("beam.json")) else {
            continue;
        };
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let cases: Vec<BeamCase> = serde_json::from_value(v["cases"].clone()).unwrap();
        let mut m = Model::load(&dir, &LoadOptions::default()).unwrap();
        for (i, c) in cases.iter().enumerate() {
            let early_stopping = match &c.early_stopping {
                serde_json::Value::Bool(true) => EarlyStopping::Always,
                serde_json::Value::Bool(false) => EarlyStopping::Heuristic,
                _ => EarlyStopping::Never,
            };
            let opts = GenerationOptions {
                num_beams: c.num_beams,
                num_return_sequences: c.num_return_sequences,
                max_new_tokens: c.max_new_tokens,
                length_penalty: c.length_penalty,
                early_stopping,
                repetition_penalty: c.repetition_penalty,
                stop_tokens: vec![c.eos_token_id],
                ignore_eos: true,
                ..GenerationOptions::default()
            };
            let got = m.beam_search(&c.prompts, &opts).unwrap();
            // The one decoding entry point gives the best hypothesis of each prompt.
            let best = m.generate(&c.prompts, &opts, |_, _| {}).unwrap();
            let want_best: Vec<Vec<u32>> = got.iter().map(|h| h[0].tokens.clone()).collect();
            if c.num_beams > 1 {
                assert_eq!(best, want_best, "{} case {i}: generate", dir.display());
            }
            assert_eq!(got.len(), c.outputs.len());
            for (g, want) in got.iter().zip(&c.outputs) {
                let gt: Vec<&Vec<u32>> = g.iter().map(|h| &h.tokens).collect();
                let wt: Vec<&Vec<u32>> = want.iter().map(|h| &h.tokens).collect();
                assert_eq!(gt, wt, "{} case {i}", dir.display());
                for (a, b) in g.iter().zip(want) {
                    assert!(
                        (a.score - b.score).abs() <= 1e-4 * b.score.abs().max(1.0),
                        "{} case {i}: score {} vs {}",
                        dir.display(),
                        a.score,
                        b.score
                    );
                }
            }
            checked += 1;
        }
    }
    assert!(checked >= 25, "{checked} beam cases");
}

/// One beam is greedy decoding.
#[test]
fn one_beam_is_greedy() {
    for dir in fixtures() {
        let exp = expected(&dir);
        if exp.weights_dtype != "float32" {
            continue;
        }
        let mut m = Model::load(&dir, &LoadOptions::default()).unwrap();
        let gb = &exp.greedy_batch;
        let opts = GenerationOptions {
            num_beams: 1,
            max_new_tokens: gb.max_new_tokens,
            ignore_eos: true,
            ..GenerationOptions::default()
        };
        let out = m.beam_search(&gb.prompts, &opts).unwrap();
        let tokens: Vec<Vec<u32>> = out.into_iter().map(|h| h[0].tokens.clone()).collect();
        assert_eq!(tokens, gb.outputs, "{}", dir.display());
    }
}

/// The streaming detokenizer releases whole characters only, holds back the tokens
/// of a character cut in two, and adds up to the whole continuation's text.
#[test]
fn stream_decoder_holds_back_partial_characters() {
    use autoglm_models::{StreamDecoder, TextTokenizer};
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm_gqa_bias");
    let tok = TextTokenizer::from_dir(&dir).unwrap().unwrap();
    let ids = tok.encode("café über 日本 ok").unwrap();
    let mut s = StreamDecoder::new();
    let (mut text, mut released, mut held) = (String::new(), Vec::new(), 0);
    for &t in &ids {
        match s.push(Some(&tok), t).unwrap() {
            Some(d) => {
                assert!(!d.text.contains('\u{FFFD}'), "{:?}", d.text);
                text.push_str(&d.text);
                released.extend(d.tokens);
            }
            None => held += 1,
        }
    }
    let d = s.finish(Some(&tok)).unwrap();
    text.push_str(&d.text);
    released.extend(d.tokens);
    assert!(held >= 4, "multi-byte characters held back {held} times");
    assert_eq!(released, ids);
    assert_eq!(text, tok.decode(&ids).unwrap());
    assert_eq!(s.text(), text);
    // A stream cut inside a character releases the rest at the end, U+FFFD and all.
    let mut s = StreamDecoder::new();
    let cut = &ids[..ids.len() - 4];
    let mut out = String::new();
    for &t in cut {
        if let Some(d) = s.push(Some(&tok), t).unwrap() {
            out.push_str(&d.text);
        }
    }
    out.push_str(&s.finish(Some(&tok)).unwrap().text);
    assert_eq!(out, tok.decode(cut).unwrap());
    // Without a tokenizer every token is released at once.
    let mut s = StreamDecoder::new();
    let d = s.push(None, 7).unwrap().unwrap();
    assert_eq!((d.tokens, d.text), (vec![7], String::new()));
    assert!(s.finish(None).unwrap().tokens.is_empty());
}

/// A decoding-only copy of a tokenizer decodes every id, and sequences mixing
/// special, ordinary and out-of-vocabulary ids and characters cut in two, exactly as
/// the whole tokenizer does; it refuses to encode and keeps no special tokens.
#[test]
fn a_decoding_only_tokenizer_decodes_as_the_whole_one() {
    use autoglm_models::TextTokenizer;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm_gqa_bias");
    let tok = TextTokenizer::from_dir(&dir).unwrap().unwrap();
    let dec = tok.decoding_only();
    for id in 0..400u32 {
        assert_eq!(
            dec.decode(&[id]).unwrap(),
            tok.decode(&[id]).unwrap(),
            "id {id}"
        );
    }
    let text = tok.encode("café über 日本 ok, <eos> too").unwrap();
    let mut seqs = vec![text.clone(), text[..text.len() - 3].to_vec(), vec![]];
    let mut x = 12345u64;
    for len in [1, 5, 40, 200] {
        seqs.push(
            (0..len)
                .map(|_| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (x >> 33) as u32 % 330
                })
                .collect(),
        );
    }
    for s in &seqs {
        assert_eq!(dec.decode(s).unwrap(), tok.decode(s).unwrap(), "{s:?}");
    }
    assert!(dec.encode("ok").is_err());
    assert_eq!(tok.token_id("<eos>"), Some(2));
    assert_eq!(dec.token_id("<eos>"), None);
    assert_eq!(dec.token_id("ok"), tok.token_id("ok"));
    assert_eq!(
        dec.decoding_only().decode(&text).unwrap(),
        tok.decode(&text).unwrap()
    );
}
