//! One trial: a GLM of a chosen structure, initialised from a seed, trained on the
//! task's examples with chosen hyperparameters, its dev loss reported as it trains
//! (so a pruner can stop it), then scored on dev by generating text and computing
//! BLEU (sacrebleu 13a, mixed case, all references) and ROUGE-L (rouge-score
//! `score_multi`, no stemmer, mean F over inputs).

use std::time::Instant;

use autoglm_eval::{
    bootstrap_aggregate, corpus_bleu, paired_bootstrap, Bleu, BleuConfig, Corpus, RougeConfig,
    RougeScorer, RougeType, Seed,
};
use autoglm_models::{init_weights, GenerationOptions, LoadOptions, Model, ModelConfig};
use autoglm_train::{Control, Dataset, Example, Schedule, TrainConfig, Trainer};
use serde::{Deserialize, Serialize};

use crate::data::Item;
use crate::error::{Error, Result};
use crate::tokenizer::TaskTokenizer;

/// A decoder's structure (a `glm` model, SwiGLU, RMSNorm, rotary).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Structure {
    /// Decoder layers.
    pub layers: usize,
    /// Width of the residual stream.
    pub hidden: usize,
    /// Query heads (dividing `hidden`).
    pub heads: usize,
    /// Key/value heads (dividing `heads`).
    pub kv_heads: usize,
    /// MLP width.
    pub intermediate: usize,
    /// Share of each head's dims that rotate.
    pub rotary: f64,
    /// The output head shares the embedding.
    pub tie_embeddings: bool,
}

impl Structure {
    /// Multiply-adds of one forward pass per token, for a vocabulary and a mean
    /// sequence length: the attention and SwiGLU projections, the attention scores
    /// and weighted values over half the sequence on average (causal), and the
    /// output head. Training costs about three times this; only ratios are used.
    pub fn macs_per_token(&self, vocab: usize, mean_len: f64) -> f64 {
        let h = self.hidden as f64;
        let kv = (self.kv_heads * (self.hidden / self.heads.max(1))) as f64;
        let per_layer = 2.0 * h * h
            + 2.0 * h * kv
            + 3.0 * h * self.intermediate as f64
            + 2.0 * h * mean_len / 2.0;
        self.layers as f64 * per_layer + h * vocab as f64
    }

    /// The model configuration for a vocabulary and a longest sequence, as a
    /// transformers `GlmForCausalLM` `config.json` reads.
    ///
    /// # Errors
    /// [`Error::Input`] for heads that do not divide the width, key/value heads
    /// that do not divide the heads, or a rotary share giving an odd dimension.
    pub fn config(&self, tok: &TaskTokenizer, max_len: usize) -> Result<ModelConfig> {
        let bad = |m: String| Err(Error::Input(format!("structure {self:?}: {m}")));
        if self.heads == 0 || !self.hidden.is_multiple_of(self.heads) {
            return bad("the heads do not divide the width".into());
        }
        if self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return bad("the key/value heads do not divide the heads".into());
        }
        let d = self.hidden / self.heads;
        let rot = d as f64 * self.rotary;
        if rot.fract() != 0.0 || !(rot as usize).is_multiple_of(2) {
            return bad(format!(
                "a rotary share of {} of {d} dims is not even",
                self.rotary
            ));
        }
        let [pad, bos, eos, _] = tok.special_ids();
        let json = serde_json::json!({
            "architectures": ["GlmForCausalLM"],
            "model_type": "glm",
            "vocab_size": tok.vocab_size(),
            "hidden_size": self.hidden,
            "num_hidden_layers": self.layers,
            "num_attention_heads": self.heads,
            "num_key_value_heads": self.kv_heads,
            "head_dim": d,
            "intermediate_size": self.intermediate,
            "partial_rotary_factor": self.rotary,
            "rope_theta": 10000.0,
            "rms_norm_eps": 1e-5,
            "hidden_act": "silu",
            "attention_bias": false,
            "max_position_embeddings": max_len,
            "tie_word_embeddings": self.tie_embeddings,
            "initializer_range": 0.02,
            "pad_token_id": pad,
            "bos_token_id": bos,
            "eos_token_id": eos,
        });
        ModelConfig::from_json(&json.to_string(), "config.json".as_ref()).map_err(Error::from)
    }
}

