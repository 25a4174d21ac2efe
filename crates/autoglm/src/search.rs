//! The AutoTrainer: data preparation, tokenizer, then a search over structure and
//! hyperparameters with autoglm-tune (journal on disk, so a killed run resumes
//! without rerunning finished trials), each trial scored on dev; the best model is
//! kept, scored on test once the search is over, and exported.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use autoglm_models::{save_pretrained, LoadOptions, Model};
use autoglm_train::{Control, Dataset, Example};
use autoglm_tune::{
    AutoSampler, Distribution, MedianPruner, NopPruner, Outcome, ParamValue, Params, RandomSampler,
    Seed, StopReason, Storage, Study, SuccessiveHalvingPruner, TpeSampler, TrialState,
};
use autoglm_tune::{
    BatchRunner, BudgetModel, FidelityRunner, GpConfig, GpSampler, Hyperband, MultiFidelity,
    RungDone, RungJob, TpeConfig, TrialError,
};
use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};

use crate::data::{prepare, Item, Prepared};
use crate::error::{write_json, write_lines, Error, Result};
use crate::fidelity::{cooldown_steps, rung, Rung, RungOptions, RungSteps};
use crate::rundir::{
    RunDir, BEST_DEV_OUTPUTS, BEST_TRIAL, MODEL_AUTOGLM, MODEL_CONFIG, MODEL_GENERATION_CONFIG,
    MODEL_TOKENIZER, MODEL_WEIGHTS,
};
use crate::space::{BudgetUnit, Choice, HyperbandConfig, PrunerKind, SamplerKind};
use crate::task::Task;
use crate::tokenizer::TaskTokenizer;
use crate::trial::{
    generate, item_examples, run, score, Base, Decoding, Hyper, Progress, RunOptions, Scores,
    Structure, TrialData,
};

#[path = "quantize.rs"]
mod quantize;
pub use quantize::QuantizedEval;

/// The MLP width for `hidden` and a width ratio: the nearest multiple of 32
/// ([`autoglm_ops::quant::BLOCK`]), at least 32, so that the down projection's rows
/// hold whole 32-element blocks and every weight can be stored in a block format.
pub(crate) fn mlp_width(hidden: usize, ratio: f64) -> usize {
    let block = autoglm_ops::quant::BLOCK;
    ((hidden as f64 * ratio / block as f64).round() as usize).max(1) * block
}

/// Progress of a search, for a display.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// A trial starts.
    Start {
        /// Its number.
        number: u64,
        /// Its parameters.
        params: Params,
        /// Its optimizer steps.
        steps: u64,
        /// The rung's training budget, in budget units (a multi-fidelity trial; the
        /// extension after the brackets has none).
        rung: Option<f64>,
    },
    /// An optimizer step.
    Step {
        /// The trial.
        number: u64,
        /// Steps done.
        step: u64,
        /// Steps in all.
        steps: u64,
        /// Its training loss.
        loss: f64,
    },
    /// A dev-loss evaluation.
    Eval {
        /// The trial.
        number: u64,
        /// Steps done.
        step: u64,
        /// Steps in all.
        steps: u64,
        /// Dev loss.
        dev_loss: f64,
    },
    /// A rung of a multi-fidelity trial was scored.
    Rung {
        /// The trial.
        number: u64,
        /// Its training length now, in epochs (constant-rate phase).
        epochs: f64,
        /// Steps of the rung's run (constant rate and cooldown).
        steps: u64,
        /// Dev loss (all of dev) after the cooldown.
        dev_loss: f64,
        /// The search's metric on all of dev (the top rung only).
        value: Option<f64>,
    },
    /// A multi-fidelity search's trials side by side (`search.workers`, or the
    /// number its journal was started with when it resumes).
    Workers {
        /// Trials trained side by side.
        workers: usize,
        /// Kernel threads of each.
        threads: usize,
        /// Whether the search resumes a journal.
        resumed: bool,
    },
    /// A multi-fidelity search's brackets are over: the time left goes to the
    /// incumbent.
    Extend {
        /// Seconds left.
        seconds: f64,
    },
    /// Other processes' running trials fill a shared study's budget (or the
    /// search is over): this process waits for them.
    Waiting {
        /// Their numbers.
        trials: Vec<u64>,
    },
    /// A trial ended.
    End {
        /// The trial.
        number: u64,
        /// How it ended.
        state: TrialEnd,
        /// Its dev metric, when complete.
        value: Option<f64>,
        /// Seconds it took.
        seconds: f64,
    },
}

/// How a trial of a search ended (displayed as `complete`, `pruned`, `failed: …`).
#[derive(Debug, Clone, PartialEq)]
pub enum TrialEnd {
    /// Scored on dev.
    Complete {
        /// Whether it met the task's constraints (only such trials can be chosen).
        eligible: bool,
    },
    /// Stopped early by the pruner (or the time budget) before its last evaluation.
    Pruned,
    /// It failed; the study records it as failed and the search goes on.
    Failed {
        /// The error, as displayed.
        error: String,
    },
}

impl TrialEnd {
    /// Whether the trial failed (complete and pruned trials count towards the
    /// budget; failed ones do not).
    pub fn is_failed(&self) -> bool {
        matches!(self, TrialEnd::Failed { .. })
    }
}

impl std::fmt::Display for TrialEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TrialEnd::Complete { eligible: true } => f.write_str("complete"),
            TrialEnd::Complete { eligible: false } => {
                f.write_str("complete (over a constraint, not eligible)")
            }
            TrialEnd::Pruned => f.write_str("pruned"),
            TrialEnd::Failed { error } => write!(f, "failed: {error}"),
        }
    }
}

/// What a search did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Trials complete, pruned and failed (over all runs of the journal).
    pub complete: usize,
    /// Pruned.
    pub pruned: usize,
    /// Failed (errors, or interrupted by a kill and rerun).
    pub failed: usize,
    /// The best trial's number, dev metric and parameters.
    pub best: Option<(u64, f64, Params)>,
    /// Seconds this call spent.
    pub seconds: f64,
    /// Why it stopped: the trial budget, the time budget, or a finite space of which
    /// every point was tried (no point is tried twice).
    pub stop: StopReason,
    /// In a shared study (`search.storage`), the process that finishes the run
    /// (dev decoding choice, test scores, export, report) when it is not this one:
    /// the first to claim it once the study was over. `None`: this process
    /// finishes (always so without shared storage).
    #[serde(default)]
    pub finished_by: Option<String>,
}

/// Scores of the chosen model and of the retrieval baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// The decoding settings chosen on dev (the best by the search's metric of the
    /// listed combinations).
    pub decoding: Decoding,
    /// Each combination of decoding settings tried, with its scores on all of dev.
    pub decodings: Vec<(Decoding, Scores)>,
    /// The model on all of dev, with the chosen decoding.
    pub dev: Scores,
    /// The model on test.
    pub test: Scores,
    /// Nearest-neighbour retrieval (the target of the most similar training input)
    /// on dev.
    pub retrieval_dev: Scores,
    /// The same on test.
    pub retrieval_test: Scores,
    /// 95 % bootstrap intervals of the model's test scores, and its paired bootstrap
    /// test against the retrieval baseline on test BLEU (absent in runs evaluated
    /// before they were computed).
    #[serde(default)]
    pub test_intervals: Option<crate::trial::Intervals>,
}

/// The end-to-end trainer of a task.
#[derive(Debug)]
pub struct AutoTrainer {
    task: Task,
    base: Option<Base>,
    run: RunDir,
    data: Prepared,
    tok: TaskTokenizer,
    train: Dataset,
    dev_loss: Dataset,
    dev_search: Vec<Item>,
    /// Dev-loss examples of every dev input with its first reference (the
    /// multi-fidelity search's rung scores).
    dev_loss_all: Dataset,
    max_len: usize,
}

/// Constant-rate steps a multi-fidelity search's smallest rung must hold.
const MIN_RUNG_STEPS: u64 = 10;

/// Steps timed by [`AutoTrainer::check_time`] (after two that warm up).
const PROBE_STEPS: u64 = 6;

/// The numbers of the running trials.
fn running_numbers(trials: &[autoglm_tune::FrozenTrial]) -> Vec<u64> {
    trials
        .iter()
        .filter(|t| t.state == TrialState::Running)
        .map(|t| t.number)
        .collect()
}

/// One wait of a shared study's process for other processes' running trials:
/// says which it waits for (when that changed), sleeps `poll`, then fails the
/// trials whose heartbeat went stale.
fn wait_a_beat(
    study: &mut Study,
    trials: &[autoglm_tune::FrozenTrial],
    waiting_on: &mut Vec<u64>,
    on: &mut impl FnMut(&Event),
    poll: std::time::Duration,
) -> Result<()> {
    let numbers = running_numbers(trials);
    if numbers != *waiting_on {
        on(&Event::Waiting {
            trials: numbers.clone(),
        });
        *waiting_on = numbers;
    }
    std::thread::sleep(poll);
    study.check_heartbeats()?;
    Ok(())
}

