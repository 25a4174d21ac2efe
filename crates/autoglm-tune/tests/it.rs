//! Integration tests of autoglm-tune through its public API.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use autoglm_tune::{
    AutoSampler, Direction, Distribution, Error, FrozenTrial, GpSampler, HyperbandPruner,
    MedianPruner, Nsga2Config, Nsga2Sampler, Outcome, ParamValue, Params, Pruner, QmcSampler,
    RandomSampler, Sampler, SamplerContext, SearchSpace, Seed, StopReason, Storage, Study,
    SuccessiveHalvingPruner, TpeSampler, TrialError, TrialState,
};
use proptest::prelude::*;

fn space() -> SearchSpace {
    SearchSpace::default()
        .with("lr", Distribution::float(1e-5, 1e-1).log())
        .unwrap()
        .with("layers", Distribution::int(1, 8))
        .unwrap()
        .with("width", Distribution::int(32, 512).log())
        .unwrap()
        .with("dropout", Distribution::float(0.0, 0.5).step(0.05))
        .unwrap()
        .with("opt", Distribution::categorical(["sgd", "adam", "adamw"]))
        .unwrap()
        .with_conditional("momentum", Distribution::float(0.0, 0.99), "opt", ["sgd"])
        .unwrap()
}

fn objective(p: &Params) -> f64 {
    let lr = p["lr"].as_f64().unwrap();
    let layers = p["layers"].as_i64().unwrap() as f64;
    (lr.log10() + 3.0).powi(2) + (layers - 4.0).powi(2) * 0.1 + p["dropout"].as_f64().unwrap()
}

fn run(study: &mut Study, n: usize) -> Vec<Params> {
    let s = space();
    (0..n)
        .map(|_| {
            let (num, params) = study.ask_space(&s).unwrap();
            study.tell(num, objective(&params)).unwrap();
            params
        })
        .collect()
}

#[test]
fn same_seed_same_suggestions() {
    for kind in 0..6 {
        let a = run(&mut study_with(kind, 3), 30);
        let b = run(&mut study_with(kind, 3), 30);
        let c = run(&mut study_with(kind, 4), 30);
        assert_eq!(a, b, "sampler {kind}");
        assert_ne!(a, c, "sampler {kind}");
    }
}

/// A minimising study with sampler `kind`: random, QMC, TPE, GP, NSGA-II (population
/// 8, so that breeding starts early) or auto.
fn study_with(kind: usize, seed: u64) -> Study {
    let s = Study::minimize(Seed(seed));
    let seed = Seed(seed);
    match kind {
        0 => s.with_sampler(RandomSampler::new(seed)),
        1 => s.with_sampler(QmcSampler::new(seed)),
        2 => s.with_sampler(TpeSampler::new(seed)),
        3 => s.with_sampler(GpSampler::new(seed)),
        4 => {
            let mut c = Nsga2Config::default();
            c.population_size = 8;
            s.with_sampler(Nsga2Sampler::with_config(seed, c))
        }
        _ => s.with_sampler(AutoSampler::new(seed, Some(30))),
    }
}

#[test]
fn the_gp_does_not_propose_a_pruned_region_again() {
    // A 1-D objective; every proposal is pruned from the sixth trial on. The GP fits
    // complete trials only: without the pruned ones in its model it proposed (nearly)
    // the same point again and again; with each pruned point observed at the worst
    // value seen, the proposals move away.
    for seed in 0..3 {
        let mut c = autoglm_tune::GpConfig::default();
        c.n_startup_trials = 3;
        let mut study =
            Study::minimize(Seed(seed)).with_sampler(GpSampler::with_config(Seed(seed), c));
        let mut pruned: Vec<f64> = Vec::new();
        for i in 0..12 {
            let mut t = study.ask().unwrap();
            let x = t.suggest_float("x", 0.0, 10.0, false).unwrap();
            let n = t.number();
            if i < 5 {
                study.tell(n, (x - 3.0).powi(2)).unwrap();
            } else {
                // (Before: seven proposals within 1e-7 of each other, e.g. 2.9954784…)
                assert!(
                    pruned.iter().all(|p| (x - p).abs() > 0.05),
                    "seed {seed}: trial {n} at {x} next to a pruned one: {pruned:?}"
                );
                pruned.push(x);
                study.tell(n, Outcome::Pruned).unwrap();
            }
        }
    }
}

