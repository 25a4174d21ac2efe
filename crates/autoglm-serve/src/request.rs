//! Request preparation, shared by the HTTP and gRPC APIs: the generation
//! parameters every endpoint takes, their checks and defaults (`prepare`), the
//! start of a request (response cache or engine), and the state machine that turns
//! the engine's tokens into text, applies stop strings and fills the cache
//! (`steps`, `collect`).

use std::sync::Arc;
use std::time::Instant;

use autoglm_models::{Delta, GenerationOptions, StreamDecoder};
use futures_util::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::Value;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

use crate::cache::{CacheKey, Cached};
use crate::engine::{Event, FinishReason, GenRequest, Summary};
use crate::error::ServeError;
use crate::repo::Loaded;
use crate::state::AppState;

type ApiResult<T> = Result<T, ServeError>;

/// A prompt: text (tokenized with the model's tokenizer) or token ids.
#[derive(Debug)]
pub(crate) enum Prompt {
    /// Text.
    Text(String),
    /// Token ids.
    Ids(Vec<u32>),
}

impl<'de> Deserialize<'de> for Prompt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Prompt::Text(s)),
            Value::Array(a) => a
                .iter()
                .map(|x| x.as_u64().and_then(|n| u32::try_from(n).ok()))
                .collect::<Option<Vec<u32>>>()
                .map(Prompt::Ids)
                .ok_or_else(|| {
                    D::Error::custom(
                        "prompt: a list must hold token ids (integers from 0 to 2^32 - 1)",
                    )
                }),
            _ => Err(D::Error::custom(
                "prompt must be a string or a list of token ids",
            )),
        }
    }
}

/// Stop strings: one or several.
#[derive(Debug)]
pub(crate) struct Stops(Vec<String>);

impl<'de> Deserialize<'de> for Stops {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        match Value::deserialize(d)? {
            Value::String(s) => Ok(Stops(vec![s])),
            Value::Array(a) => a
                .into_iter()
                .map(|x| match x {
                    Value::String(s) => Some(s),
                    _ => None,
                })
                .collect::<Option<Vec<String>>>()
                .map(Stops)
                .ok_or_else(|| D::Error::custom("stop: a list must hold strings")),
            _ => Err(D::Error::custom(
                "stop must be a string or a list of strings",
            )),
        }
    }
}

/// The generation parameters every endpoint shares.
#[derive(Debug, Deserialize)]
pub(crate) struct GenParams {
    pub(crate) prompt: Prompt,
    #[serde(default)]
    pub(crate) temperature: Option<f64>,
    #[serde(default)]
    pub(crate) top_p: Option<f64>,
    #[serde(default)]
    pub(crate) top_k: Option<u32>,
    #[serde(default)]
    pub(crate) repetition_penalty: Option<f64>,
    #[serde(default)]
    pub(crate) seed: Option<u64>,
    #[serde(default)]
    pub(crate) stop: Option<Stops>,
    #[serde(default)]
    pub(crate) ignore_eos: bool,
    #[serde(default)]
    pub(crate) stream: bool,
}

/// A request made ready for the engine.
pub(crate) struct Prepared {
    pub(crate) model: Arc<Loaded>,
    pub(crate) prompt: Vec<u32>,
    pub(crate) sampling: GenerationOptions,
    pub(crate) stop_strings: Vec<String>,
    pub(crate) key: Option<CacheKey>,
}

/// A request's number as f32: beyond f32's range is an error naming the field; a
/// positive value stays positive (below f32's range it would round to 0, which the
/// sampler rightly refuses).
fn to_f32(name: &str, x: f64) -> ApiResult<f32> {
    if x.abs() > f64::from(f32::MAX) {
        return Err(ServeError::BadRequest(format!(
            "{name} {x} is beyond the range of a 32-bit float"
        )));
    }
    Ok(if x > 0.0 {
        (x as f32).max(f32::MIN_POSITIVE)
    } else {
        x as f32
    })
}

