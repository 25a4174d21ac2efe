//! The points a study has already seen, so that it proposes none twice.
//!
//! A point is a trial's parameters, each compared by its distribution and its internal
//! value after the distribution's rounding (a stepped float by its grid index), so two
//! values are the same exactly when they would be stored as the same value; a parameter
//! drawn from another distribution (a range changed between runs) is another parameter.
//!
//! A partial point (the parameters a new trial has so far) is *exhausted* when every
//! completion of it is a seen point. The completions are inferred from the seen trials
//! themselves: if all seen points that extend the partial one share a parameter with one
//! finite distribution, every completion is assumed to have it too (true when which
//! parameters a trial suggests depends only on the values it suggested before, as in a
//! search space with conditions), and the partial point is exhausted when each value of
//! that parameter is seen and each extension by one is exhausted in turn. A seen
//! extension with a continuous parameter still to come, no shared parameter, or no seen
//! extension at all means not exhausted; a seen point equal to the partial one means
//! exhausted.

use std::collections::BTreeMap;

use super::RandomSampler;
use crate::space::Distribution;
use crate::trial::{FrozenTrial, TrialState};

/// A (partial) point: parameter name → (distribution, canonical value).
pub(crate) type Point<'a> = BTreeMap<&'a str, (&'a Distribution, f64)>;

/// What values of `d` are compared by: the internal value after the distribution's
/// rounding (the grid index for a stepped float, so values a rounding apart are equal);
/// `None` if `x` is not a value of `d`.
pub(crate) fn canonical(d: &Distribution, x: f64) -> Option<f64> {
    let v = d.to_internal(&d.to_external(x))?;
    Some(match *d {
        Distribution::Float {
            low, step: Some(s), ..
        } => ((v - low) / s).round(),
        _ => v,
    })
}

/// The point of `values` (internal values of parameters of `space`); values that are not
/// in their distribution, or whose parameter is not in `space`, are left out.
pub(crate) fn point<'a>(
    space: &'a BTreeMap<String, Distribution>,
    values: &'a BTreeMap<String, f64>,
) -> Point<'a> {
    values
        .iter()
        .filter_map(|(k, &x)| {
            let d = space.get(k)?;
            Some((k.as_str(), (d, canonical(d, x)?)))
        })
        .collect()
}

/// The point of a trial's suggested parameters (enqueued values not yet suggested have
/// no distribution and are left out).
pub(crate) fn trial_point(t: &FrozenTrial) -> Point<'_> {
    t.distributions
        .iter()
        .filter_map(|(k, d)| Some((k.as_str(), (d, value(t, k, d)?))))
        .collect()
}

/// The canonical value of parameter `k` of `t`, drawn from `d`.
fn value(t: &FrozenTrial, k: &str, d: &Distribution) -> Option<f64> {
    canonical(d, d.to_internal(t.params.get(k)?)?)
}

/// Whether `t` has every parameter of `partial`, with the same distribution and value.
fn extends(t: &FrozenTrial, partial: &Point<'_>) -> bool {
    partial.iter().all(|(k, (d, v))| {
        t.distributions.get(*k) == Some(*d) && value(t, k, d).is_some_and(|x| x == *v)
    })
}

/// The seen points, as the trials that have them.
#[derive(Debug)]
pub(crate) struct Seen<'a> {
    trials: Vec<&'a FrozenTrial>,
}

impl<'a> Seen<'a> {
    /// The points of complete, pruned and running trials, except trial `skip`. Failed
    /// trials are not seen (their point may be tried again), nor are waiting ones; a
    /// running trial counts with the parameters it has so far. A trial without
    /// parameters is no point: a study whose objective suggests none (repeated runs of
    /// a fixed configuration) is never exhausted.
    pub(crate) fn new(trials: &'a [FrozenTrial], skip: Option<u64>) -> Self {
        let trials = trials
            .iter()
            .filter(|t| Some(t.number) != skip && !t.distributions.is_empty())
            .filter(|t| {
                matches!(
                    t.state,
                    TrialState::Complete | TrialState::Pruned | TrialState::Running
                )
            })
            .collect();
        Seen { trials }
    }

