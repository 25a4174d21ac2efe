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

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::space::{Distribution, ParamValue, Params};
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

/// Trial storage: in memory, or a journal file.
pub struct Storage {
    trials: Vec<FrozenTrial>,
    study_attrs: BTreeMap<String, serde_json::Value>,
    journal: Option<Journal>,
    warnings: Vec<String>,
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("trials", &self.trials.len())
            .field("journal", &self.journal.as_ref().map(|j| &j.path))
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
            study_attrs: BTreeMap::new(),
            journal: None,
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
            study_attrs: BTreeMap::new(),
            journal: Some(Journal {
                path: path.to_owned(),
                file,
                offset: 0,
                lines: 0,
            }),
            warnings: Vec::new(),
        };
        s.refresh()?;
        Ok(s)
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
        make: impl FnOnce(&[FrozenTrial]) -> Result<Event>,
    ) -> Result<Event> {
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
                value,
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
                value,
            })
        })
        .map(drop)
    }

    pub(crate) fn set_constraints(&mut self, number: u64, values: Vec<f64>) -> Result<()> {
        self.commit(|_| Ok(Event::Constraints { number, values }))
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
