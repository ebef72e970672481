//! Nexudus entities as they arrive in webhooks and REST responses (PascalCase, lenient).
//!
//! Unknown fields are ignored; dates are accepted with or without an offset (Nexudus admin
//! DTOs send UTC, sometimes without the `Z`).

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize};

/// A Nexudus customer (`/api/spaces/coworkers`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Coworker {
    pub id: i64,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_on: Option<DateTime<Utc>>,
    /// The teams the customer belongs to; only GET-by-id and webhooks carry it (`None` when
    /// absent, so a list answer is never read as "in no team").
    #[serde(default, deserialize_with = "lenient_ids", skip_serializing_if = "Option::is_none")]
    pub teams: Option<Vec<i64>>,
}

/// A check-in (`/api/spaces/checkins`, developers.nexudus.com/rest-api/spaces/get-checkins-by-id):
/// when a customer was at the location; `ToTime` is null while it is open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Checkin {
    pub id: i64,
    #[serde(default)]
    pub coworker_id: Option<i64>,
    #[serde(default)]
    pub business_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub from_time: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub to_time: Option<DateTime<Utc>>,
    /// 2 = DoorAccess (the documented `Source` enum).
    #[serde(default)]
    pub source: Option<i64>,
}

/// The answer of a Nexudus write (`POST`/`PUT`): `{Status, Message, Value, WasSuccessful, Errors}`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct WriteResult {
    #[serde(default)]
    pub was_successful: bool,
    #[serde(default)]
    pub message: Option<String>,
    #[serde(default)]
    pub value: Option<serde_json::Value>,
}

impl WriteResult {
    /// The created record's id, when `Value` carries it (as a number or as `{ "Id": … }`;
    /// which one is not documented).
    pub fn id(&self) -> Option<i64> {
        match self.value.as_ref()? {
            serde_json::Value::Number(n) => n.as_i64(),
            serde_json::Value::Object(o) => o.get("Id").and_then(serde_json::Value::as_i64),
            _ => None,
        }
    }
}

/// A booking of a resource (`/api/spaces/bookings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Booking {
    pub id: i64,
    pub coworker_id: i64,
    pub resource_id: i64,
    #[serde(default)]
    pub resource_name: Option<String>,
    #[serde(deserialize_with = "required_time")]
    pub from_time: DateTime<Utc>,
    #[serde(deserialize_with = "required_time")]
    pub to_time: DateTime<Utc>,
    /// Awaiting approval: no access until confirmed.
    #[serde(default)]
    pub tentative: bool,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_on: Option<DateTime<Utc>>,
}

/// A customer's contract (`/api/billing/coworkercontracts`). `Desks` (FloorPlanDesk ids) comes
/// only with GET-by-id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CoworkerContract {
    pub id: i64,
    pub coworker_id: i64,
    #[serde(default)]
    pub tariff_name: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub start_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub cancellation_date: Option<DateTime<Utc>>,
    #[serde(default = "yes")]
    pub active: bool,
    #[serde(default)]
    pub cancelled: bool,
    #[serde(default, deserialize_with = "lenient_ids", skip_serializing_if = "Option::is_none")]
    pub desks: Option<Vec<i64>>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_on: Option<DateTime<Utc>>,
}

/// A pass product (`/api/billing/timepasses`); customers hold `CoworkerTimePass`es of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimePassProduct {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
}

/// A bookable resource (`/api/spaces/resources`): what `resource` items name. `Archived` ones
/// take no new bookings and are left out of the console's choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub archived: bool,
}

/// A desk or office on a floor plan (`/api/sys/floorplandesks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct FloorPlanDesk {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    /// 1 Office, 2 DedicatedDesk, 3 HotDesk, 4 Other, 5 Room.
    #[serde(default)]
    pub item_type: Option<i64>,
}

impl FloorPlanDesk {
    pub const OFFICE: i64 = 1;

    pub fn is_office(&self) -> bool {
        self.item_type == Some(Self::OFFICE)
    }
}

