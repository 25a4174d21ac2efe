//! The self-contained HTML report of a run: the optimisation history, parameter
//! importances, learning curves (pruned trials dashed), the trial table, the
//! cleaning counts and the final scores; plots are inline SVG, no scripts.

use std::fmt::Write as _;

use autoglm_tune::{param_importances, Direction, FrozenTrial, TrialState};

use crate::data::DataReport;
use crate::search::Evaluation;

const W: f64 = 640.0;
const H: f64 = 260.0;
const PAD: f64 = 40.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Maps data ranges onto the plot area.
struct Frame {
    x: (f64, f64),
    y: (f64, f64),
}

impl Frame {
    fn new(xs: impl Iterator<Item = f64> + Clone, ys: impl Iterator<Item = f64> + Clone) -> Frame {
        let span = |it: &mut dyn Iterator<Item = f64>| {
            let (lo, hi) = it.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
                (a.min(v), b.max(v))
            });
            if lo.is_finite() && hi > lo {
                (lo, hi)
            } else if lo.is_finite() {
                (lo - 1.0, lo + 1.0)
            } else {
                (0.0, 1.0)
            }
        };
        Frame {
            x: span(&mut xs.clone()),
            y: span(&mut ys.clone()),
        }
    }

    fn px(&self, x: f64) -> f64 {
        PAD + (x - self.x.0) / (self.x.1 - self.x.0) * (W - 2.0 * PAD)
    }

    fn py(&self, y: f64) -> f64 {
        H - PAD - (y - self.y.0) / (self.y.1 - self.y.0) * (H - 2.0 * PAD)
    }

    fn axes(&self, svg: &mut String, xlabel: &str, ylabel: &str) {
        let _ = write!(
            svg,
            r##"<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="#444"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="#444"/>
<text x="{cx}" y="{ly}" text-anchor="middle">{xlabel}</text><text x="12" y="{cy}" transform="rotate(-90 12 {cy})" text-anchor="middle">{ylabel}</text>
<text x="{PAD}" y="{ty}" text-anchor="start">{x0:.3}</text><text x="{r}" y="{ty}" text-anchor="end">{x1:.3}</text>
<text x="{tx}" y="{b}" text-anchor="end">{y0:.3}</text><text x="{tx}" y="{t}" text-anchor="end">{y1:.3}</text>"##,
            b = H - PAD,
            r = W - PAD,
            cx = W / 2.0,
            ly = H - 6.0,
            cy = H / 2.0,
            ty = H - PAD + 14.0,
            tx = PAD - 4.0,
            t = PAD + 4.0,
            x0 = self.x.0,
            x1 = self.x.1,
            y0 = self.y.0,
            y1 = self.y.1,
        );
    }
}

fn svg_open() -> String {
    format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-size="11" font-family="sans-serif">"#
    )
}

/// Dev metric by trial, with the best so far; pruned trials as crosses on the axis.
fn history(trials: &[FrozenTrial]) -> String {
    let done: Vec<(f64, f64)> = trials
        .iter()
        .filter(|t| t.state == TrialState::Complete)
        .filter_map(|t| Some((t.number as f64, t.value()?)))
        .collect();
    let f = Frame::new(
        trials.iter().map(|t| t.number as f64),
        done.iter().map(|p| p.1),
    );
    let mut s = svg_open();
    f.axes(&mut s, "trial", "dev metric");
    let mut best = f64::NEG_INFINITY;
    let mut line = String::new();
    for &(x, y) in &done {
        best = best.max(y);
        let _ = write!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="3.5" fill="#1f77b4"/>"##,
            f.px(x),
            f.py(y)
        );
        let _ = write!(line, "{:.1},{:.1} ", f.px(x), f.py(best));
    }
    let _ = write!(
        s,
        r##"<polyline points="{line}" fill="none" stroke="#d62728"/>"##
    );
    for t in trials.iter().filter(|t| t.state == TrialState::Pruned) {
        let (x, y) = (f.px(t.number as f64), H - PAD);
        let _ = write!(
            s,
            r##"<text x="{x:.1}" y="{y:.1}" fill="#888" text-anchor="middle">×</text>"##
        );
    }
    s + "</svg>"
}

/// Dev loss per evaluation of every trial (the journal holds minus the loss: the
/// study maximises).
fn curves(trials: &[FrozenTrial]) -> String {
    let pts = || {
        trials
            .iter()
            .flat_map(|t| t.intermediate.iter().map(|(&k, &v)| (k as f64, -v)))
    };
    let f = Frame::new(pts().map(|p| p.0), pts().map(|p| p.1));
    let mut s = svg_open();
    f.axes(&mut s, "evaluation", "dev loss");
    let colors = [
        "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
        "#bcbd22", "#17becf",
    ];
    for t in trials {
        let line: String = t
            .intermediate
            .iter()
            .map(|(&k, &v)| format!("{:.1},{:.1} ", f.px(k as f64), f.py(-v)))
            .collect();
        let dash = if t.state == TrialState::Pruned {
            r#" stroke-dasharray="4 3""#
        } else {
            ""
        };
        let _ = write!(
            s,
            r#"<polyline points="{line}" fill="none" stroke="{}"{dash}><title>trial {}</title></polyline>"#,
            colors[t.number as usize % colors.len()],
            t.number
        );
    }
    s + "</svg>"
}

