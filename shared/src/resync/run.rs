//! One resync run: list the source and the providers, merge and plan each subject, fan out the
//! work, and sweep the access nobody accounts for.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant as MonoInstant;

use super::{
    CHECKPOINT_EVERY, LAST_RECORD, LastResync, Progress, RUN_RECORD, ResyncOptions, ResyncReport, RunState,
    SubjectPlan, merge, vanished,
};
use crate::config::Adoption;
use crate::error::WorkError;
use crate::model::{Applied, Instant, Mapping, ProviderKind, Seen, SubjectKey, Target, TenantId};
use crate::plan::{self, Planned, SubjectState, UserPolicy};
use crate::providers::Held;
use crate::queue::Queue;
use crate::queue::WorkMessage;
use crate::sources::Listed;
use crate::store::Records;
use crate::tenants::TenantRuntime;

pub(super) async fn run(
    records: &Records,
    tenant: &TenantRuntime,
    queue: &dyn Queue,
    opts: ResyncOptions,
    progress: Progress<'_>,
) -> Result<ResyncReport, WorkError> {
    let clock_start = MonoInstant::now();
    let now = records.now();
    let tenant_id = &tenant.config.id;

    let listing = Listing::read(records, tenant, opts, now).await?;
    let complete = listing.complete;
    let held_ids: BTreeSet<&str> = listing.held.iter().map(|h| h.id.as_str()).collect();

    let listed_by_subject = listing.by_subject(tenant);
    let subjects = listing.everyone(records, tenant_id, &listed_by_subject).await?;

    let (mut state, resumed) = resume(records, tenant_id, opts, now).await?;

    let mut report = ResyncReport {
        tenant: tenant_id.to_string(),
        dry_run: opts.dry_run,
        started: state.started,
        duration_ms: 0,
        people: subjects.len(),
        changed: 0,
        plans: Vec::new(),
        drift: super::Drift::default(),
        removed_unjustified: 0,
        resumed,
        full: complete,
    };
    let mut accounted: BTreeSet<String> = BTreeSet::new();
    let pass = Pass {
        records,
        tenant,
        queue,
        opts,
        now,
        started: state.started,
        mappings: &listing.mappings,
        listed_by_subject,
        held_ids: &held_ids,
        listed_targets: &listing.listed_targets,
        complete,
    };

    // 3. Plan each subject; a real run records the merge and enqueues the work.
    let total = subjects.len();
    for (i, subject) in subjects.iter().enumerate() {
        let key = subject.to_string();
        let applied = records.applied(subject).await?;
        accounted.extend(applied.iter().filter_map(Applied::listed_key));
        if state.done_through.as_ref().is_some_and(|done| key <= *done) {
            progress(i + 1, total);
            continue;
        }
        pass.subject(subject, &applied, &mut report).await?;
        if !opts.dry_run && (i + 1) % CHECKPOINT_EVERY == 0 {
            state.done_through = Some(key.clone());
            records.put_tenant_record(tenant_id, RUN_RECORD, &state).await?;
        }
        progress(i + 1, total);
    }

    // 4. Access nobody accounts for: reported; removed only under clean_slate.
    report.drift.unjustified = listing.held.into_iter().filter(|h| !accounted.contains(&h.id)).collect();
    remove_unjustified(tenant, opts, &mut report).await?;

    report.duration_ms = u64::try_from(clock_start.elapsed().as_millis()).unwrap_or(u64::MAX);
    if !opts.dry_run {
        finish(records, tenant_id, now, &report).await?;
    }
    log_finished(tenant_id, opts, &report);
    Ok(report)
}

/// A real run resumes where an interrupted one stopped (and says so); a dry run starts afresh
/// and leaves no record.
async fn resume(
    records: &Records,
    tenant_id: &TenantId,
    opts: ResyncOptions,
    now: Instant,
) -> Result<(RunState, bool), WorkError> {
    let run: Option<RunState> =
        if opts.dry_run { None } else { records.tenant_record(tenant_id, RUN_RECORD).await? };
    let resumed = run.as_ref().is_some_and(|r| r.done_through.is_some());
    let state = run.unwrap_or(RunState { started: now, done_through: None });
    if !opts.dry_run {
        records.put_tenant_record(tenant_id, RUN_RECORD, &state).await?;
    }
    Ok((state, resumed))
}

