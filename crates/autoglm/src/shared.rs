//! A study shared by several `autoglm run` processes (`search.storage`, or
//! `autoglm run --storage`), on one machine or many.
//!
//! The study is Optuna's journal (a file on a shared mount, or Redis), so the
//! processes need nothing else between them, and Python Optuna, Rustuna and
//! optuna-dashboard read the same study. Everything this module adds is in
//! Optuna's system attributes, which every Optuna tool keeps and ignores:
//!
//! - **Joining.** Each process prepares the data and tokenizer itself
//!   (deterministically) and records a [`Fingerprint`] of them, with the task's
//!   spaces and search settings, under `autoglm:worker:{worker id}` with its host,
//!   process id and output directory. The first such record in the log is the
//!   study's: a process whose fingerprint differs refuses to run, naming each
//!   difference. The first process also enqueues the `warm_start`
//!   configurations.
//! - **Trials.** A process runs trials until the study has `search.trials`
//!   complete or pruned ones, counting the trials other processes are running: when
//!   those would fill the budget it waits for them instead of starting more. Each
//!   trial records its process (`autoglm:worker`) and beats while it runs
//!   (`search.heartbeat`); a trial whose beat is older than the grace period is
//!   failed by whichever process notices and retried with its parameters, so a
//!   killed process loses its running trial only.
//! - **Multi-fidelity.** With `search.hyperband`, the processes share Hyperband's
//!   brackets (autoglm-tune's `MultiFidelity::with_owner`): a trial's rungs all
//!   run in the process that started it, where its checkpoint is; a gone process's
//!   trials fail after the grace period, their rungs are decided without them and
//!   their retries restart from the first rung. The brackets get the whole time
//!   budget: the incumbent is not extended, its checkpoint may be elsewhere.
//! - **Models.** A trial whose dev score is the study's best when it finishes
//!   has its model uploaded to `search.artifacts` before it is told, as Optuna's
//!   `upload_artifact` does (one artifact per file, listed by optuna-dashboard).
//!   The study's best trial therefore always has its model there.
//! - **Finishing.** When the study is over (and no trial runs), each process
//!   claims the finish (`autoglm:finish:{worker id}`); the first claim in the log
//!   does the dev decoding choice, test scoring, export and report, the others
//!   stop and say which process finishes. `autoglm run --finish` finishes from
//!   any process that has the data (for when the claimant is gone). The finisher
//!   takes the best trial's model from the artifact store (or from its own run
//!   directory when it ran that trial) and writes the study, as it ended, beside
//!   the run (`study.jsonl`, an Optuna journal of that study alone).

use std::path::Path;

use autoglm_tune::optuna::artifacts::FileSystemArtifactStore;
use autoglm_tune::optuna::pyjson::PyJson;
use autoglm_tune::Study;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::rundir::RunDir;
use crate::task::Task;

/// Prefix of the study system attribute each process records on joining.
pub const WORKER_PREFIX: &str = "autoglm:worker:";
/// Prefix of the study system attribute a process claiming the finish records.
pub const FINISH_PREFIX: &str = "autoglm:finish:";
/// The trial system attribute naming the process that runs the trial.
pub const TRIAL_WORKER_ATTR: &str = "autoglm:worker";

/// A file's contents in brief.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileDigest {
    /// SHA-256 of its bytes, in hex.
    pub sha256: String,
    /// Its lines (rows, for the data splits).
    pub lines: usize,
}

impl FileDigest {
    /// The digest of the file at `path`; `None` when there is no such file.
    ///
    /// # Errors
    /// [`Error::Io`] when it exists but cannot be read.
    pub fn of(path: &Path) -> Result<Option<FileDigest>> {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        Ok(Some(FileDigest {
            sha256: format!("{:x}", Sha256::digest(&bytes)),
            lines: bytes.iter().filter(|&&b| b == b'\n').count(),
        }))
    }
}

