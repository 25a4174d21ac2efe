//! The task's tokenizer: a byte-level BPE trained on the training split with the
//! `tokenizers` crate (or a `tokenizer.json` loaded from disk), and the layout of an
//! example for a decoder-only model: `<s> input <sep> target </s>`, the loss taken on
//! the target and the closing `</s>` only.

use std::path::Path;

use autoglm_train::Example;
use serde::{Deserialize, Serialize};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::models::TrainerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use crate::error::{Error, Result};

/// The special tokens, with these ids in a trained tokenizer.
pub const SPECIAL: [&str; 4] = ["<pad>", "<s>", "</s>", "<sep>"];

/// `tokenizer:` in the task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerConfig {
    /// Load this `tokenizer.json` instead of training one (it must know the four
    /// special tokens `<pad>`, `<s>`, `</s>`, `<sep>`).
    #[serde(default)]
    pub path: Option<std::path::PathBuf>,
    /// Vocabulary size of a trained tokenizer, special tokens and the 256 byte
    /// symbols included.
    #[serde(default = "default_vocab")]
    pub vocab_size: usize,
    /// Merges seen fewer times than this are not learnt.
    #[serde(default = "default_min_frequency")]
    pub min_frequency: u64,
}

fn default_vocab() -> usize {
    1024
}
fn default_min_frequency() -> u64 {
    2
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig {
            path: None,
            vocab_size: default_vocab(),
            min_frequency: default_min_frequency(),
        }
    }
}

/// A tokenizer with the task's special tokens.
#[derive(Clone)]
pub struct TaskTokenizer {
    inner: Tokenizer,
    /// `<pad>`, `<s>`, `</s>`, `<sep>`.
    ids: [u32; 4],
}

impl std::fmt::Debug for TaskTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskTokenizer")
            .field("vocab_size", &self.vocab_size())
            .finish()
    }
}

