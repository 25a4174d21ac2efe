//! ROUGE-N, ROUGE-L and ROUGE-Lsum exactly as Google's rouge-score 0.1.2 computes them,
//! with its tokenizer, NLTK's Porter stemmer and `score_multi`; plus an opt-in
//! tokenizer that keeps CJK characters, which rouge-score drops.

use std::fmt;
use std::str::FromStr;

use rustc_hash::FxHashMap;

use crate::error::{Error, Result};
use crate::porter::porter_stem;
use crate::text::{count_sorted, Vocab};

/// A ROUGE variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RougeType {
    /// ROUGE-N: clipped n-gram overlap (`rouge1` … `rouge9`).
    N(u8),
    /// ROUGE-L: longest common subsequence over the whole text.
    L,
    /// ROUGE-Lsum: summary-level LCS over newline-separated sentences.
    LSum,
}

impl RougeType {
    /// The four types most reports use: rouge1, rouge2, rougeL, rougeLsum.
    pub const STANDARD: [RougeType; 4] = [
        RougeType::N(1),
        RougeType::N(2),
        RougeType::L,
        RougeType::LSum,
    ];
}

impl fmt::Display for RougeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RougeType::N(n) => write!(f, "rouge{n}"),
            RougeType::L => f.write_str("rougeL"),
            RougeType::LSum => f.write_str("rougeLsum"),
        }
    }
}

impl FromStr for RougeType {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "rougeL" => Ok(RougeType::L),
            "rougeLsum" => Ok(RougeType::LSum),
            _ => match s.strip_prefix("rouge").map(str::as_bytes) {
                Some([d @ b'1'..=b'9']) => Ok(RougeType::N(d - b'0')),
                _ => Err(Error::UnknownOption {
                    option: "types",
                    value: s.to_owned(),
                    expected: "rouge1..rouge9, rougeL, rougeLsum",
                }),
            },
        }
    }
}

/// How text becomes tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum RougeTokenizer {
    /// rouge-score's tokenizer: lowercase, keep runs of `[a-z0-9]`, drop everything else
    /// (so Chinese, Japanese, Korean and accented letters vanish).
    #[default]
    Default,
    /// As `Default`, but every CJK ideograph, kana and Hangul syllable is a token of its
    /// own (not rouge-score compatible; for Chinese and other CJK text).
    Cjk,
}

/// ROUGE options.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct RougeConfig {
    /// Porter-stem tokens longer than 3 characters (rouge-score's `use_stemmer`).
    pub use_stemmer: bool,
    /// The tokenizer.
    pub tokenizer: RougeTokenizer,
}

impl Default for RougeConfig {
    fn default() -> Self {
        RougeConfig {
            use_stemmer: false,
            tokenizer: RougeTokenizer::Default,
        }
    }
}

impl RougeConfig {
    /// Sets stemming.
    pub fn with_stemmer(mut self, stem: bool) -> Self {
        self.use_stemmer = stem;
        self
    }
    /// Sets the tokenizer.
    pub fn with_tokenizer(mut self, t: RougeTokenizer) -> Self {
        self.tokenizer = t;
        self
    }
}

/// Precision, recall and F1 of one comparison (rouge-score's `Score`).
#[derive(Debug, Clone, Copy, PartialEq, Default, serde::Serialize)]
pub struct RougeScore {
    /// Precision.
    pub precision: f64,
    /// Recall.
    pub recall: f64,
    /// F1.
    pub fmeasure: f64,
}

impl RougeScore {
    fn new(precision: f64, recall: f64) -> Self {
        RougeScore {
            precision,
            recall,
            fmeasure: fmeasure(precision, recall),
        }
    }
}

fn fmeasure(p: f64, r: f64) -> f64 {
    if p + r > 0.0 {
        2.0 * p * r / (p + r)
    } else {
        0.0
    }
}

fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x3400..=0x4DBF | 0x4E00..=0x9FFF | 0xF900..=0xFAFF | 0x20000..=0x2FA1F | 0x30000..=0x323AF
        | 0x3040..=0x30FF | 0x31F0..=0x31FF | 0xAC00..=0xD7AF)
}

