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

/// The value a trial reported at the first step at or after `step`.
fn rung_value(trial: &FrozenTrial, step: u64) -> Option<f64> {
    trial.intermediate.range(step..).next().map(|(_, &v)| v)
}

/// Asynchronous successive halving shared by [`SuccessiveHalvingPruner`] and
/// [`HyperbandPruner`]: checks the rungs that the trial's latest report crossed, each
/// against the trials in `competitors` that reached that rung.
fn successive_halving(
    trial: &FrozenTrial,
    competitors: &[&FrozenTrial],
    direction: Direction,
    min_resource: u64,
    reduction_factor: u64,
    min_early_stopping_rate: u32,
    bootstrap_count: usize,
) -> bool {
    let mut reports = trial.intermediate.iter().rev();
    let Some((&step, &value)) = reports.next() else {
        return false;
    };
    let previous = reports.next().map(|(&s, _)| s);
    let eta = reduction_factor.max(2);
    let rung_step = |rung: u32| {
        eta.checked_pow(min_early_stopping_rate + rung)
            .and_then(|p| p.checked_mul(min_resource.max(1)))
            .unwrap_or(u64::MAX)
    };
    // Rungs passed on earlier reports were already decided (and passed, since the
    // trial is still running).
    let mut rung = 0;
    while previous.is_some_and(|p| rung_step(rung) <= p) {
        rung += 1;
    }
    while rung_step(rung) <= step {
        if value.is_nan() {
            return true;
        }
        let at = rung_step(rung);
        let mut competing: Vec<f64> = competitors
            .iter()
            .filter(|t| t.number != trial.number)
            .filter_map(|t| rung_value(t, at))
            .filter(|v| !v.is_nan())
            .collect();
        competing.push(value);
        if competing.len() <= bootstrap_count {
            return true;
        }
        // The trial goes on if it is in the top 1/η of the rung (or, while fewer than
        // η trials reached it, if it is the best so far).
        let keep = (competing.len() / eta as usize).max(1);
        competing.sort_by(f64::total_cmp);
        let promotable = match direction {
            Direction::Minimize => value <= competing[keep - 1],
            Direction::Maximize => value >= competing[competing.len() - keep],
        };
        if !promotable {
            return true;
        }
        rung += 1;
    }
    false
}

/// The largest last reported step among complete trials.
fn longest_complete(trials: &[FrozenTrial]) -> Option<u64> {
    trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| t.intermediate.keys().next_back().copied())
        .max()
}

/// Asynchronous successive halving (ASHA, Li et al. 2020), as Optuna's
/// `SuccessiveHalvingPruner`: rung `k` sits at step `min_resource·η^(s+k)` (η the
/// reduction factor, `s` the minimum early-stopping rate); a trial reaching a rung goes
/// on only if its value there is in the best `1/η` of all trials that reached it.
///
/// A trial's value at a rung is its value at the first reported step at or after the
/// rung, and each check covers the rungs crossed since the trial's previous report,
/// so call [`crate::Trial::should_prune`] after every [`crate::Trial::report`].
#[derive(Debug, Clone, Copy)]
pub struct SuccessiveHalvingPruner {
    /// Steps of the first rung; `None` estimates it as 1/100 of the longest complete
    /// trial (no pruning until a trial completes).
    pub min_resource: Option<u64>,
    /// η: one trial in η is promoted at each rung.
    pub reduction_factor: u64,
    /// `s`: the first rung is at `min_resource·η^s`.
    pub min_early_stopping_rate: u32,
    /// Prune at a rung until more than this many trials reached it.
    pub bootstrap_count: usize,
}

impl Default for SuccessiveHalvingPruner {
    fn default() -> Self {
        SuccessiveHalvingPruner {
            min_resource: None,
            reduction_factor: 4,
            min_early_stopping_rate: 0,
            bootstrap_count: 0,
        }
    }
}

impl Pruner for SuccessiveHalvingPruner {
    fn prune(&self, trial: &FrozenTrial, trials: &[FrozenTrial], direction: Direction) -> bool {
        let Some(min_resource) = self
            .min_resource
            .or_else(|| longest_complete(trials).map(|s| (s / 100).max(1)))
        else {
            return false;
        };
        let competitors: Vec<&FrozenTrial> = trials.iter().collect();
        successive_halving(
            trial,
            &competitors,
            direction,
            min_resource,
            self.reduction_factor,
            self.min_early_stopping_rate,
            self.bootstrap_count,
        )
    }
}

