//! The data formats (`shared/bench/sched/FORMATS.md`, v1): DAGs, platforms, schedules;
//! the communication model and the lower bounds.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{Error, Result};

fn err(what: &str, msg: impl Into<String>) -> Error {
    Error::Format {
        what: what.to_owned(),
        msg: msg.into(),
    }
}

fn parse_json(text: &str, what: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|source| Error::Json {
        what: what.to_owned(),
        source,
    })
}

fn check_header(v: &Value, format: &str, what: &str) -> Result<()> {
    match v.get("format").and_then(Value::as_str) {
        Some(f) if f == format => {}
        Some(f) => {
            return Err(err(
                what,
                format!("\"format\" is \"{f}\", expected \"{format}\""),
            ))
        }
        None => return Err(err(what, format!("missing \"format\": \"{format}\""))),
    }
    match v.get("version").and_then(Value::as_u64) {
        Some(1) => Ok(()),
        other => Err(err(what, format!("\"version\" must be 1, got {other:?}"))),
    }
}

fn number(v: &Value, field: &str, at: &str, what: &str) -> Result<f64> {
    v.get(field)
        .and_then(Value::as_f64)
        .ok_or_else(|| err(what, format!("{at}: \"{field}\" must be a number")))
}

/// One task of a DAG.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Task {
    /// Its id (0..n-1).
    pub id: usize,
    /// Reference seconds (time on a worker of speed 1); NaN while unknown (a task
    /// without `cost` in the file), until [`crate::RuntimeModel::fill_costs`] sets it.
    pub cost: f64,
    /// Optional name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Optional type (for runtime prediction).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
}

/// A task graph: tasks with costs, precedence edges with data sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct Dag {
    /// Its name.
    pub name: String,
    /// Tasks by id.
    pub tasks: Vec<Task>,
    /// Successors of each task, in the order the edges are listed.
    pub succ: Vec<Vec<usize>>,
    /// Predecessors of each task, in the order the edges are listed.
    pub pred: Vec<Vec<usize>>,
    /// Bytes sent along each edge.
    pub data: HashMap<(usize, usize), f64>,
    /// The edges as listed.
    pub edges: Vec<(usize, usize, f64)>,
    /// A topological order (Kahn's algorithm with a stack, smallest ready id first;
    /// it breaks ties in the list schedulers' priorities, as the Python anchors do).
    pub topo: Vec<usize>,
    source: Option<Value>,
}

