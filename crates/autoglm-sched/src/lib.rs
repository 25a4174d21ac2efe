//! DAG scheduling onto heterogeneous workers, part of Open-AutoGLM: the `autoglm-dag`,
//! `autoglm-platform` and `autoglm-schedule` formats (v1) read and written with errors
//! naming the task, edge or worker; HEFT and CPOP list scheduling with insertion,
//! tie-broken exactly as the shared Python anchors; and the schedule validator.
//!
//! ```
//! use autoglm_sched::{heft, validate, Dag, Platform};
//!
//! # fn main() -> Result<(), autoglm_sched::Error> {
//! let dag = Dag::from_json(r#"{"format":"autoglm-dag","version":1,"name":"diamond",
//!   "tasks":[{"id":0,"cost":2},{"id":1,"cost":3},{"id":2,"cost":1},{"id":3,"cost":2}],
//!   "edges":[{"src":0,"dst":1,"data":1e6},{"src":0,"dst":2,"data":1e6},
//!            {"src":1,"dst":3,"data":0},{"src":2,"dst":3,"data":0}]}"#)?;
//! let platform = Platform::from_json(r#"{"format":"autoglm-platform","version":1,"name":"two",
//!   "workers":[{"id":0,"speed":1.0},{"id":1,"speed":2.0}],"bandwidth":1.25e8,"latency":1e-4}"#)?;
//! let schedule = heft(&dag, &platform);
//! let (errors, metrics) = validate(&dag, &platform, &schedule);
//! assert!(errors.is_empty(), "{errors:?}");
//! assert!(metrics.makespan >= metrics.lb);
//! println!("{}", schedule.to_json());
//! # Ok(()) }
//! ```
//!
//! A discrete-event simulator ([`simulate`]) runs a schedule with noisy durations and
//! worker failures (lost work re-run on survivors), and estimates the expected makespan
//! under `k` random failures.
//!
//! [`replicate`] adds copies of the tasks with the most descendants into idle gaps of
//! other workers (the failure-free makespan does not change) under a work budget.
//!
//! [`RuntimeModel`] estimates durations per task type and worker from observed runs
//! and fills in the costs a DAG lacks.
//!
//! Status: the first part of its issue (formats, HEFT, HEFT with duplication, CPOP,
//! validator, simulator, replication, runtime prediction, the `autoglm schedule`
//! command). The GCN priority model is next.

#![forbid(unsafe_code)]

mod error;
pub mod fuzz;
mod list;
mod model;
mod predict;
mod replicate;
mod sim;
mod validate;

pub use error::{Error, Result};
pub use list::{cpop, downward_rank, heft, heft_dup, list_schedule, upward_rank};
pub use model::{lower_bounds, Assignment, Bounds, Dag, Platform, Schedule, Task};
pub use predict::{Observation, Running, RuntimeModel};
pub use replicate::{replicate, replicate_simulated, Replication};
pub use sim::{expected_makespan_under_failures, simulate, SimConfig, SimResult};
pub use validate::{validate, Metrics};
