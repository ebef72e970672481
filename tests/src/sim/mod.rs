//! HTTP simulators of the systems Portier talks to.
//!
//! Each simulator speaks the real API's paths, envelopes, auth and error bodies (see
//! `reference/lock-providers.md` and `reference/source-systems.md`), records every call it
//! answers and can inject faults, so scenario tests assert on the calls made, not on log lines.
//! Every instance binds its own loopback port; start as many as a test needs.

pub mod brivo;
pub mod kinnovis;
pub mod nexudus;
pub mod salto;
pub mod tapkey;

pub use brivo::{BrivoSim, BrivoSimConfig};
pub use kinnovis::{KinnovisSim, KinnovisSimConfig};
pub use nexudus::{NexudusSim, NexudusSimConfig, SimWebhook};
pub use salto::{SaltoSim, SaltoSimConfig};
pub use tapkey::{SimContact, SimGrant, TapkeySim, TapkeySimConfig};

use std::collections::VecDeque;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDateTime, SecondsFormat, Utc};
use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// One request as a simulator saw it, with the status it answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub at: Instant,
}

/// One documented route of a simulated API: the method, the path with `{name}` standing for
/// one segment, and the public source that documents it. Each simulator's `ROUTES` lists what
/// its dispatch answers; anything else gets the real system's "no such route" answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    pub method: &'static str,
    pub path: &'static str,
    pub source: &'static str,
}

impl Route {
    pub const fn new(method: &'static str, path: &'static str, source: &'static str) -> Self {
        Self { method, path, source }
    }

    /// Whether a request's method and (raw) path match, segments compared case-insensitively
    /// as the real APIs route; a trailing slash does not matter.
    pub fn matches(&self, method: &str, path: &str) -> bool {
        let want: Vec<&str> = self.path.split('/').filter(|s| !s.is_empty()).collect();
        let got: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        self.method.eq_ignore_ascii_case(method)
            && want.len() == got.len()
            && want
                .iter()
                .zip(&got)
                .all(|(w, g)| (w.starts_with('{') && w.ends_with('}')) || w.eq_ignore_ascii_case(g))
    }
}

/// The calls that match none of `routes` (simulator-only `/_sim/` paths aside).
pub fn undocumented<'a>(calls: &'a [Call], routes: &[Route]) -> Vec<&'a Call> {
    calls
        .iter()
        .filter(|c| !c.path.starts_with("/_sim/"))
        .filter(|c| !routes.iter().any(|r| r.matches(&c.method, &c.path)))
        .collect()
}

/// The routes none of `calls` reached.
pub fn unreached<'a>(calls: &[Call], routes: &'a [Route]) -> Vec<&'a Route> {
    routes.iter().filter(|r| !calls.iter().any(|c| r.matches(&c.method, &c.path))).collect()
}

/// Locks sim state. A panicking test thread must not poison every later call, and each mutation
/// is a single step, so the data behind a poisoned lock is still consistent.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Fault settings of one simulator. Faults hit API calls only; the token endpoint gets latency
/// but is never throttled or failed, so a test controls exactly which business call breaks.
#[derive(Debug, Default)]
pub struct Faults {
    latency: Duration,
    bucket: Option<TokenBucket>,
    windows: Option<Windows>,
    fail_next: VecDeque<u16>,
    fail_next_writes: VecDeque<u16>,
    fail_rate: f64,
    fail_statuses: Vec<u16>,
    drop_after_write: usize,
    throttle_next: usize,
    throttled: usize,
    hang_rate: f64,
    hang: Duration,
    hangs: usize,
}

/// A token bucket: governor's GCRA limiter, which admits a burst and then refills evenly.
type TokenBucket<C = governor::clock::DefaultClock> = governor::RateLimiter<
    governor::state::NotKeyed,
    governor::state::InMemoryState,
    C,
    governor::middleware::NoOpMiddleware<<C as governor::clock::Clock>::Instant>,
>;

