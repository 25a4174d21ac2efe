//! The task's search space and budget: model structure and training
//! hyperparameters, each fixed, a list of choices, or a range; what the search
//! optimises and how long it may run.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::trial::Decoding;

/// A searched value: fixed (`4`), one of a list (`[64, 128]`) or a range
/// (`{low: 1.0e-4, high: 1.0e-2, log: true}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Choice {
    /// Always this value.
    Fixed(f64),
    /// One of these.
    Among(Vec<f64>),
    /// Within `[low, high]`, on a log scale if `log`.
    Range {
        /// Lower end.
        low: f64,
        /// Upper end.
        high: f64,
        /// Log scale.
        #[serde(default)]
        log: bool,
    },
}

impl Choice {
    fn range(low: f64, high: f64, log: bool) -> Choice {
        Choice::Range { low, high, log }
    }

    /// Every value a list or fixed choice can take (none for a range).
    pub fn values(&self) -> Option<Vec<f64>> {
        match self {
            Choice::Fixed(x) => Some(vec![*x]),
            Choice::Among(v) => Some(v.clone()),
            Choice::Range { .. } => None,
        }
    }

    /// The smallest value it can take.
    pub fn lowest(&self) -> f64 {
        match self {
            Choice::Fixed(x) => *x,
            Choice::Among(v) => v.iter().copied().fold(f64::INFINITY, f64::min),
            Choice::Range { low, .. } => *low,
        }
    }

    /// The largest value it can take.
    pub fn highest(&self) -> f64 {
        match self {
            Choice::Fixed(x) => *x,
            Choice::Among(v) => v.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            Choice::Range { high, .. } => *high,
        }
    }

    /// The middle of the choice: a range's midpoint (geometric on a log scale), the
    /// middle of a sorted list (the lower of its two middle values when the list is
    /// even).
    pub fn middle(&self) -> f64 {
        match self {
            Choice::Fixed(x) => *x,
            Choice::Among(v) => {
                let mut v = v.clone();
                v.sort_by(f64::total_cmp);
                v.get(v.len().saturating_sub(1) / 2).copied().unwrap_or(0.0)
            }
            Choice::Range { low, high, log } if *log => (low * high).sqrt(),
            Choice::Range { low, high, .. } => (low + high) / 2.0,
        }
    }

    fn check(&self, what: &str, integer: bool, positive: bool) -> Result<()> {
        let bad = |m: String| Err(Error::Task(format!("{what}: {m}")));
        let ok = |x: f64| {
            x.is_finite() && (!integer || x.fract() == 0.0) && (!positive || x > 0.0) && x >= 0.0
        };
        let kind = if integer { "whole numbers" } else { "numbers" };
        match self {
            Choice::Fixed(x) if !ok(*x) => bad(format!("{x} is not allowed ({kind}, ≥ 0)")),
            Choice::Among(v) if v.is_empty() => bad("no choices".into()),
            Choice::Among(v) if !v.iter().all(|&x| ok(x)) => bad(format!(
                "{v:?}: every choice must be one of the {kind} allowed"
            )),
            Choice::Range { low, high, log } => {
                if !(ok(*low) && ok(*high) && low <= high) {
                    bad(format!("range [{low}, {high}] is not valid ({kind})"))
                } else if *log && *low <= 0.0 {
                    bad("a log range needs low > 0".into())
                } else {
                    Ok(())
                }
            }
            _ => Ok(()),
        }
    }
}

