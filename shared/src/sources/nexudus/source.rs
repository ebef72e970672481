//! What a Nexudus webhook means for a subject's profile and entitlements.
//!
//! Webhooks are hints (design §2.1): whatever the action, the worker re-reads the customer from
//! the REST API: the coworker (profile, `Active`, `Teams`), passes, bookings, contracts with
//! their desks, and the contracts of every team they are in. For tenants whose webhooks are not
//! signed these reads are the proof (design principle 3), so a forged body can never grant.
//!
//! - **Passes** (`CoworkerTimePass`): until `ExpireDate`, ended once `Used`.
//! - **Bookings** of a resource: `FromTime − lead` to `ToTime + lag` (tenant policy, 15 min by
//!   default); tentative ones grant nothing until confirmed. A booking moved or deleted before it
//!   starts only changes a stored window, and memberships are added when a window starts, so no
//!   membership is ever created for it.
//! - **Contracts**: one entitlement per desk or office in `Desks` (office when the FloorPlanDesk's
//!   `ItemType` is 1), `StartDate` to `CancellationDate` (open-ended without one).
//! - **Teams**: every member of a team gets the contracts of its paying member (`t{team}-…`
//!   entitlements). Whichever member's refresh reads the team writes them for all members (and
//!   ends them for members who left, remembered in `TENANT#t / NXTEAM#id`), then sets a timer
//!   for each changed member so the tick reconciles them in their own FIFO group.
//! - **Visitors** are subjects of their own (`v{visitor id}`): the tenant's `visitors` item from
//!   `ExpectedArrival − lead` to the end of that local day (or `DepartureDate` when earlier).
//! - A customer with `Active = false` is suspended: a revocation overlay on the profile that
//!   grants nothing until a newer version lifts it.

use std::collections::HashMap;

use async_trait::async_trait;
use chrono::Duration;
use serde_json::Value;

use super::client::NexudusClient;
use super::coalesce::{Coalescer, Snapshot};
use super::dto::{Booking, Coworker, CoworkerTimePass};
pub use super::entitlements::{
    ContractDesks, booking_entitlement, contract_entitlement, pass_entitlement, profile_of, visit_entitlement,
};
use super::reads::{ListedKind, ListingCost, read_listed};
use super::refresh::forget;
pub use super::rules::{NexudusRules, Reads};
use crate::error::{CallError, WorkError};
use crate::model::{Entitlement, Instant, ItemKind, ItemRef, Seen, SourceKind, SubjectKey, TenantId};
use crate::sources::{Hint, Listing, Proof, Refreshed, Source, Stored};
use crate::store::Records;

/// Why an entitlement of a kind no mapping uses is ended.
pub(super) const NOT_MAPPED: &str = "no mapping uses this kind any more";

/// The Nexudus source of one tenant.
pub struct NexudusSource {
    pub(super) tenant: TenantId,
    pub(super) client: NexudusClient,
    pub(super) rules: NexudusRules,
    /// Reads shared by refreshes that wait for Nexudus at the same time.
    coworkers: Coalescer<Option<Coworker>>,
    passes: Coalescer<Vec<CoworkerTimePass>, Instant>,
    bookings: Coalescer<Vec<Booking>, Instant>,
    pass_listing: Snapshot<Vec<CoworkerTimePass>>,
    booking_listing: Snapshot<Vec<Booking>>,
    /// When listing every pass (or booking) pays; until one is seen, a listing is taken to
    /// cost [`FIRST_LISTING_PAGES`].
    pass_cost: ListingCost,
    booking_cost: ListingCost,
}

/// What a first listing of a kind is assumed to cost, in pages.
const FIRST_LISTING_PAGES: usize = 5;

impl NexudusSource {
    pub fn new(tenant: TenantId, client: NexudusClient, rules: NexudusRules) -> Self {
        Self {
            tenant,
            client,
            rules,
            coworkers: Coalescer::default(),
            passes: Coalescer::default(),
            bookings: Coalescer::default(),
            pass_listing: Snapshot::default(),
            booking_listing: Snapshot::default(),
            pass_cost: ListingCost::new(FIRST_LISTING_PAGES),
            booking_cost: ListingCost::new(FIRST_LISTING_PAGES),
        }
    }

