//! What a Kinnovis event means: one booking gives its customer's email and every shared-access
//! email a booking entitlement on the unit, from 00:00 on move-in day to the end of move-out
//! day in the location's time zone.
//!
//! Subjects are emails (Tapkey matches on the email), so one person may hold several bookings
//! and a booking touches several subjects. The booking itself is stored once per tenant with
//! its newest `version` and every email it ever named: entitlements are always derived from
//! that newest state, so a late older event changes nothing, and an email that left the
//! booking (email change, shared access removed) gets its entitlement ended.
//!
//! Revoke/restore is part of the booking's versioned state: a revoked booking's entitlements
//! are `Revoked` for the customer and every shared access alike, whatever their windows say,
//! until a newer version restores them. It sits on the booking, not the person's profile,
//! because Kinnovis locks out one unit rental, not the customer's other bookings.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::client::KinnovisClient;
use super::dto::{AccessState, Booking, BookingStatus, Event};
use crate::config::Adoption;
use crate::error::WorkError;
use crate::localtime::Zone;
use crate::model::{
    Email, Entitlement, EntitlementKind, EntitlementState, Instant, ItemKind, ItemRef, Profile, Seen,
    SourceKind, SubjectKey, TenantId, Window,
};
use crate::sources::{Hint, Listed, Listing, Refreshed, Source, Stored};
use crate::store::Records;

/// The Kinnovis source of one tenant (one location).
pub struct KinnovisSource {
    tenant: TenantId,
    zone: Zone,
    adoption: Adoption,
    client: KinnovisClient,
}

/// The person id of a Kinnovis subject: a hash of the normalised email. Emails can be longer
/// than an SQS message group id allows (128), and the id travels in queue and timer keys, where
/// addresses in clear do not belong; `explain` still finds the subject by its email.
pub fn person_of(email: &Email) -> String {
    format!("em-{}", hex::encode(&Sha256::digest(email.as_str().as_bytes())[..12]))
}

pub fn subject_of(tenant: &TenantId, email: &Email) -> SubjectKey {
    SubjectKey::new(tenant, SourceKind::Kinnovis, person_of(email))
}

/// A booking as Portier last accepted it (`TENANT#t / KBOOKING#id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BookingRecord {
    pub booking: Booking,
    /// Every email the booking has named, so one that left it loses the access.
    pub holders: Vec<Email>,
    /// False for a booking the `gradual` adoption policy leaves alone (unchanged since
    /// before Portier was connected). Once managed, always managed.
    pub managed: bool,
}

fn record_key(booking_id: &str) -> String {
    format!("KBOOKING#{booking_id}")
}

/// Kinnovis versions are counters; stored as that many seconds after the epoch they order
/// entitlements with the same monotonic rule as every other source.
pub fn version_instant(version: u64) -> Instant {
    let secs = i64::try_from(version).unwrap_or(i64::MAX).min(253_402_300_799); // 9999-12-31
    chrono::DateTime::from_timestamp(secs, 0).unwrap_or_default()
}

/// Whether a booking is managed under the adoption policy. A webhook means the booking was
/// made or changed while Portier was connected (the sender's clock is not consulted: it may be
/// behind, and an event sent within a second of connecting is as new as any), so it is managed;
/// a booking first seen in a listing is one that existed before, left alone under `gradual`.
fn is_managed(
    adoption: Adoption,
    stored: Option<&BookingRecord>,
    changed_while_connected: bool,
    connected_at: Option<Instant>,
) -> bool {
    adoption == Adoption::CleanSlate
        || stored.is_some_and(|s| s.managed)
        || changed_while_connected
        || connected_at.is_none()
}

/// The new stored record for an incoming booking, or `None` when the stored one is as new.
pub fn merge(stored: Option<&BookingRecord>, booking: &Booking, managed: bool) -> Option<BookingRecord> {
    if stored.is_some_and(|s| s.booking.version >= booking.version) {
        return None;
    }
    let mut holders = stored.map(|s| s.holders.clone()).unwrap_or_default();
    for e in booking.emails() {
        if !holders.contains(&e) {
            holders.push(e);
        }
    }
    Some(BookingRecord { booking: booking.clone(), holders, managed })
}