#[test]
fn gp_and_auto_beat_random_on_a_mixed_quadratic() {
    let run_with = |study: Study| -> f64 {
        let mut study = study;
        for _ in 0..30 {
            let mut t = study.ask().unwrap();
            let x = t.suggest_float("x", -5.0, 5.0, false).unwrap();
            let y = t.suggest_float("lr", 1e-4, 1.0, true).unwrap();
            let k = t.suggest_int("k", 0, 10, false).unwrap();
            let c = t.suggest_categorical("c", ["a", "b"]).unwrap();
            let v = (x - 1.3).powi(2)
                + (y.log10() + 2.0).powi(2)
                + ((k - 7) as f64).powi(2) * 0.1
                + if c == ParamValue::from("b") { 0.0 } else { 1.0 };
            let n = t.number();
            study.tell(n, v).unwrap();
        }
        study.best_trial().unwrap().unwrap().value().unwrap()
    };
    for seed in 0..3 {
        let random = run_with(Study::minimize(Seed(seed)));
        let gp = run_with(Study::minimize(Seed(seed)).with_sampler(GpSampler::new(Seed(seed))));
        let auto = run_with(
            Study::minimize(Seed(seed)).with_sampler(AutoSampler::new(Seed(seed), Some(30))),
        );
        assert!(
            gp < random && gp < 0.1,
            "seed {seed}: gp {gp} vs random {random}"
        );
        assert!(auto < random, "seed {seed}: auto {auto} vs random {random}");
        let again = run_with(Study::minimize(Seed(seed)).with_sampler(GpSampler::new(Seed(seed))));
        assert_eq!(gp, again, "deterministic by seed");
    }
}

#[test]
fn conditional_parameters_only_when_active() {
    let mut study = Study::minimize(Seed(1));
    for p in run(&mut study, 60) {
        assert_eq!(
            p.contains_key("momentum"),
            p["opt"] == ParamValue::from("sgd"),
            "{p:?}"
        );
    }
}

#[test]
fn qmc_covers_the_unit_square_evenly() {
    // 64 Sobol points put exactly one point in each 1/8 x 1/8 cell.
    let mut study = Study::minimize(Seed(5)).with_sampler(QmcSampler::new(Seed(5)));
    let mut cells = std::collections::BTreeSet::new();
    for i in 0..65 {
        let mut t = study.ask().unwrap();
        let x = t.suggest_float("x", 0.0, 1.0, false).unwrap();
        let y = t.suggest_float("y", 0.0, 1.0, false).unwrap();
        let n = t.number();
        study.tell(n, x + y).unwrap();
        if i > 0 {
            cells.insert(((x * 8.0) as u32, (y * 8.0) as u32));
        }
    }
    assert_eq!(cells.len(), 64);
}

#[test]
fn non_finite_objective_fails_the_trial_not_the_study() {
    let mut study = Study::minimize(Seed(0));
    let report = study
        .optimize(6, |t| {
            let x = t.suggest_float("x", 0.0, 1.0, false)?;
            match t.number() {
                1 => Ok(f64::NAN),
                2 => Ok(f64::INFINITY),
                3 => Err(TrialError::Failed("diverged".into())),
                _ => Ok(x),
            }
        })
        .unwrap();
    assert_eq!((report.completed, report.failed), (3, 3));
    let trials = study.trials().unwrap();
    assert_eq!(trials[1].state, TrialState::Failed);
    assert_eq!(trials[3].user_attrs["fail_reason"], "diverged");
    assert!(study.best_trial().unwrap().is_some());
}

#[test]
fn enqueued_parameters_come_first() {
    let mut study = Study::minimize(Seed(0));
    let mut fixed = Params::new();
    fixed.insert("lr".into(), 1e-3.into());
    fixed.insert("layers".into(), 4i64.into());
    study.enqueue(fixed).unwrap();
    let (n, p) = study.ask_space(&space()).unwrap();
    assert_eq!(n, 0);
    assert_eq!(p["lr"], ParamValue::Float(1e-3));
    assert_eq!(p["layers"], ParamValue::Int(4));
    assert!(p.contains_key("dropout")); // the rest is sampled
}

#[test]
fn wrong_use_is_an_error() {
    let mut study = Study::new(&[Direction::Minimize, Direction::Maximize], Seed(0));
    let n = study.ask().unwrap().number();
    assert!(study
        .tell(n, 1.0)
        .unwrap_err()
        .to_string()
        .contains("expected 2 objective values"));
    study.tell(n, Outcome::Values(vec![1.0, 2.0])).unwrap();
    assert!(study
        .tell(n, Outcome::Failed)
        .unwrap_err()
        .to_string()
        .contains("already finished"));
    assert!(study.trial(n).is_err() && study.trial(99).is_err());
    let mut t = study.ask().unwrap();
    t.suggest_float("x", 0.0, 1.0, false).unwrap();
    let e = t.suggest_float("x", 0.0, 2.0, false).unwrap_err();
    assert!(e.to_string().contains("another distribution"));
}

#[test]
fn median_pruner_stops_bad_trials() {
    let mut study = Study::minimize(Seed(2)).with_pruner(MedianPruner::default());
    let report = study
        .optimize(40, |t| {
            let x = t.suggest_float("x", 0.0, 1.0, false)?;
            for step in 0..10 {
                t.report(step, x * (10 - step) as f64)?;
                if t.should_prune()? {
                    return Err(TrialError::Pruned);
                }
            }
            Ok(x)
        })
        .unwrap();
    assert!(report.pruned > 5, "{report:?}");
    for t in study
        .trials()
        .unwrap()
        .iter()
        .filter(|t| t.state == TrialState::Pruned)
    {
        assert!(t.value().is_some()); // the last intermediate value
    }
}

