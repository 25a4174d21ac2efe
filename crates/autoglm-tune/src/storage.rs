//! Where trials live: in memory, or in an append-only JSONL journal that survives a
//! kill at any point and can be shared by several processes on one machine.
//!
//! Every change is one event, one line. A writer takes an exclusive lock on the file,
//! catches up with lines other processes appended, derives its event (e.g. the next
//! trial number) from the up-to-date state, appends the line with a single write and
//! unlocks; readers take a shared lock. A line cut short by a killed writer can only be
//! the last one: readers skip it with a warning, and the next writer truncates it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optuna::journal::JournalTrial;
use crate::optuna::pyjson::PyJson;
use crate::optuna::{unix_now, Beater, OptunaJournal, HEARTBEAT_ATTR};
use crate::space::{Distribution, ParamValue, Params};
use crate::study::Direction;
use crate::trial::{FrozenTrial, TrialState};

/// One change to a study, as a journal line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Event {
    Create {
        number: u64,
        state: TrialState,
        params: Params,
    },
    Claim {
        number: u64,
    },
    Param {
        number: u64,
        name: String,
        distribution: Distribution,
        value: ParamValue,
    },
    Report {
        number: u64,
        step: u64,
        value: f64,
    },
    Attr {
        number: u64,
        key: String,
        value: serde_json::Value,
    },
    Constraints {
        number: u64,
        values: Vec<f64>,
    },
    Finish {
        number: u64,
        state: TrialState,
        values: Option<Vec<f64>>,
    },
    StudyAttr {
        key: String,
        value: serde_json::Value,
    },
}

struct Journal {
    path: PathBuf,
    file: File,
    /// Bytes of the file already applied (always at a line boundary).
    offset: u64,
    /// Lines applied so far (for error messages).
    lines: usize,
}

/// A study in an Optuna journal, and this handle on the journal.
struct OptunaLink {
    journal: OptunaJournal,
    study: u64,
    name: String,
}

impl OptunaLink {
    /// The journal's id of the study's trial `number`.
    fn trial_id(&self, number: u64) -> Result<u64> {
        trial_id(&self.journal, self.study, number)
    }
}

/// The journal's id of trial `number` of study `study`.
fn trial_id(journal: &OptunaJournal, study: u64, number: u64) -> Result<u64> {
    journal
        .replay()
        .study(study)
        .and_then(|s| s.trials.get(number as usize).copied())
        .ok_or(Error::UnknownTrial(number))
}

/// Trial storage: in memory, a study in an Optuna journal (a file, or Redis with
/// the `redis` feature) that Python Optuna processes can share, or this crate's
/// earlier JSONL journal.
pub struct Storage {
    trials: Vec<FrozenTrial>,
    /// The trials as samplers see them, where it differs: other workers' running
    /// trials completed with their published proposals.
    sampling: Option<Vec<FrozenTrial>>,
    study_attrs: BTreeMap<String, serde_json::Value>,
    journal: Option<Journal>,
    optuna: Option<OptunaLink>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("trials", &self.trials.len())
            .field("journal", &self.journal.as_ref().map(|j| &j.path))
            .field("optuna_study", &self.optuna.as_ref().map(|o| &o.name))
            .finish()
    }
}

impl Default for Storage {
    fn default() -> Self {
        Storage::in_memory()
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}

impl Storage {
    /// Trials kept in this process only.
    pub fn in_memory() -> Self {
        Storage {
            trials: Vec::new(),
            sampling: None,
            study_attrs: BTreeMap::new(),
            journal: None,
            optuna: None,
            warnings: Vec::new(),
        }
    }

    /// A journal file, created if missing; existing trials are loaded (resuming a study).
    ///
    /// # Errors
    /// The file cannot be opened, or a line other than a torn last one is invalid
    /// ([`Error::Journal`] with its line number).
    pub fn journal(path: &Path) -> Result<Self> {
        let file = File::options()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(io_err(path))?;
        let mut s = Storage {
            trials: Vec::new(),
            sampling: None,
            study_attrs: BTreeMap::new(),
            journal: Some(Journal {
                path: path.to_owned(),
                file,
                offset: 0,
                lines: 0,
            }),
            optuna: None,
            warnings: Vec::new(),
        };
        s.refresh()?;
        Ok(s)
    }

