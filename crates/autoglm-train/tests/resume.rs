//! An embedder's run (this crate alone, no CLI) killed for real after a checkpoint
//! and resumed from its directory: the loss curve and the final weights equal an
//! uninterrupted run's bit for bit.
//!
//! The killed runs are this test binary started again with [`CHILD`] set: the child
//! trains in the given directory and, after the given step (its loss line and any due
//! checkpoint written), says so on stdout and waits to be killed (SIGKILL on Unix).

use std::io::{BufRead, BufReader};
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use autoglm_train::{
    checkpoints, read_loss_log, Control, Dataset, RunOptions, Schedule, TrainConfig, TrainRun,
};

/// `DIR|STEP`: train in `DIR`, wait to be killed after step `STEP`.
const CHILD: &str = "AUTOGLM_TRAIN_RESUME_CHILD";

const TEST: &str = "killed_run_resumes_with_the_same_loss_curve_and_weights";

mod common;

fn model() -> PathBuf {
    common::fixture("glm_gqa_bias")
}

/// 10 examples of 6–13 tokens, every other one with a masked prompt.
fn data() -> Dataset {
    common::dataset(10, 320, 12345)
}

fn config() -> TrainConfig {
    TrainConfig {
        steps: 20,
        batch_size: 3,
        grad_accum: 2,
        lr: 3e-3,
        schedule: Schedule::Cosine,
        warmup_steps: 2,
        shuffle: true,
        seed: 7,
        threads: 1,
        ..TrainConfig::default()
    }
}

/// Checkpoints every 4 steps, the last two kept.
fn options(resume: bool) -> RunOptions {
    RunOptions {
        save_every: NonZeroU64::new(4),
        keep_last: NonZeroUsize::new(2),
        resume,
        copy_files_from: Some(model()),
    }
}

fn open(dir: &Path, resume: bool) -> TrainRun {
    TrainRun::start_or_resume(dir, &model(), config(), options(resume)).unwrap()
}

/// The child: trains in `DIR` and waits to be killed after step `STEP`.
fn child(spec: &str) -> ! {
    let (dir, step) = spec.split_once('|').expect("DIR|STEP");
    let kill_at: u64 = step.parse().expect("a step");
    let mut run = open(Path::new(dir), true);
    println!("resumed {}", run.resumed_from().map_or(0, |c| c.step));
    run.fit(&data(), |_, r| {
        if r.step == kill_at {
            println!("waiting {}", r.step);
            loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        Ok(Control::Continue)
    })
    .unwrap();
    panic!("the run ended before step {kill_at}");
}

/// Runs a child in `dir` until it has done step `kill_at`, then kills it; returns the
/// step it resumed from.
fn train_and_kill(dir: &Path, kill_at: u64) -> u64 {
    let mut c = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST, "--nocapture", "--test-threads=1"])
        .env(CHILD, format!("{}|{kill_at}", dir.display()))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut resumed = None;
    for line in BufReader::new(c.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        // The harness's "test NAME ... " may start the line.
        if let Some((_, s)) = line.split_once("resumed ") {
            resumed = Some(s.parse().unwrap());
        }
        if line.ends_with(&format!("waiting {kill_at}")) {
            break;
        }
    }
    c.kill().unwrap();
    let status = c.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            status.signal(),
            Some(9),
            "the child was not killed: {status}"
        );
    }
    assert!(!status.success());
    resumed.expect("the child did not start its run")
}

