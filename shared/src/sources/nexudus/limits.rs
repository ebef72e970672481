//! Nexudus's documented call budget and the share of it one client holds, and the stable
//! `client_id` its tokens are tied to.

use std::time::Duration;

use super::client::NexudusConfig;
use crate::http::Quota;
use crate::secrets::ExposeSecret;

/// Nexudus's documented allowance for all calls of an account (the config's default).
pub use crate::config::NEXUDUS_CALLS_PER_MINUTE as DEFAULT_CALLS_PER_MINUTE;

/// The documented limits for all calls of an account: "1 req/100ms", "120 requests per minute",
/// "5000 requests per hour" (developers.nexudus.com/reference/api-limitations). The daily
/// 200 000 is never reached under the hourly one.
pub const DOCUMENTED_QUOTAS: [Quota; 3] = [
    Quota::new(1, Duration::from_millis(100)),
    Quota::new(DEFAULT_CALLS_PER_MINUTE, Duration::from_secs(60)),
    Quota::new(5_000, Duration::from_secs(3600)),
];

/// The documented quotas scaled to a share of `calls` a minute (several processes share one
/// account, see `TenantConfig::share_rate_limits`; tests lift it).
pub fn quotas_for(calls_per_minute: u32) -> [Quota; 3] {
    let share = f64::from(calls_per_minute.max(1)) / f64::from(DEFAULT_CALLS_PER_MINUTE);
    DOCUMENTED_QUOTAS.map(|q| {
        let calls = (f64::from(q.calls) * share).max(1.0);
        // One call per window stays one; a narrower share spaces it out instead.
        if q.calls == 1 {
            Quota::new(1, q.per.div_f64(share))
        } else {
            Quota::new(calls.min(f64::from(u32::MAX)) as u32, q.per)
        }
    })
}

/// How much wider than documented the client holds each window: a call is counted when the
/// limiter lets it go, and the next may reach Nexudus sooner after it than that (the first sent
/// late by a busy machine, the network's jitter); at Nexudus's limits that would be a 409.
pub const WINDOW_MARGIN: Duration = Duration::from_millis(25);

/// `quotas` with each window widened by [`WINDOW_MARGIN`]: what the client holds.
pub fn held(quotas: [Quota; 3]) -> [Quota; 3] {
    quotas.map(|q| Quota::new(q.calls, q.per + WINDOW_MARGIN))
}

/// The `client_id` for this installation's Nexudus account: "Make sure to use the same client_id
/// for all requests made by the same app", and a refresh token "must [use] the same client id you
/// passed in when creating the access token" (developers.nexudus.com token-authentication-oauth,
/// get-bearer-token). Derived from the account (API host and user), so every process and every
/// cold start of the deployment sends the same one without storing it; a UUID-shaped digest, as
/// the documentation's examples are UUIDs.
pub fn installation_client_id(cfg: &NexudusConfig) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!(
        "portier/nexudus-client/{}/{}",
        cfg.base_url.trim_end_matches('/'),
        cfg.username.expose_secret().trim().to_lowercase()
    ));
    let h = hex::encode(&digest[..16]);
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}
