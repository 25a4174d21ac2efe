//! The AutoTrainer end to end on a small quickstart corpus: search, resume without
//! rerunning finished trials, test evaluation after the search, export.

use autoglm::{AutoTrainer, Event, Task};

#[test]
fn search_resumes_evaluates_and_exports() {
    let dir = tempfile::tempdir().unwrap();
    autoglm::quickstart::write_corpus(&dir.path().join("data"), 400, 12, 10, 5).unwrap();
    let yaml = |trials: usize| {
        format!(
            "name: small
data: {{input: meaning, target: text, train: data/train.jsonl, dev: data/dev.jsonl, test: {{file: data/test.jsonl}}}}
cleaning: [{{whitespace: collapse}}, {{dedup: pair}}]
tokenizer: {{vocab_size: 400}}
model: {{layers: 1, hidden: [32, 64], heads: 2, kv_heads: 1, mlp_ratio: 2.0}}
training: {{lr: {{low: 2.0e-3, high: 8.0e-3, log: true}}, batch_size: 16, epochs: 1.0}}
search: {{trials: {trials}, evaluations: 2, threads: 2, pruner: none, decoding: {{max_new_tokens: 40}}}}
"
        )
    };
    let path = dir.path().join("task.yaml");
    std::fs::write(&path, yaml(2)).unwrap();
    let mut at = AutoTrainer::from_yaml(&path).unwrap();
    let mut started = Vec::new();
    let s = at
        .search(|e| {
            if let Event::Start { number, .. } = e {
                started.push(*number);
            }
        })
        .unwrap();
    assert_eq!((s.complete, s.pruned, s.failed), (2, 0, 0), "{s:?}");
    assert_eq!(started, [0, 1]);
    // A rerun with a larger budget runs only the missing trial.
    std::fs::write(&path, yaml(3)).unwrap();
    let mut at = AutoTrainer::new(Task::from_yaml_file(&path).unwrap()).unwrap();
    let mut again = Vec::new();
    let s = at
        .search(|e| {
            if let Event::Start { number, .. } = e {
                again.push(*number);
            }
        })
        .unwrap();
    assert_eq!(again, [2]);
    assert_eq!(s.complete, 3);
    let (best, value, _) = s.best.clone().unwrap();
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(at.output_dir().join("best/trial.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["number"], best);
    assert!(value > 0.0);
    let e = at.evaluate().unwrap();
    assert!(e.dev.bleu > 0.0 && e.test.bleu > 0.0, "{e:?}");
    assert!(e.retrieval_test.bleu > 0.0, "{e:?}");
    let preds = std::fs::read_to_string(at.output_dir().join("predictions/test.txt")).unwrap();
    assert_eq!(preds.lines().count(), at.data().test_inputs.len());
    let out = dir.path().join("model");
    at.export(&out).unwrap();
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "generation_config.json",
        "autoglm.json",
    ] {
        assert!(out.join(f).exists(), "{f}");
    }
    let report = std::fs::read_to_string(at.write_report().unwrap()).unwrap();
    assert!(
        report.contains("Optimisation history")
            && report.contains("<svg")
            && report.contains("dedup:pair")
    );
    // The export loads and generates.
    let mut m = autoglm_models::Model::load(&out, &autoglm_models::LoadOptions::default()).unwrap();
    let ids = at.tokenizer().prompt(&at.data().test_inputs[0]).unwrap();
    let outs = m
        .generate(
            &[ids],
            &autoglm_models::GenerationOptions::default(),
            |_, _| {},
        )
        .unwrap();
    assert!(!outs[0].is_empty());

    // Quantized copies: written in the storage asked (MLP widths are whole blocks,
    // so nothing falls back), smaller, close to the original, and scored.
    use autoglm_models::quantize::Method;
    use autoglm_models::Storage;
    for (storage, method, ppl) in [
        (Storage::Q8_0, Method::Rtn, 1.02),
        (Storage::Q4_0, Method::Awq, 1.2),
    ] {
        let q_dir = dir.path().join(format!("model-{storage}"));
        let q = at
            .quantize_model(
                &out,
                &q_dir,
                &autoglm_models::storage_plan(storage),
                method,
                &e.decoding,
                64,
            )
            .unwrap();
        assert_eq!(q.storage, storage.to_string());
        assert_eq!(q.fallback_share, 0.0, "{q:?}");
        assert!(q.bytes.values().sum::<usize>() < q.f32_bytes / 2, "{q:?}");
        assert!(q.perplexity_ratio < ppl && q.top1_agreement > 0.8, "{q:?}");
        assert!(q.mean_kl > 0.0 && q.test.bleu > 0.0, "{q:?}");
        if method == Method::Awq {
            assert_eq!(q.calibration_kl.len(), 3, "{q:?}");
            assert!(["awq", "awq+clip", "rtn"].contains(&q.kept.as_str()));
        }
        let written: autoglm::QuantizedEval = serde_json::from_str(
            &std::fs::read_to_string(q_dir.join("quantization.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(written, q);
        let m =
            autoglm_models::Model::load(&q_dir, &autoglm_models::LoadOptions::default()).unwrap();
        assert!(m.stored_weights().iter().any(|w| w.1 == storage));
        assert!(q_dir.join("tokenizer.json").exists() && q_dir.join("autoglm.json").exists());
    }

    // Fine-tuning the export: the checkpoint's structure and tokenizer are kept, only
    // training is searched, and it starts where the export left off (its first dev
    // loss is below the export's last one and far below a scratch model's).
    let first_loss = |at: &mut AutoTrainer| {
        let mut first = None;
        at.search(|e| {
            if let Event::Eval { dev_loss, .. } = e {
                first.get_or_insert(*dev_loss);
            }
        })
        .unwrap();
        first.unwrap()
    };
    let tune = dir.path().join("tune.yaml");
    std::fs::write(
        &tune,
        "name: tune
data: {input: meaning, target: text, train: data/train.jsonl, dev: data/dev.jsonl, test: {file: data/test.jsonl}}
model: {checkpoint: model}
training: {lr: 1.0e-3, batch_size: 16, epochs: 0.5}
search: {trials: 1, evaluations: 4, threads: 2, pruner: none, decoding: {max_new_tokens: 40}}
",
    )
    .unwrap();
    let mut ft = AutoTrainer::from_yaml(&tune).unwrap();
    assert_eq!(ft.tokenizer().vocab_size(), at.tokenizer().vocab_size());
    let tuned = first_loss(&mut ft);
    let trial: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(at.output_dir().join("best/trial.json")).unwrap(),
    )
    .unwrap();
    let last = trial["outcome"]["curve"]
        .as_array()
        .and_then(|c| c.last())
        .and_then(|p| p[1].as_f64())
        .unwrap();
    let scratch_yaml = dir.path().join("scratch.yaml");
    std::fs::write(
        &scratch_yaml,
        std::fs::read_to_string(&tune)
            .unwrap()
            .replace(
                "model: {checkpoint: model}",
                "model: {layers: 1, hidden: 64, heads: 2, kv_heads: 1, mlp_ratio: 2.0}",
            )
            .replace("name: tune", "name: scratch"),
    )
    .unwrap();
    let scratch = first_loss(&mut AutoTrainer::from_yaml(&scratch_yaml).unwrap());
    assert!(
        tuned < last && tuned < 0.8 * scratch,
        "fine-tuned {tuned}, the export's last dev loss {last}, scratch {scratch}"
    );
    let e = ft.evaluate().unwrap();
    assert!(e.test.rouge_l > 0.0, "{e:?}");
    // A checkpoint with structure keys beside it is refused.
    let bad = std::fs::read_to_string(&tune)
        .unwrap()
        .replace("{checkpoint: model}", "{checkpoint: model, layers: 2}");
    let err = Task::from_yaml_str(&bad, dir.path())
        .unwrap_err()
        .to_string();
    assert!(err.contains("checkpoint keeps its own structure"), "{err}");
}
