//! Full resync, dry-run plans and drift: the operator's side of Portier.
//!
//! A resync lists everyone in the source and every grant at the providers, merges the listing
//! into the stored entitlements with the same monotonic rules webhooks obey, and plans each
//! subject with the same pure planner the worker uses. A dry run stops there and reports the
//! plan; a real run records the merge and fans out one reconcile message per subject that needs
//! work, so workers share it and the providers see exactly the planned operations.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::error::WorkError;
use crate::model::{Applied, Entitlement, Instant, Profile, ProviderKind, Seen, SubjectKey, Target};
use crate::plan::{Op, UserOp};
use crate::providers::Held;
use crate::queue::Queue;
use crate::sources::Listed;
use crate::store::Records;
use crate::tenants::TenantRuntime;

mod run;

use run::run;

/// How often a running resync records where it is, so a timed-out run resumes there.
const CHECKPOINT_EVERY: usize = 20;
const RUN_RECORD: &str = "RESYNC#RUN";
const LAST_RECORD: &str = "RESYNC#LAST";
const FAILED_RECORD: &str = "RESYNC#FAILED";

/// The last resync that stopped with an error, until one finishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct FailedResync {
    pub at: Instant,
    pub error: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ResyncOptions {
    pub dry_run: bool,
    /// Only what changed in the source since the last resync (no sweep, no provider listing);
    /// a full run when there was none.
    pub incremental: bool,
    /// Only this lock system (the source is still read in full).
    pub provider: Option<ProviderKind>,
}

/// The operations one subject needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubjectPlan {
    pub subject: SubjectKey,
    pub name: String,
    pub ops: Vec<Op>,
    /// Provider-user operations (no-access policy, re-activation, Mobile Pass).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub user_ops: Vec<UserOp>,
}

/// What the providers hold that does not match what Portier recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Drift {
    /// Access at a provider that no record of Portier's accounts for: a security finding.
    /// Removed only under the `clean_slate` adoption policy.
    pub unjustified: Vec<Held>,
    /// Grants Portier created that the provider no longer has (removed by hand).
    pub vanished: Vec<(SubjectKey, Applied)>,
}

impl Drift {
    /// Access that should exist but does not, from the plans.
    pub fn missing(plans: &[SubjectPlan]) -> Vec<(SubjectKey, Op)> {
        plans
            .iter()
            .flat_map(|p| {
                p.ops.iter().filter(|o| matches!(o, Op::Grant { .. })).map(|o| (p.subject.clone(), o.clone()))
            })
            .collect()
    }
}

/// What `portier drift` and the console's drift page show for one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    pub tenant: String,
    pub unjustified: Vec<Held>,
    pub vanished: Vec<(SubjectKey, Applied)>,
    pub missing: Vec<(SubjectKey, Op)>,
}

impl DriftReport {
    /// The drift of a dry run's report.
    pub fn of(r: &ResyncReport) -> Self {
        Self {
            tenant: r.tenant.clone(),
            unjustified: r.drift.unjustified.clone(),
            vanished: r.drift.vanished.clone(),
            missing: Drift::missing(&r.plans),
        }
    }

    /// Whether anything was found that is not merely missing (the exit code of `drift`).
    pub fn has_findings(&self) -> bool {
        !self.unjustified.is_empty() || !self.vanished.is_empty()
    }
}

/// The outcome of one resync of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResyncReport {
    pub tenant: String,
    pub dry_run: bool,
    pub started: Instant,
    pub duration_ms: u64,
    pub people: usize,
    /// Subjects whose stored source state changed.
    pub changed: usize,
    /// Subjects that needed provider operations (one reconcile message each in a real run).
    pub plans: Vec<SubjectPlan>,
    pub drift: Drift,
    /// Unjustified access removed (clean_slate only), or that would be in a dry run.
    pub removed_unjustified: usize,
    /// The run continued an earlier one that stopped half-way.
    pub resumed: bool,
    /// A full run (everyone listed, swept and checked for drift), not an incremental one.
    pub full: bool,
}

impl ResyncReport {
    /// Every change the run makes (or would make): access and user operations, and the
    /// unjustified access `clean_slate` removes.
    pub fn op_count(&self) -> usize {
        self.plans.iter().map(|p| p.ops.len() + p.user_ops.len()).sum::<usize>() + self.removed_unjustified
    }

    /// How many of those take access away (revocations, suspensions, deletions, removals).
    pub fn removals(&self) -> usize {
        let revokes =
            self.plans.iter().flat_map(|p| &p.ops).filter(|o| matches!(o, Op::Revoke { .. })).count();
        let users = self
            .plans
            .iter()
            .flat_map(|p| &p.user_ops)
            .filter(|o| matches!(o, UserOp::Suspend { .. } | UserOp::Delete { .. }))
            .count();
        revokes + users + self.removed_unjustified
    }
}

/// Where an interrupted run stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct RunState {
    started: Instant,
    /// Subjects up to and including this key are done.
    done_through: Option<String>,
}

