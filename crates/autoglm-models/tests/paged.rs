//! The serving decoder (ragged batches over a paged cache) against the graph model.

use autoglm_models::{
    Chunk, GenerationOptions, LoadOptions, Model, ModelConfig, PagedCache, PagedModel, Sampler,
};

mod common;
use common::fixtures;

fn close(a: &[f32], b: &[f32]) -> f32 {
    let scale = b.iter().fold(0.0f32, |m, x| m.max(x.abs())).max(1e-6);
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
        / scale
}

/// Three sequences fed in a ragged schedule — whole prompts, a prompt in two
/// chunks, single tokens, joining at different steps, with blocks handed out out of
/// order — give the logits of a plain forward pass over each full sequence.
#[test]
fn ragged_steps_match_the_graph_forward_pass() {
    for dir in fixtures() {
        let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
        let v = cfg.vocab_size as u32;
        let mut graph = Model::load(&dir, &LoadOptions::default()).unwrap();
        let mut paged = PagedModel::load(&dir, 2).unwrap();
        let seqs: Vec<Vec<u32>> = vec![
            (0..11).map(|i| (i * 7 + 3) % v).collect(),
            (0..6).map(|i| (i * 5 + 1) % v).collect(),
            (0..9).map(|i| (i * 3 + 2) % v).collect(),
        ];
        let mut cache = PagedCache::new(&cfg, 4, 32).unwrap();
        // Scramble the free list so tables are not contiguous.
        let mut hold = cache.allocate(5).unwrap();
        let mut tables: Vec<Vec<u32>> = vec![Vec::new(); 3];
        for (t, s) in tables.iter_mut().zip(&seqs) {
            assert!(cache.reserve(t, s.len()));
        }
        cache.release(&mut hold);
        // (sequence, start, end) per chunk, per step.
        let plan: Vec<Vec<(usize, usize, usize)>> = vec![
            vec![(0, 0, 7), (1, 0, 3)],
            vec![(0, 7, 8), (1, 3, 6), (2, 0, 2)],
            vec![(0, 8, 9), (2, 2, 9)],
            vec![(0, 9, 10)],
            vec![(0, 10, 11)],
        ];
        let mut worst = 0.0f32;
        for step in &plan {
            let chunks: Vec<Chunk<'_>> = step
                .iter()
                .map(|&(s, a, b)| Chunk {
                    tokens: &seqs[s][a..b],
                    start: a,
                    blocks: &tables[s],
                    logits: true,
                })
                .collect();
            let logits = paged.step(&mut cache, &chunks).unwrap();
            for (row, &(s, _, b)) in logits.chunks_exact(v as usize).zip(step) {
                let want = graph.forward(&[seqs[s][..b].to_vec()]).unwrap();
                let w = want.as_f32().unwrap();
                let last = &w[(b - 1) * v as usize..b * v as usize];
                worst = worst.max(close(row, last));
            }
        }
        assert!(
            worst < 2e-5,
            "{}: worst scaled difference {worst}",
            dir.display()
        );
        for t in &mut tables {
            cache.release(t);
        }
        assert_eq!(cache.free_blocks(), 32);
    }
}

/// Greedy generation through paged steps (prefill, then one token per step, two
/// sequences side by side) produces the graph model's tokens.
#[test]
fn greedy_decoding_matches_generate() {
    for dir in fixtures() {
        let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
        let v = cfg.vocab_size;
        let mut graph = Model::load(&dir, &LoadOptions::default()).unwrap();
        let mut paged = PagedModel::load(&dir, 1).unwrap();
        let prompts: Vec<Vec<u32>> = vec![vec![5, 9, 2, 7], vec![3, 1]];
        let o = GenerationOptions {
            max_new_tokens: 12,
            ignore_eos: true,
            ..GenerationOptions::default()
        };
        let want: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| {
                graph
                    .generate(std::slice::from_ref(p), &o, |_, _| {})
                    .unwrap()
                    .remove(0)
            })
            .collect();
        let mut cache = PagedCache::with_memory(&cfg, 16, 1 << 20).unwrap();
        let mut seqs = prompts.clone();
        let mut done = [0usize; 2];
        let mut tables = vec![Vec::new(); 2];
        let mut samplers: Vec<Sampler> = (0..2).map(|_| Sampler::new(o.clone()).unwrap()).collect();
        for _ in 0..o.max_new_tokens {
            for (t, s) in tables.iter_mut().zip(&seqs) {
                assert!(cache.reserve(t, s.len()));
            }
            let chunks: Vec<Chunk<'_>> = (0..2)
                .map(|i| Chunk {
                    tokens: &seqs[i][done[i]..],
                    start: done[i],
                    blocks: &tables[i],
                    logits: true,
                })
                .collect();
            let mut logits = paged.step(&mut cache, &chunks).unwrap();
            for (i, row) in logits.chunks_exact_mut(v).enumerate() {
                done[i] = seqs[i].len();
                let tok = samplers[i].next(row, &seqs[i]);
                seqs[i].push(tok);
            }
        }
        for i in 0..2 {
            assert_eq!(
                seqs[i][prompts[i].len()..],
                want[i][..],
                "{}",
                dir.display()
            );
        }
    }
}

#[test]
fn bad_chunks_are_errors() {
    let dir = &fixtures()[0];
    let cfg = ModelConfig::from_file(&dir.join("config.json")).unwrap();
    let mut paged = PagedModel::load(dir, 1).unwrap();
    let mut cache = PagedCache::new(&cfg, 4, 2).unwrap();
    let t = cache.allocate(1).unwrap();
    let chunk = |tokens: &'static [u32], start| Chunk {
        tokens,
        start,
        blocks: &t,
        logits: true,
    };
    let e = paged
        .step(&mut cache, &[chunk(&[1, 2, 3, 4, 5], 0)])
        .unwrap_err();
    assert!(e.to_string().contains("do not hold"), "{e}");
    let e = paged.step(&mut cache, &[chunk(&[], 0)]).unwrap_err();
    assert!(e.to_string().contains("no tokens"), "{e}");
    let e = paged
        .step(&mut cache, &[chunk(&[u32::MAX], 0)])
        .unwrap_err();
    assert!(e.to_string().contains("vocabulary"), "{e}");
    assert!(cache.allocate(2).is_none());
    assert!(PagedCache::new(&cfg, 0, 2).is_err());
}
