//! GLM-family decoders in the autoglm graph IR: the transformers model types `glm`
//! (GLM-4), `glm4` and `gpt_neox`, loaded from a Hugging Face checkpoint directory
//! (`config.json` + `model.safetensors` or sharded safetensors), optimised by the
//! built-in fusion rules and run by the `autoglm-ops` executor, with logits equal to
//! transformers' (checked against fixtures written by transformers itself).
//!
//! ```
//! use autoglm_models::{LoadOptions, Model, SamplingOptions};
//!
//! # fn main() -> autoglm_models::Result<()> {
//! // A tiny random GLM checkpoint saved by transformers (any `glm`, `glm4` or
//! // `gpt_neox` checkpoint directory works the same way).
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/glm_gqa_bias");
//! let mut model = Model::load(dir.as_ref(), &LoadOptions::default())?;
//! let logits = model.forward(&[vec![5, 6, 7]])?; // [batch, seq, vocab]
//! assert_eq!(logits.shape(), &[1, 3, model.config().vocab_size]);
//!
//! // Greedy continuation of two prompts in one left-padded batch, streamed.
//! let opts = SamplingOptions { max_new_tokens: 4, ..SamplingOptions::default() };
//! let mut streamed = 0;
//! let out = model.generate(&[vec![5, 6, 7], vec![9]], &opts, |_row, _token| streamed += 1)?;
//! assert_eq!(streamed, out.iter().map(Vec::len).sum::<usize>());
//! # Ok(()) }
//! ```

mod checkpoint;
mod config;
mod error;
mod export;
pub mod fuzz;
mod generate;
mod model;
#[cfg(feature = "tokenizer")]
mod tokenizer;

pub use checkpoint::Checkpoint;
pub use config::{Activation, ModelConfig, ModelType};
pub use error::{Error, Result};
pub use export::save_pretrained;
pub use generate::SamplingOptions;
pub use model::{build_graph, load_weights, rope_tables, LoadOptions, Model};
#[cfg(feature = "tokenizer")]
pub use tokenizer::TextTokenizer;
