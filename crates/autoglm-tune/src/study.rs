//! Studies: ask/tell and the optimisation loop.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::pareto;
use crate::pruner::{NopPruner, Pruner};
use crate::sampler::{RandomSampler, Sampler, SamplerContext};
use crate::space::{Distribution, ParamValue, Params, SearchSpace};
use crate::storage::{intersection_space, Event, Storage};
use crate::trial::{FrozenTrial, Trial, TrialState};
use crate::Seed;

/// Whether an objective is minimised or maximised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Smaller is better.
    #[default]
    Minimize,
    /// Larger is better.
    Maximize,
}

impl Direction {
    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }
}

/// How a trial ended, for [`Study::tell`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Objective values, one per direction (a NaN or infinity fails the trial).
    Values(Vec<f64>),
    /// Stopped by the pruner.
    Pruned,
    /// The objective failed.
    Failed,
}

impl From<f64> for Outcome {
    fn from(v: f64) -> Self {
        Outcome::Values(vec![v])
    }
}

impl From<Vec<f64>> for Outcome {
    fn from(v: Vec<f64>) -> Self {
        Outcome::Values(v)
    }
}

/// Why an objective did not return a value.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialError {
    /// The trial should be recorded as pruned (usually after [`Trial::should_prune`]).
    Pruned,
    /// The trial failed; the message is kept in the user attribute `fail_reason`.
    Failed(String),
}

impl From<Error> for TrialError {
    fn from(e: Error) -> Self {
        TrialError::Failed(e.to_string())
    }
}

/// Why [`Study::optimize`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StopReason {
    /// The requested number of trials ran.
    TrialBudget,
}

/// What [`Study::optimize`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizeReport {
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Trials completed, pruned and failed in this call.
    pub completed: usize,
    /// Pruned trials.
    pub pruned: usize,
    /// Failed trials.
    pub failed: usize,
}

/// A study: a sequence of trials of one objective (or several), a sampler that
/// proposes parameters, a pruner, and a storage.
///
/// # Examples
/// The ask/tell loop, with pruning:
/// ```
/// use autoglm_tune::{MedianPruner, Outcome, Seed, Study};
/// # fn main() -> autoglm_tune::Result<()> {
/// let mut study = Study::minimize(Seed(7)).with_pruner(MedianPruner::default());
/// for _ in 0..30 {
///     let mut trial = study.ask()?;
///     let x = trial.suggest_float("x", -10.0, 10.0, false)?;
///     let lr = trial.suggest_float("lr", 1e-4, 1.0, true)?;
///     let mut pruned = false;
///     for step in 0..5 {
///         trial.report(step, (x - 2.0).powi(2) + lr / (step + 1) as f64)?;
///         if trial.should_prune()? {
///             pruned = true;
///             break;
///         }
///     }
///     let n = trial.number();
///     study.tell(n, if pruned { Outcome::Pruned } else { ((x - 2.0).powi(2) + lr / 5.0).into() })?;
/// }
/// let best = study.best_trial()?.expect("some trial completed");
/// assert!(best.value().unwrap() < 5.0);
/// # Ok(()) }
/// ```
pub struct Study {
    pub(crate) storage: Storage,
    sampler: Box<dyn Sampler>,
    pruner: Box<dyn Pruner>,
    directions: Vec<Direction>,
    relative: BTreeMap<u64, BTreeMap<String, f64>>,
}

impl std::fmt::Debug for Study {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Study")
            .field("storage", &self.storage)
            .field("directions", &self.directions)
            .finish()
    }
}

impl Study {
    /// A study with the given directions, random sampling from `seed`, no pruning and
    /// in-memory storage.
    ///
    /// # Panics
    /// If `directions` is empty.
    #[track_caller]
    pub fn new(directions: &[Direction], seed: Seed) -> Self {
        assert!(
            !directions.is_empty(),
            "a study needs at least one direction"
        );
        Study {
            storage: Storage::in_memory(),
            sampler: Box::new(RandomSampler::new(seed)),
            pruner: Box::new(NopPruner),
            directions: directions.to_vec(),
            relative: BTreeMap::new(),
        }
    }

    /// A single-objective minimisation study (see [`Study::new`]).
    pub fn minimize(seed: Seed) -> Self {
        Study::new(&[Direction::Minimize], seed)
    }

    /// A single-objective maximisation study (see [`Study::new`]).
    pub fn maximize(seed: Seed) -> Self {
        Study::new(&[Direction::Maximize], seed)
    }

    /// Uses `sampler`.
    pub fn with_sampler(mut self, sampler: impl Sampler + 'static) -> Self {
        self.sampler = Box::new(sampler);
        self
    }

    /// Uses `pruner`.
    pub fn with_pruner(mut self, pruner: impl Pruner + 'static) -> Self {
        self.pruner = Box::new(pruner);
        self
    }

    /// Uses `storage` (e.g. a journal, to resume or share a study).
    pub fn with_storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// The directions.
    pub fn directions(&self) -> &[Direction] {
        &self.directions
    }

