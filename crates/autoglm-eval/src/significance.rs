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

fn sum_of<M: Metric>(metric: &M, lines: &[M::Stats]) -> M::Stats {
    let mut acc = metric.zero_stats();
    for s in lines {
        metric.add_stats(&mut acc, s);
    }
    acc
}

/// Checks the inputs; returns both corpus scores and their absolute difference.
fn prologue<M: Metric>(
    metric: &M,
    baseline: &[M::Stats],
    system: &[M::Stats],
    n_samples: usize,
) -> Result<(f64, f64, f64)> {
    check(baseline, system, n_samples)?;
    let bl = M::value(&metric.corpus_score_from(&sum_of(metric, baseline)));
    let sys = M::value(&metric.corpus_score_from(&sum_of(metric, system)));
    Ok((bl, sys, (bl - sys).abs()))
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
    let (bl_score, sys_score, diff) = prologue(metric, baseline, system, n_samples)?;
    let n = baseline.len();
    let mut rng = rand_mt::Mt::new(seed.0);
    let mut scores_bl = Vec::with_capacity(n_samples);
    let mut scores_sys = Vec::with_capacity(n_samples);
    for _ in 0..n_samples {
        let (mut a, mut b) = (metric.zero_stats(), metric.zero_stats());
        for _ in 0..n {
            let i = bounded(&mut rng, n);
            metric.add_stats(&mut a, &baseline[i]);
            metric.add_stats(&mut b, &system[i]);
        }
        scores_bl.push(M::value(&metric.corpus_score_from(&a)));
        scores_sys.push(M::value(&metric.corpus_score_from(&b)));
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
    let (bl_score, sys_score, diff) = prologue(metric, baseline, system, n_samples)?;
    let mut rng = rand_mt::Mt::new(seed.0);
    let mut c = 0usize;
    for _ in 0..n_samples {
        let (mut a, mut b) = (metric.zero_stats(), metric.zero_stats());
        let mut bits = 0u32;
        for (k, (x, y)) in baseline.iter().zip(system).enumerate() {
            if k % 32 == 0 {
                bits = rng.next_u32();
            }
            let swap = bits & 1 == 1;
            bits >>= 1;
            if swap {
                metric.add_stats(&mut a, x);
                metric.add_stats(&mut b, y);
            } else {
                metric.add_stats(&mut a, y);
                metric.add_stats(&mut b, x);
            }
        }
        let sa = M::value(&metric.corpus_score_from(&a));
        let sb = M::value(&metric.corpus_score_from(&b));
        if (sa - sb).abs() > diff {
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
