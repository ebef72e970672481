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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use chrono::Duration;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::client::NexudusClient;
use super::coalesce::{Coalescer, Snapshot};
use super::dto::{Booking, Coworker, CoworkerContract, CoworkerTimePass, FloorPlanDesk, Team, Visitor};
use crate::error::{CallError, WorkError};
use crate::localtime::Zone;
use crate::model::{
    Email, Entitlement, EntitlementKind, EntitlementState, Instant, ItemKind, ItemRef, Profile, Seen,
    SourceKind, SubjectKey, TenantId, Window,
};
use crate::sources::{Hint, Listed, Listing, Proof, Source};
use crate::store::Records;

/// The tenant rules that turn Nexudus records into windows.
#[derive(Debug, Clone)]
pub struct NexudusRules {
    /// Access starts this long before a booking (`booking_lead_minutes`).
    pub booking_lead: Duration,
    /// … and ends this long after it (`booking_lag_minutes`).
    pub booking_lag: Duration,
    /// The tenant's time zone: a visit lasts to the end of the local day.
    pub zone: Zone,
    /// The entity kinds the tenant maps: only those are read.
    pub reads: Reads,
}

/// Pages a listing of `records` records takes.
fn pages(records: usize) -> usize {
    records.div_ceil(super::client::PAGE_SIZE as usize).max(1)
}

/// One kind of per-customer records that Nexudus can also list for everyone.
struct ListedKind<'a, T> {
    coalescer: &'a Coalescer<Vec<T>>,
    listing: &'a Snapshot<Vec<T>>,
    /// Pages the last listing of everything took.
    pages: &'a AtomicUsize,
}

/// One customer's records as read after `since`: from the last listing of everyone if it
/// started well after that, else read with everyone else's waiting, each alone (`one`) while
/// that is cheaper than a listing, or in one new listing of everyone (`all`).
async fn read_listed<T, One, OneF, All, AllF>(
    kind: ListedKind<'_, T>,
    id: i64,
    since: Instant,
    records: &Records,
    one: One,
    all: All,
    owner: fn(&T) -> i64,
) -> Result<Vec<T>, CallError>
where
    T: Clone + Send,
    One: Fn(i64) -> OneF + Copy,
    OneF: std::future::Future<Output = Result<Vec<T>, CallError>>,
    All: FnOnce() -> AllF,
    AllF: std::future::Future<Output = Result<Vec<T>, CallError>>,
{
    if let Some(held) = kind.listing.get(id, since) {
        return Ok(held);
    }
    let ListedKind { coalescer, listing, pages: listing_pages } = kind;
    let batch = move |ids: Vec<i64>| async move {
        if ids.len() <= listing_pages.load(Ordering::Relaxed) {
            let mut each = HashMap::new();
            for i in ids {
                each.insert(i, one(i).await?);
            }
            return Ok(each);
        }
        let started = records.now();
        let everyone = all().await?;
        listing_pages.store(pages(everyone.len()), Ordering::Relaxed);
        Ok(kept(listing, started, ids, everyone, owner))
    };
    coalescer.get(id, batch, one).await
}

/// A complete listing, grouped by customer and kept as the kind's snapshot; answers the
/// wanted ids' records (a customer it does not name holds none).
fn kept<T: Clone>(
    listing: &Snapshot<Vec<T>>,
    started: Instant,
    ids: Vec<i64>,
    all: Vec<T>,
    owner: impl Fn(&T) -> i64,
) -> HashMap<i64, Vec<T>> {
    let mut by_owner: HashMap<i64, Vec<T>> = HashMap::new();
    for record in all {
        by_owner.entry(owner(&record)).or_default().push(record);
    }
    let wanted = ids.into_iter().map(|i| (i, by_owner.get(&i).cloned().unwrap_or_default())).collect();
    listing.keep(started, by_owner);
    wanted
}

/// Why an entitlement of a kind no mapping uses is ended.
const NOT_MAPPED: &str = "no mapping uses this kind any more";

/// Which Nexudus entities a tenant's mappings can turn into access. A kind no mapping uses is
/// never read (a pass-only tenant reads no bookings or contracts: Nexudus allows 120 calls a
/// minute), and what was stored of it is ended, so a mapping added later never acts on a
/// record nobody kept up to date.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reads {
    pub passes: bool,
    pub bookings: bool,
    /// Contracts, their desks and offices, and the teams that share them.
    pub contracts: bool,
}

