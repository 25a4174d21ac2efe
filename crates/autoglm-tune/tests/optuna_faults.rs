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
use autoglm_tune::{
    BudgetModel, Direction, Heartbeat, Hyperband, MultiFidelity, Seed, Storage, Study, TpeSampler,
    TrialState,
};

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
fn running(path: &str, study: &str) -> Vec<u64> {
    let j = OptunaJournal::open(path.as_ref()).unwrap();
    let r = j.replay();
    r.study_by_name(study).map_or(Vec::new(), |s| {
        s.trials
            .iter()
            .map(|&id| r.trial(id).unwrap())
            .filter(|t| t.state == TrialState::Running)
            .map(|t| t.number)
            .collect()
    })
}

/// Waits (30 s at most) until `n` trials of `study` run.
fn wait_running(path: &str, study: &str, n: usize) {
    let t0 = Instant::now();
    while running(path, study).len() < n {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "workers did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
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
    wait_running(&path, "faults", 4);
    std::thread::sleep(Duration::from_millis(150));
    let before = running(&path, "faults");
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

/// A multi-fidelity worker (`OPTUNA_MF_JOURNAL`): Hyperband brackets shared with the
/// other workers of the study, four iterations. Prints `rung WORKER TRIAL FROM TO`
/// for each rung it finishes.
#[test]
fn mf_worker() {
    let Ok(path) = std::env::var("OPTUNA_MF_JOURNAL") else {
        return;
    };
    let id = std::env::var("OPTUNA_MF_WORKER").unwrap();
    let storage = Storage::optuna_file(path.as_ref(), "brackets", &[Direction::Minimize]).unwrap();
    let mut hb = Heartbeat::new(Duration::from_secs(1));
    hb.grace = Duration::from_secs(2);
    let mut s = Study::new(&[Direction::Minimize], Seed(id.len() as u64))
        .with_sampler(BudgetModel::new(TpeSampler::new(Seed(7))))
        .with_storage(storage)
        .with_heartbeat(hb);
    let plan = Hyperband::new(1, 9, 3).unwrap();
    let mf = MultiFidelity::new(plan)
        .with_iterations(MF_ITERATIONS)
        .with_owner(id.clone())
        .with_poll(Duration::from_millis(100));
    let report = mf
        .optimize(&mut s, &mut |t: &mut autoglm_tune::Trial<'_>,
                                from: u64,
                                to: u64| {
            let x = t.suggest_float("x", 0.0, 1.0, false)?;
            std::thread::sleep(Duration::from_millis(40 * (to - from)));
            println!("rung {id} {} {from} {to}", t.number());
            Ok((x - 0.3).powi(2) + 1.0 / to as f64)
        })
        .unwrap();
    assert_eq!(report.stop, autoglm_tune::StopReason::IterationBudget);
}

const MF_ITERATIONS: u64 = 6;

fn spawn_mf(path: &str, id: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "mf_worker", "--nocapture", "--test-threads", "1"])
        .env("OPTUNA_MF_JOURNAL", path)
        .env("OPTUNA_MF_WORKER", id)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// `(worker, trial, from, to)` of each rung a worker printed.
fn rungs(child: Child) -> Vec<(String, u64, u64, u64)> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "a worker failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| {
            // The harness's `test mf_worker ... ` may start the first line.
            let f: Vec<&str> = l[l.find("rung ")? + 5..].split(' ').collect();
            Some((
                f[0].to_owned(),
                f[1].parse().unwrap(),
                f[2].parse().unwrap(),
                f[3].parse().unwrap(),
            ))
        })
        .collect()
}

