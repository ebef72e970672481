//! The worker: one queue message → source refresh → reconcile. Shared by both runtimes.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{InfraError, WorkError};
use crate::model::SubjectKey;
use crate::queue::WorkMessage;
use crate::reconcile::{self, Outcome};
use crate::sources::{Hint, Refreshed, Stored, Write};
use crate::store::records::{CONFLICT_RETRIES, Quarantined};
use crate::store::{Cond, Records};
use crate::tenants::{TenantRuntime, Tenants};

/// What becomes of a message whose work failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Redelivery {
    /// When it comes back: both runtimes set it as the message's visibility, so a retry does
    /// not wait out the whole timeout. The DLQ takes it after the queue's receive count.
    pub after: Duration,
}

/// The one decision on a failed message, for `portier serve` and the Lambda worker alike (as
/// controller-rs's `error_policy`): counted by class, and redelivered after
/// [`redelivery_delay`]. Failures that retrying cannot fix never reach it: reconcile records
/// them on the subject, and the worker quarantines unusable messages.
pub fn error_policy(error: &WorkError, receive_count: u32) -> Redelivery {
    let class = match error {
        WorkError::Call(_) => "retryable",
        WorkError::Infra(_) => "store_or_queue",
        WorkError::BadMessage(_) => "bad_message",
    };
    crate::metrics::count("redelivered", class);
    Redelivery { after: redelivery_delay(error, receive_count) }
}

/// Backoff for a message that will be tried again: the provider's `Retry-After`, or
/// exponential in the receive count with jitter, capped at five minutes.
pub fn redelivery_delay(error: &WorkError, receive_count: u32) -> Duration {
    if let Some(after) = error.retry_after() {
        return after;
    }
    let base = 2u64.saturating_pow(receive_count.min(8)).min(300);
    Duration::from_millis(base * 1000 / 2 + fastrand::u64(0..=base * 500))
}

/// What the worker needs, built once per process.
#[derive(Clone)]
pub struct Worker {
    pub records: Records,
    pub tenants: Arc<dyn Tenants>,
}

impl Worker {
    pub fn new(records: Records, tenants: Arc<dyn Tenants>) -> Self {
        Self { records, tenants }
    }

    /// Handles one message body. `Ok` means the message is done and can be deleted.
    ///
    /// A message that can never succeed (unreadable, unknown tenant) is quarantined and
    /// acknowledged, so it neither blocks its FIFO group nor fills the DLQ.
    pub async fn handle(&self, body: &str) -> Result<Option<Outcome>, WorkError> {
        let msg: WorkMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => {
                self.quarantine_unknown(body, &format!("unreadable queue message: {e}")).await?;
                return Ok(None);
            }
        };
        let subject = msg.subject().clone();
        let Some(tenant) = self.tenants.get(&subject.tenant).await? else {
            self.quarantine(&msg, body, "the tenant is no longer configured").await?;
            return Ok(None);
        };

        if let WorkMessage::Event(event) = &msg {
            // Marked first, before the source is read: a repeat arriving from now on is queued
            // again instead of merged into this one (see `Ingress::merges_into_queued`).
            if let Some(h) = &event.hint {
                self.records.hint_started(&subject, h, &event.event_id).await?;
            }
            if self.records.event_done(&event.event_id).await? {
                return Ok(None);
            }
            match self.refresh(&tenant, &subject, &Hint::from(event)).await {
                Err(WorkError::BadMessage(reason)) => {
                    self.quarantine(&msg, body, &reason).await?;
                    return Ok(None);
                }
                other => other?,
            }
        }

        let reconciled = reconcile::reconcile(&self.records, &tenant, &subject).await;
        // The next look is kept even when this one is retried: a retry may never succeed
        // (the DLQ), and a window's end must still be acted on.
        let next = match &reconciled {
            Ok(outcome) => outcome.next_check,
            Err(failed) => failed.next_check,
        };
        if let Some(at) = next {
            self.records.set_timer(&subject, at).await?;
        }
        let outcome = reconciled.map_err(|failed| failed.error)?;
        if let WorkMessage::Event(event) = &msg {
            self.records.mark_event_done(&event.event_id).await?;
        }
        Ok(Some(outcome))
    }

    /// Reads the subject from its source and writes what was read, the part read before an
    /// error included. A record read for update that another worker changed meanwhile is read
    /// again, as a read-modify-write would.
    async fn refresh(
        &self,
        tenant: &TenantRuntime,
        subject: &SubjectKey,
        hint: &Hint,
    ) -> Result<(), WorkError> {
        for _ in 0..CONFLICT_RETRIES {
            let mut read = Refreshed::default();
            let refreshed = tenant.source.refresh(subject, hint, Stored::new(&self.records), &mut read).await;
            if write(&self.records, read).await? {
                return refreshed;
            }
        }
        Err(InfraError::Conflict.into())
    }

    async fn quarantine(&self, msg: &WorkMessage, body: &str, reason: &str) -> Result<(), WorkError> {
        let (event_id, action) = match msg {
            WorkMessage::Event(e) => (e.event_id.clone(), e.action.clone()),
            WorkMessage::Reconcile { reason, .. } => {
                (uuid::Uuid::new_v4().to_string(), format!("reconcile: {reason}"))
            }
        };
        let q = Quarantined {
            at: self.records.now(),
            event_id,
            action,
            reason: reason.into(),
            body: body.into(),
            repeats: 0,
        };
        self.records.quarantine(&msg.subject().tenant, &q).await?;
        Ok(())
    }

    async fn quarantine_unknown(&self, body: &str, reason: &str) -> Result<(), WorkError> {
        let q = Quarantined {
            at: self.records.now(),
            event_id: uuid::Uuid::new_v4().to_string(),
            action: "unknown".into(),
            reason: reason.into(),
            body: body.into(),
            repeats: 0,
        };
        self.records.quarantine(&"_unknown".into(), &q).await?;
        Ok(())
    }
}

