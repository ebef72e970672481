//! The one HTTP setup every provider and source uses: the client, the retry helper and the
//! token cache (style.md "One way to do each thing").
//!
//! - [`client`] builds the pooled `reqwest` client, once per process or cold start.
//! - [`send`] sends a request, retrying transport failures, 5xx, 429 and the system's own
//!   throttle answer (Nexudus 409, Brivo 403 "Over Qps") with full-jitter backoff, honouring
//!   `Retry-After`. Every other answer comes back as a buffered [`Reply`] for the caller to
//!   classify.
//! - [`TokenCache`] keeps one access token per client, refreshes it ahead of expiry (one fetch at
//!   a time), and can be invalidated after a 401.
//!
//! Secrets never reach logs or error messages: tokens are [`Secret`]s whose `Debug` is redacted,
//! and error reasons quote only a response's status and error code/message, never URLs (they can
//! carry emails in OData filters) or request bodies.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::error::CallError;

/// How long establishing a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one whole request (connect, send, read the answer) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

/// `Retry-After` values beyond this are reported as this (an hour is already "come back later").
const MAX_REPORTED_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Builds the shared client: rustls, connect timeout 5 s, request timeout 20 s, pooled
/// connections, user agent `portier/<version>`.
pub fn try_client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .user_agent(concat!("portier/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(REQUEST_TIMEOUT)
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(16)
        .build()
}

/// [`try_client`], falling back to reqwest's defaults (no timeouts) if the builder fails, which
/// only happens when the TLS backend cannot start; the default client then fails the same way.
pub fn client() -> reqwest::Client {
    try_client().unwrap_or_else(|e| {
        tracing::error!(error = %e, "building the HTTP client failed; using reqwest defaults");
        reqwest::Client::new()
    })
}

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

/// One system's name (for error reasons) and how it says "slow down" besides 429.
#[derive(Debug, Clone, Copy)]
pub struct Api {
    pub name: &'static str,
    /// True when a non-429, non-5xx answer is this system's throttle (Nexudus 409, Brivo 403
    /// "Over Qps"); it is then retried like a 429.
    pub is_throttle: fn(&Reply) -> bool,
}

impl Api {
    /// A system that throttles with 429 only.
    pub const fn new(name: &'static str) -> Self {
        Self { name, is_throttle: no_extra_throttle }
    }

    /// A system with its own throttle answer.
    pub const fn with_throttle(name: &'static str, is_throttle: fn(&Reply) -> bool) -> Self {
        Self { name, is_throttle }
    }
}

fn no_extra_throttle(_: &Reply) -> bool {
    false
}

/// A fully read answer: status, headers and body.
#[derive(Clone)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl fmt::Debug for Reply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reply").field("status", &self.status).field("body_len", &self.body.len()).finish()
    }
}

impl Reply {
    /// An OAuth token endpoint's success answer (`access_token`, `expires_in`, optional
    /// `refresh_token`): the one parser every system's login shares.
    pub fn oauth_token(&self, api: &Api) -> Result<FreshToken, CallError> {
        /// No `Debug`: it holds tokens.
        #[derive(serde::Deserialize)]
        struct TokenBody {
            access_token: String,
            #[serde(default)]
            expires_in: Option<u64>,
            #[serde(default)]
            refresh_token: Option<String>,
        }
        let t: TokenBody = self.json(api)?;
        Ok(FreshToken {
            access_token: Secret::new(t.access_token),
            expires_in: t.expires_in.map(Duration::from_secs),
            refresh_token: t.refresh_token.filter(|r| !r.is_empty()).map(Secret::new),
        })
    }

