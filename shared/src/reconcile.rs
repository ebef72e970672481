//! load → plan → apply → record: the one path for webhooks, timers and resyncs.

use chrono::Duration;
use serde::Serialize;

use crate::error::{CallError, WorkError};
use crate::model::{Applied, AppliedState, Failure, Instant, SubjectKey};
use crate::plan::{self, Op, Plan};
use crate::providers::GrantRequest;
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

/// Everything a plan needs, loaded once.
pub struct Loaded {
    pub plan: Plan,
    pub desired: plan::DesiredSet,
    pub profile_name: String,
}

/// Computes the plan for a subject from the store, without touching any provider.
pub async fn load_plan(
    records: &Records,
    tenant: &TenantRuntime,
    subject: &SubjectKey,
) -> Result<Loaded, WorkError> {
    let now = records.now();
    let profile = records.profile(subject).await?;
    let entitlements = records.entitlements(subject).await?;
    let applied = records.applied(subject).await?;
    let failures = records.failures(subject).await?;
    let mappings = records.mappings_for(&tenant.config).await?;
    let desired = plan::desired(profile.as_ref(), &entitlements, &mappings, now);
    let plan = plan::diff(&desired, &entitlements, &applied, &failures, now);
    Ok(Loaded { plan, desired, profile_name: profile.map(|p| p.name).unwrap_or_default() })
}

/// Brings one subject's access at every provider into line with its entitlements.
///
/// Every operation is attempted; the first retryable error is returned at the end so the
/// message comes back, and the repeat finds the finished operations already done.
pub async fn reconcile(
    records: &Records,
    tenant: &TenantRuntime,
    subject: &SubjectKey,
) -> Result<Outcome, WorkError> {
    let Loaded { plan, profile_name, .. } = load_plan(records, tenant, subject).await?;
    let mut outcome =
        Outcome { blocked: plan.blocked.len(), next_check: plan.next_check, ..Outcome::default() };
    let mut retry: Option<WorkError> = None;

    for op in &plan.ops {
        match apply(records, tenant, subject, op, &profile_name).await {
            Ok(()) => outcome.applied += 1,
            Err(WorkError::Call(CallError::Permanent { reason } | CallError::Config { reason })) => {
                record_failure(records, subject, op, &reason).await?;
                outcome.failed.push(reason);
            }
            Err(e) => {
                tracing::warn!(subject = %crate::telemetry::hash_for_logs(&subject.to_string()), error = %e, "operation will be retried");
                retry.get_or_insert(e);
            }
        }
    }

    if let Some(at) = plan.next_check {
        records.set_timer(subject, at).await?;
    }
    match retry {
        Some(e) => Err(e),
        None => Ok(outcome),
    }
}

async fn apply(
    records: &Records,
    tenant: &TenantRuntime,
    subject: &SubjectKey,
    op: &Op,
    name: &str,
) -> Result<(), WorkError> {
    let target = op.target();
    let provider = tenant.provider(target.provider()).ok_or_else(|| {
        CallError::config(format!(
            "{target} is mapped, but tenant {} has no {} provider",
            tenant.config.id,
            target.provider().as_str()
        ))
    })?;
    let now = records.now();

    match op {
        Op::Grant { target, window, email, resume, causes } => {
            let mut record = Applied {
                target: target.clone(),
                window: *window,
                email: email.clone(),
                contact_id: None,
                state: AppliedState::Intent,
                since: now,
            };
            // The intent is written before the non-idempotent create, so a crash in between
            // is followed by a look-up instead of a second grant.
            if !resume {
                records.save_applied(subject, &record).await?;
            }
            let req = GrantRequest {
                target: target.clone(),
                window: *window,
                email: email.clone(),
                name: name.to_owned(),
                resume: *resume,
            };
            let granted = match provider.grant(&req).await {
                Ok(g) => g,
                Err(e @ (CallError::Permanent { .. } | CallError::Config { .. })) => {
                    // A definite refusal: nothing was created.
                    records.remove_applied(subject, &record).await?;
                    return Err(e.into());
                }
                Err(e) => return Err(e.into()),
            };
            record.contact_id = Some(granted.contact_id);
            record.state = AppliedState::Created { grant_id: granted.grant_id.clone() };
            records.save_applied(subject, &record).await?;
            records.clear_failure(subject, target).await?;
            audit(
                records,
                subject,
                "grant",
                &record,
                &causes.join(", "),
                &format!("created {}", granted.grant_id),
            )
            .await?;
        }
        Op::Revoke { applied } => {
            provider.revoke(applied).await?;
            records.remove_applied(subject, applied).await?;
            records.clear_failure(subject, target).await?;
            audit(records, subject, "revoke", applied, "no entitlement justifies it any more", "revoked")
                .await?;
        }
    }
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
    let entry = AuditEntry {
        at: records.now(),
        action: action.into(),
        target: format!("{} ({})", applied.target, applied.window),
        cause: cause.into(),
        outcome: outcome.into(),
    };
    tracing::info!(
        subject = %crate::telemetry::hash_for_logs(&subject.to_string()),
        email = %applied.email.hashed(),
        action,
        target = %applied.target.key(),
        "provider access changed"
    );
    records.audit(subject, &entry).await?;
    Ok(())
}

async fn record_failure(
    records: &Records,
    subject: &SubjectKey,
    op: &Op,
    reason: &str,
) -> Result<(), WorkError> {
    let now = records.now();
    tracing::warn!(
        subject = %crate::telemetry::hash_for_logs(&subject.to_string()),
        target = %op.target().key(),
        reason,
        "permanent failure recorded"
    );
    let failure = Failure {
        target: op.target().clone(),
        reason: reason.into(),
        op: op.fingerprint(),
        at: now,
        retry_after: now + Duration::minutes(PERMANENT_FAILURE_COOL_DOWN_MINUTES),
    };
    records.save_failure(subject, &failure).await?;
    // Look again after the cool-down (e.g. the lock may have been activated meanwhile).
    records.set_timer(subject, failure.retry_after).await?;
    Ok(())
}
