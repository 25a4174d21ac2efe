//! Suggestion latency of the samplers: one ask + suggest of a 10-dimensional space +
//! tell, after a history of 90 random trials (Optuna's GPSampler target: trials
//! 91–100). The history is made by the random sampler so that setting up a GP
//! iteration does not itself cost 90 GP suggestions.
use std::hint::black_box;

use autoglm_tune::{
    Distribution, GpSampler, Nsga2Sampler, QmcSampler, RandomSampler, Sampler, SearchSpace, Seed,
    Study, TpeSampler,
};
use criterion::{criterion_group, criterion_main, Criterion};

fn space(d: usize) -> SearchSpace {
    (0..d).fold(SearchSpace::default(), |s, i| {
        s.with(&format!("x{i}"), Distribution::float(-5.0, 5.0))
            .expect("valid")
    })
}

fn objective(p: &autoglm_tune::Params) -> f64 {
    p.values().map(|v| v.as_f64().expect("float").powi(2)).sum()
}

fn bench_sampler(c: &mut Criterion, name: &str, make: impl Fn() -> Box<dyn Fn(Study) -> Study>) {
    let sp = space(10);
    let mut g = c.benchmark_group("suggest");
    g.bench_function(format!("{name}/10d/after90"), |b| {
        b.iter_batched(
            || {
                let mut s = Study::minimize(Seed(0));
                for _ in 0..90 {
                    let (n, p) = s.ask_space(&sp).expect("ask");
                    s.tell(n, objective(&p)).expect("tell");
                }
                make()(s)
            },
            |mut s| {
                let (n, p) = s.ask_space(&sp).expect("ask");
                s.tell(n, objective(&p)).expect("tell");
                black_box(s)
            },
            criterion::BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn boxed<S: Sampler + Clone + 'static>(s: S) -> Box<dyn Fn(Study) -> Study> {
    Box::new(move |st: Study| st.with_sampler(s.clone()))
}

fn samplers(c: &mut Criterion) {
    bench_sampler(c, "random", || boxed(RandomSampler::new(Seed(1))));
    bench_sampler(c, "qmc", || boxed(QmcSampler::new(Seed(1))));
    bench_sampler(c, "tpe", || boxed(TpeSampler::new(Seed(1))));
    bench_sampler(c, "nsga2", || boxed(Nsga2Sampler::new(Seed(1))));
    bench_sampler(c, "gp", || boxed(GpSampler::new(Seed(1))));
}

// criterion_group! generates an undocumented public function.
#[allow(missing_docs)]
mod group {
    use super::*;
    criterion_group!(benches, samplers);
}
use group::benches;
criterion_main!(benches);
