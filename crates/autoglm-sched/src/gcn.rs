//! The GCN priority model: per-task features of the DAG on the platform, directed
//! graph-convolution layers over ndarray, and a scalar per task added to the normalised
//! upward rank to give the list scheduler its priority.
//!
//! Each layer is `H' = relu(H·Wₛ + mean_pred(H)·Wₚ + mean_succ(H)·W꜀ + b)`: a task sees
//! itself, the mean of its parents and the mean of its children through separate
//! weights (direction matters in a DAG); two layers see two hops both ways. The output
//! layer starts at zero, so an untrained model *is* HEFT's order, and training can only
//! move away from it where that pays. How it is trained: [`crate::train`].

use ndarray::{Array1, Array2, ArrayView1, ArrayView2, Axis};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::list::{
    downward_rank, schedule_by, upward_rank, upward_rank_general, upward_rank_weighted,
};
use crate::model::{Dag, Platform, Schedule};

/// Features per task (see [`features`]).
pub const FEATURES: usize = 16;

/// The weights shipped with the crate (`autoglm schedule train` writes this file).
const PRETRAINED: &str = include_str!("gcn_weights.json");

/// A GCN priority model: its shape and flat parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gcn {
    /// `"autoglm-gcn"`.
    pub format: String,
    /// 1.
    pub version: u32,
    /// Input features per task ([`FEATURES`]).
    pub features: usize,
    /// Width of the hidden layers.
    pub hidden: usize,
    /// Number of graph-convolution layers.
    pub layers: usize,
    /// The parameters: per layer `Wₛ, Wₚ, W꜀` (row-major, inputs × hidden) and `b`;
    /// then the output weights, the linear skip weights from the input features, and
    /// the bias.
    pub params: Vec<f64>,
    /// How the weights were made (training configuration and figures), free-form.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub meta: serde_json::Value,
}

/// The per-task features of `dag` on `p`, one row per task, each a scale-free number
/// (times divided by the critical path or the mean task time, counts in logs):
/// 0 cost, 1 upward rank, 2 downward rank, 3 their sum (1 on a critical path),
/// 4–5 in/out degree, 6–7 mean incoming/outgoing communication, 8 the DAG's
/// communication-to-computation ratio on `p`, 9 workers, 10 speed heterogeneity
/// (fastest / mean), 11 depth (longest edge count from an entry, over the deepest),
/// 12 DAG size; then three other upward ranks over the same critical path, the
/// classic variants that win on some DAGs: 13 ignoring communication, 14 weighting it
/// four times, 15 with every cost at the fastest worker's speed.
pub fn features(dag: &Dag, p: &Platform) -> Array2<f64> {
    let n = dag.len();
    let up = upward_rank(dag, p);
    let vmax_inv = 1.0 / p.speed.iter().fold(0.0f64, |m, &s| m.max(s));
    let variants = [
        upward_rank_weighted(dag, p, 0.0),
        upward_rank_weighted(dag, p, 4.0),
        upward_rank_general(dag, p, 1.0, vmax_inv),
    ];
    let down = downward_rank(dag, p);
    let cp = positive(up.iter().fold(0.0f64, |m, &x| m.max(x)));
    let mis = p.mean_inv_speed;
    let tbar = positive(dag.tasks.iter().map(|t| t.cost).sum::<f64>() * mis / n.max(1) as f64);
    let ccr = if dag.edges.is_empty() {
        0.0
    } else {
        dag.edges.iter().map(|e| p.mean_comm(e.2)).sum::<f64>() / dag.edges.len() as f64 / tbar
    };
    let vmax = p.speed.iter().fold(0.0f64, |m, &s| m.max(s));
    let mut depth = vec![0usize; n];
    for &v in &dag.topo {
        depth[v] = dag.pred[v].iter().map(|&u| depth[u] + 1).max().unwrap_or(0);
    }
    let deepest = depth.iter().copied().max().unwrap_or(0).max(1) as f64;
    let mean_comm = |v: usize, others: &[usize], incoming: bool| {
        if others.is_empty() {
            return 0.0;
        }
        let s: f64 = others
            .iter()
            .map(|&o| {
                let key = if incoming { (o, v) } else { (v, o) };
                p.mean_comm(dag.data[&key])
            })
            .sum();
        (1.0 + s / others.len() as f64 / tbar).ln()
    };
    let mut x = Array2::zeros((n, FEATURES));
    for v in 0..n {
        let row = [
            dag.cost(v) * mis / cp,
            up[v] / cp,
            down[v] / cp,
            (up[v] + down[v]) / cp,
            (1.0 + dag.pred[v].len() as f64).ln() / 2.0,
            (1.0 + dag.succ[v].len() as f64).ln() / 2.0,
            mean_comm(v, &dag.pred[v], true),
            mean_comm(v, &dag.succ[v], false),
            (1.0 + ccr).ln(),
            (p.workers() as f64).ln() / 3.0,
            (vmax * mis).ln(),
            depth[v] as f64 / deepest,
            (1.0 + n as f64).ln() / 8.0,
            variants[0][v] / cp,
            variants[1][v] / cp,
            variants[2][v] / cp,
        ];
        for (k, f) in row.into_iter().enumerate() {
            x[[v, k]] = f;
        }
    }
    x
}

