//! Error classes that tell the worker what to do (design §5).

use std::time::Duration;

/// A failure talking to a provider or source, classified so the worker can `match` on it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// Try again later (5xx, timeouts, throttling); `after` honours `Retry-After`.
    #[error("temporary failure: {reason}")]
    Retryable { reason: String, after: Option<Duration> },
    /// This item cannot succeed until its inputs change (plan limit, inactive lock).
    #[error("{reason}")]
    Permanent { reason: String },
    /// The target cannot take access right now (a Tapkey lock without a licence, or unbound).
    /// Recorded and shown like `Permanent`, but finding out again costs no write, so it never
    /// holds the operation back: the next reconcile looks again.
    #[error("{reason}")]
    Unavailable { reason: String },
    /// The tenant's configuration or credentials are wrong; stop calling this system.
    #[error("configuration problem: {reason}")]
    Config { reason: String },
}

impl CallError {
    pub fn retryable(reason: impl Into<String>) -> Self {
        CallError::Retryable { reason: reason.into(), after: None }
    }
    pub fn permanent(reason: impl Into<String>) -> Self {
        CallError::Permanent { reason: reason.into() }
    }
    pub fn unavailable(reason: impl Into<String>) -> Self {
        CallError::Unavailable { reason: reason.into() }
    }
    pub fn config(reason: impl Into<String>) -> Self {
        CallError::Config { reason: reason.into() }
    }
}

/// A failure of the store or the queue: always worth retrying, never the caller's fault.
#[derive(Debug, thiserror::Error)]
pub enum InfraError {
    /// A conditional write lost a race (version or existence check failed).
    #[error("conditional write failed")]
    Conflict,
    #[error("{0}")]
    Backend(String),
}

impl InfraError {
    pub fn backend(e: impl std::fmt::Display) -> Self {
        InfraError::Backend(e.to_string())
    }
}

/// Why reconciling a subject did not finish; the message is retried unless it is `Config`.
#[derive(Debug, thiserror::Error)]
pub enum WorkError {
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("store or queue: {0}")]
    Infra(#[from] InfraError),
    /// The message itself is unusable (it was verified at the ingress, so this is a bug or
    /// a contract change); it goes to quarantine instead of being retried.
    #[error("unusable message: {0}")]
    BadMessage(String),
}

impl WorkError {
    /// How long to wait before the message is tried again.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            WorkError::Call(CallError::Retryable { after, .. }) => *after,
            _ => None,
        }
    }
}
