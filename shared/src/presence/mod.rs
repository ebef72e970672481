//! Presence tracking: a door opened becomes a Nexudus check-in (or check-out).
//!
//! Door events come from the lock systems: Brivo pushes them (an event subscription posting to
//! `POST /hooks/brivo/{tenant}`), Salto KS entries are polled from the tick with a cursor in
//! the store. Either way an event of a chosen door lands in the tenant's *inbox* record,
//! keyed by the provider's event id, and the tick works the inbox in time order: the
//! provider user is mapped back to the person through the ids Portier stored when it created
//! the user, Nexudus is read for an open check-in, and at most one write is made. Throttling
//! leaves the event in the inbox for the next tick; a done marker per event id makes
//! redeliveries harmless. The records are the same on both runtimes (SQLite or DynamoDB).

pub mod brivo;
pub mod records;
pub mod salto;

use serde::{Deserialize, Serialize};

use crate::config::{DoorAction, PresenceConfig};
use crate::error::{CallError, WorkError};
use crate::model::{Instant, ProviderKind, SubjectKey, TenantId};
use crate::store::Records;
use crate::store::records::AuditEntry;
use crate::tenants::{TenantRuntime, Tenants};

pub use records::{Cursor, PresenceState, UnknownUser};

/// One door opening as a lock system reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoorEvent {
    pub provider: ProviderKind,
    /// The provider's id of the event (Brivo `uuid`, Salto KS entry `id`): the dedup key.
    pub event_id: String,
    /// The lock (Salto KS) or access point (Brivo) that opened.
    pub door: String,
    /// The provider's user id (Salto KS platform user id, Brivo user id).
    pub user: String,
    pub at: Instant,
}

/// What became of one door event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    CheckedIn,
    CheckedOut,
    /// A check-in door opened for someone already checked in (another door, or NexIO).
    AlreadyIn,
    /// A check-out door opened for someone not checked in.
    NotIn,
    /// The provider user is not one Portier created: recorded, nothing written.
    UnknownUser,
    /// Nexudus refused the write for good (no valid pass, say): recorded, not retried.
    Refused,
    /// Already done (a redelivery).
    Duplicate,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::CheckedIn => "checked in",
            Outcome::CheckedOut => "checked out",
            Outcome::AlreadyIn => "already checked in",
            Outcome::NotIn => "not checked in",
            Outcome::UnknownUser => "unknown user",
            Outcome::Refused => "refused by Nexudus",
            Outcome::Duplicate => "duplicate",
        }
    }
}

/// What the ingress or a poll did with an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored in the inbox; the tick checks the person in or out.
    Queued,
    /// Seen before (waiting or done).
    Duplicate,
    /// Not a door of `[tenant.presence]`: nothing stored.
    NotChosen,
}

/// Stores `ev` in the tenant's inbox unless its door was not chosen or it was seen before.
pub async fn accept(
    records: &Records,
    tenant: &TenantId,
    config: &PresenceConfig,
    ev: &DoorEvent,
) -> Result<Accepted, crate::error::InfraError> {
    if config.doors(ev.provider).and_then(|d| d.action(&ev.door)).is_none() {
        return Ok(Accepted::NotChosen);
    }
    let r = records::PresenceRecords::new(records, tenant);
    if r.done(ev).await? {
        return Ok(Accepted::Duplicate);
    }
    Ok(if r.enqueue(ev).await? { Accepted::Queued } else { Accepted::Duplicate })
}

/// What one tick did for presence, over all tenants.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TickReport {
    /// Door events read from Salto KS entries into inboxes.
    pub polled: usize,
    /// Events worked (any outcome).
    pub worked: usize,
    /// Events left in an inbox for the next tick (Nexudus throttled or failed).
    pub waiting: usize,
}

/// The presence part of the tick: for every tenant with `[tenant.presence]`, polls the Salto KS
/// entries when due (one poll loop per tenant under a lease) and works the inbox.
/// A tenant's failure is logged and kept for `status`; the others go on.
pub async fn tick(records: &Records, tenants: &dyn Tenants) -> Result<TickReport, WorkError> {
    let mut report = TickReport::default();
    for id in tenants.ids().await? {
        // A stored document without `presence` needs no clients built (on Lambda that would
        // read the tenant's secrets every minute for nothing).
        if records
            .tenant_config(&id)
            .await?
            .is_some_and(|doc| doc.get("presence").is_none_or(|p| p.is_null()))
        {
            continue;
        }
        let tenant = match tenants.get(&id).await {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "presence: tenant not loaded");
                continue;
            }
        };
        if tenant.config.presence.is_none() {
            continue;
        }
        match tick_tenant(records, &tenant).await {
            Ok(r) => {
                report.polled += r.polled;
                report.worked += r.worked;
                report.waiting += r.waiting;
            }
            Err(e) => {
                tracing::warn!(tenant = %id, error = %e, "presence: tick failed; the next one goes on");
                let _ = records::PresenceRecords::new(records, &id).note_error(&e.to_string()).await;
            }
        }
    }
    Ok(report)
}

