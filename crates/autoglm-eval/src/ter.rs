//! TER exactly as sacrebleu 2.6.0 computes it (its re-implementation of tercom):
//! beam edit distance around the pseudo-diagonal, greedy shifts with tercom's
//! candidate filters, tie rules and candidate budget.

use rustc_hash::FxHashMap;

use crate::error::Result;
use crate::metric::{score_corpus, Metric};
use crate::signature::{yes_no, NumRefs, Signature};
use crate::text::{collapse_whitespace, py_lower, py_rstrip, unescape_xml, Vocab};
use crate::tokenize::{regexp_passes, replace_bytes};

const MAX_SHIFT_SIZE: usize = 10;
const MAX_SHIFT_DIST: i64 = 50;
const BEAM_WIDTH: usize = 25;
const MAX_SHIFT_CANDIDATES: usize = 1000;
const INF: i64 = 10_000_000_000_000_000;

/// TER options, as sacrebleu's `TER(...)` constructor takes them.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[non_exhaustive]
pub struct TerConfig {
    /// tercom's normalisation: punctuation tokenisation, XML entities, `'s` splitting.
    pub normalized: bool,
    /// Remove punctuation.
    pub no_punct: bool,
    /// Split CJK characters and remove CJK punctuation (with `normalized` / `no_punct`).
    pub asian_support: bool,
    /// Keep case (TER lowercases by default).
    pub case_sensitive: bool,
}

impl TerConfig {
    /// Sets normalisation.
    pub fn with_normalized(mut self, v: bool) -> Self {
        self.normalized = v;
        self
    }
    /// Sets punctuation removal.
    pub fn with_no_punct(mut self, v: bool) -> Self {
        self.no_punct = v;
        self
    }
    /// Sets Asian support.
    pub fn with_asian_support(mut self, v: bool) -> Self {
        self.asian_support = v;
        self
    }
    /// Sets case sensitivity.
    pub fn with_case_sensitive(mut self, v: bool) -> Self {
        self.case_sensitive = v;
        self
    }
}

/// A TER score.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TerScore {
    /// TER on the 0–100 (and beyond) scale; lower is better.
    pub score: f64,
    /// Total number of edits (shifts included).
    pub num_edits: u64,
    /// Sum of the average reference lengths.
    pub ref_length: f64,
}

/// Sufficient statistics of TER: the fewest edits over references, and the average
/// reference length.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TerStats {
    /// Fewest edits over the references.
    pub edits: u64,
    /// Average reference length (in tokens).
    pub ref_len: f64,
}

/// References of one line, tokenized.
#[derive(Debug, Clone)]
pub struct TerRefs {
    vocab: Vocab,
    refs: Vec<Vec<u32>>,
}

/// The TER metric with a fixed configuration.
#[derive(Debug, Clone, Default)]
pub struct Ter {
    config: TerConfig,
}

fn is_asian_punct(c: char) -> bool {
    matches!(c as u32, 0x3001 | 0x3002 | 0x3008..=0x3011 | 0x3014..=0x301f | 0xff61..=0xff65 | 0x30fb)
}

fn is_full_width_punct(c: char) -> bool {
    matches!(
        c as u32,
        0xff0e | 0xff0c | 0xff1f | 0xff1a | 0xff1b | 0xff01 | 0xff02 | 0xff08 | 0xff09
    )
}

fn is_asian_split(c: char) -> bool {
    matches!(c as u32,
        0x4e00..=0x9fff | 0x3400..=0x4dbf | 0x31c0..=0x31ef | 0x2e80..=0x2eff
        | 0x3300..=0x33ff | 0xf900..=0xfaff | 0xfe30..=0xfe4f | 0x3200..=0x3f22)
        || is_asian_punct(c)
        || is_full_width_punct(c)
}

impl Ter {
    /// A TER metric (every configuration is valid).
    pub fn new(config: TerConfig) -> Self {
        Ter { config }
    }

    /// The configuration.
    pub fn config(&self) -> &TerConfig {
        &self.config
    }

