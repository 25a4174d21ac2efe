//! The self-contained HTML report of a run (`OUTPUT/report.html`), drawn from the
//! run directory alone, so `autoglm report DIR` can redraw it for a run that is
//! still going or was cut short: the chosen model's scores, the optimisation
//! history, the learning curves (rungs), parallel coordinates, parameter
//! importances, the trial table (one column per parameter), the data report with
//! examples of rejected rows, and sample dev outputs beside their references.
//! Plots are inline SVG drawn with `plotters` ([`plots`]); no scripts, no external
//! files.

mod plots;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use autoglm_tune::{
    iteration_of, param_importances, Direction, Distribution, FrozenTrial, ParamValue, Storage,
    TrialState,
};
use serde::Deserialize;

use crate::data::{DataReport, Item};
use crate::error::{write, Result};
use crate::rundir::{RunDir, BEST_DEV_OUTPUTS, BEST_TRIAL};
use crate::search::Evaluation;

/// Escapes text for HTML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number as a person reads it: four significant digits, scientific notation
/// below 0.01 and from 1e5.
fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() {
        return format!("{v}");
    }
    if v.fract() == 0.0 && v.abs() < 1e5 {
        return format!("{}", v as i64);
    }
    let a = v.abs();
    if !(0.01..1e5).contains(&a) {
        let s = format!("{v:.3e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let m = if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.')
        } else {
            m
        };
        return format!("{m}e{e}");
    }
    let digits = (3 - a.log10().floor() as i32).max(0) as usize;
    let s = format!("{v:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s
    }
}

/// A parameter value as text.
fn value(v: &ParamValue) -> String {
    match v {
        ParamValue::Bool(b) => b.to_string(),
        ParamValue::Int(i) => i.to_string(),
        ParamValue::Float(f) => number(*f),
        ParamValue::Str(s) => s.clone(),
    }
}

/// Rows the cleaning rules rejected under one rule of one split.
#[derive(Debug, Default)]
struct Rejected {
    count: usize,
    examples: Vec<(String, String, String)>,
}

/// One line of `data/quarantine.jsonl`.
#[derive(Debug, Deserialize)]
struct Quarantined {
    split: String,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    line: Option<u64>,
    rule: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    row: serde_json::Value,
}

/// Examples of rejected rows shown per rule.
const EXAMPLES: usize = 3;
/// Dev inputs shown with the chosen model's outputs.
const SAMPLES: usize = 8;

/// What a report shows, read from a run directory; what could not be read is
/// listed in [`Report::missing`] instead of failing.
#[derive(Debug)]
pub struct Report {
    name: String,
    metric: String,
    trials: Vec<FrozenTrial>,
    chosen: Option<u64>,
    data: Option<DataReport>,
    rejected: BTreeMap<(String, String), Rejected>,
    scores: Option<Evaluation>,
    samples: Vec<(Item, String)>,
    extension: Option<serde_json::Value>,
    /// Another run's name and full-length models, drawn beside the anytime curve.
    baseline: Option<(String, Vec<plots::Timed>)>,
    missing: Vec<String>,
}

fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &str,
    missing: &mut Vec<String>,
) -> Option<T> {
    match std::fs::read_to_string(path) {
        Ok(text) => match serde_json::from_str(&text) {
            Ok(v) => Some(v),
            Err(e) => {
                missing.push(format!("{}: {what} unreadable: {e}", path.display()));
                None
            }
        },
        Err(_) => {
            missing.push(format!("{}: no {what} yet", path.display()));
            None
        }
    }
}

impl Report {
    /// Reads what a report shows from the run directory `run`, with the incumbent of
    /// its `baseline/` run beside the anytime curve when it has one
    /// ([`RunDir::baseline`]).
    pub fn from_dir(run: &RunDir) -> Report {
        let report = Report::read(run);
        let base = run.baseline();
        if base.journal().exists() {
            // Named by its task: the directory is always called `baseline`.
            report.add_baseline(&base, true)
        } else {
            report
        }
    }

