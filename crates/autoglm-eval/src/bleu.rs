//! BLEU exactly as sacrebleu 2.6.0 computes it.

use std::str::FromStr;

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::metric::{score_corpus, Metric};
use crate::signature::{yes_no, NumRefs, Signature};
use crate::text::{py_lower, py_rstrip, py_split, Vocab};
use crate::tokenize::Tokenizer;

/// The largest n-gram order supported.
pub const MAX_NGRAM_ORDER: usize = 4;

/// How zero n-gram matches are smoothed (sacrebleu's `--smooth-method`).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, Default, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Smooth {
    /// No smoothing.
    None,
    /// Chen & Cherry method 1: a floor value (default 0.1) for zero matches.
    Floor,
    /// Chen & Cherry method 2: add k (default 1) to matches and totals for n > 1.
    AddK,
    /// NIST geometric smoothing (mteval-v13a), sacrebleu's default.
    #[default]
    Exp,
}

impl Smooth {
    /// The name used on sacrebleu's command line and in signatures.
    pub fn name(self) -> &'static str {
        match self {
            Smooth::None => "none",
            Smooth::Floor => "floor",
            Smooth::AddK => "add-k",
            Smooth::Exp => "exp",
        }
    }

    /// The default smoothing value, for methods that take one.
    pub fn default_value(self) -> Option<f64> {
        match self {
            Smooth::Floor => Some(0.1),
            Smooth::AddK => Some(1.0),
            Smooth::None | Smooth::Exp => None,
        }
    }
}

impl FromStr for Smooth {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        [Smooth::None, Smooth::Floor, Smooth::AddK, Smooth::Exp]
            .into_iter()
            .find(|m| m.name() == s)
            .ok_or_else(|| Error::UnknownOption {
                option: "smooth-method",
                value: s.to_owned(),
                expected: "none, floor, add-k, exp",
            })
    }
}

/// BLEU options, as sacrebleu's `BLEU(...)` constructor takes them.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct BleuConfig {
    /// Tokenizer (default `13a`).
    pub tokenize: Tokenizer,
    /// Lowercase hypotheses and references before tokenizing.
    pub lowercase: bool,
    /// Smoothing method (default `exp`).
    pub smooth_method: Smooth,
    /// Smoothing value for `floor` and `add-k` (their defaults when `None`).
    pub smooth_value: Option<f64>,
    /// Maximum n-gram order, 1 to 4 (default 4).
    pub max_ngram_order: usize,
    /// Use the highest order with n-grams instead of always `max_ngram_order`
    /// (sacrebleu turns this on for sentence BLEU).
    pub effective_order: bool,
}

impl Default for BleuConfig {
    fn default() -> Self {
        BleuConfig {
            tokenize: Tokenizer::V13a,
            lowercase: false,
            smooth_method: Smooth::Exp,
            smooth_value: None,
            max_ngram_order: MAX_NGRAM_ORDER,
            effective_order: false,
        }
    }
}

impl BleuConfig {
    /// The defaults of `sacrebleu.sentence_bleu`: as [`Default`], with effective order.
    pub fn sentence() -> Self {
        BleuConfig {
            effective_order: true,
            ..BleuConfig::default()
        }
    }

    /// Sets the tokenizer.
    pub fn with_tokenize(mut self, t: Tokenizer) -> Self {
        self.tokenize = t;
        self
    }

    /// Sets lowercasing.
    pub fn with_lowercase(mut self, lc: bool) -> Self {
        self.lowercase = lc;
        self
    }

    /// Sets the smoothing method and value.
    pub fn with_smooth(mut self, method: Smooth, value: Option<f64>) -> Self {
        self.smooth_method = method;
        self.smooth_value = value;
        self
    }

    /// Sets effective order.
    pub fn with_effective_order(mut self, eff: bool) -> Self {
        self.effective_order = eff;
        self
    }
}

