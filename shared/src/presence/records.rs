//! The presence records of one tenant, under `PRESENCE#tenant` (same items in SQLite and
//! DynamoDB):
//!
//! | SK | what |
//! |---|---|
//! | `INBOX#<at>#<provider>#<event id>` | a door event waiting for Nexudus, by time |
//! | `DONE#<provider>#<event id>` | the event was worked, with its outcome (TTL 14 days) |
//! | `STATE#<person>` | the person's last known presence |
//! | `UNKNOWN#<provider>#<user>` | door events by a user Portier did not create |
//! | `CURSOR#<provider>` | how far the entries were read (Salto KS) |
//! | `LEASE#<name>` | the one poll loop or inbox worker of the tenant (expires) |
//! | `ERROR` | the last failure, for `status` |

use chrono::Duration;
use serde::{Deserialize, Serialize};

use super::{DoorEvent, Outcome};
use crate::error::InfraError;
use crate::model::{Instant, ProviderKind, SubjectKey, TenantId};
use crate::store::records::EVENT_TTL_DAYS;
use crate::store::{Cond, Item, Records};

/// How long a lease holds when its holder dies without releasing it.
pub const LEASE_SECONDS: i64 = 300;

/// A person's last known presence (Nexudus stays the truth; this is for `explain`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresenceState {
    /// The open Nexudus check-in, when in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkin_id: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Instant>,
    pub last_door: String,
    pub last_provider: ProviderKind,
    pub last_event_at: Instant,
}

impl PresenceState {
    pub fn open(id: i64, since: Instant, ev: &DoorEvent) -> Self {
        Self {
            checkin_id: (id != 0).then_some(id),
            since: Some(since),
            last_door: ev.door.clone(),
            last_provider: ev.provider,
            last_event_at: ev.at,
        }
    }

    pub fn closed(ev: &DoorEvent) -> Self {
        Self {
            checkin_id: None,
            since: None,
            last_door: ev.door.clone(),
            last_provider: ev.provider,
            last_event_at: ev.at,
        }
    }

    pub fn is_in(&self) -> bool {
        self.since.is_some()
    }
}

/// Door events of a provider user Portier did not create (nothing was written for them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnknownUser {
    pub provider: ProviderKind,
    pub user: String,
    pub first_seen: Instant,
    pub last_seen: Instant,
    pub last_door: String,
    pub last_event_id: String,
    pub events: u64,
}

/// How far a provider's event listing was read: everything before `after` is done, and the
/// ids at exactly `after` in `seen` too (several entries may share a second).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub after: Instant,
    #[serde(default)]
    pub seen: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_poll: Option<Instant>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Done {
    at: Instant,
    outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// A lease this process holds.
#[derive(Debug, Clone)]
pub struct Lease {
    sk: String,
    holder: String,
}

/// The presence records of one tenant.
pub struct PresenceRecords<'a> {
    records: &'a Records,
    tenant: &'a TenantId,
    pk: String,
}

fn decode<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T, InfraError> {
    serde_json::from_value(item.data.clone())
        .map_err(|e| InfraError::Backend(format!("record {}/{} is unreadable: {e}", item.pk, item.sk)))
}

fn encode<T: Serialize>(v: &T) -> Result<serde_json::Value, InfraError> {
    serde_json::to_value(v).map_err(InfraError::backend)
}

fn ts(t: Instant) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

/// The index of provider users by their ids: `PUSER#tenant#provider` / `ID#<id>`.
pub fn user_index_pk(tenant: &TenantId, provider: ProviderKind) -> String {
    format!("PUSER#{tenant}#{}", provider.as_str())
}

impl<'a> PresenceRecords<'a> {
    pub fn new(records: &'a Records, tenant: &'a TenantId) -> Self {
        Self { records, tenant, pk: format!("PRESENCE#{tenant}") }
    }

    fn store(&self) -> &dyn crate::store::Store {
        self.records.store().as_ref()
    }

    fn done_sk(ev: &DoorEvent) -> String {
        format!("DONE#{}#{}", ev.provider.as_str(), ev.event_id)
    }

    pub async fn done(&self, ev: &DoorEvent) -> Result<bool, InfraError> {
        Ok(self.store().get(&self.pk, &Self::done_sk(ev)).await?.is_some())
    }

