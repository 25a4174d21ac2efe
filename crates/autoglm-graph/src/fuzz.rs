//! Entry points for the fuzz targets in `fuzz/` (hidden from the docs; they live here
//! so that ordinary builds type-check them).
#![doc(hidden)]

use crate::Graph;

/// Reading arbitrary bytes as graph JSON never panics; a graph that reads verifies,
/// exports to DOT, and round-trips through JSON unchanged.
pub fn check_graph_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(g) = Graph::from_json(text) {
        g.verify().expect("graphs built by from_json verify");
        let _ = g.to_dot();
        let json = g.to_json();
        let again = Graph::from_json(&json).expect("round trip");
        assert_eq!(again.to_json(), json);
    }
}
