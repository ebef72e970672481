//! A fully read answer and what callers read from it: JSON, error summaries, `Retry-After`.

use std::fmt;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde::de::DeserializeOwned;

use super::{Api, FreshToken, Secret};
use crate::error::CallError;

/// `Retry-After` values beyond this are reported as this (an hour is already "come back later").
const MAX_REPORTED_RETRY_AFTER: Duration = Duration::from_secs(3600);

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
            access_token: Secret::from(t.access_token),
            expires_in: t.expires_in.map(Duration::from_secs),
            refresh_token: t.refresh_token.filter(|r| !r.is_empty()).map(Secret::from),
        })
    }

    /// A token endpoint's answer: the token; `Ok(Err(reply))` when it refused the grant (400,
    /// 401 or 403: the credentials are wrong, or a refresh token is spent); any other answer
    /// is [`Self::unexpected`].
    pub fn into_grant(self, api: &Api) -> Result<Result<FreshToken, Reply>, CallError> {
        match self.status {
            s if s.is_success() => self.oauth_token(api).map(Ok),
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Ok(Err(self)),
            _ => Err(self.unexpected(api)),
        }
    }

    /// [`Self::into_grant`] where a refused grant is a configuration error: `refused` says who
    /// refused whose login, the answer's summary follows in brackets.
    pub fn into_login(self, api: &Api, refused: &str) -> Result<FreshToken, CallError> {
        self.into_grant(api)?.map_err(|r| CallError::config(format!("{refused} ({})", r.summary())))
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
}