    /// [`Report::from_dir`] without a baseline.
    fn read(run: &RunDir) -> Report {
        let mut missing = Vec::new();
        let trials = match Storage::read_lenient(&run.journal()) {
            Ok(s) => {
                missing.extend(s.warnings().iter().cloned());
                s.trials().to_vec()
            }
            Err(_) => {
                missing.push(format!(
                    "{}: no journal: no trials to show",
                    run.journal().display()
                ));
                Vec::new()
            }
        };
        let export: Option<serde_json::Value> =
            std::fs::read_to_string(run.model().join("autoglm.json"))
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
        let task = export.as_ref().and_then(|e| e.get("task"));
        let name = task
            .and_then(|t| t.get("name"))
            .and_then(|n| n.as_str())
            .map(str::to_string)
            .or_else(|| {
                run.root()
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| "run".into());
        let metric = match task
            .and_then(|t| t.pointer("/search/metric"))
            .and_then(|m| m.as_str())
        {
            Some("bleu") => "BLEU",
            Some("rouge_l") => "ROUGE-L",
            _ => "metric",
        }
        .to_string();
        let chosen: Option<u64> = std::fs::read_to_string(run.best().join(BEST_TRIAL))
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v.get("number").and_then(|n| n.as_u64()));
        let data: Option<DataReport> = read_json(&run.data().report(), "data report", &mut missing);
        let mut rejected: BTreeMap<(String, String), Rejected> = BTreeMap::new();
        if let Ok(text) = std::fs::read_to_string(run.data().quarantine()) {
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let Ok(q) = serde_json::from_str::<Quarantined>(line) else {
                    continue;
                };
                let r = rejected.entry((q.split, q.rule)).or_default();
                r.count += 1;
                if r.examples.len() < EXAMPLES {
                    let at = match (&q.file, q.line) {
                        (Some(f), Some(l)) => format!(
                            "{}:{l}",
                            f.file_name().map_or_else(
                                || f.display().to_string(),
                                |n| n.to_string_lossy().into_owned()
                            )
                        ),
                        _ => String::new(),
                    };
                    r.examples.push((at, q.reason, q.row.to_string()));
                }
            }
        }
        let scores: Option<Evaluation> =
            read_json(&run.scores(), "scores (scores.json)", &mut missing);
        let mut samples = Vec::new();
        let dev: Option<Vec<Item>> = std::fs::read_to_string(run.data().dev()).ok().map(|t| {
            t.lines()
                .filter_map(|l| serde_json::from_str(l).ok())
                .collect()
        });
        match (
            dev,
            std::fs::read_to_string(run.best().join(BEST_DEV_OUTPUTS)),
        ) {
            (Some(dev), Ok(outs)) => {
                let outs: Vec<&str> = outs.lines().collect();
                if outs.len() == dev.len() {
                    samples = dev
                        .into_iter()
                        .zip(outs)
                        .take(SAMPLES)
                        .map(|(i, o)| (i, o.to_string()))
                        .collect();
                } else {
                    missing.push(format!(
                        "{}: {} outputs for {} dev inputs (generated for a subset): no samples shown",
                        run.best().join(BEST_DEV_OUTPUTS).display(),
                        outs.len(),
                        dev.len()
                    ));
                }
            }
            _ => missing.push("no chosen model's dev outputs yet: no samples shown".into()),
        }
        let extension = std::fs::read_to_string(run.extension())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        Report {
            name,
            metric,
            trials,
            chosen,
            data,
            rejected,
            scores,
            samples,
            extension,
            baseline: None,
            missing,
        }
    }

    /// Draws the incumbent of another run `base` (random search, say) beside this
    /// run's anytime curve, both against time since their own search started; it
    /// replaces the run directory's own baseline.
    pub fn with_baseline(self, base: &RunDir) -> Report {
        self.add_baseline(base, false)
    }

    /// The baseline named by its directory, or by its task (`by_task`).
    fn add_baseline(mut self, base: &RunDir, by_task: bool) -> Report {
        let other = Report::read(base);
        self.baseline = None;
        let name = match base.root().file_name() {
            Some(n) if !by_task => n.to_string_lossy().into_owned(),
            _ => other.name.clone(),
        };
        match plots::full_length(&other.trials, other.extended_at()) {
            Some((_, full)) if !full.is_empty() => self.baseline = Some((name, full)),
            _ => self.missing.push(format!(
                "{}: the baseline has no timed full-length model",
                base.root().display()
            )),
        }
        self
    }

    /// The trial extended after a multi-fidelity search's brackets and its score.
    fn extended(&self) -> Option<(u64, f64)> {
        let e = self.extension.as_ref()?;
        Some((e.get("number")?.as_u64()?, e.get("value")?.as_f64()?))
    }

    /// The extended trial, when it was scored (Unix seconds) and its dev loss.
    fn extension_loss(&self) -> Option<(u64, f64, f64)> {
        let e = self.extension.as_ref()?;
        Some((
            e.get("number")?.as_u64()?,
            e.get("ended_unix")?.as_f64()?,
            e.get("dev_loss")?.as_f64()?,
        ))
    }

    /// When the extended trial was scored (Unix seconds) and its score.
    fn extended_at(&self) -> Option<(f64, f64)> {
        let e = self.extension.as_ref()?;
        Some((e.get("ended_unix")?.as_f64()?, e.get("value")?.as_f64()?))
    }

    /// Writes the page to `run/report.html`; returns its path and what was left out.
    ///
    /// # Errors
    /// I/O errors writing the file.
    pub fn write(self, run: &RunDir) -> Result<(PathBuf, Vec<String>)> {
        let p = run.report();
        write(&p, self.html())?;
        Ok((p, self.missing))
    }

    /// What could not be read (so the report leaves it out).
    pub fn missing(&self) -> &[String] {
        &self.missing
    }

    /// The searched parameters, structure first, with the distribution of their
    /// latest trial.
    fn params(&self) -> Vec<(String, Distribution)> {
        let mut out: Vec<(String, Distribution)> = Vec::new();
        for t in self.trials.iter().rev() {
            for (k, d) in &t.distributions {
                if !out.iter().any(|(n, _)| n == k) {
                    out.push((k.clone(), d.clone()));
                }
            }
        }
        let order = |k: &str| {
            crate::search::PARAMS
                .iter()
                .position(|p| *p == k)
                .unwrap_or(usize::MAX)
        };
        out.sort_by(|a, b| order(&a.0).cmp(&order(&b.0)).then(a.0.cmp(&b.0)));
        out
    }

    /// The trial table: number, state, dev metric, where it stopped, one column
    /// per parameter, then size and time.
    fn table(&self, params: &[(String, Distribution)]) -> String {
        let mf = self.trials.iter().any(|t| iteration_of(t).is_some());
        let mut head = String::from("<tr><th>trial</th><th>state</th>");
        let _ = write!(
            head,
            "<th>dev {}</th><th>last {}</th>",
            self.metric,
            if mf { "rung" } else { "evaluation" }
        );
        for (name, d) in params {
            let scale = match d {
                Distribution::Float { log: true, .. } | Distribution::Int { log: true, .. } => {
                    " (log)"
                }
                Distribution::Categorical { .. } => " (choice)",
                _ => "",
            };
            let _ = write!(head, "<th>{}{scale}</th>", esc(name));
        }
        head += "<th>parameters</th><th>ms / token</th><th>seconds</th></tr>";
        let mut rows = String::new();
        let extended = self.extended();
        for t in &self.trials {
            let ext = extended.filter(|e| e.0 == t.number);
            let chosen = if Some(t.number) == self.chosen {
                ", chosen"
            } else {
                ""
            };
            let state = match t.state {
                _ if ext.is_some() => format!("extended after the brackets{chosen}"),
                TrialState::Complete if Some(t.number) == self.chosen => {
                    "complete, chosen".to_string()
                }
                TrialState::Complete => "complete".into(),
                TrialState::Pruned => "pruned".into(),
                TrialState::Running => "running".into(),
                TrialState::Waiting => "waiting".into(),
                TrialState::Failed => {
                    match t.user_attrs.get("fail_reason").and_then(|r| r.as_str()) {
                        Some(r) => format!("failed: {}", esc(r)),
                        None => "failed".into(),
                    }
                }
            };
            let dev = ext
                .map(|e| e.1)
                .or(t.value().filter(|_| t.state == TrialState::Complete))
                .map_or("–".into(), |v| format!("{v:.4}"));
            // The journal holds minus the dev loss below the top rung (the study
            // maximises) and the dev metric at a complete trial's top rung.
            let last = t
                .intermediate
                .iter()
                .next_back()
                .map_or("–".into(), |(&k, &v)| {
                    let at = if mf {
                        format!("{} units", number(k as f64 / 1000.0))
                    } else {
                        format!("{k}")
                    };
                    if v < 0.0 {
                        format!("{at}: dev loss {:.4}", -v)
                    } else {
                        format!("{at}: dev {} {v:.4}", self.metric)
                    }
                });
            let _ = write!(
                rows,
                "<tr><td>{}</td><td>{state}</td><td>{dev}</td><td>{last}</td>",
                t.number
            );
            for (name, _) in params {
                let _ = write!(
                    rows,
                    "<td>{}</td>",
                    t.params.get(name).map_or("–".into(), value)
                );
            }
            let o = t.user_attrs.get("outcome");
            let get = |k: &str| o.and_then(|o| o.get(k)).and_then(serde_json::Value::as_f64);
            let _ = write!(
                rows,
                "<td>{}</td><td>{}</td><td>{}</td></tr>",
                get("parameters").map_or("–".into(), |p| format!("{:.2} M", p / 1e6)),
                get("ms_per_token").map_or("–".into(), |v| format!("{v:.3}")),
                get("seconds").map_or("–".into(), |v| format!("{v:.0}")),
            );
        }
        format!("<div class=\"wide\"><table>{head}{rows}</table></div>")
    }

    fn data_section(&self) -> String {
        let Some(data) = &self.data else {
            return "<p>No data report yet.</p>".into();
        };
        let mut s = format!(
            "<p>{} training rows, {} dev inputs ({} references), {} test inputs; {} rows in the quarantine (<code>data/quarantine.jsonl</code>).</p><table><tr><th>split</th><th>rows read</th><th>kept</th><th>malformed</th><th>missing field</th></tr>",
            data.train_rows, data.dev_items, data.dev_references, data.test_items, data.quarantined
        );
        let splits = [
            ("train", Some(&data.train)),
            ("dev", data.dev.as_ref()),
            ("test", data.test.as_ref()),
        ];
        for (split, rep) in splits {
            let Some(rep) = rep else { continue };
            let _ = write!(
                s,
                "<tr><td>{split}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                rep.rows, rep.cleaning.kept, rep.malformed, rep.missing_field
            );
        }
        s += "</table><h3>Cleaning rules</h3><table><tr><th>split</th><th>rule</th><th>rows changed</th><th>rows rejected</th></tr>";
        for (split, rep) in splits {
            let Some(rep) = rep else { continue };
            for r in &rep.cleaning.rules {
                let _ = write!(
                    s,
                    "<tr><td>{split}</td><td><code>{}</code></td><td>{}</td><td>{}</td></tr>",
                    esc(&r.rule),
                    r.changed,
                    r.rejected
                );
            }
        }
        s += "</table>";
        if !self.rejected.is_empty() {
            s += "<h3>Rejected rows, by rule (first examples)</h3><table><tr><th>split</th><th>rule</th><th>rows</th><th>where</th><th>why</th><th>row</th></tr>";
            for ((split, rule), r) in &self.rejected {
                for (i, (at, why, row)) in r.examples.iter().enumerate() {
                    let lead = if i == 0 {
                        format!(
                            "<td>{split}</td><td><code>{}</code></td><td>{}</td>",
                            esc(rule),
                            r.count
                        )
                    } else {
                        "<td></td><td></td><td></td>".into()
                    };
                    let _ = write!(
                        s,
                        "<tr>{lead}<td>{}</td><td>{}</td><td class=\"text\"><code>{}</code></td></tr>",
                        esc(at), esc(why), esc(row)
                    );
                }
            }
            s += "</table>";
        }
        s
    }

    fn scores_section(&self) -> String {
        let Some(e) = &self.scores else {
            return "<p>Not evaluated yet.</p>".into();
        };
        let row = |what: &str, x: crate::trial::Scores| {
            format!(
                "<tr><td>{what}</td><td>{:.2}</td><td>{:.4}</td></tr>",
                x.bleu, x.rouge_l
            )
        };
        let mut tried = String::new();
        for (d, x) in &e.decodings {
            let chosen = if *d == e.decoding { " (chosen)" } else { "" };
            tried += &row(
                &format!(
                    "dev: {} beams, length penalty {}{chosen}",
                    d.num_beams.values()[0],
                    d.length_penalty.values()[0]
                ),
                *x,
            );
        }
        let intervals = e.test_intervals.map_or(String::new(), |i| {
            format!(
                "<tr><td>chosen model, test: 95 % bootstrap interval</td><td>{:.2} ± {:.2}</td><td>{:.4} – {:.4}</td></tr><tr><td>chosen model against retrieval, test: paired bootstrap p-value</td><td>{:.4}</td><td></td></tr>",
                i.bleu_mean, i.bleu_ci, i.rouge_l_low, i.rouge_l_high, i.bleu_p
            )
        });
        let how = if e.test_intervals.is_some() {
            "<p>Intervals: sacrebleu's paired bootstrap (1000 resamples, seed 12345) for BLEU; rouge-score's bootstrap aggregator (1000 resamples, the 2.5th and 97.5th percentiles) for ROUGE-L.</p>"
        } else {
            ""
        };
        format!(
            "<table><tr><th></th><th>BLEU</th><th>ROUGE-L</th></tr>{}{intervals}{}{tried}{}{}</table>{how}",
            row("chosen model, test", e.test),
            row("chosen model, dev (all inputs)", e.dev),
            row("nearest-neighbour retrieval, test", e.retrieval_test),
            row("nearest-neighbour retrieval, dev", e.retrieval_dev)
        )
    }

    fn samples_section(&self) -> String {
        if self.samples.is_empty() {
            return "<p>No samples yet.</p>".into();
        }
        let mut s = String::from(
            "<table><tr><th>dev input</th><th>chosen model's output</th><th>references</th></tr>",
        );
        for (item, out) in &self.samples {
            let refs: String = item
                .references
                .iter()
                .take(2)
                .map(|r| format!("{}<br>", esc(r)))
                .collect();
            let more = item.references.len().saturating_sub(2);
            let more = if more > 0 {
                format!("<i>and {more} more</i>")
            } else {
                String::new()
            };
            let _ = write!(
                s,
                "<tr><td class=\"text\">{}</td><td class=\"text\">{}</td><td class=\"text\">{refs}{more}</td></tr>",
                esc(&item.input),
                esc(out)
            );
        }
        s + "</table>"
    }

    /// The whole page.
    pub fn html(&self) -> String {
        let params = self.params();
        let mf = self.trials.iter().any(|t| iteration_of(t).is_some());
        let imp = param_importances(&self.trials, &[Direction::Maximize], 0);
        let missing = if self.missing.is_empty() {
            String::new()
        } else {
            let items: String = self
                .missing
                .iter()
                .map(|m| format!("<li>{}</li>", esc(m)))
                .collect();
            format!("<div class=\"missing\"><b>Left out of this report:</b><ul>{items}</ul></div>")
        };
        let extension = self.extension.as_ref().map_or(String::new(), |e| {
            let g = |k: &str| e.get(k).map_or("–".into(), |v| v.to_string());
            format!(
                "<p>After the brackets, trial {} was trained on from {} to {} constant-rate steps and cooled down for {}: dev {} {} (before: {}); {}.</p>",
                g("number"), g("from_steps"), g("stable_steps"), g("cooldown_steps"), self.metric,
                e.get("value").and_then(serde_json::Value::as_f64).map_or("–".into(), |v| format!("{v:.4}")),
                e.get("value_before").and_then(serde_json::Value::as_f64).map_or("none".into(), |v| format!("{v:.4}")),
                if e.get("chosen").and_then(serde_json::Value::as_bool) == Some(true) { "kept" } else { "not kept" }
            )
        });
        let curves_note = if mf {
            "Dev loss after each rung's cooldown, by training budget; the number at a curve's end is its trial; pruned trials dashed, the chosen trial red."
        } else {
            "Dev loss at each evaluation; the number at a curve's end is its trial; pruned trials dashed, the chosen trial red."
        };
        format!(
            r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>autoglm: {name}</title>
<style>
body{{font-family:sans-serif;max-width:980px;margin:2em auto;padding:0 12px;color:#222}}
h2{{margin-top:1.6em;border-bottom:1px solid #ddd}}
table{{border-collapse:collapse;margin:.5em 0}}
td,th{{border:1px solid #ccc;padding:3px 6px;font-size:12px;vertical-align:top;text-align:left}}
th{{background:#f4f4f4}}
.wide{{overflow-x:auto;max-width:100%}}
td.text{{max-width:360px;overflow-wrap:anywhere}}
svg{{max-width:100%;height:auto}}
.missing{{background:#fff6e0;border:1px solid #e0c070;padding:6px 12px}}
</style></head>
<body><h1>autoglm run: {name}</h1>
{missing}
<h2>Scores of the chosen model</h2>{scores}{extension}
<h2>Anytime curve</h2><p>The dev {metric} of every full-length model when it was scored, and of the incumbent, against time since the search started{rung_note}.</p>{any}
<h2>Optimisation history</h2><p>Dev {metric} of each complete trial and the best so far, by trial number; trials without a dev {metric} (pruned or failed) on the axis.</p>{hist}
<h2>Learning curves</h2><p>{curves_note}</p>{curv}
<h2>Parallel coordinates</h2><p>Each line is a trial through the value of every searched parameter (each axis spans the searched range; log scales marked).</p>{par}
<h2>Parameter importance</h2><p>fANOVA-style first-order importances on a GP surrogate of the complete trials.</p>{imps}
<h2>Trials</h2>{table}
<h2>Sample outputs</h2><p>The first dev inputs, the chosen model's outputs and their references.</p>{samples}
<h2>Data</h2>{data}
</body></html>
"#,
            name = esc(&self.name),
            metric = self.metric,
            scores = self.scores_section(),
            hist = plots::history(&self.trials, &self.metric, self.extended()),
            any = plots::anytime(
                &self.trials,
                &self.metric,
                self.extended_at(),
                self.extension_loss(),
                self.chosen,
                self.baseline
                    .as_ref()
                    .map(|(n, f)| (n.as_str(), f.as_slice())),
            ),
            rung_note = if mf {
                "; below it, every rung's dev loss against time, the rungs of a promoted trial joined (and the extension after the brackets, if any, at the end of its trial's path)"
            } else {
                ""
            },
            curv = plots::curves(&self.trials, self.chosen, mf),
            par = plots::parallel(&self.trials, &params),
            imps = plots::importances(&imp),
            table = self.table(&params),
            samples = self.samples_section(),
            data = self.data_section(),
        )
    }
}

/// Draws `run`'s report into `run/report.html`; returns its path and what was left
/// out.
///
/// # Errors
/// I/O errors writing the file.
pub fn write_report(run: &RunDir) -> Result<(PathBuf, Vec<String>)> {
    Report::from_dir(run).write(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(number(0.001), "1e-3");
        assert_eq!(number(0.0024494897), "2.449e-3");
        assert_eq!(number(2.5), "2.5");
        assert_eq!(number(0.17), "0.17");
        assert_eq!(number(1.5333), "1.533");
        assert_eq!(number(32.0), "32");
        assert_eq!(number(123456.0), "1.235e5");
        assert_eq!(value(&ParamValue::Float(64.0)), "64");
    }
}
