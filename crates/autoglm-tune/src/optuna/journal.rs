//! Optuna's journal operations and their replay, with Optuna 5's rules: study ids
//! from a counter that never reuses one, trial ids dense over the whole journal
//! (deleted studies keep theirs), a trial's number its place in its study, an
//! invalid operation of this worker's an error and another worker's ignored, the
//! first RUNNING claim of a waiting trial in log order the one that holds, and
//! operation 10 (discard trials, written by Rustuna) skipped.

use std::collections::{BTreeMap, HashMap};

use super::pyjson::{PyJson, Separators};
use crate::space::{Distribution, ParamValue};
use crate::trial::TrialState;

/// Optuna's operation codes (`JournalOperation`).
pub mod op {
    /// `CREATE_STUDY`.
    pub const CREATE_STUDY: i64 = 0;
    /// `DELETE_STUDY`.
    pub const DELETE_STUDY: i64 = 1;
    /// `SET_STUDY_USER_ATTR`.
    pub const SET_STUDY_USER_ATTR: i64 = 2;
    /// `SET_STUDY_SYSTEM_ATTR`.
    pub const SET_STUDY_SYSTEM_ATTR: i64 = 3;
    /// `CREATE_TRIAL`.
    pub const CREATE_TRIAL: i64 = 4;
    /// `SET_TRIAL_PARAM`.
    pub const SET_TRIAL_PARAM: i64 = 5;
    /// `SET_TRIAL_STATE_VALUES`.
    pub const SET_TRIAL_STATE_VALUES: i64 = 6;
    /// `SET_TRIAL_INTERMEDIATE_VALUE`.
    pub const SET_TRIAL_INTERMEDIATE_VALUE: i64 = 7;
    /// `SET_TRIAL_USER_ATTR`.
    pub const SET_TRIAL_USER_ATTR: i64 = 8;
    /// `SET_TRIAL_SYSTEM_ATTR`.
    pub const SET_TRIAL_SYSTEM_ATTR: i64 = 9;
    /// `DISCARD_TRIALS` (Rustuna's; Optuna 5 skips it).
    pub const DISCARD_TRIALS: i64 = 10;
}

/// A trial state's number in the journal (`TrialState` in Optuna).
pub fn state_code(s: TrialState) -> i64 {
    match s {
        TrialState::Running => 0,
        TrialState::Complete => 1,
        TrialState::Pruned => 2,
        TrialState::Failed => 3,
        TrialState::Waiting => 4,
    }
}

/// The trial state a journal number stands for.
pub fn state_from_code(c: i64) -> Option<TrialState> {
    Some(match c {
        0 => TrialState::Running,
        1 => TrialState::Complete,
        2 => TrialState::Pruned,
        3 => TrialState::Failed,
        4 => TrialState::Waiting,
        _ => return None,
    })
}

/// A study as the journal left it.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalStudy {
    /// Its id (unique in the journal, never reused).
    pub id: u64,
    /// Its name (unique among the studies not deleted).
    pub name: String,
    /// Optuna's `StudyDirection` numbers: 0 not set, 1 minimize, 2 maximize.
    pub directions: Vec<i64>,
    /// User attributes.
    pub user_attrs: BTreeMap<String, PyJson>,
    /// System attributes.
    pub system_attrs: BTreeMap<String, PyJson>,
    /// The system attributes' keys in the order the log first set them (the order
    /// of Python's `study.system_attrs`): the first of several workers' claims.
    pub system_attrs_order: Vec<String>,
    /// Its trials' ids, by number.
    pub trials: Vec<u64>,
}

/// A trial as the journal left it.
#[derive(Debug, Clone, PartialEq)]
pub struct JournalTrial {
    /// Its id (dense over the journal).
    pub id: u64,
    /// Its study's id.
    pub study_id: u64,
    /// Its place in its study.
    pub number: u64,
    /// State.
    pub state: TrialState,
    /// Objective values.
    pub values: Option<Vec<f64>>,
    /// When it started running (ISO 8601 as written: UTC with `+00:00` from Optuna 5,
    /// naive local time before).
    pub datetime_start: Option<String>,
    /// When it finished.
    pub datetime_complete: Option<String>,
    /// Parameters (external values).
    pub params: BTreeMap<String, ParamValue>,
    /// Their distributions.
    pub distributions: BTreeMap<String, Distribution>,
    /// User attributes.
    pub user_attrs: BTreeMap<String, PyJson>,
    /// System attributes.
    pub system_attrs: BTreeMap<String, PyJson>,
    /// Intermediate values by step.
    pub intermediate: BTreeMap<i64, f64>,
}

