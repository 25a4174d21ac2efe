//! Entry points for the fuzz targets in `fuzz/` (hidden from the docs).
#![doc(hidden)]

use crate::{cpop, heft, validate, Dag, Platform};

const PLATFORM: &str = r#"{"format":"autoglm-platform","version":1,"name":"f","workers":[{"id":0,"speed":1},{"id":1,"speed":2},{"id":2,"speed":0.5}],"bandwidth":1e3,"latency":0.01}"#;

/// Arbitrary bytes as a DAG (then as a platform) never panic; a DAG that reads is
/// scheduled by HEFT and CPOP into valid schedules and round-trips through JSON.
pub fn check_readers(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Platform::from_json(text);
    if let Ok(dag) = Dag::from_json(text) {
        if dag.len() > 2000 {
            return;
        }
        let again = Dag::from_json(&dag.to_json()).expect("written DAGs read back");
        assert_eq!(again.tasks, dag.tasks);
        assert_eq!(again.edges, dag.edges);
        let p = Platform::from_json(PLATFORM).expect("fixed platform");
        for s in [heft(&dag, &p), cpop(&dag, &p)] {
            let (errs, _) = validate(&dag, &p, &s);
            assert!(errs.is_empty(), "{errs:?}");
        }
    }
}
