//! The engine without HTTP: preemption under memory pressure, refusals, cancellation.

mod common;

use std::time::Duration;

use autoglm_models::{GenerationOptions, LoadOptions, Model, ModelConfig, PagedCache, PagedModel};
use autoglm_serve::policy::PolicyConfig;
use autoglm_serve::{Engine, EngineConfig, Event, GenRequest, Metrics};
use tokio::sync::mpsc::unbounded_channel;

fn greedy(n: usize) -> GenerationOptions {
    GenerationOptions {
        max_new_tokens: n,
        ignore_eos: true,
        ..GenerationOptions::default()
    }
}

fn engine(blocks: usize, max_waiting: usize, policy: PolicyConfig) -> (Engine, Metrics) {
    let dir = common::fixture();
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let model = PagedModel::load(&dir, 1).unwrap();
    let metrics = Metrics::new();
    let e = Engine::start(
        model,
        EngineConfig {
            token_budget: 64,
            block_size: 4,
            kv_cache_bytes: blocks * PagedCache::bytes_per_block(&cfg, 4),
            max_waiting,
        },
        policy.build(),
        metrics.model("m", 1),
    )
    .unwrap();
    (e, metrics)
}

async fn run(e: &Engine, prompt: Vec<u32>, n: usize) -> (Vec<u32>, u32) {
    let (tx, mut rx) = unbounded_channel();
    e.submit(GenRequest {
        prompt,
        sampling: greedy(n),
        events: tx,
    })
    .unwrap();
    let mut out = Vec::new();
    loop {
        match rx.recv().await.unwrap() {
            Event::Token(t) => out.push(t),
            Event::Done(s) => return (out, s.preempted),
            Event::Error(e) => panic!("{e}"),
        }
    }
}

/// Eight sequences of 6 + 14 tokens need 5 blocks of 4 each; the cache has 12, so
/// the batch outgrows it and sequences are preempted and recomputed — with the same
/// greedy tokens as an uninterrupted run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn preempted_sequences_are_recomputed_to_the_same_tokens() {
    let (e, metrics) = engine(12, 100, PolicyConfig::Continuous { max_batch: 8 });
    let mut graph = Model::load(&common::fixture(), &LoadOptions::default()).unwrap();
    let prompts: Vec<Vec<u32>> = (0..8u32)
        .map(|i| (0..6).map(|j| (i * 11 + j * 5 + 1) % 90).collect())
        .collect();
    let e = std::sync::Arc::new(e);
    let tasks: Vec<_> = prompts
        .iter()
        .map(|p| {
            let (e, p) = (std::sync::Arc::clone(&e), p.clone());
            tokio::spawn(async move { run(&e, p, 14).await })
        })
        .collect();
    let mut preempted = 0;
    for (p, t) in prompts.iter().zip(tasks) {
        let (tokens, pre) = t.await.unwrap();
        preempted += pre;
        let want = graph
            .generate(std::slice::from_ref(p), &greedy(14), |_, _| {})
            .unwrap()
            .remove(0);
        assert_eq!(tokens, want, "prompt {p:?}");
    }
    assert!(preempted > 0, "the cache never ran out");
    let text = metrics.render();
    assert!(
        text.contains("autoglm_preemptions_total{model=\"m\",version=\"1\"} "),
        "{text}"
    );
    assert_eq!(
        e.state()
            .free_blocks
            .load(std::sync::atomic::Ordering::Acquire),
        12
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn impossible_requests_and_a_full_queue_are_refused() {
    // A static policy that waits 10 s for a batch of 8 keeps requests queued.
    let (e, _) = engine(
        12,
        2,
        PolicyConfig::Static {
            max_batch: 8,
            max_queue_delay_ms: 10_000,
        },
    );
    let submit = |prompt: Vec<u32>, n: usize| {
        let (tx, rx) = unbounded_channel();
        (
            e.submit(GenRequest {
                prompt,
                sampling: greedy(n),
                events: tx,
            }),
            rx,
        )
    };
    // Longer than the whole cache (12 blocks of 4).
    let (r, _) = submit(vec![1; 40], 20);
    let err = r.unwrap_err();
    assert_eq!(err.status(), 400);
    assert!(err.to_string().contains("key/value memory"), "{err}");
    let (r, _) = submit(vec![], 2);
    assert_eq!(r.unwrap_err().status(), 400);
    let (a, _ra) = submit(vec![1, 2], 2);
    let (b, _rb) = submit(vec![1, 2], 2);
    a.unwrap();
    b.unwrap();
    let (c, _) = submit(vec![1, 2], 2);
    let err = c.unwrap_err();
    assert_eq!((err.status(), err.retry_after()), (503, Some(1)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_receiver_cancels_the_sequence_and_frees_its_blocks() {
    let (e, metrics) = engine(70, 100, PolicyConfig::default());
    // A client gone before the engine saw its request: cancelled, never run.
    let (tx, rx) = unbounded_channel();
    drop(rx);
    e.submit(GenRequest {
        prompt: vec![1, 2, 3],
        sampling: greedy(200),
        events: tx,
    })
    .unwrap();
    // A client that hangs up after the first token.
    let (tx, mut rx) = unbounded_channel();
    e.submit(GenRequest {
        prompt: vec![1, 2, 3],
        sampling: greedy(250),
        events: tx,
    })
    .unwrap();
    assert!(matches!(rx.recv().await, Some(Event::Token(_))));
    drop(rx);
    let cancelled = |m: &Metrics| {
        m.render()
            .lines()
            .find(|l| l.starts_with("autoglm_requests_cancelled_total{"))
            .and_then(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .unwrap_or(0)
    };
    for _ in 0..300 {
        if e.state().running.load(std::sync::atomic::Ordering::Acquire) == 0
            && cancelled(&metrics) >= 1
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(cancelled(&metrics) >= 1);
    assert_eq!(
        e.state()
            .free_blocks
            .load(std::sync::atomic::Ordering::Acquire),
        70
    );
    assert_eq!(
        e.state().waiting.load(std::sync::atomic::Ordering::Acquire),
        0
    );
}
