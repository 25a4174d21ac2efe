//! `autoglm generate` and `autoglm forward`: run a Hugging Face GLM-family checkpoint.

use std::io::{BufRead, Write};
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use autoglm_models::{GenerationOptions, LoadOptions, Model, StreamDecoder, TextTokenizer};
use clap::Args;

/// Where a model lives and how to run it.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// Checkpoint directory (`config.json`, `model.safetensors` or shards, optionally
    /// `tokenizer.json`).
    #[arg(long)]
    pub model: PathBuf,
    /// Kernel threads.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Store the linear weights as `f32`, `f16`, `bf16`, `q8_0` or `q4_0` (the output
    /// head one step higher) instead of as the checkpoint stores them.
    #[arg(long)]
    pub weights: Option<autoglm_models::Storage>,
}

impl ModelArgs {
    fn load(&self) -> Result<Model> {
        let opts = LoadOptions {
            threads: self.threads,
            storage: self.weights,
            ..LoadOptions::default()
        };
        Model::load(&self.model, &opts).with_context(|| format!("loading {}", self.model.display()))
    }
}

/// `autoglm forward`.
#[derive(Debug, Args)]
pub struct ForwardArgs {
    /// The checkpoint.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Token ids, comma-separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub input_ids: Vec<u32>,
    /// Write the JSON here instead of standard output.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// `autoglm generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The checkpoint.
    #[command(flatten)]
    pub model: ModelArgs,
    /// Prompt text (needs the checkpoint's `tokenizer.json`); the continuation is
    /// streamed to standard output.
    #[arg(long, conflicts_with_all = ["prompt_ids", "input_file"])]
    pub prompt: Option<String>,
    /// Prompt as token ids, comma-separated; the new ids are streamed.
    #[arg(long, value_delimiter = ',', conflicts_with = "input_file")]
    pub prompt_ids: Option<Vec<u32>>,
    /// One prompt per line (text; token ids with `--ids`), generated in batches.
    #[arg(long, requires = "output")]
    pub input_file: Option<PathBuf>,
    /// One completion per line, in input order (newlines inside a completion written
    /// as spaces).
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// With `--input-file`: lines are comma-separated token ids, and so are outputs.
    #[arg(long)]
    pub ids: bool,
    /// Prompts per batch with `--input-file`.
    #[arg(long, default_value_t = 8)]
    pub batch_size: usize,
    /// Most new tokens per prompt.
    #[arg(long, default_value_t = 64)]
    pub max_new_tokens: usize,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Nucleus sampling mass (1: off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    /// Repetition penalty (1: off), as transformers applies it.
    #[arg(long, default_value_t = 1.0)]
    pub repetition_penalty: f32,
    /// Extra stop token ids, comma-separated (the model's EOS tokens always stop).
    #[arg(long, value_delimiter = ',')]
    pub stop: Vec<u32>,
    /// Do not stop at the model's EOS tokens.
    #[arg(long)]
    pub ignore_eos: bool,
    /// Sampler seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Beam search with this many beams (1: greedy or sampling); the best hypothesis
    /// is written once found, not streamed.
    #[arg(long, default_value_t = 1)]
    pub num_beams: usize,
    /// Beam search's length penalty (transformers' `length_penalty`).
    #[arg(long, default_value_t = 1.0)]
    pub length_penalty: f32,
}

/// Runs `autoglm forward`: the last layer's logits for the ids, as JSON
/// `{"shape": [seq, vocab], "logits": [...]}` (row-major).
///
/// # Errors
/// Unloadable checkpoints (naming the file, field or tensor) or ids outside the vocabulary.
pub fn forward(a: ForwardArgs, out: &mut dyn Write) -> Result<()> {
    let mut m = a.model.load()?;
    let logits = m.forward(std::slice::from_ref(&a.input_ids))?;
    let shape = &logits.shape()[1..];
    let data = logits.as_f32().context("logits are f32")?;
    let json = serde_json::json!({ "shape": shape, "logits": data });
    match &a.out {
        Some(p) => std::fs::write(p, json.to_string())
            .with_context(|| format!("writing {}", p.display()))?,
        None => writeln!(out, "{json}")?,
    }
    Ok(())
}

fn parse_ids(s: &str, what: &str) -> Result<Vec<u32>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .with_context(|| format!("{what}: '{x}' is not a token id"))
        })
        .collect()
}

