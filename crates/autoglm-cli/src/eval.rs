//! `autoglm eval`: BLEU, chrF, TER and ROUGE on line-aligned files, with sacrebleu's
//! option names.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use autoglm_eval::{
    bootstrap_aggregate, paired_approximate_randomization, paired_approximate_randomization_mean,
    paired_bootstrap, paired_bootstrap_mean, Bleu, BleuConfig, BleuScore, Chrf, ChrfConfig,
    ChrfScore, Corpus, Metric, PairedResult, PairedTest, RougeConfig, RougeScore, RougeScorer,
    RougeTokenizer, RougeType, Seed, Smooth, Ter, TerConfig, TerScore, Tokenizer,
    AUTOGLM_EVAL_VERSION, ROUGE_SCORE_VERSION,
};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{json, Map, Value};

use crate::io::{check_aligned, read_lines, read_refs};

/// Arguments of `autoglm eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The metric.
    #[command(subcommand)]
    pub metric: MetricCmd,
}

/// One subcommand per metric.
#[derive(Debug, Subcommand)]
pub enum MetricCmd {
    /// BLEU as sacrebleu computes it.
    Bleu(BleuArgs),
    /// chrF / chrF++ as sacrebleu computes it.
    Chrf(ChrfArgs),
    /// TER as sacrebleu computes it.
    Ter(TerArgs),
    /// ROUGE as rouge-score computes it.
    Rouge(RougeArgs),
}

/// Inputs and output options shared by every metric.
#[derive(Debug, Args)]
pub struct Inputs {
    /// Hypotheses (system output), one segment per line; `-` reads standard input.
    #[arg(long, value_name = "FILE")]
    pub hyp: PathBuf,
    /// A reference file, line-aligned with the hypotheses; repeat for more references.
    #[arg(long = "ref", value_name = "FILE")]
    pub refs: Vec<PathBuf>,
    /// References as JSONL: each line a JSON array of that line's references (their
    /// number may vary from line to line).
    #[arg(long, value_name = "FILE")]
    pub refs_jsonl: Option<PathBuf>,
    /// Also score every line on its own.
    #[arg(long)]
    pub sentence: bool,
    /// Print one JSON object instead of text.
    #[arg(long)]
    pub json: bool,
    /// Decimals in text output (sacrebleu's `--width`).
    #[arg(long, short = 'w', default_value_t = 1)]
    pub width: usize,
    /// Worker threads (1: sequential; results are identical either way).
    #[arg(long, default_value_t = 1)]
    pub jobs: usize,
}

/// Paired significance testing against a baseline system.
#[derive(Debug, Args)]
pub struct Paired {
    /// Baseline system output to compare against (enables a paired test).
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Paired bootstrap resampling (the default test when --baseline is given).
    #[arg(long, conflicts_with = "paired_ar")]
    pub paired_bs: bool,
    /// Paired approximate randomization.
    #[arg(long)]
    pub paired_ar: bool,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 1000)]
    pub paired_bs_n: usize,
    /// Approximate-randomization trials.
    #[arg(long, default_value_t = 10000)]
    pub paired_ar_n: usize,
    /// Random seed of the paired test.
    #[arg(long, default_value_t = 12345)]
    pub paired_seed: u32,
}

impl Paired {
    /// The test, its samples and its seed.
    fn test(&self) -> (PairedTest, usize, Seed) {
        let seed = Seed(self.paired_seed);
        if self.paired_ar {
            (PairedTest::ApproximateRandomization, self.paired_ar_n, seed)
        } else {
            (PairedTest::Bootstrap, self.paired_bs_n, seed)
        }
    }
}

/// The JSON of a paired test's outcome.
fn paired_json(baseline: &Path, r: &PairedResult) -> Value {
    json!({
        "baseline": baseline.display().to_string(),
        "baseline_score": r.baseline_score,
        "p_value": r.p_value,
        "system_mean": r.system_mean,
        "system_ci": r.system_ci,
    })
}

