//! What Portier created at the providers, and the failures it keeps for explain.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{ContactId, Email, GrantId, Instant, ProviderKind, Target, Window};

/// How far a provider write got: an intent is written before the non-idempotent call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AppliedState {
    /// The create call may or may not have happened: look it up before creating again.
    Intent,
    /// The provider confirmed the object with this id.
    Created { grant_id: GrantId },
    /// A group membership of this provider user (idempotent calls, so no intent is needed).
    Member { user: ProviderUserIds },
}

impl AppliedState {
    /// True once the provider confirmed the access.
    pub fn is_done(&self) -> bool {
        !matches!(self, AppliedState::Intent)
    }
}

/// A provider user's ids: Salto KS site-user id (`id`) and platform user id (`platform_id`,
/// the one access-group membership takes); Brivo's numeric user id (`id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderUserIds {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_id: Option<String>,
}

impl fmt::Display for ProviderUserIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.platform_id {
            Some(p) => write!(f, "user {} (platform {p})", self.id),
            None => write!(f, "user {}", self.id),
        }
    }
}

/// Whether a provider user may open doors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// The create call may or may not have happened: look the user up before creating.
    Creating,
    Active,
    /// Suspended by the no-access policy; unsuspended when access returns.
    Suspended,
}

/// A user Portier created at a membership provider for one subject (`USER#provider`), so a
/// membership change is one call and the no-access policy touches only Portier's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderUser {
    pub provider: ProviderKind,
    /// `None` while only the intent to create is recorded.
    pub ids: Option<ProviderUserIds>,
    /// The email the user was created with (the provider invites it).
    pub email: Email,
    pub state: UserState,
    /// When the provider created the user (Salto KS is eventually consistent for ~1 min).
    pub created_at: Instant,
    /// Brivo Mobile Pass invitation sent (or found pending).
    #[serde(default)]
    pub invited: bool,
    /// Users this subject had before an email change made a new one (Salto KS invites per
    /// email), still to be put through the no-access policy. Kept in this record so the new
    /// user and the old one's fate are written in one step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredUser>,
}

/// A provider user left behind by an email change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RetiredUser {
    pub ids: ProviderUserIds,
    pub email: Email,
    /// Already recorded as kept under `keep`, or suspended under `suspend`. It stays here
    /// either way, so a later, stricter policy still reaches it; `delete` removes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
}

/// What Portier created at a provider for one subject and target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub target: Target,
    pub window: Window,
    pub email: Email,
    pub contact_id: Option<ContactId>,
    pub state: AppliedState,
    pub since: Instant,
}

impl Applied {
    /// Store key: the identity of the access at the provider, so no two accesses share a record.
    ///
    /// A Tapkey grant is one (lock, window, email): the whole window and the email are in the
    /// key, so a grant that replaces another (a changed window, a changed email) never writes
    /// or deletes the record of the grant it replaces. A membership is (group, provider user),
    /// which is how the provider itself names it.
    pub fn key(&self) -> String {
        match &self.state {
            AppliedState::Member { user } if self.target.is_membership() => {
                format!("{}#member#{}", self.target.key(), user.platform_id.as_deref().unwrap_or(&user.id))
            }
            _ => grant_key(&self.target, &self.window, &self.email),
        }
    }
}

/// The record key of a grant (see [`Applied::key`]); the email is hashed, never in clear.
pub fn grant_key(target: &Target, window: &Window, email: &Email) -> String {
    let side = |t: Option<Instant>| t.map_or("-".to_owned(), |t| t.timestamp().to_string());
    format!("{}#{}#{}#{}", target.key(), side(window.from), side(window.until), email.hashed())
}

/// The key under which a listing of the provider shows access: a grant's id, or
/// `group#member id` for a group membership (Salto KS: the platform user id).
pub fn membership_key(target: &Target, member: &str) -> String {
    let group = match target {
        Target::TapkeyLock(l) => l.as_str(),
        Target::SaltoGroup(g) => g.as_str(),
        Target::BrivoGroup(g) => g.as_str(),
    };
    format!("{group}#{member}")
}

impl Applied {
    /// How a provider listing names this access (see [`membership_key`]); `None` for an intent.
    pub fn listed_key(&self) -> Option<String> {
        match &self.state {
            AppliedState::Created { grant_id } => Some(grant_id.to_string()),
            AppliedState::Member { user } => {
                Some(membership_key(&self.target, user.platform_id.as_deref().unwrap_or(&user.id)))
            }
            AppliedState::Intent => None,
        }
    }
}

/// The last permanent failure for one target: shown by explain, not retried until inputs change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub target: Target,
    pub reason: String,
    /// Fingerprint of the operation that failed; a different operation is tried again.
    pub op: String,
    pub at: Instant,
    /// Until then the same operation is held back; afterwards it is tried once more.
    pub retry_after: Instant,
}
