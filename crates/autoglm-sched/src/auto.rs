//! One entry point over every algorithm, and `auto`: the best of the learned and the
//! classic schedules that the time budget allows.

use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use crate::gcn::Gcn;
use crate::list::{
    cpop, heft, heft_dup, primary_workers, schedule_assigned, schedule_on, upward_rank,
};
use crate::model::{Dag, Platform, Schedule};

/// A scheduling algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    /// HEFT (upward rank, earliest finish, insertion).
    Heft,
    /// HEFT with duplication ([`heft_dup`]).
    HeftDup,
    /// CPOP.
    Cpop,
    /// The GCN priority model with duplication.
    Gcn,
    /// The GCN priority model without duplication.
    GcnNoDup,
    /// Every task on the fastest worker, in topological order.
    Fastest,
    /// The best of all of the above (and of the list schedulers restricted to the
    /// fastest workers) within the time budget.
    Auto,
}

/// Every task on the fastest worker (the lowest id among equals), one after another.
pub fn fastest_only(dag: &Dag, p: &Platform) -> Schedule {
    let w = (0..p.workers()).fold(0, |b, w| if p.speed[w] > p.speed[b] { w } else { b });
    schedule_on(dag, p, &upward_rank(dag, p), "fastest", false, &[w])
}

/// Schedules with a GCN model (the shipped one by default).
#[derive(Debug, Clone)]
pub struct Scheduler {
    model: Gcn,
    budget: Duration,
    search: usize,
    search_seed: u64,
    moves: usize,
}

impl Default for Scheduler {
    fn default() -> Scheduler {
        Scheduler::new(Gcn::pretrained())
    }
}

impl Scheduler {
    /// A scheduler with `model` and `auto`'s default budget of 0.5 s.
    pub fn new(model: Gcn) -> Scheduler {
        Scheduler {
            model,
            budget: Duration::from_millis(500),
            search: 48,
            search_seed: 1,
            moves: 3000,
        }
    }

    /// Sets how long `auto` may keep trying candidates after the first five (HEFT,
    /// HEFT with duplication, CPOP, all on the fastest worker, GCN), which it always
    /// evaluates.
    pub fn with_budget(mut self, budget: Duration) -> Scheduler {
        self.budget = budget;
        self
    }

    /// Sets how many perturbed priority vectors `auto`'s local search tries after the
    /// fixed candidates (default 48; 0 turns it off), and its seed (default 1).
    pub fn with_search(mut self, tries: usize, seed: u64) -> Scheduler {
        self.search = tries;
        self.search_seed = seed;
        self
    }

    /// Sets how many single-task moves (a task to another worker, or two tasks
    /// swapping workers) `auto` tries last, on the best schedule found so far with
    /// every task pinned to its worker (default 3,000; 0 turns it off). They share the
    /// search's seed and the budget.
    pub fn with_moves(mut self, tries: usize) -> Scheduler {
        self.moves = tries;
        self
    }

    /// The model.
    pub fn model(&self) -> &Gcn {
        &self.model
    }

    /// The schedule of `dag` on `p` by `algo`.
    pub fn schedule(&self, algo: Algorithm, dag: &Dag, p: &Platform) -> Schedule {
        match algo {
            Algorithm::Heft => heft(dag, p),
            Algorithm::HeftDup => heft_dup(dag, p),
            Algorithm::Cpop => cpop(dag, p),
            Algorithm::Gcn => self.model.schedule(dag, p, true),
            Algorithm::GcnNoDup => self.model.schedule(dag, p, false),
            Algorithm::Fastest => fastest_only(dag, p),
            Algorithm::Auto => self.auto(dag, p),
        }
    }