/// The text line of a paired test's outcome.
fn paired_text(baseline: &Path, r: &PairedResult, w: usize) -> String {
    format!(
        "baseline {}: {} | system: {} (μ = {} ± {}) | p = {:.4}",
        baseline.display(),
        fmt_score(r.baseline_score, w),
        fmt_score(r.system_score, w),
        r.system_mean.map_or("-".into(), |x| fmt_score(x, w)),
        r.system_ci.map_or("-".into(), |x| fmt_score(x, w)),
        r.p_value
    )
}

/// `autoglm eval bleu`.
#[derive(Debug, Args)]
pub struct BleuArgs {
    #[command(flatten)]
    inputs: Inputs,
    #[command(flatten)]
    paired: Paired,
    /// Tokenizer: none, zh, 13a, intl, char.
    #[arg(long, default_value = "13a")]
    tokenize: String,
    /// Lowercase before tokenizing.
    #[arg(long, short = 'l', visible_alias = "lc")]
    lowercase: bool,
    /// Smoothing: exp, floor, add-k, none.
    #[arg(long, default_value = "exp")]
    smooth_method: String,
    /// Smoothing value for floor (default 0.1) and add-k (default 1).
    #[arg(long)]
    smooth_value: Option<f64>,
    /// Effective order for the corpus score (sentence scores always use it).
    #[arg(long)]
    effective_order: bool,
}

/// `autoglm eval chrf`.
#[derive(Debug, Args)]
pub struct ChrfArgs {
    #[command(flatten)]
    inputs: Inputs,
    #[command(flatten)]
    paired: Paired,
    /// Character n-gram order.
    #[arg(long, default_value_t = 6)]
    chrf_char_order: usize,
    /// Word n-gram order (2 for chrF++).
    #[arg(long, default_value_t = 0)]
    chrf_word_order: usize,
    /// The β of F-β.
    #[arg(long, default_value_t = 2)]
    chrf_beta: u32,
    /// Keep whitespace in character n-grams.
    #[arg(long)]
    chrf_whitespace: bool,
    /// chrF++.py-style epsilon smoothing instead of effective order.
    #[arg(long)]
    chrf_eps_smoothing: bool,
    /// Lowercase.
    #[arg(long, short = 'l', visible_alias = "lc")]
    lowercase: bool,
}

/// `autoglm eval ter`.
#[derive(Debug, Args)]
pub struct TerArgs {
    #[command(flatten)]
    inputs: Inputs,
    #[command(flatten)]
    paired: Paired,
    /// Case-sensitive TER (it lowercases by default).
    #[arg(long)]
    ter_case_sensitive: bool,
    /// Remove punctuation.
    #[arg(long)]
    ter_no_punct: bool,
    /// tercom normalisation.
    #[arg(long)]
    ter_normalized: bool,
    /// Asian (CJK) support.
    #[arg(long)]
    ter_asian_support: bool,
}

/// How several references are combined for ROUGE.
#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum Multi {
    /// rouge-score's `score_multi`: the reference with the best F, per type.
    Max,
    /// Only the first reference (rouge-score's `score`).
    First,
}

/// `autoglm eval rouge`.
#[derive(Debug, Args)]
pub struct RougeArgs {
    #[command(flatten)]
    inputs: Inputs,
    /// A paired test of every type's mean F against the baseline's (sacrebleu's
    /// procedure on the line scores).
    #[command(flatten)]
    paired: Paired,
    /// Comma-separated types: rouge1..rouge9, rougeL, rougeLsum.
    #[arg(long, default_value = "rouge1,rouge2,rougeL,rougeLsum")]
    types: String,
    /// Porter-stem tokens longer than 3 characters.
    #[arg(long)]
    stem: bool,
    /// How several references combine.
    #[arg(long, value_enum, default_value_t = Multi::Max)]
    multi: Multi,
    /// Bootstrap confidence intervals with this many resamples (rouge-score's aggregator).
    #[arg(long, value_name = "N")]
    bootstrap: Option<usize>,
    /// Seed of the bootstrap (numpy.random.seed equivalent).
    #[arg(long, default_value_t = 42)]
    seed: u32,
    /// Tokenizer: `default` (rouge-score's, drops non-Latin text) or `cjk` (keeps CJK characters).
    #[arg(long, default_value = "default")]
    rouge_tokenizer: String,
}

