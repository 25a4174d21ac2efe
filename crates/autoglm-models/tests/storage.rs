//! Weight storage types in both runtimes: half panels give the bits of the weights
//! widened at load, block formats stay close to f32, and what is stored is reported.

use std::collections::BTreeMap;
use std::path::Path;

use autoglm_models::{
    load_weights, Checkpoint, LoadOptions, Model, ModelConfig, PagedCache, PagedModel, Storage,
    StoragePlan,
};
use autoglm_ops::Tensor;
use half::{bf16, f16};

mod common;
use common::fixtures;

fn weights(dir: &Path) -> (ModelConfig, BTreeMap<String, Tensor>) {
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let ck = Checkpoint::open(dir).unwrap();
    let p = load_weights(&cfg, &ck).unwrap();
    (cfg, p)
}

/// The parameters with every linear weight rounded through `storage` (f16 or bf16)
/// and widened back: what loading a half checkpoint into f32 gives.
fn widened(p: &BTreeMap<String, Tensor>, storage: Storage) -> BTreeMap<String, Tensor> {
    p.iter()
        .map(|(n, t)| {
            let t = if n.ends_with(".w") && t.shape().len() == 2 {
                let v: Vec<f32> = t
                    .as_f32()
                    .unwrap()
                    .iter()
                    .map(|&x| match storage {
                        Storage::F16 => f16::from_f32(x).to_f32(),
                        _ => bf16::from_f32(x).to_f32(),
                    })
                    .collect();
                Tensor::from_f32(t.shape(), v).unwrap()
            } else {
                t.clone()
            };
            (n.clone(), t)
        })
        .collect()
}

/// Logits of the paged decoder for a prompt, then two single-token steps.
fn paged_logits(m: &mut PagedModel) -> Vec<f32> {
    let cfg = m.config().clone();
    let v = cfg.vocab_size as u32;
    let prompt: Vec<u32> = (0..7).map(|i| (i * 5 + 2) % v).collect();
    let mut cache = PagedCache::new(&cfg, 4, 8).unwrap();
    let mut table = Vec::new();
    assert!(cache.reserve(&mut table, 9));
    let mut out = Vec::new();
    for (tokens, start) in [(&prompt[..], 0), (&[3][..], 7), (&[1][..], 8)] {
        let chunk = autoglm_models::Chunk {
            tokens,
            start,
            blocks: &table,
            logits: true,
        };
        out.extend(m.step(&mut cache, &[chunk]).unwrap());
    }
    out
}

#[test]
fn half_storage_gives_the_bits_of_weights_widened_at_load() {
    for dir in fixtures() {
        let (cfg, p) = weights(&dir);
        for storage in [Storage::F16, Storage::Bf16] {
            let plan = StoragePlan::uniform(storage);
            let mut half = PagedModel::from_weights_as(cfg.clone(), p.clone(), 1, &plan).unwrap();
            let mut wide = PagedModel::from_weights(cfg.clone(), widened(&p, storage), 1).unwrap();
            let (a, b) = (paged_logits(&mut half), paged_logits(&mut wide));
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{} {storage}: paged logits differ",
                dir.display()
            );
            assert!(
                half.weight_bytes() < wide.weight_bytes(),
                "{}",
                dir.display()
            );

            let opts = LoadOptions {
                storage: Some(storage),
                ..LoadOptions::default()
            };
            let ids = vec![(0..6)
                .map(|i| (i * 3 + 1) % cfg.vocab_size as u32)
                .collect()];
            let mut g = Model::from_weights(cfg.clone(), p.clone(), &opts).unwrap();
            let mut gw =
                Model::from_weights(cfg.clone(), widened(&p, storage), &LoadOptions::default())
                    .unwrap();
            let (a, b) = (g.forward(&ids).unwrap(), gw.forward(&ids).unwrap());
            let (a, b) = (a.as_f32().unwrap(), b.as_f32().unwrap());
            assert!(
                a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{} {storage}: graph logits differ",
                dir.display()
            );
            let stored = g.stored_weights();
            assert!(!stored.is_empty(), "{}", dir.display());
            assert!(stored.iter().all(|(_, s, _)| *s == storage));
        }
    }
}

