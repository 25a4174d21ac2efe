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
    /// A checkpoint's `trainer_state.json` could not be parsed.
    #[error("{path}: {source}")]
    TrainerState {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A checkpoint path that does not end in a directory name (`/`, `..`).
    #[error("{path}: a checkpoint needs a directory name")]
    CheckpointPath {
        /// The path.
        path: PathBuf,
    },
    /// Resuming from a checkpoint directory failed.
    #[error("resuming from {path}: {source}")]
    Resume {
        /// The checkpoint directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: Box<Error>,
    },
    /// A line of a loss log (`losses.jsonl`) is not a loss record.
    #[error("{path}:{line}: {source}")]
    LossLog {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// Why.
        #[source]
        source: serde_json::Error,
    },
    /// A file could not be copied into the run directory.
    #[error("copying {from} to {to}: {source}")]
    Copy {
        /// The source file.
        from: PathBuf,
        /// The destination.
        to: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
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
