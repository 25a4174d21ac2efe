//! Golden tests: every corpus-level and per-line value that sacrebleu 2.6.0 and
//! rouge-score 0.1.2 computed on E2E and WMT22 (`shared/bench/eval/reference_scores`)
//! must be reproduced within 1e-9 (BLEU/chrF/TER on 0–100, ROUGE on 0–1).

use std::path::Path;

use autoglm_eval::{
    bootstrap_aggregate, prepare_all, Bleu, BleuConfig, Chrf, ChrfConfig, Corpus, Metric, NumRefs,
    RougeConfig, RougeScore, RougeScorer, RougeType, Ter, TerConfig, Tokenizer,
};
use serde_json::Value;

use crate::util::{f64s, read_gz_json, read_lines, shared_dir, split_sents, Checker};

const TOL: f64 = 1e-9;

struct Data {
    doc: Value,
    hyps: Vec<(String, Vec<String>)>,
    refs: Vec<Vec<String>>,
}

fn load(shared: &Path, corpus: &str) -> Data {
    let doc = read_gz_json(&shared.join(format!("bench/eval/reference_scores/{corpus}.json.gz")));
    let root = shared.parent().expect("shared has a parent");
    let meta = &doc["meta"];
    let refs: Vec<Vec<String>> = if let Some(f) = meta["refs_file"].as_str() {
        read_lines(&root.join(f))
            .iter()
            .map(|l| serde_json::from_str(l).expect("refs line is a JSON array"))
            .collect()
    } else {
        let streams: Vec<Vec<String>> = meta["refs_files"]
            .as_array()
            .expect("refs_files")
            .iter()
            .map(|f| read_lines(&root.join(f.as_str().expect("path"))))
            .collect();
        (0..streams[0].len())
            .map(|i| streams.iter().map(|s| s[i].clone()).collect())
            .collect()
    };
    let mut hyps = Vec::new();
    for (name, f) in meta["hyp_files"].as_object().expect("hyp_files") {
        hyps.push((
            name.clone(),
            read_lines(&root.join(f.as_str().expect("path"))),
        ));
    }
    Data { doc, hyps, refs }
}

fn bleu_config(tok: &str) -> BleuConfig {
    match tok {
        "13a-lc" => BleuConfig::default().with_lowercase(true),
        t => BleuConfig::default().with_tokenize(t.parse::<Tokenizer>().expect("known tokenizer")),
    }
}

/// Scores every system, every other one with prepared references and the others with
/// raw ones (`Corpus::add`, which does not prepare them), so that both ways are checked;
/// returns per-system corpora.
fn run<'m, M: Metric>(
    m: &'m M,
    d: &Data,
    only: impl Fn(&str) -> bool,
) -> Vec<(String, Corpus<'m, M>)> {
    let prepared = prepare_all(m, &d.refs);
    d.hyps
        .iter()
        .filter(|(name, _)| only(name))
        .enumerate()
        .map(|(k, (name, hyps))| {
            assert_eq!(hyps.len(), d.refs.len(), "{name}");
            let mut c = Corpus::new(m);
            for ((h, p), r) in hyps.iter().zip(&prepared).zip(&d.refs) {
                if k % 2 == 0 {
                    c.add_prepared(h, p, r.len());
                } else {
                    let r: Vec<&str> = r.iter().map(String::as_str).collect();
                    c.add(h, &r).expect("references");
                }
            }
            (name.clone(), c)
        })
        .collect()
}