/// Runs `autoglm generate`.
///
/// # Errors
/// Unloadable checkpoints, a text prompt without `tokenizer.json`, unreadable input
/// files (naming the line), or bad sampling options.
pub fn generate(a: GenerateArgs, out: &mut dyn Write) -> Result<()> {
    let mut m = a.model.load()?;
    let tok = TextTokenizer::from_dir(&a.model.model)?;
    let opts = GenerationOptions {
        max_new_tokens: a.max_new_tokens,
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        repetition_penalty: a.repetition_penalty,
        stop_tokens: a.stop.clone(),
        ignore_eos: a.ignore_eos,
        seed: a.seed,
        num_beams: a.num_beams.max(1),
        length_penalty: a.length_penalty,
        ..GenerationOptions::default()
    };
    opts.check()?;
    let need_tok = || {
        tok.as_ref().with_context(|| {
            format!(
                "{} has no tokenizer.json: give token ids (--prompt-ids, or --ids with --input-file)",
                a.model.model.display()
            )
        })
    };
    if let Some(path) = &a.input_file {
        let file =
            std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
        let mut prompts = Vec::new();
        for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
            let line = line.with_context(|| format!("{}:{}", path.display(), i + 1))?;
            let ids = if a.ids {
                parse_ids(&line, &format!("{}:{}", path.display(), i + 1))?
            } else {
                need_tok()?.encode(&line)?
            };
            if ids.is_empty() {
                bail!("{}:{}: empty prompt", path.display(), i + 1);
            }
            prompts.push(ids);
        }
        let output = a
            .output
            .as_ref()
            .context("--output is required with --input-file")?;
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(output)
                .with_context(|| format!("writing {}", output.display()))?,
        );
        for chunk in prompts.chunks(a.batch_size.max(1)) {
            for ids in m.generate(chunk, &opts, |_, _| {})? {
                let line = if a.ids {
                    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
                } else {
                    need_tok()?.decode(&ids)?.replace(['\n', '\r'], " ")
                };
                writeln!(w, "{line}")?;
            }
        }
        w.flush()?;
        writeln!(
            out,
            "wrote {} completions to {}",
            prompts.len(),
            output.display()
        )?;
        return Ok(());
    }
    let (prompt, text) = match (&a.prompt, &a.prompt_ids) {
        (Some(p), _) => (need_tok()?.encode(p)?, true),
        (None, Some(ids)) => (ids.clone(), false),
        (None, None) => bail!("give --prompt, --prompt-ids or --input-file"),
    };
    if opts.is_beam_search() {
        let ids = m.generate(&[prompt], &opts, |_, _| {})?.swap_remove(0);
        let line = if text {
            need_tok()?.decode(&ids)?
        } else {
            ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
        };
        writeln!(out, "{line}")?;
        return Ok(());
    }
    // Stream: ids as they come, or text as soon as it is whole.
    let tok = if text { Some(need_tok()?) } else { None };
    let mut stream = StreamDecoder::new();
    let mut failure: Option<anyhow::Error> = None;
    m.generate(&[prompt], &opts, |_, t| {
        if failure.is_some() {
            return;
        }
        let r = match stream.push(tok, t) {
            Ok(Some(d)) if text => write!(out, "{}", d.text).map_err(Into::into),
            Ok(Some(_)) => {
                let sep = if stream.tokens().len() > 1 { "," } else { "" };
                write!(out, "{sep}{t}").map_err(Into::into)
            }
            Ok(None) => Ok(()),
            Err(e) => Err(e.into()),
        };
        failure = r.and_then(|()| out.flush().map_err(Into::into)).err();
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    write!(out, "{}", stream.finish(tok)?.text)?;
    writeln!(out)?;
    Ok(())
}