    /// The storage (for its warnings, for example).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Starts a trial: takes the oldest enqueued one if any, else a new one, and lets
    /// the sampler propose the parameters that all complete trials share.
    ///
    /// # Errors
    /// Storage errors.
    pub fn ask(&mut self) -> Result<Trial<'_>> {
        let ev = self.storage.commit(|trials| {
            Ok(
                match trials.iter().find(|t| t.state == TrialState::Waiting) {
                    Some(t) => Event::Claim { number: t.number },
                    None => Event::Create {
                        number: trials.len() as u64,
                        state: TrialState::Running,
                        params: Params::new(),
                    },
                },
            )
        })?;
        let number = match ev {
            Event::Claim { number } | Event::Create { number, .. } => number,
            _ => unreachable!("ask commits a claim or a create"),
        };
        let space = intersection_space(self.storage.trials());
        let ctx = SamplerContext {
            trials: self.storage.trials(),
            directions: &self.directions,
            number,
        };
        let rel = self.sampler.sample_relative(&ctx, &space);
        let rel = rel
            .into_iter()
            .filter(|(k, _)| space.contains_key(k))
            .collect();
        self.relative.insert(number, rel);
        Ok(Trial {
            study: self,
            number,
        })
    }

    /// The handle of running trial `number` (e.g. one started by [`Study::ask_space`]),
    /// to report intermediate values, ask the pruner, set constraints or suggest more
    /// parameters.
    ///
    /// # Errors
    /// [`Error::UnknownTrial`] or [`Error::TrialFinished`].
    pub fn trial(&mut self, number: u64) -> Result<Trial<'_>> {
        self.running(number)?;
        Ok(Trial {
            study: self,
            number,
        })
    }

    /// Trial `number`, which must be running.
    fn running(&self, number: u64) -> Result<&FrozenTrial> {
        let t = self
            .storage
            .trials()
            .get(number as usize)
            .ok_or(Error::UnknownTrial(number))?;
        if t.state != TrialState::Running {
            return Err(Error::TrialFinished(number));
        }
        Ok(t)
    }

    /// Starts a trial and suggests every active parameter of a predefined space, in
    /// order (conditional parameters only when their parent has a matching value).
    ///
    /// # Errors
    /// Storage errors.
    pub fn ask_space(&mut self, space: &SearchSpace) -> Result<(u64, Params)> {
        let mut trial = self.ask()?;
        let mut chosen = Params::new();
        for spec in space.params() {
            if space.is_active(spec, &chosen) {
                let v = trial.suggest(&spec.name, spec.distribution.clone())?;
                chosen.insert(spec.name.clone(), v);
            }
        }
        Ok((trial.number, chosen))
    }

    pub(crate) fn suggest(
        &mut self,
        number: u64,
        name: &str,
        distribution: Distribution,
    ) -> Result<ParamValue> {
        let d = distribution.validated(name)?;
        let t = self.running(number)?;
        if let Some(old) = t.distributions.get(name) {
            if *old != d {
                return Err(Error::IncompatibleDistribution {
                    name: name.to_owned(),
                });
            }
            return Ok(t.params[name].clone());
        }
        let value = if let Some(fixed) = t.params.get(name) {
            // Enqueued with this value: it must fit the distribution.
            let x = d
                .to_internal(fixed)
                .ok_or_else(|| Error::OutOfDistribution {
                    name: name.to_owned(),
                    value: fixed.to_string(),
                })?;
            d.to_external(x)
        } else {
            let proposed = self
                .relative
                .get(&number)
                .and_then(|r| r.get(name))
                .copied()
                .filter(|&x| d.to_internal(&d.to_external(x)).is_some());
            let x = match proposed {
                Some(x) => x,
                None => {
                    let ctx = SamplerContext {
                        trials: self.storage.trials(),
                        directions: &self.directions,
                        number,
                    };
                    self.sampler.sample_independent(&ctx, name, &d)
                }
            };
            d.to_external(x)
        };
        let v = value.clone();
        self.storage.commit(move |_| {
            Ok(Event::Param {
                number,
                name: name.to_owned(),
                distribution: d,
                value: v,
            })
        })?;
        Ok(value)
    }

    pub(crate) fn should_prune(&mut self, number: u64) -> Result<bool> {
        self.storage.refresh()?;
        let trials = self.storage.trials();
        let t = trials
            .get(number as usize)
            .ok_or(Error::UnknownTrial(number))?;
        Ok(self.pruner.prune(t, trials, self.directions[0]))
    }

    /// Enqueues a trial with fixed parameters (e.g. a known good default), evaluated
    /// before any sampled one; parameters it does not fix are sampled as usual.
    ///
    /// # Errors
    /// Storage errors.
    pub fn enqueue(&mut self, params: Params) -> Result<u64> {
        let ev = self.storage.commit(|trials| {
            Ok(Event::Create {
                number: trials.len() as u64,
                state: TrialState::Waiting,
                params,
            })
        })?;
        match ev {
            Event::Create { number, .. } => Ok(number),
            _ => unreachable!("enqueue commits a create"),
        }
    }

    /// Finishes a trial. Values that are NaN or infinite fail the trial (the study
    /// goes on); a pruned trial keeps its last intermediate value as its value.
    ///
    /// # Errors
    /// [`Error::WrongValueCount`], [`Error::UnknownTrial`], [`Error::TrialFinished`]
    /// or storage errors.
    pub fn tell(&mut self, number: u64, outcome: impl Into<Outcome>) -> Result<TrialState> {
        let outcome = outcome.into();
        let n_obj = self.directions.len();
        let ev = self.storage.commit(|trials| {
            let t = trials
                .get(number as usize)
                .ok_or(Error::UnknownTrial(number))?;
            if t.state.is_finished() {
                return Err(Error::TrialFinished(number));
            }
            let (state, values) = match outcome {
                Outcome::Values(v) if v.len() != n_obj => {
                    return Err(Error::WrongValueCount {
                        expected: n_obj,
                        got: v.len(),
                    })
                }
                Outcome::Values(v) if v.iter().all(|x| x.is_finite()) => {
                    (TrialState::Complete, Some(v))
                }
                Outcome::Values(_) | Outcome::Failed => (TrialState::Failed, None),
                Outcome::Pruned => (
                    TrialState::Pruned,
                    t.intermediate.values().next_back().map(|&v| vec![v]),
                ),
            };
            Ok(Event::Finish {
                number,
                state,
                values,
            })
        })?;
        self.relative.remove(&number);
        match ev {
            Event::Finish { state, .. } => Ok(state),
            _ => unreachable!("tell commits a finish"),
        }
    }

    /// Runs `n_trials` trials of `objective`, which returns an `f64` (one objective) or
    /// a `Vec<f64>` (one value per direction). An objective error, a non-finite value or
    /// a wrong number of values fails that trial only; [`TrialError::Pruned`] prunes it.
    ///
    /// # Errors
    /// Storage errors (objective failures are recorded, not returned).
    pub fn optimize<O: Into<Outcome>>(
        &mut self,
        n_trials: usize,
        mut objective: impl FnMut(&mut Trial<'_>) -> std::result::Result<O, TrialError>,
    ) -> Result<OptimizeReport> {
        let mut report = OptimizeReport {
            stop_reason: StopReason::TrialBudget,
            completed: 0,
            pruned: 0,
            failed: 0,
        };
        let n_obj = self.directions.len();
        for _ in 0..n_trials {
            let mut trial = self.ask()?;
            let number = trial.number();
            let result = objective(&mut trial);
            let outcome = match result.map(Into::into) {
                Ok(Outcome::Values(v)) if v.len() != n_obj => {
                    let msg = format!("expected {n_obj} objective values, got {}", v.len());
                    trial.set_user_attr("fail_reason", serde_json::Value::String(msg))?;
                    Outcome::Failed
                }
                Ok(o) => o,
                Err(TrialError::Pruned) => Outcome::Pruned,
                Err(TrialError::Failed(msg)) => {
                    trial.set_user_attr("fail_reason", serde_json::Value::String(msg))?;
                    Outcome::Failed
                }
            };
            match self.tell(number, outcome)? {
                TrialState::Complete => report.completed += 1,
                TrialState::Pruned => report.pruned += 1,
                _ => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// All trials (re-read from a shared journal).
    ///
    /// # Errors
    /// Storage errors.
    pub fn trials(&mut self) -> Result<Vec<FrozenTrial>> {
        self.storage.refresh()?;
        Ok(self.storage.trials().to_vec())
    }

    /// The best complete feasible trial of a single-objective study (the first one on
    /// ties); for several objectives, see [`Study::best_trials`].
    ///
    /// # Errors
    /// Storage errors.
    pub fn best_trial(&mut self) -> Result<Option<FrozenTrial>> {
        self.storage.refresh()?;
        let dir = self.directions[0];
        Ok(self
            .storage
            .trials()
            .iter()
            .filter(|t| t.state == TrialState::Complete && t.is_feasible())
            .fold(None::<&FrozenTrial>, |best, t| match (best, t.value()) {
                (Some(b), Some(v)) if !dir.better(v, b.value().expect("complete")) => Some(b),
                (_, Some(_)) => Some(t),
                (b, None) => b,
            })
            .cloned())
    }

    /// The Pareto front: complete feasible trials that no other such trial dominates
    /// (for one objective, every trial with the best value), in trial order.
    ///
    /// # Errors
    /// Storage errors.
    pub fn best_trials(&mut self) -> Result<Vec<FrozenTrial>> {
        self.storage.refresh()?;
        let ok: Vec<&FrozenTrial> = self
            .storage
            .trials()
            .iter()
            .filter(|t| t.state == TrialState::Complete && t.is_feasible())
            .collect();
        let losses: Vec<Vec<f64>> = ok
            .iter()
            .map(|t| pareto::losses(t.values.as_deref().unwrap_or(&[]), &self.directions))
            .collect();
        let front = pareto::fronts(&losses);
        Ok(ok
            .into_iter()
            .zip(front)
            .filter(|(_, f)| *f == 0)
            .map(|(t, _)| t.clone())
            .collect())
    }
}
