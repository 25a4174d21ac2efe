//! Text in and out through a checkpoint's `tokenizer.json`, with the `tokenizers`
//! crate (feature `tokenizer`).

use std::path::Path;

use crate::error::{Error, Result};

/// A checkpoint's tokenizer.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab", &self.inner.get_vocab_size(true))
            .finish()
    }
}

impl TextTokenizer {
    /// Loads `dir/tokenizer.json`, or `None` if the checkpoint has none.
    ///
    /// # Errors
    /// [`Error::Checkpoint`] naming the file if it exists but cannot be loaded.
    pub fn from_dir(dir: &Path) -> Result<Option<TextTokenizer>> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Ok(None);
        }
        let inner = tokenizers::Tokenizer::from_file(&path).map_err(|e| Error::Checkpoint {
            path: path.clone(),
            reason: format!("not a usable tokenizer: {e}"),
        })?;
        Ok(Some(TextTokenizer { inner }))
    }

    /// Token ids of `text` (with the tokenizer's own special tokens, as transformers'
    /// `tokenizer(text)` adds them).
    ///
    /// # Errors
    /// [`Error::Input`] if the tokenizer fails.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self
            .inner
            .encode(text, true)
            .map_err(|e| Error::Input(format!("tokenizing '{text}': {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The id of a token of the vocabulary (special tokens included), if it has one.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// Text of `ids`, special tokens skipped.
    ///
    /// # Errors
    /// [`Error::Input`] if the tokenizer fails.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner
            .decode(ids, true)
            .map_err(|e| Error::Input(format!("decoding {ids:?}: {e}")))
    }
}
