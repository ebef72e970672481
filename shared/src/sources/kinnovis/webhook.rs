//! What a Kinnovis webhook names: one event (Portier's contract, `reference/source-systems.md`
//! §6) for its booking's customer and every shared-access email, signed with Standard Webhooks.

use sha2::{Digest, Sha256};

use super::dto;
use super::source::subject_of;
use crate::config::SourceConfig;
use crate::model::{Instant, SourceKind, TenantId};
use crate::queue::message::Event;
use crate::sources::{HookRequest, MAX_QUEUED_PAYLOAD, Proof, Refused, Signing, WebhookSource};

/// Parses a verified Kinnovis event into one message per email its booking names (the
/// customer and every shared access), each in that subject's FIFO group, so everyone's access
/// changes at once and one subject is never worked by two workers at a time.
pub fn parse(
    tenant: &TenantId,
    location_id: &str,
    webhook_id: &str,
    body: &[u8],
    received_at: Instant,
) -> Result<Vec<Event>, Refused> {
    let event = dto::Event::parse(body).map_err(Refused::Unparseable)?;
    if event.location_id != location_id {
        return Err(Refused::NotForTenant(format!(
            "location_id {:?} is not the location of tenant {tenant}",
            event.location_id
        )));
    }
    let value = serde_json::to_value(&event).map_err(|e| Refused::Unparseable(e.to_string()))?;
    if value.to_string().len() > MAX_QUEUED_PAYLOAD {
        return Err(Refused::Unparseable("the event is too large to queue".into()));
    }
    let urgent = matches!(event.event_type.as_str(), "booking.cancelled" | "access.revoked");
    Ok(event
        .booking
        .emails()
        .iter()
        .map(|email| {
            let subject = subject_of(tenant, email);
            let digest = Sha256::digest(format!("{webhook_id}|{subject}"));
            Event {
                event_id: format!("kv-{}", hex::encode(&digest[..20])),
                subject,
                action: event.event_type.clone(),
                // Signed with Standard Webhooks: the event is its own proof.
                proof: Proof::Signature,
                payload: Some(value.clone()),
                received_at,
                urgent,
                hint: None,
            }
        })
        .collect())
}

/// Kinnovis webhooks: `POST /hooks/kinnovis/{tenant}`.
pub struct KinnovisHooks;

impl WebhookSource for KinnovisHooks {
    fn kind(&self) -> SourceKind {
        SourceKind::Kinnovis
    }

    fn route(&self) -> &'static str {
        "/hooks/kinnovis/{tenant}"
    }

    fn signing(&self) -> Signing {
        Signing::StandardWebhooks
    }

    fn accepts(&self, source: &SourceConfig, _action: &str) -> Result<(), &'static str> {
        match source {
            SourceConfig::Kinnovis { .. } => Ok(()),
            _ => Err("this tenant does not take Kinnovis webhooks"),
        }
    }

    fn events(
        &self,
        tenant: &TenantId,
        source: &SourceConfig,
        req: &HookRequest<'_>,
        _proof: Proof,
        now: Instant,
    ) -> Result<Vec<Event>, Refused> {
        let SourceConfig::Kinnovis { location_id, .. } = source else {
            return Err(Refused::NotForTenant("this tenant does not take Kinnovis webhooks".into()));
        };
        // Verified, so the id is well-formed.
        let webhook_id = self.delivery_id(req).unwrap_or_default();
        parse(tenant, location_id, webhook_id, req.body, now)
    }

    fn delivery_id<'a>(&self, req: &HookRequest<'a>) -> Option<&'a str> {
        req.header("webhook-id")
    }

    /// The event type, when the body names one in a plain token (never other body content).
    fn log_action(&self, req: &HookRequest<'_>) -> String {
        serde_json::from_slice::<serde_json::Value>(req.body)
            .ok()
            .and_then(|v| v["type"].as_str().map(str::to_owned))
            .filter(|t| t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)))
            .unwrap_or_else(|| "-".into())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::queue::WorkMessage;

    const KINNOVIS_EVENT: &str = r#"{"type":"booking.created","occurred_at":"2026-11-23T09:00:00Z",
      "location_id":"loc-1","booking":{"id":"B-1","version":1,"status":"reserved",
      "unit":{"id":"U-1","name":"A-017"},"customer":{"id":"C-1","email":"Anna@example.com","name":"Anna"},
      "move_in":"2026-12-01","move_out":null,"access":{"state":"granted"},
      "shared_access_emails":["ben@example.com"]}}"#;

    #[test]
    fn a_kinnovis_event_becomes_one_message_per_email() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
        let msgs = parse(&"t".into(), "loc-1", "msg_1", KINNOVIS_EVENT.as_bytes(), at).expect("parses");
        assert_eq!(msgs.len(), 2);
        let out: Vec<_> = msgs.iter().map(|e| WorkMessage::Event(e.clone()).to_outgoing()).collect();
        assert!(out[0].group.starts_with("t#kinnovis#em-") && out[0].group != out[1].group);
        assert_ne!(out[0].dedup_id, out[1].dedup_id);
        assert!(!out[0].group.contains("anna"), "no email in clear in queue metadata");
        // The same webhook-id gives the same ids; another one does not.
        let again = parse(&"t".into(), "loc-1", "msg_1", KINNOVIS_EVENT.as_bytes(), at).expect("parses");
        assert_eq!(WorkMessage::Event(again[0].clone()).to_outgoing().dedup_id, out[0].dedup_id);
        let other = parse(&"t".into(), "loc-1", "msg_2", KINNOVIS_EVENT.as_bytes(), at).expect("parses");
        assert_ne!(WorkMessage::Event(other[0].clone()).to_outgoing().dedup_id, out[0].dedup_id);
    }

    #[test]
    fn a_kinnovis_event_for_another_location_or_off_contract_is_refused() {
        let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
        assert!(matches!(
            parse(&"t".into(), "loc-2", "m", KINNOVIS_EVENT.as_bytes(), at),
            Err(Refused::NotForTenant(_))
        ));
        assert!(matches!(parse(&"t".into(), "loc-1", "m", b"{}", at), Err(Refused::Unparseable(_))));
    }
}