/// `rate` calls per second, burst `max(1, rate)`.
fn token_bucket<C: governor::clock::Clock>(rate: f64, clock: C) -> Option<TokenBucket<C>> {
    let period = Duration::try_from_secs_f64(1.0 / rate).ok()?;
    let burst = std::num::NonZeroU32::new(rate.clamp(1.0, f64::from(u32::MAX)) as u32)?;
    let quota = governor::Quota::with_period(period)?.allow_burst(burst);
    Some(governor::RateLimiter::direct_with_clock(quota, clock))
}

/// Sliding windows as Nexudus documents its limits ("1 req/100ms", "120 requests per minute"):
/// a call is turned away while any window already holds its number of admitted calls.
#[derive(Debug)]
struct Windows {
    limits: Vec<(usize, Duration)>,
    /// Arrival times of the admitted calls inside the longest window, oldest first.
    admitted: VecDeque<Instant>,
}

/// Calls reach the simulator a little later or sooner than the client's limiter let them go
/// (loopback scheduling on a busy machine): windows forgive this much.
pub const WINDOW_JITTER: Duration = Duration::from_millis(25);

impl Windows {
    fn try_take(&mut self, now: Instant) -> bool {
        let longest = self.limits.iter().map(|(_, per)| *per).max().unwrap_or_default();
        while self.admitted.front().is_some_and(|t| now.saturating_duration_since(*t) >= longest) {
            self.admitted.pop_front();
        }
        let full = self.limits.iter().any(|(calls, per)| {
            let window = per.saturating_sub(WINDOW_JITTER);
            self.admitted.iter().rev().take_while(|t| now.saturating_duration_since(**t) < window).count()
                >= *calls
        });
        if !full {
            self.admitted.push_back(now);
        }
        !full
    }
}

/// Cheap clonable handle on a simulator's [`Faults`]; changes apply to the next request.
#[derive(Debug, Clone, Default)]
pub struct FaultHandle(Arc<Mutex<Faults>>);

enum Verdict {
    Pass,
    Throttle,
    Fail(u16),
    /// Answer only after this long, without handling the call: a timeout before the write.
    HangBefore(Duration),
    /// Handle the call, then answer only after this long: a timeout after the write.
    HangAfter(Duration),
}

