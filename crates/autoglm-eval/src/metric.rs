//! The [`Metric`] trait that BLEU, chrF and TER share, and corpus scoring on top of it.
//!
//! Every sacrebleu metric works the same way: references of a line are preprocessed
//! once, each hypothesis line yields a vector of sufficient statistics, the corpus
//! score is computed from the sum of those statistics, and a sentence score from one
//! line's statistics. [`Corpus`] is the streaming form: add lines, then finish.

use crate::error::{Error, Result};
use crate::signature::{NumRefs, Signature};

/// A sacrebleu-style metric computed from summable per-line statistics.
pub trait Metric: Sync {
    /// Preprocessed references of one line (tokens, n-gram counts…), reusable across systems.
    type Refs: Send + Sync;
    /// Sufficient statistics of one line, or of a whole corpus once summed.
    type Stats: Clone + Send + Sync + std::fmt::Debug;
    /// The score computed from statistics.
    type Score: Clone + Send + std::fmt::Debug;

    /// Preprocesses the references of one line.
    fn prepare_refs(&self, refs: &[&str]) -> Self::Refs;
    /// Statistics of one hypothesis against its prepared references.
    fn segment_stats(&self, hyp: &str, refs: &Self::Refs) -> Self::Stats;
    /// Statistics of one hypothesis against raw references (at least one) that are
    /// scored against this hypothesis only: the same as
    /// `segment_stats(hyp, &prepare_refs(refs))`, which is the default. A metric may
    /// override it to do less work when the references are not reused (chrF indexes
    /// the hypothesis' n-grams instead of the references').
    fn segment_stats_unprepared(&self, hyp: &str, refs: &[&str]) -> Self::Stats {
        self.segment_stats(hyp, &self.prepare_refs(refs))
    }
    /// The statistics of an empty corpus.
    fn zero_stats(&self) -> Self::Stats;
    /// `acc += stats`, in the order sacrebleu sums (line order).
    fn add_stats(&self, acc: &mut Self::Stats, stats: &Self::Stats);
    /// The corpus score from summed statistics.
    fn corpus_score_from(&self, stats: &Self::Stats) -> Self::Score;
    /// The sentence score of one line's statistics (for BLEU: with effective order).
    fn sentence_score_from(&self, stats: &Self::Stats) -> Self::Score;
    /// The headline number of a score (0–100 for sacrebleu metrics).
    fn value(score: &Self::Score) -> f64;
    /// The sacrebleu signature for this configuration.
    fn signature(&self, nrefs: NumRefs) -> Signature;
    /// sacrebleu's name of the metric ("BLEU", "chrF2", "TER"…).
    fn name(&self) -> String;
    /// Whether a larger score is better (false for TER).
    fn higher_is_better(&self) -> bool {
        true
    }

    /// Statistics of one line from raw references.
    ///
    /// # Errors
    /// [`Error::NoReference`] when `refs` is empty (reported as line 1).
    fn line_stats(&self, hyp: &str, refs: &[&str]) -> Result<Self::Stats> {
        if refs.is_empty() {
            return Err(Error::NoReference { line: 1 });
        }
        Ok(self.segment_stats_unprepared(hyp, refs))
    }
}

/// A corpus being scored line by line: holds per-line statistics, never the text.
///
/// # Examples
/// ```
/// use autoglm_eval::{Bleu, BleuConfig, Corpus};
/// # fn main() -> autoglm_eval::Result<()> {
/// let bleu = Bleu::new(BleuConfig::default())?;
/// let mut corpus = Corpus::new(&bleu);
/// corpus.add("the cat sat on the mat", &["the cat sat on the mat"])?;
/// corpus.add("a dog", &["the dog barked", "a dog barked"])?;
/// let score = corpus.finish()?;
/// assert!(score.score > 50.0);
/// assert_eq!(corpus.signature()?.to_string(), "nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0");
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Corpus<'m, M: Metric> {
    metric: &'m M,
    lines: Vec<M::Stats>,
    total: M::Stats,
    nrefs: Option<NumRefs>,
}

