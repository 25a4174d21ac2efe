//! The `autoglm` command line, driven in-process through `autoglm_cli::run`.

use std::path::{Path, PathBuf};

use autoglm_cli::{run, Cli};
use clap::Parser;
use serde_json::Value;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/data/e2e")
        .join(name)
}

fn autoglm(args: &[&str]) -> anyhow::Result<String> {
    let cli = Cli::try_parse_from(std::iter::once("autoglm").chain(args.iter().copied()))?;
    let mut out = Vec::new();
    run(cli, &mut out)?;
    Ok(String::from_utf8(out)?)
}

fn json(args: &[&str]) -> Value {
    serde_json::from_str(&autoglm(args).unwrap()).unwrap()
}

/// `autoglm eval METRIC --hyp examples/data/e2e/HYP --refs-jsonl …/refs.jsonl --json EXTRA…`
fn e2e_json(metric: &str, hyp: &str, extra: &[&str]) -> Value {
    let (h, r) = (data(hyp), data("refs.jsonl"));
    let mut args = vec![
        "eval",
        metric,
        "--hyp",
        h.to_str().unwrap(),
        "--refs-jsonl",
        r.to_str().unwrap(),
        "--json",
    ];
    args.extend_from_slice(extra);
    json(&args)
}

#[test]
fn bleu_json_matches_the_library_and_sacrebleu_layout() {
    let hyp = data("slug.txt");
    let refs = data("refs.jsonl");
    let v = json(&[
        "eval",
        "bleu",
        "--hyp",
        hyp.to_str().unwrap(),
        "--refs-jsonl",
        refs.to_str().unwrap(),
        "--json",
        "--sentence",
    ]);
    assert_eq!(
        v["signature"],
        "nrefs:var|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    );
    assert_eq!(v["name"], "BLEU");
    assert_eq!(v["lines"].as_array().unwrap().len(), 100);
    for k in [
        "counts",
        "totals",
        "precisions",
        "bp",
        "sys_len",
        "ref_len",
        "autoglm_eval_version",
    ] {
        assert!(v.get(k).is_some(), "{k}");
    }
    let hyps: Vec<String> = std::fs::read_to_string(&hyp)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    let r: Vec<Vec<String>> = std::fs::read_to_string(&refs)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let lib = autoglm_eval::corpus_bleu(&hyps, &r, &Default::default()).unwrap();
    assert_eq!(v["score"].as_f64().unwrap(), lib.score);
}

#[test]
fn text_output_is_sacrebleus() {
    let out = autoglm(&[
        "eval",
        "chrf",
        "--hyp",
        data("tgen.txt").to_str().unwrap(),
        "--refs-jsonl",
        data("refs.jsonl").to_str().unwrap(),
        "--chrf-word-order",
        "2",
    ])
    .unwrap();
    assert!(
        out.starts_with("chrF2++|nrefs:var|case:mixed|eff:yes|nc:6|nw:2|space:no|version:2.6.0 = "),
        "{out}"
    );
}

#[test]
fn reference_files_and_jsonl_agree() {
    let dir = tempfile::tempdir().unwrap();
    let (h, a, b, j) = (
        dir.path().join("h"),
        dir.path().join("a"),
        dir.path().join("b"),
        dir.path().join("r.jsonl"),
    );
    std::fs::write(&h, "the cat sat\n\na dog\n").unwrap();
    std::fs::write(&a, "the cat sat down\nnothing\nthe dog\n").unwrap();
    std::fs::write(&b, "a cat sat\n\na dog barked\n").unwrap();
    std::fs::write(&j, "[\"the cat sat down\", \"a cat sat\"]\n[\"nothing\", \"\"]\n[\"the dog\", \"a dog barked\"]\n").unwrap();
    for m in ["bleu", "chrf", "ter", "rouge"] {
        let x = json(&[
            "eval",
            m,
            "--hyp",
            h.to_str().unwrap(),
            "--ref",
            a.to_str().unwrap(),
            "--ref",
            b.to_str().unwrap(),
            "--json",
        ]);
        let y = json(&[
            "eval",
            m,
            "--hyp",
            h.to_str().unwrap(),
            "--refs-jsonl",
            j.to_str().unwrap(),
            "--json",
        ]);
        assert_eq!(x, y, "{m}");
    }
}

#[test]
fn errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let (h, r, bad) = (
        dir.path().join("h.txt"),
        dir.path().join("r.txt"),
        dir.path().join("bad.txt"),
    );
    std::fs::write(&h, "a\nb\n").unwrap();
    std::fs::write(&r, "a\n").unwrap();
    std::fs::write(&bad, b"ok\n\xc3\x28\n").unwrap();
    let e = autoglm(&[
        "eval",
        "bleu",
        "--hyp",
        h.to_str().unwrap(),
        "--ref",
        r.to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(
        e.to_string().contains("h.txt has 2 lines but") && e.to_string().contains("r.txt has 1"),
        "{e}"
    );
    let e = autoglm(&[
        "eval",
        "ter",
        "--hyp",
        bad.to_str().unwrap(),
        "--ref",
        r.to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("bad.txt:2: invalid UTF-8"), "{e}");
    let e = autoglm(&["eval", "rouge", "--hyp", h.to_str().unwrap()]).unwrap_err();
    assert!(e.to_string().contains("no references"), "{e}");
    let e = autoglm(&[
        "eval",
        "bleu",
        "--hyp",
        dir.path().join("missing").to_str().unwrap(),
        "--ref",
        r.to_str().unwrap(),
    ])
    .unwrap_err();
    assert!(e.to_string().contains("missing"), "{e}");
    let e = autoglm(&[
        "eval",
        "bleu",
        "--hyp",
        h.to_str().unwrap(),
        "--ref",
        r.to_str().unwrap(),
        "--tokenize",
        "moses",
    ])
    .unwrap_err();
    assert!(e.to_string().contains("unknown tokenize 'moses'"), "{e}");
}

#[test]
fn rouge_json_has_one_object_per_type_and_bootstrap() {
    let v = e2e_json(
        "rouge",
        "slug.txt",
        &["--stem", "--bootstrap", "200", "--sentence"],
    );
    for t in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
        let f = v[t]["fmeasure"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&f));
        let mid = v[t]["bootstrap"]["mid"]["fmeasure"].as_f64().unwrap();
        assert!((mid - f).abs() < 0.02, "{t}: {mid} vs {f}");
    }
    assert_eq!(v["lines"].as_array().unwrap().len(), 100);
}

#[test]
fn paired_test_against_a_baseline() {
    let tgen = data("tgen.txt");
    let tgen = tgen.to_str().unwrap();
    let v = e2e_json(
        "bleu",
        "slug.txt",
        &["--baseline", tgen, "--paired-bs-n", "300"],
    );
    assert_eq!(
        v["signature"],
        "nrefs:var|bs:300|seed:12345|case:mixed|eff:no|tok:13a|smooth:exp|version:2.6.0"
    );
    let p = v["paired"]["p_value"].as_f64().unwrap();
    assert!(p > 0.0 && p <= 1.0);
    let v = e2e_json(
        "ter",
        "slug.txt",
        &["--baseline", tgen, "--paired-ar", "--paired-ar-n", "200"],
    );
    assert_eq!(
        v["signature"],
        "nrefs:var|ar:200|seed:12345|case:lc|tok:tercom|norm:no|punct:yes|asian:no|version:2.6.0"
    );
}

#[test]
fn rouge_paired_test_against_a_baseline() {
    let tgen = data("tgen.txt");
    let v = e2e_json(
        "rouge",
        "slug.txt",
        &["--baseline", tgen.to_str().unwrap(), "--paired-bs-n", "300"],
    );
    let bl = e2e_json("rouge", "tgen.txt", &[]);
    for t in ["rouge1", "rouge2", "rougeL", "rougeLsum"] {
        let p = &v[t]["paired"];
        assert_eq!(p["baseline_score"], bl[t]["fmeasure"], "{t}");
        let pv = p["p_value"].as_f64().unwrap();
        assert!(pv > 0.0 && pv <= 1.0, "{t}: {pv}");
        let (mean, ci) = (
            p["system_mean"].as_f64().unwrap(),
            p["system_ci"].as_f64().unwrap(),
        );
        let f = v[t]["fmeasure"].as_f64().unwrap();
        assert!(
            (mean - f).abs() < ci && ci > 0.0,
            "{t}: {mean} ± {ci} vs {f}"
        );
    }
    assert_eq!(v["meta"]["paired_test"]["n"], 300);
    assert_eq!(v["meta"]["paired_test"]["test"], "bs");
    let v = e2e_json(
        "rouge",
        "slug.txt",
        &[
            "--baseline",
            tgen.to_str().unwrap(),
            "--paired-ar",
            "--paired-ar-n",
            "200",
        ],
    );
    assert!(v["rougeL"]["paired"]["system_ci"].is_null());
    assert_eq!(v["meta"]["paired_test"]["test"], "ar");
}

#[test]
fn parallel_jobs_give_identical_results() {
    for m in ["bleu", "chrf", "ter", "rouge"] {
        let a = e2e_json(m, "tgen.txt", &["--sentence"]);
        let b = e2e_json(m, "tgen.txt", &["--sentence", "--jobs", "2"]);
        assert_eq!(a, b, "{m}");
    }
}

#[test]
fn graph_verify_rules_checks_builtin_and_user_rules() {
    let rules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/rules/user.rules");
    let text = autoglm(&[
        "graph",
        "verify-rules",
        rules.to_str().unwrap(),
        "--builtin",
    ])
    .unwrap();
    assert!(text.contains("ok   fuse_layer_norm_gelu"), "{text}");
    assert!(text.contains("ok   double_neg"), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.rules");
    // Wrong rules: plainly, and only off its domain (exp(log x) is NaN for x < 0).
    std::fs::write(
        &bad,
        "# wrong on purpose\nwrong: (gelu ?x) => (relu ?x)\nexp_log: (exp (log ?x)) => ?x\n",
    )
    .unwrap();
    let e = autoglm(&["graph", "verify-rules", bad.to_str().unwrap(), "--json"]).unwrap_err();
    let msg = e.to_string();
    assert!(
        msg.contains("2 of 2 rules failed")
            && msg.contains("wrong (f32)")
            && msg.contains("exp_log (f32)"),
        "{msg}"
    );
    std::fs::write(&bad, "ok: (exp (log ?x)) => ?x\n(gelu ?x) => (frob ?x)\n").unwrap();
    let e = autoglm(&["graph", "verify-rules", bad.to_str().unwrap()]).unwrap_err();
    assert!(
        format!("{e:#}").contains("line 2") && format!("{e:#}").contains("unknown op 'frob'"),
        "{e:#}"
    );
}

#[test]
fn schedule_writes_valid_schedules_and_names_bad_input() {
    let dir = tempfile::tempdir().unwrap();
    let dag = dir.path().join("dag.json");
    let plat = dir.path().join("plat.json");
    std::fs::write(&dag, r#"{"format":"autoglm-dag","version":1,"name":"chain","tasks":[{"id":0,"cost":4},{"id":1,"cost":2}],"edges":[{"src":0,"dst":1,"data":1e6}]}"#).unwrap();
    std::fs::write(&plat, r#"{"format":"autoglm-platform","version":1,"name":"two","workers":[{"id":0,"speed":1},{"id":1,"speed":2}],"bandwidth":1e6,"latency":0.5}"#).unwrap();
    // `autoglm schedule --dag … --platform … <extra>`.
    let schedule = |extra: &[&str]| {
        let mut args = vec![
            "schedule",
            "--dag",
            dag.to_str().unwrap(),
            "--platform",
            plat.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        autoglm(&args)
    };
    for algo in ["heft", "cpop"] {
        let text = schedule(&["--algo", algo]).unwrap();
        let s = autoglm_sched::Schedule::from_json(text.trim()).unwrap();
        // Both on the fast worker: 2 + 1 seconds, no communication.
        assert_eq!(s.makespan(), 3.0, "{algo}: {text}");
    }
    let out = dir.path().join("s.json");
    let line = schedule(&["--out", out.to_str().unwrap()]).unwrap();
    assert!(line.contains("makespan 3.000000 s"), "{line}");
    assert!(out.exists());
    // Replication and the expected makespan under failures are reported; a failure of
    // one of the two workers costs time.
    let text = schedule(&[
        "--out",
        out.to_str().unwrap(),
        "--replicate",
        "0.5",
        "--failures",
        "1",
    ])
    .unwrap();
    assert!(
        text.contains("replication: ") && text.contains("% extra busy time"),
        "{text}"
    );
    let expected: f64 = text
        .split("under 1 failure(s): ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|x| x.parse().ok())
        .unwrap_or_else(|| panic!("{text}"));
    assert!(expected > 3.0, "{text}");
    let e = schedule(&["--replicate=-1"]).unwrap_err();
    assert!(format!("{e:#}").contains("--replicate -1"), "{e:#}");
    // Costs estimated from observed runs when the DAG has none.
    std::fs::write(&dag, r#"{"format":"autoglm-dag","version":1,"name":"nocost","tasks":[{"id":0,"type":"a"},{"id":1,"type":"a"}],"edges":[{"src":0,"dst":1}]}"#).unwrap();
    let e = schedule(&[]).unwrap_err();
    assert!(format!("{e:#}").contains("2 task(s) have no cost"), "{e:#}");
    let hist = dir.path().join("runs.jsonl");
    std::fs::write(&hist, "{\"type\":\"a\",\"worker\":1,\"duration\":0.5}\n").unwrap();
    let text = schedule(&["--history", hist.to_str().unwrap()]).unwrap();
    assert_eq!(
        autoglm_sched::Schedule::from_json(text.trim())
            .unwrap()
            .makespan(),
        1.0
    );
    std::fs::write(&dag, r#"{"format":"autoglm-dag","version":1,"name":"bad","tasks":[{"id":0,"cost":1}],"edges":[{"src":0,"dst":3}]}"#).unwrap();
    let e = schedule(&[]).unwrap_err();
    let msg = format!("{e:#}");
    assert!(
        msg.contains("dag.json") && msg.contains("edge 0->3: unknown task"),
        "{msg}"
    );
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../autoglm-models/tests/fixtures")
        .join(name)
}

/// `forward` writes transformers' logits; `generate` continues text (with the
/// checkpoint's tokenizer) and ids exactly as transformers' greedy `generate` does, one
/// prompt at a time or a file of prompts in batches.
#[test]
fn forward_and_generate_match_transformers() {
    let dir = fixture("glm_gqa_bias");
    let d = dir.to_str().unwrap();
    let exp: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let row: Vec<String> = exp["input_ids"][0]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.to_string())
        .collect();
    let got = json(&["forward", "--model", d, "--input-ids", &row.join(",")]);
    let (t, v) = (row.len(), 320);
    assert_eq!(got["shape"], serde_json::json!([t, v]));
    let want = &exp["logits"]["data"].as_array().unwrap()[..t * v];
    for (g, w) in got["logits"].as_array().unwrap().iter().zip(want) {
        assert!((g.as_f64().unwrap() - w.as_f64().unwrap()).abs() < 1e-4);
    }
    let greedy = &exp["greedy"];
    let text = autoglm(&[
        "generate",
        "--model",
        d,
        "--prompt",
        greedy["prompt_text"].as_str().unwrap(),
        "--max-new-tokens",
        "12",
        "--ignore-eos",
    ])
    .unwrap();
    assert_eq!(text.trim_end(), greedy["output_text"].as_str().unwrap());
    let ids = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|x| x.to_string())
            .collect()
    };
    let prompt = ids(&greedy["prompt_ids"]).join(",");
    let want_ids = ids(&greedy["output_ids"]).join(",");
    let streamed = autoglm(&[
        "generate",
        "--model",
        d,
        "--prompt-ids",
        &prompt,
        "--max-new-tokens",
        "12",
        "--ignore-eos",
    ])
    .unwrap();
    assert_eq!(streamed.trim_end(), want_ids);
    // A file of prompts, batched in twos: the known one in the middle.
    let tmp = tempfile::tempdir().unwrap();
    let (input, output) = (tmp.path().join("in.txt"), tmp.path().join("out.txt"));
    std::fs::write(&input, format!("5,6,7\n{prompt}\n300,2,9,9\n")).unwrap();
    autoglm(&[
        "generate",
        "--model",
        d,
        "--input-file",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
        "--ids",
        "--batch-size",
        "2",
        "--max-new-tokens",
        "12",
        "--ignore-eos",
    ])
    .unwrap();
    let lines: Vec<String> = std::fs::read_to_string(&output)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1], want_ids);
    // Errors name what is wrong.
    let e = autoglm(&["forward", "--model", d, "--input-ids", "1,999"]).unwrap_err();
    assert!(format!("{e:#}").contains("999"), "{e:#}");
    let no_tok = fixture("glm4_mqa");
    let e = autoglm(&[
        "generate",
        "--model",
        no_tok.to_str().unwrap(),
        "--prompt",
        "x",
    ])
    .unwrap_err();
    assert!(format!("{e:#}").contains("tokenizer.json"), "{e:#}");
    let e = autoglm(&[
        "forward",
        "--model",
        tmp.path().to_str().unwrap(),
        "--input-ids",
        "1",
    ])
    .unwrap_err();
    assert!(format!("{e:#}").contains("config.json"), "{e:#}");
}

/// What `generate` streams is, byte for byte, the whole continuation decoded at once
/// (text) or its ids joined by commas, then a newline — sampled continuations of
/// the random-weight fixture are mostly byte-level tokens that split characters, so
/// the hold-back is exercised.
#[test]
fn generate_streams_exactly_the_whole_decoded_continuation() {
    use autoglm_models::{GenerationOptions, LoadOptions, Model, TextTokenizer};
    let dir = fixture("glm_gqa_bias");
    let d = dir.to_str().unwrap();
    let tok = TextTokenizer::from_dir(&dir).unwrap().unwrap();
    let mut m = Model::load(&dir, &LoadOptions::default()).unwrap();
    let mut split = 0;
    for seed in 0..6u64 {
        let opts = GenerationOptions {
            max_new_tokens: 24,
            temperature: 1.0,
            seed,
            ignore_eos: true,
            ..GenerationOptions::default()
        };
        let prompt = tok.encode("café 日本").unwrap();
        let new = m
            .generate(&[prompt], &opts, |_, _| {})
            .unwrap()
            .swap_remove(0);
        let text = tok.decode(&new).unwrap();
        split += usize::from(text.contains('\u{FFFD}') || !text.is_ascii());
        let seed_s = seed.to_string();
        let args = [
            "generate",
            "--model",
            d,
            "--prompt",
            "café 日本",
            "--max-new-tokens",
            "24",
            "--temperature",
            "1",
            "--seed",
            &seed_s,
            "--ignore-eos",
        ];
        assert_eq!(autoglm(&args).unwrap(), format!("{text}\n"), "seed {seed}");
        let ids = tok.encode("café 日本").unwrap();
        let ids: Vec<String> = ids.iter().map(u32::to_string).collect();
        let mut args = args.to_vec();
        args[3] = "--prompt-ids";
        let joined = ids.join(",");
        args[4] = &joined;
        let want: Vec<String> = new.iter().map(u32::to_string).collect();
        assert_eq!(autoglm(&args).unwrap(), format!("{}\n", want.join(",")));
    }
    assert!(split > 0, "no continuation had multi-byte text");
}

/// `autoglm train` on text rows (the fixture's tokenizer), then a run killed
/// (SIGKILL) after its first checkpoints and resumed with `--resume`: the resumed
/// `losses.jsonl` equals an uninterrupted run's, and the trained model loads.
#[test]
fn train_writes_losses_and_a_killed_run_resumes_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let model = fixture("glm_gqa_bias");
    let data = dir.path().join("train.jsonl");
    let rows: String = [
        "The Eagle is a coffee shop near Burger King.",
        "Zizzi serves Italian food in the city centre.",
        "The Mill is a pub with a low customer rating.",
        "Aromi is a family friendly coffee shop by the river.",
        "Cotto is a cheap restaurant near The Portland Arms.",
    ]
    .iter()
    .map(|t| format!("{}\n", serde_json::json!({ "text": t })))
    .collect();
    std::fs::write(&data, rows).unwrap();
    let train = |out: &Path, steps: &str, extra: &[&str]| -> std::process::Command {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_autoglm"));
        c.args([
            "train",
            "--model",
            model.to_str().unwrap(),
            "--data",
            data.to_str().unwrap(),
        ])
        .args([
            "--output",
            out.to_str().unwrap(),
            "--steps",
            steps,
            "--batch-size",
            "2",
        ])
        .args([
            "--lr",
            "1e-3",
            "--schedule",
            "cosine",
            "--warmup-steps",
            "3",
            "--clip-norm",
            "1",
        ])
        .args(["--seed", "3"])
        .args(extra)
        .stdout(std::process::Stdio::null());
        c
    };
    let steps = "120";
    let full = dir.path().join("full");
    assert!(train(&full, steps, &[]).status().unwrap().success());
    let losses = |d: &Path| std::fs::read_to_string(d.join("losses.jsonl")).unwrap();
    let want = losses(&full);
    assert_eq!(want.lines().count(), 120);
    let first: Value = serde_json::from_str(want.lines().next().unwrap()).unwrap();
    assert_eq!(first["step"], 1);
    assert_eq!(first["lr"], 0.0);
    // The trained model loads and runs.
    let fwd = json(&[
        "forward",
        "--model",
        full.to_str().unwrap(),
        "--input-ids",
        "5,6,7",
    ]);
    assert_eq!(fwd["shape"][0], 3);
    // Kill a run once it has written a checkpoint, then resume it.
    let part = dir.path().join("part");
    let mut child = train(&part, steps, &["--save-every", "10"])
        .spawn()
        .unwrap();
    let t0 = std::time::Instant::now();
    while !part.join("checkpoint-20").exists() && t0.elapsed().as_secs() < 120 {
        if child.try_wait().unwrap().is_some() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().ok();
    child.wait().unwrap();
    let done = losses(&part).lines().count();
    eprintln!("killed after {done} of {steps} steps");
    assert!(done < 120, "the run finished before it was killed");
    let resumed = train(&part, steps, &["--save-every", "10", "--resume"])
        .status()
        .unwrap();
    assert!(resumed.success());
    assert_eq!(losses(&part), want, "the resumed run's losses differ");
    // Mixed precision with gradient checkpointing: the same curve within bf16's
    // precision, f32 weights written.
    let half = dir.path().join("half");
    let ok = train(
        &half,
        "12",
        &["--dtype", "bf16", "--gradient-checkpointing"],
    )
    .status()
    .unwrap();
    assert!(ok.success());
    let got = losses(&half);
    let loss = |l: &str| {
        serde_json::from_str::<Value>(l).unwrap()["loss"]
            .as_f64()
            .unwrap()
    };
    let f32_run = dir.path().join("f32");
    assert!(train(&f32_run, "12", &[]).status().unwrap().success());
    let full12: Vec<f64> = losses(&f32_run).lines().map(loss).collect();
    assert_eq!(full12.len(), 12);
    for (a, b) in got.lines().map(loss).zip(&full12) {
        assert!((a - b).abs() < 0.02 * b, "bf16 {a} vs f32 {b}");
    }
    let fwd = json(&[
        "forward",
        "--model",
        half.to_str().unwrap(),
        "--input-ids",
        "5,6,7",
    ]);
    assert_eq!(fwd["shape"][0], 3);
}

/// `autoglm run` killed (SIGKILL) during its second trial, then rerun: the first
/// trial is not rerun, the interrupted one is rerun with its parameters, the run
/// completes its budget and exports; a malformed task names the line.
#[test]
fn run_killed_mid_trial_resumes_without_rerunning_finished_trials() {
    let dir = tempfile::tempdir().unwrap();
    autoglm::quickstart::write_corpus(&dir.path().join("data"), 600, 10, 10, 9).unwrap();
    let task = dir.path().join("task.yaml");
    std::fs::write(
        &task,
        "name: k
data: {input: meaning, target: text, train: data/train.jsonl, dev: data/dev.jsonl, test: {file: data/test.jsonl}}
tokenizer: {vocab_size: 400}
model: {layers: 1, hidden: [32, 64], heads: 2, kv_heads: 1, mlp_ratio: 2.0}
training: {lr: {low: 2.0e-3, high: 8.0e-3, log: true}, batch_size: 8, epochs: 2.0}
search: {trials: 3, evaluations: 8, threads: 1, pruner: none, decoding: {max_new_tokens: 32}}
",
    )
    .unwrap();
    let out = dir.path().join("out");
    let cmd = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_autoglm"));
        c.args([
            "run",
            task.to_str().unwrap(),
            "--output",
            out.to_str().unwrap(),
        ]);
        c
    };
    let mut child = cmd().stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(child.stdout.take().unwrap()));
    let mut first = Vec::new();
    for l in lines.by_ref() {
        let l = l.unwrap();
        first.push(l.clone());
        if l.starts_with("trial 1: step") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        first.iter().any(|l| l.starts_with("trial 0: complete")),
        "{first:?}"
    );
    let params = |lines: &[String], n: u64| -> String {
        let p = format!("trial {n}: ");
        lines
            .iter()
            .find(|l| l.starts_with(&p) && l.contains('{'))
            .map(|l| l[l.find('{').unwrap()..].to_owned())
            .unwrap()
    };
    let killed = params(&first, 1);
    let again = cmd().output().unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    let text = String::from_utf8(again.stdout).unwrap();
    let second: Vec<String> = text.lines().map(str::to_owned).collect();
    assert!(!second.iter().any(|l| l.starts_with("trial 0:")), "{text}");
    // The interrupted trial's parameters come back first, as a new trial.
    assert_eq!(params(&second, 2), killed, "{text}");
    assert!(
        text.contains("search: 3 complete, 0 pruned, 1 failed"),
        "{text}"
    );
    assert!(out.join("model/model.safetensors").exists() && out.join("report.html").exists());
    // `autoglm report` redraws it, with a baseline run beside it (here itself);
    // directories that do not exist are errors naming them.
    std::fs::remove_file(out.join("report.html")).unwrap();
    let o = out.to_str().unwrap();
    let said = autoglm(&["report", o, "--baseline", o]).unwrap();
    assert!(
        said.contains("report:") && out.join("report.html").exists(),
        "{said}"
    );
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("Anytime curve") && html.contains("incumbent of"));
    let e = autoglm(&["report", "/no/such/run"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("/no/such/run: no such run directory"), "{e}");
    let e = autoglm(&["report", o, "--baseline", "/no/such/run"])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("--baseline /no/such/run: no such run directory"),
        "{e}"
    );
    // A typo in the task names its line.
    std::fs::write(
        &task,
        "name: k\ndata: {input: a, target: b, train: t.jsonl}\nsearch: {trails: 3}\n",
    )
    .unwrap();
    let bad = cmd().output().unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        !bad.status.success() && err.contains("trails") && err.contains("line 3"),
        "{err}"
    );
}