impl FaultHandle {
    /// Delay before every answer (token calls included).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.0).latency = latency;
    }

    /// Token bucket of `rate` calls per second, burst `max(1, rate)`; `None`, a non-finite or a
    /// non-positive rate switches it off. Over-limit calls get the sim's throttle status.
    pub fn set_rate_limit(&self, rate: Option<f64>) {
        let clock = governor::clock::DefaultClock::default();
        lock(&self.0).bucket =
            rate.filter(|r| r.is_finite() && *r > 0.0).and_then(|r| token_bucket(r, clock));
    }

    /// Sliding-window limits, each `(calls, per)`: over any of them a call gets the sim's
    /// throttle status (empty: off). Nexudus documents `[(1, 100 ms), (120, 1 min), (5000, 1 h)]`.
    pub fn set_window_limits(&self, limits: &[(usize, Duration)]) {
        let limits: Vec<_> = limits.iter().copied().filter(|(n, per)| *n > 0 && !per.is_zero()).collect();
        lock(&self.0).windows = (!limits.is_empty()).then(|| Windows { limits, admitted: VecDeque::new() });
    }

    /// The next `n` API calls answer `status` with the sim's JSON error body.
    pub fn fail_next(&self, status: u16, n: usize) {
        lock(&self.0).fail_next.extend(std::iter::repeat_n(status, n));
    }

    /// The next `n` mutating API calls (PUT/POST/PATCH/DELETE) answer `status` before any write;
    /// reads pass (a provider's setup reads, such as Salto KS's roles, do not take the fault).
    pub fn fail_next_writes(&self, status: u16, n: usize) {
        lock(&self.0).fail_next_writes.extend(std::iter::repeat_n(status, n));
    }

    /// Each API call fails with probability `rate` (0..1) with a status picked from `statuses`
    /// (500 when empty).
    pub fn set_fail_rate(&self, rate: f64, statuses: Vec<u16>) {
        let mut f = lock(&self.0);
        f.fail_rate = if rate.is_finite() { rate.clamp(0.0, 1.0) } else { 0.0 };
        f.fail_statuses = statuses;
    }

    /// The next `n` API calls get the sim's throttle answer (as if over the rate limit).
    pub fn throttle_next(&self, n: usize) {
        lock(&self.0).throttle_next += n;
    }

    /// The next `n` successful mutating API calls (PUT/POST/PATCH/DELETE) keep their write but
    /// answer 500: the response got lost, so a retry meets the already-applied write.
    /// Each API call hangs for `hang` with probability `rate` (0..1): half of them before the
    /// call is handled (nothing happens), half after it was (the write happened). A client
    /// that waits less than `hang` times out either way.
    pub fn set_hang_rate(&self, rate: f64, hang: Duration) {
        let mut f = lock(&self.0);
        (f.hang_rate, f.hang) = (rate, hang);
    }

    pub fn drop_after_write_next(&self, n: usize) {
        lock(&self.0).drop_after_write += n;
    }

    /// How many calls hung ([`Self::set_hang_rate`]).
    pub fn hang_count(&self) -> usize {
        lock(&self.0).hangs
    }

    /// How many calls the rate limit turned away.
    pub fn throttled_count(&self) -> usize {
        lock(&self.0).throttled
    }

    /// Back to no faults (keeps the throttled count).
    pub fn clear(&self) {
        let mut f = lock(&self.0);
        let throttled = f.throttled;
        *f = Faults { throttled, ..Faults::default() };
    }

    fn latency(&self) -> Duration {
        lock(&self.0).latency
    }

    fn admit(&self, method: &Method) -> Verdict {
        let mut f = lock(&self.0);
        if let Some(bucket) = f.bucket.as_ref()
            && bucket.check().is_err()
        {
            f.throttled += 1;
            return Verdict::Throttle;
        }
        if let Some(windows) = f.windows.as_mut()
            && !windows.try_take(Instant::now())
        {
            f.throttled += 1;
            return Verdict::Throttle;
        }
        if f.throttle_next > 0 {
            f.throttle_next -= 1;
            f.throttled += 1;
            return Verdict::Throttle;
        }
        if let Some(status) = f.fail_next.pop_front() {
            return Verdict::Fail(status);
        }
        if is_write(method)
            && let Some(status) = f.fail_next_writes.pop_front()
        {
            return Verdict::Fail(status);
        }
        if f.fail_rate > 0.0 && fastrand::f64() < f.fail_rate {
            let status = match f.fail_statuses.len() {
                0 => 500,
                n => f.fail_statuses[fastrand::usize(..n)],
            };
            return Verdict::Fail(status);
        }
        if f.hang_rate > 0.0 && fastrand::f64() < f.hang_rate {
            f.hangs += 1;
            return if fastrand::bool() { Verdict::HangBefore(f.hang) } else { Verdict::HangAfter(f.hang) };
        }
        Verdict::Pass
    }

    fn take_drop(&self) -> bool {
        let mut f = lock(&self.0);
        if f.drop_after_write > 0 {
            f.drop_after_write -= 1;
            true
        } else {
            false
        }
    }
}

/// What differs between simulated APIs in the shared request pipeline.
pub(crate) struct Profile {
    /// Lower-case path of the token endpoint (exempt from faults).
    pub token_path: &'static str,
    /// Tapkey answers 429, Nexudus 409.
    pub throttle_status: StatusCode,
    /// The API's JSON error body for a status and message.
    pub error_body: fn(StatusCode, &str) -> Value,
    /// An HTML throttle body instead of the JSON error (Brivo's gateway: "Over Qps").
    pub throttle_html: Option<&'static str>,
}

/// Call log, faults and the request pipeline every simulator shares.
pub(crate) struct Core {
    profile: Profile,
    calls: Mutex<Vec<Call>>,
    faults: FaultHandle,
}

impl Core {
    pub(crate) fn new(profile: Profile) -> Self {
        Self { profile, calls: Mutex::default(), faults: FaultHandle::default() }
    }