    /// Study `name` in an Optuna journal — created with `directions` if the journal
    /// has no study of that name, else checked to have them — as Optuna's
    /// `JournalStorage` keeps it: Python Optuna reads and writes the same study
    /// (`optuna.load_study(study_name=name, storage=JournalStorage(…))`), and
    /// several processes of either kind can run trials of it at once.
    ///
    /// # Errors
    /// [`Error::Space`] when the study exists with other directions; journal
    /// errors.
    pub fn optuna(journal: OptunaJournal, name: &str, directions: &[Direction]) -> Result<Self> {
        let mut journal = journal;
        let want: Vec<i64> = directions
            .iter()
            .map(|d| match d {
                Direction::Minimize => 1,
                Direction::Maximize => 2,
            })
            .collect();
        let study = match journal.replay().study_by_name(name) {
            Some(s) => s.id,
            // Two processes may create it at once: the first line wins and the
            // other's is an error, after which the study is there.
            None => match journal.create_study(name, directions) {
                Ok(id) => id,
                Err(e) => {
                    journal.sync()?;
                    journal.replay().study_by_name(name).ok_or(e)?.id
                }
            },
        };
        let have = &journal
            .replay()
            .study(study)
            .expect("found above")
            .directions;
        if *have != want {
            return Err(Error::Space(format!(
                "study '{name}' has directions {have:?} (Optuna's numbers: 1 minimize, 2 maximize), not {want:?}"
            )));
        }
        let mut s = Storage::in_memory();
        s.optuna = Some(OptunaLink {
            journal,
            study,
            name: name.to_owned(),
        });
        s.rebuild()?;
        Ok(s)
    }

    /// Study `name` in the Optuna journal file at `path` (created if missing): see
    /// [`Storage::optuna`].
    ///
    /// # Errors
    /// As [`Storage::optuna`].
    pub fn optuna_file(path: &Path, name: &str, directions: &[Direction]) -> Result<Self> {
        Storage::optuna(OptunaJournal::open(path)?, name, directions)
    }

    /// The Optuna journal behind this storage, if it is one.
    pub fn optuna_journal(&self) -> Option<&OptunaJournal> {
        self.optuna.as_ref().map(|o| &o.journal)
    }

    /// The trials and study attributes again from the Optuna journal's replay.
    fn rebuild(&mut self) -> Result<()> {
        let Some(link) = &self.optuna else {
            return Ok(());
        };
        let r = link.journal.replay();
        let study = r.study(link.study).ok_or_else(|| {
            Error::Space(format!(
                "study '{}' was deleted from the journal",
                link.name
            ))
        })?;
        self.study_attrs = study
            .user_attrs
            .iter()
            .map(|(k, v)| (k.clone(), v.to_serde().unwrap_or(serde_json::Value::Null)))
            .collect();
        self.trials = study
            .trials
            .iter()
            .map(|&id| frozen(r.trial(id).expect("a study's trial")))
            .collect();
        self.sampling = with_proposals(
            &self.trials,
            study
                .trials
                .iter()
                .map(|&id| r.trial(id).expect("a study's trial")),
        );
        Ok(())
    }

    /// The trials as samplers should see them: running trials of other workers
    /// carry the joint proposal their worker published at ask time (Optuna's
    /// `tpe:relative_params` system attribute) for the parameters they have not set
    /// yet, so that workers asking at once see each other (a constant liar needs the
    /// running trials' points).
    pub(crate) fn sampling_trials(&self) -> &[FrozenTrial] {
        self.sampling.as_deref().unwrap_or(&self.trials)
    }

    /// Publishes a running trial's joint proposal (external values) for other
    /// workers' samplers, as Optuna's TPE does: the `tpe:relative_params:{i}` system
    /// attributes, JSON in chunks of 2,045 characters. Nothing outside an Optuna
    /// journal.
    pub(crate) fn publish_proposal(&mut self, number: u64, proposal: &Params) -> Result<()> {
        let Some(link) = self.optuna.as_mut() else {
            return Ok(());
        };
        let id = link.trial_id(number)?;
        let text = PyJson::Dict(
            proposal
                .iter()
                .map(|(k, v)| (k.clone(), py_param(v)))
                .collect(),
        )
        .dumps(crate::optuna::pyjson::Separators::Default);
        let chars: Vec<char> = text.chars().collect();
        for (i, chunk) in chars.chunks(2045).enumerate() {
            link.journal.set_trial_attr(
                id,
                &format!("tpe:relative_params:{i}"),
                PyJson::Str(chunk.iter().collect()),
                true,
            )?;
        }
        self.rebuild()
    }