/// Under `adoption = "clean_slate"`, the access nobody accounts for goes (is counted, in a dry run).
async fn remove_unjustified(
    tenant: &TenantRuntime,
    opts: ResyncOptions,
    report: &mut ResyncReport,
) -> Result<(), WorkError> {
    if tenant.config.policy.adoption == Adoption::CleanSlate {
        for h in &report.drift.unjustified {
            if !opts.dry_run
                && let Some(provider) = tenant.provider(h.target.provider())
            {
                provider.remove_held(h).await?;
            }
            report.removed_unjustified += 1;
        }
    }
    Ok(())
}

fn log_finished(tenant_id: &TenantId, opts: ResyncOptions, report: &ResyncReport) {
    tracing::info!(
        tenant = %tenant_id,
        dry_run = opts.dry_run,
        people = report.people,
        changed = report.changed,
        operations = report.op_count(),
        unjustified = report.drift.unjustified.len(),
        "resync finished"
    );
}

/// What the listing calls returned.
struct Listing {
    complete: bool,
    people: Vec<Listed>,
    /// The config's mappings with the stored ones (CSV imports) on top, as the worker plans.
    mappings: Vec<Mapping>,
    /// The access the providers hold at the mapped targets (a full run only).
    held: Vec<Held>,
    listed_targets: BTreeSet<Target>,
}

impl Listing {
    /// 1. Listing calls: the source, then (in a full run) each provider's access at the
    ///    mapped targets.
    async fn read(
        records: &Records,
        tenant: &TenantRuntime,
        opts: ResyncOptions,
        now: Instant,
    ) -> Result<Self, WorkError> {
        let tenant_id = &tenant.config.id;
        let since = match opts.incremental {
            true => super::last(records, tenant_id).await?.and_then(|l| l.listed_at),
            false => None,
        };
        let listing = tenant.source.list(since, now, records).await?;
        let complete = listing.complete;
        let mappings = records.mappings_for(&tenant.config).await?;
        let mut targets_by_provider: BTreeMap<ProviderKind, BTreeSet<Target>> = BTreeMap::new();
        for m in mappings.iter().filter(|_| complete) {
            for t in &m.targets {
                if opts.provider.is_none_or(|p| p == t.provider()) {
                    targets_by_provider.entry(t.provider()).or_default().insert(t.clone());
                }
            }
        }
        let mut held = Vec::new();
        for (kind, targets) in &targets_by_provider {
            if let Some(provider) = tenant.provider(*kind) {
                held.extend(provider.list_access(&targets.iter().cloned().collect::<Vec<_>>()).await?);
            }
        }
        let listed_targets: BTreeSet<Target> = targets_by_provider.values().flatten().cloned().collect();
        Ok(Self { complete, people: listing.people, mappings, held, listed_targets })
    }

    fn by_subject(&self, tenant: &TenantRuntime) -> BTreeMap<SubjectKey, &Listed> {
        let tenant_id = &tenant.config.id;
        self.people
            .iter()
            .map(|l| (SubjectKey::new(tenant_id, tenant.source.kind(), l.person.clone()), l))
            .collect()
    }

    /// 2. Everyone: the listing and everyone the store knows (they may have left the source).
    async fn everyone(
        &self,
        records: &Records,
        tenant_id: &TenantId,
        listed_by_subject: &BTreeMap<SubjectKey, &Listed>,
    ) -> Result<BTreeSet<SubjectKey>, WorkError> {
        let mut subjects: BTreeSet<SubjectKey> = listed_by_subject.keys().cloned().collect();
        if self.complete {
            subjects.extend(records.subjects(tenant_id).await?);
        }
        Ok(subjects)
    }
}

/// What planning one subject of the run needs.
struct Pass<'a> {
    records: &'a Records,
    tenant: &'a TenantRuntime,
    queue: &'a dyn Queue,
    opts: ResyncOptions,
    now: Instant,
    /// When the run (or the one it resumes) started: the time of its reconcile messages.
    started: Instant,
    mappings: &'a [Mapping],
    listed_by_subject: BTreeMap<SubjectKey, &'a Listed>,
    held_ids: &'a BTreeSet<&'a str>,
    listed_targets: &'a BTreeSet<Target>,
    complete: bool,
}