/// Horizontal bars of the parameter importances.
fn importances(imp: &[(String, f64)]) -> String {
    let h = 24.0 * imp.len() as f64 + 20.0;
    let mut s = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-size="11" font-family="sans-serif">"#
    );
    for (i, (name, v)) in imp.iter().enumerate() {
        let y = 10.0 + 24.0 * i as f64;
        let _ = write!(
            s,
            r##"<text x="110" y="{:.1}" text-anchor="end">{}</text><rect x="116" y="{y:.1}" width="{:.1}" height="16" fill="#2ca02c"/><text x="{:.1}" y="{:.1}">{v:.3}</text>"##,
            y + 12.0,
            esc(name),
            v * (W - 200.0),
            120.0 + v * (W - 200.0),
            y + 12.0
        );
    }
    s + "</svg>"
}

/// The whole report.
pub(crate) fn html(
    name: &str,
    trials: &[FrozenTrial],
    data: &DataReport,
    scores: Option<Evaluation>,
) -> String {
    let imp = param_importances(trials, &[Direction::Maximize], 0);
    let mut rows = String::new();
    for t in trials {
        let o = t.user_attrs.get("outcome");
        let get = |k: &str| {
            o.and_then(|o| o.get(k))
                .cloned()
                .unwrap_or(serde_json::Value::Null)
        };
        let _ = write!(
            rows,
            "<tr><td>{}</td><td>{:?}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            t.number,
            t.state,
            t.value().map_or("–".into(), |v| format!("{v:.3}")),
            get("steps"),
            get("parameters"),
            get("ms_per_token").as_f64().map_or("–".into(), |v| format!("{v:.3}")),
            get("seconds").as_f64().map_or("–".into(), |v| format!("{v:.0}")),
            esc(&serde_json::to_string(&t.params).unwrap_or_default()),
        );
    }
    let mut clean = String::new();
    for (split, rep) in [
        ("train", Some(&data.train)),
        ("dev", data.dev.as_ref()),
        ("test", data.test.as_ref()),
    ] {
        let Some(rep) = rep else { continue };
        let _ = write!(
            clean,
            "<tr><td>{split}</td><td>{}</td><td>rows read</td><td>{}</td><td>kept</td></tr><tr><td></td><td>{}</td><td>malformed</td><td>{}</td><td>missing field</td></tr>",
            rep.rows, rep.cleaning.kept, rep.malformed, rep.missing_field
        );
        for r in &rep.cleaning.rules {
            let _ = write!(
                clean,
                "<tr><td></td><td>{}</td><td>changed by <code>{}</code></td><td>{}</td><td>rejected</td></tr>",
                r.changed,
                esc(&r.rule),
                r.rejected
            );
        }
    }
    let scores = scores.map_or(String::from("<p>Not evaluated yet.</p>"), |e| {
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
                    "model, dev (all): {} beams, length penalty {}{chosen}",
                    d.num_beams.values()[0],
                    d.length_penalty.values()[0]
                ),
                *x,
            );
        }
        format!(
            "<table><tr><th></th><th>BLEU</th><th>ROUGE-L</th></tr>{tried}{}{}{}{}</table>",
            row("model, dev (all)", e.dev),
            row("model, test", e.test),
            row("nearest-neighbour retrieval, dev", e.retrieval_dev),
            row("nearest-neighbour retrieval, test", e.retrieval_test)
        )
    });
    format!(
        r#"<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>autoglm: {name}</title>
<style>body{{font-family:sans-serif;max-width:980px;margin:2em auto}}table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:2px 6px;font-size:12px}}</style></head>
<body><h1>autoglm run: {name}</h1>
<h2>Scores of the chosen model</h2>{scores}
<h2>Optimisation history</h2><p>Dev metric of each complete trial (dots), best so far (line), pruned trials (×).</p>{hist}
<h2>Learning curves</h2><p>Dev loss at each evaluation; pruned trials dashed.</p>{curv}
<h2>Parameter importance</h2><p>fANOVA-style first-order importances on a GP surrogate of the complete trials.</p>{imps}
<h2>Trials</h2><table><tr><th>#</th><th>state</th><th>dev</th><th>steps</th><th>parameters</th><th>ms/token</th><th>s</th><th>settings</th></tr>{rows}</table>
<h2>Data</h2><p>{tr} training rows, {dv} dev items ({dr} references), {te} test inputs; {q} rows in the quarantine.</p><table>{clean}</table>
</body></html>
"#,
        name = esc(name),
        hist = history(trials),
        curv = curves(trials),
        imps = importances(&imp),
        tr = data.train_rows,
        dv = data.dev_items,
        dr = data.dev_references,
        te = data.test_items,
        q = data.quarantined,
    )
}
