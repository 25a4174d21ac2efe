//! The HPO sampler benchmark of `shared/bench/tune/bench_optuna.py`, on autoglm-tune.
//!
//! ```text
//! cargo run --release -p autoglm-tune --example bbob -- --problems FILE \
//!     --sampler tpe,random,qmc,auto --budget 100 --seeds 10 [--seed-offset 0] --out results.json
//! ```
//!
//! With `--journal PATH --function NAME [--worker W] [--cost SECONDS]` it is one
//! worker of a study shared through an Optuna journal (`benches/tune/parallel.py`
//! runs several, beside Optuna's).
//!
//! The problems file (`bench_optuna.py --export-problems FILE [--shift-seed S]`) carries
//! every problem's definition: bounds, f_opt, shift and rotation, or hpo_mixed's
//! parameters. The optimiser sees a problem only through its objective; `x_opt` is
//! never read. Results use `bench_optuna.py`'s JSON schema, so `summarize.py` reads them.

use std::collections::BTreeMap;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use autoglm_tune::{
    AutoSampler, Distribution, GpSampler, Params, QmcSampler, RandomSampler, SearchSpace, Seed,
    Study, TpeSampler,
};
use serde_json::{json, Value};

/// One benchmark problem, as the file defines it.
struct Problem {
    function: String,
    f_opt: f64,
    shift_seed: Value,
    dim: usize,
    space: SearchSpace,
    eval: Box<dyn Fn(&Params) -> f64>,
}

fn branin(x: &[f64]) -> f64 {
    use std::f64::consts::PI;
    let (a, b, c, r, s, t) = (
        1.0,
        5.1 / (4.0 * PI * PI),
        5.0 / PI,
        6.0,
        10.0,
        1.0 / (8.0 * PI),
    );
    a * (x[1] - b * x[0] * x[0] + c * x[0] - r).powi(2) + s * (1.0 - t) * x[0].cos() + s
}

fn hartmann6(x: &[f64]) -> f64 {
    const ALPHA: [f64; 4] = [1.0, 1.2, 3.0, 3.2];
    const A: [[f64; 6]; 4] = [
        [10.0, 3.0, 17.0, 3.5, 1.7, 8.0],
        [0.05, 10.0, 17.0, 0.1, 8.0, 14.0],
        [3.0, 3.5, 1.7, 10.0, 17.0, 8.0],
        [17.0, 8.0, 0.05, 10.0, 0.1, 14.0],
    ];
    const P: [[f64; 6]; 4] = [
        [1312.0, 1696.0, 5569.0, 124.0, 8283.0, 5886.0],
        [2329.0, 4135.0, 8307.0, 3736.0, 1004.0, 9991.0],
        [2348.0, 1451.0, 3522.0, 2883.0, 3047.0, 6650.0],
        [4047.0, 8828.0, 8732.0, 5743.0, 1091.0, 381.0],
    ];
    -(0..4)
        .map(|i| {
            let inner: f64 = (0..6)
                .map(|j| A[i][j] * (x[j] - 1e-4 * P[i][j]).powi(2))
                .sum();
            ALPHA[i] * (-inner).exp()
        })
        .sum::<f64>()
}

fn rosenbrock(x: &[f64]) -> f64 {
    x.windows(2)
        .map(|w| 100.0 * (w[1] - w[0] * w[0]).powi(2) + (w[0] - 1.0).powi(2))
        .sum()
}

fn ackley(x: &[f64]) -> f64 {
    use std::f64::consts::{E, PI};
    let d = x.len() as f64;
    let s1 = x.iter().map(|v| v * v).sum::<f64>() / d;
    let s2 = x.iter().map(|v| (2.0 * PI * v).cos()).sum::<f64>() / d;
    -20.0 * (-0.2 * s1.sqrt()).exp() - s2.exp() + 20.0 + E
}

fn levy(x: &[f64]) -> f64 {
    use std::f64::consts::PI;
    let w: Vec<f64> = x.iter().map(|v| 1.0 + (v - 1.0) / 4.0).collect();
    let d = w.len();
    let mid: f64 = w[..d - 1]
        .iter()
        .map(|wi| (wi - 1.0).powi(2) * (1.0 + 10.0 * (PI * wi + 1.0).sin().powi(2)))
        .sum();
    (PI * w[0]).sin().powi(2)
        + mid
        + (w[d - 1] - 1.0).powi(2) * (1.0 + (2.0 * PI * w[d - 1]).sin().powi(2))
}

