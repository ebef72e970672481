//! A verified Nexudus body → queue message: never panics; a message names a numeric person.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::queue::Proof;
use shared::model::TenantId;
use shared::sources::nexudus::webhook;

fuzz_target!(|body: &[u8]| {
    let at = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default();
    if let Ok(events) = webhook::parse(&TenantId("t".into()), "AccessControlUpdate", body, Proof::Signature, at) {
        assert!(events.iter().all(|e| e.subject.person.bytes().all(|b| b.is_ascii_digit())));
    }
});