/// A team (`/api/spaces/teams`). `TeamMembers` comes only with GET-by-id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Team {
    pub id: i64,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "lenient_ids", skip_serializing_if = "Option::is_none")]
    pub team_members: Option<Vec<i64>>,
    #[serde(default)]
    pub paying_member_id: Option<i64>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_on: Option<DateTime<Utc>>,
}

/// A registered visitor (`/api/spaces/visitors`); `CoworkerId` is the host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Visitor {
    pub id: i64,
    #[serde(default)]
    pub full_name: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
    #[serde(default)]
    pub coworker_id: Option<i64>,
    /// Business-local unless it carries a zone (see [`VisitTime`]).
    #[serde(default, deserialize_with = "lenient_visit_time")]
    pub expected_arrival: Option<VisitTime>,
    /// Checked in at reception (`VisitorCheckedin`), at `ArrivalDate`.
    #[serde(default)]
    pub arrived: Option<bool>,
    /// Business-local unless it carries a zone (see [`VisitTime`]).
    #[serde(default, deserialize_with = "lenient_visit_time")]
    pub arrival_date: Option<VisitTime>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub departure_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_on: Option<DateTime<Utc>>,
}

/// A visitor's `ExpectedArrival` or `ArrivalDate`. The admin Visitor DTO has no UTC twin for
/// them, and the portal API documents both as "business-local time" (next to a separate
/// `UtcExpectedArrival`; learn.nexudus.com list-visitors). So a time with `Z` or an offset is
/// that instant, and one without is wall-clock time in the tenant's zone, never guessed as UTC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VisitTime {
    Utc(DateTime<Utc>),
    Local(NaiveDateTime),
}

impl VisitTime {
    /// Parses an RFC 3339 time (an instant) or a zone-less one (business-local).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(s) {
            return Some(Self::Utc(t.with_timezone(&Utc)));
        }
        ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
            .iter()
            .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
            .map(Self::Local)
    }

    /// The instant, reading a local time in the business's zone.
    pub fn instant(&self, zone: &crate::localtime::Zone) -> Result<DateTime<Utc>, String> {
        match self {
            Self::Utc(t) => Ok(*t),
            Self::Local(t) => zone.instant_of(*t),
        }
    }
}

impl From<DateTime<Utc>> for VisitTime {
    fn from(t: DateTime<Utc>) -> Self {
        Self::Utc(t)
    }
}

/// Written back as read: an instant with `Z`, a local time without a zone.
impl Serialize for VisitTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Utc(t) => s.serialize_str(&t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)),
            Self::Local(t) => s.serialize_str(&t.format("%Y-%m-%dT%H:%M:%S%.f").to_string()),
        }
    }
}

fn lenient_visit_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<VisitTime>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => VisitTime::parse(&s)
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom(format!("not a date: {s:?}"))),
    }
}

/// A pass given to one customer (`/api/billing/coworkertimepasses`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CoworkerTimePass {
    pub id: i64,
    pub coworker_id: i64,
    /// The TimePass product this pass is of: the item mappings name.
    pub time_pass_id: i64,
    #[serde(default)]
    pub time_pass_name: Option<String>,
    #[serde(default)]
    pub used: bool,
    #[serde(default, deserialize_with = "lenient_time")]
    pub expire_date: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub updated_on: Option<DateTime<Utc>>,
}

fn yes() -> bool {
    true
}

/// Parses RFC 3339, or a naive timestamp taken as UTC; `null` and `""` are absent.
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    DateTime::parse_from_rfc3339(s)
        .map(|t| t.with_timezone(&Utc))
        .ok()
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc()))
        .or_else(|| NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M").ok().map(|n| n.and_utc()))
}

fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    match Option::<String>::deserialize(d)? {
        None => Ok(None),
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => {
            parse_time(&s).map(Some).ok_or_else(|| serde::de::Error::custom(format!("not a date: {s:?}")))
        }
    }
}

fn required_time<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    lenient_time(d)?.ok_or_else(|| serde::de::Error::custom("missing date"))
}

