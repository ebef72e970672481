//! Nexudus records as Portier's profiles and entitlements: pure, one function per kind.

use super::dto::{Booking, Coworker, CoworkerContract, CoworkerTimePass, FloorPlanDesk, Team, Visitor};
use super::rules::NexudusRules;
use crate::model::{
    Email, Entitlement, EntitlementKind, EntitlementState, Instant, ItemKind, ItemRef, Profile, Window,
};

/// The email as Portier compares it; a refused one (a confusable, an invisible character) gives
/// the person no access until it is corrected in Nexudus, and says why in the log.
fn accepted_email(raw: &str, id: i64) -> Option<Email> {
    Email::parse(raw)
        .map_err(
            |reason| tracing::warn!(nexudus_id = id, %reason, "email refused: no access until corrected"),
        )
        .ok()
}

/// The profile a coworker record describes; `Active = false` is the suspension overlay.
pub fn profile_of(c: &Coworker) -> Profile {
    Profile {
        email: c.email.as_deref().and_then(|e| accepted_email(e, c.id)),
        name: c.full_name.clone().unwrap_or_default(),
        // A record without `UpdatedOn` is the oldest, never the newest (design §2.2).
        source_version: c.updated_on,
        deleted: false,
        gone_at: None,
        suspended: (!c.active).then(|| "customer suspended in Nexudus (Active = false)".to_owned()),
    }
}

/// The entitlement a customer's pass gives: active until `ExpireDate`, ended once `Used`.
pub fn pass_entitlement(p: &CoworkerTimePass, seen_at: Instant) -> Entitlement {
    Entitlement {
        kind: EntitlementKind::Pass,
        id: p.id.to_string(),
        item: ItemRef { kind: ItemKind::Pass, id: p.time_pass_id.to_string() },
        label: p.time_pass_name.clone().unwrap_or_else(|| format!("pass {}", p.time_pass_id)),
        window: Window::new(None, p.expire_date),
        state: if p.used {
            EntitlementState::Ended { reason: "marked Used in Nexudus".into() }
        } else {
            EntitlementState::Active
        },
        source_version: p.updated_on.unwrap_or(seen_at),
    }
}

/// A booking's resource from `FromTime − lead` to `ToTime + lag`; a tentative one grants nothing.
pub fn booking_entitlement(b: &Booking, rules: &NexudusRules, seen_at: Instant) -> Entitlement {
    let resource = b.resource_name.clone().unwrap_or_else(|| format!("resource {}", b.resource_id));
    Entitlement {
        kind: EntitlementKind::Booking,
        id: b.id.to_string(),
        item: ItemRef { kind: ItemKind::Resource, id: b.resource_id.to_string() },
        label: format!("{resource} (booking {})", b.id),
        window: Window::new(Some(b.from_time - rules.booking_lead), Some(b.to_time + rules.booking_lag)),
        state: if b.tentative {
            EntitlementState::Ended { reason: "tentative in Nexudus (awaiting approval)".into() }
        } else {
            EntitlementState::Active
        },
        source_version: b.updated_on.unwrap_or(seen_at),
    }
}

/// A contract with the desks and offices it names (read by id, with each desk's `ItemType`).
#[derive(Debug, Clone)]
pub struct ContractDesks {
    pub contract: CoworkerContract,
    pub desks: Vec<FloorPlanDesk>,
}

/// The entitlement one desk or office of a contract gives. `team` is set when a team member
/// holds it through the paying member (its id then starts with `t{team}-`, and its version is
/// also the team's, so re-joining a team outranks the ending of leaving it).
pub fn contract_entitlement(
    c: &CoworkerContract,
    desk: &FloorPlanDesk,
    team: Option<&Team>,
    now: Instant,
) -> Entitlement {
    let kind = if desk.is_office() { ItemKind::Office } else { ItemKind::Desk };
    let prefix = team.map(|t| format!("t{}-", t.id)).unwrap_or_default();
    let name = desk.name.clone().unwrap_or_else(|| format!("{} {}", kind.as_str(), desk.id));
    let tariff = c.tariff_name.clone().unwrap_or_else(|| format!("contract {}", c.id));
    let label = match team {
        Some(t) => format!("{name} ({tariff}, team {})", t.name.clone().unwrap_or_else(|| t.id.to_string())),
        None => format!("{name} ({tariff})"),
    };
    let state = if c.cancelled && c.cancellation_date.is_none() {
        EntitlementState::Ended { reason: "contract cancelled in Nexudus".into() }
    } else if !c.active && !c.cancelled && c.start_date.is_none_or(|s| s <= now) {
        EntitlementState::Ended { reason: "contract not active in Nexudus".into() }
    } else {
        EntitlementState::Active
    };
    let version = c.updated_on.unwrap_or(now);
    Entitlement {
        kind: EntitlementKind::Contract,
        id: format!("{prefix}c{}-d{}", c.id, desk.id),
        item: ItemRef { kind, id: desk.id.to_string() },
        label,
        window: Window::new(c.start_date, c.cancellation_date),
        state,
        source_version: team.and_then(|t| t.updated_on).map_or(version, |t| t.max(version)),
    }
}