    /// The seen points whose parameter `k` (drawn from `d`) has the canonical value `v`.
    pub(crate) fn with(&self, k: &str, d: &Distribution, v: f64) -> Seen<'a> {
        let trials = self
            .trials
            .iter()
            .copied()
            .filter(|t| t.distributions.get(k) == Some(d) && value(t, k, d) == Some(v))
            .collect();
        Seen { trials }
    }

    /// If every completion of `partial` (as inferred from the seen points, see the
    /// module documentation) is a seen point: how many distinct points those are. With
    /// an empty `partial`, whether the whole space is exhausted.
    pub(crate) fn exhausted(&self, partial: &Point<'_>) -> Option<u64> {
        let ext: Vec<&FrozenTrial> = self
            .trials
            .iter()
            .copied()
            .filter(|t| extends(t, partial))
            .collect();
        count(&mut partial.clone(), &ext)
    }

    /// How many seen points agree with `partial` on every parameter but `except`: at
    /// most that many values of `except` can be exhausted given the others.
    pub(crate) fn blocking(&self, partial: &Point<'_>, except: &str) -> usize {
        let mut rest = partial.clone();
        rest.remove(except);
        self.trials.iter().filter(|t| extends(t, &rest)).count()
    }
}

/// [`Seen::exhausted`] of `prefix` given the seen trials `ext` that extend it.
fn count<'x>(prefix: &mut Point<'x>, ext: &[&'x FrozenTrial]) -> Option<u64> {
    if ext.is_empty() {
        return None;
    }
    if ext.iter().any(|t| t.distributions.len() == prefix.len()) {
        // `prefix` itself was seen (a trial with no further parameter).
        return Some(1);
    }
    // A continuous parameter to come: infinitely many completions.
    let continuous = |t: &&FrozenTrial| {
        t.distributions
            .iter()
            .any(|(k, d)| cardinality(d).is_none() && !prefix.contains_key(k.as_str()))
    };
    if ext.iter().any(continuous) {
        return None;
    }
    let (k, d) = ext[0].distributions.iter().find(|(k, d)| {
        !prefix.contains_key(k.as_str()) && ext.iter().all(|t| t.distributions.get(*k) == Some(*d))
    })?;
    let n = cardinality(d)?;
    let mut values: Vec<f64> = ext.iter().filter_map(|t| value(t, k, d)).collect();
    values.sort_by(f64::total_cmp);
    values.dedup();
    if (values.len() as u64) < n {
        return None;
    }
    let mut total = 0u64;
    for v in values {
        let part: Vec<&FrozenTrial> = ext
            .iter()
            .copied()
            .filter(|t| value(t, k, d) == Some(v))
            .collect();
        prefix.insert(k, (d, v));
        let c = count(prefix, &part);
        prefix.remove(k.as_str());
        total = total.saturating_add(c?);
    }
    Some(total)
}

/// The number of values of `d`, if finite (a float range of one value included).
fn cardinality(d: &Distribution) -> Option<u64> {
    match *d {
        Distribution::Float {
            low,
            high,
            step: None,
            ..
        } if low == high => Some(1),
        _ => d.cardinality(),
    }
}

