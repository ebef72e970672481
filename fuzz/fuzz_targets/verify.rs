//! Both webhook verifiers with fuzzed headers and body: never panic, never accept a forgery
//! (the input is split into header fields and a body; no fuzzed input knows the key).
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::ingress::verify::{self, StandardHeaders, WebhookKey};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(4, |b| *b == 0);
    let (Some(a), Some(b), Some(c), Some(body)) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return;
    };
    let (id, ts, sig) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b), String::from_utf8_lossy(c));
    assert!(!verify::nexudus_signature(b"fuzz-secret-never-in-input", body, &sig));
    let _ = verify::token("fuzz-token", Some(&id));
    let Ok(key) = WebhookKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD") else { return };
    let now = chrono::DateTime::from_timestamp(1_649_367_553, 0).unwrap_or_default();
    let h = StandardHeaders { id: Some(&id), timestamp: Some(&ts), signature: Some(&sig) };
    if verify::standard_webhook(&key, h, body, now).is_ok() {
        // Only possible if the input carries the right MAC for its own id, time and body.
        let expected = verify::standard_sign(&key, &id, ts.trim().parse().unwrap_or(0), body);
        assert!(sig.split_whitespace().any(|s| s == expected));
    }
    let _ = WebhookKey::parse(&id);
});
