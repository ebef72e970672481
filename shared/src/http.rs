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
use std::time::Duration;

use reqwest::{RequestBuilder, StatusCode};

use crate::error::CallError;
pub use crate::retry::RetryPolicy;
use crate::retry::retry;
use crate::secrets::ExposeSecret;

mod rate_limit;
mod reply;
mod token;
pub use rate_limit::{Quota, RateLimit};
pub use reply::{Reply, parse_retry_after};
pub use token::{FreshToken, Secret, TokenCache, refresh_margin};

/// How long establishing a connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one whole request (connect, send, read the answer) may take.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

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

/// The system and base URL only: the token cache and the HTTP client say nothing useful.
impl fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiClient")
            .field("api", &self.api.name)
            .field("base", &self.base)
            .finish_non_exhaustive()
    }
}

/// The limits every client built on an [`ApiClient`] takes, and every provider wrapping one.
pub trait ClientLimits: Sized {
    /// The core whose limits these are.
    fn core_mut(&mut self) -> &mut ApiClient;

    /// Keeps API calls at or under `per_second` (each spaced, no bursts) so a busy tenant
    /// stays under the provider's limit instead of collecting 429s; `None` = no limit.
    fn with_calls_per_second(mut self, per_second: Option<f64>) -> Self {
        self.core_mut().limit = RateLimit::spaced(per_second);
        self
    }

    /// Fails any listing of more than `max` items (the client's default: [`MAX_LISTED`] unless
    /// its documentation says otherwise) instead of trusting it.
    fn with_max_listed(mut self, max: usize) -> Self {
        self.core_mut().max_listed = max;
        self
    }
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
        let reply = send_limited(policy, api, limit, || build(token.expose_secret())).await?;
        if reply.status != StatusCode::UNAUTHORIZED {
            return Ok(reply);
        }
        self.tokens.invalidate(&token).await;
        let token = self.tokens.get(&fetch).await?;
        let reply = send_limited(policy, api, limit, || build(token.expose_secret())).await?;
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
    let attempt = |_| {
        let request = build();
        async move {
            if let Some(limit) = limit {
                limit.acquire().await;
            }
            send_once(policy, api, request).await
        }
    };
    retry(policy, crate::retry::call_error, attempt).await.map_err(|e| match e {
        CallError::Retryable { reason, after } => CallError::Retryable {
            reason: format!("{reason} (gave up after {} attempts)", policy.attempts.max(1)),
            after,
        },
        other => other,
    })
}

/// One try: the buffered answer, or why it is worth another (transport failure, timeout, 5xx,
/// 429, the system's throttle), or a request that cannot even be built.
async fn send_once(policy: &RetryPolicy, api: &Api, request: RequestBuilder) -> Result<Reply, CallError> {
    let again = |reason: String| CallError::Retryable { reason, after: None };
    let resp = match request.timeout(policy.timeout).send().await {
        Ok(resp) => resp,
        Err(e) if e.is_builder() => {
            return Err(CallError::config(format!(
                "{}: the request could not be built (check base_url/token_url): {}",
                api.name,
                e.without_url()
            )));
        }
        Err(e) => return Err(again(transport_reason(api, e))),
    };
    let (status, headers) = (resp.status(), resp.headers().clone());
    let body = resp
        .bytes()
        .await
        .map_err(|e| again(format!("{}: reading the answer failed: {}", api.name, e.without_url())))?;
    let reply = Reply { status, headers, body: body.to_vec() };
    if is_retryable_status(status) || (api.is_throttle)(&reply) {
        let reason = format!("{} answered {}", api.name, reply.summary());
        return Err(CallError::Retryable { reason, after: reply.retry_after() });
    }
    Ok(reply)
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

/// An OData string literal: `'…'` with single quotes doubled (`o'neil` → `'o''neil'`).
pub fn odata_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Everything but RFC 3986's unreserved characters.
const COMPONENT: &percent_encoding::AsciiSet =
    &percent_encoding::NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// Percent-encodes one URL path segment or query value (everything but RFC 3986 unreserved
/// characters), so an id can never add a segment or a query.
pub fn path_segment(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, COMPONENT).to_string()
}

/// `base` without trailing slashes, so `format!("{base}/x")` never doubles them.
pub fn trim_base(base: &str) -> String {
    base.trim().trim_end_matches('/').to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
