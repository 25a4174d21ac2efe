//! Multi-fidelity search: Hyperband's brackets of successive halving over a budget
//! (training steps, epochs, data size), where promoting a trial **continues** it from
//! the budget it reached instead of restarting it, and a model-based sampler that
//! learns from every bracket (BOHB, Falkner et al. 2018).
//!
//! * [`Hyperband`]: the bracket plan (Li et al. 2018). Iteration `k` runs bracket
//!   `s = s_max − (k mod (s_max + 1))`: `n = ⌈(s_max + 1)/(s + 1) · η^s⌉` new trials
//!   at budget `R·η^−s`, the best `⌊n_i/η⌋` of each rung promoted to `η` times the
//!   budget, up to the maximum budget `R`.
//! * [`FidelityRunner`]: what the caller supplies — bring a trial from one budget to
//!   a larger one and return its score there.
//! * [`MultiFidelity::optimize`]: the loop. Each finished rung is recorded in the
//!   study as the trial's intermediate value at step = budget (and the trial's
//!   bracket as the user attribute `hyperband`), so a killed run resumes where it
//!   was: finished rungs are neither lost nor repeated, an interrupted rung is rerun
//!   from the trial's previous rung. A trial that is not promoted is told
//!   [`Outcome::Pruned`] (it keeps its last rung's score), one that reaches the
//!   maximum budget is told its score.
//! * [`BudgetModel`]: a sampler wrapper that fits the inner sampler (TPE, GP, …) on
//!   the largest budget with enough observations, every bracket's trials included
//!   (unlike a Hyperband pruner, which limits each trial to the competitors of its own
//!   bracket).
//!
//! ```
//! use autoglm_tune::{BudgetModel, Hyperband, MultiFidelity, Seed, Study, TpeSampler};
//! # fn main() -> autoglm_tune::Result<()> {
//! let mut study = Study::minimize(Seed(1))
//!     .with_sampler(BudgetModel::new(TpeSampler::new(Seed(1))));
//! let plan = Hyperband::new(1, 27, 3)?;
//! // A "training run" whose loss falls with the budget and is lowest at x = 0.3.
//! let report = MultiFidelity::new(plan).with_iterations(4).optimize(
//!     &mut study,
//!     &mut |trial: &mut autoglm_tune::Trial<'_>, _from: u64, to: u64| {
//!         let x = trial.suggest_float("x", 0.0, 1.0, false)?;
//!         Ok((x - 0.3).powi(2) + 1.0 / to as f64)
//!     },
//! )?;
//! assert_eq!(report.iterations, 4);
//! let best = study.best_trial()?.expect("a trial reached the full budget");
//! assert_eq!(best.intermediate.keys().last(), Some(&27));
//! # Ok(()) }
//! ```

use std::collections::BTreeMap;
use std::time::Instant;

use crate::error::{Error, Result};
use crate::sampler::{Sampler, SamplerContext};
use crate::space::Distribution;
use crate::storage::intersection_space;
use crate::study::{Direction, Outcome, StopReason, Study, TrialError};
use crate::trial::{FrozenTrial, Trial, TrialState};

/// The user attribute that records a trial's Hyperband iteration and bracket.
pub const HYPERBAND_ATTR: &str = "hyperband";

/// Hyperband's bracket plan over budgets `min_budget..=max_budget` with reduction
/// factor `eta`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hyperband {
    min_budget: u64,
    max_budget: u64,
    eta: u64,
    s_max: u32,
}

/// One rung of a bracket: how many trials run to which budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rung {
    /// Trials at this rung.
    pub trials: usize,
    /// The budget they reach.
    pub budget: u64,
}

/// One bracket: successive halving from its first rung to the maximum budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bracket {
    /// Hyperband's `s` (the number of halvings; 0 runs every trial at the maximum).
    pub s: u32,
    /// Its rungs, smallest budget first; the last is at the maximum budget.
    pub rungs: Vec<Rung>,
}

impl Hyperband {
    /// The plan for budgets from `min_budget` to `max_budget` with reduction factor
    /// `eta` (3 is Hyperband's and BOHB's default).
    ///
    /// # Errors
    /// [`Error::MultiFidelity`] when `min_budget` is 0, `max_budget < min_budget` or
    /// `eta < 2`.
    pub fn new(min_budget: u64, max_budget: u64, eta: u64) -> Result<Hyperband> {
        if min_budget == 0 || max_budget < min_budget {
            return Err(Error::MultiFidelity(format!(
                "budgets must satisfy 1 ≤ min_budget ≤ max_budget (got {min_budget} and {max_budget})"
            )));
        }
        if eta < 2 {
            return Err(Error::MultiFidelity(format!(
                "eta must be at least 2 (got {eta})"
            )));
        }
        let mut s_max = 0u32;
        let mut r = min_budget;
        while r.saturating_mul(eta) <= max_budget {
            r *= eta;
            s_max += 1;
        }
        Ok(Hyperband {
            min_budget,
            max_budget,
            eta,
            s_max,
        })
    }

    /// The smallest budget a trial runs to.
    pub fn min_budget(&self) -> u64 {
        self.min_budget
    }

    /// The budget of a complete trial.
    pub fn max_budget(&self) -> u64 {
        self.max_budget
    }

    /// The reduction factor.
    pub fn eta(&self) -> u64 {
        self.eta
    }

    /// Brackets in a cycle (`s_max + 1`).
    pub fn n_brackets(&self) -> u32 {
        self.s_max + 1
    }

    /// The bracket of iteration `k` (they cycle from the most to the least
    /// aggressive).
    pub fn bracket(&self, iteration: u64) -> Bracket {
        let s = self.s_max - (iteration % u64::from(self.s_max + 1)) as u32;
        let eta = self.eta as f64;
        let n = (f64::from(self.s_max + 1) / f64::from(s + 1) * eta.powi(s as i32)).ceil();
        let rungs = (0..=s)
            .map(|i| {
                // Budgets: R·η^(i−s), the last exactly R, none below the minimum.
                let div = self.eta.pow(s - i);
                let budget = (self.max_budget / div).max(self.min_budget);
                let trials = (n / eta.powi(i as i32)).floor().max(1.0) as usize;
                Rung { trials, budget }
            })
            .collect();
        Bracket { s, rungs }
    }
}

