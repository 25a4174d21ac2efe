//! The crate's error type.

use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong in a study.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter definition is invalid.
    #[error("parameter '{name}': {reason}")]
    InvalidDistribution {
        /// The parameter.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// A search space definition could not be parsed.
    #[error("search space: {0}")]
    Space(String),
    /// A parameter was suggested again with a different distribution.
    #[error("parameter '{name}' was already defined with another distribution in this study")]
    IncompatibleDistribution {
        /// The parameter.
        name: String,
    },
    /// A value is not in its parameter's distribution.
    #[error("parameter '{name}': value {value} is outside its distribution")]
    OutOfDistribution {
        /// The parameter.
        name: String,
        /// The value, as text.
        value: String,
    },
    /// No trial with this number exists.
    #[error("no trial number {0}")]
    UnknownTrial(u64),
    /// The trial is already finished.
    #[error("trial {0} is already finished")]
    TrialFinished(u64),
    /// A multi-objective study got the wrong number of values.
    #[error("expected {expected} objective values, got {got}")]
    WrongValueCount {
        /// Values the study has directions for.
        expected: usize,
        /// Values given.
        got: usize,
    },
    /// Every point of a finite search space has been evaluated or is running (failed
    /// trials aside), so [`crate::Study::ask`] has nothing new to propose; the space is
    /// the one the study's trials have suggested from so far.
    #[error(
        "the search space is exhausted: all {points} of its points were evaluated or are running"
    )]
    SpaceExhausted {
        /// Distinct points seen (complete, pruned or running trials).
        points: u64,
    },
    /// A journal file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A journal line is not a valid record (and is not the torn last line).
    #[error("{path}:{line}: invalid journal record: {reason}")]
    Journal {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        reason: String,
    },
    /// A journal's storage (a file, a Redis server) could not be read or written;
    /// the reason names it.
    #[error("{reason}")]
    Storage {
        /// What went wrong, and where.
        reason: String,
    },
    /// A multi-fidelity plan or loop that cannot run (its budgets, its limits, a
    /// multi-objective study); says what would fit.
    #[error("multi-fidelity search: {0}")]
    MultiFidelity(String),
}

/// `Result` with this crate's [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
