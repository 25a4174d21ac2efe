//! The run report (`report.html`): drawn from the run directory alone, its plots
//! have axis titles and legends, its trial table shows no internal values, it fits
//! a 1280-pixel window (checked in a real headless Chromium when one is installed;
//! `AUTOGLM_REQUIRE_BROWSER=1`, as CI sets, makes a missing browser a failure), and a
//! damaged journal still gives a report that says what it left out.

use std::path::Path;
use std::process::Command;

use autoglm::{AutoTrainer, RunDir};

/// A multi-fidelity search (one bracket: 9 trials, 3 promoted, 1 to the top) on a
/// small corpus, evaluated, exported into the run directory and reported.
fn run(dir: &Path) -> RunDir {
    autoglm::quickstart::write_corpus(&dir.join("data"), 150, 6, 4, 11).unwrap();
    let path = dir.join("task.yaml");
    std::fs::write(
        &path,
        "name: report
data: {input: meaning, target: text, train: data/train.jsonl, dev: data/dev.jsonl, test: {file: data/test.jsonl}}
tokenizer: {vocab_size: 300}
model: {layers: {low: 1, high: 2}, hidden: [16, 32], heads: 2, kv_heads: 1, mlp_ratio: 2.0}
training: {lr: {low: 1.0e-3, high: 1.0e-2, log: true}, batch_size: 4, epochs: 7.2, warmup: 0.2}
search: {seed: 3, threads: 1, trials: 50, metric: rouge_l, decoding: {max_new_tokens: 8, num_beams: 1}, hyperband: {min_epochs: 0.8, eta: 3, brackets: 1}}
",
    )
    .unwrap();
    let mut at = AutoTrainer::from_yaml(&path).unwrap();
    at.search(|_| {}).unwrap();
    at.evaluate().unwrap();
    at.export(&at.run_dir().model()).unwrap();
    at.write_report().unwrap();
    at.run_dir().clone()
}

/// The text of every `<td>` of the table after heading `h2`.
fn cells<'a>(html: &'a str, h2: &str) -> Vec<&'a str> {
    let start = html.find(&format!("<h2>{h2}</h2>")).unwrap();
    let table = &html[start..start + html[start..].find("</table>").unwrap()];
    table
        .split("<td")
        .skip(1)
        .map(|c| {
            let c = &c[c.find('>').unwrap() + 1..];
            &c[..c.find("</td>").unwrap_or(c.len())]
        })
        .collect()
}

/// The SVG after heading `h2`.
fn plot<'a>(html: &'a str, h2: &str) -> &'a str {
    let start = html.find(&format!("<h2>{h2}</h2>")).unwrap();
    let svg = start + html[start..].find("<svg").unwrap();
    &html[svg..svg + html[svg..].find("</svg>").unwrap()]
}

/// The contents of the `<text>` elements of an SVG.
fn texts(svg: &str) -> Vec<String> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let t = &t[t.find('>').unwrap() + 1..];
            t[..t.find("</text>").unwrap()].trim().to_string()
        })
        .collect()
}

