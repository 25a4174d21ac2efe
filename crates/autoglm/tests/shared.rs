//! `autoglm run` processes sharing one study (`search.storage`): two workers on
//! an Optuna journal file with an artifact store split the trial budget, one of
//! them finishes; a worker with other settings is refused; `finish` works from a
//! process that ran no trial, through the artifact store.

use std::path::Path;

use autoglm::{AutoTrainer, Event, Summary, Task};
use autoglm_tune::optuna::OptunaJournal;
use autoglm_tune::{Storage, TrialState};

fn task(dir: &Path, storage: &str, trials: usize, output: &str) -> Task {
    let yaml = format!(
        "name: shared
data: {{input: meaning, target: text, train: data/train.jsonl, dev: data/dev.jsonl, test: {{file: data/test.jsonl}}}}
cleaning: [{{whitespace: collapse}}, {{dedup: pair}}]
tokenizer: {{vocab_size: 400}}
model: {{layers: 1, hidden: [32, 64], heads: 2, kv_heads: 1, mlp_ratio: 2.0}}
training: {{lr: {{low: 2.0e-3, high: 8.0e-3, log: true}}, batch_size: 16, epochs: 1.0}}
search: {{trials: {trials}, evaluations: 2, threads: 1, pruner: none, decoding: {{max_new_tokens: 40}},
          storage: '{storage}', artifacts: artifacts, heartbeat: {{interval: 1, grace: 4}}}}
output: {output}
"
    );
    Task::from_yaml_str(&yaml, dir).unwrap()
}

/// Runs a worker's search; its summary and the trials it started.
fn worker(dir: &Path, storage: &str, output: &str) -> (Summary, Vec<u64>, AutoTrainer) {
    let mut at = AutoTrainer::new(task(dir, storage, 4, output)).unwrap();
    let mut started = Vec::new();
    let s = at
        .search(|e| {
            if let Event::Start { number, .. } = e {
                started.push(*number);
            }
        })
        .unwrap();
    (s, started, at)
}

#[test]
fn two_workers_share_a_study_in_a_file_and_one_finishes() {
    let dir = tempfile::tempdir().unwrap();
    two_workers(dir.path(), "study.log");
}

/// The same through a redis-server of the test's own (with the `redis` feature,
/// on in the workspace; skipped without `redis-server` on `PATH` unless
/// `AUTOGLM_REQUIRE_REDIS` is set, as CI sets it).
#[cfg(feature = "redis")]
#[test]
fn two_workers_share_a_study_on_redis_and_one_finishes() {
    let found = std::process::Command::new("redis-server")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("AUTOGLM_REQUIRE_REDIS").is_none(),
            "redis-server is needed (apt-get install redis-server)"
        );
        eprintln!("SKIPPED: no redis-server on PATH");
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let mut server = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let url = format!("redis://127.0.0.1:{port}/0");
    two_workers(dir.path(), &url);
    let _ = server.kill();
    let _ = server.wait();
}

