//! Webhook verification: one function per scheme, constant-time throughout.

use hmac::{KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

type HmacSha256 = hmac::Hmac<Sha256>;

/// Checks `X-Nexudus-Hook-Signature`: uppercase hex HMAC-SHA256 of the body.
///
/// Nexudus signs an ASCII copy of the JSON (.NET `ASCIIEncoding` turns every non-ASCII
/// character into `?`) while the wire body is UTF-8, so both forms are accepted.
pub fn nexudus_signature(secret: &[u8], body: &[u8], header: &str) -> bool {
    let Ok(given) = hex::decode(header.trim()) else { return false };
    if given.len() != 32 {
        return false;
    }
    if hmac_matches(secret, body, &given) {
        return true;
    }
    match ascii_copy(body) {
        Some(ascii) => hmac_matches(secret, &ascii, &given),
        None => false,
    }
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
    Some(text.chars().map(|c| if c.is_ascii() { c as u8 } else { b'?' }).collect())
}

/// Compares a per-tenant URL token in constant time.
pub fn token(expected: &str, given: Option<&str>) -> bool {
    match given {
        Some(g) => bool::from(expected.as_bytes().ct_eq(g.as_bytes())),
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

#[cfg(test)]
mod tests {
    use super::*;

    // Test vector from reference/source-systems.md §1.3.
    const SECRET: &[u8] = b"nx-secret";
    const BODY: &str = r#"[{"Id":42,"FullName":"Anna Müller"}]"#;
    const OVER_UTF8: &str = "A265F3FA5688420F8A6DA25C9C6E470E0C96A9391B467F3D1967ABA009EDABEF";
    const OVER_ASCII: &str = "258D54477E644C7C3DAB0FE1A8FA77CE2F7A7421D3E05CEA1C448F300E664197";

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
}
