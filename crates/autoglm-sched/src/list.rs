//! List scheduling with insertion: HEFT and CPOP (Topcuoglu, Hariri & Wu, IEEE TPDS
//! 13(3), 2002) for related machines with latency + bandwidth communication.
//!
//! Tie-breaking follows the Python anchors of `shared/bench/sched/heuristics.py`
//! exactly, so makespans agree to rounding: HEFT orders tasks by decreasing upward
//! rank, then by position in [`Dag::topo`]; a task goes to the worker giving the
//! earliest finish (the lowest worker id among equal finishes), in the first idle gap
//! long enough after its data is ready. CPOP keeps the critical path (the entry task of
//! highest priority, then successors whose priority equals the path's, highest first,
//! lowest id on ties) on the fastest worker and schedules ready tasks by decreasing
//! priority (upward + downward rank).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::model::{Assignment, Dag, Platform, Schedule};

/// Busy intervals of each worker, sorted by time.
struct Timeline {
    start: Vec<Vec<f64>>,
    finish: Vec<Vec<f64>>,
}

impl Timeline {
    fn new(m: usize) -> Timeline {
        Timeline {
            start: vec![Vec::new(); m],
            finish: vec![Vec::new(); m],
        }
    }

    /// The earliest start ≥ `ready` of a `dur`-long interval on worker `w`, and the
    /// position to insert it at.
    fn earliest(&self, w: usize, ready: f64, dur: f64) -> (f64, usize) {
        let (st, fi) = (&self.start[w], &self.finish[w]);
        let mut i = fi.partition_point(|&f| f <= ready);
        let mut t = ready;
        while i < st.len() {
            if st[i] - t >= dur {
                return (t, i);
            }
            if fi[i] > t {
                t = fi[i];
            }
            i += 1;
        }
        (t, i)
    }

    fn insert(&mut self, w: usize, i: usize, s: f64, f: f64) {
        self.start[w].insert(i, s);
        self.finish[w].insert(i, f);
    }
}

/// Upward rank: mean execution time plus the longest mean-communication path to an exit.
pub fn upward_rank(dag: &Dag, p: &Platform) -> Vec<f64> {
    upward_rank_weighted(dag, p, 1.0)
}

/// [`upward_rank`] with every communication time multiplied by `lambda` (0 ignores
/// communication; 1 is HEFT's rank, bit for bit).
pub fn upward_rank_weighted(dag: &Dag, p: &Platform, lambda: f64) -> Vec<f64> {
    upward_rank_general(dag, p, lambda, p.mean_inv_speed)
}

/// [`upward_rank_weighted`] with each task's cost taken at inverse speed `inv_speed`
/// (the mean inverse speed is HEFT's; the fastest worker's gives the optimistic rank).
pub(crate) fn upward_rank_general(
    dag: &Dag,
    p: &Platform,
    lambda: f64,
    inv_speed: f64,
) -> Vec<f64> {
    let mut r = vec![0.0f64; dag.len()];
    for &u in dag.topo.iter().rev() {
        let mut best = 0.0f64;
        for &v in &dag.succ[u] {
            let x = lambda * p.mean_comm(dag.data[&(u, v)]) + r[v];
            if x > best {
                best = x;
            }
        }
        r[u] = dag.cost(u) * inv_speed + best;
    }
    r
}

/// Downward rank: the longest mean path from an entry to the task (excluding it).
pub fn downward_rank(dag: &Dag, p: &Platform) -> Vec<f64> {
    let mut r = vec![0.0f64; dag.len()];
    for &v in &dag.topo {
        let mut best = 0.0f64;
        for &u in &dag.pred[v] {
            let x = r[u] + dag.cost(u) * p.mean_inv_speed + p.mean_comm(dag.data[&(u, v)]);
            if x > best {
                best = x;
            }
        }
        r[v] = best;
    }
    r
}

/// Where a copy would go: finish, start, worker and position in the worker's timeline.
#[derive(Clone, Copy)]
struct Slot {
    finish: f64,
    start: f64,
    worker: usize,
    index: usize,
}

struct State<'a> {
    dag: &'a Dag,
    p: &'a Platform,
    timeline: Timeline,
    finish: Vec<f64>,
    worker: Vec<usize>,
    /// Extra copies made by duplication: (worker, finish).
    extra: Vec<Vec<(usize, f64)>>,
    duplicate: bool,
}

