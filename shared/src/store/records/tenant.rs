//! Tenant-wide records: timers, resync progress, configuration, mappings, source state.

use chrono::{Duration, DurationRound, TimeDelta};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{CONFLICT_RETRIES, Records, TIMER_CATCH_UP_HOURS, TIMER_KEEP_DAYS, decode, encode};
use crate::config::TenantConfig;
use crate::error::InfraError;
use crate::model::{Instant, ItemRef, Mapping, SubjectKey, TenantId};
use crate::store::{Cond, Item};

impl Records {
    // ── timers ───────────────────────────────────────────────────────────────────────────

    fn timer_bucket(t: Instant) -> String {
        let hour = t.duration_trunc(TimeDelta::hours(1)).unwrap_or(t);
        format!("TIMER#{}", hour.format("%Y-%m-%dT%H"))
    }

    fn timer_sk(at: Instant, s: &SubjectKey) -> String {
        format!("{}#{s}", at.format("%Y-%m-%dT%H:%M:%SZ"))
    }

    /// Asks for the subject to be reconciled again at `at`.
    pub async fn set_timer(&self, s: &SubjectKey, at: Instant) -> Result<(), InfraError> {
        let item = Item {
            expires_at: Some((at + Duration::days(TIMER_KEEP_DAYS)).timestamp()),
            ..Item::new(
                Self::timer_bucket(at),
                Self::timer_sk(at, s),
                serde_json::json!({ "subject": s, "at": at }),
            )
        };
        self.store.put(&item, Cond::Always).await
    }

    /// Timers due at `now`, including ones missed ticks left behind (back to the last finished
    /// tick, at least a day, at most [`TIMER_KEEP_DAYS`]).
    pub async fn due_timers(&self, now: Instant) -> Result<Vec<(SubjectKey, Instant)>, InfraError> {
        #[derive(Deserialize)]
        struct Timer {
            subject: SubjectKey,
            at: Instant,
        }
        #[derive(Deserialize)]
        struct LastTick {
            at: Instant,
        }
        let last = self.store.get("TICKS", "LAST").await?;
        let last = last.as_ref().map(decode::<LastTick>).transpose()?.map(|l| l.at);
        let oldest = now - Duration::days(TIMER_KEEP_DAYS);
        let from =
            last.map_or(now, |l| l - Duration::hours(1)).min(now - Duration::hours(TIMER_CATCH_UP_HOURS));
        let hours = (now - from.max(oldest)).num_hours();
        let mut due = Vec::new();
        for h in (0..=hours).rev() {
            let bucket = Self::timer_bucket(now - Duration::hours(h));
            let upto = format!("{}~", now.format("%Y-%m-%dT%H:%M:%SZ"));
            for item in self.store.query_between(&bucket, "", &upto).await? {
                let timer: Timer = decode(&item)?;
                due.push((timer.subject, timer.at));
            }
        }
        Ok(due)
    }

    /// Records that a tick finished at `at`: the next one looks back at least to there.
    pub async fn tick_done(&self, at: Instant) -> Result<(), InfraError> {
        self.store.put(&Item::new("TICKS", "LAST", serde_json::json!({ "at": at })), Cond::Always).await
    }

    pub async fn clear_timer(&self, s: &SubjectKey, at: Instant) -> Result<(), InfraError> {
        self.store.delete(&Self::timer_bucket(at), &Self::timer_sk(at, s), Cond::Always).await
    }

    // ── tenant-level records (resync progress) ───────────────────────────────────────────

