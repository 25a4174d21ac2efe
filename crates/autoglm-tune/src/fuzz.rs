//! Entry points for the fuzz targets in `fuzz/` (hidden from the docs; they live here
//! so that ordinary builds type-check them).
#![doc(hidden)]

use crate::{SearchSpace, Seed, Storage, Study};

/// Parsing a search space from arbitrary bytes never panics; a parsed space
/// round-trips through JSON and can be sampled.
pub fn check_space_json(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(space) = SearchSpace::from_json(text) {
        let again = serde_json::to_string(&space).expect("spaces serialize");
        assert_eq!(SearchSpace::from_json(&again).expect("round trip"), space);
        sample_a_few(&space);
    }
}

/// Parsing a search space from arbitrary YAML never panics; a parsed space can be
/// sampled, and JSON (a subset of YAML) parses to the same space either way.
#[cfg(feature = "yaml")]
pub fn check_space_yaml(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(space) = SearchSpace::from_yaml(text) {
        let json = serde_json::to_string(&space).expect("spaces serialize");
        assert_eq!(SearchSpace::from_yaml(&json).expect("JSON is YAML"), space);
        sample_a_few(&space);
    }
}

fn sample_a_few(space: &SearchSpace) {
    let mut study = Study::minimize(Seed(0));
    for _ in 0..3 {
        let (n, _) = study.ask_space(space).expect("sampling a valid space");
        study.tell(n, 0.0).expect("tell");
    }
}

/// Opening arbitrary bytes as a journal never panics: it loads or reports an error.
pub fn check_journal(data: &[u8]) {
    let dir = std::env::temp_dir().join(format!("autoglm-tune-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("journal.jsonl");
    std::fs::write(&path, data).expect("write");
    if let Ok(storage) = Storage::journal(&path) {
        let _ = storage.trials().len();
    }
}

/// Reading arbitrary bytes as an Optuna journal never panics: each line either is
/// not Python JSON, or parses to a value that is written back to text that parses to
/// the same text again, and replaying it applies or reports an error.
pub fn check_optuna_journal(data: &[u8]) {
    use crate::optuna::journal::{distribution_from_json, Replay};
    use crate::optuna::pyjson::{PyJson, Separators};
    let mut replay = Replay::new();
    for line in data.split(|&b| b == b'\n') {
        let Ok(text) = std::str::from_utf8(line) else {
            continue;
        };
        let _ = distribution_from_json(text);
        let Ok(v) = PyJson::parse(text) else {
            continue;
        };
        let once = v.dumps(Separators::Compact);
        let again = PyJson::parse(&once).expect("our own output parses");
        assert_eq!(again.dumps(Separators::Compact), once);
        let _ = replay.apply(&v, "fuzz");
    }
}