impl Dag {
    /// Reads an `autoglm-dag` v1 document.
    ///
    /// # Errors
    /// [`Error::Json`] for syntax, [`Error::Format`] naming the task or edge for ids that
    /// are not exactly 0..n-1, negative or non-finite costs or data, unknown endpoints,
    /// self loops, duplicate edges and cycles. A task without `cost` gets NaN (see
    /// [`Dag::missing_costs`]).
    pub fn from_json(text: &str) -> Result<Dag> {
        let v = parse_json(text, "DAG")?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let what = format!("DAG '{name}'");
        check_header(&v, "autoglm-dag", &what)?;
        let tasks_v = v
            .get("tasks")
            .and_then(Value::as_array)
            .ok_or_else(|| err(&what, "\"tasks\" must be an array"))?;
        let n = tasks_v.len();
        let mut tasks: Vec<Option<Task>> = vec![None; n];
        for (k, t) in tasks_v.iter().enumerate() {
            let at = format!("tasks[{k}]");
            let id = t.get("id").and_then(Value::as_u64).ok_or_else(|| {
                err(
                    &what,
                    format!("{at}: \"id\" must be a non-negative integer"),
                )
            })? as usize;
            if id >= n {
                return Err(err(&what, format!("{at}: task id {id} is not in 0..{n}")));
            }
            if tasks[id].is_some() {
                return Err(err(&what, format!("{at}: task id {id} appears twice")));
            }
            // A missing cost is NaN until a runtime model fills it in.
            let cost = match t.get("cost") {
                None | Some(Value::Null) => f64::NAN,
                Some(_) => number(t, "cost", &format!("task {id}"), &what)?,
            };
            if !(cost.is_nan() || (cost >= 0.0 && cost.is_finite())) {
                return Err(err(
                    &what,
                    format!("task {id}: cost {cost} must be finite and ≥ 0"),
                ));
            }
            let s = |f: &str| t.get(f).and_then(Value::as_str).map(str::to_owned);
            tasks[id] = Some(Task {
                id,
                cost,
                name: s("name"),
                kind: s("type"),
            });
        }
        let tasks: Vec<Task> = tasks
            .into_iter()
            .map(|t| t.expect("ids are 0..n-1"))
            .collect();
        let edges_v = v
            .get("edges")
            .and_then(Value::as_array)
            .ok_or_else(|| err(&what, "\"edges\" must be an array"))?;
        let mut succ = vec![Vec::new(); n];
        let mut pred = vec![Vec::new(); n];
        let mut data = HashMap::with_capacity(edges_v.len());
        let mut edges = Vec::with_capacity(edges_v.len());
        for (k, e) in edges_v.iter().enumerate() {
            let at = format!("edges[{k}]");
            let end = |f: &str| {
                e.get(f)
                    .and_then(Value::as_u64)
                    .ok_or_else(|| err(&what, format!("{at}: \"{f}\" must be a task id")))
            };
            let (u, w) = (end("src")? as usize, end("dst")? as usize);
            let b = match e.get("data") {
                None => 0.0,
                Some(x) => x
                    .as_f64()
                    .ok_or_else(|| err(&what, format!("{at}: \"data\" must be a number")))?,
            };
            if u >= n || w >= n {
                return Err(err(&what, format!("edge {u}->{w}: unknown task (n = {n})")));
            }
            if u == w {
                return Err(err(&what, format!("edge {u}->{w}: self loop")));
            }
            if !(b >= 0.0 && b.is_finite()) {
                return Err(err(
                    &what,
                    format!("edge {u}->{w}: data {b} must be finite and ≥ 0"),
                ));
            }
            if data.insert((u, w), b).is_some() {
                return Err(err(&what, format!("edge {u}->{w}: duplicate")));
            }
            succ[u].push(w);
            pred[w].push(u);
            edges.push((u, w, b));
        }
        let topo = topo_order(&succ, &pred)
            .map_err(|t| err(&what, format!("the DAG has a cycle through task {t}")))?;
        Ok(Dag {
            name,
            tasks,
            succ,
            pred,
            data,
            edges,
            topo,
            source: v.get("source").cloned(),
        })
    }

    /// The number of tasks.
    pub fn len(&self) -> usize {
        self.tasks.len()
    }

    /// Tasks whose cost is not known yet (schedulers need every cost).
    pub fn missing_costs(&self) -> usize {
        self.tasks.iter().filter(|t| t.cost.is_nan()).count()
    }

    /// Whether there are no tasks.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
    }

    /// Task costs by id.
    pub fn cost(&self, t: usize) -> f64 {
        self.tasks[t].cost
    }

    /// The document again (`autoglm-dag` v1).
    pub fn to_json(&self) -> String {
        let mut v = serde_json::json!({
            "format": "autoglm-dag", "version": 1, "name": self.name,
            "tasks": self.tasks,
            "edges": self.edges.iter().map(|&(s, d, b)| serde_json::json!({"src": s, "dst": d, "data": b})).collect::<Vec<_>>(),
        });
        if let Some(s) = &self.source {
            v["source"] = s.clone();
        }
        serde_json::to_string(&v).expect("DAGs serialize")
    }
}

