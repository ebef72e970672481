//! Lock systems: one folder per provider, each implementing [`Provider`].

use async_trait::async_trait;

use crate::error::CallError;
use crate::model::{Applied, ContactId, Email, GrantId, ProviderKind, Target, Window};

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

/// A lock system Portier writes to. Every call is safe to repeat.
#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Creates the access (exactly once: with `resume`, an existing object is returned).
    async fn grant(&self, req: &GrantRequest) -> Result<Granted, CallError>;

    /// Removes access Portier created. Access already gone counts as done. For an applied
    /// record that is only an intent, the object is looked up and removed if it exists.
    async fn revoke(&self, applied: &Applied) -> Result<(), CallError>;

    /// All live access at these targets, whoever created it (listing calls only).
    async fn list_access(&self, targets: &[Target]) -> Result<Vec<Held>, CallError>;

    /// Removes access found by `list_access` that no record of Portier's accounts for
    /// (only under the `clean_slate` adoption policy).
    async fn remove_held(&self, held: &Held) -> Result<(), CallError>;
}
