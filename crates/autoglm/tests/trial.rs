//! A trial end to end on the bundled quickstart corpus: a tokenizer trained on it, a
//! tiny GLM trained from scratch, dev loss falling, dev outputs scored; a trial the
//! callback stops is not scored.

use autoglm::data::Item;
use autoglm::quickstart::corpus;
use autoglm::tokenizer::{TaskTokenizer, TokenizerConfig};
use autoglm::trial::{
    item_examples, run, Decoding, Hyper, Progress, RunOptions, Structure, TrialData,
};
use autoglm_train::{Control, Dataset};

fn items(rows: Vec<autoglm::clean::Row>) -> Vec<Item> {
    let mut out: Vec<Item> = Vec::new();
    for r in rows {
        match out.last_mut() {
            Some(i) if i.input == r.input => i.references.push(r.target),
            _ => out.push(Item {
                input: r.input,
                references: vec![r.target],
            }),
        }
    }
    out
}

#[test]
fn a_tiny_glm_learns_the_quickstart_corpus() {
    let train_rows = corpus(600, 1, 11);
    let dev = items(corpus(24, 3, 12));
    let texts: Vec<&str> = train_rows
        .iter()
        .flat_map(|r| [r.input.as_str(), r.target.as_str()])
        .collect();
    let tok = TaskTokenizer::train(
        &TokenizerConfig {
            vocab_size: 512,
            ..TokenizerConfig::default()
        },
        texts.into_iter(),
    )
    .unwrap();
    let train = Dataset {
        examples: train_rows
            .iter()
            .map(|r| tok.example(&r.input, &r.target).unwrap())
            .collect(),
        ..Dataset::default()
    };
    let dev_loss = Dataset {
        examples: item_examples(&tok, &dev).unwrap(),
        ..Dataset::default()
    };
    let max_len = train
        .examples
        .iter()
        .map(|e| e.input_ids.len())
        .max()
        .unwrap()
        + 64;
    let data = TrialData {
        tok: &tok,
        train: &train,
        dev_loss: &dev_loss,
        dev: &dev,
        max_len,
        base: None,
    };
    let structure = Structure {
        layers: 2,
        hidden: 64,
        heads: 4,
        kv_heads: 2,
        intermediate: 128,
        rotary: 0.5,
        tie_embeddings: true,
    };
    let hyper = Hyper {
        lr: 3e-3,
        batch_size: 16,
        steps: 240,
        warmup: 0.05,
        weight_decay: 0.01,
    };
    let decoding = Decoding {
        max_new_tokens: 64,
        ..Decoding::default()
    };
    let opts = RunOptions {
        seed: 1,
        threads: 1,
        evaluations: 3,
        deadline: None,
    };
    let mut steps = 0;
    let t = run(&data, &structure, &hyper, &decoding, opts, |p| {
        if let Progress::Step {
            step,
            steps: n,
            loss,
        } = p
        {
            assert!(step == steps + 1 && loss.is_finite() && n == 240);
            steps = step;
        }
        Control::Continue
    })
    .unwrap();
    assert_eq!(steps, 240);
    let o = &t.outcome;
    eprintln!("{o:?}\n{:?}", &t.dev_outputs[..3]);
    assert_eq!(o.curve.len(), 3);
    assert!(o.curve[2].1 < o.curve[0].1 * 0.8, "{:?}", o.curve);
    let dev_scores = o.dev.unwrap();
    assert!(
        dev_scores.bleu > 20.0 && dev_scores.rouge_l > 0.5,
        "{dev_scores:?}"
    );
    assert_eq!(t.dev_outputs.len(), dev.len());
    // A pruned trial stops at its first evaluation and is not scored.
    let stop_at_eval = |p: Progress| match p {
        Progress::Eval { .. } => Control::Stop,
        Progress::Step { .. } => Control::Continue,
    };
    let p = run(&data, &structure, &hyper, &decoding, opts, stop_at_eval).unwrap();
    assert!(p.outcome.stopped && p.outcome.dev.is_none());
    assert_eq!(p.outcome.steps, 80);
    // The same seed trains the same model.
    let short = Hyper { steps: 20, ..hyper };
    let curve = || {
        let opts = RunOptions {
            evaluations: 1,
            ..opts
        };
        run(&data, &structure, &short, &decoding, opts, stop_at_eval)
            .unwrap()
            .outcome
            .curve
    };
    assert_eq!(curve(), curve());
    // A deadline the asked steps cannot meet: the run is shortened (its schedule
    // with it), still evaluated at the end and scored, and ends in time.
    let long = Hyper {
        steps: 100_000,
        ..hyper
    };
    let started = std::time::Instant::now();
    let budget = std::time::Duration::from_secs(25);
    let opts = RunOptions {
        deadline: Some(started + budget),
        ..opts
    };
    let mut last_total = 0;
    let f = run(&data, &structure, &long, &decoding, opts, |p| {
        if let Progress::Step { steps, .. } = p {
            last_total = steps;
        }
        Control::Continue
    })
    .unwrap();
    let took = started.elapsed();
    eprintln!("fitted: {} steps in {took:?}", f.outcome.steps);
    assert!(took < budget, "{took:?}");
    assert!(f.outcome.steps < 100_000 && f.outcome.steps == last_total);
    assert!(f.outcome.dev.is_some() && !f.outcome.stopped);
    assert_eq!(f.outcome.curve.last().map(|c| c.0), Some(f.outcome.steps));
}