/// Kahn's algorithm with a stack seeded in decreasing id order (so the smallest ready
/// id comes first); `Err(t)` names a task on a cycle.
fn topo_order(succ: &[Vec<usize>], pred: &[Vec<usize>]) -> std::result::Result<Vec<usize>, usize> {
    let n = succ.len();
    let mut indeg: Vec<usize> = pred.iter().map(Vec::len).collect();
    let mut stack: Vec<usize> = (0..n).filter(|&i| indeg[i] == 0).rev().collect();
    let mut out = Vec::with_capacity(n);
    while let Some(u) = stack.pop() {
        out.push(u);
        for &v in &succ[u] {
            indeg[v] -= 1;
            if indeg[v] == 0 {
                stack.push(v);
            }
        }
    }
    if out.len() == n {
        Ok(out)
    } else {
        Err((0..n).find(|&i| indeg[i] > 0).unwrap_or(0))
    }
}

/// Workers of related speeds joined by links with latency and bandwidth.
#[derive(Debug, Clone, PartialEq)]
pub struct Platform {
    /// Its name.
    pub name: String,
    /// Speed of each worker (task time = cost / speed).
    pub speed: Vec<f64>,
    /// Bandwidth `[p][q]` in bytes/s.
    pub bandwidth: Vec<Vec<f64>>,
    /// Latency `[p][q]` in seconds.
    pub latency: Vec<Vec<f64>>,
    /// Mean latency over ordered pairs of distinct workers.
    pub mean_latency: f64,
    /// Mean of 1/bandwidth over ordered pairs of distinct workers.
    pub mean_inv_bandwidth: f64,
    /// Mean of 1/speed over workers.
    pub mean_inv_speed: f64,
}

impl Platform {
    /// Reads an `autoglm-platform` v1 document.
    ///
    /// # Errors
    /// [`Error::Json`] for syntax, [`Error::Format`] naming the worker or field for ids
    /// that are not exactly 0..m-1, speeds ≤ 0, and matrices that are not m × m or have
    /// non-positive bandwidths or negative latencies.
    pub fn from_json(text: &str) -> Result<Platform> {
        let v = parse_json(text, "platform")?;
        let name = v
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned();
        let what = format!("platform '{name}'");
        check_header(&v, "autoglm-platform", &what)?;
        let ws = v
            .get("workers")
            .and_then(Value::as_array)
            .ok_or_else(|| err(&what, "\"workers\" must be an array"))?;
        let m = ws.len();
        if m == 0 {
            return Err(err(&what, "no workers"));
        }
        let mut speed = vec![f64::NAN; m];
        for (k, w) in ws.iter().enumerate() {
            let id = w
                .get("id")
                .and_then(Value::as_u64)
                .filter(|&i| (i as usize) < m)
                .ok_or_else(|| err(&what, format!("workers[{k}]: \"id\" must be in 0..{m}")))?
                as usize;
            if !speed[id].is_nan() {
                return Err(err(&what, format!("worker {id} appears twice")));
            }
            let s = number(w, "speed", &format!("worker {id}"), &what)?;
            if !(s > 0.0 && s.is_finite()) {
                return Err(err(&what, format!("worker {id}: speed {s} must be > 0")));
            }
            speed[id] = s;
        }
        let matrix = |field: &str, default: Option<f64>| -> Result<Vec<Vec<f64>>> {
            let x = match (v.get(field), default) {
                (Some(x), _) => x.clone(),
                (None, Some(d)) => Value::from(d),
                (None, None) => return Err(err(&what, format!("missing \"{field}\""))),
            };
            if let Some(s) = x.as_f64() {
                return Ok(vec![vec![s; m]; m]);
            }
            let rows = x.as_array().filter(|r| r.len() == m).ok_or_else(|| {
                err(
                    &what,
                    format!("\"{field}\" must be a number or an {m}×{m} matrix"),
                )
            })?;
            rows.iter()
                .enumerate()
                .map(|(p, r)| {
                    r.as_array()
                        .filter(|r| r.len() == m)
                        .and_then(|r| r.iter().map(Value::as_f64).collect::<Option<Vec<f64>>>())
                        .ok_or_else(|| {
                            err(&what, format!("\"{field}\" row {p} must hold {m} numbers"))
                        })
                })
                .collect()
        };
        let bandwidth = matrix("bandwidth", None)?;
        let latency = matrix("latency", Some(0.0))?;
        for p in 0..m {
            for q in 0..m {
                if p != q && (bandwidth[p][q].is_nan() || bandwidth[p][q] <= 0.0) {
                    return Err(err(&what, format!("bandwidth {p}->{q} must be > 0")));
                }
                if !(latency[p][q] >= 0.0 && latency[p][q].is_finite()) {
                    return Err(err(
                        &what,
                        format!("latency {p}->{q} must be finite and ≥ 0"),
                    ));
                }
            }
        }
        // Means over ordered pairs of distinct workers, summed in row-major order.
        let pairs: Vec<(usize, usize)> = (0..m)
            .flat_map(|p| (0..m).filter(move |&q| q != p).map(move |q| (p, q)))
            .collect();
        let np = pairs.len() as f64;
        let (mean_latency, mean_inv_bandwidth) = if pairs.is_empty() {
            (0.0, 0.0)
        } else {
            (
                pairs.iter().fold(0.0, |s, &(p, q)| s + latency[p][q]) / np,
                pairs
                    .iter()
                    .fold(0.0, |s, &(p, q)| s + 1.0 / bandwidth[p][q])
                    / np,
            )
        };
        let mean_inv_speed = speed.iter().fold(0.0, |s, &x| s + 1.0 / x) / m as f64;
        Ok(Platform {
            name,
            speed,
            bandwidth,
            latency,
            mean_latency,
            mean_inv_bandwidth,
            mean_inv_speed,
        })
    }

