//! Paired significance tests between two systems, as sacrebleu's `--paired-bs` and
//! `--paired-ar` run them.
//!
//! The procedures are sacrebleu's (Koehn 2004 paired bootstrap resampling, with its
//! p-value from the centred differences; Riezler & Maxwell 2005 approximate
//! randomization), on this crate's per-line statistics. Resampling uses MT19937 seeded
//! with [`Seed`] rather than numpy's PCG64, and statistics are summed exactly (sacrebleu
//! sums them in float32), so p-values agree with sacrebleu's statistically, not bit for bit.

use crate::error::{Error, Result};
use crate::metric::Metric;

/// Which paired test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PairedTest {
    /// Paired bootstrap resampling (`--paired-bs`).
    Bootstrap,
    /// Approximate randomization (`--paired-ar`).
    ApproximateRandomization,
}

/// A random seed (sacrebleu's default is 12345).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Seed(pub u32);

impl Default for Seed {
    fn default() -> Self {
        Seed(12345)
    }
}

/// The outcome of a paired test of a system against a baseline.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PairedResult {
    /// The baseline's corpus score.
    pub baseline_score: f64,
    /// The system's corpus score.
    pub system_score: f64,
    /// Two-sided p-value of the difference: `(c + 1) / (n + 1)`.
    pub p_value: f64,
    /// Mean of the system's bootstrap scores (paired bootstrap only).
    pub system_mean: Option<f64>,
    /// Half-width of the system's 95% confidence interval (paired bootstrap only).
    pub system_ci: Option<f64>,
}

/// Uniform index below `n` by masked rejection (numpy's legacy method).
pub(crate) fn bounded(rng: &mut rand_mt::Mt, n: usize) -> usize {
    let max = (n - 1) as u32;
    if max == 0 {
        return 0;
    }
    let mask = u32::MAX >> max.leading_zeros();
    loop {
        let v = rng.next_u32() & mask;
        if v <= max {
            return v as usize;
        }
    }
}

/// sacrebleu's `estimate_ci`: mean and half-width of the central 95% of `scores`.
fn estimate_ci(scores: &mut [f64]) -> (f64, f64) {
    scores.sort_by(f64::total_cmp);
    let n = scores.len();
    let lower = n / 40;
    let upper = n - lower - 1;
    let ci = 0.5 * (scores[upper] - scores[lower]);
    let mean = scores.iter().sum::<f64>() / n as f64;
    (mean, ci)
}

fn check<S>(baseline: &[S], system: &[S], n_samples: usize) -> Result<()> {
    if baseline.len() != system.len() {
        return Err(Error::LengthMismatch {
            hyps: system.len(),
            refs: baseline.len(),
        });
    }
    if baseline.is_empty() {
        return Err(Error::EmptyCorpus);
    }
    if n_samples == 0 {
        return Err(Error::InvalidOption {
            option: "n-samples",
            reason: "must be positive".to_owned(),
        });
    }
    Ok(())
}

/// What the two tests need of a score: line statistics that add up, and the corpus
/// score of a sum. A sacrebleu [`Metric`] is one ([`BySum`]); a score that is the mean
/// of its line scores, as rouge-score reports ROUGE, is another ([`ByMean`]).
trait Summed {
    type Stats;
    fn zero(&self) -> Self::Stats;
    fn add(&self, acc: &mut Self::Stats, line: &Self::Stats);
    fn score(&self, acc: &Self::Stats) -> f64;
}

/// A sacrebleu metric: its own statistics and corpus score.
struct BySum<'m, M>(&'m M);

impl<M: Metric> Summed for BySum<'_, M> {
    type Stats = M::Stats;
    fn zero(&self) -> M::Stats {
        self.0.zero_stats()
    }
    fn add(&self, acc: &mut M::Stats, line: &M::Stats) {
        self.0.add_stats(acc, line);
    }
    fn score(&self, acc: &M::Stats) -> f64 {
        M::value(&self.0.corpus_score_from(acc))
    }
}

/// The mean of line scores: statistics are (sum, lines).
struct ByMean;

impl Summed for ByMean {
    type Stats = (f64, usize);
    fn zero(&self) -> (f64, usize) {
        (0.0, 0)
    }
    fn add(&self, acc: &mut (f64, usize), line: &(f64, usize)) {
        acc.0 += line.0;
        acc.1 += line.1;
    }
    fn score(&self, acc: &(f64, usize)) -> f64 {
        acc.0 / acc.1 as f64
    }
}

fn means(lines: &[f64]) -> Vec<(f64, usize)> {
    lines.iter().map(|&x| (x, 1)).collect()
}