fn check_sacrebleu(corpus: &str, d: &Data, ck: &mut Checker) {
    let sigs = &d.doc["signatures"];
    let systems = &d.doc["systems"];
    let toks: Vec<String> = d.doc["meta"]["bleu_tokenizers"]
        .as_array()
        .expect("tokenizers")
        .iter()
        .map(|t| t.as_str().expect("str").to_owned())
        .collect();
    for tok in &toks {
        let m = Bleu::new(bleu_config(tok)).expect("config");
        let sent = Bleu::new(bleu_config(tok).with_effective_order(true)).expect("config");
        for (name, c) in run(&m, d, |_| true) {
            let want = &systems[&name]["sacrebleu"]["bleu"][tok];
            let got = c.finish().expect("lines");
            let w = || format!("{corpus}/{name}/bleu/{tok}");
            ck.val(|| format!("{}/score", w()), got.score, &want["score"], TOL);
            ck.eq(
                || format!("{}/counts", w()),
                got.counts.clone(),
                f64s(&want["counts"]),
            );
            ck.eq(
                || format!("{}/totals", w()),
                got.totals.clone(),
                f64s(&want["totals"]),
            );
            for (k, p) in got.precisions.iter().enumerate() {
                ck.val(
                    || format!("{}/precisions[{k}]", w()),
                    *p,
                    &want["precisions"][k],
                    TOL,
                );
            }
            ck.val(|| format!("{}/bp", w()), got.bp, &want["bp"], TOL);
            ck.eq(
                || format!("{}/sys_len", w()),
                got.sys_len,
                want["sys_len"].as_u64().expect("int"),
            );
            ck.eq(
                || format!("{}/ref_len", w()),
                got.ref_len,
                want["ref_len"].as_u64().expect("int"),
            );
            ck.eq(
                || format!("{}/signature", w()),
                c.signature().expect("sig").to_string(),
                sigs[format!("bleu:{tok}")]
                    .as_str()
                    .expect("sig")
                    .to_owned(),
            );
            if tok == "13a" || tok == "zh" {
                let lines = &systems[&name]["lines"];
                for (i, s) in c.line_stats().iter().enumerate() {
                    let want_stats: Vec<u64> = lines[format!("bleu_stats_{tok}")][i]
                        .as_array()
                        .expect("stats")
                        .iter()
                        .map(|x| x.as_u64().expect("int"))
                        .collect();
                    ck.eq(|| format!("{}/line{i}/stats", w()), s.to_vec(4), want_stats);
                    let score = sent.sentence_score_from(s).score;
                    ck.val(
                        || format!("{}/line{i}/sentence_bleu", w()),
                        score,
                        &lines[format!("sentence_bleu_{tok}")][i],
                        TOL,
                    );
                }
                ck.eq(
                    || format!("{}/sentence signature", w()),
                    sent.signature(c.num_refs().expect("nrefs")).to_string(),
                    sigs[format!("sentence_bleu:{tok}")]
                        .as_str()
                        .expect("sig")
                        .to_owned(),
                );
            }
        }
    }
    for (key, cfg) in [
        ("chrf", ChrfConfig::default()),
        ("chrf++", ChrfConfig::plus_plus()),
    ] {
        let m = Chrf::new(cfg).expect("config");
        for (name, c) in run(&m, d, |_| true) {
            let got = c.finish().expect("lines");
            let w = || format!("{corpus}/{name}/{key}");
            ck.val(
                || format!("{}/score", w()),
                got.score,
                &systems[&name]["sacrebleu"][key]["score"],
                TOL,
            );
            ck.eq(
                || format!("{}/signature", w()),
                c.signature().expect("sig").to_string(),
                sigs[key].as_str().expect("sig").to_owned(),
            );
            let lines = &systems[&name]["lines"];
            for (i, s) in c.line_stats().iter().enumerate() {
                let want_stats: Vec<u64> = lines[format!("{key}_stats")][i]
                    .as_array()
                    .expect("stats")
                    .iter()
                    .map(|x| x.as_u64().expect("int"))
                    .collect();
                ck.eq(|| format!("{}/line{i}/stats", w()), s.clone(), want_stats);
                ck.val(
                    || format!("{}/line{i}/score", w()),
                    m.sentence_score_from(s).score,
                    &lines[key][i],
                    TOL,
                );
            }
        }
    }
    let ter = Ter::new(TerConfig::default());
    let has_ter = |name: &str| systems[name]["sacrebleu"].get("ter").is_some();
    for (name, c) in run(&ter, d, has_ter) {
        let got = c.finish().expect("lines");
        let want = &systems[&name]["sacrebleu"]["ter"];
        let w = || format!("{corpus}/{name}/ter");
        ck.val(|| format!("{}/score", w()), got.score, &want["score"], TOL);
        ck.eq(
            || format!("{}/num_edits", w()),
            got.num_edits,
            want["num_edits"].as_f64().expect("n") as u64,
        );
        ck.val(
            || format!("{}/ref_length", w()),
            got.ref_length,
            &want["ref_length"],
            TOL,
        );
        ck.eq(
            || format!("{}/signature", w()),
            c.signature().expect("sig").to_string(),
            sigs["ter"].as_str().expect("sig").to_owned(),
        );
        let lines = &systems[&name]["lines"];
        for (i, s) in c.line_stats().iter().enumerate() {
            ck.eq(
                || format!("{}/line{i}/edits", w()),
                s.edits,
                lines["ter_stats"][i][0].as_u64().expect("int"),
            );
            ck.val(
                || format!("{}/line{i}/ref_len", w()),
                s.ref_len,
                &lines["ter_stats"][i][1],
                TOL,
            );
            ck.val(
                || format!("{}/line{i}/score", w()),
                ter.sentence_score_from(s).score,
                &lines["ter"][i],
                TOL,
            );
        }
    }
}

