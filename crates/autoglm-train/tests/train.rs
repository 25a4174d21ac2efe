//! The trainer on the tiny fixture checkpoints of autoglm-models: overfitting one
//! batch, determinism, exact resumption from a checkpoint, data errors.

use autoglm_train::{Batch, Control, Dataset, Example, Schedule, TrainConfig, Trainer};

mod common;

use common::fixture;

fn examples(n: usize, vocab: u32) -> Vec<Example> {
    common::examples(n, vocab, 12345)
}

fn dataset(n: usize, vocab: u32) -> Dataset {
    common::dataset(n, vocab, 12345)
}

fn run(trainer: &mut Trainer, data: &Dataset) -> Vec<f64> {
    let mut losses = Vec::new();
    trainer
        .fit(data, |_, r| {
            losses.push(r.loss);
            Ok(Control::Continue)
        })
        .unwrap();
    losses
}

#[test]
fn overfits_one_batch() {
    for name in ["glm_gqa_bias", "gpt_neox_parallel", "glm_mha_tied"] {
        let config = TrainConfig {
            steps: 500,
            batch_size: 4,
            lr: 1e-2,
            clip_norm: Some(1.0),
            ..TrainConfig::default()
        };
        let mut t = Trainer::from_pretrained(&fixture(name), config).unwrap();
        let vocab = t.model_config().vocab_size as u32;
        let exs = examples(4, vocab);
        let refs: Vec<&Example> = exs.iter().collect();
        let batch = Batch::new(&refs, t.model_config()).unwrap();
        let ds = Dataset {
            examples: exs.clone(),
            ..Dataset::default()
        };
        let before = t.eval_loss(&ds).unwrap();
        let first = t.step(std::slice::from_ref(&batch)).unwrap().loss;
        assert!(
            (before - first).abs() <= 1e-5 * first,
            "{name}: eval {before} vs step {first}"
        );
        let mut reached = None;
        for _ in 1..500 {
            let r = t.step(std::slice::from_ref(&batch)).unwrap();
            if r.loss < 0.01 {
                reached = Some(r.step);
                break;
            }
        }
        eprintln!("{name}: loss {first:.3} → < 0.01 at step {reached:?}");
        assert!(
            reached.is_some(),
            "{name}: the loss did not fall below 0.01 in 500 steps"
        );
    }
}

#[test]
fn same_seed_same_losses_and_resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let config = TrainConfig {
        steps: 8,
        batch_size: 3,
        grad_accum: 2,
        lr: 3e-3,
        schedule: Schedule::Cosine,
        warmup_steps: 2,
        shuffle: true,
        seed: 7,
        ..TrainConfig::default()
    };
    let model = fixture("glm_gqa_bias");
    let data = dataset(10, 320);
    let mut a = Trainer::from_pretrained(&model, config.clone()).unwrap();
    let full = run(&mut a, &data);
    assert_eq!(full.len(), 8);
    let mut b = Trainer::from_pretrained(&model, config.clone()).unwrap();
    assert_eq!(
        run(&mut b, &data),
        full,
        "same seed and data order, different losses"
    );
    // Stop after 3 steps with a checkpoint, then continue in a fresh trainer.
    let ck = dir.path().join("checkpoint-3");
    let mut c = Trainer::from_pretrained(&model, config).unwrap();
    let mut head = Vec::new();
    c.fit(&data, |t, r| {
        head.push(r.loss);
        if r.step == 3 {
            t.save_checkpoint(&ck)?;
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    })
    .unwrap();
    let mut d = Trainer::resume(&ck).unwrap();
    assert_eq!(d.steps_done(), 3);
    // Evaluation neither moves the weights nor the curve.
    let before = d.eval_loss(&data).unwrap();
    assert!(before.is_finite() && before > 0.0);
    assert_eq!(d.eval_loss(&data).unwrap(), before);
    head.extend(run(&mut d, &data));
    assert_eq!(head, full, "the resumed run left the uninterrupted curve");
    // Another seed, another order.
    let mut e = Trainer::resume_with(&ck, |c| c.seed = 8).unwrap();
    assert_ne!(run(&mut e, &data), full[3..]);
}

