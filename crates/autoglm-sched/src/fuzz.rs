//! Entry points for the fuzz targets in `fuzz/` (hidden from the docs).
#![doc(hidden)]

use crate::{cpop, heft, validate, Dag, Gcn, Platform, RuntimeModel, Schedule};

const PLATFORM: &str = r#"{"format":"autoglm-platform","version":1,"name":"f","workers":[{"id":0,"speed":1},{"id":1,"speed":2},{"id":2,"speed":0.5}],"bandwidth":1e3,"latency":0.01}"#;

const DAG: &str = r#"{"format":"autoglm-dag","version":1,"name":"d","tasks":[{"id":0,"cost":1},{"id":1,"cost":2},{"id":2,"cost":1}],"edges":[{"src":0,"dst":1,"data":10},{"src":0,"dst":2,"data":0}]}"#;

/// Arbitrary bytes read as every outside document of the crate never panic: a DAG
/// that reads is scheduled by HEFT and CPOP into valid schedules and round-trips
/// through JSON; a schedule that reads is validated (errors, not panics) against a
/// fixed DAG and platform and round-trips; a GCN model that reads schedules a DAG;
/// runtime observations (JSON lines) that read fill in costs.
pub fn check_readers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let p = Platform::from_json(PLATFORM).expect("fixed platform");
    let small = Dag::from_json(DAG).expect("fixed DAG");
    if let Ok(q) = Platform::from_json(text) {
        assert!(validate(&small, &q, &heft(&small, &q)).0.is_empty());
    }
    if let Ok(s) = Schedule::from_json(text) {
        let _ = validate(&small, &p, &s);
        let again = Schedule::from_json(&s.to_json()).expect("written schedules read back");
        assert_eq!(again.assignments.len(), s.assignments.len());
    }
    if let Ok(g) = Gcn::from_json(text) {
        let s = g.schedule(&small, &p, true);
        assert!(validate(&small, &p, &s).0.is_empty());
    }
    let mut runtimes = RuntimeModel::new(&p);
    if runtimes.observe_jsonl(text).is_ok() {
        let mut d = small.clone();
        let _ = runtimes.fill_costs(&mut d);
    }
    if let Ok(dag) = Dag::from_json(text) {
        if dag.len() > 2000 {
            return;
        }
        // (Compared as written text: a task without a cost holds NaN.)
        let written = dag.to_json();
        let again = Dag::from_json(&written).expect("written DAGs read back");
        assert_eq!(again.to_json(), written);
        assert_eq!(again.edges.len(), dag.edges.len());
        let mut dag = dag;
        if dag.missing_costs() > 0 {
            // As `autoglm schedule --history` does: costs from observed runs.
            let mut runtimes = RuntimeModel::new(&p);
            runtimes
                .observe(&crate::Observation {
                    kind: "x".into(),
                    worker: 0,
                    duration: 1.0,
                })
                .expect("a valid observation");
            runtimes
                .fill_costs(&mut dag)
                .expect("something was observed");
        }
        if p.check_horizon(&dag).is_err() {
            // Out of range for f64 times (the CLI refuses it with this error).
            return;
        }
        for s in [heft(&dag, &p), cpop(&dag, &p)] {
            let (errs, _) = validate(&dag, &p, &s);
            assert!(errs.is_empty(), "{errs:?}");
        }
    }
}