    pub async fn tenant_record<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        sk: &str,
    ) -> Result<Option<T>, InfraError> {
        self.store.get(&format!("TENANT#{tenant}"), sk).await?.as_ref().map(decode).transpose()
    }

    pub async fn put_tenant_record<T: Serialize>(
        &self,
        tenant: &TenantId,
        sk: &str,
        value: &T,
    ) -> Result<(), InfraError> {
        self.store.put(&Item::new(format!("TENANT#{tenant}"), sk, encode(value)?), Cond::Always).await
    }

    /// A tenant record and the condition a write based on it needs: it exists at this version,
    /// or (not stored) is still absent. Written with [`Self::put_tenant_record_if`].
    pub async fn tenant_record_for_update<T: DeserializeOwned>(
        &self,
        tenant: &TenantId,
        sk: &str,
    ) -> Result<(Option<T>, Cond), InfraError> {
        match self.store.get(&format!("TENANT#{tenant}"), sk).await? {
            Some(item) => Ok((Some(decode(&item)?), Cond::Version(item.version))),
            None => Ok((None, Cond::Absent)),
        }
    }

    /// Writes a tenant record if `cond` holds (one conditional put), else
    /// `InfraError::Conflict`: another writer changed it since it was read for update.
    pub async fn put_tenant_record_if(
        &self,
        tenant: &TenantId,
        sk: &str,
        value: &serde_json::Value,
        cond: Cond,
    ) -> Result<(), InfraError> {
        let version = match cond {
            Cond::Version(v) => v + 1,
            Cond::Absent | Cond::Always => 1,
        };
        let item = Item { version, ..Item::new(format!("TENANT#{tenant}"), sk, value.clone()) };
        self.store.put(&item, cond).await
    }

    pub async fn delete_tenant_record(&self, tenant: &TenantId, sk: &str) -> Result<(), InfraError> {
        self.store.delete(&format!("TENANT#{tenant}"), sk, Cond::Always).await
    }

    // ── tenant configuration (Lambda) ────────────────────────────────────────────────────

    pub async fn tenant_config(&self, tenant: &TenantId) -> Result<Option<serde_json::Value>, InfraError> {
        Ok(self.store.get(&format!("TENANT#{tenant}"), "CONFIG").await?.map(|i| i.data))
    }

    /// Stores the tenant's configuration; the first store also records when the tenant was
    /// connected (the line the `gradual` adoption policy draws).
    pub async fn put_tenant_config(
        &self,
        tenant: &TenantId,
        doc: serde_json::Value,
    ) -> Result<(), InfraError> {
        self.store.put(&Item::new(format!("TENANT#{tenant}"), "CONFIG", doc), Cond::Always).await?;
        let connected =
            Item::new(format!("TENANT#{tenant}"), "CONNECTED", serde_json::json!({ "at": self.now() }));
        match self.store.put(&connected, Cond::Absent).await {
            Ok(()) | Err(InfraError::Conflict) => {}
            Err(e) => return Err(e),
        }
        let index = Item::new("TENANTS", format!("TENANT#{tenant}"), serde_json::json!({ "id": tenant }));
        self.store.put(&index, Cond::Always).await
    }

    /// Tenants with a stored configuration.
    pub async fn tenant_ids(&self) -> Result<Vec<TenantId>, InfraError> {
        #[derive(Deserialize)]
        struct Entry {
            id: TenantId,
        }
        let entries: Vec<Entry> = self.list("TENANTS", "TENANT#").await?;
        Ok(entries.into_iter().map(|e| e.id).collect())
    }

    /// When the tenant's configuration was first stored; `None` before that (everything counts
    /// as new then).
    pub async fn connected_at(&self, tenant: &TenantId) -> Result<Option<Instant>, InfraError> {
        #[derive(Deserialize)]
        struct Connected {
            at: Instant,
        }
        let item = self.store.get(&format!("TENANT#{tenant}"), "CONNECTED").await?;
        Ok(item.as_ref().map(decode::<Connected>).transpose()?.map(|c| c.at))
    }

    // ── mappings (`portier mapping import`) ──────────────────────────────────────────────

    fn mapping_sk(item: &ItemRef) -> String {
        format!("MAP#{}#{}", item.kind.as_str(), item.id)
    }

    /// Mappings stored for the tenant (by `portier mapping import`), by item.
    pub async fn stored_mappings(&self, tenant: &TenantId) -> Result<Vec<Mapping>, InfraError> {
        self.list(&format!("TENANT#{tenant}"), "MAP#").await
    }

    /// Stores mappings, each replacing the stored one of the same item. Validate first: this
    /// writes item by item (a failed run is repaired by running it again).
    pub async fn put_mappings(&self, tenant: &TenantId, mappings: &[Mapping]) -> Result<(), InfraError> {
        for m in mappings {
            let item = Item::new(format!("TENANT#{tenant}"), Self::mapping_sk(&m.item), encode(m)?);
            self.store.put(&item, Cond::Always).await?;
        }
        Ok(())
    }

    /// The mappings the planner uses: the configuration's, with stored ones replacing those of
    /// the same item and adding the rest (the CSV import is the newer, operator-made truth).
    pub async fn mappings_for(&self, config: &TenantConfig) -> Result<Vec<Mapping>, InfraError> {
        let stored = self.stored_mappings(&config.id).await?;
        let mut merged: Vec<Mapping> =
            config.mappings.iter().filter(|m| !stored.iter().any(|s| s.item == m.item)).cloned().collect();
        merged.extend(stored);
        Ok(merged)
    }

    // ── per-tenant source state (e.g. a Kinnovis booking's newest version) ───────────────

    /// Read-modify-write of one tenant record under its optimistic version: `update` gets the
    /// stored value and returns the new one, or `None` to leave it. Returns what is stored after.
    pub async fn update_tenant_record<T: Serialize + DeserializeOwned>(
        &self,
        tenant: &TenantId,
        sk: &str,
        update: impl Fn(Option<&T>) -> Option<T>,
    ) -> Result<Option<T>, InfraError> {
        let pk = format!("TENANT#{tenant}");
        for _ in 0..CONFLICT_RETRIES {
            let current = self.store.get(&pk, sk).await?;
            let stored: Option<T> = current.as_ref().map(decode).transpose()?;
            let Some(new) = update(stored.as_ref()) else { return Ok(stored) };
            let (version, cond) = match &current {
                Some(item) => (item.version + 1, Cond::Version(item.version)),
                None => (1, Cond::Absent),
            };
            let item = Item { version, ..Item::new(pk.as_str(), sk, encode(&new)?) };
            match self.store.put(&item, cond).await {
                Ok(()) => return Ok(Some(new)),
                Err(InfraError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(InfraError::Conflict)
    }
}
