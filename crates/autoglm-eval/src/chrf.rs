//! chrF and chrF++ exactly as sacrebleu 2.6.0 computes them.

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::metric::{score_corpus, Metric};
use crate::signature::{yes_no, NumRefs, Signature};
use crate::text::{count_sorted, is_py_whitespace, py_lower, py_split, Vocab};

/// chrF options, as sacrebleu's `CHRF(...)` constructor takes them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct ChrfConfig {
    /// Character n-gram order (default 6).
    pub char_order: usize,
    /// Word n-gram order: 0 for chrF (default), 2 for chrF++.
    pub word_order: usize,
    /// The β of F-β (default 2: recall weighs twice as much).
    pub beta: u32,
    /// Lowercase before extracting n-grams.
    pub lowercase: bool,
    /// Keep whitespace inside character n-grams.
    pub whitespace: bool,
    /// chrF++.py/NLTK/Moses-style smoothing: average per-order F with 1e-16 for
    /// missing orders (sacrebleu's `eps_smoothing`; default off = effective order).
    pub eps_smoothing: bool,
}

impl Default for ChrfConfig {
    fn default() -> Self {
        ChrfConfig {
            char_order: 6,
            word_order: 0,
            beta: 2,
            lowercase: false,
            whitespace: false,
            eps_smoothing: false,
        }
    }
}

impl ChrfConfig {
    /// chrF++: the defaults with word order 2.
    pub fn plus_plus() -> Self {
        ChrfConfig {
            word_order: 2,
            ..ChrfConfig::default()
        }
    }

    /// Sets the word order.
    pub fn with_word_order(mut self, n: usize) -> Self {
        self.word_order = n;
        self
    }

    /// Sets the character order.
    pub fn with_char_order(mut self, n: usize) -> Self {
        self.char_order = n;
        self
    }

    /// Sets β.
    pub fn with_beta(mut self, beta: u32) -> Self {
        self.beta = beta;
        self
    }

    /// Sets lowercasing.
    pub fn with_lowercase(mut self, lc: bool) -> Self {
        self.lowercase = lc;
        self
    }

    /// Sets whitespace handling.
    pub fn with_whitespace(mut self, ws: bool) -> Self {
        self.whitespace = ws;
        self
    }

    /// Sets eps smoothing.
    pub fn with_eps_smoothing(mut self, eps: bool) -> Self {
        self.eps_smoothing = eps;
        self
    }
}

/// A chrF score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ChrfScore {
    /// chrF on the 0–100 scale.
    pub score: f64,
    /// `[hyp, ref, match]` counts per order (characters first, then words).
    pub stats: Vec<u64>,
}

/// Sufficient statistics: `[hyp, ref, match]` per order, characters first, then words,
/// taken from the best-scoring reference of each line.
pub type ChrfStats = Vec<u64>;

/// Marks an n-gram that no reference contains.
const UNKNOWN: u32 = u32::MAX;

/// Dense ids of the n-grams of orders `1..=max_n` over `base` symbols, built
/// incrementally: the n-gram at position i is (the (n-1)-gram at i, symbol i+n-1),
/// whose id `id_of(order index, key)` gives. An n-gram containing an [`UNKNOWN`] one is
/// unknown without a lookup.
fn ngram_ids(
    base: &[u32],
    max_n: usize,
    mut id_of: impl FnMut(usize, u64) -> u32,
    mut emit: impl FnMut(usize, u32),
) {
    let mut prev: Vec<u32> = Vec::new();
    for o in 0..max_n {
        let n = o + 1;
        if base.len() < n {
            break;
        }
        let mut cur = Vec::with_capacity(base.len() + 1 - n);
        for i in 0..=base.len() - n {
            let p = if n == 1 { 0 } else { prev[i] };
            let id = if p == UNKNOWN || base[i + n - 1] == UNKNOWN {
                UNKNOWN
            } else {
                id_of(o, ((p as u64) << 32) | base[i + n - 1] as u64)
            };
            emit(o, id);
            cur.push(id);
        }
        prev = cur;
    }
}

/// `(dense n-gram id, count)` pairs of one order of one reference, and the total count.
type OrderCounts = (Vec<(u32, u32)>, u64);

/// References of one line: n-gram counts per order, per reference.
#[derive(Debug, Clone)]
pub struct ChrfRefs {
    vocab: Vocab,
    /// Per order (characters, then words): n-grams of the line's references as
    /// (id of the prefix (n-1)-gram, last symbol) to a dense id.
    index: Vec<FxHashMap<u64, u32>>,
    /// Per reference, per order: `(index, count)` of its n-grams, and their total.
    refs: Vec<Vec<OrderCounts>>,
}

/// The chrF metric with a fixed configuration.
#[derive(Debug, Clone)]
pub struct Chrf {
    config: ChrfConfig,
}

impl Chrf {
    /// Validates the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for a character order of 0 or β = 0.
    pub fn new(config: ChrfConfig) -> Result<Self> {
        if config.char_order == 0 {
            return Err(Error::InvalidOption {
                option: "chrf-char-order",
                reason: "must be at least 1".to_owned(),
            });
        }
        if config.beta == 0 {
            return Err(Error::InvalidOption {
                option: "chrf-beta",
                reason: "beta must be positive".to_owned(),
            });
        }
        Ok(Chrf { config })
    }

