//! Beam search with transformers' semantics (`generate(num_beams=…, do_sample=False)`):
//! log-softmax scores summed along a beam, the best `2 × num_beams` continuations kept
//! each step, a finished hypothesis scored `sum / length^length_penalty` (length
//! counting the generated tokens, the stop token included) and kept only when it
//! ranks among the first `num_beams` continuations, and the same early-stopping rule.
//!
//! Each prompt's beams run as rows of one batch with a shared key/value cache whose
//! rows are gathered after every step; a prompt whose search is over leaves the batch.

use crate::decode::GenerationOptions;
use crate::error::{Error, Result};
use crate::model::{KvCache, Model};

/// When a prompt's beam search stops, as transformers' `early_stopping`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyStopping {
    /// Stop when `num_beams` hypotheses are finished.
    Always,
    /// Stop when the best running beam, scored at its current length, cannot beat the
    /// worst finished hypothesis (transformers' default, `early_stopping=False`).
    #[default]
    Heuristic,
    /// As `Heuristic`, but with a positive length penalty the running beam is scored at
    /// the longest length it could reach (`early_stopping="never"`).
    Never,
}

/// A finished hypothesis: its new tokens (a stop token included) and its score.
#[derive(Debug, Clone, PartialEq)]
pub struct Hypothesis {
    /// New tokens.
    pub tokens: Vec<u32>,
    /// Summed log-probability divided by `length^length_penalty`.
    pub score: f32,
}

/// One prompt's search.
struct Search {
    /// Running beams: new tokens and summed log-probability, best first.
    running: Vec<(Vec<u32>, f32)>,
    /// Finished hypotheses, best first, at most `num_beams`.
    finished: Vec<Hypothesis>,
    /// The prompt (for the repetition penalty).
    prompt: Vec<u32>,
    /// Its validity mask row (left padding) up to the cached length.
    valid: Vec<bool>,
    over: bool,
}

fn log_softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
    let sum: f32 = row.iter().map(|&x| (x - max).exp()).sum();
    let lse = max + sum.ln();
    row.iter().map(|&x| x - lse).collect()
}

