//! Studies: ask/tell and the optimisation loop.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optuna::artifacts::{self, ArtifactMeta, FileSystemArtifactStore};
use crate::optuna::pyjson::PyJson;
use crate::pareto;
use crate::pruner::{NopPruner, Pruner};
use crate::sampler::seen::{self, Point, Seen};
use crate::sampler::{RandomSampler, Sampler, SamplerContext};
use crate::space::{Distribution, ParamValue, Params, SearchSpace};
use crate::storage::{intersection_space, Event, Storage};
use crate::trial::{FrozenTrial, Trial, TrialState};
use crate::Seed;

/// Whether an objective is minimised or maximised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Smaller is better.
    #[default]
    Minimize,
    /// Larger is better.
    Maximize,
}

impl Direction {
    /// Whether `a` is strictly better than `b`.
    pub fn better(self, a: f64, b: f64) -> bool {
        match self {
            Direction::Minimize => a < b,
            Direction::Maximize => a > b,
        }
    }
}

/// How a trial ended, for [`Study::tell`].
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Objective values, one per direction (a NaN or infinity fails the trial).
    Values(Vec<f64>),
    /// Stopped by the pruner.
    Pruned,
    /// The objective failed.
    Failed,
}

impl From<f64> for Outcome {
    fn from(v: f64) -> Self {
        Outcome::Values(vec![v])
    }
}

impl From<Vec<f64>> for Outcome {
    fn from(v: Vec<f64>) -> Self {
        Outcome::Values(v)
    }
}

/// Why an objective did not return a value.
#[derive(Debug, Clone, PartialEq)]
pub enum TrialError {
    /// The trial should be recorded as pruned (usually after [`Trial::should_prune`]).
    Pruned,
    /// The trial failed; the message is kept in the user attribute `fail_reason`.
    Failed(String),
}

impl From<Error> for TrialError {
    fn from(e: Error) -> Self {
        TrialError::Failed(e.to_string())
    }
}

/// Why a search stopped: [`Study::optimize`], [`crate::MultiFidelity::optimize`], or a
/// loop of the caller's own (serialised as `trial_budget`, `time_budget`,
/// `space_exhausted`, `iteration_budget`, `step_budget`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// The requested number of trials ran.
    TrialBudget,
    /// The time budget ran out, or too little of it was left for another trial (for
    /// loops with a time budget; [`Study::optimize`] has none).
    TimeBudget,
    /// Every point of the (finite) search space was evaluated or is running: see
    /// [`Error::SpaceExhausted`].
    SpaceExhausted,
    /// The requested number of multi-fidelity iterations (Hyperband brackets) ran.
    IterationBudget,
    /// The next rung of a multi-fidelity search would take the budget it spends
    /// (training steps, say) over its limit.
    StepBudget,
}

impl std::fmt::Display for StopReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            StopReason::TrialBudget => "trial budget spent",
            StopReason::TimeBudget => "time budget spent",
            StopReason::SpaceExhausted => "search space exhausted",
            StopReason::IterationBudget => "iteration (bracket) budget spent",
            StopReason::StepBudget => "step budget spent",
        })
    }
}

/// How many times the study asks the sampler again for a proposal that repeats a seen
/// point before it changes the proposal itself.
const REDRAWS: usize = 3;

/// Random points (or values) tried when no value near a repeated proposal is new.
const RANDOM_TRIES: usize = 16;

/// What [`Study::optimize`] did.
#[derive(Debug, Clone, PartialEq)]
pub struct OptimizeReport {
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Trials completed, pruned and failed in this call.
    pub completed: usize,
    /// Pruned trials.
    pub pruned: usize,
    /// Failed trials.
    pub failed: usize,
}

