//! Optuna's journal storage, byte for byte: the format Optuna's `JournalStorage`
//! writes ([`journal`]: its eleven operation codes and their replay rules;
//! [`pyjson`]: JSON as Python writes it), its file backend with Optuna's lock
//! protocol ([`mod@file`]), and [`OptunaJournal`], a writer that appends operations as
//! Optuna's storage methods do — one line each, then a read of everything new —
//! so Python Optuna processes and ours can share one journal, and every Optuna tool
//! (`optuna.load_study`, `optuna-dashboard`) reads what we write.
//!
//! ```
//! use autoglm_tune::optuna::OptunaJournal;
//! use autoglm_tune::{Direction, Distribution, ParamValue, TrialState};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let mut j = OptunaJournal::open(&dir.path().join("journal.log"))?;
//! let study = j.create_study("demo", &[Direction::Minimize])?;
//! let trial = j.create_trial(study)?;
//! j.set_param(trial, "x", &Distribution::float(-5.0, 5.0), &ParamValue::Float(1.5))?;
//! j.set_state_values(trial, TrialState::Complete, Some(&[2.25]))?;
//! let t = j.replay().trial(trial).unwrap();
//! assert_eq!(t.values, Some(vec![2.25]));
//! # Ok(()) }
//! ```

pub mod artifacts;
pub mod file;
pub mod journal;
pub mod pyjson;
#[cfg(feature = "redis")]
pub mod redis;

use std::path::Path;
use std::time::SystemTime;

use crate::error::{Error, Result};
use crate::space::{Distribution, ParamValue};
use crate::study::Direction;
use crate::trial::TrialState;
pub use file::BadLine;
use file::JournalFile;
use journal::{op, Replay};
use pyjson::PyJson;

/// Where a journal's lines live: Optuna's `BaseJournalBackend` (a file, Redis).
pub trait Backend: std::fmt::Debug + Send {
    /// The storage in words, for error messages (a path, a URL).
    fn describe(&self) -> String;

    /// The lines from number `from` on, parsed, as far as they are complete; a line
    /// that is not JSON with lines after it stops the read with [`BadLine`], after
    /// the lines before it.
    ///
    /// # Errors
    /// The storage cannot be read (said in words).
    fn read_logs(
        &mut self,
        from: u64,
    ) -> std::result::Result<(Vec<PyJson>, Option<BadLine>), String>;

    /// Appends the lines, in order, each whole or not at all.
    ///
    /// # Errors
    /// The storage cannot be written (said in words).
    fn append_logs(&mut self, logs: &[PyJson]) -> std::result::Result<(), String>;

    /// Another handle on the same journal (for a heartbeat thread).
    ///
    /// # Errors
    /// The storage cannot be opened again (said in words).
    fn reopen(&self) -> std::result::Result<Box<dyn Backend>, String>;
}

impl Backend for JournalFile {
    fn describe(&self) -> String {
        self.path().display().to_string()
    }

    fn read_logs(
        &mut self,
        from: u64,
    ) -> std::result::Result<(Vec<PyJson>, Option<BadLine>), String> {
        JournalFile::read_logs(self, from).map_err(|e| format!("{}: {e}", self.path().display()))
    }

    fn append_logs(&mut self, logs: &[PyJson]) -> std::result::Result<(), String> {
        JournalFile::append_logs(self, logs).map_err(|e| format!("{}: {e}", self.path().display()))
    }

    fn reopen(&self) -> std::result::Result<Box<dyn Backend>, String> {
        Ok(Box::new(self.reopened()))
    }
}

/// The trial system attribute our workers beat in: the time of the last beat, in
/// seconds since the Unix epoch. A running trial whose beat is older than the
/// grace period has lost its worker; trials without it (a Python worker's) are
/// never judged so.
pub const HEARTBEAT_ATTR: &str = "autoglm:heartbeat";