/// What every report must hold, whatever the search: nothing left out, no internal
/// value in the trial table, axis titles and legends on the plots, and a layout that
/// fits a 1280-pixel window in a real browser. `metric` is the dev metric's name.
fn check_report(run: &RunDir, metric: &str) -> String {
    let html = std::fs::read_to_string(run.report()).unwrap();
    assert!(
        !html.contains("Left out of this report"),
        "a complete run leaves nothing out"
    );
    // The trial table: states spelled out, no negative (internal) value anywhere.
    let table = cells(&html, "Trials");
    assert!(!table.is_empty());
    for c in &table {
        assert!(
            !c.starts_with('-') && !c.starts_with('−') && !c.contains(": -"),
            "{c}"
        );
    }
    assert!(table.iter().any(|c| c.starts_with("complete")), "{table:?}");
    assert!(html.contains("<th>lr (log)</th>") && html.contains("<th>layers</th>"));
    // Axis titles and legends.
    let hist = texts(plot(&html, "Optimisation history"));
    for t in ["trial number", metric, "best so far", "complete trial"] {
        assert!(hist.iter().any(|x| x == t), "{t}: {hist:?}");
    }
    // Trial numbers on an integer axis: no tick label between two trials.
    assert!(
        hist.iter()
            .all(|x| !(x.ends_with(".5") && x.parse::<f64>().is_ok_and(|v| v >= 1.0))),
        "{hist:?}"
    );
    let any = texts(plot(&html, "Anytime curve"));
    for t in [
        "seconds since the search started",
        metric,
        "incumbent (best so far)",
        "full-length trial",
    ] {
        assert!(any.iter().any(|x| x == t), "{t}: {any:?}");
    }
    let curves = texts(plot(&html, "Learning curves"));
    for t in ["dev loss (lower is better)", "chosen trial"] {
        assert!(curves.iter().any(|x| x == t), "{t}: {curves:?}");
    }
    assert!(
        curves
            .iter()
            .any(|x| x == "evaluation" || x == "training budget (budget units)"),
        "no x-axis title: {curves:?}"
    );
    let par = texts(plot(&html, "Parallel coordinates"));
    for t in ["lr (log)", "layers"] {
        assert!(par.iter().any(|x| x == t), "{t}: {par:?}");
    }
    assert!(
        par.iter().any(|x| x.starts_with("complete trial (colour")),
        "{par:?}"
    );
    // Importances need a few complete trials; without them the section says so.
    let start = html.find("<h2>Parameter importance</h2>").unwrap();
    let section = &html[start..start + html[start..].find("<h2>Trials</h2>").unwrap()];
    if section.contains("<svg") {
        let imp = texts(plot(&html, "Parameter importance"));
        assert!(imp.iter().any(|x| x == "searched parameter"), "{imp:?}");
    }
    // Sample outputs beside their references.
    assert!(cells(&html, "Sample outputs").len() >= 3);
    check_layout(run, &html);
    html
}

/// The page fits a 1280-pixel window in a real headless Chromium (a missing browser
/// fails only when `AUTOGLM_REQUIRE_BROWSER` is set).
fn check_layout(run: &RunDir, html: &str) {
    let browser = ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        });
    let Some(b) = browser else {
        assert!(
            std::env::var("AUTOGLM_REQUIRE_BROWSER").is_err(),
            "no chromium to check the layout with"
        );
        return;
    };
    let probe = run.root().join("probe.html");
    std::fs::write(
        &probe,
        html.replace(
            "</body>",
            "<script>document.title='width '+document.documentElement.scrollWidth+' of '+document.documentElement.clientWidth;</script></body>",
        ),
    )
    .unwrap();
    let out = Command::new(b)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,900",
            "--dump-dom",
        ])
        .arg(format!("file://{}", probe.display()))
        .output()
        .unwrap();
    let dom = String::from_utf8_lossy(&out.stdout);
    let title = &dom[dom.find("<title>width ").expect("the probe ran") + 13..];
    let (w, of) = title[..title.find("</title>").unwrap()]
        .split_once(" of ")
        .unwrap();
    let (w, of): (u32, u32) = (w.parse().unwrap(), of.parse().unwrap());
    assert!(w <= of, "the page is {w} px wide in a {of} px window");
}

#[test]
fn the_report_names_what_it_shows_and_hides_internal_values() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(dir.path());
    let html = check_report(&run, "dev ROUGE-L");
    // Multi-fidelity: a pruned trial's last rung with its dev loss, every rung
    // against time, the budget on the learning curves' axis.
    let table = cells(&html, "Trials");
    assert!(table.iter().any(|c| c.starts_with("pruned")), "{table:?}");
    assert!(
        table.iter().any(|c| c.contains("units: dev loss")),
        "{table:?}"
    );
    let start = html.find("<h2>Anytime curve</h2>").unwrap();
    let any = &html[start..html.find("<h2>Optimisation history</h2>").unwrap()];
    assert_eq!(any.matches("<svg").count(), 2, "{any}");
    let any = texts(any);
    for t in [
        "dev loss at the rung (lower is better)",
        "rungs of a promoted trial",
        "rung of a trial stopped there",
    ] {
        assert!(any.iter().any(|x| x == t), "{t}: {any:?}");
    }
    let curves = texts(plot(&html, "Learning curves"));
    for t in [
        "training budget (budget units)",
        "pruned trial",
        "chosen trial",
    ] {
        assert!(curves.iter().any(|x| x == t), "{t}: {curves:?}");
    }
    let par = texts(plot(&html, "Parallel coordinates"));
    assert!(par.iter().any(|x| x == "pruned or failed trial"), "{par:?}");
}

