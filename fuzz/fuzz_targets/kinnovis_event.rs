//! A verified Kinnovis body → one message per valid email: never panics, never empty when Ok.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::model::TenantId;
use shared::sources::kinnovis::dto::Event;
use shared::sources::kinnovis::webhook;

fuzz_target!(|body: &[u8]| {
    let _ = Event::parse(body);
    let at = chrono::DateTime::from_timestamp(1_795_000_000, 0).unwrap_or_default();
    if let Ok(messages) = webhook::parse(&TenantId("t".into()), "loc-1", "msg_1", body, at) {
        assert!(!messages.is_empty());
    }
});
