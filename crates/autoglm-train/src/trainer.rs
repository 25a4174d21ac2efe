//! The trainer: the model's training graph differentiated once ([`autoglm_graph::grad`])
//! and optimised, run per step on a batch, with the optimizer updating f32 master
//! weights; metrics per step through a callback; checkpoints (weights in the Hugging
//! Face layout, optimizer state, trainer state) that a resumed run continues from
//! exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use std::borrow::Cow;

use autoglm_graph::{grad, BinaryOp, DType, OpKind, TensorType};
use autoglm_models::{
    build_training_graph, load_weights, save_pretrained, Checkpoint, ModelConfig,
};
use autoglm_ops::{optimize, Device, Executor, Options, Registry, Tensor};
use serde::{Deserialize, Serialize};

use crate::data::{Batch, Dataset, Order};
use crate::error::{io, Error, Result};
use crate::optim::{
    clip_coefficient, global_norm, DecayShape, LrSchedule, Optimizer, OptimizerKind, Schedule,
};

/// How to train.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// Examples per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are averaged into one step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// The update rule.
    pub optimizer: OptimizerKind,
    /// The learning-rate shape after the warm-up.
    pub schedule: Schedule,
    /// Steps of linear warm-up.
    pub warmup_steps: u64,
    /// [`Schedule::Wsd`]: steps of cooldown at the end of the run (the stable phase
    /// ends at `steps − decay_steps`); see [`Trainer::plan_cooldown`] and
    /// [`Trainer::cooldown_branch`]. Other shapes ignore it.
    pub decay_steps: u64,
    /// [`Schedule::Wsd`]: the cooldown's shape.
    pub decay_shape: DecayShape,
    /// [`Schedule::Wsd`]: the rate the cooldown ends at (and the warm-up starts
    /// from) as a fraction of `lr`, in [0, 1].
    pub min_lr_ratio: f64,
    /// Clip the gradients' global norm to this (none: no clipping).
    pub clip_norm: Option<f64>,
    /// Permute the examples each epoch (seeded); off: file order.
    pub shuffle: bool,
    /// Seed of the data order.
    pub seed: u64,
    /// Kernel threads.
    pub threads: usize,
    /// Cut examples to this many tokens.
    pub max_len: Option<usize>,
    /// Batch examples of similar length together (less padding; see
    /// [`Order::lengths`]).
    #[serde(default)]
    pub group_by_length: bool,
    /// Gradient checkpointing: keep only the residual stream (every value that all
    /// paths from the token ids to the loss pass through: each attention and MLP
    /// block's input) for the backward pass and recompute the rest of each block
    /// there, as transformers' `gradient_checkpointing_enable()` does per layer. Less
    /// memory ([`Trainer::peak_step_bytes`]), about one more forward pass of time; the
    /// losses and updates are the same.
    pub checkpointing: bool,
    /// Storage type of the weights the graph reads and of every activation and
    /// gradient: `f32`, or `bf16` / `f16` for mixed precision (kernels compute in
    /// f32 and round; the optimizer updates f32 master weights, which checkpoints
    /// save; the loss is computed in f32). `f16` trains with dynamic loss scaling as
    /// PyTorch's `GradScaler` does (start 2¹⁶, halve and skip the step on an overflow,
    /// double after 2000 good steps).
    pub dtype: DType,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 100,
            batch_size: 8,
            grad_accum: 1,
            lr: 5e-5,
            optimizer: OptimizerKind::adamw(),
            schedule: Schedule::Constant,
            warmup_steps: 0,
            decay_steps: 0,
            decay_shape: DecayShape::default(),
            min_lr_ratio: 0.0,
            clip_norm: Some(1.0),
            shuffle: true,
            seed: 42,
            threads: 1,
            max_len: None,
            group_by_length: false,
            checkpointing: false,
            dtype: DType::F32,
        }
    }
}

impl TrainConfig {
    /// The learning-rate schedule over the run.
    pub fn lr_schedule(&self) -> LrSchedule {
        LrSchedule {
            base: self.lr,
            schedule: self.schedule,
            warmup_steps: self.warmup_steps,
            total_steps: self.steps,
            decay_steps: self.decay_steps,
            decay_shape: self.decay_shape,
            min_lr_ratio: self.min_lr_ratio,
        }
    }