#[test]
fn data_errors_name_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let write = |text: &str| {
        let p = dir.path().join("d.jsonl");
        std::fs::write(&p, text).unwrap();
        p
    };
    let cases = [
        (
            "{\"input_ids\": [5, 6, 7]}\n{\"input_ids\": [5, 6,\n",
            "d.jsonl:2:",
        ),
        (
            "{\"input_ids\": [5, 6, 7], \"labels\": [5, 6]}\n",
            "2 labels for 3 input ids",
        ),
        ("{\"input_ids\": [5, 999]}\n", "outside the vocabulary"),
        ("{\"input_ids\": [5, 6], \"labels\": [5, -7]}\n", "label -7"),
        (
            "{\"text\": \"hello\"}\n",
            "needs the model's tokenizer.json",
        ),
        ("{\"input_ids\": [5], \"extra\": 1}\n", "unknown field"),
        ("{}\n", "either"),
    ];
    for (text, want) in cases {
        let e = Dataset::read_jsonl(&write(text), None, 320, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(want), "{text:?}: {e}");
    }
    // Rows with nothing to learn are counted, long rows cut.
    let p = write("{\"input_ids\": [5]}\n\n{\"input_ids\": [5, 6, 7], \"labels\": [5, -100, -100]}\n{\"input_ids\": [5, 6, 7, 8]}\n");
    let d = Dataset::read_jsonl(&p, None, 320, Some(3)).unwrap();
    assert_eq!(d.skipped, vec![1, 3]);
    assert_eq!(d.truncated, 1);
    assert_eq!(d.examples[0].input_ids, vec![5, 6, 7]);
}

#[test]
fn batches_pad_right_and_shift_labels() {
    let cfg = autoglm_models::ModelConfig::from_file(&fixture("glm_gqa_bias").join("config.json"))
        .unwrap();
    let a = Example {
        input_ids: vec![5, 6, 7],
        labels: vec![-100, 6, 7],
    };
    let b = Example {
        input_ids: vec![8, 9],
        labels: vec![8, 9],
    };
    let batch = Batch::new(&[&a, &b], &cfg).unwrap();
    assert_eq!(
        batch.labels.to_f64_vec(),
        vec![6.0, 7.0, -100.0, 9.0, -100.0, -100.0]
    );
    assert_eq!(batch.counted, 3);
    let m = batch.mask.to_f64_vec();
    // Row 1, query 2 (padding) sees the row's two tokens only.
    assert_eq!(
        &m[(3 + 2) * 3..(3 + 2) * 3 + 3],
        &[0.0, 0.0, f64::NEG_INFINITY]
    );
    // Row 0, query 0 sees key 0 only.
    assert_eq!(&m[..3], &[0.0, f64::NEG_INFINITY, f64::NEG_INFINITY]);
}

#[test]
fn checkpointing_keeps_the_losses_and_lowers_peak_memory() {
    // Many short sequences: the activations kept inside the blocks outweigh the
    // attention's transient [b, h, t, t] values.
    let mut x: u64 = 99;
    let exs: Vec<Example> = (0..16)
        .map(|_| {
            let ids: Vec<u32> = (0..16)
                .map(|_| {
                    x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
                    3 + ((x >> 33) % 317) as u32
                })
                .collect();
            let labels = ids.iter().map(|&v| i64::from(v)).collect();
            Example {
                input_ids: ids,
                labels,
            }
        })
        .collect();
    let data = Dataset {
        examples: exs,
        ..Dataset::default()
    };
    for name in ["glm_gqa_bias", "gpt_neox_parallel", "glm4_mqa"] {
        let run_with = |checkpointing: bool| {
            let config = TrainConfig {
                steps: 4,
                batch_size: 8,
                lr: 3e-3,
                shuffle: false,
                checkpointing,
                ..TrainConfig::default()
            };
            let mut t = Trainer::from_pretrained(&fixture(name), config).unwrap();
            let losses = run(&mut t, &data);
            (losses, t.peak_live_bytes())
        };
        let (plain, plain_peak) = run_with(false);
        let (ck, ck_peak) = run_with(true);
        eprintln!("{name}: peak {plain_peak} B plain, {ck_peak} B checkpointed");
        for (a, b) in plain.iter().zip(&ck) {
            assert!(
                (a - b).abs() <= 1e-6 * a.abs(),
                "{name}: losses {plain:?} vs {ck:?}"
            );
        }
        assert!(
            ck_peak < plain_peak,
            "{name}: checkpointing did not lower the peak ({ck_peak} vs {plain_peak} bytes)"
        );
    }
}