/// Checks the inputs; returns both corpus scores and their absolute difference.
fn prologue<S: Summed>(
    m: &S,
    baseline: &[S::Stats],
    system: &[S::Stats],
    n_samples: usize,
) -> Result<(f64, f64, f64)> {
    check(baseline, system, n_samples)?;
    let sum = |lines: &[S::Stats]| {
        let mut acc = m.zero();
        for s in lines {
            m.add(&mut acc, s);
        }
        m.score(&acc)
    };
    let (bl, sys) = (sum(baseline), sum(system));
    Ok((bl, sys, (bl - sys).abs()))
}

fn bootstrap<S: Summed>(
    m: &S,
    baseline: &[S::Stats],
    system: &[S::Stats],
    n_samples: usize,
    seed: Seed,
) -> Result<PairedResult> {
    let (bl_score, sys_score, diff) = prologue(m, baseline, system, n_samples)?;
    let n = baseline.len();
    let mut rng = rand_mt::Mt::new(seed.0);
    let mut scores_bl = Vec::with_capacity(n_samples);
    let mut scores_sys = Vec::with_capacity(n_samples);
    for _ in 0..n_samples {
        let (mut a, mut b) = (m.zero(), m.zero());
        for _ in 0..n {
            let i = bounded(&mut rng, n);
            m.add(&mut a, &baseline[i]);
            m.add(&mut b, &system[i]);
        }
        scores_bl.push(m.score(&a));
        scores_sys.push(m.score(&b));
    }
    let diffs: Vec<f64> = scores_sys
        .iter()
        .zip(&scores_bl)
        .map(|(s, b)| (s - b).abs())
        .collect();
    let mean_diff = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let c = diffs.iter().filter(|&&d| d - mean_diff > diff).count();
    let (mean, ci) = estimate_ci(&mut scores_sys);
    Ok(PairedResult {
        baseline_score: bl_score,
        system_score: sys_score,
        p_value: (c + 1) as f64 / (n_samples + 1) as f64,
        system_mean: Some(mean),
        system_ci: Some(ci),
    })
}

fn randomization<S: Summed>(
    m: &S,
    baseline: &[S::Stats],
    system: &[S::Stats],
    n_samples: usize,
    seed: Seed,
) -> Result<PairedResult> {
    let (bl_score, sys_score, diff) = prologue(m, baseline, system, n_samples)?;
    let mut rng = rand_mt::Mt::new(seed.0);
    let mut c = 0usize;
    for _ in 0..n_samples {
        let (mut a, mut b) = (m.zero(), m.zero());
        let mut bits = 0u32;
        for (k, (x, y)) in baseline.iter().zip(system).enumerate() {
            if k % 32 == 0 {
                bits = rng.next_u32();
            }
            let swap = bits & 1 == 1;
            bits >>= 1;
            if swap {
                m.add(&mut a, x);
                m.add(&mut b, y);
            } else {
                m.add(&mut a, y);
                m.add(&mut b, x);
            }
        }
        if (m.score(&a) - m.score(&b)).abs() > diff {
            c += 1;
        }
    }
    Ok(PairedResult {
        baseline_score: bl_score,
        system_score: sys_score,
        p_value: (c + 1) as f64 / (n_samples + 1) as f64,
        system_mean: None,
        system_ci: None,
    })
}

/// Paired bootstrap resampling (sacrebleu `--paired-bs`, default 1000 samples).
///
/// `baseline` and `system` are the per-line statistics of the two systems on the same
/// lines and references (e.g. [`crate::Corpus::line_stats`]).
///
/// # Errors
/// Different numbers of lines, no lines, or zero samples.
pub fn paired_bootstrap<M: Metric>(
    metric: &M,
    baseline: &[M::Stats],
    system: &[M::Stats],
    n_samples: usize,
    seed: Seed,
) -> Result<PairedResult> {
    bootstrap(&BySum(metric), baseline, system, n_samples, seed)
}

/// Paired approximate randomization (sacrebleu `--paired-ar`, default 10000 trials):
/// each trial swaps the two systems' outputs on a random half of the lines.
///
/// # Errors
/// Different numbers of lines, no lines, or zero trials.
pub fn paired_approximate_randomization<M: Metric>(
    metric: &M,
    baseline: &[M::Stats],
    system: &[M::Stats],
    n_samples: usize,
    seed: Seed,
) -> Result<PairedResult> {
    randomization(&BySum(metric), baseline, system, n_samples, seed)
}