/// Training hyperparameters of a trial.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hyper {
    /// Peak learning rate (AdamW, cosine decay after a linear warm-up).
    pub lr: f64,
    /// Examples per step.
    pub batch_size: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Share of the steps spent warming up.
    pub warmup: f64,
    /// AdamW's decoupled weight decay.
    pub weight_decay: f64,
}

/// How dev and test outputs are generated. `num_beams` and `length_penalty` may each
/// be a list: trials decode with the first values, and after the search every
/// combination is tried on all of dev and the best (by the search's metric) decodes
/// the test set and goes into the export's `generation_config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Decoding {
    /// New tokens per output at most.
    #[serde(default = "default_max_new")]
    pub max_new_tokens: usize,
    /// Rows generated together (beam search runs `num_beams` rows per input).
    #[serde(default = "default_gen_batch")]
    pub batch_size: usize,
    /// Repetition penalty (1: off).
    #[serde(default = "one")]
    pub repetition_penalty: f32,
    /// Beams (1: greedy decoding).
    #[serde(default = "default_beams")]
    pub num_beams: OneOrMany<usize>,
    /// Beam search's length penalty: a finished output's summed log-probability is
    /// divided by its length to this power (transformers' `length_penalty`).
    #[serde(default = "default_length_penalty")]
    pub length_penalty: OneOrMany<f32>,
}

/// One value, or a list of values to choose from on dev.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany<T> {
    /// A value.
    One(T),
    /// Values to choose from (the first one during the search).
    Many(Vec<T>),
}