pub(crate) fn prepare(
    st: &AppState,
    model: Option<&str>,
    version: Option<u64>,
    p: &GenParams,
    max_tokens: Option<usize>,
    default_temperature: f32,
) -> ApiResult<Prepared> {
    let name = match model {
        Some(m) => m.to_string(),
        None => st.repo.sole_model().ok_or_else(|| {
            ServeError::BadRequest("'model' is required when more than one model is loaded".into())
        })?,
    };
    // `name:version` as listed by GET /v1/models.
    let (name, version) = match (name.rsplit_once(':'), version) {
        (Some((n, v)), None) if v.parse::<u64>().is_ok() => (n.to_string(), v.parse().ok()),
        _ => (name, version),
    };
    let model = st.repo.get(&name, version)?;
    let prompt = match &p.prompt {
        Prompt::Ids(ids) => ids.clone(),
        Prompt::Text(t) => {
            let tok = model.tokenizer.as_ref().ok_or_else(|| {
                ServeError::BadRequest(
                    "this model has no tokenizer: send the prompt as token ids".into(),
                )
            })?;
            if t.len() > st.limits.max_body_bytes {
                return Err(ServeError::TooLarge("the prompt is too long".into()));
            }
            let ids = tok.encode(t)?;
            match model.template {
                Some((bos, sep)) => std::iter::once(bos)
                    .chain(ids)
                    .chain(std::iter::once(sep))
                    .collect(),
                None => ids,
            }
        }
    };
    // No max_tokens (llama.cpp's n_predict −1): up to the model's context.
    let max_tokens = max_tokens.unwrap_or_else(|| {
        st.limits
            .max_tokens
            .min(
                model
                    .config
                    .max_position_embeddings
                    .saturating_sub(prompt.len()),
            )
            .max(1)
    });
    if max_tokens == 0 {
        return Err(ServeError::BadRequest(
            "max_tokens must be at least 1".into(),
        ));
    }
    if max_tokens > st.limits.max_tokens {
        return Err(ServeError::BadRequest(format!(
            "max_tokens {max_tokens} is over this server's limit of {}",
            st.limits.max_tokens
        )));
    }
    let sampling = GenerationOptions {
        max_new_tokens: max_tokens,
        temperature: match p.temperature {
            Some(t) => to_f32("temperature", t)?,
            None => default_temperature,
        },
        top_k: p.top_k.unwrap_or(0) as usize,
        // A positive top_p below f32's range still keeps the most likely token.
        top_p: p.top_p.map_or(1.0, |x| {
            if x > 0.0 {
                (x as f32).max(f32::MIN_POSITIVE)
            } else {
                x as f32
            }
        }),
        repetition_penalty: p
            .repetition_penalty
            .map_or(Ok(1.0), |x| to_f32("repetition_penalty", x))?,
        stop_tokens: Vec::new(),
        ignore_eos: p.ignore_eos,
        seed: p.seed.unwrap_or(0),
        ..GenerationOptions::default()
    };
    // Bad sampling options are the request's fault: 400 now, not an error event later.
    autoglm_models::Sampler::new(sampling.clone())?;
    let stop_strings = p.stop.as_ref().map(|s| s.0.clone()).unwrap_or_default();
    if stop_strings.len() > 4 || stop_strings.iter().any(|s| s.is_empty() || s.len() > 256) {
        return Err(ServeError::BadRequest(
            "stop takes at most 4 non-empty strings of at most 256 bytes".into(),
        ));
    }
    if !stop_strings.is_empty() && model.tokenizer.is_none() {
        return Err(ServeError::BadRequest(
            "stop strings need a model with a tokenizer".into(),
        ));
    }
    let key = (sampling.temperature == 0.0 && stop_strings.is_empty()).then(|| CacheKey {
        model: model.name.clone(),
        version: model.version,
        prompt: prompt.clone(),
        max_new: max_tokens,
        stops: Vec::new(),
        ignore_eos: sampling.ignore_eos,
        repetition_penalty: sampling.repetition_penalty.to_bits(),
    });
    Ok(Prepared {
        model,
        prompt,
        sampling,
        stop_strings,
        key,
    })
}

/// The events of a prepared request: from the cache, or from the engine.
fn start(st: &AppState, p: &Prepared) -> ApiResult<(UnboundedReceiver<Event>, bool)> {
    let (tx, rx) = unbounded_channel();
    if let Some(hit) = p.key.as_ref().and_then(|k| st.cache.get(k)) {
        for &t in &hit.tokens {
            let _ = tx.send(Event::Token(t));
        }
        let _ = tx.send(Event::Done(Summary {
            finish: hit.finish,
            prompt_tokens: p.prompt.len(),
            completion_tokens: hit.tokens.len(),
            queued: std::time::Duration::ZERO,
            ttft: std::time::Duration::ZERO,
            latency: std::time::Duration::ZERO,
            preempted: 0,
        }));
        return Ok((rx, true));
    }
    p.model.engine.submit(GenRequest {
        prompt: p.prompt.clone(),
        sampling: p.sampling.clone(),
        events: tx,
    })?;
    Ok((rx, false))
}