    fn check(&self) -> Result<()> {
        if self.batch_size == 0 || self.grad_accum == 0 {
            return Err(Error::Input(
                "batch size and gradient accumulation must be at least 1".into(),
            ));
        }
        if !matches!(self.dtype, DType::F32 | DType::BF16 | DType::F16) {
            return Err(Error::Input(format!(
                "dtype {:?}: training stores f32, bf16 or f16 values",
                self.dtype
            )));
        }
        if !(self.lr.is_finite() && self.lr >= 0.0) {
            return Err(Error::Input(format!(
                "learning rate {} is not valid",
                self.lr
            )));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(Error::Input(format!(
                "min_lr_ratio {} is not in [0, 1]",
                self.min_lr_ratio
            )));
        }
        Ok(())
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StepReport {
    /// Steps taken, this one included (1 after the first).
    pub step: u64,
    /// The mean cross-entropy of the step's batches (before the update).
    pub loss: f64,
    /// The learning rate the update used.
    pub lr: f64,
    /// The gradients' global norm before clipping.
    pub grad_norm: f64,
    /// Positions that counted in the loss.
    pub tokens: usize,
    /// Whether the update was skipped because the f16 gradients overflowed (the loss
    /// scale was halved instead).
    #[serde(default)]
    pub skipped: bool,
}

/// Whether to go on after a step (a pruner's answer, say).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Control {
    /// Next step.
    Continue,
    /// Stop training now.
    Stop,
}

/// A trainer's state in memory ([`Trainer::snapshot`]), for [`Trainer::restore`].
#[derive(Clone)]
pub struct TrainerSnapshot {
    step: u64,
    config: TrainConfig,
    /// The executor's parameters (storage type), in the trainer's parameter order.
    params: Vec<Tensor>,
    masters: Vec<Tensor>,
    opt: Optimizer,
    loss_scale: Option<LossScale>,
}

impl TrainerSnapshot {
    /// The step it was taken at.
    pub fn step(&self) -> u64 {
        self.step
    }
}

impl std::fmt::Debug for TrainerSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainerSnapshot")
            .field("step", &self.step)
            .field("parameters", &self.params.len())
            .finish_non_exhaustive()
    }
}

/// The state a checkpoint records besides weights and optimizer.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    step: u64,
    config: TrainConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    loss_scale: Option<LossScale>,
}

/// Dynamic loss scaling for f16 gradients (PyTorch's `GradScaler` defaults).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
struct LossScale {
    scale: f64,
    /// Finite steps since the scale last changed.
    good_steps: u64,
}

impl LossScale {
    const GROWTH_INTERVAL: u64 = 2000;

    fn new() -> LossScale {
        LossScale {
            scale: 65536.0,
            good_steps: 0,
        }
    }

    /// Adjusts the scale after a step whose gradients were finite or not.
    fn update(&mut self, finite: bool) {
        if finite {
            self.good_steps += 1;
            if self.good_steps == Self::GROWTH_INTERVAL {
                self.scale *= 2.0;
                self.good_steps = 0;
            }
        } else {
            self.scale *= 0.5;
            self.good_steps = 0;
        }
    }
}

/// Trains a GLM-family causal LM.
pub struct Trainer {
    model: ModelConfig,
    config: TrainConfig,
    /// The differentiated parameters, in the order of the graph's gradient outputs;
    /// their values (the f32 master weights) live in the executor, or, when stored in
    /// a half type, in `masters`.
    names: Vec<String>,
    /// The f32 master weights of a half-precision run (empty for f32).
    masters: Vec<Tensor>,
    loss_scale: Option<LossScale>,
    exec: Executor,
    /// The optimised forward graph (loss only), for evaluation.
    forward: autoglm_graph::Graph,
    /// Its executor, made at the first evaluation.
    eval: Option<Executor>,
    opt: Optimizer,
    step: u64,
    peak_bytes: usize,
    peak_live_bytes: usize,
}

impl std::fmt::Debug for Trainer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("step", &self.step)
            .field("parameters", &self.names.len())
            .finish_non_exhaustive()
    }
}