impl Reads {
    pub const ALL: Reads = Reads { passes: true, bookings: true, contracts: true };

    pub fn of(mappings: &[crate::model::Mapping]) -> Self {
        let maps = |kinds: &[ItemKind]| mappings.iter().any(|m| kinds.contains(&m.item.kind));
        Reads {
            passes: maps(&[ItemKind::Pass]),
            bookings: maps(&[ItemKind::Resource]),
            contracts: maps(&[ItemKind::Desk, ItemKind::Office]),
        }
    }
}

impl NexudusRules {
    pub fn of(policy: &crate::config::Policy, zone: Zone, mappings: &[crate::model::Mapping]) -> Self {
        Self {
            booking_lead: Duration::minutes(i64::from(policy.booking_lead_minutes)),
            booking_lag: Duration::minutes(i64::from(policy.booking_lag_minutes)),
            zone,
            reads: Reads::of(mappings),
        }
    }
}

/// The Nexudus source of one tenant.
pub struct NexudusSource {
    tenant: TenantId,
    client: NexudusClient,
    rules: NexudusRules,
    /// Reads shared by refreshes that wait for Nexudus at the same time.
    coworkers: Coalescer<Option<Coworker>>,
    passes: Coalescer<Vec<CoworkerTimePass>>,
    bookings: Coalescer<Vec<Booking>>,
    pass_listing: Snapshot<Vec<CoworkerTimePass>>,
    booking_listing: Snapshot<Vec<Booking>>,
    /// Pages a listing of every pass (or booking) took last time: listing everything pays
    /// once more people wait than that. Until one is seen, [`FIRST_LISTING_PAGES`].
    pass_pages: AtomicUsize,
    booking_pages: AtomicUsize,
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
            pass_pages: AtomicUsize::new(FIRST_LISTING_PAGES),
            booking_pages: AtomicUsize::new(FIRST_LISTING_PAGES),
        }
    }

    /// The customer as Nexudus holds it (`None`: 404), read with everyone else's waiting:
    /// one batch by id (`?id=[…]`, which carries `Teams`).
    async fn read_coworker(&self, id: i64) -> Result<Option<Coworker>, CallError> {
        let client = &self.client;
        let batch = move |ids: Vec<i64>| async move {
            if let [only] = ids[..] {
                return Ok(HashMap::from([(only, client.coworker(only).await?)]));
            }
            Ok(client.coworkers_by_ids(&ids).await?.into_iter().map(|c| (c.id, Some(c))).collect())
        };
        self.coworkers.get(id, batch, move |i| client.coworker(i)).await
    }

    /// The customer's passes, as read after `since` (the webhook's arrival): see [`read_listed`].
    async fn read_passes(
        &self,
        id: i64,
        since: Instant,
        records: &Records,
    ) -> Result<Vec<CoworkerTimePass>, CallError> {
        let client = &self.client;
        let kind =
            ListedKind { coalescer: &self.passes, listing: &self.pass_listing, pages: &self.pass_pages };
        read_listed(
            kind,
            id,
            since,
            records,
            move |i| client.time_passes_for(i),
            move || client.all_time_passes(None),
            |p| p.coworker_id,
        )
        .await
    }

    /// The customer's bookings ending from `ends_from`, read as [`Self::read_passes`].
    async fn read_bookings(
        &self,
        id: i64,
        ends_from: &str,
        since: Instant,
        records: &Records,
    ) -> Result<Vec<Booking>, CallError> {
        let client = &self.client;
        let kind = ListedKind {
            coalescer: &self.bookings,
            listing: &self.booking_listing,
            pages: &self.booking_pages,
        };
        let one = move |i| client.bookings_for(i, ends_from);
        read_listed(
            kind,
            id,
            since,
            records,
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

fn visitor_id(subject: &SubjectKey) -> Option<i64> {
    subject.person.strip_prefix('v').and_then(|id| id.parse().ok())
}

fn coworker_id(subject: &SubjectKey) -> Result<i64, WorkError> {
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
fn payload_team(hint: &Hint) -> Option<i64> {
    hint.action.starts_with("Team").then(|| hint.payload.as_ref()?.get("Id")?.as_i64()).flatten()
}

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

fn visitor_profile(v: &Visitor, seen_at: Instant) -> Profile {
    Profile {
        email: v.email.as_deref().and_then(|e| accepted_email(e, v.id)),
        name: v.full_name.clone().unwrap_or_default(),
        source_version: Some(v.updated_on.unwrap_or(seen_at)),
        deleted: false,
        gone_at: None,
        suspended: None,
    }
}

/// Team members as Portier last saw them (`TENANT#t / NXTEAM#id`), so members who left are found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct TeamRecord {
    members: BTreeSet<i64>,
}

fn team_key(team: i64) -> String {
    format!("NXTEAM#{team}")
}

/// Reads during one refresh or listing, each at most once (contracts by customer, desks by id).
#[derive(Default)]
struct ReadCache {
    contracts: HashMap<i64, Vec<ContractDesks>>,
    desks: HashMap<i64, Option<FloorPlanDesk>>,
}

impl NexudusSource {
    /// A customer's contracts that can still grant (window not over), each read by id for its
    /// `Desks`, with every desk's `ItemType`.
    async fn contracts_of(
        &self,
        coworker: i64,
        listed: Option<Vec<CoworkerContract>>,
        now: Instant,
        cache: &mut ReadCache,
    ) -> Result<Vec<ContractDesks>, WorkError> {
        if let Some(found) = cache.contracts.get(&coworker) {
            return Ok(found.clone());
        }
        let listed = match listed {
            Some(l) => l,
            None => self.client.contracts_for(coworker).await?,
        };
        let mut out = Vec::new();
        for c in listed.iter().filter(|c| c.coworker_id == coworker) {
            if c.cancellation_date.is_some_and(|d| d <= now) {
                continue;
            }
            let Some(full) = self.client.contract(c.id).await? else { continue };
            let mut desks = Vec::new();
            for id in full.desks.clone().unwrap_or_default() {
                let desk = match cache.desks.get(&id) {
                    Some(known) => known.clone(),
                    None => {
                        let read = self.client.desk(id).await?;
                        cache.desks.insert(id, read.clone());
                        read
                    }
                };
                match desk {
                    Some(d) => desks.push(d),
                    None => tracing::warn!(
                        contract = c.id,
                        desk = id,
                        "contract names a desk Nexudus does not have"
                    ),
                }
            }
            out.push(ContractDesks { contract: full, desks });
        }
        cache.contracts.insert(coworker, out.clone());
        Ok(out)
    }

    /// The team entitlements of every current member (the paying member holds the contracts
    /// and gets none through the team).
    async fn team_entitlements(
        &self,
        team: &Team,
        now: Instant,
        cache: &mut ReadCache,
    ) -> Result<BTreeMap<i64, Vec<Entitlement>>, WorkError> {
        let members: BTreeSet<i64> = team.team_members.clone().unwrap_or_default().into_iter().collect();
        let contracts = match team.paying_member_id {
            Some(p) => self.contracts_of(p, None, now, cache).await?,
            None => Vec::new(),
        };
        let ents: Vec<Entitlement> = contracts
            .iter()
            .flat_map(|cd| cd.desks.iter().map(|d| contract_entitlement(&cd.contract, d, Some(team), now)))
            .collect();
        Ok(members
            .into_iter()
            .filter(|m| Some(*m) != team.paying_member_id)
            .map(|m| (m, ents.clone()))
            .collect())
    }

    /// Brings every member (current and former) of one team up to date, except `subject`
    /// itself, whose team entitlements are returned. Changed members get a timer at `now`.
    async fn sync_team(
        &self,
        subject: &SubjectKey,
        team: &Team,
        deleted: bool,
        records: &Records,
        cache: &mut ReadCache,
    ) -> Result<Vec<Entitlement>, WorkError> {
        let now = records.now();
        let me = coworker_id(subject)?;
        let mut per_member =
            if deleted { BTreeMap::new() } else { self.team_entitlements(team, now, cache).await? };
        let stored: Option<TeamRecord> = records.tenant_record(&subject.tenant, &team_key(team.id)).await?;
        let current = TeamRecord { members: per_member.keys().copied().collect() };
        // Members who left (or all of them, the team being deleted) hold nothing through it.
        for left in stored.iter().flat_map(|s| s.members.iter()) {
            per_member.entry(*left).or_default();
        }
        let mine = per_member.remove(&me).unwrap_or_default();
        for (member, ents) in per_member {
            let other = SubjectKey::new(&subject.tenant, SourceKind::Nexudus, member.to_string());
            if self.sync_team_member(&other, member, team.id, &ents, records).await? {
                records.set_timer(&other, now).await?;
            }
        }
        if stored.as_ref() != Some(&current) {
            records.put_tenant_record(&subject.tenant, &team_key(team.id), &current).await?;
        }
        Ok(mine)
    }

    /// Saves a member's entitlements through one team and ends the ones it no longer gives.
    /// A member Portier has never seen is read first: access needs their email.
    async fn sync_team_member(
        &self,
        subject: &SubjectKey,
        member: i64,
        team: i64,
        ents: &[Entitlement],
        records: &Records,
    ) -> Result<bool, WorkError> {
        let now = records.now();
        if !ents.is_empty() && records.profile(subject).await?.is_none() {
            match self.client.coworker(member).await? {
                Some(c) => {
                    records.save_profile(subject, &profile_of(&c), Seen::Read(now)).await?;
                }
                None => return Ok(false),
            }
        }
        let mut changed = false;
        for e in ents {
            changed |= records.save_entitlement(subject, e, Seen::Read(now)).await?;
        }
        let keys: Vec<String> = ents.iter().map(Entitlement::key).collect();
        let prefix = format!("t{team}-");
        changed |= end_where(records, subject, now, "no longer in the team in Nexudus", |e| {
            e.kind == EntitlementKind::Contract && e.id.starts_with(&prefix) && !keys.contains(&e.key())
        })
        .await?;
        Ok(changed)
    }

    /// True when Nexudus confirms the customer no longer exists: the read by id answers 404,
    /// or (Nexudus answers a deleted customer's read with 500) the list filtered by their last
    /// known email does not hold them. Anything else is not a confirmation.
    async fn confirmed_gone(&self, id: i64, known: Option<Profile>) -> Result<bool, WorkError> {
        match self.client.coworker(id).await {
            Ok(found) => Ok(found.is_none()),
            Err(failed) => self.gone_after_failed_read(id, known, failed).await.map(|()| true),
        }
    }

    /// After the read by id failed: `Ok` when the list filtered by the last known email does
    /// not hold the customer (Nexudus answers a deleted customer's read with 500), else the error.
    async fn gone_after_failed_read(
        &self,
        id: i64,
        known: Option<Profile>,
        failed: crate::error::CallError,
    ) -> Result<(), WorkError> {
        let Some(email) = known.and_then(|p| p.email) else {
            // Never seen with an email: Portier holds nothing for them to revoke.
            return Ok(());
        };
        match self.client.coworkers_by_email(email.as_str()).await {
            Ok(list) if list.iter().all(|c| c.id != id) => Ok(()),
            // Listed, yet unreadable: ask again later.
            Ok(_) => Err(failed.into()),
            Err(e) => Err(e.into()),
        }
    }

    async fn refresh_visitor(
        &self,
        subject: &SubjectKey,
        id: i64,
        hint: &Hint,
        records: &Records,
    ) -> Result<(), WorkError> {
        let now = records.now();
        let visits = |e: &Entitlement| e.kind == EntitlementKind::Visit;
        if hint.action == "VisitorDeleted" {
            end_where(records, subject, now, "visitor deleted in Nexudus", visits).await?;
            return Ok(());
        }
        let signed = match (hint.proof, hint.payload.as_ref()) {
            (Proof::Signature, Some(p)) => {
                serde_json::from_value::<Visitor>(p.clone()).ok().filter(|v| v.id == id)
            }
            _ => None,
        };
        let (visitor, seen) = match signed {
            Some(v) => (Some(v), Seen::Body),
            None => (self.client.visitor(id).await?, Seen::Read(now)),
        };
        let Some(v) = visitor else {
            end_where(records, subject, now, "visitor not found in Nexudus", visits).await?;
            return Ok(());
        };
        records.save_profile(subject, &visitor_profile(&v, now), seen).await?;
        let ent = visit_entitlement(&v, &self.rules, now).map_err(WorkError::BadMessage)?;
        records.save_entitlement(subject, &ent, seen).await?;
        Ok(())
    }
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

    async fn refresh(&self, subject: &SubjectKey, hint: &Hint, records: &Records) -> Result<(), WorkError> {
        if let Some(visitor) = visitor_id(subject) {
            return self.refresh_visitor(subject, visitor, hint, records).await;
        }
        let id = coworker_id(subject)?;
        let now = records.now();
        let mut cache = ReadCache::default();

        // A delete hint proves nothing (the action in the URL is not signed, and update and
        // delete bodies are alike): the source confirms the person is gone before anything is
        // revoked. A person the API still returns is simply refreshed.
        if hint.action == "CoworkerDelete" && self.confirmed_gone(id, records.profile(subject).await?).await?
        {
            let profile = records.profile(subject).await?.unwrap_or(Profile {
                email: None,
                name: String::new(),
                source_version: None,
                deleted: true,
                gone_at: None,
                suspended: None,
            });
            records.save_profile(subject, &profile.gone(now), Seen::Read(now)).await?;
            end_where(records, subject, now, "customer deleted in Nexudus", |_| true).await?;
            return Ok(());
        }

        // Who: a signed payload is believed when it carries the teams and is newer than what is
        // stored; otherwise (a token-only tenant, a repeat or replay, a change within the same
        // second of `UpdatedOn`, a person Portier took for gone) the REST API is the proof.
        let stored = records.profile(subject).await?;
        let believed = match (hint.proof, payload_coworker(hint.payload.as_ref())) {
            (Proof::Signature, Some(c))
                if c.id == id
                    && hint.action != "CoworkerDelete"
                    && c.teams.is_some()
                    && c.updated_on.is_some()
                    && stored
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
                Err(e) if stored.as_ref().is_some_and(|s| s.deleted) => {
                    tracing::info!(error = %e, "hint about a deleted customer; nothing to grant");
                    return Ok(());
                }
                // Never seen with an email: nothing to confirm against; the read is retried.
                Err(e) if stored.as_ref().and_then(|p| p.email.as_ref()).is_none() => return Err(e.into()),
                // Gone, as the filtered list confirms: handled as not found below.
                Err(e) => {
                    self.gone_after_failed_read(id, stored.clone(), e).await?;
                    (None, Seen::Read(now))
                }
            },
        };
        let Some(coworker) = coworker else {
            // Unknown to Nexudus: nothing may be granted; anything held is revoked.
            let known = records.profile(subject).await?.unwrap_or(Profile {
                email: None,
                name: String::new(),
                source_version: None,
                deleted: true,
                gone_at: None,
                suspended: None,
            });
            records.save_profile(subject, &known.gone(now), Seen::Read(now)).await?;
            end_where(records, subject, now, "customer not found in Nexudus", |_| true).await?;
            return Ok(());
        };
        records.save_profile(subject, &profile_of(&coworker), seen).await?;

        // What: passes, bookings and contracts the tenant maps, always from the REST API.
        let reads = self.rules.reads;
        let passes =
            if reads.passes { self.read_passes(id, hint.received_at, records).await? } else { Vec::new() };
        let mut present = BTreeSet::new();
        for pass in passes.iter().filter(|p| p.coworker_id == id) {
            let ent = pass_entitlement(pass, now);
            present.insert(ent.key());
            records.save_entitlement(subject, &ent, Seen::Read(now)).await?;
        }
        end_where(
            records,
            subject,
            now,
            if reads.passes { "pass removed in Nexudus" } else { NOT_MAPPED },
            |e| e.kind == EntitlementKind::Pass && !present.contains(&e.key()),
        )
        .await?;

        let bookings = if reads.bookings {
            self.read_bookings(id, &self.bookings_ending_from(now), hint.received_at, records).await?
        } else {
            Vec::new()
        };
        let mut present = BTreeSet::new();
        for b in bookings.iter().filter(|b| b.coworker_id == id) {
            let ent = booking_entitlement(b, &self.rules, now);
            present.insert(ent.key());
            records.save_entitlement(subject, &ent, Seen::Read(now)).await?;
        }
        end_where(
            records,
            subject,
            now,
            if reads.bookings { "booking deleted in Nexudus" } else { NOT_MAPPED },
            |e| e.kind == EntitlementKind::Booking && !present.contains(&e.key()),
        )
        .await?;

        let mut contracts: Vec<Entitlement> = Vec::new();
        if reads.contracts {
            contracts.extend(
                self.contracts_of(id, None, now, &mut cache)
                    .await?
                    .iter()
                    .flat_map(|cd| cd.desks.iter().map(|d| contract_entitlement(&cd.contract, d, None, now))),
            );
        }
        // Teams: the customer's own list, and the team a `Team*` hint names (they may have left it).
        let mut teams: BTreeSet<i64> = coworker.teams.clone().unwrap_or_default().into_iter().collect();
        teams.extend(payload_team(hint));
        if !reads.contracts {
            teams.clear();
        }
        // Members come from the team as Nexudus holds it, never from a webhook body; a team
        // Nexudus no longer has (`TeamDeleted`, confirmed here) gives nobody anything.
        for team_id in teams {
            match self.client.team(team_id).await? {
                Some(team) => {
                    contracts.extend(self.sync_team(subject, &team, false, records, &mut cache).await?)
                }
                None => {
                    let gone = Team {
                        id: team_id,
                        name: None,
                        team_members: None,
                        paying_member_id: None,
                        updated_on: None,
                    };
                    self.sync_team(subject, &gone, true, records, &mut cache).await?;
                }
            }
        }
        let present: BTreeSet<String> = contracts.iter().map(Entitlement::key).collect();
        for ent in &contracts {
            records.save_entitlement(subject, ent, Seen::Read(now)).await?;
        }
        end_where(
            records,
            subject,
            now,
            if reads.contracts { "contract, desk or team membership ended in Nexudus" } else { NOT_MAPPED },
            |e| e.kind == EntitlementKind::Contract && !present.contains(&e.key()),
        )
        .await?;
        Ok(())
    }

    async fn list(
        &self,
        since: Option<Instant>,
        now: Instant,
        records: &Records,
    ) -> Result<Listing, WorkError> {
        // Nexudus filters by minute; a minute of overlap costs nothing (merging is monotonic).
        let from = since.map(|t| (t - Duration::minutes(1)).format("%Y-%m-%dT%H:%M").to_string());
        let from = from.as_deref();
        let coworkers = self.client.all_coworkers(from).await?;
        let mut people: BTreeMap<String, Listed> = coworkers
            .iter()
            .map(|c| {
                let listed = Listed {
                    person: c.id.to_string(),
                    profile: Some(profile_of(c)),
                    entitlements: Vec::new(),
                };
                (c.id.to_string(), listed)
            })
            .collect();
        let mut ents: Vec<(String, Entitlement)> = Vec::new();
        let reads = self.rules.reads;
        if reads.passes {
            for pass in self.client.all_time_passes(from).await? {
                ents.push((pass.coworker_id.to_string(), pass_entitlement(&pass, now)));
            }
        }
        if reads.bookings {
            for b in self.client.all_bookings(from, &self.bookings_ending_from(now)).await? {
                ents.push((b.coworker_id.to_string(), booking_entitlement(&b, &self.rules, now)));
            }
        }

        // Contracts (read by id for their desks), grouped by customer.
        let mut cache = ReadCache::default();
        let mut by_customer: BTreeMap<i64, Vec<CoworkerContract>> = BTreeMap::new();
        if reads.contracts {
            for c in self.client.all_contracts(from).await? {
                by_customer.entry(c.coworker_id).or_default().push(c);
            }
        }
        let changed_holders: BTreeSet<i64> = by_customer.keys().copied().collect();
        for (customer, listed) in by_customer {
            // An incremental listing names only changed contracts; the customer's others are read.
            let listed = if since.is_none() { Some(listed) } else { None };
            for cd in self.contracts_of(customer, listed, now, &mut cache).await? {
                for d in &cd.desks {
                    ents.push((customer.to_string(), contract_entitlement(&cd.contract, d, None, now)));
                }
            }
        }
        // Teams: all of them (lists are cheap), read by id for their members when they can
        // matter: in a full listing when the paying member holds contracts, in an incremental
        // one when the team or the paying member's contracts changed.
        let changed_teams: BTreeSet<i64> = match from {
            Some(f) if reads.contracts => {
                self.client.all_teams(Some(f)).await?.iter().map(|t| t.id).collect()
            }
            _ => BTreeSet::new(),
        };
        let teams = if reads.contracts { self.client.all_teams(None).await? } else { Vec::new() };
        for listed in teams {
            let Some(paying) = listed.paying_member_id else { continue };
            let relevant = match since {
                None => cache.contracts.get(&paying).is_some_and(|c| !c.is_empty()),
                Some(_) => changed_teams.contains(&listed.id) || changed_holders.contains(&paying),
            };
            if !relevant {
                continue;
            }
            let Some(team) = self.client.team(listed.id).await? else { continue };
            let per_member = self.team_entitlements(&team, now, &mut cache).await?;
            // Members who left since Portier last saw the team lose what it gave them (an
            // incremental listing sweeps nothing by itself).
            let stored: Option<TeamRecord> = records.tenant_record(&self.tenant, &team_key(team.id)).await?;
            let prefix = format!("t{}-", team.id);
            for left in stored.iter().flat_map(|s| s.members.iter()).filter(|m| !per_member.contains_key(m)) {
                let subject = SubjectKey::new(&self.tenant, SourceKind::Nexudus, left.to_string());
                for e in records.entitlements(&subject).await? {
                    if e.kind == EntitlementKind::Contract && e.id.starts_with(&prefix) && e.is_active() {
                        ents.push((left.to_string(), e.ended("no longer in the team in Nexudus", now)));
                    }
                }
            }
            for (member, member_ents) in per_member {
                ents.extend(member_ents.into_iter().map(|e| (member.to_string(), e)));
            }
        }
        // Visitors expected or checked in from yesterday on: older visits are over.
        // The filter reads business-local time, as the visitor times are (see `VisitTime`).
        let arriving_from = self
            .rules
            .zone
            .local_of(now - Duration::days(1))
            .map_err(WorkError::BadMessage)?
            .format("%Y-%m-%dT%H:%M")
            .to_string();
        for v in self.client.all_visitors(from, &arriving_from).await? {
            let person = visitor_person(v.id);
            let ent = visit_entitlement(&v, &self.rules, now).map_err(WorkError::BadMessage)?;
            people.insert(
                person.clone(),
                Listed { person, profile: Some(visitor_profile(&v, now)), entitlements: vec![ent] },
            );
        }
        for (person, ent) in ents {
            match people.get_mut(&person) {
                Some(listed) => listed.entitlements.push(ent),
                // In a full listing, an entitlement of a customer not listed belongs to nobody
                // Portier can grant; in an incremental one, the customer simply did not change.
                None if since.is_some() => {
                    people.insert(person.clone(), Listed { person, profile: None, entitlements: vec![ent] });
                }
                None => {}
            }
        }
        Ok(Listing { complete: since.is_none(), people: people.into_values().collect() })
    }
}

impl NexudusSource {
    /// Bookings that ended before this can open nothing any more, so they are not read.
    fn bookings_ending_from(&self, now: Instant) -> String {
        (now - self.rules.booking_lag - Duration::hours(1)).format("%Y-%m-%dT%H:%M").to_string()
    }
}

/// Ends the active entitlements `which` selects whose window has not already ended (an old
/// booking or visit that no listing shows any more is left as it was). True if any changed.
async fn end_where(
    records: &Records,
    subject: &SubjectKey,
    now: Instant,
    reason: &str,
    which: impl Fn(&Entitlement) -> bool,
) -> Result<bool, WorkError> {
    let mut changed = false;
    for ent in records.entitlements(subject).await? {
        if ent.is_active() && !ent.window.has_ended(now) && which(&ent) {
            changed |= records.save_entitlement(subject, &ent.ended(reason, now), Seen::Read(now)).await?;
        }
    }
    Ok(changed)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

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