/// Asks `k` trials at once (as `k` workers would) after `n` sequential ones, and
/// returns the smallest distance between two of the pending suggestions.
fn closest_pending(sampler: impl Sampler + 'static, n: usize, k: usize) -> f64 {
    let sp = SearchSpace::default()
        .with("x", Distribution::float(-2.0, 2.0))
        .unwrap()
        .with("y", Distribution::float(-2.0, 2.0))
        .unwrap();
    let f = |p: &Params| {
        let (x, y) = (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap());
        (x - 0.3).powi(2) + (y + 0.2).powi(2)
    };
    let mut study = Study::minimize(Seed(8)).with_sampler(sampler);
    for _ in 0..n {
        let (num, p) = study.ask_space(&sp).unwrap();
        study.tell(num, f(&p)).unwrap();
    }
    let pending: Vec<(f64, f64)> = (0..k)
        .map(|_| {
            let (_, p) = study.ask_space(&sp).unwrap();
            (p["x"].as_f64().unwrap(), p["y"].as_f64().unwrap())
        })
        .collect();
    let mut closest = f64::INFINITY;
    for (i, a) in pending.iter().enumerate() {
        for b in &pending[..i] {
            closest = closest.min(((a.0 - b.0).powi(2) + (a.1 - b.1).powi(2)).sqrt());
        }
    }
    closest
}

#[test]
fn parallel_workers_get_distinct_suggestions() {
    // Without pending-trial handling the GP proposes the same point 4 times (distance 0
    // or 1e-8 here). With the Kriging believer the spread shrinks as the model becomes
    // sure of the optimum, but suggestions never coincide.
    let early = closest_pending(GpSampler::new(Seed(8)), 12, 4);
    assert!(
        early > 1e-3,
        "gp after 12 trials: closest pending pair {early}"
    );
    let late = closest_pending(GpSampler::new(Seed(8)), 20, 4);
    assert!(
        late > 1e-6,
        "gp after 20 trials: closest pending pair {late}"
    );
    let tpe = closest_pending(TpeSampler::new(Seed(8)), 20, 4);
    assert!(tpe > 0.1, "tpe: closest pending pair {tpe}");
}

/// Curves that converge to `x` (the final value) from above, noisily, so the final
/// ranking shows only late: a test bed for multi-fidelity pruners.
fn curve_study(pruner: impl Pruner + 'static, seed: u64) -> (usize, u64, f64) {
    let mut study = Study::minimize(Seed(seed)).with_pruner(pruner);
    let mut steps = 0;
    let report = study
        .optimize(60, |t| {
            let x = t.suggest_float("x", 0.0, 1.0, false)?;
            let noise = t.suggest_float("noise", 0.0, 1.0, false)?;
            for step in 1..=27u64 {
                steps += 1;
                t.report(step, x + (1.0 + noise) / step as f64)?;
                if t.should_prune()? {
                    return Err(TrialError::Pruned);
                }
            }
            Ok(x)
        })
        .unwrap();
    let best = study.best_trial().unwrap().unwrap().value().unwrap();
    (report.pruned, steps, best)
}

#[test]
fn successive_halving_and_hyperband_save_steps() {
    let (_, full, best_full) = curve_study(autoglm_tune::NopPruner, 4);
    assert_eq!(full, 60 * 27);
    let sha = SuccessiveHalvingPruner {
        min_resource: Some(1),
        reduction_factor: 3,
        ..Default::default()
    };
    let (pruned, steps, best) = curve_study(sha, 4);
    assert!(pruned >= 30, "pruned {pruned}");
    assert!(steps * 3 < full, "{steps} of {full} steps");
    assert!(best < best_full + 0.1, "{best} vs {best_full}");
    let hb = HyperbandPruner {
        max_resource: Some(27),
        ..Default::default()
    };
    let (pruned, steps, best) = curve_study(hb, 4);
    assert!(pruned >= 20, "pruned {pruned}");
    assert!(steps * 2 < full, "{steps} of {full} steps");
    assert!(best < best_full + 0.1, "{best} vs {best_full}");
}

/// Minimise (x − 0.8)² + (y − 0.8)² subject to x + y ≤ 1: optimum 0.18 at (0.5, 0.5).
/// Returns the best feasible value and the mean violation of the later half of trials
/// (an optimiser ignoring the constraint ends near (0.8, 0.8), violation 0.6).
fn constrained(sampler: impl Sampler + 'static, n: usize) -> (f64, f64) {
    let mut study = Study::minimize(Seed(5)).with_sampler(sampler);
    for _ in 0..n {
        let mut t = study.ask().unwrap();
        let x = t.suggest_float("x", 0.0, 1.0, false).unwrap();
        let y = t.suggest_float("y", 0.0, 1.0, false).unwrap();
        t.set_constraints(vec![x + y - 1.0]).unwrap();
        let num = t.number();
        study
            .tell(num, (x - 0.8).powi(2) + (y - 0.8).powi(2))
            .unwrap();
    }
    let trials = study.trials().unwrap();
    let late = &trials[n / 2..];
    let violation = late
        .iter()
        .map(|t| t.constraints.as_ref().unwrap()[0].max(0.0))
        .sum::<f64>()
        / late.len() as f64;
    let best = study.best_trial().unwrap().unwrap();
    assert!(best.is_feasible());
    (best.value().unwrap(), violation)
}

