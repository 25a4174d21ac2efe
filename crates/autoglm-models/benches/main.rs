//! Model timings on the committed fixtures (tiny, so these measure the per-step
//! overheads: graph run, cache, sampling): a forward pass of 2 × 7 tokens, and greedy
//! generation of 12 tokens after a 19-token prompt. Side-by-side figures on the
//! benchmark-size model come from `benches/models/compare_transformers.py`.
use std::hint::black_box;
use std::path::Path;

use autoglm_models::{GenerationOptions, LoadOptions, Model};
use criterion::{criterion_group, criterion_main, Criterion};

fn bench(c: &mut Criterion) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/glm_gqa_bias");
    let mut m = Model::load(&dir, &LoadOptions::default()).expect("fixture loads");
    let batch = vec![
        vec![5u32, 9, 33, 7, 120, 4, 8],
        vec![17, 3, 250, 251, 252, 8, 9],
    ];
    c.bench_function("forward/glm_tiny/2x7", |b| {
        b.iter(|| {
            let out = m.forward(black_box(&batch)).expect("runs");
            m.recycle(out);
        });
    });
    let prompt = vec![(3u32..22).collect::<Vec<_>>()];
    let opts = GenerationOptions {
        max_new_tokens: 12,
        ignore_eos: true,
        ..GenerationOptions::default()
    };
    c.bench_function("generate/glm_tiny/19+12", |b| {
        b.iter(|| {
            m.generate(black_box(&prompt), &opts, |_, _| {})
                .expect("runs")
        });
    });
}

// criterion_group! generates an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(all, bench);
}
use group::all;
criterion_main!(all);