    /// The `Retry-After` header, as seconds or an HTTP date.
    pub fn retry_after(&self) -> Option<Duration> {
        self.headers.get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after)
    }

    /// Parses the body; an unreadable body is a retryable failure (a contract change or a
    /// truncated answer), never a panic.
    pub fn json<T: DeserializeOwned>(&self, api: &Api) -> Result<T, CallError> {
        serde_json::from_slice(&self.body).map_err(|e| {
            CallError::retryable(format!(
                "{} answered {} with a body that could not be read: {e}",
                api.name, self.status
            ))
        })
    }

    /// `"409 Conflict: Duplicate: A contact with this identifier already exists"`: the status
    /// and, when the body has them, its error code and message (Tapkey `ErrorCode`/`Message`,
    /// OAuth `error`/`error_description`, Nexudus `Message`), or a short snippet of a non-JSON
    /// body (Brivo answers HTML).
    pub fn summary(&self) -> String {
        let detail = match serde_json::from_slice::<serde_json::Value>(&self.body) {
            Ok(serde_json::Value::Object(map)) => {
                let field = |names: &[&str]| {
                    map.iter()
                        .find(|(k, _)| names.iter().any(|n| k.eq_ignore_ascii_case(n)))
                        .and_then(|(_, v)| v.as_str())
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_owned)
                };
                let code = field(&["ErrorCode", "error", "code"]);
                let message = field(&["Message", "error_description", "title", "detail"]);
                match (code, message) {
                    (Some(c), Some(m)) => format!("{c}: {m}"),
                    (Some(x), None) | (None, Some(x)) => x,
                    (None, None) => String::new(),
                }
            }
            Ok(_) => String::new(),
            Err(_) => snippet(&self.body),
        };
        if detail.is_empty() { self.status.to_string() } else { format!("{}: {detail}", self.status) }
    }

    /// The error code of a JSON error body (`ErrorCode`, `error` or `code`), if any.
    pub fn error_code(&self) -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(&self.body).ok()?;
        value
            .as_object()?
            .iter()
            .find(|(k, _)| ["errorcode", "error", "code"].contains(&k.to_ascii_lowercase().as_str()))
            .and_then(|(_, v)| v.as_str())
            .map(str::to_owned)
    }

    /// A failure for an answer the caller has no special meaning for: 4xx cannot succeed by
    /// repeating it; anything else (3xx, odd codes) is worth another try later.
    pub fn unexpected(&self, api: &Api) -> CallError {
        let reason = format!("{} answered {}", api.name, self.summary());
        if self.status.is_client_error() {
            CallError::permanent(reason)
        } else {
            CallError::Retryable { reason, after: self.retry_after() }
        }
    }
}

/// Up to 120 characters of a non-JSON body, whitespace collapsed.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let collapsed = text.split_whitespace().collect::<Vec<_>>().join(" ");
    let mut out: String = collapsed.chars().take(120).collect();
    if collapsed.chars().count() > 120 {
        out.push('…');
    }
    out
}

/// `Retry-After` as delta-seconds or an HTTP date (a date in the past means "now").
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs).min(MAX_REPORTED_RETRY_AFTER));
    }
    // Fractions are not allowed by RFC 9110, but some servers send them.
    if let Ok(secs) = value.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::from_secs_f64(secs.min(MAX_REPORTED_RETRY_AFTER.as_secs_f64())));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let wait = at.with_timezone(&chrono::Utc) - chrono::Utc::now();
    Some(wait.to_std().unwrap_or(Duration::ZERO).min(MAX_REPORTED_RETRY_AFTER))
}

/// Why one attempt did not give an answer to hand back.
enum Attempt {
    Answer(Reply),
    Again { reason: String, after: Option<Duration> },
}

/// Sends a request built by `build` (called afresh for every attempt) and retries transport
/// failures, timeouts, 5xx, 429 and `api.is_throttle` answers according to `policy`, honouring
/// `Retry-After`. After the last attempt the failure is `CallError::Retryable` carrying the
/// server's `Retry-After`. A request that cannot even be built (a malformed base URL) is a
/// `CallError::Config`. Every other answer, successful or not, is returned for the caller to
/// classify.
pub async fn send<F>(policy: &RetryPolicy, api: &Api, build: F) -> Result<Reply, CallError>
where
    F: FnMut() -> RequestBuilder,
{
    send_limited(policy, api, None, build).await
}

/// How many items one listing may hold by default: far above any real site, and a bound on a
/// server that pages forever.
pub const MAX_LISTED: usize = 100_000;