    /// Writes an event to the Optuna journal as Optuna's operations; `None` when a
    /// claim of a waiting trial was lost to another worker.
    fn write_optuna(&mut self, ev: &Event) -> Result<Option<Event>> {
        let link = self.optuna.as_mut().expect("an Optuna storage");
        let study = link.study;
        let j = &mut link.journal;
        let id_of = |j: &OptunaJournal, number: u64| trial_id(j, study, number);
        let number_of = |j: &OptunaJournal, id: u64| j.replay().trial(id).expect("created").number;
        Ok(Some(match ev {
            Event::Create {
                state: TrialState::Running,
                params,
                ..
            } if params.is_empty() => {
                let id = j.create_trial(study)?;
                Event::Create {
                    number: number_of(j, id),
                    state: TrialState::Running,
                    params: Params::new(),
                }
            }
            Event::Create {
                state: TrialState::Waiting,
                params,
                ..
            } => {
                let fixed = params
                    .iter()
                    .map(|(k, v)| (k.clone(), py_param(v)))
                    .collect();
                let id = j.enqueue_trial(study, fixed)?;
                Event::Create {
                    number: number_of(j, id),
                    state: TrialState::Waiting,
                    params: params.clone(),
                }
            }
            Event::Create { state, .. } => {
                return Err(Error::Space(format!(
                    "a trial created {state:?} cannot be written to an Optuna journal"
                )))
            }
            Event::Claim { number } => {
                let id = id_of(j, *number)?;
                if !j.set_state_values(id, TrialState::Running, None)? {
                    return Ok(None);
                }
                ev.clone()
            }
            Event::Param {
                number,
                name,
                distribution,
                value,
            } => {
                let id = id_of(j, *number)?;
                j.set_param(id, name, distribution, value)?;
                ev.clone()
            }
            Event::Report {
                number,
                step,
                value,
            } => {
                let id = id_of(j, *number)?;
                let step = i64::try_from(*step)
                    .map_err(|_| Error::Space(format!("step {step} is too large")))?;
                j.set_intermediate(id, step, *value)?;
                ev.clone()
            }
            Event::Attr { number, key, value } => {
                let id = id_of(j, *number)?;
                j.set_trial_attr(id, key, PyJson::from_serde(value), false)?;
                ev.clone()
            }
            Event::Constraints { number, values } => {
                let id = id_of(j, *number)?;
                let list = PyJson::List(values.iter().map(|&x| PyJson::Float(x)).collect());
                j.set_trial_attr(id, "constraints", list, true)?;
                ev.clone()
            }
            Event::Finish {
                number,
                state,
                values,
            } => {
                let id = id_of(j, *number)?;
                if !j.set_state_values(id, *state, values.as_deref())? {
                    // Another worker finished it first (failed it as stale, say).
                    return Err(Error::TrialFinished(*number));
                }
                ev.clone()
            }
            Event::StudyAttr { key, value } => {
                j.set_study_attr(study, key, PyJson::from_serde(value), false)?;
                ev.clone()
            }
        }))
    }

    /// Beats for running trial `number` now and then every `interval` on a thread
    /// of its own, until the returned [`Beater`] is dropped; `None` outside an
    /// Optuna journal.
    pub(crate) fn start_heartbeat(
        &mut self,
        number: u64,
        interval: Duration,
    ) -> Result<Option<Beater>> {
        let Some(link) = self.optuna.as_mut() else {
            return Ok(None);
        };
        let id = link.trial_id(number)?;
        link.journal
            .set_trial_attr(id, HEARTBEAT_ATTR, PyJson::Float(unix_now()), true)?;
        let backend = link.journal.reopen_backend()?;
        let worker = format!("{}-heartbeat", link.journal.worker_id());
        Ok(Some(Beater::start(backend, worker, id, interval)))
    }