impl<'m, M: Metric> Corpus<'m, M> {
    /// An empty corpus scored with `metric`.
    pub fn new(metric: &'m M) -> Self {
        Corpus {
            metric,
            lines: Vec::new(),
            total: metric.zero_stats(),
            nrefs: None,
        }
    }

    /// Adds one line with its references (at least one).
    ///
    /// # Errors
    /// [`Error::NoReference`] (with this line's 1-based number) when `refs` is empty.
    pub fn add(&mut self, hyp: &str, refs: &[&str]) -> Result<()> {
        if refs.is_empty() {
            return Err(Error::NoReference {
                line: self.lines.len() + 1,
            });
        }
        self.push(self.metric.segment_stats_unprepared(hyp, refs), refs.len());
        Ok(())
    }

    /// Adds one line whose references were prepared with [`Metric::prepare_refs`]
    /// (lets several systems share the reference preprocessing).
    pub fn add_prepared(&mut self, hyp: &str, refs: &M::Refs, num_refs: usize) {
        self.push(self.metric.segment_stats(hyp, refs), num_refs);
    }

    /// Adds one line's precomputed statistics.
    pub fn add_stats(&mut self, stats: M::Stats, num_refs: usize) {
        self.push(stats, num_refs);
    }

    fn push(&mut self, stats: M::Stats, num_refs: usize) {
        self.metric.add_stats(&mut self.total, &stats);
        self.lines.push(stats);
        self.nrefs = Some(NumRefs::observe(self.nrefs, num_refs));
    }

    /// Number of lines added so far.
    pub fn len(&self) -> usize {
        self.lines.len()
    }

    /// Whether no line was added.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Per-line statistics, in the order the lines were added.
    pub fn line_stats(&self) -> &[M::Stats] {
        &self.lines
    }

    /// The summed statistics.
    pub fn total_stats(&self) -> &M::Stats {
        &self.total
    }

    /// The corpus score.
    ///
    /// # Errors
    /// [`Error::EmptyCorpus`] when no line was added.
    pub fn finish(&self) -> Result<M::Score> {
        if self.lines.is_empty() {
            return Err(Error::EmptyCorpus);
        }
        Ok(self.metric.corpus_score_from(&self.total))
    }

    /// The sentence score of every line.
    pub fn sentence_scores(&self) -> Vec<M::Score> {
        self.lines
            .iter()
            .map(|s| self.metric.sentence_score_from(s))
            .collect()
    }

    /// The signature, with `nrefs` as observed.
    ///
    /// # Errors
    /// [`Error::EmptyCorpus`] when no line was added (the number of references is unknown).
    pub fn signature(&self) -> Result<Signature> {
        let nrefs = self.nrefs.ok_or(Error::EmptyCorpus)?;
        Ok(self.metric.signature(nrefs))
    }

    /// The number of references per line, as observed.
    pub fn num_refs(&self) -> Option<NumRefs> {
        self.nrefs
    }
}

/// Scores a whole corpus: `refs[i]` holds the references of line `i` (their number may vary).
///
/// # Errors
/// [`Error::LengthMismatch`], [`Error::NoReference`] or [`Error::EmptyCorpus`].
pub fn score_corpus<'m, M: Metric, H: AsRef<str>, R: AsRef<str>>(
    metric: &'m M,
    hyps: &[H],
    refs: &[Vec<R>],
) -> Result<Corpus<'m, M>> {
    check_shape(hyps.len(), refs)?;
    let mut corpus = Corpus::new(metric);
    let mut buf: Vec<&str> = Vec::new();
    for (h, r) in hyps.iter().zip(refs) {
        buf.clear();
        buf.extend(r.iter().map(|x| x.as_ref()));
        corpus.add(h.as_ref(), &buf)?;
    }
    Ok(corpus)
}

pub(crate) fn check_shape<R>(n_hyps: usize, refs: &[Vec<R>]) -> Result<()> {
    if n_hyps != refs.len() {
        return Err(Error::LengthMismatch {
            hyps: n_hyps,
            refs: refs.len(),
        });
    }
    if n_hyps == 0 {
        return Err(Error::EmptyCorpus);
    }
    if let Some(i) = refs.iter().position(|r| r.is_empty()) {
        return Err(Error::NoReference { line: i + 1 });
    }
    Ok(())
}

