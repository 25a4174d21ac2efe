//! Errors of the service: one variant per cause, each with its HTTP status and
//! OpenAI-style type ([`ServeError::status`], [`ServeError::kind`]), for overload a
//! Retry-After hint, and the lower error (models, I/O, JSON, a task) as its source.
//!
//! The message an API returns is the error's `Display`.

use std::path::PathBuf;
use std::sync::Arc;

/// An error of the service, as the APIs return it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// 400: the request is malformed or impossible.
    #[error("{0}")]
    BadRequest(String),
    /// 400: autoglm-models refused what the request named or sent: a model's
    /// `config.json`, checkpoint or tokenizer, text that does not tokenize,
    /// generation options out of range.
    #[error("{0}")]
    Model(#[from] autoglm_models::Error),
    /// 400: a model directory that does not load.
    #[error("{}: {source}", path.display())]
    Load {
        /// The directory.
        path: PathBuf,
        /// Why.
        #[source]
        source: autoglm_models::Error,
    },
    /// 401: a bearer token is required and was missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: a path outside the repository root.
    #[error("{0}")]
    Forbidden(String),
    /// 404: no such model, version or route.
    #[error("{0}")]
    NotFound(String),
    /// 404: a model directory that cannot be found (or resolved).
    #[error("model directory {}: {source}", path.display())]
    NoDirectory {
        /// The directory as given.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// 405: the route takes other methods.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// 409: the request conflicts with the repository's state (already
    /// registered, over the memory budget, still loaded).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body (or prompt) is larger than the server accepts.
    #[error("{0}")]
    TooLarge(String),
    /// 503: overloaded or shutting down; a retry after `retry_after` seconds may
    /// succeed.
    #[error("{message}")]
    Unavailable {
        /// What is unavailable.
        message: String,
        /// Seconds after which to retry.
        retry_after: u64,
    },
    /// 500: reading or writing the repository's files, binding the address,
    /// starting a thread.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (a file, `bind 127.0.0.1:8080`…).
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// 500: the repository's registry file is not valid JSON or cannot be
    /// written as JSON.
    #[error("{context}: {source}")]
    Registry {
        /// The file (or `registry`).
        context: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// 500: the model failed while serving (making the key/value cache, a batch
    /// step); shared by every request of the batch.
    #[error("{context}: {source}")]
    Engine {
        /// Where (`key/value cache`, `model step`).
        context: &'static str,
        /// The cause.
        #[source]
        source: Arc<autoglm_models::Error>,
    },
    /// 500: a blocking task of the server panicked or was cancelled.
    #[error("{context}: {source}")]
    Task {
        /// What the task did.
        context: String,
        /// The cause.
        #[source]
        source: tokio::task::JoinError,
    },
    /// 500: another failure of the server itself.
    #[error("{0}")]
    Internal(String),
}

impl ServeError {
    /// The HTTP status.
    pub fn status(&self) -> u16 {
        match self {
            ServeError::BadRequest(_) | ServeError::Model(_) | ServeError::Load { .. } => 400,
            ServeError::Unauthorized(_) => 401,
            ServeError::Forbidden(_) => 403,
            ServeError::NotFound(_) | ServeError::NoDirectory { .. } => 404,
            ServeError::MethodNotAllowed => 405,
            ServeError::Conflict(_) => 409,
            ServeError::TooLarge(_) => 413,
            ServeError::Unavailable { .. } => 503,
            ServeError::Io { .. }
            | ServeError::Registry { .. }
            | ServeError::Engine { .. }
            | ServeError::Task { .. }
            | ServeError::Internal(_) => 500,
        }
    }

    /// The OpenAI-style error type (`invalid_request_error`, `not_found_error`, …).
    pub fn kind(&self) -> &'static str {
        match self.status() {
            400 | 405 | 413 => "invalid_request_error",
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            409 => "conflict_error",
            503 => "overloaded_error",
            _ => "server_error",
        }
    }

    /// Seconds after which a retry may succeed (503).
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ServeError::Unavailable { retry_after, .. } => Some(*retry_after),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::ServeError;

    fn io() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::NotFound, "gone")
    }

    #[test]
    fn each_cause_has_its_status_type_and_message() {
        let cases = [
            (
                ServeError::BadRequest("bad".into()),
                400,
                "invalid_request_error",
                "bad",
            ),
            (
                ServeError::Unauthorized("who".into()),
                401,
                "authentication_error",
                "who",
            ),
            (
                ServeError::Forbidden("no".into()),
                403,
                "permission_error",
                "no",
            ),
            (
                ServeError::NotFound("none".into()),
                404,
                "not_found_error",
                "none",
            ),
            (
                ServeError::NoDirectory {
                    path: "m".into(),
                    source: io(),
                },
                404,
                "not_found_error",
                "model directory m: gone",
            ),
            (
                ServeError::MethodNotAllowed,
                405,
                "invalid_request_error",
                "method not allowed on this route",
            ),
            (
                ServeError::Conflict("both".into()),
                409,
                "conflict_error",
                "both",
            ),
            (
                ServeError::TooLarge("big".into()),
                413,
                "invalid_request_error",
                "big",
            ),
            (
                ServeError::Unavailable {
                    message: "busy".into(),
                    retry_after: 3,
                },
                503,
                "overloaded_error",
                "busy",
            ),
            (
                ServeError::Io {
                    context: "bind 1.2.3.4:5".into(),
                    source: io(),
                },
                500,
                "server_error",
                "bind 1.2.3.4:5: gone",
            ),
            (
                ServeError::Internal("oops".into()),
                500,
                "server_error",
                "oops",
            ),
        ];
        for (e, status, kind, message) in cases {
            assert_eq!((e.status(), e.kind()), (status, kind), "{e:?}");
            assert_eq!(e.to_string(), message);
            assert_eq!(e.retry_after(), (status == 503).then_some(3));
        }
    }

    #[test]
    fn wrapped_errors_are_sources() {
        let e = ServeError::Io {
            context: "registry".into(),
            source: io(),
        };
        assert_eq!(e.source().map(|s| s.to_string()), Some("gone".into()));
        let e = ServeError::Registry {
            context: "r.json".into(),
            source: serde_json::from_str::<u32>("x").unwrap_err(),
        };
        assert!(e.source().is_some());
        assert!(e.to_string().starts_with("r.json: "), "{e}");
    }
}