/// A study: a sequence of trials of one objective (or several), a sampler that
/// proposes parameters, a pruner, and a storage.
///
/// # Examples
/// The ask/tell loop, with pruning:
/// ```
/// use autoglm_tune::{MedianPruner, Outcome, Seed, Study};
/// # fn main() -> autoglm_tune::Result<()> {
/// let mut study = Study::minimize(Seed(7)).with_pruner(MedianPruner::default());
/// for _ in 0..30 {
///     let mut trial = study.ask()?;
///     let x = trial.suggest_float("x", -10.0, 10.0, false)?;
///     let lr = trial.suggest_float("lr", 1e-4, 1.0, true)?;
///     let mut pruned = false;
///     for step in 0..5 {
///         trial.report(step, (x - 2.0).powi(2) + lr / (step + 1) as f64)?;
///         if trial.should_prune()? {
///             pruned = true;
///             break;
///         }
///     }
///     let n = trial.number();
///     study.tell(n, if pruned { Outcome::Pruned } else { ((x - 2.0).powi(2) + lr / 5.0).into() })?;
/// }
/// let best = study.best_trial()?.expect("some trial completed");
/// assert!(best.value().unwrap() < 5.0);
/// # Ok(()) }
/// ```
///
/// # No point twice
/// A new trial never gets the parameters of a complete, pruned or running trial, whatever
/// the sampler (values are compared after their distribution's rounding, floats exactly):
/// - the joint proposal made at [`Study::ask`] (over the parameters all complete trials
///   share) that repeats a seen point, or that only leads to seen points, is asked
///   for again, up to 3 times (stochastic samplers draw anew; a sampler that proposes
///   the same point again is deterministic, and is not asked further), then changed by
///   the study: one parameter moved as little as possible (a neighbouring grid value or
///   choice, or a continuous value by at most 1 % of its range, inwards at a bound),
///   else a random point, else no joint proposal;
/// - every other value a trial suggests (define-by-run [`Trial::suggest`] and
///   [`Study::ask_space`], which suggests the whole point in order) is checked with the
///   values the trial already has: if every completion of them is seen, it is drawn
///   again from the sampler, then replaced by the nearest value that is not, so the
///   last parameter of a trial cannot complete a seen point, nor an earlier one lead
///   only to seen points.
///
/// Which points exist is inferred from the trials: a parameter that every seen trial
/// extending the values so far has, with one finite distribution, is assumed to follow
/// them in any trial. That holds when the parameters a trial suggests depend only on
/// the values it suggested before (a fixed space, or one with conditions); an objective
/// that suggests other parameters for other reasons may still repeat a point, and a
/// parameter no trial has suggested yet is unknown. A trial that suggests no parameter
/// is no point (a study of a fixed configuration may run it any number of times). When
/// every point of a finite space is seen, [`Study::ask`] fails with
/// [`Error::SpaceExhausted`] and [`Study::optimize`] stops with
/// [`StopReason::SpaceExhausted`].
///
/// Not covered: trials claimed from the queue ([`Study::enqueue`], e.g. a killed trial
/// rerun with its parameters) are run as given; failed trials are not seen, so their
/// point may come again; a running trial counts with the parameters it has so far, and
/// the trials of other processes sharing a journal as of the last read, so two workers
/// asking at the same moment may still coincide; if no value of the parameter being
/// suggested avoids a seen point (only possible when the trials' structure contradicts
/// the inference above), the proposal is kept.
pub struct Study {
    pub(crate) storage: Storage,
    sampler: Box<dyn Sampler>,
    pruner: Box<dyn Pruner>,
    directions: Vec<Direction>,
    relative: BTreeMap<u64, BTreeMap<String, f64>>,
    /// Draws for proposals that repeat a seen point.
    fallback: RandomSampler,
    /// Trials of this process claimed from the queue: exempt from de-duplication.
    enqueued: BTreeSet<u64>,
    heartbeat: Option<Heartbeat>,
    /// The heartbeat threads of this process's running trials.
    beaters: BTreeMap<u64, crate::optuna::Beater>,
}

/// Heartbeats for trials in an Optuna journal shared by several workers: a worker
/// beats for each trial it runs (a trial system attribute, every `interval`), and
/// before each [`Study::ask`] fails the running trials whose beat is older than
/// `grace` — their worker is gone — and enqueues a retry of each (Optuna's
/// `RetryHeartbeatStaleTrialCallback`: same parameters and attributes,
/// `failed_trial` and `retry_history` recorded), at most `max_retry` per first
/// trial. Trials of workers that do not beat (Python Optuna's journal has no
/// heartbeat) are never failed. Without an Optuna journal it does nothing.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Heartbeat {
    /// Time between beats.
    pub interval: std::time::Duration,
    /// Age of the last beat past which a running trial is failed.
    pub grace: std::time::Duration,
    /// Retries per failed first trial (`None`: no limit).
    pub max_retry: Option<usize>,
}

