//! Entry point for the fuzz target `fuzz/fuzz_targets/train_data.rs`: the training-data
//! reader and the batcher must return errors, never panic.

use std::path::Path;

use autoglm_models::ModelConfig;

use crate::data::{Batch, Dataset, Tokenize};

/// A tokenizer for text rows: bytes as ids.
struct Bytes;

impl Tokenize for Bytes {
    fn tokenize(&self, text: &str) -> Result<Vec<u32>, String> {
        Ok(text.bytes().map(u32::from).collect())
    }
}

/// Reads `data` as JSONL rows (the first byte picks the vocabulary size and the
/// maximum length), then batches what it read: every example must fit the
/// vocabulary, labels must be as long as the ids, and each batch's tensors must have
/// the batch's shape.
pub fn check_data(data: &[u8]) {
    let Some((&first, rest)) = data.split_first() else {
        return;
    };
    let vocab = 2 + usize::from(first) * 4;
    let max_len = (first % 3 == 0).then_some(1 + usize::from(first % 17));
    let Ok(ds) = Dataset::from_reader(rest, Path::new("fuzz.jsonl"), Some(&Bytes), vocab, max_len)
    else {
        return;
    };
    let cfg = ModelConfig::from_json(
        &format!(
            r#"{{"model_type": "glm", "vocab_size": {vocab}, "hidden_size": 8, "num_hidden_layers": 1,
               "num_attention_heads": 2, "num_key_value_heads": 1, "head_dim": 4,
               "intermediate_size": 8, "partial_rotary_factor": 0.5}}"#
        ),
        Path::new("config.json"),
    )
    .expect("a valid configuration");
    for ex in &ds.examples {
        assert_eq!(ex.input_ids.len(), ex.labels.len());
        assert!(ex.input_ids.iter().all(|&i| (i as usize) < vocab));
        assert!(max_len.is_none_or(|m| ex.input_ids.len() <= m));
    }
    for chunk in ds.examples.chunks(3) {
        let refs: Vec<_> = chunk.iter().collect();
        let b = Batch::new(&refs, &cfg).expect("non-empty examples batch");
        let t = chunk.iter().map(|e| e.input_ids.len()).max().unwrap_or(0);
        assert_eq!(b.ids.shape(), &[chunk.len(), t]);
        assert_eq!(b.mask.shape(), &[chunk.len(), 1, t, t]);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn malformed_inputs_are_errors() {
        for data in [
            &b"\x03{\"input_ids\": [1, 2, 3]}\n{\"text\": \"ab\"}\n"[..],
            b"\x00{\"input_ids\": [1, 2, 3]}",
            b"\x09{\"input_ids\": [1, 2], \"labels\": [-100, 7]}\n\n",
            b"\x05\xff\xfe",
            b"\x06{\"text\": \"\"}",
        ] {
            super::check_data(data);
        }
    }
}
