//! Pruners: stop unpromising trials early from their intermediate values.

use crate::study::Direction;
use crate::trial::{FrozenTrial, TrialState};

/// Decides whether a running trial should stop.
pub trait Pruner: Send {
    /// Whether `trial` (running, with intermediate values) should be pruned, given all
    /// trials of the study.
    fn prune(&self, trial: &FrozenTrial, trials: &[FrozenTrial], direction: Direction) -> bool;
}

/// Never prunes.
#[derive(Debug, Clone, Copy, Default)]
pub struct NopPruner;

impl Pruner for NopPruner {
    fn prune(&self, _: &FrozenTrial, _: &[FrozenTrial], _: Direction) -> bool {
        false
    }
}

/// Optuna's `MedianPruner`: prune when the trial's best intermediate value so far is
/// worse than the median of the other finished trials' intermediate values at the same
/// step.
#[derive(Debug, Clone, Copy)]
pub struct MedianPruner {
    /// No pruning until this many trials have finished.
    pub n_startup_trials: usize,
    /// No pruning before this step.
    pub n_warmup_steps: u64,
    /// Only check at steps that are multiples of this (after the warm-up).
    pub interval_steps: u64,
}

impl Default for MedianPruner {
    fn default() -> Self {
        MedianPruner {
            n_startup_trials: 5,
            n_warmup_steps: 0,
            interval_steps: 1,
        }
    }
}

impl Pruner for MedianPruner {
    fn prune(&self, trial: &FrozenTrial, trials: &[FrozenTrial], direction: Direction) -> bool {
        let Some((&step, _)) = trial.intermediate.iter().next_back() else {
            return false;
        };
        if step < self.n_warmup_steps
            || !(step - self.n_warmup_steps).is_multiple_of(self.interval_steps.max(1))
        {
            return false;
        }
        let done: Vec<&FrozenTrial> = trials
            .iter()
            .filter(|t| {
                matches!(t.state, TrialState::Complete | TrialState::Pruned)
                    && t.number != trial.number
            })
            .collect();
        if done.len() < self.n_startup_trials {
            return false;
        }
        let better = |a: f64, b: f64| match direction {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        };
        let best = trial
            .intermediate
            .values()
            .copied()
            .filter(|v| !v.is_nan())
            .reduce(|a, b| if better(b, a) { b } else { a });
        let Some(best) = best else {
            return true; // only NaN reported: nothing worth continuing
        };
        let mut at_step: Vec<f64> = done
            .iter()
            .filter_map(|t| t.intermediate.get(&step).copied())
            .filter(|v| !v.is_nan())
            .collect();
        if at_step.is_empty() {
            return false;
        }
        at_step.sort_by(f64::total_cmp);
        let n = at_step.len();
        let median = if n % 2 == 1 {
            at_step[n / 2]
        } else {
            0.5 * (at_step[n / 2 - 1] + at_step[n / 2])
        };
        better(median, best)
    }
}
