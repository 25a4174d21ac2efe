//! Batched generation with a key/value cache: greedy decoding and sampling with
//! transformers' logits processors (repetition penalty, temperature, top-k, top-p).
//!
//! Prompts of a batch are left-padded to one length and share positions `0..`: rotary
//! attention depends only on the distance between a query and a key, so a row whose
//! real tokens start at position `k` computes the same scores as transformers'
//! (which counts positions from the first real token); the padding is masked out.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::error::{Error, Result};
use crate::model::{KvCache, Model};

/// How to pick tokens. The default is greedy decoding of up to 32 tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingOptions {
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
    /// sequence, prompt included, by this (`1`: off), as transformers does.
    pub repetition_penalty: f32,
    /// Tokens that end a sequence (kept in the output). The model's EOS tokens are
    /// added by [`Model::generate`] unless `ignore_eos`.
    pub stop_tokens: Vec<u32>,
    /// Do not stop at the model's EOS tokens.
    pub ignore_eos: bool,
    /// Seed of the sampler.
    pub seed: u64,
}

impl Default for SamplingOptions {
    fn default() -> Self {
        SamplingOptions {
            max_new_tokens: 32,
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            repetition_penalty: 1.0,
            stop_tokens: Vec::new(),
            ignore_eos: false,
            seed: 0,
        }
    }
}

impl SamplingOptions {
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |what: &str| Err(Error::Input(format!("sampling option {what}")));
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature must be ≥ 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p must be in (0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad("repetition_penalty must be > 0");
        }
        Ok(())
    }
}

/// Index of the largest value (the first of equal ones), as `torch.argmax`.
pub(crate) fn argmax(xs: &[f32]) -> usize {
    xs.iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > xs[best] { i } else { best })
}

/// Picks the next token from one row of logits, given the sequence so far.
pub(crate) fn pick(
    logits: &mut [f32],
    seen: &[u32],
    o: &SamplingOptions,
    rng: &mut Pcg64Mcg,
) -> u32 {
    if o.repetition_penalty != 1.0 {
        let mut done = vec![false; logits.len()];
        for &id in seen {
            let i = id as usize;
            if i < logits.len() && !std::mem::replace(&mut done[i], true) {
                let x = logits[i];
                logits[i] = if x < 0.0 {
                    x * o.repetition_penalty
                } else {
                    x / o.repetition_penalty
                };
            }
        }
    }
    if o.temperature == 0.0 {
        return argmax(logits) as u32;
    }
    for x in logits.iter_mut() {
        *x /= o.temperature;
    }
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    let mut keep = order.len();
    if o.top_k > 0 && o.top_k < keep {
        // transformers keeps every token scoring at least the k-th score.
        let kth = logits[order[o.top_k - 1]];
        keep = order.iter().take_while(|&&i| logits[i] >= kth).count();
    }
    let max = logits[order[0]];
    let probs: Vec<f64> = order[..keep]
        .iter()
        .map(|&i| f64::from(logits[i] - max).exp())
        .collect();
    let total: f64 = probs.iter().sum();
    if o.top_p < 1.0 {
        // Smallest prefix whose probability reaches top_p (at least one token).
        let mut acc = 0.0;
        let mut n = 0;
        for p in &probs {
            acc += p / total;
            n += 1;
            if acc >= f64::from(o.top_p) {
                break;
            }
        }
        keep = n.max(1);
    }
    let total: f64 = probs[..keep].iter().sum();
    let mut u = rng.random::<f64>() * total;
    for (j, p) in probs[..keep].iter().enumerate() {
        u -= p;
        if u <= 0.0 {
            return order[j] as u32;
        }
    }
    order[keep - 1] as u32
}

