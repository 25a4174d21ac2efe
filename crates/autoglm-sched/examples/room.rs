//! How much a better priority could gain over HEFT: per shared random DAG, the best of
//! `K` randomly perturbed upward ranks, without and with duplication, and all on the
//! fastest worker, relative to HEFT (geometric means).
//!
//! `cargo run --release -p autoglm-sched --example room -- ../shared/data/dags [K] [SET]`
//! (`SET` defaults to `random`; per-DAG lines also give HEFT's and the best
//! perturbed schedule's makespan / lower bound).

use autoglm_sched::{
    heft, heft_dup, list_schedule, list_schedule_dup, lower_bounds, upward_rank,
    upward_rank_weighted, Dag, Platform,
};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let root =
        std::path::PathBuf::from(args.next().unwrap_or_else(|| "../shared/data/dags".into()));
    let k: usize = args.next().map_or(Ok(100), |b| b.parse())?;
    let set = args.next().unwrap_or_else(|| "random".into());
    for plat in ["P1-homo4", "P2-het8", "P3-het16-slow"] {
        let p = Platform::from_json(&std::fs::read_to_string(
            root.join(format!("platforms/{plat}.json")),
        )?)?;
        let mut files: Vec<_> = std::fs::read_dir(root.join(&set))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.retain(|f| f.extension().is_some_and(|e| e == "json"));
        files.sort();
        let mut g = [0.0f64; 5];
        let mut lam = [0.0f64; 4];
        for f in &files {
            let dag = Dag::from_json(&std::fs::read_to_string(f)?)?;
            let h = heft(&dag, &p).makespan();
            let hd = heft_dup(&dag, &p).makespan();
            let bounds = lower_bounds(&dag, &p);
            let seq = bounds.seq_fastest;
            let rank = upward_rank(&dag, &p);
            let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(7);
            let (mut best, mut best_dup) = (h, hd);
            for i in 0..k {
                let sigma = [0.05, 0.2, 0.5][i % 3];
                let pr: Vec<f64> = rank
                    .iter()
                    .map(|r| {
                        let z: f64 = StandardNormal.sample(&mut rng);
                        r * (sigma * z).exp()
                    })
                    .collect();
                best = best.min(list_schedule(&dag, &p, &pr, "x").makespan());
                best_dup = best_dup.min(list_schedule_dup(&dag, &p, &pr, "x").makespan());
            }
            for (j, lambda) in [0.0, 0.5, 2.0, 4.0].into_iter().enumerate() {
                let m = list_schedule_dup(&dag, &p, &upward_rank_weighted(&dag, &p, lambda), "x")
                    .makespan();
                lam[j] += (m / hd).ln();
            }
            let r = [hd / h, seq / h, best / h, best_dup / h, best_dup / hd];
            println!(
                "{plat} {:44} dup {:.3} seq {:.3} best-prio {:.3} best-prio+dup {:.3} (vs dup {:.3}) mk/LB heft {:.3} best {:.3}",
                dag.name, r[0], r[1], r[2], r[3], r[4], h / bounds.lb, best.min(best_dup) / bounds.lb
            );
            for (a, b) in g.iter_mut().zip(r) {
                *a += b.ln();
            }
        }
        let n = files.len() as f64;
        let gm: Vec<String> = g.iter().map(|x| format!("{:.3}", (x / n).exp())).collect();
        println!("{plat} geomean: dup, seq, best-prio, best-prio+dup, best-prio+dup/dup = {gm:?}");
        let gl: Vec<String> = lam
            .iter()
            .map(|x| format!("{:.3}", (x / n).exp()))
            .collect();
        println!("{plat} geomean of rank(λ)+dup / HEFT+dup for λ = 0, 0.5, 2, 4: {gl:?}");
    }
    Ok(())
}
