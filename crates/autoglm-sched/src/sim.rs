//! A discrete-event simulator of the platform model: a static schedule executed with
//! noisy task durations and worker failures.
//!
//! Each worker runs its copies in the order of their planned starts. A copy starts
//! when its worker is free and, for every parent, some finished copy's data has arrived
//! (finish + communication, as the validator's rule); it then runs for cost / speed ×
//! a noise factor. A copy whose task already finished elsewhere early enough that the
//! copy could not deliver the output anywhere sooner is cancelled before it starts
//! (as a runtime with replicas cancels the losers' pending attempts). A worker that fails at time `t` loses the copy it is running and
//! every later one; each lost task with no finished copy and no copy queued on a live
//! worker is queued again at time `t`, in its planned order, on the live worker that
//! would finish it first counting the lost work already sent there (online recovery;
//! replicas make it unnecessary). Anything still unfinished at the
//! end is re-run on the survivors, so makespans under failures stay finite.

use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;

use crate::model::{Dag, Platform, Schedule};

/// Multiplicative noise on task durations and failures to inject.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SimConfig {
    /// Durations are multiplied by `exp(σ·z − σ²/2)`, z standard normal (mean 1); 0 for
    /// none.
    pub noise_sigma: f64,
    /// Workers that fail, and when.
    pub failures: Vec<(usize, f64)>,
    /// Seed of the noise.
    pub seed: u64,
}

/// What a simulated run gave.
#[derive(Debug, Clone, PartialEq)]
pub struct SimResult {
    /// When the last task finished.
    pub makespan: f64,
    /// The first finish time of each task.
    pub finish: Vec<f64>,
    /// Task copies lost to failures.
    pub lost_copies: usize,
    /// Tasks re-run because every copy was lost (re-queued on a live worker when the
    /// failure happened, or re-run at the end if even that copy could not run).
    pub reruns: usize,
    /// Total busy time of all workers, lost work included.
    pub busy: f64,
    /// Copies (replicas or duplicates) cancelled before they started because a
    /// finished copy already delivered the task's output at least as early.
    pub cancelled: usize,
}

#[derive(Clone, Copy)]
struct Copy {
    task: usize,
    worker: usize,
    planned: f64,
}

