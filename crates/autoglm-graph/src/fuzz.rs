//! Entry points for the fuzz targets in `fuzz/` (hidden from the docs; they live here
//! so that ordinary builds type-check them).
#![doc(hidden)]

use crate::{apply_rules, builtin_rules, AnyKernel, Error, Graph, Rule};

/// Reading arbitrary bytes as graph JSON never panics; a graph that reads verifies,
/// exports to DOT, round-trips through JSON unchanged, and stays valid under the
/// built-in rules.
pub fn check_graph_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(g) = Graph::from_json(text) {
        check_graph(g, &builtin_rules());
    }
}

fn check_graph(g: Graph, rules: &[Rule]) {
    g.verify().expect("graphs built by from_json verify");
    let _ = g.to_dot();
    let json = g.to_json();
    let again = Graph::from_json(&json).expect("round trip");
    assert_eq!(again.to_json(), json);
    let mut h = g;
    apply_rules(&mut h, rules, &AnyKernel, 8).expect("acyclic graphs rewrite");
    h.verify().expect("rewriting keeps a graph valid");
    Graph::from_json(&h.to_json()).expect("rewritten graphs round-trip");
}

/// Rule text, then a line `---`, then graph JSON: the rules parse or fail with an error
/// naming the line; parsed rules print back to text that parses to the same rule; the
/// graph, if it reads, stays valid under them.
pub fn check_rules_and_graph(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (rules_text, graph_text) = text.split_once("\n---\n").unwrap_or((text, ""));
    let rules = match Rule::parse_set(rules_text) {
        Ok(r) => r,
        Err(Error::Rule(m)) => {
            assert!(m.starts_with("line "), "rule errors name the line: {m}");
            return;
        }
        Err(e) => panic!("rule text gave a non-rule error: {e}"),
    };
    for r in &rules {
        let printed = r.to_string();
        let again = Rule::parse(&printed).expect("printed rules parse");
        assert_eq!(again.to_string(), printed);
    }
    if let Ok(g) = Graph::from_json(graph_text) {
        check_graph(g, &rules);
    }
}