/// A search's summary from its journal: trials by state, the best trial (`best`
/// when given, else the study's), the seconds since `started`, why it stopped.
fn summarize(
    study: &mut Study,
    best: Option<(u64, f64, Params)>,
    started: Instant,
    stop: StopReason,
) -> Result<Summary> {
    let trials = study.trials()?;
    let n = |st: TrialState| trials.iter().filter(|t| t.state == st).count();
    let best = match best {
        Some(b) => Some(b),
        None => study
            .best_trial()?
            .and_then(|t| Some((t.number, t.value()?, t.params))),
    };
    Ok(Summary {
        complete: n(TrialState::Complete),
        pruned: n(TrialState::Pruned),
        failed: n(TrialState::Failed),
        best,
        seconds: started.elapsed().as_secs_f64(),
        stop,
        finished_by: None,
    })
}

/// `value` as JSON for a trial attribute.
fn to_json(value: &impl Serialize) -> std::result::Result<serde_json::Value, TrialError> {
    serde_json::to_value(value).map_err(|e| TrialError::Failed(e.to_string()))
}

/// Passes a training step of trial `number` on as an [`Event::Step`].
fn step_event(on: &mut impl FnMut(&Event), number: u64, p: Progress) {
    if let Progress::Step { step, steps, loss } = p {
        on(&Event::Step {
            number,
            step,
            steps,
            loss,
        });
    }
}

/// The wall clock as Unix seconds (the `clock` trial attribute: when a trial
/// started, each rung and the trial ended, for the report's anytime curve).
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// The trial attribute with a trial's times ([`unix_now`]): `start`, `rungs` (by
/// budget) and `end`.
pub(crate) const CLOCK_ATTR: &str = "clock";

/// Seconds kept in hand when the incumbent is extended to the deadline.
const EXTENSION_MARGIN_S: f64 = 15.0;

/// The beams of the search's decoding (its first settings).
fn first_beams(d: &crate::trial::Decoding) -> f64 {
    d.num_beams.values().first().copied().unwrap_or(1).max(1) as f64
}

/// What [`AutoTrainer::extend`] works with.
struct Extension<'a> {
    hb: &'a HyperbandConfig,
    plan: &'a Hyperband,
    deadline: Instant,
    timing: &'a BTreeMap<u64, (f64, f64)>,
}

/// Names of the parameters a trial may suggest.
pub(crate) const PARAMS: [&str; 11] = [
    "layers",
    "hidden",
    "heads",
    "kv_heads",
    "mlp_ratio",
    "rotary",
    "lr",
    "batch_size",
    "epochs",
    "warmup",
    "weight_decay",
];

/// Thousandths of an epoch: the multi-fidelity budget unit.
fn units(epochs: f64) -> u64 {
    (epochs * 1000.0).round().max(1.0) as u64
}

/// Optimizer steps of `budget` thousandths of a budget unit of `n` rows at `batch`
/// for a structure that costs `cost` budget units per epoch.
fn rung_steps(budget: u64, n: usize, batch: usize, cost: f64) -> u64 {
    ((budget as f64 / 1000.0 / cost * n as f64) / batch.max(1) as f64)
        .ceil()
        .max(1.0) as u64
}

/// The study attribute that keeps a multi-fidelity search's `search.workers`, so a
/// resumed search runs with the workers it started with.
const WORKERS_ATTR: &str = "workers";

/// What the rungs of a multi-fidelity search share, read-only (the threads of
/// rungs run side by side borrow it).
struct RungShared<'a> {
    at: &'a AutoTrainer,
    hb: &'a HyperbandConfig,
    plan: &'a Hyperband,
    data: TrialData<'a>,
    deadline: Option<Instant>,
    /// This process in a shared study (`search.storage`).
    member: Option<&'a crate::shared::Member>,
}

/// What the rungs of a multi-fidelity search update, on the calling thread.
struct RungState<'f, F> {
    /// The best complete trial and its score (its model saved as `best/`).
    best: Option<(u64, f64)>,
    /// Seconds per training step and of scoring, by trial (this process's rungs).
    timing: BTreeMap<u64, (f64, f64)>,
    /// Other processes' trials this process last said it waits for.
    waiting_on: Vec<u64>,
    on: &'f mut F,
}

/// Runs the rungs of [`AutoTrainer::search_hyperband`] for autoglm-tune's
/// [`MultiFidelity`] loop: one at a time, or a batch of `search.workers` rungs side by
/// side, each on its own threads (prepared and recorded on the calling thread, which
/// also passes their progress on).
struct RungRunner<'a, 'f, F> {
    shared: RungShared<'a>,
    state: RungState<'f, F>,
}

/// A rung ready to train: what [`RungShared::prepare`] worked out.
struct RungPlan {
    number: u64,
    structure: Structure,
    hyper: Hyper,
    /// Budget units of the structure's epoch.
    cost: f64,
    steps: RungSteps,
    /// The rung's budget.
    budget: u64,
    top: bool,
    checkpoint: PathBuf,
    started: Instant,
}

/// What a thread of a batch of rungs sends back.
enum RungMsg {
    Progress(usize, Progress),
    Done(usize, Box<Result<Option<Rung>>>),
}

impl RungShared<'_> {
    /// Constant-rate steps of `budget` thousandths of a budget unit.
    fn steps_of(&self, budget: u64, hyper: &Hyper, cost: f64) -> u64 {
        rung_steps(budget, self.at.train.examples.len(), hyper.batch_size, cost)
    }

    /// Suggests (or reads back) the trial's parameters and plans its rung
    /// `from → to`; announces it.
    fn prepare(
        &self,
        trial: &mut autoglm_tune::Trial<'_>,
        from: u64,
        to: u64,
        on: &mut impl FnMut(&Event),
    ) -> std::result::Result<RungPlan, TrialError> {
        let number = trial.number();
        let (structure, hyper) = self.at.suggest(trial)?;
        let cost = self.at.cost(self.hb, &structure);
        let stable = self.steps_of(to, &hyper, cost);
        let warmup =
            (hyper.warmup * self.steps_of(self.plan.min_budget(), &hyper, cost) as f64).round();
        let from_steps = if from == 0 {
            0
        } else {
            self.steps_of(from, &hyper, cost)
        };
        let steps = RungSteps::new(from_steps, stable, self.hb.cooldown, warmup as u64);
        on(&Event::Start {
            number,
            params: trial.params()?,
            steps: steps.stable + steps.cooldown,
            rung: Some(to as f64 / 1000.0),
        });
        if from == 0 {
            if let Some(m) = self.member {
                trial.study().set_trial_system_attr(
                    number,
                    crate::shared::TRIAL_WORKER_ATTR,
                    autoglm_tune::optuna::pyjson::PyJson::Str(m.worker.clone()),
                )?;
            }
            trial.set_user_attr("structure", to_json(&structure)?)?;
            trial.set_user_attr("hyper", to_json(&hyper)?)?;
            trial.set_user_attr(
                CLOCK_ATTR,
                serde_json::json!({"start": unix_now(), "rungs": {}}),
            )?;
        }
        Ok(RungPlan {
            budget: to,
            number,
            structure,
            hyper,
            cost,
            steps,
            top: to == self.plan.max_budget(),
            checkpoint: self.at.run.trial_checkpoint(number),
            started: Instant::now(),
        })
    }

    /// Trains and scores a planned rung on `threads` kernel threads (any thread).
    fn train(
        &self,
        p: &RungPlan,
        threads: usize,
        on: impl FnMut(Progress),
    ) -> Result<Option<Rung>> {
        let s = &self.at.task.search;
        let opts = RungOptions {
            seed: s.seed.wrapping_add(p.number),
            threads,
            deadline: self.deadline,
            checkpoint: &p.checkpoint,
            top: p.top,
            decoding: &s.decoding,
        };
        rung(&self.data, &p.structure, &p.hyper, p.steps, opts, on)
    }
}

