//! A training run in an output directory, as Hugging Face's `Trainer` keeps one in
//! `output_dir`: the loss log `losses.jsonl` (one line per step), `checkpoint-STEP`
//! directories saved every N steps with the last K kept, exact resumption from the
//! latest complete checkpoint after a kill, and the final model in the Hugging Face
//! layout.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::num::{NonZeroU64, NonZeroUsize};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::Dataset;
use crate::error::{io, Error, Result};
use crate::trainer::{checkpoint_step, sync_dir, Control, StepReport, TrainConfig, Trainer};

/// The loss log's file name in a run directory.
pub const LOSS_LOG: &str = "losses.jsonl";

/// The prefix of checkpoint directories in a run directory (`checkpoint-STEP`).
pub const CHECKPOINT_PREFIX: &str = "checkpoint-";

/// The files [`RunOptions::copy_files_from`] copies beside the final model when the
/// source directory has them: the tokenizer and the generation settings.
pub const TOKENIZER_FILES: [&str; 4] = [
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
];

/// How a [`TrainRun`] checkpoints, resumes and finishes (transformers'
/// `save_steps`, `save_total_limit` and `resume_from_checkpoint=True`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Write `checkpoint-STEP` every this many steps (none: never). The last step
    /// writes the final model instead.
    pub save_every: Option<NonZeroU64>,
    /// Keep only this many checkpoints, the newest (none: all).
    pub keep_last: Option<NonZeroUsize>,
    /// Continue from the latest complete checkpoint in the directory, if there is
    /// one; otherwise (or when off) the run starts over.
    pub resume: bool,
    /// Copy the [`TOKENIZER_FILES`] this directory has (the source model's, say)
    /// beside the final model.
    pub copy_files_from: Option<PathBuf>,
}

/// A checkpoint directory of a run.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct CheckpointDir {
    /// The step in its name (`checkpoint-STEP`).
    pub step: u64,
    /// The directory.
    pub path: PathBuf,
}

impl CheckpointDir {
    /// Whether the checkpoint is complete: every file [`Trainer::save_checkpoint`]
    /// writes is there and its trainer state records the step of its name. A
    /// checkpoint half written by a killed process (or another tool) is not.
    pub fn is_complete(&self) -> bool {
        checkpoint_step(&self.path) == Some(self.step)
    }
}

/// The `checkpoint-STEP` directories in `dir` by step, complete or not (none when
/// `dir` does not exist).
///
/// # Errors
/// [`Error::Io`] if `dir` cannot be listed.
pub fn checkpoints(dir: &Path) -> Result<Vec<CheckpointDir>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(step) = name
            .to_str()
            .and_then(|n| n.strip_prefix(CHECKPOINT_PREFIX))
            .and_then(|s| s.parse().ok())
        else {
            continue;
        };
        if entry.path().is_dir() {
            out.push(CheckpointDir {
                step,
                path: entry.path(),
            });
        }
    }
    out.sort();
    Ok(out)
}

/// The newest complete checkpoint in `dir` (half-written ones skipped; see
/// [`CheckpointDir::is_complete`]).
///
/// # Errors
/// As [`checkpoints`].
pub fn latest_checkpoint(dir: &Path) -> Result<Option<CheckpointDir>> {
    Ok(checkpoints(dir)?
        .into_iter()
        .rev()
        .find(CheckpointDir::is_complete))
}

/// One line of a loss log: what a step did.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossRecord {
    /// Steps taken, this one included.
    pub step: u64,
    /// The step's mean cross-entropy (before the update).
    pub loss: f64,
    /// The learning rate the update used.
    pub lr: f64,
    /// The gradients' global norm before clipping (`null` in the file when not
    /// finite).
    #[serde(deserialize_with = "f64_or_null")]
    pub grad_norm: f64,
    /// The update was skipped (f16 gradients overflowed); written only when true.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub skipped: bool,
}

