//! One subject's records: profile, entitlements, applied access, provider users, failures, audit.

use chrono::Duration;
use serde::Deserialize;

use super::{AUDIT_TTL_DAYS, AuditEntry, Records, decode, encode, ignore_conflict, subject_pk};
use crate::error::InfraError;
use crate::model::{
    Applied, Email, Entitlement, Failure, Profile, ProviderKind, ProviderUser, Seen, SubjectKey, Target,
    TenantId,
};
use crate::store::{Cond, Item};

impl Records {
    // ── profile ──────────────────────────────────────────────────────────────────────────

    pub async fn profile(&self, s: &SubjectKey) -> Result<Option<Profile>, InfraError> {
        self.store.get(&subject_pk(s), "PROFILE").await?.as_ref().map(decode).transpose()
    }

    /// Saves the profile unless a newer source version is stored; keeps the email index.
    /// `seen` is how it was learned (see [`Profile::supersedes`]).
    pub async fn save_profile(&self, s: &SubjectKey, p: &Profile, seen: Seen) -> Result<bool, InfraError> {
        let newer = |new: &Profile, old: &Profile| new.supersedes(old, seen);
        let written = self.put_monotonic(&subject_pk(s), "PROFILE", p, newer).await?;
        // An old address stays indexed, so `explain old@…` still finds the revoked grant.
        if written {
            // The tenant's subject list, for resync, drift and status.
            let member = Item::new(
                format!("SUBJECTS#{}", s.tenant),
                subject_pk(s),
                serde_json::json!({ "subject": s }),
            );
            self.store.put(&member, Cond::Always).await?;
        }
        if written && let Some(email) = &p.email {
            let index =
                Item::new(format!("EMAIL#{email}"), subject_pk(s), serde_json::json!({ "subject": s }));
            self.store.put(&index, Cond::Always).await?;
        }
        Ok(written)
    }

    /// Subjects that have (or had) this email, across tenants.
    pub async fn subjects_by_email(&self, email: &Email) -> Result<Vec<SubjectKey>, InfraError> {
        #[derive(Deserialize)]
        struct Entry {
            subject: SubjectKey,
        }
        let entries: Vec<Entry> = self.list(&format!("EMAIL#{email}"), "SUBJ#").await?;
        Ok(entries.into_iter().map(|e| e.subject).collect())
    }

    /// Every subject of a tenant that has a profile.
    pub async fn subjects(&self, tenant: &TenantId) -> Result<Vec<SubjectKey>, InfraError> {
        #[derive(Deserialize)]
        struct Entry {
            subject: SubjectKey,
        }
        let entries: Vec<Entry> = self.list(&format!("SUBJECTS#{tenant}"), "SUBJ#").await?;
        Ok(entries.into_iter().map(|e| e.subject).collect())
    }

    // ── entitlements ─────────────────────────────────────────────────────────────────────

    pub async fn entitlements(&self, s: &SubjectKey) -> Result<Vec<Entitlement>, InfraError> {
        self.list(&subject_pk(s), "ENT#").await
    }

    /// Saves the entitlement unless the stored one has a newer (or the same) source version.
    /// `seen` is how it was learned (see [`Entitlement::supersedes`]).
    pub async fn save_entitlement(
        &self,
        s: &SubjectKey,
        e: &Entitlement,
        seen: Seen,
    ) -> Result<bool, InfraError> {
        let newer = |new: &Entitlement, old: &Entitlement| new.supersedes(old, seen);
        self.put_monotonic(&subject_pk(s), &format!("ENT#{}", e.key()), e, newer).await
    }

    // ── applied state ────────────────────────────────────────────────────────────────────

    /// What Portier applied for the subject. A record stored under an older key layout is
    /// moved to its current key on the way (written there first, then the old one deleted).
    pub async fn applied(&self, s: &SubjectKey) -> Result<Vec<Applied>, InfraError> {
        let pk = subject_pk(s);
        let mut out = Vec::new();
        for item in self.store.query(&pk, "APPLIED#").await? {
            let a: Applied = decode(&item)?;
            let sk = format!("APPLIED#{}", a.key());
            if item.sk != sk {
                self.store.put(&Item::new(pk.as_str(), sk, item.data.clone()), Cond::Always).await?;
                self.store
                    .delete(&pk, &item.sk, Cond::Version(item.version))
                    .await
                    .or_else(ignore_conflict)?;
            }
            out.push(a);
        }
        Ok(out)
    }