/// `model:`: the structure search (a `glm` decoder trained from scratch), or a
/// local checkpoint to fine-tune.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSpace {
    /// Fine-tune this local checkpoint (a Hugging Face directory: `config.json`,
    /// safetensors weights of a `glm`, `glm4` or `gpt_neox` model, and a
    /// `tokenizer.json` with autoglm's special tokens `<pad> <s> </s> <sep>`, as
    /// `autoglm run` exports) instead of training a searched structure from scratch:
    /// its structure is kept and only `training:` is searched. Relative to the YAML
    /// file.
    #[serde(default)]
    pub checkpoint: Option<std::path::PathBuf>,
    /// Decoder layers.
    #[serde(default = "d_layers")]
    pub layers: Choice,
    /// Residual width (a list: every choice must split evenly into every `heads`).
    #[serde(default = "d_hidden")]
    pub hidden: Choice,
    /// Query heads.
    #[serde(default = "d_heads")]
    pub heads: Choice,
    /// Key/value heads (each must divide every `heads` choice).
    #[serde(default = "d_kv")]
    pub kv_heads: Choice,
    /// MLP width over residual width (rounded to a multiple of 8).
    #[serde(default = "d_ratio")]
    pub mlp_ratio: Choice,
    /// Share of each head that rotates.
    #[serde(default = "d_rotary")]
    pub rotary: Choice,
    /// Output head tied to the embedding.
    #[serde(default = "yes")]
    pub tie_embeddings: bool,
}

fn d_layers() -> Choice {
    Choice::range(1.0, 4.0, false)
}
fn d_hidden() -> Choice {
    Choice::Among(vec![64.0, 128.0, 256.0])
}
fn d_heads() -> Choice {
    Choice::Among(vec![2.0, 4.0])
}
fn d_kv() -> Choice {
    Choice::Among(vec![1.0, 2.0])
}
fn d_ratio() -> Choice {
    Choice::range(2.0, 4.0, false)
}
fn d_rotary() -> Choice {
    Choice::Fixed(0.5)
}
fn yes() -> bool {
    true
}

impl Default for ModelSpace {
    fn default() -> Self {
        ModelSpace {
            checkpoint: None,
            layers: d_layers(),
            hidden: d_hidden(),
            heads: d_heads(),
            kv_heads: d_kv(),
            mlp_ratio: d_ratio(),
            rotary: d_rotary(),
            tie_embeddings: true,
        }
    }
}

/// `training:`: the hyperparameter search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HyperSpace {
    /// Peak learning rate (AdamW, cosine decay after warm-up).
    #[serde(default = "d_lr")]
    pub lr: Choice,
    /// Examples per step.
    #[serde(default = "d_batch")]
    pub batch_size: Choice,
    /// Passes over the training rows.
    #[serde(default = "d_epochs")]
    pub epochs: Choice,
    /// Share of the steps warming up.
    #[serde(default = "d_warmup")]
    pub warmup: Choice,
    /// Decoupled weight decay.
    #[serde(default = "d_wd")]
    pub weight_decay: Choice,
}

fn d_lr() -> Choice {
    Choice::range(3e-4, 1e-2, true)
}
fn d_batch() -> Choice {
    Choice::Among(vec![16.0, 32.0])
}
fn d_epochs() -> Choice {
    Choice::range(1.0, 4.0, false)
}
fn d_warmup() -> Choice {
    Choice::Fixed(0.05)
}
fn d_wd() -> Choice {
    Choice::Among(vec![0.0, 0.01, 0.1])
}

impl HyperSpace {
    /// The largest `epochs` value (a range's upper end).
    pub fn max_epochs(&self) -> f64 {
        self.epochs.highest().max(0.0)
    }
}

impl Default for HyperSpace {
    fn default() -> Self {
        HyperSpace {
            lr: d_lr(),
            batch_size: d_batch(),
            epochs: d_epochs(),
            warmup: d_warmup(),
            weight_decay: d_wd(),
        }
    }
}

/// The sampler of the search.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerKind {
    /// autoglm-tune's `auto` (GP for small flat spaces and budgets, else TPE).
    #[default]
    Auto,
    /// Tree-structured Parzen estimator.
    Tpe,
    /// Gaussian-process Bayesian optimisation.
    Gp,
    /// Uniform random search (the baseline).
    Random,
}

