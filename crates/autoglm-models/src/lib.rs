#![doc = include_str!("../README.md")]

mod beam;
mod checkpoint;
mod config;
mod decode;
mod error;
mod export;
pub mod fuzz;
mod generate;
pub mod gguf;
mod gguf_export;
mod gguf_import;
mod init;
mod model;
mod paged;
pub mod quantize;
#[cfg(feature = "tokenizer")]
mod tokenizer;

pub use autoglm_ops::{Storage, StoragePlan};
pub use beam::{EarlyStopping, Hypothesis};
pub use checkpoint::Checkpoint;
pub use config::{Activation, ModelConfig, ModelType};
#[cfg(feature = "tokenizer")]
pub use decode::StreamDecoder;
pub use decode::{Delta, GenerationOptions};
pub use error::{Error, Result};
pub use export::{save_pretrained, save_pretrained_as, save_pretrained_with, Stored};
pub use gguf_export::{export_gguf, GgufExport};
pub use gguf_import::import_gguf;
pub use init::init_weights;
pub use model::{
    build_graph, build_training_graph, load_weights, rope_tables, storage_plan, LoadOptions, Model,
    IGNORE_INDEX,
};
pub use paged::{Chunk, MemoryNeed, Observer, PagedCache, PagedModel, Sampler, Site};
#[cfg(feature = "tokenizer")]
pub use tokenizer::TextTokenizer;
