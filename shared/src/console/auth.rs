//! The admin token, the console's session cookie and its CSRF token.
//!
//! Sessions are stateless so that every Lambda container and `portier serve` accept the same
//! cookie: `nonce.issued.mac`, where `mac` is an HMAC keyed with the admin token. The cookie
//! never holds the token, a new token ends every session, and the CSRF token is an HMAC of the
//! session's nonce, so each sign-in has its own.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::model::Instant;
use crate::secrets::ExposeSecret;

/// The shortest admin token accepted (as for webhook tokens: shorter ones can be guessed).
pub const MIN_ADMIN_TOKEN_CHARS: usize = 16;
/// The session cookie's name.
pub const COOKIE: &str = "portier_console";
/// How long a sign-in lasts.
pub const SESSION_SECS: i64 = 12 * 60 * 60;

type HmacSha256 = Hmac<Sha256>;

/// The configured admin token, kept as what the checks need.
pub struct AdminAuth {
    token: Secret,
}

impl std::fmt::Debug for AdminAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminAuth(***)")
    }
}

/// A signed-in browser.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// Goes into every form; a POST without it is refused.
    pub csrf: String,
}

impl AdminAuth {
    /// Refuses tokens shorter than [`MIN_ADMIN_TOKEN_CHARS`].
    pub fn new(token: Secret) -> Result<Self, String> {
        let n = token.expose_secret().chars().count();
        if n < MIN_ADMIN_TOKEN_CHARS {
            return Err(format!(
                "the admin token holds {n} characters; it needs at least {MIN_ADMIN_TOKEN_CHARS}"
            ));
        }
        Ok(Self { token })
    }

    /// Whether `given` is the token, in constant time (digests of equal length, so not even
    /// the length leaks).
    pub fn is_token(&self, given: &str) -> bool {
        let digest = |s: &str| Sha256::digest(s.as_bytes());
        bool::from(digest(self.token.expose_secret()).ct_eq(&digest(given)))
    }

    /// Whether an `Authorization` header carries the token as a bearer token.
    pub fn bearer(&self, header: Option<&str>) -> bool {
        header
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .is_some_and(|t| self.is_token(t.trim()))
    }

    fn mac(&self, parts: &[&str]) -> String {
        // Any key length is valid for HMAC, so this cannot fail; the fallback never matches.
        let Ok(mut mac) = HmacSha256::new_from_slice(self.token.expose_secret().as_bytes()) else {
            return String::new();
        };
        for p in parts {
            mac.update(p.as_bytes());
            mac.update(b"\0");
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// A new session cookie value, issued at `now`.
    pub fn issue(&self, now: Instant) -> String {
        let nonce = uuid::Uuid::new_v4().simple().to_string();
        let issued = now.timestamp().to_string();
        let mac = self.mac(&["session", &nonce, &issued]);
        format!("{nonce}.{issued}.{mac}")
    }

    /// The session a cookie value stands for, if it is one of ours and not expired.
    pub fn session(&self, cookie: &str, now: Instant) -> Option<Session> {
        let mut parts = cookie.split('.');
        let (nonce, issued, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || nonce.is_empty() {
            return None;
        }
        let expected = self.mac(&["session", nonce, issued]);
        if !bool::from(expected.as_bytes().ct_eq(mac.as_bytes())) {
            return None;
        }
        let age = now.timestamp() - issued.parse::<i64>().ok()?;
        if !(0..SESSION_SECS).contains(&age) {
            return None;
        }
        Some(Session { csrf: self.mac(&["csrf", nonce]) })
    }

    /// Whether a form's CSRF token belongs to the session.
    pub fn csrf_ok(session: &Session, given: Option<&str>) -> bool {
        given.is_some_and(|g| bool::from(session.csrf.as_bytes().ct_eq(g.as_bytes())))
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').filter_map(|kv| kv.trim().split_once('=')).find(|(k, _)| *k == name).map(|(_, v)| v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth() -> AdminAuth {
        AdminAuth::new(Secret::from("a-long-admin-token-0123")).expect("long enough")
    }

    #[test]
    fn short_tokens_are_refused() {
        assert!(AdminAuth::new(Secret::from("short")).is_err());
    }

    #[test]
    fn bearer_takes_only_the_token() {
        let a = auth();
        assert!(a.bearer(Some("Bearer a-long-admin-token-0123")));
        assert!(!a.bearer(Some("Bearer a-long-admin-token-012")));
        assert!(!a.bearer(Some("a-long-admin-token-0123")));
        assert!(!a.bearer(None));
    }

    #[test]
    fn sessions_are_signed_expire_and_never_hold_the_token() {
        let a = auth();
        let now = chrono::Utc::now();
        let c = a.issue(now);
        assert!(!c.contains("a-long-admin-token"));
        let s = a.session(&c, now).expect("valid");
        assert!(AdminAuth::csrf_ok(&s, Some(&s.csrf)));
        assert!(!AdminAuth::csrf_ok(&s, Some("x")));
        assert!(!AdminAuth::csrf_ok(&s, None));
        assert!(a.session(&c, now + chrono::Duration::seconds(SESSION_SECS)).is_none(), "expired");
        let tampered = c.replacen('.', "0.", 1);
        assert!(a.session(&tampered, now).is_none());
        let other = AdminAuth::new(Secret::from("another-admin-token-456")).expect("long enough");
        assert!(other.session(&c, now).is_none(), "a new token ends every session");
        let second = a.session(&a.issue(now), now).expect("valid");
        assert_ne!(s.csrf, second.csrf, "each sign-in has its own CSRF token");
    }

    #[test]
    fn cookies_are_found_by_name() {
        assert_eq!(cookie("a=1; portier_console=x.y.z; b=2", COOKIE), Some("x.y.z"));
        assert_eq!(cookie("a=1", COOKIE), None);
    }
}