#[test]
fn constrained_gp_and_tpe_find_the_feasible_optimum() {
    let (best, late) = constrained(GpSampler::new(Seed(5)), 40);
    assert!(best < 0.18 + 2e-3, "gp best {best}");
    assert!(late < 0.02, "gp: late mean violation {late}");
    let (best, late) = constrained(TpeSampler::new(Seed(5)), 80);
    assert!(best < 0.18 + 2e-2, "tpe best {best}");
    assert!(late < 0.1, "tpe: late mean violation {late}");
    let (best, _) = constrained(RandomSampler::new(Seed(5)), 80);
    assert!(
        best > 0.18 + 2e-3,
        "random best {best}: the bounds above are not trivial"
    );
}

/// ZDT1 in 4 dimensions: Pareto front f2 = 1 − √f1 at x1.. = 0.
fn zdt1(study: &mut Study, n: usize) -> f64 {
    for _ in 0..n {
        let mut t = study.ask().unwrap();
        let x: Vec<f64> = (0..4)
            .map(|i| t.suggest_float(&format!("x{i}"), 0.0, 1.0, false).unwrap())
            .collect();
        let g = 1.0 + 9.0 * x[1..].iter().sum::<f64>() / 3.0;
        let f2 = g * (1.0 - (x[0] / g).sqrt());
        let num = t.number();
        study.tell(num, Outcome::Values(vec![x[0], f2])).unwrap();
    }
    hypervolume(&study.best_trials().unwrap(), [1.1, 1.1])
}

#[test]
fn optimize_runs_multi_objective_studies() {
    let mut study = Study::new(&[Direction::Minimize, Direction::Maximize], Seed(3));
    let report = study
        .optimize(12, |t| {
            let x = t.suggest_float("x", 0.0, 1.0, false)?;
            if t.number() == 5 {
                return Ok(vec![x]); // wrong number of values: this trial fails
            }
            Ok(vec![x, x * x])
        })
        .unwrap();
    assert_eq!((report.completed, report.failed), (11, 1));
    let trials = study.trials().unwrap();
    assert!(trials[5].user_attrs["fail_reason"]
        .as_str()
        .unwrap()
        .contains("expected 2 objective values"));
    // Minimising x while maximising x² is a trade-off: every complete trial is optimal.
    assert_eq!(study.best_trials().unwrap().len(), 11);
}

/// Hypervolume dominated by a 2-objective minimisation front, up to `r`.
fn hypervolume(front: &[FrozenTrial], r: [f64; 2]) -> f64 {
    let mut pts: Vec<[f64; 2]> = front
        .iter()
        .map(|t| {
            let v = t.values.as_ref().unwrap();
            [v[0], v[1]]
        })
        .filter(|p| p[0] < r[0] && p[1] < r[1])
        .collect();
    pts.sort_by(|a, b| a[0].total_cmp(&b[0]));
    let mut hv = 0.0;
    let mut prev_f2 = r[1];
    for p in pts {
        if p[1] < prev_f2 {
            hv += (r[0] - p[0]) * (prev_f2 - p[1]);
            prev_f2 = p[1];
        }
    }
    hv
}

