//! Brivo's Mashery gateway: its throttle ("Over Qps") and daily quota ("Over Rate") answers,
//! told apart from a refused api-key.

use std::time::Duration;

use reqwest::StatusCode;

use crate::error::CallError;
use crate::http::Reply;

/// How long to wait when the daily quota is used up and the gateway gives no `Retry-After`:
/// the quota resets once a day, so retrying within seconds only burns calls.
pub const OVER_RATE_WAIT: Duration = Duration::from_secs(3600);

/// The Mashery gateway's throttle: `403` with an HTML body naming "Over Qps" (or its
/// `X-Mashery-Error-Code`).
pub(super) fn is_over_qps(reply: &Reply) -> bool {
    is_gateway_403(reply, "ERR_403_DEVELOPER_OVER_QPS", "over qps")
}

/// The gateway's daily quota: `403` "Developer Over Rate" (Mashery's generic documentation;
/// Brivo documents no limits), a throttle rather than a bad api-key.
pub(super) fn is_over_rate(reply: &Reply) -> bool {
    is_gateway_403(reply, "ERR_403_DEVELOPER_OVER_RATE", "over rate")
}

fn is_gateway_403(reply: &Reply, code: &str, words: &str) -> bool {
    if reply.status != StatusCode::FORBIDDEN {
        return false;
    }
    let header = reply.headers.get("x-mashery-error-code").and_then(|v| v.to_str().ok());
    header.is_some_and(|h| h.eq_ignore_ascii_case(code))
        || (serde_json::from_slice::<serde_json::Value>(&reply.body).is_err()
            && String::from_utf8_lossy(&reply.body).to_ascii_lowercase().contains(words))
}

/// The failure for a used-up daily quota: retryable, after the gateway's `Retry-After` or
/// [`OVER_RATE_WAIT`].
pub(super) fn over_rate(reply: &Reply) -> CallError {
    CallError::Retryable {
        reason: format!(
            "Brivo's gateway reports the api-key's daily call quota as used up ({}); calls resume later",
            reply.summary()
        ),
        after: Some(reply.retry_after().unwrap_or(OVER_RATE_WAIT)),
    }
}