    pub async fn save_applied(&self, s: &SubjectKey, a: &Applied) -> Result<(), InfraError> {
        let item = Item::new(subject_pk(s), format!("APPLIED#{}", a.key()), encode(a)?);
        tracing::debug!(record = %item.sk, "applied record saved");
        self.store.put(&item, Cond::Always).await
    }

    /// Deletes the record of `a`, only if the stored record is still `a`: a record that
    /// another write replaced (the access it describes exists) is never deleted by mistake.
    pub async fn remove_applied(&self, s: &SubjectKey, a: &Applied) -> Result<(), InfraError> {
        let (pk, sk) = (subject_pk(s), format!("APPLIED#{}", a.key()));
        let Some(item) = self.store.get(&pk, &sk).await? else { return Ok(()) };
        if decode::<Applied>(&item)? != *a {
            tracing::warn!(record = %sk, "applied record changed since it was planned; kept");
            return Ok(());
        }
        tracing::debug!(record = %sk, "applied record removed");
        self.store.delete(&pk, &sk, Cond::Version(item.version)).await.or_else(ignore_conflict)
    }

    // ── provider users (Salto KS, Brivo) ─────────────────────────────────────────────────

    /// The users Portier created for this subject at membership providers (`USER#provider`).
    pub async fn provider_users(&self, s: &SubjectKey) -> Result<Vec<ProviderUser>, InfraError> {
        self.list(&subject_pk(s), "USER#").await
    }

    /// Saves the user and indexes it by the id door events carry (presence tracking maps a
    /// door event back to the person through it).
    pub async fn save_provider_user(&self, s: &SubjectKey, u: &ProviderUser) -> Result<(), InfraError> {
        let item = Item::new(subject_pk(s), format!("USER#{}", u.provider.as_str()), encode(u)?);
        self.store.put(&item, Cond::Always).await?;
        crate::presence::records::index_user(self, s, u).await
    }

    pub async fn remove_provider_user(
        &self,
        s: &SubjectKey,
        provider: ProviderKind,
    ) -> Result<(), InfraError> {
        self.store.delete(&subject_pk(s), &format!("USER#{}", provider.as_str()), Cond::Always).await
    }

    // ── failures ─────────────────────────────────────────────────────────────────────────

    pub async fn failures(&self, s: &SubjectKey) -> Result<Vec<Failure>, InfraError> {
        self.list(&subject_pk(s), "FAIL#").await
    }

    pub async fn save_failure(&self, s: &SubjectKey, f: &Failure) -> Result<(), InfraError> {
        let item = Item::new(subject_pk(s), format!("FAIL#{}", f.target.key()), encode(f)?);
        self.store.put(&item, Cond::Always).await
    }

    pub async fn clear_failure(&self, s: &SubjectKey, target: &Target) -> Result<(), InfraError> {
        self.store.delete(&subject_pk(s), &format!("FAIL#{}", target.key()), Cond::Always).await
    }

    // ── audit ────────────────────────────────────────────────────────────────────────────

    pub async fn audit(&self, s: &SubjectKey, entry: &AuditEntry) -> Result<(), InfraError> {
        let sk =
            format!("AUDIT#{}#{}", entry.at.format("%Y-%m-%dT%H:%M:%S%.6fZ"), uuid::Uuid::new_v4().simple());
        let item = Item {
            expires_at: Some((entry.at + Duration::days(AUDIT_TTL_DAYS)).timestamp()),
            ..Item::new(subject_pk(s), sk, encode(entry)?)
        };
        self.store.put(&item, Cond::Always).await
    }

    pub async fn audit_log(&self, s: &SubjectKey) -> Result<Vec<AuditEntry>, InfraError> {
        self.list(&subject_pk(s), "AUDIT#").await
    }
}
