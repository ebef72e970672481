//! From a verified webhook to a queue message: which subject it concerns, and its event id.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{Instant, SourceKind, SubjectKey, TenantId};
use crate::queue::Outgoing;
pub use crate::sources::Proof;

/// The Nexudus webhook actions this version acts on (each has its own URL).
pub const NEXUDUS_ACTIONS: &[&str] = &["AccessControlUpdate", "CoworkerUpdate", "CoworkerDelete"];

/// Payloads larger than this travel without their body; the worker reads the source instead.
const MAX_QUEUED_PAYLOAD: usize = 200 * 1024;

/// What the worker is asked to do.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum WorkMessage {
    /// A verified Nexudus webhook for one subject.
    NexudusEvent {
        event_id: String,
        subject: SubjectKey,
        action: String,
        proof: Proof,
        /// The entity DTO (the array's element), when small enough to travel.
        payload: Option<Value>,
        received_at: Instant,
    },
    /// A verified Kinnovis event, for one of the emails its booking names.
    KinnovisEvent {
        /// `webhook-id` and the subject together: each subject's message is done once.
        event_id: String,
        subject: SubjectKey,
        /// The parsed event, as re-serialised by Portier.
        event: Value,
        received_at: Instant,
    },
    /// Look at a subject again (a timer fired, or an operator asked).
    Reconcile { subject: SubjectKey, reason: String, at: Instant },
}

impl WorkMessage {
    pub fn subject(&self) -> &SubjectKey {
        match self {
            WorkMessage::NexudusEvent { subject, .. }
            | WorkMessage::KinnovisEvent { subject, .. }
            | WorkMessage::Reconcile { subject, .. } => subject,
        }
    }

    /// FIFO group = the subject; dedup id = the event id (or the timer's instant).
    pub fn to_outgoing(&self) -> Outgoing {
        let dedup_id = match self {
            WorkMessage::NexudusEvent { event_id, .. } | WorkMessage::KinnovisEvent { event_id, .. } => {
                event_id.clone()
            }
            WorkMessage::Reconcile { subject, reason, at } => {
                hex::encode(&Sha256::digest(format!("{subject}|{reason}|{}", at.timestamp()))[..16])
            }
        };
        Outgoing {
            group: self.subject().to_string(),
            dedup_id,
            // Serialising plain data cannot fail; an empty body would be quarantined by the worker.
            body: serde_json::to_string(self).unwrap_or_default(),
        }
    }
}

/// Why a verified body could not become a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparseable(pub String);

/// Parses a verified Nexudus delivery: a JSON array holding one entity DTO.
pub fn nexudus(
    tenant: &TenantId,
    action: &str,
    body: &[u8],
    proof: Proof,
    received_at: Instant,
) -> Result<WorkMessage, Unparseable> {
    let value: Value =
        serde_json::from_slice(body).map_err(|e| Unparseable(format!("malformed JSON: {e}")))?;
    // Nexudus sends `[dto]`; a bare object is accepted as well.
    let dto = match value {
        Value::Array(mut items) if !items.is_empty() => items.swap_remove(0),
        Value::Array(_) => return Err(Unparseable("empty array: no entity in the webhook".into())),
        other => other,
    };
    let Value::Object(fields) = &dto else {
        return Err(Unparseable("the webhook's element is not a JSON object".into()));
    };
    // Pass and booking DTOs name their customer in `CoworkerId`; coworker DTOs are the customer.
    let person = match (fields.get("CoworkerId"), fields.get("Id")) {
        (Some(id), _) if !id.is_null() => id,
        (_, Some(id)) => id,
        _ => return Err(Unparseable("no `Id` or `CoworkerId` field".into())),
    };
    let person = match person {
        Value::Number(n) if n.as_i64().is_some_and(|n| n > 0) => n.to_string(),
        Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s.clone(),
        _ => return Err(Unparseable("`Id`/`CoworkerId` is not a positive integer".into())),
    };
    // Nexudus sends the same Coworker DTO for different access changes (a pass used, a pass
    // removed), so the body alone cannot name an event: the second of receipt is part of the id.
    // Repeats within that second are dropped by the queue; later ones are harmless, because the
    // reconciler makes only the calls that are still missing.
    let mut hasher = Sha256::new();
    hasher.update(action.as_bytes());
    hasher.update([0]);
    hasher.update(received_at.timestamp().to_be_bytes());
    hasher.update(body);
    let event_id = format!("nx-{}", hex::encode(&hasher.finalize()[..20]));
    let payload = (body.len() <= MAX_QUEUED_PAYLOAD).then_some(dto);
    Ok(WorkMessage::NexudusEvent {
        event_id,
        subject: SubjectKey::new(tenant, SourceKind::Nexudus, person),
        action: action.to_owned(),
        proof,
        payload,
        received_at,
    })
}

/// Why a verified Kinnovis body is not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KinnovisReject {
    /// Not the contract: kept in quarantine.
    Unparseable(String),
    /// Signed with this tenant's secret but for another location: refused, not kept.
    WrongLocation(String),
}

