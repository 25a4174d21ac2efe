//! Scores many systems against shared references in one process, single-threaded, as
//! a user of autoglm-eval would (references prepared once): the Rust side of
//! `benches/eval/bench_vs_peers.py`.
//!
//! `eval-all bleu-chrf|ter|rouge REFS (--jsonl | --plain REF2) HYP...` prints one JSON
//! line per system with its scores.

use std::path::PathBuf;

use anyhow::{bail, Result};
use autoglm_benches::{read_lines, read_refs_jsonl};
use autoglm_eval::{
    score_systems, Bleu, BleuConfig, Chrf, ChrfConfig, Metric, RougeConfig, RougeScorer, RougeType,
    Ter, TerConfig,
};

fn corpus_scores<M: Metric>(
    m: &M,
    refs: &[Vec<String>],
    systems: &[(String, Vec<String>)],
) -> Result<Vec<f64>> {
    let hyps: Vec<Vec<String>> = systems.iter().map(|(_, h)| h.clone()).collect();
    score_systems(m, &hyps, refs)?
        .iter()
        .map(|c| Ok(M::value(&c.finish()?)))
        .collect()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        bail!("usage: eval-all bleu-chrf|ter|rouge REFS (--jsonl | --plain REF2) HYP...");
    }
    let refs: Vec<Vec<String>> = match args[2].as_str() {
        "--jsonl" => read_refs_jsonl(&PathBuf::from(&args[1]))?,
        "--plain" => {
            let a = read_lines(&PathBuf::from(&args[1]))?;
            let b = read_lines(&PathBuf::from(&args[3]))?;
            a.into_iter().zip(b).map(|(x, y)| vec![x, y]).collect()
        }
        o => bail!("unknown reference format {o}"),
    };
    let first_hyp = if args[2] == "--plain" { 4 } else { 3 };
    let systems: Vec<(String, Vec<String>)> = args[first_hyp..]
        .iter()
        .map(|p| Ok((p.clone(), read_lines(&PathBuf::from(p))?)))
        .collect::<Result<_>>()?;
    let mut out = std::io::stdout().lock();
    use std::io::Write;
    match args[0].as_str() {
        "bleu-chrf" => {
            let bleu = corpus_scores(&Bleu::new(BleuConfig::default())?, &refs, &systems)?;
            let chrf = corpus_scores(&Chrf::new(ChrfConfig::default())?, &refs, &systems)?;
            for (i, (name, _)) in systems.iter().enumerate() {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"system": name, "bleu": bleu[i], "chrf": chrf[i]})
                )?;
            }
        }
        "ter" => {
            let ter = corpus_scores(&Ter::new(TerConfig::default()), &refs, &systems)?;
            for (i, (name, _)) in systems.iter().enumerate() {
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"system": name, "ter": ter[i]})
                )?;
            }
        }
        "rouge" => {
            let scorer = RougeScorer::new(
                &RougeType::STANDARD,
                RougeConfig::default().with_stemmer(true),
            )?;
            // Line by line, every system against the line's prepared targets.
            let mut sums = vec![[0.0f64; 4]; systems.len()];
            for (i, r) in refs.iter().enumerate() {
                let t = scorer.prepare_targets(&r.iter().map(String::as_str).collect::<Vec<_>>());
                for ((_, hyps), sum) in systems.iter().zip(&mut sums) {
                    for (k, (s, _)) in scorer.score_prepared(&t, &hyps[i]).into_iter().enumerate() {
                        sum[k] += s.fmeasure;
                    }
                }
            }
            for ((name, hyps), sum) in systems.iter().zip(&sums) {
                let n = hyps.len() as f64;
                writeln!(
                    out,
                    "{}",
                    serde_json::json!({"system": name, "rouge1": sum[0] / n, "rouge2": sum[1] / n, "rougeL": sum[2] / n, "rougeLsum": sum[3] / n})
                )?;
            }
        }
        o => bail!("unknown benchmark {o}"),
    }
    Ok(())
}