/// Brings trials from one budget to a larger one: the caller's training loop.
pub trait FidelityRunner {
    /// Runs trial `trial` from budget `from` (0: a fresh start; otherwise the budget
    /// of its previous rung, from which it continues) to `to`, and returns its score
    /// at `to` in the study's direction. The first call for a trial suggests its
    /// parameters; later calls get the same values from the same `suggest_*` calls.
    ///
    /// # Errors
    /// [`TrialError::Failed`] fails the trial (it leaves the bracket);
    /// [`TrialError::Pruned`] prunes it at its last rung.
    fn advance(
        &mut self,
        trial: &mut Trial<'_>,
        from: u64,
        to: u64,
    ) -> std::result::Result<f64, TrialError>;

    /// A shared worker ([`MultiFidelity::with_owner`]) has nothing to run and waits
    /// for other workers' running trials `running` (their numbers) before it reads
    /// the journal again. The default does nothing.
    fn waiting(&mut self, running: &[u64]) {
        let _ = running;
    }
}

/// One rung of one trial in a batch ([`BatchRunner::advance_batch`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RungJob {
    /// The trial.
    pub number: u64,
    /// The budget it continues from (0: a fresh start).
    pub from: u64,
    /// The budget of the rung.
    pub to: u64,
}

/// What [`BatchRunner::advance_batch`] hands back for each finished rung: the
/// job's index in the batch and the rung's result (as [`FidelityRunner::advance`]'s).
pub type RungDone<'a> =
    dyn FnMut(&mut Study, usize, std::result::Result<f64, TrialError>) -> Result<()> + 'a;

/// A runner that can run several rungs side by side ([`MultiFidelity::with_workers`]).
pub trait BatchRunner: FidelityRunner {
    /// Runs the rungs `jobs` (at most the loop's workers, all of one rung of one
    /// bracket) and calls `done` on the calling thread for each as it finishes, in
    /// the order they finish (the loop records its score right away, so a kill loses
    /// no finished rung). Prepare the trials one after another through `study`, in
    /// the jobs' order (`study.trial(number)`: a trial's first rung suggests its
    /// parameters, and the sampler sees the trials prepared before it as running:
    /// TPE's constant liar and the GP's believer keep them apart); then train them
    /// side by side. The default runs them one after another with
    /// [`FidelityRunner::advance`].
    ///
    /// # Errors
    /// Errors of `done` (storage) and of the runner itself that are not a trial's.
    fn advance_batch(
        &mut self,
        study: &mut Study,
        jobs: &[RungJob],
        done: &mut RungDone<'_>,
    ) -> Result<()> {
        for (i, j) in jobs.iter().enumerate() {
            let r = {
                let mut t = study.trial(j.number)?;
                self.advance(&mut t, j.from, j.to)
            };
            done(study, i, r)?;
        }
        Ok(())
    }
}

