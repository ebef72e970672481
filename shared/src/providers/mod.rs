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

/// A lock system Portier writes to. Every call is safe to repeat.
#[async_trait]
pub trait Provider: Send + Sync {
    fn kind(&self) -> ProviderKind;

    /// Creates the access (exactly once: with `resume`, an existing object is returned).
    async fn grant(&self, req: &GrantRequest) -> Result<Granted, CallError>;

    /// Removes access Portier created. Access already gone counts as done. For an applied
    /// record that is only an intent, the object is looked up and removed if it exists.
    async fn revoke(&self, applied: &Applied) -> Result<(), CallError>;
}
