//! How outputs are decoded: one options type for greedy decoding, sampling and beam
//! search ([`GenerationOptions`], as transformers' `GenerationConfig`), and the
//! streaming detokenizer every caller that prints tokens as they come shares
//! ([`StreamDecoder`]).

use crate::beam::EarlyStopping;
use crate::config::ModelConfig;
use crate::error::{Error, Result};

/// How to pick tokens, whichever way a caller decodes ([`Model::generate`],
/// [`Model::beam_search`], [`Sampler`] on the paged model).
///
/// The mode follows transformers: `num_beams > 1` is beam search (deterministic, so
/// `temperature` must be 0), otherwise `temperature` 0 is greedy decoding and above
/// 0 samples. The default is greedy decoding of up to 32 tokens.
///
/// [`Model::generate`]: crate::Model::generate
/// [`Model::beam_search`]: crate::Model::beam_search
/// [`Sampler`]: crate::Sampler
#[derive(Debug, Clone, PartialEq)]
pub struct GenerationOptions {
    /// Tokens to generate at most, per prompt.
    pub max_new_tokens: usize,
    /// Softmax temperature; `0` decodes greedily (argmax, first index on ties).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens (`0`: all).
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`
    /// (`1`: all).
    pub top_p: f32,
    /// Divide positive logits (multiply negative ones) of tokens already in the
    /// sequence, prompt included, by this (`1`: off), as transformers does; beam
    /// search applies it to log-probabilities, as transformers' processor does there.
    pub repetition_penalty: f32,
    /// Tokens that end a sequence (kept in the output). The model's EOS tokens are
    /// added unless `ignore_eos`.
    pub stop_tokens: Vec<u32>,
    /// Do not stop at the model's EOS tokens.
    pub ignore_eos: bool,
    /// Seed of the sampler.
    pub seed: u64,
    /// Beams per prompt (1: greedy decoding or sampling).
    pub num_beams: usize,
    /// Hypotheses [`Model::beam_search`](crate::Model::beam_search) returns per
    /// prompt, best first (at most `num_beams`).
    pub num_return_sequences: usize,
    /// Beam search: exponent of the length that divides a finished hypothesis'
    /// summed log-probability (above 0 favours longer outputs).
    pub length_penalty: f32,
    /// Beam search: when a prompt's search stops.
    pub early_stopping: EarlyStopping,
}

impl Default for GenerationOptions {
    fn default() -> Self {
        GenerationOptions {
            max_new_tokens: 32,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            stop_tokens: Vec::new(),
            ignore_eos: false,
            seed: 0,
            num_beams: 1,
            num_return_sequences: 1,
            length_penalty: 1.0,
            early_stopping: EarlyStopping::Heuristic,
        }
    }
}

impl GenerationOptions {
    /// Beam search with `num_beams` beams, the other settings as the default.
    pub fn beams(num_beams: usize) -> GenerationOptions {
        GenerationOptions {
            num_beams,
            ..GenerationOptions::default()
        }
    }

    /// Whether these options ask for beam search.
    pub fn is_beam_search(&self) -> bool {
        self.num_beams > 1
    }

    /// Checks the options.
    ///
    /// # Errors
    /// [`Error::Option`] naming the option: a negative or non-finite temperature,
    /// `top_p` outside (0, 1], a non-positive repetition penalty, `num_beams` 0,
    /// `num_return_sequences` outside `1..=num_beams`, or a temperature with beam
    /// search.
    pub fn check(&self) -> Result<()> {
        let bad = |option: &'static str, reason: String| Err(Error::Option { option, reason });
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", "must be ≥ 0".into());
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]".into());
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty", "must be > 0".into());
        }
        if self.num_beams == 0 {
            return bad("num_beams", "must be at least 1".into());
        }
        if self.num_return_sequences == 0 || self.num_return_sequences > self.num_beams {
            return bad(
                "num_return_sequences",
                format!(
                    "must be between 1 and num_beams ({}), got {}",
                    self.num_beams, self.num_return_sequences
                ),
            );
        }
        if self.is_beam_search() && self.temperature != 0.0 {
            return bad(
                "temperature",
                "must be 0 with num_beams > 1 (beam search is deterministic)".into(),
            );
        }
        Ok(())
    }

    /// The tokens that end a sequence of `config`'s model: `stop_tokens`, and its EOS
    /// tokens unless `ignore_eos`.
    pub fn stops(&self, config: &ModelConfig) -> Vec<u32> {
        let mut stops = self.stop_tokens.clone();
        if !self.ignore_eos {
            stops.extend(&config.eos_token_ids);
        }
        stops
    }
}

/// What a [`StreamDecoder`] releases: tokens and the text they complete.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Delta {
    /// Tokens released (held-back ones included, in order).
    pub tokens: Vec<u32>,
    /// The text they add to what was released before (empty without a tokenizer).
    pub text: String,
}

/// Turns a stream of generated tokens into text as they come, as transformers'
/// `TextStreamer` does: the whole continuation is decoded after each token, and
/// what is new is released only when it is whole — text that ends inside a
/// character (a byte-level token that starts a multi-byte character decodes to
/// U+FFFD) or that does not extend what was already released is held back, with
/// its tokens, until a later token completes it or the stream ends.
///
/// Without a tokenizer (token-id prompts and outputs) every token is released at
/// once, with empty text.
#[cfg(feature = "tokenizer")]
#[derive(Debug, Clone, Default)]
pub struct StreamDecoder {
    tokens: Vec<u32>,
    pending: Vec<u32>,
    text: String,
}

#[cfg(feature = "tokenizer")]
impl StreamDecoder {
    /// An empty stream.
    pub fn new() -> StreamDecoder {
        StreamDecoder::default()
    }

    /// Adds a token; returns what it releases, or `None` while held back.
    ///
    /// # Errors
    /// The tokenizer's, for ids it cannot decode.
    pub fn push(
        &mut self,
        tokenizer: Option<&crate::TextTokenizer>,
        token: u32,
    ) -> Result<Option<Delta>> {
        self.tokens.push(token);
        self.pending.push(token);
        let Some(tok) = tokenizer else {
            return Ok(Some(self.release(String::new())));
        };
        let text = tok.decode(&self.tokens)?;
        if text.ends_with('\u{FFFD}') || !text.starts_with(&self.text) {
            return Ok(None);
        }
        Ok(Some(self.release(text)))
    }

    /// Releases whatever is held back (the stream has ended): the held tokens, and
    /// the rest of the text if it extends what was released (a tokenizer whose
    /// decoding of the whole changed earlier text cannot take that back).
    ///
    /// # Errors
    /// The tokenizer's, for ids it cannot decode.
    pub fn finish(&mut self, tokenizer: Option<&crate::TextTokenizer>) -> Result<Delta> {
        let text = match tokenizer {
            Some(tok) if !self.pending.is_empty() => tok.decode(&self.tokens)?,
            _ => self.text.clone(),
        };
        if text.starts_with(&self.text) {
            Ok(self.release(text))
        } else {
            Ok(Delta {
                tokens: std::mem::take(&mut self.pending),
                text: String::new(),
            })
        }
    }

    /// Makes `text` (which extends the released text) the released text.
    fn release(&mut self, text: String) -> Delta {
        let delta = text[self.text.len()..].to_string();
        self.text = text;
        Delta {
            tokens: std::mem::take(&mut self.pending),
            text: delta,
        }
    }

    /// The text released so far.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Every token pushed so far (held-back ones included).
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Tokens pushed but not yet released.
    pub fn pending(&self) -> &[u32] {
        &self.pending
    }
}