/// Writes what a refresh read, in order, through the store's guards. `false` when a record read
/// for update had changed: nothing after it is written, and the refresh is to be read again.
async fn write(records: &Records, read: Refreshed) -> Result<bool, InfraError> {
    // Subjects with an entitlement that changed since their last timer here.
    let mut changed: HashSet<SubjectKey> = HashSet::new();
    for w in read.writes {
        match w {
            Write::Profile { subject, profile, seen } => {
                records.save_profile(&subject, &profile, seen).await?;
            }
            Write::Entitlement { subject, entitlement, seen } => {
                if records.save_entitlement(&subject, &entitlement, seen).await? {
                    changed.insert(subject);
                }
            }
            Write::Timer { subject, at, if_changed } => {
                if changed.remove(&subject) || !if_changed {
                    records.set_timer(&subject, at).await?;
                }
            }
            Write::TenantRecord { tenant, sk, value, cond } => {
                match records.put_tenant_record_if(&tenant, &sk, &value, cond).await {
                    Err(InfraError::Conflict) if cond != Cond::Always => return Ok(false),
                    other => other?,
                }
            }
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::clock::ManualClock;
    use crate::model::{Entitlement, EntitlementKind, EntitlementState, ItemKind, ItemRef, Seen, SourceKind};
    use crate::store::sqlite::SqliteStore;

    fn records() -> (Records, crate::model::Instant) {
        let start = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).single().expect("time");
        let clock = Arc::new(ManualClock::new(start));
        let store = SqliteStore::open_in_memory(clock.clone()).expect("store");
        (Records::new(Arc::new(store), clock), start)
    }

    fn pass(version: crate::model::Instant) -> Entitlement {
        Entitlement {
            kind: EntitlementKind::Pass,
            id: "cp-1".into(),
            item: ItemRef { kind: ItemKind::Pass, id: "1001".into() },
            label: "Day pass".into(),
            window: crate::model::Window::new(None, None),
            state: EntitlementState::Active,
            source_version: version,
        }
    }

    #[tokio::test]
    async fn a_write_based_on_a_record_that_changed_stops_and_asks_for_a_new_read() {
        let (records, now) = records();
        let tenant = "t".into();
        let anna = SubjectKey::new(&tenant, SourceKind::Kinnovis, "anna");
        records
            .put_tenant_record(&tenant, "KBOOKING#B-1", &serde_json::json!({ "v": 2 }))
            .await
            .expect("put");
        let mut read = Refreshed::default();
        read.tenant_record(&tenant, "KBOOKING#B-1", &serde_json::json!({ "v": 1 }), Cond::Absent)
            .expect("encode");
        read.entitlement(&anna, pass(now), Seen::Body);
        assert!(!write(&records, read).await.expect("write"), "stale");
        assert_eq!(records.entitlements(&anna).await.expect("read"), Vec::new(), "nothing after it written");
        let kept: Option<serde_json::Value> =
            records.tenant_record(&tenant, "KBOOKING#B-1").await.expect("read");
        assert_eq!(kept, Some(serde_json::json!({ "v": 2 })));
    }

    #[tokio::test]
    async fn a_timer_if_changed_is_set_only_after_an_entitlement_changed() {
        let (records, now) = records();
        let tenant = "t".into();
        let (ben, cleo) = (
            SubjectKey::new(&tenant, SourceKind::Nexudus, "2"),
            SubjectKey::new(&tenant, SourceKind::Nexudus, "3"),
        );
        let later = now + Duration::seconds(1);
        let mut read = Refreshed::default();
        read.entitlement(&ben, pass(now), Seen::Read(now));
        read.timer(&ben, now, true);
        // The same again changes nothing, so no second timer.
        read.entitlement(&ben, pass(now), Seen::Read(now));
        read.timer(&ben, later, true);
        read.timer(&cleo, later, false);
        assert!(write(&records, read).await.expect("write"));
        let due = records.due_timers(now + Duration::minutes(1)).await.expect("timers");
        assert_eq!(due, vec![(ben, now), (cleo, later)]);
    }
}