fn steps(dir: &Path) -> Vec<u64> {
    checkpoints(dir).unwrap().iter().map(|c| c.step).collect()
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn killed_run_resumes_with_the_same_loss_curve_and_weights() {
    if let Ok(spec) = std::env::var(CHILD) {
        child(&spec);
    }
    let tmp = tempfile::tempdir().unwrap();
    let data = data();

    // The uninterrupted run.
    let full = tmp.path().join("full");
    let mut run = open(&full, true);
    assert!(run.resumed_from().is_none());
    let mut curve = Vec::new();
    let last = run
        .fit(&data, |_, r| {
            curve.push(r.loss);
            Ok(Control::Continue)
        })
        .unwrap();
    assert_eq!(last.map(|r| r.step), Some(20));
    let want = read_loss_log(&full.join("losses.jsonl")).unwrap();
    assert_eq!(want.len(), 20);
    assert_eq!(want.iter().map(|r| r.loss).collect::<Vec<_>>(), curve);
    // Every 4 steps but the last, the newest two kept.
    assert_eq!(steps(&full), [12, 16]);
    assert!(full.join("tokenizer.json").is_file());

    // Killed right after checkpoint 8 was written.
    let part = tmp.path().join("part");
    assert_eq!(train_and_kill(&part, 8), 0);
    assert_eq!(read_loss_log(&part.join("losses.jsonl")).unwrap().len(), 8);
    assert_eq!(steps(&part), [4, 8]);
    assert!(!part.join("model.safetensors").exists());
    // Resumed from it in a fresh process, killed two steps after checkpoint 12.
    assert_eq!(train_and_kill(&part, 14), 8);
    assert_eq!(read_loss_log(&part.join("losses.jsonl")).unwrap().len(), 14);
    assert_eq!(steps(&part), [8, 12]);
    // What a kill during a save leaves, a half-written checkpoint of another writer
    // and a loss line torn by the kill: all passed over.
    std::fs::create_dir(part.join(".checkpoint-16.tmp")).unwrap();
    std::fs::copy(
        part.join("checkpoint-12/config.json"),
        part.join(".checkpoint-16.tmp/config.json"),
    )
    .unwrap();
    std::fs::create_dir(part.join("checkpoint-15")).unwrap();
    std::fs::copy(
        part.join("checkpoint-12/model.safetensors"),
        part.join("checkpoint-15/model.safetensors"),
    )
    .unwrap();
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .open(part.join("losses.jsonl"))
        .unwrap();
    std::io::Write::write_all(&mut log, b"{\"step\":15,\"lo").unwrap();
    drop(log);

    // Resumed again, in this process, to the end.
    let mut run = open(&part, true);
    let from = run.resumed_from().unwrap();
    assert_eq!(
        (from.step, from.path.clone()),
        (12, part.join("checkpoint-12"))
    );
    assert!(!part.join(".checkpoint-16.tmp").exists());
    assert_eq!(read_loss_log(&run.loss_log()).unwrap().len(), 12);
    run.fit(&data, |_, _| Ok(Control::Continue)).unwrap();
    assert_eq!(run.trainer().steps_done(), 20);

    // The same curve, bit for bit: the file's text and the f64 values.
    assert_eq!(
        read(part.join("losses.jsonl")),
        read(full.join("losses.jsonl")),
        "the resumed run's losses.jsonl differs"
    );
    let got = read_loss_log(&part.join("losses.jsonl")).unwrap();
    let bits = |v: &[autoglm_train::LossRecord]| -> Vec<(u64, u64, u64)> {
        v.iter()
            .map(|r| (r.step, r.loss.to_bits(), r.lr.to_bits()))
            .collect()
    };
    assert_eq!(bits(&got), bits(&want));
    // The same final weights and the same last checkpoint (optimizer state included).
    for f in ["model.safetensors", "config.json", "tokenizer.json"] {
        assert!(read(part.join(f)) == read(full.join(f)), "{f} differs");
    }
    assert_eq!(steps(&part), [12, 16]);
    for f in [
        "model.safetensors",
        "optimizer.safetensors",
        "trainer_state.json",
    ] {
        let f = format!("checkpoint-16/{f}");
        assert!(read(part.join(&f)) == read(full.join(&f)), "{f} differs");
    }

    // Not resuming starts over: the loss log emptied, the old checkpoints gone.
    let run = open(&part, false);
    assert!(run.resumed_from().is_none());
    assert_eq!(run.trainer().steps_done(), 0);
    assert!(read_loss_log(&run.loss_log()).unwrap().is_empty());
    assert_eq!(steps(&part), Vec::<u64>::new());
}
