//! Seeded random DAGs and platforms for training and testing schedulers, after the
//! parameters of Topcuoglu, Hariri & Wu (IEEE TPDS 13(3), 2002, §5.1), as the shared
//! `gen_random_dag.py` uses them: layered DAGs (height around √n/α, each task of a layer
//! with a parent in the previous one, up to `outdeg` children at most `jump` layers on)
//! and fan-in/fan-out DAGs grown from one root; task costs uniform on [0, 2·w̄] (at
//! least 1 % of w̄); edge communication times uniform on [0, 2·CCR·w̄] at the reference
//! bandwidth. The random streams are this crate's own (PCG), so the DAGs are not the
//! Python script's; a seed always gives the same DAG.

use rand::seq::{IndexedRandom, SliceRandom};
use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;
use serde_json::json;

use crate::error::Result;
use crate::model::{Dag, Platform};

/// The shape of a random DAG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// Layers of tasks, edges to later layers.
    Layered,
    /// Grown from one root by fan-out and fan-in steps.
    FanInOut,
    /// Shaped like scientific workflows (the WfCommons set): stages of parallel
    /// pipelines (chains of 1–4 task types) between a split and a merge task, task
    /// costs per type log-normally spread (σ 1 across types, 0.3 within one), so a few
    /// long tasks dominate as in real workflows.
    Workflow,
}

/// Parameters of a random DAG.
#[derive(Debug, Clone, PartialEq)]
pub struct RandomDag {
    /// Its shape.
    pub shape: Shape,
    /// Number of tasks.
    pub n: usize,
    /// Layered: > 1 wide and short, < 1 tall and thin.
    pub alpha: f64,
    /// Layered: most children a task gets.
    pub outdeg: usize,
    /// Layered: most layers an edge skips forward.
    pub jump: usize,
    /// Fan-in/out: most children (or parents) of one step.
    pub max_fan: usize,
    /// Fan-in/out: probability of a fan-in step.
    pub p_fanin: f64,
    /// Communication-to-computation ratio (at the reference bandwidth, no latency).
    pub ccr: f64,
    /// Mean task cost (reference seconds).
    pub wdag: f64,
    /// Bytes per second that turn communication times into data sizes.
    pub ref_bandwidth: f64,
}

impl Default for RandomDag {
    fn default() -> RandomDag {
        RandomDag {
            shape: Shape::Layered,
            n: 100,
            alpha: 1.0,
            outdeg: 3,
            jump: 2,
            max_fan: 4,
            p_fanin: 0.35,
            ccr: 1.0,
            wdag: 10.0,
            ref_bandwidth: 1.25e8,
        }
    }
}

impl RandomDag {
    /// The DAG of `seed` (an `autoglm-dag` v1 document, parsed).
    ///
    /// # Errors
    /// None in practice: the document is well formed by construction.
    pub fn generate(&self, seed: u64) -> Result<Dag> {
        Dag::from_json(&self.to_json(seed))
    }

    /// The `autoglm-dag` v1 document of `seed`.
    pub fn to_json(&self, seed: u64) -> String {
        let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x5eed_da65);
        let n = self.n.max(1);
        let w = self.wdag;
        let (_, edges, costs) = match self.shape {
            Shape::Layered => {
                let (n, e) = layered(&mut rng, n, self.alpha, self.outdeg, self.jump);
                (n, e, uniform_costs(&mut rng, n, w))
            }
            Shape::FanInOut => {
                let (n, e) = fan_in_out(&mut rng, n, self.max_fan, self.p_fanin);
                (n, e, uniform_costs(&mut rng, n, w))
            }
            Shape::Workflow => workflow(&mut rng, n, w),
        };
        let tasks: Vec<_> = costs
            .iter()
            .enumerate()
            .map(|(i, c)| json!({"id": i, "cost": c}))
            .collect();
        let edges: Vec<_> = edges
            .into_iter()
            .map(|(u, v)| {
                let t = rng.random_range(0.0..=2.0 * self.ccr * w);
                json!({"src": u, "dst": v, "data": (t * self.ref_bandwidth).round()})
            })
            .collect();
        let kind = match self.shape {
            Shape::Layered => "layered",
            Shape::FanInOut => "fanio",
            Shape::Workflow => "workflow",
        };
        json!({
            "format": "autoglm-dag", "version": 1,
            "name": format!("gen-{kind}-n{}-ccr{}-s{seed}", self.n, self.ccr),
            "tasks": tasks, "edges": edges,
        })
        .to_string()
    }
}

