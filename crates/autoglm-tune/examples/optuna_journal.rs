//! Reads and writes Optuna journal files with `autoglm_tune::optuna`, for the
//! side-by-side checks against Python Optuna (`scripts/optuna_interop.py`):
//!
//! - `dump PATH`: every study and trial as replayed, one JSON document (the
//!   fields `optuna.load_study` exposes);
//! - `echo PATH`: every line parsed and written again as Optuna writes lines;
//! - `write PATH`: a fixed set of studies and trials written through
//!   [`OptunaJournal`];
//! - `append PATH STUDY N`: `N` study user attributes `rs_0 … rs_{N-1}`, one line
//!   each, under the journal's lock (for concurrent writers);
//! - `study PATH NAME N SEED`: `N` trials of a study (our TPE) as one worker of a
//!   study other workers may share;
//! - `snapshot PATH STUDY DEST`: the minimizing study `STUDY` alone written to a
//!   new journal file `DEST` (`Storage::snapshot`);
//! - `upload PATH STUDY TRIAL STORE FILE`: `FILE` as an artifact of trial `TRIAL`
//!   in the `FileSystemArtifactStore` directory `STORE` (prints its id);
//! - `artifacts PATH STUDY TRIAL STORE OUT`: the trial's artifacts downloaded into
//!   `OUT` (named by id), their metadata printed.
//!
//! With the `redis` feature, `dump`, `write` and `append` also take
//! `redis://HOST:PORT/DB#PREFIX` for a journal on a Redis server.

use std::path::Path;

use autoglm_tune::optuna::artifacts::FileSystemArtifactStore;
use autoglm_tune::optuna::file::JournalFile;
use autoglm_tune::optuna::journal::{distribution_to_json, state_code};
use autoglm_tune::optuna::pyjson::{PyJson, Separators};
use autoglm_tune::optuna::OptunaJournal;
use autoglm_tune::{Direction, Distribution, ParamValue, TrialState};

fn attrs(m: &std::collections::BTreeMap<String, PyJson>) -> PyJson {
    PyJson::Dict(m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

fn value(v: &ParamValue) -> PyJson {
    match v {
        ParamValue::Bool(b) => PyJson::Bool(*b),
        ParamValue::Int(i) => PyJson::Int(*i),
        ParamValue::Float(x) => PyJson::Float(*x),
        ParamValue::Str(s) => PyJson::Str(s.clone()),
    }
}

fn opt_str(s: &Option<String>) -> PyJson {
    s.as_ref().map_or(PyJson::Null, |s| PyJson::Str(s.clone()))
}

/// A journal file, or with the `redis` feature `redis://HOST:PORT/DB#PREFIX`.
fn open(spec: &str) -> Result<OptunaJournal, Box<dyn std::error::Error>> {
    Ok(OptunaJournal::open_spec(spec)?)
}

fn dump(spec: &str) -> Result<String, Box<dyn std::error::Error>> {
    let j = open(spec)?;
    let r = j.replay();
    let studies = r
        .studies()
        .map(|s| {
            let trials = s
                .trials
                .iter()
                .map(|&id| {
                    let t = r.trial(id).expect("a study's trial");
                    PyJson::Dict(vec![
                        ("id".into(), PyJson::Int(t.id as i64)),
                        ("number".into(), PyJson::Int(t.number as i64)),
                        ("state".into(), PyJson::Int(state_code(t.state))),
                        (
                            "values".into(),
                            t.values.as_ref().map_or(PyJson::Null, |v| {
                                PyJson::List(v.iter().map(|&x| PyJson::Float(x)).collect())
                            }),
                        ),
                        (
                            "params".into(),
                            PyJson::Dict(
                                t.params
                                    .iter()
                                    .map(|(k, v)| (k.clone(), value(v)))
                                    .collect(),
                            ),
                        ),
                        (
                            "distributions".into(),
                            PyJson::Dict(
                                t.distributions
                                    .iter()
                                    .map(|(k, d)| (k.clone(), PyJson::Str(distribution_to_json(d))))
                                    .collect(),
                            ),
                        ),
                        ("user_attrs".into(), attrs(&t.user_attrs)),
                        ("system_attrs".into(), attrs(&t.system_attrs)),
                        (
                            "intermediate_values".into(),
                            PyJson::Dict(
                                t.intermediate
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), PyJson::Float(*v)))
                                    .collect(),
                            ),
                        ),
                        ("datetime_start".into(), opt_str(&t.datetime_start)),
                        ("datetime_complete".into(), opt_str(&t.datetime_complete)),
                    ])
                })
                .collect();
            PyJson::Dict(vec![
                ("id".into(), PyJson::Int(s.id as i64)),
                ("name".into(), PyJson::Str(s.name.clone())),
                (
                    "directions".into(),
                    PyJson::List(s.directions.iter().map(|&d| PyJson::Int(d)).collect()),
                ),
                ("user_attrs".into(), attrs(&s.user_attrs)),
                ("system_attrs".into(), attrs(&s.system_attrs)),
                ("trials".into(), PyJson::List(trials)),
            ])
        })
        .collect();
    Ok(PyJson::List(studies).dumps(Separators::Default))
}