/// What a trial's score depends on besides its parameters. The processes of one
/// study must agree on it, or their scores would not be comparable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    /// The cleaned training split.
    pub train: Option<FileDigest>,
    /// The cleaned dev split.
    pub dev: Option<FileDigest>,
    /// The test inputs.
    pub test: Option<FileDigest>,
    /// The tokenizer.
    pub tokenizer: Option<FileDigest>,
    /// The task's structure and training spaces and the search settings that
    /// shape trials (not those each process may set for itself: threads, minutes,
    /// storage, artifacts, heartbeat, warm start), as JSON.
    pub task: serde_json::Value,
}

impl Fingerprint {
    /// The fingerprint of a prepared run directory and its task.
    ///
    /// # Errors
    /// [`Error::Io`] reading the prepared files.
    pub fn of(run: &RunDir, task: &Task) -> Result<Fingerprint> {
        let data = run.data();
        let mut search = serde_json::to_value(&task.search).expect("serializable");
        if let Some(m) = search.as_object_mut() {
            for k in [
                "threads",
                "minutes",
                "workers",
                "storage",
                "study_name",
                "artifacts",
                "heartbeat",
                "warm_start",
                "warm_start_trials",
            ] {
                m.remove(k);
            }
        }
        let mut model = serde_json::to_value(&task.model).expect("serializable");
        // A checkpoint's place differs between machines; its name and the
        // tokenizer's digest say which it is.
        if let Some(c) = model.get_mut("checkpoint").filter(|c| !c.is_null()) {
            let name = task
                .model
                .checkpoint
                .as_deref()
                .and_then(Path::file_name)
                .map(|n| n.to_string_lossy().into_owned());
            *c = serde_json::json!(name);
        }
        Ok(Fingerprint {
            train: FileDigest::of(&data.train())?,
            dev: FileDigest::of(&data.dev())?,
            test: FileDigest::of(&data.test_inputs())?,
            tokenizer: FileDigest::of(&run.tokenizer())?,
            task: serde_json::json!({
                "model": model,
                "training": task.training,
                "search": search,
            }),
        })
    }

    /// How `self` (this process's) differs from `study` (the study's), one entry
    /// per difference naming the part; empty when they agree.
    pub fn differences(&self, study: &Fingerprint) -> Vec<String> {
        let mut out = Vec::new();
        let files = [
            ("the cleaned training split", &self.train, &study.train),
            ("the cleaned dev split", &self.dev, &study.dev),
            ("the test inputs", &self.test, &study.test),
            ("the tokenizer", &self.tokenizer, &study.tokenizer),
        ];
        for (what, here, there) in files {
            if here != there {
                let say = |d: &Option<FileDigest>| match d {
                    Some(d) => format!("sha256 {}… ({} lines)", &d.sha256[..12], d.lines),
                    None => "none".to_owned(),
                };
                out.push(format!(
                    "{what}: {} here, {} in the study",
                    say(here),
                    say(there)
                ));
            }
        }
        json_differences("", &self.task, &study.task, &mut out);
        out
    }
}

/// The differences between two JSON values, each as `path: here, in the study`.
fn json_differences(
    path: &str,
    here: &serde_json::Value,
    there: &serde_json::Value,
    out: &mut Vec<String>,
) {
    use serde_json::Value;
    match (here, there) {
        (Value::Object(a), Value::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                json_differences(
                    &p,
                    a.get(k).unwrap_or(&Value::Null),
                    b.get(k).unwrap_or(&Value::Null),
                    out,
                );
            }
        }
        (a, b) if a != b => out.push(format!("{path}: {a} here, {b} in the study")),
        _ => {}
    }
}

/// This process as a member of a shared study.
#[derive(Debug, Clone)]
pub(crate) struct Member {
    /// Its worker id (what its journal lines carry).
    pub worker: String,
    /// Whether its record is the study's first (it enqueues the warm start).
    pub founder: bool,
    /// The artifact store, if the task gives one.
    pub store: Option<FileSystemArtifactStore>,
}

/// The host's name, for records others read.
fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown host".to_owned())
}