    /// The number of workers.
    pub fn workers(&self) -> usize {
        self.speed.len()
    }

    /// Seconds to move `data` bytes from worker `p` to `q`: 0 on one worker, else
    /// latency (paid even for no data) plus data / bandwidth.
    pub fn comm(&self, p: usize, q: usize, data: f64) -> f64 {
        if p == q {
            0.0
        } else {
            self.latency[p][q] + data / self.bandwidth[p][q]
        }
    }

    /// The longest any schedule of `dag` here can need: every task on the slowest
    /// worker one after another, every edge at the slowest link. Times beyond
    /// [`Platform::MAX_HORIZON`] cannot be held to the validator's 1e-6 s precision in
    /// f64 (see [`Platform::check_horizon`]).
    pub fn horizon(&self, dag: &Dag) -> f64 {
        let slowest = self.speed.iter().fold(f64::INFINITY, |m, &s| m.min(s));
        // (Tasks without a cost yet count as 0.)
        let work: f64 = (0..dag.len())
            .map(|t| dag.cost(t))
            .filter(|c| !c.is_nan())
            .sum::<f64>()
            / slowest;
        let (mut latency, mut inv_bw) = (0.0f64, 0.0f64);
        for p in 0..self.workers() {
            for q in 0..self.workers() {
                if p != q {
                    latency = latency.max(self.latency[p][q]);
                    inv_bw = inv_bw.max(1.0 / self.bandwidth[p][q]);
                }
            }
        }
        let comm: f64 = dag.edges.iter().map(|e| latency + e.2 * inv_bw).sum();
        work + comm
    }

    /// The largest [`Platform::horizon`] this crate schedules: 1e9 s (about 32 years);
    /// beyond it a double's spacing at those times exceeds the validator's 1e-6 s
    /// tolerance, and short tasks late in a schedule could not be represented.
    pub const MAX_HORIZON: f64 = 1e9;

