//! The worker: one queue message → source refresh → reconcile. Shared by both runtimes.

use std::sync::Arc;
use std::time::Duration;

use crate::error::WorkError;
use crate::queue::WorkMessage;
use crate::reconcile::{self, Outcome};
use crate::sources::Hint;
use crate::store::Records;
use crate::store::records::Quarantined;
use crate::tenants::Tenants;

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
            match tenant.source.refresh(&subject, &Hint::from(event), &self.records).await {
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