/// [`paired_bootstrap`] for a score that is the mean of its line scores: ROUGE as
/// rouge-score reports it (e.g. each line's ROUGE-L F). The procedure, seed and
/// p-value are sacrebleu's; scores keep the lines' scale (0–1 for ROUGE).
///
/// # Errors
/// Different numbers of lines, no lines, or zero samples.
pub fn paired_bootstrap_mean(
    baseline: &[f64],
    system: &[f64],
    n_samples: usize,
    seed: Seed,
) -> Result<PairedResult> {
    bootstrap(&ByMean, &means(baseline), &means(system), n_samples, seed)
}

/// [`paired_approximate_randomization`] for a score that is the mean of its line
/// scores (see [`paired_bootstrap_mean`]).
///
/// # Errors
/// Different numbers of lines, no lines, or zero trials.
pub fn paired_approximate_randomization_mean(
    baseline: &[f64],
    system: &[f64],
    n_samples: usize,
    seed: Seed,
) -> Result<PairedResult> {
    randomization(&ByMean, &means(baseline), &means(system), n_samples, seed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Bleu, BleuConfig, Corpus};

    #[test]
    fn nearly_identical_systems_are_not_significant() {
        let bleu = Bleu::new(BleuConfig::default()).unwrap();
        let (mut a, mut b) = (Corpus::new(&bleu), Corpus::new(&bleu));
        for i in 0..60 {
            let r = format!("the cat {i} sat down on the mat");
            // Each system loses a word on alternate lines: no systematic difference.
            let (good, bad) = (
                format!("the cat {i} sat down on the mat"),
                format!("the cat {i} sat on the mat"),
            );
            let (x, y) = if i % 2 == 0 {
                (&good, &bad)
            } else {
                (&bad, &good)
            };
            a.add(x, &[&r]).unwrap();
            b.add(y, &[&r]).unwrap();
        }
        let r =
            paired_bootstrap(&bleu, a.line_stats(), b.line_stats(), 300, Seed::default()).unwrap();
        assert!(r.p_value > 0.05, "{r:?}");
        let r = paired_approximate_randomization(
            &bleu,
            a.line_stats(),
            b.line_stats(),
            300,
            Seed::default(),
        )
        .unwrap();
        assert!(r.p_value > 0.05, "{r:?}");
    }

    #[test]
    fn mean_scores_test_like_a_metric_of_the_same_lines() {
        // Lines of a mean-aggregated score (ROUGE-L F, say): the system is better by
        // 0.1 on every line, then by nothing on average.
        let base: Vec<f64> = (0..80).map(|i| 0.3 + 0.005 * f64::from(i % 40)).collect();
        let better: Vec<f64> = base.iter().map(|x| x + 0.1).collect();
        let r = paired_bootstrap_mean(&base, &better, 500, Seed::default()).unwrap();
        assert!(r.p_value < 0.01, "{r:?}");
        assert!(
            (r.system_score - r.baseline_score - 0.1).abs() < 1e-12,
            "{r:?}"
        );
        let (lo, hi) = (
            r.system_mean.unwrap() - r.system_ci.unwrap(),
            r.system_mean.unwrap() + r.system_ci.unwrap(),
        );
        assert!(lo < r.system_score && r.system_score < hi, "{r:?}");
        let r =
            paired_approximate_randomization_mean(&base, &better, 500, Seed::default()).unwrap();
        assert!(r.p_value < 0.01, "{r:?}");
        let shuffled: Vec<f64> = base.iter().rev().copied().collect();
        let r = paired_bootstrap_mean(&base, &shuffled, 500, Seed::default()).unwrap();
        assert!(r.p_value > 0.05, "{r:?}");
        assert!(paired_bootstrap_mean(&base, &base[1..], 10, Seed::default()).is_err());
        assert!(paired_bootstrap_mean(&[], &[], 10, Seed::default()).is_err());
    }

    #[test]
    fn a_much_better_system_is_significant() {
        let bleu = Bleu::new(BleuConfig::default()).unwrap();
        let (mut a, mut b) = (Corpus::new(&bleu), Corpus::new(&bleu));
        for i in 0..60 {
            let r = format!("the cat {i} sat down on the mat");
            a.add(&format!("dog {i} runs"), &[&r]).unwrap();
            b.add(&r, &[&r]).unwrap();
        }
        let r =
            paired_bootstrap(&bleu, a.line_stats(), b.line_stats(), 300, Seed::default()).unwrap();
        assert!(r.p_value < 0.01, "{r:?}");
        let r = paired_approximate_randomization(
            &bleu,
            a.line_stats(),
            b.line_stats(),
            300,
            Seed::default(),
        )
        .unwrap();
        assert!(r.p_value < 0.01, "{r:?}");
    }
}