/// A process record: its host, process id and output directory, with `extra`.
fn record(run: &RunDir, extra: serde_json::Value) -> PyJson {
    let mut v = serde_json::json!({
        "host": host(),
        "pid": std::process::id(),
        "output": run.root().display().to_string(),
        "at": autoglm_tune::optuna::now_iso(),
    });
    if let (Some(m), serde_json::Value::Object(e)) = (v.as_object_mut(), extra) {
        m.extend(e);
    }
    PyJson::from_serde(&v)
}

/// A process record in words: `pid P on HOST (output DIR)`.
pub(crate) fn describe(record: &PyJson) -> String {
    let get = |k: &str| {
        record
            .get(k)
            .map(|v| match v {
                PyJson::Str(s) => s.clone(),
                v => v.dumps(autoglm_tune::optuna::pyjson::Separators::Compact),
            })
            .unwrap_or_else(|| "?".into())
    };
    format!(
        "process {} on {} (output {})",
        get("pid"),
        get("host"),
        get("output")
    )
}

/// Records this process in the study and checks its fingerprint against the
/// study's (the first record in the log).
///
/// # Errors
/// [`Error::Task`] naming each difference when the fingerprints differ; storage
/// errors.
pub(crate) fn join(
    study: &mut Study,
    task: &Task,
    run: &RunDir,
    fingerprint: &Fingerprint,
) -> Result<Member> {
    let journal = study
        .storage()
        .optuna_journal()
        .ok_or_else(|| Error::Task("search.storage: the study is not in a journal".into()))?;
    let worker = journal.worker_id().to_owned();
    let key = format!("{WORKER_PREFIX}{worker}");
    let fp = serde_json::to_value(fingerprint).expect("serializable");
    study.set_system_attr(&key, record(run, serde_json::json!({ "fingerprint": fp })))?;
    let attrs = study.system_attrs();
    let (first_key, first) = attrs
        .iter()
        .find(|(k, _)| k.starts_with(WORKER_PREFIX))
        .expect("this process's record at least");
    let storage = task.search.storage.clone().unwrap_or_default();
    let name = study_name(task);
    let theirs = first
        .get("fingerprint")
        .and_then(PyJson::to_serde)
        .and_then(|v| serde_json::from_value::<Fingerprint>(v).ok());
    let diffs = match &theirs {
        Some(t) => fingerprint.differences(t),
        None => vec!["the study's fingerprint cannot be read".to_owned()],
    };
    if !diffs.is_empty() {
        return Err(Error::Task(format!(
            "search.storage: study '{name}' in {storage} was started by {} on other data or settings, so this process does not join it: {}",
            describe(first),
            diffs.join("; ")
        )));
    }
    let store = match &task.search.artifacts {
        Some(dir) => Some(FileSystemArtifactStore::new(dir)?),
        None => None,
    };
    Ok(Member {
        founder: *first_key == key,
        worker,
        store,
    })
}

/// The study's name: `search.study_name`, else the task's name.
pub(crate) fn study_name(task: &Task) -> String {
    task.search
        .study_name
        .clone()
        .unwrap_or_else(|| task.name.clone())
}

/// Claims the finish of the study; `None` when this process's claim is the first
/// in the log (it finishes), else the finishing process in words.
///
/// # Errors
/// Storage errors.
pub(crate) fn claim_finish(
    study: &mut Study,
    member: &Member,
    run: &RunDir,
) -> Result<Option<String>> {
    let key = format!("{FINISH_PREFIX}{}", member.worker);
    study.set_system_attr(&key, record(run, serde_json::json!({})))?;
    let attrs = study.system_attrs();
    let (first_key, first) = attrs
        .iter()
        .find(|(k, _)| k.starts_with(FINISH_PREFIX))
        .expect("this process's claim at least");
    Ok((*first_key != key).then(|| describe(first)))
}