impl<F: FnMut(&Event)> RungState<'_, F> {
    /// Records a trained rung in its trial (a top rung's outcome, the best model)
    /// and returns its score for the loop.
    fn record(
        &mut self,
        shared: &RungShared<'_>,
        trial: &mut autoglm_tune::Trial<'_>,
        p: &RungPlan,
        result: Result<Option<Rung>>,
    ) -> std::result::Result<f64, TrialError> {
        let number = p.number;
        let end = |on: &mut F, state, value| {
            on(&Event::End {
                number,
                state,
                value,
                seconds: p.started.elapsed().as_secs_f64(),
            });
        };
        let r = match result {
            Ok(Some(r)) => r,
            Ok(None) => {
                end(&mut *self.on, TrialEnd::Pruned, None);
                return Err(TrialError::Pruned);
            }
            Err(e) => {
                let error = e.to_string();
                end(
                    &mut *self.on,
                    TrialEnd::Failed {
                        error: error.clone(),
                    },
                    None,
                );
                return Err(TrialError::Failed(error));
            }
        };
        let mut clock = trial
            .user_attrs()?
            .remove(CLOCK_ATTR)
            .unwrap_or_else(|| serde_json::json!({"rungs": {}}));
        if let Some(rungs) = clock.get_mut("rungs").and_then(|r| r.as_object_mut()) {
            rungs.insert(p.budget.to_string(), serde_json::json!(unix_now()));
        }
        trial.set_user_attr(CLOCK_ATTR, clock)?;
        let s = &shared.at.task.search;
        let cooldown = shared.hb.cooldown;
        let value = match &r.trained {
            Some(trained) => {
                let mut o = trained.outcome.clone();
                // The dev-loss curve: minus each rung's score, by steps.
                let mut curve: Vec<(u64, f64)> = trial
                    .intermediate()?
                    .iter()
                    .map(|(&b, &v)| {
                        let st = shared.steps_of(b, &p.hyper, p.cost);
                        (st + cooldown_steps(cooldown, st), -v)
                    })
                    .collect();
                curve.extend(o.curve.iter().copied());
                o.curve = curve;
                trial.set_user_attr("outcome", to_json(&o)?)?;
                let constraints = s.constraints.values(&o);
                let feasible = constraints
                    .as_ref()
                    .is_none_or(|c| c.iter().all(|&x| x <= 0.0));
                if let Some(c) = constraints {
                    trial.set_constraints(c)?;
                }
                let v = s.metric.of(&o.dev.expect("a top rung is scored"));
                // In a shared study, the best of every process's complete trials too.
                let theirs = match shared.member {
                    Some(_) => trial.study().best_trial()?.and_then(|t| t.value()),
                    None => None,
                };
                let beats = self
                    .best
                    .map(|b| b.1)
                    .into_iter()
                    .chain(theirs)
                    .all(|b| v > b);
                if feasible && beats {
                    let failed = |e: Error| TrialError::Failed(e.to_string());
                    shared.at.save_best(trained, number).map_err(failed)?;
                    if let Some(store) = shared.member.and_then(|m| m.store.as_ref()) {
                        crate::shared::upload_model(
                            trial.study(),
                            store,
                            number,
                            &shared.at.run.best(),
                        )
                        .map_err(failed)?;
                    }
                    self.best = Some((number, v));
                }
                end(
                    &mut *self.on,
                    TrialEnd::Complete { eligible: feasible },
                    Some(v),
                );
                Some(v)
            }
            None => None,
        };
        let n_train = shared.at.train.examples.len();
        (self.on)(&Event::Rung {
            number,
            epochs: (p.steps.stable * p.hyper.batch_size as u64) as f64 / n_train as f64,
            steps: p.steps.stable + p.steps.cooldown,
            dev_loss: r.dev_loss,
            value,
        });
        self.timing
            .insert(number, (r.seconds_per_step, r.score_seconds));
        Ok(value.unwrap_or(-r.dev_loss))
    }
}

impl<F: FnMut(&Event)> FidelityRunner for RungRunner<'_, '_, F> {
    fn advance(
        &mut self,
        trial: &mut autoglm_tune::Trial<'_>,
        from: u64,
        to: u64,
    ) -> std::result::Result<f64, TrialError> {
        let Self { shared, state } = self;
        let p = shared.prepare(trial, from, to, &mut *state.on)?;
        let number = p.number;
        let threads = shared.at.task.search.threads;
        let result = shared.train(&p, threads, |pr| step_event(&mut *state.on, number, pr));
        state.record(shared, trial, &p, result)
    }

    /// Says which other processes' trials a shared search waits for, when that
    /// changed (as the plain search does).
    fn waiting(&mut self, running: &[u64]) {
        let state = &mut self.state;
        if state.waiting_on != running {
            (state.on)(&Event::Waiting {
                trials: running.to_vec(),
            });
            state.waiting_on = running.to_vec();
        }
    }
}

impl<F: FnMut(&Event)> BatchRunner for RungRunner<'_, '_, F> {
    fn advance_batch(
        &mut self,
        study: &mut Study,
        jobs: &[RungJob],
        done: &mut RungDone<'_>,
    ) -> autoglm_tune::Result<()> {
        if jobs.len() == 1 {
            let j = jobs[0];
            let r = {
                let mut t = study.trial(j.number)?;
                self.advance(&mut t, j.from, j.to)
            };
            return done(study, 0, r);
        }
        let Self { shared, state } = self;
        // Prepared one after another, in order: each proposal sees the ones before
        // it running.
        let mut plans = Vec::with_capacity(jobs.len());
        for (i, j) in jobs.iter().enumerate() {
            let p = {
                let mut t = study.trial(j.number)?;
                shared.prepare(&mut t, j.from, j.to, &mut *state.on)
            };
            match p {
                Ok(p) => plans.push(Some(p)),
                Err(e) => {
                    plans.push(None);
                    done(study, i, Err(e))?;
                }
            }
        }
        // The search's threads split between the rungs of the batch.
        let threads = (shared.at.task.search.threads / jobs.len()).max(1);
        let shared = &*shared;
        let plans = &plans;
        std::thread::scope(|scope| {
            let (tx, rx) = std::sync::mpsc::channel();
            for (i, p) in plans.iter().enumerate() {
                let Some(p) = p else { continue };
                let tx = tx.clone();
                scope.spawn(move || {
                    let r = shared.train(p, threads, |pr| {
                        let _ = tx.send(RungMsg::Progress(i, pr));
                    });
                    let _ = tx.send(RungMsg::Done(i, Box::new(r)));
                });
            }
            drop(tx);
            for msg in rx {
                match msg {
                    RungMsg::Progress(i, pr) => {
                        if let Some(p) = &plans[i] {
                            step_event(&mut *state.on, p.number, pr);
                        }
                    }
                    RungMsg::Done(i, r) => {
                        let Some(p) = &plans[i] else { continue };
                        let v = {
                            let mut t = study.trial(p.number)?;
                            state.record(shared, &mut t, p, *r)
                        };
                        done(study, i, v)?;
                    }
                }
            }
            Ok(())
        })
    }
}

/// Room left in the model's positions for generated tokens beyond the training
/// length.
const GENERATION_MARGIN: usize = 128;

/// Truncates an example to `max_len` tokens.
fn cut(mut e: Example, max_len: usize) -> Example {
    e.input_ids.truncate(max_len);
    e.labels.truncate(max_len);
    e
}

impl AutoTrainer {
    /// Reads the task file and prepares everything the trials share.
    ///
    /// # Errors
    /// As [`Task::from_yaml_file`] and [`AutoTrainer::new`].
    pub fn from_yaml(path: &Path) -> Result<AutoTrainer> {
        AutoTrainer::new(Task::from_yaml_file(path)?)
    }

    /// Cleans and splits the data into `OUTPUT/data`, trains (or loads) the tokenizer
    /// and encodes the examples.
    ///
    /// # Errors
    /// Data, tokenizer and I/O errors.
    pub fn new(task: Task) -> Result<AutoTrainer> {
        let run = RunDir::new(task.output_dir());
        let data = prepare(&task, run.data().root())?;
        let base = match &task.model.checkpoint {
            Some(d) => Some(Base::load(d)?),
            None => None,
        };
        let tok = match (&task.tokenizer.path, &task.model.checkpoint) {
            (Some(p), _) => TaskTokenizer::load(p)?,
            (None, Some(d)) => TaskTokenizer::load(&d.join(MODEL_TOKENIZER))?,
            (None, None) => TaskTokenizer::train(
                &task.tokenizer,
                data.train
                    .iter()
                    .flat_map(|r| [r.input.as_str(), r.target.as_str()]),
            )?,
        };
        tok.save(&run.tokenizer())?;
        let mut max_len = task.search.max_len;
        if let Some(b) = &base {
            if tok.vocab_size() > b.config.vocab_size {
                return Err(Error::Task(format!(
                    "model.checkpoint: the tokenizer has {} tokens, the checkpoint's embedding {}",
                    tok.vocab_size(),
                    b.config.vocab_size
                )));
            }
            max_len = max_len.min(b.config.max_position_embeddings);
        }
        let train = Dataset {
            examples: data
                .train
                .iter()
                .map(|r| tok.example(&r.input, &r.target).map(|e| cut(e, max_len)))
                .collect::<Result<_>>()?,
            ..Dataset::default()
        };
        let mut rng = rand_pcg::Pcg64Mcg::seed_from_u64(task.search.seed);
        let mut dev_search = data.dev.clone();
        if let Some(k) = task.search.dev_inputs {
            dev_search.shuffle(&mut rng);
            dev_search.truncate(k);
        }
        let dev_loss = Dataset {
            examples: item_examples(&tok, &dev_search)?
                .into_iter()
                .map(|e| cut(e, max_len))
                .collect(),
            ..Dataset::default()
        };
        if dev_search.is_empty() {
            return Err(Error::Input("no dev items to choose a model on".into()));
        }
        let dev_loss_all = if task.search.hyperband.is_some() {
            // Every dev input once, with its first reference.
            let examples = data
                .dev
                .iter()
                .filter_map(|it| Some(tok.example(&it.input, it.references.first()?)))
                .map(|e| e.map(|e| cut(e, max_len)))
                .collect::<Result<_>>()?;
            Dataset {
                examples,
                ..Dataset::default()
            }
        } else {
            Dataset::default()
        };
        Ok(AutoTrainer {
            task,
            base,
            run,
            data,
            tok,
            train,
            dev_loss,
            dev_search,
            dev_loss_all,
            max_len: max_len + GENERATION_MARGIN,
        })
    }

    /// The task.
    pub fn task(&self) -> &Task {
        &self.task
    }