fn styblinski(x: &[f64]) -> f64 {
    0.5 * x
        .iter()
        .map(|v| v.powi(4) - 16.0 * v * v + 5.0 * v)
        .sum::<f64>()
}

fn nums(v: &Value, what: &str) -> Result<Vec<f64>> {
    v.as_array()
        .ok_or_else(|| anyhow!("{what}: expected an array"))?
        .iter()
        .map(|x| {
            x.as_f64()
                .ok_or_else(|| anyhow!("{what}: expected numbers"))
        })
        .collect()
}

fn problem(p: &Value) -> Result<Problem> {
    let function = p["function"].as_str().context("function")?.to_owned();
    let f_opt = p["f_opt"].as_f64().context("f_opt")?;
    let dim = p["dim"].as_u64().context("dim")? as usize;
    let shift_seed = p["shift_seed"].clone();
    if function == "hpo_mixed" {
        let prm = &p["params"];
        let off: BTreeMap<String, f64> =
            serde_json::from_value(prm["off"].clone()).context("params.off")?;
        let u0: BTreeMap<String, f64> =
            serde_json::from_value(prm["u0"].clone()).context("params.u0")?;
        let lstar = prm["lstar"].as_f64().context("params.lstar")?;
        let slope = prm["slope"].as_f64().context("params.slope")?;
        let space = SearchSpace::default()
            .with("lr", Distribution::float(1e-5, 1e-1).log())?
            .with("n_layers", Distribution::int(1, 8))?
            .with(
                "optimizer",
                Distribution::categorical(["sgd", "adam", "adamw"]),
            )?
            .with("dropout", Distribution::float(0.0, 0.5))?;
        let eval = move |x: &Params| {
            let u = x["lr"].as_f64().expect("lr").log10();
            let l = x["n_layers"].as_i64().expect("n_layers") as f64;
            let o = x["optimizer"].as_str().expect("optimizer");
            let us = u0[o] - 0.1 * (l - lstar);
            let du = u - us;
            let lr_term = if du <= 0.0 { 0.06 } else { 0.25 } * du * du;
            let depth = 0.015 * (l - lstar).powi(2);
            let drop = 0.8 * (x["dropout"].as_f64().expect("dropout") - slope * l).powi(2);
            0.1 + off[o] + lr_term + depth + drop
        };
        return Ok(Problem {
            function,
            f_opt,
            shift_seed,
            dim,
            space,
            eval: Box::new(eval),
        });
    }
    let f: fn(&[f64]) -> f64 = match function.as_str() {
        "branin" => branin,
        "hartmann6" => hartmann6,
        "rosenbrock" => rosenbrock,
        "ackley" => ackley,
        "levy" => levy,
        "styblinski" => styblinski,
        other => bail!("unknown function {other}"),
    };
    let lo = nums(&p["lo"], "lo")?;
    let hi = nums(&p["hi"], "hi")?;
    let transform = match &p["transform"] {
        Value::Null => None,
        t => {
            let rot: Vec<Vec<f64>> = t["rot"]
                .as_array()
                .context("transform.rot")?
                .iter()
                .map(|r| nums(r, "transform.rot"))
                .collect::<Result<_>>()?;
            Some((
                nums(&t["z_src"], "transform.z_src")?,
                nums(&t["z_new"], "transform.z_new")?,
                rot,
            ))
        }
    };
    let mut space = SearchSpace::default();
    for i in 0..dim {
        space = space.with(&format!("x{i}"), Distribution::float(lo[i], hi[i]))?;
    }
    let eval = move |x: &Params| {
        let v: Vec<f64> = (0..dim)
            .map(|i| x[&format!("x{i}")].as_f64().expect("float"))
            .collect();
        match &transform {
            None => f(&v),
            Some((z_src, z_new, rot)) => {
                let z: Vec<f64> = (0..dim)
                    .map(|i| (v[i] - lo[i]) / (hi[i] - lo[i]) - z_new[i])
                    .collect();
                let y: Vec<f64> = (0..dim)
                    .map(|i| {
                        let r: f64 = (0..dim).map(|j| rot[i][j] * z[j]).sum();
                        lo[i] + (hi[i] - lo[i]) * (z_src[i] + r)
                    })
                    .collect();
                f(&y)
            }
        }
    };
    Ok(Problem {
        function,
        f_opt,
        shift_seed,
        dim,
        space,
        eval: Box::new(eval),
    })
}