    pub(crate) fn faults(&self) -> FaultHandle {
        self.faults.clone()
    }

    pub(crate) fn calls(&self) -> Vec<Call> {
        lock(&self.calls).clone()
    }

    /// Calls whose method equals `method` and whose path contains `path_contains`, both
    /// compared case-insensitively (the real APIs route case-insensitively).
    pub(crate) fn count(&self, method: &str, path_contains: &str) -> usize {
        let needle = path_contains.to_ascii_lowercase();
        lock(&self.calls)
            .iter()
            .filter(|c| {
                c.method.eq_ignore_ascii_case(method) && c.path.to_ascii_lowercase().contains(&needle)
            })
            .count()
    }

    pub(crate) fn reset_calls(&self) {
        lock(&self.calls).clear();
    }

    pub(crate) fn error(&self, status: StatusCode, message: &str) -> Response {
        json(status, (self.profile.error_body)(status, message))
    }

    /// Runs one request through latency, throttling and injected failures, hands it to
    /// `route`, and records the answer.
    pub(crate) async fn run<F, Fut>(&self, req: Request, route: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        let at = Instant::now();
        let method = req.method().clone();
        let path = req.uri().path().to_owned();
        let query = req.uri().query().unwrap_or_default().to_owned();
        let lower = path.to_ascii_lowercase();

        let resp = if lower.starts_with("/_sim/") {
            route(req).await
        } else {
            let latency = self.faults.latency();
            if !latency.is_zero() {
                tokio::time::sleep(latency).await;
            }
            if lower.trim_end_matches('/') == self.profile.token_path {
                route(req).await
            } else {
                self.api_call(&method, req, route).await
            }
        };

        lock(&self.calls).push(Call {
            method: method.to_string(),
            path,
            query,
            status: resp.status().as_u16(),
            at,
        });
        resp
    }

    async fn api_call<F, Fut>(&self, method: &Method, req: Request, route: F) -> Response
    where
        F: FnOnce(Request) -> Fut,
        Fut: Future<Output = Response>,
    {
        match self.faults.admit(method) {
            Verdict::Throttle => {
                let mut resp = match self.profile.throttle_html {
                    Some(html) => html_response(self.profile.throttle_status, html),
                    None => self.error(self.profile.throttle_status, "Rate limit exceeded"),
                };
                resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return resp;
            }
            Verdict::Fail(status) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                return self.error(status, "Simulated failure");
            }
            Verdict::HangBefore(hang) => {
                tokio::time::sleep(hang).await;
                return self.error(StatusCode::GATEWAY_TIMEOUT, "Simulated hang");
            }
            Verdict::HangAfter(hang) => {
                let resp = route(req).await;
                tokio::time::sleep(hang).await;
                return resp;
            }
            Verdict::Pass => {}
        }
        let resp = route(req).await;
        if is_write(method) && resp.status().is_success() && self.faults.take_drop() {
            return self.error(StatusCode::INTERNAL_SERVER_ERROR, "Simulated lost response");
        }
        resp
    }
}

fn is_write(method: &Method) -> bool {
    matches!(*method, Method::PUT | Method::POST | Method::PATCH | Method::DELETE)
}

