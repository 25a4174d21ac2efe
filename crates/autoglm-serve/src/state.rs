//! What the HTTP and gRPC handlers share: the repository, metrics, response cache,
//! token and limits.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use crate::cache::ResponseCache;
use crate::metrics::Metrics;
use crate::repo::Repository;

/// Request limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Largest `max_tokens` a request may ask for.
    pub max_tokens: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1 << 20,
            max_tokens: 4096,
        }
    }
}

/// What the handlers share.
#[derive(Debug)]
pub struct AppState {
    /// The models.
    pub repo: Arc<Repository>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The response cache.
    pub cache: ResponseCache,
    /// Bearer token required on every route but `/health` and `/ready`.
    pub token: Option<String>,
    /// Request limits.
    pub limits: Limits,
    /// Set when shutdown starts (`/ready` then answers 503).
    pub draining: AtomicBool,
}

impl AppState {
    /// Whether a request bearing `bearer` (the token after `Bearer `, if any) may
    /// pass: always when the server has no token, else when it is the token
    /// (compared in constant time).
    pub(crate) fn admits(&self, bearer: Option<&str>) -> bool {
        match &self.token {
            None => true,
            Some(token) => bearer.is_some_and(|t| constant_time_eq(t.as_bytes(), token.as_bytes())),
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
