//! `rougers-driver REFS.jsonl HYP...`: mean F of rouge1/2/L/Lsum per system, as
//! `eval-all rouge` computes them, with the `rougers` crate.
use std::io::Write;

fn lines(p: &str) -> Vec<String> {
    let t = std::fs::read_to_string(p).expect("readable");
    let mut v: Vec<String> = t.split('\n').map(str::to_owned).collect();
    v.pop();
    v
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let refs: Vec<Vec<String>> = lines(&args[0]).iter().map(|l| serde_json::from_str(l).expect("json")).collect();
    let scorer = rougers::RougeScorer::new(["rouge1", "rouge2", "rougeL", "rougeLsum"], true).expect("types");
    let systems: Vec<Vec<String>> = args[1..].iter().map(|p| lines(p)).collect();
    // Line by line (as eval-all does): the line's target documents are tokenized once
    // and every system's prediction is scored against them.
    let mut sums = vec![[0.0f64; 4]; systems.len()];
    for (i, r) in refs.iter().enumerate() {
        let targets: Vec<rougers::Document> = r.iter().map(|t| scorer.document(t)).collect();
        for (hyps, sum) in systems.iter().zip(&mut sums) {
            let pred = scorer.document(&hyps[i]);
            let mut best: Option<Vec<f64>> = None;
            for t in &targets {
                let s: Vec<f64> = scorer.score_documents(t, &pred).iter().map(|(_, s)| s.fmeasure).collect();
                best = Some(match best {
                    None => s,
                    Some(b) => b.iter().zip(&s).map(|(x, y)| if y > x { *y } else { *x }).collect(),
                });
            }
            for (k, f) in best.expect("targets").iter().enumerate() {
                sum[k] += f;
            }
        }
    }
    let mut out = std::io::stdout().lock();
    for (p, sum) in args[1..].iter().zip(&sums) {
        let n = refs.len() as f64;
        writeln!(out, "{}", serde_json::json!({"system": p, "rouge1": sum[0] / n, "rouge2": sum[1] / n, "rougeL": sum[2] / n, "rougeLsum": sum[3] / n})).expect("stdout");
    }
}