impl Trainer {
    /// A trainer for `model` starting from `params` (the graph's layout, as
    /// [`autoglm_models::load_weights`] gives them).
    ///
    /// # Errors
    /// [`Error::Input`] for invalid settings; [`Error::Graph`] / [`Error::Ops`] if the
    /// weights do not fit the model.
    pub fn new(
        model: ModelConfig,
        params: BTreeMap<String, Tensor>,
        config: TrainConfig,
    ) -> Result<Trainer> {
        config.check()?;
        let dtype = config.dtype;
        let mut g = build_training_graph(&model, &params, dtype)?;
        let registry = Registry::with_cpu_kernels();
        optimize(&mut g, &registry, Device::Cpu, None)?;
        let loss = g.outputs()[0];
        let mut names = Vec::new();
        let mut wrt = Vec::new();
        for n in g.node_ids().collect::<Vec<_>>() {
            if let OpKind::Parameter { name, .. } = &g.node(n)?.op {
                names.push(name.clone());
                wrt.push(n);
            }
        }
        let forward = g.clone();
        // f16: the loss is multiplied by the scale, so small gradients stay normal.
        let scaled = if dtype == DType::F16 {
            let s = g.input("loss_scale", TensorType::new(DType::F32, [0u64; 0]))?;
            g.add(OpKind::Binary { f: BinaryOp::Mul }, &[loss, s])?
        } else {
            loss
        };
        let mut grads = grad(&g, scaled, &wrt)?;
        if config.checkpointing {
            let ids = g
                .node_ids()
                .find(|&n| matches!(&g.node(n).map(|x| &x.op), Ok(OpKind::Input { name, .. }) if name == "ids"))
                .ok_or_else(|| Error::Input("internal: the training graph has no input 'ids'".into()))?;
            grads.checkpoint(&g.cut_points(ids, loss)?)?;
        }
        let mut tg = grads.graph;
        optimize(&mut tg, &registry, Device::Cpu, None)?;
        // The weights change every step: the matrix products lay them out per call
        // (into reused memory) rather than when bound.
        let mut exec = Executor::new(
            &tg,
            &registry,
            Options {
                threads: config.threads.max(1),
                prepack: false,
                ..Options::default()
            },
        )?;
        let mut params = params;
        let mut masters = Vec::new();
        for name in &names {
            let t = params
                .remove(name)
                .ok_or_else(|| Error::Input(format!("no weight '{name}'")))?;
            if dtype == DType::F32 {
                exec.set_parameter(name, t)?;
            } else {
                exec.set_parameter(name, t.cast(dtype))?;
                masters.push(t.cast(DType::F32));
            }
        }
        Ok(Trainer {
            model,
            masters,
            loss_scale: (dtype == DType::F16).then(LossScale::new),
            opt: Optimizer::new(config.optimizer),
            config,
            names,
            exec,
            forward,
            eval: None,
            step: 0,
            peak_bytes: 0,
            peak_live_bytes: 0,
        })
    }

    /// A trainer for the Hugging Face checkpoint in `dir`.
    ///
    /// # Errors
    /// As [`Trainer::new`], and [`Error::Model`] naming the file or field that could
    /// not be read.
    pub fn from_pretrained(dir: &Path, config: TrainConfig) -> Result<Trainer> {
        let model = ModelConfig::from_file(&dir.join("config.json"))?;
        let ck = Checkpoint::open(dir)?;
        let params = load_weights(&model, &ck)?;
        Trainer::new(model, params, config)
    }

    /// Continues the run saved in checkpoint directory `dir` (by
    /// [`Trainer::save_checkpoint`]): weights, optimizer state, step and settings.
    ///
    /// # Errors
    /// As [`Trainer::from_pretrained`]; [`Error::Io`] for a directory without
    /// `trainer_state.json`, [`Error::TrainerState`] for one that cannot be parsed.
    pub fn resume(dir: &Path) -> Result<Trainer> {
        Trainer::resume_with(dir, |_| {})
    }

    /// [`Trainer::resume`] with the saved settings adjusted by `adjust` first (more
    /// steps, other threads; changing the batching changes the data order).
    ///
    /// # Errors
    /// As [`Trainer::resume`].
    pub fn resume_with(dir: &Path, adjust: impl FnOnce(&mut TrainConfig)) -> Result<Trainer> {
        let path = dir.join("trainer_state.json");
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut state: TrainerState =
            serde_json::from_str(&text).map_err(|source| Error::TrainerState {
                path: path.clone(),
                source,
            })?;
        adjust(&mut state.config);
        let mut t = Trainer::from_pretrained(dir, state.config)?;
        let opt_path = dir.join("optimizer.safetensors");
        let tensors = autoglm_ops::load_safetensors(&opt_path)?;
        t.opt.load_state(&tensors)?;
        t.step = state.step;
        if t.loss_scale.is_some() {
            t.loss_scale = state.loss_scale.or(t.loss_scale);
        }
        Ok(t)
    }

    /// The model's structure.
    pub fn model_config(&self) -> &ModelConfig {
        &self.model
    }

    /// The settings.
    pub fn config(&self) -> &TrainConfig {
        &self.config
    }

