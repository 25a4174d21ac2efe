//! Workers of one study in an Optuna journal, killed and restarted (issue 28's
//! fault test): every finished trial is kept exactly once, a trial whose worker was
//! SIGKILLed is failed once its heartbeat is older than the grace period and retried
//! with its parameters, and the study completes.
//!
//! The workers are this test binary run again (`worker` below, which does nothing
//! unless `OPTUNA_FAULT_JOURNAL` names a journal).

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use autoglm_tune::optuna::OptunaJournal;
use autoglm_tune::{Direction, Heartbeat, Seed, Storage, Study, TpeSampler, TrialState};

const GOAL: usize = 30;

fn study(path: &str, seed: u64) -> Study {
    let storage = Storage::optuna_file(path.as_ref(), "faults", &[Direction::Minimize]).unwrap();
    // Beats every second; a trial whose last beat is 2 s old has lost its worker.
    let hb = Heartbeat::new(Duration::from_secs(1));
    Study::new(&[Direction::Minimize], Seed(seed))
        .with_sampler(TpeSampler::new(Seed(seed)))
        .with_storage(storage)
        .with_heartbeat(hb)
}

/// A worker: runs trials (each 0.4 s) until the study has `GOAL` complete ones,
/// printing the number of each trial it completes.
#[test]
fn worker() {
    let Ok(path) = std::env::var("OPTUNA_FAULT_JOURNAL") else {
        return;
    };
    let seed: u64 = std::env::var("OPTUNA_FAULT_SEED").unwrap().parse().unwrap();
    let mut s = study(&path, seed);
    loop {
        let done = s
            .trials()
            .unwrap()
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .count();
        if done >= GOAL {
            return;
        }
        let mut t = s.ask().unwrap();
        let n = t.number();
        let x = t.suggest_float("x", -5.0, 5.0, false).unwrap();
        std::thread::sleep(Duration::from_millis(400));
        if s.tell(n, x * x).is_ok() {
            println!("told {n}");
        }
    }
}

fn spawn(path: &str, seed: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "worker", "--nocapture", "--test-threads", "1"])
        .env("OPTUNA_FAULT_JOURNAL", path)
        .env("OPTUNA_FAULT_SEED", seed.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn told(child: Child) -> Vec<u64> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "a worker failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("told ").map(|n| n.parse().unwrap()))
        .collect()
}

/// The trial the worker whose trials are `mine` is running (per the journal), if any.
fn running(path: &str) -> Vec<u64> {
    let j = OptunaJournal::open(path.as_ref()).unwrap();
    let r = j.replay();
    r.study_by_name("faults").map_or(Vec::new(), |s| {
        s.trials
            .iter()
            .map(|&id| r.trial(id).unwrap())
            .filter(|t| t.state == TrialState::Running)
            .map(|t| t.number)
            .collect()
    })
}

#[test]
fn killed_and_restarted_workers_lose_no_finished_trial_and_the_study_completes() {
    if std::env::var("OPTUNA_FAULT_JOURNAL").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log").to_str().unwrap().to_owned();
    // Create the study first so the workers do not race to.
    drop(study(&path, 0));
    let mut workers: Vec<Child> = (0..4).map(|w| spawn(&path, w)).collect();
    // Wait until trials are running, then kill two workers mid-trial.
    let t0 = Instant::now();
    while running(&path).len() < 4 {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "workers did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(150));
    let before = running(&path);
    let mut killed = workers.remove(0);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let mut restarted = workers.remove(0);
    restarted.kill().unwrap();
    restarted.wait().unwrap();
    let orphans_max = before.len();
    workers.push(spawn(&path, 9));
    let mut all: Vec<u64> = workers.into_iter().flat_map(told).collect();
    all.sort_unstable();
    let j = OptunaJournal::open(path.as_ref()).unwrap();
    let r = j.replay();
    let s = r.study_by_name("faults").unwrap();
    let trials: Vec<_> = s.trials.iter().map(|&id| r.trial(id).unwrap()).collect();
    let complete: Vec<u64> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .map(|t| t.number)
        .collect();
    assert!(complete.len() >= GOAL, "{} complete", complete.len());
    // Every trial a surviving worker told is complete, and told once; the killed
    // workers' completions are there too (they are in the journal, not in `all`).
    let mut dedup = all.clone();
    dedup.dedup();
    assert_eq!(dedup, all, "a trial was told twice");
    assert!(all.iter().all(|n| complete.contains(n)));
    // The killed workers' running trials were failed and retried with their
    // parameters, and nothing is left running.
    let failed: Vec<_> = trials
        .iter()
        .filter(|t| t.state == TrialState::Failed)
        .collect();
    assert!(
        !failed.is_empty() && failed.len() <= orphans_max,
        "{} failed trials",
        failed.len()
    );
    for f in &failed {
        let retry = trials
            .iter()
            .find(|t| {
                t.system_attrs.get("failed_trial").and_then(|v| v.as_i64()) == Some(f.number as i64)
            })
            .unwrap_or_else(|| panic!("trial {} was not retried", f.number));
        assert_eq!(retry.params, f.params);
        assert_eq!(retry.state, TrialState::Complete);
    }
    assert!(trials.iter().all(|t| t.state != TrialState::Running));
}
