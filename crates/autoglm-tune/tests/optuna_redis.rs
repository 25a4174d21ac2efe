//! Optuna's journal on a Redis server (feature `redis`, on in the workspace through
//! `autoglm-cli`): a `redis-server` from the system (`apt-get install
//! redis-server`) is started on a free loopback port for each test. Without one on
//! `PATH` the tests print `SKIPPED` and pass, unless `AUTOGLM_REQUIRE_REDIS` is set
//! (CI sets it).
#![cfg(feature = "redis")]

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use autoglm_tune::optuna::pyjson::PyJson;
use autoglm_tune::optuna::redis::JournalRedis;
use autoglm_tune::optuna::{Backend, OptunaJournal};
use autoglm_tune::{Direction, Distribution, ParamValue, TrialState};

struct Server {
    child: Child,
    url: String,
    port: u16,
    dir: tempfile::TempDir,
}

/// A redis-server on `port` keeping its append-only file in `dir`, every write
/// fsynced before it is acknowledged.
fn spawn_redis(port: u16, dir: &std::path::Path) -> Child {
    Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .args(["--appendonly", "yes", "--appendfsync", "always"])
        .current_dir(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is needed for this test (apt-get install redis-server)")
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether a `redis-server` can be started here (a missing one fails the test
/// when `AUTOGLM_REQUIRE_REDIS` is set).
fn have_redis(test: &str) -> bool {
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("AUTOGLM_REQUIRE_REDIS").is_none(),
            "redis-server is needed (apt-get install redis-server)"
        );
        eprintln!("SKIPPED {test}: no redis-server on PATH");
    }
    found
}

fn server() -> Server {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let child = spawn_redis(port, dir.path());
    let url = format!("redis://127.0.0.1:{port}/0");
    let t = Instant::now();
    while JournalRedis::open(&url, "probe").is_err() {
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "redis-server did not start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    Server {
        child,
        url,
        port,
        dir,
    }
}

fn journal(url: &str, prefix: &str) -> OptunaJournal {
    OptunaJournal::with_backend(Box::new(JournalRedis::open(url, prefix).unwrap())).unwrap()
}

#[test]
fn two_workers_share_a_study_and_a_retried_append_is_written_once() {
    if !have_redis("two_workers_share_a_study_and_a_retried_append_is_written_once") {
        return;
    }
    let s = server();
    let mut a = journal(&s.url, "");
    let mut b = journal(&s.url, "");
    let study = a.create_study("shared", &[Direction::Minimize]).unwrap();
    let x = Distribution::float(0.0, 1.0);
    for i in 0..5 {
        let w = if i % 2 == 0 { &mut a } else { &mut b };
        w.sync().unwrap();
        let t = w.create_trial(study).unwrap();
        w.set_param(t, "x", &x, &ParamValue::Float(f64::from(i) / 10.0))
            .unwrap();
        w.set_intermediate(t, 0, f64::NAN).unwrap();
        w.set_state_values(t, TrialState::Complete, Some(&[f64::from(i)]))
            .unwrap();
    }
    a.sync().unwrap();
    b.sync().unwrap();
    let trials = |j: &OptunaJournal| {
        j.replay()
            .study(study)
            .unwrap()
            .trials
            .iter()
            .map(|&t| j.replay().trial(t).unwrap().values.clone())
            .collect::<Vec<_>>()
    };
    assert_eq!(trials(&a), trials(&b));
    assert_eq!(trials(&a).len(), 5);
    // Another prefix is another journal.
    assert!(journal(&s.url, "other").replay().studies().next().is_none());
    // The same operation id twice: one line.
    let mut r = JournalRedis::open(&s.url, "").unwrap();
    let log =
        PyJson::parse(r#"{"op_code":2,"worker_id":"w","study_id":0,"user_attr":{"k":1}}"#).unwrap();
    let n1 = r.append_once(&log, "op-1").unwrap();
    let n2 = r.append_once(&log, "op-1").unwrap();
    assert_eq!(n1, n2);
    let (logs, bad) = r.read_logs(n1).unwrap();
    assert_eq!((logs.len(), bad), (1, None));
}

#[test]
fn a_server_restarted_mid_run_loses_nothing_acknowledged() {
    if !have_redis("a_server_restarted_mid_run_loses_nothing_acknowledged") {
        return;
    }
    let mut s = server();
    let mut j = journal(&s.url, "");
    let study = j.create_study("s", &[Direction::Maximize]).unwrap();
    let t = j.create_trial(study).unwrap();
    j.set_intermediate(t, 0, 1.0).unwrap();
    // Killed: with appendfsync always every acknowledged write is on disk.
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    let (port, dir) = (s.port, s.dir.path().to_owned());
    let restart = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(700));
        spawn_redis(port, &dir)
    });
    // This write waits for the server and goes through once it is back.
    j.set_intermediate(t, 1, 2.0).unwrap();
    s.child = restart.join().unwrap();
    j.set_state_values(t, TrialState::Complete, Some(&[2.0]))
        .unwrap();
    let fresh = journal(&s.url, "");
    let got = fresh.replay().trial(t).unwrap();
    assert_eq!(got.intermediate.len(), 2);
    assert_eq!(got.values, Some(vec![2.0]));
    assert_eq!(fresh.replay().log_number_read, j.replay().log_number_read);
}