/// The process that ran trial `number`, in words, from its records.
pub(crate) fn runner_of(study: &mut Study, number: u64) -> Result<String> {
    let worker = study
        .trial_system_attrs(number)?
        .get(TRIAL_WORKER_ATTR)
        .and_then(PyJson::as_str)
        .map(str::to_owned);
    let Some(worker) = worker else {
        return Ok("a process that did not record itself".into());
    };
    Ok(study
        .system_attrs()
        .iter()
        .find(|(k, _)| k.strip_prefix(WORKER_PREFIX) == Some(worker.as_str()))
        .map_or_else(|| format!("worker {worker}"), |(_, r)| describe(r)))
}

/// Uploads the model files in `dir` as trial `number`'s artifacts.
///
/// # Errors
/// I/O and storage errors.
pub(crate) fn upload_model(
    study: &mut Study,
    store: &FileSystemArtifactStore,
    number: u64,
    dir: &Path,
) -> Result<()> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    for f in files {
        study.upload_artifact(store, number, &f)?;
    }
    Ok(())
}

/// Puts trial `number`'s model into `dest` (a directory, replaced whole): from
/// `local` when that directory holds it already (its `best_trial.json` names the
/// trial), else from the artifact store.
///
/// # Errors
/// [`Error::Input`] naming the process that has the model when neither holds it;
/// I/O and storage errors.
pub(crate) fn fetch_model(
    study: &mut Study,
    member: &Member,
    number: u64,
    local_trial: &Path,
    dest: &Path,
    staging: &Path,
) -> Result<()> {
    let held = std::fs::read_to_string(local_trial)
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["number"].as_u64());
    if held == Some(number) {
        return Ok(());
    }
    let artifacts = match &member.store {
        Some(_) => study.artifacts(number)?,
        None => Vec::new(),
    };
    let Some(store) = member.store.as_ref().filter(|_| !artifacts.is_empty()) else {
        let who = runner_of(study, number)?;
        let why = match &member.store {
            Some(s) => format!(
                "the artifact store {} has none of its files",
                s.base().display()
            ),
            None => "no artifact store is given (search.artifacts)".to_owned(),
        };
        return Err(Error::Input(format!(
            "the study's best trial, {number}, ran in {who}, and {why}: run `autoglm run --finish` there, or give the task an artifact store the processes share"
        )));
    };
    if staging.exists() {
        std::fs::remove_dir_all(staging).map_err(|e| Error::io(staging, e))?;
    }
    std::fs::create_dir_all(staging).map_err(|e| Error::io(staging, e))?;
    for a in &artifacts {
        // A file name from the journal names a file inside the directory, nothing
        // else.
        let name = Path::new(&a.filename)
            .file_name()
            .filter(|n| !n.is_empty())
            .ok_or_else(|| {
                Error::Input(format!(
                    "artifact {} of trial {number} has the file name '{}'",
                    a.artifact_id, a.filename
                ))
            })?;
        store.download(&a.artifact_id, &staging.join(name))?;
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| Error::io(dest, e))?;
    }
    std::fs::rename(staging, dest).map_err(|e| Error::io(dest, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_part() {
        let d = |s: &str, n| {
            Some(FileDigest {
                sha256: s.repeat(64),
                lines: n,
            })
        };
        let a = Fingerprint {
            train: d("a", 10),
            dev: d("b", 5),
            test: None,
            tokenizer: d("c", 1),
            task: serde_json::json!({"search": {"trials": 10, "metric": "bleu"}}),
        };
        assert!(a.differences(&a.clone()).is_empty());
        let mut b = a.clone();
        b.train = d("e", 11);
        b.task = serde_json::json!({"search": {"trials": 12, "metric": "bleu"}});
        let diffs = a.differences(&b);
        assert_eq!(diffs.len(), 2, "{diffs:?}");
        assert_eq!(
            diffs[0],
            "the cleaned training split: sha256 aaaaaaaaaaaa… (10 lines) here, sha256 eeeeeeeeeeee… (11 lines) in the study"
        );
        assert_eq!(diffs[1], "search.trials: 10 here, 12 in the study");
    }
}