    /// Checks that `dag` on this platform stays within [`Platform::MAX_HORIZON`].
    ///
    /// # Errors
    /// [`Error::Format`] naming the horizon (costs or data sizes far out of range).
    pub fn check_horizon(&self, dag: &Dag) -> Result<()> {
        let h = self.horizon(dag);
        if h <= Self::MAX_HORIZON {
            Ok(())
        } else {
            Err(Error::Format {
                what: format!("DAG {:?} on platform {:?}", dag.name, self.name),
                msg: format!(
                    "its costs and data sizes allow schedules up to {h:.3e} s long, beyond \
                     the {:.0e} s that times in f64 hold to 1e-6 s; check the units",
                    Self::MAX_HORIZON
                ),
            })
        }
    }

    /// The platform-average communication time of `data` bytes (for ranks).
    pub fn mean_comm(&self, data: f64) -> f64 {
        if self.workers() < 2 {
            0.0
        } else {
            self.mean_latency + data * self.mean_inv_bandwidth
        }
    }
}

/// One copy of a task on a worker.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Assignment {
    /// The task.
    pub task: usize,
    /// The worker.
    pub worker: usize,
    /// Start time (s).
    pub start: f64,
    /// Finish time (s).
    pub finish: f64,
}

/// A schedule (`autoglm-schedule` v1): task copies on workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Schedule {
    /// `"autoglm-schedule"`.
    pub format: String,
    /// 1.
    pub version: u32,
    /// The DAG's name.
    pub dag: String,
    /// The platform's name.
    pub platform: String,
    /// The algorithm that made it.
    pub scheduler: String,
    /// The task copies.
    pub assignments: Vec<Assignment>,
}

impl Schedule {
    /// An empty schedule of `dag` on `platform` by `scheduler`.
    pub fn new(dag: &Dag, platform: &Platform, scheduler: &str) -> Schedule {
        Schedule {
            format: "autoglm-schedule".into(),
            version: 1,
            dag: dag.name.clone(),
            platform: platform.name.clone(),
            scheduler: scheduler.into(),
            assignments: Vec::new(),
        }
    }

    /// The latest finish time.
    pub fn makespan(&self) -> f64 {
        self.assignments.iter().fold(0.0, |m, a| m.max(a.finish))
    }

    /// Reads a schedule document.
    ///
    /// # Errors
    /// [`Error::Json`] (with line and column) or [`Error::Format`] for a wrong header.
    pub fn from_json(text: &str) -> Result<Schedule> {
        let s: Schedule = serde_json::from_str(text).map_err(|source| Error::Json {
            what: "schedule".into(),
            source,
        })?;
        if s.format != "autoglm-schedule" || s.version != 1 {
            return Err(err(
                "schedule",
                "expected \"format\": \"autoglm-schedule\", \"version\": 1",
            ));
        }
        Ok(s)
    }

    /// The document.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("schedules serialize")
    }
}

/// Lower bounds on the makespan (communication ignored).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    /// Longest cost path on the fastest worker.
    pub lb_cp: f64,
    /// Total cost over total speed.
    pub lb_work: f64,
    /// The larger of the two.
    pub lb: f64,
    /// Everything on the fastest worker, one after the other.
    pub seq_fastest: f64,
}

/// The lower bounds of `dag` on `platform`.
pub fn lower_bounds(dag: &Dag, platform: &Platform) -> Bounds {
    let vmax = platform
        .speed
        .iter()
        .fold(f64::NEG_INFINITY, |m, &s| m.max(s));
    let mut lp = vec![0.0f64; dag.len()];
    for &u in dag.topo.iter().rev() {
        let tail = dag.succ[u].iter().fold(0.0f64, |m, &v| m.max(lp[v]));
        lp[u] = dag.cost(u) + tail;
    }
    let cp = lp.iter().fold(0.0f64, |m, &x| m.max(x));
    let work = dag.tasks.iter().fold(0.0, |s, t| s + t.cost);
    let total_speed = platform.speed.iter().fold(0.0, |s, &x| s + x);
    let (lb_cp, lb_work) = (cp / vmax, work / total_speed);
    Bounds {
        lb_cp,
        lb_work,
        lb: lb_cp.max(lb_work),
        seq_fastest: work / vmax,
    }
}