/// Follows a request's tokens, turning them into text and applying stop strings.
struct Follow {
    st: Arc<AppState>,
    model: Arc<Loaded>,
    /// The tokens so far and the text released (held back while it ends inside a
    /// character).
    decoder: StreamDecoder,
    stops: Vec<String>,
    /// Bytes of the decoder's text sent to the client: with stop strings, a tail
    /// that could be the start of one is held back until it cannot.
    sent: usize,
    key: Option<CacheKey>,
    from_cache: bool,
    done: Option<(FinishReason, Summary)>,
    started: Instant,
}

pub(crate) enum Step {
    /// New tokens and the text they completed.
    Delta(Vec<u32>, String),
    /// The end.
    Done(FinishReason, Summary),
    /// A failure.
    Failed(ServeError),
}

impl Follow {
    fn new(st: &Arc<AppState>, p: &Prepared, from_cache: bool) -> Follow {
        Follow {
            st: Arc::clone(st),
            model: Arc::clone(&p.model),
            decoder: StreamDecoder::new(),
            stops: p.stop_strings.clone(),
            sent: 0,
            key: p.key.clone(),
            from_cache,
            done: None,
            started: Instant::now(),
        }
    }

    /// Where the first stop string starts in the text, if one appeared.
    fn stop_at(&self) -> Option<usize> {
        let text = self.decoder.text();
        // A stop string ends in the unsent part (every earlier one was caught):
        // search from where the longest could start.
        let longest = self.stops.iter().map(String::len).max().unwrap_or(0);
        let mut from = self.sent.saturating_sub(longest);
        while !text.is_char_boundary(from) {
            from -= 1;
        }
        self.stops
            .iter()
            .filter_map(|s| text[from..].find(s.as_str()).map(|i| from + i))
            .min()
    }

    /// Bytes at the end of the unsent text that may be the start of a stop string.
    fn stop_prefix_len(&self) -> usize {
        stop_prefix_len(&self.decoder.text()[self.sent..], &self.stops)
    }

    /// The text not sent yet, cut at a stop string (then `true`: the request ends)
    /// or, unless `last`, short of a possible one.
    fn delta(&mut self, last: bool) -> (String, bool) {
        let text = self.decoder.text();
        let (end, stopped) = match self.stop_at() {
            Some(at) => (at, true),
            None if last => (text.len(), false),
            None => (text.len() - self.stop_prefix_len(), false),
        };
        let out = text[self.sent..end.max(self.sent)].to_string();
        self.sent = end.max(self.sent);
        (out, stopped)
    }

    /// The summary of a request a stop string ended.
    fn stopped(&self) -> Summary {
        Summary {
            finish: FinishReason::Stop,
            prompt_tokens: 0,
            completion_tokens: self.decoder.tokens().len(),
            queued: std::time::Duration::ZERO,
            ttft: std::time::Duration::ZERO,
            latency: self.started.elapsed(),
            preempted: 0,
        }
    }

    async fn next(&mut self, rx: &mut UnboundedReceiver<Event>) -> Option<Step> {
        if self.done.is_some() {
            return None;
        }
        loop {
            let ev = rx.recv().await;
            match ev {
                Some(Event::Token(t)) => {
                    let released = match self.decoder.push(self.model.tokenizer.as_ref(), t) {
                        Ok(r) => r,
                        Err(e) => return Some(Step::Failed(ServeError::Model(e))),
                    };
                    if let Some(Delta { tokens, .. }) = released {
                        let (text, stopped) = self.delta(false);
                        if stopped {
                            // Dropping the receiver cancels the rest in the engine.
                            self.done = Some((FinishReason::Stop, self.stopped()));
                            rx.close();
                        }
                        return Some(Step::Delta(tokens, text));
                    }
                }
                Some(Event::Done(mut s)) => {
                    if let (Some(k), false) = (&self.key, self.from_cache) {
                        self.st.cache.put(
                            k.clone(),
                            Cached {
                                tokens: self.decoder.tokens().to_vec(),
                                finish: s.finish,
                            },
                        );
                    }
                    let held_text = self.sent < self.decoder.text().len();
                    if self.decoder.pending().is_empty() && !held_text {
                        self.done = Some((s.finish, s));
                        return self.finish();
                    }
                    // The stream ended: what was held back goes out as it is, up to
                    // a stop string the last characters may complete.
                    let tokens = match self.decoder.finish(self.model.tokenizer.as_ref()) {
                        Ok(d) => d.tokens,
                        Err(e) => return Some(Step::Failed(ServeError::Model(e))),
                    };
                    let (text, stopped) = self.delta(true);
                    if stopped {
                        s.finish = FinishReason::Stop;
                    }
                    self.done = Some((s.finish, s));
                    return Some(Step::Delta(tokens, text));
                }
                Some(Event::Error(e)) => return Some(Step::Failed(e)),
                None => {
                    return Some(Step::Failed(ServeError::Internal(
                        "the engine dropped the request".into(),
                    )))
                }
            }
        }
    }