    /// Changes the run's length to `steps` optimizer steps with `warmup_steps` of
    /// warmup (a run cut short to fit a time budget, say): the learning-rate schedule
    /// follows the new length from the next step, and [`Trainer::fit`] stops there.
    /// With [`Schedule::Wsd`] the cooldown keeps its length and moves to the new end
    /// ([`Trainer::plan_cooldown`] sets both and checks that the move is exact).
    ///
    /// # Errors
    /// [`Error::Input`] when `steps` is below the steps already taken.
    pub fn set_steps(&mut self, steps: u64, warmup_steps: u64) -> Result<()> {
        if steps < self.step {
            return Err(Error::Input(format!(
                "cannot shorten the run to {steps} steps: {} are done",
                self.step
            )));
        }
        self.config.steps = steps;
        self.config.warmup_steps = warmup_steps.min(steps);
        Ok(())
    }

    /// Plans a [`Schedule::Wsd`] run's cooldown: the stable phase runs until step
    /// `start`, then `decay_steps` steps cool down (the run's length becomes
    /// `start + decay_steps`). Extending a run this way is exact: a trainer in the
    /// stable phase at step `s`, planned on to any `start ≥ s`, takes the same steps
    /// as a run planned that way from the start (the rates before the cooldown do not
    /// depend on where it starts).
    ///
    /// # Errors
    /// [`Error::Input`] when the schedule is not WSD, when `start` is before the steps
    /// already taken or inside the warm-up, or when the trainer has already taken
    /// steps of its current plan's cooldown (its state is no longer a stable-phase state; continue from a
    /// checkpoint or [`TrainerSnapshot`] taken before the cooldown).
    pub fn plan_cooldown(&mut self, start: u64, decay_steps: u64) -> Result<()> {
        self.check_stable("plan a cooldown")?;
        if start < self.step {
            return Err(Error::Input(format!(
                "cannot start the cooldown at step {start}: {} steps are done",
                self.step
            )));
        }
        if start < self.config.warmup_steps {
            return Err(Error::Input(format!(
                "cannot start the cooldown at step {start}, inside the warm-up of {} steps",
                self.config.warmup_steps
            )));
        }
        let steps = start.checked_add(decay_steps).ok_or_else(|| {
            Error::Input(format!(
                "a cooldown of {decay_steps} steps from {start} is too long"
            ))
        })?;
        self.config.steps = steps;
        self.config.decay_steps = decay_steps;
        Ok(())
    }

    /// Checks that the trainer is in a [`Schedule::Wsd`] run before its cooldown (in
    /// the warm-up or the stable phase: no cooldown step taken).
    fn check_stable(&self, what: &str) -> Result<()> {
        let schedule = self.config.lr_schedule();
        let Some(start) = schedule.cooldown_start() else {
            return Err(Error::Input(format!(
                "cannot {what}: the learning-rate schedule is {:?}, not wsd",
                self.config.schedule
            )));
        };
        if self.step > start {
            return Err(Error::Input(format!(
                "cannot {what}: step {} is past the cooldown start {start}, so the weights are no longer those of the stable phase (continue from a checkpoint taken before the cooldown)",
                self.step
            )));
        }
        Ok(())
    }

    /// A copy of everything the next steps read: the weights (the f32 masters and
    /// the executor's copies), the optimizer's moments and step, the loss scale, the
    /// step (which fixes the data position: [`Order`] is a function of it) and the
    /// settings. [`Trainer::restore`] puts it back.
    pub fn snapshot(&self) -> TrainerSnapshot {
        TrainerSnapshot {
            step: self.step,
            config: self.config.clone(),
            params: self
                .names
                .iter()
                .filter_map(|n| self.exec.parameter(n).cloned())
                .collect(),
            masters: self.masters.clone(),
            opt: self.opt.clone(),
            loss_scale: self.loss_scale,
        }
    }

    /// Puts back the state of [`Trainer::snapshot`]: the trainer then continues
    /// exactly as it would have from there.
    ///
    /// # Errors
    /// [`Error::Input`] for a snapshot of a trainer of another model.
    pub fn restore(&mut self, snapshot: TrainerSnapshot) -> Result<()> {
        if snapshot.params.len() != self.names.len() || snapshot.masters.len() != self.masters.len()
        {
            return Err(Error::Input(
                "the snapshot is of a trainer with other parameters".into(),
            ));
        }
        for (name, t) in self.names.iter().zip(snapshot.params) {
            self.exec.set_parameter(name, t)?;
        }
        self.masters = snapshot.masters;
        self.opt = snapshot.opt;
        self.loss_scale = snapshot.loss_scale;
        self.step = snapshot.step;
        self.config = snapshot.config;
        Ok(())
    }