    /// The prepared data.
    pub fn data(&self) -> &Prepared {
        &self.data
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &TaskTokenizer {
        &self.tok
    }

    /// The output directory.
    pub fn output_dir(&self) -> &Path {
        self.run.root()
    }

    /// The output directory's layout.
    pub fn run_dir(&self) -> &RunDir {
        &self.run
    }

    fn study(&self) -> Result<Study> {
        let s = &self.task.search;
        let seed = Seed(s.seed);
        let study = self.base_study()?;
        let study = match s.sampler {
            SamplerKind::Auto => study.with_sampler(AutoSampler::with_startup_trials(
                seed,
                Some(s.trials),
                s.startup(),
            )),
            SamplerKind::Tpe => {
                let mut c = TpeConfig::default();
                c.n_startup_trials = s.startup();
                study.with_sampler(TpeSampler::with_config(seed, c))
            }
            SamplerKind::Gp => {
                let mut c = GpConfig::default();
                c.n_startup_trials = s.startup();
                study.with_sampler(GpSampler::with_config(seed, c))
            }
            SamplerKind::Random => study.with_sampler(RandomSampler::new(seed)),
        };
        Ok(match s.pruner {
            PrunerKind::Median => study.with_pruner(MedianPruner {
                n_startup_trials: 3,
                n_warmup_steps: 1,
                interval_steps: 1,
            }),
            PrunerKind::Asha => study.with_pruner(SuccessiveHalvingPruner {
                min_resource: Some(1),
                reduction_factor: 2,
                ..SuccessiveHalvingPruner::default()
            }),
            PrunerKind::None => study.with_pruner(NopPruner),
        })
    }

    /// The search's study without its sampler: the shared study (`search.storage`,
    /// an Optuna journal, with heartbeats) or this run directory's journal.
    fn base_study(&self) -> Result<Study> {
        let s = &self.task.search;
        let seed = Seed(s.seed);
        Ok(match &s.storage {
            Some(spec) => {
                let journal = autoglm_tune::optuna::OptunaJournal::open_spec(spec)
                    .map_err(|e| Error::Task(format!("search.storage: {e}")))?;
                let name = crate::shared::study_name(&self.task);
                let storage =
                    Storage::optuna(journal, &name, &[autoglm_tune::Direction::Maximize])?;
                let hb = &s.heartbeat;
                Study::maximize(seed).with_storage(storage).with_heartbeat(
                    autoglm_tune::Heartbeat {
                        interval: std::time::Duration::from_secs_f64(hb.interval),
                        grace: std::time::Duration::from_secs_f64(hb.grace),
                        max_retry: Some(hb.max_retry),
                    },
                )
            }
            None => Study::maximize(seed).with_storage(Storage::journal(&self.run.journal())?),
        })
    }

    /// Runs trials until the task's trial or time budget is spent, or every point of a
    /// finite space was tried, calling `on` with progress. Finished trials of an
    /// earlier run (same output directory) count and are not rerun; trials a kill
    /// interrupted are rerun with their parameters.
    ///
    /// # Errors
    /// Journal and I/O errors (a trial's own error fails that trial only).
    pub fn search(&mut self, on: impl FnMut(&Event)) -> Result<Summary> {
        match self.task.search.hyperband.clone() {
            Some(hb) => self.search_hyperband(&hb, on),
            None => self.search_trials(on),
        }
    }

    /// The search without `hyperband`: every trial its full length, the pruner
    /// stopping trials early.
    fn search_trials(&mut self, mut on: impl FnMut(&Event)) -> Result<Summary> {
        let started = Instant::now();
        let s = self.task.search.clone();
        let mut study = self.study()?;
        let member = self.join(&mut study)?;
        if member.as_ref().is_none_or(|m| m.founder) {
            self.warm_start(&mut study)?;
        }
        // A trial left running by a killed run of this directory is rerun; in a
        // shared study, running trials are other processes' (a gone one's are
        // failed and retried once its heartbeat is stale).
        if member.is_none() {
            for t in study.trials()? {
                if t.state == TrialState::Running {
                    study.tell(t.number, Outcome::Failed)?;
                    study.enqueue(t.params.clone())?;
                }
            }
        }
        let poll = std::time::Duration::from_secs_f64(s.heartbeat.interval);
        let mut waiting_on: Vec<u64> = Vec::new();
        let over = |started: &Instant| {
            s.minutes
                .is_some_and(|m| started.elapsed().as_secs_f64() > m * 60.0)
        };
        let mut best = self.best_trial(&mut study)?;
        // Seconds of the trials this call completed: no trial starts with less than
        // half their median left (fitted into that, it would train too little to
        // be worth scoring, and its poor score would mislead the sampler).
        let mut took: Vec<f64> = Vec::new();
        let too_late = |took: &[f64], started: &Instant| {
            let (Some(m), false) = (s.minutes, took.is_empty()) else {
                return false;
            };
            let mut t = took.to_vec();
            t.sort_by(f64::total_cmp);
            let left = m * 60.0 - started.elapsed().as_secs_f64();
            left < 0.5 * t[t.len() / 2]
        };
        let stop = loop {
            let trials = study.trials()?;
            let n = |st: TrialState| trials.iter().filter(|t| t.state == st).count();
            let counted = n(TrialState::Complete) + n(TrialState::Pruned);
            let (running, waiting) = (n(TrialState::Running), n(TrialState::Waiting));
            if counted >= s.trials && (member.is_none() || running == 0) {
                break StopReason::TrialBudget;
            }
            if over(&started) || too_late(&took, &started) {
                break StopReason::TimeBudget;
            }
            // Other processes' running trials fill the budget: wait for them (or for
            // their heartbeats to go stale, when their retries are run here unless
            // the budget is met).
            if member.is_some()
                && (counted >= s.trials || (waiting == 0 && counted + running >= s.trials))
            {
                wait_a_beat(&mut study, &trials, &mut waiting_on, &mut on, poll)?;
                continue;
            }
            waiting_on.clear();
            let (number, structure, hyper) = {
                let mut trial = match study.ask() {
                    Ok(t) => t,
                    Err(autoglm_tune::Error::SpaceExhausted { .. }) => {
                        break StopReason::SpaceExhausted
                    }
                    Err(e) => return Err(e.into()),
                };
                let number = trial.number();
                let (structure, hyper) = self.suggest(&mut trial)?;
                (number, structure, hyper)
            };
            if let Some(m) = &member {
                study.set_trial_system_attr(
                    number,
                    crate::shared::TRIAL_WORKER_ATTR,
                    autoglm_tune::optuna::pyjson::PyJson::Str(m.worker.clone()),
                )?;
            }
            let clock_start = unix_now();
            let params = study.trial(number)?.params()?;
            on(&Event::Start {
                number,
                params,
                steps: hyper.steps,
                rung: None,
            });
            let data = TrialData {
                tok: &self.tok,
                train: &self.train,
                dev_loss: &self.dev_loss,
                dev: &self.dev_search,
                max_len: self.max_len,
                base: self.base.as_ref(),
            };
            let opts = RunOptions {
                seed: s.seed.wrapping_add(number),
                threads: s.threads,
                evaluations: s.evaluations,
                deadline: s
                    .minutes
                    .map(|m| started + std::time::Duration::from_secs_f64(m * 60.0)),
            };
            let t0 = Instant::now();
            let mut k = 0;
            let result = run(&data, &structure, &hyper, &s.decoding, opts, |p| {
                let (step, steps, loss) = match p {
                    Progress::Step { step, steps, loss } => {
                        on(&Event::Step {
                            number,
                            step,
                            steps,
                            loss,
                        });
                        return Control::Continue;
                    }
                    Progress::Eval {
                        step,
                        steps,
                        dev_loss,
                    } => (step, steps, dev_loss),
                };
                k += 1;
                on(&Event::Eval {
                    number,
                    step,
                    steps,
                    dev_loss: loss,
                });
                // A trial at its last evaluation is finished: it is scored, not cut.
                if step == steps {
                    let _ = study.trial(number).map(|mut t| t.report(k, -loss));
                    return Control::Continue;
                }
                let Ok(mut t) = study.trial(number) else {
                    return Control::Stop;
                };
                // The study maximises: the pruner sees minus the dev loss.
                let prune = t.report(k, -loss).is_ok() && t.should_prune().unwrap_or(false);
                if prune || over(&started) {
                    Control::Stop
                } else {
                    Control::Continue
                }
            });
            let seconds = t0.elapsed().as_secs_f64();
            // In a shared study, another process may have failed the trial meanwhile
            // (this process's heartbeat went stale: it was stopped, say), and
            // retries it: its result is theirs to record.
            let taken = member.is_some()
                && study
                    .trials()?
                    .get(number as usize)
                    .is_some_and(|t| t.state != TrialState::Running);
            if taken {
                on(&Event::End {
                    number,
                    state: TrialEnd::Failed {
                        error: "failed by another process meanwhile (this process's heartbeat \
                                went stale), which retries it"
                            .into(),
                    },
                    value: None,
                    seconds,
                });
                continue;
            }
            study.trial(number)?.set_user_attr(
                CLOCK_ATTR,
                serde_json::json!({"start": clock_start, "end": unix_now()}),
            )?;
            let (state, value) = match result {
                Ok(trained) => {
                    let o = &trained.outcome;
                    let mut t = study.trial(number)?;
                    t.set_user_attr("outcome", serde_json::to_value(o).expect("serializable"))?;
                    t.set_user_attr(
                        "structure",
                        serde_json::to_value(&structure).expect("serializable"),
                    )?;
                    t.set_user_attr("hyper", serde_json::to_value(&hyper).expect("serializable"))?;
                    let constraints = s.constraints.values(o);
                    let feasible = constraints
                        .as_ref()
                        .is_none_or(|c| c.iter().all(|&x| x <= 0.0));
                    if let Some(c) = constraints {
                        t.set_constraints(c)?;
                    }
                    match o.dev {
                        Some(dev) => {
                            let v = s.metric.of(&dev);
                            // In a shared study, the best of every process's trials.
                            let incumbent = match &member {
                                Some(_) => study.best_trial()?.and_then(|t| t.value()),
                                None => best.map(|b| b.1),
                            };
                            if feasible && incumbent.is_none_or(|b| v > b) {
                                self.save_best(&trained, number)?;
                                if let Some(store) = member.as_ref().and_then(|m| m.store.as_ref())
                                {
                                    crate::shared::upload_model(
                                        &mut study,
                                        store,
                                        number,
                                        &self.run.best(),
                                    )?;
                                }
                                best = Some((number, v));
                            }
                            study.tell(number, v)?;
                            took.push(t0.elapsed().as_secs_f64());
                            (TrialEnd::Complete { eligible: feasible }, Some(v))
                        }
                        None => {
                            study.tell(number, Outcome::Pruned)?;
                            (TrialEnd::Pruned, None)
                        }
                    }
                }
                Err(e) => {
                    let mut t = study.trial(number)?;
                    t.set_user_attr("error", e.to_string().into())?;
                    study.tell(number, Outcome::Failed)?;
                    (
                        TrialEnd::Failed {
                            error: e.to_string(),
                        },
                        None,
                    )
                }
            };
            on(&Event::End {
                number,
                state,
                value,
                seconds,
            });
        };
        match &member {
            Some(m) => self.end_shared(&mut study, m, started, stop, &mut on),
            None => summarize(&mut study, None, started, stop),
        }
    }

    /// Joins the shared study (`search.storage`): checks the fingerprint of this
    /// process's data, tokenizer and task against the study's; `None` without
    /// shared storage.
    fn join(&self, study: &mut Study) -> Result<Option<crate::shared::Member>> {
        if self.task.search.storage.is_none() {
            return Ok(None);
        }
        let fp = crate::shared::Fingerprint::of(&self.run, &self.task)?;
        crate::shared::join(study, &self.task, &self.run, &fp).map(Some)
    }

    /// The finisher's part of a shared study: the best trial's model into `best/`
    /// (from the artifact store unless this process ran it) and the study, as it
    /// ended, into `study.jsonl` (an Optuna journal of it alone).
    fn take_best(&self, study: &mut Study, member: &crate::shared::Member) -> Result<()> {
        if let Some(b) = study.best_trial()? {
            crate::shared::fetch_model(
                study,
                member,
                b.number,
                &self.run.best_trial(),
                &self.run.best(),
                &self.run.best_staging(),
            )?;
        }
        study.snapshot(&self.run.journal()).map_err(Error::from)
    }

    /// Finishes a shared study from this process (`autoglm run --finish`), whoever
    /// claimed the finish: checks the fingerprint, fails the trials whose process
    /// is gone, and takes the best model and the study as
    /// [`AutoTrainer::search`]'s finisher does; then [`AutoTrainer::evaluate`],
    /// [`AutoTrainer::export`] and [`AutoTrainer::write_report`] as after a
    /// search.
    ///
    /// # Errors
    /// [`Error::Task`] without `search.storage`, or with other data; [`Error::Input`]
    /// while trials still run (naming them) or when the best model cannot be had;
    /// storage errors.
    pub fn finish(&mut self) -> Result<Summary> {
        let started = Instant::now();
        if self.task.search.storage.is_none() {
            return Err(Error::Task(
                "--finish: the task has no shared study (search.storage or --storage)".into(),
            ));
        }
        let mut study = self.study()?;
        let member = self.join(&mut study)?.expect("a shared study");
        study.check_heartbeats()?;
        let running = running_numbers(&study.trials()?);
        if !running.is_empty() {
            let mut who = Vec::new();
            for &n in &running {
                who.push(format!(
                    "{n} ({})",
                    crate::shared::runner_of(&mut study, n)?
                ));
            }
            return Err(Error::Input(format!(
                "study '{}' still runs trials {}: finish once they end (a trial whose process is gone fails {} s after its last heartbeat)",
                crate::shared::study_name(&self.task),
                who.join(", "),
                self.task.search.heartbeat.grace
            )));
        }
        let _ = crate::shared::claim_finish(&mut study, &member, &self.run)?;
        self.take_best(&mut study, &member)?;
        let mut summary = summarize(&mut study, None, started, StopReason::TrialBudget)?;
        if summary.complete + summary.pruned < self.task.search.trials {
            summary.stop = StopReason::TimeBudget;
        }
        Ok(summary)
    }

    /// The multi-fidelity search (`search.hyperband`): Hyperband's brackets over
    /// training epochs, run by autoglm-tune's [`MultiFidelity`] with a BOHB model
    /// (or random sampling); each rung continues its trial from its checkpoint (see
    /// [`crate::space::HyperbandConfig`]).
    fn search_hyperband(
        &mut self,
        hb: &HyperbandConfig,
        mut on: impl FnMut(&Event),
    ) -> Result<Summary> {
        let started = Instant::now();
        let s = self.task.search.clone();
        let max_epochs = hb.top_epochs(&self.task.training);
        let plan = Hyperband::new(units(hb.min_epochs), units(max_epochs), hb.eta)?;
        self.check_rungs(hb)?;
        if let Some(m) = s.minutes {
            self.check_time(hb, m)?;
        }
        let mut study = self.study_hyperband()?;
        let member = self.join(&mut study)?;
        let fresh = study.trials()?.is_empty();
        if member.as_ref().is_none_or(|m| m.founder) {
            self.warm_start(&mut study)?;
            if fresh && hb.default_first {
                study.enqueue(self.default_params())?;
            }
        }
        self.remove_finished_checkpoints(&mut study)?;
        let best = self.best_trial(&mut study)?;
        let workers = match study
            .user_attrs()
            .get(WORKERS_ATTR)
            .and_then(|v| v.as_u64())
        {
            Some(n) => n as usize,
            None => {
                study.set_user_attr(WORKERS_ATTR, serde_json::json!(s.workers))?;
                s.workers
            }
        }
        .max(1);
        on(&Event::Workers {
            workers,
            threads: (s.threads / workers).max(1),
            resumed: !fresh,
        });
        let deadline = s
            .minutes
            .map(|m| started + std::time::Duration::from_secs_f64(m * 60.0));
        let mut mf = MultiFidelity::new(plan).with_trials(s.trials);
        if let Some(n) = hb.brackets {
            mf = mf.with_iterations(n);
        }
        // Alone, the brackets get their share of the time and the rest goes to the
        // incumbent; shared, the incumbent's checkpoint may be another process's, so
        // the brackets get it all.
        let share = if member.is_some() {
            1.0
        } else {
            hb.search_share
        };
        if let Some(m) = s.minutes {
            mf = mf.with_deadline(started + std::time::Duration::from_secs_f64(m * 60.0 * share));
        }
        let poll = std::time::Duration::from_secs_f64(s.heartbeat.interval);
        if let Some(m) = &member {
            mf = mf.with_owner(m.worker.clone()).with_poll(poll);
        }
        let mut runner = RungRunner {
            shared: RungShared {
                at: &*self,
                hb,
                plan: &plan,
                data: self.data_all_dev(),
                deadline,
                member: member.as_ref(),
            },
            state: RungState {
                best,
                timing: BTreeMap::new(),
                waiting_on: Vec::new(),
                on: &mut on,
            },
        };
        let report = mf.with_workers(workers).optimize(&mut study, &mut runner)?;
        let RungState {
            mut best, timing, ..
        } = runner.state;
        let mut extended = None;
        if let (StopReason::TimeBudget, Some(d), None) = (report.stop, deadline, &member) {
            on(&Event::Extend {
                seconds: d.saturating_duration_since(Instant::now()).as_secs_f64(),
            });
            let ext = Extension {
                hb,
                plan: &plan,
                deadline: d,
                timing: &timing,
            };
            extended = self.extend(&mut study, &ext, &mut best, &mut on)?;
        }
        self.remove_finished_checkpoints(&mut study)?;
        let Some(m) = &member else {
            return summarize(&mut study, extended, started, report.stop);
        };
        self.end_shared(&mut study, m, started, report.stop, &mut on)
    }

    /// The end of a shared study's search in this process: waits for other
    /// processes' trials (a gone one's fail on their heartbeat), then the first
    /// claim finishes ([`AutoTrainer::take_best`]).
    fn end_shared(
        &self,
        study: &mut Study,
        member: &crate::shared::Member,
        started: Instant,
        stop: StopReason,
        on: &mut impl FnMut(&Event),
    ) -> Result<Summary> {
        let poll = std::time::Duration::from_secs_f64(self.task.search.heartbeat.interval);
        let mut waiting_on = Vec::new();
        loop {
            let trials = study.trials()?;
            if !trials.iter().any(|t| t.state == TrialState::Running) {
                break;
            }
            wait_a_beat(study, &trials, &mut waiting_on, on, poll)?;
        }
        let mut summary = summarize(study, None, started, stop)?;
        summary.finished_by = crate::shared::claim_finish(study, member, &self.run)?;
        if summary.finished_by.is_none() {
            self.take_best(study, member)?;
        }
        Ok(summary)
    }

    /// The time a multi-fidelity search has left when no further rung fits goes to
    /// its incumbent (the best complete trial; without one, the best trial at the
    /// highest rung reached): its constant-rate phase continues from its checkpoint
    /// for as many steps as fit (cooldown and scoring included), then cools down and
    /// is scored on all of dev like a top rung. Without a complete trial this always
    /// runs (with no extra steps if none fit), so a time budget too short for any
    /// full-length trial still ends with a model. The longer model replaces the chosen
    /// one if it scores higher (or if there was none); `OUTPUT/extension.json` records
    /// what ran. Returns the chosen trial, its new score and parameters when it did.
    fn extend(
        &self,
        study: &mut Study,
        ext: &Extension<'_>,
        best: &mut Option<(u64, f64)>,
        on: &mut impl FnMut(&Event),
    ) -> Result<Option<(u64, f64, Params)>> {
        let trials = study.trials()?;
        let target = match study.best_trial()? {
            Some(t) => Some(t),
            None => trials
                .iter()
                .filter(|t| t.state != TrialState::Failed)
                .filter_map(|t| Some((t, t.intermediate.iter().next_back()?)))
                .max_by(|(_, a), (_, b)| a.0.cmp(b.0).then(a.1.total_cmp(b.1)))
                .map(|(t, _)| t.clone()),
        };
        let Some(t) = target else { return Ok(None) };
        let (Some(&(per_step, score_seconds)), Some(&reached)) =
            (ext.timing.get(&t.number), t.intermediate.keys().next_back())
        else {
            return Ok(None);
        };
        let checkpoint = self.run.trial_checkpoint(t.number);
        let attr = |k: &str| t.user_attrs.get(k).cloned().unwrap_or_default();
        let (Ok(structure), Ok(hyper), true) = (
            serde_json::from_value::<Structure>(attr("structure")),
            serde_json::from_value::<Hyper>(attr("hyper")),
            checkpoint.exists(),
        ) else {
            return Ok(None);
        };
        let n_train = self.train.examples.len();
        let c = ext.hb.cooldown;
        let cost = self.cost(ext.hb, &structure);
        let from = rung_steps(reached, n_train, hyper.batch_size, cost);
        // Scoring: the dev loss as measured at the trial's last rung, and generation
        // (measured there if that was the top rung, else estimated as two training
        // steps per batch of beam rows: about 7 times what generating all of E2E dev
        // with 5 beams takes, a reserve kept because spending it on more training
        // made the gate's small incumbents over-fit (BENCHMARKS, 2026-12-07)).
        let beams = first_beams(&self.task.search.decoding);
        let generation =
            self.data.dev.len() as f64 * beams / hyper.batch_size.max(1) as f64 * per_step * 2.0;
        let scoring = if reached >= ext.plan.max_budget() {
            score_seconds
        } else {
            score_seconds + generation
        };
        let left = ext
            .deadline
            .saturating_duration_since(Instant::now())
            .as_secs_f64()
            - 1.2 * scoring
            - EXTENSION_MARGIN_S;
        // e more constant-rate steps, then a cooldown of c · (from + e).
        let fits = left / per_step.max(1e-9);
        let more = ((fits - c * from as f64) / (1.0 + c)).floor().max(0.0);
        // A complete incumbent is extended when that is worth it; a search that ended
        // before any trial completed still hands back a model: the best trial at the
        // highest rung, extended as far as fits (maybe not at all), cooled down and
        // scored even past the deadline.
        let complete = t.value().is_some();
        if complete && more < 0.1 * from as f64 {
            return Ok(None);
        }
        let stable = from + more as u64;
        let warmup = hyper.warmup
            * rung_steps(ext.plan.min_budget(), n_train, hyper.batch_size, cost) as f64;
        let steps = RungSteps::new(from, stable, c, warmup.round() as u64);
        let number = t.number;
        on(&Event::Start {
            number,
            params: t.params.clone(),
            steps: steps.stable + steps.cooldown,
            rung: None,
        });
        let t0 = Instant::now();
        let s = &self.task.search;
        let data = self.data_all_dev();
        let opts = RungOptions {
            seed: s.seed.wrapping_add(number),
            threads: s.threads,
            deadline: complete.then_some(ext.deadline),
            checkpoint: &checkpoint,
            top: true,
            decoding: &s.decoding,
        };
        let r = rung(&data, &structure, &hyper, steps, opts, |p| {
            step_event(&mut *on, number, p)
        })?;
        let Some(Rung {
            dev_loss,
            trained: Some(trained),
            ..
        }) = r
        else {
            return Ok(None);
        };
        let o = &trained.outcome;
        let v = s.metric.of(&o.dev.expect("a top rung is scored"));
        let feasible = s
            .constraints
            .values(o)
            .is_none_or(|c| c.iter().all(|&x| x <= 0.0));
        let before = t.value();
        let chosen = feasible && before.is_none_or(|b| v > b);
        on(&Event::Rung {
            number,
            epochs: (steps.stable * hyper.batch_size as u64) as f64 / n_train as f64,
            steps: steps.stable + steps.cooldown,
            dev_loss,
            value: Some(v),
        });
        on(&Event::End {
            number,
            state: TrialEnd::Complete { eligible: feasible },
            value: Some(v),
            seconds: t0.elapsed().as_secs_f64(),
        });
        write_json(
            &self.run.extension(),
            &serde_json::json!({
                "number": number, "from_steps": from,
                "stable_steps": steps.stable, "cooldown_steps": steps.cooldown,
                "value_before": before, "value": v, "ended_unix": unix_now(),
                "dev_loss": dev_loss, "chosen": chosen,
            }),
        )?;
        if !chosen {
            return Ok(None);
        }
        self.save_best(&trained, number)?;
        *best = Some((number, v));
        Ok(Some((number, v, t.params.clone())))
    }

    /// The trials' data with the dev loss and generation on all of dev (the
    /// multi-fidelity search's).
    fn data_all_dev(&self) -> TrialData<'_> {
        TrialData {
            tok: &self.tok,
            train: &self.train,
            dev_loss: &self.dev_loss_all,
            dev: &self.data.dev,
            max_len: self.max_len,
            base: self.base.as_ref(),
        }
    }