/// A copy of the models crate's GLM fixture at `to` (a model directory to serve).
fn copy_fixture(to: &Path) -> PathBuf {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../autoglm-models/tests/fixtures/glm_gqa_bias");
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(&fixture).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
    to.to_path_buf()
}

/// `autoglm serve` on a free port in one thread, `autoglm bench-serve` against it in
/// another: every request completes with the tokens asked for, and the server stops
/// by itself.
#[test]
fn serve_and_bench_serve() {
    let root = tempfile::tempdir().unwrap();
    let model = copy_fixture(&root.path().join("glm"));
    // A free port: bind, read it, let go.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (m, p) = (model.to_str().unwrap().to_string(), port.to_string());
    let server = std::thread::spawn(move || {
        autoglm(&[
            "serve",
            "--model",
            &m,
            "--port",
            &p,
            "--exit-after-s",
            "8",
            "--kv-cache-mib",
            "4",
        ])
    });
    let url = format!("http://127.0.0.1:{port}");
    let mut up = false;
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            up = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(up, "the server did not come up");
    let out = autoglm(&[
        "bench-serve",
        "--url",
        &url,
        "--mode",
        "closed",
        "--concurrency",
        "3",
        "--max-req",
        "9",
        "--max-s",
        "5",
        "--gen-tokens",
        "8",
        "--prompt-len",
        "5",
        "--vocab",
        "300",
    ])
    .unwrap();
    let s: Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    assert_eq!(
        (
            s["sent"].as_u64(),
            s["completed"].as_u64(),
            s["errors"].as_u64()
        ),
        (Some(9), Some(9), Some(0)),
        "{s}"
    );
    assert!(s["gen_tok_per_s"].as_f64().unwrap() > 0.0);
    let log = server.join().unwrap().unwrap();
    assert!(
        log.contains("listening on http://127.0.0.1:") && log.contains("stopped"),
        "{log}"
    );
    // Bad arguments are errors, not panics.
    assert!(autoglm(&["serve", "--model", "/nonexistent/dir"]).is_err());
    assert!(autoglm(&[
        "serve",
        "--model",
        model.to_str().unwrap(),
        "--policy",
        "fifo"
    ])
    .is_err());
    assert!(autoglm(&["bench-serve", "--url", "ftp://x"]).is_err());
}

