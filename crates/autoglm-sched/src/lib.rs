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
//! [`replicate`] adds copies of the tasks most exposed to failures into idle gaps of
//! other workers (the failure-free makespan does not change) under a work budget.
//!
//! [`RuntimeModel`] estimates durations per task type and worker from observed runs
//! and fills in the costs a DAG lacks.
//!
//! [`Gcn`] is a graph-convolutional priority model over [`features`] of each task; its
//! weights ship with the crate ([`Gcn::pretrained`]) and [`train::train`] retrains it
//! in the simulator on DAGs of [`generate`]. [`Scheduler`] runs any [`Algorithm`];
//! `auto` returns the shortest of the learned and classic schedules:
//!
//! ```
//! use autoglm_sched::generate::{random_platform, RandomDag};
//! use autoglm_sched::{validate, Algorithm, Scheduler};
//!
//! # fn main() -> Result<(), autoglm_sched::Error> {
//! let dag = RandomDag { n: 60, ccr: 2.0, ..RandomDag::default() }.generate(1)?;
//! let platform = random_platform(1, 8, 1.25e8, 1e-4)?;
//! let scheduler = Scheduler::default();
//! let heft = scheduler.schedule(Algorithm::Heft, &dag, &platform);
//! let auto = scheduler.schedule(Algorithm::Auto, &dag, &platform);
//! assert!(validate(&dag, &platform, &auto).0.is_empty());
//! assert!(auto.makespan() <= heft.makespan());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]

mod auto;
mod error;
pub mod fuzz;
mod gcn;
pub mod generate;
mod list;
mod model;
mod predict;
mod replicate;
mod sim;
pub mod train;
mod validate;

pub use auto::{fastest_only, Algorithm, Scheduler};
pub use error::{Error, Result};
pub use gcn::{features, Gcn, FEATURES};
pub use list::{
    cpop, downward_rank, heft, heft_dup, list_schedule, list_schedule_dup, upward_rank,
    upward_rank_weighted,
};
pub use model::{lower_bounds, Assignment, Bounds, Dag, Platform, Schedule, Task};
pub use predict::{Observation, Running, RuntimeModel};
pub use replicate::{replicate, replicate_simulated, Replication};
pub use sim::{expected_makespan_under_failures, simulate, SimConfig, SimResult};
pub use validate::{validate, Metrics};
