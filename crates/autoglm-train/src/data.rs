//! Training data: JSONL rows of text (tokenized with the model's `tokenizer.json`) or
//! pre-tokenized ids with labels, batches padded on the right with labels masked, and
//! a seeded data order that a resumed run reproduces.

use std::io::BufRead;
use std::path::Path;

use autoglm_models::{rope_tables, ModelConfig, IGNORE_INDEX};
use autoglm_ops::{Data, Tensor};
use rand::SeedableRng;
use rand_pcg::Pcg64Mcg;
use serde::Deserialize;

use crate::error::{io, Error, Result};

/// One example: token ids and, per position, the label (transformers' convention: the
/// token itself, or −100 where no loss is taken; position `i` is trained to predict
/// `labels[i + 1]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Example {
    /// Token ids.
    pub input_ids: Vec<u32>,
    /// Labels, as long as `input_ids`.
    pub labels: Vec<i64>,
}

/// Examples read from a file, and what was set aside.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    /// The usable examples, in file order.
    pub examples: Vec<Example>,
    /// Rows without any position to learn (fewer than two tokens, or every label
    /// after the first −100), by 1-based line: counted, not trained on.
    pub skipped: Vec<usize>,
    /// Rows cut to the maximum length.
    pub truncated: usize,
}

/// A JSONL row.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Row {
    text: Option<String>,
    input_ids: Option<Vec<i64>>,
    labels: Option<Vec<i64>>,
}

/// Text-to-ids for `{"text": …}` rows.
pub trait Tokenize {
    /// The ids of `text`.
    ///
    /// # Errors
    /// A message if the text cannot be tokenized.
    fn tokenize(&self, text: &str) -> std::result::Result<Vec<u32>, String>;
}

#[cfg(feature = "tokenizer")]
impl Tokenize for autoglm_models::TextTokenizer {
    fn tokenize(&self, text: &str) -> std::result::Result<Vec<u32>, String> {
        self.encode(text).map_err(|e| e.to_string())
    }
}

impl Dataset {
    /// Reads JSONL rows `{"text": …}` (every token labelled) or `{"input_ids": […],
    /// "labels": […]}` (`labels` optional: the ids themselves), checking ids against
    /// `vocab` and cutting rows to `max_len` tokens.
    ///
    /// # Errors
    /// [`Error::Data`] naming the line for malformed JSON, unknown fields, ids outside
    /// the vocabulary, labels of another length, or a text row without a tokenizer;
    /// [`Error::Io`] if the file cannot be read.
    pub fn read_jsonl(
        path: &Path,
        tokenizer: Option<&dyn Tokenize>,
        vocab: usize,
        max_len: Option<usize>,
    ) -> Result<Dataset> {
        let file = std::fs::File::open(path).map_err(io(path))?;
        Dataset::from_reader(
            std::io::BufReader::new(file),
            path,
            tokenizer,
            vocab,
            max_len,
        )
    }

    /// [`Dataset::read_jsonl`] from any reader; `path` names it in errors.
    ///
    /// # Errors
    /// As [`Dataset::read_jsonl`].
    pub fn from_reader(
        reader: impl BufRead,
        path: &Path,
        tokenizer: Option<&dyn Tokenize>,
        vocab: usize,
        max_len: Option<usize>,
    ) -> Result<Dataset> {
        let mut out = Dataset::default();
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(io(path))?;
            let n = i + 1;
            if line.trim().is_empty() {
                continue;
            }
            let bad = |reason: String| Error::Data {
                path: path.to_owned(),
                line: n,
                reason,
            };
            let row: Row = serde_json::from_str(&line).map_err(|e| bad(e.to_string()))?;
            let (ids, labels) = match (row.text, row.input_ids) {
                (Some(text), None) => {
                    if row.labels.is_some() {
                        return Err(bad("a text row takes no labels".into()));
                    }
                    let tok = tokenizer
                        .ok_or_else(|| bad("a text row needs the model's tokenizer.json".into()))?;
                    let ids = tok.tokenize(&text).map_err(bad)?;
                    if let Some(&x) = ids.iter().find(|&&x| x as usize >= vocab) {
                        return Err(bad(format!(
                            "the tokenizer gives id {x}, outside the model's vocabulary (size {vocab})"
                        )));
                    }
                    let labels = ids.iter().map(|&i| i64::from(i)).collect();
                    (ids, labels)
                }
                (None, Some(raw)) => {
                    let mut ids = Vec::with_capacity(raw.len());
                    for &x in &raw {
                        if x < 0 || x as usize >= vocab {
                            return Err(bad(format!(
                                "input id {x} is outside the vocabulary (size {vocab})"
                            )));
                        }
                        ids.push(x as u32);
                    }
                    let labels = row.labels.unwrap_or(raw);
                    if labels.len() != ids.len() {
                        return Err(bad(format!(
                            "{} labels for {} input ids",
                            labels.len(),
                            ids.len()
                        )));
                    }
                    if let Some(&x) = labels
                        .iter()
                        .find(|&&x| x != IGNORE_INDEX && (x < 0 || x as usize >= vocab))
                    {
                        return Err(bad(format!(
                            "label {x} is neither {IGNORE_INDEX} nor inside the vocabulary (size {vocab})"
                        )));
                    }
                    (ids, labels)
                }
                _ => {
                    return Err(bad(
                        "a row has either \"text\" or \"input_ids\" (with optional \"labels\")"
                            .into(),
                    ))
                }
            };
            let mut ex = Example {
                input_ids: ids,
                labels,
            };
            if let Some(m) = max_len {
                if ex.input_ids.len() > m {
                    ex.input_ids.truncate(m);
                    ex.labels.truncate(m);
                    out.truncated += 1;
                }
            }
            if ex.labels.iter().skip(1).all(|&l| l == IGNORE_INDEX) {
                out.skipped.push(n);
                continue;
            }
            out.examples.push(ex);
        }
        Ok(out)
    }
}

