//! Counters since the process started: reconciles done and retried, and failures by provider
//! and class (`permanent`: recorded and held back; `unavailable`: recorded, looked at again
//! soon; `retryable`: the message comes back). `portier serve` shows them on `/healthz`; the
//! Lambda worker logs them as one `counters` line after every batch, so its log group carries
//! them too.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

static COUNTS: Mutex<BTreeMap<(&'static str, &'static str), u64>> = Mutex::new(BTreeMap::new());

/// Counts one `class` event for `provider` (`"all"` for whole reconciles).
pub fn count(provider: &'static str, class: &'static str) {
    // A poisoned lock still holds plain counts.
    let mut counts = COUNTS.lock().unwrap_or_else(PoisonError::into_inner);
    *counts.entry((provider, class)).or_default() += 1;
}

/// Every counter as `{provider: {class: n}}`.
pub fn snapshot() -> serde_json::Value {
    let counts = COUNTS.lock().unwrap_or_else(PoisonError::into_inner);
    let mut out = serde_json::Map::new();
    for ((provider, class), n) in counts.iter() {
        let entry = out.entry(*provider).or_insert_with(|| serde_json::json!({}));
        entry[*class] = (*n).into();
    }
    serde_json::Value::Object(out)
}

#[cfg(test)]
mod tests {
    #[test]
    fn counts_add_up_by_provider_and_class() {
        super::count("test-provider", "permanent");
        super::count("test-provider", "permanent");
        super::count("test-provider", "retryable");
        let snap = super::snapshot();
        assert_eq!(snap["test-provider"]["permanent"], 2);
        assert_eq!(snap["test-provider"]["retryable"], 1);
    }
}