/// A BLEU score with its statistics, named as sacrebleu's `BLEUScore` fields.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct BleuScore {
    /// BLEU on the 0–100 scale.
    pub score: f64,
    /// Matched n-grams per order (with `add-k` smoothing, sacrebleu reports them with k added).
    pub counts: Vec<f64>,
    /// Hypothesis n-grams per order (likewise).
    pub totals: Vec<f64>,
    /// Precisions per order, in percent.
    pub precisions: Vec<f64>,
    /// Brevity penalty.
    pub bp: f64,
    /// Hypothesis length in tokens.
    pub sys_len: u64,
    /// Effective reference length in tokens.
    pub ref_len: u64,
}

/// Sufficient statistics of BLEU: sacrebleu's `[hyp_len, ref_len, correct1..4, total1..4]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BleuStats {
    /// Hypothesis length.
    pub hyp_len: u64,
    /// Closest reference length (ties go to the shorter one).
    pub ref_len: u64,
    /// Clipped n-gram matches per order.
    pub correct: [u64; MAX_NGRAM_ORDER],
    /// Hypothesis n-grams per order.
    pub total: [u64; MAX_NGRAM_ORDER],
}

impl BleuStats {
    /// The statistics as sacrebleu lays them out: `[hyp_len, ref_len, correct.., total..]`.
    pub fn to_vec(&self, order: usize) -> Vec<u64> {
        let mut v = vec![self.hyp_len, self.ref_len];
        v.extend_from_slice(&self.correct[..order]);
        v.extend_from_slice(&self.total[..order]);
        v
    }
}

type NgramKey = u128;

/// References of one line, tokenized, with per-n-gram maximum counts over references.
#[derive(Debug, Clone)]
pub struct BleuRefs {
    vocab: Vocab,
    /// Every n-gram of the references to a dense id `0, 1, 2, …`.
    ngrams: FxHashMap<NgramKey, u32>,
    /// By n-gram id: its largest count in one reference.
    max_counts: Vec<u32>,
    lens: Vec<u64>,
}

/// Per-thread scratch space of BLEU, reused from line to line.
#[derive(Default)]
struct Scratch {
    /// Token ids of the references (concatenated).
    ids: Vec<u32>,
    /// Counts by n-gram id; all zero between calls.
    counts: Vec<u32>,
    /// Ids whose count is not zero.
    seen: Vec<u32>,
    /// By hypothesis n-gram id: its count in the current reference, and the largest
    /// count in one reference so far; all zero between calls.
    ref_counts: Vec<(u32, u32)>,
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// The BLEU metric with a fixed configuration.
///
/// # Examples
/// ```
/// use autoglm_eval::{Bleu, BleuConfig, Metric};
/// # fn main() -> autoglm_eval::Result<()> {
/// let bleu = Bleu::new(BleuConfig::sentence())?;
/// let s = bleu.line_stats("The cat sat on the mat.", &["The cat sat on the mat."])?;
/// assert_eq!(bleu.sentence_score_from(&s).score, 100.00000000000004); // as sacrebleu
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Bleu {
    config: BleuConfig,
}

impl Bleu {
    /// Validates the configuration.
    ///
    /// # Errors
    /// [`Error::InvalidOption`] for an n-gram order outside 1..=4 or a negative smoothing value.
    pub fn new(config: BleuConfig) -> Result<Self> {
        if !(1..=MAX_NGRAM_ORDER).contains(&config.max_ngram_order) {
            return Err(Error::InvalidOption {
                option: "max-ngram-order",
                reason: format!("{} is not in 1..=4", config.max_ngram_order),
            });
        }
        if let Some(v) = config.smooth_value {
            if !v.is_finite() || v < 0.0 {
                return Err(Error::InvalidOption {
                    option: "smooth-value",
                    reason: format!("{v} is not a finite non-negative number"),
                });
            }
        }
        Ok(Bleu { config })
    }

    /// The configuration.
    pub fn config(&self) -> &BleuConfig {
        &self.config
    }