impl From<&StepReport> for LossRecord {
    fn from(r: &StepReport) -> LossRecord {
        LossRecord {
            step: r.step,
            loss: r.loss,
            lr: r.lr,
            grad_norm: r.grad_norm,
            skipped: r.skipped,
        }
    }
}

/// A number, or `null` (how JSON writes a value that is not finite) as NaN.
fn f64_or_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The records of loss log `path` (a run directory's [`LOSS_LOG`]), in file order.
///
/// # Errors
/// [`Error::Io`] if it cannot be read; [`Error::LossLog`] naming a malformed line.
pub fn read_loss_log(path: &Path) -> Result<Vec<LossRecord>> {
    let text = std::fs::read_to_string(path).map_err(io(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|source| Error::LossLog {
                path: path.to_owned(),
                line: i + 1,
                source,
            })
        })
        .collect()
}

/// Keeps the lines of loss log `path` up to step `step` (a resumed run rewrites the
/// rest; a line torn by a kill goes too), replacing the file atomically.
fn truncate_loss_log(path: &Path, step: u64) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io(path)(e)),
    };
    #[derive(Deserialize)]
    struct Step {
        step: u64,
    }
    let kept: String = text
        .lines()
        .filter(|l| serde_json::from_str::<Step>(l).is_ok_and(|s| s.step <= step))
        .map(|l| format!("{l}\n"))
        .collect();
    replace_file(path, kept.as_bytes())
}

/// Writes `path` through a temporary file beside it and a rename.
fn replace_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".tmp");
    let tmp = path.with_file_name(name);
    let mut f = File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Removes the checkpoints in `dir` that a run which has just saved the one of step
/// `saved` no longer needs: those of later steps (left by an earlier run in the same
/// directory), half-written ones, and, with `keep_last`, all but the newest
/// `keep_last`.
///
/// # Errors
/// [`Error::Io`] naming a directory that cannot be listed or removed.
fn rotate(dir: &Path, saved: u64, keep_last: Option<NonZeroUsize>) -> Result<()> {
    let all = checkpoints(dir)?;
    let (mine, stale): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|c| c.step <= saved && c.is_complete());
    let keep = keep_last.map_or(mine.len(), NonZeroUsize::get);
    let old = mine.len().saturating_sub(keep);
    for c in stale.iter().chain(&mine[..old]) {
        std::fs::remove_dir_all(&c.path).map_err(io(&c.path))?;
    }
    Ok(())
}

/// Removes what a killed [`Trainer::save_checkpoint`] left: `.checkpoint-STEP.tmp`
/// directories.
fn remove_partial_saves(dir: &Path) -> Result<()> {
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let partial = name.to_str().is_some_and(|n| {
            n.strip_prefix('.')
                .and_then(|n| n.strip_suffix(".tmp"))
                .is_some_and(|n| n.starts_with(CHECKPOINT_PREFIX))
        });
        if partial && entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path()).map_err(io(&entry.path()))?;
        }
    }
    Ok(())
}

