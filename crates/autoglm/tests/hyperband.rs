//! The multi-fidelity search of `autoglm run` (`search.hyperband`): rungs recorded in
//! the journal, promoted trials continued from their checkpoints, a SIGKILL during a
//! rung loses and repeats no finished rung and ends with the choice of an
//! uninterrupted run; impossible budgets are errors that say what fits.

use std::path::{Path, PathBuf};
use std::process::Command;

use autoglm::{AutoTrainer, Event, Summary};
use autoglm_tune::{FrozenTrial, Storage, TrialState};

/// A small task: 150 training rows, a structure and learning-rate space, Hyperband
/// over 0.8 → 7.2 budget units (epochs of the middle structure's compute) (η = 3: 9 trials, 3 promoted, 1 to the top), one bracket.
fn write_task(dir: &Path, extra: &str) -> PathBuf {
    autoglm::quickstart::write_corpus(&dir.join("data"), 150, 6, 4, 11).unwrap();
    let path = dir.join("task.yaml");
    std::fs::write(
        &path,
        format!(
            "name: hb
data: {{input: meaning, target: text, train: data/train.jsonl, dev: data/dev.jsonl, test: {{file: data/test.jsonl}}}}
tokenizer: {{vocab_size: 300}}
model: {{layers: {{low: 1, high: 2}}, hidden: [16, 32], heads: 2, kv_heads: 1, mlp_ratio: 2.0}}
training: {{lr: {{low: 1.0e-3, high: 1.0e-2, log: true}}, batch_size: 4, epochs: 7.2, warmup: 0.2}}
search: {{seed: 3, threads: 1, trials: 50, decoding: {{max_new_tokens: 8, num_beams: 1}}, {extra}}}
"
        ),
    )
    .unwrap();
    path
}

const HB: &str = "hyperband: {min_epochs: 0.8, eta: 3, brackets: 1}";

fn search(path: &Path, events: &mut Vec<Event>) -> autoglm::Result<Summary> {
    AutoTrainer::from_yaml(path)?.search(|e| {
        if !matches!(e, Event::Step { .. }) {
            events.push(e.clone());
        }
    })
}

fn trials(dir: &Path) -> Vec<FrozenTrial> {
    Storage::journal(&dir.join("runs/hb/study.jsonl"))
        .unwrap()
        .trials()
        .to_vec()
}

#[test]
fn child_entry_point() {
    if let Ok(path) = std::env::var("AUTOGLM_HB_CHILD") {
        search(Path::new(&path), &mut Vec::new()).unwrap();
    }
}

#[test]
fn rungs_are_journaled_and_a_killed_search_resumes_to_the_same_choice() {
    // Uninterrupted.
    let a = tempfile::tempdir().unwrap();
    let mut events = Vec::new();
    let straight = search(&write_task(a.path(), HB), &mut events).unwrap();
    let rungs = |ev: &[Event]| {
        ev.iter()
            .filter(|e| matches!(e, Event::Rung { .. }))
            .count()
    };
    assert_eq!(rungs(&events), 9 + 3 + 1);
    assert_eq!(straight.stop, autoglm_tune::StopReason::IterationBudget);
    assert_eq!((straight.complete, straight.pruned), (1, 8), "{straight:?}");
    let ta = trials(a.path());
    let budgets: Vec<Vec<u64>> = ta
        .iter()
        .map(|t| t.intermediate.keys().copied().collect())
        .collect();
    assert_eq!(
        budgets.iter().filter(|b| *b == &[800]).count(),
        6,
        "{budgets:?}"
    );
    assert_eq!(budgets.iter().filter(|b| *b == &[800, 2400]).count(), 2);
    assert_eq!(
        budgets.iter().filter(|b| *b == &[800, 2400, 7200]).count(),
        1
    );
    // The top rung's score is the dev metric; the lower ones minus the dev loss.
    let top = ta.iter().find(|t| t.state == TrialState::Complete).unwrap();
    assert_eq!(top.value(), Some(top.intermediate[&7200]));
    assert!(top.intermediate[&800] < 0.0 && top.intermediate[&7200] >= 0.0);
    assert_eq!(straight.best.as_ref().unwrap().0, top.number);
    // Finished trials leave no checkpoint behind.
    assert!(
        std::fs::read_dir(a.path().join("runs/hb/trials"))
            .map(|d| d.count())
            .unwrap_or(0)
            == 0
    );

    // Killed by SIGKILL once five rungs are journaled (inside the sixth), then rerun.
    let b = tempfile::tempdir().unwrap();
    let path = write_task(b.path(), HB);
    let journal = b.path().join("runs/hb/study.jsonl");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_entry_point", "--test-threads", "1"])
        .env("AUTOGLM_HB_CHILD", &path)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let reports = || {
        std::fs::read_to_string(&journal)
            .unwrap_or_default()
            .matches(r#""op":"report""#)
            .count()
    };
    let t0 = std::time::Instant::now();
    while reports() < 5 {
        assert!(
            t0.elapsed().as_secs() < 300,
            "the child journaled too little"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = reports();
    assert!(before < 13, "the child finished before the kill");
    let mut events = Vec::new();
    let resumed = search(&path, &mut events).unwrap();
    // Every rung ran exactly once over the two processes.
    assert_eq!(before + rungs(&events), 13);
    let tb = trials(b.path());
    assert_eq!(ta.len(), tb.len());
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x.params, y.params, "trial {}", x.number);
        assert_eq!(x.intermediate, y.intermediate, "trial {}", x.number);
        assert_eq!(x.state, y.state, "trial {}", x.number);
    }
    assert_eq!(resumed.best, straight.best);
    assert_eq!(
        std::fs::read(a.path().join("runs/hb/best/dev_outputs.txt")).unwrap(),
        std::fs::read(b.path().join("runs/hb/best/dev_outputs.txt")).unwrap()
    );
}

#[test]
fn impossible_budgets_say_what_fits() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_task(dir.path(), "hyperband: {min_epochs: 0.1, eta: 3}");
    let e = search(&path, &mut Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("search.hyperband.min_epochs: 0.1 epochs (of the middle structure's compute: the largest structure's) of 150 training rows are 2 steps")
            && e.contains("min_epochs ≥ 0.719 fits"),
        "{e}"
    );
    let path = write_task(
        dir.path(),
        "minutes: 0.001, hyperband: {min_epochs: 0.8, eta: 3}",
    );
    let e = search(&path, &mut Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("search.minutes: 0.001 minutes hold about") && e.contains("give minutes ≥"),
        "{e}"
    );
    let path = write_task(dir.path(), "hyperband: {min_epochs: 9.0, eta: 3}");
    let e = search(&path, &mut Vec::new()).unwrap_err().to_string();
    assert!(e.contains("search.hyperband.min_epochs: 9"), "{e}");
}

