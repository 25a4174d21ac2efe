//! Shared helpers: reading reference data, comparing floats, collecting mismatches.

use std::path::PathBuf;

use serde_json::Value;

/// Where `shared/` is: `$AUTOGLM_SHARED`, else `../shared` beside the repository root.
pub(crate) fn shared_dir() -> Option<PathBuf> {
    let p = match std::env::var_os("AUTOGLM_SHARED") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared"),
    };
    if p.join("bench/eval/reference_scores").is_dir() {
        return Some(p);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the shared reference data is missing at {}",
        p.display()
    );
    eprintln!(
        "SKIPPED: shared reference data not found at {} (set AUTOGLM_SHARED); only the committed fixture is checked",
        p.display()
    );
    None
}

/// Python's `read_text().split("\n")[:-1]`.
pub(crate) fn read_lines(p: &std::path::Path) -> Vec<String> {
    let text = std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let mut v: Vec<String> = text.split('\n').map(str::to_owned).collect();
    v.pop();
    v
}

pub(crate) fn read_gz_json(p: &std::path::Path) -> Value {
    let f = std::fs::File::open(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_reader(flate2::read::GzDecoder::new(std::io::BufReader::new(f)))
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Collects mismatches so that one run reports all of them.
#[derive(Default)]
pub(crate) struct Checker {
    pub(crate) checked: usize,
    pub(crate) failures: Vec<String>,
}

impl Checker {
    pub(crate) fn close(&mut self, what: impl FnOnce() -> String, got: f64, want: f64, tol: f64) {
        self.checked += 1;
        let ok = (got - want).abs() <= tol || (got.is_nan() && want.is_nan());
        if !ok {
            self.failures
                .push(format!("{}: got {got:?}, want {want:?}", what()));
        }
    }

    pub(crate) fn val(&mut self, what: impl FnOnce() -> String, got: f64, want: &Value, tol: f64) {
        let w = want
            .as_f64()
            .unwrap_or_else(|| panic!("not a number: {want}"));
        self.close(what, got, w, tol);
    }

    pub(crate) fn eq<T: PartialEq + std::fmt::Debug>(
        &mut self,
        what: impl FnOnce() -> String,
        got: T,
        want: T,
    ) {
        self.checked += 1;
        if got != want {
            self.failures
                .push(format!("{}: got {got:?}, want {want:?}", what()));
        }
    }

    pub(crate) fn finish(self, name: &str) {
        eprintln!(
            "{name}: {} values checked, {} mismatches",
            self.checked,
            self.failures.len()
        );
        if !self.failures.is_empty() {
            let n = self.failures.len();
            let shown: Vec<_> = self.failures.into_iter().take(30).collect();
            panic!("{name}: {n} mismatches, first ones:\n{}", shown.join("\n"));
        }
        assert!(self.checked > 0, "{name}: nothing was checked");
    }
}

pub(crate) fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("array")
        .iter()
        .map(|x| x.as_f64().expect("number"))
        .collect()
}

/// The `rougeLsum_split` convention of the reference files: whitespace after `.`, `!`
/// or `?` becomes a newline (Python `re.sub(r"(?<=[.!?])\s+", "\n", t.strip())`).
pub(crate) fn split_sents(t: &str) -> String {
    use autoglm_eval::text::{is_py_whitespace, py_strip};
    let t = py_strip(t);
    let mut out = String::with_capacity(t.len());
    let mut prev: Option<char> = None;
    let mut in_run = false;
    for c in t.chars() {
        if is_py_whitespace(c) {
            if in_run {
                continue;
            }
            if matches!(prev, Some('.' | '!' | '?')) {
                out.push('\n');
                in_run = true;
                continue;
            }
            out.push(c);
        } else {
            in_run = false;
            out.push(c);
        }
        prev = Some(c);
    }
    out
}