#[test]
fn block_storage_stays_close_and_falls_back_where_rows_do_not_fit() {
    for dir in fixtures() {
        let (cfg, p) = weights(&dir);
        let mut f32m = PagedModel::from_weights(cfg.clone(), p.clone(), 1).unwrap();
        let want = paged_logits(&mut f32m);
        let scale = want.iter().fold(0.0f32, |m, x| m.max(x.abs()));
        for (storage, tol) in [(Storage::Q8_0, 0.05), (Storage::Q4_0, 0.5)] {
            let opts = LoadOptions {
                storage: Some(storage),
                ..LoadOptions::default()
            };
            let g = Model::from_weights(cfg.clone(), p.clone(), &opts).unwrap();
            for (name, s, bytes) in g.stored_weights() {
                let k = p[&name].shape()[0];
                let asked = autoglm_models::storage_plan(storage).storage_of(&name);
                let expect = if k % 32 == 0 { asked } else { Storage::F16 };
                assert_eq!(s, expect, "{} {name} (k = {k})", dir.display());
                assert!(bytes < p[&name].len() * 4, "{name} is smaller than f32");
            }
            assert_eq!(
                g.stored_weights()
                    .iter()
                    .find(|(n, _, _)| n == "head.w")
                    .map(|e| e.1),
                Some(if storage == Storage::Q4_0 {
                    Storage::Q8_0
                } else {
                    Storage::F16
                })
            );
            let plan = autoglm_models::storage_plan(storage);
            let mut q = PagedModel::from_weights_as(cfg.clone(), p.clone(), 1, &plan).unwrap();
            let got = paged_logits(&mut q);
            let err = got
                .iter()
                .zip(&want)
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(
                err <= tol * scale,
                "{} {storage}: max error {err} against logits up to {scale}",
                dir.display()
            );
            assert!(got != want, "{} {storage} quantizes", dir.display());
        }
    }
}

/// `rows` (row-major, `cols` wide) as `storage` holds them.
fn through(storage: Storage, rows: &[f32], cols: usize) -> Vec<f32> {
    match storage.or_fallback(cols) {
        Storage::F32 => rows.to_vec(),
        Storage::F16 => rows.iter().map(|&x| f16::from_f32(x).to_f32()).collect(),
        Storage::Bf16 => rows.iter().map(|&x| bf16::from_f32(x).to_f32()).collect(),
        s => {
            let f = s.block_format().unwrap();
            let mut out = vec![0.0; rows.len()];
            for (r, o) in rows.chunks_exact(cols).zip(out.chunks_exact_mut(cols)) {
                f.dequantize(&f.quantize(r).unwrap(), o).unwrap();
            }
            out
        }
    }
}

/// The paged model of `p` stored as `storage_plan(storage)` says, with the embedding
/// rounded through the head's storage as a file written that way stores it (and,
/// tied, the head its transpose): what loading such a file must compute.
fn stored_directly(
    cfg: &ModelConfig,
    p: &BTreeMap<String, Tensor>,
    storage: Storage,
) -> PagedModel {
    let plan = autoglm_models::storage_plan(storage);
    let mut want = p.clone();
    let e = &p["embed"];
    let rounded = through(plan.storage_of("head.w"), e.as_f32().unwrap(), e.shape()[1]);
    want.insert(
        "embed".into(),
        Tensor::from_f32(e.shape(), rounded).unwrap(),
    );
    if cfg.tie_word_embeddings {
        let t = &want["embed"];
        let (v, h) = (t.shape()[0], t.shape()[1]);
        let x = t.as_f32().unwrap();
        let tr: Vec<f32> = (0..h * v).map(|i| x[(i % v) * h + i / v]).collect();
        want.insert("head.w".into(), Tensor::from_f32(&[h, v], tr).unwrap());
    }
    PagedModel::from_weights_as(cfg.clone(), want, 1, &plan).unwrap()
}

