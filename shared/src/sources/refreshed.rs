//! The seam between a source's refresh and the store: the source reads (its API, and the store
//! through [`Stored`]) and says what it read as [`Write`]s; the worker writes them.

use serde::{Serialize, de::DeserializeOwned};

use crate::error::InfraError;
use crate::model::{Entitlement, Instant, Profile, Seen, SubjectKey, TenantId};
use crate::store::{Cond, Records};

/// What a source may see of the store while it refreshes: reads and the clock, no writes.
#[derive(Clone, Copy)]
pub struct Stored<'a> {
    records: &'a Records,
}

impl<'a> Stored<'a> {
    pub fn new(records: &'a Records) -> Self {
        Self { records }
    }

    pub fn now(&self) -> Instant {
        self.records.now()
    }

    pub async fn profile(&self, s: &SubjectKey) -> Result<Option<Profile>, InfraError> {
        self.records.profile(s).await
    }

    pub async fn entitlements(&self, s: &SubjectKey) -> Result<Vec<Entitlement>, InfraError> {
        self.records.entitlements(s).await
    }

    pub async fn tenant_record<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        sk: &str,
    ) -> Result<Option<T>, InfraError> {
        self.records.tenant_record(tenant, sk).await
    }

    /// A tenant record with the condition a write based on it needs (see
    /// [`Records::tenant_record_for_update`]).
    pub async fn tenant_record_for_update<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        sk: &str,
    ) -> Result<(Option<T>, Cond), InfraError> {
        self.records.tenant_record_for_update(tenant, sk).await
    }

    pub async fn connected_at(&self, tenant: &TenantId) -> Result<Option<Instant>, InfraError> {
        self.records.connected_at(tenant).await
    }
}

/// One thing a refresh read, as the store is to keep it. The store's guards decide what
/// stands, so writing a refresh twice, or after a newer one, changes nothing.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Saved unless what is stored supersedes it ([`Profile::supersedes`]).
    Profile { subject: SubjectKey, profile: Profile, seen: Seen },
    /// Saved unless what is stored supersedes it ([`Entitlement::supersedes`]).
    Entitlement { subject: SubjectKey, entitlement: Entitlement, seen: Seen },
    /// The subject is reconciled at `at`, in its own FIFO group. With `if_changed`, only when
    /// an entitlement written for it since its previous timer here changed what is stored.
    Timer { subject: SubjectKey, at: Instant, if_changed: bool },
    /// Source state kept for the tenant (`TENANT#t / sk`), written if `cond` holds. A record
    /// read for update that changed since: the refresh is read again, from the start.
    TenantRecord { tenant: TenantId, sk: String, value: serde_json::Value, cond: Cond },
}

/// What a refresh read, in the order the worker writes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Refreshed {
    pub writes: Vec<Write>,
}

impl Refreshed {
    pub fn profile(&mut self, subject: &SubjectKey, profile: Profile, seen: Seen) {
        self.writes.push(Write::Profile { subject: subject.clone(), profile, seen });
    }

    pub fn entitlement(&mut self, subject: &SubjectKey, entitlement: Entitlement, seen: Seen) {
        self.writes.push(Write::Entitlement { subject: subject.clone(), entitlement, seen });
    }

    pub fn timer(&mut self, subject: &SubjectKey, at: Instant, if_changed: bool) {
        self.writes.push(Write::Timer { subject: subject.clone(), at, if_changed });
    }

    pub fn tenant_record<T: Serialize>(
        &mut self,
        tenant: &TenantId,
        sk: &str,
        value: &T,
        cond: Cond,
    ) -> Result<(), InfraError> {
        let value = serde_json::to_value(value).map_err(InfraError::backend)?;
        self.writes.push(Write::TenantRecord { tenant: tenant.clone(), sk: sk.into(), value, cond });
        Ok(())
    }

    /// Whether this refresh already read a profile for the subject (the store has it only once
    /// the worker writes it).
    pub fn has_profile(&self, subject: &SubjectKey) -> bool {
        self.writes.iter().any(|w| matches!(w, Write::Profile { subject: s, .. } if s == subject))
    }
}