/// rouge-score's tokenizer (or the CJK variant): the tokens of `text`, stemmed if asked.
///
/// # Examples
/// ```
/// use autoglm_eval::{rouge_tokenize, RougeConfig};
/// let toks = rouge_tokenize("The Café's 2 dogs-running!", &RougeConfig::default().with_stemmer(true));
/// assert_eq!(toks, ["the", "caf", "s", "2", "dog", "run"]);
/// ```
pub fn rouge_tokenize(text: &str, config: &RougeConfig) -> Vec<String> {
    let mut out = Vec::new();
    tokenize_into(text, config, &mut |t| out.push(t.to_owned()));
    out
}

fn tokenize_into(text: &str, config: &RougeConfig, emit: &mut dyn FnMut(&str)) {
    let cjk = config.tokenizer == RougeTokenizer::Cjk;
    let mut cur = String::new();
    let flush = |cur: &mut String, emit: &mut dyn FnMut(&str)| {
        if !cur.is_empty() {
            if config.use_stemmer && cur.len() > 3 {
                emit(&porter_stem(cur));
            } else {
                emit(cur);
            }
            cur.clear();
        }
    };
    for c in text.chars() {
        if c.is_ascii() {
            let l = c.to_ascii_lowercase();
            if l.is_ascii_lowercase() || l.is_ascii_digit() {
                cur.push(l);
            } else {
                flush(&mut cur, emit);
            }
        } else if cjk && is_cjk(c) {
            flush(&mut cur, emit);
            let mut b = [0u8; 4];
            emit(c.encode_utf8(&mut b));
        } else {
            // Python's str.lower() maps a few non-ASCII letters to ASCII ones
            // (U+0130 → "i̇", U+212A KELVIN SIGN → "k").
            for l in c.to_lowercase() {
                if l.is_ascii_lowercase() || l.is_ascii_digit() {
                    cur.push(l);
                } else {
                    flush(&mut cur, emit);
                }
            }
        }
    }
    flush(&mut cur, emit);
}

/// A tokenized text: token ids, and where its newline-separated sentences end.
#[derive(Debug, Clone, Default)]
struct Tokens {
    ids: Vec<u32>,
    /// Token ranges of the non-empty sentences (for ROUGE-Lsum).
    sents: Vec<(u32, u32)>,
    /// Sorted `(n-gram, count)` lists, one per ROUGE-N type of the scorer.
    ngrams: Vec<Vec<(u128, u32)>>,
}

/// Targets (references) prepared for scoring many predictions against them.
#[derive(Debug, Clone)]
pub struct RougeTargets {
    vocab: Vocab,
    targets: Vec<Tokens>,
}

/// Id of prediction tokens that no target contains.
const UNKNOWN: u32 = u32::MAX;

thread_local! {
    /// Porter stems already computed on this thread (stemming dominates tokenization).
    static STEMS: std::cell::RefCell<FxHashMap<Box<str>, Box<str>>> =
        std::cell::RefCell::new(FxHashMap::default());
}

fn stem_cached(word: &str, emit: &mut dyn FnMut(&str)) {
    STEMS.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(s) = c.get(word) {
            emit(s);
            return;
        }
        let s = porter_stem(word);
        emit(&s);
        if c.len() >= 1 << 16 {
            c.clear();
        }
        c.insert(word.into(), s.into());
    });
}

/// Scores predictions against targets with a fixed set of ROUGE types.
///
/// # Examples
/// ```
/// use autoglm_eval::{RougeConfig, RougeScorer, RougeType};
/// # fn main() -> autoglm_eval::Result<()> {
/// let scorer = RougeScorer::new(&RougeType::STANDARD, RougeConfig::default())?;
/// let s = scorer.score("The quick brown fox jumps over the lazy dog",
///                      "The quick brown dog jumps on the log.");
/// assert_eq!(s[0].fmeasure, 0.7058823529411765); // rouge1, as rouge-score
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct RougeScorer {
    types: Vec<RougeType>,
    config: RougeConfig,
}

impl RougeScorer {
    /// A scorer for `types` (in this order in every result).
    ///
    /// # Errors
    /// [`Error::InvalidOption`] when `types` is empty.
    pub fn new(types: &[RougeType], config: RougeConfig) -> Result<Self> {
        if types.is_empty() {
            return Err(Error::InvalidOption {
                option: "types",
                reason: "no ROUGE type given".to_owned(),
            });
        }
        Ok(RougeScorer {
            types: types.to_vec(),
            config,
        })
    }