/// Seconds since the Unix epoch.
pub fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A thread that beats for one running trial every interval until it is dropped:
/// each beat is one `SET_TRIAL_SYSTEM_ATTR` line of [`HEARTBEAT_ATTR`], written
/// under a worker id of its own (so a beat that reaches the log after the trial
/// finished is another worker's line, which every reader ignores).
#[derive(Debug)]
pub struct Beater {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Beater {
    /// Starts beating for trial `trial` through `backend` every `interval`.
    pub fn start(
        mut backend: Box<dyn Backend>,
        worker: String,
        trial: u64,
        interval: std::time::Duration,
    ) -> Beater {
        let (stop, rx) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            while let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(interval) {
                let beat = dict(vec![
                    ("op_code", PyJson::Int(op::SET_TRIAL_SYSTEM_ATTR)),
                    ("worker_id", PyJson::Str(worker.clone())),
                    ("trial_id", id(trial)),
                    (
                        "system_attr",
                        dict(vec![(HEARTBEAT_ATTR, PyJson::Float(unix_now()))]),
                    ),
                ]);
                // Best effort: a beat that cannot be written is the next one's job
                // (the backend retries transient failures itself).
                let _ = backend.append_logs(&[beat]);
            }
        });
        Beater {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Beater {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A process's handle on an Optuna journal: appends operations as this worker and
/// keeps the replayed state of every study in it.
#[derive(Debug)]
pub struct OptunaJournal {
    backend: Box<dyn Backend>,
    replay: Replay,
    worker_id: String,
}

/// The time now as Optuna 5 writes it: UTC, microseconds, `+00:00`.
pub fn now_iso() -> String {
    let s = humantime::format_rfc3339_micros(SystemTime::now()).to_string();
    match s.strip_suffix('Z') {
        Some(t) => format!("{t}+00:00"),
        None => s,
    }
}

/// A worker id in Optuna's shape (a UUID, a dash, then Optuna's thread number,
/// here the process id), unique to this handle.
fn worker_id() -> String {
    format!("{}-{}", uuid::Uuid::new_v4(), std::process::id())
}

/// A JSON object's fields, in order.
type Fields = Vec<(String, PyJson)>;

/// Parameters as a `CREATE_TRIAL` carries them: each distribution as Optuna's
/// JSON, each value in its internal representation.
///
/// # Errors
/// [`Error::OutOfDistribution`] for a value outside its distribution.
fn encode_params<'a>(
    params: impl Iterator<Item = (&'a String, &'a Distribution, &'a ParamValue)>,
) -> Result<(Fields, Fields)> {
    let mut dists = Vec::new();
    let mut values = Vec::new();
    for (name, d, v) in params {
        let internal = journal::internal(d, v).ok_or_else(|| Error::OutOfDistribution {
            name: name.clone(),
            value: format!("{v:?}"),
        })?;
        dists.push((name.clone(), PyJson::Str(journal::distribution_to_json(d))));
        values.push((name.clone(), internal));
    }
    Ok((dists, values))
}

fn dict(items: Vec<(&str, PyJson)>) -> PyJson {
    PyJson::Dict(items.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

impl OptunaJournal {
    /// The journal file at `path` (created if missing), replayed.
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be created; as [`OptunaJournal::sync`].
    pub fn open(path: &Path) -> Result<OptunaJournal> {
        let file = JournalFile::open(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::with_backend(Box::new(file))
    }

    /// The journal `spec` names: `redis://HOST:PORT/DB` or `rediss://…`, with an
    /// optional `#PREFIX` (Optuna's `JournalRedisBackend(url, prefix)`; needs the
    /// `redis` feature), else a file path (Optuna's `JournalFileBackend`).
    ///
    /// # Errors
    /// [`Error::Storage`] for a Redis URL without the `redis` feature or a server
    /// that cannot be reached; as [`OptunaJournal::open`].
    pub fn open_spec(spec: &str) -> Result<OptunaJournal> {
        if spec.starts_with("redis://") || spec.starts_with("rediss://") {
            #[cfg(feature = "redis")]
            {
                let (url, prefix) = spec.split_once('#').unwrap_or((spec, ""));
                let backend = redis::JournalRedis::open(url, prefix)
                    .map_err(|reason| Error::Storage { reason })?;
                return Self::with_backend(Box::new(backend));
            }
            #[cfg(not(feature = "redis"))]
            return Err(Error::Storage {
                reason: format!("{spec}: a journal on Redis needs autoglm-tune's `redis` feature"),
            });
        }
        Self::open(Path::new(spec))
    }

    /// A journal in any [`Backend`] (a [`JournalFile`] with other lock settings,
    /// `redis::JournalRedis`), replayed.
    ///
    /// # Errors
    /// As [`OptunaJournal::sync`].
    pub fn with_backend(backend: Box<dyn Backend>) -> Result<OptunaJournal> {
        let mut j = OptunaJournal {
            backend,
            replay: Replay::new(),
            worker_id: worker_id(),
        };
        j.sync()?;
        Ok(j)
    }

    /// This handle's worker id (what its lines carry).
    pub fn worker_id(&self) -> &str {
        &self.worker_id
    }

    /// The state replayed so far.
    pub fn replay(&self) -> &Replay {
        &self.replay
    }

    /// Reads and applies what was appended since the last read.
    ///
    /// # Errors
    /// [`Error::Storage`] when the backend cannot be read; [`Error::Journal`] for a
    /// line that is not JSON (with lines after it) or not an operation, or an operation of this worker's that cannot
    /// apply (it is counted as read, as Optuna counts it).
    pub fn sync(&mut self) -> Result<()> {
        self.sync_claiming(None).map(drop)
    }

    /// [`OptunaJournal::sync`], where this worker's state change of trial `claim`
    /// that reached the log after the trial finished (another worker claimed it
    /// first and finished it, or failed it, meanwhile) is a lost race, not an
    /// error: Optuna's `_pop_waiting_trial_id` skips such a trial too. Returns
    /// whether that happened.
    fn sync_claiming(&mut self, claim: Option<u64>) -> Result<bool> {
        let mut lost = false;
        let (logs, bad) = self
            .backend
            .read_logs(self.replay.log_number_read)
            .map_err(|reason| Error::Storage { reason })?;
        for log in &logs {
            let line = self.replay.log_number_read + 1;
            match self.replay.apply(log, &self.worker_id) {
                Ok(()) => {}
                Err(journal::ReplayError::Finished(_))
                    if claim.is_some()
                        && log.get("op_code") == Some(&PyJson::Int(op::SET_TRIAL_STATE_VALUES))
                        && log.get("trial_id").and_then(PyJson::as_i64)
                            == claim.map(|c| c as i64) =>
                {
                    lost = true;
                }
                Err(e) => return Err(self.journal_error(line, e.to_string())),
            }
        }
        match bad {
            Some(b) => Err(self.journal_error(b.log_number + 1, b.reason)),
            None => Ok(lost),
        }
    }

    fn journal_error(&self, line: u64, reason: String) -> Error {
        Error::Journal {
            path: self.backend.describe().into(),
            line: line as usize,
            reason,
        }
    }

    /// Appends one operation (`op_code`, `worker_id`, then `fields` in order) and
    /// reads everything new, this line included.
    fn write(&mut self, code: i64, fields: Vec<(&str, PyJson)>) -> Result<()> {
        self.write_claiming(code, fields, None).map(drop)
    }

    fn write_claiming(
        &mut self,
        code: i64,
        fields: Vec<(&str, PyJson)>,
        claim: Option<u64>,
    ) -> Result<bool> {
        let mut items = vec![
            ("op_code", PyJson::Int(code)),
            ("worker_id", PyJson::Str(self.worker_id.clone())),
        ];
        items.extend(fields);
        self.backend
            .append_logs(&[dict(items)])
            .map_err(|reason| Error::Storage { reason })?;
        self.sync_claiming(claim)
    }

    /// Creates a study (`CREATE_STUDY`) and returns its id.
    ///
    /// # Errors
    /// [`Error::Journal`] when a study of that name exists; I/O errors.
    pub fn create_study(&mut self, name: &str, directions: &[Direction]) -> Result<u64> {
        let dirs = directions
            .iter()
            .map(|d| {
                PyJson::Int(match d {
                    Direction::Minimize => 1,
                    Direction::Maximize => 2,
                })
            })
            .collect();
        self.write(
            op::CREATE_STUDY,
            vec![
                ("study_name", PyJson::Str(name.to_owned())),
                ("directions", PyJson::List(dirs)),
            ],
        )?;
        Ok(self
            .replay
            .study_by_name(name)
            .expect("the study was just created")
            .id)
    }

    /// Deletes a study (`DELETE_STUDY`).
    ///
    /// # Errors
    /// [`Error::Journal`] when it does not exist; I/O errors.
    pub fn delete_study(&mut self, study: u64) -> Result<()> {
        self.write(op::DELETE_STUDY, vec![("study_id", id(study))])
    }

    /// Sets a study's user attribute (`system`: its system attribute).
    ///
    /// # Errors
    /// [`Error::Journal`] when the study does not exist; I/O errors.
    pub fn set_study_attr(
        &mut self,
        study: u64,
        key: &str,
        value: PyJson,
        system: bool,
    ) -> Result<()> {
        let (code, field) = if system {
            (op::SET_STUDY_SYSTEM_ATTR, "system_attr")
        } else {
            (op::SET_STUDY_USER_ATTR, "user_attr")
        };
        self.write(
            code,
            vec![("study_id", id(study)), (field, dict(vec![(key, value)]))],
        )
    }

    /// Creates a running trial (`CREATE_TRIAL`, started now) and returns its id.
    ///
    /// # Errors
    /// [`Error::Journal`] when the study does not exist; I/O errors.
    pub fn create_trial(&mut self, study: u64) -> Result<u64> {
        self.write(
            op::CREATE_TRIAL,
            vec![
                ("study_id", id(study)),
                ("datetime_start", PyJson::Str(now_iso())),
            ],
        )?;
        Ok(self
            .replay
            .last_created_by_me()
            .expect("the trial was just created"))
    }

    /// Enqueues a trial with fixed parameters (`CREATE_TRIAL` of a waiting trial
    /// with the `fixed_params` system attribute, as Optuna's `enqueue_trial` writes
    /// it) and returns its id.
    ///
    /// # Errors
    /// [`Error::Journal`] when the study does not exist; I/O errors.
    pub fn enqueue_trial(&mut self, study: u64, fixed: Vec<(String, PyJson)>) -> Result<u64> {
        self.create_waiting(
            study,
            &std::collections::BTreeMap::new(),
            Vec::new(),
            vec![("fixed_params".into(), PyJson::Dict(fixed))],
        )
    }

    /// Creates a waiting trial from a template (`CREATE_TRIAL` as Optuna's
    /// `add_trial` of a `WAITING` trial writes it: what a retry of a failed trial
    /// carries) and returns its id.
    ///
    /// # Errors
    /// [`Error::OutOfDistribution`] for a parameter outside its distribution;
    /// [`Error::Journal`] when the study does not exist; I/O errors.
    pub fn create_waiting(
        &mut self,
        study: u64,
        params: &std::collections::BTreeMap<String, (Distribution, ParamValue)>,
        user_attrs: Vec<(String, PyJson)>,
        system_attrs: Vec<(String, PyJson)>,
    ) -> Result<u64> {
        let (dists, values) = encode_params(params.iter().map(|(n, (d, v))| (n, d, v)))?;
        self.write(
            op::CREATE_TRIAL,
            vec![
                ("study_id", id(study)),
                ("datetime_start", PyJson::Null),
                (
                    "state",
                    PyJson::Int(journal::state_code(TrialState::Waiting)),
                ),
                ("value", PyJson::Null),
                ("values", PyJson::Null),
                ("distributions", PyJson::Dict(dists)),
                ("params", PyJson::Dict(values)),
                ("user_attrs", PyJson::Dict(user_attrs)),
                ("system_attrs", PyJson::Dict(system_attrs)),
                ("intermediate_values", PyJson::Dict(Vec::new())),
            ],
        )?;
        Ok(self
            .replay
            .last_created_by_me()
            .expect("the trial was just created"))
    }

    /// Adds a copy of `trial` (from this or another journal) to `study` as
    /// Optuna's `storage.create_new_trial(study_id, template_trial)` writes one:
    /// its state, values, times, parameters, attributes and intermediate values in
    /// one `CREATE_TRIAL`. Returns the new trial's id.
    ///
    /// # Errors
    /// [`Error::OutOfDistribution`] for a parameter outside its distribution;
    /// [`Error::Journal`] when the study does not exist; I/O errors.
    pub fn add_trial(&mut self, study: u64, trial: &journal::JournalTrial) -> Result<u64> {
        let (dists, values) = encode_params(
            trial
                .distributions
                .iter()
                .filter_map(|(n, d)| Some((n, d, trial.params.get(n)?))),
        )?;
        let floats = |v: &[f64]| PyJson::List(v.iter().map(|&x| PyJson::Float(x)).collect());
        let (value, many) = match trial.values.as_deref() {
            Some([v]) => (PyJson::Float(*v), PyJson::Null),
            Some(v) => (PyJson::Null, floats(v)),
            None => (PyJson::Null, PyJson::Null),
        };
        let time = |t: &Option<String>| t.clone().map_or(PyJson::Null, PyJson::Str);
        let mut fields = vec![
            ("study_id", id(study)),
            ("datetime_start", time(&trial.datetime_start)),
            ("state", PyJson::Int(journal::state_code(trial.state))),
            ("value", value),
            ("values", many),
        ];
        if trial.datetime_complete.is_some() {
            fields.push(("datetime_complete", time(&trial.datetime_complete)));
        }
        let attrs = |a: &std::collections::BTreeMap<String, PyJson>| {
            PyJson::Dict(a.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        };
        fields.extend([
            ("distributions", PyJson::Dict(dists)),
            ("params", PyJson::Dict(values)),
            ("user_attrs", attrs(&trial.user_attrs)),
            ("system_attrs", attrs(&trial.system_attrs)),
            (
                "intermediate_values",
                PyJson::Dict(
                    trial
                        .intermediate
                        .iter()
                        .map(|(k, &v)| (k.to_string(), PyJson::Float(v)))
                        .collect(),
                ),
            ),
        ]);
        self.write(op::CREATE_TRIAL, fields)?;
        Ok(self
            .replay
            .last_created_by_me()
            .expect("the trial was just created"))
    }

    /// Another handle on this journal's storage.
    ///
    /// # Errors
    /// [`Error::Storage`] when it cannot be opened again.
    pub fn reopen_backend(&self) -> Result<Box<dyn Backend>> {
        self.backend
            .reopen()
            .map_err(|reason| Error::Storage { reason })
    }

    /// Sets a parameter of a running trial (`SET_TRIAL_PARAM`).
    ///
    /// # Errors
    /// [`Error::OutOfDistribution`] when the value is not one of `dist`'s;
    /// [`Error::Journal`] when the trial has finished, does not exist, or the
    /// parameter had another kind of distribution earlier in the study; I/O errors.
    pub fn set_param(
        &mut self,
        trial: u64,
        name: &str,
        dist: &Distribution,
        value: &ParamValue,
    ) -> Result<()> {
        let internal = journal::internal(dist, value).ok_or_else(|| Error::OutOfDistribution {
            name: name.to_owned(),
            value: format!("{value:?}"),
        })?;
        self.write(
            op::SET_TRIAL_PARAM,
            vec![
                ("trial_id", id(trial)),
                ("param_name", PyJson::Str(name.to_owned())),
                ("param_value_internal", internal),
                (
                    "distribution",
                    PyJson::Str(journal::distribution_to_json(dist)),
                ),
            ],
        )
    }

    /// Sets a trial's state and values (`SET_TRIAL_STATE_VALUES`). Setting RUNNING
    /// claims a waiting trial: `Ok(false)` when another worker's claim came first in
    /// the log (or the trial is running already), as Optuna's storage answers; any
    /// state: `Ok(false)` when another worker finished the trial between this
    /// worker's check and its line.
    ///
    /// # Errors
    /// [`Error::Journal`] when the trial has finished or does not exist; I/O errors.
    pub fn set_state_values(
        &mut self,
        trial: u64,
        state: TrialState,
        values: Option<&[f64]>,
    ) -> Result<bool> {
        self.sync()?;
        let t = self
            .replay
            .trial(trial)
            .ok_or_else(|| self.no_trial(trial))?;
        if t.state.is_finished() {
            return Err(Error::TrialFinished(t.number));
        }
        if state == TrialState::Running && t.state != TrialState::Waiting {
            return Ok(false);
        }
        let mut fields = vec![
            ("trial_id", id(trial)),
            ("state", PyJson::Int(journal::state_code(state))),
            (
                "values",
                values.map_or(PyJson::Null, |v| {
                    PyJson::List(v.iter().map(|&x| PyJson::Float(x)).collect())
                }),
            ),
        ];
        if state == TrialState::Running {
            fields.push(("datetime_start", PyJson::Str(now_iso())));
        } else if state.is_finished() {
            fields.push(("datetime_complete", PyJson::Str(now_iso())));
        }
        let lost = self.write_claiming(op::SET_TRIAL_STATE_VALUES, fields, Some(trial))?;
        Ok(!lost
            && (state != TrialState::Running
                || self.replay.owned_trial(&self.worker_id) == Some(trial)))
    }

    /// Records an intermediate value (`SET_TRIAL_INTERMEDIATE_VALUE`).
    ///
    /// # Errors
    /// [`Error::Journal`] when the trial has finished or does not exist; I/O errors.
    pub fn set_intermediate(&mut self, trial: u64, step: i64, value: f64) -> Result<()> {
        self.write(
            op::SET_TRIAL_INTERMEDIATE_VALUE,
            vec![
                ("trial_id", id(trial)),
                ("step", PyJson::Int(step)),
                ("intermediate_value", PyJson::Float(value)),
            ],
        )
    }

    /// Sets a trial's user attribute (`system`: its system attribute).
    ///
    /// # Errors
    /// [`Error::Journal`] when the trial has finished or does not exist; I/O errors.
    pub fn set_trial_attr(
        &mut self,
        trial: u64,
        key: &str,
        value: PyJson,
        system: bool,
    ) -> Result<()> {
        let (code, field) = if system {
            (op::SET_TRIAL_SYSTEM_ATTR, "system_attr")
        } else {
            (op::SET_TRIAL_USER_ATTR, "user_attr")
        };
        self.write(
            code,
            vec![("trial_id", id(trial)), (field, dict(vec![(key, value)]))],
        )
    }

    fn no_trial(&self, trial: u64) -> Error {
        self.journal_error(
            self.replay.log_number_read,
            format!("trial {trial} does not exist"),
        )
    }
}

fn id(x: u64) -> PyJson {
    PyJson::Int(x as i64)
}