    /// Enqueues the best configurations of the `search.warm_start` journals as the
    /// first trials of a new study (a study with trials already is left alone: a
    /// resumed run was seeded when it started).
    fn warm_start(&self, study: &mut Study) -> Result<()> {
        let s = &self.task.search;
        if let Some(p) = s.warm_start.iter().find(|p| !p.is_file()) {
            return Err(Error::Task(format!(
                "search.warm_start: {}: no such journal",
                p.display()
            )));
        }
        if s.warm_start.is_empty() || !study.trials()?.is_empty() {
            return Ok(());
        }
        for path in &s.warm_start {
            let earlier = Storage::journal(path)?;
            // Rank: the largest budget reached, then the score there (a trial's value
            // when it has no intermediate values).
            let mut ranked: Vec<((u64, f64), Params)> = earlier
                .trials()
                .iter()
                .filter(|t| t.state != TrialState::Failed && t.state != TrialState::Running)
                .filter_map(|t| {
                    let key = match t.intermediate.iter().next_back() {
                        Some((&b, &v)) if autoglm_tune::iteration_of(t).is_some() => (b, v),
                        _ => (u64::MAX, t.value()?),
                    };
                    key.1.is_finite().then(|| (key, t.params.clone()))
                })
                .collect();
            ranked.sort_by(|a, b| b.0 .0.cmp(&a.0 .0).then(b.0 .1.total_cmp(&a.0 .1)));
            for (_, params) in ranked.into_iter().take(s.warm_start_trials) {
                let kept: Params = params
                    .iter()
                    .filter_map(|(name, v)| Some((name.clone(), self.fit_space(name, v)?)))
                    .collect();
                if !kept.is_empty() {
                    study.enqueue(kept)?;
                }
            }
        }
        Ok(())
    }

