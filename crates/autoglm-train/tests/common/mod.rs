//! What the integration tests share: the models crate's fixture checkpoints and a
//! synthetic training set.

#![allow(dead_code)]

use std::path::{Path, PathBuf};

use autoglm_train::{Dataset, Example};

/// A fixture checkpoint of autoglm-models (`glm_gqa_bias`, `glm4_mqa`, …).
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../autoglm-models/tests/fixtures")
        .join(name)
}

/// `n` examples of 6–13 tokens with ids in `3..vocab` from a fixed pseudo-random
/// stream seeded by `seed`, every other one with a masked prompt.
pub(crate) fn examples(n: usize, vocab: u32, seed: u64) -> Vec<Example> {
    let mut x = seed;
    let mut next = || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as u32
    };
    (0..n)
        .map(|i| {
            let len = 6 + (next() % 8) as usize;
            let ids: Vec<u32> = (0..len).map(|_| 3 + next() % (vocab - 3)).collect();
            let mut labels: Vec<i64> = ids.iter().map(|&v| i64::from(v)).collect();
            if i % 2 == 1 {
                labels[..3].fill(-100);
            }
            Example {
                input_ids: ids,
                labels,
            }
        })
        .collect()
}

/// [`examples`] as a dataset.
pub(crate) fn dataset(n: usize, vocab: u32, seed: u64) -> Dataset {
    Dataset {
        examples: examples(n, vocab, seed),
        ..Dataset::default()
    }
}