    /// Fails the running trials whose last heartbeat is older than `grace` (trials
    /// without one are left alone) and, for each this worker failed, enqueues a
    /// retry as Optuna's `RetryHeartbeatStaleTrialCallback` does: the same
    /// parameters, distributions, user and system attributes, with `failed_trial`
    /// (the first trial of the chain) and `retry_history` (every trial of it), unless
    /// the chain already holds more than `max_retry` trials. Returns the numbers of
    /// the trials failed here.
    pub(crate) fn fail_stale(
        &mut self,
        grace: Duration,
        max_retry: Option<usize>,
    ) -> Result<Vec<u64>> {
        self.refresh()?;
        let Some(link) = self.optuna.as_mut() else {
            return Ok(Vec::new());
        };
        let now = unix_now();
        let stale: Vec<JournalTrial> = {
            let r = link.journal.replay();
            let Some(study) = r.study(link.study) else {
                return Ok(Vec::new());
            };
            study
                .trials
                .iter()
                .filter_map(|&id| r.trial(id))
                .filter(|t| {
                    t.state == TrialState::Running
                        && t.system_attrs
                            .get(HEARTBEAT_ATTR)
                            .and_then(PyJson::as_f64)
                            .is_some_and(|beat| now - beat > grace.as_secs_f64())
                })
                .cloned()
                .collect()
        };
        let mut failed = Vec::new();
        for t in stale {
            match link
                .journal
                .set_state_values(t.id, TrialState::Failed, None)
            {
                Ok(true) => failed.push(t.number),
                // Another worker failed or finished it first.
                Ok(false) | Err(Error::TrialFinished(_)) => continue,
                Err(e) => return Err(e),
            }
            let mut system: BTreeMap<String, PyJson> = t.system_attrs.clone();
            system.remove(HEARTBEAT_ATTR);
            let first = system
                .get("failed_trial")
                .cloned()
                .unwrap_or(PyJson::Int(t.number as i64));
            let mut history = match system.get("retry_history") {
                Some(PyJson::List(h)) => h.clone(),
                _ => Vec::new(),
            };
            history.push(PyJson::Int(t.number as i64));
            if max_retry.is_some_and(|m| m < history.len()) {
                continue;
            }
            system.insert("failed_trial".into(), first);
            system.insert("retry_history".into(), PyJson::List(history));
            let params = t
                .params
                .iter()
                .filter_map(|(k, v)| {
                    t.distributions
                        .get(k)
                        .map(|d| (k.clone(), (d.clone(), v.clone())))
                })
                .collect();
            link.journal.create_waiting(
                link.study,
                &params,
                t.user_attrs.into_iter().collect(),
                system.into_iter().collect(),
            )?;
        }
        self.rebuild()?;
        Ok(failed)
    }

    /// The trials of a journal as far as they can be read, for reports on a run that
    /// may be going on or damaged: the file is only read (never created, locked or
    /// truncated); a torn last line is skipped, and reading stops at the first line
    /// that is not a valid event, with a warning that names it and says how many
    /// lines after it were left out ([`Storage::warnings`]).
    ///
    /// # Errors
    /// [`Error::Io`] when the file cannot be read.
    pub fn read_lenient(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(io_err(path))?;
        let first = bytes.split(|&b| b == b'\n').find(|l| !l.is_empty());
        let optuna = first
            .and_then(|l| std::str::from_utf8(l).ok())
            .and_then(|l| PyJson::parse(l).ok())
            .is_some_and(|v| v.get("op_code").is_some());
        if optuna {
            return Ok(Storage::read_optuna_snapshot(path));
        }
        let mut s = Storage::in_memory();
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        let lines: Vec<&[u8]> = bytes[..complete].split(|&b| b == b'\n').collect();
        for (i, line) in lines.iter().enumerate() {
            if line.is_empty() {
                continue;
            }
            let applied = std::str::from_utf8(line)
                .map_err(|e| e.to_string())
                .and_then(|l| serde_json::from_str::<Event>(l).map_err(|e| e.to_string()))
                .and_then(|ev| apply(&mut s.trials, &mut s.study_attrs, &ev, true));
            if let Err(reason) = applied {
                let after = lines[i + 1..].iter().filter(|l| !l.is_empty()).count();
                s.warnings.push(format!(
                    "{}:{}: {reason}; this line and the {after} after it are left out",
                    path.display(),
                    i + 1
                ));
                return Ok(s);
            }
        }
        if complete < bytes.len() {
            s.warnings.push(format!(
                "{}:{}: a torn last line of {} bytes is left out (a writer was killed mid-write, or is writing)",
                path.display(),
                lines.len(),
                bytes.len() - complete
            ));
        }
        Ok(s)
    }