    /// The types, in result order.
    pub fn types(&self) -> &[RougeType] {
        &self.types
    }

    /// The configuration.
    pub fn config(&self) -> &RougeConfig {
        &self.config
    }

    fn tokens(&self, text: &str, mut id: impl FnMut(&str) -> u32) -> Tokens {
        let mut t = Tokens::default();
        let stem = self.config.use_stemmer;
        let cfg = RougeConfig {
            use_stemmer: false,
            ..self.config.clone()
        };
        let mut push = |tok: &str, ids: &mut Vec<u32>| {
            if stem && tok.len() > 3 {
                stem_cached(tok, &mut |s| ids.push(id(s)));
            } else {
                ids.push(id(tok));
            }
        };
        if self.types.contains(&RougeType::LSum) {
            // The whole-text tokens (ROUGE-N, ROUGE-L) equal the concatenated sentence
            // tokens, since '\n' separates tokens either way.
            for sent in text.split('\n').filter(|s| !s.is_empty()) {
                let start = t.ids.len() as u32;
                tokenize_into(sent, &cfg, &mut |tok| push(tok, &mut t.ids));
                t.sents.push((start, t.ids.len() as u32));
            }
        } else {
            tokenize_into(text, &cfg, &mut |tok| push(tok, &mut t.ids));
        }
        for ty in &self.types {
            if let RougeType::N(n) = *ty {
                t.ngrams.push(sorted_ngrams(&t.ids, n as usize));
            }
        }
        t
    }

    /// Tokenizes the targets of one prediction once, so several predictions (systems)
    /// can be scored against them.
    pub fn prepare_targets(&self, targets: &[&str]) -> RougeTargets {
        let mut vocab = Vocab::default();
        let targets = targets
            .iter()
            .map(|t| self.tokens(t, |tok| vocab.intern(tok)))
            .collect();
        RougeTargets { vocab, targets }
    }

    /// rouge-score's `score(target, prediction)`: one score per type, in type order.
    /// Note the argument order: target (reference) first.
    pub fn score(&self, target: &str, prediction: &str) -> Vec<RougeScore> {
        let t = self.prepare_targets(&[target]);
        self.score_prepared(&t, prediction)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    }

    /// rouge-score's `score_multi(targets, prediction)`: for each type, the score
    /// against the target with the highest F (the first one on ties).
    ///
    /// # Errors
    /// [`Error::NoReference`] when `targets` is empty.
    pub fn score_multi(&self, targets: &[&str], prediction: &str) -> Result<Vec<RougeScore>> {
        if targets.is_empty() {
            return Err(Error::NoReference { line: 1 });
        }
        let t = self.prepare_targets(targets);
        Ok(self
            .score_prepared(&t, prediction)
            .into_iter()
            .map(|(s, _)| s)
            .collect())
    }

    /// Scores against prepared targets: for each type, the best score and the index of
    /// the target it came from (as `score_multi`). With no target, every score is zero.
    pub fn score_prepared(
        &self,
        targets: &RougeTargets,
        prediction: &str,
    ) -> Vec<(RougeScore, usize)> {
        let pred = self.tokens(prediction, |tok| targets.vocab.get(tok).unwrap_or(UNKNOWN));
        let mut best: Vec<(RougeScore, usize)> = vec![(RougeScore::default(), 0); self.types.len()];
        WORKSPACE.with(|ws| {
            let ws = &mut *ws.borrow_mut();
            for (ti, target) in targets.targets.iter().enumerate() {
                let mut lcs: Option<RougeScore> = None;
                let mut nk = 0;
                for (k, &ty) in self.types.iter().enumerate() {
                    let s = match ty {
                        RougeType::N(n) => {
                            let s = score_ngrams(
                                &target.ngrams[nk],
                                &pred.ngrams[nk],
                                &target.ids,
                                &pred.ids,
                                n as usize,
                            );
                            nk += 1;
                            s
                        }
                        RougeType::L => {
                            *lcs.get_or_insert_with(|| score_lcs(&target.ids, &pred.ids, ws))
                        }
                        RougeType::LSum => {
                            if target.sents.len() == 1 && pred.sents.len() == 1 {
                                // One sentence on each side: every LCS token is a hit, so
                                // ROUGE-Lsum equals ROUGE-L.
                                *lcs.get_or_insert_with(|| score_lcs(&target.ids, &pred.ids, ws))
                            } else {
                                summary_lcs(target, &pred, targets.vocab.len(), ws)
                            }
                        }
                    };
                    if ti == 0 || s.fmeasure > best[k].0.fmeasure {
                        best[k] = (s, ti);
                    }
                }
            }
        });
        best
    }
}

