//! Replication for fault tolerance: extra copies of the tasks whose loss a failure is
//! most likely to turn into delay, placed in idle gaps of other workers so that the failure-free
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

/// How much each task's loss is expected to cost: the chance that a failure at a
/// uniformly random time hits it (its finish over the makespan: a failure before then
/// loses it) times how tight it is in the schedule (`exp(−slack / (5 % of the
/// makespan))`, slack = how late its first copy could finish without delaying the
/// makespan, given every worker's order and the communication between the chosen
/// workers). Exit tasks count too: losing the last task delays the end directly.
fn exposure(dag: &Dag, p: &Platform, s: &Schedule) -> Vec<f64> {
    let n = dag.len();
    let makespan = s.makespan();
    if makespan <= 0.0 {
        return vec![0.0; n];
    }
    let mut first: Vec<Option<Assignment>> = vec![None; n];
    for a in &s.assignments {
        if a.task < n && first[a.task].is_none_or(|f| a.finish < f.finish) {
            first[a.task] = Some(*a);
        }
    }
    // The next task on the same worker (first copies only).
    let mut on: Vec<Vec<Assignment>> = vec![Vec::new(); p.workers()];
    for a in first.iter().flatten() {
        on[a.worker].push(*a);
    }
    let mut next_on = vec![usize::MAX; n];
    for list in &mut on {
        list.sort_by(|x, y| x.start.total_cmp(&y.start));
        for pair in list.windows(2) {
            next_on[pair[0].task] = pair[1].task;
        }
    }
    // Latest finish, in decreasing order of start (successors and the next task on the
    // worker start later).
    let mut by_start: Vec<usize> = (0..n).filter(|&v| first[v].is_some()).collect();
    by_start.sort_by(|&a, &b| {
        let (x, y) = (
            first[a].map_or(0.0, |c| c.start),
            first[b].map_or(0.0, |c| c.start),
        );
        y.total_cmp(&x)
    });
    let mut latest_start = vec![makespan; n];
    let mut out = vec![0.0; n];
    for v in by_start {
        let Some(a) = first[v] else { continue };
        let mut lf = makespan;
        for &c in &dag.succ[v] {
            if let Some(b) = first[c] {
                lf = lf.min(latest_start[c] - p.comm(a.worker, b.worker, dag.data[&(v, c)]));
            }
        }
        if next_on[v] != usize::MAX {
            lf = lf.min(latest_start[next_on[v]]);
        }
        latest_start[v] = lf - (a.finish - a.start);
        let slack = (lf - a.finish).max(0.0);
        out[v] = a.finish / makespan * (-slack / (0.05 * makespan)).exp();
    }
    out
}

/// Adds replicas of the tasks most exposed to failures (late and tight in the schedule;
/// see `exposure`) while
/// their busy time stays within `budget` × the schedule's busy time. A replica goes on a
/// worker without a copy of the task, in the earliest idle gap after its inputs can be
/// there (from the planned copies) that ends by the makespan; a task with no such gap is
/// skipped. The result passes the validator whenever the input does.
pub fn replicate(dag: &Dag, p: &Platform, schedule: &Schedule, budget: f64) -> Replication {
    replicate_if(dag, p, schedule, budget, &mut |_| true)
}

/// [`replicate`], keeping only the replicas that lower the mean simulated makespan
/// over `draws` fixed random single-worker failures (common random numbers: every
/// candidate is judged on the same failures). At most `candidates` tasks (the most
/// exposed) are tried, at one simulation per draw each.
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
    let exposure = exposure(dag, p, &s);
    let mut order: Vec<usize> = (0..dag.len()).filter(|&u| exposure[u] > 0.0).collect();
    order.sort_by(|&a, &b| exposure[b].total_cmp(&exposure[a]).then(a.cmp(&b)));
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
