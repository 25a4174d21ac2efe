//! chrF and chrF++ exactly as sacrebleu 2.6.0 computes them.

use crate::error::{Error, Result};
use crate::metric::{score_corpus, Metric};
use crate::signature::{yes_no, NumRefs, Signature};
use crate::text::{is_py_whitespace, py_lower, py_split, Vocab};

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

/// Marks an n-gram (or a word) that the index does not contain.
const UNKNOWN: u32 = u32::MAX;
/// The prefix of every character unigram.
const ROOT_CHAR: u32 = u32::MAX - 1;
/// The prefix of every word unigram.
const ROOT_WORD: u32 = u32::MAX - 2;

/// The n-grams of one line's references (or of one hypothesis), each a dense id
/// `0, 1, 2, …` in order of first appearance, as a trie: the n-gram (prefix, symbol) is a child of its
/// (n-1)-gram prefix (or of a root for n = 1). Text branches little beyond short
/// n-grams, so the first child of each n-gram is kept beside it, found without hashing;
/// the roots' children and further children are in an open-addressing hash table
/// (linear probing, multiplicative hashing) keyed by (prefix, symbol).
#[derive(Debug, Clone)]
struct NgramIndex {
    /// By n-gram id: `(symbol, id)` of its first child, or `(UNKNOWN, 0)` if none.
    first: Vec<(u32, u32)>,
    /// `(key, id)` of the other children; an empty slot has the key
    /// [`EMPTY`](Self::EMPTY). A power of two long, at most three quarters full.
    more: Vec<(u64, u32)>,
    /// Entries in `more`.
    more_len: usize,
    /// 64 minus log2 of `more.len()`.
    shift: u32,
}

impl NgramIndex {
    /// No key is this: its prefix would be [`UNKNOWN`].
    const EMPTY: u64 = u64::MAX;

    /// An empty index; `capacity` is a guess of the number of n-grams.
    fn with_capacity(capacity: usize) -> Self {
        let slots = (capacity / 2).next_power_of_two().max(16);
        NgramIndex {
            first: Vec::with_capacity(capacity),
            more: vec![(Self::EMPTY, 0); slots],
            more_len: 0,
            shift: 64 - slots.trailing_zeros(),
        }
    }

    /// Number of n-grams (and the next id).
    #[inline]
    fn len(&self) -> usize {
        self.first.len()
    }

    #[inline]
    fn key(prefix: u32, sym: u32) -> u64 {
        ((prefix as u64) << 32) | sym as u64
    }

    #[inline]
    fn home(&self, key: u64) -> usize {
        (key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> self.shift) as usize
    }

