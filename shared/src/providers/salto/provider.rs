//! Salto KS as a membership [`Provider`]: one site user per subject (both ids stored), group
//! membership changed with one `PATCH …/access_groups/{ag}/users` per group and reconcile, shared
//! by the changes of that group that wait at the same time ([`super::batch`]).
//!
//! Pitfalls handled (reference §2): a new user is invisible for about a minute (404 `2202` /
//! 403 `2203` on the group call) — retried while the user is younger than
//! [`CONSISTENCY_WINDOW`]; a site without a free seat creates the user silently suspended — the
//! user is deleted again and the failure is permanent and readable; an access group without a
//! time schedule never reaches the lock — a warning, checked once per group.

use std::collections::{BTreeMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;

use super::batch::MemberBatcher;
use super::client::{NewUser, PatchMembers, SaltoClient, SaltoConfig, SiteUser, pick_role};
use crate::error::CallError;
use crate::http::{ApiClient, ClientLimits, RetryPolicy};
use crate::model::{
    Email, Instant, ProviderKind, ProviderUser, ProviderUserIds, SaltoGroupId, Target, UserState,
};
use crate::providers::{
    Held, Member, MembershipChange, MembershipOutcome, MembershipProvider, Person, Provider, Shape,
    UserAction,
};

/// How long after creating a user Salto KS's "not found"/"not possible" answers are taken as
/// eventual consistency (measured ~1 min) rather than as a real refusal.
pub const CONSISTENCY_WINDOW: chrono::Duration = chrono::Duration::minutes(2);

/// When the message comes back after such an answer.
pub const CONSISTENCY_RETRY: Duration = Duration::from_secs(20);

/// The Salto KS provider of one tenant.
#[derive(Debug)]
pub struct SaltoProvider {
    client: SaltoClient,
    /// Access groups whose time schedules were checked by this process.
    checked_groups: Mutex<HashSet<SaltoGroupId>>,
    /// The role id new users get, read from the site once per process.
    role: tokio::sync::OnceCell<String>,
    /// Membership changes of one group waiting at the same time share one PATCH.
    batcher: MemberBatcher,
}

/// The limits of its client.
impl ClientLimits for SaltoProvider {
    fn core_mut(&mut self) -> &mut ApiClient {
        self.client.core_mut()
    }
}

impl SaltoProvider {
    pub fn new(cfg: SaltoConfig, http: reqwest::Client, policy: RetryPolicy) -> Self {
        Self {
            client: SaltoClient::new(cfg, http, policy),
            checked_groups: Mutex::default(),
            role: tokio::sync::OnceCell::new(),
            batcher: MemberBatcher::default(),
        }
    }

    /// One group's membership change, coalesced with the group's others waiting at the time
    /// (see [`super::batch`]); the answer is this change's own.
    async fn patch_members(
        &self,
        group: &SaltoGroupId,
        add: Vec<String>,
        remove: Vec<String>,
    ) -> Result<PatchMembers, CallError> {
        let patch = |add: Vec<String>, remove: Vec<String>| async move {
            self.client.patch_members(group, &add, &remove).await
        };
        self.batcher.change(group, add, remove, patch).await
    }

    pub fn client(&self) -> &SaltoClient {
        &self.client
    }

    /// The id of the role new users get: the configured `user_role` or the site's default user
    /// role, looked up in `GET …/roles` (ids differ per site). Only a success is kept.
    async fn role_id(&self) -> Result<&str, CallError> {
        let cfg = self.client.config();
        self.role
            .get_or_try_init(|| async {
                let roles = self.client.roles().await?;
                pick_role(&roles, cfg.user_role.as_deref(), &cfg.site_id).map(|r| r.id.clone())
            })
            .await
            .map(String::as_str)
    }

    /// A warning when the group has no time schedule (it would never reach the lock).
    async fn schedule_warning(&self, group: &SaltoGroupId) -> Result<Option<String>, CallError> {
        if guard(&self.checked_groups).contains(group) {
            return Ok(None);
        }
        let count = self.client.time_schedule_count(group).await?;
        guard(&self.checked_groups).insert(group.clone());
        Ok(match count {
            Some(0) => Some(format!(
                "Salto KS access group {group} has no time schedule: its members cannot open its doors \
                 until one is added (e.g. always, Monday to Sunday 00:00–23:59)"
            )),
            _ => None,
        })
    }

    fn user(
        &self,
        person: &Person,
        site_user: &super::client::SiteUser,
        created_at: Instant,
    ) -> Result<ProviderUser, CallError> {
        let Some(platform) = site_user.platform_id() else {
            return Err(CallError::retryable(format!(
                "Salto KS returned user {} without its platform user id",
                site_user.id
            )));
        };
        Ok(ProviderUser {
            provider: ProviderKind::Salto,
            ids: Some(ProviderUserIds { id: site_user.id.clone(), platform_id: Some(platform.to_owned()) }),
            email: person.email.clone(),
            state: UserState::Active,
            created_at,
            invited: false,
            retired: Vec::new(),
        })
    }
}

#[async_trait]
impl MembershipProvider for SaltoProvider {
    async fn ensure_user(
        &self,
        person: &Person,
        known: Option<&ProviderUser>,
        now: Instant,
    ) -> Result<ProviderUser, CallError> {
        // A user made for another address is not reused: the new address gets its own
        // invitation, and the old user's memberships are removed by the same reconcile.
        if let Some(k) = known.filter(|k| k.ids.is_some() && k.email == person.email) {
            return Ok(k.clone());
        }
        // Salto KS accepts the same email twice, so a create whose outcome is unknown (a crash
        // after the intent, a lost answer, a timeout) is never simply sent again: the email is
        // looked up first, and the create repeated only when no user has it.
        let policy = self.client.retry_policy().clone();
        // After an email change the new address's create may also have happened in an earlier
        // attempt whose answer was lost, so it is looked up too.
        let unknown = known.and_then(|k| match k.ids {
            None => Some(k.created_at),
            Some(_) if k.email != person.email => Some(now),
            Some(_) => None,
        });
        // Before any lookup or create: no user is made without a role that fits.
        let role = self.role_id().await?;
        // Only a failed create is tried again, after looking the email up; a failed lookup ends
        // it (the flag says which failed). `Err` of a try is the user a lookup found.
        let again = |(e, create): &(CallError, bool)| create.then(|| crate::retry::call_error(e)).flatten();
        let made = crate::retry::retry(&policy, again, |n| async move {
            if let Some(created_at) = if n == 0 { unknown } else { Some(now) } {
                let users = self.client.users().await.map_err(|e| (e, false))?;
                if let Some(u) = users.into_iter().find(|u| u.is(&person.email)) {
                    return Ok(Err((u, created_at)));
                }
            }
            let new = NewUser::new(&person.first_name, &person.last_name, &person.email, role);
            self.client.create_user(&new).await.map(Ok).map_err(|e| (e, true))
        });
        let created = match made.await.map_err(|(e, _)| e)? {
            Ok(created) => created,
            Err((u, created_at)) => {
                // A suspended user with this email (say, from before the person switched
                // addresses and back) is taken back rather than doubled.
                if !u.is_subscribed() {
                    self.client.set_subscription(&u.id, "subscribed").await?;
                }
                return self.user(person, &u, created_at);
            }
        };
        if !created.is_subscribed() {
            // Silent seat exhaustion: the user exists but can never open a door. Remove it so
            // nothing is left half-done, and say what to do.
            self.client.delete_user(&created.id).await?;
            return Err(CallError::permanent(format!(
                "Salto KS site {} has no free user seat (the new user came back with subscription_state \
                 \"{}\"): free a seat or extend the subscription",
                self.client.config().site_id,
                created.subscription_state.as_deref().unwrap_or("suspended")
            )));
        }
        self.user(person, &created, now)
    }

    async fn change_memberships(&self, change: &MembershipChange) -> Result<MembershipOutcome, CallError> {
        let platform = |ids: &ProviderUserIds| ids.platform_id.clone().unwrap_or_else(|| ids.id.clone());
        let mut groups: BTreeMap<SaltoGroupId, (Vec<String>, Vec<String>)> = BTreeMap::new();
        if !change.add.is_empty() {
            let Some(ids) = change.user.as_ref().and_then(|u| u.ids.as_ref()) else {
                return Err(CallError::config("Salto KS: memberships to add but no user"));
            };
            for t in &change.add {
                groups.entry(group_of(t)?.clone()).or_default().0.push(platform(ids));
            }
        }
        for (t, ids) in &change.remove {
            groups.entry(group_of(t)?.clone()).or_default().1.push(platform(ids));
        }
        let young = change
            .user
            .as_ref()
            .is_some_and(|u| change.now.signed_duration_since(u.created_at) < CONSISTENCY_WINDOW);

        let mut outcome = MembershipOutcome::default();
        for (group, (add, mut remove)) in groups {
            // Removing and adding the same user cancels out: no call.
            remove.retain(|r| !add.contains(r));
            let target = Target::SaltoGroup(group.clone());
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            if !add.is_empty()
                && let Some(w) = self.schedule_warning(&group).await?
            {
                outcome.warnings.push(w);
            }
            let adding = !add.is_empty();
            match self.patch_members(&group, add, remove).await? {
                PatchMembers::Done => {}
                PatchMembers::UserNotFound(why) | PatchMembers::NotExecutable(why) if young && adding => {
                    return Err(CallError::Retryable {
                        reason: format!(
                            "Salto KS answered {why} for access group {group} right after creating the user \
                             (eventual consistency); trying again"
                        ),
                        after: Some(CONSISTENCY_RETRY),
                    });
                }
                PatchMembers::UserNotFound(why) | PatchMembers::NotExecutable(why) => {
                    outcome.refused.push((
                        target,
                        format!("Salto KS refused the change of access group {group}: {why}"),
                    ));
                }
                PatchMembers::GroupNotFound(why) => outcome.refused.push((
                    target,
                    format!(
                        "Salto KS access group {group} does not exist in the site ({why}): check the mapping"
                    ),
                )),
            }
        }
        Ok(outcome)
    }

    async fn user_action(&self, user: &ProviderUser, action: UserAction) -> Result<(), CallError> {
        let Some(ids) = &user.ids else { return Ok(()) };
        match action {
            UserAction::Suspend => self.client.set_subscription(&ids.id, "suspended").await,
            UserAction::Reactivate => self.client.set_subscription(&ids.id, "subscribed").await,
            UserAction::Delete => self.client.delete_user(&ids.id).await,
            // Salto KS mails its own invitation when the user is created.
            UserAction::Invite => Ok(()),
        }
    }

    async fn group_members(&self, group: &Target) -> Result<Vec<Member>, CallError> {
        let Target::SaltoGroup(id) = group else { return Ok(Vec::new()) };
        let users = self.client.group_members(id).await?;
        let member = |u: SiteUser| Member {
            // Membership is by platform user id; the site-user id is the fallback.
            id: u.user.map_or(u.id, |platform| platform.id),
            email: u.email.as_deref().and_then(|e| Email::parse(e).ok()),
        };
        Ok(users.into_iter().map(member).collect())
    }
}

#[async_trait]
impl Provider for SaltoProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Salto
    }

    fn shape(&self) -> Shape<'_> {
        Shape::Memberships(self)
    }

    async fn remove_held(&self, held: &Held) -> Result<(), CallError> {
        let Target::SaltoGroup(group) = &held.target else { return Ok(()) };
        match self.patch_members(group, Vec::new(), vec![held.member_id().to_owned()]).await? {
            PatchMembers::Done | PatchMembers::UserNotFound(_) | PatchMembers::GroupNotFound(_) => Ok(()),
            PatchMembers::NotExecutable(reason) => Err(CallError::retryable(format!("Salto KS: {reason}"))),
        }
    }
}

fn group_of(target: &Target) -> Result<&SaltoGroupId, CallError> {
    match target {
        Target::SaltoGroup(g) => Ok(g),
        other => Err(CallError::config(format!("{other} is not a Salto KS target"))),
    }
}

/// The cache holds plain data updated in one step, so a poisoned lock is still consistent.
fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}