/// A model written in each storage loads back as stored and computes what the same
/// storage computes from the f32 weights (the embedding, stored at the head's
/// precision, rounded alike): quantizing a file and quantizing at load agree bit for
/// bit, because ggml's quantizers give back the blocks they dequantize.
#[test]
fn a_model_saved_in_each_storage_loads_back_as_stored() {
    let tmp = tempfile::tempdir().unwrap();
    for dir in fixtures() {
        let (cfg, p) = weights(&dir);
        for storage in Storage::ALL {
            let out = tmp.path().join(format!(
                "{}-{storage}",
                dir.file_name().unwrap().to_string_lossy()
            ));
            let stored = autoglm_models::save_pretrained_as(&out, &cfg, &p, storage).unwrap();
            for s in &stored {
                let fits = s.storage == s.asked;
                assert!(fits || s.storage == Storage::F16, "{s:?}");
                if storage != Storage::F32 {
                    assert_eq!(s.matrix, s.asked != Storage::F32, "{s:?}");
                }
            }
            let ck = Checkpoint::open(&out).unwrap();
            assert_eq!(ck.storage().unwrap(), storage, "{}", out.display());
            assert!(stored
                .iter()
                .any(|s| s.storage == storage.or_fallback(cfg.hidden_size)));
            let mut loaded = PagedModel::load(&out, 1).unwrap();

            let mut direct = stored_directly(&cfg, &p, storage);
            let (a, b) = (paged_logits(&mut loaded), paged_logits(&mut direct));
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{} saved as {storage}",
                dir.display()
            );
            // Read in place, the embedding keeps the file's storage.
            let embed = ck
                .names()
                .find(|n| n.contains("embed_tokens") || n.contains("embed_in"))
                .unwrap();
            let elem = match ck.dtype(embed).unwrap().as_str() {
                "U8" => 1,
                "F16" | "BF16" => 2,
                _ => 4,
            };
            let file_bytes = elem * ck.shape(embed).unwrap().iter().product::<usize>();
            let f32_bytes = 4 * cfg.vocab_size * cfg.hidden_size;
            assert_eq!(
                loaded.weight_bytes(),
                direct.weight_bytes() - f32_bytes + file_bytes
            );
            // Quantizing at load gives the same bits as the blocks repacked, and as the
            // blocks read in place from the mapped file.
            let mut requantized = PagedModel::load_as(&out, 1, Some(storage)).unwrap();
            assert_eq!(paged_logits(&mut requantized), a, "{storage}");
            let mut in_place = PagedModel::map(&out, 1).unwrap();
            assert_eq!(paged_logits(&mut in_place), a, "{storage} in place");
        }
    }
}

/// Block tensors that lie about their size or type are errors naming the tensor.
#[test]
fn lying_block_tensors_are_errors_naming_the_tensor() {
    use safetensors::tensor::{Dtype, TensorView};
    let bytes = [0u8; 2 * 36];
    let file = |shape: Vec<usize>, dtype: Dtype, storage: Option<&str>| -> Vec<u8> {
        let meta = storage.map(|s| {
            std::collections::HashMap::from([("autoglm.storage".to_string(), s.to_string())])
        });
        let n: usize = shape.iter().product::<usize>() * dtype.bitsize() / 8;
        let view = TensorView::new(dtype, shape, &bytes[..n]).unwrap();
        safetensors::serialize([("w", view)], meta).unwrap()
    };
    let read = |data: Vec<u8>, shape: &[usize]| {
        Checkpoint::from_bytes(Path::new("m.safetensors"), data)
            .unwrap()
            .tensor("w", shape)
    };
    // Well formed: two rows of one Q8_0 block, or of two Q4_0 blocks.
    assert!(read(file(vec![2, 34], Dtype::U8, Some("q8_0")), &[2, 32]).is_ok());
    assert!(read(file(vec![2, 36], Dtype::U8, Some("q4_0")), &[2, 64]).is_ok());
    for (data, shape, needle) in [
        (
            file(vec![2, 34], Dtype::U8, Some("q8_0")),
            vec![2, 96],
            "[2, 102] (q8_0) or [2, 54] (q4_0)",
        ),
        (
            file(vec![1, 34], Dtype::U8, Some("q8_0")),
            vec![2, 32],
            "but it is [1, 34]",
        ),
        (
            file(vec![2, 34], Dtype::U8, Some("q5_k")),
            vec![2, 32],
            "q5_k",
        ),
        (file(vec![2, 34], Dtype::U8, None), vec![2, 32], "None"),
        (
            file(vec![2, 34], Dtype::U8, Some("q8_0")),
            vec![68],
            "1-dimensional",
        ),
        (
            file(vec![2, 17], Dtype::U16, Some("q8_0")),
            vec![2, 32],
            "[2, 17]",
        ),
    ] {
        let err = read(data, &shape).unwrap_err().to_string();
        assert!(err.contains("'w'"), "{err}");
        assert!(err.contains(needle), "{needle}: {err}");
    }
}