/// The tenant's `visitors` item from `ExpectedArrival − lead` (or the check-in, if earlier) to
/// the end of that local day, or to `DepartureDate` when the visitor left earlier. A walk-in
/// (no expected arrival) gets access from the check-in (`VisitorCheckedin`); a visitor neither
/// expected nor checked in is given nothing.
pub fn visit_entitlement(v: &Visitor, rules: &NexudusRules, seen_at: Instant) -> Result<Entitlement, String> {
    let checked_in =
        v.arrival_date.filter(|_| v.arrived == Some(true)).map(|t| t.instant(&rules.zone)).transpose()?;
    let expected = v.expected_arrival.map(|t| t.instant(&rules.zone)).transpose()?;
    let start = match (expected.map(|a| (a, a - rules.booking_lead)), checked_in) {
        (Some((day_of, from)), Some(arrived)) => Some((day_of, from.min(arrived))),
        (Some(expected), None) => Some(expected),
        (None, Some(arrived)) => Some((arrived, arrived)),
        (None, None) => None,
    };
    let (window, state) = match start {
        Some((day_of, from)) => {
            let day = rules.zone.date_of(day_of).and_then(|d| rules.zone.end_of_day(d))?;
            let until = v.departure_date.filter(|d| *d < day).unwrap_or(day);
            (Window::new(Some(from), Some(until)), EntitlementState::Active)
        }
        None => (
            Window::new(None, Some(seen_at)),
            EntitlementState::Ended { reason: "neither expected nor checked in in Nexudus".into() },
        ),
    };
    Ok(Entitlement {
        kind: EntitlementKind::Visit,
        id: v.id.to_string(),
        item: ItemRef { kind: ItemKind::Visitors, id: "*".into() },
        label: format!("visit of {}", v.full_name.clone().unwrap_or_else(|| format!("visitor {}", v.id))),
        window,
        state,
        source_version: v.updated_on.unwrap_or(seen_at),
    })
}

