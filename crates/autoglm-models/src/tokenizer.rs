//! Text in and out through a checkpoint's `tokenizer.json`, with the `tokenizers`
//! crate (feature `tokenizer`).

use std::path::Path;

use crate::error::{Error, Result};

/// A checkpoint's tokenizer: whole, or only its decoding part
/// ([`TextTokenizer::decoding_only`]).
pub struct TextTokenizer {
    inner: Inner,
}

enum Inner {
    Whole(Box<tokenizers::Tokenizer>),
    Decoding(Decoding),
}

/// What decoding reads of a tokenizer: each id's token (`None` for ids it lacks and
/// for special tokens, which decoding skips) and the decoder.
struct Decoding {
    /// The tokens one after the other; token `id` is `text[spans[id]]`.
    text: String,
    spans: Vec<Option<(u32, u32)>>,
    decoder: Option<Box<tokenizers::DecoderWrapper>>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (vocab, whole) = match &self.inner {
            Inner::Whole(t) => (t.get_vocab_size(true), true),
            Inner::Decoding(d) => (d.spans.len(), false),
        };
        f.debug_struct("TextTokenizer")
            .field("vocab", &vocab)
            .field("encodes", &whole)
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
        let file = std::fs::File::open(&path).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        // Parsed as it is read (`Tokenizer::from_file` holds the whole text too, at the
        // moment the vocabulary is built: megabytes for a large added vocabulary).
        let inner: tokenizers::Tokenizer = serde_json::from_reader(std::io::BufReader::new(file))
            .map_err(|e| Error::Checkpoint {
            path: path.clone(),
            reason: format!("not a usable tokenizer: {e}"),
        })?;
        Ok(Some(TextTokenizer {
            inner: Inner::Whole(Box::new(inner)),
        }))
    }

    /// A copy that only decodes, with [`TextTokenizer::decode`]'s results, in a
    /// fraction of the memory: each id's token as text, and the tokenizer's decoder.
    /// An encoding tokenizer keeps what splitting text needs as well (for a vocabulary
    /// padded with tens of thousands of added tokens, automata of megabytes), which
    /// generating after the prompt is encoded does not.
    pub fn decoding_only(&self) -> TextTokenizer {
        let t = match &self.inner {
            Inner::Whole(t) => t,
            Inner::Decoding(d) => {
                return TextTokenizer {
                    inner: Inner::Decoding(Decoding {
                        text: d.text.clone(),
                        spans: d.spans.clone(),
                        decoder: d.decoder.clone(),
                    }),
                }
            }
        };
        // As `tokenizers` decodes with special tokens skipped: the added token or else
        // the model's, dropped if its text is a special token's.
        let added = t.get_added_tokens_decoder();
        let special: std::collections::HashSet<&str> = added
            .values()
            .filter(|a| a.special)
            .map(|a| a.content.as_str())
            .collect();
        let n = added
            .keys()
            .map(|&id| id as usize + 1)
            .max()
            .unwrap_or(0)
            .max(t.get_vocab_size(false));
        let mut text = String::new();
        let spans = (0..n as u32)
            .map(|id| {
                let token = t.id_to_token(id)?;
                if special.contains(token.as_str()) {
                    return None;
                }
                let start = text.len() as u32;
                text.push_str(&token);
                Some((start, token.len() as u32))
            })
            .collect();
        TextTokenizer {
            inner: Inner::Decoding(Decoding {
                text,
                spans,
                decoder: t.get_decoder().cloned().map(Box::new),
            }),
        }
    }

    /// Token ids of `text` (with the tokenizer's own special tokens, as transformers'
    /// `tokenizer(text)` adds them).
    ///
    /// # Errors
    /// [`Error::Input`] if the tokenizer fails or only decodes.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let Inner::Whole(t) = &self.inner else {
            return Err(Error::Input(
                "this copy of the tokenizer only decodes".into(),
            ));
        };
        let enc = t
            .encode(text, true)
            .map_err(|e| Error::Input(format!("tokenizing '{text}': {e}")))?;
        Ok(enc.get_ids().to_vec())
    }

    /// The id of a token of the vocabulary (special tokens included, except in a
    /// decoding-only copy, which keeps none), if it has one.
    pub fn token_id(&self, token: &str) -> Option<u32> {
        match &self.inner {
            Inner::Whole(t) => t.token_to_id(token),
            // Special tokens are not kept.
            Inner::Decoding(d) => (0..d.spans.len() as u32).find(|&id| d.token(id) == Some(token)),
        }
    }

    /// Text of `ids`, special tokens skipped.
    ///
    /// # Errors
    /// [`Error::Input`] if the tokenizer fails.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        let err = |e: tokenizers::Error| Error::Input(format!("decoding {ids:?}: {e}"));
        match &self.inner {
            Inner::Whole(t) => t.decode(ids, true).map_err(err),
            Inner::Decoding(d) => {
                use tokenizers::Decoder;
                let tokens: Vec<String> = ids
                    .iter()
                    .filter_map(|&id| d.token(id).map(str::to_string))
                    .collect();
                match &d.decoder {
                    Some(dec) => dec.decode(tokens).map_err(err),
                    None => Ok(tokens.join(" ")),
                }
            }
        }
    }
}

impl Decoding {
    fn token(&self, id: u32) -> Option<&str> {
        let (start, len) = (*self.spans.get(id as usize)?)?;
        Some(&self.text[start as usize..(start + len) as usize])
    }
}
