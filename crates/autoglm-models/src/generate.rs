//! Batched generation with a key/value cache: greedy decoding and sampling with
//! transformers' logits processors (repetition penalty, temperature, top-k, top-p).
//!
//! Prompts of a batch are left-padded to one length and share positions `0..`: rotary
//! attention depends only on the distance between a query and a key, so a row whose
//! real tokens start at position `k` computes the same scores as transformers'
//! (which counts positions from the first real token); the padding is masked out.

use rand::{RngExt, SeedableRng};
use rand_pcg::Pcg64Mcg;

use crate::decode::GenerationOptions;
use crate::error::{Error, Result};
use crate::model::{KvCache, Model};

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
    o: &GenerationOptions,
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
    /// Continues each prompt (token ids) until a stop token or `max_new_tokens`, the
    /// one decoding entry point: greedy decoding or sampling (`num_beams` 1), calling
    /// `on_token(row, token)` as each token is chosen (for streaming), or beam search
    /// (`num_beams` > 1), calling it with each prompt's best hypothesis once the
    /// search is over. Returns the new tokens of each row (a stop token included;
    /// for beam search, the best hypothesis — [`Model::beam_search`] gives the
    /// n best with their scores).
    ///
    /// # Errors
    /// [`Error::Option`] for bad options; [`Error::Input`] for an empty batch or
    /// prompt or ids outside the vocabulary; errors of the executor.
    pub fn generate(
        &mut self,
        prompts: &[Vec<u32>],
        options: &GenerationOptions,
        mut on_token: impl FnMut(usize, u32),
    ) -> Result<Vec<Vec<u32>>> {
        options.check()?;
        if options.is_beam_search() {
            let best: Vec<Vec<u32>> = self
                .beam_search(prompts, options)?
                .into_iter()
                .map(|h| h.into_iter().next().map(|h| h.tokens).unwrap_or_default())
                .collect();
            for (row, tokens) in best.iter().enumerate() {
                tokens.iter().for_each(|&t| on_token(row, t));
            }
            return Ok(best);
        }
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(Error::Input("generate needs non-empty prompts".into()));
        }
        let cfg = self.config().clone();
        let stops = options.stops(&cfg);
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
        let o = GenerationOptions {
            repetition_penalty: 2.0,
            ..GenerationOptions::default()
        };
        let mut l = vec![4.0, 3.0, -1.0];
        assert_eq!(pick(&mut l, &[0, 0, 2], &o, &mut rng), 1);
        assert_eq!(l, vec![2.0, 3.0, -2.0]);
        // top-k 1 is greedy whatever the temperature.
        let o = GenerationOptions {
            temperature: 5.0,
            top_k: 1,
            ..GenerationOptions::default()
        };
        for _ in 0..20 {
            assert_eq!(pick(&mut [0.0, 1.0, 0.5], &[], &o, &mut rng), 1);
        }
        // top-p: 0.6 keeps the two most likely of probabilities 0.5/0.3/0.2.
        let o = GenerationOptions {
            temperature: 1.0,
            top_p: 0.6,
            ..GenerationOptions::default()
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
