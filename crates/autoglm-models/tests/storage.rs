//! Weight storage types in both runtimes: half panels give the bits of the weights
//! widened at load, block formats stay close to f32, and what is stored is reported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use autoglm_models::{
    load_weights, Checkpoint, LoadOptions, Model, ModelConfig, PagedCache, PagedModel, Storage,
    StoragePlan,
};
use autoglm_ops::Tensor;
use half::{bf16, f16};

fn fixtures() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures directory")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.join("config.json").exists())
        .collect();
    v.sort();
    v
}

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
                storage,
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
                storage,
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
