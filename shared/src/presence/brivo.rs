//! Brivo door events, pushed by an event subscription (`POST /event-subscriptions`: "When the
//! criteria defined for a subscription are met, a notification is sent to the url provided";
//! ThatGuyinIT/brivo-velocity `references/tags/event_subscription.yaml`). The delivery's
//! body is read as an access event of `GET /events/access` (`events.yaml`): its form in a
//! delivery is not documented (inferred). Brivo documents no signature for deliveries, so the
//! subscription's URL carries a per-tenant token (`?token=`).

use serde::Deserialize;

use super::DoorEvent;
use crate::model::ProviderKind;

/// An access event as `GET /events/access` lists it (only the fields presence needs).
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessEvent {
    pub uuid: Option<String>,
    #[serde(default)]
    pub security_action: Option<SecurityAction>,
    #[serde(default)]
    pub actor: Option<Named>,
    #[serde(default)]
    pub event_object: Option<Named>,
    pub occurred: Option<String>,
    #[serde(default)]
    pub event_data: Option<EventData>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecurityAction {
    #[serde(default)]
    pub exception: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Named {
    pub id: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    #[serde(default)]
    pub action_allowed: Option<bool>,
}

/// What a delivery said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// A door opened for a user.
    Opened(DoorEvent),
    /// A well-formed event that is no door opening by a user (an exception, a refusal, an
    /// administrator's pulse, a camera event): nothing to do.
    Other,
}

fn id_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        _ => None,
    }
}

/// Parses one delivery: an access event, or a list of them (`{data: […]}` as the listing
/// pages them, or a bare array). Errors are for bodies that are no access event at all.
pub fn parse(body: &[u8]) -> Result<Vec<Parsed>, String> {
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let list = match value {
        serde_json::Value::Array(a) => a,
        serde_json::Value::Object(mut o) if o.get("data").is_some_and(|d| d.is_array()) => {
            match o.remove("data") {
                Some(serde_json::Value::Array(a)) => a,
                _ => Vec::new(),
            }
        }
        v @ serde_json::Value::Object(_) => vec![v],
        _ => return Err("not an access event".into()),
    };
    list.into_iter().map(one).collect()
}

fn one(v: serde_json::Value) -> Result<Parsed, String> {
    let e: AccessEvent = serde_json::from_value(v).map_err(|e| format!("not an access event: {e}"))?;
    let uuid = e.uuid.filter(|u| !u.trim().is_empty()).ok_or("the event has no uuid")?;
    let occurred = e.occurred.ok_or("the event has no occurred time")?;
    let at = crate::sources::nexudus::dto::parse_time(&occurred).ok_or("occurred is not a time")?;
    let exception = e.security_action.is_some_and(|s| s.exception);
    let allowed = e.event_data.and_then(|d| d.action_allowed).unwrap_or(true);
    let user = e.actor.and_then(|a| a.id).as_ref().and_then(id_text);
    let door = e.event_object.and_then(|o| o.id).as_ref().and_then(id_text);
    match (user, door) {
        (Some(user), Some(door)) if allowed && !exception => {
            Ok(Parsed::Opened(DoorEvent { provider: ProviderKind::Brivo, event_id: uuid, door, user, at }))
        }
        _ => Ok(Parsed::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_is_an_administrator_pulse_not_an_opening() {
        // events.yaml's Success-Response: "Administrator Pulse Output", actionAllowed false.
        let body = br#"{"data":[{"uuid":"049e1ca7-592a-4249-8f8c-ebcdc8e28594","securityAction":{"securityActionId":5064,"action":"Administrator Pulse Output","exception":false},"actor":{"id":912347,"name":"QA Admin"},"eventObject":{"id":408023598,"name":"Door 1","deviceType":{"id":1,"name":"Door"}},"site":{"id":7833522,"siteName":"Home base"},"occurred":"2024-04-17T08:52:39.724Z","processed":"2024-04-17T08:52:39.726Z","eventData":{"actorName":"QA Admin","objectName":"Door 1","actionAllowed":false,"objectTypeId":2,"deviceTypeId":1}}],"pageSize":20}"#;
        assert_eq!(parse(body).expect("parses"), vec![Parsed::Other]);
    }

    #[test]
    fn a_user_access_names_door_user_and_time() {
        let body = br#"{"uuid":"u-1","securityAction":{"action":"Access by User","exception":false},"actor":{"id":442211},"eventObject":{"id":408023598},"occurred":"2026-11-23T09:00:05Z","eventData":{"actionAllowed":true}}"#;
        match parse(body).expect("parses").as_slice() {
            [Parsed::Opened(ev)] => {
                assert_eq!(
                    (ev.door.as_str(), ev.user.as_str(), ev.event_id.as_str()),
                    ("408023598", "442211", "u-1")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(parse(b"[1]").is_err() && parse(b"{").is_err() && parse(br#"{"uuid":"x"}"#).is_err());
    }
}