    /// The slot of `key` in `more`: the one holding it, or the empty one where it goes.
    #[inline]
    fn slot(&self, key: u64) -> usize {
        let mask = self.more.len() - 1;
        let mut i = self.home(key);
        loop {
            let k = self.more[i].0;
            if k == key || k == Self::EMPTY {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    /// The id of the n-gram (`prefix`, `sym`), or [`UNKNOWN`].
    #[inline]
    fn get(&self, prefix: u32, sym: u32) -> u32 {
        if let Some(&(s, id)) = self.first.get(prefix as usize) {
            if s == sym {
                return id;
            }
            if s == UNKNOWN {
                return UNKNOWN;
            }
        }
        let (k, id) = self.more[self.slot(Self::key(prefix, sym))];
        if k == Self::EMPTY {
            UNKNOWN
        } else {
            id
        }
    }

    /// The id of the n-gram (`prefix`, `sym`), assigning the next one if it is new.
    #[inline]
    fn intern(&mut self, prefix: u32, sym: u32) -> u32 {
        let next = self.first.len() as u32;
        if let Some(f) = self.first.get_mut(prefix as usize) {
            if f.0 == sym {
                return f.1;
            }
            if f.0 == UNKNOWN {
                *f = (sym, next);
                self.push_node();
                return next;
            }
        }
        let key = Self::key(prefix, sym);
        let i = self.slot(key);
        if self.more[i].0 == key {
            return self.more[i].1;
        }
        self.more[i] = (key, next);
        self.push_node();
        self.more_len += 1;
        if self.more_len * 4 > self.more.len() * 3 {
            self.grow();
        }
        next
    }

    /// Adds the node of a new n-gram, without children.
    #[inline]
    fn push_node(&mut self) {
        // Ids must stay below the roots and UNKNOWN.
        assert!(
            self.first.len() < ROOT_WORD as usize,
            "too many n-grams in one line"
        );
        self.first.push((UNKNOWN, 0));
    }

    /// Doubles `more`.
    fn grow(&mut self) {
        let doubled = vec![(Self::EMPTY, 0); self.more.len() * 2];
        let old = std::mem::replace(&mut self.more, doubled);
        self.shift -= 1;
        for (k, id) in old {
            if k != Self::EMPTY {
                let i = self.slot(k);
                self.more[i] = (k, id);
            }
        }
    }
}

/// References of one line: their n-grams indexed once, and the counts of each reference.
#[derive(Debug, Clone)]
pub struct ChrfRefs {
    /// Words of the references (chrF++ only).
    vocab: Vocab,
    /// Every n-gram of the references (characters and words), as (prefix id, symbol).
    index: NgramIndex,
    /// `(n-gram id, count)` of each reference's distinct n-grams, grouped by reference,
    /// then by order (characters, then words).
    counts: Vec<(u32, u32)>,
    /// Per reference and order: where its group in `counts` ends, and its total count.
    groups: Vec<(u32, u64)>,
}

/// Per-thread scratch space, reused from line to line.
#[derive(Default)]
struct Scratch {
    /// Symbols of the references (concatenated) or of the hypothesis.
    chars: Vec<u32>,
    words: Vec<u32>,
    /// `(chars end, words end)` of each reference in `chars` and `words`.
    ends: Vec<(usize, usize)>,
    /// n-gram ids of the previous order at each position, overwritten in place.
    prev: Vec<u32>,
    /// Counts by n-gram id; all zero between calls.
    counts: Vec<u32>,
    /// Ids whose count is not zero.
    seen: Vec<u32>,
    /// Counts of a reference's n-grams by hypothesis n-gram id; all zero between calls.
    ref_counts: Vec<u32>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Number of n-grams of order `n` in a sequence of `len` symbols.
#[inline]
fn positions(len: usize, n: usize) -> usize {
    (len + 1).saturating_sub(n)
}

/// Number of n-grams of orders `1..=max_n` in a sequence of `len` symbols.
fn ngram_count(len: usize, max_n: usize) -> usize {
    (1..=max_n).map(|n| positions(len, n)).sum()
}

/// Turns `prev`, the ids of the (n-1)-grams of `base` by position, into those of its
/// n-grams (`1 <= n <= base.len()`; for n = 1 `prev` is filled, with `root` as the
/// prefix of every unigram): the n-gram at position i is (the (n-1)-gram at i,
/// symbol i+n-1), whose id `id_of(prefix, symbol)` gives ([`UNKNOWN`] if absent).
/// An n-gram containing an unknown one is unknown without a lookup. `emit(id)` gets
/// each known n-gram in position order. Returns whether there was one (if not, no
/// n-gram of a higher order is known either).
#[inline]
fn next_order(
    base: &[u32],
    root: u32,
    n: usize,
    prev: &mut Vec<u32>,
    mut id_of: impl FnMut(u32, u32) -> u32,
    mut emit: impl FnMut(u32),
) -> bool {
    let mut any = false;
    let mut step = |p: u32, s: u32| {
        let id = if p == UNKNOWN || s == UNKNOWN {
            UNKNOWN
        } else {
            id_of(p, s)
        };
        if id != UNKNOWN {
            emit(id);
            any = true;
        }
        id
    };
    if n == 1 {
        prev.clear();
        prev.extend(base.iter().map(|&s| step(root, s)));
    } else {
        for (p, &s) in prev.iter_mut().zip(&base[n - 1..]) {
            *p = step(*p, s);
        }
    }
    any
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

    /// Appends the character symbols (code points, whitespace dropped unless kept) and
    /// word symbols (chrF++ only; interned with `intern`) of one text.
    fn symbols(
        &self,
        s: &str,
        chars: &mut Vec<u32>,
        words: &mut Vec<u32>,
        intern: impl FnMut(&str) -> u32,
    ) {
        let pre;
        let s = if self.config.lowercase {
            pre = py_lower(s);
            pre.as_str()
        } else {
            s
        };
        if self.config.word_order > 0 {
            words.extend(remove_punctuation(s).into_iter().map(intern));
        }
        if self.config.whitespace {
            chars.extend(s.chars().map(|c| c as u32));
        } else {
            chars.extend(
                s.chars()
                    .filter(|&c| !is_py_whitespace(c))
                    .map(|c| c as u32),
            );
        }
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

impl Chrf {
    /// The statistics of the reference with the best F (the first on ties), given the
    /// hypothesis' n-gram counts by id and its numbers of characters and words.
    fn best_stats(&self, hc: &[u32], n_chars: usize, n_words: usize, refs: &ChrfRefs) -> ChrfStats {
        let nc = self.config.char_order;
        let hyp_total = |o: usize| {
            if o < nc {
                positions(n_chars, o + 1) as u64
            } else {
                positions(n_words, o - nc + 1) as u64
            }
        };
        let mut best_stats = Vec::new();
        let mut best_f = -1.0f64;
        let mut stats = Vec::with_capacity(3 * self.order());
        let mut start = 0usize;
        for groups in refs.groups.chunks_exact(self.order()) {
            stats.clear();
            for (o, &(end, ref_total)) in groups.iter().enumerate() {
                let group = &refs.counts[start..end as usize];
                start = end as usize;
                let matched: u64 = group
                    .iter()
                    .map(|&(id, c)| c.min(hc[id as usize]) as u64)
                    .sum();
                stats.extend_from_slice(&[
                    if group.is_empty() { 0 } else { hyp_total(o) },
                    ref_total,
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
        SCRATCH.with(|sc| {
            let Scratch {
                chars,
                words,
                ends,
                prev,
                counts: dense,
                ..
            } = &mut *sc.borrow_mut();
            chars.clear();
            words.clear();
            ends.clear();
            let mut bound = 0;
            for r in refs {
                let (c0, w0) = (chars.len(), words.len());
                self.symbols(r, chars, words, |w| vocab.intern(w));
                bound += ngram_count(chars.len() - c0, nc) + ngram_count(words.len() - w0, nw);
                ends.push((chars.len(), words.len()));
            }
            let mut index = NgramIndex::with_capacity(bound);
            if dense.len() < bound {
                dense.resize(bound, 0);
            }
            let mut counts: Vec<(u32, u32)> = Vec::with_capacity(bound);
            let mut groups = Vec::with_capacity(refs.len() * self.order());
            let (mut c0, mut w0) = (0, 0);
            for &(c1, w1) in ends.iter() {
                for (base, root, max_n) in [
                    (&chars[c0..c1], ROOT_CHAR, nc),
                    (&words[w0..w1], ROOT_WORD, nw),
                ] {
                    for n in 1..=max_n {
                        let start = counts.len();
                        if n <= base.len() {
                            next_order(
                                base,
                                root,
                                n,
                                prev,
                                |p, s| index.intern(p, s),
                                |id| {
                                    let c = &mut dense[id as usize];
                                    if *c == 0 {
                                        counts.push((id, 0));
                                    }
                                    *c += 1;
                                },
                            );
                        }
                        // Fill in the counts, leaving the scratch counts all zero.
                        for (id, c) in &mut counts[start..] {
                            *c = std::mem::take(&mut dense[*id as usize]);
                        }
                        groups.push((counts.len() as u32, positions(base.len(), n) as u64));
                    }
                }
                (c0, w0) = (c1, w1);
            }
            ChrfRefs {
                vocab,
                index,
                counts,
                groups,
            }
        })
    }

    fn segment_stats(&self, hyp: &str, refs: &ChrfRefs) -> ChrfStats {
        let (nc, nw) = (self.config.char_order, self.config.word_order);
        SCRATCH.with(|sc| {
            let Scratch {
                chars,
                words,
                prev,
                counts: hc,
                seen,
                ..
            } = &mut *sc.borrow_mut();
            chars.clear();
            words.clear();
            // Unknown words and n-grams can never match; they only count in the totals.
            self.symbols(hyp, chars, words, |w| refs.vocab.get(w).unwrap_or(UNKNOWN));
            if hc.len() < refs.index.len() {
                hc.resize(refs.index.len(), 0);
            }
            seen.clear();
            for (base, root, max_n) in [(&chars[..], ROOT_CHAR, nc), (&words[..], ROOT_WORD, nw)] {
                for n in 1..=max_n.min(base.len()) {
                    let any = next_order(
                        base,
                        root,
                        n,
                        prev,
                        |p, s| refs.index.get(p, s),
                        |id| {
                            let c = &mut hc[id as usize];
                            if *c == 0 {
                                seen.push(id);
                            }
                            *c += 1;
                        },
                    );
                    if !any {
                        break;
                    }
                }
            }
            let stats = self.best_stats(hc, chars.len(), words.len(), refs);
            // Leave the scratch counts all zero for the next call.
            for &id in seen.iter() {
                hc[id as usize] = 0;
            }
            stats
        })
    }

    fn segment_stats_unprepared(&self, hyp: &str, refs: &[&str]) -> ChrfStats {
        // The references serve this hypothesis only: index the hypothesis' n-grams (fewer
        // than the references') and look up the references' ones, which stops at the
        // first unknown prefix. The k-th occurrence of an n-gram in a reference matches
        // if the hypothesis has it at least k times, which sums to min(hyp, ref) counts.
        let (nc, nw) = (self.config.char_order, self.config.word_order);
        let mut vocab = Vocab::default();
        SCRATCH.with(|sc| {
            let Scratch {
                chars,
                words,
                prev,
                counts: hc,
                ref_counts: rc,
                ..
            } = &mut *sc.borrow_mut();
            chars.clear();
            words.clear();
            self.symbols(hyp, chars, words, |w| vocab.intern(w));
            let (hyp_chars, hyp_words) = (chars.len(), words.len());
            let bound = ngram_count(hyp_chars, nc) + ngram_count(hyp_words, nw);
            let mut index = NgramIndex::with_capacity(bound);
            if hc.len() < bound {
                hc.resize(bound, 0);
            }
            if rc.len() < bound {
                rc.resize(bound, 0);
            }
            for (base, root, max_n) in [(&chars[..], ROOT_CHAR, nc), (&words[..], ROOT_WORD, nw)] {
                for n in 1..=max_n.min(base.len()) {
                    next_order(
                        base,
                        root,
                        n,
                        prev,
                        |p, s| index.intern(p, s),
                        |id| hc[id as usize] += 1,
                    );
                }
            }
            let n_ids = index.len();
            let mut best_stats = Vec::new();
            let mut best_f = -1.0f64;
            let mut stats = Vec::with_capacity(3 * self.order());
            for r in refs {
                chars.clear();
                words.clear();
                self.symbols(r, chars, words, |w| vocab.get(w).unwrap_or(UNKNOWN));
                stats.clear();
                for (base, root, max_n, hyp_len) in [
                    (&chars[..], ROOT_CHAR, nc, hyp_chars),
                    (&words[..], ROOT_WORD, nw, hyp_words),
                ] {
                    let mut known = true;
                    for n in 1..=max_n {
                        let mut matched = 0u64;
                        if known && n <= base.len() {
                            known = next_order(
                                base,
                                root,
                                n,
                                prev,
                                |p, s| index.get(p, s),
                                |id| {
                                    let c = &mut rc[id as usize];
                                    matched += (*c < hc[id as usize]) as u64;
                                    *c += 1;
                                },
                            );
                        }
                        let ref_total = positions(base.len(), n) as u64;
                        let hyp_total = if ref_total == 0 {
                            0
                        } else {
                            positions(hyp_len, n) as u64
                        };
                        stats.extend_from_slice(&[hyp_total, ref_total, matched]);
                    }
                }
                rc[..n_ids].fill(0);
                let f = self.f_score(&stats);
                if f > best_f {
                    best_f = f;
                    best_stats.clone_from(&stats);
                }
            }
            hc[..n_ids].fill(0);
            best_stats
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

    /// sacrebleu's statistics the plain way: n-gram counters of strings per order, the
    /// best reference by F.
    fn naive_stats(m: &Chrf, hyp: &str, refs: &[&str]) -> Vec<u64> {
        use std::collections::HashMap;
        let c = m.config();
        let counters = |s: &str| -> Vec<HashMap<Vec<String>, u64>> {
            let s = if c.lowercase {
                py_lower(s)
            } else {
                s.to_owned()
            };
            let chars: Vec<String> = s
                .chars()
                .filter(|&ch| c.whitespace || !is_py_whitespace(ch))
                .map(String::from)
                .collect();
            let words: Vec<String> = remove_punctuation(&s)
                .into_iter()
                .map(str::to_owned)
                .collect();
            let mut out = Vec::new();
            for (base, max_n) in [(&chars, c.char_order), (&words, c.word_order)] {
                for n in 1..=max_n {
                    let mut m: HashMap<Vec<String>, u64> = HashMap::new();
                    for w in base.windows(n) {
                        *m.entry(w.to_vec()).or_default() += 1;
                    }
                    out.push(m);
                }
            }
            out
        };
        let h = counters(hyp);
        let (mut best, mut best_f) = (Vec::new(), -1.0);
        for r in refs {
            let mut stats = Vec::new();
            for (hm, rm) in h.iter().zip(counters(r)) {
                let matched: u64 = hm
                    .iter()
                    .map(|(k, &n)| n.min(rm.get(k).copied().unwrap_or(0)))
                    .sum();
                let hyp_total = if rm.is_empty() { 0 } else { hm.values().sum() };
                stats.extend([hyp_total, rm.values().sum(), matched]);
            }
            let f = m.f_score(&stats);
            if f > best_f {
                best_f = f;
                best = stats;
            }
        }
        best
    }

    /// A random line over a small alphabet (many repeated n-grams), with Python-only
    /// whitespace, punctuation, case and non-ASCII characters.
    fn random_line(seed: &mut u64, max_len: u64) -> String {
        const ALPHABET: [char; 16] = [
            'a', 'b', 'a', 'B', ' ', ' ', '\u{a0}', '\u{1f}', '.', ',', '(', 'ä', 'Σ', 'x', 'y',
            'a',
        ];
        let mut next = || {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            *seed
        };
        let len = next() % (max_len + 1);
        (0..len)
            .map(|_| ALPHABET[(next() % ALPHABET.len() as u64) as usize])
            .collect()
    }

    #[test]
    fn indexed_statistics_equal_plain_counting() {
        let mut seed = 0x9E37_79B9_7F4A_7C15u64;
        for round in 0..400 {
            let cfg = ChrfConfig::default()
                .with_char_order(1 + round % 8)
                .with_word_order(round % 4)
                .with_whitespace(round % 5 == 1)
                .with_lowercase(round % 3 == 2);
            let m = Chrf::new(cfg).expect("config");
            let max_len = [0, 3, 12, 60, 400][round % 5];
            // Several lines prepared first, then several hypotheses per line, so that
            // the per-thread scratch is shared between interleaved calls.
            let lines: Vec<Vec<String>> = (0..3)
                .map(|_| {
                    let k = 1 + (random_line(&mut seed, 4).len() % 4);
                    (0..k).map(|_| random_line(&mut seed, max_len)).collect()
                })
                .collect();
            let prepared: Vec<ChrfRefs> = lines
                .iter()
                .map(|r| m.prepare_refs(&r.iter().map(String::as_str).collect::<Vec<_>>()))
                .collect();
            for _ in 0..3 {
                for (r, p) in lines.iter().zip(&prepared) {
                    let refs: Vec<&str> = r.iter().map(String::as_str).collect();
                    let hyp = if round % 7 == 0 {
                        refs[0].to_owned()
                    } else {
                        random_line(&mut seed, max_len)
                    };
                    let want = naive_stats(&m, &hyp, &refs);
                    assert_eq!(m.segment_stats(&hyp, p), want, "{hyp:?} {refs:?}");
                    assert_eq!(
                        m.segment_stats_unprepared(&hyp, &refs),
                        want,
                        "{hyp:?} {refs:?}"
                    );
                }
            }
        }
    }
}