    /// `value` as the task's space gives parameter `name` (an integer range's value
    /// as an integer, a list's as a float), or none when the space does not search
    /// `name` or does not hold `value`.
    fn fit_space(&self, name: &str, value: &ParamValue) -> Option<ParamValue> {
        let (choice, int) = self.space_of(name)?;
        let x = value.as_f64()?;
        match choice {
            Choice::Among(v) if v.len() > 1 && v.contains(&x) => Some(ParamValue::Float(x)),
            Choice::Range { low, high, .. } if (*low..=*high).contains(&x) => Some(if int {
                ParamValue::Int(x.round() as i64)
            } else {
                ParamValue::Float(x)
            }),
            _ => None,
        }
    }

    /// The choice the task's space gives parameter `name` and whether it is an
    /// integer, or none when the space does not search `name`.
    fn space_of(&self, name: &str) -> Option<(&Choice, bool)> {
        let (m, h) = (&self.task.model, &self.task.training);
        let structure = self.base.is_none();
        Some(match name {
            "layers" if structure => (&m.layers, true),
            "hidden" if structure => (&m.hidden, true),
            "heads" if structure => (&m.heads, true),
            "kv_heads" if structure => (&m.kv_heads, true),
            "mlp_ratio" if structure => (&m.mlp_ratio, false),
            "rotary" if structure => (&m.rotary, false),
            "lr" => (&h.lr, false),
            "batch_size" => (&h.batch_size, true),
            "epochs" if self.task.search.hyperband.is_none() => (&h.epochs, false),
            "warmup" => (&h.warmup, false),
            "weight_decay" => (&h.weight_decay, false),
            _ => return None,
        })
    }

