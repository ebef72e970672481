//! One client's access token: fetched once at a time, refreshed ahead of expiry.

use std::fmt;
use std::future::Future;

use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::CallError;
use crate::secrets::ExposeSecret;
pub use crate::secrets::Secret;

/// What a token endpoint gave (its secrets' `Debug` is redacted).
#[derive(Clone, Debug)]
pub struct FreshToken {
    pub access_token: Secret,
    /// Lifetime; [`TokenCache::DEFAULT_LIFETIME`] when the endpoint does not say.
    pub expires_in: Option<Duration>,
    pub refresh_token: Option<Secret>,
}

struct Cached {
    access: Secret,
    refresh: Option<Secret>,
    /// Fetch a new token from here on (ahead of expiry), but keep using this one if that fails.
    refresh_at: Instant,
    expires_at: Instant,
    /// Rejected with a 401: never hand it out again.
    invalidated: bool,
}

/// One client's access token, fetched at most once at a time (single flight under a tokio
/// mutex), refreshed 60 s before expiry or at 80 % of its lifetime for short-lived tokens.
#[derive(Default)]
pub struct TokenCache {
    slot: Mutex<Option<Cached>>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenCache { .. }")
    }
}

impl TokenCache {
    /// Assumed lifetime when a token endpoint sends no `expires_in`.
    pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(300);
    /// Refresh this long before expiry (less for short tokens, see [`refresh_margin`]).
    pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);

    pub fn new() -> Self {
        Self::default()
    }

    /// The cached token, or a new one from `fetch`. `fetch` receives the refresh token of the
    /// previous token, if there was one, so it can try a refresh grant first. Concurrent callers
    /// wait for the one fetch in flight. When an ahead-of-expiry refresh fails, the still-valid
    /// old token is used.
    pub async fn get<F, Fut>(&self, fetch: F) -> Result<Secret, CallError>
    where
        F: FnOnce(Option<Secret>) -> Fut,
        Fut: Future<Output = Result<FreshToken, CallError>>,
    {
        let mut slot = self.slot.lock().await;
        let now = Instant::now();
        if let Some(c) = slot.as_ref()
            && !c.invalidated
            && now < c.refresh_at
        {
            return Ok(c.access.clone());
        }
        let refresh = slot.as_ref().and_then(|c| c.refresh.clone());
        match fetch(refresh).await {
            Ok(fresh) => {
                let lifetime = fresh.expires_in.unwrap_or(Self::DEFAULT_LIFETIME);
                let now = Instant::now();
                let access = fresh.access_token.clone();
                *slot = Some(Cached {
                    access: fresh.access_token,
                    // Keep the old refresh token if the endpoint did not rotate it.
                    refresh: fresh.refresh_token.or_else(|| slot.as_ref().and_then(|c| c.refresh.clone())),
                    refresh_at: now + lifetime.saturating_sub(refresh_margin(lifetime)),
                    expires_at: now + lifetime,
                    invalidated: false,
                });
                Ok(access)
            }
            Err(e) => match slot.as_ref() {
                Some(c) if !c.invalidated && Instant::now() < c.expires_at => {
                    tracing::debug!(error = %e, "token refresh failed; the current token is still valid");
                    Ok(c.access.clone())
                }
                _ => Err(e),
            },
        }
    }

    /// Marks `stale` as rejected (after a 401) so the next [`get`](Self::get) fetches a new
    /// token. A token some other caller already replaced is left alone.
    pub async fn invalidate(&self, stale: &Secret) {
        if let Some(c) = self.slot.lock().await.as_mut()
            && c.access.expose_secret() == stale.expose_secret()
        {
            c.invalidated = true;
        }
    }
}

/// 60 s, or a fifth of the lifetime for tokens living less than 5 minutes.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    TokenCache::REFRESH_MARGIN.min(lifetime / 5)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn refresh_margin_is_a_minute_or_a_fifth() {
        assert_eq!(refresh_margin(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(refresh_margin(Duration::from_secs(300)), Duration::from_secs(60));
        assert_eq!(refresh_margin(Duration::from_secs(100)), Duration::from_secs(20));
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::from("hunter2");
        assert_eq!(format!("{s:?}"), "SecretBox<str>([REDACTED])");
        let fresh = FreshToken { access_token: s.clone(), expires_in: None, refresh_token: Some(s) };
        assert!(!format!("{fresh:?}").contains("hunter2"));
    }

    fn fresh(value: &str, secs: u64) -> FreshToken {
        FreshToken {
            access_token: Secret::from(value),
            expires_in: Some(Duration::from_secs(secs)),
            refresh_token: Some(Secret::from(format!("r-{value}"))),
        }
    }

    // Paused clock: the sleep past the refresh point takes no time.
    #[tokio::test(start_paused = true)]
    async fn token_cache_refreshes_ahead_of_expiry_and_after_invalidation() {
        let cache = TokenCache::new();
        let lifetime = Duration::from_secs(3); // refreshed from 2.4 s, expires at 3 s
        let t = cache.get(|prev| async move {
            assert!(prev.is_none());
            Ok(FreshToken { expires_in: Some(lifetime), ..fresh("a", 0) })
        });
        assert_eq!(t.await.map(|s| s.expose_secret().to_owned()), Ok("a".into()));
        // Cached: the fetch is not called.
        let t = cache.get(|_| async { Err(CallError::retryable("must not be called")) }).await;
        assert_eq!(t.map(|s| s.expose_secret().to_owned()), Ok("a".into()));

        // Within the refresh margin a refresh is attempted; if it fails the old token serves.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let t = cache.get(|_| async { Err(CallError::retryable("down")) }).await;
        assert_eq!(t.map(|s| s.expose_secret().to_owned()), Ok("a".into()));
        let t = cache
            .get(|prev| async move {
                assert_eq!(prev.as_ref().map(ExposeSecret::expose_secret), Some("r-a"));
                Ok(fresh("b", 3600))
            })
            .await;
        assert_eq!(t.map(|s| s.expose_secret().to_owned()), Ok("b".into()));

        // A stale invalidation does not touch the newer token; a current one does.
        cache.invalidate(&Secret::from("a")).await;
        let t = cache.get(|_| async { Err(CallError::retryable("must not be called")) }).await;
        assert_eq!(t.map(|s| s.expose_secret().to_owned()), Ok("b".into()));
        cache.invalidate(&Secret::from("b")).await;
        let t = cache.get(|_| async { Err(CallError::retryable("down")) }).await;
        assert!(t.is_err(), "an invalidated token is never handed out again");
        let t = cache
            .get(|prev| async move {
                assert_eq!(
                    prev.as_ref().map(ExposeSecret::expose_secret),
                    Some("r-b"),
                    "refresh after a 401"
                );
                Ok(fresh("c", 3600))
            })
            .await;
        assert_eq!(t.map(|s| s.expose_secret().to_owned()), Ok("c".into()));
    }

    #[tokio::test]
    async fn token_cache_is_single_flight() {
        let cache = Arc::new(TokenCache::new());
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (cache, fetches) = (cache.clone(), fetches.clone());
            tasks.push(tokio::spawn(async move {
                cache
                    .get(|_| async move {
                        fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        Ok(fresh("x", 3600))
                    })
                    .await
            }));
        }
        for t in tasks {
            assert!(matches!(t.await, Ok(Ok(_))));
        }
        assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    }
}
