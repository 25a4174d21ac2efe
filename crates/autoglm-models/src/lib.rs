//! GLM-family decoders in the autoglm graph IR: the transformers model types `glm`
//! (GLM-4), `glm4` and `gpt_neox`, loaded from a Hugging Face checkpoint directory
//! (`config.json` + `model.safetensors` or sharded safetensors), optimised by the
//! built-in fusion rules and run by the `autoglm-ops` executor, with logits equal to
//! transformers' (checked against fixtures written by transformers itself).
//!
//! ```no_run
//! use autoglm_models::{LoadOptions, Model};
//!
//! # fn main() -> autoglm_models::Result<()> {
//! let mut model = Model::load("path/to/checkpoint".as_ref(), &LoadOptions::default())?;
//! let logits = model.forward(&[vec![1, 2, 3]])?; // [batch, seq, vocab]
//! assert_eq!(logits.shape(), &[1, 3, model.config().vocab_size]);
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