/// [`tick`] for one tenant.
pub async fn tick_tenant(records: &Records, tenant: &TenantRuntime) -> Result<TickReport, WorkError> {
    let Some(config) = &tenant.config.presence else { return Ok(TickReport::default()) };
    let mut report = TickReport::default();
    if let (Some(doors), Some(salto)) = (&config.salto_ks, tenant.salto()) {
        report.polled = salto::poll(records, &tenant.config.id, config, doors, salto.client()).await?;
    }
    let (worked, waiting) = work_inbox(records, tenant, config).await?;
    report.worked = worked;
    report.waiting = waiting;
    Ok(report)
}

/// Works the tenant's inbox oldest first, under the tenant's inbox lease (one worker at a
/// time, so two ticks never check the same person in twice). Stops at the first retryable
/// failure: that event and the later ones wait for the next tick, in order.
/// Returns (worked, left waiting).
async fn work_inbox(
    records: &Records,
    tenant: &TenantRuntime,
    config: &PresenceConfig,
) -> Result<(usize, usize), WorkError> {
    let r = records::PresenceRecords::new(records, &tenant.config.id);
    let Some(lease) = r.acquire_lease("inbox").await? else { return Ok((0, 0)) };
    let result = async {
        let inbox = r.inbox().await?;
        let Some(nexudus) = tenant.nexudus() else {
            return Err(WorkError::Call(CallError::config("presence needs a Nexudus source")));
        };
        let (mut worked, mut refused) = (0, false);
        for (i, (sk, ev)) in inbox.iter().enumerate() {
            match work(records, &tenant.config.id, config, nexudus.client(), ev).await {
                Ok(_) => {
                    r.remove_from_inbox(sk).await?;
                    worked += 1;
                }
                Err(WorkError::Call(CallError::Retryable { reason, .. })) => {
                    tracing::info!(tenant = %tenant.config.id, reason = %reason, "presence: Nexudus busy; events wait for the next tick");
                    r.note_error(&format!("waiting: {reason}")).await?;
                    return Ok((worked, inbox.len() - i));
                }
                // This event cannot succeed (Nexudus refused a read for it): recorded and
                // not retried, so it does not hold up the events after it.
                Err(WorkError::Call(CallError::Permanent { reason } | CallError::Unavailable { reason })) => {
                    r.mark_done(ev, Outcome::Refused, Some(&reason)).await?;
                    r.note_error(&format!("door event {} refused: {reason}", ev.event_id)).await?;
                    r.remove_from_inbox(sk).await?;
                    worked += 1;
                    refused = true;
                }
                // Configuration: stop calling Nexudus for the tenant; the events wait.
                Err(e) => return Err(e),
            }
        }
        // A run that worked everything clears the last problem (a throttle that has passed).
        if worked > 0 && !refused {
            r.clear_error().await?;
        }
        Ok((worked, 0))
    }
    .await;
    r.release_lease(&lease).await?;
    result
}