/// A training run in an output directory that survives being killed: started, or
/// resumed from the latest complete `checkpoint-STEP` with the same loss curve.
///
/// [`TrainRun::open`] (or [`TrainRun::start_or_resume`]) finds the checkpoint, resumes
/// the [`Trainer`] from it and cuts `losses.jsonl` back to its step;
/// [`TrainRun::fit`] appends one [`LossRecord`] per step, writes checkpoints every
/// [`RunOptions::save_every`] steps keeping the last [`RunOptions::keep_last`],
/// and writes the final model (and the tokenizer files) into the directory.
///
/// Directory layout:
///
/// ```text
/// OUTPUT/
///   losses.jsonl          one LossRecord per line, steps 1, 2, …
///   checkpoint-STEP/      config.json, model.safetensors, optimizer.safetensors,
///                         trainer_state.json (Trainer::save_checkpoint)
///   config.json           the final model (Trainer::save_pretrained)
///   model.safetensors
///   tokenizer.json …      RunOptions::copy_files_from
/// ```
///
/// # Examples
///
/// ```
/// use std::num::{NonZeroU64, NonZeroUsize};
/// use autoglm_train::{Control, Dataset, Example, RunOptions, TrainConfig, TrainRun};
///
/// # fn main() -> autoglm_train::Result<()> {
/// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../autoglm-models/tests/fixtures/glm_gqa_bias");
/// let out = std::env::temp_dir().join(format!("autoglm-train-doc-{}", std::process::id()));
/// let config = TrainConfig { steps: 4, batch_size: 2, lr: 1e-3, ..TrainConfig::default() };
/// let options = RunOptions {
///     save_every: NonZeroU64::new(2),
///     keep_last: NonZeroUsize::new(1),
///     resume: true,
///     copy_files_from: Some(model.into()),
/// };
/// // A first call starts the run; after a kill the same call continues it.
/// let mut run = TrainRun::start_or_resume(&out, model.as_ref(), config, options)?;
/// assert!(run.resumed_from().is_none());
/// let example = Example { input_ids: vec![5, 6, 7, 8], labels: vec![5, 6, 7, 8] };
/// let data = Dataset { examples: vec![example.clone(), example], ..Dataset::default() };
/// let last = run.fit(&data, |_, r| {
///     println!("step {} loss {:.4}", r.step, r.loss);
///     Ok(Control::Continue)
/// })?;
/// assert_eq!(last.map(|r| r.step), Some(4));
/// assert_eq!(autoglm_train::read_loss_log(&run.loss_log())?.len(), 4);
/// assert!(out.join("checkpoint-2").is_dir() && out.join("tokenizer.json").is_file());
/// # std::fs::remove_dir_all(&out).ok();
/// # Ok(()) }
/// ```
pub struct TrainRun {
    dir: PathBuf,
    options: RunOptions,
    trainer: Trainer,
    resumed_from: Option<CheckpointDir>,
    log: File,
}

impl std::fmt::Debug for TrainRun {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainRun")
            .field("dir", &self.dir)
            .field("options", &self.options)
            .field("trainer", &self.trainer)
            .field("resumed_from", &self.resumed_from)
            .finish_non_exhaustive()
    }
}

impl TrainRun {
    /// The run in `dir` training the Hugging Face checkpoint in `model` with
    /// `config`, or, with [`RunOptions::resume`] and a complete checkpoint in `dir`,
    /// that run continued: its saved settings, with `steps`, `decay_steps` (the plan
    /// of a [`crate::Schedule::Wsd`] run: a checkpoint of its stable phase continues
    /// into a longer plan exactly) and `threads` from `config` (the others fix the
    /// loss curve; change them with [`TrainRun::open`]'s `adjust`).
    ///
    /// # Errors
    /// As [`TrainRun::open`] and [`Trainer::from_pretrained`].
    pub fn start_or_resume(
        dir: &Path,
        model: &Path,
        config: TrainConfig,
        options: RunOptions,
    ) -> Result<TrainRun> {
        let (steps, decay_steps, threads) = (config.steps, config.decay_steps, config.threads);
        TrainRun::open(
            dir,
            options,
            || Trainer::from_pretrained(model, config),
            |c| {
                c.steps = steps;
                c.decay_steps = decay_steps;
                c.threads = threads;
            },
        )
    }