    /// The configuration.
    pub fn config(&self) -> &ChrfConfig {
        &self.config
    }

    fn order(&self) -> usize {
        self.config.char_order + self.config.word_order
    }

    /// Character n-gram keys of the (preprocessed) line.
    fn chars(&self, s: &str) -> Vec<u32> {
        if self.config.whitespace {
            s.chars().map(|c| c as u32).collect()
        } else {
            s.chars()
                .filter(|&c| !is_py_whitespace(c))
                .map(|c| c as u32)
                .collect()
        }
    }

    /// sacrebleu's `CHRF._compute_f_score`, with its operation order.
    pub fn f_score(&self, stats: &[u64]) -> f64 {
        let eps = 1e-16;
        let mut score = 0.0f64;
        let mut effective_order = 0u32;
        let factor = (self.config.beta as f64) * (self.config.beta as f64);
        let (mut avg_prec, mut avg_rec) = (0.0f64, 0.0f64);
        for t in stats.chunks_exact(3) {
            let (n_hyp, n_ref, n_match) = (t[0] as f64, t[1] as f64, t[2] as f64);
            let prec = if t[0] > 0 { n_match / n_hyp } else { eps };
            let rec = if t[1] > 0 { n_match / n_ref } else { eps };
            let denom = factor * prec + rec;
            score += if denom > 0.0 {
                (1.0 + factor) * prec * rec / denom
            } else {
                eps
            };
            if t[0] > 0 && t[1] > 0 {
                avg_prec += prec;
                avg_rec += rec;
                effective_order += 1;
            }
        }
        if self.config.eps_smoothing {
            return 100.0 * score / self.order() as f64;
        }
        if effective_order == 0 {
            avg_prec = 0.0;
            avg_rec = 0.0;
        } else {
            avg_prec /= effective_order as f64;
            avg_rec /= effective_order as f64;
        }
        if avg_prec + avg_rec != 0.0 {
            let mut score = (1.0 + factor) * avg_prec * avg_rec;
            score /= (factor * avg_prec) + avg_rec;
            100.0 * score
        } else {
            0.0
        }
    }

    /// Character and word symbols of one text; words are interned with `intern`.
    fn symbols(&self, s: &str, intern: impl FnMut(&str) -> u32) -> (Vec<u32>, Vec<u32>) {
        let pre;
        let s = if self.config.lowercase {
            pre = py_lower(s);
            pre.as_str()
        } else {
            s
        };
        let words = if self.config.word_order > 0 {
            remove_punctuation(s).into_iter().map(intern).collect()
        } else {
            Vec::new()
        };
        (self.chars(s), words)
    }
}

/// sacrebleu's `CHRF._remove_punctuation`: split on whitespace, then split one ASCII
/// punctuation character off the end of a word, or else off its start.
fn remove_punctuation(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    for w in py_split(s) {
        let mut it = w.chars();
        let first = it.next().expect("split pieces are not empty");
        if it.next().is_none() {
            out.push(w);
            continue;
        }
        let last = w.chars().next_back().expect("not empty");
        if last.is_ascii_punctuation() {
            out.push(&w[..w.len() - 1]);
            out.push(&w[w.len() - 1..]);
        } else if first.is_ascii_punctuation() {
            out.push(&w[..1]);
            out.push(&w[1..]);
        } else {
            out.push(w);
        }
    }
    out
}

