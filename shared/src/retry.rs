//! How often and how patiently a failed call is tried again: the policy every client and the
//! Salto KS create use, and the one retry loop they share.

use std::future::Future;
use std::time::Duration;

use crate::error::CallError;
use crate::http::REQUEST_TIMEOUT;

/// How often and how patiently [`send`] retries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Total tries, the first one included (at least 1 is always made).
    pub attempts: u32,
    /// Backoff before the first retry is drawn from `[0, base]`, doubling each retry.
    pub base: Duration,
    /// Upper bound for one wait, `Retry-After` included.
    pub max: Duration,
    /// Longest wait for one attempt's answer; a timeout is retried like a 5xx (the write may
    /// or may not have happened, which every caller is ready for).
    pub timeout: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 200 ms base, 5 s cap, full jitter, 20 s per attempt.
    fn default() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(200),
            max: Duration::from_secs(5),
            timeout: REQUEST_TIMEOUT,
        }
    }
}

impl RetryPolicy {
    /// Name of the environment variable that overrides [`RetryPolicy::base`] in milliseconds.
    pub const BASE_ENV: &'static str = "PORTIER_RETRY_BASE_MS";

    /// Same attempts, millisecond waits: for tests against the simulators.
    pub fn fast() -> Self {
        Self {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_millis(10),
            timeout: Duration::from_secs(5),
        }
    }

    /// The default, with `PORTIER_RETRY_BASE_MS` applied when set to a number.
    pub fn from_env() -> Self {
        let base = std::env::var(Self::BASE_ENV).ok().and_then(|v| v.trim().parse::<u64>().ok());
        let mut policy = Self::default();
        if let Some(ms) = base {
            policy.base = Duration::from_millis(ms);
            policy.max = policy.max.max(policy.base);
        }
        policy
    }

    /// Full-jitter backoff before retry number `retry` (0 = the first retry): uniform in
    /// `[0, min(max, base · 2^retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let ceiling = self.base.saturating_mul(2u32.saturating_pow(retry.min(30))).min(self.max);
        let micros = u64::try_from(ceiling.as_micros()).unwrap_or(u64::MAX);
        Duration::from_micros(fastrand::u64(0..=micros))
    }

    /// The wait before retry number `retry`: the server's `Retry-After` when it sent one
    /// (capped by `max`), the jittered backoff otherwise.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(after) => after.min(self.max),
            None => self.backoff(retry),
        }
    }
}

/// Whether a failure is worth another try: `Some(after)`, with the server's `Retry-After` when
/// it sent one; `None` ends the retries.
pub type Again = Option<Option<Duration>>;

/// [`Again`] for a [`CallError`]: only `Retryable` failures are tried again.
pub fn call_error(e: &CallError) -> Again {
    match e {
        CallError::Retryable { after, .. } => Some(*after),
        _ => None,
    }
}

/// Makes `attempt(n)` (`n` = 0, 1, …) until it succeeds, fails in a way `again` does not
/// retry, or has been made `policy.attempts` times (at least once), waiting
/// [`RetryPolicy::delay`] between tries. The last failure is returned as it is.
pub async fn retry<T, E, F, Fut>(
    policy: &RetryPolicy,
    again: impl Fn(&E) -> Again,
    mut attempt: F,
) -> Result<T, E>
where
    E: std::fmt::Debug,
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let attempts = policy.attempts.max(1);
    let mut retry = 0;
    loop {
        let failure = match attempt(retry).await {
            Ok(done) => return Ok(done),
            Err(e) => e,
        };
        let Some(after) = again(&failure).filter(|_| retry + 1 < attempts) else {
            return Err(failure);
        };
        let wait = policy.delay(retry, after);
        tracing::debug!(error = ?failure, retry, wait_ms = wait.as_millis() as u64, "retrying");
        tokio::time::sleep(wait).await;
        retry += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_stays_within_full_jitter_bounds() {
        let p = RetryPolicy {
            attempts: 10,
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            ..RetryPolicy::default()
        };
        for _ in 0..200 {
            assert!(p.backoff(0) <= Duration::from_millis(100));
            assert!(p.backoff(2) <= Duration::from_millis(400));
            assert!(p.backoff(5) <= Duration::from_secs(1));
            assert!(p.backoff(u32::MAX) <= Duration::from_secs(1));
        }
        let spread: std::collections::HashSet<_> = (0..50).map(|_| p.backoff(3)).collect();
        assert!(spread.len() > 10, "jitter varies the wait");
        assert_eq!(p.delay(0, Some(Duration::from_secs(30))), Duration::from_secs(1));
        assert_eq!(p.delay(0, Some(Duration::from_millis(300))), Duration::from_millis(300));
    }
}