/// Parses a verified Kinnovis event into one message per email its booking names (the
/// customer and every shared access), each in that subject's FIFO group, so everyone's access
/// changes at once and one subject is never worked by two workers at a time.
pub fn kinnovis(
    tenant: &TenantId,
    location_id: &str,
    webhook_id: &str,
    body: &[u8],
    received_at: Instant,
) -> Result<Vec<WorkMessage>, KinnovisReject> {
    let event = crate::sources::kinnovis::dto::Event::parse(body).map_err(KinnovisReject::Unparseable)?;
    if event.location_id != location_id {
        return Err(KinnovisReject::WrongLocation(format!(
            "location_id {:?} is not the location of tenant {tenant}",
            event.location_id
        )));
    }
    let value = serde_json::to_value(&event).map_err(|e| KinnovisReject::Unparseable(e.to_string()))?;
    if value.to_string().len() > MAX_QUEUED_PAYLOAD {
        return Err(KinnovisReject::Unparseable("the event is too large to queue".into()));
    }
    Ok(event
        .booking
        .emails()
        .iter()
        .map(|email| {
            let subject = crate::sources::kinnovis::source::subject_of(tenant, email);
            let digest = Sha256::digest(format!("{webhook_id}|{subject}"));
            WorkMessage::KinnovisEvent {
                event_id: format!("kv-{}", hex::encode(&digest[..20])),
                subject,
                event: value.clone(),
                received_at,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    fn parse(body: &str) -> Result<WorkMessage, Unparseable> {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
        nexudus(&"t".into(), "AccessControlUpdate", body.as_bytes(), Proof::Signature, at)
    }

    #[test]
    fn the_subject_is_the_coworker() {
        let m = parse(r#"[{"Id":456,"FullName":"Anna"}]"#).expect("parses");
        assert_eq!(m.subject().to_string(), "t#nexudus#456");
        let m = parse(r#"[{"Id":7,"CoworkerId":456,"TimePassId":1001}]"#).expect("parses");
        assert_eq!(m.subject().person, "456");
        let m = parse(r#"{"Id":"456"}"#).expect("a bare object is fine");
        assert_eq!(m.subject().person, "456");
    }

    #[test]
    fn the_same_body_later_is_another_event() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
        let make =
            |t| nexudus(&"t".into(), "AccessControlUpdate", br#"[{"Id":1}]"#, Proof::Token, t).expect("ok");
        assert_eq!(make(at).to_outgoing().dedup_id, make(at).to_outgoing().dedup_id);
        assert_ne!(
            make(at).to_outgoing().dedup_id,
            make(at + chrono::Duration::seconds(1)).to_outgoing().dedup_id
        );
    }

    #[test]
    fn same_body_same_event_id_and_group() {
        let a = parse(r#"[{"Id":456}]"#).expect("parses").to_outgoing();
        let b = parse(r#"[{"Id":456}]"#).expect("parses").to_outgoing();
        let c = parse(r#"[{"Id":456,"UpdatedOn":"x"}]"#).expect("parses").to_outgoing();
        assert_eq!(a.dedup_id, b.dedup_id);
        assert_ne!(a.dedup_id, c.dedup_id);
        assert_eq!(a.group, "t#nexudus#456");
    }

    #[test]
    fn unusable_bodies_say_why() {
        for (body, why) in [
            ("[{", "malformed JSON"),
            ("[]", "empty array"),
            ("[1]", "not a JSON object"),
            (r#"[{"Name":"x"}]"#, "no `Id`"),
            (r#"[{"Id":-1}]"#, "positive integer"),
            (r#"[{"Id":"1; drop"}]"#, "positive integer"),
        ] {
            let err = parse(body).expect_err(body).0;
            assert!(err.contains(why), "{body}: {err}");
        }
    }

    const KINNOVIS_EVENT: &str = r#"{"type":"booking.created","occurred_at":"2026-11-23T09:00:00Z",
      "location_id":"loc-1","booking":{"id":"B-1","version":1,"status":"reserved",
      "unit":{"id":"U-1","name":"A-017"},"customer":{"id":"C-1","email":"Anna@example.com","name":"Anna"},
      "move_in":"2026-12-01","move_out":null,"access":{"state":"granted"},
      "shared_access_emails":["ben@example.com"]}}"#;

    #[test]
    fn a_kinnovis_event_becomes_one_message_per_email() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
        let msgs = kinnovis(&"t".into(), "loc-1", "msg_1", KINNOVIS_EVENT.as_bytes(), at).expect("parses");
        assert_eq!(msgs.len(), 2);
        let out: Vec<_> = msgs.iter().map(WorkMessage::to_outgoing).collect();
        assert!(out[0].group.starts_with("t#kinnovis#em-") && out[0].group != out[1].group);
        assert_ne!(out[0].dedup_id, out[1].dedup_id);
        assert!(!out[0].group.contains("anna"), "no email in clear in queue metadata");
        // The same webhook-id gives the same ids; another one does not.
        let again = kinnovis(&"t".into(), "loc-1", "msg_1", KINNOVIS_EVENT.as_bytes(), at).expect("parses");
        assert_eq!(again[0].to_outgoing().dedup_id, out[0].dedup_id);
        let other = kinnovis(&"t".into(), "loc-1", "msg_2", KINNOVIS_EVENT.as_bytes(), at).expect("parses");
        assert_ne!(other[0].to_outgoing().dedup_id, out[0].dedup_id);
    }

    #[test]
    fn a_kinnovis_event_for_another_location_or_off_contract_is_refused() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
        assert!(matches!(
            kinnovis(&"t".into(), "loc-2", "m", KINNOVIS_EVENT.as_bytes(), at),
            Err(KinnovisReject::WrongLocation(_))
        ));
        assert!(matches!(
            kinnovis(&"t".into(), "loc-1", "m", b"{}", at),
            Err(KinnovisReject::Unparseable(_))
        ));
    }
}