fn positive(x: f64) -> f64 {
    if x > 0.0 && x.is_finite() {
        x
    } else {
        1.0
    }
}

/// The mean of each task's neighbours' rows (zero for none).
fn mean_over(h: &Array2<f64>, neighbours: &[Vec<usize>]) -> Array2<f64> {
    let mut out = Array2::zeros(h.raw_dim());
    for (v, ns) in neighbours.iter().enumerate() {
        if ns.is_empty() {
            continue;
        }
        let mut row = out.row_mut(v);
        for &u in ns {
            row += &h.row(u);
        }
        row /= ns.len() as f64;
    }
    out
}

impl Gcn {
    /// The number of parameters of a model of this shape.
    pub fn param_count(features: usize, hidden: usize, layers: usize) -> usize {
        (0..layers)
            .map(|l| {
                let d = if l == 0 { features } else { hidden };
                3 * d * hidden + hidden
            })
            .sum::<usize>()
            + hidden
            + features
            + 1
    }

    /// A fresh model: hidden layers drawn at the scale `1/√fan-in` from `seed`, the
    /// output layer zero (so its priorities are HEFT's until trained).
    pub fn new(hidden: usize, layers: usize, seed: u64) -> Gcn {
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(seed);
        let mut params = Vec::with_capacity(Self::param_count(FEATURES, hidden, layers));
        for l in 0..layers {
            let d = if l == 0 { FEATURES } else { hidden };
            let scale = 1.0 / ((3 * d) as f64).sqrt();
            for _ in 0..3 * d * hidden {
                let z: f64 = StandardNormal.sample(&mut rng);
                params.push(z * scale);
            }
            params.extend(std::iter::repeat_n(0.0, hidden));
        }
        params.extend(std::iter::repeat_n(0.0, hidden + FEATURES + 1));
        Gcn {
            format: "autoglm-gcn".into(),
            version: 1,
            features: FEATURES,
            hidden,
            layers,
            params,
            meta: serde_json::Value::Null,
        }
    }

    /// The model shipped with the crate, trained by `autoglm schedule train` with the
    /// configuration recorded in its `meta`.
    pub fn pretrained() -> Gcn {
        Gcn::from_json(PRETRAINED).expect("the shipped GCN weights are valid")
    }

    /// Reads a model document.
    ///
    /// # Errors
    /// [`Error::Json`] for syntax, [`Error::Format`] for a wrong header, a feature count
    /// other than [`FEATURES`], or a parameter count that does not fit the shape.
    pub fn from_json(text: &str) -> Result<Gcn> {
        let g: Gcn = serde_json::from_str(text).map_err(|source| Error::Json {
            what: "GCN model".into(),
            source,
        })?;
        let bad = |msg: String| Error::Format {
            what: "GCN model".into(),
            msg,
        };
        if g.format != "autoglm-gcn" || g.version != 1 {
            return Err(bad(
                "expected \"format\": \"autoglm-gcn\", \"version\": 1".into()
            ));
        }
        if g.features != FEATURES {
            return Err(bad(format!(
                "\"features\" is {}, this build computes {FEATURES}",
                g.features
            )));
        }
        let want = Self::param_count(g.features, g.hidden, g.layers);
        if g.params.len() != want || g.params.iter().any(|x| !x.is_finite()) {
            return Err(bad(format!(
                "{} parameters (all finite) expected for {} layers of {}, got {}",
                want,
                g.layers,
                g.hidden,
                g.params.len()
            )));
        }
        Ok(g)
    }

