//! Everyone (a full resync) or what changed since an instant (incremental), as listed people.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Duration;

use super::dto::CoworkerContract;
use super::entitlements::{
    booking_entitlement, contract_entitlement, pass_entitlement, profile_of, visit_entitlement,
    visitor_profile,
};
use super::source::{NexudusSource, visitor_person};
use super::teams::{ReadCache, TeamRecord, team_key};
use crate::error::WorkError;
use crate::model::{Entitlement, EntitlementKind, Instant, SourceKind, SubjectKey};
use crate::sources::{Listed, Listing};
use crate::store::Records;

impl NexudusSource {
    /// [`Source::list`](crate::sources::Source::list) for Nexudus.
    pub(super) async fn listing(
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
        self.list_teams(since, from, now, &changed_holders, &mut cache, records, &mut ents).await?;
        self.list_visitors(from, now, &mut people).await?;
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

    /// Team entitlements for a listing: every member of a team whose paying member holds
    /// contracts (full), or of a team that changed (incremental); members who left lose them.
    #[allow(clippy::too_many_arguments)] // one listing's state, threaded through its parts
    async fn list_teams(
        &self,
        since: Option<Instant>,
        from: Option<&str>,
        now: Instant,
        changed_holders: &BTreeSet<i64>,
        cache: &mut ReadCache,
        records: &Records,
        ents: &mut Vec<(String, Entitlement)>,
    ) -> Result<(), WorkError> {
        // Teams: all of them (lists are cheap), read by id for their members when they can
        // matter: in a full listing when the paying member holds contracts, in an incremental
        // one when the team or the paying member's contracts changed.
        let changed_teams: BTreeSet<i64> = match from {
            Some(f) if self.rules.reads.contracts => {
                self.client.all_teams(Some(f)).await?.iter().map(|t| t.id).collect()
            }
            _ => BTreeSet::new(),
        };
        let teams = if self.rules.reads.contracts { self.client.all_teams(None).await? } else { Vec::new() };
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
            let per_member = self.team_entitlements(&team, now, cache).await?;
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
        Ok(())
    }

    /// Visitors expected or checked in from yesterday on (older visits are over), each a
    /// listed person of their own.
    async fn list_visitors(
        &self,
        from: Option<&str>,
        now: Instant,
        people: &mut BTreeMap<String, Listed>,
    ) -> Result<(), WorkError> {
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
        Ok(())
    }
}