    /// Every searched parameter at the middle of its range ([`Choice::middle`]).
    fn default_params(&self) -> Params {
        PARAMS
            .iter()
            .filter_map(|&name| {
                let (choice, _) = self.space_of(name)?;
                let v = self.fit_space(name, &ParamValue::Float(choice.middle()))?;
                Some((name.to_string(), v))
            })
            .collect()
    }

    /// The structure with every model choice at `pick` of it (the base model's when
    /// fine-tuning).
    fn structure_with(&self, pick: impl Fn(&Choice) -> f64) -> Structure {
        let m = &self.task.model;
        match &self.base {
            Some(b) => b.structure(),
            None => {
                let hidden = pick(&m.hidden).round() as usize;
                Structure {
                    layers: pick(&m.layers).round() as usize,
                    hidden,
                    heads: pick(&m.heads).round() as usize,
                    kv_heads: pick(&m.kv_heads).round() as usize,
                    intermediate: mlp_width(hidden, pick(&m.mlp_ratio)),
                    rotary: pick(&m.rotary),
                    tie_embeddings: m.tie_embeddings,
                }
            }
        }
    }

    /// Budget units one epoch of `structure` costs: its multiply-adds per token over
    /// the middle structure's (`unit: compute`), or 1 (`unit: epochs`).
    fn cost(&self, hb: &HyperbandConfig, structure: &Structure) -> f64 {
        match hb.unit {
            BudgetUnit::Epochs => 1.0,
            BudgetUnit::Compute => {
                let n = self.train.examples.len().max(1) as f64;
                let mean_len = self
                    .train
                    .examples
                    .iter()
                    .map(|e| e.input_ids.len())
                    .sum::<usize>() as f64
                    / n;
                let vocab = self.tok.vocab_size();
                let reference = self.structure_with(Choice::middle);
                structure.macs_per_token(vocab, mean_len)
                    / reference.macs_per_token(vocab, mean_len).max(1.0)
            }
        }
    }

    /// The study of a multi-fidelity search: the journal, BOHB's model (TPE, or the
    /// GP, fitted on the largest rung with enough scores) or random sampling.
    fn study_hyperband(&self) -> Result<Study> {
        let s = &self.task.search;
        let seed = Seed(s.seed);
        let study = self.base_study()?;
        let mut tpe = TpeConfig::default();
        tpe.n_startup_trials = 1;
        let dims = self.default_params().len();
        let min_points = s
            .hyperband
            .as_ref()
            .and_then(|hb| hb.min_points)
            .unwrap_or((dims + 1).div_ceil(2));
        Ok(match s.sampler {
            SamplerKind::Auto | SamplerKind::Tpe => study.with_sampler(
                BudgetModel::new(TpeSampler::with_config(seed, tpe)).with_min_points(min_points),
            ),
            SamplerKind::Gp => {
                let mut c = GpConfig::default();
                c.n_startup_trials = 1;
                study.with_sampler(
                    BudgetModel::new(GpSampler::with_config(seed, c)).with_min_points(min_points),
                )
            }
            SamplerKind::Random => study.with_sampler(RandomSampler::new(seed)),
        })
    }

    /// Removes the checkpoints of finished trials (a trial not promoted keeps its
    /// checkpoint until then).
    fn remove_finished_checkpoints(&self, study: &mut Study) -> Result<()> {
        for t in study.trials()? {
            let dir = self.run.trial_dir(t.number);
            if t.state.is_finished() && dir.exists() {
                std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            }
        }
        Ok(())
    }

    /// The smallest rung must hold [`MIN_RUNG_STEPS`] constant-rate steps at the
    /// largest batch size.
    fn check_rungs(&self, hb: &HyperbandConfig) -> Result<()> {
        let n = self.train.examples.len();
        let batch = self
            .task
            .training
            .batch_size
            .values()
            .map_or(1.0, |v| v.iter().copied().fold(1.0, f64::max)) as usize;
        // The largest structure trains the fewest steps per budget unit.
        let cost = self.cost(hb, &self.structure_with(Choice::highest));
        let steps = rung_steps(units(hb.min_epochs), n, batch, cost);
        if steps < MIN_RUNG_STEPS {
            let fits = (MIN_RUNG_STEPS * batch as u64) as f64 * cost / n.max(1) as f64;
            return Err(Error::Task(format!(
                "search.hyperband.min_epochs: {} epochs{} of {n} training rows are {steps} steps at batch size {batch}; a rung needs at least {MIN_RUNG_STEPS} steps: min_epochs ≥ {:.3} fits",
                hb.min_epochs,
                match hb.unit {
                    BudgetUnit::Compute => " (of the middle structure's compute: the largest structure's)",
                    BudgetUnit::Epochs => "",
                },
                (fits * 1000.0).ceil() / 1000.0
            )));
        }
        Ok(())
    }

    /// Times a few steps of the smallest structure at the smallest batch size: the
    /// time budget must hold one full-length trial of it (training.epochs and its
    /// cooldown).
    fn check_time(&self, hb: &HyperbandConfig, minutes: f64) -> Result<()> {
        let h = &self.task.training;
        let low = Choice::lowest;
        let structure = self.structure_with(low);
        let hyper = Hyper {
            lr: low(&h.lr),
            batch_size: low(&h.batch_size) as usize,
            steps: PROBE_STEPS + 2,
            warmup: 0.0,
            weight_decay: low(&h.weight_decay),
        };
        let data = self.data_all_dev();
        let (config, weights, _) = crate::trial::initial(&data, &structure, 0)?;
        let tc = crate::trial::train_config(
            &hyper,
            autoglm_train::Schedule::Constant,
            hyper.steps,
            0,
            0,
            self.task.search.threads,
        );
        let mut trainer = autoglm_train::Trainer::new(config, weights, tc)?;
        let mut t0 = None;
        trainer.fit(&self.train, |_, r| {
            if r.step == 2 {
                t0 = Some(Instant::now());
            }
            Ok(Control::Continue)
        })?;
        let per_step = t0.map_or(0.0, |t| t.elapsed().as_secs_f64()) / PROBE_STEPS as f64;
        // Seconds per budget unit: an epoch, or (unit: compute) 1 / cost epochs.
        let per_epoch = per_step * self.train.examples.len() as f64
            / hyper.batch_size as f64
            / self.cost(hb, &structure);
        let epochs = hb.top_epochs(&self.task.training);
        let needs = per_epoch * epochs * (1.0 + hb.cooldown) / 60.0;
        if needs > minutes {
            let field = match hb.max_epochs {
                Some(_) => "search.hyperband.max_epochs",
                None => "training.epochs",
            };
            let unit = match hb.unit {
                BudgetUnit::Compute => "budget units (epochs of the middle structure's compute)",
                BudgetUnit::Epochs => "epochs",
            };
            let holds = minutes * 60.0 / per_epoch.max(1e-9) / (1.0 + hb.cooldown);
            return Err(Error::Task(format!(
                "search.minutes: {minutes} minutes hold about {holds:.2} {unit} (with cooldown) of the smallest structure ({} layers, hidden {}) on this machine; one full-length trial of it ({field} {epochs} and its cooldown) needs about {needs:.1} minutes: give minutes ≥ {:.1} or {field} ≤ {:.2}",
                structure.layers,
                structure.hidden,
                needs.ceil(),
                holds
            )));
        }
        Ok(())
    }

    /// The best complete trial whose model is saved (from an earlier run).
    fn best_trial(&self, study: &mut Study) -> Result<Option<(u64, f64)>> {
        let saved: Option<u64> = std::fs::read_to_string(self.run.best_trial())
            .ok()
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .and_then(|v| v["number"].as_u64());
        let best = study.best_trial()?;
        Ok(best.and_then(|t| (Some(t.number) == saved).then_some((t.number, t.value()?))))
    }

    /// Suggests a structure and hyperparameters for a trial.
    fn suggest(
        &self,
        trial: &mut autoglm_tune::Trial<'_>,
    ) -> autoglm_tune::Result<(Structure, Hyper)> {
        let m = &self.task.model;
        let h = &self.task.training;
        let mut get = |name: &str, c: &Choice, int: bool| -> autoglm_tune::Result<f64> {
            Ok(match c {
                Choice::Fixed(x) => *x,
                Choice::Among(v) if v.len() == 1 => v[0],
                Choice::Among(v) => {
                    match trial.suggest(name, Distribution::categorical(v.iter().copied()))? {
                        ParamValue::Float(x) => x,
                        ParamValue::Int(x) => x as f64,
                        _ => v[0],
                    }
                }
                Choice::Range { low, high, log } => {
                    let d = if int {
                        Distribution::int(*low as i64, *high as i64)
                    } else {
                        Distribution::float(*low, *high)
                    };
                    let d = if *log { d.log() } else { d };
                    match trial.suggest(name, d)? {
                        ParamValue::Float(x) => x,
                        ParamValue::Int(x) => x as f64,
                        _ => *low,
                    }
                }
            })
        };
        let structure = match &self.base {
            Some(b) => b.structure(),
            None => {
                let hidden = get("hidden", &m.hidden, true)? as usize;
                let ratio = get("mlp_ratio", &m.mlp_ratio, false)?;
                Structure {
                    layers: get("layers", &m.layers, true)? as usize,
                    hidden,
                    heads: get("heads", &m.heads, true)? as usize,
                    kv_heads: get("kv_heads", &m.kv_heads, true)? as usize,
                    intermediate: mlp_width(hidden, ratio),
                    rotary: get("rotary", &m.rotary, false)?,
                    tie_embeddings: m.tie_embeddings,
                }
            }
        };
        let batch = get("batch_size", &h.batch_size, true)? as usize;
        // A multi-fidelity search's budget is the training length: not searched.
        let epochs = match &self.task.search.hyperband {
            Some(hb) => hb.top_epochs(h),
            None => get("epochs", &h.epochs, false)?,
        };
        let steps = ((epochs * self.train.examples.len() as f64) / batch as f64)
            .ceil()
            .max(1.0) as u64;
        let hyper = Hyper {
            lr: get("lr", &h.lr, false)?,
            batch_size: batch,
            steps,
            warmup: get("warmup", &h.warmup, false)?,
            weight_decay: get("weight_decay", &h.weight_decay, false)?,
        };
        Ok((structure, hyper))
    }

