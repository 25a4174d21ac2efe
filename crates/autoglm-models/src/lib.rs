#![doc = include_str!("../README.md")]

mod beam;
mod checkpoint;
mod config;
mod error;
mod export;
pub mod fuzz;
mod generate;
mod init;
mod model;
mod paged;
#[cfg(feature = "tokenizer")]
mod tokenizer;

pub use beam::{BeamOptions, EarlyStopping, Hypothesis};
pub use checkpoint::Checkpoint;
pub use config::{Activation, ModelConfig, ModelType};
pub use error::{Error, Result};
pub use export::save_pretrained;
pub use generate::SamplingOptions;
pub use init::init_weights;
pub use model::{
    build_graph, build_training_graph, load_weights, rope_tables, LoadOptions, Model, IGNORE_INDEX,
};
pub use paged::{Chunk, PagedCache, PagedModel, Sampler};
#[cfg(feature = "tokenizer")]
pub use tokenizer::TextTokenizer;