    /// sacrebleu's `TercomTokenizer`: the tokens of a line, space-separated.
    pub fn tokenize(&self, sent: &str) -> String {
        let c = &self.config;
        if sent.is_empty() {
            return String::new();
        }
        let mut s = if c.case_sensitive {
            sent.to_owned()
        } else {
            py_lower(sent)
        };
        if c.normalized {
            let mut b = replace_bytes(s.as_bytes(), b"\n-", b"");
            b = replace_bytes(&b, b"\n", b" ");
            b = unescape_xml(&b);
            let mut padded = Vec::with_capacity(b.len() + 2);
            padded.push(b' ');
            padded.extend_from_slice(&b);
            padded.push(b' ');
            s = String::from_utf8(regexp_passes(&padded, true)).expect("passes keep UTF-8 valid");
            if c.asian_support {
                let mut out = String::with_capacity(s.len() + 16);
                for ch in s.chars() {
                    if is_asian_split(ch) {
                        out.push(' ');
                        out.push(ch);
                        out.push(' ');
                    } else {
                        out.push(ch);
                    }
                }
                s = out;
            }
        }
        if c.no_punct {
            s.retain(|ch| !matches!(ch, '.' | ',' | '?' | ':' | ';' | '!' | '"' | '(' | ')'));
            if c.asian_support {
                s.retain(|ch| !is_asian_punct(ch) && !is_full_width_punct(ch));
            }
        }
        collapse_whitespace(&s)
    }

    fn preprocess(&self, s: &str) -> String {
        self.tokenize(py_rstrip(s))
    }
}

/// Edit distance rows with the operation that produced each cell.
struct Matrix {
    cols: usize,
    cost: Vec<i64>,
    op: Vec<u8>,
}

/// sacrebleu's `BeamEditDistance` for one reference.
struct BeamEd<'a> {
    refw: &'a [u32],
}

