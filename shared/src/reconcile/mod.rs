//! load → plan → apply → record: the one path for webhooks, timers and resyncs.

mod grants;
mod memberships;
mod users;

use memberships::MembershipStep;

use chrono::Duration;
use serde::Serialize;

use crate::error::{InfraError, WorkError};
use crate::model::{Applied, Email, Failure, Instant, ProviderKind, ProviderUser, SubjectKey};
use crate::plan::{self, Op, Plan, Planned, SubjectState, UserOp, UserPlan, UserPolicy};
use crate::providers::Shape;
use crate::store::Records;
use crate::store::records::AuditEntry;
use crate::tenants::TenantRuntime;

/// How long a permanent failure holds back the same operation before one more try.
pub const PERMANENT_FAILURE_COOL_DOWN_MINUTES: i64 = 60;

/// What one reconcile did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Outcome {
    pub applied: usize,
    pub failed: Vec<String>,
    pub blocked: usize,
    pub next_check: Option<Instant>,
}

impl Outcome {
    /// Asks for another look at `at` (the earliest asked for wins: that reconcile asks again).
    pub fn check_at(&mut self, at: Instant) {
        self.next_check = Some(self.next_check.map_or(at, |t| t.min(at)));
    }
}

/// A reconcile to be tried again, and when the subject must be looked at even if the retry
/// never succeeds (a window's end, a failure's cool-down): the caller keeps that timer.
#[derive(Debug, thiserror::Error)]
#[error("{error}")]
pub struct Failed {
    pub error: WorkError,
    pub next_check: Option<Instant>,
}

/// Everything a plan needs, loaded once.
pub struct Loaded {
    pub plan: Plan,
    /// No-access policy, re-activation and Mobile Pass at membership providers.
    pub users: UserPlan,
    pub desired: plan::DesiredSet,
    pub profile_name: String,
    pub provider_users: Vec<ProviderUser>,
}

/// A subject's records, as the planner takes them.
pub async fn load_state(records: &Records, subject: &SubjectKey) -> Result<SubjectState, InfraError> {
    Ok(SubjectState {
        profile: records.profile(subject).await?,
        entitlements: records.entitlements(subject).await?,
        applied: records.applied(subject).await?,
        failures: records.failures(subject).await?,
        users: records.provider_users(subject).await?,
    })
}

/// Computes the plan for a subject from the store, without touching any provider.
pub async fn load_plan(
    records: &Records,
    tenant: &TenantRuntime,
    subject: &SubjectKey,
) -> Result<Loaded, WorkError> {
    let state = load_state(records, subject).await?;
    let mappings = records.mappings_for(&tenant.config).await?;
    let Planned { desired, plan, users } =
        plan::plan_subject(&state, &mappings, UserPolicy::of(&tenant.config), records.now());
    Ok(Loaded {
        plan,
        users,
        desired,
        profile_name: state.profile.map(|p| p.name).unwrap_or_default(),
        provider_users: state.users,
    })
}

/// Brings one subject's access at every provider into line with its entitlements, and says
/// when to look again (`next_check`), like a controller's requeue: the caller keeps the timer.
///
/// Every operation is attempted; the first retryable error is returned at the end so the
/// message comes back, and the repeat finds the finished operations already done.
///
/// One span per reconcile carries the tenant and the hashed subject, so the lines logged
/// inside (and by the providers' clients) say whose they are without repeating it.
#[tracing::instrument(
    name = "reconcile",
    skip_all,
    fields(tenant = %subject.tenant, subject = %crate::telemetry::hash_for_logs(&subject.to_string()))
)]
pub async fn reconcile(
    records: &Records,
    tenant: &TenantRuntime,
    subject: &SubjectKey,
) -> Result<Outcome, Failed> {
    let mut outcome = Outcome::default();
    let error = match apply_all(records, tenant, subject, &mut outcome).await {
        Ok(None) => None,
        Ok(Some(e)) | Err(e) => Some(e),
    };
    crate::metrics::count("all", if error.is_some() { "retried" } else { "reconciled" });
    match error {
        None => Ok(outcome),
        Some(error) => Err(Failed { error, next_check: outcome.next_check }),
    }
}