impl Pass<'_> {
    /// Merges the listing into one subject's state and plans it; a real run records both.
    async fn subject(
        &self,
        subject: &SubjectKey,
        applied: &[Applied],
        report: &mut ResyncReport,
    ) -> Result<(), WorkError> {
        let records = self.records;
        let stored_profile = records.profile(subject).await?;
        let stored = records.entitlements(subject).await?;
        let merged = merge(
            stored_profile.as_ref(),
            &stored,
            self.listed_by_subject.get(subject).copied(),
            self.complete,
            self.tenant.source.kind().as_str(),
            self.now,
        );
        let gone = vanished(applied, self.held_ids, self.listed_targets);
        let present: Vec<Applied> = applied.iter().filter(|a| !gone.contains(a)).cloned().collect();
        let inputs = SubjectState {
            profile: merged.profile.clone(),
            entitlements: merged.entitlements.clone(),
            applied: present,
            failures: records.failures(subject).await?,
            users: records.provider_users(subject).await?,
        };
        let mut planned =
            plan::plan_subject(&inputs, self.mappings, UserPolicy::of(&self.tenant.config), self.now);
        if let Some(p) = self.opts.provider {
            planned.only(p);
        }
        if merged.profile_changed || !merged.changed_entitlements.is_empty() {
            report.changed += 1;
        }
        report.drift.vanished.extend(gone.iter().map(|a| (subject.clone(), a.clone())));
        if !self.opts.dry_run {
            self.record(subject, &merged, &gone, &planned).await?;
        }
        if !planned.is_empty() {
            let name = merged.profile.as_ref().map(|p| p.name.clone()).unwrap_or_default();
            report.plans.push(SubjectPlan {
                subject: subject.clone(),
                name,
                ops: planned.plan.ops,
                user_ops: planned.users.ops,
            });
        }
        Ok(())
    }

    /// Stores the merge, drops what vanished, sets the next timer and queues the subject's
    /// reconcile when it has work.
    async fn record(
        &self,
        subject: &SubjectKey,
        merged: &super::Merged,
        gone: &[Applied],
        planned: &Planned,
    ) -> Result<(), WorkError> {
        let (records, now) = (self.records, self.now);
        let changed = merged.profile_changed || !merged.changed_entitlements.is_empty();
        if let (true, Some(p)) = (merged.profile_changed, &merged.profile) {
            records.save_profile(subject, p, Seen::Read(now)).await?;
        }
        for e in &merged.changed_entitlements {
            records.save_entitlement(subject, e, Seen::Read(now)).await?;
        }
        for a in gone {
            records.remove_applied(subject, a).await?;
        }
        // A window that starts or ends later (a booking, a contract) needs its timer even
        // when nothing is due now.
        if let Some(at) = planned.plan.next_check.filter(|_| changed) {
            records.set_timer(subject, at).await?;
        }
        if !planned.is_empty() {
            let msg = WorkMessage::Reconcile {
                subject: subject.clone(),
                reason: "resync".into(),
                at: self.started,
                urgent: planned.plan.ops.iter().any(|op| matches!(op, crate::plan::Op::Revoke { .. }))
                    || planned.users.ops.iter().any(|op| {
                        matches!(op, crate::plan::UserOp::Suspend { .. } | crate::plan::UserOp::Delete { .. })
                    }),
            };
            self.queue.send(&msg.to_outgoing()).await?;
        }
        Ok(())
    }
}

/// A finished real run: its progress record goes, and what it did is kept for `status`.
async fn finish(
    records: &Records,
    tenant_id: &TenantId,
    listed_at: Instant,
    report: &ResyncReport,
) -> Result<(), WorkError> {
    records.delete_tenant_record(tenant_id, RUN_RECORD).await?;
    let last = LastResync {
        finished: records.now(),
        listed_at: Some(listed_at),
        full: report.full,
        duration_ms: report.duration_ms,
        people: report.people,
        changed: report.changed,
        operations: report.op_count(),
    };
    records.put_tenant_record(tenant_id, LAST_RECORD, &last).await?;
    Ok(())
}
