//! A study kept in an Optuna journal file: resumed, shared by several workers at
//! once, enqueued trials claimed once.

use autoglm_tune::{Direction, Seed, Storage, Study, TpeSampler, TrialState};

fn objective(t: &mut autoglm_tune::Trial<'_>) -> Result<f64, autoglm_tune::TrialError> {
    let x = t.suggest_float("x", -5.0, 5.0, false)?;
    let n = t.suggest_int("n", 1, 8, false)?;
    let c = t.suggest_categorical("c", ["a", "b"])?;
    t.report(0, x * x)?;
    Ok(x * x
        + n as f64
        + if c == autoglm_tune::ParamValue::Str("a".into()) {
            0.0
        } else {
            1.0
        })
}

fn study(path: &std::path::Path, seed: u64) -> Study {
    let storage = Storage::optuna_file(path, "shared", &[Direction::Minimize]).unwrap();
    Study::new(&[Direction::Minimize], Seed(seed))
        .with_sampler(TpeSampler::new(Seed(seed)))
        .with_storage(storage)
}

#[test]
fn a_study_in_an_optuna_journal_resumes_where_it_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    let mut s = study(&path, 1);
    s.enqueue([("x".to_owned(), autoglm_tune::ParamValue::Float(0.5))].into())
        .unwrap();
    s.optimize(6, objective).unwrap();
    let before = s.trials().unwrap();
    assert_eq!(before.len(), 6);
    assert_eq!(before[0].params["x"], autoglm_tune::ParamValue::Float(0.5));
    assert!(before.iter().all(|t| t.state == TrialState::Complete));
    let mut again = study(&path, 1);
    assert_eq!(again.trials().unwrap(), before);
    again.optimize(2, objective).unwrap();
    assert_eq!(again.trials().unwrap().len(), 8);
    // Other directions for the same name are refused.
    assert!(Storage::optuna_file(&path, "shared", &[Direction::Maximize]).is_err());
}

#[test]
fn workers_share_one_study_and_claim_each_enqueued_trial_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    let mut first = study(&path, 0);
    for i in 0..4 {
        first
            .enqueue(
                [(
                    "x".to_owned(),
                    autoglm_tune::ParamValue::Float(f64::from(i)),
                )]
                .into(),
            )
            .unwrap();
    }
    let workers: Vec<_> = (0..3)
        .map(|w| {
            let path = path.clone();
            std::thread::spawn(move || {
                let mut s = study(&path, 10 + w);
                s.optimize(8, objective).unwrap();
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let trials = first.trials().unwrap();
    assert_eq!(trials.len(), 4 + 3 * 8 - 4);
    assert!(trials.iter().all(|t| t.state == TrialState::Complete));
    let numbers: Vec<u64> = trials.iter().map(|t| t.number).collect();
    assert_eq!(numbers, (0..trials.len() as u64).collect::<Vec<_>>());
    for (i, t) in trials.iter().take(4).enumerate() {
        assert_eq!(t.params["x"], autoglm_tune::ParamValue::Float(i as f64));
    }
}

/// A journal in this crate's earlier JSONL format (the quickstart's study of
/// 2026-12-07, as `autoglm run` wrote it) still loads.
#[test]
fn an_earlier_jsonl_journal_still_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/legacy-quickstart-study.jsonl");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("study.jsonl");
    std::fs::copy(&path, &copy).unwrap();
    let old = Storage::journal(&copy).unwrap();
    let trials = old.trials();
    assert_eq!(trials.len(), 7);
    assert_eq!(
        trials
            .iter()
            .filter(|t| t.state == TrialState::Complete)
            .count(),
        6
    );
    assert_eq!(trials[0].value(), Some(49.854_993_022_857_364));
    assert_eq!(trials[0].params.len(), 9);
    assert!(trials.iter().all(|t| !t.intermediate.is_empty()));
    assert_eq!(Storage::read_lenient(&copy).unwrap().trials(), trials);
}

/// A running trial's joint proposal is published at ask time, as Optuna's TPE
/// publishes it (`tpe:relative_params:0`, external values), so that other workers'
/// constant liars see it before its parameters are set one by one.
#[test]
fn a_running_trials_proposal_is_published_for_other_workers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("journal.log");
    let mut a = study(&path, 1);
    a.optimize(12, objective).unwrap();
    let number = a.ask().unwrap().number();
    let j = autoglm_tune::optuna::OptunaJournal::open(&path).unwrap();
    let r = j.replay();
    let id = r.study_by_name("shared").unwrap().trials[number as usize];
    let t = r.trial(id).unwrap();
    assert_eq!(t.state, TrialState::Running);
    assert!(t.params.is_empty());
    let text = t.system_attrs["tpe:relative_params:0"].as_str().unwrap();
    let proposal = autoglm_tune::optuna::pyjson::PyJson::parse(text).unwrap();
    let keys: Vec<&str> = proposal
        .as_dict()
        .unwrap()
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(keys, ["c", "n", "x"]);
}