impl<'a> State<'a> {
    fn new(dag: &'a Dag, p: &'a Platform, duplicate: bool) -> State<'a> {
        State {
            dag,
            p,
            timeline: Timeline::new(p.workers()),
            finish: vec![0.0; dag.len()],
            worker: vec![usize::MAX; dag.len()],
            extra: vec![Vec::new(); dag.len()],
            duplicate,
        }
    }

    /// When `u`'s data for `v` can be on worker `w` (its earliest copy's).
    fn arrival(&self, u: usize, v: usize, w: usize) -> f64 {
        let b = self.dag.data[&(u, v)];
        let mut t = self.finish[u] + self.p.comm(self.worker[u], w, b);
        for &(x, f) in &self.extra[u] {
            t = t.min(f + self.p.comm(x, w, b));
        }
        t
    }

    fn ready_time(&self, v: usize, w: usize) -> f64 {
        let mut t = 0.0f64;
        for &u in &self.dag.pred[v] {
            let x = self.arrival(u, v, w);
            if x > t {
                t = x;
            }
        }
        t
    }

    /// With duplication: `v` on `w` after a copy of its latest-arriving parent is made
    /// on `w` itself, if that parent lives elsewhere: v's slot, the parent, its slot.
    fn with_duplicate(&mut self, v: usize, w: usize) -> Option<(Slot, usize, Slot)> {
        let (u, _) = self.dag.pred[v]
            .iter()
            .map(|&u| (u, self.arrival(u, v, w)))
            .max_by(|a, b| a.1.total_cmp(&b.1))?;
        if self.worker[u] == w || self.extra[u].iter().any(|c| c.0 == w) {
            return None;
        }
        let du = self.dag.cost(u) / self.p.speed[w];
        let (su, iu) = self.timeline.earliest(w, self.ready_time(u, w), du);
        let fu = su + du;
        let others = self.dag.pred[v]
            .iter()
            .filter(|&&x| x != u)
            .map(|&x| self.arrival(x, v, w))
            .fold(0.0f64, f64::max);
        let ready = others.max(fu);
        let dv = self.dag.cost(v) / self.p.speed[w];
        // v's slot is found with the duplicate in the timeline, then it is taken out.
        self.timeline.insert(w, iu, su, fu);
        let (sv, iv) = self.timeline.earliest(w, ready, dv);
        self.timeline.start[w].remove(iu);
        self.timeline.finish[w].remove(iu);
        let slot = |start: f64, finish: f64, index: usize| Slot {
            finish,
            start,
            worker: w,
            index,
        };
        Some((slot(sv, sv + dv, iv), u, slot(su, fu, iu)))
    }

    fn commit(&mut self, task: usize, at: Slot) -> Assignment {
        self.timeline
            .insert(at.worker, at.index, at.start, at.finish);
        Assignment {
            task,
            worker: at.worker,
            start: at.start,
            finish: at.finish,
        }
    }

    /// Places `v` on whichever of `workers` finishes it first (with duplication on,
    /// also trying a copy of its critical parent on the same worker); returns the
    /// assignments made, the duplicate first.
    fn place(&mut self, v: usize, workers: impl Iterator<Item = usize>) -> Vec<Assignment> {
        let mut best: Option<Slot> = None;
        let mut best_dup: Option<(Slot, usize, Slot)> = None;
        for w in workers {
            let dur = self.dag.cost(v) / self.p.speed[w];
            let (start, index) = self.timeline.earliest(w, self.ready_time(v, w), dur);
            let finish = start + dur;
            if best.is_none_or(|b| finish < b.finish) {
                best = Some(Slot {
                    finish,
                    start,
                    worker: w,
                    index,
                });
            }
            if self.duplicate {
                if let Some(d) = self.with_duplicate(v, w) {
                    if best_dup.is_none_or(|b| d.0.finish < b.0.finish) {
                        best_dup = Some(d);
                    }
                }
            }
        }
        let best = best.expect("a platform has workers");
        let mut out = Vec::with_capacity(2);
        let at = match best_dup {
            Some((at, u, parent)) if at.finish < best.finish => {
                out.push(self.commit(u, parent));
                self.extra[u].push((parent.worker, parent.finish));
                at
            }
            _ => best,
        };
        out.push(self.commit(v, at));
        self.finish[v] = at.finish;
        self.worker[v] = at.worker;
        out
    }
}