    /// Scores a rung of a [`Schedule::Wsd`] run: from the current step `s` of the
    /// stable phase, runs a cooldown of `decay_steps` steps on `data` (the batches of
    /// steps `s … s + decay_steps − 1`, the rates of a run planned as `s` stable steps
    /// and that cooldown), calls `evaluate` with the cooled-down trainer and the
    /// branch's step reports (evaluate the dev loss, generate, save the weights), then
    /// restores the trainer to step `s` exactly ([`Trainer::snapshot`]) and returns
    /// `evaluate`'s answer. The trainer is restored whether the branch succeeds or
    /// not.
    ///
    /// A run that branches cooldowns at rungs and continues its stable phase in
    /// between ([`Trainer::plan_cooldown`]) ends with the weights of a run trained
    /// straight through with its last cooldown, bit for bit.
    ///
    /// # Errors
    /// As [`Trainer::plan_cooldown`] (not WSD, still in the warm-up, or past the
    /// cooldown start), as [`Trainer::fit`], and `evaluate`'s error.
    pub fn cooldown_branch<R>(
        &mut self,
        decay_steps: u64,
        data: &Dataset,
        evaluate: impl FnOnce(&mut Trainer, &[StepReport]) -> Result<R>,
    ) -> Result<R> {
        self.check_stable("branch a cooldown")?;
        let snapshot = self.snapshot();
        let branch = || {
            self.plan_cooldown(self.step, decay_steps)?;
            let mut reports = Vec::new();
            self.fit(data, |_, r| {
                reports.push(*r);
                Ok(Control::Continue)
            })?;
            evaluate(self, &reports)
        };
        let result = branch();
        self.restore(snapshot)?;
        result
    }

    /// Steps taken.
    pub fn steps_done(&self) -> u64 {
        self.step
    }

    /// A copy of the current weights (the graph's layout, as
    /// [`autoglm_models::load_weights`] gives them; a tied output head is the
    /// embedding).
    pub fn weights(&self) -> BTreeMap<String, Tensor> {
        if !self.masters.is_empty() {
            return self
                .names
                .iter()
                .cloned()
                .zip(self.masters.iter().cloned())
                .collect();
        }
        self.names
            .iter()
            .filter_map(|n| Some((n.clone(), self.exec.parameter(n)?.clone())))
            .collect()
    }

    /// The loss scale of an f16 run (none otherwise).
    pub fn loss_scale(&self) -> Option<f64> {
        self.loss_scale.map(|s| s.scale)
    }

    /// Hands a gradient buffer back to the executor's pool (those of the storage
    /// type; f32 copies of half gradients are dropped).
    fn recycle(&mut self, t: Tensor) {
        if t.dtype() == self.config.dtype {
            self.exec.recycle(t);
        }
    }