    /// The customer as Nexudus holds it (`None`: 404), read with everyone else's waiting:
    /// one batch by id (`?id=[…]`, which carries `Teams`).
    async fn read_coworker(&self, id: i64) -> Result<Option<Coworker>, CallError> {
        let client = &self.client;
        let batch = move |ids: Vec<(i64, ())>| async move {
            let ids: Vec<i64> = ids.into_iter().map(|(id, ())| id).collect();
            if let [only] = ids[..] {
                return Ok(HashMap::from([(only, client.coworker(only).await?)]));
            }
            Ok(client.coworkers_by_ids(&ids).await?.into_iter().map(|c| (c.id, Some(c))).collect())
        };
        self.coworkers.get(id, (), batch, move |i| client.coworker(i)).await
    }

    /// The customer's passes, as read after `since` (the webhook's arrival): see [`read_listed`].
    pub(super) async fn read_passes(
        &self,
        id: i64,
        since: Instant,
        stored: Stored<'_>,
    ) -> Result<Vec<CoworkerTimePass>, CallError> {
        let client = &self.client;
        let kind = ListedKind { coalescer: &self.passes, listing: &self.pass_listing, cost: &self.pass_cost };
        read_listed(
            kind,
            id,
            since,
            stored,
            move |i| client.time_passes_for(i),
            move || client.all_time_passes(None),
            |p| p.coworker_id,
        )
        .await
    }

    /// The customer's bookings ending from `ends_from`, read as [`Self::read_passes`].
    pub(super) async fn read_bookings(
        &self,
        id: i64,
        ends_from: &str,
        since: Instant,
        stored: Stored<'_>,
    ) -> Result<Vec<Booking>, CallError> {
        let client = &self.client;
        let kind = ListedKind {
            coalescer: &self.bookings,
            listing: &self.booking_listing,
            cost: &self.booking_cost,
        };
        let one = move |i| client.bookings_for(i, ends_from);
        read_listed(
            kind,
            id,
            since,
            stored,
            one,
            move || client.all_bookings(None, ends_from),
            |b| b.coworker_id,
        )
        .await
    }

    pub fn client(&self) -> &NexudusClient {
        &self.client
    }
}

/// The person id of a visitor subject (visitors are not customers and have ids of their own).
pub fn visitor_person(visitor_id: i64) -> String {
    format!("v{visitor_id}")
}

pub(super) fn visitor_id(subject: &SubjectKey) -> Option<i64> {
    subject.person.strip_prefix('v').and_then(|id| id.parse().ok())
}

pub(super) fn coworker_id(subject: &SubjectKey) -> Result<i64, WorkError> {
    subject
        .person
        .parse()
        .map_err(|_| WorkError::BadMessage(format!("Nexudus person id {:?} is not a number", subject.person)))
}

/// A coworker DTO in the payload (not a pass or booking, which name their customer in `CoworkerId`).
fn payload_coworker(payload: Option<&Value>) -> Option<Coworker> {
    let p = payload?;
    if p.get("CoworkerId").is_some() || p.get("TeamMembers").is_some() || p.get("PayingMemberId").is_some() {
        return None;
    }
    serde_json::from_value(p.clone()).ok()
}

/// The team a `Team*` webhook is about.
pub(super) fn payload_team(hint: &Hint) -> Option<i64> {
    hint.action.starts_with("Team").then(|| hint.payload.as_ref()?.get("Id")?.as_i64()).flatten()
}

#[async_trait]
impl Source for NexudusSource {
    fn kind(&self) -> SourceKind {
        SourceKind::Nexudus
    }

    /// Pass products and floor-plan desks and offices (resources are typed by id).
    async fn items(&self) -> Result<Vec<crate::sources::SourceItem>, WorkError> {
        let mut items: Vec<crate::sources::SourceItem> = self
            .client
            .time_pass_products()
            .await?
            .into_iter()
            .map(|p| crate::sources::SourceItem {
                name: p.name.unwrap_or_else(|| format!("pass {}", p.id)),
                item: ItemRef { kind: ItemKind::Pass, id: p.id.to_string() },
            })
            .collect();
        for r in self.client.resources().await? {
            let name = r.name.clone().unwrap_or_else(|| format!("resource {}", r.id));
            let name = if r.archived { format!("{name} (archived)") } else { name };
            items.push(crate::sources::SourceItem {
                name,
                item: ItemRef { kind: ItemKind::Resource, id: r.id.to_string() },
            });
        }
        for d in self.client.floor_plan_desks().await? {
            let kind = if d.is_office() { ItemKind::Office } else { ItemKind::Desk };
            items.push(crate::sources::SourceItem {
                name: d.name.clone().unwrap_or_else(|| format!("{} {}", kind.as_str(), d.id)),
                item: ItemRef { kind, id: d.id.to_string() },
            });
        }
        Ok(items)
    }