/// Our GGUF export read back: the configuration, weights and storage plan give the
/// logits of the model stored the same way from its own weights (glm, glm4 and
/// gpt_neox, with and without tied embeddings and biases, every storage).
#[test]
fn a_gguf_export_reads_back_as_the_same_model() {
    let tmp = tempfile::tempdir().unwrap();
    let mut seen = 0;
    for dir in fixtures() {
        let (cfg, p) = weights(&dir);
        let file = tmp.path().join("m.gguf");
        for storage in [Storage::F32, Storage::F16, Storage::Q8_0, Storage::Q4_0] {
            let neox = cfg.model_type == autoglm_models::ModelType::GptNeox;
            let e = autoglm_models::export_gguf(&dir, &file, storage).unwrap();
            assert!(e.tensors.iter().all(|(n, _)| !n.contains("embed_tokens")));
            let (gcfg, gw, plan) = autoglm_models::import_gguf(&file).unwrap();
            assert_eq!(gcfg.hidden_size, cfg.hidden_size);
            assert_eq!(gcfg.rotary_dim, cfg.rotary_dim);
            assert_eq!(gcfg.model_type, cfg.model_type);
            assert_eq!(gcfg.activation, cfg.activation);
            assert_eq!(gcfg.parallel_residual, cfg.parallel_residual);
            if neox {
                // llama.cpp's gptneox needs every bias and an output head: zeros and
                // the embedding's copy read back as the same function.
                assert!(gcfg.qkv_bias && !gcfg.tie_word_embeddings);
                assert!(e.tensors.iter().any(|(n, _)| n == "output.weight"));
            } else {
                assert_eq!(gcfg.tie_word_embeddings, cfg.tie_word_embeddings);
                assert_eq!(gcfg.qkv_bias, cfg.qkv_bias);
            }
            assert_eq!((gcfg.norm_eps as f32), (cfg.norm_eps as f32));
            let want_plan = autoglm_models::storage_plan(storage);
            for name in ["l0.q.w", "l0.o.w", "head.w"] {
                let k = p[name].shape()[0];
                assert_eq!(
                    plan.storage_of(name).or_fallback(k),
                    want_plan.storage_of(name).or_fallback(k),
                    "{} {storage} {name}",
                    dir.display()
                );
            }
            let mut from_file = PagedModel::from_weights_as(gcfg, gw, 1, &plan).unwrap();
            let mut direct = stored_directly(&cfg, &p, storage);
            let (a, b) = (paged_logits(&mut from_file), paged_logits(&mut direct));
            assert!(
                a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
                "{} through GGUF as {storage}",
                dir.display()
            );
            seen += 1;
        }
    }
    assert!(seen >= 28, "{seen}");
}

