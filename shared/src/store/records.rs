//! Portier's typed records over the record-level [`Store`] (the layout of design §6.4).

use std::sync::Arc;

use chrono::{Duration, DurationRound, TimeDelta};
use serde::{Deserialize, Serialize, de::DeserializeOwned};

use super::{Cond, Item, Store};
use crate::clock::Clock;
use crate::config::TenantConfig;
use crate::error::InfraError;
use crate::model::{
    Applied, Email, Entitlement, Failure, Instant, ItemRef, Mapping, Profile, ProviderKind, ProviderUser,
    Seen, SubjectKey, Target, TenantId,
};

/// How long a seen webhook id is remembered (longer than any sender's retry horizon).
pub const EVENT_TTL_DAYS: i64 = 14;
/// How long audit entries are kept.
pub const AUDIT_TTL_DAYS: i64 = 90;
/// How far back the tick always looks for timers it missed.
pub const TIMER_CATCH_UP_HOURS: i64 = 24;
/// How long a timer is kept, and how far back a tick looks after the last one it finished: a
/// tick that was down for days still finds every window edge it missed (a membership whose
/// window ended must still be removed).
pub const TIMER_KEEP_DAYS: i64 = 31;

/// One provider mutation with its cause, kept for audit and `explain`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    pub at: Instant,
    pub action: String,
    pub target: String,
    pub cause: String,
    pub outcome: String,
}

/// How long a quarantined body is kept (it may hold names and emails).
pub const QUARANTINE_TTL_DAYS: i64 = 30;
/// New quarantined bodies kept per tenant and day; repeats of one body are counted, not kept.
pub const QUARANTINE_DAILY_CAP: u64 = 500;

/// A verified webhook body that could not be parsed, kept instead of dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Quarantined {
    pub at: Instant,
    pub event_id: String,
    pub action: String,
    pub reason: String,
    pub body: String,
    /// How many more times the same body came in after this one.
    #[serde(default)]
    pub repeats: u32,
}

/// The tenant record that says webhooks were accepted but not queued (the queue was full).
pub const OVERFLOW_RECORD: &str = "OVERFLOW";

/// Webhooks accepted while the tenant's queue was at its bound: what they said is read back
/// from the source by a resync of the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Overflow {
    pub since: Instant,
    pub last: Instant,
    pub webhooks: u64,
}

/// The typed view of the table, shared by every runtime.
#[derive(Clone)]
pub struct Records {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

fn subject_pk(s: &SubjectKey) -> String {
    format!("SUBJ#{s}")
}

fn decode<T: DeserializeOwned>(item: &Item) -> Result<T, InfraError> {
    serde_json::from_value(item.data.clone())
        .map_err(|e| InfraError::Backend(format!("record {}/{} is unreadable: {e}", item.pk, item.sk)))
}

fn encode<T: Serialize>(value: &T) -> Result<serde_json::Value, InfraError> {
    serde_json::to_value(value).map_err(InfraError::backend)
}

/// A conditional write that lost its race: the other writer's record stands.
fn ignore_conflict(e: InfraError) -> Result<(), InfraError> {
    match e {
        InfraError::Conflict => Ok(()),
        e => Err(e),
    }
}

/// Tries a read-modify-write a few times when another writer got there first.
const CONFLICT_RETRIES: usize = 5;

impl Records {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock }
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    async fn list<T: DeserializeOwned>(&self, pk: &str, prefix: &str) -> Result<Vec<T>, InfraError> {
        self.store.query(pk, prefix).await?.iter().map(decode).collect()
    }

    /// Writes `value` unless the stored record is at least as new (`is_newer` says so).
    async fn put_monotonic<T: Serialize + DeserializeOwned>(
        &self,
        pk: &str,
        sk: &str,
        value: &T,
        is_newer: impl Fn(&T, &T) -> bool,
    ) -> Result<bool, InfraError> {
        for _ in 0..CONFLICT_RETRIES {
            let current = self.store.get(pk, sk).await?;
            let (version, cond) = match &current {
                Some(item) => {
                    let stored: T = decode(item)?;
                    if !is_newer(value, &stored) {
                        return Ok(false);
                    }
                    (item.version + 1, Cond::Version(item.version))
                }
                None => (1, Cond::Absent),
            };
            let item = Item { version, ..Item::new(pk, sk, encode(value)?) };
            match self.store.put(&item, cond).await {
                Ok(()) => return Ok(true),
                Err(InfraError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(InfraError::Conflict)
    }

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
