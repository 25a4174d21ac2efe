//! HEFT and CPOP against the shared Python anchors: every shared DAG × platform, the
//! makespan equal to `shared/bench/sched/results.json` within 1e-9 relative, and every
//! schedule valid. Skips (visibly) without `../shared`, except under CI.

use std::path::{Path, PathBuf};

use autoglm_sched::{cpop, heft, validate, Dag, Platform};

fn shared() -> Option<PathBuf> {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared");
    if p.join("data/dags").is_dir() {
        Some(p)
    } else if std::env::var_os("CI").is_some() {
        panic!("../shared is missing under CI");
    } else {
        eprintln!("SKIPPED: ../shared/data/dags not found");
        None
    }
}

/// The shared platforms, by name.
fn platforms(root: &Path) -> Vec<Platform> {
    let mut v: Vec<Platform> = std::fs::read_dir(root.join("data/dags/platforms"))
        .unwrap()
        .map(|e| Platform::from_json(&std::fs::read_to_string(e.unwrap().path()).unwrap()).unwrap())
        .collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// The shared DAGs of one set, by file name.
fn dags(root: &Path, set: &str) -> Vec<Dag> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root.join("data/dags").join(set))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
        .iter()
        .map(|f| Dag::from_json(&std::fs::read_to_string(f).unwrap()).unwrap())
        .collect()
}