/// The pruner of the search, fed the dev loss.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrunerKind {
    /// Stop a trial whose dev loss is worse than the median of earlier trials at the
    /// same step (after 3 trials).
    #[default]
    Median,
    /// Asynchronous successive halving.
    Asha,
    /// Never stop a trial early.
    None,
}

/// What the search maximises on dev.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Corpus BLEU.
    #[default]
    Bleu,
    /// Mean ROUGE-L F.
    RougeL,
}

impl Metric {
    /// This metric's value among `scores`.
    pub fn of(self, scores: &crate::trial::Scores) -> f64 {
        match self {
            Metric::Bleu => scores.bleu,
            Metric::RougeL => scores.rouge_l,
        }
    }
}

/// `search:`: sampler, pruner, metric and budget.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchConfig {
    /// The sampler.
    #[serde(default)]
    pub sampler: SamplerKind,
    /// The pruner.
    #[serde(default)]
    pub pruner: PrunerKind,
    /// The dev metric to maximise.
    #[serde(default)]
    pub metric: Metric,
    /// Trials at most (finished or pruned; trials a kill interrupted are rerun).
    #[serde(default = "d_trials")]
    pub trials: usize,
    /// Random trials before the TPE or GP model proposes (default: a third of
    /// `trials`, 3 to 10).
    #[serde(default)]
    pub startup_trials: Option<usize>,
    /// Wall-clock minutes at most (no trial starts after it; a running trial stops
    /// at its next evaluation and counts as pruned).
    #[serde(default)]
    pub minutes: Option<f64>,
    /// Dev-loss evaluations per trial (the pruner's checkpoints).
    #[serde(default = "d_evals")]
    pub evaluations: u64,
    /// Dev inputs generated for the metric per trial (all when absent; a seeded
    /// subset keeps trials cheap on large dev sets; the final model is scored on all
    /// of dev and test).
    #[serde(default)]
    pub dev_inputs: Option<usize>,
    /// Seed of the sampler, initial weights and data order.
    #[serde(default)]
    pub seed: u64,
    /// Kernel threads in all (trials trained side by side split them: each of a
    /// batch of `n` rungs gets `threads / n`, at least one).
    #[serde(default = "d_threads")]
    pub threads: usize,
    /// Trials trained side by side (with `hyperband`: the rungs of a bracket run in
    /// batches of `workers`, each proposal made with the ones before it running —
    /// TPE's constant liar, the GP's believer). The journal keeps the number a search
    /// started with, and a resumed search uses it. Default 1.
    #[serde(default = "d_workers")]
    pub workers: usize,
    /// Generation settings for dev and test (lists of beams and length penalties are
    /// chosen from on dev after the search).
    #[serde(default)]
    pub decoding: Decoding,
    /// Cut training examples to this many tokens.
    #[serde(default = "d_max_len")]
    pub max_len: usize,
    /// Budgets a model must meet to be chosen (measured per trial).
    #[serde(default)]
    pub constraints: Constraints,
    /// Multi-fidelity search (Hyperband brackets over training epochs, BOHB's model):
    /// see [`HyperbandConfig`]. Absent: every trial trains its full length, stopped
    /// early only by `pruner`.
    #[serde(default)]
    pub hyperband: Option<HyperbandConfig>,
    /// Journals (`study.jsonl`) of earlier runs on related tasks, relative to the
    /// task file: a new search starts with their best configurations (see
    /// [`SearchConfig::warm_start_trials`]).
    #[serde(default)]
    pub warm_start: Vec<std::path::PathBuf>,
    /// Configurations taken from each `warm_start` journal: its best trials, ranked
    /// by the score at the largest budget each reached (a multi-fidelity journal) or
    /// by value, enqueued as the new search's first trials. Parameters the new space
    /// lacks are dropped and values outside it are left to the sampler; the sampler's
    /// model learns from the new task's scores only (the transfer is the initial
    /// design, as meta-learned initialisation does: no score of another task is mixed
    /// with this task's, whose scale may differ).
    #[serde(default = "d_warm")]
    pub warm_start_trials: usize,
    /// A study shared by several `autoglm run` processes, on one machine or many
    /// (`autoglm run --storage`): Optuna's journal on Redis
    /// (`redis://HOST:PORT/DB`, optionally `#PREFIX`) or in a file (relative to the
    /// task file; on a shared mount for several machines). Each process runs
    /// trials until the study has `trials`, beating for its running trials (with
    /// `hyperband`, the processes share its brackets); Python Optuna and
    /// optuna-dashboard read the same study. Absent: the run directory's own journal
    /// (`study.jsonl`). See [`crate::shared`].
    #[serde(default)]
    pub storage: Option<String>,
    /// The study's name in `storage` (default: the task's `name`).
    #[serde(default)]
    pub study_name: Option<String>,
    /// A directory (relative to the task file; a shared mount for several
    /// machines) where each process uploads the models of its trials that were
    /// the study's best when they finished, in Optuna's `FileSystemArtifactStore`
    /// layout (listed by optuna-dashboard), so that any process can finish the run.
    #[serde(default)]
    pub artifacts: Option<std::path::PathBuf>,
    /// Heartbeats of a shared study's running trials.
    #[serde(default)]
    pub heartbeat: HeartbeatConfig,
}

