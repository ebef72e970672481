//! Webhook verification: one function per scheme, constant-time throughout.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{KeyInit, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::model::Instant;
use crate::sources::{HookRequest, Proof, Signing};

type HmacSha256 = hmac::Hmac<Sha256>;

/// What a valid `X-Nexudus-Hook-Signature` proves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signed {
    /// Every byte of the body: it may decide who gets access.
    Content,
    /// Only that the tenant's secret signed a body with the same ASCII copy: any non-ASCII
    /// character, or a `?`, may have been swapped for another. Who gets access is read from
    /// the REST API, as for a token.
    SenderOnly,
}

/// Checks `X-Nexudus-Hook-Signature`: uppercase hex HMAC-SHA256 of the body.
///
/// Nexudus signs an ASCII copy of the JSON (.NET `ASCIIEncoding` turns every non-ASCII UTF-16
/// unit into `?`) while the wire body is UTF-8, so both forms are accepted; but a body whose
/// signature holds only over such a copy (or that holds a literal `?`, which the copy of
/// another body would too) proves only its sender.
pub fn nexudus_signed(secret: &[u8], body: &[u8], header: &str) -> Option<Signed> {
    let given = hex::decode(header.trim()).ok().filter(|g| g.len() == 32)?;
    if hmac_matches(secret, body, &given) {
        let ambiguous = body.is_ascii() && body.contains(&b'?');
        return Some(if ambiguous { Signed::SenderOnly } else { Signed::Content });
    }
    ascii_copy(body).filter(|ascii| hmac_matches(secret, ascii, &given)).map(|_| Signed::SenderOnly)
}

/// True when the signature is valid at all (see [`nexudus_signed`] for what it proves).
pub fn nexudus_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    nexudus_signed(secret, body, header).is_some()
}

fn hmac_matches(secret: &[u8], msg: &[u8], given: &[u8]) -> bool {
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(secret) else { return false };
    mac.update(msg);
    // `verify_slice` compares in constant time.
    mac.verify_slice(given).is_ok()
}

/// The body as .NET's ASCII encoder would have produced it, if it differs at all.
fn ascii_copy(body: &[u8]) -> Option<Vec<u8>> {
    if body.is_ascii() {
        return None;
    }
    let text = String::from_utf8_lossy(body);
    // One `?` per UTF-16 unit: an emoji (a surrogate pair) becomes `??`, as in .NET.
    Some(
        text.chars()
            .flat_map(|c| {
                let n = if c.is_ascii() { 1 } else { c.len_utf16() };
                std::iter::repeat_n(if c.is_ascii() { c as u8 } else { b'?' }, n)
            })
            .collect(),
    )
}

/// Compares a per-tenant URL token in constant time.
pub fn token(expected: &str, given: Option<&str>) -> bool {
    // Digests of equal length, so neither the comparison nor an early exit on a length
    // mismatch tells how long the token is.
    let digest = |s: &str| Sha256::digest(s.as_bytes());
    match given {
        Some(g) => bool::from(digest(expected).ct_eq(&digest(g))),
        None => false,
    }
}

/// Uppercase hex HMAC-SHA256, as Nexudus sends it (for `portier send` and the simulators).
pub fn nexudus_sign(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never comes out empty.
    <HmacSha256 as KeyInit>::new_from_slice(secret)
        .map(|mut mac| {
            mac.update(body);
            hex::encode_upper(mac.finalize().into_bytes())
        })
        .unwrap_or_default()
}

/// How far `webhook-timestamp` may be from now (the reference libraries' `5 * 60`).
pub const STANDARD_WEBHOOK_TOLERANCE_SECS: i64 = 300;

/// A Standard Webhooks signing key: the base64-decoded bytes after `whsec_`. Never printed.
#[derive(Clone)]
pub struct WebhookKey(Vec<u8>);

impl WebhookKey {
    /// Parses `whsec_<base64>` (the prefix is optional, as in the reference libraries).
    pub fn parse(secret: &str) -> Result<Self, String> {
        let b64 = secret.trim().strip_prefix("whsec_").unwrap_or(secret.trim());
        match B64.decode(b64) {
            Ok(bytes) if !bytes.is_empty() => Ok(Self(bytes)),
            _ => Err("the webhook secret is not `whsec_` followed by base64".into()),
        }
    }
}

impl fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookKey(***)")
    }
}