    /// An Optuna journal holding one study (what [`Storage::snapshot`] writes) read
    /// for display: what cannot be read is a warning, with the trials before it.
    fn read_optuna_snapshot(path: &Path) -> Storage {
        let mut s = Storage::in_memory();
        let journal = match OptunaJournal::open(path) {
            Ok(j) => j,
            Err(e) => {
                s.warnings.push(format!("{}: {e}", path.display()));
                return s;
            }
        };
        let studies: Vec<(u64, String)> = journal
            .replay()
            .studies()
            .map(|st| (st.id, st.name.clone()))
            .collect();
        let Some((study, name)) = studies.last().cloned() else {
            s.warnings
                .push(format!("{}: the journal holds no study", path.display()));
            return s;
        };
        if studies.len() > 1 {
            s.warnings.push(format!(
                "{}: the journal holds {} studies; study '{name}', the last, is shown",
                path.display(),
                studies.len()
            ));
        }
        s.optuna = Some(OptunaLink {
            journal,
            study,
            name,
        });
        if let Err(e) = s.rebuild() {
            s.warnings.push(format!("{}: {e}", path.display()));
        }
        s
    }

    /// Writes this study, as of the last read, to a new Optuna journal file at
    /// `path` (replaced whole): the study with its attributes, then each trial as
    /// Optuna's `create_new_trial` copies one. A finished shared study is kept so
    /// beside its run, readable without the shared storage (by
    /// [`Storage::read_lenient`], `optuna-dashboard`, Python's `JournalStorage`).
    ///
    /// # Errors
    /// [`Error::Storage`] outside an Optuna journal; I/O and journal errors.
    pub fn snapshot(&self, path: &Path) -> Result<()> {
        let link = self.optuna.as_ref().ok_or_else(|| Error::Storage {
            reason: "only a study in an Optuna journal has a snapshot".into(),
        })?;
        let r = link.journal.replay();
        let study = r.study(link.study).ok_or_else(|| Error::Storage {
            reason: format!("study '{}' is gone from the journal", link.name),
        })?;
        let tmp = path.with_extension(format!("{}.partial", crate::optuna::file::unique()));
        let _ = std::fs::remove_file(&tmp);
        let written = (|| {
            let mut out = OptunaJournal::open(&tmp)?;
            let directions: Vec<Direction> = study
                .directions
                .iter()
                .map(|&d| {
                    if d == 1 {
                        Direction::Minimize
                    } else {
                        Direction::Maximize
                    }
                })
                .collect();
            let id = out.create_study(&study.name, &directions)?;
            for (k, v) in &study.user_attrs {
                out.set_study_attr(id, k, v.clone(), false)?;
            }
            for k in &study.system_attrs_order {
                out.set_study_attr(id, k, study.system_attrs[k].clone(), true)?;
            }
            for &t in &study.trials {
                out.add_trial(id, r.trial(t).expect("a study's trial"))?;
            }
            Ok(())
        })();
        let done = written.and_then(|()| std::fs::rename(&tmp, path).map_err(io_err(path)));
        if done.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        done
    }

    /// Warnings so far (e.g. a torn last journal line that was skipped).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Applies lines appended since the last read. With `exclusive`, a torn tail is
    /// truncated (no writer can be active while we hold the exclusive lock).
    fn catch_up(&mut self, exclusive: bool) -> Result<()> {
        let Some(j) = self.journal.as_mut() else {
            return Ok(());
        };
        let mut buf = Vec::new();
        j.file
            .seek(SeekFrom::Start(j.offset))
            .map_err(io_err(&j.path))?;
        j.file.read_to_end(&mut buf).map_err(io_err(&j.path))?;
        let complete = buf.iter().rposition(|&b| b == b'\n').map_or(0, |p| p + 1);
        for line in buf[..complete]
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
        {
            j.lines += 1;
            let ev: Event = std::str::from_utf8(line)
                .map_err(|e| e.to_string())
                .and_then(|l| serde_json::from_str(l).map_err(|e| e.to_string()))
                .map_err(|reason| Error::Journal {
                    path: j.path.clone(),
                    line: j.lines,
                    reason,
                })?;
            apply(&mut self.trials, &mut self.study_attrs, &ev, true).map_err(|reason| {
                Error::Journal {
                    path: j.path.clone(),
                    line: j.lines,
                    reason,
                }
            })?;
        }
        j.offset += complete as u64;
        if complete < buf.len() {
            let msg = format!(
                "{}:{}: ignoring a torn last line of {} bytes (a writer was killed mid-write)",
                j.path.display(),
                j.lines + 1,
                buf.len() - complete
            );
            if exclusive {
                j.file.set_len(j.offset).map_err(io_err(&j.path))?;
            }
            if !self.warnings.contains(&msg) {
                self.warnings.push(msg);
            }
        }
        Ok(())
    }