/// `serve.yaml` is read (paths relative to it), and bad fields are errors naming them.
#[test]
fn serve_reads_its_yaml() {
    let root = tempfile::tempdir().unwrap();
    copy_fixture(&root.path().join("models/glm"));
    // The example's settings, with this model and a free port.
    let example = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/serve.yaml"),
    )
    .unwrap()
    .replace("port: 8080", "port: 0")
    .replace("runs/quickstart/model", "models/glm");
    let yaml = root.path().join("serve.yaml");
    std::fs::write(&yaml, example).unwrap();
    let out = autoglm(&[
        "serve",
        "--config",
        yaml.to_str().unwrap(),
        "--exit-after-s",
        "0.5",
    ])
    .unwrap();
    assert!(
        out.contains("model quickstart version 1 (models/glm; feedback, loaded)"),
        "{out}"
    );
    assert!(out.contains("stopped"), "{out}");
    assert!(root.path().join("autoglm-registry.json").exists());
    std::fs::write(&yaml, "port: 0\nthreds: 2\n").unwrap();
    let e = autoglm(&["serve", "--config", yaml.to_str().unwrap()])
        .unwrap_err()
        .to_string();
    assert!(e.contains("threds"), "{e}");
}

/// `autoglm quantize` on a checkpoint without a task: round to nearest only, the
/// down projection's 48-wide rows fall back to f16 and are named; the copy loads as
/// stored and `generate --weights` runs any storage.
#[test]
fn quantize_a_plain_checkpoint_and_generate_with_any_storage() {
    let root = tempfile::tempdir().unwrap();
    let model = copy_fixture(&root.path().join("glm"));
    let m = model.to_str().unwrap();
    let q = root.path().join("glm-q8");
    let q_s = q.to_str().unwrap();
    let err = autoglm(&["quantize", "--model", m, "--to", "q8", "--out", q_s]).unwrap_err();
    assert!(err.to_string().contains("--method rtn"), "{err}");
    let said = autoglm(&[
        "quantize", "--model", m, "--to", "q8", "--method", "rtn", "--out", q_s,
    ])
    .unwrap();
    assert!(
        said.contains("as q8_0") && said.contains("down_proj"),
        "{said}"
    );
    let ck = autoglm_models::Checkpoint::open(&q).unwrap();
    assert_eq!(ck.storage().unwrap(), autoglm_models::Storage::Q8_0);
    for (dir, weights) in [(q_s, None), (m, Some("bf16")), (m, Some("q4_0"))] {
        let mut args = vec![
            "generate",
            "--model",
            dir,
            "--prompt-ids",
            "1,2,3",
            "--max-new-tokens",
            "4",
        ];
        if let Some(w) = weights {
            args.extend(["--weights", w]);
        }
        let out = autoglm(&args).unwrap();
        assert!(!out.trim().is_empty(), "{args:?}");
    }
    let bad = autoglm(&[
        "generate",
        "--model",
        m,
        "--prompt-ids",
        "1",
        "--weights",
        "q3_k",
    ]);
    assert!(bad.unwrap_err().to_string().contains("q3_k"));
}
