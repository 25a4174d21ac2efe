//! Expected makespan under 1 and 2 random worker failures (of 16, P3-het16-slow), HEFT
//! without and with replication, on the shared DAGs.
//!
//! `cargo run --release -p autoglm-sched --example replication -- ../shared/data/dags [budget] [sim]`

use autoglm_sched::{
    expected_makespan_under_failures, heft, replicate, replicate_simulated, validate, Dag, Platform,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root =
        std::path::PathBuf::from(args.next().unwrap_or_else(|| "../shared/data/dags".into()));
    let budget: f64 = args.next().map_or(Ok(0.3), |b| b.parse())?;
    // `sim`: keep only replicas that help on 16 simulated failures (other draws than
    // the 40 the table is measured on).
    let simulated = args.next().is_some_and(|a| a == "sim");
    let p = Platform::from_json(&std::fs::read_to_string(
        root.join("platforms/P3-het16-slow.json"),
    )?)?;
    let (mut g1, mut g2, mut gw, mut n) = (0.0f64, 0.0f64, 0.0f64, 0);
    let (mut c1, mut c2, mut better1, mut better2) = (0.0f64, 0.0f64, 0, 0);
    println!("| DAG | n | makespan | E[mk] 1 failure: none → replicated | 2 failures | replicas | extra work |");
    println!("|---|---|---|---|---|---|---|");
    for set in ["random", "wfcommons"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(set))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.retain(|f| f.extension().is_some_and(|x| x == "json"));
        files.sort();
        for f in files {
            let dag = Dag::from_json(&std::fs::read_to_string(&f)?)?;
            let s = heft(&dag, &p);
            let r = if simulated {
                replicate_simulated(&dag, &p, &s, budget, 16, 24, 5)
            } else {
                replicate(&dag, &p, &s, budget)
            };
            let (errs, _) = validate(&dag, &p, &r.schedule);
            assert!(
                errs.is_empty(),
                "{}: {:?}",
                dag.name,
                &errs[..errs.len().min(3)]
            );
            let e = |s, k| expected_makespan_under_failures(&dag, &p, s, k, 40, 11);
            let (a1, b1, a2, b2) = (e(&s, 1), e(&r.schedule, 1), e(&s, 2), e(&r.schedule, 2));
            println!(
                "| {} | {} | {:.1} | {a1:.1} → {b1:.1} | {a2:.1} → {b2:.1} | {} | {:.1} % |",
                dag.name,
                dag.len(),
                s.makespan(),
                r.replicas,
                100.0 * r.extra_work
            );
            g1 += (b1 / a1).ln();
            g2 += (b2 / a2).ln();
            c1 += (a1 / s.makespan()).ln();
            c2 += (a2 / s.makespan()).ln();
            better1 += usize::from(b1 < a1 * (1.0 - 1e-9));
            better2 += usize::from(b2 < a2 * (1.0 - 1e-9));
            gw += r.extra_work;
            n += 1;
        }
    }
    println!(
        "\ngeometric mean of replicated / plain expected makespan: 1 failure {:.3}, 2 failures {:.3}; mean extra work {:.1} % (budget {:.0} %, {n} DAGs)",
        (g1 / n as f64).exp(),
        (g2 / n as f64).exp(),
        100.0 * gw / n as f64,
        100.0 * budget
    );
    println!(
        "failures cost (plain E[mk] / failure-free makespan, geometric mean): 1 failure {:.3}, 2 failures {:.3}; replication lowers E[mk] on {better1} (1 failure) and {better2} (2 failures) of {n} DAGs",
        (c1 / n as f64).exp(),
        (c2 / n as f64).exp(),
    );
    Ok(())
}