/// Runs `schedule` in the simulator.
pub fn simulate(dag: &Dag, p: &Platform, schedule: &Schedule, cfg: &SimConfig) -> SimResult {
    let n = dag.len();
    let m = p.workers();
    let mut rng = Pcg64Mcg::seed_from_u64(cfg.seed);
    let factor: Vec<f64> = (0..n)
        .map(|_| {
            if cfg.noise_sigma > 0.0 {
                let s = cfg.noise_sigma;
                let z: f64 = StandardNormal.sample(&mut rng);
                (s * z - s * s / 2.0).exp()
            } else {
                1.0
            }
        })
        .collect();
    let mut fail_at = vec![f64::INFINITY; m];
    for &(w, t) in &cfg.failures {
        if w < m {
            fail_at[w] = fail_at[w].min(t.max(0.0));
        }
    }
    // Per worker, its copies in planned order.
    let mut queues: Vec<Vec<Copy>> = vec![Vec::new(); m];
    for a in &schedule.assignments {
        if a.task < n && a.worker < m {
            queues[a.worker].push(Copy {
                task: a.task,
                worker: a.worker,
                planned: a.start,
            });
        }
    }
    for q in &mut queues {
        q.sort_by(|a, b| a.planned.total_cmp(&b.planned));
    }
    // Finished copies of each task: (worker, finish).
    let mut done: Vec<Vec<(usize, f64)>> = vec![Vec::new(); n];
    let mut next = vec![0usize; m];
    let mut free_at = vec![0.0f64; m];
    let mut lost = 0usize;
    let mut requeued = 0usize;
    let mut busy = 0.0f64;
    // Arrival of v's inputs on worker w, if every parent has finished somewhere.
    let ready = |done: &Vec<Vec<(usize, f64)>>, v: usize, w: usize| -> Option<f64> {
        let mut t = 0.0f64;
        for &u in &dag.pred[v] {
            let b = dag.data[&(u, v)];
            let r = done[u]
                .iter()
                .map(|&(wu, f)| f + p.comm(wu, w, b))
                .fold(f64::INFINITY, f64::min);
            if r.is_infinite() {
                return None;
            }
            t = t.max(r);
        }
        Some(t)
    };
    // The largest output of each task (what a copy must deliver soonest).
    let out_bytes: Vec<f64> = (0..n)
        .map(|u| {
            dag.succ[u]
                .iter()
                .map(|&v| dag.data[&(u, v)])
                .fold(0.0, f64::max)
        })
        .collect();
    // A copy of `t` on `w` finishing at `f` is useless when a finished copy elsewhere
    // delivers the output on `w` by `f` (with one bandwidth and latency between any two
    // workers, it then also reaches every other worker no later).
    let useless = |done: &Vec<Vec<(usize, f64)>>, t: usize, w: usize, f: f64| {
        done[t]
            .iter()
            .any(|&(x, fx)| fx + p.comm(x, w, out_bytes[t]) <= f)
    };
    let mut cancelled = 0usize;
    // Event loop: repeatedly start the copy that can start earliest.
    loop {
        let mut best: Option<(f64, usize)> = None;
        for w in 0..m {
            let Some(c) = queues[w].get(next[w]) else {
                continue;
            };
            if let Some(r) = ready(&done, c.task, w) {
                let s = r.max(free_at[w]);
                if best.is_none_or(|b| s < b.0) {
                    best = Some((s, w));
                }
            }
        }
        let Some((s, w)) = best else { break };
        let c = queues[w][next[w]];
        next[w] += 1;
        if useless(
            &done,
            c.task,
            w,
            s + dag.cost(c.task) / p.speed[w] * factor[c.task],
        ) {
            // Another copy already finished early enough that this one could not
            // deliver the task's output anywhere sooner: cancelled before it starts.
            cancelled += 1;
            continue;
        }
        let dur = dag.cost(c.task) / p.speed[c.worker] * factor[c.task];
        let f = s + dur;
        if f > fail_at[w] || s >= fail_at[w] {
            // The worker dies first: this copy and the rest of its queue are lost.
            let t_fail = fail_at[w];
            busy += (t_fail - s).max(0.0);
            let orphans: Vec<usize> = std::iter::once(c.task)
                .chain(queues[w][next[w]..].iter().map(|x| x.task))
                .collect();
            lost += orphans.len();
            next[w] = queues[w].len();
            free_at[w] = f64::INFINITY;
            // Online recovery: each lost task with no finished copy and no copy still
            // queued on a live worker is queued again at the failure time, in planned
            // order, on the live worker where it would finish first — counting the
            // lost work already sent there and when its inputs can be there (from
            // finished copies, planned copies on live workers, or earlier re-queued
            // tasks).
            let live: Vec<usize> = (0..m).filter(|&x| fail_at[x].is_infinite()).collect();
            let mut avail: Vec<f64> = (0..m).map(|x| free_at[x].max(t_fail)).collect();
            let mut moved: std::collections::HashMap<usize, (usize, f64)> =
                std::collections::HashMap::new();
            for t in orphans {
                if !done[t].is_empty() {
                    continue;
                }
                // A copy still queued on a live worker (a replica) covers the task
                // unless re-running it finishes sooner.
                let covered_by = live
                    .iter()
                    .filter_map(|&x| {
                        queues[x][next[x]..]
                            .iter()
                            .find(|q| q.task == t)
                            .map(|q| q.planned + dag.cost(t) / p.speed[x])
                    })
                    .fold(f64::INFINITY, f64::min);
                // Where each input can come from (worker, finish): finished copies,
                // a copy re-queued by this recovery, or one still queued on a live
                // worker; an input with none is taken as ready at the failure.
                let origins: Vec<(f64, Vec<(usize, f64)>)> = dag.pred[t]
                    .iter()
                    .map(|&u| {
                        let mut from = done[u].clone();
                        if from.is_empty() {
                            if let Some(&m) = moved.get(&u) {
                                from.push(m);
                            } else if let Some((wu, q)) = live.iter().find_map(|&y| {
                                queues[y][next[y]..]
                                    .iter()
                                    .find(|q| q.task == u)
                                    .map(|q| (y, q))
                            }) {
                                from.push((wu, q.planned + dag.cost(u) / p.speed[wu]));
                            }
                        }
                        (dag.data[&(u, t)], from)
                    })
                    .collect();
                let eft = |x: usize| {
                    let ready = origins.iter().fold(t_fail, |r, (b, from)| {
                        let a = from
                            .iter()
                            .map(|&(wu, f)| f + p.comm(wu, x, *b))
                            .fold(f64::INFINITY, f64::min);
                        r.max(if a.is_finite() { a } else { t_fail })
                    });
                    ready.max(avail[x]) + dag.cost(t) / p.speed[x]
                };
                // The first live worker with the earliest finish.
                let target = live.iter().map(|&x| (x, eft(x))).fold(
                    None,
                    |best: Option<(usize, f64)>, c| match best {
                        Some(b) if b.1 <= c.1 => Some(b),
                        _ => Some(c),
                    },
                );
                if let Some((x, f)) = target.filter(|&(_, f)| f < covered_by) {
                    // Queued where its planned start falls, so the worker's own ready
                    // work is not held up waiting for this task's inputs.
                    let planned = f - dag.cost(t) / p.speed[x];
                    let pos =
                        next[x] + queues[x][next[x]..].partition_point(|q| q.planned <= planned);
                    queues[x].insert(
                        pos,
                        Copy {
                            task: t,
                            worker: x,
                            planned,
                        },
                    );
                    avail[x] += dag.cost(t) / p.speed[x];
                    moved.insert(t, (x, f));
                    requeued += 1;
                }
            }
            continue;
        }
        busy += dur;
        free_at[w] = f;
        done[c.task].push((w, f));
    }
    // Recovery: tasks with no finished copy, in topological order, on the surviving
    // worker that finishes them first (after its planned work).
    let mut reruns = requeued;
    for &v in &dag.topo {
        if !done[v].is_empty() {
            continue;
        }
        let mut best: Option<(f64, usize)> = None;
        for w in 0..m {
            if fail_at[w].is_finite() {
                continue;
            }
            let Some(r) = ready(&done, v, w) else {
                continue;
            };
            let f = r.max(free_at[w]) + dag.cost(v) / p.speed[w] * factor[v];
            if best.is_none_or(|b| f < b.0) {
                best = Some((f, w));
            }
        }
        if let Some((f, w)) = best {
            busy += dag.cost(v) / p.speed[w] * factor[v];
            free_at[w] = f;
            done[v].push((w, f));
            reruns += 1;
        }
    }
    let finish: Vec<f64> = done
        .iter()
        .map(|c| c.iter().map(|x| x.1).fold(f64::INFINITY, f64::min))
        .collect();
    let makespan = done.iter().flatten().map(|x| x.1).fold(0.0f64, f64::max);
    let makespan = if finish.iter().any(|f| f.is_infinite()) {
        f64::INFINITY
    } else {
        makespan
    };
    SimResult {
        makespan,
        finish,
        lost_copies: lost,
        reruns,
        busy,
        cancelled,
    }
}

/// The mean makespan of `schedule` when `k` distinct random workers fail at uniformly
/// random times within the failure-free makespan, over `trials` draws (seeded).
pub fn expected_makespan_under_failures(
    dag: &Dag,
    p: &Platform,
    schedule: &Schedule,
    k: usize,
    trials: usize,
    seed: u64,
) -> f64 {
    let base = simulate(dag, p, schedule, &SimConfig::default()).makespan;
    let mut rng = Pcg64Mcg::seed_from_u64(seed);
    let m = p.workers();
    let k = k.min(m.saturating_sub(1));
    let mut total = 0.0;
    for _ in 0..trials {
        let mut workers: Vec<usize> = (0..m).collect();
        // Partial Fisher–Yates for k distinct workers.
        for i in 0..k {
            let j = rng.random_range(i..m);
            workers.swap(i, j);
        }
        let failures = workers[..k]
            .iter()
            .map(|&w| (w, rng.random::<f64>() * base))
            .collect();
        let cfg = SimConfig {
            failures,
            ..SimConfig::default()
        };
        total += simulate(dag, p, schedule, &cfg).makespan;
    }
    total / trials.max(1) as f64
}