impl<T: Copy> OneOrMany<T> {
    /// The values, in order.
    pub fn values(&self) -> Vec<T> {
        match self {
            OneOrMany::One(x) => vec![*x],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

fn default_max_new() -> usize {
    96
}
fn default_gen_batch() -> usize {
    32
}
fn one() -> f32 {
    1.0
}
fn default_beams() -> OneOrMany<usize> {
    OneOrMany::One(4)
}
fn default_length_penalty() -> OneOrMany<f32> {
    OneOrMany::One(1.0)
}

impl Default for Decoding {
    fn default() -> Self {
        Decoding {
            max_new_tokens: default_max_new(),
            batch_size: default_gen_batch(),
            repetition_penalty: 1.0,
            num_beams: default_beams(),
            length_penalty: default_length_penalty(),
        }
    }
}

impl Decoding {
    /// Every combination of the listed values, each with single values, the
    /// search's (first values) first.
    pub fn candidates(&self) -> Vec<Decoding> {
        let mut v = Vec::new();
        for b in self.num_beams.values() {
            for lp in self.length_penalty.values() {
                v.push(Decoding {
                    num_beams: OneOrMany::One(b),
                    length_penalty: OneOrMany::One(lp),
                    ..self.clone()
                });
            }
        }
        v
    }

    /// Checks the values.
    ///
    /// # Errors
    /// [`Error::Task`] naming the field.
    pub fn validate(&self) -> Result<()> {
        let bad = |f: &str, why: &str| Err(Error::Task(format!("search.decoding.{f}: {why}")));
        let beams = self.num_beams.values();
        if beams.is_empty() || beams.contains(&0) {
            return bad("num_beams", "one or more values, each at least 1");
        }
        let lps = self.length_penalty.values();
        if lps.is_empty() || lps.iter().any(|x| !x.is_finite()) {
            return bad("length_penalty", "one or more finite values");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty", "must be > 0");
        }
        if self.max_new_tokens == 0 || self.batch_size == 0 {
            return bad("max_new_tokens / batch_size", "must be at least 1");
        }
        Ok(())
    }

    fn beams(&self) -> usize {
        self.num_beams.values().first().copied().unwrap_or(1).max(1)
    }

    fn penalty(&self) -> f32 {
        self.length_penalty.values().first().copied().unwrap_or(1.0)
    }
}

/// Scores of generated text against references.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// Corpus BLEU (sacrebleu 13a, mixed case, every reference).
    pub bleu: f64,
    /// Mean ROUGE-L F over inputs (rouge-score `score_multi`, no stemmer).
    pub rouge_l: f64,
}

/// BLEU and ROUGE-L of `hyps` against `refs`.
///
/// # Errors
/// [`Error::Eval`] for an input without references.
pub fn score(hyps: &[String], refs: &[Vec<String>]) -> Result<Scores> {
    let bleu = corpus_bleu(hyps, refs, &BleuConfig::default())?.score;
    let rouge = RougeScorer::new(&[RougeType::L], RougeConfig::default())?;
    let mut total = 0.0;
    for (h, r) in hyps.iter().zip(refs) {
        let r: Vec<&str> = r.iter().map(String::as_str).collect();
        total += rouge.score_multi(&r, h)?[0].fmeasure;
    }
    Ok(Scores {
        bleu,
        rouge_l: total / hyps.len().max(1) as f64,
    })
}

/// Bootstrap intervals of a system's test scores and its paired test against a
/// baseline's outputs.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Intervals {
    /// BLEU by sacrebleu's paired bootstrap against the baseline (1000 resamples,
    /// seed 12345): the system's mean over the resamples…
    pub bleu_mean: f64,
    /// …the half-width of its 95 % interval…
    pub bleu_ci: f64,
    /// …and the two-sided p-value of the difference to the baseline.
    pub bleu_p: f64,
    /// ROUGE-L F-measure by rouge-score's `BootstrapAggregator` (1000 resamples,
    /// seed 12345): the 2.5th percentile of the resampled means…
    pub rouge_l_low: f64,
    /// …and the 97.5th.
    pub rouge_l_high: f64,
}

/// Resamples used for [`intervals`].
const BOOTSTRAP: usize = 1000;

/// The 95 % bootstrap intervals of `hyps`' BLEU and ROUGE-L against `refs`, and the
/// paired bootstrap test of `hyps` against `baseline` on BLEU.
///
/// # Errors
/// Metric errors (no lines, a line without references).
pub fn intervals(hyps: &[String], baseline: &[String], refs: &[Vec<String>]) -> Result<Intervals> {
    let bleu = Bleu::new(BleuConfig::default())?;
    let (mut sys, mut bl) = (Corpus::new(&bleu), Corpus::new(&bleu));
    for ((h, b), r) in hyps.iter().zip(baseline).zip(refs) {
        let r: Vec<&str> = r.iter().map(String::as_str).collect();
        sys.add(h, &r)?;
        bl.add(b, &r)?;
    }
    let paired = paired_bootstrap(
        &bleu,
        bl.line_stats(),
        sys.line_stats(),
        BOOTSTRAP,
        Seed::default(),
    )?;
    let rouge = RougeScorer::new(&[RougeType::L], RougeConfig::default())?;
    let mut lines = Vec::with_capacity(hyps.len());
    for (h, r) in hyps.iter().zip(refs) {
        let r: Vec<&str> = r.iter().map(String::as_str).collect();
        lines.push(rouge.score_multi(&r, h)?[0]);
    }
    let agg = bootstrap_aggregate(&[&lines], BOOTSTRAP, 0.95, Seed::default().0)?;
    Ok(Intervals {
        bleu_mean: paired.system_mean.unwrap_or(paired.system_score),
        bleu_ci: paired.system_ci.unwrap_or(0.0),
        bleu_p: paired.p_value,
        rouge_l_low: agg[0].low.fmeasure,
        rouge_l_high: agg[0].high.fmeasure,
    })
}

/// Outputs of `model` for `inputs` (greedy, or beam search with `num_beams` > 1;
/// the first listed values), and the decoding time per new token.
///
/// # Errors
/// Tokenizer and model errors.
pub fn generate(
    model: &mut Model,
    tok: &TaskTokenizer,
    inputs: &[String],
    decoding: &Decoding,
) -> Result<(Vec<String>, f64)> {
    // The task's `</s>` ends an output, whatever a fine-tuned checkpoint's config says.
    let stop = vec![tok.special_ids()[2]];
    let options = GenerationOptions {
        num_beams: decoding.beams(),
        max_new_tokens: decoding.max_new_tokens,
        length_penalty: decoding.penalty(),
        repetition_penalty: decoding.repetition_penalty,
        stop_tokens: stop,
        ..GenerationOptions::default()
    };
    let mut out = Vec::with_capacity(inputs.len());
    let (mut tokens, started) = (0usize, Instant::now());
    // Beam search runs `num_beams` rows per prompt: fewer prompts per batch.
    let per_batch = (decoding.batch_size / options.num_beams).max(1);
    for chunk in inputs.chunks(per_batch) {
        let prompts = chunk
            .iter()
            .map(|i| tok.prompt(i))
            .collect::<Result<Vec<_>>>()?;
        let outs = model.generate(&prompts, &options, |_, _| {})?;
        for ids in outs {
            tokens += ids.len();
            out.push(tok.decode(&ids)?.trim().to_owned());
        }
    }
    Ok((
        out,
        started.elapsed().as_secs_f64() * 1e3 / tokens.max(1) as f64,
    ))
}

/// What a trial measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Outcome {
    /// Dev loss by step, at each evaluation.
    pub curve: Vec<(u64, f64)>,
    /// Training loss of the last step.
    pub train_loss: f64,
    /// Steps taken (fewer than asked when stopped).
    pub steps: u64,
    /// Whether the callback stopped it.
    pub stopped: bool,
    /// Dev scores (none when stopped).
    pub dev: Option<Scores>,
    /// Parameters.
    pub parameters: usize,
    /// Decoding time per new token on dev, ms (batched, the search's first decoding
    /// settings).
    pub ms_per_token: Option<f64>,
    /// Peak bytes of a training step.
    pub peak_step_bytes: usize,
    /// Seconds spent.
    pub seconds: f64,
}