#[test]
fn multi_objective_samplers_beat_random_on_zdt1() {
    let dirs = [Direction::Minimize, Direction::Minimize];
    // Mean hypervolume over 7 seeds (one seed's random search can be lucky).
    let mean = |make: &dyn Fn(u64) -> Study, n: usize| {
        (1..=7).map(|s| zdt1(&mut make(s), n)).sum::<f64>() / 7.0
    };
    let random = mean(&|s| Study::new(&dirs, Seed(s)), 200);
    let nsga = mean(
        &|s| Study::new(&dirs, Seed(s)).with_sampler(Nsga2Sampler::new(Seed(s))),
        200,
    );
    let tpe = mean(
        &|s| Study::new(&dirs, Seed(s)).with_sampler(TpeSampler::new(Seed(s))),
        200,
    );
    let gp = zdt1(
        &mut Study::new(&dirs, Seed(1)).with_sampler(GpSampler::new(Seed(1))),
        60,
    );
    // The true front's hypervolume up to (1.1, 1.1) is 1.1² − 1/3 ≈ 0.877.
    assert!(nsga > random + 0.02, "nsga {nsga} random {random}");
    assert!(tpe > random + 0.05, "tpe {tpe} random {random}");
    assert!(gp > random, "gp (60 trials) {gp} random (200) {random}");
    assert!(nsga < 0.877 && tpe < 0.877 && gp < 0.877);
    // Every front member is non-dominated.
    let mut s = Study::new(&dirs, Seed(2));
    zdt1(&mut s, 50);
    let front = s.best_trials().unwrap();
    for a in &front {
        for b in &front {
            let (va, vb) = (a.values.as_ref().unwrap(), b.values.as_ref().unwrap());
            assert!(!(va[0] <= vb[0] && va[1] <= vb[1] && va != vb));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn suggestions_stay_in_their_distributions(
        seed in 0u64..1000,
        low in -100.0f64..100.0,
        width in 0.0f64..50.0,
        step in 0.01f64..5.0,
        ilow in -50i64..50,
        iwidth in 0i64..100,
        istep in 1i64..7,
        kind in 0usize..6,
    ) {
        let dists = [
            Distribution::float(low, low + width),
            Distribution::float(low, low + width).step(step),
            Distribution::float(low.abs() + 1e-3, low.abs() + 1e-3 + width).log(),
            Distribution::int(ilow, ilow + iwidth).int_step(istep),
            Distribution::int(ilow.abs() + 1, ilow.abs() + 1 + iwidth).log(),
            Distribution::categorical(["a", "b", "c"]),
        ];
        let mut study = study_with(kind, seed);
        for i in 0..14 {
            let mut t = study.ask().unwrap();
            for (k, d) in dists.iter().enumerate() {
                let v = t.suggest(&format!("p{k}"), d.clone()).unwrap();
                let d = d.clone().validated("p").unwrap();
                prop_assert!(d.to_internal(&v).is_some(), "{v:?} not in {d:?}");
            }
            let n = t.number();
            study.tell(n, f64::from(i % 5)).unwrap();
        }
    }
}

// ---------------------------------------------------------------- journal

fn journal_study(path: &Path, seed: u64) -> Study {
    Study::minimize(Seed(seed)).with_storage(Storage::journal(path).unwrap())
}

/// Every sampler restarts its generator per trial from the seed and the trial
/// number: a study stopped after 12 trials and resumed in a new `Study` (a new
/// process) proposes the same 24 trials as one run straight through (random, QMC,
/// TPE, NSGA-II; the GP's kernel fit starts from the previous fit of the same
/// process, so it is left out).
#[test]
fn a_resumed_study_proposes_what_an_uninterrupted_one_would() {
    for kind in [0, 1, 2, 4] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("study.jsonl");
        let straight = run(&mut study_with(kind, 5), 24);
        let open = || study_with(kind, 5).with_storage(Storage::journal(&path).unwrap());
        let mut resumed = run(&mut open(), 12);
        resumed.extend(run(&mut open(), 12));
        assert_eq!(straight, resumed, "sampler {kind}");
    }
}

#[test]
fn journal_resumes_a_study() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.jsonl");
    let first = run(&mut journal_study(&path, 1), 10);
    let mut resumed = journal_study(&path, 1);
    let trials = resumed.trials().unwrap();
    assert_eq!(trials.len(), 10);
    for (t, p) in trials.iter().zip(&first) {
        assert_eq!(&t.params, p);
        assert_eq!(t.state, TrialState::Complete);
    }
    run(&mut resumed, 5);
    assert_eq!(resumed.trials().unwrap().len(), 15);
}

#[test]
fn study_attributes_are_journaled() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.jsonl");
    let mut s = journal_study(&path, 1);
    assert!(s.user_attrs().is_empty());
    s.set_user_attr("workers", serde_json::json!(3)).unwrap();
    run(&mut s, 2);
    s.set_user_attr("workers", serde_json::json!(4)).unwrap();
    let again = journal_study(&path, 1);
    assert_eq!(again.user_attrs()["workers"], serde_json::json!(4));
    assert_eq!(again.storage().study_user_attrs().len(), 1);
}

#[test]
fn a_damaged_journal_is_read_as_far_as_it_goes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.jsonl");
    run(&mut journal_study(&path, 1), 4);
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    // A torn tail: everything before it is read, nothing is written.
    std::fs::write(&path, format!("{}\n{{\"op\":\"cre", lines.join("\n"))).unwrap();
    let before = std::fs::read(&path).unwrap();
    let s = Storage::read_lenient(&path).unwrap();
    assert_eq!(s.trials().len(), 4);
    assert!(
        s.warnings()[0].contains(&format!(
            "study.jsonl:{}: a torn last line",
            lines.len() + 1
        )),
        "{:?}",
        s.warnings()
    );
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // A bad line in the middle: read up to it, and say what was left out.
    let mut bad = lines.clone();
    bad[5] = "not json";
    std::fs::write(&path, bad.join("\n") + "\n").unwrap();
    let s = Storage::read_lenient(&path).unwrap();
    let w = &s.warnings()[0];
    assert!(
        w.contains("study.jsonl:6:")
            && w.contains(&format!("the {} after it are left out", lines.len() - 6)),
        "{w}"
    );
    assert!(Storage::read_lenient(&dir.path().join("none.jsonl")).is_err());
    assert!(!dir.path().join("none.jsonl").exists());
}