    fn preprocess(&self, s: &str) -> String {
        let s = py_rstrip(s);
        if self.config.lowercase {
            self.config.tokenize.tokenize(&py_lower(s))
        } else {
            self.config.tokenize.tokenize(s)
        }
    }

    /// sacrebleu's `BLEU.compute_bleu`: the score from summed statistics, keeping its
    /// floating-point operation order.
    pub fn compute(&self, stats: &BleuStats, effective_order: bool) -> BleuScore {
        let order = self.config.max_ngram_order;
        let method = self.config.smooth_method;
        let smooth_value = self
            .config
            .smooth_value
            .or(method.default_value())
            .unwrap_or(0.0);
        let (sys_len, ref_len) = (stats.hyp_len, stats.ref_len);
        let mut bp = 1.0;
        if sys_len < ref_len {
            bp = if sys_len > 0 {
                (1.0 - ref_len as f64 / sys_len as f64).exp()
            } else {
                0.0
            };
        }
        let mut correct: Vec<f64> = stats.correct[..order].iter().map(|&c| c as f64).collect();
        let mut total: Vec<f64> = stats.total[..order].iter().map(|&c| c as f64).collect();
        let mut precisions = vec![0.0; order];
        if correct.iter().all(|&c| c == 0.0) {
            return BleuScore {
                score: 0.0,
                counts: correct,
                totals: total,
                precisions,
                bp,
                sys_len,
                ref_len,
            };
        }
        let mut smooth_mteval = 1.0f64;
        let mut eff_order = order;
        for n in 1..=order {
            if method == Smooth::AddK && n > 1 {
                correct[n - 1] += smooth_value;
                total[n - 1] += smooth_value;
            }
            if total[n - 1] == 0.0 {
                break;
            }
            if effective_order {
                eff_order = n;
            }
            if correct[n - 1] == 0.0 {
                match method {
                    Smooth::Exp => {
                        smooth_mteval *= 2.0;
                        precisions[n - 1] = 100.0 / (smooth_mteval * total[n - 1]);
                    }
                    Smooth::Floor => {
                        precisions[n - 1] = 100.0 * smooth_value / total[n - 1];
                    }
                    Smooth::None | Smooth::AddK => {}
                }
            } else {
                precisions[n - 1] = 100.0 * correct[n - 1] / total[n - 1];
            }
        }
        let log_sum = precisions[..eff_order]
            .iter()
            .fold(0.0f64, |acc, &p| acc + my_log(p));
        let score = bp * (log_sum / eff_order as f64).exp();
        BleuScore {
            score,
            counts: correct,
            totals: total,
            precisions,
            bp,
            sys_len,
            ref_len,
        }
    }
}

/// sacrebleu's `my_log`: log, with log(0) floored to -9999999999.
#[inline]
fn my_log(x: f64) -> f64 {
    if x == 0.0 {
        -9_999_999_999.0
    } else {
        x.ln()
    }
}

#[inline]
fn key(ids: &[u32]) -> NgramKey {
    ids.iter().fold(0u128, |k, &id| (k << 32) | id as u128)
}

fn closest_ref_len(hyp_len: u64, ref_lens: &[u64]) -> u64 {
    let mut best: Option<(u64, u64)> = None;
    for &r in ref_lens {
        let diff = hyp_len.abs_diff(r);
        best = match best {
            None => Some((diff, r)),
            Some((d, _)) if diff < d => Some((diff, r)),
            Some((d, l)) if diff == d && r < l => Some((d, r)),
            b => b,
        };
    }
    best.map_or(0, |(_, l)| l)
}

impl Metric for Bleu {
    type Refs = BleuRefs;
    type Stats = BleuStats;
    type Score = BleuScore;