fn study(kind: &str, seed: u64, budget: usize) -> Result<Study> {
    let s = Seed(seed);
    Ok(match kind {
        "random" => Study::minimize(s).with_sampler(RandomSampler::new(s)),
        "qmc" => Study::minimize(s).with_sampler(QmcSampler::new(s)),
        "tpe" => Study::minimize(s).with_sampler(TpeSampler::new(s)),
        "gp" => Study::minimize(s).with_sampler(GpSampler::new(s)),
        "auto" => Study::minimize(s).with_sampler(AutoSampler::new(s, Some(budget))),
        other => bail!(
            "unknown or not yet available sampler {other} (available: gp, tpe, random, qmc, auto)"
        ),
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn run_one(p: &Problem, kind: &str, seed: u64, budget: usize) -> Result<Value> {
    let mut study = study(kind, seed, budget)?;
    let (mut values, mut ask_ms, mut tell_ms, mut cpu_ms) = (vec![], vec![], vec![], vec![]);
    for _ in 0..budget {
        let (c0, t0) = (cpu_time::ProcessTime::now(), Instant::now());
        let (n, params) = study.ask_space(&p.space)?;
        let (t1, c1) = (Instant::now(), c0.elapsed());
        let v = (p.eval)(&params);
        let (c2, t2) = (cpu_time::ProcessTime::now(), Instant::now());
        study.tell(n, v)?;
        let (t3, c3) = (Instant::now(), c2.elapsed());
        values.push(v);
        ask_ms.push((t1 - t0).as_secs_f64() * 1e3);
        tell_ms.push((t3 - t2).as_secs_f64() * 1e3);
        cpu_ms.push((c1 + c3).as_secs_f64() * 1e3);
    }
    let mut best = f64::INFINITY;
    let mut best_at = serde_json::Map::new();
    let mut regret_at = serde_json::Map::new();
    for (i, v) in values.iter().enumerate() {
        best = best.min(*v);
        if [25, 50, 100].contains(&(i + 1)) {
            best_at.insert((i + 1).to_string(), json!(best));
            regret_at.insert((i + 1).to_string(), json!(best - p.f_opt));
        }
    }
    let overhead: Vec<f64> = ask_ms.iter().zip(&tell_ms).map(|(a, b)| a + b).collect();
    let last10 = overhead[overhead.len().saturating_sub(10)..]
        .iter()
        .sum::<f64>()
        / overhead.len().min(10) as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    Ok(json!({
        "function": p.function, "sampler": kind, "seed": seed, "budget": budget,
        "shift_seed": p.shift_seed, "dim": p.dim, "f_opt": p.f_opt,
        "best_at": best_at, "regret_at": regret_at,
        "overhead_ms_per_trial_mean": mean(&overhead),
        "overhead_ms_per_trial_median": median(&mut overhead.clone()),
        "overhead_ms_last10_mean": last10,
        "overhead_cpu_ms_per_trial_mean": mean(&cpu_ms),
        "overhead_cpu_ms_per_trial_median": median(&mut cpu_ms.clone()),
        "ask_suggest_ms": ask_ms, "tell_ms": tell_ms, "overhead_cpu_ms": cpu_ms,
        "values": values,
    }))
}

/// One worker of a study shared through an Optuna journal (`--journal`): asks and
/// tells trials of one problem, each objective taking `cost` seconds more (a sleep),
/// until the study has `budget` complete trials. The sampler's seed is
/// `seed · 1000 + worker`.
fn worker(
    p: &Problem,
    kind: &str,
    seed: u64,
    worker: u64,
    budget: usize,
    journal: &str,
    cost: f64,
) -> Result<()> {
    let storage = autoglm_tune::Storage::optuna_file(
        journal.as_ref(),
        "bbob",
        &[autoglm_tune::Direction::Minimize],
    )?;
    let mut study = study(kind, seed * 1000 + worker, budget)?.with_storage(storage);
    loop {
        let done = study
            .trials()?
            .iter()
            .filter(|t| t.state == autoglm_tune::TrialState::Complete)
            .count();
        if done >= budget {
            return Ok(());
        }
        let (n, params) = study.ask_space(&p.space)?;
        std::thread::sleep(std::time::Duration::from_secs_f64(cost));
        study.tell(n, (p.eval)(&params))?;
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let get = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let problems_path = get("--problems").context("--problems FILE is required")?;
    let samplers = get("--sampler").unwrap_or_else(|| "tpe".into());
    let budget: usize = get("--budget").map_or(Ok(100), |s| s.parse())?;
    let seeds: u64 = get("--seeds").map_or(Ok(10), |s| s.parse())?;
    let offset: u64 = get("--seed-offset").map_or(Ok(0), |s| s.parse())?;
    let text = std::fs::read_to_string(&problems_path).with_context(|| problems_path.clone())?;
    let doc: Value = serde_json::from_str(&text).with_context(|| problems_path.clone())?;
    if doc["format"] != "autoglm-bbob-problems" {
        bail!("{problems_path}: not an autoglm-bbob-problems file");
    }
    let problems: Vec<Problem> = doc["problems"]
        .as_array()
        .context("problems")?
        .iter()
        .enumerate()
        .map(|(i, p)| problem(p).with_context(|| format!("{problems_path}: problems[{i}]")))
        .collect::<Result<_>>()?;
    if let Some(journal) = get("--journal") {
        let function = get("--function").context("--journal needs --function")?;
        let p = problems
            .iter()
            .find(|p| p.function == function)
            .with_context(|| format!("no problem {function}"))?;
        let w: u64 = get("--worker").map_or(Ok(0), |s| s.parse())?;
        let cost: f64 = get("--cost").map_or(Ok(0.0), |s| s.parse())?;
        return worker(p, &samplers, offset, w, budget, &journal, cost);
    }
    let t0 = Instant::now();
    let mut runs = Vec::new();
    for kind in samplers.split(',').filter(|s| !s.is_empty()) {
        for p in &problems {
            for seed in offset..offset + seeds {
                let r = run_one(p, kind, seed, budget)?;
                eprintln!(
                    "{kind:6} {:11} seed={seed:2} regret@{budget}={:.3e} cpu={:.3}ms/trial",
                    p.function,
                    r["regret_at"][budget.to_string()]
                        .as_f64()
                        .unwrap_or(f64::NAN),
                    r["overhead_cpu_ms_per_trial_median"]
                        .as_f64()
                        .unwrap_or(f64::NAN)
                );
                runs.push(r);
            }
        }
    }
    let out = json!({
        "meta": {
            "autoglm_tune": env!("CARGO_PKG_VERSION"),
            "budget": budget,
            "seeds": (offset..offset + seeds).collect::<Vec<_>>(),
            "shift_seed": problems.first().map(|p| p.shift_seed.clone()),
            "samplers": samplers.split(',').collect::<Vec<_>>(),
            "functions": problems.iter().map(|p| p.function.clone()).collect::<Vec<_>>(),
            "wall_s": t0.elapsed().as_secs_f64(),
            "problems": problems_path,
        },
        "runs": runs,
    });
    let text = serde_json::to_string(&out)?;
    match get("--out") {
        Some(p) => std::fs::write(&p, text).with_context(|| p.clone())?,
        None => println!("{text}"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROBLEMS: &str = include_str!("../tests/data/bbob-problems-shift1.json");

    fn runs(doc: &Value) -> Vec<Value> {
        let mut out = Vec::new();
        for p in doc["problems"].as_array().unwrap() {
            let p = problem(p).unwrap();
            for kind in ["tpe", "qmc"] {
                out.push(run_one(&p, kind, 3, 15).unwrap()["values"].clone());
            }
        }
        out
    }

    #[test]
    fn results_do_not_depend_on_x_opt() {
        let doc: Value = serde_json::from_str(PROBLEMS).unwrap();
        let mut hidden = doc.clone();
        for p in hidden["problems"].as_array_mut().unwrap() {
            p.as_object_mut().unwrap().remove("x_opt");
        }
        assert_eq!(runs(&doc), runs(&hidden));
    }

    #[test]
    fn problem_definitions_reach_their_optimum() {
        // At the hidden optimum x_opt (used only by this check) every function is at f_opt.
        let doc: Value = serde_json::from_str(PROBLEMS).unwrap();
        for pj in doc["problems"].as_array().unwrap() {
            let p = problem(pj).unwrap();
            let mut params = Params::new();
            match &pj["x_opt"] {
                Value::Array(xs) => {
                    for (i, x) in xs.iter().enumerate() {
                        params.insert(format!("x{i}"), x.as_f64().unwrap().into());
                    }
                }
                Value::Object(m) => {
                    for (k, v) in m {
                        let pv: autoglm_tune::ParamValue =
                            serde_json::from_value(v.clone()).unwrap();
                        params.insert(k.clone(), pv);
                    }
                }
                _ => panic!("x_opt"),
            }
            let f = (p.eval)(&params);
            assert!(
                (f - p.f_opt).abs() < 1e-6 * (1.0 + p.f_opt.abs()),
                "{}: {f} vs {}",
                p.function,
                p.f_opt
            );
        }
    }
}
