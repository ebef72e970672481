//! From a verified webhook to a queue message: which subject it concerns, and its event id.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{Instant, SourceKind, SubjectKey, TenantId};
use crate::queue::Outgoing;
pub use crate::sources::Proof;

/// The Nexudus webhook actions this version acts on (each has its own URL).
pub const NEXUDUS_ACTIONS: &[&str] = &[
    "AccessControlUpdate",
    "CoworkerCreate",
    "CoworkerUpdate",
    "CoworkerDelete",
    "BookingCreate",
    "BookingUpdate",
    "BookingDelete",
    "CoworkerContractCreate",
    "CoworkerContractActivate",
    "CoworkerContractUpdate",
    "CoworkerContractCancel",
    "CoworkerContractRenew",
    "CoworkerContractUpgradeDowngrade",
    "CoworkerContractDelete",
    "TeamCreated",
    "TeamUpdated",
    "TeamDeleted",
    "VisitorRegistered",
    "VisitorCheckedin",
    "VisitorDeleted",
];

/// Whom a Nexudus action's DTO concerns: a team concerns each of its members, a visitor is a
/// subject of their own, every other DTO names its customer in `CoworkerId` or is the customer.
fn nexudus_people(action: &str, fields: &serde_json::Map<String, Value>) -> Result<Vec<String>, Unparseable> {
    let id = |v: &Value, field: &str| match v {
        Value::Number(n) if n.as_i64().is_some_and(|n| n > 0) => Ok(n.to_string()),
        Value::String(s) if !s.is_empty() && s.len() <= 18 && s.bytes().all(|b| b.is_ascii_digit()) => {
            Ok(s.clone())
        }
        _ => Err(Unparseable(format!("`{field}` is not a positive integer"))),
    };
    if action.starts_with("Team") {
        // One message for the team, whatever the body lists: the worker reads the team by id
        // from Nexudus and brings every member (current and former) in line. A body listing
        // thousands of ids therefore queues one message, and names nobody who gets anything.
        let team = fields.get("Id").ok_or_else(|| Unparseable("a team without `Id`".into()))?;
        id(team, "Id")?;
        let first_member = match fields.get("TeamMembers") {
            Some(Value::Array(members)) => members.first(),
            Some(m) if !m.is_null() => return Err(Unparseable("`TeamMembers` is not an array".into())),
            _ => None,
        };
        let person = match fields.get("PayingMemberId").filter(|p| !p.is_null()) {
            Some(p) => id(p, "PayingMemberId")?,
            None => id(
                first_member
                    .ok_or_else(|| Unparseable("a team without `PayingMemberId` or `TeamMembers`".into()))?,
                "TeamMembers",
            )?,
        };
        return Ok(vec![person]);
    }
    if action.starts_with("Visitor") {
        let v = fields.get("Id").ok_or_else(|| Unparseable("no `Id` field".into()))?;
        return Ok(vec![format!("v{}", id(v, "Id")?)]);
    }
    // Pass, booking and contract DTOs name their customer in `CoworkerId`; coworker DTOs are the customer.
    let person = match (fields.get("CoworkerId"), fields.get("Id")) {
        (Some(id), _) if !id.is_null() => id,
        (_, Some(id)) => id,
        _ => return Err(Unparseable("no `Id` or `CoworkerId` field".into())),
    };
    id(person, "Id`/`CoworkerId").map(|p| vec![p])
}

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
        /// What the hint says, whatever the second it came in and the action: the same body for
        /// the same person. A repeat is merged into a queued message of the same hint whose
        /// reconcile has not started, never into one that already ran.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hint: Option<String>,
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
    Reconcile {
        subject: SubjectKey,
        reason: String,
        at: Instant,
        /// It may take access away (a window ends, a resync found access to revoke).
        #[serde(default)]
        urgent: bool,
    },
}

impl WorkMessage {
    pub fn subject(&self) -> &SubjectKey {
        match self {
            WorkMessage::NexudusEvent { subject, .. }
            | WorkMessage::KinnovisEvent { subject, .. }
            | WorkMessage::Reconcile { subject, .. } => subject,
        }
    }

    /// True when the work may take access away, so a tenant's backlog of grants never delays
    /// it: a delete or cancellation hint (still confirmed by the source before anything is
    /// revoked), a revoking Kinnovis event, or an urgent reconcile.
    pub fn urgent(&self) -> bool {
        match self {
            WorkMessage::NexudusEvent { action, .. } => {
                ["Delete", "Deleted", "Cancel"].iter().any(|end| action.ends_with(end))
            }
            WorkMessage::KinnovisEvent { event, .. } => matches!(
                event.get("type").and_then(Value::as_str),
                Some("booking.cancelled" | "access.revoked")
            ),
            WorkMessage::Reconcile { urgent, .. } => *urgent,
        }
    }