impl Model {
    /// Beam search for each prompt (token ids): up to `num_return_sequences`
    /// hypotheses per prompt, best first.
    ///
    /// # Errors
    /// [`Error::Option`] for options [`GenerationOptions::check`] refuses;
    /// [`Error::Input`] for an empty batch or prompt, or ids outside the vocabulary;
    /// errors of the executor.
    pub fn beam_search(
        &mut self,
        prompts: &[Vec<u32>],
        options: &GenerationOptions,
    ) -> Result<Vec<Vec<Hypothesis>>> {
        options.check()?;
        let nb = options.num_beams;
        if prompts.is_empty() || prompts.iter().any(Vec::is_empty) {
            return Err(Error::Input("beam search needs non-empty prompts".into()));
        }
        let cfg = self.config().clone();
        let stops = options.stops(&cfg);
        let pad = cfg.pad_token_id.unwrap_or(0);
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        let mut searches: Vec<Search> = prompts
            .iter()
            .map(|p| {
                let padn = width - p.len();
                let mut valid = vec![false; padn];
                valid.extend(std::iter::repeat_n(true, p.len()));
                Search {
                    running: vec![(Vec::new(), 0.0)],
                    finished: Vec::new(),
                    prompt: p.clone(),
                    valid,
                    over: options.max_new_tokens == 0,
                }
            })
            .collect();
        // The first step runs each prompt once; later steps run `nb` rows per prompt.
        let mut ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|p| {
                let mut row = vec![pad; width - p.len()];
                row.extend(p);
                row
            })
            .collect();
        let mut valid: Vec<Vec<bool>> = searches.iter().map(|s| s.valid.clone()).collect();
        // Which search each batch row's beam belongs to: (search, beam).
        let mut rows: Vec<(usize, usize)> = (0..prompts.len()).map(|i| (i, 0)).collect();
        let mut cache = KvCache::new(&cfg, prompts.len());
        let keep = (2usize).max(1 + stops.len()) * nb;
        let v = cfg.vocab_size;
        let result = (|| -> Result<()> {
            for g in 0..options.max_new_tokens {
                if rows.is_empty() {
                    break;
                }
                let logits = self.step(&ids, &valid, &mut cache, true)?;
                let data = logits
                    .as_f32()
                    .ok_or_else(|| Error::Input("logits are not f32".into()))?
                    .to_vec();
                self.recycle(logits);
                // Candidates per search: (score, row, token).
                let mut cands: Vec<Vec<(f32, usize, u32)>> = vec![Vec::new(); searches.len()];
                for (r, &(s, beam)) in rows.iter().enumerate() {
                    let search = &searches[s];
                    let mut lp = log_softmax(&data[r * v..(r + 1) * v]);
                    let (tokens, score) = &search.running[beam];
                    if options.repetition_penalty != 1.0 {
                        let mut done = vec![false; v];
                        for &id in search.prompt.iter().chain(tokens) {
                            let i = id as usize;
                            if i < v && !std::mem::replace(&mut done[i], true) {
                                let x = lp[i];
                                lp[i] = if x < 0.0 {
                                    x * options.repetition_penalty
                                } else {
                                    x / options.repetition_penalty
                                };
                            }
                        }
                    }
                    let c = &mut cands[s];
                    c.extend(
                        lp.iter()
                            .enumerate()
                            .map(|(t, &x)| (x + score, r, t as u32)),
                    );
                    // Keep the list short: only the best `keep` can matter.
                    if c.len() > 4 * keep {
                        c.select_nth_unstable_by(keep, |a, b| b.0.total_cmp(&a.0));
                        c.truncate(keep);
                    }
                }
                let last = g + 1 == options.max_new_tokens;
                let mut next_rows = Vec::new();
                let mut sources = Vec::new();
                for (s, mut c) in cands.into_iter().enumerate() {
                    if c.is_empty() {
                        continue;
                    }
                    let n = keep.min(c.len());
                    if c.len() > n {
                        c.select_nth_unstable_by(n - 1, |a, b| b.0.total_cmp(&a.0));
                        c.truncate(n);
                    }
                    c.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
                    let search = &mut searches[s];
                    let hits = |t: u32| last || stops.contains(&t);
                    let extend =
                        |running: &[(Vec<u32>, f32)], &(score, r, t): &(f32, usize, u32)| {
                            let mut tokens = running[rows[r].1].0.clone();
                            tokens.push(t);
                            (tokens, score, r)
                        };
                    // Finished: only among the first `nb` continuations.
                    let full = search.finished.len() == nb;
                    if !(full && options.early_stopping == EarlyStopping::Always) {
                        let len = (g + 1) as f32;
                        for cand in c.iter().take(nb).filter(|x| hits(x.2)) {
                            let (tokens, score, _) = extend(&search.running, cand);
                            let score = score / len.powf(options.length_penalty);
                            let at = search.finished.partition_point(|h| h.score >= score);
                            if at < nb {
                                search.finished.insert(at, Hypothesis { tokens, score });
                                search.finished.truncate(nb);
                            }
                        }
                    }
                    // Running: the best `nb` that did not finish.
                    let running: Vec<_> = c
                        .iter()
                        .filter(|x| !hits(x.2))
                        .take(nb)
                        .map(|x| extend(&search.running, x))
                        .collect();
                    if running.is_empty() {
                        search.over = true;
                        continue;
                    }
                    let sources_here: Vec<usize> = running.iter().map(|x| x.2).collect();
                    search.running = running.into_iter().map(|(t, sc, _)| (t, sc)).collect();
                    // Early stopping.
                    let finished_full = search.finished.len() == nb;
                    search.over = match options.early_stopping {
                        EarlyStopping::Always => finished_full,
                        _ if !finished_full => false,
                        mode => {
                            let len =
                                if mode == EarlyStopping::Never && options.length_penalty > 0.0 {
                                    options.max_new_tokens
                                } else {
                                    g + 1
                                } as f32;
                            let best = search.running[0].1 / len.powf(options.length_penalty);
                            let worst = search.finished[nb - 1].score;
                            best <= worst
                        }
                    };
                    if !search.over {
                        for (beam, src) in sources_here.into_iter().enumerate() {
                            next_rows.push((s, beam));
                            sources.push(src);
                        }
                    }
                }
                if next_rows.is_empty() {
                    break;
                }
                self.gather_cache(&mut cache, &sources)?;
                valid = sources
                    .iter()
                    .map(|&r| {
                        let mut m = valid[r].clone();
                        m.push(true);
                        m
                    })
                    .collect();
                ids = next_rows
                    .iter()
                    .map(|&(s, beam)| vec![*searches[s].running[beam].0.last().unwrap_or(&pad)])
                    .collect();
                rows = next_rows;
            }
            Ok(())
        })();
        self.release(cache);
        result?;
        Ok(searches
            .into_iter()
            .map(|s| {
                let mut f = s.finished;
                f.truncate(options.num_return_sequences);
                f
            })
            .collect())
    }
}