const TYPES: [&str; 4] = ["rouge1", "rouge2", "rougeL", "rougeLsum"];

fn check_rouge(corpus: &str, d: &Data, ck: &mut Checker) {
    let systems = &d.doc["systems"];
    for (st, stem) in [("nostem", false), ("stem", true)] {
        let cfg = RougeConfig::default().with_stemmer(stem);
        let scorer = RougeScorer::new(&RougeType::STANDARD, cfg.clone()).expect("types");
        let lsum = RougeScorer::new(&[RougeType::LSum], cfg).expect("types");
        let first: Vec<_> = d
            .refs
            .iter()
            .map(|r| scorer.prepare_targets(&[r[0].as_str()]))
            .collect();
        let multi: Vec<_> = d
            .refs
            .iter()
            .map(|r| scorer.prepare_targets(&r.iter().map(String::as_str).collect::<Vec<_>>()))
            .collect();
        let split_refs: Vec<Vec<String>> = d
            .refs
            .iter()
            .map(|r| r.iter().map(|x| split_sents(x)).collect())
            .collect();
        for (name, hyps) in &d.hyps {
            let Some(want_sys) = systems[name].get("rouge") else {
                continue;
            };
            for (mode, prepared) in [("first_ref", &first), ("multi_max", &multi)] {
                let want = &want_sys[st][mode];
                let w = |t: &str| format!("{corpus}/{name}/{st}/{mode}/{t}");
                let mut cols: Vec<Vec<RougeScore>> = vec![Vec::new(); 4];
                let mut split_col = Vec::new();
                for (i, h) in hyps.iter().enumerate() {
                    let got = scorer.score_prepared(&prepared[i], h);
                    for (k, t) in TYPES.iter().enumerate() {
                        let wl = &want["lines"][t];
                        let s = got[k].0;
                        ck.val(
                            || format!("{}/line{i}/p", w(t)),
                            s.precision,
                            &wl["p"][i],
                            TOL,
                        );
                        ck.val(|| format!("{}/line{i}/r", w(t)), s.recall, &wl["r"][i], TOL);
                        ck.val(
                            || format!("{}/line{i}/f", w(t)),
                            s.fmeasure,
                            &wl["f"][i],
                            TOL,
                        );
                        cols[k].push(s);
                    }
                    let hs = split_sents(h);
                    let rs: Vec<&str> = if mode == "first_ref" {
                        vec![split_refs[i][0].as_str()]
                    } else {
                        split_refs[i].iter().map(String::as_str).collect()
                    };
                    let s = lsum.score_multi(&rs, &hs).expect("refs")[0];
                    let wl = &want["lines"]["rougeLsum_split"];
                    ck.val(
                        || format!("{}/line{i}/p", w("rougeLsum_split")),
                        s.precision,
                        &wl["p"][i],
                        TOL,
                    );
                    ck.val(
                        || format!("{}/line{i}/r", w("rougeLsum_split")),
                        s.recall,
                        &wl["r"][i],
                        TOL,
                    );
                    ck.val(
                        || format!("{}/line{i}/f", w("rougeLsum_split")),
                        s.fmeasure,
                        &wl["f"][i],
                        TOL,
                    );
                    split_col.push(s);
                }
                // Plain means (numpy uses pairwise summation: agreement to ~1e-15).
                for (k, t) in TYPES.iter().chain(["rougeLsum_split"].iter()).enumerate() {
                    let col = if k < 4 { &cols[k] } else { &split_col };
                    let n = col.len() as f64;
                    let mean = |f: fn(&RougeScore) -> f64| col.iter().map(f).sum::<f64>() / n;
                    ck.val(
                        || format!("{}/mean/p", w(t)),
                        mean(|s| s.precision),
                        &want["mean"][t]["p"],
                        TOL,
                    );
                    ck.val(
                        || format!("{}/mean/r", w(t)),
                        mean(|s| s.recall),
                        &want["mean"][t]["r"],
                        TOL,
                    );
                    ck.val(
                        || format!("{}/mean/f", w(t)),
                        mean(|s| s.fmeasure),
                        &want["mean"][t]["f"],
                        TOL,
                    );
                }
                let col_refs: Vec<&[RougeScore]> = cols.iter().map(Vec::as_slice).collect();
                let agg = bootstrap_aggregate(&col_refs, 1000, 0.95, 42).expect("aggregate");
                for (k, t) in TYPES.iter().enumerate() {
                    for (b, got) in [
                        ("low", agg[k].low),
                        ("mid", agg[k].mid),
                        ("high", agg[k].high),
                    ] {
                        let wb = &want["bootstrap"][t][b];
                        ck.val(
                            || format!("{}/bootstrap/{b}/p", w(t)),
                            got.precision,
                            &wb["precision"],
                            BOOT_TOL,
                        );
                        ck.val(
                            || format!("{}/bootstrap/{b}/r", w(t)),
                            got.recall,
                            &wb["recall"],
                            BOOT_TOL,
                        );
                        ck.val(
                            || format!("{}/bootstrap/{b}/f", w(t)),
                            got.fmeasure,
                            &wb["fmeasure"],
                            BOOT_TOL,
                        );
                    }
                }
            }
        }
    }
}