const GOAL: usize = 18;

fn shared_study(url: &str, seed: u64) -> autoglm_tune::Study {
    let storage =
        autoglm_tune::Storage::optuna(journal(url, "faults"), "faults", &[Direction::Minimize])
            .unwrap();
    let mut hb = autoglm_tune::Heartbeat::new(Duration::from_secs(1));
    hb.grace = Duration::from_secs(4);
    autoglm_tune::Study::new(&[Direction::Minimize], autoglm_tune::Seed(seed))
        .with_storage(storage)
        .with_heartbeat(hb)
}

/// A worker of `workers_ride_out_a_redis_restart` (this binary run again; does
/// nothing unless `OPTUNA_REDIS_WORKER` names a server).
#[test]
fn redis_worker() {
    let Ok(url) = std::env::var("OPTUNA_REDIS_WORKER") else {
        return;
    };
    let seed: u64 = std::env::var("OPTUNA_REDIS_SEED").unwrap().parse().unwrap();
    let mut s = shared_study(&url, seed);
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
        let x = t.suggest_float("x", -1.0, 1.0, false).unwrap();
        std::thread::sleep(Duration::from_millis(300));
        if s.tell(n, x).is_ok() {
            println!("told {n}");
        }
    }
}

#[test]
fn workers_ride_out_a_redis_restart_and_nothing_acknowledged_is_lost() {
    if std::env::var("OPTUNA_REDIS_WORKER").is_ok()
        || !have_redis("workers_ride_out_a_redis_restart_and_nothing_acknowledged_is_lost")
    {
        return;
    }
    let mut s = server();
    drop(shared_study(&s.url, 0));
    let workers: Vec<Child> = (0..3)
        .map(|w| {
            Command::new(std::env::current_exe().unwrap())
                .args([
                    "--exact",
                    "redis_worker",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env("OPTUNA_REDIS_WORKER", &s.url)
                .env("OPTUNA_REDIS_SEED", w.to_string())
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(800));
    let mut workers = workers;
    assert!(
        workers.iter_mut().all(|w| w.try_wait().unwrap().is_none()),
        "the run ended before the server was killed"
    );
    // SIGKILL the server mid-run; bring it back on the same port and files.
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(1000));
    s.child = spawn_redis(s.port, s.dir.path());
    let mut told: Vec<u64> = Vec::new();
    for w in workers {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success(), "a worker failed");
        told.extend(
            String::from_utf8(out.stdout)
                .unwrap()
                .lines()
                .filter_map(|l| l.strip_prefix("told ").map(|n| n.parse::<u64>().unwrap())),
        );
    }
    let j = journal(&s.url, "faults");
    let r = j.replay();
    let study = r.study_by_name("faults").unwrap();
    let trials: Vec<_> = study
        .trials
        .iter()
        .map(|&id| r.trial(id).unwrap())
        .collect();
    let complete: Vec<u64> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .map(|t| t.number)
        .collect();
    assert!(complete.len() >= GOAL);
    // Every acknowledged completion is in the journal, once.
    let mut sorted = told.clone();
    sorted.sort_unstable();
    sorted.dedup();
    assert_eq!(sorted.len(), told.len(), "a trial was told twice");
    assert!(
        told.iter().all(|n| complete.contains(n)),
        "{told:?} vs {complete:?}"
    );
    assert!(trials.iter().all(|t| t.state != TrialState::Running));
}