    async fn refresh(
        &self,
        subject: &SubjectKey,
        hint: &Hint,
        stored: Stored<'_>,
        read: &mut Refreshed,
    ) -> Result<(), WorkError> {
        if let Some(visitor) = visitor_id(subject) {
            return self.refresh_visitor(subject, visitor, hint, stored, read).await;
        }
        let id = coworker_id(subject)?;
        let now = stored.now();

        // A delete hint proves nothing (the action in the URL is not signed, and update and
        // delete bodies are alike): the source confirms the person is gone before anything is
        // revoked. A person the API still returns is simply refreshed.
        if hint.action == "CoworkerDelete" && self.confirmed_gone(id, stored.profile(subject).await?).await? {
            return forget(stored, read, subject, now, "customer deleted in Nexudus").await;
        }

        // Who: a signed payload is believed when it carries the teams and is newer than what is
        // stored; otherwise (a token-only tenant, a repeat or replay, a change within the same
        // second of `UpdatedOn`, a person Portier took for gone) the REST API is the proof.
        let known = stored.profile(subject).await?;
        let believed = match (hint.proof, payload_coworker(hint.payload.as_ref())) {
            (Proof::Signature, Some(c))
                if c.id == id
                    && hint.action != "CoworkerDelete"
                    && c.teams.is_some()
                    && c.updated_on.is_some()
                    && known
                        .as_ref()
                        .is_none_or(|s| s.gone_at.is_none() && c.updated_on > s.source_version) =>
            {
                Some(c)
            }
            _ => None,
        };
        let (coworker, seen) = match believed {
            Some(c) => (Some(c), Seen::Body),
            None => match self.read_coworker(id).await {
                Ok(c) => (c, Seen::Read(now)),
                // Nexudus answers 500 for a deleted customer. A person already recorded as
                // deleted holds nothing, so a late hint about them has nothing left to do; one
                // who returns is read again on their next webhook or resync.
                Err(e) if known.as_ref().is_some_and(|s| s.deleted) => {
                    tracing::info!(error = %e, "hint about a deleted customer; nothing to grant");
                    return Ok(());
                }
                // Never seen with an email: nothing to confirm against; the read is retried.
                Err(e) if known.as_ref().and_then(|p| p.email.as_ref()).is_none() => return Err(e.into()),
                // Gone, as the filtered list confirms: handled as not found below.
                Err(e) => {
                    self.gone_after_failed_read(id, known.clone(), e).await?;
                    (None, Seen::Read(now))
                }
            },
        };
        let Some(coworker) = coworker else {
            // Unknown to Nexudus: nothing may be granted; anything held is revoked.
            return forget(stored, read, subject, now, "customer not found in Nexudus").await;
        };
        read.profile(subject, profile_of(&coworker), seen);

        // What: passes, bookings and contracts the tenant maps, always from the REST API.
        self.refresh_passes_and_bookings(subject, id, hint, stored, read, now).await?;
        self.refresh_contracts(subject, id, &coworker, hint, stored, read, now).await
    }

    async fn list(
        &self,
        since: Option<Instant>,
        now: Instant,
        records: &Records,
    ) -> Result<Listing, WorkError> {
        self.listing(since, now, records).await
    }
}

impl NexudusSource {
    /// Bookings that ended before this can open nothing any more, so they are not read.
    pub(super) fn bookings_ending_from(&self, now: Instant) -> String {
        (now - self.rules.booking_lag - Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string()
    }
}

/// Ends the stored active entitlements `which` selects whose window has not already ended (an
/// old booking or visit that no listing shows any more is left as it was).
pub(super) async fn end_where(
    stored: Stored<'_>,
    read: &mut Refreshed,
    subject: &SubjectKey,
    now: Instant,
    reason: &str,
    which: impl Fn(&Entitlement) -> bool,
) -> Result<(), WorkError> {
    for ent in stored.entitlements(subject).await? {
        if ent.is_active() && !ent.window.has_ended(now) && which(&ent) {
            read.entitlement(subject, ent.ended(reason, now), Seen::Read(now));
        }
    }
    Ok(())
}