/// Why a Standard Webhooks delivery was refused (answered 401, never logged with values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum StandardWebhookError {
    #[error("webhook-id, webhook-timestamp or webhook-signature is missing")]
    Missing,
    #[error("webhook-id must be 1-256 visible ASCII characters without '.'")]
    BadId,
    #[error("webhook-timestamp is not a Unix time in seconds")]
    BadTimestamp,
    #[error("webhook-timestamp is more than 300 s from now")]
    OutsideTolerance,
    #[error("no v1 signature matches")]
    NoMatch,
}

/// The headers of a Standard Webhooks delivery, as received.
#[derive(Debug, Clone, Copy)]
pub struct StandardHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Verifies a Standard Webhooks v1 delivery: `base64(HMAC-SHA256(key, "{id}.{ts}.{body}"))`
/// in any of the space-separated `v1,` entries (several during key rotation), compared in
/// constant time, with the timestamp within ±300 s of `now`. Returns the timestamp.
pub fn standard_webhook(
    key: &WebhookKey,
    headers: StandardHeaders<'_>,
    body: &[u8],
    now: Instant,
) -> Result<i64, StandardWebhookError> {
    let (Some(id), Some(ts), Some(signatures)) = (headers.id, headers.timestamp, headers.signature) else {
        return Err(StandardWebhookError::Missing);
    };
    if id.is_empty() || id.len() > 256 || !id.bytes().all(|b| b.is_ascii_graphic() && b != b'.') {
        return Err(StandardWebhookError::BadId);
    }
    let seconds: i64 = match ts.trim() {
        // Canonical digits only: the signature covers the header's bytes, so `0170…` is not
        // `170…` (Standard Webhooks signs the timestamp as sent).
        t if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) && (t == "0" || !t.starts_with('0')) => {
            t.parse().map_err(|_| StandardWebhookError::BadTimestamp)?
        }
        _ => return Err(StandardWebhookError::BadTimestamp),
    };
    if (now.timestamp() - seconds).abs() > STANDARD_WEBHOOK_TOLERANCE_SECS {
        return Err(StandardWebhookError::OutsideTolerance);
    }
    let expected = standard_mac(key, id, seconds, body);
    let mut matched = false;
    for entry in signatures.split_ascii_whitespace() {
        let Some(("v1", b64)) = entry.split_once(',') else { continue };
        let Ok(given) = B64.decode(b64) else { continue };
        // Length first: a short value must never match a prefix (svix PR #1190).
        if given.len() == expected.len() {
            matched |= bool::from(given.ct_eq(&expected));
        }
    }
    if matched { Ok(seconds) } else { Err(StandardWebhookError::NoMatch) }
}