    fn save_best(&self, trained: &crate::trial::Trained, number: u64) -> Result<()> {
        let dir = self.run.best();
        let tmp = self.run.best_staging();
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| Error::io(&tmp, e))?;
        }
        save_pretrained(&tmp, &trained.config, &trained.weights)?;
        self.tok.save(&tmp.join(MODEL_TOKENIZER))?;
        let info = serde_json::json!({"number": number, "outcome": trained.outcome});
        write_json(&tmp.join(BEST_TRIAL), &info)?;
        write_lines(&tmp.join(BEST_DEV_OUTPUTS), &trained.dev_outputs)?;
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        }
        std::fs::rename(&tmp, &dir).map_err(|e| Error::io(&dir, e))
    }

    /// Scores the best model on all of dev and on test (its outputs written one per
    /// line to `OUTPUT/predictions/test.txt`), and the nearest-neighbour retrieval
    /// baseline likewise; the test references are read here, after the search.
    ///
    /// # Errors
    /// No saved best model; model, generation and I/O errors.
    pub fn evaluate(&self) -> Result<Evaluation> {
        let best = self.run.best();
        if !best.join(MODEL_CONFIG).exists() {
            return Err(Error::Input(format!(
                "no trained model in {} (no trial completed)",
                best.display()
            )));
        }
        let mut model = Model::load(
            &best,
            &LoadOptions {
                threads: self.task.search.threads,
                ..LoadOptions::default()
            },
        )?;
        let metric = |s: &Scores| self.task.search.metric.of(s);
        let dev_inputs: Vec<String> = self.data.dev.iter().map(|i| i.input.clone()).collect();
        let dev_refs: Vec<Vec<String>> =
            self.data.dev.iter().map(|i| i.references.clone()).collect();
        let mut decodings = Vec::new();
        let mut best: Option<(Decoding, Scores)> = None;
        for d in self.task.search.decoding.candidates() {
            let (outs, _) = generate(&mut model, &self.tok, &dev_inputs, &d)?;
            let s = score(&outs, &dev_refs)?;
            if best.as_ref().is_none_or(|(_, b)| metric(&s) > metric(b)) {
                best = Some((d.clone(), s));
            }
            decodings.push((d, s));
        }
        let (dec, dev) = best.ok_or_else(|| Error::Task("search.decoding: no settings".into()))?;
        let dec = &dec;
        let (test_outs, _) = generate(&mut model, &self.tok, &self.data.test_inputs, dec)?;
        let pred = self.run.test_predictions();
        if let Some(parent) = pred.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        write_lines(&pred, &test_outs)?;
        let test_refs = self.data.test_references()?;
        let test = score(&test_outs, &test_refs)?;
        let nn = crate::baseline::Retrieval::new(&self.data.train);
        let guess = |inputs: &[String]| -> Vec<String> {
            inputs.iter().map(|i| nn.predict(i).to_owned()).collect()
        };
        let test_guess = guess(&self.data.test_inputs);
        let ev = Evaluation {
            decoding: dec.clone(),
            decodings,
            dev,
            test,
            retrieval_dev: score(&guess(&dev_inputs), &dev_refs)?,
            retrieval_test: score(&test_guess, &test_refs)?,
            test_intervals: Some(crate::trial::intervals(
                &test_outs,
                &test_guess,
                &test_refs,
            )?),
        };
        write_json(&self.run.scores(), &ev)?;
        Ok(ev)
    }

    /// The scores [`AutoTrainer::evaluate`] wrote to `OUTPUT/scores.json`, if any.
    pub fn evaluation(&self) -> Option<Evaluation> {
        std::fs::read_to_string(self.run.scores())
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
    }

    /// Writes `OUTPUT/report.html` from the run directory ([`crate::Report`]): the
    /// scores (after [`AutoTrainer::evaluate`]), the optimisation history, learning
    /// curves, parallel coordinates, importances, the trials, sample outputs and the
    /// data report. Returns its path.
    ///
    /// # Errors
    /// I/O errors.
    pub fn write_report(&self) -> Result<PathBuf> {
        crate::report::write_report(&self.run).map(|(p, _)| p)
    }

    /// Writes the best model to `dir` in the Hugging Face layout (`config.json`,
    /// `model.safetensors`, `tokenizer.json`, `generation_config.json`) with
    /// `autoglm.json` (the task, the best trial, the scores and the search history).
    ///
    /// # Errors
    /// No saved best model; I/O errors.
    pub fn export(&self, dir: &Path) -> Result<()> {
        let best = self.run.best();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        for f in [MODEL_CONFIG, MODEL_WEIGHTS, MODEL_TOKENIZER] {
            std::fs::copy(best.join(f), dir.join(f)).map_err(|e| Error::io(&best.join(f), e))?;
        }
        let [pad, bos, eos, _] = self.tok.special_ids();
        // The decoding chosen on dev (the search's first settings before evaluate).
        let dec = self.evaluation().map_or_else(
            || self.task.search.decoding.candidates().swap_remove(0),
            |e| e.decoding,
        );
        let gen = serde_json::json!({
            "bos_token_id": bos, "eos_token_id": eos, "pad_token_id": pad,
            "do_sample": false, "max_new_tokens": dec.max_new_tokens,
            "repetition_penalty": dec.repetition_penalty,
            "num_beams": dec.num_beams.values()[0],
            "length_penalty": dec.length_penalty.values()[0],
        });
        write_json(&dir.join(MODEL_GENERATION_CONFIG), &gen)?;
        let read = |path: PathBuf| -> serde_json::Value {
            std::fs::read_to_string(path)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok())
                .unwrap_or(serde_json::Value::Null)
        };
        let history: Vec<serde_json::Value> = std::fs::read_to_string(self.run.journal())
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let info = serde_json::json!({
            "task": self.task,
            "best": read(self.run.best_trial()),
            "scores": read(self.run.scores()),
            "data": self.data.report,
            "journal": history,
        });
        write_json(&dir.join(MODEL_AUTOGLM), &info)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mlp_widths_are_whole_blocks() {
        for hidden in [16, 64, 96, 128, 192, 256] {
            for ratio in [1.0, 2.0, 2.6, 3.1, 4.0] {
                let w = mlp_width(hidden, ratio);
                assert!(w >= 32 && w.is_multiple_of(32), "{hidden} × {ratio} → {w}");
                assert!((w as f64 - hidden as f64 * ratio).abs() <= 16.0 || w == 32);
            }
        }
        assert_eq!(mlp_width(128, 2.2), 288);
        assert_eq!(mlp_width(192, 2.625), 512);
    }

    /// A space of two points (the hidden size; everything else fixed) and a budget
    /// of five trials: two trials run, then the search ends as exhausted, not failed;
    /// a rerun starts none.
    #[test]
    fn an_exhausted_space_ends_the_search() {
        let dir = tempfile::tempdir().unwrap();
        crate::quickstart::write_corpus(&dir.path().join("data"), 120, 6, 6, 3).unwrap();
        let path = dir.path().join("task.yaml");
        std::fs::write(
            &path,
            "name: two
data: {input: meaning, target: text, train: data/train.jsonl, dev: data/dev.jsonl, test: {file: data/test.jsonl}}
tokenizer: {vocab_size: 300}
model: {layers: 1, hidden: [16, 32], heads: 2, kv_heads: 1, mlp_ratio: 2.0}
training: {lr: 3.0e-3, batch_size: 16, epochs: 0.5, weight_decay: 0.1}
search: {trials: 5, evaluations: 1, threads: 1, pruner: none, decoding: {max_new_tokens: 8}}
",
        )
        .unwrap();
        let mut started = Vec::new();
        let s = AutoTrainer::from_yaml(&path)
            .unwrap()
            .search(|e| {
                if let Event::Start { params, .. } = e {
                    started.push(params["hidden"].clone());
                }
            })
            .unwrap();
        assert_eq!((s.complete, s.pruned, s.failed), (2, 0, 0), "{s:?}");
        assert_eq!(s.stop, StopReason::SpaceExhausted);
        assert_ne!(started[0], started[1]);
        let json = serde_json::to_string(&s).unwrap();
        assert!(json.contains(r#""stop":"space_exhausted""#), "{json}");
        assert_eq!(serde_json::from_str::<Summary>(&json).unwrap(), s);
        let mut again = 0;
        let s = AutoTrainer::from_yaml(&path)
            .unwrap()
            .search(|e| again += usize::from(matches!(e, Event::Start { .. })))
            .unwrap();
        assert_eq!(
            (again, s.complete, s.stop),
            (0, 2, StopReason::SpaceExhausted)
        );
    }
}