impl BeamEd<'_> {
    fn beam(&self, n_h: usize) -> (f64, usize) {
        let ratio = if n_h > 0 {
            self.refw.len() as f64 / n_h as f64
        } else {
            1.0
        };
        let width = if (BEAM_WIDTH as f64) < ratio / 2.0 {
            (ratio / 2.0 + BEAM_WIDTH as f64).ceil() as usize
        } else {
            BEAM_WIDTH
        };
        (ratio, width)
    }

    #[inline]
    fn range(&self, i: usize, n_h: usize, ratio: f64, width: usize) -> (usize, usize) {
        let diag = (i as f64 * ratio).floor() as i64;
        let min_j = (diag - width as i64).max(0) as usize;
        let mut max_j = ((self.refw.len() + 1) as i64)
            .min(diag + width as i64)
            .max(0) as usize;
        if i == n_h {
            max_j = self.refw.len() + 1;
        }
        (min_j, max_j)
    }

    /// One row of the DP: `cur` from `prev` for hypothesis word `w`.
    #[inline]
    fn row(
        &self,
        w: u32,
        prev: &[i64],
        cur: &mut [i64],
        ops: Option<&mut [u8]>,
        (lo, hi): (usize, usize),
    ) {
        cur.fill(INF);
        let mut ops = ops;
        if let Some(o) = ops.as_deref_mut() {
            o.fill(b'x');
        }
        for j in lo..hi {
            let (c, op) = if j == 0 {
                (prev[0] + 1, b'd')
            } else {
                let (sub, sop) = if w == self.refw[j - 1] {
                    (0, b' ')
                } else {
                    (1, b's')
                };
                let mut best = (INF, b'x');
                for (cost, op) in [
                    (prev[j - 1] + sub, sop),
                    (prev[j] + 1, b'd'),
                    (cur[j - 1] + 1, b'i'),
                ] {
                    if best.0 > cost {
                        best = (cost, op);
                    }
                }
                best
            };
            cur[j] = c;
            if let Some(o) = ops.as_deref_mut() {
                o[j] = op;
            }
        }
    }

    /// The full matrix with operations, and the trace (as sacrebleu builds it).
    fn full(&self, h: &[u32]) -> (i64, Vec<u8>, Matrix) {
        let n_h = h.len();
        let cols = self.refw.len() + 1;
        let mut m = Matrix {
            cols,
            cost: vec![INF; (n_h + 1) * cols],
            op: vec![b'x'; (n_h + 1) * cols],
        };
        for j in 0..cols {
            m.cost[j] = j as i64;
            m.op[j] = b'i';
        }
        let (ratio, width) = self.beam(n_h);
        for i in 1..=n_h {
            let r = self.range(i, n_h, ratio, width);
            let (before, after) = m.cost.split_at_mut(i * cols);
            let prev = &before[(i - 1) * cols..];
            let cur = &mut after[..cols];
            self.row(
                h[i - 1],
                prev,
                cur,
                Some(&mut m.op[i * cols..(i + 1) * cols]),
                r,
            );
        }
        let mut trace = Vec::with_capacity(n_h + cols);
        let (mut i, mut j) = (n_h, self.refw.len());
        while i > 0 || j > 0 {
            let op = m.op[i * cols + j];
            trace.push(op);
            match op {
                b's' | b' ' => {
                    i -= 1;
                    j -= 1;
                }
                b'i' => j -= 1,
                b'd' => i -= 1,
                _ => unreachable!("backtrace left the beam"),
            }
        }
        trace.reverse();
        (m.cost[n_h * cols + self.refw.len()], trace, m)
    }

    /// The distance only, reusing the rows of `base` for the common prefix.
    fn distance_from(
        &self,
        h: &[u32],
        base: &[u32],
        m: &Matrix,
        scratch: &mut (Vec<i64>, Vec<i64>),
    ) -> i64 {
        let n_h = h.len();
        let cols = m.cols;
        let p = h
            .iter()
            .zip(base)
            .take_while(|(a, b)| a == b)
            .count()
            .min(n_h);
        if p == n_h && base.len() == n_h {
            return m.cost[n_h * cols + cols - 1];
        }
        let (ratio, width) = self.beam(n_h);
        let (prev, cur) = scratch;
        prev.clear();
        prev.extend_from_slice(&m.cost[p * cols..(p + 1) * cols]);
        cur.resize(cols, INF);
        for i in p + 1..=n_h {
            let r = self.range(i, n_h, ratio, width);
            self.row(h[i - 1], prev, cur, None, r);
            std::mem::swap(prev, cur);
        }
        prev[cols - 1]
    }
}

fn perform_shift(words: &[u32], start: usize, length: usize, target: usize) -> Vec<u32> {
    let n = words.len();
    let sl = |a: usize, b: usize| &words[a.min(n)..b.min(n).max(a.min(n))];
    let mut out = Vec::with_capacity(n);
    if target < start {
        out.extend_from_slice(sl(0, target));
        out.extend_from_slice(sl(start, start + length));
        out.extend_from_slice(sl(target, start));
        out.extend_from_slice(sl(start + length, n));
    } else if target > start + length {
        out.extend_from_slice(sl(0, start));
        out.extend_from_slice(sl(start + length, target));
        out.extend_from_slice(sl(start, start + length));
        out.extend_from_slice(sl(target, n));
    } else {
        out.extend_from_slice(sl(0, start));
        out.extend_from_slice(sl(start + length, length + target));
        out.extend_from_slice(sl(start, start + length));
        out.extend_from_slice(sl(length + target, n));
    }
    out
}

