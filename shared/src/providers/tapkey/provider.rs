//! Tapkey as a [`Provider`]: one grant per (contact, bound lock, window), created exactly once.
//!
//! Before granting, the lock must be active and bound (Tapkey accepts grants on unlicensed locks
//! that then refuse at the door, so the check is ours). Contacts are looked up once per email
//! and cached, so after warm-up a changed entitlement costs exactly one write call.
//! Exactly-once creation: with `resume` the grant is looked up first, and a `Duplicate` answer
//! (also what a retried PUT whose first answer got lost meets) is resolved by looking it up.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::client::{CreateContact, CreateGrant, GrantHolder, NewGrant, TapkeyClient, TapkeyConfig};
use crate::error::CallError;
use crate::http::{ApiClient, ClientLimits, RetryPolicy};
use crate::model::{Applied, AppliedState, ContactId, Email, GrantId, LockId, ProviderKind, Target, Window};
use crate::providers::{GrantProvider, GrantRequest, Granted, Held, Provider, Shape};

/// How long a lock's state is trusted before it is read again.
pub const LOCK_CACHE_TTL: Duration = Duration::from_secs(60);

/// Whether a lock may receive grants, as last read.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LockState {
    Usable,
    Refused(String),
}

/// The Tapkey provider of one tenant.
#[derive(Debug)]
pub struct TapkeyProvider {
    client: TapkeyClient,
    lock_ttl: Duration,
    contacts: Mutex<HashMap<Email, ContactId>>,
    locks: Mutex<HashMap<LockId, (Instant, LockState)>>,
}

/// The limits of its client.
impl ClientLimits for TapkeyProvider {
    fn core_mut(&mut self) -> &mut ApiClient {
        self.client.core_mut()
    }
}

impl TapkeyProvider {
    pub fn new(cfg: TapkeyConfig, http: reqwest::Client, policy: RetryPolicy) -> Self {
        Self {
            client: TapkeyClient::new(cfg, http, policy),
            lock_ttl: LOCK_CACHE_TTL,
            contacts: Mutex::default(),
            locks: Mutex::default(),
        }
    }

    /// How long a lock's active/bound state is cached (default [`LOCK_CACHE_TTL`]; zero reads
    /// it before every grant).
    pub fn with_lock_cache_ttl(mut self, ttl: Duration) -> Self {
        self.lock_ttl = ttl;
        self
    }

    /// The underlying client, for listing locks and grants (`mapping locks`, drift).
    pub fn client(&self) -> &TapkeyClient {
        &self.client
    }

    /// Fails with a permanent, readable reason unless the lock exists, is active and is bound.
    async fn check_lock(&self, id: &LockId) -> Result<(), CallError> {
        let cached = guard(&self.locks)
            .get(id)
            .filter(|(at, _)| at.elapsed() < self.lock_ttl)
            .map(|(_, state)| state.clone());
        let state = match cached {
            Some(state) => state,
            None => {
                let state = self.read_lock(id).await?;
                // Only a usable lock is remembered: a refused one is read again next time, so
                // the grant follows as soon as the operator activates or binds the lock.
                if state == LockState::Usable {
                    guard(&self.locks).insert(id.clone(), (Instant::now(), state.clone()));
                }
                state
            }
        };
        match state {
            LockState::Usable => Ok(()),
            LockState::Refused(reason) => Err(CallError::unavailable(reason)),
        }
    }

    async fn read_lock(&self, id: &LockId) -> Result<LockState, CallError> {
        let owner = &self.client.config().owner_account_id;
        Ok(match self.client.bound_lock(id).await? {
            None => LockState::Refused(format!(
                "Tapkey lock {id} does not exist in owner account {owner} (404): check the mapping"
            )),
            Some(lock) if lock.active == Some(false) => LockState::Refused(format!(
                "Tapkey lock {} ({id}) is not active: it has no licence; activate it in Tapkey \
                 before access can be granted",
                lock.label()
            )),
            Some(lock) => match lock.unbind_date {
                Some(at) => LockState::Refused(format!(
                    "Tapkey lock {} ({id}) is unbound (since {}): bind it again or change the mapping",
                    lock.label(),
                    at.format("%Y-%m-%d %H:%M UTC")
                )),
                None => LockState::Usable,
            },
        })
    }

