//! sacrebleu-style reproducibility signatures.

use std::fmt;

/// The number of references per line, as a signature reports it (`nrefs:4`, `nrefs:var`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum NumRefs {
    /// Every line has this many references.
    Fixed(usize),
    /// The number of references varies from line to line.
    Variable,
}

impl NumRefs {
    /// Combines the count seen so far with the count of one more line.
    pub fn observe(prev: Option<NumRefs>, count: usize) -> NumRefs {
        match prev {
            None => NumRefs::Fixed(count),
            Some(NumRefs::Fixed(n)) if n == count => NumRefs::Fixed(n),
            Some(_) => NumRefs::Variable,
        }
    }
}

impl fmt::Display for NumRefs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NumRefs::Fixed(n) => write!(f, "{n}"),
            NumRefs::Variable => f.write_str("var"),
        }
    }
}

/// The sacrebleu version whose behaviour (and signature) this crate reproduces.
pub const SACREBLEU_VERSION: &str = "2.6.0";

/// The rouge-score version whose behaviour this crate reproduces.
pub const ROUGE_SCORE_VERSION: &str = "0.1.2";

/// This crate's own version; reported separately, never inside the sacrebleu signature.
pub const AUTOGLM_EVAL_VERSION: &str = env!("CARGO_PKG_VERSION");

/// A reproducibility signature, printed byte for byte as sacrebleu 2.6.0 prints it,
/// e.g. `nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signature {
    /// Key/value pairs in sacrebleu's order, without `version` (always printed last).
    entries: Vec<(&'static str, String)>,
}

impl Signature {
    /// Starts a signature with the global keys sacrebleu puts first.
    pub(crate) fn new(nrefs: NumRefs) -> Self {
        Signature {
            entries: vec![("nrefs", nrefs.to_string())],
        }
    }

    /// Adds or replaces an entry; a new key goes to the end (before `version`).
    pub(crate) fn set(&mut self, key: &'static str, value: impl Into<String>) {
        let value = value.into();
        match self.entries.iter_mut().find(|(k, _)| *k == key) {
            Some(e) => e.1 = value,
            None => self.entries.push((key, value)),
        }
    }

    /// The signature of a paired significance test, as sacrebleu prints it
    /// (e.g. `nrefs:1|bs:1000|seed:12345|case:mixed|…`).
    pub fn with_paired_test(
        mut self,
        test: crate::PairedTest,
        n_samples: usize,
        seed: crate::Seed,
    ) -> Self {
        self.set_global("seed", seed.0.to_string());
        let key = match test {
            crate::PairedTest::Bootstrap => "bs",
            crate::PairedTest::ApproximateRandomization => "ar",
        };
        self.set_global(key, n_samples.to_string());
        self
    }

    /// Inserts an entry right after `nrefs`, in the place sacrebleu reserves for
    /// `bs`, `ar` and `seed` (significance tests).
    fn set_global(&mut self, key: &'static str, value: impl Into<String>) {
        const ORDER: [&str; 4] = ["nrefs", "bs", "ar", "seed"];
        let value = value.into();
        if let Some(e) = self.entries.iter_mut().find(|(k, _)| *k == key) {
            e.1 = value;
            return;
        }
        let rank = |k: &str| ORDER.iter().position(|o| *o == k).unwrap_or(ORDER.len());
        let my = rank(key);
        let pos = self
            .entries
            .iter()
            .position(|(k, _)| rank(k) > my)
            .unwrap_or(self.entries.len());
        self.entries.insert(pos, (key, value));
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<&str> {
        if key == "version" {
            return Some(SACREBLEU_VERSION);
        }
        self.entries
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.as_str())
    }

    /// All entries in print order, `version` last.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(k, v)| (*k, v.as_str()))
            .chain(std::iter::once(("version", SACREBLEU_VERSION)))
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (k, v) in &self.entries {
            write!(f, "{k}:{v}|")?;
        }
        write!(f, "version:{SACREBLEU_VERSION}")
    }
}

/// Python's `'yes' if b else 'no'`.
pub(crate) fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}