    fn prepare_refs(&self, refs: &[&str]) -> BleuRefs {
        let order = self.config.max_ngram_order;
        let mut vocab = Vocab::default();
        let mut lens = Vec::with_capacity(refs.len());
        SCRATCH.with(|sc| {
            let Scratch {
                ids, counts, seen, ..
            } = &mut *sc.borrow_mut();
            ids.clear();
            let mut bound = 0;
            for r in refs {
                let tok = self.preprocess(r);
                let start = ids.len();
                for t in py_split(&tok) {
                    // Ids start at 1: 0 marks hypothesis tokens that no reference has.
                    ids.push(vocab.intern(t) + 1);
                }
                let len = ids.len() - start;
                lens.push(len as u64);
                bound += (1..=order)
                    .map(|n| (len + 1).saturating_sub(n))
                    .sum::<usize>();
            }
            let mut ngrams: FxHashMap<NgramKey, u32> =
                FxHashMap::with_capacity_and_hasher(bound, Default::default());
            let mut max_counts: Vec<u32> = Vec::with_capacity(bound);
            if counts.len() < bound {
                counts.resize(bound, 0);
            }
            let mut start = 0;
            for &len in &lens {
                let r = &ids[start..start + len as usize];
                start += len as usize;
                seen.clear();
                for n in 1..=order {
                    for w in r.windows(n) {
                        let next = ngrams.len() as u32;
                        let id = *ngrams.entry(key(w)).or_insert(next);
                        if id == next {
                            max_counts.push(0);
                        }
                        let c = &mut counts[id as usize];
                        if *c == 0 {
                            seen.push(id);
                        }
                        *c += 1;
                    }
                }
                for &id in seen.iter() {
                    let c = std::mem::take(&mut counts[id as usize]);
                    let m = &mut max_counts[id as usize];
                    *m = (*m).max(c);
                }
            }
            BleuRefs {
                vocab,
                ngrams,
                max_counts,
                lens,
            }
        })
    }

    fn segment_stats(&self, hyp: &str, refs: &BleuRefs) -> BleuStats {
        let order = self.config.max_ngram_order;
        let tok = self.preprocess(hyp);
        // Tokens unknown to the references get id 0: no n-gram containing one can match.
        let ids: Vec<u32> = py_split(&tok)
            .map(|t| refs.vocab.get(t).map_or(0, |id| id + 1))
            .collect();
        let hyp_len = ids.len() as u64;
        let mut stats = BleuStats {
            hyp_len,
            ref_len: closest_ref_len(hyp_len, &refs.lens),
            ..BleuStats::default()
        };
        SCRATCH.with(|sc| {
            let Scratch { counts, seen, .. } = &mut *sc.borrow_mut();
            if counts.len() < refs.max_counts.len() {
                counts.resize(refs.max_counts.len(), 0);
            }
            for n in 1..=order {
                if ids.len() < n {
                    break;
                }
                stats.total[n - 1] = (ids.len() + 1 - n) as u64;
                // Count the hypothesis n-grams that some reference has, then clip.
                seen.clear();
                for w in ids.windows(n) {
                    if w.contains(&0) {
                        continue;
                    }
                    if let Some(&id) = refs.ngrams.get(&key(w)) {
                        let c = &mut counts[id as usize];
                        if *c == 0 {
                            seen.push(id);
                        }
                        *c += 1;
                    }
                }
                for &id in seen.iter() {
                    let c = std::mem::take(&mut counts[id as usize]);
                    stats.correct[n - 1] += c.min(refs.max_counts[id as usize]) as u64;
                }
            }
        });
        stats
    }