    /// The graph inputs for `b`: float inputs in the storage type, and the loss scale.
    fn inputs<'a>(&self, b: &'a Batch, scale: Option<f64>) -> Vec<(&'static str, Cow<'a, Tensor>)> {
        let dtype = self.config.dtype;
        let mut v: Vec<(&'static str, Cow<'a, Tensor>)> = b
            .feed(self.model.rotary_dim > 0)
            .into_iter()
            .map(|(n, t)| match t.dtype() {
                DType::F32 if dtype != DType::F32 => (n, Cow::Owned(t.cast(dtype))),
                _ => (n, Cow::Borrowed(t)),
            })
            .collect();
        if let Some(s) = scale {
            v.push(("loss_scale", Cow::Owned(Tensor::scalar(s, DType::F32))));
        }
        v
    }

    /// The most bytes the executor held during one step so far (forward and backward
    /// intermediates, gradients included; weights and optimizer state not counted).
    pub fn peak_step_bytes(&self) -> usize {
        self.peak_bytes
    }

    /// The most bytes the live values of one step needed at once so far (their sizes,
    /// without the executor's pooled free buffers): the plan's peak, which gradient
    /// checkpointing lowers; [`Trainer::peak_step_bytes`] is what the pool reserved.
    pub fn peak_live_bytes(&self) -> usize {
        self.peak_live_bytes
    }

    /// Starts (or, with `false`, stops and clears) timing every kernel of the step.
    pub fn set_profiling(&mut self, on: bool) {
        self.exec.set_profiling(on);
    }

    /// Seconds per kernel since profiling started, slowest first (node, op, seconds).
    pub fn profile(&self) -> Vec<(autoglm_graph::NodeId, String, f64)> {
        self.exec.profile()
    }

    /// The data order of this run over `len` examples.
    pub fn order(&self, len: usize) -> Order {
        Order {
            len,
            batch_size: self.config.batch_size,
            shuffle: self.config.shuffle,
            seed: self.config.seed,
            lengths: None,
        }
    }

    /// The data order of this run over `data` (grouped by length when the settings
    /// ask for it).
    pub fn order_of(&self, data: &Dataset) -> Order {
        let mut o = self.order(data.examples.len());
        if self.config.group_by_length {
            o.lengths = Some(data.examples.iter().map(|e| e.input_ids.len()).collect());
        }
        o
    }

    /// One optimizer step over `micro` (micro-batches whose gradients are averaged).
    ///
    /// # Errors
    /// [`Error::Input`] for no batches or a non-finite loss; executor errors.
    pub fn step(&mut self, micro: &[Batch]) -> Result<StepReport> {
        if micro.is_empty() {
            return Err(Error::Input("a step needs at least one batch".into()));
        }
        // The first batch's gradient outputs accumulate the others' and are handed
        // back to the executor after the update (no fresh memory per step).
        let mut grads: Vec<Tensor> = Vec::new();
        let (mut loss, mut tokens) = (0.0, 0);
        let scale = self.loss_scale.map(|s| s.scale);
        for b in micro {
            let feed = self.inputs(b, scale);
            let refs: Vec<(&str, &Tensor)> = feed.iter().map(|(n, t)| (*n, t.as_ref())).collect();
            let out = self.exec.run(&refs)?;
            let stats = self.exec.stats();
            self.peak_bytes = self.peak_bytes.max(stats.peak_bytes);
            self.peak_live_bytes = self.peak_live_bytes.max(stats.peak_live_bytes);
            let mut it = out.into_iter();
            let l = it.next().map_or(f64::NAN, |t| t.data().get_f64(0));
            loss += l / scale.unwrap_or(1.0);
            tokens += b.counted;
            for (k, gt) in it.enumerate() {
                // Half gradients are widened (and accumulated) in f32.
                let gt = if gt.dtype() == DType::F32 {
                    gt
                } else {
                    let wide = gt.cast(DType::F32);
                    self.exec.recycle(gt);
                    wide
                };
                match grads.get_mut(k) {
                    None => grads.push(gt),
                    Some(acc) => {
                        let (a, g) = (f32_mut(acc)?, f32_of(&gt)?);
                        a.iter_mut().zip(g).for_each(|(a, &x)| *a += x);
                        self.recycle(gt);
                    }
                }
            }
        }
        let n = micro.len() as f64;
        loss /= n;
        if !loss.is_finite() {
            return Err(Error::Input(format!(
                "the loss is {loss} at step {} (learning rate too high, or no labelled position)",
                self.step + 1
            )));
        }
        // Averaging, unscaling and clipping are folded into the update as one factor.
        let gs: Vec<&[f32]> = grads.iter().map(f32_of).collect::<Result<_>>()?;
        let unscale = (1.0 / n) / scale.unwrap_or(1.0);
        let grad_norm = global_norm(gs.iter().copied()) * unscale;
        let lr = self.config.lr_schedule().lr(self.step);
        let skipped = !grad_norm.is_finite() && self.loss_scale.is_some();
        if let Some(ls) = &mut self.loss_scale {
            ls.update(!skipped);
        }
        if !skipped {
            let clip = self
                .config
                .clip_norm
                .map_or(1.0, |c| clip_coefficient(grad_norm, c));
            let factor = if unscale == 1.0 {
                clip
            } else {
                (unscale as f32) * clip
            };
            let dtype = self.config.dtype;
            if self.masters.is_empty() {
                let mut by_name: BTreeMap<&str, &mut Tensor> =
                    self.exec.parameters_mut().into_iter().collect();
                let mut ps: Vec<(&str, &mut [f32])> = Vec::with_capacity(self.names.len());
                for name in &self.names {
                    let t = by_name
                        .remove(name.as_str())
                        .ok_or_else(|| Error::Input(format!("no weight '{name}'")))?;
                    ps.push((name.as_str(), f32_mut(t)?));
                }
                self.opt.step_scaled(lr, factor, &mut ps, &gs)?;
            } else {
                let mut ps: Vec<(&str, &mut [f32])> = self
                    .names
                    .iter()
                    .zip(self.masters.iter_mut())
                    .map(|(n, t)| Ok((n.as_str(), f32_mut(t)?)))
                    .collect::<Result<_>>()?;
                self.opt.step_scaled(lr, factor, &mut ps, &gs)?;
                for (name, m) in self.names.iter().zip(&self.masters) {
                    self.exec.set_parameter(name, m.cast(dtype))?;
                }
            }
        }
        for g in grads {
            self.recycle(g);
        }
        self.step += 1;
        Ok(StepReport {
            step: self.step,
            loss,
            lr,
            grad_norm,
            tokens,
            skipped,
        })
    }

    /// The mean cross-entropy over every labelled position of `data` (in file order,
    /// batches of the configured size) with the current weights; no update.
    ///
    /// # Errors
    /// [`Error::Input`] for data without a labelled position; executor errors.
    pub fn eval_loss(&mut self, data: &Dataset) -> Result<f64> {
        if self.eval.is_none() {
            let registry = Registry::with_cpu_kernels();
            let opts = Options {
                threads: self.config.threads.max(1),
                ..Options::default()
            };
            self.eval = Some(Executor::new(&self.forward, &registry, opts)?);
        }
        let eval = self.eval.as_mut().expect("made above");
        for name in &self.names {
            let w = self
                .exec
                .parameter(name)
                .ok_or_else(|| Error::Input(format!("no weight '{name}'")))?;
            eval.set_parameter(name, w.clone())?;
        }
        let (mut total, mut count) = (0.0, 0usize);
        for chunk in data.examples.chunks(self.config.batch_size.max(1)) {
            let refs: Vec<&crate::data::Example> = chunk.iter().collect();
            let b = Batch::new(&refs, &self.model)?;
            if b.counted == 0 {
                continue;
            }
            let feed = self.inputs(&b, None);
            let refs: Vec<(&str, &Tensor)> = feed.iter().map(|(n, t)| (*n, t.as_ref())).collect();
            let eval = self.eval.as_mut().expect("made above");
            let out = eval.run(&refs)?;
            total += out[0].data().get_f64(0) * b.counted as f64;
            count += b.counted;
        }
        if count == 0 {
            return Err(Error::Input("no labelled position to evaluate".into()));
        }
        Ok(total / count as f64)
    }

    /// Trains on `data` until the configured number of steps (from where the trainer
    /// stands, so a resumed run continues the same data order), calling `on_step`
    /// after each step; stops early when it answers [`Control::Stop`].
    ///
    /// # Errors
    /// [`Error::Input`] for an empty data set; as [`Trainer::step`].
    pub fn fit(
        &mut self,
        data: &Dataset,
        on_step: impl FnMut(&mut Trainer, &StepReport) -> Result<Control>,
    ) -> Result<()> {
        self.fit_to(data, u64::MAX, on_step)
    }

    /// [`Trainer::fit`] up to step `until` at most (a rung of a multi-fidelity
    /// search in a [`Schedule::Wsd`] run's stable phase, say), and never past the
    /// configured steps.
    ///
    /// # Errors
    /// As [`Trainer::fit`].
    pub fn fit_to(
        &mut self,
        data: &Dataset,
        until: u64,
        mut on_step: impl FnMut(&mut Trainer, &StepReport) -> Result<Control>,
    ) -> Result<()> {
        if data.examples.is_empty() {
            return Err(Error::Input("no training examples".into()));
        }
        let order = self.order_of(data);
        let accum = self.config.grad_accum as u64;
        while self.step < self.config.steps.min(until) {
            let micro = (0..accum)
                .map(|j| {
                    let idx = order.batch(self.step * accum + j);
                    let exs: Vec<_> = idx.iter().map(|&i| &data.examples[i]).collect();
                    Batch::new(&exs, &self.model)
                })
                .collect::<Result<Vec<_>>>()?;
            let report = self.step(&micro)?;
            if on_step(self, &report)? == Control::Stop {
                break;
            }
        }
        Ok(())
    }

    /// Writes the model in the Hugging Face layout (`config.json`, `model.safetensors`).
    ///
    /// # Errors
    /// [`Error::Model`] naming the file that could not be written.
    pub fn save_pretrained(&self, dir: &Path) -> Result<()> {
        save_pretrained(dir, &self.model, &self.weights())?;
        Ok(())
    }

    /// Writes a checkpoint to `dir` (replaced whole; written to `.NAME.tmp` beside it
    /// first, synced to disk, then renamed, so a kill or a crash leaves either the old
    /// or the new one): the model as [`Trainer::save_pretrained`],
    /// `optimizer.safetensors` and, last, `trainer_state.json`.
    ///
    /// # Errors
    /// [`Error::CheckpointPath`] for a path without a directory name;
    /// [`Error::Io`] / [`Error::Model`] naming what could not be written.
    pub fn save_checkpoint(&self, dir: &Path) -> Result<()> {
        let name = dir.file_name().ok_or_else(|| Error::CheckpointPath {
            path: dir.to_owned(),
        })?;
        let tmp: PathBuf = dir.with_file_name(format!(".{}.tmp", name.to_string_lossy()));
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(io(&tmp))?;
        }
        self.save_pretrained(&tmp)?;
        let opt = tmp.join("optimizer.safetensors");
        autoglm_ops::save_safetensors(&opt, &self.opt.state_tensors())?;
        let state = TrainerState {
            step: self.step,
            config: self.config.clone(),
            loss_scale: self.loss_scale,
        };
        let path = tmp.join("trainer_state.json");
        let text = serde_json::to_string_pretty(&state).expect("JSON");
        std::fs::write(&path, text).map_err(io(&path))?;
        sync_tree(&tmp)?;
        if dir.exists() {
            std::fs::remove_dir_all(dir).map_err(io(dir))?;
        }
        std::fs::rename(&tmp, dir).map_err(io(dir))?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent);
        }
        Ok(())
    }
}