/// Heterogeneous Earliest Finish Time.
pub fn heft(dag: &Dag, p: &Platform) -> Schedule {
    let rank = upward_rank(dag, p);
    list_schedule(dag, p, &rank, "HEFT")
}

/// HEFT with duplication: when placing a task, a copy of its latest-arriving parent
/// may be made on the candidate worker (in an idle gap, from the parent's own inputs)
/// if the task then finishes earlier there. Extra copies feed later tasks too.
pub fn heft_dup(dag: &Dag, p: &Platform) -> Schedule {
    let rank = upward_rank(dag, p);
    schedule_by(dag, p, &rank, "HEFT+dup", true)
}

/// List scheduling by a priority (higher first, ties by position in the topological
/// order), each task on the worker that finishes it first, with insertion. The order is
/// made precedence-feasible by always taking the best *ready* task (for priorities
/// that, like upward ranks, already decrease along edges this is the plain sorted order).
pub fn list_schedule(dag: &Dag, p: &Platform, priority: &[f64], name: &str) -> Schedule {
    schedule_by(dag, p, priority, name, false)
}

/// [`list_schedule`] with [`heft_dup`]'s duplication of a task's latest-arriving
/// parent where that finishes the task earlier.
pub fn list_schedule_dup(dag: &Dag, p: &Platform, priority: &[f64], name: &str) -> Schedule {
    schedule_by(dag, p, priority, name, true)
}

/// List scheduling by `priority` on all workers, with or without duplication.
pub(crate) fn schedule_by(
    dag: &Dag,
    p: &Platform,
    priority: &[f64],
    name: &str,
    duplicate: bool,
) -> Schedule {
    let all: Vec<usize> = (0..p.workers()).collect();
    schedule_on(dag, p, priority, name, duplicate, &all)
}

/// List scheduling by `priority` on the given `workers` only (ascending ids).
pub(crate) fn schedule_on(
    dag: &Dag,
    p: &Platform,
    priority: &[f64],
    name: &str,
    duplicate: bool,
    workers: &[usize],
) -> Schedule {
    schedule_where(dag, p, priority, name, duplicate, Workers::Any(workers))
}

/// List scheduling by `priority` with every task on the worker `assign` names (in the
/// first idle gap after its data arrive; with duplication, a copy of its latest-arriving
/// parent may still be made on that worker).
pub(crate) fn schedule_assigned(
    dag: &Dag,
    p: &Platform,
    priority: &[f64],
    name: &str,
    duplicate: bool,
    assign: &[usize],
) -> Schedule {
    schedule_where(dag, p, priority, name, duplicate, Workers::Fixed(assign))
}

/// The worker of each task's first copy in `s` (the one list scheduling placed; later
/// copies are duplicates made for its children).
pub(crate) fn primary_workers(s: &Schedule, n: usize) -> Vec<usize> {
    let mut w = vec![usize::MAX; n];
    for a in s.assignments.iter().rev() {
        w[a.task] = a.worker;
    }
    w
}

/// Where list scheduling may put a task.
#[derive(Clone, Copy)]
enum Workers<'a> {
    /// On whichever of these finishes it first.
    Any(&'a [usize]),
    /// On the worker this names for it.
    Fixed(&'a [usize]),
}

impl<'a> Workers<'a> {
    fn of(self, v: usize) -> &'a [usize] {
        match self {
            Workers::Any(ws) => ws,
            Workers::Fixed(a) => std::slice::from_ref(&a[v]),
        }
    }
}

fn schedule_where(
    dag: &Dag,
    p: &Platform,
    priority: &[f64],
    name: &str,
    duplicate: bool,
    workers: Workers,
) -> Schedule {
    let mut tpos = vec![0usize; dag.len()];
    for (k, &u) in dag.topo.iter().enumerate() {
        tpos[u] = k;
    }
    let mut order: Vec<usize> = (0..dag.len()).collect();
    order.sort_by(|&a, &b| {
        priority[b]
            .partial_cmp(&priority[a])
            .unwrap_or(Ordering::Equal)
            .then(tpos[a].cmp(&tpos[b]))
    });
    let mut st = State::new(dag, p, duplicate);
    let mut s = Schedule::new(dag, p, name);
    if order_is_feasible(dag, &order) {
        for v in order {
            s.assignments
                .extend(st.place(v, workers.of(v).iter().copied()));
        }
        return s;
    }
    let mut heap = ReadyQueue::new(dag, priority, &tpos);
    while let Some(v) = heap.pop() {
        s.assignments
            .extend(st.place(v, workers.of(v).iter().copied()));
        heap.done(v);
    }
    s
}