fn standard_mac(key: &WebhookKey, id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length.
    let Ok(mut mac) = <HmacSha256 as KeyInit>::new_from_slice(&key.0) else { return Vec::new() };
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

/// The `webhook-signature` value for a delivery (`v1,<base64>`), as a sender computes it.
pub fn standard_sign(key: &WebhookKey, id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", B64.encode(standard_mac(key, id, timestamp, body)))
}

/// Why a delivery is refused before its body is read: the HTTP status and what to say.
pub type Refusal = (u16, String);

/// Runs the source's signing scheme with the tenant's secret and token: the proof the body
/// carries, or the refusal (401; 503 when the tenant's secret cannot verify anything).
pub fn delivery(
    signing: Signing,
    secret: Option<&str>,
    token_expected: Option<&str>,
    req: &HookRequest<'_>,
    now: Instant,
) -> Result<Proof, Refusal> {
    let refuse = |status: u16, why: &str| (status, why.to_owned());
    match signing {
        Signing::BodyHmac { header } => {
            // Every configured check must pass; a signature vouches for the content as well.
            let signed = match secret {
                Some(secret) => {
                    match req.header(header).and_then(|sig| nexudus_signed(secret.as_bytes(), req.body, sig))
                    {
                        Some(s) => s == Signed::Content,
                        None => return Err(refuse(401, "signature missing or invalid")),
                    }
                }
                None => false,
            };
            if let Some(expected) = token_expected
                && !token(expected, req.token)
            {
                return Err(refuse(401, "token missing or invalid"));
            }
            // A signature over the ASCII copy only proves the sender, as a token does.
            Ok(if signed { Proof::Signature } else { Proof::Token })
        }
        Signing::StandardWebhooks => {
            // Checked at start-up, so a tenant always has a usable key here.
            let Some(key) = secret.and_then(|s| WebhookKey::parse(s).ok()) else {
                return Err(refuse(503, "the tenant's webhook secret is not usable"));
            };
            let headers = StandardHeaders {
                id: req.header("webhook-id"),
                timestamp: req.header("webhook-timestamp"),
                signature: req.header("webhook-signature"),
            };
            standard_webhook(&key, headers, req.body, now).map_err(|e| (401, e.to_string()))?;
            Ok(Proof::Signature)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Test vector from reference/source-systems.md §1.3.
    const SECRET: &[u8] = b"nx-secret";
    const BODY: &str = r#"[{"Id":42,"FullName":"Anna Müller"}]"#;
    const OVER_UTF8: &str = "A265F3FA5688420F8A6DA25C9C6E470E0C96A9391B467F3D1967ABA009EDABEF";
    const OVER_ASCII: &str = "258D54477E644C7C3DAB0FE1A8FA77CE2F7A7421D3E05CEA1C448F300E664197";

    #[test]
    fn only_a_signature_over_every_byte_lets_the_body_decide() {
        let secret = b"s";
        let sign = |bytes: &[u8]| {
            let mut mac = <HmacSha256 as KeyInit>::new_from_slice(secret).expect("key");
            mac.update(bytes);
            hex::encode_upper(mac.finalize().into_bytes())
        };
        let genuine = "[{\"Email\":\"anna@ex\u{e4}mple.com\"}]";
        // Signed over the UTF-8 bytes: every byte is proven.
        assert_eq!(
            nexudus_signed(secret, genuine.as_bytes(), &sign(genuine.as_bytes())),
            Some(Signed::Content)
        );
        // Signed over the ASCII copy, as Nexudus does: the sender, not the characters.
        let ascii = sign(br#"[{"Email":"anna@ex?mple.com"}]"#);
        assert_eq!(nexudus_signed(secret, genuine.as_bytes(), &ascii), Some(Signed::SenderOnly));
        // … and another letter, or a literal `?`, in its place carries the same signature.
        let swapped = "[{\"Email\":\"anna@ex\u{e5}mple.com\"}]";
        assert_eq!(nexudus_signed(secret, swapped.as_bytes(), &ascii), Some(Signed::SenderOnly));
        assert_eq!(
            nexudus_signed(secret, br#"[{"Email":"anna@ex?mple.com"}]"#, &ascii),
            Some(Signed::SenderOnly)
        );
        // An emoji is two UTF-16 units, so two `?` in .NET's copy.
        let emoji = "[{\"FullName\":\"A \u{1F600}\"}]";
        assert_eq!(
            nexudus_signed(secret, emoji.as_bytes(), &sign(br#"[{"FullName":"A ??"}]"#)),
            Some(Signed::SenderOnly)
        );
        assert_eq!(nexudus_signed(secret, emoji.as_bytes(), &sign(br#"[{"FullName":"A ?"}]"#)), None);
        assert_eq!(nexudus_signed(secret, b"[{}]", &sign(b"[{}]")), Some(Signed::Content));
    }

    #[test]
    fn a_token_is_compared_whole_whatever_its_length() {
        let token = "nx-url-token-7f3a-2026";
        assert!(token_matches(token, Some(token)));
        for wrong in ["", "n", &token[..token.len() - 1], "nx-url-token-7f3a-2027", &format!("{token}x")] {
            assert!(!token_matches(token, Some(wrong)), "{wrong:?}");
        }
        assert!(!token_matches(token, None));
    }

    fn token_matches(expected: &str, given: Option<&str>) -> bool {
        token(expected, given)
    }

    #[test]
    fn accepts_both_encodings_of_the_reference_vector() {
        assert!(nexudus_signature(SECRET, BODY.as_bytes(), OVER_UTF8));
        assert!(nexudus_signature(SECRET, BODY.as_bytes(), OVER_ASCII));
        assert!(nexudus_signature(SECRET, BODY.as_bytes(), &OVER_ASCII.to_lowercase()));
        assert_eq!(nexudus_sign(SECRET, BODY.as_bytes()), OVER_UTF8);
    }

    #[test]
    fn rejects_everything_else() {
        assert!(!nexudus_signature(b"other", BODY.as_bytes(), OVER_UTF8));
        assert!(!nexudus_signature(SECRET, br#"[{"Id":43}]"#, OVER_UTF8));
        assert!(!nexudus_signature(SECRET, BODY.as_bytes(), &OVER_UTF8[..62]));
        assert!(!nexudus_signature(SECRET, BODY.as_bytes(), ""));
        assert!(!nexudus_signature(SECRET, BODY.as_bytes(), "not hex at all"));
    }

    #[test]
    fn tokens_must_match_exactly() {
        assert!(token("s3cret-token", Some("s3cret-token")));
        assert!(!token("s3cret-token", Some("s3cret-toke")));
        assert!(!token("s3cret-token", Some("")));
        assert!(!token("s3cret-token", None));
    }

    // Test vector from reference/source-systems.md §3.1 (the Standard Webhooks spec).
    const SW_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const SW_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const SW_TS: i64 = 1_649_367_553;
    const SW_BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SW_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn at(secs: i64) -> Instant {
        chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default()
    }

    fn check(sig: &str, ts: &str, now: i64) -> Result<i64, StandardWebhookError> {
        let key = WebhookKey::parse(SW_SECRET).expect("valid key");
        let h = StandardHeaders { id: Some(SW_ID), timestamp: Some(ts), signature: Some(sig) };
        standard_webhook(&key, h, SW_BODY, at(now))
    }

    #[test]
    fn the_standard_webhooks_test_vector_verifies() {
        let key = WebhookKey::parse(SW_SECRET).expect("valid key");
        assert_eq!(standard_sign(&key, SW_ID, SW_TS, SW_BODY), SW_SIG);
        assert_eq!(check(SW_SIG, "1649367553", SW_TS), Ok(SW_TS));
        // Rotation: any matching `v1,` entry counts, other schemes are skipped.
        let rotated = format!("v1,Zm9yZ2VkIHNpZ25hdHVyZSBvZiAzMiBieXRlcyEhISE= v1a,abc {SW_SIG}");
        assert_eq!(check(&rotated, "1649367553", SW_TS), Ok(SW_TS));
        // ±300 s, inclusive.
        assert_eq!(check(SW_SIG, "1649367553", SW_TS + 300), Ok(SW_TS));
        assert_eq!(check(SW_SIG, "1649367553", SW_TS - 300), Ok(SW_TS));
    }

    #[test]
    fn standard_webhooks_refuse_everything_else() {
        use StandardWebhookError::*;
        assert_eq!(check(SW_SIG, "1649367553", SW_TS + 301), Err(OutsideTolerance));
        assert_eq!(check(SW_SIG, "1649367553", SW_TS - 301), Err(OutsideTolerance));
        assert_eq!(check(SW_SIG, "1649367554", SW_TS), Err(NoMatch), "the timestamp is signed");
        assert_eq!(check("v1,", "1649367553", SW_TS), Err(NoMatch), "an empty signature never matches");
        assert_eq!(check(&SW_SIG[..20], "1649367553", SW_TS), Err(NoMatch), "nor does a prefix");
        assert_eq!(check(&SW_SIG.replace("v1,", "v2,"), "1649367553", SW_TS), Err(NoMatch));
        assert_eq!(check(SW_SIG, "16493675.53", SW_TS), Err(BadTimestamp));
        assert_eq!(check(SW_SIG, "-1", SW_TS), Err(BadTimestamp));
        // The header's bytes are signed: the same number written otherwise is another header.
        assert_eq!(check(SW_SIG, "01649367553", SW_TS), Err(BadTimestamp));
        let other = WebhookKey::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").expect("valid key");
        let h = StandardHeaders { id: Some(SW_ID), timestamp: Some("1649367553"), signature: Some(SW_SIG) };
        assert_eq!(standard_webhook(&other, h, SW_BODY, at(SW_TS)), Err(NoMatch));
        let h = StandardHeaders { id: Some("a.b"), ..h };
        assert_eq!(standard_webhook(&other, h, SW_BODY, at(SW_TS)), Err(BadId));
        let h = StandardHeaders { signature: None, ..h };
        assert_eq!(standard_webhook(&other, h, SW_BODY, at(SW_TS)), Err(Missing));
        assert!(WebhookKey::parse("whsec_!!!").is_err());
        assert_eq!(format!("{other:?}"), "WebhookKey(***)");
    }
}