impl Heartbeat {
    /// Beats every `interval`, with Optuna's default grace period (twice the
    /// interval) and no retry limit.
    pub fn new(interval: std::time::Duration) -> Self {
        Heartbeat {
            interval,
            grace: interval * 2,
            max_retry: None,
        }
    }
}

impl std::fmt::Debug for Study {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Study")
            .field("storage", &self.storage)
            .field("directions", &self.directions)
            .finish()
    }
}

impl Study {
    /// A study with the given directions, random sampling from `seed`, no pruning and
    /// in-memory storage.
    ///
    /// # Panics
    /// If `directions` is empty.
    #[track_caller]
    pub fn new(directions: &[Direction], seed: Seed) -> Self {
        assert!(
            !directions.is_empty(),
            "a study needs at least one direction"
        );
        Study {
            storage: Storage::in_memory(),
            sampler: Box::new(RandomSampler::new(seed)),
            pruner: Box::new(NopPruner),
            directions: directions.to_vec(),
            relative: BTreeMap::new(),
            fallback: RandomSampler::new(Seed(seed.0 ^ 0xd1b5_4a32_d192_ed03)),
            enqueued: BTreeSet::new(),
            heartbeat: None,
            beaters: BTreeMap::new(),
        }
    }

    /// A single-objective minimisation study (see [`Study::new`]).
    pub fn minimize(seed: Seed) -> Self {
        Study::new(&[Direction::Minimize], seed)
    }

    /// A single-objective maximisation study (see [`Study::new`]).
    pub fn maximize(seed: Seed) -> Self {
        Study::new(&[Direction::Maximize], seed)
    }

    /// Uses `sampler`.
    pub fn with_sampler(mut self, sampler: impl Sampler + 'static) -> Self {
        self.sampler = Box::new(sampler);
        self
    }

    /// Uses `pruner`.
    pub fn with_pruner(mut self, pruner: impl Pruner + 'static) -> Self {
        self.pruner = Box::new(pruner);
        self
    }

    /// Beats for the trials this study runs and fails (and retries) those of
    /// workers that stopped beating: see [`Heartbeat`].
    pub fn with_heartbeat(mut self, heartbeat: Heartbeat) -> Self {
        self.heartbeat = Some(heartbeat);
        self
    }

    /// Uses `storage` (e.g. a journal, to resume or share a study).
    pub fn with_storage(mut self, storage: Storage) -> Self {
        self.storage = storage;
        self
    }

    /// The directions.
    pub fn directions(&self) -> &[Direction] {
        &self.directions
    }

    /// The storage (for its warnings, for example).
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// Sets a user attribute of the study (journaled, as Optuna's
    /// `study.set_user_attr`): for settings a resumed run must reuse.
    ///
    /// # Errors
    /// Storage errors.
    pub fn set_user_attr(&mut self, key: &str, value: serde_json::Value) -> Result<()> {
        self.storage.set_study_user_attr(key, value)
    }

    /// The study's user attributes (as of the last read or write).
    pub fn user_attrs(&self) -> &std::collections::BTreeMap<String, serde_json::Value> {
        self.storage.study_user_attrs()
    }

    /// The study's system attributes in the order the log first set each (the order
    /// of Python's `study.system_attrs`, so that of several workers' claims the
    /// first is known to all), as of the last read or write; empty outside an
    /// Optuna journal.
    pub fn system_attrs(&self) -> Vec<(String, PyJson)> {
        self.storage.study_system_attrs()
    }

    /// Sets a system attribute of the study (Optuna's
    /// `storage.set_study_system_attr`).
    ///
    /// # Errors
    /// [`Error::Storage`] outside an Optuna journal; storage errors.
    pub fn set_system_attr(&mut self, key: &str, value: PyJson) -> Result<()> {
        self.storage.set_study_system_attr(key, value)
    }