    fn segment_stats_unprepared(&self, hyp: &str, refs: &[&str]) -> BleuStats {
        // The references serve this hypothesis only: index the hypothesis' n-grams and
        // count the references' ones among them.
        let order = self.config.max_ngram_order;
        let mut vocab = Vocab::default();
        let tok = self.preprocess(hyp);
        // Ids start at 1: 0 marks reference tokens that the hypothesis does not have.
        let ids: Vec<u32> = py_split(&tok).map(|t| vocab.intern(t) + 1).collect();
        let hyp_len = ids.len() as u64;
        let mut stats = BleuStats {
            hyp_len,
            ..BleuStats::default()
        };
        let bound: usize = (1..=order).map(|n| (ids.len() + 1).saturating_sub(n)).sum();
        let mut ngrams: FxHashMap<NgramKey, u32> =
            FxHashMap::with_capacity_and_hasher(bound, Default::default());
        // Ids of the n-grams of order n are `ends[n - 2]..ends[n - 1]` (from 0 for n = 1).
        let mut ends = [0usize; MAX_NGRAM_ORDER];
        SCRATCH.with(|sc| {
            let Scratch {
                counts, ref_counts, ..
            } = &mut *sc.borrow_mut();
            if counts.len() < bound {
                counts.resize(bound, 0);
            }
            if ref_counts.len() < bound {
                ref_counts.resize(bound, (0, 0));
            }
            for n in 1..=order.min(ids.len()) {
                stats.total[n - 1] = (ids.len() + 1 - n) as u64;
                for w in ids.windows(n) {
                    let next = ngrams.len() as u32;
                    let id = *ngrams.entry(key(w)).or_insert(next);
                    counts[id as usize] += 1;
                }
                ends[n - 1] = ngrams.len();
            }
            let n_ids = ngrams.len();
            let mut lens = Vec::with_capacity(refs.len());
            let mut rids: Vec<u32> = Vec::new();
            for r in refs {
                let tok = self.preprocess(r);
                rids.clear();
                rids.extend(py_split(&tok).map(|t| vocab.get(t).map_or(0, |id| id + 1)));
                lens.push(rids.len() as u64);
                for n in 1..=order.min(ids.len()) {
                    for w in rids.windows(n) {
                        if w.contains(&0) {
                            continue;
                        }
                        if let Some(&id) = ngrams.get(&key(w)) {
                            ref_counts[id as usize].0 += 1;
                        }
                    }
                }
                for (c, max) in &mut ref_counts[..n_ids] {
                    *max = (*max).max(std::mem::take(c));
                }
            }
            stats.ref_len = closest_ref_len(hyp_len, &lens);
            let mut start = 0;
            for n in 1..=order.min(ids.len()) {
                for id in start..ends[n - 1] {
                    let c = std::mem::take(&mut counts[id]);
                    let (_, max) = std::mem::take(&mut ref_counts[id]);
                    stats.correct[n - 1] += c.min(max) as u64;
                }
                start = ends[n - 1];
            }
        });
        stats
    }

    fn zero_stats(&self) -> BleuStats {
        BleuStats::default()
    }

    fn add_stats(&self, acc: &mut BleuStats, s: &BleuStats) {
        acc.hyp_len += s.hyp_len;
        acc.ref_len += s.ref_len;
        for i in 0..MAX_NGRAM_ORDER {
            acc.correct[i] += s.correct[i];
            acc.total[i] += s.total[i];
        }
    }

    fn corpus_score_from(&self, stats: &BleuStats) -> BleuScore {
        self.compute(stats, self.config.effective_order)
    }

    fn sentence_score_from(&self, stats: &BleuStats) -> BleuScore {
        self.compute(stats, self.config.effective_order)
    }

    fn value(score: &BleuScore) -> f64 {
        score.score
    }

    fn signature(&self, nrefs: NumRefs) -> Signature {
        let c = &self.config;
        let mut sig = Signature::new(nrefs);
        sig.set("case", if c.lowercase { "lc" } else { "mixed" });
        sig.set("eff", yes_no(c.effective_order));
        sig.set("tok", c.tokenize.name());
        let mut smooth = c.smooth_method.name().to_owned();
        if let Some(def) = c.smooth_method.default_value() {
            smooth.push_str(&format!("[{:.2}]", c.smooth_value.unwrap_or(def)));
        }
        sig.set("smooth", smooth);
        sig
    }