/// Costs uniform on [0, 2w] (at least 1 % of `w`).
fn uniform_costs(rng: &mut Pcg64Mcg, n: usize, w: f64) -> Vec<f64> {
    (0..n)
        .map(|_| (0.01 * w).max(rng.random_range(0.0..2.0 * w)))
        .collect()
}

/// A workflow-shaped DAG of about `n` tasks (see [`Shape::Workflow`]), mean cost ≈ `w`.
fn workflow(rng: &mut Pcg64Mcg, n: usize, w: f64) -> (usize, Vec<(usize, usize)>, Vec<f64>) {
    let lognormal = |rng: &mut Pcg64Mcg, sigma: f64| {
        let z: f64 = StandardNormal.sample(rng);
        (sigma * z - sigma * sigma / 2.0).exp()
    };
    let mut costs = vec![w * lognormal(rng, 1.0)];
    let mut edges = Vec::new();
    let mut tail = 0usize;
    while costs.len() < n {
        let left = n - costs.len();
        let chain = rng.random_range(1..=4usize).min(left);
        let width = (left.saturating_sub(1) / chain).clamp(1, rng.random_range(2..=32usize));
        let types: Vec<f64> = (0..chain).map(|_| w * lognormal(rng, 1.0)).collect();
        let mut ends = Vec::with_capacity(width);
        for _ in 0..width {
            let mut prev = tail;
            for &t in &types {
                let v = costs.len();
                costs.push(t * lognormal(rng, 0.3));
                edges.push((prev, v));
                prev = v;
            }
            ends.push(prev);
        }
        // The merge (one task of its own type) feeds the next stage.
        let merge = costs.len();
        costs.push(w * lognormal(rng, 1.0));
        edges.extend(ends.into_iter().map(|e| (e, merge)));
        tail = merge;
    }
    let costs: Vec<f64> = costs.into_iter().map(|c| c.max(0.01 * w)).collect();
    (costs.len(), edges, costs)
}

fn layered(
    rng: &mut Pcg64Mcg,
    n: usize,
    alpha: f64,
    outdeg: usize,
    jump: usize,
) -> (usize, Vec<(usize, usize)>) {
    let h = ((rng.random_range(0.5..1.5) * (n as f64).sqrt() / alpha.max(1e-3)).round() as usize)
        .clamp(1, n);
    let mean = n as f64 / h as f64;
    let mut widths: Vec<usize> = (0..h)
        .map(|_| ((rng.random_range(0.5..1.5) * mean).round() as usize).max(1))
        .collect();
    while widths.iter().sum::<usize>() > n {
        let i = rng.random_range(0..h);
        if widths[i] > 1 {
            widths[i] -= 1;
        }
    }
    while widths.iter().sum::<usize>() < n {
        widths[rng.random_range(0..h)] += 1;
    }
    let mut layers = Vec::with_capacity(h);
    let mut k = 0;
    for w in widths {
        layers.push((k..k + w).collect::<Vec<_>>());
        k += w;
    }
    let mut edges = std::collections::BTreeSet::new();
    for l in 1..h {
        for &v in &layers[l] {
            edges.insert((*layers[l - 1].choose(rng).expect("layers are not empty"), v));
        }
    }
    for l in 0..h.saturating_sub(1) {
        let later: Vec<usize> = layers[l + 1..h.min(l + 1 + jump.max(1))]
            .iter()
            .flatten()
            .copied()
            .collect();
        for &u in &layers[l] {
            let d = rng.random_range(1..=outdeg.max(1)).min(later.len());
            for &v in later.sample(rng, d) {
                edges.insert((u, v));
            }
        }
    }
    (n, edges.into_iter().collect())
}