    /// Trial `number`'s system attributes, read again.
    ///
    /// # Errors
    /// [`Error::Storage`] outside an Optuna journal; [`Error::UnknownTrial`].
    pub fn trial_system_attrs(&mut self, number: u64) -> Result<BTreeMap<String, PyJson>> {
        self.storage.refresh()?;
        self.storage.trial_system_attrs(number)
    }

    /// Sets a system attribute of trial `number` (Optuna's
    /// `storage.set_trial_system_attr`).
    ///
    /// # Errors
    /// [`Error::Storage`] outside an Optuna journal; [`Error::UnknownTrial`].
    pub fn set_trial_system_attr(&mut self, number: u64, key: &str, value: PyJson) -> Result<()> {
        self.storage.set_trial_system_attr(number, key, value)
    }

    /// What [`Study::ask`] does first with a [`Heartbeat`]: fails the running
    /// trials whose beat is older than the grace period and enqueues their
    /// retries. For a worker waiting on others' trials. Returns the trials it
    /// failed; nothing without a heartbeat.
    ///
    /// # Errors
    /// Storage errors.
    pub fn check_heartbeats(&mut self) -> Result<Vec<u64>> {
        match self.heartbeat {
            Some(hb) => self.storage.fail_stale(hb.grace, hb.max_retry),
            None => self.storage.refresh().map(|()| Vec::new()),
        }
    }

    /// Uploads the file at `path` to `store` as an artifact of trial `number`, as
    /// `optuna.artifacts.upload_artifact` does (the file under a new UUID, the
    /// trial system attribute `artifacts:{id}` with its [`ArtifactMeta`], the MIME
    /// type guessed from the name), the file first. Returns its metadata.
    ///
    /// # Errors
    /// [`Error::Io`] reading `path` or writing the store; as
    /// [`Study::set_trial_system_attr`].
    pub fn upload_artifact(
        &mut self,
        store: &FileSystemArtifactStore,
        number: u64,
        path: &std::path::Path,
    ) -> Result<ArtifactMeta> {
        let filename = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (mimetype, encoding) = artifacts::guess_type(&filename);
        let meta = ArtifactMeta {
            artifact_id: artifacts::new_artifact_id(),
            filename,
            mimetype,
            encoding,
        };
        let mut f = std::fs::File::open(path).map_err(|source| Error::Io {
            path: path.to_owned(),
            source,
        })?;
        store.write(&meta.artifact_id, &mut f)?;
        let key = format!("{}{}", artifacts::ARTIFACTS_ATTR_PREFIX, meta.artifact_id);
        self.set_trial_system_attr(number, &key, meta.to_attr())?;
        Ok(meta)
    }

    /// Trial `number`'s artifacts (Optuna's `get_all_artifact_meta`), in id order.
    ///
    /// # Errors
    /// As [`Study::trial_system_attrs`]; [`Error::Storage`] for an artifact
    /// attribute that is not Optuna's metadata.
    pub fn artifacts(&mut self, number: u64) -> Result<Vec<ArtifactMeta>> {
        self.trial_system_attrs(number)?
            .iter()
            .filter(|(k, _)| k.starts_with(artifacts::ARTIFACTS_ATTR_PREFIX))
            .map(|(_, v)| ArtifactMeta::from_attr(v))
            .collect()
    }

    /// Writes the study, as of the last read, to a new Optuna journal file at
    /// `path`: see [`Storage::snapshot`].
    ///
    /// # Errors
    /// As [`Storage::snapshot`].
    pub fn snapshot(&mut self, path: &std::path::Path) -> Result<()> {
        self.storage.refresh()?;
        self.storage.snapshot(path)
    }

