//! The provider user of one subject at a membership provider: created or found before any
//! membership, suspended, re-activated, deleted or invited by the no-access policy and Mobile
//! Pass, and the users an email change left behind retired.

use chrono::Duration;

use super::memberships::MembershipStep;
use super::{Outcome, PERMANENT_FAILURE_COOL_DOWN_MINUTES, audit_line};
use crate::config::NoAccess;
use crate::error::{CallError, WorkError};
use crate::model::{Email, Failure, Instant, ProviderUser, RetiredUser, UserState};
use crate::plan::{self, UserOp};
use crate::providers::{MembershipProvider, Person, UserAction};

impl MembershipStep<'_> {
    /// Puts the users an email change left behind (Salto KS makes a new user per email)
    /// through the no-access policy once their memberships are gone, then forgets each.
    pub(super) async fn retire_users(
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

    /// Makes sure the provider user exists and is stored. `Err(reason)` is a permanent refusal
    /// (e.g. no free seat), after which nothing of the user is left behind.
    pub(super) async fn ensure_user(
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

    pub(super) async fn user_op(
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
                    outcome.check_at(failure.retry_after);
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