/// Hyperband (Li et al. 2018) over asynchronous successive halving, as Optuna's
/// `HyperbandPruner`: `⌊log_η(max/min)⌋ + 1` brackets, bracket `i` being successive
/// halving with minimum early-stopping rate `i`; each trial joins one bracket, drawn by
/// a hash of its number with weights proportional to the brackets' budgets, and
/// competes only with trials of its bracket.
#[derive(Debug, Clone, Copy)]
pub struct HyperbandPruner {
    /// Steps of the first rung of the most aggressive bracket.
    pub min_resource: u64,
    /// The most steps a trial runs; `None` takes the last step of the longest complete
    /// trial (no pruning until a trial completes).
    pub max_resource: Option<u64>,
    /// η.
    pub reduction_factor: u64,
    /// As in [`SuccessiveHalvingPruner`].
    pub bootstrap_count: usize,
}

impl Default for HyperbandPruner {
    fn default() -> Self {
        HyperbandPruner {
            min_resource: 1,
            max_resource: None,
            reduction_factor: 3,
            bootstrap_count: 0,
        }
    }
}

impl HyperbandPruner {
    /// The number of brackets for a maximum resource.
    fn n_brackets(&self, max_resource: u64) -> u32 {
        let eta = self.reduction_factor.max(2);
        let ratio = max_resource / self.min_resource.max(1);
        let mut n = 0;
        let mut r = 1u64;
        while r.saturating_mul(eta) <= ratio {
            r *= eta;
            n += 1;
        }
        n + 1
    }

    /// The bracket of trial `number`.
    pub fn bracket(&self, number: u64, max_resource: u64) -> u32 {
        let n = self.n_brackets(max_resource);
        let eta = self.reduction_factor.max(2) as f64;
        // Optuna's allocation: bracket i gets ⌈n·η^s/(s+1)⌉ with s = n − 1 − i.
        let budgets: Vec<u64> = (0..n)
            .map(|i| {
                let s = f64::from(n - 1 - i);
                (f64::from(n) * eta.powf(s) / (s + 1.0)).ceil() as u64
            })
            .collect();
        let total: u64 = budgets.iter().sum();
        let mut h = splitmix64(number) % total.max(1);
        for (i, b) in budgets.iter().enumerate() {
            if h < *b {
                return i as u32;
            }
            h -= b;
        }
        n - 1
    }
}

