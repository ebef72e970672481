//! Teams: every member gets the contracts of the team's paying member, and loses them on
//! leaving; whichever member's refresh reads the team brings all members in line.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use serde::{Deserialize, Serialize};

use super::dto::{CoworkerContract, FloorPlanDesk, Team};
use super::entitlements::{ContractDesks, contract_entitlement, profile_of};
use super::source::{NexudusSource, coworker_id, end_where};
use crate::error::WorkError;
use crate::model::{Entitlement, EntitlementKind, Instant, Seen, SourceKind, SubjectKey};
use crate::sources::{Refreshed, Stored};
use crate::store::Cond;

/// Team members as Portier last saw them (`TENANT#t / NXTEAM#id`), so members who left are found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct TeamRecord {
    pub(super) members: BTreeSet<i64>,
}

pub(super) fn team_key(team: i64) -> String {
    format!("NXTEAM#{team}")
}

/// Reads during one refresh or listing, each at most once (contracts by customer, desks by id).
#[derive(Default)]
pub(super) struct ReadCache {
    pub(super) contracts: HashMap<i64, Vec<ContractDesks>>,
    desks: HashMap<i64, Option<FloorPlanDesk>>,
}

impl NexudusSource {
    /// A customer's contracts that can still grant (window not over), each read by id for its
    /// `Desks`, with every desk's `ItemType`.
    pub(super) async fn contracts_of(
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
    pub(super) async fn team_entitlements(
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

    /// Reads every member (current and former) of one team, except `subject` itself, whose
    /// team entitlements are returned. Changed members get a timer at `now`.
    pub(super) async fn sync_team(
        &self,
        subject: &SubjectKey,
        team: &Team,
        deleted: bool,
        stored: Stored<'_>,
        read: &mut Refreshed,
        cache: &mut ReadCache,
    ) -> Result<Vec<Entitlement>, WorkError> {
        let now = stored.now();
        let me = coworker_id(subject)?;
        let mut per_member =
            if deleted { BTreeMap::new() } else { self.team_entitlements(team, now, cache).await? };
        let last: Option<TeamRecord> = stored.tenant_record(&subject.tenant, &team_key(team.id)).await?;
        let current = TeamRecord { members: per_member.keys().copied().collect() };
        // Members who left (or all of them, the team being deleted) hold nothing through it.
        for left in last.iter().flat_map(|s| s.members.iter()) {
            per_member.entry(*left).or_default();
        }
        let mine = per_member.remove(&me).unwrap_or_default();
        for (member, ents) in per_member {
            let other = SubjectKey::new(&subject.tenant, SourceKind::Nexudus, member.to_string());
            self.sync_team_member(&other, member, team.id, &ents, stored, read).await?;
            read.timer(&other, now, true);
        }
        // Written after the members: until then, a retry still finds the ones who left.
        if last.as_ref() != Some(&current) {
            read.tenant_record(&subject.tenant, &team_key(team.id), &current, Cond::Always)?;
        }
        Ok(mine)
    }

    /// Reads a member's entitlements through one team and ends the ones it no longer gives.
    /// A member Portier has never seen is read first: access needs their email.
    async fn sync_team_member(
        &self,
        subject: &SubjectKey,
        member: i64,
        team: i64,
        ents: &[Entitlement],
        stored: Stored<'_>,
        read: &mut Refreshed,
    ) -> Result<(), WorkError> {
        let now = stored.now();
        // A profile read for another of their teams in this refresh is not stored yet.
        if !ents.is_empty() && !read.has_profile(subject) && stored.profile(subject).await?.is_none() {
            match self.client.coworker(member).await? {
                Some(c) => read.profile(subject, profile_of(&c), Seen::Read(now)),
                None => return Ok(()),
            }
        }
        for e in ents {
            read.entitlement(subject, e.clone(), Seen::Read(now));
        }
        let keys: Vec<String> = ents.iter().map(Entitlement::key).collect();
        let prefix = format!("t{team}-");
        end_where(stored, read, subject, now, "no longer in the team in Nexudus", |e| {
            e.kind == EntitlementKind::Contract && e.id.starts_with(&prefix) && !keys.contains(&e.key())
        })
        .await
    }
}