    /// The contact for this email, created when Tapkey has none.
    async fn contact(&self, email: &Email, name: &str) -> Result<ContactId, CallError> {
        if let Some(id) = self.known_contact(email).await? {
            return Ok(id);
        }
        let id = match self.client.create_contact(email, Some(name)).await? {
            CreateContact::Created(c) => ContactId(c.id),
            // Someone (or a lost answer of ours) created it meanwhile.
            CreateContact::Duplicate => match self.client.find_contact(email).await? {
                Some(c) => ContactId(c.id),
                None => {
                    return Err(CallError::retryable(
                        "Tapkey reported the contact as existing but it could not be found yet",
                    ));
                }
            },
        };
        guard(&self.contacts).insert(email.clone(), id.clone());
        Ok(id)
    }

    /// The contact for this email if Tapkey has one (cached; never creates).
    async fn known_contact(&self, email: &Email) -> Result<Option<ContactId>, CallError> {
        if let Some(id) = guard(&self.contacts).get(email) {
            return Ok(Some(id.clone()));
        }
        let found = self.client.find_contact(email).await?.map(|c| ContactId(c.id));
        if let Some(id) = &found {
            guard(&self.contacts).insert(email.clone(), id.clone());
        }
        Ok(found)
    }

    /// Active grants of this contact on this lock with exactly this window.
    async fn matching_grants(
        &self,
        contact: &ContactId,
        lock: &LockId,
        window: &Window,
    ) -> Result<Vec<GrantId>, CallError> {
        let grants = self.client.active_grants(contact, lock).await?;
        Ok(grants.into_iter().filter(|g| g.has_window(window)).map(|g| GrantId(g.id)).collect())
    }

    fn forget(&self, email: &Email, lock: &LockId) {
        guard(&self.contacts).remove(email);
        guard(&self.locks).remove(lock);
    }
}

#[async_trait]
impl GrantProvider for TapkeyProvider {
    async fn grant(&self, req: &GrantRequest) -> Result<Granted, CallError> {
        let lock = lock_of(&req.target)?;
        self.check_lock(lock).await?;
        // A grant that may exist already (an intent was recorded) is looked up first; that
        // needs the contact. A first grant for an email nobody knows here names the contact
        // inline: one call where a look-up, a contact and a grant would be three.
        let cached = guard(&self.contacts).get(&req.email).cloned();
        let mut contact = match (cached, req.resume) {
            (Some(id), _) => Some(id),
            (None, true) => self.known_contact(&req.email).await?,
            (None, false) => None,
        };
        if req.resume
            && let Some(id) = &contact
            && let Some(grant_id) = self.matching_grants(id, lock, &req.window).await?.into_iter().next()
        {
            return Ok(Granted { contact_id: id.clone(), grant_id });
        }
        // A 404 on create means the cached contact (or lock) vanished: re-resolve once.
        let mut second_try = false;
        loop {
            let holder = match &contact {
                Some(id) => GrantHolder::Contact(id),
                None => GrantHolder::Email(&req.email),
            };
            match self.client.create_grant(&NewGrant::new(lock, holder, &req.window)).await? {
                CreateGrant::Created(g) => {
                    let contact_id = match (g.contact_id, contact) {
                        (Some(id), _) => ContactId(id),
                        (None, Some(id)) => id,
                        // Not in the answer (undocumented): look it up, so the record is whole.
                        (None, None) => self.contact(&req.email, &req.name).await?,
                    };
                    guard(&self.contacts).insert(req.email.clone(), contact_id.clone());
                    return Ok(Granted { contact_id, grant_id: GrantId(g.id) });
                }
                CreateGrant::Duplicate => {
                    // The same grant exists (a lost answer of ours), or Tapkey refused the
                    // inline contact because one exists: resolve the contact and look.
                    let inline = contact.is_none();
                    let id = match contact.take() {
                        Some(id) => id,
                        None => self.contact(&req.email, &req.name).await?,
                    };
                    if let Some(grant_id) =
                        self.matching_grants(&id, lock, &req.window).await?.into_iter().next()
                    {
                        return Ok(Granted { contact_id: id, grant_id });
                    }
                    if inline {
                        contact = Some(id);
                        continue;
                    }
                    return Err(CallError::retryable(
                        "Tapkey reported the grant as a duplicate but no matching active grant was found yet",
                    ));
                }
                CreateGrant::NotFound { .. } if !second_try => {
                    second_try = true;
                    self.forget(&req.email, lock);
                    contact = None;
                    self.check_lock(lock).await?;
                }
                CreateGrant::NotFound { reason } => {
                    return Err(CallError::permanent(format!(
                        "Tapkey could not create a grant on lock {lock}: {reason}"
                    )));
                }
            }
        }
    }