/// What every authenticated API client holds: the system it calls, its base URL (no trailing
/// slash), the HTTP client, the retry policy, its access token, its client-side rate limit
/// (API calls only; token calls are not limited) and how long a listing may grow. Each
/// provider's client wraps one with its own configuration, paths and answers.
pub struct ApiClient {
    pub api: Api,
    pub base: String,
    pub http: reqwest::Client,
    pub policy: RetryPolicy,
    pub tokens: TokenCache,
    pub limit: Option<RateLimit>,
    /// A listing with more items than this fails (see [`ApiClient::check_listed`]).
    pub max_listed: usize,
}

impl ApiClient {
    pub fn new(api: Api, base_url: &str, http: reqwest::Client, policy: RetryPolicy) -> Self {
        Self {
            api,
            base: trim_base(base_url),
            http,
            policy,
            tokens: TokenCache::new(),
            limit: None,
            max_listed: MAX_LISTED,
        }
    }

    /// Fails a listing of `what` that has grown past [`ApiClient::max_listed`] items. A cut
    /// listing is never returned: whatever lay past the cut would look gone at the provider.
    pub fn check_listed(&self, listed: usize, what: &str) -> Result<(), CallError> {
        if listed <= self.max_listed {
            return Ok(());
        }
        Err(CallError::permanent(format!(
            "{} listed more than {} {what}; a cut listing is not trusted, so nothing was concluded from it",
            self.api.name, self.max_listed
        )))
    }

    /// An authorized call: the cached access token (`fetch` gets a new one when needed, see
    /// [`TokenCache::get`]), `build(token)` sent through [`send_limited`] with this client's
    /// policy and limit, and after a 401 one more try with a fresh token. A fresh token refused
    /// again is a `CallError::Config`; `hint` tells the operator what to check (may be empty).
    pub async fn send<F, Fut, B>(&self, fetch: F, build: B, hint: &str) -> Result<Reply, CallError>
    where
        F: Fn(Option<Secret>) -> Fut,
        Fut: Future<Output = Result<FreshToken, CallError>>,
        B: Fn(&str) -> RequestBuilder,
    {
        self.send_with(&self.policy, fetch, build, hint).await
    }

    /// [`Self::send`] with another retry policy (a call that must not be repeated blindly).
    pub async fn send_with<F, Fut, B>(
        &self,
        policy: &RetryPolicy,
        fetch: F,
        build: B,
        hint: &str,
    ) -> Result<Reply, CallError>
    where
        F: Fn(Option<Secret>) -> Fut,
        Fut: Future<Output = Result<FreshToken, CallError>>,
        B: Fn(&str) -> RequestBuilder,
    {
        let (api, limit) = (&self.api, self.limit.as_ref());
        let token = self.tokens.get(&fetch).await?;
        let reply = send_limited(policy, api, limit, || build(token.expose())).await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        self.tokens.invalidate(&token).await;
        let token = self.tokens.get(&fetch).await?;
        let reply = send_limited(policy, api, limit, || build(token.expose())).await?;
        if reply.status == StatusCode::UNAUTHORIZED {
            return Err(CallError::config(format!(
                "{} rejected a freshly issued access token ({}){hint}",
                api.name,
                reply.summary()
            )));
        }
        Ok(reply)
    }
}

