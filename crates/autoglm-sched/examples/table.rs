//! The quality table of BENCHMARKS.md: every algorithm on every DAG of a set × platform,
//! makespans relative to HEFT (geometric mean), makespan / lower bound (median, 90th
//! percentile), and `auto`'s worst ratio to the best of HEFT, CPOP and all-on-the-
//! fastest (must be ≤ 1). Every schedule is validated.
//!
//! `cargo run --release -p autoglm-sched --example table -- DAGS_ROOT [SET_DIR...] [--model FILE] [--per-dag]`
//! (`--per-dag`: each DAG's makespan / lower bound per algorithm on stderr)
//! (sets default to `random` and `wfcommons` under DAGS_ROOT; platforms from
//! `DAGS_ROOT/platforms`).

use autoglm_sched::{lower_bounds, validate, Algorithm, Dag, Gcn, Platform, Scheduler};

const ALGOS: [(Algorithm, &str); 7] = [
    (Algorithm::Heft, "HEFT"),
    (Algorithm::HeftDup, "HEFT+dup"),
    (Algorithm::Cpop, "CPOP"),
    (Algorithm::Fastest, "fastest"),
    (Algorithm::GcnNoDup, "GCN"),
    (Algorithm::Gcn, "GCN+dup"),
    (Algorithm::Auto, "auto"),
];

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let pos = q * (v.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let model = match args.iter().position(|a| a == "--model") {
        Some(i) => {
            let path = args.remove(i + 1);
            args.remove(i);
            Gcn::from_json(&std::fs::read_to_string(path)?)?
        }
        None => Gcn::pretrained(),
    };
    let per_dag = match args.iter().position(|a| a == "--per-dag") {
        Some(i) => {
            args.remove(i);
            true
        }
        None => false,
    };
    let sched = Scheduler::new(model);
    let root = std::path::PathBuf::from(
        args.first()
            .cloned()
            .unwrap_or("../shared/data/dags".into()),
    );
    let sets: Vec<std::path::PathBuf> = if args.len() > 1 {
        args[1..].iter().map(Into::into).collect()
    } else {
        vec![root.join("random"), root.join("wfcommons")]
    };
    println!(
        "| set | platform | DAGs | {} | auto / best classic (max) |",
        ALGOS.map(|a| a.1).join(" | ")
    );
    println!("|---|---|---|{}---|", "---|".repeat(ALGOS.len()));
    for set in &sets {
        let mut files: Vec<_> = std::fs::read_dir(set)?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.retain(|f| f.extension().is_some_and(|x| x == "json"));
        files.sort();
        let dags: Vec<Dag> = files
            .iter()
            .map(|f| Ok(Dag::from_json(&std::fs::read_to_string(f)?)?))
            .collect::<Result<_, Box<dyn std::error::Error>>>()?;
        for plat in ["P1-homo4", "P2-het8", "P3-het16-slow"] {
            let p = Platform::from_json(&std::fs::read_to_string(
                root.join(format!("platforms/{plat}.json")),
            )?)?;
            let mut log_rel = [0.0f64; ALGOS.len()];
            let mut over_lb: Vec<Vec<f64>> = vec![Vec::new(); ALGOS.len()];
            let mut auto_worst = 0.0f64;
            for dag in &dags {
                let lb = lower_bounds(dag, &p).lb;
                let ms: Vec<f64> = ALGOS
                    .iter()
                    .map(|(a, name)| {
                        let s = sched.schedule(*a, dag, &p);
                        let (errors, _) = validate(dag, &p, &s);
                        assert!(
                            errors.is_empty(),
                            "{name} on {}: {:?}",
                            dag.name,
                            &errors[..1]
                        );
                        s.makespan()
                    })
                    .collect();
                for k in 0..ALGOS.len() {
                    log_rel[k] += (ms[k] / ms[0]).ln();
                    over_lb[k].push(ms[k] / lb);
                }
                if per_dag {
                    let r: Vec<String> = ms.iter().map(|m| format!("{:.4}", m / lb)).collect();
                    eprintln!("{plat} {} n={} {}", dag.name, dag.len(), r.join(" "));
                }
                let classic = ms[0].min(ms[2]).min(ms[3]);
                auto_worst = auto_worst.max(ms[6] / classic);
            }
            let n = dags.len() as f64;
            let cells: Vec<String> = (0..ALGOS.len())
                .map(|k| {
                    let mut v = over_lb[k].clone();
                    format!(
                        "{:.3} ({:.3} / {:.3})",
                        (log_rel[k] / n).exp(),
                        quantile(&mut v, 0.5),
                        quantile(&mut v, 0.9)
                    )
                })
                .collect();
            println!(
                "| {} | {plat} | {} | {} | {auto_worst:.4} |",
                set.file_name().map_or("?".into(), |s| s.to_string_lossy()),
                dags.len(),
                cells.join(" | ")
            );
        }
    }
    println!("\nCells: geometric mean of makespan / HEFT's (median / 90th percentile of makespan / lower bound).");
    Ok(())
}
