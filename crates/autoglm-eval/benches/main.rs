//! Micro benchmarks of autoglm-eval on E2E data bundled as a test fixture.
use std::hint::black_box;

use autoglm_eval::{
    porter_stem, score_corpus, Bleu, BleuConfig, Chrf, ChrfConfig, RougeConfig, RougeScorer,
    RougeType, Ter, TerConfig, Tokenizer,
};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};

struct Fixture {
    hyps: Vec<String>,
    refs: Vec<Vec<String>>,
}

fn fixture() -> Fixture {
    let text = include_str!("../tests/data/e2e-tgen-40.sacrebleu-2.6.0.rouge-score-0.1.2.jsonl");
    let mut hyps = Vec::new();
    let mut refs = Vec::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("fixture is JSON");
        hyps.push(v["hyp"].as_str().expect("hyp").to_owned());
        refs.push(
            v["refs"]
                .as_array()
                .expect("refs")
                .iter()
                .map(|r| r.as_str().expect("ref").to_owned())
                .collect(),
        );
    }
    Fixture { hyps, refs }
}

fn metrics(c: &mut Criterion) {
    let f = fixture();
    let n = f.hyps.len() as u64;
    let mut g = c.benchmark_group("corpus");
    g.throughput(Throughput::Elements(n));
    let bleu = Bleu::new(BleuConfig::default()).expect("config");
    g.bench_function("bleu/13a", |b| {
        b.iter(|| {
            score_corpus(&bleu, black_box(&f.hyps), &f.refs)
                .expect("ok")
                .finish()
        })
    });
    let chrf = Chrf::new(ChrfConfig::plus_plus()).expect("config");
    g.bench_function("chrf++", |b| {
        b.iter(|| {
            score_corpus(&chrf, black_box(&f.hyps), &f.refs)
                .expect("ok")
                .finish()
        })
    });
    let ter = Ter::new(TerConfig::default());
    // TER is slow by nature (shift search): the first 20 lines only.
    g.throughput(Throughput::Elements(20));
    g.bench_function("ter", |b| {
        b.iter(|| {
            score_corpus(&ter, black_box(&f.hyps[..20]), &f.refs[..20])
                .expect("ok")
                .finish()
        })
    });
    let rouge = RougeScorer::new(
        &RougeType::STANDARD,
        RougeConfig::default().with_stemmer(true),
    )
    .expect("types");
    g.bench_function("rouge/stem/multi", |b| {
        b.iter(|| {
            for (h, r) in f.hyps.iter().zip(&f.refs) {
                let r: Vec<&str> = r.iter().map(String::as_str).collect();
                black_box(rouge.score_multi(&r, h).expect("refs"));
            }
        })
    });
    g.finish();

    let mut g = c.benchmark_group("tokenize");
    g.throughput(Throughput::Elements(n));
    for t in [Tokenizer::V13a, Tokenizer::Intl, Tokenizer::Zh] {
        g.bench_function(t.name(), |b| {
            b.iter(|| {
                for h in &f.hyps {
                    black_box(t.tokenize(h));
                }
            })
        });
    }
    g.bench_function("porter", |b| {
        b.iter(|| {
            for h in &f.hyps {
                for w in h.split(' ') {
                    black_box(porter_stem(&w.to_ascii_lowercase()));
                }
            }
        })
    });
    g.finish();
}

// criterion_group! generates an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, metrics);
}
use group::benches;
criterion_main!(benches);