/// [`score_corpus`] with lines processed in parallel by rayon; results are identical
/// (statistics are summed in line order afterwards).
///
/// # Errors
/// As [`score_corpus`].
#[cfg(feature = "rayon")]
#[cfg_attr(docsrs, doc(cfg(feature = "rayon")))]
pub fn score_corpus_par<'m, M: Metric, H: AsRef<str> + Sync, R: AsRef<str> + Sync>(
    metric: &'m M,
    hyps: &[H],
    refs: &[Vec<R>],
) -> Result<Corpus<'m, M>> {
    use rayon::prelude::*;
    check_shape(hyps.len(), refs)?;
    let stats: Vec<M::Stats> = hyps
        .par_iter()
        .zip(refs.par_iter())
        .map(|(h, r)| {
            let r: Vec<&str> = r.iter().map(|x| x.as_ref()).collect();
            metric.segment_stats_unprepared(h.as_ref(), &r)
        })
        .collect();
    let mut corpus = Corpus::new(metric);
    for (s, r) in stats.into_iter().zip(refs) {
        corpus.add_stats(s, r.len());
    }
    Ok(corpus)
}

/// Scores several systems on the same lines and references: each line's references
/// are prepared once and every system's hypothesis for that line is scored right away,
/// while the prepared references are hot in cache (much faster than one system after
/// the other when there are many systems or many references). With one system, each
/// line's references serve one hypothesis, so they are not prepared
/// ([`Metric::segment_stats_unprepared`]).
///
/// # Errors
/// A system whose line count differs from the references ([`Error::LengthMismatch`]),
/// a line without references, or no lines.
///
/// # Examples
/// ```
/// use autoglm_eval::{score_systems, Bleu, BleuConfig};
/// # fn main() -> autoglm_eval::Result<()> {
/// let bleu = Bleu::new(BleuConfig::default())?;
/// let refs = vec![vec!["a cat sat on the mat"], vec!["the dog ran"]];
/// let a = vec!["a cat sat on the mat", "the dog ran"];
/// let b = vec!["a cat sat", "a dog ran"];
/// let corpora = score_systems(&bleu, &[a, b], &refs)?;
/// assert!(corpora[0].finish()?.score > corpora[1].finish()?.score);
/// # Ok(()) }
/// ```
pub fn score_systems<'m, M: Metric, H: AsRef<str>, R: AsRef<str>>(
    metric: &'m M,
    systems: &[Vec<H>],
    refs: &[Vec<R>],
) -> Result<Vec<Corpus<'m, M>>> {
    for sys in systems {
        check_shape(sys.len(), refs)?;
    }
    let mut corpora: Vec<Corpus<'m, M>> = systems.iter().map(|_| Corpus::new(metric)).collect();
    let mut buf: Vec<&str> = Vec::new();
    for (i, r) in refs.iter().enumerate() {
        buf.clear();
        buf.extend(r.iter().map(|x| x.as_ref()));
        if let [sys] = systems {
            let stats = metric.segment_stats_unprepared(sys[i].as_ref(), &buf);
            corpora[0].add_stats(stats, r.len());
            continue;
        }
        let prepared = metric.prepare_refs(&buf);
        for (c, sys) in corpora.iter_mut().zip(systems) {
            c.add_prepared(sys[i].as_ref(), &prepared, r.len());
        }
    }
    Ok(corpora)
}

/// Prepares the references of every line once, so that several systems can be
/// scored against them (what sacrebleu's reference cache does).
pub fn prepare_all<M: Metric, R: AsRef<str>>(metric: &M, refs: &[Vec<R>]) -> Vec<M::Refs> {
    refs.iter()
        .map(|r| {
            let r: Vec<&str> = r.iter().map(|x| x.as_ref()).collect();
            metric.prepare_refs(&r)
        })
        .collect()
}
