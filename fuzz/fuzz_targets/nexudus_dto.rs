//! Nexudus REST/webhook entities and their lenient dates: never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shared::sources::nexudus::dto::{Coworker, CoworkerTimePass, Page, parse_time};

fuzz_target!(|body: &[u8]| {
    let _ = serde_json::from_slice::<Coworker>(body);
    let _ = serde_json::from_slice::<CoworkerTimePass>(body);
    let _ = serde_json::from_slice::<Page<CoworkerTimePass>>(body);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = parse_time(text);
    }
});