    /// The shortest of: HEFT, HEFT with duplication, CPOP, all on the fastest worker,
    /// the GCN with and without duplication, and (time allowing) HEFT with duplication
    /// and the GCN restricted to the fastest speed class and to the workers at least
    /// half as fast as the fastest (which pays when communication dominates); then a
    /// seeded local search over perturbations of the winner's priorities (see
    /// [`Scheduler::with_search`]), and last single-task moves between workers that
    /// favour the tasks on the schedule's critical chain (see
    /// [`Scheduler::with_moves`]). Its `scheduler` field names the winner, e.g.
    /// `auto:GCN+dup`, `auto:search` or `auto:moves`. Deterministic unless the budget
    /// cuts the search short (on DAGs of several hundred tasks or more, or slow
    /// machines).
    pub fn auto(&self, dag: &Dag, p: &Platform) -> Schedule {
        let start = Instant::now();
        // Each priority is computed once and serves every candidate that uses it.
        let rank = upward_rank(dag, p);
        let gcn = self.model.priorities(dag, p);
        let all: Vec<usize> = (0..p.workers()).collect();
        // The best schedule so far and, when it came from a list schedule, how to
        // make it again (priority, duplication, workers) for the search below.
        let mut best = schedule_on(dag, p, &gcn, "GCN+dup", true, &all);
        let mut how: (Vec<f64>, bool, Vec<usize>) = (gcn.clone(), true, all.clone());
        type Made<'a> = Option<(&'a [f64], bool, &'a [usize])>;
        let consider = |best: &mut Schedule,
                        how: &mut (Vec<f64>, bool, Vec<usize>),
                        s: Schedule,
                        made: Made| {
            if s.makespan() < best.makespan() {
                *best = s;
                if let Some((pr, dup, ws)) = made {
                    *how = (pr.to_vec(), dup, ws.to_vec());
                }
            }
        };
        consider(
            &mut best,
            &mut how,
            schedule_on(dag, p, &rank, "HEFT", false, &all),
            Some((&rank, false, &all)),
        );
        consider(
            &mut best,
            &mut how,
            schedule_on(dag, p, &rank, "HEFT+dup", true, &all),
            Some((&rank, true, &all)),
        );
        consider(&mut best, &mut how, cpop(dag, p), None);
        consider(&mut best, &mut how, fastest_only(dag, p), None);
        // Time allowing: the GCN without duplication, then both with duplication on
        // the fastest speed class and on the workers at least half as fast.
        let vmax = p.speed.iter().fold(0.0f64, |m, &s| m.max(s));
        let mut more: Vec<(&[f64], &str, bool, Vec<usize>)> =
            vec![(&gcn, "GCN", false, all.clone())];
        for cut in [vmax, vmax / 2.0] {
            let set: Vec<usize> = (0..p.workers()).filter(|&w| p.speed[w] >= cut).collect();
            if set.len() > 1 && set.len() < p.workers() && !more.iter().any(|m| m.3 == set) {
                more.push((&gcn, "GCN+dup(fast)", true, set.clone()));
                more.push((&rank, "HEFT+dup(fast)", true, set));
            }
        }
        for (priority, name, duplicate, workers) in more {
            if start.elapsed() > self.budget {
                break;
            }
            let s = schedule_on(dag, p, priority, name, duplicate, &workers);
            consider(
                &mut best,
                &mut how,
                s,
                Some((priority, duplicate, &workers)),
            );
        }
        // Then a seeded local search: the best list schedule's priorities, each
        // multiplied by exp(σ·z) (σ cycling through 0.05, 0.2, 0.5), on the same
        // workers with the same duplication policy; an improvement becomes the new
        // centre. A fixed number of tries, cut short only by the budget.
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(self.search_seed);
        for k in 0..self.search {
            if start.elapsed() > self.budget {
                break;
            }
            let sigma = [0.05, 0.2, 0.5][k % 3];
            let (centre, dup, workers) = how.clone();
            let tried: Vec<f64> = centre
                .iter()
                .map(|&r| {
                    let z: f64 = StandardNormal.sample(&mut rng);
                    r * (sigma * z).exp()
                })
                .collect();
            let s = schedule_on(dag, p, &tried, "search", dup, &workers);
            consider(&mut best, &mut how, s, Some((&tried, dup, &workers)));
        }
        // Then moves of single tasks to other workers: the winner's order with each
        // task pinned to its worker, one task re-pinned at a time; a move is kept if
        // the makespan does not grow (equal ones too, to drift across the plateaus
        // that makespans have).
        let (order, dup, workers) = how.clone();
        let mut assign = primary_workers(&best, dag.len());
        let mut current = best.makespan();
        let mut critical = critical_chain(dag, p, &best);
        for _ in 0..self.moves {
            if start.elapsed() > self.budget || workers.len() < 2 {
                break;
            }
            let v = if rng.random_bool(0.5) && !critical.is_empty() {
                critical[rng.random_range(0..critical.len())]
            } else {
                rng.random_range(0..dag.len())
            };
            let (u, w) = if rng.random_bool(0.5) {
                (v, workers[rng.random_range(0..workers.len())])
            } else {
                let u = rng.random_range(0..dag.len());
                (u, assign[v])
            };
            if w == assign[u] {
                continue;
            }
            let (was_u, was_v) = (assign[u], assign[v]);
            assign[v] = was_u;
            assign[u] = w;
            let s = schedule_assigned(dag, p, &order, "moves", dup, &assign);
            if s.makespan() <= current {
                current = s.makespan();
                critical = critical_chain(dag, p, &s);
                consider(&mut best, &mut how, s, None);
            } else {
                assign[v] = was_v;
                assign[u] = was_u;
            }
        }
        best.scheduler = format!("auto:{}", best.scheduler);
        best
    }
}