/// Why this worker's own operation could not be applied (another worker's is
/// ignored, as Optuna does), or why a line is not an operation at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// The line is not a valid operation (a field missing or of the wrong type, an
    /// unknown operation code or state).
    Malformed(String),
    /// A study of this name exists already.
    DuplicatedStudy(String),
    /// No such study or trial (or the study was deleted).
    NotFound(String),
    /// The trial has finished and cannot be updated.
    Finished(u64),
    /// A parameter's distribution differs from the one it has in this study.
    IncompatibleDistribution(String),
}

impl std::fmt::Display for ReplayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplayError::Malformed(m) => write!(f, "not a journal operation: {m}"),
            ReplayError::DuplicatedStudy(n) => write!(f, "a study named '{n}' exists already"),
            ReplayError::NotFound(m) => write!(f, "{m} does not exist"),
            ReplayError::Finished(n) => {
                write!(f, "trial #{n} has already finished and can not be updated")
            }
            ReplayError::IncompatibleDistribution(p) => write!(
                f,
                "parameter '{p}' has another distribution earlier in this study"
            ),
        }
    }
}

impl std::error::Error for ReplayError {}

fn malformed(what: impl Into<String>) -> ReplayError {
    ReplayError::Malformed(what.into())
}

/// The state replayed from a journal's operations, as Optuna's
/// `JournalStorageReplayResult` keeps it.
#[derive(Debug, Clone, Default)]
pub struct Replay {
    /// Lines applied (or ignored) so far: where the next read starts.
    pub log_number_read: u64,
    studies: BTreeMap<u64, JournalStudy>,
    next_study_id: u64,
    trials: Vec<JournalTrial>,
    owned: HashMap<String, u64>,
    last_created_by_me: Option<u64>,
}

impl Replay {
    /// Nothing replayed yet.
    pub fn new() -> Self {
        Replay::default()
    }

    /// The studies not deleted, by id.
    pub fn studies(&self) -> impl Iterator<Item = &JournalStudy> {
        self.studies.values()
    }

    /// The study named `name`, if not deleted.
    pub fn study_by_name(&self, name: &str) -> Option<&JournalStudy> {
        self.studies.values().find(|s| s.name == name)
    }

    /// A study by id.
    pub fn study(&self, id: u64) -> Option<&JournalStudy> {
        self.studies.get(&id)
    }

    /// A trial by id (deleted studies' trials included).
    pub fn trial(&self, id: u64) -> Option<&JournalTrial> {
        self.trials.get(id as usize)
    }

    /// Every trial of the journal, by id.
    pub fn trials(&self) -> &[JournalTrial] {
        &self.trials
    }

    /// The trial `worker` holds as running (its last claim or creation of a running
    /// trial).
    pub fn owned_trial(&self, worker: &str) -> Option<u64> {
        self.owned.get(worker).copied()
    }

    /// The last trial this worker created.
    pub fn last_created_by_me(&self) -> Option<u64> {
        self.last_created_by_me
    }