/// The step recorded in checkpoint directory `dir` if it is complete: every file
/// [`Trainer::save_checkpoint`] writes is there and `trainer_state.json` (written last)
/// parses. `None` for a half-written or foreign directory.
pub(crate) fn checkpoint_step(dir: &Path) -> Option<u64> {
    let files = ["config.json", "model.safetensors", "optimizer.safetensors"];
    if !files.iter().all(|f| dir.join(f).is_file()) {
        return None;
    }
    let text = std::fs::read_to_string(dir.join("trainer_state.json")).ok()?;
    let state: TrainerState = serde_json::from_str(&text).ok()?;
    Some(state.step)
}

/// Flushes every file in `dir` (one level) and the directory itself to disk.
fn sync_tree(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        if path.is_file() {
            // Opened for writing: Windows flushes only through a writable handle.
            std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .and_then(|f| f.sync_all())
                .map_err(io(&path))?;
        }
    }
    sync_dir(dir);
    Ok(())
}

/// Flushes a directory's entries to disk where the platform allows opening a
/// directory (best effort: a rename is atomic without it, only not yet durable).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(f) = std::fs::File::open(dir) {
        let _ = f.sync_all();
    }
}

fn f32_of(t: &Tensor) -> Result<&[f32]> {
    t.as_f32()
        .ok_or_else(|| Error::Input(format!("expected f32, got {}", t.dtype())))
}

