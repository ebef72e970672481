//! The one message shape on the queue: a source's event about one subject, or a reconcile.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Outgoing;
use crate::model::{Instant, SubjectKey};

/// How a webhook proved where it came from. Only a signature vouches for its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    Signature,
    Token,
}

/// A verified webhook of any source, for one subject (the subject names the source).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// The queue's deduplication id: each subject's event is done once.
    pub event_id: String,
    pub subject: SubjectKey,
    /// What happened, in the source's words (a Nexudus action, a Kinnovis event type).
    pub action: String,
    pub proof: Proof,
    /// The body's entity, when small enough to travel; the source decides what it may prove.
    pub payload: Option<Value>,
    pub received_at: Instant,
    /// It may take access away (a delete, a cancellation, a revocation): sent ahead of a
    /// tenant's grants where the queue can.
    #[serde(default)]
    pub urgent: bool,
    /// What the hint says, whatever the second it came in: a repeat is merged into a queued
    /// message of the same hint whose reconcile has not started, never into one that ran.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

/// What the worker is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// The derives are the shape; the trait impls below also read the shapes of earlier versions.
#[serde(remote = "Self", tag = "kind", rename_all = "snake_case")]
pub enum WorkMessage {
    /// A verified webhook for one subject.
    Event(Event),
    /// Look at a subject again (a timer fired, or an operator asked).
    Reconcile {
        subject: SubjectKey,
        reason: String,
        at: Instant,
        /// It may take access away (a window ends, a resync found access to revoke).
        #[serde(default)]
        urgent: bool,
    },
}

impl Serialize for WorkMessage {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        WorkMessage::serialize(self, serializer)
    }
}

impl<'de> Deserialize<'de> for WorkMessage {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let value = Value::deserialize(deserializer)?;
        match value.get("kind").and_then(Value::as_str) {
            Some("nexudus_event" | "kinnovis_event") => {
                Earlier::deserialize(value).map(WorkMessage::from).map_err(D::Error::custom)
            }
            _ => WorkMessage::deserialize(value).map_err(D::Error::custom),
        }
    }
}

/// The per-source events queued by versions before [`Event`], read so an upgrade with
/// messages in flight loses none.
#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Earlier {
    NexudusEvent {
        event_id: String,
        subject: SubjectKey,
        action: String,
        proof: Proof,
        payload: Option<Value>,
        received_at: Instant,
        #[serde(default)]
        hint: Option<String>,
    },
    KinnovisEvent {
        event_id: String,
        subject: SubjectKey,
        event: Value,
        received_at: Instant,
    },
}

impl From<Earlier> for WorkMessage {
    fn from(earlier: Earlier) -> Self {
        // `urgent` only orders sending, and these were sent already.
        WorkMessage::Event(match earlier {
            Earlier::NexudusEvent { event_id, subject, action, proof, payload, received_at, hint } => {
                Event { event_id, subject, action, proof, payload, received_at, urgent: false, hint }
            }
            // Signed with Standard Webhooks: the event is its own proof.
            Earlier::KinnovisEvent { event_id, subject, event, received_at } => Event {
                event_id,
                subject,
                action: event["type"].as_str().unwrap_or("kinnovis").to_owned(),
                proof: Proof::Signature,
                payload: Some(event),
                received_at,
                urgent: false,
                hint: None,
            },
        })
    }
}

impl WorkMessage {
    pub fn subject(&self) -> &SubjectKey {
        match self {
            WorkMessage::Event(Event { subject, .. }) | WorkMessage::Reconcile { subject, .. } => subject,
        }
    }

    /// True when the work may take access away, so a tenant's backlog of grants never delays
    /// it: a delete, cancellation or revocation hint (still confirmed by the source before
    /// anything is revoked), or an urgent reconcile.
    pub fn urgent(&self) -> bool {
        match self {
            WorkMessage::Event(e) => e.urgent,
            WorkMessage::Reconcile { urgent, .. } => *urgent,
        }
    }

    /// FIFO group = the subject; dedup id = the event id (a reconcile: always a new one).
    pub fn to_outgoing(&self) -> Outgoing {
        let dedup_id = match self {
            WorkMessage::Event(e) => e.event_id.clone(),
            // A reconcile is safe to repeat, and one dropped as a "duplicate" of an earlier one
            // (a second resync, a timer set again for the same instant) would be work lost.
            WorkMessage::Reconcile { .. } => uuid::Uuid::new_v4().simple().to_string(),
        };
        Outgoing {
            group: self.subject().to_string(),
            dedup_id,
            // Serialising plain data cannot fail; an empty body would be quarantined by the worker.
            body: serde_json::to_string(self).unwrap_or_default(),
            urgent: self.urgent(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_queued_by_an_earlier_version_are_read() {
        let subject = r#"{"tenant":"t","source":"nexudus","person":"456"}"#;
        let nexudus = format!(
            r#"{{"kind":"nexudus_event","event_id":"nx-1","subject":{subject},"action":"CoworkerDelete",
            "proof":"token","payload":null,"received_at":"2026-11-23T09:00:00Z","hint":"h"}}"#
        );
        let Ok(WorkMessage::Event(e)) = serde_json::from_str(&nexudus) else { panic!("nexudus_event") };
        assert_eq!(
            (e.action.as_str(), e.proof, e.hint.as_deref()),
            ("CoworkerDelete", Proof::Token, Some("h"))
        );
        let kinnovis = format!(
            r#"{{"kind":"kinnovis_event","event_id":"kv-1","subject":{subject},
            "event":{{"type":"access.revoked"}},"received_at":"2026-11-23T09:00:00Z"}}"#
        );
        let Ok(WorkMessage::Event(e)) = serde_json::from_str(&kinnovis) else { panic!("kinnovis_event") };
        assert_eq!((e.action.as_str(), e.proof), ("access.revoked", Proof::Signature));
        assert_eq!(e.payload, Some(serde_json::json!({"type": "access.revoked"})));
    }

    #[test]
    fn an_event_travels_whole_and_is_deduplicated_by_its_id() {
        let e = Event {
            event_id: "ev-1".into(),
            subject: SubjectKey::new(&"t".into(), crate::model::SourceKind::Kinnovis, "em-1"),
            action: "booking.cancelled".into(),
            proof: Proof::Signature,
            payload: Some(serde_json::json!({"type": "booking.cancelled"})),
            received_at: Instant::default(),
            urgent: true,
            hint: None,
        };
        let out = WorkMessage::Event(e.clone()).to_outgoing();
        assert_eq!(
            (out.dedup_id.as_str(), out.group.as_str(), out.urgent),
            ("ev-1", "t#kinnovis#em-1", true)
        );
        let back: WorkMessage = serde_json::from_str(&out.body).expect("reads back");
        assert_eq!(back, WorkMessage::Event(e));
    }
}