/// The tasks on a critical chain of `s`: from the copy that finishes last, back
/// through whichever made it start when it did — the arrival of a parent's data or the
/// end of the previous copy on its worker — to a copy that starts at 0.
fn critical_chain(dag: &Dag, p: &Platform, s: &Schedule) -> Vec<usize> {
    let Some(last) = s
        .assignments
        .iter()
        .enumerate()
        .max_by(|a, b| a.1.finish.total_cmp(&b.1.finish))
        .map(|(i, _)| i)
    else {
        return Vec::new();
    };
    // The copies of each task, and each worker's copies in time order (so that among
    // copies finishing at the same instant — zero-length tasks — the one started last,
    // right before, is taken).
    let mut copies: Vec<Vec<usize>> = vec![Vec::new(); dag.len()];
    let mut on: Vec<Vec<usize>> = vec![Vec::new(); p.workers()];
    for (i, a) in s.assignments.iter().enumerate() {
        copies[a.task].push(i);
        on[a.worker].push(i);
    }
    for list in &mut on {
        list.sort_by(|&x, &y| s.assignments[x].start.total_cmp(&s.assignments[y].start));
    }
    let tol = 1e-9 * s.makespan().max(1.0);
    let mut chain = Vec::new();
    let mut at = last;
    for _ in 0..s.assignments.len() {
        let a = s.assignments[at];
        chain.push(a.task);
        if a.start <= tol {
            break;
        }
        // The parent copy whose data arrived last, if it arrived at the start.
        let parent = dag.pred[a.task]
            .iter()
            .filter_map(|&u| {
                copies[u]
                    .iter()
                    .map(|&c| {
                        let x = s.assignments[c];
                        (
                            c,
                            x.finish + p.comm(x.worker, a.worker, dag.data[&(u, a.task)]),
                        )
                    })
                    .min_by(|x, y| x.1.total_cmp(&y.1))
            })
            .max_by(|x, y| x.1.total_cmp(&y.1));
        let previous = on[a.worker]
            .iter()
            .copied()
            .filter(|&c| s.assignments[c].finish <= a.start + tol && c != at)
            .max_by(|&x, &y| s.assignments[x].finish.total_cmp(&s.assignments[y].finish));
        at = match (parent, previous) {
            (Some((c, t)), _) if t >= a.start - tol => c,
            (_, Some(c)) if s.assignments[c].finish >= a.start - tol => c,
            _ => break,
        };
    }
    chain
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{random_platform, RandomDag};
    use crate::validate;

    #[test]
    fn the_critical_chain_runs_from_the_makespan_back_to_time_zero() {
        for seed in 0..4 {
            let p = random_platform(seed, 8, 1.25e7, 1e-2).unwrap();
            let dag = RandomDag::default().generate(seed).unwrap();
            for s in [heft(&dag, &p), heft_dup(&dag, &p)] {
                let chain = critical_chain(&dag, &p, &s);
                let last = |t: usize| {
                    s.assignments
                        .iter()
                        .filter(|a| a.task == t)
                        .map(|a| a.finish)
                        .fold(0.0f64, f64::max)
                };
                let first = |t: usize| {
                    s.assignments
                        .iter()
                        .filter(|a| a.task == t)
                        .map(|a| a.start)
                        .fold(f64::INFINITY, f64::min)
                };
                assert_eq!(last(chain[0]), s.makespan());
                assert_eq!(first(*chain.last().unwrap()), 0.0, "{chain:?}");
                // Each link is a parent or a task before it on some worker: the chain's
                // busy time plus waits accounts for the whole makespan.
                assert!(chain.len() >= 2);
            }
        }
    }

    #[test]
    fn moves_only_improve_and_stay_valid() {
        let p = random_platform(3, 8, 1.25e8, 1e-4).unwrap();
        let dag = RandomDag::default().generate(3).unwrap();
        let without = Scheduler::default().with_moves(0).auto(&dag, &p);
        let with = Scheduler::default().with_moves(500).auto(&dag, &p);
        assert!(validate(&dag, &p, &with).0.is_empty());
        assert!(with.makespan() <= without.makespan());
    }

    #[test]
    fn auto_is_valid_and_never_worse_than_the_classics() {
        let sched = Scheduler::default();
        for seed in 0..6 {
            let p = random_platform(seed, 8, [1.25e8, 1.25e7][seed as usize % 2], 1e-2).unwrap();
            let dag = RandomDag {
                ccr: [0.1, 1.0, 5.0][seed as usize % 3],
                ..RandomDag::default()
            }
            .generate(seed)
            .unwrap();
            let a = sched.auto(&dag, &p);
            let (errors, _) = validate(&dag, &p, &a);
            assert!(errors.is_empty(), "{errors:?}");
            for algo in [
                Algorithm::Heft,
                Algorithm::Cpop,
                Algorithm::Fastest,
                Algorithm::Gcn,
            ] {
                let s = sched.schedule(algo, &dag, &p);
                assert!(validate(&dag, &p, &s).0.is_empty());
                assert!(a.makespan() <= s.makespan(), "{algo:?}");
            }
            assert!(a.scheduler.starts_with("auto:"));
        }
    }
}