    async fn revoke(&self, applied: &Applied) -> Result<(), CallError> {
        let lock = lock_of(&applied.target)?;
        match &applied.state {
            AppliedState::Created { grant_id } => {
                self.client.revoke_grant(grant_id).await?;
                Ok(())
            }
            AppliedState::Intent => {
                let contact = match &applied.contact_id {
                    Some(id) => Some(id.clone()),
                    None => self.known_contact(&applied.email).await?,
                };
                // No contact: the create never happened, so there is nothing to remove.
                let Some(contact) = contact else { return Ok(()) };
                for grant_id in self.matching_grants(&contact, lock, &applied.window).await? {
                    self.client.revoke_grant(&grant_id).await?;
                }
                Ok(())
            }
            AppliedState::Member { .. } => Err(CallError::config(format!(
                "{} is a group membership, not a Tapkey grant",
                applied.target
            ))),
        }
    }

    async fn list_grants(&self, targets: &[Target]) -> Result<Vec<Held>, CallError> {
        let locks: Vec<&LockId> = targets
            .iter()
            .filter_map(|t| match t {
                Target::TapkeyLock(l) => Some(l),
                _ => None,
            })
            .collect();
        if locks.is_empty() {
            return Ok(Vec::new());
        }
        let grants = self.client.grants(Some("active eq true")).await?;
        let emails: HashMap<String, Email> = self
            .client
            .contacts()
            .await?
            .into_iter()
            .filter_map(|c| {
                let email =
                    c.identifier.as_deref().or(c.email.as_deref()).and_then(|e| Email::parse(e).ok())?;
                Some((c.id, email))
            })
            .collect();
        Ok(grants
            .into_iter()
            .filter(|g| g.is_active())
            .filter_map(|g| {
                let lock = locks.iter().find(|l| g.bound_lock_id.as_deref() == Some(l.as_str()))?;
                Some(Held {
                    target: Target::TapkeyLock((*lock).clone()),
                    email: g.contact_id.as_ref().and_then(|c| emails.get(c).cloned()),
                    id: g.id.clone(),
                    window: Window::new(g.valid_from, g.valid_before),
                })
            })
            .collect())
    }
}

#[async_trait]
impl Provider for TapkeyProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Tapkey
    }

    fn shape(&self) -> Shape<'_> {
        Shape::Grants(self)
    }

    async fn remove_held(&self, held: &Held) -> Result<(), CallError> {
        self.client.revoke_grant(&GrantId(held.id.clone())).await.map(|_| ())
    }
}

fn lock_of(target: &Target) -> Result<&LockId, CallError> {
    match target {
        Target::TapkeyLock(lock) => Ok(lock),
        other => Err(CallError::config(format!("{other} is not a Tapkey target"))),
    }
}

/// Cache maps hold plain data updated in one step, so a poisoned lock is still consistent.
fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
