//! Runtime prediction: online estimates of task durations per task type and worker from
//! observed runs, used to fill in the costs of DAGs that lack them.

use std::collections::HashMap;

use serde::Deserialize;

use crate::error::{Error, Result};
use crate::model::{Dag, Platform};

/// A running mean (Welford), so estimates update in O(1) per observation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Running {
    /// Observations.
    pub n: u64,
    /// Their mean.
    pub mean: f64,
    m2: f64,
}

impl Running {
    fn push(&mut self, x: f64) {
        self.n += 1;
        let d = x - self.mean;
        self.mean += d / self.n as f64;
        self.m2 += d * (x - self.mean);
    }

    /// The sample standard deviation (0 with fewer than two observations).
    pub fn std(&self) -> f64 {
        if self.n < 2 {
            0.0
        } else {
            (self.m2 / (self.n - 1) as f64).sqrt()
        }
    }
}

/// One observed run: a task of some type took `duration` seconds on `worker`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Observation {
    /// The task type (the DAG's `type`).
    #[serde(rename = "type")]
    pub kind: String,
    /// The worker it ran on.
    pub worker: usize,
    /// Seconds.
    pub duration: f64,
}

/// Duration estimates from observations. A task type's cost (reference seconds) is the
/// mean of duration × worker speed over its runs (the related-machines model); a
/// prediction for a worker uses that worker's own mean once it has `min_local` runs of
/// the type, else the type's cost / the worker's speed, else the mean cost of all types.
#[derive(Debug, Clone, PartialEq)]
pub struct RuntimeModel {
    speed: Vec<f64>,
    by_type: HashMap<String, Running>,
    by_type_worker: HashMap<(String, usize), Running>,
    all: Running,
    /// Runs of a type on a worker before its own mean is trusted.
    pub min_local: u64,
}

impl RuntimeModel {
    /// An empty model for `platform`'s workers.
    pub fn new(platform: &Platform) -> RuntimeModel {
        RuntimeModel {
            speed: platform.speed.clone(),
            by_type: HashMap::new(),
            by_type_worker: HashMap::new(),
            all: Running::default(),
            min_local: 3,
        }
    }

    /// Records one run.
    ///
    /// # Errors
    /// [`Error::Format`] for an unknown worker or a negative or non-finite duration.
    pub fn observe(&mut self, o: &Observation) -> Result<()> {
        let bad = |msg: String| Error::Format {
            what: "observation".into(),
            msg,
        };
        let speed = *self.speed.get(o.worker).ok_or_else(|| {
            bad(format!(
                "unknown worker {} (the platform has {})",
                o.worker,
                self.speed.len()
            ))
        })?;
        if !(o.duration >= 0.0 && o.duration.is_finite()) {
            return Err(bad(format!(
                "type '{}': duration {} must be finite and ≥ 0",
                o.kind, o.duration
            )));
        }
        let cost = o.duration * speed;
        self.by_type.entry(o.kind.clone()).or_default().push(cost);
        self.by_type_worker
            .entry((o.kind.clone(), o.worker))
            .or_default()
            .push(o.duration);
        self.all.push(cost);
        Ok(())
    }

    /// Reads observations, one JSON object per line (`{"type":…, "worker":…,
    /// "duration":…}`), blank lines skipped.
    ///
    /// # Errors
    /// [`Error::Format`] naming the line.
    pub fn observe_jsonl(&mut self, text: &str) -> Result<usize> {
        let mut n = 0;
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let o: Observation = serde_json::from_str(line).map_err(|e| Error::Format {
                what: "observations".into(),
                msg: format!("line {}: {e}", i + 1),
            })?;
            self.observe(&o).map_err(|e| Error::Format {
                what: "observations".into(),
                msg: format!("line {}: {e}", i + 1),
            })?;
            n += 1;
        }
        Ok(n)
    }

    /// The estimated cost (reference seconds) of a type, if it or anything was seen.
    pub fn cost(&self, kind: &str) -> Option<f64> {
        self.by_type
            .get(kind)
            .or((self.all.n > 0).then_some(&self.all))
            .map(|r| r.mean)
    }

    /// The predicted duration of a task of type `kind` on `worker`.
    pub fn predict(&self, kind: &str, worker: usize) -> Option<f64> {
        if let Some(r) = self.by_type_worker.get(&(kind.to_owned(), worker)) {
            if r.n >= self.min_local {
                return Some(r.mean);
            }
        }
        Some(self.cost(kind)? / *self.speed.get(worker)?)
    }

    /// Fills in the costs a DAG lacks from the type estimates; returns how many.
    ///
    /// # Errors
    /// [`Error::Format`] naming the first task without a cost that the model cannot
    /// estimate (no type and nothing observed).
    pub fn fill_costs(&self, dag: &mut Dag) -> Result<usize> {
        let mut filled = 0;
        for t in &mut dag.tasks {
            if t.cost.is_nan() {
                let kind = t.kind.clone().unwrap_or_default();
                t.cost = self.cost(&kind).ok_or_else(|| Error::Format {
                    what: format!("DAG '{}'", dag.name),
                    msg: format!(
                        "task {} has no cost and nothing was observed to estimate it",
                        t.id
                    ),
                })?;
                filled += 1;
            }
        }
        Ok(filled)
    }
}