/// Works one event: exactly one Nexudus write at most, none when it was done before.
pub async fn work(
    records: &Records,
    tenant: &TenantId,
    config: &PresenceConfig,
    nexudus: &crate::sources::nexudus::client::NexudusClient,
    ev: &DoorEvent,
) -> Result<Outcome, WorkError> {
    let r = records::PresenceRecords::new(records, tenant);
    if r.done(ev).await? {
        return Ok(Outcome::Duplicate);
    }
    let Some(action) = config.doors(ev.provider).and_then(|d| d.action(&ev.door)) else {
        // The door left the configuration after the event was stored.
        r.mark_done(ev, Outcome::Duplicate, None).await?;
        return Ok(Outcome::Duplicate);
    };
    let subject = r.person_of(ev.provider, &ev.user).await?;
    let Some((subject, coworker)) = subject.and_then(|s| s.person.parse::<i64>().ok().map(|c| (s, c))) else {
        r.note_unknown(ev).await?;
        r.mark_done(ev, Outcome::UnknownUser, None).await?;
        tracing::info!(tenant = %tenant, provider = ev.provider.as_str(), door = %ev.door, "presence: door opened by a user Portier did not create; recorded, nothing written");
        return Ok(Outcome::UnknownUser);
    };
    // Nexudus is the truth about who is in (NexIO, another integration or an auto check-out
    // may have changed it); one read, then at most one write.
    let recent = nexudus.recent_checkins(coworker).await?;
    let open = recent.iter().find(|c| c.to_time.is_none()).cloned();
    let action = match action {
        DoorAction::Toggle if open.is_some() => DoorAction::CheckOut,
        DoorAction::Toggle => DoorAction::CheckIn,
        a => a,
    };
    let result = match (action, open) {
        (DoorAction::CheckIn, Some(c)) => {
            r.save_state(&subject, &PresenceState::open(c.id, c.from_time.unwrap_or(ev.at), ev)).await?;
            Ok(Outcome::AlreadyIn)
        }
        (DoorAction::CheckIn, None) => match nexudus.check_in(config.business_id, coworker, ev.at).await {
            Ok(id) => {
                r.save_state(&subject, &PresenceState::open(id.unwrap_or_default(), ev.at, ev)).await?;
                Ok(Outcome::CheckedIn)
            }
            Err(CallError::Permanent { reason }) => Err(reason),
            Err(e) => return Err(e.into()),
        },
        (_, Some(c)) => match nexudus.check_out(&c, config.business_id, ev.at).await {
            Ok(()) => {
                r.save_state(&subject, &PresenceState::closed(ev)).await?;
                Ok(Outcome::CheckedOut)
            }
            Err(CallError::Permanent { reason }) => Err(reason),
            Err(e) => return Err(e.into()),
        },
        (_, None) => Ok(Outcome::NotIn),
    };
    let (outcome, reason) = match result {
        Ok(o) => (o, None),
        Err(reason) => (Outcome::Refused, Some(reason)),
    };
    let entry = AuditEntry {
        at: records.now(),
        action: format!("nexudus {}", action_name(action)),
        target: format!("{} door {}", ev.provider.name(), ev.door),
        cause: format!("door event {} at {}", ev.event_id, ev.at.format("%Y-%m-%dT%H:%M:%SZ")),
        outcome: reason.clone().unwrap_or_else(|| outcome.as_str().to_owned()),
    };
    records.audit(&subject, &entry).await?;
    r.mark_done(ev, outcome, reason.as_deref()).await?;
    tracing::info!(tenant = %tenant, provider = ev.provider.as_str(), door = %ev.door, outcome = outcome.as_str(), "presence: door event worked");
    Ok(outcome)
}

fn action_name(a: DoorAction) -> &'static str {
    match a {
        DoorAction::CheckIn => "check-in",
        DoorAction::CheckOut => "check-out",
        DoorAction::Toggle => "toggle",
    }
}

/// The presence overview of one tenant for `status` and `explain`.
#[derive(Debug, Clone, Serialize)]
pub struct PresenceStatus {
    pub business_id: i64,
    pub doors: Vec<DoorLine>,
    pub waiting: usize,
    pub unknown_users: Vec<UnknownUser>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub salto_cursor: Option<Cursor>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// One configured door.
#[derive(Debug, Clone, Serialize)]
pub struct DoorLine {
    pub provider: ProviderKind,
    pub door: String,
    pub action: DoorAction,
}

/// Every configured door with what it does.
pub fn door_lines(config: &PresenceConfig) -> Vec<DoorLine> {
    let mut doors = Vec::new();
    for kind in [ProviderKind::Salto, ProviderKind::Brivo] {
        let Some(d) = config.doors(kind) else { continue };
        for (action, list) in [
            (DoorAction::CheckIn, &d.check_in),
            (DoorAction::CheckOut, &d.check_out),
            (DoorAction::Toggle, &d.toggle),
        ] {
            doors.extend(list.iter().map(|door| DoorLine { provider: kind, door: door.clone(), action }));
        }
    }
    doors
}

/// The tenant's presence configuration with what the store knows about it.
pub async fn status(
    records: &Records,
    tenant: &TenantId,
    config: &PresenceConfig,
) -> Result<PresenceStatus, crate::error::InfraError> {
    let r = records::PresenceRecords::new(records, tenant);
    Ok(PresenceStatus {
        business_id: config.business_id,
        doors: door_lines(config),
        waiting: r.inbox().await?.len(),
        unknown_users: r.unknown_users().await?,
        salto_cursor: r.cursor(ProviderKind::Salto).await?,
        last_error: r.last_error().await?,
    })
}

/// A person's presence state (for `explain`).
pub async fn person(
    records: &Records,
    subject: &SubjectKey,
) -> Result<Option<PresenceState>, crate::error::InfraError> {
    records::PresenceRecords::new(records, &subject.tenant).state(subject).await
}