#[test]
fn torn_last_line_is_skipped_then_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.jsonl");
    run(&mut journal_study(&path, 1), 3);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&path)
        .unwrap();
    std::io::Write::write_all(&mut f, b"{\"op\":\"create\",\"num").unwrap();
    drop(f);
    let mut s = journal_study(&path, 1);
    assert_eq!(s.trials().unwrap().len(), 3);
    assert!(
        s.storage().warnings()[0].contains("torn last line"),
        "{:?}",
        s.storage().warnings()
    );
    run(&mut s, 2);
    let mut again = journal_study(&path, 1);
    assert_eq!(again.trials().unwrap().len(), 5);
    assert!(again.storage().warnings().is_empty());
}

#[test]
fn corrupt_journal_line_names_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.jsonl");
    run(&mut journal_study(&path, 1), 2);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines[1] = "{\"op\":\"param\",\"number\":\"x\"}";
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let e = Storage::journal(&path).unwrap_err().to_string();
    assert!(e.contains("study.jsonl:2: invalid journal record"), "{e}");
}

/// Entry point for the child processes of the tests below (it does nothing unless
/// `AUTOGLM_TUNE_CHILD` is set, which only those tests do).
#[test]
fn child_process_entry_point() {
    let Ok(path) = std::env::var("AUTOGLM_TUNE_CHILD") else {
        return;
    };
    let trials: usize = std::env::var("AUTOGLM_TUNE_TRIALS")
        .unwrap()
        .parse()
        .unwrap();
    let seed: u64 = std::env::var("AUTOGLM_TUNE_SEED").unwrap().parse().unwrap();
    let mut study = journal_study(Path::new(&path), seed);
    for _ in 0..trials {
        let (n, p) = study.ask_space(&space()).unwrap();
        study.tell(n, objective(&p)).unwrap();
    }
}

fn child(path: &Path, trials: usize, seed: u64) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.args([
        "--exact",
        "child_process_entry_point",
        "--test-threads",
        "1",
    ])
    .env("AUTOGLM_TUNE_CHILD", path)
    .env("AUTOGLM_TUNE_TRIALS", trials.to_string())
    .env("AUTOGLM_TUNE_SEED", seed.to_string())
    .stdout(std::process::Stdio::null());
    c
}

#[test]
fn sigkill_mid_study_loses_no_completed_trial() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.jsonl");
    for round in 0..10u64 {
        let before = std::fs::read_to_string(&path).map(|t| t.len()).unwrap_or(0);
        let mut c = child(&path, 1_000_000, round).spawn().unwrap();
        // Let it write for a while, then SIGKILL it wherever it is.
        let t0 = std::time::Instant::now();
        while std::fs::metadata(&path)
            .map(|m| m.len() as usize)
            .unwrap_or(0)
            < before + 20_000 + round as usize * 7_919
        {
            assert!(t0.elapsed().as_secs() < 60, "child wrote too little");
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        c.kill().unwrap(); // SIGKILL on Unix
        c.wait().unwrap();
        let text = std::fs::read(&path).unwrap();
        let finishes = text
            .split(|&b| b == b'\n')
            .filter(|l| l.starts_with(b"{\"op\":\"finish\""))
            .count();
        let mut s = journal_study(&path, 9);
        let trials = s.trials().unwrap();
        let complete = trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .count();
        assert_eq!(complete, finishes, "round {round}");
        for t in trials.iter().filter(|t| t.state == TrialState::Complete) {
            assert_eq!(t.value().unwrap(), objective(&t.params));
        }
        // The study goes on in the same file.
        run(&mut s, 3);
    }
}

#[test]
fn two_processes_share_one_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("study.jsonl");
    let mut a = child(&path, 60, 1).spawn().unwrap();
    let mut b = child(&path, 60, 2).spawn().unwrap();
    assert!(a.wait().unwrap().success());
    assert!(b.wait().unwrap().success());
    let trials = journal_study(&path, 0).trials().unwrap();
    assert_eq!(trials.len(), 120);
    for (i, t) in trials.iter().enumerate() {
        assert_eq!(t.number, i as u64);
        assert_eq!(t.state, TrialState::Complete);
        assert_eq!(t.value().unwrap(), objective(&t.params));
    }
}

#[test]
fn fuzz_checks_accept_samples() {
    autoglm_tune::fuzz::check_space_json(space_json().as_bytes());
    autoglm_tune::fuzz::check_space_json(b"{\"params\": [{\"name\": 1}]}");
    autoglm_tune::fuzz::check_journal(
        b"{\"op\":\"create\",\"number\":0,\"state\":\"running\",\"params\":{}}\n{\"op\":",
    );
    autoglm_tune::fuzz::check_journal(b"\xff\xfe\n");
    autoglm_tune::fuzz::check_optuna_journal(
        b"{\"op_code\":0,\"worker_id\":\"w\",\"study_name\":\"s\",\"directions\":[1]}\n\
          {\"op_code\":4,\"worker_id\":\"w\",\"study_id\":0,\"datetime_start\":null,\"value\":NaN}\n\
          {\"op_code\":7,\"worker_id\":\"w\",\"trial_id\":0,\"step\":1,\"intermediate_value\":-Infinity}\n\
          [1e999, \"\\ud83d\", {\"a\":1,\"a\":2}]\n{\"op_code\":",
    );
}