impl Model {
    /// Continues each prompt (token ids) until a stop token or `max_new_tokens`,
    /// calling `on_token(row, token)` as each token is chosen (for streaming), and
    /// returns the new tokens of each row (a stop token included).
    ///
    /// # Errors
    /// [`Error::Input`] for an empty batch or prompt, bad sampling options, or ids
    /// outside the vocabulary; errors of the executor.
    pub fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        options: &SamplingOptions,
        mut on_token: impl FnMut(usize, u32),
    ) -> Result<Vec<Vec<u32>>> {
        options.check()?;
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(Error::Input("generate needs non-empty prompts".into()));
        }
        let cfg = self.config().clone();
        let mut stops = options.stop_tokens.clone();
        if !options.ignore_eos {
            stops.extend(&cfg.eos_token_ids);
        }
        let pad = cfg.pad_token_id.unwrap_or(0);
        let b = prompts.len();
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut valid: Vec<Vec<bool>> = Vec::with_capacity(b);
        let mut ids: Vec<Vec<u32>> = Vec::with_capacity(b);
        for p in prompts {
            let padn = width - p.len();
            let mut row = vec![pad; padn];
            row.extend(p);
            ids.push(row);
            let mut v = vec![false; padn];
            v.extend(std::iter::repeat_n(true, p.len()));
            valid.push(v);
        }
        let mut seen: Vec<Vec<u32>> = prompts.to_vec();
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut done = vec![false; b];
        let mut rng = Pcg64Mcg::seed_from_u64(options.seed);
        let mut cache = KvCache::new(&cfg, b);
        let v = cfg.vocab_size;
        for _ in 0..options.max_new_tokens {
            let logits = match self.step(&ids, &valid, &mut cache, true) {
                Ok(l) => l,
                Err(e) => {
                    self.release(cache);
                    return Err(e);
                }
            };
            let data = logits
                .as_f32()
                .ok_or_else(|| Error::Input("logits are not f32".into()))?;
            let mut next = vec![pad; b];
            for r in 0..b {
                if done[r] {
                    continue;
                }
                let mut row = data[r * v..(r + 1) * v].to_vec();
                let tok = pick(&mut row, &seen[r], options, &mut rng);
                next[r] = tok;
                out[r].push(tok);
                seen[r].push(tok);
                on_token(r, tok);
                if stops.contains(&tok) {
                    done[r] = true;
                }
            }
            self.recycle(logits);
            if done.iter().all(|&d| d) {
                break;
            }
            // Finished rows feed padding; their outputs are not read.
            valid.iter_mut().for_each(|v| v.push(true));
            ids = next.into_iter().map(|x| vec![x]).collect();
        }
        self.release(cache);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn processors_follow_transformers() {
        let mut rng = Pcg64Mcg::seed_from_u64(1);
        // Repetition penalty: positive logits divided, negative multiplied.
        let o = SamplingOptions {
            repetition_penalty: 2.0,
            ..SamplingOptions::default()
        };
        let mut l = vec![4.0, 3.0, -1.0];
        assert_eq!(pick(&mut l, &[0, 0, 2], &o, &mut rng), 1);
        assert_eq!(l, vec![2.0, 3.0, -2.0]);
        // top-k 1 is greedy whatever the temperature.
        let o = SamplingOptions {
            temperature: 5.0,
            top_k: 1,
            ..SamplingOptions::default()
        };
        for _ in 0..20 {
            assert_eq!(pick(&mut [0.0, 1.0, 0.5], &[], &o, &mut rng), 1);
        }
        // top-p: 0.6 keeps the two most likely of probabilities 0.5/0.3/0.2.
        let o = SamplingOptions {
            temperature: 1.0,
            top_p: 0.6,
            ..SamplingOptions::default()
        };
        let base = [0.5f32.ln(), 0.3f32.ln(), 0.2f32.ln()];
        let mut counts = [0usize; 3];
        for _ in 0..4000 {
            counts[pick(&mut base.to_vec(), &[], &o, &mut rng) as usize] += 1;
        }
        assert_eq!(counts[2], 0, "{counts:?}");
        let share = counts[0] as f64 / 4000.0;
        assert!((share - 0.625).abs() < 0.03, "{counts:?}");
    }
}