    /// Applies one line (counted whatever happens, as Optuna counts it). `me` is this
    /// worker's id: its own invalid operations are errors, other workers' are
    /// ignored.
    ///
    /// # Errors
    /// [`ReplayError`] for a malformed line, or for this worker's operation that
    /// cannot apply.
    pub fn apply(&mut self, log: &PyJson, me: &str) -> Result<(), ReplayError> {
        self.log_number_read += 1;
        let code = log
            .get("op_code")
            .and_then(PyJson::as_i64)
            .ok_or_else(|| malformed("no integer 'op_code'"))?;
        let worker = log
            .get("worker_id")
            .and_then(PyJson::as_str)
            .ok_or_else(|| malformed("no string 'worker_id'"))?;
        let mine = worker == me;
        // Another worker's operation that cannot apply is ignored.
        let own = |e: ReplayError| if mine { Err(e) } else { Ok(()) };
        match code {
            op::CREATE_STUDY => {
                let name = str_field(log, "study_name")?.to_owned();
                let directions = list_field(log, "directions")?
                    .iter()
                    .map(|d| match d.as_i64() {
                        Some(x @ 0..=2) => Ok(x),
                        _ => Err(malformed(format!(
                            "direction {}",
                            d.dumps(Separators::Compact)
                        ))),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                if self.study_by_name(&name).is_some() {
                    return own(ReplayError::DuplicatedStudy(name));
                }
                let id = self.next_study_id;
                self.next_study_id += 1;
                self.studies.insert(
                    id,
                    JournalStudy {
                        id,
                        name,
                        directions,
                        user_attrs: BTreeMap::new(),
                        system_attrs: BTreeMap::new(),
                        system_attrs_order: Vec::new(),
                        trials: Vec::new(),
                    },
                );
            }
            op::DELETE_STUDY => {
                let id = u64_field(log, "study_id")?;
                if self.studies.remove(&id).is_none() {
                    return own(ReplayError::NotFound(format!("study {id}")));
                }
            }
            op::SET_STUDY_USER_ATTR | op::SET_STUDY_SYSTEM_ATTR => {
                let id = u64_field(log, "study_id")?;
                let field = if code == op::SET_STUDY_USER_ATTR {
                    "user_attr"
                } else {
                    "system_attr"
                };
                let (k, v) = single_attr(log, field)?;
                let Some(study) = self.studies.get_mut(&id) else {
                    return own(ReplayError::NotFound(format!("study {id}")));
                };
                if code == op::SET_STUDY_USER_ATTR {
                    study.user_attrs.insert(k, v);
                } else {
                    if !study.system_attrs.contains_key(&k) {
                        study.system_attrs_order.push(k.clone());
                    }
                    study.system_attrs.insert(k, v);
                }
            }
            op::CREATE_TRIAL => return self.create_trial(log, worker, mine),
            op::SET_TRIAL_PARAM => {
                let id = self.updatable(log, mine)?;
                let Some(id) = id else { return Ok(()) };
                let name = str_field(log, "param_name")?.to_owned();
                let dist =
                    distribution_from_json(str_field(log, "distribution")?).map_err(malformed)?;
                let internal = log
                    .get("param_value_internal")
                    .and_then(PyJson::as_f64)
                    .ok_or_else(|| malformed("no number 'param_value_internal'"))?;
                let value = external(&dist, internal).map_err(malformed)?;
                // The first trial of the study that has the parameter (this one
                // included) fixes its distribution's kind.
                let study = self.trials[id as usize].study_id;
                let earlier = self.studies.get(&study).and_then(|s| {
                    s.trials
                        .iter()
                        .find_map(|&t| self.trials[t as usize].distributions.get(&name))
                });
                if let Some(prev) = earlier {
                    if !compatible(prev, &dist) {
                        return own(ReplayError::IncompatibleDistribution(name));
                    }
                }
                let t = &mut self.trials[id as usize];
                t.params.insert(name.clone(), value);
                t.distributions.insert(name, dist);
            }
            op::SET_TRIAL_STATE_VALUES => {
                let Some(id) = self.updatable(log, mine)? else {
                    return Ok(());
                };
                let state = log
                    .get("state")
                    .and_then(PyJson::as_i64)
                    .and_then(state_from_code)
                    .ok_or_else(|| malformed("no valid 'state'"))?;
                let values = floats_or_null(log.get("values"), "values")?;
                let t = &mut self.trials[id as usize];
                if state == TrialState::Running && t.state == TrialState::Running {
                    // A second claim: the first in log order holds, for everyone.
                    return Ok(());
                }
                if state == TrialState::Running {
                    t.datetime_start = opt_str(log.get("datetime_start"));
                    if mine {
                        self.owned.insert(worker.to_owned(), id);
                    }
                }
                if state.is_finished() {
                    t.datetime_complete = opt_str(log.get("datetime_complete"));
                }
                t.state = state;
                if values.is_some() {
                    t.values = values;
                }
            }
            op::SET_TRIAL_INTERMEDIATE_VALUE => {
                let Some(id) = self.updatable(log, mine)? else {
                    return Ok(());
                };
                let step = log
                    .get("step")
                    .and_then(PyJson::as_i64)
                    .ok_or_else(|| malformed("no integer 'step'"))?;
                let value = log
                    .get("intermediate_value")
                    .and_then(PyJson::as_f64)
                    .ok_or_else(|| malformed("no number 'intermediate_value'"))?;
                self.trials[id as usize].intermediate.insert(step, value);
            }
            op::SET_TRIAL_USER_ATTR | op::SET_TRIAL_SYSTEM_ATTR => {
                let field = if code == op::SET_TRIAL_USER_ATTR {
                    "user_attr"
                } else {
                    "system_attr"
                };
                let (k, v) = single_attr(log, field)?;
                let Some(id) = self.updatable(log, mine)? else {
                    return Ok(());
                };
                let t = &mut self.trials[id as usize];
                let attrs = if code == op::SET_TRIAL_USER_ATTR {
                    &mut t.user_attrs
                } else {
                    &mut t.system_attrs
                };
                attrs.insert(k, v);
            }
            op::DISCARD_TRIALS => {}
            other => return Err(malformed(format!("unknown operation code {other}"))),
        }
        Ok(())
    }

    /// The trial a trial operation names, if it can be updated: `Ok(None)` for
    /// another worker's operation on a trial that is unknown or finished.
    fn updatable(&self, log: &PyJson, mine: bool) -> Result<Option<u64>, ReplayError> {
        let id = u64_field(log, "trial_id")?;
        let Some(t) = self.trials.get(id as usize) else {
            return if mine {
                Err(ReplayError::NotFound(format!("trial {id}")))
            } else {
                Ok(None)
            };
        };
        if t.state.is_finished() {
            return if mine {
                Err(ReplayError::Finished(t.number))
            } else {
                Ok(None)
            };
        }
        Ok(Some(id))
    }

    fn create_trial(&mut self, log: &PyJson, worker: &str, mine: bool) -> Result<(), ReplayError> {
        let study_id = u64_field(log, "study_id")?;
        if log.get("datetime_start").is_none() {
            return Err(malformed("no 'datetime_start'"));
        }
        let state = match log.get("state") {
            None => TrialState::Running,
            Some(s) => s
                .as_i64()
                .and_then(state_from_code)
                .ok_or_else(|| malformed("no valid 'state'"))?,
        };
        let mut distributions = BTreeMap::new();
        if let Some(d) = log.get("distributions") {
            for (k, v) in d
                .as_dict()
                .ok_or_else(|| malformed("'distributions' is not an object"))?
            {
                let text = v
                    .as_str()
                    .ok_or_else(|| malformed(format!("distribution of '{k}' is not a string")))?;
                distributions.insert(k.clone(), distribution_from_json(text).map_err(malformed)?);
            }
        }
        let mut params = BTreeMap::new();
        if let Some(p) = log.get("params") {
            for (k, v) in p
                .as_dict()
                .ok_or_else(|| malformed("'params' is not an object"))?
            {
                let dist = distributions
                    .get(k)
                    .ok_or_else(|| malformed(format!("parameter '{k}' has no distribution")))?;
                let internal = v
                    .as_f64()
                    .ok_or_else(|| malformed(format!("parameter '{k}' is not a number")))?;
                params.insert(k.clone(), external(dist, internal).map_err(malformed)?);
            }
        }
        let value = match log.get("value") {
            None | Some(PyJson::Null) => None,
            Some(v) => Some(
                v.as_f64()
                    .ok_or_else(|| malformed("'value' is not a number"))?,
            ),
        };
        let values = match value {
            Some(v) => Some(vec![v]),
            None => floats_or_null(log.get("values"), "values")?,
        };
        let mut intermediate = BTreeMap::new();
        if let Some(iv) = log.get("intermediate_values") {
            for (k, v) in iv
                .as_dict()
                .ok_or_else(|| malformed("'intermediate_values' is not an object"))?
            {
                let step: i64 = k
                    .trim()
                    .parse()
                    .map_err(|_| malformed(format!("intermediate step '{k}'")))?;
                let x = v
                    .as_f64()
                    .ok_or_else(|| malformed(format!("intermediate value at step {k}")))?;
                intermediate.insert(step, x);
            }
        }
        let user_attrs = attrs_field(log, "user_attrs")?;
        let system_attrs = attrs_field(log, "system_attrs")?;
        let Some(study) = self.studies.get_mut(&study_id) else {
            return if mine {
                Err(ReplayError::NotFound(format!("study {study_id}")))
            } else {
                Ok(())
            };
        };
        let id = self.trials.len() as u64;
        let number = study.trials.len() as u64;
        study.trials.push(id);
        self.trials.push(JournalTrial {
            id,
            study_id,
            number,
            state,
            values,
            datetime_start: opt_str(log.get("datetime_start")),
            datetime_complete: opt_str(log.get("datetime_complete")),
            params,
            distributions,
            user_attrs,
            system_attrs,
            intermediate,
        });
        if mine {
            self.last_created_by_me = Some(id);
            if state == TrialState::Running {
                self.owned.insert(worker.to_owned(), id);
            }
        }
        Ok(())
    }
}

fn str_field<'a>(log: &'a PyJson, key: &str) -> Result<&'a str, ReplayError> {
    log.get(key)
        .and_then(PyJson::as_str)
        .ok_or_else(|| malformed(format!("no string '{key}'")))
}