/// One greedy shift step (sacrebleu's `_shift`).
fn shift(
    h: &[u32],
    r: &[u32],
    ed: &BeamEd<'_>,
    mut checked: usize,
) -> (i64, Option<Vec<u32>>, usize) {
    let (pre_score, trace, m) = ed.full(h);
    // Flip insertions and deletions, then turn the trace into an alignment.
    let mut align = vec![0i64; r.len()];
    let mut ref_err = Vec::with_capacity(r.len());
    let mut hyp_err = Vec::with_capacity(h.len());
    let (mut ph, mut pr) = (-1i64, -1i64);
    for op in trace {
        match op {
            b' ' | b's' => {
                ph += 1;
                pr += 1;
                align[pr as usize] = ph;
                let e = u8::from(op == b's');
                hyp_err.push(e);
                ref_err.push(e);
            }
            // 'd' in the trace is an insertion after the flip.
            b'd' => {
                ph += 1;
                hyp_err.push(1);
            }
            _ => {
                pr += 1;
                align[pr as usize] = ph;
                ref_err.push(1);
            }
        }
    }
    let mut scratch = (Vec::new(), Vec::new());
    // (gain, length, -start_h, -target): tercom's preference order, then the shifted words.
    type Candidate = ((i64, i64, i64, i64), Vec<u32>);
    let mut best: Option<Candidate> = None;
    let (n_h, n_r) = (h.len(), r.len());
    'outer: for start_h in 0..n_h {
        for start_r in 0..n_r {
            if (start_r as i64 - start_h as i64).abs() > MAX_SHIFT_DIST {
                continue;
            }
            let mut length = 0;
            while h[start_h + length] == r[start_r + length] && length < MAX_SHIFT_SIZE {
                length += 1;
                // Candidate (start_h, start_r, length).
                let cont = 'cand: {
                    if hyp_err[start_h..start_h + length].iter().all(|&e| e == 0) {
                        break 'cand false;
                    }
                    if ref_err[start_r..start_r + length].iter().all(|&e| e == 0) {
                        break 'cand false;
                    }
                    let a = align[start_r];
                    if start_h as i64 <= a && a < (start_h + length) as i64 {
                        break 'cand false;
                    }
                    let mut prev_idx = -1i64;
                    for offset in -1i64..length as i64 {
                        let pos = start_r as i64 + offset;
                        let idx = if pos == -1 {
                            0
                        } else {
                            align[pos as usize] + 1
                        };
                        if idx == prev_idx {
                            continue;
                        }
                        prev_idx = idx;
                        let shifted = perform_shift(h, start_h, length, idx as usize);
                        let d = ed.distance_from(&shifted, h, &m, &mut scratch);
                        let key = (pre_score - d, length as i64, -(start_h as i64), -idx);
                        checked += 1;
                        if best.as_ref().is_none_or(|(b, _)| key > *b) {
                            best = Some((key, shifted));
                        }
                    }
                    true
                };
                if cont && checked >= MAX_SHIFT_CANDIDATES {
                    break 'outer;
                }
                if n_h == start_h + length || n_r == start_r + length {
                    break;
                }
            }
        }
    }
    match best {
        None => (0, None, checked),
        Some((k, w)) => (k.0, Some(w), checked),
    }
}

/// sacrebleu's `translation_edit_rate`: (edits, reference length) of one pair.
fn edit_rate(hyp: &[u32], r: &[u32]) -> (u64, u64) {
    if r.is_empty() {
        return (hyp.len() as u64, 0);
    }
    let ed = BeamEd { refw: r };
    let mut shifts = 0u64;
    let mut input = hyp.to_vec();
    let mut checked = 0;
    loop {
        let (delta, new_words, c) = shift(&input, r, &ed, checked);
        checked = c;
        if checked >= MAX_SHIFT_CANDIDATES || delta <= 0 {
            break;
        }
        shifts += 1;
        input = new_words.expect("a positive gain comes with a shift");
    }
    let (d, _, _) = ed.full(&input);
    (shifts + d as u64, r.len() as u64)
}

impl Metric for Ter {
    type Refs = TerRefs;
    type Stats = TerStats;
    type Score = TerScore;

    fn prepare_refs(&self, refs: &[&str]) -> TerRefs {
        let mut vocab = Vocab::default();
        let refs = refs
            .iter()
            .map(|r| {
                // sacrebleu preprocesses references twice (cache, then extraction).
                let tok = self.preprocess(&self.preprocess(r));
                tok.split(' ')
                    .filter(|t| !t.is_empty())
                    .map(|t| vocab.intern(t))
                    .collect()
            })
            .collect();
        TerRefs { vocab, refs }
    }