/// The quickstart itself (`examples/quickstart.yaml`, as `autoglm run` runs it), its
/// report checked as above. About 2–3 minutes in the test profile: ignored by
/// default; `.ci/run` runs it (`cargo test -p autoglm --test report -- --ignored`).
#[test]
#[ignore = "runs the whole quickstart (minutes); CI runs it with --ignored"]
fn the_quickstart_report_passes_the_same_checks() {
    let dir = tempfile::tempdir().unwrap();
    let yaml = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/quickstart.yaml");
    let mut task = autoglm::Task::from_yaml_file(&yaml).unwrap();
    task.output = Some(dir.path().join("run"));
    let mut at = AutoTrainer::new(task).unwrap();
    at.search(|_| {}).unwrap();
    at.evaluate().unwrap();
    at.export(&at.run_dir().model()).unwrap();
    at.write_report().unwrap();
    let run = at.run_dir().clone();
    let html = check_report(&run, "dev BLEU");
    let size = html.len();
    assert!(size < 2_000_000, "{size} bytes");
}

/// Another run's incumbent (random search on the same task, say) drawn beside the
/// anytime curve; a baseline without timings is named as left out.
#[test]
fn a_baseline_run_is_drawn_beside_the_anytime_curve() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (run, base) = (run(a.path()), run(b.path()));
    let html = autoglm::Report::from_dir(&run).with_baseline(&base).html();
    let start = html.find("<h2>Anytime curve</h2>").unwrap();
    let any = texts(&html[start..html.find("<h2>Optimisation history</h2>").unwrap()]);
    let name = format!(
        "incumbent of {}",
        base.root().file_name().unwrap().to_string_lossy()
    );
    assert!(any.contains(&name), "{name}: {any:?}");
    // A run directory's own `baseline/` (here a copy, named by its task) is drawn
    // without being asked for.
    let own = run.baseline();
    std::fs::create_dir_all(own.model()).unwrap();
    for f in [base.journal(), base.model().join("autoglm.json")] {
        let to = own.root().join(f.strip_prefix(base.root()).unwrap());
        let json = std::fs::read_to_string(&f).unwrap();
        std::fs::write(
            to,
            json.replace("\"name\": \"report\"", "\"name\": \"random\""),
        )
        .unwrap();
    }
    let html = autoglm::Report::from_dir(&run).html();
    let start = html.find("<h2>Anytime curve</h2>").unwrap();
    let any = texts(&html[start..html.find("<h2>Optimisation history</h2>").unwrap()]);
    assert!(any.contains(&"incumbent of random".to_string()), "{any:?}");
    std::fs::remove_file(base.journal()).unwrap();
    let report = autoglm::Report::from_dir(&run).with_baseline(&base);
    assert!(
        report
            .missing()
            .iter()
            .any(|m| m.contains("the baseline has no timed full-length model")),
        "{:?}",
        report.missing()
    );
}

#[test]
fn a_damaged_journal_still_gives_a_report_that_says_what_it_left_out() {
    let dir = tempfile::tempdir().unwrap();
    let run = run(dir.path());
    let journal = std::fs::read_to_string(run.journal()).unwrap();
    let lines: Vec<&str> = journal.lines().collect();
    // Cut in the middle of its last line (a run killed while writing, or going on).
    let cut = journal.len() - lines.last().unwrap().len() / 2 - 1;
    std::fs::write(run.journal(), &journal[..cut]).unwrap();
    let (path, missing) = autoglm::write_report(&run).unwrap();
    assert!(
        missing.iter().any(|m| m.contains("torn last line")),
        "{missing:?}"
    );
    let html = std::fs::read_to_string(path).unwrap();
    assert!(html.contains("Left out of this report") && html.contains("torn last line"));
    assert!(!cells(&html, "Trials").is_empty());
    // A line in the middle that is not an event: the trials before it are shown.
    let mut bad = lines.clone();
    bad[lines.len() / 2] = "{\"op\": \"nonsense\"}";
    std::fs::write(run.journal(), bad.join("\n") + "\n").unwrap();
    let (_, missing) = autoglm::write_report(&run).unwrap();
    assert!(
        missing.iter().any(
            |m| m.contains(&format!("study.jsonl:{}:", lines.len() / 2 + 1))
                && m.contains("left out")
        ),
        "{missing:?}"
    );
    // No journal, no scores: a page that says so.
    std::fs::remove_file(run.journal()).unwrap();
    std::fs::remove_file(run.scores()).unwrap();
    let (path, missing) = autoglm::write_report(&run).unwrap();
    assert!(
        missing.iter().any(|m| m.contains("no journal")),
        "{missing:?}"
    );
    let html = std::fs::read_to_string(path).unwrap();
    assert!(html.contains("Not evaluated yet") && html.contains("No trials yet"));
}