/// Two workers on `storage` (with an artifact store), then the checks.
fn two_workers(d: &Path, storage: &str) {
    autoglm::quickstart::write_corpus(&d.join("data"), 400, 12, 10, 5).unwrap();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| worker(d, storage, "a"));
        let b = s.spawn(|| worker(d, storage, "b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    let (mut sa, ta, at_a) = a;
    let (sb, tb, at_b) = b;
    // Each ran trials; together the budget (a race between two asks can add one).
    assert!(!ta.is_empty() && !tb.is_empty(), "{ta:?} {tb:?}");
    let mut all: Vec<u64> = ta.iter().chain(&tb).copied().collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), ta.len() + tb.len(), "no trial ran twice");
    assert!((4..=5).contains(&all.len()), "{all:?}");
    assert_eq!(sa.complete, sb.complete);
    assert!(sa.complete >= 4 && sa.failed == 0, "{sa:?}");
    // Exactly one finishes, and the other names it.
    let (fin, _other) = match (&sa.finished_by, &sb.finished_by) {
        (None, Some(who)) => {
            assert!(who.contains("output") && who.contains("/a"), "{who}");
            (&at_a, &at_b)
        }
        (Some(who), None) => {
            assert!(who.contains("output") && who.contains("/b"), "{who}");
            (&at_b, &at_a)
        }
        x => panic!("exactly one process finishes: {x:?}"),
    };
    let best = sa.best.take().unwrap().0;
    // The finisher holds the best model (fetched from the artifact store when the
    // other process ran it) and the study as it ended.
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fin.output_dir().join("best/trial.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["number"], best);
    let snap = Storage::read_lenient(&fin.output_dir().join("study.jsonl")).unwrap();
    assert!(snap.warnings().is_empty(), "{:?}", snap.warnings());
    assert_eq!(snap.trials().len(), all.len());
    assert!(snap
        .trials()
        .iter()
        .all(|t| t.state == TrialState::Complete && t.user_attrs.contains_key("outcome")));
    // Every trial names its process; the best has its model in the store.
    let spec = match storage.contains("://") {
        true => storage.to_owned(),
        false => d.join(storage).display().to_string(),
    };
    let journal = OptunaJournal::open_spec(&spec).unwrap();
    let r = journal.replay();
    let study = r.study_by_name("shared").unwrap();
    let workers: std::collections::BTreeSet<String> = study
        .trials
        .iter()
        .map(|&id| {
            r.trial(id).unwrap().system_attrs["autoglm:worker"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(workers.len(), 2);
    let best_attrs = &r.trial(study.trials[best as usize]).unwrap().system_attrs;
    let files: Vec<String> = best_attrs
        .iter()
        .filter(|(k, _)| k.starts_with("artifacts:"))
        .map(|(_, v)| {
            autoglm_tune::optuna::artifacts::ArtifactMeta::from_attr(v)
                .unwrap()
                .filename
        })
        .collect();
    for f in ["config.json", "model.safetensors", "tokenizer.json"] {
        assert!(files.iter().any(|x| x == f), "{f} in {files:?}");
    }
    // The finisher evaluates and exports as after a search of its own.
    let e = fin.evaluate().unwrap();
    assert!(e.test.bleu > 0.0, "{e:?}");
    fin.export(&d.join("model")).unwrap();
    // Any process can finish (`--finish`): one that ran no trial takes the model
    // from the artifact store, the same bytes.
    let mut again = AutoTrainer::new(task(d, storage, 4, "fresh")).unwrap();
    let s = again.finish().unwrap();
    assert_eq!(s.best.unwrap().0, best);
    for f in [
        "trial.json",
        "model.safetensors",
        "config.json",
        "tokenizer.json",
    ] {
        assert_eq!(
            std::fs::read(again.output_dir().join("best").join(f)).unwrap(),
            std::fs::read(fin.output_dir().join("best").join(f)).unwrap(),
            "{f}"
        );
    }
    let e2 = again.evaluate().unwrap();
    assert_eq!(e2.test, e.test, "the same model scores the same");
    // A process with other settings is refused, naming the difference.
    let mut odd = AutoTrainer::new(task(d, storage, 5, "c")).unwrap();
    let err = odd.search(|_| {}).unwrap_err().to_string();
    assert!(
        err.contains("search.trials: 5 here, 4 in the study"),
        "{err}"
    );
}

/// Multi-fidelity search shared by two processes (`search.hyperband` with
/// `search.storage`): one bracket of Hyperband over both, each trial's rungs all run
/// by the process that started it (its checkpoint is there), every trial finished,
/// one process finishes with the study's best model.
#[test]
fn two_workers_share_hyperband_brackets() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    autoglm::quickstart::write_corpus(&d.join("data"), 150, 6, 4, 11).unwrap();
    let task = |output: &str| {
        let yaml = format!(
            "name: shared-hb
data: {{input: meaning, target: text, train: data/train.jsonl, dev: data/dev.jsonl, test: {{file: data/test.jsonl}}}}
tokenizer: {{vocab_size: 300}}
model: {{layers: {{low: 1, high: 2}}, hidden: [16, 32], heads: 2, kv_heads: 1, mlp_ratio: 2.0}}
training: {{lr: {{low: 1.0e-3, high: 1.0e-2, log: true}}, batch_size: 4, epochs: 7.2, warmup: 0.2}}
search: {{seed: 3, threads: 1, trials: 50, decoding: {{max_new_tokens: 8, num_beams: 1}},
          hyperband: {{min_epochs: 0.8, eta: 3, brackets: 1}},
          storage: study.log, artifacts: artifacts, heartbeat: {{interval: 1, grace: 4}}}}
output: {output}
"
        );
        Task::from_yaml_str(&yaml, d).unwrap()
    };
    let run = |output: &str| {
        let mut at = AutoTrainer::new(task(output)).unwrap();
        let mut rungs = Vec::new();
        let mut waited = Vec::new();
        let s = at
            .search(|e| match e {
                Event::Start {
                    number,
                    rung: Some(r),
                    ..
                } => rungs.push((*number, *r)),
                Event::Waiting { trials } => waited.extend(trials.iter().copied()),
                _ => {}
            })
            .unwrap();
        ((s, rungs, at), waited)
    };
    let (((sa, ra, at_a), wa), ((sb, rb, at_b), wb)) = std::thread::scope(|s| {
        let a = s.spawn(|| run("a"));
        let b = s.spawn(|| run("b"));
        (a.join().unwrap(), b.join().unwrap())
    });
    assert!(!ra.is_empty() && !rb.is_empty(), "{ra:?} {rb:?}");
    let of =
        |r: &[(u64, f64)]| -> std::collections::BTreeSet<u64> { r.iter().map(|x| x.0).collect() };
    assert!(
        of(&ra).is_disjoint(&of(&rb)),
        "a trial ran rungs in both processes: {ra:?} {rb:?}"
    );
    // One bracket of η = 3 from 0.8 to 7.2: 9 trials, 3 promoted, 1 at the top
    // (two asks at the same moment can add a tenth).
    let top = ra.iter().chain(&rb).filter(|r| r.1 > 7.0).count();
    let mid = ra
        .iter()
        .chain(&rb)
        .filter(|r| r.1 > 2.0 && r.1 < 3.0)
        .count();
    assert_eq!((mid, top), (3, 1), "{ra:?} {rb:?}");
    // The process without the top rung has nothing to run meanwhile: it waits for
    // it, and says so.
    let (top_trial, idle) = match ra.iter().find(|r| r.1 > 7.0) {
        Some(r) => (r.0, &wb),
        None => (rb.iter().find(|r| r.1 > 7.0).unwrap().0, &wa),
    };
    assert!(idle.contains(&top_trial), "{wa:?} {wb:?}");
    let journal = OptunaJournal::open(&d.join("study.log")).unwrap();
    let r = journal.replay();
    let study = r.study_by_name("shared-hb").unwrap();
    let trials: Vec<_> = study
        .trials
        .iter()
        .map(|&id| r.trial(id).unwrap())
        .collect();
    assert!((9..=10).contains(&trials.len()), "{} trials", trials.len());
    assert!(trials.iter().all(|t| t.state.is_finished()));
    assert_eq!(
        trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .count(),
        1
    );
    let (fin, best) = match (&sa.finished_by, &sb.finished_by) {
        (None, Some(_)) => (&at_a, sa.best.unwrap().0),
        (Some(_), None) => (&at_b, sb.best.unwrap().0),
        x => panic!("exactly one process finishes: {x:?}"),
    };
    let saved: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(fin.output_dir().join("best/trial.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(saved["number"], best);
    assert_eq!(trials[best as usize].state, TrialState::Complete);
}