fn space_json() -> String {
    serde_json::to_string(&space()).unwrap()
}

// ---------------------------------------------------------------- no point twice

/// The points of the trials in `states`, as text.
fn points(study: &mut Study, states: &[TrialState]) -> Vec<String> {
    study
        .trials()
        .unwrap()
        .iter()
        .filter(|t| states.contains(&t.state))
        .map(|t| serde_json::to_string(&t.params).unwrap())
        .collect()
}

fn distinct(mut v: Vec<String>) -> usize {
    v.sort();
    v.dedup();
    v.len()
}

const SEEN: [TrialState; 3] = [
    TrialState::Complete,
    TrialState::Pruned,
    TrialState::Running,
];

#[test]
fn a_finite_space_gives_each_point_once_then_is_exhausted() {
    for kind in 0..6 {
        for seed in 0..3 {
            // 3 × 2 choices, define-by-run, some trials pruned (pruned points are seen).
            let mut study = study_with(kind, seed);
            let report = study
                .optimize(20, |t| {
                    let a = t.suggest_categorical("a", ["p", "q", "r"])?;
                    let b = t.suggest_categorical("b", [true, false])?;
                    if a == "q".into() && b == true.into() {
                        return Err(TrialError::Pruned);
                    }
                    Ok(t.number() as f64)
                })
                .unwrap();
            assert_eq!(report.stop_reason, StopReason::SpaceExhausted, "{kind}");
            assert_eq!((report.completed, report.pruned), (5, 1), "sampler {kind}");
            assert_eq!(distinct(points(&mut study, &SEEN)), 6, "sampler {kind}");
            let e = study.ask().map(|t| t.number()).unwrap_err();
            assert!(
                matches!(e, Error::SpaceExhausted { points: 6 }),
                "sampler {kind}: {e}"
            );
            // 10 × 3 with an integer and a stepped float: the models (after their 10
            // random trials) propose jointly; the GP's proposals are deterministic.
            let mut study = study_with(kind, seed);
            let report = study
                .optimize(40, |t| {
                    let k = t.suggest_int("k", 0, 9, false)?;
                    let x = t.suggest("x", Distribution::float(0.0, 1.0).step(0.5))?;
                    Ok((k as f64 - 9.0).abs() + x.as_f64().unwrap())
                })
                .unwrap();
            assert_eq!(report.stop_reason, StopReason::SpaceExhausted, "{kind}");
            assert_eq!(report.completed, 30, "sampler {kind}");
            assert_eq!(distinct(points(&mut study, &SEEN)), 30, "sampler {kind}");
        }
    }
}

#[test]
fn ask_space_covers_a_conditional_space_once() {
    // sgd × momentum (2) × k (2) + adam × k (2) = 6 points.
    let sp = SearchSpace::default()
        .with("opt", Distribution::categorical(["sgd", "adam"]))
        .unwrap()
        .with_conditional(
            "momentum",
            Distribution::categorical([0.0, 0.9]),
            "opt",
            ["sgd"],
        )
        .unwrap()
        .with("k", Distribution::int(1, 2))
        .unwrap();
    for kind in 0..6 {
        let mut study = study_with(kind, 5);
        let mut n = 0;
        loop {
            match study.ask_space(&sp) {
                Ok((num, p)) => {
                    study.tell(num, p["k"].as_f64().unwrap()).unwrap();
                    n += 1;
                }
                Err(Error::SpaceExhausted { points }) => {
                    assert_eq!(points, 6, "sampler {kind}");
                    break;
                }
                Err(e) => panic!("{e}"),
            }
            assert!(n <= 6, "sampler {kind}: a point came twice");
        }
        assert_eq!(n, 6, "sampler {kind}");
        assert_eq!(distinct(points(&mut study, &SEEN)), 6, "sampler {kind}");
    }
}

#[test]
fn models_converging_to_a_bound_never_repeat_a_point() {
    for name in ["tpe", "gp", "auto", "nsga2"] {
        let study = Study::minimize(Seed(2));
        let mut study = match name {
            "tpe" => study.with_sampler(TpeSampler::new(Seed(2))),
            "gp" => study.with_sampler(GpSampler::new(Seed(2))),
            "auto" => study.with_sampler(AutoSampler::new(Seed(2), Some(60))),
            _ => study_with(4, 2),
        };
        // The optimum is the bound x = 1 (with k = 0; k makes the space mixed).
        study
            .optimize(60, |t| {
                let x = t.suggest_float("x", 0.0, 1.0, false)?;
                let k = t.suggest_int("k", 0, 3, false)?;
                Ok(-x + 0.01 * k as f64)
            })
            .unwrap();
        let p = points(&mut study, &SEEN);
        assert_eq!(p.len(), 60);
        assert_eq!(distinct(p), 60, "{name} repeated a point");
        // The models do converge to the bound (where they would repeat themselves).
        let best = study.best_trial().unwrap().unwrap();
        let x = best.params["x"].as_f64().unwrap();
        assert!(name == "nsga2" || x > 0.99, "{name}: {best:?}");
    }
}