/// `search.heartbeat`: how a process of a shared study (`search.storage`) shows
/// that its trials still run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeartbeatConfig {
    /// Seconds between beats (default 10).
    #[serde(default = "d_beat")]
    pub interval: f64,
    /// Seconds after its last beat that a running trial is failed (its process is
    /// taken to be gone) and retried with its parameters (default 60).
    #[serde(default = "d_grace")]
    pub grace: f64,
    /// Retries of one trial at most (default 2).
    #[serde(default = "d_retries")]
    pub max_retry: usize,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            interval: d_beat(),
            grace: d_grace(),
            max_retry: d_retries(),
        }
    }
}

fn d_beat() -> f64 {
    10.0
}

fn d_grace() -> f64 {
    60.0
}

fn d_retries() -> usize {
    2
}

fn d_workers() -> usize {
    1
}

fn d_warm() -> usize {
    3
}

/// `search.hyperband:`: successive halving over training length, promoted trials
/// continuing from their checkpoint.
///
/// The budget unit (`unit`) is by default the compute of one epoch of the
/// *middle structure* (every model choice at its middle, [`Choice::middle`]): a
/// trial's rung at budget `b` trains `b × (the middle structure's multiply-adds per
/// token / its own)` epochs, so a small structure trains more epochs than a large one
/// and each rung compares trials at equal compute — as the time-budgeted run that
/// follows the brackets will. `unit: epochs` counts plain epochs instead. Budgets
/// are counted in thousandths. A trial's rungs run at
/// `min_epochs · ηᵏ` budget units up to `max_epochs` (default: the largest
/// `training.epochs` value; `epochs` is then not searched: the budget takes its
/// place). A fresh search's first trial is the middle of every searched range
/// (after any `search.warm_start` trials; `default_first: false` leaves it out), so
/// the search starts where a hand-set default would. Trials train with a
/// warmup-stable-decay learning rate: the warm-up (`training.warmup` as a share of
/// the smallest rung), a constant rate, and at each rung a cooldown branch of
/// `cooldown` × the rung's steps, after which the trial is scored: minus the dev loss
/// over every dev input (with its first reference) below the top rung, the search's
/// metric on all of dev (generated with the first decoding settings) at the top
/// rung. A promoted trial continues its constant-rate phase from its checkpoint
/// (`OUTPUT/trials/N/stable`), so a trial that reaches the top rung has trained
/// exactly as one run of that length would. With `minutes`, the brackets get
/// `search_share` of the time and the rest extends the incumbent from its
/// checkpoint (`OUTPUT/extension.json`).
/// The model (`sampler`: `auto` and `tpe` give TPE, `gp` the GP) is fitted on the
/// largest rung with `min_points` scores, every bracket's trials included (BOHB);
/// `random` samples uniformly with the same brackets. `pruner` is not used (the
/// brackets decide).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HyperbandConfig {
    /// Epochs of the smallest rung.
    pub min_epochs: f64,
    /// Reduction factor η: a rung keeps the best 1/η of its trials.
    #[serde(default = "d_eta")]
    pub eta: u64,
    /// Cooldown steps of a rung's score, as a share of its constant-rate steps.
    #[serde(default = "d_cooldown")]
    pub cooldown: f64,
    /// Hyperband iterations (brackets) at most, besides `trials` and `minutes`.
    #[serde(default)]
    pub brackets: Option<u64>,
    /// Epochs of the top rung (default: the largest `training.epochs` value).
    #[serde(default)]
    pub max_epochs: Option<f64>,
    /// With `minutes`: the share of the time the brackets get (no rung starts that
    /// would end after it); the rest extends the incumbent — its constant-rate phase
    /// continues from its checkpoint for as long as fits, then cools down — and the
    /// longer model is chosen if it scores higher on dev. 1: brackets to the end.
    #[serde(default = "d_share")]
    pub search_share: f64,
    /// What a budget unit is: the compute of an epoch of the middle structure
    /// (`compute`, the default) or an epoch of the trial's own (`epochs`).
    #[serde(default)]
    pub unit: BudgetUnit,
    /// A fresh search's first trial is the middle of every searched range.
    #[serde(default = "yes")]
    pub default_first: bool,
    /// Scores a rung needs before the model (TPE or GP) is fitted on it (default:
    /// half of BOHB's parameters + 1, rounded up — 4 for 7 searched parameters — so
    /// that within the first bracket, often the only one a short budget holds, the
    /// model already proposes the later trials).
    #[serde(default)]
    pub min_points: Option<usize>,
}