/// A GGUF whose metadata lies about the model (head counts, widths, the architecture)
/// is an error naming the file, never a panic; the fuzz target reads files through
/// the same import.
#[test]
fn a_lying_gguf_is_an_error() {
    use autoglm_models::gguf::{Gguf, GgufWriter, Value};
    let tmp = tempfile::tempdir().unwrap();
    for fx in ["gpt_neox_parallel", "glm_gqa_bias", "glm4_mqa"] {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(fx);
        let file = tmp.path().join(format!("{fx}.gguf"));
        autoglm_models::export_gguf(&dir, &file, Storage::Q8_0).unwrap();
        let bytes = std::fs::read(&file).unwrap();
        let mut fuzz_input = vec![2u8];
        fuzz_input.extend(&bytes);
        autoglm_models::fuzz::check_readers(&fuzz_input);
        let g = Gguf::parse(&bytes, &file).unwrap();
        let arch = g.metadata[0].1.as_str().unwrap().to_string();
        for (key, value) in [
            (format!("{arch}.attention.head_count"), Value::U32(3)),
            (format!("{arch}.embedding_length"), Value::U32(48)),
            (format!("{arch}.block_count"), Value::U32(9)),
            (format!("{arch}.block_count"), Value::U32(u32::MAX)),
            (format!("{arch}.rope.dimension_count"), Value::U32(7)),
            (format!("{arch}.attention.key_length"), Value::U32(5)),
        ] {
            let mut w = GgufWriter::new(&arch);
            for (k, v) in &g.metadata[1..] {
                w.add(k, if *k == key { value.clone() } else { v.clone() })
                    .unwrap();
            }
            for t in &g.tensors {
                w.add_tensor(&t.name, &t.dims, t.ty, g.data(&bytes, t).to_vec())
                    .unwrap();
            }
            let bad = tmp.path().join("bad.gguf");
            w.write(&bad).unwrap();
            let err = autoglm_models::import_gguf(&bad).unwrap_err().to_string();
            assert!(err.contains("bad.gguf"), "{fx} {key}: {err}");
        }
    }
}

/// A head in `Q6_K` (llama-quantize's choice for 4-bit files whose width is a
/// multiple of 256) reads back as ggml expands it, transposed into the graph's
/// layout, and runs as f16.
#[test]
fn a_q6_k_head_reads_back_expanded() {
    use autoglm_models::gguf::{GgmlType, Gguf, GgufWriter};
    let tmp = tempfile::tempdir().unwrap();
    let cfg = ModelConfig::from_json(
        r#"{"model_type": "glm", "vocab_size": 40, "hidden_size": 256, "intermediate_size": 256,
            "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 64, "max_position_embeddings": 64, "tie_word_embeddings": false}"#,
        tmp.path(),
    )
    .unwrap();
    let w = autoglm_models::init_weights(&cfg, 0.02, 3).unwrap();
    let dir = tmp.path().join("m");
    autoglm_models::save_pretrained(&dir, &cfg, &w).unwrap();
    let q4 = tmp.path().join("q4.gguf");
    autoglm_models::export_gguf(&dir, &q4, Storage::Q4_0).unwrap();
    let (g, bytes) = Gguf::read(&q4).unwrap();
    let mut out = GgufWriter::new("chatglm");
    for (k, v) in g
        .metadata
        .iter()
        .filter(|(k, _)| k != "general.architecture")
    {
        out.add(k, v.clone()).unwrap();
    }
    // Random codes and scales under a small super-block scale (f16 0.0001 ≈ 0x068e).
    let mut x = 99u64;
    let mut q6 = vec![0u8; 40 * 210];
    for (i, b) in q6.iter_mut().enumerate() {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *b = match i % 210 {
            208 => 0x8e,
            209 => 0x06,
            _ => (x >> 56) as u8,
        };
    }
    for t in &g.tensors {
        if t.name == "output.weight" {
            out.add_tensor(&t.name, &t.dims, GgmlType::Q6_K, q6.clone())
                .unwrap();
        } else {
            out.add_tensor(&t.name, &t.dims, t.ty, g.data(&bytes, t).to_vec())
                .unwrap();
        }
    }
    let file = tmp.path().join("q6.gguf");
    out.write(&file).unwrap();
    let (_, gw, plan) = autoglm_models::import_gguf(&file).unwrap();
    assert_eq!(plan.storage_of("head.w"), Storage::F16);
    assert_eq!(plan.storage_of("l0.q.w"), Storage::Q4_0);
    let mut rows = vec![0.0f32; 40 * 256];
    autoglm_ops::quant::dequantize_q6_k(&q6, &mut rows).unwrap();
    let head = gw["head.w"].as_f32().unwrap();
    assert_eq!(gw["head.w"].shape(), [256, 40]);
    for j in 0..40 {
        for i in 0..256 {
            assert_eq!(head[i * 40 + j].to_bits(), rows[j * 256 + i].to_bits());
        }
    }
    // And it runs.
    let mut m = PagedModel::from_weights_as(cfg, gw, 1, &plan).unwrap();
    assert!(paged_logits(&mut m).iter().all(|v| v.is_finite()));
}
