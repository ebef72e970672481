//! Portier's typed records over the record-level [`Store`] (the layout of design §6.4).

use std::sync::Arc;

use serde::{Deserialize, Serialize, de::DeserializeOwned};

mod subject;
mod tenant;
mod webhooks;

use super::{Cond, Item, Store};
use crate::clock::Clock;
use crate::error::InfraError;
use crate::model::{Instant, SubjectKey};

/// How long a seen webhook id is remembered (longer than any sender's retry horizon).
pub const EVENT_TTL_DAYS: i64 = 14;
/// How long audit entries are kept.
pub const AUDIT_TTL_DAYS: i64 = 90;
/// How far back the tick always looks for timers it missed.
pub const TIMER_CATCH_UP_HOURS: i64 = 24;
/// How long a timer is kept, and how far back a tick looks after the last one it finished: a
/// tick that was down for days still finds every window edge it missed (a membership whose
/// window ended must still be removed).
pub const TIMER_KEEP_DAYS: i64 = 31;

/// One provider mutation with its cause, kept for audit and `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: Instant,
    pub action: String,
    pub target: String,
    pub cause: String,
    pub outcome: String,
}

/// How long a quarantined body is kept (it may hold names and emails).
pub const QUARANTINE_TTL_DAYS: i64 = 30;
/// New quarantined bodies kept per tenant and day; repeats of one body are counted, not kept.
pub const QUARANTINE_DAILY_CAP: u64 = 500;

/// A verified webhook body that could not be parsed, kept instead of dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub at: Instant,
    pub event_id: String,
    pub action: String,
    pub reason: String,
    pub body: String,
    /// How many more times the same body came in after this one.
    #[serde(default)]
    pub repeats: u32,
}

/// The tenant record that says webhooks were accepted but not queued (the queue was full).
pub const OVERFLOW_RECORD: &str = "OVERFLOW";

/// Webhooks accepted while the tenant's queue was at its bound: what they said is read back
/// from the source by a resync of the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overflow {
    pub since: Instant,
    pub last: Instant,
    pub webhooks: u64,
}

/// The typed view of the table, shared by every runtime.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

fn subject_pk(s: &SubjectKey) -> String {
    format!("SUBJ#{s}")
}

fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, InfraError> {
    serde_json::from_value(item.data.clone())
        .map_err(|e| InfraError::Backend(format!("record {}/{} is unreadable: {e}", item.pk, item.sk)))
}

fn encode<T: Serialize>(value: &T) -> Result<serde_json::Value, InfraError> {
    serde_json::to_value(value).map_err(InfraError::backend)
}

/// A conditional write that lost its race: the other writer's record stands.
fn ignore_conflict(e: InfraError) -> Result<(), InfraError> {
    match e {
        InfraError::Conflict => Ok(()),
        e => Err(e),
    }
}

/// Tries a read-modify-write a few times when another writer got there first.
pub const CONFLICT_RETRIES: usize = 5;

impl Records {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    async fn list<T: DeserializeOwned>(&self, pk: &str, prefix: &str) -> Result<Vec<T>, InfraError> {
        self.store.query(pk, prefix).await?.iter().map(decode).collect()
    }

    /// Writes `value` unless the stored record is at least as new (`is_newer` says so).
    async fn put_monotonic<T: Serialize + DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
        is_newer: impl Fn(&T, &T) -> bool,
    ) -> Result<bool, InfraError> {
        for _ in 0..CONFLICT_RETRIES {
            let current = self.store.get(pk, sk).await?;
            let (version, cond) = match &current {
                Some(item) => {
                    let stored: T = decode(item)?;
                    if !is_newer(value, &stored) {
                        return Ok(false);
                    }
                    (item.version + 1, Cond::Version(item.version))
                }
                None => (1, Cond::Absent),
            };
            let item = Item { version, ..Item::new(pk, sk, encode(value)?) };
            match self.store.put(&item, cond).await {
                Ok(()) => return Ok(true),
                Err(InfraError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(InfraError::Conflict)
    }
}
