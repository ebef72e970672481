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

/// A page of a Nexudus list.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Page<T> {
    pub records: Vec<T>,
    #[serde(default)]
    pub has_next_page: bool,
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