/// Runs `autoglm eval`.
///
/// # Errors
/// Input or option errors.
pub fn run(args: EvalArgs, out: &mut dyn Write) -> Result<()> {
    match args.metric {
        MetricCmd::Bleu(a) => {
            let cfg = BleuConfig::default()
                .with_tokenize(a.tokenize.parse::<Tokenizer>()?)
                .with_lowercase(a.lowercase)
                .with_smooth(a.smooth_method.parse::<Smooth>()?, a.smooth_value)
                .with_effective_order(a.effective_order);
            let corpus = Bleu::new(cfg.clone())?;
            let sentence = Bleu::new(cfg.with_effective_order(true))?;
            run_sacrebleu(
                &corpus,
                &sentence,
                &a.inputs,
                &a.paired,
                bleu_json,
                bleu_verbose,
                out,
            )
        }
        MetricCmd::Chrf(a) => {
            let cfg = ChrfConfig::default()
                .with_char_order(a.chrf_char_order)
                .with_word_order(a.chrf_word_order)
                .with_beta(a.chrf_beta)
                .with_whitespace(a.chrf_whitespace)
                .with_eps_smoothing(a.chrf_eps_smoothing)
                .with_lowercase(a.lowercase);
            let m = Chrf::new(cfg)?;
            run_sacrebleu(
                &m,
                &m,
                &a.inputs,
                &a.paired,
                chrf_json,
                |_| String::new(),
                out,
            )
        }
        MetricCmd::Ter(a) => {
            let cfg = TerConfig::default()
                .with_case_sensitive(a.ter_case_sensitive)
                .with_no_punct(a.ter_no_punct)
                .with_normalized(a.ter_normalized)
                .with_asian_support(a.ter_asian_support);
            let m = Ter::new(cfg);
            run_sacrebleu(
                &m,
                &m,
                &a.inputs,
                &a.paired,
                ter_json,
                |_| String::new(),
                out,
            )
        }
        MetricCmd::Rouge(a) => run_rouge(&a, out),
    }
}

fn load(inputs: &Inputs) -> Result<(Vec<String>, Vec<Vec<String>>)> {
    if inputs.refs.is_empty() && inputs.refs_jsonl.is_none() {
        bail!("no references: give --ref FILE (repeatable) or --refs-jsonl FILE");
    }
    let hyps = read_lines(&inputs.hyp)?;
    let refs = read_refs(&inputs.refs, inputs.refs_jsonl.as_deref())?;
    let ref_name: &Path = inputs
        .refs_jsonl
        .as_deref()
        .unwrap_or_else(|| inputs.refs[0].as_path());
    check_aligned(&inputs.hyp, hyps.len(), ref_name, refs.len())?;
    if hyps.is_empty() {
        bail!("{}: no lines to score", inputs.hyp.display());
    }
    Ok((hyps, refs))
}

fn score_all<'m, M: Metric>(
    m: &'m M,
    hyps: &[String],
    refs: &[Vec<String>],
    jobs: usize,
) -> Result<Corpus<'m, M>> {
    if jobs <= 1 {
        return Ok(autoglm_eval::score_corpus(m, hyps, refs)?);
    }
    let pool = rayon::ThreadPoolBuilder::new().num_threads(jobs).build()?;
    Ok(pool.install(|| autoglm_eval::score_corpus_par(m, hyps, refs))?)
}

fn fmt_score(x: f64, width: usize) -> String {
    format!("{x:.width$}")
}

