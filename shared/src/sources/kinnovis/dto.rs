//! The Kinnovis contract's entities (§6): events, bookings, units. Unknown fields are ignored
//! so the contract can grow; the fields Portier acts on are required and typed.

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::model::{Email, Instant};

/// The event types of the contract.
pub const EVENT_TYPES: &[&str] =
    &["booking.created", "booking.updated", "booking.cancelled", "access.revoked", "access.restored"];

/// One webhook body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub event_type: String,
    pub occurred_at: Instant,
    pub location_id: String,
    pub booking: Booking,
}

impl Event {
    /// Parses a verified body; the error says which field is wrong.
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let event: Event = serde_json::from_slice(body).map_err(|e| format!("not a Kinnovis event: {e}"))?;
        if !EVENT_TYPES.contains(&event.event_type.as_str()) {
            return Err(format!("unknown event type {:?}", event.event_type));
        }
        event.booking.check()?;
        Ok(event)
    }
}

/// `reserved` (before move-in) · `active` · `cancelled` · `ended`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BookingStatus {
    Reserved,
    Active,
    Cancelled,
    Ended,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Unit {
    pub id: String,
    /// The name operators see and map ("A-017").
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Customer {
    pub id: String,
    pub email: String,
    #[serde(default)]
    pub name: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccessState {
    Granted,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Access {
    pub state: AccessState,
    /// `overdue` | `manual` when revoked.
    #[serde(default)]
    pub reason: Option<String>,
}

/// A booking as webhooks and the export carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Booking {
    pub id: String,
    /// Grows with every change; an older version never overwrites a newer one.
    pub version: u64,
    pub status: BookingStatus,
    pub unit: Unit,
    pub customer: Customer,
    /// Location-local date; access from 00:00 that day.
    pub move_in: NaiveDate,
    /// Location-local date; access to the end of that day, open-ended when null.
    #[serde(default)]
    pub move_out: Option<NaiveDate>,
    pub access: Access,
    #[serde(default)]
    pub shared_access_emails: Vec<String>,
}

impl Booking {
    fn check(&self) -> Result<(), String> {
        if self.id.trim().is_empty() {
            return Err("booking.id is empty".into());
        }
        if self.unit.name.trim().is_empty() {
            return Err(format!("booking {}: unit.name is empty", self.id));
        }
        Email::parse(&self.customer.email)
            .map_err(|e| format!("booking {}: customer.email: {e}", self.id))?;
        Ok(())
    }

    /// The customer's email and every valid shared-access email, normalised, without repeats.
    /// An unusable shared-access address is skipped so it cannot block the customer's access.
    pub fn emails(&self) -> Vec<Email> {
        let mut out: Vec<Email> = Vec::new();
        let all = std::iter::once(&self.customer.email).chain(self.shared_access_emails.iter());
        for e in all.filter_map(|raw| Email::parse(raw).ok()) {
            if !out.contains(&e) {
                out.push(e);
            }
        }
        out
    }
}

/// `GET …/units`.
#[derive(Debug, Clone, Deserialize)]
pub struct UnitList {
    pub items: Vec<Unit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SAMPLE: &str = r#"{
      "type": "booking.updated",
      "occurred_at": "2026-11-23T09:00:00Z",
      "location_id": "loc-vienna-1",
      "booking": {
        "id": "B-1042", "version": 7, "status": "active",
        "unit": { "id": "U-17", "name": "A-017" },
        "customer": { "id": "C-9", "email": " Anna@Example.com ", "name": "Anna Berger" },
        "move_in": "2026-12-01", "move_out": null,
        "access": { "state": "granted", "reason": null },
        "shared_access_emails": ["ben@example.com", "anna@example.com", "not an email"],
        "something_new": true
      }
    }"#;

    #[test]
    fn the_contract_example_parses() {
        let e = Event::parse(SAMPLE.as_bytes()).expect("parses");
        assert_eq!(e.booking.version, 7);
        assert_eq!(e.booking.move_in, NaiveDate::from_ymd_opt(2026, 12, 1).expect("date"));
        assert_eq!(
            e.booking.emails().iter().map(Email::as_str).collect::<Vec<_>>(),
            ["anna@example.com", "ben@example.com"]
        );
    }

    #[test]
    fn errors_name_the_field() {
        for (from, to, why) in [
            ("booking.updated", "booking.exploded", "unknown event type"),
            ("\"version\": 7", "\"version\": \"seven\"", "expected u64"),
            (" Anna@Example.com ", "anna", "customer.email"),
            ("\"2026-12-01\"", "\"01.12.2026\"", "line 9"),
            ("\"name\": \"A-017\"", "\"name\": \"\"", "unit.name"),
        ] {
            let err = Event::parse(SAMPLE.replace(from, to).as_bytes()).expect_err(why);
            assert!(err.contains(why), "{why}: {err}");
        }
    }
}
