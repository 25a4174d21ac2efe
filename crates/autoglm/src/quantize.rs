//! Quantized copies of a run's model ([`AutoTrainer::quantize_model`]): calibrated on
//! the task's own training rows, written in the Hugging Face layout with the chosen
//! storage ([`autoglm_models::save_pretrained_with`]), and measured against the f32
//! model: perplexity ratio, mean KL divergence and top-1 agreement on every dev
//! reference (teacher forcing), and dev/test BLEU and ROUGE-L with the run's decoding.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use autoglm_models::quantize::{calibrate_checked, compare, Method};
use autoglm_models::{
    load_weights, save_pretrained_with, Checkpoint, LoadOptions, Model, ModelConfig,
};
use autoglm_ops::{Storage, StoragePlan};
use serde::{Deserialize, Serialize};

use super::AutoTrainer;
use crate::error::{Error, Result};
use crate::trial::{generate, item_examples, score, Decoding, Scores};

/// The files besides the weights that a quantized copy takes from its model.
const COPIED: [&str; 3] = ["tokenizer.json", "generation_config.json", "autoglm.json"];

/// What quantizing a model did and cost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuantizedEval {
    /// The body's storage.
    pub storage: String,
    /// The output head's (and embedding's) storage.
    pub head: String,
    /// `rtn` or `awq`.
    pub method: String,
    /// Bytes written per storage (tensors whose rows are not whole 32-blocks fall
    /// back to f16).
    pub bytes: BTreeMap<String, usize>,
    /// The share of the 2-D weights' bytes stored in the fallback format rather than
    /// as asked.
    pub fallback_share: f64,
    /// The f32 model's weight bytes, for the ratio.
    pub f32_bytes: usize,
    /// What the calibration kept: `awq`, `awq+clip` or `rtn` (whichever was closest
    /// to the f32 model on the calibration rows).
    pub kept: String,
    /// Mean KL on the calibration rows of round to nearest, the scales, and the
    /// scales with clipping (empty without calibration).
    pub calibration_kl: Vec<f64>,
    /// Training rows the calibration ran on (0 for round to nearest).
    pub calibration_rows: usize,
    /// Product groups whose calibrated scales differ from round to nearest's.
    pub groups_scaled: usize,
    /// Blocks the calibration clipped.
    pub clipped_blocks: usize,
    /// Next-token predictions compared on dev.
    pub tokens: usize,
    /// The f32 model's dev perplexity (target tokens).
    pub perplexity_f32: f64,
    /// The quantized model's.
    pub perplexity: f64,
    /// Their ratio.
    pub perplexity_ratio: f64,
    /// Mean KL(f32 ‖ quantized) of the next-token distributions, nats.
    pub mean_kl: f64,
    /// Share of positions with the same most likely token.
    pub top1_agreement: f64,
    /// Dev scores with the run's decoding.
    pub dev: Scores,
    /// Test scores with the run's decoding.
    pub test: Scores,
    /// Seconds spent (calibration, writing and scoring).
    pub seconds: f64,
}

