//! `autoglm schedule`: DAG scheduling.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use autoglm_sched::train::{train, TrainConfig};
use autoglm_sched::{
    expected_makespan_under_failures, replicate_simulated, validate, Algorithm, Dag, Gcn, Platform,
    RuntimeModel, Scheduler,
};
use clap::{Args, Subcommand, ValueEnum};

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
    /// The trained GCN priority model, with HEFT's duplication.
    Gcn,
    /// The GCN priority model without duplication.
    GcnNodup,
    /// Every task on the fastest worker.
    Fastest,
    /// The best of all of these (and of list schedules on the fastest workers only).
    Auto,
}

impl From<Algo> for Algorithm {
    fn from(a: Algo) -> Algorithm {
        match a {
            Algo::Heft => Algorithm::Heft,
            Algo::Cpop => Algorithm::Cpop,
            Algo::HeftDup => Algorithm::HeftDup,
            Algo::Gcn => Algorithm::Gcn,
            Algo::GcnNodup => Algorithm::GcnNoDup,
            Algo::Fastest => Algorithm::Fastest,
            Algo::Auto => Algorithm::Auto,
        }
    }
}

/// `autoglm schedule`.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ScheduleArgs {
    /// Retrain the GCN priority model instead of scheduling.
    #[command(subcommand)]
    pub action: Option<ScheduleAction>,
    /// The task graph (`autoglm-dag` v1 JSON).
    #[arg(long, required = true)]
    pub dag: Option<PathBuf>,
    /// The workers (`autoglm-platform` v1 JSON).
    #[arg(long, required = true)]
    pub platform: Option<PathBuf>,
    /// The algorithm.
    #[arg(long, value_enum, default_value_t = Algo::Heft)]
    pub algo: Algo,
    /// A GCN model file (`autoglm schedule train --out`) instead of the shipped one.
    #[arg(long)]
    pub model: Option<PathBuf>,
    /// Observed runs, one JSON object per line (`{"type": …, "worker": …, "duration":
    /// …}`), to estimate the costs of tasks that have none.
    #[arg(long)]
    pub history: Option<PathBuf>,
    /// Add replicas of the tasks most exposed to worker failures, within this
    /// fraction of extra busy time (e.g. 0.3), keeping only those that lower the mean
    /// simulated makespan under sampled single-worker failures. The failure-free
    /// makespan does not change.
    #[arg(long, value_name = "FRACTION")]
    pub replicate: Option<f64>,
    /// Also report the expected makespan when this many random workers fail at random
    /// times (simulated, 40 draws; with `--replicate`, with and without the replicas).
    #[arg(long, value_name = "K")]
    pub failures: Option<usize>,
    /// Write the schedule (`autoglm-schedule` v1 JSON) here instead of to standard
    /// output; a one-line summary goes to standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `autoglm schedule` subcommands.
#[derive(Debug, Subcommand)]
pub enum ScheduleAction {
    /// Train the GCN priority model in the simulator on generated DAGs (evolution
    /// strategies; reproducible for a seed) and write it as JSON.
    Train(TrainArgs),
}

/// `autoglm schedule train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Where to write the model.
    #[arg(long)]
    pub out: PathBuf,
    /// Seed of the instances, the initial weights and the perturbations.
    #[arg(long, default_value_t = TrainConfig::default().seed)]
    pub seed: u64,
    /// Iterations.
    #[arg(long, default_value_t = TrainConfig::default().iterations)]
    pub iterations: usize,
    /// Antithetic perturbation pairs per iteration.
    #[arg(long, default_value_t = TrainConfig::default().pairs)]
    pub pairs: usize,
    /// Instances per iteration.
    #[arg(long, default_value_t = TrainConfig::default().batch)]
    pub batch: usize,
    /// Adam step size.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f64,
    /// Perturbation scale.
    #[arg(long, default_value_t = TrainConfig::default().sigma)]
    pub sigma: f64,
    /// Hidden width.
    #[arg(long, default_value_t = TrainConfig::default().hidden)]
    pub hidden: usize,
    /// Largest training DAG (tasks).
    #[arg(long, default_value_t = TrainConfig::default().max_tasks)]
    pub max_tasks: usize,
    /// Clip each instance's log makespan ratio to ±this in the reward.
    #[arg(long, default_value_t = TrainConfig::default().clip)]
    pub clip: f64,
    /// Weight of losses against the reference in the reward (1: symmetric).
    #[arg(long, default_value_t = TrainConfig::default().loss_weight)]
    pub loss_weight: f64,
    /// Train for scheduling without duplication.
    #[arg(long)]
    pub no_duplication: bool,
}