/// `search.hyperband.unit`: what one budget unit (an "epoch" of `min_epochs` and
/// `max_epochs`) trains.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BudgetUnit {
    /// The multiply-adds of one epoch of the middle structure: a trial trains
    /// `epochs × middle MACs per token / its MACs per token` epochs.
    #[default]
    Compute,
    /// One epoch of the trial's own structure.
    Epochs,
}

fn d_share() -> f64 {
    0.5
}

fn d_eta() -> u64 {
    3
}
fn d_cooldown() -> f64 {
    0.2
}

impl HyperbandConfig {
    /// Epochs of the top rung: `max_epochs`, else the largest `training.epochs`.
    pub fn top_epochs(&self, training: &HyperSpace) -> f64 {
        self.max_epochs.unwrap_or_else(|| training.max_epochs())
    }

    /// Checks the values against the largest `training.epochs` value.
    ///
    /// # Errors
    /// [`Error::Task`] naming the field.
    pub fn check(&self, training_max: f64) -> Result<()> {
        let max_epochs = self.max_epochs.unwrap_or(training_max);
        let bad = |f: &str, why: String| Err(Error::Task(format!("search.hyperband.{f}: {why}")));
        if !(self.min_epochs.is_finite() && self.min_epochs > 0.0) {
            return bad("min_epochs", format!("{} must be > 0", self.min_epochs));
        }
        if self.min_epochs > max_epochs {
            return bad(
                "min_epochs",
                format!(
                    "{} is more than the top rung's {max_epochs} epochs",
                    self.min_epochs
                ),
            );
        }
        if self.max_epochs.is_some_and(|m| !(m.is_finite() && m > 0.0)) {
            return bad("max_epochs", "must be > 0".into());
        }
        if !(self.search_share > 0.0 && self.search_share <= 1.0) {
            return bad(
                "search_share",
                format!("{} must be in (0, 1]", self.search_share),
            );
        }
        if self.eta < 2 {
            return bad("eta", format!("{} must be at least 2", self.eta));
        }
        if !(self.cooldown > 0.0 && self.cooldown <= 1.0) {
            return bad("cooldown", format!("{} must be in (0, 1]", self.cooldown));
        }
        if self.min_points == Some(0) {
            return bad("min_points", "must be at least 1".into());
        }
        if self.brackets == Some(0) {
            return bad("brackets", "must be at least 1".into());
        }
        Ok(())
    }
}

