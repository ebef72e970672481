//! One subject's group memberships and provider user at one membership provider.

use chrono::Duration;

use super::{Outcome, PERMANENT_FAILURE_COOL_DOWN_MINUTES, audit, audit_line, record_failure};
use crate::config::NoAccess;
use crate::error::{CallError, WorkError};
use crate::model::{
    Applied, AppliedState, Email, Failure, Instant, ProviderKind, ProviderUser, RetiredUser, SubjectKey,
    Target, UserState,
};
use crate::plan::{self, Op, UserOp};
use crate::providers::{MembershipChange, MembershipProvider, Person, UserAction};
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

    /// Puts the users an email change left behind (Salto KS makes a new user per email)
    /// through the no-access policy once their memberships are gone, then forgets each.
    async fn retire_users(
        &mut self,
        provider: &dyn MembershipProvider,
        outcome: &mut Outcome,
    ) -> Result<(), WorkError> {
        let Some(mut user) = self.user.clone() else { return Ok(()) };
        let policy = self.tenant.config.policy.no_access;
        let mut i = 0;
        while i < user.retired.len() {
            let old = user.retired[i].clone();
            if !plan::retired_needs(&old, policy) {
                i += 1;
                continue;
            }
            let (action, done) = match policy {
                NoAccess::Keep => (None, "kept (no-access policy)"),
                NoAccess::Suspend => (Some(UserAction::Suspend), "suspended (no-access policy)"),
                NoAccess::Delete => (Some(UserAction::Delete), "deleted (no-access policy)"),
            };
            let mut done = done.to_owned();
            if let Some(action) = action {
                let left = ProviderUser {
                    provider: self.kind,
                    ids: Some(old.ids.clone()),
                    email: old.email.clone(),
                    state: UserState::Active,
                    created_at: user.created_at,
                    invited: false,
                    retired: Vec::new(),
                };
                match provider.user_action(&left, action).await {
                    Ok(()) => outcome.applied += 1,
                    // Nothing a retry would change (e.g. the user was deleted by hand): say so.
                    Err(CallError::Permanent { reason } | CallError::Config { reason }) => {
                        done = format!("left as it is: {reason}");
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            // Kept and suspended users stay recorded, so a stricter policy later reaches them.
            match policy {
                NoAccess::Delete => {
                    user.retired.remove(i);
                }
                NoAccess::Suspend => {
                    user.retired[i].suspended = true;
                    i += 1;
                }
                NoAccess::Keep => {
                    user.retired[i].kept = true;
                    i += 1;
                }
            }
            self.records.save_provider_user(self.subject, &user).await?;
            self.user = Some(user.clone());
            let target = format!("{} {}", self.kind.name(), old.ids);
            audit_line(
                self.records,
                self.subject,
                "retire user",
                self.kind.as_str(),
                &target,
                &old.email,
                "email changed",
                &done,
            )
            .await?;
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
                record_failure(self.records, self.subject, op, &reason).await?;
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
                    record_failure(self.records, self.subject, op, &reason).await?;
                }
                outcome.failed.push(reason);
                return Ok(removes.is_empty());
            }
            Err(e) => return Err(e.into()),
        };
        let refused =
            |t: &Target| result.refused.iter().find(|(r, _)| r == t).map(|(_, reason)| reason.clone());
        let mut all_removed = true;
        for a in &removes {
            if let Some(reason) = refused(&a.target) {
                record_failure(self.records, self.subject, &Op::Revoke { applied: (*a).clone() }, &reason)
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
        for op in &adds {
            let (Op::Grant { target, window, email, causes, .. }, Some(ids)) = (op, &ids) else { continue };
            if let Some(reason) = refused(target) {
                record_failure(self.records, self.subject, op, &reason).await?;
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
        for w in result.warnings {
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
        Ok(all_removed)
    }

    /// Makes sure the provider user exists and is stored. `Err(reason)` is a permanent refusal
    /// (e.g. no free seat), after which nothing of the user is left behind.
    async fn ensure_user(
        &mut self,
        provider: &dyn MembershipProvider,
        email: &Email,
        now: Instant,
    ) -> Result<Result<(), String>, WorkError> {
        let person = Person::new(self.subject.clone(), email.clone(), self.name);
        let known = self.user.clone();
        // The intent comes before the create, so a crash in between leads to a look-up.
        let wrote_intent = known.is_none();
        if wrote_intent {
            let intent = ProviderUser {
                provider: self.kind,
                ids: None,
                email: email.clone(),
                state: UserState::Creating,
                created_at: now,
                invited: false,
                retired: Vec::new(),
            };
            self.records.save_provider_user(self.subject, &intent).await?;
        }
        match provider.ensure_user(&person, known.as_ref(), now).await {
            Ok(mut user) => {
                // A new user for a new email: the old one is retired in the same write.
                if let Some(k) = known.as_ref() {
                    user.retired = k.retired.clone();
                    if let Some(ids) = k.ids.clone().filter(|ids| user.ids.as_ref() != Some(ids)) {
                        user.retired.push(RetiredUser {
                            ids,
                            email: k.email.clone(),
                            kept: false,
                            suspended: false,
                        });
                    }
                    // A user taken back (the person returned to an earlier email) is no longer retired.
                    user.retired.retain(|r| user.ids.as_ref() != Some(&r.ids));
                }
                if known.as_ref() != Some(&user) {
                    self.records.save_provider_user(self.subject, &user).await?;
                    if known.as_ref().is_none_or(|k| k.ids != user.ids) {
                        let target = format!(
                            "{} {}",
                            self.kind.name(),
                            user.ids.as_ref().map_or_else(String::new, ToString::to_string)
                        );
                        audit_line(
                            self.records,
                            self.subject,
                            "user",
                            self.kind.as_str(),
                            &target,
                            email,
                            "first access",
                            "created or found",
                        )
                        .await?;
                    }
                }
                self.user = Some(user);
                Ok(Ok(()))
            }
            Err(CallError::Permanent { reason } | CallError::Config { reason }) => {
                if known.as_ref().is_none_or(|k| k.ids.is_none()) {
                    self.records.remove_provider_user(self.subject, self.kind).await?;
                    self.user = None;
                }
                Ok(Err(reason))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn user_op(
        &mut self,
        provider: &dyn MembershipProvider,
        op: &UserOp,
        outcome: &mut Outcome,
    ) -> Result<(), WorkError> {
        let Some(mut user) = self.user.clone().filter(|u| u.ids.is_some()) else { return Ok(()) };
        let action = match op {
            UserOp::Reactivate { .. } => UserAction::Reactivate,
            UserOp::Suspend { .. } => UserAction::Suspend,
            UserOp::Delete { .. } => UserAction::Delete,
            UserOp::Invite { .. } => UserAction::Invite,
            // Done by `retire_users`, once the memberships are gone.
            UserOp::Retire { .. } => return Ok(()),
        };
        match provider.user_action(&user, action).await {
            Ok(()) => {}
            Err(CallError::Permanent { reason } | CallError::Config { reason }) => {
                tracing::warn!(provider = self.kind.as_str(), op = %op.fingerprint(), reason, "permanent failure recorded");
                if let Some(target) = &self.desired_target {
                    let failure = Failure {
                        target: target.clone(),
                        reason: reason.clone(),
                        op: op.fingerprint(),
                        at: self.records.now(),
                        retry_after: self.records.now()
                            + Duration::minutes(PERMANENT_FAILURE_COOL_DOWN_MINUTES),
                    };
                    self.records.save_failure(self.subject, &failure).await?;
                    self.records.set_timer(self.subject, failure.retry_after).await?;
                }
                outcome.failed.push(reason);
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        }
        let (name, done) = match action {
            UserAction::Reactivate => ("reactivate user", "unsuspended"),
            UserAction::Suspend => ("suspend user", "suspended (no-access policy)"),
            UserAction::Delete => ("delete user", "deleted (no-access policy)"),
            UserAction::Invite => ("mobile pass", "invitation sent"),
        };
        match action {
            UserAction::Delete => {
                self.records.remove_provider_user(self.subject, self.kind).await?;
                self.user = None;
            }
            _ => {
                match action {
                    UserAction::Reactivate => user.state = UserState::Active,
                    UserAction::Suspend => user.state = UserState::Suspended,
                    _ => user.invited = true,
                }
                self.records.save_provider_user(self.subject, &user).await?;
                self.user = Some(user.clone());
            }
        }
        let target = format!(
            "{} {}",
            self.kind.name(),
            user.ids.as_ref().map_or_else(String::new, ToString::to_string)
        );
        let cause = if matches!(action, UserAction::Suspend | UserAction::Delete) {
            "no membership left"
        } else {
            "access returns"
        };
        audit_line(self.records, self.subject, name, self.kind.as_str(), &target, &user.email, cause, done)
            .await?;
        outcome.applied += 1;
        Ok(())
    }
}