/// [`send`], with every attempt (retries included) waiting for the system's rate limit.
pub async fn send_limited<F>(
    policy: &RetryPolicy,
    api: &Api,
    limit: Option<&RateLimit>,
    mut build: F,
) -> Result<Reply, CallError>
where
    F: FnMut() -> RequestBuilder,
{
    let attempts = policy.attempts.max(1);
    let mut retry = 0u32;
    loop {
        if let Some(limit) = limit {
            limit.acquire().await;
        }
        let attempt = match build().timeout(policy.timeout).send().await {
            Ok(resp) => {
                let status = resp.status();
                let headers = resp.headers().clone();
                match resp.bytes().await {
                    Ok(body) => {
                        let reply = Reply { status, headers, body: body.to_vec() };
                        if is_retryable_status(status) || (api.is_throttle)(&reply) {
                            let after = reply.retry_after();
                            Attempt::Again {
                                reason: format!("{} answered {}", api.name, reply.summary()),
                                after,
                            }
                        } else {
                            Attempt::Answer(reply)
                        }
                    }
                    Err(e) => Attempt::Again {
                        reason: format!("{}: reading the answer failed: {}", api.name, e.without_url()),
                        after: None,
                    },
                }
            }
            Err(e) if e.is_builder() => {
                return Err(CallError::config(format!(
                    "{}: the request could not be built (check base_url/token_url): {}",
                    api.name,
                    e.without_url()
                )));
            }
            Err(e) => Attempt::Again { reason: transport_reason(api, e), after: None },
        };
        match attempt {
            Attempt::Answer(reply) => return Ok(reply),
            Attempt::Again { reason, after } => {
                if retry + 1 >= attempts {
                    return Err(CallError::Retryable {
                        reason: format!("{reason} (gave up after {attempts} attempts)"),
                        after,
                    });
                }
                let wait = policy.delay(retry, after);
                tracing::debug!(api = api.name, %reason, retry, wait_ms = wait.as_millis() as u64, "retrying");
                tokio::time::sleep(wait).await;
                retry += 1;
            }
        }
    }
}

fn is_retryable_status(status: StatusCode) -> bool {
    status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS
}

fn transport_reason(api: &Api, e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    format!("{}: {kind}: {}", api.name, e.without_url())
}

/// A secret string (access or refresh token). `Debug` never shows it and there is no
/// `Display`; [`Secret::expose`] is the one way to read it, at the point of use.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<str>);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// What a token endpoint gave.
#[derive(Clone)]
pub struct FreshToken {
    pub access_token: Secret,
    /// Lifetime; [`TokenCache::DEFAULT_LIFETIME`] when the endpoint does not say.
    pub expires_in: Option<Duration>,
    pub refresh_token: Option<Secret>,
}

impl fmt::Debug for FreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FreshToken")
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &self.refresh_token.is_some())
            .finish_non_exhaustive()
    }
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
            && c.access == *stale
        {
            c.invalidated = true;
        }
    }
}

/// 60 s, or a fifth of the lifetime for tokens living less than 5 minutes.
pub fn refresh_margin(lifetime: Duration) -> Duration {
    TokenCache::REFRESH_MARGIN.min(lifetime / 5)
}

