//! Trials: states, recorded values and the define-by-run handle.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::space::{Distribution, ParamValue, Params};
use crate::study::Study;

/// The life-cycle state of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrialState {
    /// Asked, not yet told.
    Running,
    /// Finished with objective values.
    Complete,
    /// Stopped early by a pruner (may carry the last intermediate value).
    Pruned,
    /// The objective failed, or returned NaN or an infinity.
    Failed,
    /// Enqueued with fixed parameters, not yet asked.
    Waiting,
}

impl TrialState {
    /// Whether the trial has ended.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            TrialState::Complete | TrialState::Pruned | TrialState::Failed
        )
    }
}

/// Everything recorded about one trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrozenTrial {
    /// 0-based number, unique in the study.
    pub number: u64,
    /// State.
    pub state: TrialState,
    /// Parameter values.
    pub params: Params,
    /// The distribution each parameter was drawn from.
    pub distributions: BTreeMap<String, Distribution>,
    /// Objective values (one per direction) when complete.
    pub values: Option<Vec<f64>>,
    /// Intermediate values reported by step.
    pub intermediate: BTreeMap<u64, f64>,
    /// User attributes.
    pub user_attrs: BTreeMap<String, serde_json::Value>,
    /// Constraint values (feasible when all are <= 0), if reported.
    pub constraints: Option<Vec<f64>>,
}

impl FrozenTrial {
    pub(crate) fn new(number: u64, state: TrialState) -> Self {
        FrozenTrial {
            number,
            state,
            params: Params::new(),
            distributions: BTreeMap::new(),
            values: None,
            intermediate: BTreeMap::new(),
            user_attrs: BTreeMap::new(),
            constraints: None,
        }
    }

    /// The single objective value of a complete single-objective trial.
    pub fn value(&self) -> Option<f64> {
        self.values.as_ref().and_then(|v| v.first().copied())
    }

    /// Whether the trial satisfies its constraints (all values ≤ 0; true when it
    /// reported none).
    pub fn is_feasible(&self) -> bool {
        crate::pareto::violation(self) == 0.0
    }

    /// The internal (float) value of a parameter, if the trial has it.
    pub fn internal(&self, name: &str) -> Option<f64> {
        let d = self.distributions.get(name)?;
        d.to_internal(self.params.get(name)?)
    }
}

/// A running trial: suggest parameters (define-by-run), report intermediate values and
/// ask whether to prune. Borrowed from its [`Study`]; finish it with [`Study::tell`]
/// (or let [`Study::optimize`] do it).
pub struct Trial<'s> {
    pub(crate) study: &'s mut Study,
    pub(crate) number: u64,
}

impl Trial<'_> {
    /// The trial's number.
    pub fn number(&self) -> u64 {
        self.number
    }

    /// The study the trial belongs to (its best trial, its system attributes, an
    /// artifact upload while the trial runs).
    pub fn study(&mut self) -> &mut Study {
        self.study
    }

    /// Suggests a value for `name` from `distribution` (the same value again if the
    /// trial already has one).
    ///
    /// # Errors
    /// An invalid distribution, or one that differs from the distribution the name
    /// had earlier in this trial.
    pub fn suggest(&mut self, name: &str, distribution: Distribution) -> Result<ParamValue> {
        self.study.suggest(self.number, name, distribution)
    }

    /// Suggests a float in `[low, high]` (on a log scale with `log`).
    ///
    /// # Errors
    /// As [`Trial::suggest`].
    pub fn suggest_float(&mut self, name: &str, low: f64, high: f64, log: bool) -> Result<f64> {
        let d = Distribution::float(low, high);
        let d = if log { d.log() } else { d };
        Ok(self.suggest(name, d)?.as_f64().expect("float distribution"))
    }

    /// Suggests an integer in `[low, high]` (on a log scale with `log`).
    ///
    /// # Errors
    /// As [`Trial::suggest`].
    pub fn suggest_int(&mut self, name: &str, low: i64, high: i64, log: bool) -> Result<i64> {
        let d = Distribution::int(low, high);
        let d = if log { d.log() } else { d };
        Ok(self.suggest(name, d)?.as_i64().expect("int distribution"))
    }

    /// Suggests one of `choices`.
    ///
    /// # Errors
    /// As [`Trial::suggest`].
    pub fn suggest_categorical<T: Into<ParamValue>>(
        &mut self,
        name: &str,
        choices: impl IntoIterator<Item = T>,
    ) -> Result<ParamValue> {
        self.suggest(name, Distribution::categorical(choices))
    }

    /// Records an intermediate objective value at `step` (e.g. validation loss after an epoch).
    ///
    /// # Errors
    /// Storage errors.
    pub fn report(&mut self, step: u64, value: f64) -> Result<()> {
        self.study.storage.report(self.number, step, value)
    }

    /// Whether the study's pruner would stop this trial now.
    ///
    /// # Errors
    /// Storage errors.
    pub fn should_prune(&mut self) -> Result<bool> {
        self.study.should_prune(self.number)
    }

    /// Sets a user attribute.
    ///
    /// # Errors
    /// Storage errors.
    pub fn set_user_attr(&mut self, key: &str, value: serde_json::Value) -> Result<()> {
        self.study.storage.set_user_attr(self.number, key, value)
    }

    /// Reports constraint values (the trial is feasible when all are <= 0).
    ///
    /// # Errors
    /// Storage errors.
    pub fn set_constraints(&mut self, values: Vec<f64>) -> Result<()> {
        self.study.storage.set_constraints(self.number, values)
    }

    /// The parameters suggested so far.
    ///
    /// # Errors
    /// Storage errors.
    pub fn params(&mut self) -> Result<Params> {
        Ok(self.study.storage.trial(self.number)?.params)
    }

    /// The user attributes set so far.
    ///
    /// # Errors
    /// Storage errors.
    pub fn user_attrs(&mut self) -> Result<std::collections::BTreeMap<String, serde_json::Value>> {
        Ok(self.study.storage.trial(self.number)?.user_attrs)
    }

    /// The intermediate values reported so far, by step (a multi-fidelity trial's
    /// rung scores, by budget).
    ///
    /// # Errors
    /// Storage errors.
    pub fn intermediate(&mut self) -> Result<std::collections::BTreeMap<u64, f64>> {
        Ok(self.study.storage.trial(self.number)?.intermediate)
    }
}