    /// Re-reads what other processes appended.
    ///
    /// # Errors
    /// As [`Storage::journal`].
    pub fn refresh(&mut self) -> Result<()> {
        if let Some(link) = self.optuna.as_mut() {
            link.journal.sync()?;
            return self.rebuild();
        }
        if let Some(j) = &self.journal {
            j.file.lock_shared().map_err(io_err(&j.path))?;
        }
        let r = self.catch_up(false);
        if let Some(j) = &self.journal {
            j.file.unlock().map_err(io_err(&j.path))?;
        }
        r
    }

    /// Derives an event from the up-to-date state, records it and applies it, all
    /// under the journal's exclusive lock.
    pub(crate) fn commit(
        &mut self,
        mut make: impl FnMut(&[FrozenTrial]) -> Result<Event>,
    ) -> Result<Event> {
        if self.optuna.is_some() {
            // Optuna's journal has no lock over read-and-write: write, then read
            // what the log made of it (the trial number a creation got; whether a
            // claim came first), and derive the event again after a lost claim.
            loop {
                self.refresh()?;
                let ev = make(&self.trials)?;
                apply(&mut self.trials, &mut self.study_attrs, &ev, false).map_err(Error::Space)?;
                if let Some(done) = self.write_optuna(&ev)? {
                    self.rebuild()?;
                    return Ok(done);
                }
            }
        }
        if let Some(j) = &self.journal {
            j.file.lock().map_err(io_err(&j.path))?;
        }
        let r = (|| {
            self.catch_up(true)?;
            let ev = make(&self.trials)?;
            // Check first, write the line, then change the state: a failed write
            // leaves both as they were.
            apply(&mut self.trials, &mut self.study_attrs, &ev, false).map_err(Error::Space)?;
            if let Some(j) = self.journal.as_mut() {
                let mut line = serde_json::to_vec(&ev).expect("events serialize");
                line.push(b'\n');
                j.file.write_all(&line).map_err(io_err(&j.path))?;
                j.file.flush().map_err(io_err(&j.path))?;
                j.offset += line.len() as u64;
                j.lines += 1;
            }
            apply(&mut self.trials, &mut self.study_attrs, &ev, true).map_err(Error::Space)?;
            Ok(ev)
        })();
        if let Some(j) = &self.journal {
            j.file.unlock().map_err(io_err(&j.path))?;
        }
        r
    }

    /// All trials, as of the last read or write.
    pub fn trials(&self) -> &[FrozenTrial] {
        &self.trials
    }

    /// One trial, re-read from the journal.
    ///
    /// # Errors
    /// [`Error::UnknownTrial`] or journal errors.
    pub fn trial(&mut self, number: u64) -> Result<FrozenTrial> {
        self.refresh()?;
        self.trials
            .get(number as usize)
            .cloned()
            .ok_or(Error::UnknownTrial(number))
    }

    pub(crate) fn report(&mut self, number: u64, step: u64, value: f64) -> Result<()> {
        self.commit(|_| {
            Ok(Event::Report {
                number,
                step,
                value,
            })
        })
        .map(drop)
    }

    pub(crate) fn set_user_attr(
        &mut self,
        number: u64,
        key: &str,
        value: serde_json::Value,
    ) -> Result<()> {
        self.commit(|_| {
            Ok(Event::Attr {
                number,
                key: key.to_owned(),
                value: value.clone(),
            })
        })
        .map(drop)
    }

    /// The study's user attributes, as of the last read or write.
    pub fn study_user_attrs(&self) -> &BTreeMap<String, serde_json::Value> {
        &self.study_attrs
    }