    /// The document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("models serialize")
    }

    /// The per-task scores for features `x` (from [`features`]) of `dag`, with
    /// parameters `params` (of this model's shape; training passes perturbed ones).
    pub(crate) fn scores_with(&self, params: &[f64], dag: &Dag, x: &Array2<f64>) -> Array1<f64> {
        let h = self.hidden;
        let mut at = 0;
        let mut take = |len: usize| {
            let s = &params[at..at + len];
            at += len;
            s
        };
        let mut cur = x.clone();
        for l in 0..self.layers {
            let d = if l == 0 { self.features } else { h };
            let view = |s| ArrayView2::from_shape((d, h), s).expect("shapes fit");
            let (ws, wp, wc) = (view(take(d * h)), view(take(d * h)), view(take(d * h)));
            let b = ArrayView1::from(take(h));
            let mut next = cur.dot(&ws);
            next += &mean_over(&cur, &dag.pred).dot(&wp);
            next += &mean_over(&cur, &dag.succ).dot(&wc);
            next += &b.insert_axis(Axis(0));
            next.mapv_inplace(|v| v.max(0.0));
            cur = next;
        }
        let w = ArrayView1::from(take(h));
        let skip = ArrayView1::from(take(self.features));
        let bias = take(1)[0];
        cur.dot(&w) + x.dot(&skip) + bias
    }

    /// Priorities: the upward rank over the critical path plus the model's score.
    pub(crate) fn priorities_with(&self, params: &[f64], dag: &Dag, x: &Array2<f64>) -> Vec<f64> {
        let s = self.scores_with(params, dag, x);
        x.column(1).iter().zip(&s).map(|(r, s)| r + s).collect()
    }

    /// This model's priority for each task of `dag` on `p`.
    pub fn priorities(&self, dag: &Dag, p: &Platform) -> Vec<f64> {
        self.priorities_with(&self.params, dag, &features(dag, p))
    }

    /// List scheduling by this model's priorities (earliest finish, insertion), with
    /// or without [`crate::heft_dup`]'s duplication.
    pub fn schedule(&self, dag: &Dag, p: &Platform, duplicate: bool) -> Schedule {
        self.schedule_with(&self.params, dag, p, &features(dag, p), duplicate)
    }

    /// [`Gcn::schedule`] with parameters `params` and precomputed features `x`.
    pub(crate) fn schedule_with(
        &self,
        params: &[f64],
        dag: &Dag,
        p: &Platform,
        x: &Array2<f64>,
        duplicate: bool,
    ) -> Schedule {
        let pr = self.priorities_with(params, dag, x);
        let name = if duplicate { "GCN+dup" } else { "GCN" };
        schedule_by(dag, p, &pr, name, duplicate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generate::{random_platform, RandomDag};
    use crate::{heft, heft_dup, validate};

    #[test]
    fn an_untrained_model_is_heft() {
        let g = Gcn::new(8, 2, 1);
        let p = random_platform(1, 8, 1.25e8, 1e-4).unwrap();
        for seed in 0..5 {
            let dag = RandomDag::default().generate(seed).unwrap();
            assert_eq!(
                g.schedule(&dag, &p, false).assignments,
                heft(&dag, &p).assignments
            );
            assert_eq!(
                g.schedule(&dag, &p, true).assignments,
                heft_dup(&dag, &p).assignments
            );
        }
    }

    #[test]
    fn the_shipped_model_loads_and_schedules_validly() {
        let g = Gcn::pretrained();
        let back = Gcn::from_json(&g.to_json()).unwrap();
        assert_eq!(g, back);
        let p = random_platform(2, 16, 1.25e7, 5e-2).unwrap();
        let dag = RandomDag::default().generate(3).unwrap();
        for dup in [false, true] {
            let s = g.schedule(&dag, &p, dup);
            let (errors, _) = validate(&dag, &p, &s);
            assert!(errors.is_empty(), "{errors:?}");
        }
    }

    #[test]
    fn bad_models_are_refused() {
        let mut g = Gcn::new(4, 2, 0);
        g.params.pop();
        assert!(Gcn::from_json(&g.to_json())
            .unwrap_err()
            .to_string()
            .contains("parameters"));
        let mut g = Gcn::new(4, 2, 0);
        g.features = 3;
        assert!(Gcn::from_json(&g.to_json()).is_err());
        assert!(Gcn::from_json("{").is_err());
    }
}
