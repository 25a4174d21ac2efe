//! Replication for fault tolerance: extra copies of the tasks whose loss would hold up
//! the most work, placed in idle gaps of other workers so that the failure-free
//! schedule (and its makespan) is unchanged.

use crate::model::{Assignment, Dag, Platform, Schedule};
use crate::sim::{simulate, SimConfig};

/// What [`replicate`] added.
#[derive(Debug, Clone, PartialEq)]
pub struct Replication {
    /// The schedule with the replicas.
    pub schedule: Schedule,
    /// Replicas added.
    pub replicas: usize,
    /// Busy time the replicas add, as a fraction of the original schedule's busy time.
    pub extra_work: f64,
}

/// Number of transitive descendants of every task (bitsets over a reverse topological
/// sweep).
fn descendants(dag: &Dag) -> Vec<usize> {
    let n = dag.len();
    let words = n.div_ceil(64);
    let mut sets = vec![vec![0u64; words]; n];
    for &u in dag.topo.iter().rev() {
        let mut s = vec![0u64; words];
        for &v in &dag.succ[u] {
            s[v / 64] |= 1 << (v % 64);
            for (a, b) in s.iter_mut().zip(&sets[v]) {
                *a |= b;
            }
        }
        sets[u] = s;
    }
    sets.iter()
        .map(|s| s.iter().map(|w| w.count_ones() as usize).sum())
        .collect()
}

/// Adds replicas of the tasks with the most descendants (ties: longer task first) while
/// their busy time stays within `budget` × the schedule's busy time. A replica goes on a
/// worker without a copy of the task, in the earliest idle gap after its inputs can be
/// there (from the planned copies) that ends by the makespan; a task with no such gap is
/// skipped. The result passes the validator whenever the input does.
pub fn replicate(dag: &Dag, p: &Platform, schedule: &Schedule, budget: f64) -> Replication {
    replicate_if(dag, p, schedule, budget, &mut |_| true)
}

/// [`replicate`], keeping only the replicas that lower the mean simulated makespan
/// over `draws` fixed random single-worker failures (common random numbers: every
/// candidate is judged on the same failures). At most `candidates` tasks (those with
/// the most descendants) are tried, at one simulation per draw each.
pub fn replicate_simulated(
    dag: &Dag,
    p: &Platform,
    schedule: &Schedule,
    budget: f64,
    draws: usize,
    candidates: usize,
    seed: u64,
) -> Replication {
    use rand::{RngExt, SeedableRng};
    let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
    let base = schedule.makespan();
    let scenarios: Vec<SimConfig> = (0..draws)
        .map(|_| SimConfig {
            failures: vec![(rng.random_range(0..p.workers()), rng.random::<f64>() * base)],
            ..SimConfig::default()
        })
        .collect();
    let mean = |s: &Schedule| {
        scenarios
            .iter()
            .map(|c| simulate(dag, p, s, c).makespan)
            .sum::<f64>()
            / scenarios.len().max(1) as f64
    };
    let mut current = mean(schedule);
    let mut tried = 0;
    replicate_if(dag, p, schedule, budget, &mut |s| {
        tried += 1;
        if tried > candidates {
            return false;
        }
        let m = mean(s);
        let better = m < current * (1.0 - 1e-4);
        if better {
            current = m;
        }
        better
    })
}

fn replicate_if(
    dag: &Dag,
    p: &Platform,
    schedule: &Schedule,
    budget: f64,
    accept: &mut dyn FnMut(&Schedule) -> bool,
) -> Replication {
    let mut s = schedule.clone();
    let makespan = s.makespan();
    let base_busy: f64 = s.assignments.iter().map(|a| a.finish - a.start).sum();
    let allowed = budget.max(0.0) * base_busy;
    // Busy intervals per worker, sorted.
    let mut busy: Vec<Vec<(f64, f64)>> = vec![Vec::new(); p.workers()];
    let mut copies: Vec<Vec<Assignment>> = vec![Vec::new(); dag.len()];
    for a in &s.assignments {
        busy[a.worker].push((a.start, a.finish));
        copies[a.task].push(*a);
    }
    for b in &mut busy {
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
    }
    let desc = descendants(dag);
    let mut order: Vec<usize> = (0..dag.len()).filter(|&u| desc[u] > 0).collect();
    order.sort_by(|&a, &b| {
        desc[b]
            .cmp(&desc[a])
            .then(dag.cost(b).total_cmp(&dag.cost(a)))
            .then(a.cmp(&b))
    });
    let mut added = 0.0;
    let mut replicas = 0;
    for v in order {
        let mut best: Option<(f64, f64, usize)> = None;
        for (w, intervals) in busy.iter().enumerate() {
            if copies[v].iter().any(|c| c.worker == w) {
                continue;
            }
            let dur = dag.cost(v) / p.speed[w];
            if added + dur > allowed {
                continue;
            }
            // Inputs from any planned copy of each parent.
            let mut ready = 0.0f64;
            for &u in &dag.pred[v] {
                let b = dag.data[&(u, v)];
                let r = copies[u]
                    .iter()
                    .map(|c| c.finish + p.comm(c.worker, w, b))
                    .fold(f64::INFINITY, f64::min);
                ready = ready.max(r);
            }
            // Earliest gap of length dur starting at or after ready.
            let mut t = ready;
            for &(bs, bf) in intervals {
                if bf <= t {
                    continue;
                }
                if bs - t >= dur {
                    break;
                }
                t = t.max(bf);
            }
            let f = t + dur;
            if f <= makespan && best.is_none_or(|b| f < b.0) {
                best = Some((f, t, w));
            }
        }
        if let Some((f, t, w)) = best {
            let a = Assignment {
                task: v,
                worker: w,
                start: t,
                finish: f,
            };
            s.assignments.push(a);
            if !accept(&s) {
                s.assignments.pop();
                continue;
            }
            let pos = busy[w].partition_point(|x| x.0 < t);
            busy[w].insert(pos, (t, f));
            copies[v].push(a);
            added += f - t;
            replicas += 1;
        }
    }
    s.scheduler = format!("{}+replication", schedule.scheduler);
    Replication {
        schedule: s,
        replicas,
        extra_work: if base_busy > 0.0 {
            added / base_busy
        } else {
            0.0
        },
    }
}
