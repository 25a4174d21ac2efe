//! `autoglm schedule`: DAG scheduling.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use autoglm_sched::{cpop, heft, heft_dup, validate, Dag, Platform, RuntimeModel};
use clap::{Args, ValueEnum};

/// Scheduling algorithms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Algo {
    /// Heterogeneous Earliest Finish Time (upward rank, insertion).
    Heft,
    /// Critical Path On a Processor.
    Cpop,
    /// HEFT with duplication of a task's latest-arriving parent where that finishes it
    /// earlier.
    HeftDup,
}

/// `autoglm schedule`.
#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The task graph (`autoglm-dag` v1 JSON).
    #[arg(long)]
    pub dag: PathBuf,
    /// The workers (`autoglm-platform` v1 JSON).
    #[arg(long)]
    pub platform: PathBuf,
    /// The algorithm.
    #[arg(long, value_enum, default_value_t = Algo::Heft)]
    pub algo: Algo,
    /// Observed runs, one JSON object per line (`{"type": …, "worker": …, "duration":
    /// …}`), to estimate the costs of tasks that have none.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Write the schedule (`autoglm-schedule` v1 JSON) here instead of to standard
    /// output; a one-line summary goes to standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Runs `autoglm schedule`.
///
/// # Errors
/// Unreadable or malformed inputs (naming the file and the task, edge or worker), or a
/// schedule that fails validation (a bug, reported rather than written).
pub fn run(a: ScheduleArgs, out: &mut dyn Write) -> Result<()> {
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let mut dag = Dag::from_json(&read(&a.dag)?).with_context(|| format!("{}", a.dag.display()))?;
    let platform = Platform::from_json(&read(&a.platform)?)
        .with_context(|| format!("{}", a.platform.display()))?;
    if dag.missing_costs() > 0 {
        let Some(h) = &a.history else {
            bail!(
                "{}: {} task(s) have no cost; give --history with observed runs to estimate them",
                a.dag.display(),
                dag.missing_costs()
            );
        };
        let mut model = RuntimeModel::new(&platform);
        model
            .observe_jsonl(&read(h)?)
            .with_context(|| format!("{}", h.display()))?;
        model
            .fill_costs(&mut dag)
            .with_context(|| format!("{}", a.dag.display()))?;
    }
    let t0 = std::time::Instant::now();
    let s = match a.algo {
        Algo::Heft => heft(&dag, &platform),
        Algo::Cpop => cpop(&dag, &platform),
        Algo::HeftDup => heft_dup(&dag, &platform),
    };
    let secs = t0.elapsed().as_secs_f64();
    let (errs, m) = validate(&dag, &platform, &s);
    if !errs.is_empty() {
        bail!(
            "the {} schedule is invalid (a bug):\n{}",
            s.scheduler,
            errs.join("\n")
        );
    }
    match &a.out {
        Some(path) => {
            std::fs::write(path, s.to_json() + "\n")
                .with_context(|| format!("writing {}", path.display()))?;
            writeln!(
                out,
                "{} on {}: {} tasks, {} workers, {}: makespan {:.6} s, makespan/LB {:.4}, scheduled in {:.1} ms → {}",
                dag.name,
                platform.name,
                dag.len(),
                platform.workers(),
                s.scheduler,
                m.makespan,
                m.ratio_lb,
                secs * 1e3,
                path.display()
            )?;
        }
        None => writeln!(out, "{}", s.to_json())?,
    }
    Ok(())
}