    /// After a `Delta` that ended the request, the final step.
    fn finish(&mut self) -> Option<Step> {
        self.done.take().map(|(f, s)| Step::Done(f, s))
    }
}

/// The length of the longest end of `text` that is a proper start of one of `stops`
/// (held back until the next tokens say whether it is one, as OpenAI's and vLLM's
/// servers do, so no part of a stop string is ever sent); on character boundaries.
fn stop_prefix_len(text: &str, stops: &[String]) -> usize {
    let longest = stops.iter().map(String::len).max().unwrap_or(0);
    (1..longest.min(text.len() + 1))
        .rev()
        .find(|&k| {
            let start = text.len() - k;
            text.is_char_boundary(start) && stops.iter().any(|s| s.starts_with(&text[start..]))
        })
        .unwrap_or(0)
}

/// The steps of a prepared request (from the cache or the engine), ending with
/// `Done` or `Failed`; dropping the stream cancels the request.
pub(crate) fn steps(
    st: &Arc<AppState>,
    p: &Prepared,
) -> ApiResult<impl Stream<Item = Step> + Send + 'static> {
    let (rx, cached) = start(st, p)?;
    let f = Follow::new(st, p, cached);
    Ok(stream::unfold(
        (f, rx, false),
        |(mut f, mut rx, ended)| async move {
            if ended {
                return None;
            }
            let step = match f.next(&mut rx).await {
                Some(s) => s,
                None => f.finish()?,
            };
            let end = matches!(step, Step::Done(..) | Step::Failed(_));
            Some((step, (f, rx, end)))
        },
    ))
}

/// Runs a request to the end (non-streaming): tokens, text, the end.
pub(crate) async fn collect(
    st: &Arc<AppState>,
    p: &Prepared,
) -> ApiResult<(Vec<u32>, String, FinishReason, Summary)> {
    let mut all = Box::pin(steps(st, p)?);
    let mut tokens = Vec::new();
    let mut text = String::new();
    while let Some(step) = all.next().await {
        match step {
            Step::Delta(ts, t) => {
                tokens.extend(ts);
                text.push_str(&t);
            }
            Step::Done(reason, s) => return Ok((tokens, text, reason, s)),
            Step::Failed(e) => return Err(e),
        }
    }
    Err(ServeError::Internal(
        "the request ended without a result".into(),
    ))
}

#[cfg(test)]
mod tests {
    use super::stop_prefix_len;

    #[test]
    fn held_back_tails_are_proper_starts_of_stop_strings() {
        let stops = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(stop_prefix_len("abcJ", &stops(&["Jver"])), 1);
        assert_eq!(stop_prefix_len("abcJve", &stops(&["Jver"])), 3);
        // A whole stop string is found by the search, not held back.
        assert_eq!(stop_prefix_len("abJver", &stops(&["Jver"])), 0);
        assert_eq!(stop_prefix_len("abc", &stops(&["Jver"])), 0);
        assert_eq!(stop_prefix_len("abc", &[]), 0);
        // The longest match wins; multi-byte stops cut on character boundaries.
        assert_eq!(stop_prefix_len("x ne", &stops(&["never", "e!"])), 2);
        assert_eq!(stop_prefix_len("x ne", &stops(&[" never", "e!"])), 3);
        assert_eq!(stop_prefix_len("café", &stops(&["é fin"])), "é".len());
        assert_eq!(stop_prefix_len("日", &stops(&["日本"])), 3);
        assert_eq!(stop_prefix_len("", &stops(&["ab"])), 0);
    }
}
