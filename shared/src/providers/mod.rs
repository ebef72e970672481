//! Lock systems: one folder per provider, each implementing [`Provider`] and its [`Shape`].
//!
//! Two shapes: Tapkey grants carry their own validity and are created exactly once per window
//! ([`GrantProvider`]); Salto KS and Brivo group memberships carry none and are changed with
//! idempotent calls, batched per reconcile, on a provider user Portier created
//! ([`MembershipProvider`]).

use async_trait::async_trait;

use crate::error::CallError;
use crate::model::{
    Applied, ContactId, Email, GrantId, Instant, ProviderKind, ProviderUser, ProviderUserIds, SubjectKey,
    Target, Window, membership_key,
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

impl Held {
    /// A group member as a membership provider lists it: keyed `group#member`
    /// ([`membership_key`]), with no window of its own.
    pub fn member(target: &Target, member: &str, email: Option<Email>) -> Self {
        Self { target: target.clone(), email, id: membership_key(target, member), window: Window::ALWAYS }
    }

    /// The member id of a [`Held::member`]: what follows the last `#`.
    pub fn member_id(&self) -> &str {
        self.id.rsplit_once('#').map_or(self.id.as_str(), |(_, member)| member)
    }
}

/// One member of a group, as a membership provider lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    /// The provider's user id the membership is by.
    pub id: String,
    /// The user's email, when the provider says.
    pub email: Option<Email>,
}

/// [`Provider::list_access`] of a membership provider: every member of each of its groups
/// among `targets`, as [`Held::member`]s.
async fn list_members(provider: &dyn MembershipProvider, targets: &[Target]) -> Result<Vec<Held>, CallError> {
    let mut held = Vec::new();
    for target in targets {
        let members = provider.group_members(target).await?;
        held.extend(members.into_iter().map(|m| Held::member(target, &m.id, m.email)));
    }
    Ok(held)
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

/// A lock system Portier writes to. Every call is safe to repeat.
///
/// Each provider has one shape ([`Shape`]); reconcile dispatches on it, so a new lock system
/// implements this trait and the trait of its shape, and the compiler names every method.
#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// How access is written here: grants with their own validity, or group memberships.
    fn shape(&self) -> Shape<'_>;

    /// All live access at these targets, whoever created it (listing calls only): the grants
    /// on its locks, or the members of its groups.
    async fn list_access(&self, targets: &[Target]) -> Result<Vec<Held>, CallError> {
        match self.shape() {
            Shape::Grants(grants) => grants.list_grants(targets).await,
            Shape::Memberships(groups) => list_members(groups, targets).await,
        }
    }

    /// Removes access found by `list_access` that no record of Portier's accounts for
    /// (only under the `clean_slate` adoption policy).
    async fn remove_held(&self, held: &Held) -> Result<(), CallError>;
}

/// The two ways a lock system holds access (design §4).
#[derive(Clone, Copy)]
pub enum Shape<'a> {
    /// Grants carrying their own validity (Tapkey): future windows are created ahead of time.
    Grants(&'a dyn GrantProvider),
    /// Group memberships that hold now (Salto KS, Brivo), on a provider user Portier created.
    Memberships(&'a dyn MembershipProvider),
}

/// A lock system whose grants carry their own validity, each created exactly once.
#[async_trait]
pub trait GrantProvider: Send + Sync {
    /// Creates the access (exactly once: with `resume`, an existing object is returned).
    async fn grant(&self, req: &GrantRequest) -> Result<Granted, CallError>;

    /// Removes access Portier created. Access already gone counts as done. For an applied
    /// record that is only an intent, the object is looked up and removed if it exists.
    async fn revoke(&self, applied: &Applied) -> Result<(), CallError>;

    /// Every live grant on this lock system's locks among `targets`, whoever created it.
    async fn list_grants(&self, targets: &[Target]) -> Result<Vec<Held>, CallError>;
}

/// A lock system of group memberships, changed with idempotent calls on a provider user.
#[async_trait]
pub trait MembershipProvider: Send + Sync {
    /// The provider user for this person: `known` as stored when it has ids; otherwise looked
    /// up (after an intent) or created. The answer is stored before any membership call.
    async fn ensure_user(
        &self,
        person: &Person,
        known: Option<&ProviderUser>,
        now: Instant,
    ) -> Result<ProviderUser, CallError>;

    /// Adds and removes group memberships: one call per group (Salto KS) or per user (Brivo).
    /// An `Err` means nothing needs recording (nothing applied, or repeating it is harmless);
    /// groups refused one by one are listed in the outcome.
    async fn change_memberships(&self, change: &MembershipChange) -> Result<MembershipOutcome, CallError>;

    /// Suspends, re-activates, deletes or invites a user Portier created. A user already in that
    /// state (or already gone, for a delete) counts as done.
    async fn user_action(&self, user: &ProviderUser, action: UserAction) -> Result<(), CallError>;

    /// Every member of `group`, for drift and resync; none when it is another lock system's.
    async fn group_members(&self, group: &Target) -> Result<Vec<Member>, CallError>;
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