thread_local! {
    static WORKSPACE: std::cell::RefCell<Workspace> = std::cell::RefCell::new(Workspace::default());
}

/// Scratch memory reused across comparisons.
#[derive(Default)]
struct Workspace {
    /// Match bit masks per token id (`words` u64 per id), all zero between uses.
    masks: Vec<u64>,
    v: Vec<u64>,
    table: Vec<u32>,
    union: Vec<bool>,
    cnt_r: Vec<i32>,
    cnt_c: Vec<i32>,
}

/// Sorted `(n-gram key, count)` pairs for n <= 4 (ids packed into 128 bits); empty for
/// longer n-grams, which are compared directly.
fn sorted_ngrams(ids: &[u32], n: usize) -> Vec<(u128, u32)> {
    if n == 0 || n > 4 || ids.len() < n {
        return Vec::new();
    }
    count_sorted(
        ids.windows(n)
            .map(|w| w.iter().fold(0u128, |k, &c| (k << 32) | c as u128))
            .collect(),
    )
}

fn score_ngrams(
    t: &[(u128, u32)],
    p: &[(u128, u32)],
    target: &[u32],
    pred: &[u32],
    n: usize,
) -> RougeScore {
    let inter = if n <= 4 {
        let (mut i, mut j, mut inter) = (0, 0, 0u64);
        while i < t.len() && j < p.len() {
            match t[i].0.cmp(&p[j].0) {
                std::cmp::Ordering::Less => i += 1,
                std::cmp::Ordering::Greater => j += 1,
                std::cmp::Ordering::Equal => {
                    inter += t[i].1.min(p[j].1) as u64;
                    i += 1;
                    j += 1;
                }
            }
        }
        inter
    } else {
        let mut m: FxHashMap<&[u32], (u32, u32)> = FxHashMap::default();
        for w in target.windows(n) {
            m.entry(w).or_insert((0, 0)).0 += 1;
        }
        for w in pred.windows(n) {
            if let Some(e) = m.get_mut(w) {
                e.1 += 1;
            }
        }
        m.values().map(|&(a, b)| a.min(b) as u64).sum()
    };
    let t_total = target.len().saturating_sub(n - 1);
    let p_total = pred.len().saturating_sub(n - 1);
    let precision = inter as f64 / p_total.max(1) as f64;
    let recall = inter as f64 / t_total.max(1) as f64;
    RougeScore::new(precision, recall)
}

/// LCS length by the bit-vector algorithm of Crochemore et al. (2001):
/// O(|b| · ⌈|a|/64⌉) word operations.
fn lcs_len(a: &[u32], b: &[u32], ws: &mut Workspace) -> u32 {
    let m = a.len();
    let words = m.div_ceil(64);
    // Match masks of a's tokens (ids of a are known tokens, dense from 0).
    let need = a.iter().map(|&x| x as usize + 1).max().unwrap_or(0) * words;
    if ws.masks.len() < need {
        ws.masks.resize(need, 0);
    }
    for (i, &x) in a.iter().enumerate() {
        ws.masks[x as usize * words + i / 64] |= 1u64 << (i % 64);
    }
    ws.v.clear();
    ws.v.resize(words, u64::MAX);
    let limit = need / words.max(1);
    for &y in b {
        let y = y as usize;
        if y >= limit {
            continue; // no match anywhere: V is unchanged
        }
        let mask = &ws.masks[y * words..(y + 1) * words];
        let mut carry = 0u64;
        for (v, &mk) in ws.v.iter_mut().zip(mask) {
            let u = *v & mk;
            let (s1, c1) = v.overflowing_add(u);
            let (s2, c2) = s1.overflowing_add(carry);
            carry = u64::from(c1 | c2);
            *v = s2 | (*v & !mk);
        }
    }
    let mut zeros = 0u32;
    for (k, &v) in ws.v.iter().enumerate() {
        let bits = (m - k * 64).min(64);
        let valid = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        zeros += (!v & valid).count_ones();
    }
    for &x in a {
        for w in &mut ws.masks[x as usize * words..(x as usize + 1) * words] {
            *w = 0;
        }
    }
    zeros
}

