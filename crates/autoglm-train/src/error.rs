//! The crate's error type.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong preparing data or training.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A data row is malformed (file and line named).
    #[error("{path}:{line}: {reason}")]
    Data {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// The model (configuration, checkpoint, tokenizer).
    #[error(transparent)]
    Model(#[from] autoglm_models::Error),
    /// Building or differentiating the graph.
    #[error("graph: {0}")]
    Graph(#[from] autoglm_graph::Error),
    /// Running the graph.
    #[error("executor: {0}")]
    Ops(#[from] autoglm_ops::Error),
    /// Invalid settings or state.
    #[error("{0}")]
    Input(String),
}

/// `Result` with this crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An [`Error::Io`] for `path`.
pub(crate) fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_owned(),
        source,
    }
}