pub(super) fn visitor_profile(v: &Visitor, seen_at: Instant) -> Profile {
    Profile {
        email: v.email.as_deref().and_then(|e| accepted_email(e, v.id)),
        name: v.full_name.clone().unwrap_or_default(),
        source_version: Some(v.updated_on.unwrap_or(seen_at)),
        deleted: false,
        gone_at: None,
        suspended: None,
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use chrono::Duration;

    use super::*;
    use crate::localtime::Zone;
    use crate::model::{Seen, SourceKind, SubjectKey};
    use crate::sources::nexudus::rules::Reads;
    use crate::sources::nexudus::source::{coworker_id, visitor_id, visitor_person};

    fn t(d: u32, h: u32, m: u32) -> Instant {
        Utc.with_ymd_and_hms(2026, 11, d, h, m, 0).single().expect("valid")
    }

    fn rules(lead: i64, lag: i64) -> NexudusRules {
        NexudusRules {
            booking_lead: Duration::minutes(lead),
            booking_lag: Duration::minutes(lag),
            zone: Zone::parse("Europe/Berlin").expect("zone"),
            reads: Reads::ALL,
        }
    }

    fn booking(tentative: bool) -> Booking {
        Booking {
            id: 3,
            coworker_id: 456,
            resource_id: 12,
            resource_name: Some("Room 1".into()),
            from_time: t(23, 10, 0),
            to_time: t(23, 11, 0),
            tentative,
            updated_on: Some(t(22, 8, 0)),
        }
    }

    #[test]
    fn a_booking_holds_its_resource_from_lead_before_to_lag_after() {
        let ent = booking_entitlement(&booking(false), &rules(15, 15), t(23, 9, 0));
        assert_eq!(ent.window, Window::new(Some(t(23, 9, 45)), Some(t(23, 11, 15))));
        assert_eq!(ent.item, ItemRef { kind: ItemKind::Resource, id: "12".into() });
        assert_eq!((ent.key(), ent.source_version), ("booking#3".to_owned(), t(22, 8, 0)));
        assert!(ent.is_active());
        let other = booking_entitlement(&booking(false), &rules(0, 30), t(23, 9, 0));
        assert_eq!(other.window, Window::new(Some(t(23, 10, 0)), Some(t(23, 11, 30))));
        assert!(!booking_entitlement(&booking(true), &rules(15, 15), t(23, 9, 0)).is_active());
    }

    fn contract(cancelled: Option<Instant>) -> CoworkerContract {
        CoworkerContract {
            id: 70,
            coworker_id: 456,
            tariff_name: Some("Acme office".into()),
            start_date: Some(t(30, 0, 0)),
            cancellation_date: cancelled,
            active: true,
            cancelled: cancelled.is_some(),
            desks: Some(vec![31, 32]),
            updated_on: Some(t(20, 0, 0)),
        }
    }

    fn desk(id: i64, item_type: i64) -> FloorPlanDesk {
        FloorPlanDesk { id, name: Some(format!("desk {id}")), item_type: Some(item_type) }
    }

    #[test]
    fn a_contract_gives_each_desk_or_office_from_start_to_cancellation() {
        let now = t(23, 9, 0);
        let d = contract_entitlement(&contract(None), &desk(31, 2), None, now);
        assert_eq!(d.item, ItemRef { kind: ItemKind::Desk, id: "31".into() });
        assert_eq!(d.window, Window::new(Some(t(30, 0, 0)), None));
        assert_eq!(d.key(), "contract#c70-d31");
        let o = contract_entitlement(&contract(Some(t(30, 12, 0))), &desk(32, 1), None, now);
        assert_eq!(o.item.kind, ItemKind::Office);
        assert_eq!(o.window.until, Some(t(30, 12, 0)));
        assert!(o.is_active(), "cancelled as of a date: active until then");
        let mut gone = contract(None);
        gone.cancelled = true;
        assert!(!contract_entitlement(&gone, &desk(31, 2), None, now).is_active());
        let mut inactive = contract(None);
        inactive.active = false;
        inactive.start_date = Some(t(1, 0, 0));
        assert!(!contract_entitlement(&inactive, &desk(31, 2), None, now).is_active());
        inactive.start_date = Some(t(30, 0, 0));
        assert!(contract_entitlement(&inactive, &desk(31, 2), None, now).is_active(), "not started yet");
    }

    #[test]
    fn a_team_copy_is_keyed_by_team_and_versioned_by_the_newer_of_team_and_contract() {
        let team = Team {
            id: 900,
            name: Some("Acme".into()),
            team_members: Some(vec![456, 457]),
            paying_member_id: Some(456),
            updated_on: Some(t(23, 9, 30)),
        };
        let e = contract_entitlement(&contract(None), &desk(31, 2), Some(&team), t(23, 9, 0));
        assert_eq!(e.key(), "contract#t900-c70-d31");
        assert_eq!(e.source_version, t(23, 9, 30));
        // Leaving ends it as of then; re-joining later (a newer team version) outranks that.
        let left = e.clone().ended("left", t(23, 10, 0));
        let rejoined = Team { updated_on: Some(t(23, 11, 0)), ..team };
        assert!(
            contract_entitlement(&contract(None), &desk(31, 2), Some(&rejoined), t(23, 11, 0))
                .supersedes(&left, Seen::Read(t(23, 11, 0)))
        );
    }

    #[test]
    fn a_visit_lasts_from_lead_before_arrival_to_the_end_of_the_local_day_or_departure() {
        let mut v = Visitor {
            id: 77,
            full_name: Some("Vera".into()),
            email: Some("vera@example.com".into()),
            coworker_id: Some(456),
            expected_arrival: Some(t(23, 14, 0).into()),
            arrived: None,
            arrival_date: None,
            departure_date: None,
            updated_on: Some(t(23, 8, 0)),
        };
        let ent = visit_entitlement(&v, &rules(15, 15), t(23, 9, 0)).expect("entitlement");
        // Midnight in Berlin (CET) is 23:00 UTC.
        assert_eq!(ent.window, Window::new(Some(t(23, 13, 45)), Some(t(23, 23, 0))));
        assert_eq!(ent.item, ItemRef { kind: ItemKind::Visitors, id: "*".into() });
        v.departure_date = Some(t(23, 16, 0));
        let left = visit_entitlement(&v, &rules(15, 15), t(23, 9, 0)).expect("entitlement");
        assert_eq!(left.window.until, Some(t(23, 16, 0)));
        // Checked in early: from the check-in. Late: from the lead as planned.
        v.departure_date = None;
        (v.arrived, v.arrival_date) = (Some(true), Some(t(23, 12, 30).into()));
        let early = visit_entitlement(&v, &rules(15, 15), t(23, 12, 30)).expect("entitlement");
        assert_eq!(early.window, Window::new(Some(t(23, 12, 30)), Some(t(23, 23, 0))));
        v.arrival_date = Some(t(23, 14, 20).into());
        let late = visit_entitlement(&v, &rules(15, 15), t(23, 14, 20)).expect("entitlement");
        assert_eq!(late.window.from, Some(t(23, 13, 45)));
        // A walk-in: from the check-in; an ArrivalDate without `Arrived` is not a check-in.
        v.expected_arrival = None;
        let walk_in = visit_entitlement(&v, &rules(15, 15), t(23, 14, 20)).expect("entitlement");
        assert_eq!(walk_in.window, Window::new(Some(t(23, 14, 20)), Some(t(23, 23, 0))));
        v.arrived = Some(false);
        assert!(!visit_entitlement(&v, &rules(15, 15), t(23, 9, 0)).expect("entitlement").is_active());
    }

    #[test]
    fn an_inactive_customer_is_suspended_and_visitors_have_their_own_ids() {
        let c = Coworker {
            id: 456,
            full_name: Some("Anna".into()),
            email: Some("anna@example.com".into()),
            active: false,
            updated_on: None,
            teams: None,
        };
        assert!(profile_of(&c).suspended.is_some());
        assert!(profile_of(&Coworker { active: true, ..c }).suspended.is_none());
        let visitor = SubjectKey::new(&"t".into(), SourceKind::Nexudus, visitor_person(77));
        assert_eq!((visitor_id(&visitor), coworker_id(&visitor).is_err()), (Some(77), true));
    }
}