fn f32_mut(t: &mut Tensor) -> Result<&mut [f32]> {
    let d = t.dtype();
    t.as_f32_mut()
        .ok_or_else(|| Error::Input(format!("expected f32, got {d}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshots_restore_the_loss_scale_and_old_trainer_states_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../autoglm-models/tests/fixtures/glm_gqa_bias");
        let config = TrainConfig {
            dtype: DType::F16,
            schedule: Schedule::Wsd,
            ..TrainConfig::default()
        };
        let mut t = Trainer::from_pretrained(&dir, config).unwrap();
        let snap = t.snapshot();
        t.loss_scale = Some(LossScale {
            scale: 8.0,
            good_steps: 3,
        });
        t.step = 5;
        t.config.steps = 7;
        t.restore(snap).unwrap();
        assert_eq!(t.loss_scale, Some(LossScale::new()));
        assert_eq!((t.step, t.config.steps), (0, 100));
        // A trainer state written before the WSD settings existed.
        let old = r#"{"step": 3, "config": {"steps": 8, "batch_size": 3, "grad_accum": 2,
            "lr": 0.003, "optimizer": {"kind": "adam_w", "betas": [0.9, 0.999], "eps": 1e-8,
            "weight_decay": 0.01}, "schedule": "cosine", "warmup_steps": 2, "clip_norm": 1.0,
            "shuffle": true, "seed": 7, "threads": 1, "max_len": null,
            "group_by_length": false, "checkpointing": false, "dtype": "f32"}}"#;
        let state: TrainerState = serde_json::from_str(old).unwrap();
        assert_eq!(state.config.schedule, Schedule::Cosine);
        assert_eq!(
            (state.config.decay_steps, state.config.min_lr_ratio),
            (0, 0.0)
        );
    }

    #[test]
    fn loss_scale_halves_on_overflow_and_doubles_after_2000_good_steps() {
        let mut s = LossScale::new();
        s.update(false);
        assert_eq!(s.scale, 32768.0);
        for _ in 0..1999 {
            s.update(true);
        }
        assert_eq!(s.scale, 32768.0);
        s.update(true);
        assert_eq!((s.scale, s.good_steps), (65536.0, 0));
        s.update(true);
        s.update(false);
        assert_eq!((s.scale, s.good_steps), (32768.0, 0));
    }
}