/// A trained trial: its outcome, configuration and weights.
#[derive(Debug)]
pub struct Trained {
    /// What it measured.
    pub outcome: Outcome,
    /// The model's configuration.
    pub config: ModelConfig,
    /// Its weights (graph layout).
    pub weights: std::collections::BTreeMap<String, autoglm_ops::Tensor>,
    /// Dev outputs (none when stopped).
    pub dev_outputs: Vec<String>,
}

/// The examples of `items` (one per reference).
///
/// # Errors
/// Tokenizer errors.
pub fn item_examples(tok: &TaskTokenizer, items: &[Item]) -> Result<Vec<Example>> {
    let mut v = Vec::new();
    for it in items {
        for r in &it.references {
            v.push(tok.example(&it.input, r)?);
        }
    }
    Ok(v)
}

/// Everything a trial runs on.
#[derive(Debug)]
pub struct TrialData<'a> {
    /// The tokenizer.
    pub tok: &'a TaskTokenizer,
    /// Training examples.
    pub train: &'a Dataset,
    /// Dev examples for the loss (one per reference).
    pub dev_loss: &'a Dataset,
    /// Dev items for generation.
    pub dev: &'a [Item],
    /// Longest example.
    pub max_len: usize,
    /// A checkpoint to fine-tune instead of a structure trained from scratch.
    pub base: Option<&'a Base>,
}

/// A local checkpoint to fine-tune: its configuration and weights.
pub struct Base {
    /// Its configuration.
    pub config: ModelConfig,
    /// Its weights (graph layout).
    pub weights: std::collections::BTreeMap<String, autoglm_ops::Tensor>,
}

impl std::fmt::Debug for Base {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Base")
            .field("config", &self.config)
            .field("weights", &self.weights.len())
            .finish()
    }
}

impl Base {
    /// Reads `dir/config.json` and the checkpoint's weights.
    ///
    /// # Errors
    /// Model errors naming the file, field or tensor.
    pub fn load(dir: &std::path::Path) -> Result<Base> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let ck = autoglm_models::Checkpoint::open(dir)?;
        let weights = autoglm_models::load_weights(&config, &ck)?;
        Ok(Base { config, weights })
    }

    /// The checkpoint's structure, described as a searched one is.
    pub fn structure(&self) -> Structure {
        let c = &self.config;
        Structure {
            layers: c.num_layers,
            hidden: c.hidden_size,
            heads: c.num_heads,
            kv_heads: c.num_kv_heads,
            intermediate: c.intermediate_size,
            rotary: c.rotary_dim as f64 / c.head_dim.max(1) as f64,
            tie_embeddings: c.tie_word_embeddings,
        }
    }
}

/// How a trial runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunOptions {
    /// Seed of the initial weights and the data order.
    pub seed: u64,
    /// Kernel threads.
    pub threads: usize,
    /// Dev-loss evaluations over the run (evenly spaced, the last at its end).
    pub evaluations: u64,
    /// When the run must be over: after a few steps the step time is measured, and a
    /// run that would not end in time (its dev-loss evaluations and dev generation
    /// included) is shortened to fit, its learning-rate schedule with it, rather
    /// than cut off unfinished.
    pub deadline: Option<Instant>,
}