/// Every operation is attempted; the first retryable error is handed back at the end
/// (`Ok(Some)`); a store error ends it at once.
async fn apply_all(
    records: &Records,
    tenant: &TenantRuntime,
    subject: &SubjectKey,
    outcome: &mut Outcome,
) -> Result<Option<WorkError>, WorkError> {
    let Loaded { plan, users, desired, profile_name, provider_users } =
        load_plan(records, tenant, subject).await?;
    outcome.blocked = plan.blocked.len() + users.blocked.len();
    if let Some(at) = plan.next_check {
        outcome.check_at(at);
    }
    let mut retry: Option<WorkError> = None;

    // One provider at a time, through its shape (Tapkey's grants first: `ProviderKind` order).
    let mut kinds: Vec<ProviderKind> = plan
        .ops
        .iter()
        .map(|op| op.target().provider())
        .chain(users.ops.iter().map(UserOp::provider))
        .collect();
    kinds.sort();
    kinds.dedup();
    for kind in kinds {
        let ops: Vec<&Op> = plan.ops.iter().filter(|op| op.target().provider() == kind).collect();
        match tenant.provider(kind).map(|p| p.shape()) {
            Some(Shape::Grants(provider)) => {
                if let Some(e) = grants::run(records, provider, subject, &ops, &profile_name, outcome).await?
                {
                    crate::metrics::count(kind.as_str(), "retryable");
                    retry.get_or_insert(e);
                }
            }
            Some(Shape::Memberships(provider)) => {
                let step = MembershipStep {
                    records,
                    tenant,
                    subject,
                    kind,
                    ops,
                    user_ops: users.ops.iter().filter(|op| op.provider() == kind).collect(),
                    user: provider_users.iter().find(|u| u.provider == kind).cloned(),
                    desired_target: desired
                        .access
                        .iter()
                        .map(|d| &d.target)
                        .find(|t| t.provider() == kind)
                        .cloned(),
                    name: &profile_name,
                };
                if let Err(e) = step.run(provider, outcome).await {
                    tracing::warn!(provider = kind.as_str(), error = %e, "memberships will be retried");
                    crate::metrics::count(kind.as_str(), "retryable");
                    retry.get_or_insert(e);
                }
            }
            None => no_provider(records, tenant, subject, kind, &ops, outcome).await?,
        }
    }

    // A failure whose target nothing asks for any more (the mapping was fixed, the
    // entitlement ended) has no cause left: clear it, or `status` shows it for ever.
    let applied_now = records.applied(subject).await?;
    for f in records.failures(subject).await? {
        let wanted = desired.access.iter().any(|d| d.target == f.target)
            || applied_now.iter().any(|a| a.target == f.target);
        if !wanted {
            records.clear_failure(subject, &f.target).await?;
        }
    }

    Ok(retry)
}

/// The tenant maps targets of a lock system it has no credentials for: every operation there
/// fails with a readable reason (per target for grants, once for a provider's memberships).
async fn no_provider(
    records: &Records,
    tenant: &TenantRuntime,
    subject: &SubjectKey,
    kind: ProviderKind,
    ops: &[&Op],
    outcome: &mut Outcome,
) -> Result<(), WorkError> {
    let id = &tenant.config.id;
    if kind.has_native_validity() {
        for op in ops {
            let reason =
                format!("{} is mapped, but tenant {id} has no {} provider", op.target(), kind.as_str());
            record_failure(records, subject, op, &reason, outcome).await?;
            outcome.failed.push(reason);
        }
        return Ok(());
    }
    let reason = format!("tenant {id} maps to {} groups, but has no {} provider", kind.name(), kind.as_str());
    for op in ops {
        record_failure(records, subject, op, &reason, outcome).await?;
    }
    outcome.failed.push(reason);
    Ok(())
}

async fn audit(
    records: &Records,
    subject: &SubjectKey,
    action: &str,
    applied: &Applied,
    cause: &str,
    outcome: &str,
) -> Result<(), WorkError> {
    let target = format!("{} ({})", applied.target, applied.window);
    audit_line(records, subject, action, &applied.target.key(), &target, &applied.email, cause, outcome).await
}

#[allow(clippy::too_many_arguments)] // one audit line: every field is its own column
async fn audit_line(
    records: &Records,
    subject: &SubjectKey,
    action: &str,
    target_key: &str,
    target: &str,
    email: &Email,
    cause: &str,
    outcome: &str,
) -> Result<(), WorkError> {
    let entry = AuditEntry {
        at: records.now(),
        action: action.into(),
        target: target.into(),
        cause: cause.into(),
        outcome: outcome.into(),
    };
    // Inside the reconcile span, which names the tenant and the subject.
    tracing::info!(email = %email.hashed(), action, target = %target_key, "provider access changed");
    records.audit(subject, &entry).await?;
    Ok(())
}

/// How soon a subject whose target was unavailable (an inactive lock) is looked at again.
pub const UNAVAILABLE_RECHECK_MINUTES: i64 = 15;

/// Records a permanent failure; the same operation is held back for the cool-down.
async fn record_failure(
    records: &Records,
    subject: &SubjectKey,
    op: &Op,
    reason: &str,
    outcome: &mut Outcome,
) -> Result<(), WorkError> {
    note_failure(records, subject, op, reason, true, outcome).await
}

/// Records a failure; `hold` keeps the same operation back for the cool-down.
async fn note_failure(
    records: &Records,
    subject: &SubjectKey,
    op: &Op,
    reason: &str,
    hold: bool,
    outcome: &mut Outcome,
) -> Result<(), WorkError> {
    let now = records.now();
    tracing::warn!(target = %op.target().key(), reason, "permanent failure recorded");
    let failure = Failure {
        target: op.target().clone(),
        reason: reason.into(),
        op: op.fingerprint(),
        at: now,
        retry_after: if hold { now + Duration::minutes(PERMANENT_FAILURE_COOL_DOWN_MINUTES) } else { now },
    };
    records.save_failure(subject, &failure).await?;
    // Look again after a while even without news (the lock may be activated meanwhile).
    let recheck =
        if hold { failure.retry_after } else { now + Duration::minutes(UNAVAILABLE_RECHECK_MINUTES) };
    outcome.check_at(recheck);
    crate::metrics::count(op.target().provider().as_str(), if hold { "permanent" } else { "unavailable" });
    Ok(())
}