fn order_is_feasible(dag: &Dag, order: &[usize]) -> bool {
    let mut pos = vec![0usize; dag.len()];
    for (k, &u) in order.iter().enumerate() {
        pos[u] = k;
    }
    dag.edges.iter().all(|&(u, v, _)| pos[u] < pos[v])
}

/// Ready tasks by priority (higher first, then topological position).
struct ReadyQueue<'a> {
    dag: &'a Dag,
    heap: BinaryHeap<Entry>,
    indeg: Vec<usize>,
    priority: &'a [f64],
    tpos: &'a [usize],
}

#[derive(PartialEq)]
struct Entry(f64, usize, usize);

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        // Max-heap: higher priority first, then lower topological position.
        self.0
            .partial_cmp(&other.0)
            .unwrap_or(Ordering::Equal)
            .then(other.1.cmp(&self.1))
    }
}

impl<'a> ReadyQueue<'a> {
    fn new(dag: &'a Dag, priority: &'a [f64], tpos: &'a [usize]) -> ReadyQueue<'a> {
        let indeg: Vec<usize> = dag.pred.iter().map(Vec::len).collect();
        let heap = (0..dag.len())
            .filter(|&u| indeg[u] == 0)
            .map(|u| Entry(priority[u], tpos[u], u))
            .collect();
        ReadyQueue {
            dag,
            heap,
            indeg,
            priority,
            tpos,
        }
    }

    fn pop(&mut self) -> Option<usize> {
        self.heap.pop().map(|e| e.2)
    }

    fn done(&mut self, v: usize) {
        for &x in &self.dag.succ[v] {
            self.indeg[x] -= 1;
            if self.indeg[x] == 0 {
                self.heap.push(Entry(self.priority[x], self.tpos[x], x));
            }
        }
    }
}

/// Critical Path On a Processor.
pub fn cpop(dag: &Dag, p: &Platform) -> Schedule {
    let ru = upward_rank(dag, p);
    let rd = downward_rank(dag, p);
    let pr: Vec<f64> = ru.iter().zip(&rd).map(|(a, b)| a + b).collect();
    let mut s = Schedule::new(dag, p, "CPOP");
    if dag.is_empty() {
        return s;
    }
    let cp_len = pr.iter().fold(f64::NEG_INFINITY, |m, &x| m.max(x));
    let tol = 1e-9 * cp_len.abs().max(1.0);
    // Highest priority, lowest id on ties.
    let best = |cands: &mut dyn Iterator<Item = usize>| {
        cands.fold(None, |b: Option<usize>, u| match b {
            Some(x) if pr[x] > pr[u] || (pr[x] == pr[u] && x < u) => Some(x),
            _ => Some(u),
        })
    };
    let mut on_cp = vec![false; dag.len()];
    let mut cur = best(&mut (0..dag.len()).filter(|&u| dag.pred[u].is_empty()))
        .expect("a DAG has an entry task");
    on_cp[cur] = true;
    while let Some(next) = best(
        &mut dag.succ[cur]
            .iter()
            .copied()
            .filter(|&v| (pr[v] - cp_len).abs() <= tol),
    ) {
        cur = next;
        on_cp[cur] = true;
    }
    // The worker minimising the path's total time (lowest id on ties): the fastest,
    // or worker 0 when the path costs nothing.
    let cp_cost = (0..dag.len())
        .filter(|&u| on_cp[u])
        .fold(0.0, |s, u| s + dag.cost(u));
    let p_cp = (0..p.workers()).fold(0, |b, w| {
        if cp_cost / p.speed[w] < cp_cost / p.speed[b] {
            w
        } else {
            b
        }
    });
    let mut tpos = vec![0usize; dag.len()];
    for (k, &u) in dag.topo.iter().enumerate() {
        tpos[u] = k;
    }
    let mut st = State::new(dag, p, false);
    let mut q = ReadyQueue::new(dag, &pr, &tpos);
    let m = p.workers();
    while let Some(v) = q.pop() {
        let a = if on_cp[v] {
            st.place(v, p_cp..p_cp + 1)
        } else {
            st.place(v, 0..m)
        };
        s.assignments.extend(a);
        q.done(v);
    }
    s
}