impl AutoTrainer {
    /// Writes `out`: the model in `model` (an f32 export, the graph's weights in the
    /// Hugging Face layout) stored as `plan` says (its default for the body, its
    /// `head.w` entry for the head and the embedding: [`autoglm_models::storage_plan`]
    /// gives the usual one), calibrated with `method` on
    /// `calibration_rows` training rows spread evenly over the training set, with the
    /// model's tokenizer and configuration files. Then scores it against `model` on
    /// dev and test with `decoding`, and writes the figures to `out/quantization.json`.
    ///
    /// # Errors
    /// Model, I/O, generation and scoring errors; [`Error::Input`] for a calibrated
    /// method with a storage that is not a block format.
    pub fn quantize_model(
        &self,
        model: &Path,
        out: &Path,
        plan: &StoragePlan,
        method: Method,
        decoding: &Decoding,
        calibration_rows: usize,
    ) -> Result<QuantizedEval> {
        let started = Instant::now();
        let (storage, head) = (plan.default, plan.storage_of("head.w"));
        let threads = self.task.search.threads;
        let config = ModelConfig::from_file(&model.join("config.json"))?;
        let ck = Checkpoint::open(model)?;
        let f32_weights = load_weights(&config, &ck)?;
        let calibrated = method == Method::Awq && storage.block_format().is_some();
        let (weights, choices, rows, kept) = if calibrated {
            let n = self.train.examples.len();
            let take = calibration_rows.min(n).max(1);
            let rows: Vec<&autoglm_train::Example> = (0..take)
                .map(|i| &self.train.examples[i * n / take])
                .collect();
            let seqs: Vec<Vec<u32>> = rows.iter().map(|e| e.input_ids.clone()).collect();
            let from: Vec<usize> = rows
                .iter()
                .map(|e| e.labels.iter().position(|&l| l >= 0).unwrap_or(1))
                .collect();
            let c = calibrate_checked(&config, &f32_weights, &seqs, &from, storage, threads)?;
            (
                c.weights,
                c.choices,
                take,
                Some((c.variant, c.calibration_kl)),
            )
        } else {
            (f32_weights.clone(), Vec::new(), 0, None)
        };
        if out.exists() {
            std::fs::remove_dir_all(out).map_err(|e| Error::io(out, e))?;
        }
        let written = save_pretrained_with(out, &config, &weights, storage, head)?;
        for f in COPIED {
            let from = model.join(f);
            if from.exists() {
                std::fs::copy(&from, out.join(f)).map_err(|e| Error::io(&from, e))?;
            }
        }
        let opts = |s: Option<Storage>| LoadOptions {
            threads,
            storage: s,
            ..LoadOptions::default()
        };
        let mut reference = Model::load(model, &opts(Some(Storage::F32)))?;
        let mut quantized = Model::load(out, &opts(None))?;
        let sequences: Vec<(Vec<u32>, usize)> = item_examples(&self.tok, &self.data.dev)?
            .into_iter()
            .filter_map(|e| {
                let start = e.labels.iter().position(|&l| l >= 0)?;
                let len = e.input_ids.len().min(config.max_position_embeddings);
                (start < len).then(|| (e.input_ids[..len].to_vec(), start))
            })
            .collect();
        let q = compare(&mut reference, &mut quantized, &sequences)?;
        let dev_inputs: Vec<String> = self.data.dev.iter().map(|i| i.input.clone()).collect();
        let dev_refs: Vec<Vec<String>> =
            self.data.dev.iter().map(|i| i.references.clone()).collect();
        let (dev_outs, _) = generate(&mut quantized, &self.tok, &dev_inputs, decoding)?;
        let (test_outs, _) = generate(&mut quantized, &self.tok, &self.data.test_inputs, decoding)?;
        let test_refs = self.data.test_references()?;
        let mut bytes = BTreeMap::new();
        for w in &written {
            *bytes.entry(w.storage.to_string()).or_insert(0) += w.bytes;
        }
        let matrices = written.iter().filter(|w| w.matrix);
        let fallback: usize = matrices
            .clone()
            .filter(|w| w.storage != w.asked)
            .map(|w| w.bytes)
            .sum();
        let matrix_bytes: usize = matrices.map(|w| w.bytes).sum();
        let eval = QuantizedEval {
            storage: storage.to_string(),
            head: head.to_string(),
            method: if calibrated { method } else { Method::Rtn }.to_string(),
            kept: kept.map_or_else(|| "rtn".into(), |(v, _)| v.to_string()),
            calibration_kl: kept.map(|(_, kl)| kl.to_vec()).unwrap_or_default(),
            bytes,
            fallback_share: fallback as f64 / matrix_bytes.max(1) as f64,
            f32_bytes: f32_weights.values().map(|t| t.len() * 4).sum(),
            calibration_rows: rows,
            groups_scaled: choices.iter().filter(|c| c.alpha > 0.0).count(),
            clipped_blocks: choices.iter().map(|c| c.clipped_blocks).sum(),
            tokens: q.tokens,
            perplexity_f32: q.perplexity_reference,
            perplexity: q.perplexity,
            perplexity_ratio: q.perplexity_ratio,
            mean_kl: q.mean_kl,
            top1_agreement: q.top1_agreement,
            dev: score(&dev_outs, &dev_refs)?,
            test: score(&test_outs, &test_refs)?,
            seconds: started.elapsed().as_secs_f64(),
        };
        crate::search::write_json(&out.join("quantization.json"), &eval)?;
        Ok(eval)
    }
}