/// A list of ids: integers, numeric strings, or objects with an `Id` (`null` is absent).
fn lenient_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<i64>>, D::Error> {
    let Some(items) = Option::<Vec<serde_json::Value>>::deserialize(d)? else { return Ok(None) };
    items
        .iter()
        .map(|v| {
            let id = match v {
                serde_json::Value::Object(o) => o.get("Id").unwrap_or(&serde_json::Value::Null),
                other => other,
            };
            id.as_i64()
                .or_else(|| id.as_str().and_then(|s| s.trim().parse().ok()))
                .ok_or_else(|| serde::de::Error::custom(format!("not an id: {v}")))
        })
        .collect::<Result<Vec<i64>, D::Error>>()
        .map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_with_and_without_offset() {
        let with = parse_time("2026-12-01T10:00:00Z");
        assert_eq!(with, parse_time("2026-12-01T10:00:00"));
        assert_eq!(with, parse_time("2026-12-01T11:00:00+01:00"));
        assert_eq!(parse_time(""), None);
        assert_eq!(parse_time("tomorrow"), None);
    }

    #[test]
    fn visit_times_with_a_zone_are_instants_and_without_are_business_local() {
        let berlin = crate::localtime::Zone::parse("Europe/Berlin").expect("zone");
        let at = |json: &str| {
            let v: Visitor = serde_json::from_str(json).expect("parses");
            v.expected_arrival.expect("set").instant(&berlin).expect("in range")
        };
        let ten_utc = parse_time("2026-12-01T10:00:00Z").expect("valid");
        assert_eq!(at(r#"{"Id":1,"ExpectedArrival":"2026-12-01T10:00:00Z"}"#), ten_utc);
        assert_eq!(at(r#"{"Id":1,"ExpectedArrival":"2026-12-01T11:00:00+01:00"}"#), ten_utc);
        // 11:00 in Berlin in winter is 10:00 UTC; in summer 11:00 is 09:00 UTC.
        assert_eq!(at(r#"{"Id":1,"ExpectedArrival":"2026-12-01T11:00:00"}"#), ten_utc);
        let summer = parse_time("2026-07-01T09:00:00Z").expect("valid");
        assert_eq!(at(r#"{"Id":1,"ExpectedArrival":"2026-07-01T11:00"}"#), summer);
        // Written back as read, so a queued copy means the same.
        let v: Visitor = serde_json::from_str(r#"{"Id":1,"ArrivalDate":"2026-12-01T11:00:00"}"#).expect("ok");
        let again: Visitor = serde_json::from_str(&serde_json::to_string(&v).expect("json")).expect("ok");
        assert_eq!(again.arrival_date, v.arrival_date);
        assert!(serde_json::from_str::<Visitor>(r#"{"Id":1,"ArrivalDate":"soon"}"#).is_err());
    }

    #[test]
    fn collections_read_as_ids_and_stay_absent_when_omitted() {
        let c: Coworker = serde_json::from_str(r#"{"Id":1,"Teams":[7,{"Id":8},"9"]}"#).expect("parses");
        assert_eq!(c.teams, Some(vec![7, 8, 9]));
        let listed: Coworker = serde_json::from_str(r#"{"Id":1}"#).expect("parses");
        assert_eq!(listed.teams, None);
        assert!(serde_json::from_str::<Team>(r#"{"Id":1,"TeamMembers":["x"]}"#).is_err());
        let b = r#"{"Id":3,"CoworkerId":456,"ResourceId":12,"FromTime":"2026-12-01T10:00:00Z"}"#;
        assert!(serde_json::from_str::<Booking>(b).is_err(), "a booking needs ToTime");
    }

    #[test]
    fn a_pass_reads_from_rest_json() {
        let json = r#"{"Id":7,"CoworkerId":456,"TimePassId":1001,"TimePassName":"Bike Storage","Used":false,
            "ExpireDate":"2026-12-31T00:00:00Z","UpdatedOn":"2026-11-23T09:00:00","ToStringText":"x"}"#;
        let p: CoworkerTimePass = serde_json::from_str(json).expect("parses");
        assert_eq!(p.time_pass_id, 1001);
        assert_eq!(p.expire_date, parse_time("2026-12-31T00:00:00Z"));
        assert!(
            serde_json::from_str::<CoworkerTimePass>(
                r#"{"Id":7,"CoworkerId":1,"TimePassId":1,"ExpireDate":"soon"}"#
            )
            .is_err()
        );
    }
}