/// Shared driver of the sacrebleu metrics: corpus score, optional sentence scores,
/// optional paired test.
fn run_sacrebleu<M: Metric>(
    m: &M,
    sentence_metric: &M,
    inputs: &Inputs,
    paired: &Paired,
    to_json: fn(&M::Score) -> Map<String, Value>,
    verbose: fn(&M::Score) -> String,
    out: &mut dyn Write,
) -> Result<()> {
    let (hyps, refs) = load(inputs)?;
    let corpus = score_all(m, &hyps, &refs, inputs.jobs)?;
    let score = corpus.finish()?;
    let mut sig = corpus.signature()?;
    let name = m.name();
    let mut paired_result = None;
    if let Some(bl) = &paired.baseline {
        let bl_hyps = read_lines(bl)?;
        check_aligned(bl, bl_hyps.len(), &inputs.hyp, hyps.len())?;
        let bl_corpus = score_all(m, &bl_hyps, &refs, inputs.jobs)?;
        let (test, n, seed) = paired.test();
        let r = match test {
            PairedTest::Bootstrap => {
                paired_bootstrap(m, bl_corpus.line_stats(), corpus.line_stats(), n, seed)?
            }
            _ => paired_approximate_randomization(
                m,
                bl_corpus.line_stats(),
                corpus.line_stats(),
                n,
                seed,
            )?,
        };
        sig = sig.with_paired_test(test, n, seed);
        paired_result = Some((bl.clone(), r));
    }
    let sentences = if inputs.sentence {
        let s: Vec<M::Score> = corpus
            .line_stats()
            .iter()
            .map(|st| sentence_metric.sentence_score_from(st))
            .collect();
        Some(s)
    } else {
        None
    };
    if inputs.json {
        let mut obj = Map::new();
        obj.insert("name".into(), json!(name));
        obj.insert("score".into(), json!(M::value(&score)));
        obj.insert("signature".into(), json!(sig.to_string()));
        obj.insert("autoglm_eval_version".into(), json!(AUTOGLM_EVAL_VERSION));
        obj.extend(to_json(&score));
        if let Some((bl, r)) = &paired_result {
            obj.insert("paired".into(), paired_json(bl, r));
        }
        if let Some(s) = &sentences {
            let lines: Vec<Value> = s
                .iter()
                .map(|x| {
                    let mut o = Map::new();
                    o.insert("score".into(), json!(M::value(x)));
                    o.extend(to_json(x));
                    Value::Object(o)
                })
                .collect();
            obj.insert("lines".into(), Value::Array(lines));
        }
        serde_json::to_writer_pretty(&mut *out, &Value::Object(obj))?;
        writeln!(out)?;
    } else {
        let w = inputs.width;
        if let Some(s) = &sentences {
            for x in s {
                writeln!(out, "{name} = {} {}", fmt_score(M::value(x), w), verbose(x))?;
            }
        }
        let v = verbose(&score);
        let sep = if v.is_empty() { "" } else { " " };
        writeln!(
            out,
            "{name}|{sig} = {}{sep}{v}",
            fmt_score(M::value(&score), w)
        )?;
        if let Some((bl, r)) = &paired_result {
            writeln!(out, "{}", paired_text(bl, r, w))?;
        }
    }
    Ok(())
}

/// An f64 that holds an integer prints as a JSON integer (as the reference files do).
fn num(x: f64) -> Value {
    if x.fract() == 0.0 && x.abs() < 9.0e15 {
        json!(x as i64)
    } else {
        json!(x)
    }
}

fn bleu_json(s: &BleuScore) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert(
        "counts".into(),
        Value::Array(s.counts.iter().map(|&x| num(x)).collect()),
    );
    o.insert(
        "totals".into(),
        Value::Array(s.totals.iter().map(|&x| num(x)).collect()),
    );
    o.insert("precisions".into(), json!(s.precisions));
    o.insert("bp".into(), json!(s.bp));
    o.insert("sys_len".into(), json!(s.sys_len));
    o.insert("ref_len".into(), json!(s.ref_len));
    o
}