    pub(crate) fn set_study_user_attr(
        &mut self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<()> {
        self.commit(|_| {
            Ok(Event::StudyAttr {
                key: key.to_owned(),
                value: value.clone(),
            })
        })
        .map(drop)
    }

    fn optuna_link(&mut self, what: &str) -> Result<&mut OptunaLink> {
        self.optuna.as_mut().ok_or_else(|| Error::Storage {
            reason: format!("{what} are kept only in an Optuna journal"),
        })
    }

    /// The study's system attributes in the order the log first set each (the
    /// order of Python's `study.system_attrs`), as of the last read or write; empty
    /// outside an Optuna journal.
    pub fn study_system_attrs(&self) -> Vec<(String, PyJson)> {
        let Some(link) = &self.optuna else {
            return Vec::new();
        };
        let Some(study) = link.journal.replay().study(link.study) else {
            return Vec::new();
        };
        study
            .system_attrs_order
            .iter()
            .filter_map(|k| Some((k.clone(), study.system_attrs.get(k)?.clone())))
            .collect()
    }

    pub(crate) fn set_study_system_attr(&mut self, key: &str, value: PyJson) -> Result<()> {
        let link = self.optuna_link("study system attributes")?;
        let study = link.study;
        link.journal.set_study_attr(study, key, value, true)?;
        self.rebuild()
    }

    /// Trial `number`'s system attributes, as of the last read or write.
    ///
    /// # Errors
    /// [`Error::Storage`] outside an Optuna journal; [`Error::UnknownTrial`].
    pub fn trial_system_attrs(&self, number: u64) -> Result<BTreeMap<String, PyJson>> {
        let link = self.optuna.as_ref().ok_or_else(|| Error::Storage {
            reason: "trial system attributes are kept only in an Optuna journal".into(),
        })?;
        let id = link.trial_id(number)?;
        Ok(link
            .journal
            .replay()
            .trial(id)
            .map(|t| t.system_attrs.clone())
            .unwrap_or_default())
    }

    pub(crate) fn set_trial_system_attr(
        &mut self,
        number: u64,
        key: &str,
        value: PyJson,
    ) -> Result<()> {
        let link = self.optuna_link("trial system attributes")?;
        let id = link.trial_id(number)?;
        link.journal.set_trial_attr(id, key, value, true)?;
        self.rebuild()
    }

    pub(crate) fn set_constraints(&mut self, number: u64, values: Vec<f64>) -> Result<()> {
        self.commit(|_| {
            Ok(Event::Constraints {
                number,
                values: values.clone(),
            })
        })
        .map(drop)
    }
}

/// Applies one event (or only checks it, without `mutate`); an inconsistent event is
/// an error message and changes nothing.
fn apply(
    trials: &mut Vec<FrozenTrial>,
    study_attrs: &mut BTreeMap<String, serde_json::Value>,
    ev: &Event,
    mutate: bool,
) -> Result<(), String> {
    let get = |trials: &mut Vec<FrozenTrial>, n: u64| -> Result<usize, String> {
        let i = n as usize;
        if i < trials.len() {
            Ok(i)
        } else {
            Err(format!("trial {n} does not exist"))
        }
    };
    let running = |t: &FrozenTrial| -> Result<(), String> {
        if t.state == TrialState::Running {
            Ok(())
        } else {
            Err(format!("trial {} is {:?}, not running", t.number, t.state))
        }
    };
    match ev {
        Event::Create {
            number,
            state,
            params,
        } => {
            if *number as usize != trials.len() {
                return Err(format!(
                    "trial {number} created out of order (expected {})",
                    trials.len()
                ));
            }
            if !mutate {
                return Ok(());
            }
            let mut t = FrozenTrial::new(*number, *state);
            t.params = params.clone();
            trials.push(t);
        }
        Event::Claim { number } => {
            let i = get(trials, *number)?;
            if trials[i].state != TrialState::Waiting {
                return Err(format!("trial {number} is not waiting"));
            }
            if !mutate {
                return Ok(());
            }
            trials[i].state = TrialState::Running;
        }
        Event::Param {
            number,
            name,
            distribution,
            value,
        } => {
            let i = get(trials, *number)?;
            running(&trials[i])?;
            if !mutate {
                return Ok(());
            }
            trials[i].params.insert(name.clone(), value.clone());
            trials[i]
                .distributions
                .insert(name.clone(), distribution.clone());
        }
        Event::Report {
            number,
            step,
            value,
        } => {
            let i = get(trials, *number)?;
            running(&trials[i])?;
            if !mutate {
                return Ok(());
            }
            trials[i].intermediate.insert(*step, *value);
        }
        Event::Attr { number, key, value } => {
            let i = get(trials, *number)?;
            if !mutate {
                return Ok(());
            }
            trials[i].user_attrs.insert(key.clone(), value.clone());
        }
        Event::Constraints { number, values } => {
            let i = get(trials, *number)?;
            if !mutate {
                return Ok(());
            }
            trials[i].constraints = Some(values.clone());
        }
        Event::Finish {
            number,
            state,
            values,
        } => {
            let i = get(trials, *number)?;
            running(&trials[i])?;
            if !mutate {
                return Ok(());
            }
            trials[i].state = *state;
            trials[i].values.clone_from(values);
        }
        Event::StudyAttr { key, value } => {
            if mutate {
                study_attrs.insert(key.clone(), value.clone());
            }
        }
    }
    Ok(())
}

/// Parameter distributions shared by all complete trials (Optuna's intersection search
/// space), for samplers that model parameters jointly.
pub fn intersection_space(trials: &[FrozenTrial]) -> BTreeMap<String, Distribution> {
    let mut space: Option<BTreeMap<String, Distribution>> = None;
    for t in trials.iter().filter(|t| t.state == TrialState::Complete) {
        space = Some(match space {
            None => t.distributions.clone(),
            Some(s) => s
                .into_iter()
                .filter(|(k, d)| t.distributions.get(k) == Some(d))
                .collect(),
        });
    }
    space.unwrap_or_default()
}

/// A parameter value as Python holds it (in `fixed_params`).
fn py_param(v: &ParamValue) -> PyJson {
    match v {
        ParamValue::Bool(b) => PyJson::Bool(*b),
        ParamValue::Int(i) => PyJson::Int(*i),
        ParamValue::Float(x) => PyJson::Float(*x),
        ParamValue::Str(s) => PyJson::Str(s.clone()),
    }
}

/// An Optuna journal's trial as this crate's: the parameters an enqueued trial was
/// given (`fixed_params`) and those it suggested, user attributes as JSON (a NaN or
/// infinity inside one, which JSON cannot hold, reads as null here; the journal keeps
/// it), constraints from the `constraints` system attribute.
fn frozen(t: &JournalTrial) -> FrozenTrial {
    let mut f = FrozenTrial::new(t.number, t.state);
    if let Some(PyJson::Dict(fixed)) = t.system_attrs.get("fixed_params") {
        for (k, v) in fixed {
            let p = match v {
                PyJson::Bool(b) => ParamValue::Bool(*b),
                PyJson::Int(i) => ParamValue::Int(*i),
                PyJson::Float(x) => ParamValue::Float(*x),
                PyJson::Str(s) => ParamValue::Str(s.clone()),
                _ => continue,
            };
            f.params.insert(k.clone(), p);
        }
    }
    f.params
        .extend(t.params.iter().map(|(k, v)| (k.clone(), v.clone())));
    f.distributions.clone_from(&t.distributions);
    f.values.clone_from(&t.values);
    f.intermediate = t
        .intermediate
        .iter()
        .filter_map(|(&k, &v)| u64::try_from(k).ok().map(|k| (k, v)))
        .collect();
    f.user_attrs = t
        .user_attrs
        .iter()
        .map(|(k, v)| (k.clone(), v.to_serde().unwrap_or(serde_json::Value::Null)))
        .collect();
    if let Some(PyJson::List(c)) = t.system_attrs.get("constraints") {
        f.constraints = c.iter().map(PyJson::as_f64).collect();
    }
    f
}

/// `trials` with each running trial's unset parameters taken from its published
/// proposal (`tpe:relative_params:0`, `:1`, … joined), each with the distribution the
/// study's first trial having that parameter has; `None` when no trial has one.
fn with_proposals<'a>(
    trials: &[FrozenTrial],
    journal: impl Iterator<Item = &'a JournalTrial>,
) -> Option<Vec<FrozenTrial>> {
    let mut out: Option<Vec<FrozenTrial>> = None;
    let journal: Vec<&JournalTrial> = journal.collect();
    for (i, t) in journal.iter().enumerate() {
        if t.state != TrialState::Running {
            continue;
        }
        let mut text = String::new();
        for c in 0.. {
            match t.system_attrs.get(&format!("tpe:relative_params:{c}")) {
                Some(PyJson::Str(s)) => text.push_str(s),
                _ => break,
            }
        }
        let Ok(PyJson::Dict(proposal)) = PyJson::parse(&text) else {
            continue;
        };
        let copy = out.get_or_insert_with(|| trials.to_vec());
        for (name, v) in proposal {
            if copy[i].params.contains_key(&name) {
                continue;
            }
            let Some(d) = trials.iter().find_map(|u| u.distributions.get(&name)) else {
                continue;
            };
            let p = match v {
                PyJson::Bool(b) => ParamValue::Bool(b),
                PyJson::Int(x) => ParamValue::Int(x),
                PyJson::Float(x) => ParamValue::Float(x),
                PyJson::Str(s) => ParamValue::Str(s),
                _ => continue,
            };
            copy[i].distributions.insert(name.clone(), d.clone());
            copy[i].params.insert(name, p);
        }
    }
    out
}