/// Limits on a candidate model, measured by the executor in each trial: a trial
/// over a limit is infeasible (autoglm-tune's constraints steer the samplers away
/// from such regions) and never chosen as the best.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Constraints {
    /// Decoding time per new token on dev, ms (batched, the search's threads and
    /// decoding settings).
    #[serde(default)]
    pub max_ms_per_token: Option<f64>,
    /// Parameters.
    #[serde(default)]
    pub max_parameters: Option<usize>,
    /// Peak memory of a training step, MB.
    #[serde(default)]
    pub max_step_mb: Option<f64>,
}

impl SearchConfig {
    /// Random trials before the model-based samplers take over.
    pub fn startup(&self) -> usize {
        self.startup_trials
            .unwrap_or((self.trials / 3).clamp(3, 10))
    }
}

impl Constraints {
    /// The constraint values of a trial (feasible when all are ≤ 0), or none when no
    /// limit is set.
    pub fn values(&self, o: &crate::trial::Outcome) -> Option<Vec<f64>> {
        let mut v = Vec::new();
        if let Some(m) = self.max_ms_per_token {
            v.push(o.ms_per_token.unwrap_or(f64::INFINITY) - m);
        }
        if let Some(m) = self.max_parameters {
            v.push(o.parameters as f64 - m as f64);
        }
        if let Some(m) = self.max_step_mb {
            v.push(o.peak_step_bytes as f64 / 1e6 - m);
        }
        (!v.is_empty()).then_some(v)
    }
}

fn d_trials() -> usize {
    12
}
fn d_evals() -> u64 {
    4
}
fn d_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
fn d_max_len() -> usize {
    256
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            sampler: SamplerKind::Auto,
            pruner: PrunerKind::Median,
            metric: Metric::Bleu,
            trials: d_trials(),
            startup_trials: None,
            minutes: None,
            evaluations: d_evals(),
            dev_inputs: None,
            seed: 0,
            threads: d_threads(),
            workers: d_workers(),
            decoding: Decoding::default(),
            max_len: d_max_len(),
            constraints: Constraints::default(),
            hyperband: None,
            warm_start: Vec::new(),
            warm_start_trials: d_warm(),
            storage: None,
            study_name: None,
            artifacts: None,
            heartbeat: HeartbeatConfig::default(),
        }
    }
}