/// Progress of a trial.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Progress {
    /// An optimizer step with its training loss.
    Step {
        /// Steps done.
        step: u64,
        /// Steps of the run (fewer than asked once shortened to fit the deadline).
        steps: u64,
        /// The step's training loss.
        loss: f64,
    },
    /// A dev-loss evaluation.
    Eval {
        /// Steps done.
        step: u64,
        /// Steps of the run.
        steps: u64,
        /// The dev loss.
        dev_loss: f64,
    },
}

/// A trial's training settings: AdamW (β 0.9/0.999, its weight decay), global-norm
/// clipping at 1, shuffled length-grouped batches, `steps` steps with `warmup` of
/// linear warm-up and the given schedule.
pub(crate) fn train_config(
    hyper: &Hyper,
    schedule: Schedule,
    steps: u64,
    warmup: u64,
    seed: u64,
    threads: usize,
) -> TrainConfig {
    TrainConfig {
        steps,
        batch_size: hyper.batch_size,
        lr: hyper.lr,
        optimizer: autoglm_train::OptimizerKind::AdamW {
            betas: (0.9, 0.999),
            eps: 1e-8,
            weight_decay: hyper.weight_decay,
        },
        schedule,
        warmup_steps: warmup,
        clip_norm: Some(1.0),
        shuffle: true,
        seed,
        threads,
        group_by_length: true,
        ..TrainConfig::default()
    }
}

/// The initial configuration and weights of a trial: the base checkpoint's, or
/// `structure` initialised from `seed`; and its parameter count.
pub(crate) fn initial(
    data: &TrialData<'_>,
    structure: &Structure,
    seed: u64,
) -> Result<(
    ModelConfig,
    std::collections::BTreeMap<String, autoglm_ops::Tensor>,
    usize,
)> {
    let (config, weights) = match data.base {
        Some(b) => (b.config.clone(), b.weights.clone()),
        None => {
            let config = structure.config(data.tok, data.max_len)?;
            let weights = init_weights(&config, 0.02, seed)?;
            (config, weights)
        }
    };
    let parameters = parameter_count(&config, &weights);
    Ok((config, weights, parameters))
}

/// Parameters of a model's weights (a tied output head counted once).
pub(crate) fn parameter_count(
    config: &ModelConfig,
    weights: &std::collections::BTreeMap<String, autoglm_ops::Tensor>,
) -> usize {
    weights
        .iter()
        .filter(|(k, _)| !(config.tie_word_embeddings && k.as_str() == "head.w"))
        .map(|(_, t)| t.len())
        .sum()
}

/// Dev outputs of `weights` for `data.dev` with `decoding`, their scores, and the
/// decoding time per new token.
pub(crate) fn score_dev(
    data: &TrialData<'_>,
    config: &ModelConfig,
    weights: std::collections::BTreeMap<String, autoglm_ops::Tensor>,
    decoding: &Decoding,
    threads: usize,
) -> Result<(Scores, f64, Vec<String>)> {
    let mut model = Model::from_weights(
        config.clone(),
        weights,
        &LoadOptions {
            threads,
            ..LoadOptions::default()
        },
    )?;
    let inputs: Vec<String> = data.dev.iter().map(|i| i.input.clone()).collect();
    let (outs, ms) = generate(&mut model, data.tok, &inputs, decoding)?;
    let refs: Vec<Vec<String>> = data.dev.iter().map(|i| i.references.clone()).collect();
    Ok((score(&outs, &refs)?, ms, outs))
}

/// Steps timed (after the first two, which build and warm up the plan) before a run
/// is fitted to its deadline.
const PROBE_STEPS: u64 = 10;

/// Seconds kept in hand beyond the estimated time of a fitted run.
const DEADLINE_MARGIN_S: f64 = 15.0;