/// A second search warm-started from the first one's journal starts with the first
/// one's best configurations, restricted to its own space (here `layers` is fixed,
/// so it is dropped); a missing journal is an error naming it.
#[test]
fn warm_start_enqueues_the_best_earlier_configurations() {
    let a = tempfile::tempdir().unwrap();
    search(&write_task(a.path(), HB), &mut Vec::new()).unwrap();
    let earlier = trials(a.path());
    let mut ranked: Vec<&FrozenTrial> = earlier.iter().collect();
    ranked.sort_by(|x, y| {
        let k = |t: &FrozenTrial| {
            let (b, v) = t.intermediate.iter().next_back().unwrap();
            (*b, *v)
        };
        k(y).0.cmp(&k(x).0).then(k(y).1.total_cmp(&k(x).1))
    });
    let b = tempfile::tempdir().unwrap();
    let journal = a.path().join("runs/hb/study.jsonl");
    let path = write_task(
        b.path(),
        &format!(
            "warm_start: [{}], warm_start_trials: 2, hyperband: {{min_epochs: 0.8, eta: 3, brackets: 1}}",
            journal.display()
        ),
    );
    let text = std::fs::read_to_string(&path)
        .unwrap()
        .replace("layers: {low: 1, high: 2}", "layers: 1");
    std::fs::write(&path, text).unwrap();
    search(&path, &mut Vec::new()).unwrap();
    let now = trials(b.path());
    for (t, e) in now.iter().zip(&ranked).take(2) {
        let mut want = e.params.clone();
        want.remove("layers");
        assert_eq!(t.params, want, "trial {}", t.number);
    }
    let path = write_task(
        b.path(),
        "warm_start: [nowhere.jsonl], hyperband: {min_epochs: 0.7}",
    );
    let e = search(&path, &mut Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("search.warm_start:") && e.contains("nowhere.jsonl: no such journal"),
        "{e}"
    );
}

/// `search.workers: 3` runs a bracket's rungs three at a time: Hyperband's shape is
/// kept, two runs with the same seed propose and score the same trials, the journal
/// keeps the number and a resumed search uses it whatever the task now says.
#[test]
fn workers_run_rungs_side_by_side_and_the_journal_keeps_their_number() {
    let hb = "workers: 3, hyperband: {min_epochs: 0.8, eta: 3, brackets: 1}";
    let run = || {
        let dir = tempfile::tempdir().unwrap();
        let mut events = Vec::new();
        let summary = search(&write_task(dir.path(), hb), &mut events).unwrap();
        (dir, events, summary)
    };
    let (a, events, summary) = run();
    assert!(events.contains(&Event::Workers {
        workers: 3,
        threads: 1,
        resumed: false
    }));
    assert_eq!((summary.complete, summary.pruned), (1, 8), "{summary:?}");
    // Three trials start before the first of them ends.
    let first_end = events
        .iter()
        .position(|e| matches!(e, Event::Rung { .. }))
        .unwrap();
    let starts = events[..first_end]
        .iter()
        .filter(|e| matches!(e, Event::Start { .. }))
        .count();
    assert_eq!(starts, 3, "{events:?}");
    let (b, _, again) = run();
    let (ta, tb) = (trials(a.path()), trials(b.path()));
    assert_eq!(ta.len(), 9);
    for (x, y) in ta.iter().zip(&tb) {
        assert_eq!(x.params, y.params, "trial {}", x.number);
        assert_eq!(x.intermediate, y.intermediate, "trial {}", x.number);
        assert_eq!(x.state, y.state, "trial {}", x.number);
    }
    assert_eq!(summary.best, again.best);
    let journal = Storage::journal(&a.path().join("runs/hb/study.jsonl")).unwrap();
    assert_eq!(journal.study_user_attrs()["workers"], serde_json::json!(3));
    // Resumed with another number in the task: the journal's is used.
    let path = write_task(
        a.path(),
        "workers: 1, hyperband: {min_epochs: 0.8, eta: 3, brackets: 1}",
    );
    let mut events = Vec::new();
    search(&path, &mut events).unwrap();
    assert!(events.contains(&Event::Workers {
        workers: 3,
        threads: 1,
        resumed: true
    }));
    // Side by side needs the multi-fidelity search.
    let path = write_task(a.path(), "workers: 2");
    let e = search(&path, &mut Vec::new()).unwrap_err().to_string();
    assert!(
        e.contains("search.workers: 2 trials side by side need search.hyperband"),
        "{e}"
    );
}