fn list_field<'a>(log: &'a PyJson, key: &str) -> Result<&'a [PyJson], ReplayError> {
    match log.get(key) {
        Some(PyJson::List(l)) => Ok(l),
        _ => Err(malformed(format!("no list '{key}'"))),
    }
}

fn u64_field(log: &PyJson, key: &str) -> Result<u64, ReplayError> {
    log.get(key)
        .and_then(PyJson::as_i64)
        .and_then(|i| u64::try_from(i).ok())
        .ok_or_else(|| malformed(format!("no id '{key}'")))
}

fn opt_str(v: Option<&PyJson>) -> Option<String> {
    v.and_then(PyJson::as_str).map(str::to_owned)
}

fn floats_or_null(v: Option<&PyJson>, key: &str) -> Result<Option<Vec<f64>>, ReplayError> {
    match v {
        None | Some(PyJson::Null) => Ok(None),
        Some(PyJson::List(l)) => l
            .iter()
            .map(|x| {
                x.as_f64()
                    .ok_or_else(|| malformed(format!("'{key}' holds a non-number")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(malformed(format!("'{key}' is not a list"))),
    }
}

fn single_attr(log: &PyJson, key: &str) -> Result<(String, PyJson), ReplayError> {
    match log.get(key).and_then(PyJson::as_dict) {
        Some([(k, v)]) => Ok((k.clone(), v.clone())),
        _ => Err(malformed(format!("'{key}' is not an object of one key"))),
    }
}

fn attrs_field(log: &PyJson, key: &str) -> Result<BTreeMap<String, PyJson>, ReplayError> {
    match log.get(key) {
        None | Some(PyJson::Null) => Ok(BTreeMap::new()),
        Some(PyJson::Dict(d)) => Ok(d.iter().cloned().collect()),
        Some(_) => Err(malformed(format!("'{key}' is not an object"))),
    }
}

/// A parameter value from its internal (float) form, as Optuna's `to_external_repr`:
/// the float itself, its integer part, or the choice at that index.
pub fn external(d: &Distribution, internal: f64) -> Result<ParamValue, String> {
    match d {
        Distribution::Float { .. } => Ok(ParamValue::Float(internal)),
        Distribution::Int { .. } => Ok(ParamValue::Int(internal as i64)),
        Distribution::Categorical { choices } => {
            let i = internal as i64;
            usize::try_from(i)
                .ok()
                .and_then(|i| choices.get(i))
                .cloned()
                .ok_or_else(|| format!("choice index {internal} out of {} choices", choices.len()))
        }
    }
}

/// A parameter value's internal form as Optuna writes it: the float (or an integer
/// parameter as a float, `3.0`), or a categorical choice's index as an integer.
pub fn internal(d: &Distribution, v: &ParamValue) -> Option<PyJson> {
    match d {
        Distribution::Categorical { choices } => choices
            .iter()
            .position(|c| c == v)
            .map(|i| PyJson::Int(i as i64)),
        _ => d.to_internal(v).map(PyJson::Float),
    }
}

/// Whether a parameter may take `new` after `old` in one study (Optuna's
/// `check_distribution_compatibility`: the same kind, the same `log`, the same
/// choices; bounds and steps may differ).
pub fn compatible(old: &Distribution, new: &Distribution) -> bool {
    match (old, new) {
        (Distribution::Float { log: a, .. }, Distribution::Float { log: b, .. })
        | (Distribution::Int { log: a, .. }, Distribution::Int { log: b, .. }) => a == b,
        (Distribution::Categorical { choices: a }, Distribution::Categorical { choices: b }) => {
            a.len() == b.len()
                && a.iter().zip(b).all(|(x, y)| match (x, y) {
                    (ParamValue::Float(p), ParamValue::Float(q)) => {
                        p == q || (p.is_nan() && q.is_nan())
                    }
                    _ => x == y,
                })
        }
        _ => false,
    }
}

fn choice_json(c: &ParamValue) -> PyJson {
    match c {
        ParamValue::Bool(b) => PyJson::Bool(*b),
        ParamValue::Int(i) => PyJson::Int(*i),
        ParamValue::Float(x) => PyJson::Float(*x),
        ParamValue::Str(s) => PyJson::Str(s.clone()),
    }
}

fn choice_from_json(v: &PyJson) -> Result<ParamValue, String> {
    Ok(match v {
        PyJson::Bool(b) => ParamValue::Bool(*b),
        PyJson::Int(i) => ParamValue::Int(*i),
        PyJson::Float(x) => ParamValue::Float(*x),
        PyJson::Str(s) => ParamValue::Str(s.clone()),
        PyJson::Null => return Err("a categorical choice None is not supported".into()),
        _ => {
            return Err(format!(
                "categorical choice {}",
                v.dumps(Separators::Compact)
            ))
        }
    })
}

/// A distribution as Optuna's `distribution_to_json` writes it (default separators,
/// each class's attribute order).
pub fn distribution_to_json(d: &Distribution) -> String {
    let (name, attrs) = match d {
        Distribution::Float {
            low,
            high,
            log,
            step,
        } => (
            "FloatDistribution",
            vec![
                ("step", step.map_or(PyJson::Null, PyJson::Float)),
                ("low", PyJson::Float(*low)),
                ("high", PyJson::Float(*high)),
                ("log", PyJson::Bool(*log)),
            ],
        ),
        Distribution::Int {
            low,
            high,
            log,
            step,
        } => (
            "IntDistribution",
            vec![
                ("log", PyJson::Bool(*log)),
                ("step", PyJson::Int(*step)),
                ("low", PyJson::Int(*low)),
                ("high", PyJson::Int(*high)),
            ],
        ),
        Distribution::Categorical { choices } => (
            "CategoricalDistribution",
            vec![(
                "choices",
                PyJson::List(choices.iter().map(choice_json).collect()),
            )],
        ),
    };
    PyJson::Dict(vec![
        ("name".into(), PyJson::Str(name.into())),
        (
            "attributes".into(),
            PyJson::Dict(attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect()),
        ),
    ])
    .dumps(Separators::Default)
}

/// A distribution from Optuna's JSON (`json_to_distribution`): the current classes,
/// the deprecated ones (`UniformDistribution`, `LogUniformDistribution`,
/// `DiscreteUniformDistribution`, `IntUniformDistribution`,
/// `IntLogUniformDistribution`) and the abbreviated `{"type": …}` form.
///
/// # Errors
/// A message naming what is not understood.
pub fn distribution_from_json(text: &str) -> Result<Distribution, String> {
    let v = PyJson::parse(text)?;
    let num = |a: &PyJson, k: &str| -> Result<f64, String> {
        a.get(k)
            .and_then(PyJson::as_f64)
            .ok_or_else(|| format!("distribution {text}: no number '{k}'"))
    };
    let int = |a: &PyJson, k: &str, default: Option<i64>| -> Result<i64, String> {
        match a.get(k) {
            None => default.ok_or_else(|| format!("distribution {text}: no '{k}'")),
            Some(x) => x
                .as_i64()
                .ok_or_else(|| format!("distribution {text}: '{k}' is not an integer")),
        }
    };
    let flag = |a: &PyJson, k: &str| -> Result<bool, String> {
        match a.get(k) {
            None => Ok(false),
            Some(PyJson::Bool(b)) => Ok(*b),
            Some(_) => Err(format!("distribution {text}: '{k}' is not a boolean")),
        }
    };
    let float_step = |a: &PyJson, k: &str| -> Result<Option<f64>, String> {
        match a.get(k) {
            None | Some(PyJson::Null) => Ok(None),
            Some(x) => x
                .as_f64()
                .map(Some)
                .ok_or_else(|| format!("distribution {text}: '{k}' is not a number")),
        }
    };
    let choices = |a: &PyJson| -> Result<Vec<ParamValue>, String> {
        match a.get("choices") {
            Some(PyJson::List(c)) => c.iter().map(choice_from_json).collect(),
            _ => Err(format!("distribution {text}: no list 'choices'")),
        }
    };
    let (kind, a) = match (v.get("name").and_then(PyJson::as_str), v.get("attributes")) {
        (Some(name), Some(a)) => (name.to_owned(), a),
        _ => match v.get("type").and_then(PyJson::as_str) {
            Some(t) => (format!("type:{t}"), &v),
            None => return Err(format!("distribution {text}: neither a name nor a type")),
        },
    };
    Ok(match kind.as_str() {
        "FloatDistribution" | "type:float" => Distribution::Float {
            low: num(a, "low")?,
            high: num(a, "high")?,
            log: flag(a, "log")?,
            step: float_step(a, "step")?,
        },
        "IntDistribution" | "type:int" => Distribution::Int {
            low: int(a, "low", None)?,
            high: int(a, "high", None)?,
            log: flag(a, "log")?,
            step: int(a, "step", Some(1))?,
        },
        "CategoricalDistribution" | "type:categorical" => Distribution::Categorical {
            choices: choices(a)?,
        },
        "UniformDistribution" => Distribution::Float {
            low: num(a, "low")?,
            high: num(a, "high")?,
            log: false,
            step: None,
        },
        "LogUniformDistribution" => Distribution::Float {
            low: num(a, "low")?,
            high: num(a, "high")?,
            log: true,
            step: None,
        },
        "DiscreteUniformDistribution" => Distribution::Float {
            low: num(a, "low")?,
            high: num(a, "high")?,
            log: false,
            step: Some(num(a, "q")?),
        },
        "IntUniformDistribution" => Distribution::Int {
            low: int(a, "low", None)?,
            high: int(a, "high", None)?,
            log: false,
            step: int(a, "step", Some(1))?,
        },
        "IntLogUniformDistribution" => Distribution::Int {
            low: int(a, "low", None)?,
            high: int(a, "high", None)?,
            log: true,
            step: int(a, "step", Some(1))?,
        },
        other => return Err(format!("unknown distribution '{other}'")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(s: &str) -> PyJson {
        PyJson::parse(s).unwrap()
    }

    #[test]
    fn distributions_are_written_as_optuna_writes_them_and_read_back() {
        let f = Distribution::Float {
            low: 0.0,
            high: 2.0,
            log: false,
            step: None,
        };
        let text = distribution_to_json(&f);
        assert_eq!(
            text,
            r#"{"name": "FloatDistribution", "attributes": {"step": null, "low": 0.0, "high": 2.0, "log": false}}"#
        );
        assert_eq!(distribution_from_json(&text).unwrap(), f);
        let i = Distribution::Int {
            low: 1,
            high: 9,
            log: false,
            step: 2,
        };
        let text = distribution_to_json(&i);
        assert_eq!(
            text,
            r#"{"name": "IntDistribution", "attributes": {"log": false, "step": 2, "low": 1, "high": 9}}"#
        );
        assert_eq!(distribution_from_json(&text).unwrap(), i);
        let c = Distribution::categorical([-5i64, 0, 5]);
        assert_eq!(
            distribution_to_json(&c),
            r#"{"name": "CategoricalDistribution", "attributes": {"choices": [-5, 0, 5]}}"#
        );
        assert_eq!(
            distribution_from_json(
                r#"{"name": "LogUniformDistribution", "attributes": {"low": 1e-05, "high": 1}}"#
            )
            .unwrap(),
            Distribution::Float {
                low: 1e-5,
                high: 1.0,
                log: true,
                step: None
            }
        );
        assert!(distribution_from_json(r#"{"name": "Nope", "attributes": {}}"#).is_err());
    }

    #[test]
    fn replay_follows_optunas_rules() {
        let mut r = Replay::new();
        let me = "me";
        let d = r#"{\"name\": \"IntDistribution\", \"attributes\": {\"log\": false, \"step\": 1, \"low\": 0, \"high\": 10}}"#;
        let lines = [
            r#"{"op_code":0,"worker_id":"w","study_name":"s","directions":[1]}"#.to_owned(),
            r#"{"op_code":0,"worker_id":"w","study_name":"gone","directions":[2]}"#.to_owned(),
            r#"{"op_code":1,"worker_id":"w","study_id":1}"#.to_owned(),
            r#"{"op_code":0,"worker_id":"w","study_name":"gone","directions":[2]}"#.to_owned(),
            r#"{"op_code":4,"worker_id":"w","study_id":0,"datetime_start":"2026-01-01T00:00:00.000000+00:00"}"#.to_owned(),
            format!(r#"{{"op_code":5,"worker_id":"w","trial_id":0,"param_name":"y","param_value_internal":3.0,"distribution":"{d}"}}"#),
            r#"{"op_code":7,"worker_id":"w","trial_id":0,"step":0,"intermediate_value":NaN}"#.to_owned(),
            r#"{"op_code":6,"worker_id":"w","trial_id":0,"state":1,"values":[1.5],"datetime_complete":"x"}"#.to_owned(),
            // Another worker's update of a finished trial: ignored.
            r#"{"op_code":8,"worker_id":"v","trial_id":0,"user_attr":{"late":1}}"#.to_owned(),
            // A waiting trial claimed twice: the first claim holds.
            r#"{"op_code":4,"worker_id":"w","study_id":0,"datetime_start":null,"state":4,"value":null,"values":null,"distributions":{},"params":{},"user_attrs":{},"system_attrs":{"fixed_params":{"y":4}},"intermediate_values":{}}"#.to_owned(),
            r#"{"op_code":6,"worker_id":"v","trial_id":1,"state":0,"values":null,"datetime_start":"first"}"#.to_owned(),
            r#"{"op_code":6,"worker_id":"me","trial_id":1,"state":0,"values":null,"datetime_start":"second"}"#.to_owned(),
            r#"{"op_code":10,"worker_id":"r","trial_ids":[1]}"#.to_owned(),
        ];
        for l in &lines {
            r.apply(&line(l), me).unwrap();
        }
        assert_eq!(r.log_number_read, lines.len() as u64);
        let names: Vec<_> = r.studies().map(|s| (s.id, s.name.as_str())).collect();
        assert_eq!(names, [(0, "s"), (2, "gone")]);
        let t = r.trial(0).unwrap();
        assert_eq!(t.params["y"], ParamValue::Int(3));
        assert_eq!(t.values, Some(vec![1.5]));
        assert!(t.intermediate[&0].is_nan());
        assert!(t.user_attrs.is_empty());
        let w = r.trial(1).unwrap();
        assert_eq!((w.number, w.state), (1, TrialState::Running));
        assert_eq!(w.datetime_start.as_deref(), Some("first"));
        assert_eq!(r.owned_trial("me"), None);
        // This worker's own invalid operations are errors.
        assert_eq!(
            r.apply(
                &line(r#"{"op_code":8,"worker_id":"me","trial_id":0,"user_attr":{"a":1}}"#),
                me
            ),
            Err(ReplayError::Finished(0))
        );
        assert_eq!(
            r.apply(
                &line(r#"{"op_code":0,"worker_id":"me","study_name":"s","directions":[1]}"#),
                me
            ),
            Err(ReplayError::DuplicatedStudy("s".into()))
        );
        assert!(matches!(
            r.apply(&line(r#"{"op_code":11,"worker_id":"w"}"#), me),
            Err(ReplayError::Malformed(_))
        ));
        assert_eq!(r.log_number_read, lines.len() as u64 + 3);
    }
}