/// A fixed, well-mixed hash of a trial number.
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Pruner for HyperbandPruner {
    fn prune(&self, trial: &FrozenTrial, trials: &[FrozenTrial], direction: Direction) -> bool {
        let Some(max_resource) = self.max_resource.or_else(|| longest_complete(trials)) else {
            return false;
        };
        let bracket = self.bracket(trial.number, max_resource);
        let competitors: Vec<&FrozenTrial> = trials
            .iter()
            .filter(|t| self.bracket(t.number, max_resource) == bracket)
            .collect();
        successive_halving(
            trial,
            &competitors,
            direction,
            self.min_resource,
            self.reduction_factor,
            bracket,
            self.bootstrap_count,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn trial(number: u64, state: TrialState, curve: &[(u64, f64)]) -> FrozenTrial {
        let mut t = FrozenTrial::new(number, state);
        t.intermediate = curve.iter().copied().collect();
        t
    }

    #[test]
    fn asha_promotes_the_top_fraction_at_each_rung() {
        let sha = SuccessiveHalvingPruner {
            min_resource: Some(1),
            reduction_factor: 2,
            ..Default::default()
        };
        // Four finished trials with values at steps 1, 2, 4.
        let done: Vec<FrozenTrial> = (0..4)
            .map(|i| {
                let v = f64::from(i as u8);
                trial(i, TrialState::Complete, &[(1, v), (2, v), (4, v)])
            })
            .collect();
        // Rung 0 (step 1): of 5 values the best 2 go on; 0.5 is second best.
        let mut all = done.clone();
        let t = trial(9, TrialState::Running, &[(1, 0.5)]);
        all.push(t.clone());
        assert!(!sha.prune(&t, &all, Direction::Minimize));
        // 1.5 is third of five: pruned at rung 0.
        let t = trial(9, TrialState::Running, &[(1, 1.5)]);
        assert!(sha.prune(&t, &all, Direction::Minimize));
        // The same values maximised: 1.5 is third best of five, pruned; 2.5 is second.
        assert!(sha.prune(&t, &all, Direction::Maximize));
        let t = trial(9, TrialState::Running, &[(1, 2.5)]);
        assert!(!sha.prune(&t, &all, Direction::Maximize));
        // Between rungs nothing is checked; at step 2 (rung 1) 0.5 is still second.
        let t = trial(9, TrialState::Running, &[(1, 0.5), (2, 0.5)]);
        assert!(!sha.prune(&t, &all, Direction::Minimize));
        let t = trial(9, TrialState::Running, &[(1, 0.5), (2, 0.5), (3, 9.0)]);
        assert!(!sha.prune(&t, &all, Direction::Minimize));
        // At step 4 (rung 2) a value of 1.2 is third of five: pruned.
        let t = trial(
            9,
            TrialState::Running,
            &[(1, 0.5), (2, 0.5), (3, 9.0), (4, 1.2)],
        );
        assert!(sha.prune(&t, &all, Direction::Minimize));
        // NaN at a rung prunes.
        let t = trial(9, TrialState::Running, &[(1, f64::NAN)]);
        assert!(sha.prune(&t, &all, Direction::Minimize));
    }

    #[test]
    fn asha_auto_resource_waits_for_a_complete_trial() {
        let sha = SuccessiveHalvingPruner::default();
        let t = trial(0, TrialState::Running, &[(1, 100.0)]);
        let running = vec![t.clone(), trial(1, TrialState::Running, &[(1, 0.0)])];
        assert!(!sha.prune(&t, &running, Direction::Minimize));
        // With a complete 400-step trial the first rung is at step 4.
        let mut all = running.clone();
        all.push(trial(2, TrialState::Complete, &[(4, 0.0), (400, 0.0)]));
        let t3 = trial(0, TrialState::Running, &[(3, 100.0)]);
        assert!(!sha.prune(&t3, &all, Direction::Minimize));
        // Fewer than η trials at the rung: only the best goes on.
        let best = trial(0, TrialState::Running, &[(3, 100.0), (4, -1.0)]);
        assert!(!sha.prune(&best, &all, Direction::Minimize));
        let t4 = trial(0, TrialState::Running, &[(3, 100.0), (4, 100.0)]);
        assert!(sha.prune(&t4, &all, Direction::Minimize));
        all.push(trial(3, TrialState::Complete, &[(4, 1.0), (400, 1.0)]));
        all.push(trial(4, TrialState::Complete, &[(4, 2.0), (400, 2.0)]));
        all.push(trial(5, TrialState::Complete, &[(4, 3.0), (400, 3.0)]));
        assert!(sha.prune(&t4, &all, Direction::Minimize));
    }

    #[test]
    fn hyperband_brackets_follow_the_budgets() {
        let hb = HyperbandPruner {
            max_resource: Some(81),
            ..Default::default()
        };
        assert_eq!(hb.n_brackets(81), 5);
        let mut counts = [0u32; 5];
        for n in 0..10_000 {
            counts[hb.bracket(n, 81) as usize] += 1;
        }
        // Budgets ⌈5·3^s/(s+1)⌉ for s = 4..0: 82, 34, 15, 8, 5 (of 144).
        let expected = [82.0, 34.0, 15.0, 8.0, 5.0];
        for (c, e) in counts.iter().zip(expected) {
            let share = f64::from(*c) / 10_000.0;
            assert!((share - e / 144.0).abs() < 0.02, "{counts:?}");
        }
        // Trials compete only inside their bracket: a bad value among good ones from
        // other brackets is judged by its own bracket alone.
        let b0: Vec<u64> = (0..200)
            .filter(|&n| hb.bracket(n, 81) == 0)
            .take(6)
            .collect();
        let other = (0..200).find(|&n| hb.bracket(n, 81) != 0).unwrap();
        let mut all = vec![trial(
            other,
            TrialState::Complete,
            &[(1, -100.0), (81, -100.0)],
        )];
        let t = trial(b0[0], TrialState::Running, &[(1, 5.0)]);
        all.push(t.clone());
        assert!(!hb.prune(&t, &all, Direction::Minimize));
        for (i, &n) in b0[1..].iter().enumerate() {
            all.push(trial(n, TrialState::Complete, &[(1, i as f64), (81, 0.0)]));
        }
        assert!(hb.prune(&t, &all, Direction::Minimize));
    }
}