    pub async fn mark_done(
        &self,
        ev: &DoorEvent,
        outcome: Outcome,
        reason: Option<&str>,
    ) -> Result<(), InfraError> {
        let now = self.records.now();
        let done = Done { at: now, outcome, reason: reason.map(str::to_owned) };
        let item = Item {
            expires_at: Some((now + Duration::days(EVENT_TTL_DAYS)).timestamp()),
            ..Item::new(self.pk.as_str(), Self::done_sk(ev), encode(&done)?)
        };
        self.store().put(&item, Cond::Always).await
    }

    /// Adds the event to the inbox; `false` when it is there already.
    pub async fn enqueue(&self, ev: &DoorEvent) -> Result<bool, InfraError> {
        let sk = format!("INBOX#{}#{}#{}", ts(ev.at), ev.provider.as_str(), ev.event_id);
        match self.store().put(&Item::new(self.pk.as_str(), sk, encode(ev)?), Cond::Absent).await {
            Ok(()) => Ok(true),
            Err(InfraError::Conflict) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The waiting events, oldest first, with their sort keys.
    pub async fn inbox(&self) -> Result<Vec<(String, DoorEvent)>, InfraError> {
        let items = self.store().query(&self.pk, "INBOX#").await?;
        items.iter().map(|i| Ok((i.sk.clone(), decode(i)?))).collect()
    }

    pub async fn remove_from_inbox(&self, sk: &str) -> Result<(), InfraError> {
        self.store().delete(&self.pk, sk, Cond::Always).await
    }

    pub async fn state(&self, s: &SubjectKey) -> Result<Option<PresenceState>, InfraError> {
        self.store().get(&self.pk, &format!("STATE#{}", s.person)).await?.as_ref().map(decode).transpose()
    }

    pub async fn save_state(&self, s: &SubjectKey, state: &PresenceState) -> Result<(), InfraError> {
        let item = Item::new(self.pk.as_str(), format!("STATE#{}", s.person), encode(state)?);
        self.store().put(&item, Cond::Always).await
    }

    /// Counts a door event by a user Portier does not know (no name, no email: only ids).
    pub async fn note_unknown(&self, ev: &DoorEvent) -> Result<(), InfraError> {
        let sk = format!("UNKNOWN#{}#{}", ev.provider.as_str(), ev.user);
        let now = self.records.now();
        for _ in 0..5 {
            let current = self.store().get(&self.pk, &sk).await?;
            let (next, cond) = match &current {
                Some(item) => {
                    let mut u: UnknownUser = decode(item)?;
                    u.last_seen = now;
                    u.last_door = ev.door.clone();
                    u.last_event_id = ev.event_id.clone();
                    u.events += 1;
                    ((u, item.version + 1), Cond::Version(item.version))
                }
                None => (
                    (
                        UnknownUser {
                            provider: ev.provider,
                            user: ev.user.clone(),
                            first_seen: now,
                            last_seen: now,
                            last_door: ev.door.clone(),
                            last_event_id: ev.event_id.clone(),
                            events: 1,
                        },
                        1,
                    ),
                    Cond::Absent,
                ),
            };
            let item = Item { version: next.1, ..Item::new(self.pk.as_str(), sk.as_str(), encode(&next.0)?) };
            match self.store().put(&item, cond).await {
                Ok(()) => return Ok(()),
                Err(InfraError::Conflict) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(InfraError::Conflict)
    }

    pub async fn unknown_users(&self) -> Result<Vec<UnknownUser>, InfraError> {
        self.store().query(&self.pk, "UNKNOWN#").await?.iter().map(decode).collect()
    }

    pub async fn cursor(&self, provider: ProviderKind) -> Result<Option<Cursor>, InfraError> {
        self.store()
            .get(&self.pk, &format!("CURSOR#{}", provider.as_str()))
            .await?
            .as_ref()
            .map(decode)
            .transpose()
    }

    pub async fn save_cursor(&self, provider: ProviderKind, c: &Cursor) -> Result<(), InfraError> {
        let item = Item::new(self.pk.as_str(), format!("CURSOR#{}", provider.as_str()), encode(c)?);
        self.store().put(&item, Cond::Always).await
    }

    pub async fn note_error(&self, message: &str) -> Result<(), InfraError> {
        let item = Item::new(
            self.pk.as_str(),
            "ERROR",
            serde_json::json!({ "at": self.records.now(), "message": message }),
        );
        self.store().put(&item, Cond::Always).await
    }

    pub async fn clear_error(&self) -> Result<(), InfraError> {
        self.store().delete(&self.pk, "ERROR", Cond::Always).await
    }

    pub async fn last_error(&self) -> Result<Option<String>, InfraError> {
        let item = self.store().get(&self.pk, "ERROR").await?;
        Ok(item.and_then(|i| i.data.get("message").and_then(|m| m.as_str()).map(str::to_owned)))
    }

    /// Takes the lease `name` (one holder per tenant; it lapses after [`LEASE_SECONDS`] when
    /// its holder died). `None` when another holder has it.
    pub async fn acquire_lease(&self, name: &str) -> Result<Option<Lease>, InfraError> {
        let sk = format!("LEASE#{name}");
        let holder = uuid::Uuid::new_v4().simple().to_string();
        let now = self.records.now();
        let item = Item {
            expires_at: Some((now + Duration::seconds(LEASE_SECONDS)).timestamp()),
            ..Item::new(self.pk.as_str(), sk.as_str(), serde_json::json!({ "holder": holder, "at": now }))
        };
        match self.store().put(&item, Cond::Absent).await {
            Ok(()) => Ok(Some(Lease { sk, holder })),
            Err(InfraError::Conflict) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease back, only if this holder still has it.
    pub async fn release_lease(&self, lease: &Lease) -> Result<(), InfraError> {
        let Some(item) = self.store().get(&self.pk, &lease.sk).await? else { return Ok(()) };
        if item.data.get("holder").and_then(|h| h.as_str()) != Some(lease.holder.as_str()) {
            return Ok(());
        }
        match self.store().delete(&self.pk, &lease.sk, Cond::Version(item.version)).await {
            Ok(()) | Err(InfraError::Conflict) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The person whose provider user has this id: the index Portier writes whenever it stores
    /// a provider user; users stored before the index existed are indexed on the first miss
    /// (once per tenant and provider).
    pub async fn person_of(
        &self,
        provider: ProviderKind,
        user: &str,
    ) -> Result<Option<SubjectKey>, InfraError> {
        let pk = user_index_pk(self.tenant, provider);
        let sk = format!("ID#{user}");
        if let Some(hit) = self.lookup(&pk, &sk).await? {
            return Ok(Some(hit));
        }
        let marker = format!("PUSER_INDEXED#{}", provider.as_str());
        if self.store().get(&self.pk, &marker).await?.is_some() {
            return Ok(None);
        }
        for subject in self.records.subjects(self.tenant).await? {
            for u in self.records.provider_users(&subject).await? {
                if u.provider == provider {
                    index_user(self.records, &subject, &u).await?;
                }
            }
        }
        let item = Item::new(self.pk.as_str(), marker, serde_json::json!({ "at": self.records.now() }));
        self.store().put(&item, Cond::Always).await?;
        self.lookup(&pk, &sk).await
    }

    async fn lookup(&self, pk: &str, sk: &str) -> Result<Option<SubjectKey>, InfraError> {
        let item = self.store().get(pk, sk).await?;
        Ok(item.and_then(|i| i.data.get("subject").cloned()).and_then(|s| serde_json::from_value(s).ok()))
    }
}

/// Indexes a provider user by the id its door events carry: Salto KS entries name the platform
/// user id (`user.id`), Brivo events the user id.
pub async fn index_user(
    records: &Records,
    subject: &SubjectKey,
    user: &crate::model::ProviderUser,
) -> Result<(), InfraError> {
    let Some(ids) = &user.ids else { return Ok(()) };
    let id = match user.provider {
        ProviderKind::Salto => ids.platform_id.as_deref().unwrap_or(ids.id.as_str()),
        _ => ids.id.as_str(),
    };
    let mut all = vec![id.to_owned()];
    all.extend(user.retired.iter().map(|r| match user.provider {
        ProviderKind::Salto => r.ids.platform_id.clone().unwrap_or_else(|| r.ids.id.clone()),
        _ => r.ids.id.clone(),
    }));
    for id in all {
        let item = Item::new(
            user_index_pk(&subject.tenant, user.provider),
            format!("ID#{id}"),
            serde_json::json!({ "subject": subject }),
        );
        records.store().put(&item, Cond::Always).await?;
    }
    Ok(())
}