/// An OData string literal: `'…'` with single quotes doubled (`o'neil` → `'o''neil'`).
pub fn odata_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Percent-encodes one URL path segment (everything but RFC 3986 unreserved characters), so an
/// id can never add a segment or a query.
pub fn path_segment(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `base` without trailing slashes, so `format!("{base}/x")` never doubles them.
pub fn trim_base(base: &str) -> String {
    base.trim().trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_seconds_and_dates() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("99999999"), Some(MAX_REPORTED_RETRY_AFTER));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after(""), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), Some(Duration::ZERO));
        let later = (chrono::Utc::now() + chrono::Duration::seconds(120)).to_rfc2822();
        let wait = parse_retry_after(&later).unwrap_or_default();
        assert!(wait > Duration::from_secs(100) && wait <= Duration::from_secs(120), "{wait:?}");
    }

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

    #[test]
    fn refresh_margin_is_a_minute_or_a_fifth() {
        assert_eq!(refresh_margin(Duration::from_secs(3600)), Duration::from_secs(60));
        assert_eq!(refresh_margin(Duration::from_secs(300)), Duration::from_secs(60));
        assert_eq!(refresh_margin(Duration::from_secs(100)), Duration::from_secs(20));
        assert_eq!(refresh_margin(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn odata_and_path_escaping() {
        assert_eq!(odata_quote("ann@x.com"), "'ann@x.com'");
        assert_eq!(odata_quote("o'neil@x.com"), "'o''neil@x.com'");
        assert_eq!(odata_quote("''"), "''''''");
        assert_eq!(path_segment("ea610634-4fc0_x.~"), "ea610634-4fc0_x.~");
        assert_eq!(path_segment("a/b?c d"), "a%2Fb%3Fc%20d");
        assert_eq!(path_segment("ü"), "%C3%BC");
        assert_eq!(trim_base(" https://x/api/ "), "https://x/api");
    }

    #[test]
    fn summaries_quote_codes_and_messages_only() {
        let reply = |status: u16, body: &str| Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        };
        let r = reply(409, r#"{"ErrorCode":"Duplicate","Message":"exists"}"#);
        assert_eq!(r.summary(), "409 Conflict: Duplicate: exists");
        assert_eq!(r.error_code().as_deref(), Some("Duplicate"));
        assert_eq!(reply(400, r#"{"error":"invalid_grant"}"#).summary(), "400 Bad Request: invalid_grant");
        assert_eq!(reply(500, "").summary(), "500 Internal Server Error");
        assert_eq!(reply(403, "<h1>Over  Qps</h1>").summary(), "403 Forbidden: <h1>Over Qps</h1>");
        assert!(matches!(reply(400, "{}").unexpected(&Api::new("X")), CallError::Permanent { .. }));
        assert!(matches!(reply(302, "").unexpected(&Api::new("X")), CallError::Retryable { .. }));
    }

    #[test]
    fn secrets_are_redacted() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "Secret(***)");
        let fresh = FreshToken { access_token: s.clone(), expires_in: None, refresh_token: Some(s) };
        assert!(!format!("{fresh:?}").contains("hunter2"));
    }

    fn fresh(value: &str, secs: u64) -> FreshToken {
        FreshToken {
            access_token: Secret::new(value),
            expires_in: Some(Duration::from_secs(secs)),
            refresh_token: Some(Secret::new(format!("r-{value}"))),
        }
    }

    #[tokio::test]
    async fn token_cache_refreshes_ahead_of_expiry_and_after_invalidation() {
        let cache = TokenCache::new();
        let lifetime = Duration::from_secs(3); // refreshed from 2.4 s, expires at 3 s
        let t = cache.get(|prev| async move {
            assert!(prev.is_none());
            Ok(FreshToken { expires_in: Some(lifetime), ..fresh("a", 0) })
        });
        assert_eq!(t.await.map(|s| s.expose().to_owned()), Ok("a".into()));
        // Cached: the fetch is not called.
        let t = cache.get(|_| async { Err(CallError::retryable("must not be called")) }).await;
        assert_eq!(t.map(|s| s.expose().to_owned()), Ok("a".into()));

        // Within the refresh margin a refresh is attempted; if it fails the old token serves.
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let t = cache.get(|_| async { Err(CallError::retryable("down")) }).await;
        assert_eq!(t.map(|s| s.expose().to_owned()), Ok("a".into()));
        let t = cache
            .get(|prev| async move {
                assert_eq!(prev.as_ref().map(Secret::expose), Some("r-a"));
                Ok(fresh("b", 3600))
            })
            .await;
        assert_eq!(t.map(|s| s.expose().to_owned()), Ok("b".into()));

        // A stale invalidation does not touch the newer token; a current one does.
        cache.invalidate(&Secret::new("a")).await;
        let t = cache.get(|_| async { Err(CallError::retryable("must not be called")) }).await;
        assert_eq!(t.map(|s| s.expose().to_owned()), Ok("b".into()));
        cache.invalidate(&Secret::new("b")).await;
        let t = cache.get(|_| async { Err(CallError::retryable("down")) }).await;
        assert!(t.is_err(), "an invalidated token is never handed out again");
        let t = cache
            .get(|prev| async move {
                assert_eq!(prev.as_ref().map(Secret::expose), Some("r-b"), "refresh after a 401");
                Ok(fresh("c", 3600))
            })
            .await;
        assert_eq!(t.map(|s| s.expose().to_owned()), Ok("c".into()));
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

/// At most `calls` calls in any window of length `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub calls: u32,
    pub per: Duration,
}

impl Quota {
    pub const fn new(calls: u32, per: Duration) -> Self {
        Self { calls, per }
    }
}

/// A client-side limit of one or more stacked quotas (Nexudus: 1 per 100 ms, 120 a minute and
/// 5 000 an hour), held over a sliding log of the calls made, so no window of any alignment
/// sees more than its quota and nothing bursts. Shared by everything in the process that calls
/// one system for one tenant (webhook reads and resync listings alike), so Portier stays under
/// the system's limit instead of bouncing off it. Time is tokio's, which tests pause.
///
/// Not `governor`: its GCRA limiters each allow a burst as large as their quota (or, with a
/// burst of one, space calls by the longest period), so "1 per 100 ms *and* 120 in any minute"
/// needs several chained limiters that can each admit a call the others then refuse; a log of
/// the last calls checks all quotas at once in a few lines.
#[derive(Debug)]
pub struct RateLimit {
    quotas: Vec<Quota>,
    /// Start times of the calls inside the longest window, oldest first.
    log: tokio::sync::Mutex<std::collections::VecDeque<tokio::time::Instant>>,
}

impl RateLimit {
    /// A limit of these quotas (empty ones, with no calls or no period, are ignored).
    pub fn new(quotas: &[Quota]) -> Self {
        let quotas = quotas.iter().copied().filter(|q| q.calls > 0 && !q.per.is_zero()).collect();
        Self { quotas, log: tokio::sync::Mutex::default() }
    }

    /// A provider's configured `calls_per_second`: evenly spaced calls, no bursts; `None`
    /// (or a rate that is not a positive number) means no limit.
    pub fn spaced(per_second: Option<f64>) -> Option<Self> {
        per_second
            .filter(|r| r.is_finite() && *r > 0.0)
            .and_then(|r| Duration::try_from_secs_f64(1.0 / r).ok())
            .map(|gap| Self::new(&[Quota::new(1, gap)]))
    }

    pub fn quotas(&self) -> &[Quota] {
        &self.quotas
    }

    /// Waits until a call may be made under every quota. The lock is held while waiting, so
    /// callers are served in turn.
    pub async fn acquire(&self) {
        let mut log = self.log.lock().await;
        let longest = self.quotas.iter().map(|q| q.per).max().unwrap_or_default();
        let keep = self.quotas.iter().map(|q| q.calls as usize).max().unwrap_or(0);
        loop {
            let now = tokio::time::Instant::now();
            while log.front().is_some_and(|t| now.duration_since(*t) >= longest) || log.len() > keep {
                log.pop_front();
            }
            // A quota of n is full while its n-th latest call is younger than its window.
            let wait = self
                .quotas
                .iter()
                .filter_map(|q| {
                    let n = q.calls as usize;
                    let nth = log.len().checked_sub(n).and_then(|i| log.get(i))?;
                    (*nth + q.per).checked_duration_since(now).filter(|w| !w.is_zero())
                })
                .max();
            match wait {
                None => {
                    if keep > 0 {
                        log.push_back(now);
                    }
                    return;
                }
                Some(w) => tokio::time::sleep(w).await,
            }
        }
    }
}

#[cfg(test)]
mod rate_limit_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn spaced_calls_never_burst() {
        let limit = RateLimit::spaced(Some(2.0)).expect("a limit");
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            limit.acquire().await;
        }
        // The first at once, four more half a second apart.
        let waited = start.elapsed().as_secs_f64();
        assert!((1.99..2.01).contains(&waited), "{waited}");
    }

    #[tokio::test(start_paused = true)]
    async fn stacked_quotas_hold_in_every_window() {
        let ms = Duration::from_millis;
        let limit =
            RateLimit::new(&[Quota::new(1, ms(100)), Quota::new(5, ms(1000)), Quota::new(8, ms(3000))]);
        let start = tokio::time::Instant::now();
        let mut at = Vec::new();
        for _ in 0..12 {
            limit.acquire().await;
            at.push(start.elapsed());
        }
        for q in limit.quotas() {
            for (i, t) in at.iter().enumerate() {
                let inside = at[i..].iter().take_while(|u| **u - *t < q.per).count();
                assert!(inside <= q.calls as usize, "{q:?}: {inside} calls from {t:?} ({at:?})");
            }
        }
        // 5 calls 100 ms apart, the next 5 a second after each, then the 3-second quota.
        assert_eq!(at[1], ms(100));
        assert_eq!(at[5], ms(1000));
        assert_eq!(at[8], ms(3000));
    }
}