/// The entitlement `email` holds by this booking (pure; unit-tested below).
pub fn entitlement_for(rec: &BookingRecord, email: &Email, zone: &Zone) -> Result<Entitlement, String> {
    let b = &rec.booking;
    let from = zone.start_of_day(b.move_in).map_err(|e| format!("booking {} move_in: {e}", b.id))?;
    let until = b
        .move_out
        .map(|d| zone.end_of_day(d))
        .transpose()
        .map_err(|e| format!("booking {} move_out: {e}", b.id))?;
    let ended = |reason: String| EntitlementState::Ended { reason };
    let state = if !b.emails().contains(email) {
        ended(format!("no longer named on booking {} (email changed or shared access removed)", b.id))
    } else if !rec.managed {
        ended(format!(
            "booking {} existed before Portier was connected and has not changed since (adoption: gradual)",
            b.id
        ))
    } else {
        match (b.status, b.access.state) {
            (BookingStatus::Cancelled, _) => ended("booking cancelled in Kinnovis".into()),
            (BookingStatus::Ended, _) => ended("booking ended in Kinnovis".into()),
            (_, AccessState::Revoked) => EntitlementState::Revoked {
                reason: match b.access.reason.as_deref() {
                    Some("overdue") => "locked out in Kinnovis: overdue invoice".into(),
                    Some("manual") | None => "access revoked by hand in Kinnovis".into(),
                    Some(other) => format!("access revoked in Kinnovis ({other})"),
                },
            },
            (_, AccessState::Granted) => EntitlementState::Active,
        }
    };
    Ok(Entitlement {
        kind: EntitlementKind::Booking,
        id: b.id.clone(),
        item: ItemRef { kind: ItemKind::Unit, id: b.unit.name.clone() },
        label: format!("unit {} (booking {})", b.unit.name, b.id),
        window: Window::new(Some(from), until),
        state,
        source_version: version_instant(b.version),
    })
}

impl KinnovisSource {
    pub fn new(tenant: TenantId, zone: Zone, adoption: Adoption, client: KinnovisClient) -> Self {
        Self { tenant, zone, adoption, client }
    }

    /// The export client (unit names for `mapping import`, bookings for resync).
    pub fn client(&self) -> &KinnovisClient {
        &self.client
    }

    /// Reads a booking (`by_webhook`: from a webhook, else from the export) into `read`: the
    /// merged booking record, written only if the stored one is still as read, and the
    /// entitlement of every email it names or named. Returns those subjects.
    pub async fn read_booking(
        &self,
        booking: &Booking,
        by_webhook: bool,
        stored: Stored<'_>,
        read: &mut Refreshed,
    ) -> Result<Vec<SubjectKey>, WorkError> {
        let connected_at = stored.connected_at(&self.tenant).await?;
        let key = record_key(&booking.id);
        let (current, cond) = stored.tenant_record_for_update::<BookingRecord>(&self.tenant, &key).await?;
        let managed = is_managed(self.adoption, current.as_ref(), by_webhook, connected_at);
        let merged = merge(current.as_ref(), booking, managed);
        if let Some(m) = &merged {
            read.tenant_record(&self.tenant, &key, m, cond)?;
        }
        let Some(rec) = merged.or(current) else { return Ok(Vec::new()) };
        // Derived from the newest stored state, whichever event this is.
        let mut subjects = Vec::with_capacity(rec.holders.len());
        for email in &rec.holders {
            let subject = subject_of(&self.tenant, email);
            let is_customer = Email::parse(&rec.booking.customer.email).ok().as_ref() == Some(email);
            let name = is_customer.then_some(&rec.booking.customer.name);
            self.read_profile(stored, read, &subject, email, name).await?;
            let ent = entitlement_for(&rec, email, &self.zone).map_err(WorkError::BadMessage)?;
            read.entitlement(&subject, ent, Seen::Body);
            subjects.push(subject);
        }
        Ok(subjects)
    }

    /// A subject's profile is its email; the customer's name is kept when known.
    async fn read_profile(
        &self,
        stored: Stored<'_>,
        read: &mut Refreshed,
        subject: &SubjectKey,
        email: &Email,
        customer_name: Option<&String>,
    ) -> Result<(), WorkError> {
        let current = stored.profile(subject).await?;
        let name = match (&current, customer_name) {
            (_, Some(n)) if !n.trim().is_empty() => n.trim().to_owned(),
            (Some(p), _) => p.name.clone(),
            (None, _) => String::new(),
        };
        let profile = Profile {
            email: Some(email.clone()),
            name,
            source_version: None,
            deleted: false,
            gone_at: None,
            suspended: None,
        };
        if current.as_ref() != Some(&profile) {
            read.profile(subject, profile, Seen::Body);
        }
        Ok(())
    }
}

