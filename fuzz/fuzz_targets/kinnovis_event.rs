//! A verified Kinnovis body → one message per valid email: never panics, never empty when Ok.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::ingress::envelope;
use shared::model::TenantId;
use shared::sources::kinnovis::dto::Event;

fuzz_target!(|body: &[u8]| {
    let _ = Event::parse(body);
    let at = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default();
    if let Ok(messages) = envelope::kinnovis(&TenantId("t".into()), "loc-1", "msg_1", body, at) {
        assert!(!messages.is_empty());
    }
});