    /// Starts a trial: takes the oldest enqueued one if any, else a new one, and lets
    /// the sampler propose the parameters that all complete trials share (a proposal
    /// that repeats a seen point is drawn again: see [No point twice](Study#no-point-twice)).
    ///
    /// # Errors
    /// [`Error::SpaceExhausted`] when nothing is enqueued and every point of a finite
    /// space is seen (complete, pruned or running); storage errors.
    pub fn ask(&mut self) -> Result<Trial<'_>> {
        if let Some(hb) = self.heartbeat {
            self.storage.fail_stale(hb.grace, hb.max_retry)?;
        }
        let ev = self.storage.commit(|trials| {
            if let Some(t) = trials.iter().find(|t| t.state == TrialState::Waiting) {
                return Ok(Event::Claim { number: t.number });
            }
            if let Some(points) = Seen::new(trials, None).exhausted(&Point::new()) {
                return Err(Error::SpaceExhausted { points });
            }
            Ok(Event::Create {
                number: trials.len() as u64,
                state: TrialState::Running,
                params: Params::new(),
            })
        })?;
        let (number, claimed) = match ev {
            Event::Claim { number } => (number, true),
            Event::Create { number, .. } => (number, false),
            _ => unreachable!("ask commits a claim or a create"),
        };
        if let Some(hb) = self.heartbeat {
            if let Some(b) = self.storage.start_heartbeat(number, hb.interval)? {
                self.beaters.insert(number, b);
            }
        }
        let proposal = self.propose(number, claimed);
        if !proposal.is_empty() {
            self.storage.publish_proposal(number, &proposal)?;
        }
        Ok(Trial {
            study: self,
            number,
        })
    }

    /// Trial `number` again, running and without any parameter yet (a process killed
    /// between [`Study::ask`] and its first suggestion left it so), with the proposal
    /// `ask` made for it: the sampler restarts from the trial number and sees the same
    /// trials before it, so a resumed loop continues as an uninterrupted one would.
    ///
    /// A trial that already has parameters is returned as it is.
    ///
    /// # Errors
    /// As [`Study::trial`]: an unknown or finished trial.
    pub fn reask(&mut self, number: u64) -> Result<Trial<'_>> {
        let fresh = self.running(number)?.params.is_empty();
        if fresh && !self.relative.contains_key(&number) {
            let _ = self.propose(number, false);
        }
        Ok(Trial {
            study: self,
            number,
        })
    }

    /// The sampler's joint proposal for trial `number` (a claimed, enqueued trial
    /// keeps its values and is exempt from the repeat check).
    fn propose(&mut self, number: u64, claimed: bool) -> Params {
        self.sampler.begin_trial(number);
        self.fallback.begin_trial(number);
        // Other workers' running trials with the joint proposals they published
        // (Optuna's `tpe:relative_params`), so concurrent proposals see each other.
        let ctx = SamplerContext {
            trials: self.storage.sampling_trials(),
            directions: &self.directions,
            number,
        };
        let space = self
            .sampler
            .relative_space(&ctx)
            .unwrap_or_else(|| intersection_space(self.storage.sampling_trials()));
        let rel = valid(self.sampler.sample_relative(&ctx, &space), &space);
        let rel = if claimed {
            self.enqueued.insert(number);
            rel
        } else {
            self.unseen_relative(number, &space, rel)
        };
        let external: Params = rel
            .iter()
            .filter_map(|(k, &x)| space.get(k).map(|d| (k.clone(), d.to_external(x))))
            .collect();
        self.relative.insert(number, rel);
        external
    }

    /// `rel`, the sampler's joint proposal for trial `number`, or, if it leads only to
    /// seen points, another proposal (see [No point twice](Study#no-point-twice)).
    fn unseen_relative(
        &mut self,
        number: u64,
        space: &BTreeMap<String, Distribution>,
        rel: BTreeMap<String, f64>,
    ) -> BTreeMap<String, f64> {
        let seen = Seen::new(self.storage.trials(), Some(number));
        let is_seen = |p: &BTreeMap<String, f64>| seen.exhausted(&seen::point(space, p)).is_some();
        if rel.is_empty() || !is_seen(&rel) {
            return rel;
        }
        let mut last = rel.clone();
        for _ in 0..REDRAWS {
            let ctx = SamplerContext {
                trials: self.storage.trials(),
                directions: &self.directions,
                number,
            };
            let again = valid(self.sampler.sample_relative(&ctx, space), space);
            if again.is_empty() || !is_seen(&again) {
                return again;
            }
            if again == last {
                break;
            }
            last = again;
        }
        // One parameter moved as little as possible.
        let base = seen::point(space, &rel);
        let mut moves: Vec<(f64, &str, f64)> = Vec::new();
        for (k, &x) in &rel {
            let limit = seen.blocking(&base, k) + 1;
            for (dist, y) in seen::neighbours(&space[k], x, limit, &mut self.fallback) {
                moves.push((dist, k, y));
            }
        }
        moves.sort_by(|a, b| a.0.total_cmp(&b.0));
        for (_, k, y) in moves {
            let mut p = rel.clone();
            p.insert(k.to_owned(), y);
            if !is_seen(&p) {
                return p;
            }
        }
        for _ in 0..RANDOM_TRIES {
            let p: BTreeMap<String, f64> = rel
                .keys()
                .map(|k| (k.clone(), space[k].from_unit(self.fallback.unit())))
                .collect();
            if !is_seen(&p) {
                return p;
            }
        }
        // Let the parameters be suggested one by one, each checked on its own.
        BTreeMap::new()
    }

    /// `x`, the value proposed for parameter `name` of trial `number`, or, if with the
    /// trial's other values it leads only to seen points, another value (see
    /// [No point twice](Study#no-point-twice)).
    fn unseen_value(&mut self, number: u64, name: &str, d: &Distribution, x: f64) -> f64 {
        let trials = self.storage.trials();
        let seen = Seen::new(trials, Some(number));
        let mut partial = seen::trial_point(&trials[number as usize]);
        let mut is_seen = |y: f64| {
            seen::canonical(d, y).is_some_and(|c| {
                partial.insert(name, (d, c));
                seen.with(name, d, c).exhausted(&partial).is_some()
            })
        };
        if !is_seen(x) {
            return x;
        }
        let mut last = x;
        for _ in 0..REDRAWS {
            let ctx = SamplerContext {
                trials,
                directions: &self.directions,
                number,
            };
            let y = self.sampler.sample_independent(&ctx, name, d);
            if seen::canonical(d, y).is_some() && !is_seen(y) {
                return y;
            }
            if y == last {
                break;
            }
            last = y;
        }
        let mut with = seen::trial_point(&trials[number as usize]);
        with.insert(name, (d, seen::canonical(d, x).unwrap_or(0.0)));
        let limit = seen.blocking(&with, name) + 1;
        for (_, y) in seen::neighbours(d, x, limit, &mut self.fallback) {
            if !is_seen(y) {
                return y;
            }
        }
        for _ in 0..RANDOM_TRIES {
            let y = d.from_unit(self.fallback.unit());
            if !is_seen(y) {
                return y;
            }
        }
        x
    }

    /// The handle of running trial `number` (e.g. one started by [`Study::ask_space`]),
    /// to report intermediate values, ask the pruner, set constraints or suggest more
    /// parameters.
    ///
    /// # Errors
    /// [`Error::UnknownTrial`] or [`Error::TrialFinished`].
    pub fn trial(&mut self, number: u64) -> Result<Trial<'_>> {
        self.running(number)?;
        Ok(Trial {
            study: self,
            number,
        })
    }

    /// Trial `number`, which must be running.
    fn running(&self, number: u64) -> Result<&FrozenTrial> {
        let t = self
            .storage
            .trials()
            .get(number as usize)
            .ok_or(Error::UnknownTrial(number))?;
        if t.state != TrialState::Running {
            return Err(Error::TrialFinished(number));
        }
        Ok(t)
    }

    /// Starts a trial and suggests every active parameter of a predefined space, in
    /// order (conditional parameters only when their parent has a matching value).
    ///
    /// # Errors
    /// Storage errors.
    pub fn ask_space(&mut self, space: &SearchSpace) -> Result<(u64, Params)> {
        let mut trial = self.ask()?;
        let mut chosen = Params::new();
        for spec in space.params() {
            if space.is_active(spec, &chosen) {
                let v = trial.suggest(&spec.name, spec.distribution.clone())?;
                chosen.insert(spec.name.clone(), v);
            }
        }
        Ok((trial.number, chosen))
    }

    pub(crate) fn suggest(
        &mut self,
        number: u64,
        name: &str,
        distribution: Distribution,
    ) -> Result<ParamValue> {
        let d = distribution.validated(name)?;
        let t = self.running(number)?;
        if let Some(old) = t.distributions.get(name) {
            if *old != d {
                return Err(Error::IncompatibleDistribution {
                    name: name.to_owned(),
                });
            }
            return Ok(t.params[name].clone());
        }
        let value = if let Some(fixed) = t.params.get(name) {
            // Enqueued with this value: it must fit the distribution.
            let x = d
                .to_internal(fixed)
                .ok_or_else(|| Error::OutOfDistribution {
                    name: name.to_owned(),
                    value: fixed.to_string(),
                })?;
            d.to_external(x)
        } else {
            let proposed = self
                .relative
                .get(&number)
                .and_then(|r| r.get(name))
                .copied()
                .filter(|&x| d.to_internal(&d.to_external(x)).is_some());
            let x = match proposed {
                Some(x) => x,
                None => {
                    let ctx = SamplerContext {
                        trials: self.storage.trials(),
                        directions: &self.directions,
                        number,
                    };
                    self.sampler.sample_independent(&ctx, name, &d)
                }
            };
            let x = if self.enqueued.contains(&number) {
                x
            } else {
                self.unseen_value(number, name, &d, x)
            };
            d.to_external(x)
        };
        let v = value.clone();
        self.storage.commit(move |_| {
            Ok(Event::Param {
                number,
                name: name.to_owned(),
                distribution: d.clone(),
                value: v.clone(),
            })
        })?;
        Ok(value)
    }

    pub(crate) fn should_prune(&mut self, number: u64) -> Result<bool> {
        self.storage.refresh()?;
        let trials = self.storage.trials();
        let t = trials
            .get(number as usize)
            .ok_or(Error::UnknownTrial(number))?;
        Ok(self.pruner.prune(t, trials, self.directions[0]))
    }

    /// Enqueues a trial with fixed parameters (e.g. a known good default), evaluated
    /// before any sampled one; parameters it does not fix are sampled as usual.
    ///
    /// # Errors
    /// Storage errors.
    pub fn enqueue(&mut self, params: Params) -> Result<u64> {
        let ev = self.storage.commit(|trials| {
            Ok(Event::Create {
                number: trials.len() as u64,
                state: TrialState::Waiting,
                params: params.clone(),
            })
        })?;
        match ev {
            Event::Create { number, .. } => Ok(number),
            _ => unreachable!("enqueue commits a create"),
        }
    }

    /// Finishes a trial. Values that are NaN or infinite fail the trial (the study
    /// goes on); a pruned trial keeps its last intermediate value as its value.
    ///
    /// # Errors
    /// [`Error::WrongValueCount`], [`Error::UnknownTrial`], [`Error::TrialFinished`]
    /// or storage errors.
    pub fn tell(&mut self, number: u64, outcome: impl Into<Outcome>) -> Result<TrialState> {
        let outcome = outcome.into();
        let n_obj = self.directions.len();
        // No beat after the trial ends.
        self.beaters.remove(&number);
        let ev = self.storage.commit(|trials| {
            let t = trials
                .get(number as usize)
                .ok_or(Error::UnknownTrial(number))?;
            if t.state.is_finished() {
                return Err(Error::TrialFinished(number));
            }
            let (state, values) = match outcome.clone() {
                Outcome::Values(v) if v.len() != n_obj => {
                    return Err(Error::WrongValueCount {
                        expected: n_obj,
                        got: v.len(),
                    })
                }
                Outcome::Values(v) if v.iter().all(|x| x.is_finite()) => {
                    (TrialState::Complete, Some(v))
                }
                Outcome::Values(_) | Outcome::Failed => (TrialState::Failed, None),
                Outcome::Pruned => (
                    TrialState::Pruned,
                    t.intermediate.values().next_back().map(|&v| vec![v]),
                ),
            };
            Ok(Event::Finish {
                number,
                state,
                values,
            })
        })?;
        self.relative.remove(&number);
        self.enqueued.remove(&number);
        match ev {
            Event::Finish { state, .. } => Ok(state),
            _ => unreachable!("tell commits a finish"),
        }
    }

    /// Runs `n_trials` trials of `objective`, which returns an `f64` (one objective) or
    /// a `Vec<f64>` (one value per direction). An objective error, a non-finite value or
    /// a wrong number of values fails that trial only; [`TrialError::Pruned`] prunes it.
    /// Stops early, with [`StopReason::SpaceExhausted`], when every point of a finite
    /// space is seen.
    ///
    /// # Errors
    /// Storage errors (objective failures are recorded, not returned).
    pub fn optimize<O: Into<Outcome>>(
        &mut self,
        n_trials: usize,
        mut objective: impl FnMut(&mut Trial<'_>) -> std::result::Result<O, TrialError>,
    ) -> Result<OptimizeReport> {
        let mut report = OptimizeReport {
            stop_reason: StopReason::TrialBudget,
            completed: 0,
            pruned: 0,
            failed: 0,
        };
        let n_obj = self.directions.len();
        for _ in 0..n_trials {
            let mut trial = match self.ask() {
                Ok(t) => t,
                Err(Error::SpaceExhausted { .. }) => {
                    report.stop_reason = StopReason::SpaceExhausted;
                    break;
                }
                Err(e) => return Err(e),
            };
            let number = trial.number();
            let result = objective(&mut trial);
            let outcome = match result.map(Into::into) {
                Ok(Outcome::Values(v)) if v.len() != n_obj => {
                    let msg = format!("expected {n_obj} objective values, got {}", v.len());
                    trial.set_user_attr("fail_reason", serde_json::Value::String(msg))?;
                    Outcome::Failed
                }
                Ok(o) => o,
                Err(TrialError::Pruned) => Outcome::Pruned,
                Err(TrialError::Failed(msg)) => {
                    trial.set_user_attr("fail_reason", serde_json::Value::String(msg))?;
                    Outcome::Failed
                }
            };
            match self.tell(number, outcome)? {
                TrialState::Complete => report.completed += 1,
                TrialState::Pruned => report.pruned += 1,
                _ => report.failed += 1,
            }
        }
        Ok(report)
    }

    /// All trials (re-read from a shared journal).
    ///
    /// # Errors
    /// Storage errors.
    pub fn trials(&mut self) -> Result<Vec<FrozenTrial>> {
        self.storage.refresh()?;
        Ok(self.storage.trials().to_vec())
    }

    /// The best complete feasible trial of a single-objective study (the first one on
    /// ties); for several objectives, see [`Study::best_trials`].
    ///
    /// # Errors
    /// Storage errors.
    pub fn best_trial(&mut self) -> Result<Option<FrozenTrial>> {
        self.storage.refresh()?;
        let dir = self.directions[0];
        Ok(self
            .storage
            .trials()
            .iter()
            .filter(|t| t.state == TrialState::Complete && t.is_feasible())
            .fold(None::<&FrozenTrial>, |best, t| match (best, t.value()) {
                (Some(b), Some(v)) if !dir.better(v, b.value().expect("complete")) => Some(b),
                (_, Some(_)) => Some(t),
                (b, None) => b,
            })
            .cloned())
    }

    /// The Pareto front: complete feasible trials that no other such trial dominates
    /// (for one objective, every trial with the best value), in trial order.
    ///
    /// # Errors
    /// Storage errors.
    pub fn best_trials(&mut self) -> Result<Vec<FrozenTrial>> {
        self.storage.refresh()?;
        let ok: Vec<&FrozenTrial> = self
            .storage
            .trials()
            .iter()
            .filter(|t| t.state == TrialState::Complete && t.is_feasible())
            .collect();
        let losses: Vec<Vec<f64>> = ok
            .iter()
            .map(|t| pareto::losses(t.values.as_deref().unwrap_or(&[]), &self.directions))
            .collect();
        let front = pareto::fronts(&losses);
        Ok(ok
            .into_iter()
            .zip(front)
            .filter(|(_, f)| *f == 0)
            .map(|(t, _)| t.clone())
            .collect())
    }
}

/// The proposals of `rel` for parameters of `space` whose values are in their
/// distribution (the others are left to independent sampling).
fn valid(
    rel: BTreeMap<String, f64>,
    space: &BTreeMap<String, Distribution>,
) -> BTreeMap<String, f64> {
    rel.into_iter()
        .filter(|(k, x)| {
            space
                .get(k)
                .is_some_and(|d| seen::canonical(d, *x).is_some())
        })
        .collect()
}