#[async_trait]
impl Source for KinnovisSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Kinnovis
    }

    /// The location's units, by the name mappings use.
    async fn items(&self) -> Result<Vec<crate::sources::SourceItem>, WorkError> {
        Ok(self
            .client
            .units()
            .await?
            .into_iter()
            .map(|u| crate::sources::SourceItem {
                item: ItemRef { kind: ItemKind::Unit, id: u.name.clone() },
                name: u.name,
            })
            .collect())
    }

    /// Webhooks are signed (Standard Webhooks), so their booking is believed as sent.
    async fn refresh(
        &self,
        subject: &SubjectKey,
        hint: &Hint,
        stored: Stored<'_>,
        read: &mut Refreshed,
    ) -> Result<(), WorkError> {
        let payload =
            hint.payload.clone().ok_or_else(|| WorkError::BadMessage("no Kinnovis event".into()))?;
        let event: Event = serde_json::from_value(payload)
            .map_err(|e| WorkError::BadMessage(format!("not a Kinnovis event: {e}")))?;
        let affected = self.read_booking(&event.booking, true, stored, read).await?;
        // The ingress queued a message for every email the event names; an email that left the
        // booking has none, so a timer brings it to the reconciler (in its own FIFO group).
        let named: Vec<SubjectKey> =
            event.booking.emails().iter().map(|e| subject_of(&self.tenant, e)).collect();
        let now = stored.now();
        for other in affected.iter().filter(|s| *s != subject && !named.contains(s)) {
            read.timer(other, now, false);
        }
        Ok(())
    }

    /// The export's bookings, merged in memory with what is stored (nothing is written), as
    /// one listed person per email. A full listing ends the bookings the export no longer has.
    async fn list(
        &self,
        since: Option<Instant>,
        _now: Instant,
        records: &Records,
    ) -> Result<Listing, WorkError> {
        let bookings = self.client.bookings(since).await?;
        let connected_at = records.connected_at(&self.tenant).await?;
        let mut people: std::collections::BTreeMap<Email, Listed> = std::collections::BTreeMap::new();
        for booking in &bookings {
            let stored: Option<BookingRecord> =
                records.tenant_record(&self.tenant, &record_key(&booking.id)).await?;
            // A newer version than the stored one changed while Portier was connected.
            let changed = stored.as_ref().is_some_and(|s| booking.version > s.booking.version);
            let managed = is_managed(self.adoption, stored.as_ref(), changed, connected_at);
            let Some(rec) = merge(stored.as_ref(), booking, managed).or(stored) else { continue };
            let customer = Email::parse(&rec.booking.customer.email).ok();
            for email in &rec.holders {
                let ent = entitlement_for(&rec, email, &self.zone).map_err(WorkError::BadMessage)?;
                let person = match people.entry(email.clone()) {
                    std::collections::btree_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::btree_map::Entry::Vacant(v) => {
                        // The profile is only the email (and the customer's name); a stored one stays.
                        let subject = subject_of(&self.tenant, email);
                        let profile = match records.profile(&subject).await? {
                            Some(_) => None,
                            None => Some(Profile {
                                email: Some(email.clone()),
                                name: if customer.as_ref() == Some(email) {
                                    rec.booking.customer.name.trim().to_owned()
                                } else {
                                    String::new()
                                },
                                source_version: None,
                                deleted: false,
                                gone_at: None,
                                suspended: None,
                            }),
                        };
                        v.insert(Listed { person: person_of(email), profile, entitlements: Vec::new() })
                    }
                };
                person.entitlements.push(ent);
            }
        }
        Ok(Listing { complete: since.is_none(), people: people.into_values().collect() })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveDate, TimeZone, Utc};

    use super::*;
    use crate::sources::kinnovis::dto::{Access, Customer, Unit};

    fn booking(version: u64) -> Booking {
        Booking {
            id: "B-1042".into(),
            version,
            status: BookingStatus::Active,
            unit: Unit { id: "U-17".into(), name: "A-017".into() },
            customer: Customer { id: "C-9".into(), email: "anna@example.com".into(), name: "Anna".into() },
            move_in: NaiveDate::from_ymd_opt(2027, 3, 28).expect("date"),
            move_out: NaiveDate::from_ymd_opt(2027, 10, 31),
            access: Access { state: AccessState::Granted, reason: None },
            shared_access_emails: vec!["ben@example.com".into()],
        }
    }

    fn email(s: &str) -> Email {
        Email::parse(s).expect("email")
    }

    fn vienna() -> Zone {
        Zone::parse("Europe/Vienna").expect("zone")
    }

    fn utc(y: i32, m: u32, d: u32, h: u32) -> Instant {
        Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().expect("valid")
    }

    #[test]
    fn the_window_runs_from_local_move_in_midnight_to_the_end_of_move_out_day() {
        let rec = merge(None, &booking(1), true).expect("new");
        let ent = entitlement_for(&rec, &email("anna@example.com"), &vienna()).expect("entitlement");
        // Both days are DST change days in Vienna: winter time at the start, back to winter
        // time at the end (the move-out day lasts 25 hours).
        assert_eq!(ent.window, Window::new(Some(utc(2027, 3, 27, 23)), Some(utc(2027, 10, 31, 23))));
        assert_eq!(ent.item, ItemRef { kind: ItemKind::Unit, id: "A-017".into() });
        assert_eq!(ent.state, EntitlementState::Active);
        let mut open = booking(2);
        open.move_out = None;
        let rec = merge(None, &open, true).expect("new");
        assert_eq!(
            entitlement_for(&rec, &email("ben@example.com"), &vienna()).map(|e| e.window.until),
            Ok(None)
        );
    }

    #[test]
    fn a_revocation_outranks_the_window_for_everyone_on_the_booking_until_restored() {
        let mut revoked = booking(2);
        revoked.access = Access { state: AccessState::Revoked, reason: Some("overdue".into()) };
        let rec = merge(merge(None, &booking(1), true).as_ref(), &revoked, true).expect("newer");
        for who in ["anna@example.com", "ben@example.com"] {
            let ent = entitlement_for(&rec, &email(who), &vienna()).expect("entitlement");
            assert!(matches!(&ent.state, EntitlementState::Revoked { reason } if reason.contains("overdue")));
        }
        let restored = merge(Some(&rec), &booking(3), true).expect("newer");
        assert_eq!(
            entitlement_for(&restored, &email("ben@example.com"), &vienna()).map(|e| e.state),
            Ok(EntitlementState::Active)
        );
        // A cancelled booking stays ended even while revoked.
        let mut cancelled = revoked.clone();
        cancelled.version = 4;
        cancelled.status = BookingStatus::Cancelled;
        let rec = merge(Some(&restored), &cancelled, true).expect("newer");
        assert!(matches!(
            entitlement_for(&rec, &email("anna@example.com"), &vienna()).map(|e| e.state),
            Ok(EntitlementState::Ended { .. })
        ));
    }

    #[test]
    fn an_older_version_changes_nothing_and_leavers_keep_an_ended_entitlement() {
        let first = merge(None, &booking(5), true).expect("new");
        assert_eq!(merge(Some(&first), &booking(4), true), None);
        assert_eq!(merge(Some(&first), &booking(5), true), None);
        let mut moved = booking(6);
        moved.customer.email = "anna.berger@example.com".into();
        moved.shared_access_emails.clear();
        let rec = merge(Some(&first), &moved, true).expect("newer");
        assert_eq!(rec.holders.len(), 3);
        for (who, active) in
            [("anna@example.com", false), ("ben@example.com", false), ("anna.berger@example.com", true)]
        {
            let ent = entitlement_for(&rec, &email(who), &vienna()).expect("entitlement");
            assert_eq!(ent.is_active(), active, "{who}");
            assert_eq!(ent.source_version, version_instant(6));
        }
    }

    #[test]
    fn gradual_adoption_manages_what_webhooks_name_and_leaves_older_listed_bookings() {
        let connected = Some(utc(2026, 11, 23, 9));
        assert!(is_managed(Adoption::Gradual, None, true, connected), "heard of by webhook: new");
        assert!(!is_managed(Adoption::Gradual, None, false, connected), "first seen in a listing");
        assert!(is_managed(Adoption::Gradual, None, false, None), "not connected yet");
        assert!(is_managed(Adoption::CleanSlate, None, false, connected));
        let managed = merge(None, &booking(1), true).expect("new");
        assert!(is_managed(Adoption::Gradual, Some(&managed), false, connected));
        let unmanaged = merge(None, &booking(1), false).expect("new");
        let ent = entitlement_for(&unmanaged, &email("anna@example.com"), &vienna()).expect("entitlement");
        assert!(matches!(ent.state, EntitlementState::Ended { reason } if reason.contains("gradual")));
    }

    #[test]
    fn person_ids_are_stable_and_short() {
        let a = person_of(&email("Anna@Example.com"));
        assert_eq!(a, person_of(&email("anna@example.com")));
        assert_eq!(a.len(), 27);
        assert_ne!(a, person_of(&email("ben@example.com")));
    }
}