/// Other values of `d` near the internal value `x`, as (distance on the unit scale,
/// internal value), nearest first: for a finite distribution, up to `limit` grid values
/// (choices by index); for a continuous one, one value at most 1 % of the range away
/// (inwards at a bound), drawn from `rng`.
pub(crate) fn neighbours(
    d: &Distribution,
    x: f64,
    limit: usize,
    rng: &mut RandomSampler,
) -> Vec<(f64, f64)> {
    let u0 = d.to_unit(x);
    let Some(n) = d.cardinality() else {
        let delta = 0.01 * (1.0 - rng.unit());
        let up = if u0 + delta > 1.0 {
            false
        } else if u0 - delta < 0.0 {
            true
        } else {
            rng.unit() < 0.5
        };
        let y = d.from_unit(if up { u0 + delta } else { u0 - delta });
        return if y == x { Vec::new() } else { vec![(delta, y)] };
    };
    let (index, value): (f64, Box<dyn Fn(u64) -> f64>) = match *d {
        Distribution::Int { low, step, .. } => (
            ((x - low as f64) / step as f64).round(),
            Box::new(move |j| (low + j as i64 * step) as f64),
        ),
        Distribution::Float {
            low,
            high,
            step: Some(s),
            ..
        } => (
            ((x - low) / s).round(),
            Box::new(move |j| (low + j as f64 * s).min(high)),
        ),
        _ => (x.round(), Box::new(|j| j as f64)),
    };
    let i = index.max(0.0) as u64;
    let mut out = Vec::new();
    for k in 1..=limit as u64 {
        for j in [i.checked_sub(k), i.checked_add(k).filter(|&j| j < n)]
            .into_iter()
            .flatten()
        {
            let y = value(j);
            // Rounded, so that equal distances are equal and the lower value comes first.
            let dist = ((d.to_unit(y) - u0).abs() * 1e12).round() / 1e12;
            out.push((dist, y));
        }
        if k >= n {
            break;
        }
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out.truncate(limit);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Seed;

    fn trial(number: u64, state: TrialState, params: &[(&str, Distribution, f64)]) -> FrozenTrial {
        let mut t = FrozenTrial::new(number, state);
        for (k, d, x) in params {
            t.params.insert((*k).to_owned(), d.to_external(*x));
            t.distributions.insert((*k).to_owned(), d.clone());
        }
        t
    }

    #[test]
    fn a_product_space_is_exhausted_when_every_point_is_seen() {
        let a = Distribution::categorical(["p", "q", "r"]);
        let b = Distribution::int(0, 1);
        let mut trials = Vec::new();
        for (i, (x, y)) in [(0., 0.), (0., 1.), (1., 0.), (1., 1.), (2., 0.), (2., 1.)]
            .into_iter()
            .enumerate()
        {
            let seen = Seen::new(&trials, None);
            assert_eq!(seen.exhausted(&Point::new()), None, "after {i} points");
            trials.push(trial(
                i as u64,
                TrialState::Complete,
                &[("a", a.clone(), x), ("b", b.clone(), y)],
            ));
        }
        assert_eq!(Seen::new(&trials, None).exhausted(&Point::new()), Some(6));
        // A failed trial frees its point.
        trials[3].state = TrialState::Failed;
        let seen = Seen::new(&trials, None);
        assert_eq!(seen.exhausted(&Point::new()), None);
        let mut p = Point::new();
        p.insert("a", (&a, 0.0));
        assert_eq!(seen.exhausted(&p), Some(2), "a = p: both values of b seen");
        p.insert("a", (&a, 1.0));
        assert_eq!(seen.exhausted(&p), None, "a = q, b = 1 is free again");
    }

    #[test]
    fn conditional_and_continuous_spaces() {
        // opt ∈ {sgd, adam}; sgd → momentum ∈ {0, 0.9}; adam has nothing more.
        let opt = Distribution::categorical(["sgd", "adam"]);
        let m = Distribution::categorical([0.0, 0.9]);
        let mut trials = vec![
            trial(
                0,
                TrialState::Pruned,
                &[("opt", opt.clone(), 0.0), ("momentum", m.clone(), 0.0)],
            ),
            trial(1, TrialState::Complete, &[("opt", opt.clone(), 1.0)]),
        ];
        assert_eq!(Seen::new(&trials, None).exhausted(&Point::new()), None);
        trials.push(trial(
            2,
            TrialState::Running,
            &[("opt", opt.clone(), 0.0), ("momentum", m, 1.0)],
        ));
        assert_eq!(Seen::new(&trials, None).exhausted(&Point::new()), Some(3));
        assert_eq!(Seen::new(&trials, Some(2)).exhausted(&Point::new()), None);
        // A continuous parameter is never exhausted.
        let x = Distribution::float(0.0, 1.0);
        let trials = vec![trial(0, TrialState::Complete, &[("x", x.clone(), 1.0)])];
        let seen = Seen::new(&trials, None);
        assert_eq!(seen.exhausted(&Point::new()), None);
        let vals = BTreeMap::from([("x".to_owned(), 1.0)]);
        let space = BTreeMap::from([("x".to_owned(), x)]);
        assert_eq!(seen.exhausted(&point(&space, &vals)), Some(1));
    }

    #[test]
    fn stepped_floats_compare_by_grid_index() {
        let d = Distribution::float(0.0, 1.0)
            .step(0.1)
            .validated("x")
            .unwrap();
        assert_eq!(canonical(&d, 0.30000000000000004), canonical(&d, 0.3));
        assert_eq!(canonical(&d, 0.3), Some(3.0));
        assert_eq!(canonical(&d, 1.5), None);
    }

    #[test]
    fn neighbours_are_nearest_first_and_stay_inside() {
        let mut rng = RandomSampler::new(Seed(1));
        let d = Distribution::int(0, 10);
        let n: Vec<f64> = neighbours(&d, 10.0, 3, &mut rng)
            .iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(n, [9.0, 8.0, 7.0]);
        let n: Vec<f64> = neighbours(&d, 5.0, 4, &mut rng)
            .iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(n, [4.0, 6.0, 3.0, 7.0]);
        let d = Distribution::categorical(["a", "b"]);
        let n: Vec<f64> = neighbours(&d, 0.0, 5, &mut rng)
            .iter()
            .map(|p| p.1)
            .collect();
        assert_eq!(n, [1.0]);
        let d = Distribution::float(0.0, 1.0);
        for _ in 0..100 {
            let n = neighbours(&d, 1.0, 1, &mut rng);
            assert!(n.len() == 1 && n[0].1 < 1.0 && n[0].1 >= 0.99, "{n:?}");
        }
    }
}
