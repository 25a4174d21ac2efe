//! The schedule validator and metrics of `shared/bench/sched/schedlib.py`, with the
//! same tolerance (1e-6 absolute + 1e-6 relative).

use std::collections::BTreeMap;

use crate::model::{lower_bounds, Dag, Platform, Schedule};

const EPS: f64 = 1e-6;

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= EPS + EPS * a.abs().max(b.abs())
}

/// Quality figures of a schedule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metrics {
    /// Latest finish.
    pub makespan: f64,
    /// Critical-path lower bound (fastest worker, no communication).
    pub lb_cp: f64,
    /// Work lower bound (total cost / total speed).
    pub lb_work: f64,
    /// max(lb_cp, lb_work).
    pub lb: f64,
    /// makespan / lb.
    pub ratio_lb: f64,
    /// makespan / lb_cp (Topcuoglu's schedule length ratio under related machines).
    pub slr: f64,
    /// (total cost / fastest speed) / makespan.
    pub speedup: f64,
    /// Extra copies (duplication or replication).
    pub duplicates: usize,
}

/// Checks a schedule: durations equal cost / speed, copies on one worker do not
/// overlap, every copy starts after some copy of each parent finished plus the
/// communication time, every task has a copy. Returns every problem found (naming the
/// task, worker or edge) and the metrics.
pub fn validate(dag: &Dag, p: &Platform, s: &Schedule) -> (Vec<String>, Metrics) {
    let mut errs = Vec::new();
    let mut copies: BTreeMap<usize, Vec<(usize, f64, f64)>> = BTreeMap::new();
    let mut per_worker: BTreeMap<usize, Vec<(f64, f64, usize)>> = BTreeMap::new();
    for (k, a) in s.assignments.iter().enumerate() {
        let (t, w, st, fi) = (a.task, a.worker, a.start, a.finish);
        if t >= dag.len() {
            errs.push(format!("assignment #{k}: unknown task {t}"));
            continue;
        }
        if w >= p.workers() {
            errs.push(format!("assignment #{k}: unknown worker {w}"));
            continue;
        }
        if !(st.is_finite() && fi.is_finite()) || st < -EPS {
            errs.push(format!("task {t}: bad start/finish {st},{fi}"));
            continue;
        }
        let dur = dag.cost(t) / p.speed[w];
        if !close(fi - st, dur) {
            errs.push(format!(
                "task {t} on worker {w}: finish-start={} != cost/speed={dur}",
                fi - st
            ));
        }
        copies.entry(t).or_default().push((w, st, fi));
        per_worker.entry(w).or_default().push((st, fi, t));
    }
    let missing: Vec<usize> = (0..dag.len()).filter(|t| !copies.contains_key(t)).collect();
    if !missing.is_empty() {
        errs.push(format!(
            "{} task(s) not scheduled, e.g. {:?}",
            missing.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    for (w, list) in &mut per_worker {
        list.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
        for pair in list.windows(2) {
            let ((s1, f1, t1), (s2, f2, t2)) = (pair[0], pair[1]);
            if f1 - s1 > 0.0 && f2 - s2 > 0.0 && s2 < f1 - (EPS + EPS * f1.abs()) {
                errs.push(format!(
                    "worker {w}: task {t1} [{s1},{f1}) overlaps task {t2} [{s2},{f2})"
                ));
            }
        }
    }
    for (&v, cl) in &copies {
        for &(w, st, _) in cl {
            for &u in &dag.pred[v] {
                let Some(cu) = copies.get(&u) else { continue };
                let b = dag.data[&(u, v)];
                let ready = cu
                    .iter()
                    .map(|&(wu, _, fu)| fu + p.comm(wu, w, b))
                    .fold(f64::INFINITY, f64::min);
                if st < ready - (EPS + EPS * ready.abs()) {
                    errs.push(format!(
                        "precedence {u}->{v}: copy on worker {w} starts {st} < data ready {ready}"
                    ));
                }
            }
        }
    }
    let makespan = copies
        .values()
        .flatten()
        .fold(0.0f64, |m, &(_, _, f)| m.max(f));
    let lb = lower_bounds(dag, p);
    let ratio = |d: f64| if d > 0.0 { makespan / d } else { f64::NAN };
    let metrics = Metrics {
        makespan,
        lb_cp: lb.lb_cp,
        lb_work: lb.lb_work,
        lb: lb.lb,
        ratio_lb: ratio(lb.lb),
        slr: ratio(lb.lb_cp),
        speedup: if makespan > 0.0 {
            lb.seq_fastest / makespan
        } else {
            f64::NAN
        },
        duplicates: copies.values().map(|c| c.len() - 1).sum(),
    };
    (errs, metrics)
}
