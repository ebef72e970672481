//! The worker: one queue message → source refresh → reconcile. Shared by both runtimes.

use std::sync::Arc;
use std::time::Duration;

use crate::error::WorkError;
use crate::ingress::envelope::WorkMessage;
use crate::reconcile::{self, Outcome};
use crate::sources::Hint;
use crate::store::Records;
use crate::store::records::Quarantined;
use crate::tenants::Tenants;

/// Backoff for a message that will be tried again: the provider's `Retry-After`, or
/// exponential in the receive count with jitter, capped at five minutes. Both runtimes set it
/// as the failed message's visibility, so a retry does not wait out the whole timeout.
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

        let event = match &msg {
            WorkMessage::NexudusEvent { event_id, action, proof, payload, received_at, .. } => Some((
                event_id,
                Hint {
                    action: action.clone(),
                    proof: *proof,
                    payload: payload.clone(),
                    received_at: *received_at,
                },
            )),
            // Signed with Standard Webhooks: the event is its own proof.
            WorkMessage::KinnovisEvent { event_id, event, received_at, .. } => Some((
                event_id,
                Hint {
                    action: event["type"].as_str().unwrap_or_default().to_owned(),
                    proof: crate::sources::Proof::Signature,
                    payload: Some(event.clone()),
                    received_at: *received_at,
                },
            )),
            WorkMessage::Reconcile { .. } => None,
        };
        // Marked first, before the source is read: a repeat arriving from now on is queued
        // again instead of merged into this one (see `Ingress::merges_into_queued`).
        if let WorkMessage::NexudusEvent { hint: Some(h), event_id, .. } = &msg {
            self.records.hint_started(&subject, h, event_id).await?;
        }
        if let Some((event_id, hint)) = &event {
            if self.records.event_done(event_id).await? {
                return Ok(None);
            }

            match tenant.source.refresh(&subject, hint, &self.records).await {
                Err(WorkError::BadMessage(reason)) => {
                    self.quarantine(&msg, body, &reason).await?;
                    return Ok(None);
                }
                other => other?,
            }
        }

        let outcome = reconcile::reconcile(&self.records, &tenant, &subject).await?;
        if let Some((event_id, _)) = &event {
            self.records.mark_event_done(event_id).await?;
        }
        Ok(Some(outcome))
    }

    async fn quarantine(&self, msg: &WorkMessage, body: &str, reason: &str) -> Result<(), WorkError> {
        let (event_id, action) = match msg {
            WorkMessage::NexudusEvent { event_id, action, .. } => (event_id.clone(), action.clone()),
            WorkMessage::KinnovisEvent { event_id, event, .. } => {
                (event_id.clone(), event["type"].as_str().unwrap_or("kinnovis").to_owned())
            }
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