/// Bootstrap intervals: the issue asks for statistical agreement (mid within 0.002);
/// we replicate numpy's MT19937 stream, so they agree far more tightly.
const BOOT_TOL: f64 = 1e-9;

fn golden(corpus: &str) {
    let Some(shared) = shared_dir() else { return };
    let d = load(&shared, corpus);
    let mut ck = Checker::default();
    check_sacrebleu(corpus, &d, &mut ck);
    check_rouge(corpus, &d, &mut ck);
    if let Some(p) = d.doc.get("pitfall_empty_string_padding_tgen") {
        // References padded with '' instead of None: '' is a real, empty reference.
        let k = d.refs.iter().map(Vec::len).max().expect("lines");
        let padded: Vec<Vec<String>> = d
            .refs
            .iter()
            .map(|r| {
                (0..k)
                    .map(|i| r.get(i).cloned().unwrap_or_default())
                    .collect()
            })
            .collect();
        let tgen = &d.hyps.iter().find(|(n, _)| n == "tgen").expect("tgen").1;
        let bleu = autoglm_eval::corpus_bleu(tgen, &padded, &BleuConfig::default()).expect("ok");
        ck.val(|| "pitfall/bleu".into(), bleu.score, &p["bleu_13a"], TOL);
        let chrf = autoglm_eval::corpus_chrf(tgen, &padded, &ChrfConfig::default()).expect("ok");
        ck.val(|| "pitfall/chrf".into(), chrf.score, &p["chrf"], TOL);
        let ter = autoglm_eval::corpus_ter(tgen, &padded, &TerConfig::default()).expect("ok");
        ck.val(|| "pitfall/ter".into(), ter.score, &p["ter"], TOL);
    }
    ck.eq(
        || "nrefs".into(),
        NumRefs::Fixed(2).to_string(),
        "2".to_owned(),
    );
    ck.finish(corpus);
}

#[test]
fn golden_e2e() {
    golden("e2e");
}

#[test]
fn golden_wmt22_en_de() {
    golden("wmt22-en-de");
}

#[test]
fn golden_wmt22_en_zh() {
    golden("wmt22-en-zh");
}