/// The last finished run, for `portier status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastResync {
    pub finished: Instant,
    /// When the listing was taken: the next incremental run asks for changes since then.
    #[serde(default)]
    pub listed_at: Option<Instant>,
    #[serde(default)]
    pub full: bool,
    pub duration_ms: u64,
    pub people: usize,
    pub changed: usize,
    pub operations: usize,
}

/// A subject's stored state after taking in the listing, and what changed.
#[derive(Debug, Clone, PartialEq)]
pub struct Merged {
    pub profile: Option<Profile>,
    pub profile_changed: bool,
    pub entitlements: Vec<Entitlement>,
    pub changed_entitlements: Vec<Entitlement>,
}

/// Takes a listed person (or their absence from a complete listing) into the stored state,
/// with the same monotonic rules the store applies to webhooks. In an incremental listing
/// (`complete` false) absence means "unchanged", so nothing is ended. Pure.
pub fn merge(
    stored_profile: Option<&Profile>,
    stored: &[Entitlement],
    listed: Option<&Listed>,
    complete: bool,
    source: &str,
    now: Instant,
) -> Merged {
    if listed.is_none() && !complete {
        return Merged {
            profile: stored_profile.cloned(),
            profile_changed: false,
            entitlements: stored.to_vec(),
            changed_entitlements: Vec::new(),
        };
    }
    let new_profile = match (listed, stored_profile) {
        (Some(l), old) => l.profile.clone().or_else(|| old.cloned()),
        (None, Some(p)) if !p.deleted => Some(p.clone().gone(now)),
        (None, other) => other.cloned(),
    };
    let (profile, profile_changed) = match (new_profile, stored_profile) {
        (Some(new), Some(old)) if new.supersedes(old, Seen::Read(now)) => (Some(new), true),
        (Some(_), Some(old)) => (Some(old.clone()), false),
        (Some(new), None) => (Some(new), true),
        (None, old) => (old.cloned(), false),
    };

    let listed_ents: &[Entitlement] = listed.map_or(&[], |l| &l.entitlements);
    let mut by_key: BTreeMap<String, Entitlement> = stored.iter().map(|e| (e.key(), e.clone())).collect();
    let mut changed = Vec::new();
    let mut take = |new: Entitlement, by_key: &mut BTreeMap<String, Entitlement>| {
        let newer = by_key.get(&new.key()).is_none_or(|old| new.supersedes(old, Seen::Read(now)));
        if newer {
            changed.push(new.clone());
            by_key.insert(new.key(), new);
        }
    };
    for e in listed_ents {
        take(e.clone(), &mut by_key);
    }
    let listed_keys: BTreeSet<String> = listed_ents.iter().map(Entitlement::key).collect();
    let gone: Vec<Entitlement> = by_key
        .values()
        .filter(|e| complete && e.is_active() && !listed_keys.contains(&e.key()))
        .cloned()
        .collect();
    for e in gone {
        take(e.ended(&format!("no longer in {source}"), now), &mut by_key);
    }
    Merged {
        profile,
        profile_changed,
        entitlements: by_key.into_values().collect(),
        changed_entitlements: changed,
    }
}

/// Applied records whose grant the provider no longer holds. Only targets that were listed
/// count: a provider that was not asked cannot be said to have lost anything.
pub fn vanished(
    applied: &[Applied],
    held_ids: &BTreeSet<&str>,
    listed_targets: &BTreeSet<Target>,
) -> Vec<Applied> {
    applied
        .iter()
        .filter(|a| listed_targets.contains(&a.target))
        .filter(|a| a.listed_key().is_some_and(|k| !held_ids.contains(k.as_str())))
        .cloned()
        .collect()
}

/// Progress of a running resync: (subjects done, subjects in all).
pub type Progress<'a> = &'a mut (dyn FnMut(usize, usize) + Send);

/// Resyncs one tenant. See the module documentation.
pub async fn resync(
    records: &Records,
    tenant: &TenantRuntime,
    queue: &dyn Queue,
    opts: ResyncOptions,
    progress: Progress<'_>,
) -> Result<ResyncReport, WorkError> {
    let result = run(records, tenant, queue, opts, progress).await;
    let id = &tenant.config.id;
    match &result {
        // A stopped run is shown by `status` (and makes it exit 1) until a run finishes.
        Err(e) if !opts.dry_run => {
            tracing::error!(tenant = %id, error = %e, "resync stopped");
            let failed = FailedResync { at: records.now(), error: e.to_string() };
            records.put_tenant_record(id, FAILED_RECORD, &failed).await?;
        }
        Ok(_) if !opts.dry_run => records.delete_tenant_record(id, FAILED_RECORD).await?,
        _ => {}
    }
    result
}

/// The last resync of a tenant that stopped with an error, unless one finished since.
pub async fn last_failed(
    records: &Records,
    tenant: &crate::model::TenantId,
) -> Result<Option<FailedResync>, WorkError> {
    Ok(records.tenant_record(tenant, FAILED_RECORD).await?)
}