#[test]
fn heft_and_cpop_match_the_python_anchors() {
    let Some(root) = shared() else { return };
    let results: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("bench/sched/results.json")).unwrap(),
    )
    .unwrap();
    let platforms = platforms(&root);
    let mut checked = 0;
    let mut worst = 0.0f64;
    for set in ["wfcommons", "random"] {
        for dag in dags(&root, set) {
            for p in &platforms {
                for (name, s) in [("HEFT", heft(&dag, p)), ("CPOP", cpop(&dag, p))] {
                    let (errs, m) = validate(&dag, p, &s);
                    assert!(
                        errs.is_empty(),
                        "{} on {} by {name}: {:?}",
                        dag.name,
                        p.name,
                        &errs[..errs.len().min(3)]
                    );
                    let row = results["rows"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .find(|r| {
                            r["dag"] == dag.name.as_str()
                                && r["platform"] == p.name.as_str()
                                && r["scheduler"] == name
                        })
                        .unwrap_or_else(|| {
                            panic!("no baseline for {} {} {name}", dag.name, p.name)
                        });
                    let want = row["makespan"].as_f64().unwrap();
                    let rel = (m.makespan - want).abs() / want.abs().max(1e-300);
                    worst = worst.max(rel);
                    assert!(
                        rel <= 1e-9,
                        "{} on {} by {name}: {} vs Python {want} (rel {rel:e})",
                        dag.name,
                        p.name,
                        m.makespan
                    );
                    let lb = row["lb"].as_f64().unwrap();
                    assert!(
                        (m.lb - lb).abs() <= 1e-9 * lb.abs(),
                        "{}: lb {} vs {lb}",
                        dag.name,
                        m.lb
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, (31 + 24) * 3 * 2);
    eprintln!("{checked} schedules match the Python anchors; worst relative difference {worst:e}");
}

#[test]
fn malformed_inputs_are_named() {
    let dag = |tasks: &str, edges: &str| {
        Dag::from_json(&format!(
            r#"{{"format":"autoglm-dag","version":1,"name":"t","tasks":{tasks},"edges":{edges}}}"#
        ))
        .unwrap_err()
        .to_string()
    };
    let two = r#"[{"id":0,"cost":1},{"id":1,"cost":1}]"#;
    for (e, want) in [
        (
            dag(r#"[{"id":0,"cost":1},{"id":2,"cost":1}]"#, "[]"),
            "task id 2 is not in 0..2",
        ),
        (dag(r#"[{"id":0,"cost":-1}]"#, "[]"), "task 0: cost -1"),
        (
            dag(two, r#"[{"src":0,"dst":1},{"src":1,"dst":0}]"#),
            "cycle",
        ),
        (dag(two, r#"[{"src":0,"dst":0}]"#), "edge 0->0: self loop"),
        (
            dag(two, r#"[{"src":0,"dst":1},{"src":0,"dst":1}]"#),
            "edge 0->1: duplicate",
        ),
        (
            dag(two, r#"[{"src":0,"dst":5}]"#),
            "edge 0->5: unknown task",
        ),
        (
            dag(two, r#"[{"src":0,"dst":1,"data":-3}]"#),
            "edge 0->1: data -3",
        ),
    ] {
        assert!(e.contains(want), "{e}");
        assert!(e.starts_with("DAG 't'"), "{e}");
    }
    let e = Platform::from_json(r#"{"format":"autoglm-platform","version":1,"name":"p","workers":[{"id":0,"speed":0}],"bandwidth":1}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("worker 0: speed 0"), "{e}");
    let e = Platform::from_json(r#"{"format":"autoglm-platform","version":1,"name":"p","workers":[{"id":0,"speed":1},{"id":1,"speed":1}],"bandwidth":[[1,1]]}"#)
        .unwrap_err()
        .to_string();
    assert!(e.contains("2×2 matrix"), "{e}");
    assert!(Dag::from_json("{")
        .unwrap_err()
        .to_string()
        .contains("line 1"));
}

#[test]
fn the_fuzz_check_accepts_a_real_dag() {
    let dag = r#"{"format":"autoglm-dag","version":1,"name":"d","tasks":[{"id":0,"cost":1},{"id":1,"cost":0},{"id":2,"cost":3}],"edges":[{"src":0,"dst":2,"data":5000},{"src":1,"dst":2}]}"#;
    autoglm_sched::fuzz::check_readers(dag.as_bytes());
    autoglm_sched::fuzz::check_readers(b"{\"format\":\"autoglm-dag\"");
    // Found by cargo-fuzz: a task without a cost (NaN inside) broke the round-trip check.
    let costless = r#"{"format":"autoglm-dag","version":1,"name":"d","tasks":[{"id":0,"cost":1},{"id":1}],"edges":[{"src":0,"dst":1,"data":5}]}"#;
    autoglm_sched::fuzz::check_readers(costless.as_bytes());
    // Found by cargo-fuzz: a cost of 4e68 next to 18-second tasks made start times so
    // large that finish − start rounded to 0; such DAGs are refused by their horizon.
    let huge = r#"{"format":"autoglm-dag","version":1,"name":"d","tasks":[{"id":0,"cost":4.4e68},{"id":1,"cost":18}],"edges":[{"src":0,"dst":1,"data":5}]}"#;
    autoglm_sched::fuzz::check_readers(huge.as_bytes());
    let dag = Dag::from_json(huge).unwrap();
    let p = Platform::from_json(r#"{"format":"autoglm-platform","version":1,"name":"one","workers":[{"id":0,"speed":1}],"bandwidth":1e6,"latency":0}"#).unwrap();
    let e = p.check_horizon(&dag).unwrap_err().to_string();
    assert!(e.contains("4.400e68 s") && e.contains("units"), "{e}");
}

#[test]
fn the_simulator_replays_heft_exactly_and_failures_cost_time() {
    use autoglm_sched::{expected_makespan_under_failures, simulate, SimConfig};
    let Some(root) = shared() else { return };
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let dag = Dag::from_json(&read("data/dags/random/rand-layered-n300-ccr1.json")).unwrap();
    for plat in ["P1-homo4", "P2-het8", "P3-het16-slow"] {
        let p = Platform::from_json(&read(&format!("data/dags/platforms/{plat}.json"))).unwrap();
        let s = heft(&dag, &p);
        // Without noise or failures the simulation is the plan.
        let r = simulate(&dag, &p, &s, &SimConfig::default());
        assert!(
            (r.makespan - s.makespan()).abs() <= 1e-9 * s.makespan(),
            "{plat}: {} vs {}",
            r.makespan,
            s.makespan()
        );
        assert_eq!((r.lost_copies, r.reruns), (0, 0));
        // Noise with mean 1 moves the makespan but keeps every task done.
        let r = simulate(
            &dag,
            &p,
            &s,
            &SimConfig {
                noise_sigma: 0.3,
                seed: 7,
                ..SimConfig::default()
            },
        );
        assert!(r.makespan.is_finite() && r.finish.iter().all(|f| f.is_finite()));
        // Failures cost time (lost work is re-run on the survivors).
        let f1 = expected_makespan_under_failures(&dag, &p, &s, 1, 20, 1);
        let f2 = expected_makespan_under_failures(&dag, &p, &s, 2, 20, 1);
        assert!(
            f1 > s.makespan() && f2 > s.makespan(),
            "{plat}: {} {f1} {f2}",
            s.makespan()
        );
    }
}

#[test]
fn replicas_fit_in_gaps_within_the_budget() {
    use autoglm_sched::replicate;
    let Some(root) = shared() else { return };
    let read = |p: &str| std::fs::read_to_string(root.join(p)).unwrap();
    let p = Platform::from_json(&read("data/dags/platforms/P3-het16-slow.json")).unwrap();
    for f in [
        "random/rand-fanio-n300-ccr1.json",
        "wfcommons/wfc-montage-chameleon-2mass-005d-001.json",
    ] {
        let dag = Dag::from_json(&read(&format!("data/dags/{f}"))).unwrap();
        let s = heft(&dag, &p);
        let r = replicate(&dag, &p, &s, 0.2);
        assert!(
            r.replicas > 0 && r.extra_work <= 0.2 + 1e-12,
            "{f}: {} {}",
            r.replicas,
            r.extra_work
        );
        let (errs, m) = validate(&dag, &p, &r.schedule);
        assert!(errs.is_empty(), "{f}: {:?}", &errs[..errs.len().min(3)]);
        assert_eq!(m.makespan, s.makespan());
        assert_eq!(m.duplicates, r.replicas);
        // Without failures the replicas delay nothing (cancelling those whose original
        // has already delivered its output can only let later work start sooner).
        let plain = autoglm_sched::simulate(&dag, &p, &r.schedule, &Default::default());
        assert!(
            plain.makespan <= s.makespan() * (1.0 + 1e-9),
            "{f}: {} vs {}",
            plain.makespan,
            s.makespan()
        );
        assert!(plain.cancelled > 0 && plain.cancelled <= r.replicas, "{f}");
        // Chosen by simulation: only replicas that help on the sampled failures.
        let r = autoglm_sched::replicate_simulated(&dag, &p, &s, 0.2, 8, 10, 3);
        assert!(r.replicas <= 10);
        let (errs, m) = validate(&dag, &p, &r.schedule);
        assert!(errs.is_empty() && m.makespan == s.makespan());
    }
}

#[test]
fn heft_with_duplication_is_valid_everywhere() {
    use autoglm_sched::heft_dup;
    let Some(root) = shared() else { return };
    for p in &platforms(&root) {
        let (mut logsum, mut n, mut better, mut worse) = (0.0f64, 0, 0, 0);
        for set in ["random", "wfcommons"] {
            for dag in dags(&root, set) {
                let (h, d) = (heft(&dag, p), heft_dup(&dag, p));
                let (errs, m) = validate(&dag, p, &d);
                assert!(
                    errs.is_empty(),
                    "{} on {}: {:?}",
                    dag.name,
                    p.name,
                    &errs[..errs.len().min(3)]
                );
                let r = m.makespan / h.makespan();
                logsum += r.ln();
                n += 1;
                better += usize::from(r < 0.999);
                worse += usize::from(r > 1.001);
            }
        }
        eprintln!(
            "{}: HEFT+dup / HEFT geometric mean {:.4}, better on {better}, worse on {worse} of {n}",
            p.name,
            (logsum / n as f64).exp()
        );
    }
}

#[test]
fn runtime_model_learns_costs_and_fills_missing_ones() {
    use autoglm_sched::{Observation, RuntimeModel};
    let p = Platform::from_json(r#"{"format":"autoglm-platform","version":1,"name":"p","workers":[{"id":0,"speed":1},{"id":1,"speed":4}],"bandwidth":1e9}"#).unwrap();
    let mut m = RuntimeModel::new(&p);
    // "fft" costs 8 reference seconds: 8 s on the slow worker, 2 s on the fast one.
    for (w, d) in [(0, 7.5), (0, 8.5), (1, 2.0), (1, 2.0)] {
        m.observe(&Observation {
            kind: "fft".into(),
            worker: w,
            duration: d,
        })
        .unwrap();
    }
    assert_eq!(m.cost("fft"), Some(8.0));
    assert_eq!(m.predict("fft", 1), Some(2.0)); // from the type's cost (2 local runs < 3)
    m.observe(&Observation {
        kind: "fft".into(),
        worker: 1,
        duration: 2.6,
    })
    .unwrap();
    assert!((m.predict("fft", 1).unwrap() - 2.2).abs() < 1e-12); // now its own mean
    assert!(m
        .observe(&Observation {
            kind: "x".into(),
            worker: 5,
            duration: 1.0
        })
        .is_err());
    let n = m.observe_jsonl("{\"type\":\"io\",\"worker\":0,\"duration\":1.5}\n\n{\"type\":\"io\",\"worker\":1,\"duration\":0.5}\n").unwrap();
    assert_eq!(n, 2);
    assert_eq!(m.cost("io"), Some(1.75));
    let e = m
        .observe_jsonl("{\"type\":\"io\"}\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("line 1"), "{e}");
    let mut dag = Dag::from_json(r#"{"format":"autoglm-dag","version":1,"name":"d","tasks":[{"id":0,"type":"fft"},{"id":1,"cost":3,"type":"io"},{"id":2,"type":"io"}],"edges":[{"src":0,"dst":2}]}"#).unwrap();
    assert_eq!(dag.missing_costs(), 2);
    assert_eq!(m.fill_costs(&mut dag).unwrap(), 2);
    assert_eq!(
        (dag.cost(0), dag.cost(1), dag.cost(2)),
        (m.cost("fft").unwrap(), 3.0, 1.75)
    );
    let (errs, _) = validate(&dag, &p, &heft(&dag, &p));
    assert!(errs.is_empty());
}