/// Issue 28: the multi-fidelity brackets work across processes. Three workers share
/// Hyperband's brackets; one is SIGKILLed mid-run. Every rung a surviving worker ran
/// was of its own trial and continued it from its previous rung; the journal holds
/// exactly those rungs; every rung promoted the best of the one below, no more than
/// the plan allows; the killed worker's trials were failed and retried (a retry that
/// came after the last bracket filled waits); every bracket finishes.
#[test]
fn workers_share_hyperband_brackets_and_a_gone_workers_trials_are_retried() {
    if std::env::var("OPTUNA_MF_JOURNAL").is_ok() || std::env::var("OPTUNA_FAULT_JOURNAL").is_ok() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log").to_str().unwrap().to_owned();
    drop(Storage::optuna_file(path.as_ref(), "brackets", &[Direction::Minimize]).unwrap());
    let mut workers: Vec<Child> = ["a", "b", "c"]
        .iter()
        .map(|id| spawn_mf(&path, id))
        .collect();
    wait_running(&path, "brackets", 3);
    std::thread::sleep(Duration::from_millis(300));
    let mut killed = workers.remove(0);
    killed.kill().unwrap();
    killed.wait().unwrap();
    let ran: Vec<_> = workers.into_iter().flat_map(rungs).collect();
    let j = OptunaJournal::open(path.as_ref()).unwrap();
    let r = j.replay();
    let s = r.study_by_name("brackets").unwrap();
    let trials: Vec<_> = s.trials.iter().map(|&id| r.trial(id).unwrap()).collect();
    let label = |t: &autoglm_tune::optuna::journal::JournalTrial| {
        let v = &t.user_attrs["hyperband"];
        let k = v.get("iteration").and_then(|k| k.as_i64()).unwrap() as u64;
        (
            k,
            v.get("worker").and_then(|w| w.as_str()).unwrap().to_owned(),
        )
    };
    // Each surviving worker's rungs: its own trials, each continued from its last
    // rung, each rung once.
    let mut seen = std::collections::BTreeSet::new();
    let mut last: std::collections::BTreeMap<u64, u64> = Default::default();
    for (w, n, from, to) in &ran {
        assert_eq!(
            &label(trials[*n as usize]).1,
            w,
            "trial {n} ran on another worker"
        );
        assert!(seen.insert((*n, *to)), "rung {to} of trial {n} ran twice");
        assert_eq!(
            last.get(n).copied().unwrap_or(0),
            *from,
            "trial {n} did not continue"
        );
        last.insert(*n, *to);
    }
    let plan = Hyperband::new(1, 9, 3).unwrap();
    let mut failed = 0;
    let mut rerun = 0;
    for t in &trials {
        assert_ne!(
            t.state,
            TrialState::Running,
            "trial {} left running",
            t.number
        );
        let (_, w) = label(t);
        let steps: Vec<u64> = t.intermediate.keys().map(|&s| s as u64).collect();
        if w != "a" {
            let printed: Vec<u64> = ran
                .iter()
                .filter(|r| r.1 == t.number)
                .map(|r| r.3)
                .collect();
            assert_eq!(steps, printed, "trial {}'s rungs", t.number);
        }
        if t.state == TrialState::Failed {
            failed += 1;
            assert_eq!(w, "a", "trial {} of a live worker failed", t.number);
            let retry = trials
                .iter()
                .find(|u| {
                    u.system_attrs.get("failed_trial").and_then(|v| v.as_i64())
                        == Some(t.number as i64)
                })
                .unwrap_or_else(|| panic!("trial {} was not retried", t.number));
            assert_eq!(retry.params, t.params);
            if retry.state.is_finished() {
                rerun += 1;
            }
        }
    }
    eprintln!(
        "{} trials, {} rungs by the survivors, {failed} failed, {rerun} retries ran",
        trials.len(),
        ran.len()
    );
    assert!(failed > 0, "the killed worker held no trial");
    assert!(
        rerun > 0,
        "no retry of the killed worker's {failed} trials ran"
    );
    // Every bracket: each rung's trials are the best of the rung below, at most as
    // many as the plan's (the first rung may hold one or two more: workers that ask
    // at the same moment both join).
    for k in 0..MF_ITERATIONS {
        let b = plan.bracket(k);
        let members: Vec<_> = trials
            .iter()
            .filter(|t| label(t).0 == k && t.state != TrialState::Waiting)
            .collect();
        assert!(
            members.len() >= b.rungs[0].trials,
            "iteration {k} not filled"
        );
        for i in 1..b.rungs.len() {
            let (lo, hi) = (b.rungs[i - 1].budget, b.rungs[i].budget);
            let mut below: Vec<(f64, u64)> = members
                .iter()
                .filter_map(|t| Some((*t.intermediate.get(&(lo as i64))?, t.number)))
                .collect();
            below.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            let best: Vec<u64> = below.iter().take(b.rungs[i].trials).map(|p| p.1).collect();
            for t in members
                .iter()
                .filter(|t| t.intermediate.contains_key(&(hi as i64)))
            {
                assert!(
                    best.contains(&t.number),
                    "iteration {k}: trial {} promoted",
                    t.number
                );
            }
        }
        // Its top rung completed, unless every trial promoted to it was the killed
        // worker's.
        let top = b.rungs.last().unwrap().budget as i64;
        let below = b
            .rungs
            .len()
            .checked_sub(2)
            .map(|i| b.rungs[i].budget as i64);
        let lost = below.is_some_and(|lo| {
            let mut s: Vec<_> = members
                .iter()
                .filter_map(|t| Some((*t.intermediate.get(&lo)?, t.number, label(t).1)))
                .collect();
            s.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            s.iter()
                .take(b.rungs.last().unwrap().trials)
                .all(|p| p.2 == "a")
        });
        assert!(
            lost || members
                .iter()
                .any(|t| t.state == TrialState::Complete && t.intermediate.contains_key(&top)),
            "iteration {k} has no complete trial"
        );
    }
}