/// The last finished resync of a tenant.
pub async fn last(
    records: &Records,
    tenant: &crate::model::TenantId,
) -> Result<Option<LastResync>, WorkError> {
    Ok(records.tenant_record(tenant, LAST_RECORD).await?)
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::model::{
        AppliedState, Email, EntitlementKind, EntitlementState, GrantId, ItemKind, ItemRef, LockId, Window,
    };

    fn t(h: u32) -> Instant {
        Utc.with_ymd_and_hms(2026, 11, 23, h, 0, 0).single().unwrap_or_default()
    }

    fn profile(version: u32) -> Profile {
        Profile {
            email: Email::parse("anna@example.com").ok(),
            name: "Anna".into(),
            source_version: Some(t(version)),
            deleted: false,
            gone_at: None,
            suspended: None,
        }
    }

    fn pass(id: &str, version: u32) -> Entitlement {
        Entitlement {
            kind: EntitlementKind::Pass,
            id: id.into(),
            item: ItemRef { kind: ItemKind::Pass, id: "1001".into() },
            label: "Bike Storage".into(),
            window: Window::ALWAYS,
            state: EntitlementState::Active,
            source_version: t(version),
        }
    }

    fn listed(version: u32, ents: Vec<Entitlement>) -> Listed {
        Listed { person: "456".into(), profile: Some(profile(version)), entitlements: ents }
    }

    #[test]
    fn an_unchanged_listing_changes_nothing() {
        let m = merge(
            Some(&profile(1)),
            &[pass("7", 1)],
            Some(&listed(1, vec![pass("7", 1)])),
            true,
            "Nexudus",
            t(9),
        );
        assert!(!m.profile_changed);
        assert!(m.changed_entitlements.is_empty());
    }

    #[test]
    fn a_newer_listing_wins_and_an_older_one_does_not() {
        let m = merge(
            Some(&profile(1)),
            &[pass("7", 1)],
            Some(&listed(2, vec![pass("7", 2)])),
            true,
            "Nexudus",
            t(9),
        );
        assert!(m.profile_changed);
        assert_eq!(m.changed_entitlements.len(), 1);
        let m = merge(
            Some(&profile(3)),
            &[pass("7", 3)],
            Some(&listed(2, vec![pass("7", 2)])),
            true,
            "Nexudus",
            t(9),
        );
        assert!(!m.profile_changed && m.changed_entitlements.is_empty());
    }

    #[test]
    fn entitlements_missing_from_the_listing_end() {
        let m = merge(
            Some(&profile(1)),
            &[pass("7", 1), pass("8", 1)],
            Some(&listed(1, vec![pass("7", 1)])),
            true,
            "Nexudus",
            t(9),
        );
        assert_eq!(m.changed_entitlements.len(), 1);
        assert_eq!(m.changed_entitlements[0].id, "8");
        assert!(
            matches!(&m.changed_entitlements[0].state, EntitlementState::Gone { reason, .. } if reason == "no longer in Nexudus")
        );
        // Ending again is not a change.
        let again = merge(
            m.profile.as_ref(),
            &m.entitlements,
            Some(&listed(1, vec![pass("7", 1)])),
            true,
            "Nexudus",
            t(10),
        );
        assert!(again.changed_entitlements.is_empty());
    }

    #[test]
    fn an_incremental_listing_ends_nothing_and_keeps_unlisted_profiles() {
        let stored = [pass("7", 1), pass("8", 1)];
        let absent = merge(Some(&profile(1)), &stored, None, false, "Nexudus", t(9));
        assert!(!absent.profile_changed && absent.changed_entitlements.is_empty());
        let only_a_pass = Listed { person: "456".into(), profile: None, entitlements: vec![pass("8", 2)] };
        let m = merge(Some(&profile(1)), &stored, Some(&only_a_pass), false, "Nexudus", t(9));
        assert!(!m.profile_changed);
        assert_eq!(m.profile, Some(profile(1)));
        assert_eq!(m.changed_entitlements.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["8"]);
        assert!(m.entitlements.iter().all(Entitlement::is_active));
    }

    #[test]
    fn a_person_missing_from_the_listing_is_deleted() {
        let m = merge(Some(&profile(1)), &[pass("7", 1)], None, true, "Nexudus", t(9));
        assert!(m.profile_changed);
        assert!(m.profile.as_ref().is_some_and(|p| p.deleted));
        assert!(m.entitlements.iter().all(|e| !e.is_active()));
    }

    #[test]
    fn only_listed_targets_can_vanish() {
        let lock = Target::TapkeyLock(LockId("L1".into()));
        let other = Target::TapkeyLock(LockId("L2".into()));
        let applied = |target: Target, id: &str| Applied {
            target,
            window: Window::ALWAYS,
            email: Email::parse("anna@example.com").unwrap_or_else(|e| panic!("{e}")),
            contact_id: None,
            state: AppliedState::Created { grant_id: GrantId(id.into()) },
            since: t(1),
        };
        let all = [applied(lock.clone(), "g1"), applied(lock.clone(), "g2"), applied(other, "g3")];
        let held: BTreeSet<&str> = ["g1"].into();
        let gone = vanished(&all, &held, &[lock].into());
        assert_eq!(gone.len(), 1);
        assert!(matches!(&gone[0].state, AppliedState::Created { grant_id } if grant_id.as_str() == "g2"));
    }
}