    /// FIFO group = the subject; dedup id = the event id (a reconcile: always a new one).
    pub fn to_outgoing(&self) -> Outgoing {
        let dedup_id = match self {
            WorkMessage::NexudusEvent { event_id, .. } | WorkMessage::KinnovisEvent { event_id, .. } => {
                event_id.clone()
            }
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

/// Why a verified body could not become a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparseable(pub String);

/// Parses a verified Nexudus delivery (a JSON array holding one entity DTO) into one message
/// per subject it concerns (a team: each member).
pub fn nexudus(
    tenant: &TenantId,
    action: &str,
    body: &[u8],
    proof: Proof,
    received_at: Instant,
) -> Result<Vec<WorkMessage>, Unparseable> {
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
    let people = nexudus_people(action, fields)?;
    // Nexudus sends the same Coworker DTO for different access changes (a pass used, a pass
    // removed), so the body cannot name an event: every delivery is an event of its own, and
    // the ingress merges a repeat into a queued one of the same hint that has not started.
    let payload = (body.len() <= MAX_QUEUED_PAYLOAD).then_some(dto);
    Ok(people
        .into_iter()
        .map(|person| {
            // Whatever the action: every action's worker reads the same person from the source,
            // so the same body replayed to sixteen action URLs is one hint.
            let mut hasher = Sha256::new();
            for part in [person.as_bytes(), body] {
                hasher.update((part.len() as u64).to_be_bytes());
                hasher.update(part);
            }
            WorkMessage::NexudusEvent {
                event_id: format!("nx-{}", uuid::Uuid::new_v4().simple()),
                subject: SubjectKey::new(tenant, SourceKind::Nexudus, person),
                action: action.to_owned(),
                proof,
                payload: payload.clone(),
                received_at,
                hint: Some(hex::encode(&hasher.finalize()[..20])),
            }
        })
        .collect())
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
        parse_as("AccessControlUpdate", body).map(|mut m| m.swap_remove(0))
    }

    fn parse_as(action: &str, body: &str) -> Result<Vec<WorkMessage>, Unparseable> {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
        nexudus(&"t".into(), action, body.as_bytes(), Proof::Signature, at)
    }

    #[test]
    fn a_team_is_one_message_and_a_visitor_is_a_subject_of_its_own() {
        let team = r#"[{"Id":9,"Name":"Acme","PayingMemberId":456,"TeamMembers":[456,457,"458"]}]"#;
        let msgs = parse_as("TeamUpdated", team).expect("parses");
        let people: Vec<&str> = msgs.iter().map(|m| m.subject().person.as_str()).collect();
        assert_eq!(people, ["456"], "the worker reads the members from Nexudus");
        let many: Vec<i64> = (1..=10_000).collect();
        let flood = serde_json::json!([{ "Id": 9, "TeamMembers": many }]).to_string();
        assert_eq!(parse_as("TeamUpdated", &flood).expect("parses").len(), 1, "no fan-out from a body");
        assert!(parse_as("TeamDeleted", r#"[{"Id":9}]"#).is_err_and(|e| e.0.contains("PayingMemberId")));
        assert!(parse_as("TeamCreated", r#"[{"Id":9,"TeamMembers":[0]}]"#).is_err());

        let visitor =
            r#"[{"Id":77,"CoworkerId":456,"FullName":"Vera","ExpectedArrival":"2026-12-01T10:00:00Z"}]"#;
        let msgs = parse_as("VisitorRegistered", visitor).expect("parses");
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].subject().person, "v77", "the visitor, not the host");
        // A booking or contract concerns its customer.
        let booking = r#"[{"Id":3,"CoworkerId":456,"ResourceId":12}]"#;
        assert_eq!(parse_as("BookingCreate", booking).expect("parses")[0].subject().person, "456");
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

    fn hint_of(m: &WorkMessage) -> Option<String> {
        match m {
            WorkMessage::NexudusEvent { hint, .. } => hint.clone(),
            _ => None,
        }
    }

    #[test]
    fn every_delivery_is_its_own_event_and_the_same_body_is_the_same_hint() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
        let make = |action, body: &str| {
            nexudus(&"t".into(), action, body.as_bytes(), Proof::Token, at).expect("ok").swap_remove(0)
        };
        let (a, b) =
            (make("AccessControlUpdate", r#"[{"Id":1}]"#), make("AccessControlUpdate", r#"[{"Id":1}]"#));
        // Within the same second, the same body: two events (neither may drop the other) …
        assert_ne!(a.to_outgoing().dedup_id, b.to_outgoing().dedup_id);
        // … of one hint, which the worker merges only into a reconcile that started later.
        assert_eq!(hint_of(&a), hint_of(&b));
        assert_ne!(hint_of(&a), hint_of(&make("AccessControlUpdate", r#"[{"Id":1,"UpdatedOn":"x"}]"#)));
        assert_eq!(hint_of(&a), hint_of(&make("CoworkerDelete", r#"[{"Id":1}]"#)), "whatever the action");
        assert_eq!(a.to_outgoing().group, "t#nexudus#1");
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
            (r#"[{"Id":"99999999999999999999999"}]"#, "positive integer"),
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