/// Proposes the same point every time: all parameters at their upper bound.
struct AtTheTop;

impl Sampler for AtTheTop {
    fn sample_relative(
        &mut self,
        _ctx: &SamplerContext<'_>,
        space: &BTreeMap<String, Distribution>,
    ) -> BTreeMap<String, f64> {
        space
            .iter()
            .map(|(k, d)| (k.clone(), d.from_unit(1.0)))
            .collect()
    }

    fn sample_independent(&mut self, _: &SamplerContext<'_>, _: &str, d: &Distribution) -> f64 {
        d.from_unit(1.0)
    }
}

#[test]
fn a_deterministic_sampler_is_moved_one_step_at_a_time() {
    let mut study = Study::minimize(Seed(0)).with_sampler(AtTheTop);
    let mut seq = Vec::new();
    let report = study
        .optimize(50, |t| {
            let a = t.suggest_int("a", 0, 10, false)?;
            let b = t.suggest_categorical("b", ["u", "v", "w"])?;
            seq.push((a, b.as_str().unwrap().to_owned()));
            Ok(0.0)
        })
        .unwrap();
    let first: Vec<(i64, &str)> = seq[..5].iter().map(|(a, b)| (*a, b.as_str())).collect();
    // One parameter changes at a time, by the smallest step on the unit scale (a's
    // steps are 1/11, b's 1/3).
    assert_eq!(first, [(10, "w"), (9, "w"), (8, "w"), (7, "w"), (10, "v")]);
    assert_eq!(report.stop_reason, StopReason::SpaceExhausted);
    assert_eq!(report.completed, 33);
    // A continuous parameter at its bound moves inwards by at most 1 % of its range.
    let mut study = Study::minimize(Seed(0)).with_sampler(AtTheTop);
    study
        .optimize(20, |t| Ok(t.suggest_float("x", 0.0, 2.0, false)?))
        .unwrap();
    let p = points(&mut study, &SEEN);
    assert_eq!(distinct(p), 20);
    for t in study.trials().unwrap() {
        let x = t.params["x"].as_f64().unwrap();
        assert!((1.98..=2.0).contains(&x), "{x}");
    }
}

#[test]
fn enqueued_points_run_and_failed_points_come_again() {
    let ab = |t: &mut autoglm_tune::Trial<'_>| t.suggest_categorical("x", ["a", "b"]);
    let mut study = Study::minimize(Seed(1));
    // Running trials are seen: two pending trials take both points.
    let n0 = {
        let mut t = study.ask().unwrap();
        ab(&mut t).unwrap();
        t.number()
    };
    let n1 = {
        let mut t = study.ask().unwrap();
        ab(&mut t).unwrap();
        t.number()
    };
    assert_eq!(distinct(points(&mut study, &[TrialState::Running])), 2);
    assert!(matches!(
        study.ask().map(|t| t.number()),
        Err(Error::SpaceExhausted { points: 2 })
    ));
    // A failed trial's point is free again.
    study.tell(n0, Outcome::Failed).unwrap();
    study.tell(n1, 1.0).unwrap();
    let failed = study.trials().unwrap()[n0 as usize].params["x"].clone();
    let mut t = study.ask().unwrap();
    assert_eq!(ab(&mut t).unwrap(), failed);
    let n = t.number();
    study.tell(n, 2.0).unwrap();
    assert!(study.ask().is_err());
    // An enqueued point runs even though it is seen, and does not stop the study.
    let mut fixed = Params::new();
    fixed.insert("x".into(), failed.clone());
    study.enqueue(fixed).unwrap();
    let mut t = study.ask().unwrap();
    assert_eq!(ab(&mut t).unwrap(), failed);
    let n = t.number();
    study.tell(n, 3.0).unwrap();
    assert_eq!(points(&mut study, &[TrialState::Complete]).len(), 3);
    let e = study.ask().map(|t| t.number()).unwrap_err();
    assert_eq!(
        e.to_string(),
        "the search space is exhausted: all 2 of its points were evaluated or are running"
    );
    let report = study
        .optimize(5, |t| {
            ab(t)?;
            Ok(0.0)
        })
        .unwrap();
    assert_eq!(report.stop_reason, StopReason::SpaceExhausted);
    assert_eq!(report.completed, 0);
}

#[test]
fn a_study_without_parameters_is_never_exhausted() {
    let mut study = Study::minimize(Seed(0));
    let report = study.optimize(3, |t| Ok(t.number() as f64)).unwrap();
    assert_eq!(
        (report.stop_reason, report.completed),
        (StopReason::TrialBudget, 3)
    );
}
