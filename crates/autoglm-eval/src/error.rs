//! The crate's error type.

use thiserror::Error;

/// Everything that can go wrong when computing a metric.
#[derive(Debug, Error, Clone, PartialEq)]
#[non_exhaustive]
pub enum Error {
    /// An option value that the metric does not know.
    #[error("unknown {option} '{value}' (expected one of: {expected})")]
    UnknownOption {
        /// The option's name, as on sacrebleu's command line.
        option: &'static str,
        /// The value that was given.
        value: String,
        /// The accepted values.
        expected: &'static str,
    },
    /// An option value outside its valid range.
    #[error("invalid {option}: {reason}")]
    InvalidOption {
        /// The option's name.
        option: &'static str,
        /// Why it is invalid.
        reason: String,
    },
    /// Hypotheses and references do not have the same number of lines.
    #[error("{hyps} hypotheses but {refs} reference lines")]
    LengthMismatch {
        /// Number of hypothesis lines.
        hyps: usize,
        /// Number of reference lines.
        refs: usize,
    },
    /// A line without any reference.
    #[error("line {line} has no reference")]
    NoReference {
        /// The 1-based line number.
        line: usize,
    },
    /// A computation that needs at least one line got none.
    #[error("empty corpus")]
    EmptyCorpus,
}

/// `Result` with this crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
