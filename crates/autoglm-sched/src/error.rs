//! The crate's error type.

use thiserror::Error;

/// What can go wrong reading or scheduling.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A DAG, platform or schedule file does not follow its format; the message names
    /// the task, edge, worker or field.
    #[error("{what}: {msg}")]
    Format {
        /// Which input ("DAG 'name'", "platform", a file path…).
        what: String,
        /// What is wrong.
        msg: String,
    },
    /// JSON syntax.
    #[error("{what}: {source}")]
    Json {
        /// Which input.
        what: String,
        /// The parser's error (with line and column).
        source: serde_json::Error,
    },
}

/// `Result` with this crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