fn score_lcs(target: &[u32], pred: &[u32], ws: &mut Workspace) -> RougeScore {
    if target.is_empty() || pred.is_empty() {
        return RougeScore::default();
    }
    let l = lcs_len(target, pred, ws) as f64;
    RougeScore::new(l / pred.len() as f64, l / target.len() as f64)
}

/// Marks in `ws.union` the indices of `r` on one LCS with `c`, chosen by rouge-score's
/// backtrack (`_backtrack_norec`).
fn mark_lcs(r: &[u32], c: &[u32], ws: &mut Workspace) {
    let cols = c.len() + 1;
    let t = &mut ws.table;
    t.clear();
    t.resize((r.len() + 1) * cols, 0);
    for i in 1..=r.len() {
        for j in 1..=c.len() {
            t[i * cols + j] = if r[i - 1] == c[j - 1] {
                t[(i - 1) * cols + j - 1] + 1
            } else {
                t[(i - 1) * cols + j].max(t[i * cols + j - 1])
            };
        }
    }
    let (mut i, mut j) = (r.len(), c.len());
    while i > 0 && j > 0 {
        if r[i - 1] == c[j - 1] {
            ws.union[i - 1] = true;
            i -= 1;
            j -= 1;
        } else if t[i * cols + j - 1] > t[(i - 1) * cols + j] {
            j -= 1;
        } else {
            i -= 1;
        }
    }
}

fn summary_lcs(target: &Tokens, pred: &Tokens, vocab: usize, ws: &mut Workspace) -> RougeScore {
    if target.sents.is_empty() || pred.sents.is_empty() {
        return RougeScore::default();
    }
    let m = target.ids.len();
    let n = pred.ids.len();
    if m == 0 || n == 0 {
        return RougeScore::default();
    }
    // Token budgets; unknown prediction tokens never occur in a target sentence.
    ws.cnt_r.clear();
    ws.cnt_r.resize(vocab, 0);
    ws.cnt_c.clear();
    ws.cnt_c.resize(vocab, 0);
    for &t in &target.ids {
        ws.cnt_r[t as usize] += 1;
    }
    for &t in &pred.ids {
        if t != UNKNOWN {
            ws.cnt_c[t as usize] += 1;
        }
    }
    let mut hits = 0u64;
    for &(rs, re) in &target.sents {
        let r = &target.ids[rs as usize..re as usize];
        ws.union.clear();
        ws.union.resize(r.len(), false);
        for &(cs, ce) in &pred.sents {
            let c = &pred.ids[cs as usize..ce as usize];
            mark_lcs(r, c, ws);
        }
        for (i, &t) in r.iter().enumerate() {
            if ws.union[i] {
                let t = t as usize;
                if ws.cnt_c[t] > 0 && ws.cnt_r[t] > 0 {
                    hits += 1;
                    ws.cnt_c[t] -= 1;
                    ws.cnt_r[t] -= 1;
                }
            }
        }
    }
    RougeScore::new(hits as f64 / n as f64, hits as f64 / m as f64)
}

/// Low, mid and high bounds of a bootstrap confidence interval (rouge-score's
/// `AggregateScore`).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct AggregateScore {
    /// The 2.5th percentile of the bootstrap means (for a 95% interval).
    pub low: RougeScore,
    /// The median of the bootstrap means.
    pub mid: RougeScore,
    /// The 97.5th percentile of the bootstrap means.
    pub high: RougeScore,
}

