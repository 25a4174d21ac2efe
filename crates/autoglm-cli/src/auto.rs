//! `autoglm run TASK.yaml`: the AutoTrainer end to end (clean, tokenize, search,
//! evaluate on test, export), with progress lines.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use autoglm::{AutoTrainer, Event, Task};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

/// `autoglm run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The task file.
    pub task: PathBuf,
    /// Output directory (default: the task's `output`, else `runs/NAME` beside it).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Run trials of a study shared with other `autoglm run` processes (the task's
    /// `search.storage`): `redis://HOST:PORT/DB` or an Optuna journal file (on a
    /// shared mount for several machines).
    #[arg(long)]
    pub storage: Option<String>,
    /// The shared study's name (default: the task's `search.study_name`, else its
    /// `name`).
    #[arg(long)]
    pub study_name: Option<String>,
    /// Finish the shared study from this process (dev decoding choice, test
    /// scores, export, report) without running trials: for when the process that
    /// claimed the finish is gone.
    #[arg(long)]
    pub finish: bool,
}

/// `autoglm report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The run directory (`autoglm run`'s output).
    pub dir: PathBuf,
    /// Another run directory (random search on the same task, say) whose incumbent
    /// is drawn beside this run's anytime curve.
    #[arg(long)]
    pub baseline: Option<PathBuf>,
}

/// Redraws `DIR/report.html` and says what it left out.
///
/// # Errors
/// A directory that does not exist; I/O errors writing the report.
pub fn report(args: ReportArgs, out: &mut dyn Write) -> Result<()> {
    if !args.dir.is_dir() {
        anyhow::bail!("{}: no such run directory", args.dir.display());
    }
    let run = autoglm::RunDir::new(&args.dir);
    let mut report = autoglm::Report::from_dir(&run);
    if let Some(b) = &args.baseline {
        if !b.is_dir() {
            anyhow::bail!("--baseline {}: no such run directory", b.display());
        }
        report = report.with_baseline(&autoglm::RunDir::new(b));
    }
    let (path, missing) = report.write(&run)?;
    for m in &missing {
        writeln!(out, "left out: {m}")?;
    }
    writeln!(out, "report: {}", path.display())?;
    Ok(())
}

/// Rows of the best-trials table under the progress bars.
const BEST_ROWS: usize = 3;