fn fan_in_out(
    rng: &mut Pcg64Mcg,
    n: usize,
    max_fan: usize,
    p_fanin: f64,
) -> (usize, Vec<(usize, usize)>) {
    let mut next = 1;
    let mut frontier = vec![0usize];
    let mut edges = std::collections::BTreeSet::new();
    while next < n {
        if frontier.len() >= 2 && rng.random_bool(p_fanin.clamp(0.0, 1.0)) {
            let k = frontier.len().min(rng.random_range(2..=max_fan.max(2)));
            frontier.shuffle(rng);
            let v = next;
            next += 1;
            for u in frontier.drain(..k) {
                edges.insert((u, v));
            }
            frontier.push(v);
        } else {
            let i = rng.random_range(0..frontier.len());
            let u = frontier.swap_remove(i);
            let k = (n - next).min(rng.random_range(1..=max_fan.max(1)));
            for _ in 0..k {
                edges.insert((u, next));
                frontier.push(next);
                next += 1;
            }
        }
    }
    (next, edges.into_iter().collect())
}

/// A platform of related machines with the given speeds, one bandwidth (bytes/s) and
/// one latency (s) between any two workers.
///
/// # Errors
/// [`crate::Error::Format`] for no workers, a speed ≤ 0, or a bandwidth ≤ 0.
pub fn platform(name: &str, speeds: &[f64], bandwidth: f64, latency: f64) -> Result<Platform> {
    let workers: Vec<_> = speeds
        .iter()
        .enumerate()
        .map(|(i, s)| json!({"id": i, "speed": s}))
        .collect();
    Platform::from_json(
        &json!({
            "format": "autoglm-platform", "version": 1, "name": name,
            "workers": workers, "bandwidth": bandwidth, "latency": latency,
        })
        .to_string(),
    )
}

/// A random platform of related machines: `workers` workers in up to four speed
/// classes (each speed a power of two between 0.5 and 4), one bandwidth and latency.
///
/// # Errors
/// As [`platform`].
pub fn random_platform(
    seed: u64,
    workers: usize,
    bandwidth: f64,
    latency: f64,
) -> Result<Platform> {
    let mut rng = Pcg64Mcg::seed_from_u64(seed ^ 0x91a7_f0e5);
    let classes = rng.random_range(1..=4usize);
    let speeds: Vec<f64> = [0.5, 1.0, 2.0, 4.0]
        .sample(&mut rng, classes)
        .copied()
        .collect();
    let m = workers.max(1);
    let all: Vec<f64> = (0..m).map(|i| speeds[i * classes / m]).collect();
    platform(&format!("gen-m{m}-s{seed}"), &all, bandwidth, latency)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_dags_are_valid_and_reproducible() {
        for shape in [Shape::Layered, Shape::FanInOut, Shape::Workflow] {
            for n in [1, 2, 30, 100] {
                let g = RandomDag {
                    shape,
                    n,
                    ..RandomDag::default()
                };
                let a = g.generate(7).unwrap();
                assert_eq!(a, g.generate(7).unwrap());
                assert!(a.len() >= n, "{shape:?} {n}: {}", a.len());
                assert!(a.tasks.iter().all(|t| t.cost > 0.0));
                if n > 1 {
                    assert!(!a.edges.is_empty());
                    assert_ne!(a, g.generate(8).unwrap());
                }
            }
        }
        let p = random_platform(3, 8, 1.25e8, 1e-4).unwrap();
        assert_eq!(p.workers(), 8);
        assert!(p.speed.iter().all(|s| [0.5, 1.0, 2.0, 4.0].contains(s)));
    }
}
