//! What a Nexudus webhook names: one URL per action, an entity DTO in a JSON array, signed
//! with an HMAC of the body and/or a `?token=` in the URL.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::config::SourceConfig;
use crate::model::{Instant, SourceKind, SubjectKey, TenantId};
use crate::queue::message::Event;
use crate::sources::{HookRequest, MAX_QUEUED_PAYLOAD, Proof, Refused, Signing, WebhookSource};

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

/// Why a verified body could not become a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unparseable(pub String);

/// Parses a verified Nexudus delivery (a JSON array holding one entity DTO) into one message
/// per subject it concerns (a team: each member).
pub fn parse(
    tenant: &TenantId,
    action: &str,
    body: &[u8],
    proof: Proof,
    received_at: Instant,
) -> Result<Vec<Event>, Unparseable> {
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
            Event {
                event_id: format!("nx-{}", uuid::Uuid::new_v4().simple()),
                subject: SubjectKey::new(tenant, SourceKind::Nexudus, person),
                action: action.to_owned(),
                proof,
                payload: payload.clone(),
                received_at,
                urgent: takes_access_away(action),
                hint: Some(hex::encode(&hasher.finalize()[..20])),
            }
        })
        .collect())
}

/// A delete or cancellation may take access away (the source still confirms it first).
fn takes_access_away(action: &str) -> bool {
    ["Delete", "Deleted", "Cancel"].iter().any(|end| action.ends_with(end))
}

/// Nexudus webhooks: `POST /hooks/nexudus/{tenant}/{action}`.
pub struct NexudusHooks;

impl WebhookSource for NexudusHooks {
    fn kind(&self) -> SourceKind {
        SourceKind::Nexudus
    }

    fn route(&self) -> &'static str {
        "/hooks/nexudus/{tenant}/{action}"
    }

    fn signing(&self) -> Signing {
        Signing::BodyHmac { header: "x-nexudus-hook-signature" }
    }

    fn accepts(&self, _source: &SourceConfig, action: &str) -> Result<(), &'static str> {
        if NEXUDUS_ACTIONS.contains(&action) { Ok(()) } else { Err("unknown or unhandled action") }
    }

    fn events(
        &self,
        tenant: &TenantId,
        _source: &SourceConfig,
        req: &HookRequest<'_>,
        proof: Proof,
        now: Instant,
    ) -> Result<Vec<Event>, Refused> {
        parse(tenant, req.action, req.body, proof, now).map_err(|Unparseable(why)| Refused::Unparseable(why))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::queue::{Outgoing, WorkMessage};

    fn out(e: &Event) -> Outgoing {
        WorkMessage::Event(e.clone()).to_outgoing()
    }

    fn parse_one(body: &str) -> Result<Event, Unparseable> {
        parse_as("AccessControlUpdate", body).map(|mut m| m.swap_remove(0))
    }

    fn parse_as(action: &str, body: &str) -> Result<Vec<Event>, Unparseable> {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
        parse(&"t".into(), action, body.as_bytes(), Proof::Signature, at)
    }

    #[test]
    fn a_team_is_one_message_and_a_visitor_is_a_subject_of_its_own() {
        let team = r#"[{"Id":9,"Name":"Acme","PayingMemberId":456,"TeamMembers":[456,457,"458"]}]"#;
        let msgs = parse_as("TeamUpdated", team).expect("parses");
        let people: Vec<&str> = msgs.iter().map(|m| m.subject.person.as_str()).collect();
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
        assert_eq!(msgs[0].subject.person, "v77", "the visitor, not the host");
        // A booking or contract concerns its customer.
        let booking = r#"[{"Id":3,"CoworkerId":456,"ResourceId":12}]"#;
        assert_eq!(parse_as("BookingCreate", booking).expect("parses")[0].subject.person, "456");
    }

    #[test]
    fn the_subject_is_the_coworker() {
        let m = parse_one(r#"[{"Id":456,"FullName":"Anna"}]"#).expect("parses");
        assert_eq!(m.subject.to_string(), "t#nexudus#456");
        let m = parse_one(r#"[{"Id":7,"CoworkerId":456,"TimePassId":1001}]"#).expect("parses");
        assert_eq!(m.subject.person, "456");
        let m = parse_one(r#"{"Id":"456"}"#).expect("a bare object is fine");
        assert_eq!(m.subject.person, "456");
    }

    fn hint_of(m: &Event) -> Option<String> {
        m.hint.clone()
    }

    #[test]
    fn every_delivery_is_its_own_event_and_the_same_body_is_the_same_hint() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
        let make = |action, body: &str| {
            parse(&"t".into(), action, body.as_bytes(), Proof::Token, at).expect("ok").swap_remove(0)
        };
        let (a, b) =
            (make("AccessControlUpdate", r#"[{"Id":1}]"#), make("AccessControlUpdate", r#"[{"Id":1}]"#));
        // Within the same second, the same body: two events (neither may drop the other) …
        assert_ne!(out(&a).dedup_id, out(&b).dedup_id);
        // … of one hint, which the worker merges only into a reconcile that started later.
        assert_eq!(hint_of(&a), hint_of(&b));
        assert_ne!(hint_of(&a), hint_of(&make("AccessControlUpdate", r#"[{"Id":1,"UpdatedOn":"x"}]"#)));
        assert_eq!(hint_of(&a), hint_of(&make("CoworkerDelete", r#"[{"Id":1}]"#)), "whatever the action");
        assert_eq!(out(&a).group, "t#nexudus#1");
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
            let err = parse_one(body).expect_err(body).0;
            assert!(err.contains(why), "{body}: {err}");
        }
    }
}