thread_local! {
    /// Per-order hypothesis n-gram counts by dense id; all zero between calls.
    static HYP_COUNTS: std::cell::RefCell<Vec<Vec<u32>>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Chrf {
    /// The statistics of the reference with the best F (the first on ties).
    fn best_stats(&self, hyp_counts: &[Vec<u32>], totals: &[u64], refs: &ChrfRefs) -> ChrfStats {
        let mut best_stats = Vec::new();
        let mut best_f = -1.0f64;
        let mut stats = Vec::with_capacity(3 * self.order());
        for r in &refs.refs {
            stats.clear();
            for ((hc, &htotal), (rc, rtotal)) in hyp_counts.iter().zip(totals).zip(r) {
                let matched: u64 = rc.iter().map(|&(i, c)| c.min(hc[i as usize]) as u64).sum();
                stats.extend_from_slice(&[
                    if rc.is_empty() { 0 } else { htotal },
                    *rtotal,
                    matched,
                ]);
            }
            let f = self.f_score(&stats);
            if f > best_f {
                best_f = f;
                best_stats.clone_from(&stats);
            }
        }
        best_stats
    }
}

impl Metric for Chrf {
    type Refs = ChrfRefs;
    type Stats = ChrfStats;
    type Score = ChrfScore;

    fn prepare_refs(&self, refs: &[&str]) -> ChrfRefs {
        let (nc, nw) = (self.config.char_order, self.config.word_order);
        let mut vocab = Vocab::default();
        let mut index: Vec<FxHashMap<u64, u32>> = vec![FxHashMap::default(); nc + nw];
        let refs = refs
            .iter()
            .map(|r| {
                let (chars, words) = self.symbols(r, |w| vocab.intern(w));
                let mut ids: Vec<Vec<u32>> = vec![Vec::new(); nc + nw];
                let mut insert = |o: usize, key: u64| {
                    let next = index[o].len() as u32;
                    *index[o].entry(key).or_insert(next)
                };
                ngram_ids(&chars, nc, &mut insert, |o, id| ids[o].push(id));
                ngram_ids(
                    &words,
                    nw,
                    |o, key| insert(nc + o, key),
                    |o, id| ids[nc + o].push(id),
                );
                ids.into_iter()
                    .map(|ids| {
                        let total = ids.len() as u64;
                        (count_sorted(ids), total)
                    })
                    .collect()
            })
            .collect();
        ChrfRefs { vocab, index, refs }
    }

    fn segment_stats(&self, hyp: &str, refs: &ChrfRefs) -> ChrfStats {
        let nc = self.config.char_order;
        // Unknown words and n-grams can never match; they only count in the totals.
        let (chars, words) = self.symbols(hyp, |w| refs.vocab.get(w).unwrap_or(UNKNOWN));
        let mut totals = vec![0u64; self.order()];
        let mut known: Vec<Vec<u32>> = vec![Vec::new(); self.order()];
        let lookup = |o: usize, key: u64| refs.index[o].get(&key).copied().unwrap_or(UNKNOWN);
        ngram_ids(&chars, nc, lookup, |o, id| {
            totals[o] += 1;
            if id != UNKNOWN {
                known[o].push(id);
            }
        });
        ngram_ids(
            &words,
            self.config.word_order,
            |o, key| lookup(nc + o, key),
            |o, id| {
                totals[nc + o] += 1;
                if id != UNKNOWN {
                    known[nc + o].push(id);
                }
            },
        );
        HYP_COUNTS.with(|hc| {
            let hc = &mut *hc.borrow_mut();
            hc.resize_with(self.order(), Vec::new);
            for ((c, ids), m) in hc.iter_mut().zip(&known).zip(&refs.index) {
                if c.len() < m.len() {
                    c.resize(m.len(), 0);
                }
                for &id in ids {
                    c[id as usize] += 1;
                }
            }
            let stats = self.best_stats(hc, &totals, refs);
            // Leave the scratch counts all zero for the next call.
            for (c, ids) in hc.iter_mut().zip(&known) {
                for &id in ids {
                    c[id as usize] = 0;
                }
            }
            stats
        })
    }

    fn zero_stats(&self) -> ChrfStats {
        vec![0; 3 * self.order()]
    }

    fn add_stats(&self, acc: &mut ChrfStats, s: &ChrfStats) {
        for (a, b) in acc.iter_mut().zip(s) {
            *a += b;
        }
    }

    fn corpus_score_from(&self, stats: &ChrfStats) -> ChrfScore {
        ChrfScore {
            score: self.f_score(stats),
            stats: stats.clone(),
        }
    }

    fn sentence_score_from(&self, stats: &ChrfStats) -> ChrfScore {
        self.corpus_score_from(stats)
    }

    fn value(score: &ChrfScore) -> f64 {
        score.score
    }

    fn signature(&self, nrefs: NumRefs) -> Signature {
        let c = &self.config;
        let mut sig = Signature::new(nrefs);
        sig.set("case", if c.lowercase { "lc" } else { "mixed" });
        sig.set("eff", yes_no(!c.eps_smoothing));
        sig.set("nc", c.char_order.to_string());
        sig.set("nw", c.word_order.to_string());
        sig.set("space", yes_no(c.whitespace));
        sig
    }

    fn name(&self) -> String {
        format!(
            "chrF{}{}",
            self.config.beta,
            "+".repeat(self.config.word_order)
        )
    }
}

/// Corpus chrF (sacrebleu's `corpus_chrf`); use [`ChrfConfig::plus_plus`] for chrF++.
///
/// # Errors
/// Invalid configuration, mismatched lengths, a line without references, or no lines.
pub fn corpus_chrf<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[Vec<R>],
    config: &ChrfConfig,
) -> Result<ChrfScore> {
    let m = Chrf::new(config.clone())?;
    score_corpus(&m, hyps, refs)?.finish()
}

/// Sentence chrF (sacrebleu's `sentence_chrf`).
///
/// # Errors
/// Invalid configuration or no reference.
pub fn sentence_chrf(hyp: &str, refs: &[&str], config: &ChrfConfig) -> Result<ChrfScore> {
    let m = Chrf::new(config.clone())?;
    let stats = m.line_stats(hyp, refs)?;
    Ok(m.sentence_score_from(&stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn punctuation_is_split_off_one_side() {
        assert_eq!(
            remove_punctuation("(hi) a . x,"),
            ["(hi", ")", "a", ".", "x", ","]
        );
        assert_eq!(remove_punctuation("\"quoted"), ["\"", "quoted"]);
    }
}
