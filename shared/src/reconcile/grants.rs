//! One subject's grants at a provider whose grants carry their own validity (Tapkey).

use super::{Outcome, audit, note_failure, record_failure};
use crate::error::{CallError, WorkError};
use crate::model::{Applied, AppliedState, SubjectKey};
use crate::plan::Op;
use crate::providers::{GrantProvider, GrantRequest};
use crate::store::Records;

/// Applies every grant and revocation; failures with a readable reason are recorded. The
/// first retryable error is handed back (`Ok(Some)`) once all were tried; a store error ends it.
pub(super) async fn run(
    records: &Records,
    provider: &dyn GrantProvider,
    subject: &SubjectKey,
    ops: &[&Op],
    name: &str,
    outcome: &mut Outcome,
) -> Result<Option<WorkError>, WorkError> {
    let mut retry = None;
    for op in ops {
        match apply(records, provider, subject, op, name).await {
            Ok(()) => outcome.applied += 1,
            Err(WorkError::Call(CallError::Permanent { reason } | CallError::Config { reason })) => {
                record_failure(records, subject, op, &reason, outcome).await?;
                outcome.failed.push(reason);
            }
            Err(WorkError::Call(CallError::Unavailable { reason })) => {
                note_failure(records, subject, op, &reason, false, outcome).await?;
                outcome.failed.push(reason);
            }
            Err(e) => {
                tracing::warn!(error = %e, "operation will be retried");
                retry.get_or_insert(e);
            }
        }
    }
    Ok(retry)
}

async fn apply(
    records: &Records,
    provider: &dyn GrantProvider,
    subject: &SubjectKey,
    op: &Op,
    name: &str,
) -> Result<(), WorkError> {
    let target = op.target();
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
                Err(
                    e @ (CallError::Permanent { .. }
                    | CallError::Unavailable { .. }
                    | CallError::Config { .. }),
                ) => {
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