fn write(spec: &str) -> Result<(), Box<dyn std::error::Error>> {
    let mut j = open(spec)?;
    let s = j.create_study("rust-single", &[Direction::Minimize])?;
    j.set_study_attr(s, "dataset", PyJson::Str("e2e — dev".into()), false)?;
    j.set_study_attr(
        s,
        "study:metric_names",
        PyJson::List(vec![PyJson::Str("loss".into())]),
        true,
    )?;
    let x = Distribution::float(-5.0, 5.0);
    let lr = Distribution::float(1e-5, 1e-1).log();
    let n = Distribution::int(1, 9).int_step(2);
    let c = Distribution::categorical(["adam", "sgd"]);
    let b = Distribution::categorical([true, false]);
    for i in 0..6u32 {
        let t = j.create_trial(s)?;
        j.set_param(t, "x", &x, &ParamValue::Float(-5.0 + 1.7 * f64::from(i)))?;
        j.set_param(
            t,
            "lr",
            &lr,
            &ParamValue::Float(1e-5 * 10f64.powi(i as i32 % 4)),
        )?;
        j.set_param(
            t,
            "layers",
            &n,
            &ParamValue::Int(1 + 2 * (i64::from(i) % 5)),
        )?;
        j.set_param(
            t,
            "opt",
            &c,
            &ParamValue::Str(["adam", "sgd"][i as usize % 2].into()),
        )?;
        j.set_param(t, "flag", &b, &ParamValue::Bool(i % 3 == 0))?;
        for step in 0..3 {
            let v = if i == 2 && step == 1 {
                f64::NAN
            } else {
                1.0 / f64::from(step + i + 1)
            };
            j.set_intermediate(t, step.into(), v)?;
        }
        j.set_trial_attr(t, "note", PyJson::Str(format!("trial {i} ✓")), false)?;
        j.set_trial_attr(t, "rung", PyJson::Int(i64::from(i % 2)), true)?;
        match i {
            3 => {
                j.set_state_values(t, TrialState::Pruned, Some(&[0.25]))?;
            }
            4 => {
                j.set_state_values(t, TrialState::Failed, None)?;
            }
            _ => {
                j.set_state_values(t, TrialState::Complete, Some(&[f64::from(i) * 0.1 + 1e-7]))?;
            }
        }
    }
    let m = j.create_study("rust-multi", &[Direction::Minimize, Direction::Maximize])?;
    let t = j.create_trial(m)?;
    j.set_param(t, "x", &x, &ParamValue::Float(0.5))?;
    j.set_state_values(t, TrialState::Complete, Some(&[1.0, f64::INFINITY]))?;
    // A trial left running.
    j.create_trial(m)?;
    let gone = j.create_study("rust-deleted", &[Direction::Maximize])?;
    j.create_trial(gone)?;
    j.delete_study(gone)?;
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args
        .iter()
        .map(String::as_str)
        .collect::<Vec<_>>()
        .as_slice()
    {
        ["dump", spec] => println!("{}", dump(spec)?),
        ["echo", path] => {
            let mut f = JournalFile::open(Path::new(path))?;
            let (logs, bad) = f.read_logs(0)?;
            if let Some(b) = bad {
                return Err(format!("line {}: {}", b.log_number + 1, b.reason).into());
            }
            for l in logs {
                println!("{}", l.dumps(Separators::Compact));
            }
        }
        ["write", spec] => write(spec)?,
        ["study", spec, name, n, seed] => {
            // Our study loop (TPE) as one worker of a shared study: x in [-5, 5],
            // n in 1..=8, c in {a, b}; objective x² + n + [c = b].
            let seed = autoglm_tune::Seed(seed.parse()?);
            let storage = autoglm_tune::Storage::optuna(open(spec)?, name, &[Direction::Minimize])?;
            let mut s = autoglm_tune::Study::new(&[Direction::Minimize], seed)
                .with_sampler(autoglm_tune::TpeSampler::new(seed))
                .with_storage(storage);
            s.optimize(n.parse()?, |t| {
                let x = t.suggest_float("x", -5.0, 5.0, false)?;
                let n = t.suggest_int("n", 1, 8, false)?;
                let c = t.suggest_categorical("c", ["a", "b"])?;
                Ok::<f64, autoglm_tune::TrialError>(
                    x * x + n as f64 + f64::from(u8::from(c == ParamValue::Str("b".into()))),
                )
            })?;
        }
        ["append", spec, study, n] => {
            let mut j = open(spec)?;
            let id = j
                .replay()
                .study_by_name(study)
                .ok_or_else(|| format!("no study '{study}'"))?
                .id;
            for i in 0..n.parse::<u64>()? {
                j.set_study_attr(id, &format!("rs_{i}"), PyJson::Int(i as i64), false)?;
            }
        }
        ["snapshot", spec, study, dest] => {
            // The (minimizing) study alone in a new journal file.
            let storage = autoglm_tune::Storage::optuna(open(spec)?, study, &[Direction::Minimize])?;
            storage.snapshot(Path::new(dest))?;
        }
        ["upload", spec, study, number, store, file] => {
            // `optuna.artifacts.upload_artifact` of `file` to trial `number`; prints
            // the artifact id.
            let storage = autoglm_tune::Storage::optuna(open(spec)?, study, &[Direction::Minimize])?;
            let mut s = autoglm_tune::Study::minimize(autoglm_tune::Seed(0)).with_storage(storage);
            let store = FileSystemArtifactStore::new(Path::new(store))?;
            let meta = s.upload_artifact(&store, number.parse()?, Path::new(file))?;
            println!("{}", meta.artifact_id);
        }
        ["artifacts", spec, study, number, store, out] => {
            // Every artifact of trial `number` downloaded into directory `out` as
            // `{id}`; their metadata printed as a JSON list (Optuna's fields).
            let storage = autoglm_tune::Storage::optuna(open(spec)?, study, &[Direction::Minimize])?;
            let mut s = autoglm_tune::Study::minimize(autoglm_tune::Seed(0)).with_storage(storage);
            let store = FileSystemArtifactStore::new(Path::new(store))?;
            let mut list = Vec::new();
            for m in s.artifacts(number.parse()?)? {
                store.download(&m.artifact_id, &Path::new(out).join(&m.artifact_id))?;
                list.push(PyJson::parse(m.to_attr().as_str().expect("a JSON text"))?);
            }
            println!("{}", PyJson::List(list).dumps(Separators::Default));
        }
        _ => return Err("usage: optuna_journal dump|echo|write PATH | append PATH STUDY N | study PATH NAME N SEED | snapshot PATH STUDY DEST | upload PATH STUDY TRIAL STORE FILE | artifacts PATH STUDY TRIAL STORE OUT".into()),
    }
    Ok(())
}
