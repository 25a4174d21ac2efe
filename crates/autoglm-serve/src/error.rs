//! Errors of the service: an HTTP status, a message naming what is wrong, and for
//! overload a Retry-After hint.

use serde::Serialize;

/// An error as the API returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{message}")]
pub struct ServeError {
    /// HTTP status.
    pub status: u16,
    /// OpenAI-style error type (`invalid_request_error`, `not_found_error`, …).
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// What is wrong.
    pub message: String,
    /// Seconds after which a retry may succeed (503).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

impl ServeError {
    fn new(status: u16, kind: &'static str, message: impl Into<String>) -> ServeError {
        ServeError {
            status,
            kind,
            message: message.into(),
            retry_after: None,
        }
    }

    /// 400: the request is malformed or impossible.
    pub fn bad_request(message: impl Into<String>) -> ServeError {
        ServeError::new(400, "invalid_request_error", message)
    }

    /// 401: a bearer token is required and was missing or wrong.
    pub fn unauthorized(message: impl Into<String>) -> ServeError {
        ServeError::new(401, "authentication_error", message)
    }

    /// 403: a path outside the repository root.
    pub fn forbidden(message: impl Into<String>) -> ServeError {
        ServeError::new(403, "permission_error", message)
    }

    /// 404: no such model, version or route.
    pub fn not_found(message: impl Into<String>) -> ServeError {
        ServeError::new(404, "not_found_error", message)
    }

    /// 409: the request conflicts with the repository's state (already
    /// registered, over the memory budget, still loaded).
    pub fn conflict(message: impl Into<String>) -> ServeError {
        ServeError::new(409, "conflict_error", message)
    }

    /// 413: the body is larger than the server accepts.
    pub fn too_large(message: impl Into<String>) -> ServeError {
        ServeError::new(413, "invalid_request_error", message)
    }

    /// 503: overloaded or shutting down; retry after `seconds`.
    pub fn unavailable(message: impl Into<String>, seconds: u64) -> ServeError {
        ServeError {
            retry_after: Some(seconds),
            ..ServeError::new(503, "overloaded_error", message)
        }
    }

    /// 500: a failure of the server itself.
    pub fn internal(message: impl Into<String>) -> ServeError {
        ServeError::new(500, "server_error", message)
    }
}