/// Checks the spaces: values of the right kind, and every structure the lists allow
/// buildable (widths split into heads, key/value heads dividing heads, even rotary
/// dims).
///
/// # Errors
/// [`Error::Task`] naming the field.
pub fn check(model: &ModelSpace, hyper: &HyperSpace, search: &SearchConfig) -> Result<()> {
    let hb = &search.heartbeat;
    if !(hb.interval > 0.0 && hb.interval.is_finite()) {
        return Err(Error::Task(format!(
            "search.heartbeat.interval: {} is not a positive number of seconds",
            hb.interval
        )));
    }
    if !(hb.grace > hb.interval && hb.grace.is_finite()) {
        return Err(Error::Task(format!(
            "search.heartbeat.grace: {} s must exceed the interval, {} s",
            hb.grace, hb.interval
        )));
    }
    if model.checkpoint.is_some()
        && (ModelSpace {
            checkpoint: None,
            ..model.clone()
        }) != ModelSpace::default()
    {
        return Err(Error::Task(
            "model: a checkpoint keeps its own structure: drop the structure keys \
             (layers, hidden, heads, kv_heads, mlp_ratio, rotary, tie_embeddings) or the checkpoint"
                .into(),
        ));
    }
    model.layers.check("model.layers", true, true)?;
    model.hidden.check("model.hidden", true, true)?;
    model.heads.check("model.heads", true, true)?;
    model.kv_heads.check("model.kv_heads", true, true)?;
    model.mlp_ratio.check("model.mlp_ratio", false, true)?;
    model.rotary.check("model.rotary", false, false)?;
    hyper.lr.check("training.lr", false, true)?;
    hyper.batch_size.check("training.batch_size", true, true)?;
    hyper.epochs.check("training.epochs", false, true)?;
    hyper.warmup.check("training.warmup", false, false)?;
    hyper
        .weight_decay
        .check("training.weight_decay", false, false)?;
    let need_list = |c: &Choice, what: &str| {
        c.values()
            .ok_or_else(|| Error::Task(format!("{what}: give a value or a list, not a range")))
    };
    let hidden = need_list(&model.hidden, "model.hidden")?;
    let heads = need_list(&model.heads, "model.heads")?;
    let kv = need_list(&model.kv_heads, "model.kv_heads")?;
    let rotary = need_list(&model.rotary, "model.rotary")?;
    for &h in &hidden {
        for &n in &heads {
            if !(h as usize).is_multiple_of(n as usize) {
                return Err(Error::Task(format!(
                    "model: hidden {h} does not split into {n} heads"
                )));
            }
            let d = h / n;
            for &r in &rotary {
                let rot = d * r;
                if rot.fract() != 0.0 || !(rot as usize).is_multiple_of(2) || r > 1.0 {
                    return Err(Error::Task(format!(
                        "model.rotary: {r} of a head of {d} dims is not an even number of dims"
                    )));
                }
            }
            for &k in &kv {
                if !(n as usize).is_multiple_of(k as usize) {
                    return Err(Error::Task(format!(
                        "model.kv_heads: {k} does not divide {n} heads"
                    )));
                }
            }
        }
    }
    if search.trials == 0 || search.evaluations == 0 || search.threads == 0 || search.workers == 0 {
        return Err(Error::Task(
            "search: trials, evaluations, threads and workers must be at least 1".into(),
        ));
    }
    if search.workers > 1 && search.hyperband.is_none() {
        return Err(Error::Task(format!(
            "search.workers: {} trials side by side need search.hyperband (the multi-fidelity \
             search runs its rungs in batches); drop workers or add hyperband",
            search.workers
        )));
    }
    if search.minutes.is_some_and(|m| m.is_nan() || m <= 0.0) {
        return Err(Error::Task("search.minutes must be positive".into()));
    }
    if let Some(hb) = &search.hyperband {
        hb.check(hyper.max_epochs())?;
        if hyper
            .warmup
            .values()
            .is_none_or(|v| v.iter().any(|&w| w >= 1.0))
        {
            return Err(Error::Task(
                "training.warmup: with search.hyperband, a value or list below 1 (a share of the smallest rung)"
                    .into(),
            ));
        }
    }
    search.decoding.validate()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_middle_of_a_choice() {
        assert_eq!(Choice::Fixed(3.0).middle(), 3.0);
        assert_eq!(Choice::Among(vec![256.0, 128.0, 192.0]).middle(), 192.0);
        assert_eq!(Choice::Among(vec![64.0, 32.0]).middle(), 32.0);
        assert_eq!(Choice::range(2.0, 4.0, false).middle(), 3.0);
        let lr = Choice::range(1e-3, 6e-3, true).middle();
        assert!((lr - 6e-6f64.sqrt()).abs() < 1e-15);
        let c = Choice::Among(vec![0.1, 0.0, 0.01]);
        assert_eq!((c.lowest(), c.highest()), (0.0, 0.1));
    }
}