/// A batch ready for the training graph.
#[derive(Debug, Clone)]
pub struct Batch {
    /// `ids [b, t]`, padded on the right.
    pub ids: Tensor,
    /// `labels [b, t]`: what each position predicts (the next token's label), −100 on
    /// padding, on positions whose next label is −100 and on each row's last position.
    pub labels: Tensor,
    /// `mask [b, 1, t, t]`: causal, padding keys closed.
    pub mask: Tensor,
    /// The rotary tables of positions `0..t`.
    pub cos: Tensor,
    /// See `cos`.
    pub sin: Tensor,
    /// Positions that count in the loss.
    pub counted: usize,
}

impl Batch {
    /// Pads `examples` on the right to the longest (with the config's pad token, or 0).
    ///
    /// # Errors
    /// [`Error::Input`] for an empty batch or an empty example.
    pub fn new(examples: &[&Example], cfg: &ModelConfig) -> Result<Batch> {
        let b = examples.len();
        let t = examples
            .iter()
            .map(|e| e.input_ids.len())
            .max()
            .unwrap_or(0);
        if b == 0 || t == 0 {
            return Err(Error::Input("a batch needs non-empty examples".into()));
        }
        let pad = i64::from(cfg.pad_token_id.unwrap_or(0));
        let mut ids = vec![pad; b * t];
        let mut labels = vec![IGNORE_INDEX; b * t];
        let mut mask = vec![f32::NEG_INFINITY; b * t * t];
        let mut counted = 0;
        for (r, e) in examples.iter().enumerate() {
            let n = e.input_ids.len();
            for (i, &id) in e.input_ids.iter().enumerate() {
                ids[r * t + i] = i64::from(id);
            }
            for i in 0..n.saturating_sub(1) {
                labels[r * t + i] = e.labels[i + 1];
                counted += usize::from(e.labels[i + 1] != IGNORE_INDEX);
            }
            for i in 0..t {
                // Keys up to the query's position, within the row's tokens (a padding
                // query sees the row's tokens; its label is ignored).
                let open = (i + 1).min(n.max(1));
                mask[(r * t + i) * t..(r * t + i) * t + open].fill(0.0);
            }
        }
        let positions: Vec<usize> = (0..t).collect();
        let (cos, sin) = rope_tables(&positions, cfg.rotary_dim, cfg.rope_theta);
        Ok(Batch {
            ids: Tensor::new(&[b, t], Data::I64(ids))?,
            labels: Tensor::new(&[b, t], Data::I64(labels))?,
            mask: Tensor::from_f32(&[b, 1, t, t], mask)?,
            cos,
            sin,
            counted,
        })
    }

    /// The inputs of the training graph (`cos`/`sin` only for a model with rotary).
    pub fn feed(&self, rotary: bool) -> Vec<(&'static str, &Tensor)> {
        let mut feed = vec![
            ("ids", &self.ids),
            ("labels", &self.labels),
            ("mask", &self.mask),
        ];
        if rotary {
            feed.push(("cos", &self.cos));
            feed.push(("sin", &self.sin));
        }
        feed
    }
}

/// Which examples form each batch: file order, or a fresh seeded permutation per
/// epoch; the last batch of an epoch may be short. A function of the batch number
/// alone, so a resumed run sees the same batches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    /// Examples.
    pub len: usize,
    /// Examples per batch.
    pub batch_size: usize,
    /// Permute each epoch.
    pub shuffle: bool,
    /// Seed of the permutations.
    pub seed: u64,
    /// Example lengths, to batch examples of similar length together (less
    /// padding): each epoch's order is cut into mega-batches of 50 batches, each
    /// sorted by length (longest first), and the batches of the epoch are then
    /// shuffled, as transformers' `group_by_length` does. `None`: no grouping.
    pub lengths: Option<std::sync::Arc<[usize]>>,
}

impl Order {
    /// Batches per epoch.
    pub fn batches_per_epoch(&self) -> usize {
        self.len.div_ceil(self.batch_size.max(1))
    }

    /// The example indices of batch `k` (counting over all epochs).
    pub fn batch(&self, k: u64) -> Vec<usize> {
        let per = self.batches_per_epoch().max(1) as u64;
        let (epoch, j) = (k / per, (k % per) as usize);
        let mut idx: Vec<usize> = (0..self.len).collect();
        if self.shuffle {
            use rand::seq::SliceRandom;
            let mut rng =
                Pcg64Mcg::seed_from_u64(self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            idx.shuffle(&mut rng);
        }
        let b = self.batch_size.max(1);
        if let Some(lengths) = &self.lengths {
            let mut rng = Pcg64Mcg::seed_from_u64(
                self.seed ^ epoch.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5851_F42D_4C95_7F2D,
            );
            for mega in idx.chunks_mut(50 * b) {
                mega.sort_by_key(|&i| std::cmp::Reverse(lengths.get(i).copied().unwrap_or(0)));
            }
            let mut batches: Vec<&[usize]> = idx.chunks(b).collect();
            if self.shuffle {
                use rand::seq::SliceRandom;
                batches.shuffle(&mut rng);
            }
            return batches.get(j).map_or_else(Vec::new, |c| c.to_vec());
        }
        let start = j * b;
        idx[start..(start + b).min(self.len)].to_vec()
    }
}
