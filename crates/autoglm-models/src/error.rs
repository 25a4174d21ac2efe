//! Errors of this crate: each names the file, field or tensor at fault.

use std::path::PathBuf;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read (or written).
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// `config.json` (or another JSON file) is malformed or asks for something this
    /// crate does not build.
    #[error("{path}: field '{field}': {reason}")]
    Config {
        /// The file.
        path: PathBuf,
        /// The field, dotted for nested ones (`rope_parameters.rope_type`).
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A checkpoint file or tensor is missing, corrupt or of the wrong shape.
    #[error("{path}: {reason}")]
    Checkpoint {
        /// The file (or checkpoint directory).
        path: PathBuf,
        /// What is wrong, naming the tensor where there is one.
        reason: String,
    },
    /// Building the graph failed (a bug in a builder, reported rather than hidden).
    #[error("graph: {0}")]
    Graph(#[from] autoglm_graph::Error),
    /// Running it failed.
    #[error("executor: {0}")]
    Ops(#[from] autoglm_ops::Error),
    /// A generation option is out of range or does not fit the others.
    #[error("generation option {option} {reason}")]
    Option {
        /// The option (a field of `GenerationOptions`).
        option: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A request this model cannot serve (token id outside the vocabulary, empty batch…).
    #[error("{0}")]
    Input(String),
}

/// This crate's result type.
pub type Result<T> = std::result::Result<T, Error>;