/// A trial's parameters in a few characters each (`layers 2, hidden 128, lr 2.58e-3`).
fn short_params(params: &impl serde::Serialize) -> String {
    let v = serde_json::to_value(params).unwrap_or_default();
    let Some(map) = v.as_object() else {
        return String::new();
    };
    map.iter()
        .map(|(k, v)| {
            let s = match v.as_f64() {
                Some(x) if x.fract() == 0.0 && x.abs() < 1e6 => format!("{}", x as i64),
                Some(x) if x.abs() < 0.01 => format!("{x:.2e}"),
                Some(x) => format!("{x:.3}")
                    .trim_end_matches('0')
                    .trim_end_matches('.')
                    .to_string(),
                None => v.to_string(),
            };
            format!("{k} {s}")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The best-trials table: a header, then one row per trial of `best` (number and
/// dev metric, best first) with its parameters.
fn best_table(best: &[(u64, f64)], params: &std::collections::HashMap<u64, String>) -> Vec<String> {
    let mut rows = vec!["best trials so far:".to_string()];
    rows.extend(best.iter().enumerate().map(|(i, (n, v))| {
        format!(
            "  {}. trial {n:<4} dev {v:.3}  {}",
            i + 1,
            params.get(n).map_or("", String::as_str)
        )
    }));
    rows
}

/// Runs the task.
///
/// # Errors
/// Task, data, training and I/O errors, naming the file, line or field.
pub fn run(args: RunArgs, out: &mut dyn Write) -> Result<()> {
    let mut task = Task::from_yaml_file(&args.task)?;
    if let Some(o) = args.output {
        task.output = Some(o);
    }
    if let Some(st) = args.storage {
        // A file is relative to where the command runs.
        task.search.storage = Some(match st.contains("://") {
            true => st,
            false => std::path::absolute(&st)
                .with_context(|| format!("--storage {st}"))?
                .display()
                .to_string(),
        });
    }
    if let Some(n) = args.study_name {
        task.search.study_name = Some(n);
    }
    if task.search.storage.is_none() && (task.search.study_name.is_some() || args.finish) {
        anyhow::bail!(
            "{}: --study-name and --finish are for a shared study: give --storage (or search.storage)",
            args.task.display()
        );
    }
    let mut at = AutoTrainer::new(task).context("preparing the task")?;
    let r = &at.data().report;
    writeln!(
        out,
        "data: {} training rows ({} read, {} quarantined in all), {} dev and {} test inputs; tokenizer: {} tokens",
        r.train_rows,
        r.train.rows,
        r.quarantined,
        r.dev_items,
        r.test_items,
        at.tokenizer().vocab_size()
    )?;
    out.flush()?;
    // Bars on standard error when it is a terminal (the event lines then print
    // above them); otherwise the lines go to `out`, one per event.
    let bars = MultiProgress::new();
    let trials = bars.add(ProgressBar::new(at.task().search.trials as u64));
    trials.set_style(
        ProgressStyle::with_template("trials {bar:30} {pos}/{len} {msg}").expect("valid template"),
    );
    let steps = bars.add(ProgressBar::new(0));
    steps.set_style(
        ProgressStyle::with_template("trial {prefix} {bar:30} {pos}/{len} steps  {msg}")
            .expect("valid template"),
    );
    // The best trials so far (on screen: a small table under the bars, a header and
    // one row per trial).
    let best_rows: Vec<ProgressBar> = (0..=BEST_ROWS)
        .map(|_| {
            let b = bars.add(ProgressBar::new(0));
            b.set_style(ProgressStyle::with_template("{msg}").expect("valid template"));
            b
        })
        .collect();
    let mut best: Vec<(u64, f64)> = Vec::new();
    let mut trial_params: std::collections::HashMap<u64, String> = Default::default();
    let minutes = at.task().search.minutes;
    let started = std::time::Instant::now();
    // "M:SS of the time budget left", when the task has one.
    let time_left = move || {
        minutes.map_or(String::new(), |m| {
            let left = (m * 60.0 - started.elapsed().as_secs_f64()).max(0.0) as u64;
            format!("  {}:{:02} of the time budget left", left / 60, left % 60)
        })
    };
    let on_screen = !trials.is_hidden();
    let finish = args.finish;
    let mut on_event = |e: &Event| {
        let line = match e {
            Event::Start {
                number,
                params,
                steps: n,
                rung,
            } => {
                steps.reset();
                steps.set_length(*n);
                trial_params.insert(*number, short_params(params));
                steps.set_prefix(match rung {
                    Some(r) => format!("{number}, rung of {r} budget units,"),
                    None => number.to_string(),
                });
                format!(
                    "trial {number}: {n} steps, {}",
                    serde_json::to_string(params).unwrap_or_default()
                )
            }
            Event::Step { step, loss, .. } => {
                steps.set_position(*step);
                steps.set_message(format!("loss {loss:.4}{}", time_left()));
                return;
            }
            Event::Eval {
                number,
                step,
                steps: n,
                dev_loss,
            } => format!("trial {number}: step {step}/{n}  dev loss {dev_loss:.4}"),
            Event::Rung {
                number,
                epochs,
                steps: n,
                dev_loss,
                value,
            } => format!(
                "trial {number}: rung {epochs:.3} epochs ({n} steps with cooldown)  dev loss {dev_loss:.4}{}",
                value.map_or(String::new(), |v| format!(", dev {v:.3}"))
            ),
            Event::Workers {
                workers,
                threads,
                resumed,
            } => {
                if *workers == 1 {
                    return;
                }
                format!(
                    "workers: {workers} trials side by side, {threads} kernel thread{} each{}",
                    if *threads == 1 { "" } else { "s" },
                    if *resumed { " (as the journal started)" } else { "" }
                )
            }
            Event::Waiting { trials: numbers } => {
                let list: Vec<String> = numbers.iter().map(u64::to_string).collect();
                format!(
                    "waiting: other processes run trial{} {}",
                    if numbers.len() == 1 { "" } else { "s" },
                    list.join(", ")
                )
            }
            Event::Extend { seconds } => {
                format!("brackets over: the incumbent gets the {seconds:.0} s left")
            }
            Event::End {
                number,
                state,
                value,
                seconds,
            } => {
                if !state.is_failed() {
                    trials.inc(1);
                }
                if let Some(v) = value {
                    trials.set_message(format!("last dev {v:.3}"));
                    best.retain(|b| b.0 != *number);
                    best.push((*number, *v));
                    best.sort_by(|a, b| b.1.total_cmp(&a.1));
                    best.truncate(BEST_ROWS);
                    for (bar, row) in best_rows.iter().zip(best_table(&best, &trial_params)) {
                        bar.set_message(row);
                    }
                }
                format!(
                    "trial {number}: {state}{} in {seconds:.0} s",
                    value.map_or(String::new(), |v| format!(", dev {v:.3}"))
                )
            }
        };
        if on_screen {
            let _ = bars.println(line);
        } else {
            let _ = writeln!(out, "{line}");
            let _ = out.flush();
        }
    };
    let summary = if finish {
        at.finish()?
    } else {
        at.search(&mut on_event)?
    };
    steps.finish_and_clear();
    trials.finish_and_clear();
    for b in &best_rows {
        b.finish_and_clear();
    }
    writeln!(
        out,
        "search: {} complete, {} pruned, {} failed in {:.0} s; best {}; stopped: {}",
        summary.complete,
        summary.pruned,
        summary.failed,
        summary.seconds,
        summary
            .best
            .as_ref()
            .map_or("none".into(), |(n, v, _)| format!("trial {n} (dev {v:.3})")),
        summary.stop
    )?;
    if let Some(who) = &summary.finished_by {
        writeln!(
            out,
            "the study is over; {who} finishes it (dev decoding, test scores, export, report); `autoglm run --finish` finishes it here instead"
        )?;
        return Ok(());
    }
    let e = at.evaluate()?;
    writeln!(
        out,
        "decoding chosen on dev: {} beams, length penalty {}",
        e.decoding.num_beams.values()[0],
        e.decoding.length_penalty.values()[0]
    )?;
    writeln!(
        out,
        "best model: dev BLEU {:.2} ROUGE-L {:.4}; test BLEU {:.2} ROUGE-L {:.4}",
        e.dev.bleu, e.dev.rouge_l, e.test.bleu, e.test.rouge_l
    )?;
    writeln!(
        out,
        "nearest-neighbour retrieval baseline: dev BLEU {:.2} ROUGE-L {:.4}; test BLEU {:.2} ROUGE-L {:.4}",
        e.retrieval_dev.bleu, e.retrieval_dev.rouge_l, e.retrieval_test.bleu, e.retrieval_test.rouge_l
    )?;
    let model_dir = at.run_dir().model();
    at.export(&model_dir)?;
    let export = &at.task().export;
    let (method, rows) = (
        export.method()?,
        export
            .calibration_rows
            .unwrap_or(autoglm::DEFAULT_CALIBRATION_ROWS),
    );
    for storage in export.storages()? {
        let dir = model_dir.with_file_name(format!("model-{storage}"));
        let q = at.quantize_model(
            &model_dir,
            &dir,
            &autoglm_models::storage_plan(storage),
            method,
            &e.decoding,
            rows,
        )?;
        let bytes: usize = q.bytes.values().sum();
        writeln!(
            out,
            "{storage} ({}, head {}): dev BLEU {:.2} ROUGE-L {:.4}; test BLEU {:.2} ROUGE-L {:.4}; \
             dev perplexity ×{:.4}, mean KL {:.2e}, top-1 agreement {:.2} %; {:.2} MiB (f32 {:.2}) in {}",
            q.method,
            q.head,
            q.dev.bleu,
            q.dev.rouge_l,
            q.test.bleu,
            q.test.rouge_l,
            q.perplexity_ratio,
            q.mean_kl,
            100.0 * q.top1_agreement,
            bytes as f64 / (1 << 20) as f64,
            q.f32_bytes as f64 / (1 << 20) as f64,
            dir.display()
        )?;
    }
    let report = at.write_report()?;
    writeln!(
        out,
        "exported to {}; test outputs in {}; report in {}",
        model_dir.display(),
        at.run_dir().test_predictions().display(),
        report.display()
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_best_trials_table_names_each_trial_with_its_parameters() {
        let params =
            serde_json::json!({"layers": 2, "hidden": 128.0, "lr": 0.0025779, "mlp_ratio": 2.1783});
        assert_eq!(
            short_params(&params),
            "layers 2, hidden 128, lr 2.58e-3, mlp_ratio 2.178"
        );
        let mut by_trial = std::collections::HashMap::new();
        by_trial.insert(8, short_params(&params));
        let rows = best_table(&[(8, 0.7405), (3, 0.7)], &by_trial);
        assert_eq!(rows[0], "best trials so far:");
        assert_eq!(
            rows[1],
            "  1. trial 8    dev 0.741  layers 2, hidden 128, lr 2.58e-3, mlp_ratio 2.178"
        );
        assert_eq!(rows[2], "  2. trial 3    dev 0.700  ");
    }
}