/// A running simulator server. Dropping it starts a graceful shutdown (the oneshot sender
/// goes away); [`Server::shutdown`] also waits for it.
pub(crate) struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `127.0.0.1:0` and serves `router` on the current tokio runtime.
    pub(crate) async fn start(router: Router) -> Self {
        let listener =
            tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("simulator needs a loopback port");
        let addr = listener.local_addr().expect("bound listener has an address");
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async {
                let _ = stopped.await;
            };
            if let Err(e) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::warn!(error = %e, "simulator server stopped with an error");
            }
        });
        Self { addr, stop: Some(stop), task: Some(task) }
    }

    /// `http://127.0.0.1:PORT`
    pub(crate) fn origin(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub(crate) async fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(mut task) = self.task.take()
            && tokio::time::timeout(Duration::from_secs(5), &mut task).await.is_err()
        {
            task.abort();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A `text/html` answer (API gateways answer so, not in the API's JSON).
pub(crate) fn html_response(status: StatusCode, html: &'static str) -> Response {
    (status, [(header::CONTENT_TYPE, "text/html")], html).into_response()
}

/// The `(user, password)` of an `Authorization: Basic …` header.
pub(crate) fn basic_auth(headers: &HeaderMap) -> Option<(String, String)> {
    use base64::Engine;
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD.decode(encoded.trim()).ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

pub(crate) fn json(status: StatusCode, body: Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// Reads a request body; `None` when it is larger than a sim ever needs or the stream broke.
pub(crate) async fn body_bytes(body: Body) -> Option<Bytes> {
    axum::body::to_bytes(body, 1 << 20).await.ok()
}

pub(crate) fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/json"))
}

/// The token of an `Authorization: Bearer …` header.
pub(crate) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Path segments, percent-decoded, empty ones dropped (so a trailing slash does not matter).
pub(crate) fn segments(path: &str) -> Vec<String> {
    path.split('/')
        .filter(|s| !s.is_empty())
        .map(|s| percent_encoding::percent_decode_str(s).decode_utf8_lossy().into_owned())
        .collect()
}

/// Decodes `application/x-www-form-urlencoded` text (bodies and query strings) into pairs.
/// Malformed escapes are kept literally: the sims must never panic on client input.
pub(crate) fn parse_form(text: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(text.as_bytes()).into_owned().collect()
}

/// The first value for `key` (compared case-insensitively, as ASP.NET binds parameters).
pub(crate) fn param<'a>(pairs: &'a [(String, String)], key: &str) -> Option<&'a str> {
    pairs.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.as_str())
}

/// ISO-8601 UTC with `Z`, seconds precision unless the instant has a fraction.
pub(crate) fn iso(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

pub(crate) fn iso_opt(t: &Option<DateTime<Utc>>) -> Value {
    t.as_ref().map_or(Value::Null, |t| Value::String(iso(t)))
}

/// Parses RFC 3339, or a zone-less timestamp taken as UTC (what .NET APIs accept too).
pub(crate) fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Some(t.with_timezone(&Utc));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_decoding_survives_garbage() {
        let pairs = parse_form("a=b+c&d=%41%4&e&=x&f=%C3%BC");
        assert_eq!(param(&pairs, "A"), Some("b c"));
        assert_eq!(param(&pairs, "d"), Some("A%4"));
        assert_eq!(param(&pairs, "e"), Some(""));
        assert_eq!(param(&pairs, "f"), Some("ü"));
    }

    #[test]
    fn windows_turn_away_a_call_over_any_of_them() {
        let mut w = Windows {
            limits: vec![(1, Duration::from_millis(100)), (3, Duration::from_secs(60))],
            admitted: VecDeque::new(),
        };
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        assert!(w.try_take(at(0)));
        assert!(!w.try_take(at(50)), "1 per 100 ms");
        assert!(w.try_take(at(100)));
        assert!(w.try_take(at(200)));
        assert!(!w.try_take(at(300)), "3 a minute");
        assert!(w.try_take(at(60_000)), "the first call left the minute");
    }

    #[test]
    fn token_bucket_allows_burst_then_refills() {
        let clock = governor::clock::FakeRelativeClock::default();
        let b = token_bucket(2.0, clock.clone()).expect("a bucket");
        assert!(b.check().is_ok());
        assert!(b.check().is_ok());
        assert!(b.check().is_err());
        clock.advance(Duration::from_millis(600));
        assert!(b.check().is_ok());
    }

    #[test]
    fn times_round_trip() {
        let t = parse_time("2026-12-01T10:00:00Z").expect("valid");
        assert_eq!(iso(&t), "2026-12-01T10:00:00Z");
        assert_eq!(parse_time("2026-12-01T10:00"), Some(t));
        assert_eq!(parse_time("2026-12-01T11:00:00+01:00"), Some(t));
        assert_eq!(parse_time("yesterday"), None);
    }
}
