//! What the webhooks leave behind: done event ids, merged hints, overflow, quarantine.

use chrono::Duration;

use super::{
    EVENT_TTL_DAYS, OVERFLOW_RECORD, Overflow, QUARANTINE_DAILY_CAP, QUARANTINE_TTL_DAYS, Quarantined,
    Records, decode, encode, ignore_conflict, subject_pk,
};
use crate::error::InfraError;
use crate::model::{SubjectKey, TenantId};
use crate::store::{Cond, Item};

impl Records {
    // ── webhook events ───────────────────────────────────────────────────────────────────

    /// True the first time an event id is marked done (within the event TTL).
    pub async fn mark_event_done(&self, event_id: &str) -> Result<bool, InfraError> {
        let item = Item {
            expires_at: Some((self.now() + Duration::days(EVENT_TTL_DAYS)).timestamp()),
            ..Item::new(format!("EVENT#{event_id}"), "EVENT", serde_json::json!({ "at": self.now() }))
        };
        match self.store.put(&item, Cond::Absent).await {
            Ok(()) => Ok(true),
            Err(InfraError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub async fn event_done(&self, event_id: &str) -> Result<bool, InfraError> {
        Ok(self.store.get(&format!("EVENT#{event_id}"), "EVENT").await?.is_some())
    }

    // ── hints (merging repeated webhooks) ───────────────────────────────────────────────

    fn queued_sk(hint: &str) -> String {
        format!("HINTQ#{hint}")
    }

    fn started_sk(hint: &str) -> String {
        format!("HINTS#{hint}")
    }

    /// Remembers that a message of `hint` was queued (after the send succeeded).
    pub async fn hint_queued(&self, s: &SubjectKey, hint: &str, event_id: &str) -> Result<(), InfraError> {
        let item = Item {
            expires_at: Some((self.now() + Duration::days(1)).timestamp()),
            ..Item::new(subject_pk(s), Self::queued_sk(hint), serde_json::json!({ "event_id": event_id }))
        };
        self.store.put(&item, Cond::Always).await
    }

    /// Marks the message of `hint` as started; the worker does so before it reads the source.
    pub async fn hint_started(&self, s: &SubjectKey, hint: &str, event_id: &str) -> Result<(), InfraError> {
        let item = Item {
            expires_at: Some((self.now() + Duration::days(1)).timestamp()),
            ..Item::new(subject_pk(s), Self::started_sk(hint), serde_json::json!({ "event_id": event_id }))
        };
        self.store.put(&item, Cond::Always).await
    }

    /// True when the last queued message of `hint` has not started yet.
    pub async fn hint_pending(&self, s: &SubjectKey, hint: &str) -> Result<bool, InfraError> {
        let event = |item: Option<Item>| item.and_then(|i| i.data.get("event_id").cloned());
        let queued = event(self.store.get(&subject_pk(s), &Self::queued_sk(hint)).await?);
        let Some(queued) = queued else { return Ok(false) };
        let started = event(self.store.get(&subject_pk(s), &Self::started_sk(hint)).await?);
        Ok(started.as_ref() != Some(&queued))
    }

    // ── overflow (a tenant's queue at its bound) ─────────────────────────────────────────

    /// Remembers that a webhook of `tenant` was accepted but not queued because the tenant's
    /// queue was full; the next tick's resync of the tenant reads what it said from the source.
    pub async fn note_overflow(&self, tenant: &TenantId) -> Result<(), InfraError> {
        let now = self.now();
        self.update_tenant_record(tenant, OVERFLOW_RECORD, |o: Option<&Overflow>| {
            Some(Overflow {
                since: o.map_or(now, |o| o.since),
                last: now,
                webhooks: o.map_or(0, |o| o.webhooks) + 1,
            })
        })
        .await
        .map(|_| ())
    }

    /// The tenant's overflow, with the version [`Records::clear_overflow`] needs.
    pub async fn overflow(&self, tenant: &TenantId) -> Result<Option<(Overflow, u64)>, InfraError> {
        let Some(item) = self.store.get(&format!("TENANT#{tenant}"), OVERFLOW_RECORD).await? else {
            return Ok(None);
        };
        Ok(Some((decode(&item)?, item.version)))
    }

    /// Clears the overflow a resync has covered, unless another webhook overflowed meanwhile
    /// (then the version moved, and the next tick resyncs again).
    pub async fn clear_overflow(&self, tenant: &TenantId, version: u64) -> Result<(), InfraError> {
        match self.store.delete(&format!("TENANT#{tenant}"), OVERFLOW_RECORD, Cond::Version(version)).await {
            Ok(()) | Err(InfraError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    // ── quarantine ───────────────────────────────────────────────────────────────────────

    /// Keeps a verified but unparseable body: one record per distinct body (repeats counted),
    /// for [`QUARANTINE_TTL_DAYS`], and at most [`QUARANTINE_DAILY_CAP`] new bodies per tenant
    /// and day, so replays can neither fill the table nor keep personal data forever.
    pub async fn quarantine(&self, tenant: &TenantId, q: &Quarantined) -> Result<(), InfraError> {
        let pk = format!("QUARANTINE#{tenant}");
        let hash = hex::encode(&<sha2::Sha256 as sha2::Digest>::digest(q.body.as_bytes())[..16]);
        let sk = format!("BODY#{hash}");
        let expires_at = Some((q.at + Duration::days(QUARANTINE_TTL_DAYS)).timestamp());
        if let Some(item) = self.store.get(&pk, &sk).await? {
            let mut kept: Quarantined = decode(&item)?;
            kept.repeats += 1;
            let again =
                Item { version: item.version + 1, expires_at, ..Item::new(pk.as_str(), sk, encode(&kept)?) };
            return self.store.put(&again, Cond::Version(item.version)).await.or_else(ignore_conflict);
        }
        // Counted per day under the tenant; two writers racing may keep one body too many.
        let counter = TenantId(format!("{tenant}#quarantine"));
        let day = format!("DAY#{}", q.at.format("%Y-%m-%d"));
        let kept_today: Option<u64> = self.tenant_record(&counter, &day).await?;
        if kept_today.unwrap_or(0) >= QUARANTINE_DAILY_CAP {
            tracing::warn!(tenant = %tenant, "quarantine full for today; body not kept");
            return Ok(());
        }
        self.update_tenant_record(&counter, &day, |n: Option<&u64>| Some(n.copied().unwrap_or(0) + 1))
            .await?;
        self.store.put(&Item { expires_at, ..Item::new(pk, sk, encode(q)?) }, Cond::Always).await
    }

    pub async fn quarantined(&self, tenant: &TenantId) -> Result<Vec<Quarantined>, InfraError> {
        self.list(&format!("QUARANTINE#{tenant}"), "BODY#").await
    }
}