impl<F> BatchRunner for F where
    F: FnMut(&mut Trial<'_>, u64, u64) -> std::result::Result<f64, TrialError>
{
}

impl<F> FidelityRunner for F
where
    F: FnMut(&mut Trial<'_>, u64, u64) -> std::result::Result<f64, TrialError>,
{
    fn advance(
        &mut self,
        trial: &mut Trial<'_>,
        from: u64,
        to: u64,
    ) -> std::result::Result<f64, TrialError> {
        self(trial, from, to)
    }
}

/// What [`MultiFidelity::optimize`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct MultiFidelityReport {
    /// Why it stopped: [`StopReason::IterationBudget`], [`StopReason::StepBudget`]
    /// (the budget total), [`StopReason::TimeBudget`] (the deadline, or a rung that
    /// would not end before it), [`StopReason::TrialBudget`] or
    /// [`StopReason::SpaceExhausted`].
    pub stop: StopReason,
    /// Iterations (brackets) finished, over all runs of the study.
    pub iterations: u64,
    /// Budget spent by this call (the sum of `to − from` over its advances).
    pub budget_spent: u64,
    /// Rungs run by this call.
    pub rungs_run: usize,
    /// Wall seconds of this call's rungs (batches of rungs run side by side count
    /// once).
    pub seconds: f64,
}

/// The multi-fidelity loop over a [`Hyperband`] plan.
#[derive(Debug, Clone)]
pub struct MultiFidelity {
    plan: Hyperband,
    iterations: Option<u64>,
    budget_limit: Option<u64>,
    deadline: Option<Instant>,
    trials: Option<usize>,
    workers: usize,
    owner: Option<String>,
    poll: std::time::Duration,
}

/// A report being filled in, and the budget of its batches (each batch of rungs
/// counted once: its rungs ran side by side), which with the report's seconds gives
/// the wall time per budget unit the deadline is checked with.
struct Tally {
    report: MultiFidelityReport,
    batch_budget: u64,
}

/// Where a trial stands in its bracket, from the journal.
#[derive(Debug, Clone)]
struct Member {
    number: u64,
    state: TrialState,
    /// Rung scores by budget.
    scores: BTreeMap<u64, f64>,
    /// Whether this worker runs it.
    mine: bool,
}

/// What a worker does next ([`MultiFidelity::optimize`]).
enum Next {
    /// Run these rungs: this worker's trials, one rung of one bracket.
    Run(Vec<RungJob>),
    /// Ask up to `want` new trials for the first rung (budget `budget`) of iteration
    /// `k`, bracket `s`; `waiting` when one of this worker's trials waits on others'.
    Create {
        k: u64,
        s: u32,
        budget: u64,
        want: usize,
        waiting: bool,
    },
    /// Nothing to run now, but another worker's rung may still promote one of this
    /// worker's trials.
    Wait,
    /// Nothing left to do.
    Stop(StopReason),
}

impl MultiFidelity {
    /// The loop over `plan`, without limits (give at least one).
    pub fn new(plan: Hyperband) -> MultiFidelity {
        MultiFidelity {
            plan,
            iterations: None,
            budget_limit: None,
            deadline: None,
            trials: None,
            workers: 1,
            owner: None,
            poll: std::time::Duration::from_secs(1),
        }
    }

    /// Shares the brackets with other processes on the same study (an Optuna
    /// journal, with a [`Heartbeat`](crate::Heartbeat)), as worker `id`: the trials
    /// it creates carry `id` in their bracket attribute and only it runs their rungs
    /// (it holds their checkpoints), so a promotion is taken by the worker that owns
    /// the trial. Every worker decides rungs from the journal alike; one with nothing
    /// to run starts the next bracket, or, when a limit forbids that, waits (polling
    /// every [`with_poll`](MultiFidelity::with_poll)) while a rung of others' trials
    /// may still promote one of its own; at an iteration limit, until every bracket
    /// has finished.
    ///
    /// When a worker is gone, its running trials (between rungs too) are failed once
    /// their heartbeat is older than the grace period: a rung waiting on one is
    /// decided without it, a promotion it held is lost to its bracket, and the
    /// heartbeat's retry (same parameters, Optuna's `failed_trial` and
    /// `retry_history`) is claimed by the next worker that asks and restarts from
    /// the first rung of the bracket that worker is filling (a retry that comes after
    /// the last bracket is full waits for the study's next run). A worker that stops
    /// at a limit prunes its running trials at their last rung.
    pub fn with_owner(mut self, id: impl Into<String>) -> MultiFidelity {
        self.owner = Some(id.into());
        self
    }

    /// How long a shared worker with nothing to run sleeps before reading the
    /// journal again (default 1 s).
    pub fn with_poll(mut self, every: std::time::Duration) -> MultiFidelity {
        self.poll = every;
        self
    }

    /// Runs up to `n` rungs side by side (at least 1, the default): a rung's trials
    /// go to the runner's [`BatchRunner::advance_batch`] in batches of `n`, and the
    /// first rung of a bracket asks `n` new trials at a time (each proposed with the
    /// ones before it running). Scores are recorded as rungs finish; the next batch
    /// is proposed from all of them, so with a step or trial budget the proposals
    /// depend only on the rungs' results, not on which finished first.
    pub fn with_workers(mut self, n: usize) -> MultiFidelity {
        self.workers = n.max(1);
        self
    }

    /// Stop once `n` iterations (brackets) are finished, counting earlier runs.
    pub fn with_iterations(mut self, n: u64) -> MultiFidelity {
        self.iterations = Some(n);
        self
    }

    /// Stop before a rung that would take this call's spent budget over `total`.
    pub fn with_budget(mut self, total: u64) -> MultiFidelity {
        self.budget_limit = Some(total);
        self
    }

    /// Stop before a rung that would not end by `deadline`: once this call has run a
    /// rung, a rung is started only if, at the call's measured seconds per budget unit
    /// (every rung so far, scoring included), it ends before the deadline.
    pub fn with_deadline(mut self, deadline: Instant) -> MultiFidelity {
        self.deadline = Some(deadline);
        self
    }

    /// Stop before creating a trial beyond `n` multi-fidelity trials in the study.
    pub fn with_trials(mut self, n: usize) -> MultiFidelity {
        self.trials = Some(n);
        self
    }

    /// The plan.
    pub fn plan(&self) -> &Hyperband {
        &self.plan
    }

    /// Runs brackets until a limit is reached, continuing the study's unfinished
    /// bracket first (after a kill: interrupted rungs rerun from the trial's previous
    /// rung, finished ones are kept).
    ///
    /// Each step is decided from the journal alone: the oldest bracket with a rung of
    /// this worker's trials to run comes first, then the oldest bracket with room on
    /// its first rung, then a new bracket. A rung is decided once each of its trials
    /// has a score there or has finished; its best go on, and this worker prunes (or,
    /// at the top rung, completes) its own trials that do not. With
    /// [`with_owner`](MultiFidelity::with_owner), several processes share the brackets
    /// this way.
    ///
    /// # Errors
    /// [`Error::MultiFidelity`] without any limit or for a multi-objective study;
    /// storage errors.
    pub fn optimize(
        &self,
        study: &mut Study,
        runner: &mut impl BatchRunner,
    ) -> Result<MultiFidelityReport> {
        if self.iterations.is_none()
            && self.budget_limit.is_none()
            && self.deadline.is_none()
            && self.trials.is_none()
        {
            return Err(Error::MultiFidelity(
                "give a limit: iterations, a budget total, a deadline or trials".into(),
            ));
        }
        if study.directions().len() != 1 {
            return Err(Error::MultiFidelity(
                "the study must have a single objective".into(),
            ));
        }
        let direction = study.directions()[0];
        // Catch up once with other writers of a shared journal; alone, the study's own
        // view stays current from here on (every rung and verdict is committed through
        // it); shared, each step reads the journal again.
        study.storage.refresh()?;
        let mut tally = Tally {
            report: MultiFidelityReport {
                stop: StopReason::IterationBudget,
                iterations: 0,
                budget_spent: 0,
                rungs_run: 0,
                seconds: 0.0,
            },
            batch_budget: 0,
        };
        let stop = loop {
            if self.owner.is_some() {
                study.check_heartbeats()?;
            }
            match self.next(study, direction, &mut tally)? {
                Next::Stop(stop) => break stop,
                Next::Wait => {
                    if self.deadline.is_some_and(|d| Instant::now() >= d) {
                        break StopReason::TimeBudget;
                    }
                    self.wait(study, runner);
                }
                Next::Run(jobs) => {
                    if let Some(stop) = self.limit(&tally, jobs[0].to - jobs[0].from) {
                        break stop;
                    }
                    self.advance(study, runner, &jobs, &mut tally)?;
                }
                Next::Create {
                    k,
                    s,
                    budget,
                    want,
                    waiting,
                } => {
                    if let Some(stop) = self.limit(&tally, budget) {
                        break stop;
                    }
                    if self.owner.is_none() && self.adopt_orphans(study, k, s, want)? {
                        continue;
                    }
                    let created = study
                        .storage()
                        .trials()
                        .iter()
                        .filter(|t| iteration_of(t).is_some())
                        .count();
                    let room = self
                        .trials
                        .map_or(usize::MAX, |n| n.saturating_sub(created));
                    if room == 0 {
                        if waiting {
                            self.wait(study, runner);
                            continue;
                        }
                        break StopReason::TrialBudget;
                    }
                    let mut jobs = Vec::with_capacity(want.min(room));
                    let mut exhausted = false;
                    for _ in 0..want.min(room) {
                        let mut trial = match study.ask() {
                            Ok(t) => t,
                            Err(Error::SpaceExhausted { .. }) => {
                                exhausted = true;
                                break;
                            }
                            Err(e) => return Err(e),
                        };
                        trial.set_user_attr(HYPERBAND_ATTR, self.label(k, s))?;
                        jobs.push(RungJob {
                            number: trial.number(),
                            from: 0,
                            to: budget,
                        });
                    }
                    self.advance(study, runner, &jobs, &mut tally)?;
                    if exhausted {
                        break StopReason::SpaceExhausted;
                    }
                }
            }
        };
        if self.owner.is_some() {
            self.leave(study)?;
        }
        tally.report.stop = stop;
        Ok(tally.report)
    }

    /// One wait of a shared worker: tells the runner which trials of other workers
    /// run, then sleeps a poll.
    fn wait(&self, study: &Study, runner: &mut impl BatchRunner) {
        let running: Vec<u64> = study
            .storage()
            .trials()
            .iter()
            .filter(|t| t.state == TrialState::Running && !self.is_mine(t))
            .map(|t| t.number)
            .collect();
        runner.waiting(&running);
        std::thread::sleep(self.poll);
    }

    /// A trial's bracket attribute: its iteration, bracket and (shared) owner.
    fn label(&self, k: u64, s: u32) -> serde_json::Value {
        let mut v = serde_json::json!({"iteration": k, "bracket": s});
        if let Some(w) = &self.owner {
            v["worker"] = serde_json::Value::String(w.clone());
        }
        v
    }

    /// Whether this worker runs trial `t` (alone: every trial).
    fn is_mine(&self, t: &FrozenTrial) -> bool {
        match &self.owner {
            None => true,
            Some(w) => {
                t.user_attrs
                    .get(HYPERBAND_ATTR)
                    .and_then(|a| a.get("worker"))
                    .and_then(|v| v.as_str())
                    == Some(w)
            }
        }
    }

    /// What this worker does next, from the journal; decided rungs are settled on
    /// the way (this worker's trials that do not go on are pruned or completed).
    fn next(&self, study: &mut Study, direction: Direction, tally: &mut Tally) -> Result<Next> {
        let mut first_open: Option<(u64, u32, u64, usize)> = None;
        // One of this worker's trials waits on a rung that waits on others' trials.
        let mut waiting = false;
        let mut leading = true;
        // Some bracket is not finished yet.
        let mut unsettled = false;
        let mut k = 0u64;
        loop {
            let members = self.members(study, k);
            if members.is_empty() {
                break;
            }
            let bracket = self.plan.bracket(k);
            let mut alive: Vec<u64> = members.iter().map(|m| m.number).collect();
            let mut from = 0;
            let mut undecided = false;
            for (i, rung) in bracket.rungs.iter().enumerate() {
                let open = if i == 0 {
                    rung.trials.saturating_sub(alive.len())
                } else {
                    0
                };
                let mut pending = false;
                let mut others = false;
                let mut mine = Vec::new();
                for &number in &alive {
                    let m = self.member(study, number)?;
                    if !(m.scores.contains_key(&rung.budget) || m.state.is_finished()) {
                        pending = true;
                        others |= !m.mine;
                        if m.mine {
                            mine.push(RungJob {
                                number,
                                from,
                                to: rung.budget,
                            });
                        }
                    }
                }
                if !mine.is_empty() {
                    mine.truncate(self.workers);
                    return Ok(Next::Run(mine));
                }
                if pending || open > 0 {
                    if open > 0 && first_open.is_none() {
                        first_open = Some((k, bracket.s, rung.budget, open));
                    }
                    waiting |= others
                        && members
                            .iter()
                            .any(|m| m.mine && m.state == TrialState::Running);
                    undecided = true;
                    break;
                }
                // Decided: rank every score of the rung (whatever became of the trial
                // since, so every worker ranks alike) and promote the best.
                let mut scored: Vec<(f64, u64)> = Vec::new();
                for &number in &alive {
                    if let Some(&v) = self.member(study, number)?.scores.get(&rung.budget) {
                        scored.push((v, number));
                    }
                }
                scored.sort_by(|a, b| {
                    let c = a.0.total_cmp(&b.0);
                    let c = if direction == Direction::Maximize {
                        c.reverse()
                    } else {
                        c
                    };
                    c.then(a.1.cmp(&b.1))
                });
                let last = i + 1 == bracket.rungs.len();
                let keep = if last {
                    0
                } else {
                    bracket.rungs[i + 1].trials.min(scored.len())
                };
                for &(v, number) in &scored[keep..] {
                    let m = self.member(study, number)?;
                    if m.mine && m.state == TrialState::Running {
                        let outcome = if last {
                            Outcome::from(v)
                        } else {
                            Outcome::Pruned
                        };
                        match study.tell(number, outcome) {
                            // Another worker failed it meanwhile (a stale heartbeat).
                            Ok(_) | Err(Error::TrialFinished(_)) => {}
                            Err(e) => return Err(e),
                        }
                    }
                }
                alive = scored[..keep].iter().map(|&(_, n)| n).collect();
                from = rung.budget;
            }
            let finished =
                !undecided && self.members(study, k).iter().all(|m| m.state.is_finished());
            leading &= finished;
            unsettled |= !finished;
            if leading {
                tally.report.iterations = k + 1;
            }
            k += 1;
        }
        // `k` is the first iteration without trials.
        let bracket = match first_open {
            Some((k, s, budget, open)) => {
                return Ok(Next::Create {
                    k,
                    s,
                    budget,
                    want: self.workers.min(open),
                    waiting,
                })
            }
            None => self.plan.bracket(k),
        };
        if self.iterations.is_some_and(|n| k >= n) {
            // Shared, a worker sees its brackets through: each running trial's worker
            // runs it on, or is gone and its trials fail once their beat is stale.
            return Ok(if waiting || (self.owner.is_some() && unsettled) {
                Next::Wait
            } else {
                Next::Stop(StopReason::IterationBudget)
            });
        }
        Ok(Next::Create {
            k,
            s: bracket.s,
            budget: bracket.rungs[0].budget,
            want: self.workers.min(bracket.rungs[0].trials),
            waiting,
        })
    }

    /// Alone, a trial a kill left between its creation and its bracket attribute
    /// joins bracket `k` (at most `want` of them) with the proposal it was created
    /// with; whether there was one.
    fn adopt_orphans(&self, study: &mut Study, k: u64, s: u32, want: usize) -> Result<bool> {
        let orphans: Vec<u64> = study
            .storage()
            .trials()
            .iter()
            .filter(|t| {
                t.state == TrialState::Running
                    && iteration_of(t).is_none()
                    && t.params.is_empty()
                    && t.intermediate.is_empty()
            })
            .map(|t| t.number)
            .take(want)
            .collect();
        for &number in &orphans {
            study
                .reask(number)?
                .set_user_attr(HYPERBAND_ATTR, self.label(k, s))?;
        }
        Ok(!orphans.is_empty())
    }

    /// A shared worker that stops prunes its running trials at their last rung
    /// (their checkpoints are its own), so their brackets go on without them.
    fn leave(&self, study: &mut Study) -> Result<()> {
        let mine: Vec<u64> = study
            .storage()
            .trials()
            .iter()
            .filter(|t| {
                t.state == TrialState::Running && iteration_of(t).is_some() && self.is_mine(t)
            })
            .map(|t| t.number)
            .collect();
        for number in mine {
            match study.tell(number, Outcome::Pruned) {
                Ok(_) | Err(Error::TrialFinished(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The trials of iteration `k` that run or ran (a waiting retry of one is not
    /// one of them), in number order.
    fn members(&self, study: &Study, k: u64) -> Vec<Member> {
        study
            .storage()
            .trials()
            .iter()
            .filter(|t| iteration_of(t) == Some(k) && t.state != TrialState::Waiting)
            .map(|t| self.member_of(t))
            .collect()
    }

    fn member_of(&self, t: &FrozenTrial) -> Member {
        Member {
            number: t.number,
            state: t.state,
            scores: t.intermediate.clone(),
            mine: self.is_mine(t),
        }
    }

    fn member(&self, study: &Study, number: u64) -> Result<Member> {
        study
            .storage()
            .trials()
            .get(number as usize)
            .map(|t| self.member_of(t))
            .ok_or(Error::UnknownTrial(number))
    }

    /// Whether a limit stops the loop before a batch of rungs of `cost` each.
    fn limit(&self, tally: &Tally, cost: u64) -> Option<StopReason> {
        let report = &tally.report;
        if let Some(d) = self.deadline {
            let rate = report.seconds / tally.batch_budget.max(1) as f64;
            let needs = std::time::Duration::from_secs_f64(rate * cost as f64);
            if Instant::now() + needs >= d {
                return Some(StopReason::TimeBudget);
            }
        }
        if self
            .budget_limit
            .is_some_and(|b| report.budget_spent + cost > b)
        {
            return Some(StopReason::StepBudget);
        }
        None
    }

    /// A batch of rungs (one rung of several trials, side by side): the runner's
    /// advance, each score recorded at step `to` as it finishes; a failure or
    /// pruning ends the trial.
    fn advance(
        &self,
        study: &mut Study,
        runner: &mut impl BatchRunner,
        jobs: &[RungJob],
        tally: &mut Tally,
    ) -> Result<()> {
        let Some(first) = jobs.first() else {
            return Ok(());
        };
        let started = Instant::now();
        let mut record = |study: &mut Study, i: usize, result| {
            let RungJob { number, to, .. } = jobs[i];
            record_rung(study, number, to, result)
        };
        runner.advance_batch(study, jobs, &mut record)?;
        let report = &mut tally.report;
        report.seconds += started.elapsed().as_secs_f64();
        report.budget_spent += jobs.iter().map(|j| j.to - j.from).sum::<u64>();
        report.rungs_run += jobs.len();
        tally.batch_budget += first.to - first.from;
        Ok(())
    }
}

/// Records one rung's result: its score at step `to`, or the trial failed or pruned.
fn record_rung(
    study: &mut Study,
    number: u64,
    to: u64,
    result: std::result::Result<f64, TrialError>,
) -> Result<()> {
    match record(study, number, to, result) {
        // In a shared study, another worker failed the trial meanwhile (its beat was
        // late): it has left its bracket.
        Err(Error::TrialFinished(n)) if n == number => Ok(()),
        r => r,
    }
}

fn record(
    study: &mut Study,
    number: u64,
    to: u64,
    result: std::result::Result<f64, TrialError>,
) -> Result<()> {
    match result {
        Ok(v) if v.is_finite() => study.trial(number)?.report(to, v),
        Ok(v) => {
            let mut t = study.trial(number)?;
            t.set_user_attr(
                "fail_reason",
                serde_json::Value::String(format!("score {v} at budget {to}")),
            )?;
            study.tell(number, Outcome::Failed).map(|_| ())
        }
        Err(TrialError::Pruned) => study.tell(number, Outcome::Pruned).map(|_| ()),
        Err(TrialError::Failed(msg)) => {
            study
                .trial(number)?
                .set_user_attr("fail_reason", serde_json::Value::String(msg))?;
            study.tell(number, Outcome::Failed).map(|_| ())
        }
    }
}

/// The Hyperband iteration a trial belongs to, if it is a multi-fidelity trial (its
/// intermediate values are then rung scores by budget).
pub fn iteration_of(t: &FrozenTrial) -> Option<u64> {
    t.user_attrs.get(HYPERBAND_ATTR)?.get("iteration")?.as_u64()
}

/// A sampler fitted on one budget of a multi-fidelity study, as BOHB: the largest
/// budget at which at least `min_points` trials have a score (default: the number
/// of parameters + 2), each such trial seen as complete with its score there (in
/// whatever bracket it ran), trials still running seen as running (so constant
/// liars and believers still spread the proposals), every other trial hidden. With
/// no budget that has enough scores the inner sampler sees no complete trial and
/// draws as it does at the start of a study.
#[derive(Debug, Clone)]
pub struct BudgetModel<S> {
    inner: S,
    min_points: Option<usize>,
}

impl<S: Sampler> BudgetModel<S> {
    /// `inner` fitted on the largest budget with enough scores.
    pub fn new(inner: S) -> BudgetModel<S> {
        BudgetModel {
            inner,
            min_points: None,
        }
    }

    /// Requires `n` scores at a budget before the model uses it.
    pub fn with_min_points(mut self, n: usize) -> BudgetModel<S> {
        self.min_points = Some(n);
        self
    }

    /// The trials as the inner sampler sees them, and the budget they are scored at.
    pub fn view(&self, trials: &[FrozenTrial], current: u64) -> (Vec<FrozenTrial>, Option<u64>) {
        let dims = trials
            .iter()
            .map(|t| t.distributions.len())
            .max()
            .unwrap_or(0);
        let need = self.min_points.unwrap_or(dims + 2).max(1);
        let mut counts: BTreeMap<u64, usize> = BTreeMap::new();
        for t in trials {
            if t.state != TrialState::Failed {
                for &b in t.intermediate.keys() {
                    *counts.entry(b).or_default() += 1;
                }
            }
        }
        let budget = counts
            .iter()
            .rev()
            .find(|(_, &n)| n >= need)
            .map(|(&b, _)| b);
        let view = trials
            .iter()
            .filter_map(|t| {
                let score = budget
                    .filter(|_| t.state != TrialState::Failed)
                    .and_then(|b| t.intermediate.get(&b));
                match (score, t.state) {
                    (Some(&v), _) => {
                        let mut c = t.clone();
                        c.state = TrialState::Complete;
                        c.values = Some(vec![v]);
                        Some(c)
                    }
                    (None, TrialState::Running) => Some(t.clone()),
                    _ if t.number == current => Some(t.clone()),
                    _ => None,
                }
            })
            .collect();
        (view, budget)
    }

    fn with_view<R>(
        &mut self,
        ctx: &SamplerContext<'_>,
        f: impl FnOnce(&mut S, &SamplerContext<'_>) -> R,
    ) -> R {
        let (view, _) = self.view(ctx.trials, ctx.number);
        let vctx = SamplerContext {
            trials: &view,
            directions: ctx.directions,
            number: ctx.number,
        };
        f(&mut self.inner, &vctx)
    }
}

impl<S: Sampler> Sampler for BudgetModel<S> {
    fn begin_trial(&mut self, number: u64) {
        self.inner.begin_trial(number);
    }

    fn relative_space(
        &mut self,
        ctx: &SamplerContext<'_>,
    ) -> Option<BTreeMap<String, Distribution>> {
        let (view, _) = self.view(ctx.trials, ctx.number);
        let vctx = SamplerContext {
            trials: &view,
            directions: ctx.directions,
            number: ctx.number,
        };
        Some(
            self.inner
                .relative_space(&vctx)
                .unwrap_or_else(|| intersection_space(&view)),
        )
    }

    fn sample_relative(
        &mut self,
        ctx: &SamplerContext<'_>,
        space: &BTreeMap<String, Distribution>,
    ) -> BTreeMap<String, f64> {
        self.with_view(ctx, |inner, vctx| inner.sample_relative(vctx, space))
    }

    fn sample_independent(
        &mut self,
        ctx: &SamplerContext<'_>,
        name: &str,
        distribution: &Distribution,
    ) -> f64 {
        self.with_view(ctx, |inner, vctx| {
            inner.sample_independent(vctx, name, distribution)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{RandomSampler, Seed, Storage, TpeSampler};

    #[test]
    fn brackets_follow_hyperband() {
        let p = Hyperband::new(1, 27, 3).unwrap();
        assert_eq!(p.n_brackets(), 4);
        let rungs = |k| {
            p.bracket(k)
                .rungs
                .iter()
                .map(|r| (r.trials, r.budget))
                .collect::<Vec<_>>()
        };
        // Li et al. 2018, Table 1 shape for R = 27, η = 3.
        assert_eq!(rungs(0), [(27, 1), (9, 3), (3, 9), (1, 27)]);
        assert_eq!(rungs(1), [(12, 3), (4, 9), (1, 27)]);
        assert_eq!(rungs(2), [(6, 9), (2, 27)]);
        assert_eq!(rungs(3), [(4, 27)]);
        assert_eq!(rungs(4), rungs(0));
        // Budgets that are not powers of η: the last rung is the maximum exactly.
        let p = Hyperband::new(100, 1000, 3).unwrap();
        assert_eq!(p.n_brackets(), 3);
        let b = p.bracket(0);
        assert_eq!(b.rungs.last().unwrap().budget, 1000);
        assert!(b.rungs.iter().all(|r| r.budget >= 100));
        assert!(Hyperband::new(0, 10, 3).is_err());
        assert!(Hyperband::new(10, 5, 3).is_err());
        assert!(Hyperband::new(1, 5, 1).is_err());
    }

    /// Scores of a curve that falls with the budget, best at x = 0.3.
    fn curve(x: f64, budget: u64) -> f64 {
        (x - 0.3).powi(2) + 1.0 / budget as f64
    }

    #[test]
    fn promoted_trials_continue_and_rungs_are_recorded() {
        let mut study = Study::minimize(Seed(3)).with_sampler(RandomSampler::new(Seed(3)));
        let mut calls: Vec<(u64, u64, u64)> = Vec::new();
        let plan = Hyperband::new(1, 9, 3).unwrap();
        let report = MultiFidelity::new(plan)
            .with_iterations(3)
            .optimize(&mut study, &mut |t: &mut Trial<'_>, from: u64, to: u64| {
                let x = t.suggest_float("x", 0.0, 1.0, false)?;
                calls.push((t.number(), from, to));
                Ok(curve(x, to))
            })
            .unwrap();
        assert_eq!(report.iterations, 3);
        assert_eq!(report.stop, StopReason::IterationBudget);
        // Bracket s=2: 9 trials at 1, 3 continue 1→3, 1 continues 3→9; s=1: 5 at 3,
        // 1 continues 3→9; s=0: 3 at 9.
        let count = |f: u64, t: u64| calls.iter().filter(|c| (c.1, c.2) == (f, t)).count();
        assert_eq!(count(0, 1), 9);
        assert_eq!(count(1, 3), 3);
        assert_eq!(count(3, 9), 2);
        assert_eq!(count(0, 3), 5);
        assert_eq!(count(0, 9), 3);
        assert_eq!(calls.len(), 22);
        let budget: u64 = calls.iter().map(|c| c.2 - c.1).sum();
        assert_eq!(report.budget_spent, budget);
        let trials = study.trials().unwrap();
        assert_eq!(trials.len(), 17);
        // Every rung a trial ran is its intermediate value at that budget; those at
        // the maximum are complete with that score, the rest pruned at their last.
        for t in &trials {
            let mine: Vec<u64> = calls
                .iter()
                .filter(|c| c.0 == t.number)
                .map(|c| c.2)
                .collect();
            assert_eq!(t.intermediate.keys().copied().collect::<Vec<_>>(), mine);
            let x = t.params["x"].as_f64().unwrap();
            for (&b, &v) in &t.intermediate {
                assert_eq!(v, curve(x, b));
            }
            match t.state {
                TrialState::Complete => assert_eq!(mine.last(), Some(&9)),
                TrialState::Pruned => assert!(mine.last() < Some(&9)),
                s => panic!("trial {} {s:?}", t.number),
            }
        }
        // Promotion keeps the best of a rung.
        let rung1: Vec<&FrozenTrial> = trials
            .iter()
            .filter(|t| iteration_of(t) == Some(0))
            .collect();
        let mut at1: Vec<(f64, bool)> = rung1
            .iter()
            .map(|t| (t.intermediate[&1], t.intermediate.contains_key(&3)))
            .collect();
        at1.sort_by(|a, b| a.0.total_cmp(&b.0));
        assert!(at1[..3].iter().all(|x| x.1) && at1[3..].iter().all(|x| !x.1));
    }

    /// A batch runner that prepares its jobs in order and finishes them in `order`
    /// (forward or reversed), as threads might.
    struct Batches {
        reversed: bool,
        batches: Vec<Vec<RungJob>>,
    }

    impl FidelityRunner for Batches {
        fn advance(
            &mut self,
            t: &mut Trial<'_>,
            _from: u64,
            to: u64,
        ) -> std::result::Result<f64, TrialError> {
            let x = t.suggest_float("x", 0.0, 1.0, false)?;
            Ok(curve(x, to))
        }
    }

    impl BatchRunner for Batches {
        fn advance_batch(
            &mut self,
            study: &mut Study,
            jobs: &[RungJob],
            done: &mut RungDone<'_>,
        ) -> Result<()> {
            self.batches.push(jobs.to_vec());
            let mut results = Vec::new();
            for j in jobs {
                let mut t = study.trial(j.number)?;
                results.push(self.advance(&mut t, j.from, j.to));
            }
            let mut order: Vec<usize> = (0..jobs.len()).collect();
            if self.reversed {
                order.reverse();
            }
            for i in order {
                done(study, i, results[i].clone())?;
            }
            Ok(())
        }
    }

    #[test]
    fn workers_run_rungs_in_batches_whatever_order_they_finish_in() {
        let plan = Hyperband::new(1, 9, 3).unwrap();
        let run = |reversed: bool| {
            let mut study =
                Study::minimize(Seed(4)).with_sampler(BudgetModel::new(TpeSampler::new(Seed(4))));
            let mut runner = Batches {
                reversed,
                batches: Vec::new(),
            };
            let report = MultiFidelity::new(plan)
                .with_workers(4)
                .with_iterations(3)
                .optimize(&mut study, &mut runner)
                .unwrap();
            (study.trials().unwrap(), runner.batches, report)
        };
        let (forward, batches, report) = run(false);
        let (reversed, _, _) = run(true);
        // Proposals depend on the batches' results, not on which rung ended first.
        assert_eq!(forward.len(), reversed.len());
        for (a, b) in forward.iter().zip(&reversed) {
            assert_eq!(
                (&a.params, &a.intermediate, a.state, &a.values),
                (&b.params, &b.intermediate, b.state, &b.values)
            );
        }
        // Hyperband's shape, in batches of at most 4 of one rung: bracket s=2 asks
        // 9 trials as 4 + 4 + 1 and continues 3, then 1; s=1 asks 5 as 4 + 1.
        let shape: Vec<(usize, u64, u64)> = batches
            .iter()
            .map(|b| (b.len(), b[0].from, b[0].to))
            .collect();
        assert_eq!(
            shape,
            [
                (4, 0, 1),
                (4, 0, 1),
                (1, 0, 1),
                (3, 1, 3),
                (1, 3, 9),
                (4, 0, 3),
                (1, 0, 3),
                (1, 3, 9),
                (3, 0, 9)
            ]
        );
        assert!(batches
            .iter()
            .all(|b| b.iter().all(|j| (j.from, j.to) == (b[0].from, b[0].to))));
        assert_eq!(report.rungs_run, 22);
        assert_eq!(report.iterations, 3);
        // No two trials of a batch got the same point (the constant liar).
        for b in &batches {
            let xs: Vec<f64> = b
                .iter()
                .map(|j| forward[j.number as usize].params["x"].as_f64().unwrap())
                .collect();
            for (i, x) in xs.iter().enumerate() {
                assert!(!xs[..i].contains(x), "{xs:?}");
            }
        }
    }

    #[test]
    fn a_killed_run_loses_and_repeats_no_finished_rung() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("study.jsonl");
        let plan = Hyperband::new(1, 9, 3).unwrap();
        let open = || {
            Study::minimize(Seed(5))
                .with_sampler(RandomSampler::new(Seed(5)))
                .with_storage(Storage::journal(&path).unwrap())
        };
        let mut calls: Vec<(u64, u64, u64)> = Vec::new();
        // Killed in its 12th rung (trial 9's first continuation, 1 → 3).
        let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut study = open();
            MultiFidelity::new(plan).with_iterations(2).optimize(
                &mut study,
                &mut |t: &mut Trial<'_>, from: u64, to: u64| {
                    let x = t.suggest_float("x", 0.0, 1.0, false)?;
                    if calls.len() == 11 {
                        panic!("killed");
                    }
                    calls.push((t.number(), from, to));
                    Ok(curve(x, to))
                },
            )
        }));
        assert!(killed.is_err());
        assert_eq!(calls.len(), 11);
        let mut study = open();
        let report = MultiFidelity::new(plan)
            .with_iterations(2)
            .optimize(&mut study, &mut |t: &mut Trial<'_>, from: u64, to: u64| {
                let x = t.suggest_float("x", 0.0, 1.0, false)?;
                calls.push((t.number(), from, to));
                Ok(curve(x, to))
            })
            .unwrap();
        assert_eq!(report.iterations, 2);
        // The interrupted rung ran once after the restart; nothing ran twice.
        let mut seen = calls.clone();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen.len(), calls.len(), "{calls:?}");
        // Bracket s=2 (9 + 3 + 1 rungs) and s=1 (5 + 1).
        assert_eq!(calls.len(), 19);
        for t in study.trials().unwrap() {
            assert!(t.state.is_finished(), "trial {} {:?}", t.number, t.state);
        }
    }

    #[test]
    fn limits_stop_before_a_rung_and_the_model_sees_every_bracket() {
        let mut study =
            Study::minimize(Seed(1)).with_sampler(BudgetModel::new(TpeSampler::new(Seed(1))));
        let plan = Hyperband::new(1, 9, 3).unwrap();
        let report = MultiFidelity::new(plan)
            .with_budget(20)
            .optimize(&mut study, &mut |t: &mut Trial<'_>, _from: u64, to: u64| {
                let x = t.suggest_float("x", 0.0, 1.0, false)?;
                Ok(curve(x, to))
            })
            .unwrap();
        assert_eq!(report.stop, StopReason::StepBudget);
        assert!(report.budget_spent <= 20);
        let trials = study.trials().unwrap();
        let model = BudgetModel::new(RandomSampler::new(Seed(0)));
        let (view, budget) = model.view(&trials, u64::MAX);
        // Nine trials scored at budget 1 (3 needed: one parameter + 2) and three at 3.
        assert_eq!(budget, Some(3));
        assert_eq!(
            view.iter()
                .filter(|t| t.state == TrialState::Complete)
                .count(),
            3
        );
        for t in view.iter().filter(|t| t.state == TrialState::Complete) {
            assert_eq!(t.value(), Some(t.intermediate[&3]));
        }
        // No trial of the study is complete yet, so its own intersection space is
        // empty; the model's space (from the view) lets TPE propose jointly.
        assert!(intersection_space(&trials).is_empty());
        let mut model = model;
        let ctx = SamplerContext {
            trials: &trials,
            directions: &[Direction::Minimize],
            number: u64::MAX,
        };
        let space = model.relative_space(&ctx).unwrap();
        assert_eq!(space.keys().collect::<Vec<_>>(), ["x"]);
        let e =
            MultiFidelity::new(plan).optimize(&mut study, &mut |_: &mut Trial<'_>, _, _| Ok(0.0));
        assert!(matches!(e, Err(Error::MultiFidelity(_))));
    }

    #[test]
    fn trial_limits_exhausted_spaces_and_deadlines_stop_the_loop() {
        let plan = Hyperband::new(1, 9, 3).unwrap();
        let run = |t: &mut Trial<'_>, _from: u64, to: u64| {
            let x = t.suggest_float("x", 0.0, 1.0, false)?;
            Ok(curve(x, to))
        };
        let mut study = Study::minimize(Seed(2));
        let r = MultiFidelity::new(plan)
            .with_trials(5)
            .optimize(&mut study, &mut run.clone())
            .unwrap();
        assert_eq!(
            (r.stop, study.trials().unwrap().len()),
            (StopReason::TrialBudget, 5)
        );
        // Three points in all: the first bracket wants nine trials.
        let mut study = Study::minimize(Seed(2));
        let r = MultiFidelity::new(plan)
            .with_iterations(3)
            .optimize(&mut study, &mut |t: &mut Trial<'_>, _, to: u64| {
                let k = t.suggest_categorical("k", [1i64, 2, 3])?;
                Ok(k.as_f64().unwrap_or(0.0) / to as f64)
            })
            .unwrap();
        assert_eq!(
            (r.stop, study.trials().unwrap().len()),
            (StopReason::SpaceExhausted, 3)
        );
        // 5 ms per budget unit, a deadline 60 ms away: rungs start only while the
        // measured rate says they end in time.
        let started = Instant::now();
        let deadline = started + std::time::Duration::from_millis(60);
        let mut study = Study::minimize(Seed(2));
        let r = MultiFidelity::new(plan)
            .with_deadline(deadline)
            .optimize(&mut study, &mut |t: &mut Trial<'_>, from: u64, to: u64| {
                std::thread::sleep(std::time::Duration::from_millis(5 * (to - from)));
                run(t, from, to)
            })
            .unwrap();
        assert_eq!(r.stop, StopReason::TimeBudget);
        assert!(r.rungs_run >= 2, "{r:?}");
        assert!(r.seconds >= 0.005 * r.budget_spent as f64);
        // A rung predicted to end after the deadline is not started (the sleeps are at
        // least their length; the margin is the scheduler's).
        assert!(
            Instant::now() < deadline + std::time::Duration::from_millis(40),
            "{r:?}"
        );
    }

    #[test]
    fn a_trial_killed_before_its_bracket_attribute_joins_the_bracket() {
        let plan = Hyperband::new(1, 9, 3).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let open = |name: &str| {
            Study::minimize(Seed(4))
                .with_sampler(BudgetModel::new(TpeSampler::new(Seed(4))))
                .with_storage(Storage::journal(&dir.path().join(name)).unwrap())
        };
        let run = |study: &mut Study| {
            MultiFidelity::new(plan)
                .with_iterations(1)
                .optimize(study, &mut |t: &mut Trial<'_>, _from: u64, to: u64| {
                    let x = t.suggest_float("x", 0.0, 1.0, false)?;
                    Ok(curve(x, to))
                })
                .unwrap();
            study.trials().unwrap()
        };
        let straight = run(&mut open("a.jsonl"));
        // Killed between the create and the bracket attribute of its first trial.
        open("b.jsonl").ask().unwrap();
        let resumed = run(&mut open("b.jsonl"));
        assert_eq!(straight.len(), resumed.len());
        for (a, b) in straight.iter().zip(&resumed) {
            assert_eq!(
                (&a.params, &a.intermediate, a.state),
                (&b.params, &b.intermediate, b.state)
            );
        }
    }
}
