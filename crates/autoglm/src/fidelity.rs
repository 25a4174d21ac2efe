//! One rung of a multi-fidelity trial (`search.hyperband`): continue the trial's
//! warmup-stable-decay run from its checkpoint to the rung's constant-rate steps,
//! save the checkpoint, branch a cooldown and score it — minus the dev loss below
//! the top rung, the search's metric from generated dev outputs at the top rung.

use std::path::Path;
use std::time::Instant;

use autoglm_train::{Control, Schedule, Trainer};

use crate::error::{Error, Result};
use crate::trial::{
    initial, parameter_count, score_dev, train_config, Decoding, Hyper, Outcome, Progress,
    Structure, Trained, TrialData,
};

/// Steps of one rung: the constant-rate phase ends at `stable`, then `cooldown` steps
/// decay the rate; `warmup` steps open the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RungSteps {
    /// Constant-rate steps the trial had at its previous rung (0: a fresh start).
    pub from: u64,
    /// Constant-rate steps at the end of the rung (from the run's start).
    pub stable: u64,
    /// Steps of the cooldown branch that scores the rung.
    pub cooldown: u64,
    /// Warm-up steps of the run.
    pub warmup: u64,
}

impl RungSteps {
    /// A rung from `from` to `stable` constant-rate steps with a cooldown of `share` ×
    /// `stable` steps (at least one).
    pub(crate) fn new(from: u64, stable: u64, share: f64, warmup: u64) -> RungSteps {
        RungSteps {
            from,
            stable,
            cooldown: cooldown_steps(share, stable),
            warmup,
        }
    }
}

/// The cooldown of a rung of `stable` constant-rate steps: `share` of them, at least
/// one.
pub(crate) fn cooldown_steps(share: f64, stable: u64) -> u64 {
    ((share * stable as f64).round() as u64).max(1)
}

/// How a rung runs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RungOptions<'a> {
    /// Seed of the initial weights and the data order.
    pub seed: u64,
    /// Kernel threads.
    pub threads: usize,
    /// The search's end: a rung still training then stops unscored.
    pub deadline: Option<Instant>,
    /// The trial's checkpoint (its constant-rate phase at its last rung).
    pub checkpoint: &'a Path,
    /// Whether this is the top rung (scored by generation, the model kept).
    pub top: bool,
    /// How the top rung generates dev outputs.
    pub decoding: &'a Decoding,
}

/// What a rung measured.
#[derive(Debug)]
pub(crate) struct Rung {
    /// Dev loss after the cooldown.
    pub dev_loss: f64,
    /// The cooled-down model, scored on dev (top rung only).
    pub trained: Option<Trained>,
    /// Seconds per training step of this rung (constant-rate and cooldown steps).
    pub seconds_per_step: f64,
    /// Seconds of scoring (the dev loss, and generation at the top rung).
    pub score_seconds: f64,
}

/// Runs one rung of `structure` × `hyper` from the trial's checkpoint (a fresh start
/// when there is none and `steps.from` is 0) to `steps.stable`, calling `on` after
/// every step. `None` when the deadline stopped it.
///
/// # Errors
/// A continued trial without its checkpoint, or one at a step outside the rung;
/// training, generation and I/O errors.
pub(crate) fn rung(
    data: &TrialData<'_>,
    structure: &Structure,
    hyper: &Hyper,
    steps: RungSteps,
    opts: RungOptions<'_>,
    mut on: impl FnMut(Progress),
) -> Result<Option<Rung>> {
    let started = Instant::now();
    let ck = opts.checkpoint;
    let from_stable = steps.from;
    let mut trainer = if ck.join("trainer_state.json").exists() {
        let t = Trainer::resume_with(ck, |c| c.threads = opts.threads)?;
        if t.steps_done() < from_stable || t.steps_done() > steps.stable {
            return Err(Error::Input(format!(
                "{}: the checkpoint is at step {}, the rung runs from step {from_stable} to {}",
                ck.display(),
                t.steps_done(),
                steps.stable
            )));
        }
        t
    } else if from_stable == 0 {
        let (config, weights, _) = initial(data, structure, opts.seed)?;
        let tc = train_config(
            hyper,
            Schedule::Wsd,
            steps.stable + steps.cooldown,
            steps.warmup,
            opts.seed,
            opts.threads,
        );
        Trainer::new(config, weights, tc)?
    } else {
        return Err(Error::Input(format!(
            "{}: no checkpoint to continue from (step {from_stable})",
            ck.display()
        )));
    };
    trainer.plan_cooldown(steps.stable, steps.cooldown)?;
    let config = trainer.model_config().clone();
    let total = steps.stable + steps.cooldown;
    let late = || opts.deadline.is_some_and(|d| Instant::now() >= d);
    let mut stopped = false;
    let (step0, fit0) = (trainer.steps_done(), Instant::now());
    trainer.fit_to(data.train, steps.stable, |_, r| {
        on(Progress::Step {
            step: r.step,
            steps: total,
            loss: r.loss,
        });
        if late() {
            stopped = true;
            return Ok(Control::Stop);
        }
        Ok(Control::Continue)
    })?;
    if stopped {
        return Ok(None);
    }
    if let Some(parent) = ck.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    trainer.save_checkpoint(ck)?;
    let top = opts.top;
    let mut trained_at = Instant::now();
    let (dev_loss, train_loss, cooled) =
        trainer.cooldown_branch(steps.cooldown, data.train, |t, reports| {
            trained_at = Instant::now();
            let loss = t.eval_loss(data.dev_loss)?;
            let last = reports.last().map_or(f64::NAN, |r| r.loss);
            Ok((loss, last, top.then(|| t.weights())))
        })?;
    on(Progress::Eval {
        step: total,
        steps: total,
        dev_loss,
    });
    let peak_step_bytes = trainer.peak_step_bytes();
    let trained = match cooled {
        Some(weights) => {
            let parameters = parameter_count(&config, &weights);
            let (dev, ms, outs) =
                score_dev(data, &config, weights.clone(), opts.decoding, opts.threads)?;
            Some(Trained {
                outcome: Outcome {
                    curve: vec![(total, dev_loss)],
                    train_loss,
                    steps: total,
                    stopped: false,
                    dev: Some(dev),
                    parameters,
                    ms_per_token: Some(ms),
                    peak_step_bytes,
                    seconds: started.elapsed().as_secs_f64(),
                },
                config,
                weights,
                dev_outputs: outs,
            })
        }
        None => None,
    };
    let trained_steps = (steps.stable - step0 + steps.cooldown).max(1);
    Ok(Some(Rung {
        dev_loss,
        trained,
        seconds_per_step: (trained_at - fit0).as_secs_f64() / trained_steps as f64,
        score_seconds: trained_at.elapsed().as_secs_f64(),
    }))
}