fn train_model(a: TrainArgs, out: &mut dyn Write) -> Result<()> {
    let cfg = TrainConfig {
        seed: a.seed,
        iterations: a.iterations,
        pairs: a.pairs,
        batch: a.batch,
        hidden: a.hidden,
        lr: a.lr,
        sigma: a.sigma,
        max_tasks: a.max_tasks,
        clip: a.clip,
        loss_weight: a.loss_weight,
        duplicate: !a.no_duplication,
        ..TrainConfig::default()
    };
    let (model, _) = train(&cfg, |l| {
        if let Some(v) = l.validation_gain {
            eprintln!(
                "iteration {}: train gain {:+.4}, validation makespan / reference {:.4} ({:.0} s)",
                l.iteration,
                l.train_gain,
                (-v).exp(),
                l.seconds
            );
        }
    })?;
    std::fs::write(&a.out, model.to_json() + "\n")
        .with_context(|| format!("writing {}", a.out.display()))?;
    writeln!(
        out,
        "best validation makespan / HEFT{}: {:.4} (iteration {}) → {}",
        if cfg.duplicate { "+dup" } else { "" },
        model.meta["validation_makespan_ratio"]
            .as_f64()
            .unwrap_or(f64::NAN),
        model.meta["best_iteration"],
        a.out.display()
    )?;
    Ok(())
}

/// Runs `autoglm schedule`.
///
/// # Errors
/// Unreadable or malformed inputs (naming the file and the task, edge or worker), or a
/// schedule that fails validation (a bug, reported rather than written).
pub fn run(a: ScheduleArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(ScheduleAction::Train(t)) = a.action {
        return train_model(t, out);
    }
    let (Some(dag_path), Some(platform_path)) = (&a.dag, &a.platform) else {
        bail!("give --dag and --platform");
    };
    let read = |p: &PathBuf| {
        std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))
    };
    let mut dag =
        Dag::from_json(&read(dag_path)?).with_context(|| format!("{}", dag_path.display()))?;
    let platform = Platform::from_json(&read(platform_path)?)
        .with_context(|| format!("{}", platform_path.display()))?;
    let scheduler = match &a.model {
        Some(m) => {
            Scheduler::new(Gcn::from_json(&read(m)?).with_context(|| format!("{}", m.display()))?)
        }
        None => Scheduler::default(),
    };
    if dag.missing_costs() > 0 {
        let Some(h) = &a.history else {
            bail!(
                "{}: {} task(s) have no cost; give --history with observed runs to estimate them",
                dag_path.display(),
                dag.missing_costs()
            );
        };
        let mut model = RuntimeModel::new(&platform);
        model
            .observe_jsonl(&read(h)?)
            .with_context(|| format!("{}", h.display()))?;
        model
            .fill_costs(&mut dag)
            .with_context(|| format!("{}", dag_path.display()))?;
    }
    if let Some(b) = a.replicate {
        if !(b.is_finite() && b >= 0.0) {
            bail!("--replicate {b}: give a fraction of extra busy time ≥ 0, e.g. 0.3");
        }
    }
    platform
        .check_horizon(&dag)
        .with_context(|| format!("{}", dag_path.display()))?;
    let t0 = std::time::Instant::now();
    let plain = scheduler.schedule(a.algo.into(), &dag, &platform);
    let secs = t0.elapsed().as_secs_f64();
    let replication = a
        .replicate
        .map(|b| replicate_simulated(&dag, &platform, &plain, b, 16, 24, 5));
    let s = replication
        .as_ref()
        .map_or_else(|| plain.clone(), |r| r.schedule.clone());
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
    // With the schedule on standard output, the reports go to standard error.
    let mut report = |line: String| -> Result<()> {
        if a.out.is_some() {
            writeln!(out, "{line}")?;
        } else {
            eprintln!("{line}");
        }
        Ok(())
    };
    if let Some(r) = &replication {
        report(format!(
            "replication: {} replicas, {:.1} % extra busy time",
            r.replicas,
            100.0 * r.extra_work
        ))?;
    }
    if let Some(k) = a.failures {
        let expected = |s| expected_makespan_under_failures(&dag, &platform, s, k, 40, 11);
        let with = expected(&s);
        let line = if replication.is_some() {
            let without = expected(&plain);
            format!(
                "expected makespan under {k} failure(s): {with:.6} s with replicas, {without:.6} s without ({:+.2} %)",
                100.0 * (with / without - 1.0)
            )
        } else {
            format!("expected makespan under {k} failure(s): {with:.6} s")
        };
        report(line)?;
    }
    Ok(())
}