    fn name(&self) -> String {
        "BLEU".to_owned()
    }
}

/// Corpus BLEU (sacrebleu's `corpus_bleu`): `refs[i]` are the references of line `i`.
///
/// # Errors
/// Invalid configuration, mismatched lengths, a line without references, or no lines.
///
/// # Examples
/// ```
/// # fn main() -> autoglm_eval::Result<()> {
/// let hyps = ["The dog bit the man.", "It was not unexpected."];
/// let refs = [vec!["The dog bit the man."], vec!["It was not surprising.", "No surprise."]];
/// let s = autoglm_eval::corpus_bleu(&hyps, &refs, &Default::default())?;
/// assert!((s.score - 74.19446627365011).abs() < 1e-9); // sacrebleu 2.6.0
/// # Ok(()) }
/// ```
pub fn corpus_bleu<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[Vec<R>],
    config: &BleuConfig,
) -> Result<BleuScore> {
    let bleu = Bleu::new(config.clone())?;
    score_corpus(&bleu, hyps, refs)?.finish()
}

/// Sentence BLEU (sacrebleu's `sentence_bleu`; pass [`BleuConfig::sentence`] for its defaults).
///
/// # Errors
/// Invalid configuration or no reference.
pub fn sentence_bleu(hyp: &str, refs: &[&str], config: &BleuConfig) -> Result<BleuScore> {
    let bleu = Bleu::new(config.clone())?;
    let stats = bleu.line_stats(hyp, refs)?;
    Ok(bleu.sentence_score_from(&stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// sacrebleu's statistics the plain way: per-reference counters of token n-grams,
    /// clipped by the largest count in any reference.
    fn naive_stats(m: &Bleu, hyp: &str, refs: &[&str]) -> BleuStats {
        use std::collections::HashMap;
        let order = m.config().max_ngram_order;
        let counter = |s: &str| -> (u64, HashMap<Vec<String>, u64>) {
            let tok = m.preprocess(s);
            let words: Vec<String> = py_split(&tok).map(str::to_owned).collect();
            let mut c: HashMap<Vec<String>, u64> = HashMap::new();
            for n in 1..=order {
                for w in words.windows(n) {
                    *c.entry(w.to_vec()).or_default() += 1;
                }
            }
            (words.len() as u64, c)
        };
        let (hyp_len, h) = counter(hyp);
        let mut max_ref: HashMap<Vec<String>, u64> = HashMap::new();
        let mut lens = Vec::new();
        for r in refs {
            let (len, c) = counter(r);
            lens.push(len);
            for (k, n) in c {
                let e = max_ref.entry(k).or_default();
                *e = (*e).max(n);
            }
        }
        let mut stats = BleuStats {
            hyp_len,
            ref_len: closest_ref_len(hyp_len, &lens),
            ..BleuStats::default()
        };
        for (k, &n) in &h {
            stats.total[k.len() - 1] += n;
            stats.correct[k.len() - 1] += n.min(max_ref.get(k).copied().unwrap_or(0));
        }
        stats
    }

    #[test]
    fn indexed_statistics_equal_plain_counting() {
        const WORDS: [&str; 8] = ["a", "b", "the", "cat", ".", "a", "b", "Cat"];
        let mut seed = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut line = |max_len: u64| -> String {
            let len = next() % (max_len + 1);
            (0..len)
                .map(|_| WORDS[(next() % WORDS.len() as u64) as usize])
                .collect::<Vec<_>>()
                .join(" ")
        };
        for round in 0..300 {
            let m = Bleu::new(
                BleuConfig {
                    max_ngram_order: 1 + round % 4,
                    ..BleuConfig::default()
                }
                .with_lowercase(round % 3 == 1),
            )
            .expect("config");
            let max_len = [0, 2, 8, 40, 200][round % 5];
            let lines: Vec<Vec<String>> = (0..3)
                .map(|_| (0..1 + round % 4).map(|_| line(max_len)).collect())
                .collect();
            let prepared: Vec<BleuRefs> = lines
                .iter()
                .map(|r| m.prepare_refs(&r.iter().map(String::as_str).collect::<Vec<_>>()))
                .collect();
            for _ in 0..3 {
                for (r, p) in lines.iter().zip(&prepared) {
                    let refs: Vec<&str> = r.iter().map(String::as_str).collect();
                    let hyp = line(max_len);
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