/// Trains `structure` with `hyper`, calling `on` after every step and with the dev
/// loss at `opts.evaluations` evenly spaced steps (the last at the end);
/// [`Control::Stop`] ends the trial before generation (a pruned trial).
///
/// # Errors
/// Invalid structure, training or generation errors.
pub fn run(
    data: &TrialData<'_>,
    structure: &Structure,
    hyper: &Hyper,
    decoding: &Decoding,
    opts: RunOptions,
    mut on: impl FnMut(Progress) -> Control,
) -> Result<Trained> {
    let RunOptions {
        seed,
        threads,
        evaluations,
        deadline,
    } = opts;
    let started = Instant::now();
    let (config, weights, parameters) = initial(data, structure, seed)?;
    let tc = train_config(
        hyper,
        Schedule::Cosine,
        hyper.steps,
        (hyper.warmup * hyper.steps as f64).round() as u64,
        seed,
        threads,
    );
    let mut trainer = Trainer::new(config.clone(), weights, tc)?;
    let (mut curve, mut stopped, mut train_loss) = (Vec::new(), false, f64::NAN);
    let evaluations = evaluations.max(1);
    let mut every = hyper.steps.div_ceil(evaluations).max(1);
    let mut probe: Option<Instant> = None;
    // Forward-only batches of one dev-loss evaluation, and dev prompts generated.
    let dev_batches = data
        .dev_loss
        .examples
        .len()
        .div_ceil(hyper.batch_size.max(1)) as f64;
    let dev_prompts = data.dev.len() as f64;
    trainer.fit(data.train, |t, r| {
        train_loss = r.loss;
        if let Some(deadline) = deadline {
            if r.step == 2 {
                probe = Some(Instant::now());
            } else if r.step == 2 + PROBE_STEPS {
                let per_step =
                    probe.map_or(0.0, |p| p.elapsed().as_secs_f64()) / PROBE_STEPS as f64;
                // A dev-loss batch costs about a third of a training step (forward
                // only); a generated output about one training step of a batch.
                let evals_left = evaluations as f64 * dev_batches * per_step / 3.0;
                let generation = dev_prompts / hyper.batch_size.max(1) as f64 * per_step * 2.0;
                let avail = deadline
                    .saturating_duration_since(Instant::now())
                    .as_secs_f64()
                    - evals_left
                    - generation
                    - DEADLINE_MARGIN_S;
                let fits = r.step + (avail.max(0.0) / per_step.max(1e-9)) as u64;
                let total = t.config().steps;
                if fits < total {
                    let steps = fits.max(r.step + 1);
                    let warmup = (hyper.warmup * steps as f64).round() as u64;
                    t.set_steps(steps, warmup)?;
                    every = steps.div_ceil(evaluations).max(1);
                }
            }
        }
        let total = t.config().steps;
        if on(Progress::Step {
            step: r.step,
            steps: total,
            loss: r.loss,
        }) == Control::Stop
        {
            stopped = true;
            return Ok(Control::Stop);
        }
        if r.step.is_multiple_of(every) || r.step == total {
            let l = t.eval_loss(data.dev_loss)?;
            curve.push((r.step, l));
            if on(Progress::Eval {
                step: r.step,
                steps: total,
                dev_loss: l,
            }) == Control::Stop
            {
                stopped = true;
                return Ok(Control::Stop);
            }
        }
        Ok(Control::Continue)
    })?;
    let steps = trainer.steps_done();
    let peak_step_bytes = trainer.peak_step_bytes();
    let weights = trainer.weights();
    let (dev, ms_per_token, dev_outputs) = if stopped {
        (None, None, Vec::new())
    } else {
        let (s, ms, outs) = score_dev(data, &config, weights.clone(), decoding, threads)?;
        (Some(s), Some(ms), outs)
    };
    Ok(Trained {
        outcome: Outcome {
            curve,
            train_loss,
            steps,
            stopped,
            dev,
            parameters,
            ms_per_token,
            peak_step_bytes,
            seconds: started.elapsed().as_secs_f64(),
        },
        config,
        weights,
        dev_outputs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiply_adds_per_token_count_every_projection() {
        let s = Structure {
            layers: 2,
            hidden: 64,
            heads: 4,
            kv_heads: 2,
            intermediate: 128,
            rotary: 0.5,
            tie_embeddings: true,
        };
        // Per layer: q and o 64·64 each, k and v 64·32 each, SwiGLU 3·64·128,
        // scores and values over 10 / 2 positions; the head 64·100.
        let per_layer = 2.0 * 4096.0 + 2.0 * 2048.0 + 3.0 * 8192.0 + 2.0 * 64.0 * 5.0;
        assert_eq!(s.macs_per_token(100, 10.0), 2.0 * per_layer + 6400.0);
        let deeper = Structure {
            layers: 4,
            ..s.clone()
        };
        assert!(deeper.macs_per_token(100, 10.0) > 1.9 * s.macs_per_token(100, 10.0));
    }
}
