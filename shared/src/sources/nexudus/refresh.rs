//! What a webhook means for one customer or visitor: read what it does not prove, confirm
//! what it takes away, and say how the stored profile and entitlements are to change.

use std::collections::BTreeSet;

use super::dto::{Coworker, Team, Visitor};
use super::entitlements::{
    booking_entitlement, contract_entitlement, pass_entitlement, visit_entitlement, visitor_profile,
};
use super::source::{NOT_MAPPED, NexudusSource, end_where, payload_team};
use super::teams::ReadCache;
use crate::error::WorkError;
use crate::model::{Entitlement, EntitlementKind, Instant, Profile, Seen, SubjectKey};
use crate::sources::{Hint, Proof, Refreshed, Stored};

impl NexudusSource {
    /// True when Nexudus confirms the customer no longer exists: the read by id answers 404,
    /// or (Nexudus answers a deleted customer's read with 500) the list filtered by their last
    /// known email does not hold them. Anything else is not a confirmation.
    pub(super) async fn confirmed_gone(&self, id: i64, known: Option<Profile>) -> Result<bool, WorkError> {
        match self.client.coworker(id).await {
            Ok(found) => Ok(found.is_none()),
            Err(failed) => self.gone_after_failed_read(id, known, failed).await.map(|()| true),
        }
    }

    /// After the read by id failed: `Ok` when the list filtered by the last known email does
    /// not hold the customer (Nexudus answers a deleted customer's read with 500), else the error.
    pub(super) async fn gone_after_failed_read(
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

    pub(super) async fn refresh_visitor(
        &self,
        subject: &SubjectKey,
        id: i64,
        hint: &Hint,
        stored: Stored<'_>,
        read: &mut Refreshed,
    ) -> Result<(), WorkError> {
        let now = stored.now();
        let visits = |e: &Entitlement| e.kind == EntitlementKind::Visit;
        if hint.action == "VisitorDeleted" {
            return end_where(stored, read, subject, now, "visitor deleted in Nexudus", visits).await;
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
            return end_where(stored, read, subject, now, "visitor not found in Nexudus", visits).await;
        };
        read.profile(subject, visitor_profile(&v, now), seen);
        let ent = visit_entitlement(&v, &self.rules, now).map_err(WorkError::BadMessage)?;
        read.entitlement(subject, ent, seen);
        Ok(())
    }
}

impl NexudusSource {
    /// The customer's passes and bookings as Nexudus holds them now; the ones it no longer
    /// has (or of a kind no mapping uses) end.
    pub(super) async fn refresh_passes_and_bookings(
        &self,
        subject: &SubjectKey,
        id: i64,
        hint: &Hint,
        stored: Stored<'_>,
        read: &mut Refreshed,
        now: Instant,
    ) -> Result<(), WorkError> {
        let reads = self.rules.reads;
        let passes =
            if reads.passes { self.read_passes(id, hint.received_at, stored).await? } else { Vec::new() };
        let ents = passes.iter().filter(|p| p.coworker_id == id).map(|p| pass_entitlement(p, now)).collect();
        let ended = if reads.passes { "pass removed in Nexudus" } else { NOT_MAPPED };
        replace_kind(stored, read, subject, now, EntitlementKind::Pass, ents, ended).await?;

        let bookings = if reads.bookings {
            self.read_bookings(id, &self.bookings_ending_from(now), hint.received_at, stored).await?
        } else {
            Vec::new()
        };
        let ents = bookings
            .iter()
            .filter(|b| b.coworker_id == id)
            .map(|b| booking_entitlement(b, &self.rules, now))
            .collect();
        let ended = if reads.bookings { "booking deleted in Nexudus" } else { NOT_MAPPED };
        replace_kind(stored, read, subject, now, EntitlementKind::Booking, ents, ended).await?;

        Ok(())
    }

    /// The customer's own contracts and those their teams give, as Nexudus holds them now.
    #[allow(clippy::too_many_arguments)] // one refresh's reads, threaded through its parts
    pub(super) async fn refresh_contracts(
        &self,
        subject: &SubjectKey,
        id: i64,
        coworker: &Coworker,
        hint: &Hint,
        stored: Stored<'_>,
        read: &mut Refreshed,
        now: Instant,
    ) -> Result<(), WorkError> {
        let reads = self.rules.reads;
        let mut cache = ReadCache::default();
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
                    contracts.extend(self.sync_team(subject, &team, false, stored, read, &mut cache).await?)
                }
                None => {
                    let gone = Team {
                        id: team_id,
                        name: None,
                        team_members: None,
                        paying_member_id: None,
                        updated_on: None,
                    };
                    self.sync_team(subject, &gone, true, stored, read, &mut cache).await?;
                }
            }
        }
        let ended =
            if reads.contracts { "contract, desk or team membership ended in Nexudus" } else { NOT_MAPPED };
        replace_kind(stored, read, subject, now, EntitlementKind::Contract, contracts, ended).await
    }
}

/// What Nexudus holds of one kind, and the stored ones of that kind it no longer has, ended
/// (`ended` says why).
async fn replace_kind(
    stored: Stored<'_>,
    read: &mut Refreshed,
    subject: &SubjectKey,
    now: Instant,
    kind: EntitlementKind,
    held: Vec<Entitlement>,
    ended: &str,
) -> Result<(), WorkError> {
    let present: BTreeSet<String> = held.iter().map(Entitlement::key).collect();
    for ent in held {
        read.entitlement(subject, ent, Seen::Read(now));
    }
    end_where(stored, read, subject, now, ended, |e| e.kind == kind && !present.contains(&e.key())).await
}

/// The customer is gone at Nexudus: the profile says so and every entitlement ends.
pub(super) async fn forget(
    stored: Stored<'_>,
    read: &mut Refreshed,
    subject: &SubjectKey,
    now: Instant,
    reason: &str,
) -> Result<(), WorkError> {
    let known = stored.profile(subject).await?.unwrap_or(Profile {
        email: None,
        name: String::new(),
        source_version: None,
        deleted: true,
        gone_at: None,
        suspended: None,
    });
    read.profile(subject, known.gone(now), Seen::Read(now));
    end_where(stored, read, subject, now, reason, |_| true).await
}