fn bleu_verbose(s: &BleuScore) -> String {
    let prec: Vec<String> = s.precisions.iter().map(|p| format!("{p:.1}")).collect();
    let ratio = if s.ref_len > 0 {
        s.sys_len as f64 / s.ref_len as f64
    } else {
        0.0
    };
    format!(
        "{} (BP = {:.3} ratio = {ratio:.3} hyp_len = {} ref_len = {})",
        prec.join("/"),
        s.bp,
        s.sys_len,
        s.ref_len
    )
}

fn chrf_json(s: &ChrfScore) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("stats".into(), json!(s.stats));
    o
}

fn ter_json(s: &TerScore) -> Map<String, Value> {
    let mut o = Map::new();
    o.insert("num_edits".into(), json!(s.num_edits));
    o.insert("ref_length".into(), json!(s.ref_length));
    o
}

fn prf(s: &RougeScore) -> Value {
    json!({"precision": s.precision, "recall": s.recall, "fmeasure": s.fmeasure})
}

fn run_rouge(a: &RougeArgs, out: &mut dyn Write) -> Result<()> {
    let types: Vec<RougeType> = a
        .types
        .split(',')
        .map(|t| t.trim().parse::<RougeType>())
        .collect::<Result<_, _>>()
        .context("--types")?;
    let tokenizer = match a.rouge_tokenizer.as_str() {
        "default" => RougeTokenizer::Default,
        "cjk" => RougeTokenizer::Cjk,
        other => bail!("unknown --rouge-tokenizer '{other}' (expected default or cjk)"),
    };
    let config = RougeConfig::default()
        .with_stemmer(a.stem)
        .with_tokenizer(tokenizer);
    let scorer = RougeScorer::new(&types, config)?;
    let (hyps, refs) = load(&a.inputs)?;
    let score_line = |(h, r): (&String, &Vec<String>)| -> Vec<RougeScore> {
        let r: Vec<&str> = match a.multi {
            Multi::Max => r.iter().map(String::as_str).collect(),
            Multi::First => vec![r[0].as_str()],
        };
        let t = scorer.prepare_targets(&r);
        scorer
            .score_prepared(&t, h)
            .into_iter()
            .map(|(s, _)| s)
            .collect()
    };
    let score_all = |hyps: &[String]| -> Result<Vec<Vec<RougeScore>>> {
        Ok(if a.inputs.jobs > 1 {
            use rayon::prelude::*;
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(a.inputs.jobs)
                .build()?;
            pool.install(|| {
                hyps.par_iter()
                    .zip(refs.par_iter())
                    .map(score_line)
                    .collect()
            })
        } else {
            hyps.iter().zip(&refs).map(score_line).collect()
        })
    };
    let lines = score_all(&hyps)?;
    let n = lines.len() as f64;
    let column = |lines: &[Vec<RougeScore>], k: usize| -> Vec<RougeScore> {
        lines.iter().map(|l| l[k]).collect()
    };
    let columns: Vec<Vec<RougeScore>> = (0..types.len()).map(|k| column(&lines, k)).collect();
    // The paired test of each type's F against the baseline's.
    let paired: Option<(&Path, Vec<PairedResult>)> = match &a.paired.baseline {
        Some(bl) => {
            let bl_hyps = read_lines(bl)?;
            check_aligned(bl, bl_hyps.len(), &a.inputs.hyp, hyps.len())?;
            let bl_lines = score_all(&bl_hyps)?;
            let (test, samples, seed) = a.paired.test();
            let f = |c: &[RougeScore]| c.iter().map(|s| s.fmeasure).collect::<Vec<f64>>();
            let results = (0..types.len())
                .map(|k| {
                    let (b, s) = (f(&column(&bl_lines, k)), f(&columns[k]));
                    match test {
                        PairedTest::Bootstrap => paired_bootstrap_mean(&b, &s, samples, seed),
                        _ => paired_approximate_randomization_mean(&b, &s, samples, seed),
                    }
                })
                .collect::<Result<Vec<_>, _>>()?;
            Some((bl.as_path(), results))
        }
        None => None,
    };
    let means: Vec<RougeScore> = columns
        .iter()
        .map(|c| RougeScore {
            precision: c.iter().map(|s| s.precision).sum::<f64>() / n,
            recall: c.iter().map(|s| s.recall).sum::<f64>() / n,
            fmeasure: c.iter().map(|s| s.fmeasure).sum::<f64>() / n,
        })
        .collect();
    let boot = match a.bootstrap {
        Some(samples) => {
            let cols: Vec<&[RougeScore]> = columns.iter().map(Vec::as_slice).collect();
            Some(bootstrap_aggregate(&cols, samples, 0.95, a.seed)?)
        }
        None => None,
    };
    if a.inputs.json {
        let mut obj = Map::new();
        for (k, t) in types.iter().enumerate() {
            let mut v = prf(&means[k]);
            if let Some(b) = &boot {
                v["bootstrap"] =
                    json!({"low": prf(&b[k].low), "mid": prf(&b[k].mid), "high": prf(&b[k].high)});
            }
            if let Some((bl, r)) = &paired {
                v["paired"] = paired_json(bl, &r[k]);
            }
            obj.insert(t.to_string(), v);
        }
        obj.insert(
            "meta".into(),
            json!({
                "rouge_score_version": ROUGE_SCORE_VERSION,
                "autoglm_eval_version": AUTOGLM_EVAL_VERSION,
                "stem": a.stem,
                "multi": if a.multi == Multi::Max { "max" } else { "first" },
                "tokenizer": a.rouge_tokenizer,
                "bootstrap": a.bootstrap,
                "seed": a.bootstrap.map(|_| a.seed),
                "paired_test": paired.as_ref().map(|_| {
                    let (test, n, seed) = a.paired.test();
                    json!({"test": if test == PairedTest::Bootstrap { "bs" } else { "ar" },
                           "n": n, "seed": seed.0, "on": "fmeasure"})
                }),
            }),
        );
        if a.inputs.sentence {
            let l: Vec<Value> = lines
                .iter()
                .map(|l| {
                    let mut o = Map::new();
                    for (k, t) in types.iter().enumerate() {
                        o.insert(t.to_string(), prf(&l[k]));
                    }
                    Value::Object(o)
                })
                .collect();
            obj.insert("lines".into(), Value::Array(l));
        }
        serde_json::to_writer_pretty(&mut *out, &Value::Object(obj))?;
        writeln!(out)?;
    } else {
        let w = a.inputs.width.max(4);
        if a.inputs.sentence {
            for (i, l) in lines.iter().enumerate() {
                let parts: Vec<String> = types
                    .iter()
                    .zip(l)
                    .map(|(t, s)| format!("{t} F={}", fmt_score(s.fmeasure, w)))
                    .collect();
                writeln!(out, "line {}: {}", i + 1, parts.join(" "))?;
            }
        }
        for (k, t) in types.iter().enumerate() {
            let m = &means[k];
            write!(
                out,
                "{t}: P={} R={} F={}",
                fmt_score(m.precision, w),
                fmt_score(m.recall, w),
                fmt_score(m.fmeasure, w)
            )?;
            if let Some(b) = &boot {
                write!(
                    out,
                    " (bootstrap F low={} mid={} high={})",
                    fmt_score(b[k].low.fmeasure, w),
                    fmt_score(b[k].mid.fmeasure, w),
                    fmt_score(b[k].high.fmeasure, w)
                )?;
            }
            writeln!(out)?;
            if let Some((bl, r)) = &paired {
                writeln!(out, "{t} F {}", paired_text(bl, &r[k], w))?;
            }
        }
    }
    Ok(())
}
