//! Errors of the AutoTrainer.

use std::path::{Path, PathBuf};

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The task file: YAML syntax, an unknown key, a bad value (with line and column
    /// where the parser gives them) or inconsistent settings.
    #[error("task: {0}")]
    Task(String),
    /// A data file: what is wrong, with the file and line.
    #[error("{file}:{line}: {reason}")]
    Data {
        /// The file.
        file: PathBuf,
        /// The line (1-based).
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// Reading or writing a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Loading, building or running a model.
    #[error(transparent)]
    Model(#[from] autoglm_models::Error),
    /// Training.
    #[error(transparent)]
    Train(#[from] autoglm_train::Error),
    /// The search's study: its journal, sampler or a trial's parameters.
    #[error("search: {0}")]
    Tune(#[from] autoglm_tune::Error),
    /// Scoring outputs (BLEU, ROUGE).
    #[error("scoring: {0}")]
    Eval(#[from] autoglm_eval::Error),
    /// Something the data cannot support (no training rows left, say).
    #[error("{0}")]
    Input(String),
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Error {
        Error::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// Writes `contents` to `path`, naming the file in the error.
pub(crate) fn write(path: &Path, contents: impl AsRef<[u8]>) -> Result<()> {
    std::fs::write(path, contents).map_err(|e| Error::io(path, e))
}

/// Writes `value` as pretty-printed JSON.
pub(crate) fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    write(
        path,
        serde_json::to_string_pretty(value).expect("serializable"),
    )
}

/// Writes one line per item.
pub(crate) fn write_lines(path: &Path, lines: &[String]) -> Result<()> {
    write(
        path,
        lines.iter().map(|s| format!("{s}\n")).collect::<String>(),
    )
}

/// This crate's results.
pub type Result<T, E = Error> = std::result::Result<T, E>;
