//! Hyperparameter importance: which parameters explain the objective's variation.

use crate::pareto::losses;
use crate::sampler::main_effects;
use crate::storage::intersection_space;
use crate::study::Direction;
use crate::trial::{FrozenTrial, TrialState};

/// Importance of each parameter shared by all complete trials, for objective `target`
/// (0 for single-objective studies), as fractions summing to 1, most important first.
///
/// The method is fANOVA's (Hutter et al. 2014) main-effect decomposition on a surrogate
/// model: a Gaussian process (Matérn 5/2, one length scale per parameter, as in
/// [`crate::GpSampler`]) is fitted to the trials, and each parameter's first-order
/// Sobol index — the share of the surrogate's variance over the search space explained
/// by that parameter alone — is estimated with Saltelli's scheme on 1024 quasi-random
/// pairs. Shares are clipped at 0 and normalised to sum to 1 (as Optuna reports them).
/// Interactions are not attributed to any parameter. Deterministic.
///
/// Returns an empty list with fewer than two complete trials or when the model cannot
/// be fitted; all-zero variance gives equal shares.
///
/// # Examples
/// ```
/// use autoglm_tune::{param_importances, Seed, Study};
/// # fn main() -> autoglm_tune::Result<()> {
/// let mut study = Study::minimize(Seed(0));
/// study.optimize(40, |t| {
///     let lr = t.suggest_float("lr", 1e-4, 1e-1, true)?;
///     let wd = t.suggest_float("wd", 0.0, 0.1, false)?;
///     Ok((lr.log10() + 2.5).powi(2) + 0.1 * wd)
/// })?;
/// let imp = param_importances(&study.trials()?, study.directions(), 0);
/// assert_eq!(imp[0].0, "lr");
/// # Ok(()) }
/// ```
pub fn param_importances(
    trials: &[FrozenTrial],
    directions: &[Direction],
    target: usize,
) -> Vec<(String, f64)> {
    let complete: Vec<&FrozenTrial> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter(|t| t.values.as_ref().is_some_and(|v| v.len() > target))
        .collect();
    let space = intersection_space(trials);
    if complete.len() < 2 || space.is_empty() || target >= directions.len() {
        return Vec::new();
    }
    let values: Vec<f64> = complete
        .iter()
        .map(|t| losses(t.values.as_deref().expect("checked"), directions)[target])
        .collect();
    let Some(effects) = main_effects(&space, &complete, &values, 1024) else {
        return Vec::new();
    };
    let total: f64 = effects.iter().sum();
    let share = |e: f64| {
        if total > 0.0 {
            e / total
        } else {
            1.0 / effects.len() as f64
        }
    };
    let mut out: Vec<(String, f64)> = space
        .keys()
        .cloned()
        .zip(effects.iter().map(|&e| share(e)))
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Distribution, Outcome, RandomSampler, Seed, Study};

    #[test]
    fn importances_match_the_analytic_main_effects() {
        // f = 10·x0² + x1 (+ 0·x2) on the unit cube: Var(10x²) = 100·(1/5 − 1/9),
        // Var(x1) = 1/12, so the shares are 0.9907, 0.0093 and 0.
        let mut study = Study::minimize(Seed(3)).with_sampler(RandomSampler::new(Seed(3)));
        for _ in 0..60 {
            let mut t = study.ask().unwrap();
            let x: Vec<f64> = (0..3)
                .map(|i| {
                    t.suggest(&format!("x{i}"), Distribution::float(0.0, 1.0))
                        .unwrap()
                        .as_f64()
                        .unwrap()
                })
                .collect();
            let n = t.number();
            study
                .tell(n, Outcome::Values(vec![10.0 * x[0] * x[0] + x[1]]))
                .unwrap();
        }
        let imp = param_importances(&study.trials().unwrap(), &[Direction::Minimize], 0);
        let get = |k: &str| imp.iter().find(|(n, _)| n == k).unwrap().1;
        let exact0 = 100.0 * (0.2 - 1.0 / 9.0) / (100.0 * (0.2 - 1.0 / 9.0) + 1.0 / 12.0);
        assert!((get("x0") - exact0).abs() < 0.01, "{imp:?}");
        assert!((get("x1") - (1.0 - exact0)).abs() < 0.01, "{imp:?}");
        assert!(get("x2") < 0.003, "{imp:?}");
        assert!((imp.iter().map(|x| x.1).sum::<f64>() - 1.0).abs() < 1e-9);
        assert_eq!(imp[0].0, "x0");
    }

    #[test]
    fn categorical_parameters_and_too_few_trials() {
        assert!(param_importances(&[], &[Direction::Minimize], 0).is_empty());
        let mut study = Study::minimize(Seed(1));
        study
            .optimize(40, |t| {
                let opt = t.suggest_categorical("opt", ["a", "b", "c"])?;
                let x = t.suggest_float("x", 0.0, 1.0, false)?;
                let base = match opt.as_str() {
                    Some("a") => 0.0,
                    Some("b") => 5.0,
                    _ => 10.0,
                };
                Ok(base + 0.1 * x)
            })
            .unwrap();
        let imp = param_importances(&study.trials().unwrap(), &[Direction::Minimize], 0);
        assert_eq!(imp[0].0, "opt", "{imp:?}");
        assert!(imp[0].1 > 0.95, "{imp:?}");
    }
}
