//! Feasibility, Pareto dominance and the ranking of complete trials that the samplers
//! and [`crate::Study::best_trials`] share.

use crate::study::Direction;
use crate::trial::FrozenTrial;

/// The total constraint violation of a trial: the sum of its positive constraint values
/// (0 when it reported none or all are ≤ 0, i.e. it is feasible).
pub(crate) fn violation(trial: &FrozenTrial) -> f64 {
    trial
        .constraints
        .as_ref()
        .map_or(0.0, |c| c.iter().map(|v| v.max(0.0)).sum())
}

/// Objective values turned into losses (smaller is better) by direction.
pub(crate) fn losses(values: &[f64], directions: &[Direction]) -> Vec<f64> {
    values
        .iter()
        .zip(directions)
        .map(|(&v, d)| if *d == Direction::Minimize { v } else { -v })
        .collect()
}

/// Whether loss vector `a` Pareto-dominates `b`: no worse anywhere, better somewhere.
pub(crate) fn dominates(a: &[f64], b: &[f64]) -> bool {
    a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y)
}

/// Non-dominated sorting (Deb et al. 2002): the front index of every point, 0 for the
/// Pareto front.
pub(crate) fn fronts(points: &[Vec<f64>]) -> Vec<usize> {
    let n = points.len();
    let mut dominated_by = vec![0usize; n];
    let mut dominating: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in 0..n {
            if i != j && dominates(&points[i], &points[j]) {
                dominating[i].push(j);
                dominated_by[j] += 1;
            }
        }
    }
    let mut rank = vec![0usize; n];
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by[i] == 0).collect();
    let mut r = 0;
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            rank[i] = r;
            for &j in &dominating[i] {
                dominated_by[j] -= 1;
                if dominated_by[j] == 0 {
                    next.push(j);
                }
            }
        }
        current = next;
        r += 1;
    }
    rank
}

/// Crowding distance of each point within its own set (infinite at the extremes).
pub(crate) fn crowding(points: &[&Vec<f64>]) -> Vec<f64> {
    let n = points.len();
    let mut dist = vec![0.0; n];
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    let m = points[0].len();
    let mut idx: Vec<usize> = (0..n).collect();
    for k in 0..m {
        let col: Vec<f64> = points.iter().map(|p| p[k]).collect();
        idx.sort_by(|&a, &b| col[a].total_cmp(&col[b]));
        let (lo, hi) = (col[idx[0]], col[idx[n - 1]]);
        dist[idx[0]] = f64::INFINITY;
        dist[idx[n - 1]] = f64::INFINITY;
        if hi > lo {
            for w in 1..n - 1 {
                dist[idx[w]] += (col[idx[w + 1]] - col[idx[w - 1]]) / (hi - lo);
            }
        }
    }
    dist
}

/// Orders complete trials from best to worst: feasible trials first — by loss for one
/// objective, by non-dominated front and then decreasing crowding distance for several
/// — then infeasible ones by increasing total violation. Ties keep trial order.
pub(crate) fn rank(trials: &[&FrozenTrial], directions: &[Direction]) -> Vec<usize> {
    let loss: Vec<Vec<f64>> = trials
        .iter()
        .map(|t| losses(t.values.as_deref().unwrap_or(&[]), directions))
        .collect();
    let feasible: Vec<usize> = (0..trials.len())
        .filter(|&i| violation(trials[i]) == 0.0)
        .collect();
    let mut infeasible: Vec<usize> = (0..trials.len())
        .filter(|&i| violation(trials[i]) > 0.0)
        .collect();
    infeasible.sort_by(|&a, &b| violation(trials[a]).total_cmp(&violation(trials[b])));
    let mut order: Vec<usize>;
    if directions.len() == 1 {
        order = feasible;
        order.sort_by(|&a, &b| loss[a][0].total_cmp(&loss[b][0]));
    } else {
        let pts: Vec<Vec<f64>> = feasible.iter().map(|&i| loss[i].clone()).collect();
        let front = fronts(&pts);
        let mut crowd = vec![0.0; pts.len()];
        for f in 0..=front.iter().copied().max().unwrap_or(0) {
            let members: Vec<usize> = (0..pts.len()).filter(|&i| front[i] == f).collect();
            let refs: Vec<&Vec<f64>> = members.iter().map(|&i| &pts[i]).collect();
            for (m, c) in members.iter().zip(crowding(&refs)) {
                crowd[*m] = c;
            }
        }
        let mut local: Vec<usize> = (0..pts.len()).collect();
        local.sort_by(|&a, &b| front[a].cmp(&front[b]).then(crowd[b].total_cmp(&crowd[a])));
        order = local.into_iter().map(|i| feasible[i]).collect();
    }
    order.extend(infeasible);
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trial::TrialState;

    fn t(values: &[f64], constraints: Option<&[f64]>) -> FrozenTrial {
        let mut t = FrozenTrial::new(0, TrialState::Complete);
        t.values = Some(values.to_vec());
        t.constraints = constraints.map(<[f64]>::to_vec);
        t
    }

    #[test]
    fn fronts_and_ranking() {
        let pts = vec![
            vec![1.0, 4.0],
            vec![2.0, 2.0],
            vec![4.0, 1.0],
            vec![3.0, 3.0],
            vec![5.0, 5.0],
        ];
        assert_eq!(fronts(&pts), [0, 0, 0, 1, 2]);
        let trials: Vec<FrozenTrial> = pts.iter().map(|p| t(p, None)).collect();
        let refs: Vec<&FrozenTrial> = trials.iter().collect();
        let order = rank(&refs, &[Direction::Minimize, Direction::Minimize]);
        // Front 0 with the extremes (infinite crowding) before the middle point.
        assert_eq!(order, [0, 2, 1, 3, 4]);
        // Maximising the second objective flips the picture.
        let order = rank(&refs, &[Direction::Minimize, Direction::Maximize]);
        assert_eq!(order[0], 0);
    }

    #[test]
    fn infeasible_trials_come_last_by_violation() {
        let trials = [
            t(&[0.0], Some(&[0.5, 0.1])),
            t(&[3.0], Some(&[-1.0])),
            t(&[1.0], Some(&[0.2])),
            t(&[2.0], None),
        ];
        let refs: Vec<&FrozenTrial> = trials.iter().collect();
        assert_eq!(rank(&refs, &[Direction::Minimize]), [3, 1, 2, 0]);
        assert_eq!(violation(&trials[0]), 0.6);
    }
}
