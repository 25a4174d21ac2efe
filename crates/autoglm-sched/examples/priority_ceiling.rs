//! How low a priority-driven list schedule can go on given DAGs: for each, HEFT's
//! makespan / lower bound, then `auto`'s hill-climbing priority search alone (no worker
//! moves) with `TRIES` perturbations from three seeds, then `auto` with 20,000 worker
//! moves. A `gcn` schedule is a list schedule by some priority, so where the search
//! finds nothing below HEFT, no priority model is likely to.
//!
//! `cargo run --release -p autoglm-sched --example priority_ceiling -- DAGS_ROOT PLATFORM TRIES DAG...`
//! (DAG files relative to DAGS_ROOT; PLATFORM names `DAGS_ROOT/platforms/PLATFORM.json`).

use std::time::Duration;

use autoglm_sched::{heft, lower_bounds, Dag, Platform, Scheduler};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 4 {
        return Err("usage: priority_ceiling DAGS_ROOT PLATFORM TRIES DAG...".into());
    }
    let root = std::path::PathBuf::from(&args[0]);
    let p = Platform::from_json(&std::fs::read_to_string(
        root.join(format!("platforms/{}.json", args[1])),
    )?)?;
    let tries: usize = args[2].parse()?;
    let long = Duration::from_secs(600);
    for file in &args[3..] {
        let dag = Dag::from_json(&std::fs::read_to_string(root.join(file))?)?;
        let lb = lower_bounds(&dag, &p).lb;
        let mut line = format!("{} HEFT {:.4}", dag.name, heft(&dag, &p).makespan() / lb);
        for seed in 1..=3 {
            let s = Scheduler::default()
                .with_moves(0)
                .with_search(tries, seed)
                .with_budget(long)
                .auto(&dag, &p);
            line += &format!(" | priority search (seed {seed}) {:.4}", s.makespan() / lb);
        }
        let s = Scheduler::default()
            .with_moves(20_000)
            .with_budget(long)
            .auto(&dag, &p);
        line += &format!(" | with 20,000 moves {:.4}", s.makespan() / lb);
        println!("{line}");
    }
    Ok(())
}