    fn segment_stats(&self, hyp: &str, refs: &TerRefs) -> TerStats {
        let tok = self.preprocess(hyp);
        // Hypothesis words unknown to the references get distinct ids above the vocabulary.
        let mut extra: FxHashMap<&str, u32> = FxHashMap::default();
        let base = refs.vocab.len() as u32;
        let words: Vec<u32> = tok
            .split(' ')
            .filter(|t| !t.is_empty())
            .map(|t| match refs.vocab.get(t) {
                Some(id) => id,
                None => {
                    let n = extra.len() as u32;
                    *extra.entry(t).or_insert(base + n)
                }
            })
            .collect();
        let mut ref_lengths = 0u64;
        let mut best = u64::MAX;
        for r in &refs.refs {
            let (edits, len) = edit_rate(&words, r);
            ref_lengths += len;
            best = best.min(edits);
        }
        TerStats {
            edits: best,
            ref_len: ref_lengths as f64 / refs.refs.len() as f64,
        }
    }

    fn zero_stats(&self) -> TerStats {
        TerStats::default()
    }

    fn add_stats(&self, acc: &mut TerStats, s: &TerStats) {
        acc.edits += s.edits;
        acc.ref_len += s.ref_len;
    }

    fn corpus_score_from(&self, stats: &TerStats) -> TerScore {
        let score = if stats.ref_len > 0.0 {
            stats.edits as f64 / stats.ref_len
        } else if stats.edits > 0 {
            1.0
        } else {
            0.0
        };
        TerScore {
            score: 100.0 * score,
            num_edits: stats.edits,
            ref_length: stats.ref_len,
        }
    }

    fn sentence_score_from(&self, stats: &TerStats) -> TerScore {
        self.corpus_score_from(stats)
    }

    fn value(score: &TerScore) -> f64 {
        score.score
    }

    fn signature(&self, nrefs: NumRefs) -> Signature {
        let c = &self.config;
        let mut sig = Signature::new(nrefs);
        sig.set("case", if c.case_sensitive { "mixed" } else { "lc" });
        sig.set("tok", "tercom");
        sig.set("norm", yes_no(c.normalized));
        sig.set("punct", yes_no(!c.no_punct));
        sig.set("asian", yes_no(c.asian_support));
        sig
    }

    fn name(&self) -> String {
        "TER".to_owned()
    }

    fn higher_is_better(&self) -> bool {
        false
    }
}

/// Corpus TER (sacrebleu's `corpus_ter`).
///
/// # Errors
/// Mismatched lengths, a line without references, or no lines.
pub fn corpus_ter<H: AsRef<str>, R: AsRef<str>>(
    hyps: &[H],
    refs: &[Vec<R>],
    config: &TerConfig,
) -> Result<TerScore> {
    let m = Ter::new(config.clone());
    score_corpus(&m, hyps, refs)?.finish()
}

/// Sentence TER (sacrebleu's `sentence_ter`).
///
/// # Errors
/// No reference.
pub fn sentence_ter(hyp: &str, refs: &[&str], config: &TerConfig) -> Result<TerScore> {
    let m = Ter::new(config.clone());
    let stats = m.line_stats(hyp, refs)?;
    Ok(m.sentence_score_from(&stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ter(h: &str, r: &str) -> f64 {
        sentence_ter(h, &[r], &TerConfig::default()).unwrap().score
    }

    #[test]
    fn shifts_count_one_edit() {
        // Moving "b c" to the end is one shift, no other edits: 1/4.
        assert_eq!(ter("b c a d", "a d b c"), 25.0);
        assert_eq!(ter("", "a b"), 100.0);
        assert_eq!(ter("a b", "a b"), 0.0);
    }

    #[test]
    fn tokenizer_options() {
        let t = Ter::new(TerConfig::default().with_normalized(true));
        assert_eq!(t.tokenize("It's 3-4 (ok)."), "it 's 3 - 4 ( ok ) .");
        let t = Ter::new(
            TerConfig::default()
                .with_no_punct(true)
                .with_case_sensitive(true),
        );
        assert_eq!(t.tokenize("Hi, (you)!"), "Hi you");
    }
}