    /// The run in `dir` (created if needed). With [`RunOptions::resume`] and a
    /// complete checkpoint there ([`latest_checkpoint`]), the trainer is
    /// [`Trainer::resume_with`] it (settings adjusted by `adjust`) and the loss log is
    /// cut back to its step. Otherwise the trainer is `start()`'s, the loss log is
    /// emptied and the checkpoints of an earlier run in `dir` are removed (a later
    /// resume must not pick them up). Leftovers of a killed checkpoint save go either
    /// way.
    ///
    /// # Errors
    /// [`Error::Resume`] naming the checkpoint that could not be resumed; `start`'s
    /// error; [`Error::Io`] naming a file or directory that could not be read or
    /// written.
    pub fn open(
        dir: &Path,
        options: RunOptions,
        start: impl FnOnce() -> Result<Trainer>,
        adjust: impl FnOnce(&mut TrainConfig),
    ) -> Result<TrainRun> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        remove_partial_saves(dir)?;
        let log_path = dir.join(LOSS_LOG);
        let latest = if options.resume {
            latest_checkpoint(dir)?
        } else {
            None
        };
        let trainer = match &latest {
            Some(ck) => {
                let t = Trainer::resume_with(&ck.path, adjust).map_err(|e| Error::Resume {
                    path: ck.path.clone(),
                    source: Box::new(e),
                })?;
                truncate_loss_log(&log_path, ck.step)?;
                t
            }
            None => {
                let t = start()?;
                for c in checkpoints(dir)? {
                    std::fs::remove_dir_all(&c.path).map_err(io(&c.path))?;
                }
                std::fs::write(&log_path, "").map_err(io(&log_path))?;
                t
            }
        };
        let log = OpenOptions::new()
            .append(true)
            .create(true)
            .open(&log_path)
            .map_err(io(&log_path))?;
        Ok(TrainRun {
            dir: dir.to_owned(),
            options,
            trainer,
            resumed_from: latest,
            log,
        })
    }

    /// The checkpoint the run continued from (none for a fresh start).
    pub fn resumed_from(&self) -> Option<&CheckpointDir> {
        self.resumed_from.as_ref()
    }

    /// The run directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The loss log's path (`DIR/losses.jsonl`).
    pub fn loss_log(&self) -> PathBuf {
        self.dir.join(LOSS_LOG)
    }

    /// The options.
    pub fn options(&self) -> &RunOptions {
        &self.options
    }

    /// The trainer (its settings, step, weights).
    pub fn trainer(&self) -> &Trainer {
        &self.trainer
    }

    /// The trainer, to change before [`TrainRun::fit`] ([`Trainer::set_steps`], say).
    pub fn trainer_mut(&mut self) -> &mut Trainer {
        &mut self.trainer
    }

    /// The trainer, the run's files left as they are.
    pub fn into_trainer(self) -> Trainer {
        self.trainer
    }

    /// Trains on `data` up to the configured steps ([`Trainer::fit`]). After each step
    /// the step's [`LossRecord`] is appended to the loss log, a due checkpoint is
    /// written and the old ones rotated out, then `on_step` is called (it may stop the
    /// run). At the end the final model is written to the run directory
    /// ([`Trainer::save_pretrained`]) with the files of [`RunOptions::copy_files_from`].
    ///
    /// Returns the last step's report (none if no step was left to take).
    ///
    /// # Errors
    /// As [`Trainer::fit`] and `on_step`; [`Error::Io`] / [`Error::Model`] naming what
    /// could not be written; [`Error::Copy`] for a file that could not be copied.
    pub fn fit(
        &mut self,
        data: &Dataset,
        on_step: impl FnMut(&mut Trainer, &StepReport) -> Result<Control>,
    ) -> Result<Option<StepReport>> {
        let last = self.fit_steps(data, u64::MAX, on_step)?;
        self.finish()?;
        Ok(last)
    }

    /// [`TrainRun::fit`] up to step `until` at most (a rung of a
    /// [`crate::Schedule::Wsd`] run's stable phase, say): steps are logged and due
    /// checkpoints written as by `fit`, but the final model is written only when the
    /// run reaches its configured length. Save the rung with
    /// [`TrainRun::save_checkpoint`] and score it with
    /// [`Trainer::cooldown_branch`] (through [`TrainRun::trainer_mut`]; the branch's
    /// steps are not logged).
    ///
    /// Returns the last step's report (none if no step was left to take).
    ///
    /// # Errors
    /// As [`TrainRun::fit`].
    pub fn fit_to(
        &mut self,
        data: &Dataset,
        until: u64,
        on_step: impl FnMut(&mut Trainer, &StepReport) -> Result<Control>,
    ) -> Result<Option<StepReport>> {
        let last = self.fit_steps(data, until, on_step)?;
        if self.trainer.steps_done() >= self.trainer.config().steps {
            self.finish()?;
        }
        Ok(last)
    }

    /// Writes `checkpoint-STEP` for the trainer's current step now (the state at a
    /// rung, so a killed search loses no finished rung) and removes the checkpoints
    /// [`RunOptions::keep_last`] no longer keeps.
    ///
    /// # Errors
    /// As [`Trainer::save_checkpoint`]; [`Error::Io`] naming a checkpoint that could
    /// not be removed.
    pub fn save_checkpoint(&self) -> Result<CheckpointDir> {
        let step = self.trainer.steps_done();
        let path = self.dir.join(format!("{CHECKPOINT_PREFIX}{step}"));
        self.trainer.save_checkpoint(&path)?;
        rotate(&self.dir, step, self.options.keep_last)?;
        Ok(CheckpointDir { step, path })
    }

    /// The loop of [`TrainRun::fit`] and [`TrainRun::fit_to`]: log, checkpoint, call.
    fn fit_steps(
        &mut self,
        data: &Dataset,
        until: u64,
        mut on_step: impl FnMut(&mut Trainer, &StepReport) -> Result<Control>,
    ) -> Result<Option<StepReport>> {
        let total = self.trainer.config().steps;
        let (dir, options, log) = (&self.dir, &self.options, &mut self.log);
        let log_path = dir.join(LOSS_LOG);
        let mut last = None;
        self.trainer.fit_to(data, until, |t, r| {
            last = Some(*r);
            let mut line = serde_json::to_string(&LossRecord::from(r)).expect("JSON");
            line.push('\n');
            log.write_all(line.as_bytes())
                .and_then(|()| log.flush())
                .map_err(io(&log_path))?;
            if options
                .save_every
                .is_some_and(|k| r.step % k.get() == 0 && r.step < total)
            {
                let ck = dir.join(format!("{CHECKPOINT_PREFIX}{}", r.step));
                t.save_checkpoint(&ck)?;
                rotate(dir, r.step, options.keep_last)?;
            }
            on_step(t, r)
        })?;
        Ok(last)
    }

    /// Writes the final model and the files of [`RunOptions::copy_files_from`].
    fn finish(&self) -> Result<()> {
        self.trainer.save_pretrained(&self.dir)?;
        if let Some(from) = &self.options.copy_files_from {
            for f in TOKENIZER_FILES {
                let src = from.join(f);
                if src.exists() {
                    let to = self.dir.join(f);
                    std::fs::copy(&src, &to).map_err(|source| Error::Copy {
                        from: src.clone(),
                        to,
                        source,
                    })?;
                }
            }
        }
        sync_dir(&self.dir);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `checkpoint-STEP` directory with the files of a complete one (empty weights),
    /// the trainer state saying `state_step`, and without `missing`.
    fn fake_checkpoint(dir: &Path, step: u64, state_step: u64, missing: Option<&str>) {
        let ck = dir.join(format!("checkpoint-{step}"));
        std::fs::create_dir_all(&ck).unwrap();
        for f in ["config.json", "model.safetensors", "optimizer.safetensors"] {
            std::fs::write(ck.join(f), "").unwrap();
        }
        let state = serde_json::json!({ "step": state_step, "config": TrainConfig::default() });
        std::fs::write(ck.join("trainer_state.json"), state.to_string()).unwrap();
        if let Some(f) = missing {
            std::fs::remove_file(ck.join(f)).unwrap();
        }
    }

    fn steps(dir: &Path) -> Vec<u64> {
        checkpoints(dir).unwrap().iter().map(|c| c.step).collect()
    }

    #[test]
    fn rotation_keeps_the_newest_and_drops_later_steps_of_an_earlier_run() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        for s in [2, 4, 6, 8, 50] {
            fake_checkpoint(dir, s, s, None);
        }
        fake_checkpoint(dir, 7, 7, Some("trainer_state.json"));
        std::fs::create_dir(dir.join("checkpoint-x")).unwrap();
        std::fs::write(dir.join("checkpoint-12"), "a file, not a checkpoint").unwrap();
        assert_eq!(steps(dir), [2, 4, 6, 7, 8, 50]);
        rotate(dir, 8, NonZeroUsize::new(2)).unwrap();
        assert_eq!(steps(dir), [6, 8]);
        assert!(dir.join("checkpoint-x").is_dir() && dir.join("checkpoint-12").is_file());
        fake_checkpoint(dir, 10, 10, None);
        rotate(dir, 10, None).unwrap();
        assert_eq!(steps(dir), [6, 8, 10]);
        rotate(dir, 10, NonZeroUsize::new(1)).unwrap();
        assert_eq!(steps(dir), [10]);
        // A resumed run that saves an earlier step again drops the later ones.
        rotate(dir, 6, NonZeroUsize::new(5)).unwrap();
        assert_eq!(steps(dir), Vec::<u64>::new());
    }

    #[test]
    fn half_written_checkpoints_are_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path();
        assert_eq!(latest_checkpoint(&dir.join("absent")).unwrap(), None);
        fake_checkpoint(dir, 4, 4, None);
        fake_checkpoint(dir, 8, 8, Some("trainer_state.json"));
        fake_checkpoint(dir, 12, 12, Some("optimizer.safetensors"));
        fake_checkpoint(dir, 16, 16, None);
        std::fs::write(dir.join("checkpoint-16/trainer_state.json"), "{\"step\": 1").unwrap();
        fake_checkpoint(dir, 20, 3, None);
        std::fs::create_dir(dir.join("checkpoint-24")).unwrap();
        let latest = latest_checkpoint(dir).unwrap().unwrap();
        assert_eq!(latest.step, 4);
        assert_eq!(latest.path, dir.join("checkpoint-4"));
        // A killed save's temporary directory is not a checkpoint and is cleared.
        std::fs::create_dir(dir.join(".checkpoint-28.tmp")).unwrap();
        std::fs::create_dir(dir.join(".other.tmp")).unwrap();
        assert_eq!(steps(dir), [4, 8, 12, 16, 20, 24]);
        remove_partial_saves(dir).unwrap();
        assert!(!dir.join(".checkpoint-28.tmp").exists() && dir.join(".other.tmp").exists());
    }

    #[test]
    fn truncation_keeps_steps_up_to_the_checkpoint_and_drops_a_torn_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(LOSS_LOG);
        let lines = [
            r#"{"step":1,"loss":2.5,"lr":0.0,"grad_norm":1.25}"#,
            r#"{"step":2,"loss":2.25,"lr":0.001,"grad_norm":null,"skipped":true}"#,
            r#"{"step":3,"loss":2.0,"lr":0.001,"grad_norm":0.5}"#,
        ];
        std::fs::write(
            &path,
            format!(
                "{}\n{}\n{}\n{{\"step\":4,\"lo",
                lines[0], lines[1], lines[2]
            ),
        )
        .unwrap();
        truncate_loss_log(&path, 2).unwrap();
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            format!("{}\n{}\n", lines[0], lines[1])
        );
        let records = read_loss_log(&path).unwrap();
        assert!(records[1].skipped && records[1].grad_norm.is_nan());
        // Records write back as they were read.
        assert_eq!(serde_json::to_string(&records[0]).unwrap(), lines[0]);
        std::fs::write(&path, "{\"step\":1}\n").unwrap();
        let e = read_loss_log(&path).unwrap_err();
        assert!(matches!(e, Error::LossLog { line: 1, .. }), "{e}");
        truncate_loss_log(&tmp.path().join("absent"), 3).unwrap();
    }
}