#[test]
fn half_storage_tracks_f32_with_f32_masters_and_resumes_exactly() {
    use autoglm_graph::DType;
    let data = dataset(16, 320);
    let model = fixture("glm_gqa_bias");
    let config = |dtype| TrainConfig {
        steps: 12,
        batch_size: 4,
        lr: 3e-3,
        shuffle: false,
        dtype,
        ..TrainConfig::default()
    };
    let mut f = Trainer::from_pretrained(&model, config(DType::F32)).unwrap();
    let reference = run(&mut f, &data);
    for dtype in [DType::BF16, DType::F16] {
        let mut t = Trainer::from_pretrained(&model, config(dtype)).unwrap();
        let losses = run(&mut t, &data);
        let worst = losses
            .iter()
            .zip(&reference)
            .map(|(a, b)| (a - b).abs() / b)
            .fold(0.0, f64::max);
        eprintln!(
            "{dtype:?}: worst relative loss difference {worst:.2e} over 12 steps; peak {} B vs {} B in f32; loss scale {:?}",
            t.peak_live_bytes(),
            f.peak_live_bytes(),
            t.loss_scale()
        );
        // bf16 keeps 8 bits of mantissa, f16 11: a few per mille per value.
        assert!(worst < 0.02, "{dtype:?}: {losses:?} vs {reference:?}");
        assert!(
            losses[11] < losses[0] - 0.1,
            "{dtype:?} did not learn: {losses:?}"
        );
        assert!(t.peak_live_bytes() < f.peak_live_bytes() * 3 / 4);
        assert_eq!(t.loss_scale().is_some(), dtype == DType::F16);
        // The master weights are f32 and move by updates smaller than a half ulp.
        let w = t.weights();
        assert!(w.values().all(|x| x.dtype() == DType::F32));
        // Resuming from a checkpoint continues exactly (masters and scale saved).
        let dir = tempfile::tempdir().unwrap();
        let ck = dir.path().join("ck");
        let mut a = Trainer::from_pretrained(&model, config(dtype)).unwrap();
        let mut head = Vec::new();
        a.fit(&data, |t, r| {
            head.push(r.loss);
            if r.step == 5 {
                t.save_checkpoint(&ck)?;
                return Ok(Control::Stop);
            }
            Ok(Control::Continue)
        })
        .unwrap();
        let mut b = Trainer::resume(&ck).unwrap();
        head.extend(run(&mut b, &data));
        assert_eq!(head, losses, "{dtype:?}: the resumed run left the curve");
    }
}

#[test]
fn grouping_by_length_keeps_each_epoch_a_permutation_with_less_padding() {
    use autoglm_train::Order;
    let lengths: Vec<usize> = (0..1000).map(|i| 5 + (i * 7919) % 90).collect();
    let order = |grouped: bool| Order {
        len: 1000,
        batch_size: 16,
        shuffle: true,
        seed: 3,
        lengths: grouped.then(|| lengths.clone().into()),
    };
    let padding = |o: &Order| -> usize {
        (0..o.batches_per_epoch() as u64)
            .map(|k| {
                let b = o.batch(k);
                let max = b.iter().map(|&i| lengths[i]).max().unwrap();
                b.iter().map(|&i| max - lengths[i]).sum::<usize>()
            })
            .sum()
    };
    let g = order(true);
    for epoch in 0..2u64 {
        let per = g.batches_per_epoch() as u64;
        let mut all: Vec<usize> = (0..per).flat_map(|k| g.batch(epoch * per + k)).collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<_>>());
    }
    assert_eq!(g.batch(5), g.batch(5));
    assert_ne!(g.batch(0), g.batch(g.batches_per_epoch() as u64));
    let (p_plain, p_grouped) = (padding(&order(false)), padding(&g));
    assert!(
        p_grouped * 5 < p_plain,
        "padding {p_grouped} grouped vs {p_plain}"
    );
}
