//! One subject's group memberships and provider user at one membership provider.

use super::{Outcome, audit, audit_line, record_failure};
use crate::error::{CallError, WorkError};
use crate::model::{Applied, AppliedState, Instant, ProviderKind, ProviderUser, SubjectKey, Target};
use crate::plan::{Op, UserOp};
use crate::providers::{MembershipChange, MembershipOutcome, MembershipProvider};
use crate::store::Records;
use crate::tenants::TenantRuntime;

/// One subject's memberships and provider user at one membership provider.
pub(super) struct MembershipStep<'a> {
    pub(super) records: &'a Records,
    pub(super) tenant: &'a TenantRuntime,
    pub(super) subject: &'a SubjectKey,
    pub(super) kind: ProviderKind,
    pub(super) ops: Vec<&'a Op>,
    pub(super) user_ops: Vec<&'a UserOp>,
    pub(super) user: Option<ProviderUser>,
    /// A target the subject should have here (failures of user operations are recorded on it).
    pub(super) desired_target: Option<Target>,
    pub(super) name: &'a str,
}

impl MembershipStep<'_> {
    /// Re-activation, then one batch of membership changes, then the no-access policy and the
    /// Mobile Pass invitation. Permanent failures are recorded; a retryable one is returned.
    pub(super) async fn run(
        mut self,
        provider: &dyn MembershipProvider,
        outcome: &mut Outcome,
    ) -> Result<(), WorkError> {
        let user_ops = std::mem::take(&mut self.user_ops);
        for op in user_ops.iter().filter(|op| op.runs_first()) {
            self.user_op(provider, op, outcome).await?;
        }
        let all_removed = self.memberships(provider, outcome).await?;
        // Before the policy's own ops: deleting the current user forgets the retired ones too.
        if all_removed {
            self.retire_users(provider, outcome).await?;
        }
        for op in user_ops.iter().filter(|op| !op.runs_first()) {
            // The policy waits until every membership here is really gone.
            if matches!(op, UserOp::Suspend { .. } | UserOp::Delete { .. }) && !all_removed {
                continue;
            }
            self.user_op(provider, op, outcome).await?;
        }
        Ok(())
    }

    /// Applies this provider's membership ops in one batch. True when no removal failed.
    async fn memberships(
        &mut self,
        provider: &dyn MembershipProvider,
        outcome: &mut Outcome,
    ) -> Result<bool, WorkError> {
        let now = self.records.now();
        let mut adds: Vec<&Op> =
            self.ops.iter().copied().filter(|op| matches!(op, Op::Grant { .. })).collect();
        let removes: Vec<&Applied> = self
            .ops
            .iter()
            .filter_map(|op| match op {
                Op::Revoke { applied } => Some(applied),
                Op::Grant { .. } => None,
            })
            .collect();
        if adds.is_empty() && removes.is_empty() {
            return Ok(true);
        }

        if let Some(Op::Grant { email, .. }) = adds.first()
            && let Err(reason) = self.ensure_user(provider, email, now).await?
        {
            for op in &adds {
                record_failure(self.records, self.subject, op, &reason, outcome).await?;
            }
            outcome.failed.push(reason);
            adds.clear();
        }

        // Only membership records carry the user a removal is for.
        let remove: Vec<_> = removes
            .iter()
            .filter_map(|a| match &a.state {
                AppliedState::Member { user } => Some((a.target.clone(), user.clone())),
                _ => None,
            })
            .collect();
        if adds.is_empty() && remove.is_empty() {
            for a in &removes {
                self.records.remove_applied(self.subject, a).await?;
            }
            return Ok(true);
        }
        let change = MembershipChange {
            user: self.user.clone().filter(|_| !adds.is_empty()),
            add: adds.iter().map(|op| op.target().clone()).collect(),
            remove,
            now,
        };
        let result = match provider.change_memberships(&change).await {
            Ok(result) => result,
            Err(CallError::Permanent { reason } | CallError::Config { reason }) => {
                for op in self.ops.iter().filter(|op| matches!(op, Op::Revoke { .. }) || adds.contains(op)) {
                    record_failure(self.records, self.subject, op, &reason, outcome).await?;
                }
                outcome.failed.push(reason);
                return Ok(removes.is_empty());
            }
            Err(e) => return Err(e.into()),
        };
        self.record_result(result, &removes, &adds, now, outcome).await
    }

    /// Records what a batch did: memberships removed and added, refusals as failures, and the
    /// provider's warnings in the audit trail. True when no removal was refused.
    async fn record_result(
        &mut self,
        result: MembershipOutcome,
        removes: &[&Applied],
        adds: &[&Op],
        now: Instant,
        outcome: &mut Outcome,
    ) -> Result<bool, WorkError> {
        let refused =
            |t: &Target| result.refused.iter().find(|(r, _)| r == t).map(|(_, reason)| reason.clone());
        let mut all_removed = true;
        for a in removes {
            if let Some(reason) = refused(&a.target) {
                record_failure(
                    self.records,
                    self.subject,
                    &Op::Revoke { applied: (*a).clone() },
                    &reason,
                    outcome,
                )
                .await?;
                outcome.failed.push(reason);
                all_removed = false;
                continue;
            }
            self.records.remove_applied(self.subject, a).await?;
            self.records.clear_failure(self.subject, &a.target).await?;
            audit(
                self.records,
                self.subject,
                "remove member",
                a,
                "no entitlement justifies it now",
                "removed",
            )
            .await?;
            outcome.applied += 1;
        }
        let ids = self.user.as_ref().and_then(|u| u.ids.clone());
        for op in adds {
            let (Op::Grant { target, window, email, causes, .. }, Some(ids)) = (op, &ids) else { continue };
            if let Some(reason) = refused(target) {
                record_failure(self.records, self.subject, op, &reason, outcome).await?;
                outcome.failed.push(reason);
                continue;
            }
            let record = Applied {
                target: target.clone(),
                window: *window,
                email: email.clone(),
                contact_id: None,
                state: AppliedState::Member { user: ids.clone() },
                since: now,
            };
            self.records.save_applied(self.subject, &record).await?;
            self.records.clear_failure(self.subject, target).await?;
            audit(
                self.records,
                self.subject,
                "add member",
                &record,
                &causes.join(", "),
                &format!("added {ids}"),
            )
            .await?;
            outcome.applied += 1;
        }
        self.audit_warnings(result.warnings, removes).await?;
        Ok(all_removed)
    }

    /// Logs the provider's warnings and keeps them in the audit trail.
    async fn audit_warnings(&self, warnings: Vec<String>, removes: &[&Applied]) -> Result<(), WorkError> {
        for w in warnings {
            tracing::warn!(provider = self.kind.as_str(), warning = %w, "provider warning");
            let email = self
                .user
                .as_ref()
                .map(|u| u.email.clone())
                .or_else(|| removes.first().map(|a| a.email.clone()));
            if let Some(email) = email {
                audit_line(
                    self.records,
                    self.subject,
                    "warning",
                    self.kind.as_str(),
                    self.kind.name(),
                    &email,
                    "membership change",
                    &w,
                )
                .await?;
            }
        }
        Ok(())
    }
}