impl TaskTokenizer {
    /// Trains a byte-level BPE on `texts` (every byte stays encodable, so any text
    /// round-trips).
    ///
    /// # Errors
    /// [`Error::Task`] for a vocabulary too small for the byte alphabet; [`Error::Input`]
    /// if training fails.
    pub fn train<'a>(
        cfg: &TokenizerConfig,
        texts: impl Iterator<Item = &'a str> + Send,
    ) -> Result<TaskTokenizer> {
        let alphabet = ByteLevel::alphabet();
        if cfg.vocab_size < alphabet.len() + SPECIAL.len() {
            return Err(Error::Task(format!(
                "tokenizer.vocab_size: {} is below the {} byte symbols and special tokens",
                cfg.vocab_size,
                alphabet.len() + SPECIAL.len()
            )));
        }
        let mut trainer: TrainerWrapper = BpeTrainerBuilder::new()
            .vocab_size(cfg.vocab_size)
            .min_frequency(cfg.min_frequency)
            .show_progress(false)
            .special_tokens(SPECIAL.iter().map(|s| AddedToken::from(*s, true)).collect())
            .initial_alphabet(alphabet.into_iter().collect())
            .build()
            .into();
        let mut tok = Tokenizer::new(BPE::default());
        let byte_level = ByteLevel::default().add_prefix_space(false);
        tok.with_pre_tokenizer(Some(byte_level));
        tok.with_decoder(Some(byte_level));
        tok.train(&mut trainer, texts)
            .map_err(|e| Error::Input(format!("training the tokenizer: {e}")))?;
        TaskTokenizer::wrap(tok, Path::new("(trained)"))
    }

    /// Loads a `tokenizer.json`.
    ///
    /// # Errors
    /// [`Error::Task`] naming the file if it cannot be loaded or lacks a special token.
    pub fn load(path: &Path) -> Result<TaskTokenizer> {
        let tok = Tokenizer::from_file(path)
            .map_err(|e| Error::Task(format!("{}: not a usable tokenizer: {e}", path.display())))?;
        TaskTokenizer::wrap(tok, path)
    }

    fn wrap(inner: Tokenizer, path: &Path) -> Result<TaskTokenizer> {
        let mut ids = [0; 4];
        for (slot, s) in ids.iter_mut().zip(SPECIAL) {
            *slot = inner
                .token_to_id(s)
                .ok_or_else(|| Error::Task(format!("{}: no special token {s}", path.display())))?;
        }
        Ok(TaskTokenizer { inner, ids })
    }

    /// Vocabulary size, special tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// `<pad>`, `<s>`, `</s>`, `<sep>`.
    pub fn special_ids(&self) -> [u32; 4] {
        self.ids
    }

    /// Token ids of `text` (no special tokens added).
    ///
    /// # Errors
    /// [`Error::Input`] if the tokenizer fails.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        Ok(self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Input(format!("tokenizing {text:?}: {e}")))?
            .get_ids()
            .to_vec())
    }

    /// Text of `ids`, special tokens dropped.
    ///
    /// # Errors
    /// [`Error::Input`] if the tokenizer fails.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Input(format!("decoding {ids:?}: {e}")))
    }

    /// The prompt of an input: `<s> input <sep>`.
    ///
    /// # Errors
    /// As [`TaskTokenizer::encode`].
    pub fn prompt(&self, input: &str) -> Result<Vec<u32>> {
        let mut ids = vec![self.ids[1]];
        ids.extend(self.encode(input)?);
        ids.push(self.ids[3]);
        Ok(ids)
    }

    /// A training example: `<s> input <sep> target </s>`, labels −100 on the prompt.
    ///
    /// # Errors
    /// As [`TaskTokenizer::encode`].
    pub fn example(&self, input: &str, target: &str) -> Result<Example> {
        let mut input_ids = self.prompt(input)?;
        let prompt = input_ids.len();
        input_ids.extend(self.encode(target)?);
        input_ids.push(self.ids[2]);
        let labels = input_ids
            .iter()
            .enumerate()
            .map(|(i, &t)| if i < prompt { -100 } else { i64::from(t) })
            .collect();
        Ok(Example { input_ids, labels })
    }

    /// Writes `tokenizer.json`.
    ///
    /// # Errors
    /// [`Error::Io`] naming the file.
    pub fn save(&self, path: &Path) -> Result<()> {
        self.inner
            .save(path, true)
            .map_err(|e| Error::io(path, std::io::Error::other(e.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trained_bpe_round_trips_text_and_lays_out_examples() {
        let texts = [
            "name[The Eagle], eatType[coffee shop], priceRange[£20-25]",
            "The Eagle is a coffee shop with prices of £20-25.",
            "name[Zizzi], food[Italian]",
            "Zizzi serves Italian food in the riverside area.",
        ];
        let many: Vec<&str> = texts.iter().cycle().take(200).copied().collect();
        let cfg = TokenizerConfig {
            vocab_size: 400,
            ..TokenizerConfig::default()
        };
        let tok = TaskTokenizer::train(&cfg, many.into_iter()).unwrap();
        assert_eq!(tok.special_ids(), [0, 1, 2, 3]);
        assert!(tok.vocab_size() <= 400 && tok.vocab_size() > 300);
        for t in texts.iter().chain(&["Ünïcödé never seen: 東京 ☕"]) {
            let ids = tok.encode(t).unwrap();
            assert_eq!(tok.decode(&ids).unwrap(), *t);
        }
        // Merges were learnt: the frequent words take fewer tokens than bytes.
        assert!(tok.encode(texts[1]).unwrap().len() < texts[1].len() / 2);
        let ex = tok.example("name[Zizzi]", "Zizzi.").unwrap();
        let p = tok.prompt("name[Zizzi]").unwrap();
        assert_eq!(&ex.input_ids[..p.len()], &p[..]);
        assert_eq!(*ex.input_ids.last().unwrap(), 2);
        assert!(ex.labels[..p.len()].iter().all(|&l| l == -100));
        assert!(ex.labels[p.len()..].iter().all(|&l| l >= 0));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokenizer.json");
        tok.save(&path).unwrap();
        let back = TaskTokenizer::load(&path).unwrap();
        assert_eq!(
            back.encode(texts[0]).unwrap(),
            tok.encode(texts[0]).unwrap()
        );
        let small = TokenizerConfig {
            vocab_size: 100,
            ..TokenizerConfig::default()
        };
        assert!(TaskTokenizer::train(&small, texts.into_iter()).is_err());
    }
}
