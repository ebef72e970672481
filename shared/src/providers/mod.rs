//! Lock systems: one folder per provider, each implementing [`Provider`].
//!
//! Two shapes: Tapkey grants carry their own validity and are created exactly once per window
//! ([`Provider::grant`], [`Provider::revoke`]); Salto KS and Brivo group memberships carry none
//! and are changed with idempotent calls, batched per reconcile, on a provider user Portier
//! created ([`Provider::ensure_user`], [`Provider::change_memberships`], [`Provider::user_action`]).

use async_trait::async_trait;

use crate::error::CallError;
use crate::model::{
    Applied, ContactId, Email, GrantId, Instant, ProviderKind, ProviderUser, ProviderUserIds, SubjectKey,
    Target, Window,
};

pub mod brivo;
pub mod salto;
pub mod tapkey;

/// Create access for one person at one target for one window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantRequest {
    pub target: Target,
    pub window: Window,
    pub email: Email,
    /// Display name for a new contact/user.
    pub name: String,
    /// An intent was recorded earlier: the object may exist already, look it up first.
    pub resume: bool,
}

/// What the provider holds after a grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Granted {
    pub contact_id: ContactId,
    pub grant_id: GrantId,
}

/// Access found at a provider (for drift and resync).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Held {
    pub target: Target,
    /// Whom it is for, when the provider says (the contact's email).
    pub email: Option<Email>,
    /// The provider's id of the grant or membership.
    pub id: String,
    pub window: Window,
}

/// The person a provider user is created for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person {
    /// Portier's subject key: Brivo's `externalId`.
    pub subject: SubjectKey,
    pub email: Email,
    pub first_name: String,
    pub last_name: String,
}

impl Person {
    /// Splits a display name at its first space ("Anna Maria Müller" → "Anna", "Maria Müller");
    /// a single word is the first name, and the last name falls back to it (Salto KS and Brivo
    /// both want one).
    pub fn new(subject: SubjectKey, email: Email, name: &str) -> Self {
        let name = name.trim();
        let (first, last) = match name.split_once(char::is_whitespace) {
            Some((f, l)) => (f.trim().to_owned(), l.trim().to_owned()),
            None if name.is_empty() => {
                let local = email.as_str().split('@').next().unwrap_or("").to_owned();
                (local.clone(), local)
            }
            None => (name.to_owned(), name.to_owned()),
        };
        Self { subject, email, first_name: first, last_name: last }
    }
}

/// The membership changes of one provider user within one reconcile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipChange {
    /// The user the additions are for (with ids); `None` when there are only removals.
    pub user: Option<ProviderUser>,
    pub add: Vec<Target>,
    /// Memberships to remove, each with the user it was made for (an older user after an email
    /// change).
    pub remove: Vec<(Target, ProviderUserIds)>,
    /// The reconcile's now (Salto KS: errors right after creating a user are retried).
    pub now: Instant,
}

/// What a batch of membership changes did, short of a failure of the whole batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MembershipOutcome {
    /// Things noticed that are not failures (e.g. an access group without a time schedule
    /// never reaches the lock); logged and recorded in the audit trail.
    pub warnings: Vec<String>,
    /// Groups whose change was refused for good (the rest of the batch was applied), with a
    /// readable reason.
    pub refused: Vec<(Target, String)>,
}

/// A user-level action of the no-access policy or Mobile Pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserAction {
    Suspend,
    Reactivate,
    /// Deletes the user (Brivo: pending Mobile Pass invitations are cancelled first).
    Delete,
    /// Brivo Mobile Pass invitation to the user's email.
    Invite,
}

fn unsupported(kind: ProviderKind, what: &str) -> CallError {
    CallError::config(format!("{} does not support {what}", kind.name()))
}

/// A lock system Portier writes to. Every call is safe to repeat.
#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Creates the access (exactly once: with `resume`, an existing object is returned).
    async fn grant(&self, _req: &GrantRequest) -> Result<Granted, CallError> {
        Err(unsupported(self.kind(), "grants with validity"))
    }

    /// Removes access Portier created. Access already gone counts as done. For an applied
    /// record that is only an intent, the object is looked up and removed if it exists.
    async fn revoke(&self, _applied: &Applied) -> Result<(), CallError> {
        Err(unsupported(self.kind(), "grants with validity"))
    }

    /// The provider user for this person: `known` as stored when it has ids; otherwise looked
    /// up (after an intent) or created. The answer is stored before any membership call.
    async fn ensure_user(
        &self,
        _person: &Person,
        _known: Option<&ProviderUser>,
        _now: Instant,
    ) -> Result<ProviderUser, CallError> {
        Err(unsupported(self.kind(), "provider users"))
    }

    /// Adds and removes group memberships: one call per group (Salto KS) or per user (Brivo).
    /// An `Err` means nothing needs recording (nothing applied, or repeating it is harmless);
    /// groups refused one by one are listed in the outcome.
    async fn change_memberships(&self, _change: &MembershipChange) -> Result<MembershipOutcome, CallError> {
        Err(unsupported(self.kind(), "group memberships"))
    }

    /// Suspends, re-activates, deletes or invites a user Portier created. A user already in that
    /// state (or already gone, for a delete) counts as done.
    async fn user_action(&self, _user: &ProviderUser, _action: UserAction) -> Result<(), CallError> {
        Err(unsupported(self.kind(), "user actions"))
    }

    /// All live access at these targets, whoever created it (listing calls only).
    async fn list_access(&self, _targets: &[Target]) -> Result<Vec<Held>, CallError> {
        Err(unsupported(self.kind(), "listing access"))
    }

    /// Removes access found by `list_access` that no record of Portier's accounts for
    /// (only under the `clean_slate` adoption policy).
    async fn remove_held(&self, _held: &Held) -> Result<(), CallError> {
        Err(unsupported(self.kind(), "removing access"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SourceKind;

    #[test]
    fn names_split_into_first_and_last() {
        let subject = SubjectKey::new(&"t".into(), SourceKind::Nexudus, "1");
        let email = Email::parse("anna.m@example.com").expect("valid");
        let p = |n: &str| {
            let p = Person::new(subject.clone(), email.clone(), n);
            (p.first_name, p.last_name)
        };
        assert_eq!(p("Anna Maria Müller"), ("Anna".into(), "Maria Müller".into()));
        assert_eq!(p("  Anna  "), ("Anna".into(), "Anna".into()));
        assert_eq!(p(""), ("anna.m".into(), "anna.m".into()));
    }
}