/// rouge-score's `BootstrapAggregator(confidence_interval, n_samples).aggregate()` after
/// `numpy.random.seed(seed)`: for each column of scores (in order, consuming one random
/// stream), `n_samples` resamples with replacement, the mean of each, and the percentiles.
///
/// Resampling draws from MT19937 with numpy's legacy bounded-integer method, so with the
/// same seed the resamples are numpy's.
///
/// # Errors
/// [`Error::EmptyCorpus`] for a column without scores; [`Error::InvalidOption`] for a
/// confidence interval outside [0, 1] or zero samples.
pub fn bootstrap_aggregate(
    columns: &[&[RougeScore]],
    n_samples: usize,
    confidence_interval: f64,
    seed: u32,
) -> Result<Vec<AggregateScore>> {
    if !(0.0..=1.0).contains(&confidence_interval) {
        return Err(Error::InvalidOption {
            option: "confidence-interval",
            reason: format!("{confidence_interval} is not in [0, 1]"),
        });
    }
    if n_samples == 0 {
        return Err(Error::InvalidOption {
            option: "bootstrap",
            reason: "the number of samples must be positive".to_owned(),
        });
    }
    let mut rng = rand_mt::Mt::new(seed);
    let delta = (1.0 - confidence_interval) / 2.0;
    let q = [100.0 * delta, 100.0 * 0.5, 100.0 * (1.0 - delta)];
    let mut out = Vec::with_capacity(columns.len());
    for col in columns {
        let n = col.len();
        if n == 0 {
            return Err(Error::EmptyCorpus);
        }
        let rng_max = (n - 1) as u32;
        let mask = if rng_max == 0 {
            0
        } else {
            u32::MAX >> rng_max.leading_zeros()
        };
        let mut means: [Vec<f64>; 3] = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..n_samples {
            let mut sum = [0.0f64; 3];
            for _ in 0..n {
                let idx = if rng_max == 0 {
                    0
                } else {
                    loop {
                        let v = rng.next_u32() & mask;
                        if v <= rng_max {
                            break v;
                        }
                    }
                };
                let s = &col[idx as usize];
                sum[0] += s.precision;
                sum[1] += s.recall;
                sum[2] += s.fmeasure;
            }
            for k in 0..3 {
                means[k].push(sum[k] / n as f64);
            }
        }
        let mut bounds = [[0.0f64; 3]; 3];
        for (k, m) in means.iter_mut().enumerate() {
            m.sort_by(f64::total_cmp);
            for (b, &qq) in q.iter().enumerate() {
                bounds[b][k] = percentile_linear(m, qq / 100.0);
            }
        }
        let mk = |b: [f64; 3]| RougeScore {
            precision: b[0],
            recall: b[1],
            fmeasure: b[2],
        };
        out.push(AggregateScore {
            low: mk(bounds[0]),
            mid: mk(bounds[1]),
            high: mk(bounds[2]),
        });
    }
    Ok(out)
}

/// numpy's `quantile(..., method="linear")` on sorted data, with numpy's `_lerp`.
fn percentile_linear(sorted: &[f64], quantile: f64) -> f64 {
    let n = sorted.len();
    let vi = (n - 1) as f64 * quantile;
    let prev = vi.floor();
    let gamma = vi - prev;
    let pi = (prev as usize).min(n - 1);
    let ni = (pi + 1).min(n - 1);
    let (a, b) = (sorted[pi], sorted[ni]);
    let diff = b - a;
    if gamma >= 0.5 {
        b - diff * (1.0 - gamma)
    } else {
        a + diff * gamma
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_types() {
        assert_eq!("rouge2".parse::<RougeType>().unwrap(), RougeType::N(2));
        assert_eq!("rougeLsum".parse::<RougeType>().unwrap(), RougeType::LSum);
        assert!("rouge0".parse::<RougeType>().is_err());
        assert!("bleu".parse::<RougeType>().is_err());
    }

    #[test]
    fn cjk_tokenizer_keeps_ideographs() {
        let c = RougeConfig::default().with_tokenizer(RougeTokenizer::Cjk);
        assert_eq!(
            rouge_tokenize("我爱GLM-4模型", &c),
            ["我", "爱", "glm", "4", "模", "型"]
        );
        assert!(rouge_tokenize("我爱", &RougeConfig::default()).is_empty());
    }

    #[test]
    fn lsum_uses_sentences() {
        let s = RougeScorer::new(&[RougeType::LSum], RougeConfig::default()).unwrap();
        let r = s.score("a b c\nd e", "a b\nd e c");
        assert_eq!(r[0].recall, 1.0);
        let r = s.score("a b c\nd e", "a b");
        assert!((r[0].recall - 0.4).abs() < 1e-12);
    }
}
