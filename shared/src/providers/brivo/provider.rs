//! Brivo as a membership [`Provider`]: one user per subject, found by `externalId` (Portier's
//! subject key) and created with it; all of a reconcile's group changes for a user in one
//! idempotent `POST /users/{id}/groups`, which Brivo applies entirely or not at all (so the
//! 16-group cap never leaves a change half-applied); Mobile Pass invitations on first access.

use std::collections::BTreeMap;

use async_trait::async_trait;

use super::client::{
    BrivoClient, BrivoConfig, ChangeGroups, EmailAddress, Invite, MAX_GROUPS_PER_USER, NewUser,
};
use crate::error::CallError;
use crate::http::RetryPolicy;
use crate::model::{
    BrivoGroupId, Email, Instant, ProviderKind, ProviderUser, ProviderUserIds, Target, UserState, Window,
    membership_key,
};
use crate::providers::{Held, MembershipChange, MembershipOutcome, Person, Provider, UserAction};

/// The Brivo provider of one tenant.
#[derive(Debug)]
pub struct BrivoProvider {
    client: BrivoClient,
}

impl BrivoProvider {
    pub fn new(cfg: BrivoConfig, http: reqwest::Client, policy: RetryPolicy) -> Self {
        Self { client: BrivoClient::new(cfg, http, policy) }
    }

    /// API calls at most `per_second` (see [`BrivoClient::with_calls_per_second`]).
    pub fn with_calls_per_second(mut self, per_second: Option<f64>) -> Self {
        self.client = self.client.with_calls_per_second(per_second);
        self
    }

    /// Listings of more than `max` items fail (see [`BrivoClient::with_max_listed`]).
    pub fn with_max_listed(mut self, max: usize) -> Self {
        self.client = self.client.with_max_listed(max);
        self
    }

    pub fn client(&self) -> &BrivoClient {
        &self.client
    }
}

#[async_trait]
impl Provider for BrivoProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Brivo
    }

    async fn ensure_user(
        &self,
        person: &Person,
        known: Option<&ProviderUser>,
        now: Instant,
    ) -> Result<ProviderUser, CallError> {
        // The user follows the subject (externalId), whatever its email.
        if let Some(k) = known.filter(|k| k.ids.is_some()) {
            return Ok(ProviderUser { email: person.email.clone(), ..k.clone() });
        }
        let external_id = person.subject.to_string();
        let (user, created_at) = match self.client.user_by_external_id(&external_id).await? {
            Some(u) => (u, known.map_or(now, |k| k.created_at)),
            None => {
                let new = NewUser {
                    first_name: &person.first_name,
                    last_name: &person.last_name,
                    external_id: &external_id,
                    emails: vec![EmailAddress { address: person.email.as_str(), kind: "Work" }],
                };
                match self.client.create_user(&new).await {
                    Ok(u) => (u, now),
                    // The answer to an earlier try was lost after the user was made, so Brivo
                    // now refuses the externalId: take that user instead of failing.
                    Err(e) => match self.client.user_by_external_id(&external_id).await? {
                        Some(u) => (u, now),
                        None => return Err(e),
                    },
                }
            }
        };
        Ok(ProviderUser {
            provider: ProviderKind::Brivo,
            ids: Some(ProviderUserIds { id: user.id(), platform_id: None }),
            email: person.email.clone(),
            state: if user.suspended == Some(true) { UserState::Suspended } else { UserState::Active },
            created_at,
            invited: false,
            retired: Vec::new(),
        })
    }

    async fn change_memberships(&self, change: &MembershipChange) -> Result<MembershipOutcome, CallError> {
        // One call per user: additions for the current user, removals for whichever user each
        // membership was made for.
        let mut per_user: BTreeMap<String, (Vec<String>, Vec<String>)> = BTreeMap::new();
        if !change.add.is_empty() {
            let Some(ids) = change.user.as_ref().and_then(|u| u.ids.as_ref()) else {
                return Err(CallError::config("Brivo: memberships to add but no user"));
            };
            let entry = per_user.entry(ids.id.clone()).or_default();
            for t in &change.add {
                entry.0.push(group_of(t)?.to_string());
            }
        }
        for (t, ids) in &change.remove {
            per_user.entry(ids.id.clone()).or_default().1.push(group_of(t)?.to_string());
        }
        let outcome = MembershipOutcome::default();
        for (user, (add, mut remove)) in per_user {
            remove.retain(|r| !add.contains(r));
            if add.is_empty() && remove.is_empty() {
                continue;
            }
            match self.client.change_groups(&user, &add, &remove).await? {
                ChangeGroups::Done(_) => {}
                ChangeGroups::Refused(why) => {
                    return Err(CallError::permanent(format!(
                        "Brivo refused the group change for user {user} and applied none of it ({why}); \
                         a user can be a member of at most {MAX_GROUPS_PER_USER} groups: this change would \
                         add {} and remove {}",
                        add.len(),
                        remove.len()
                    )));
                }
                ChangeGroups::NotFound(why) => {
                    return Err(CallError::permanent(format!(
                        "Brivo user {user} or one of the groups {} does not exist ({why}): check the mapping",
                        add.iter().chain(&remove).cloned().collect::<Vec<_>>().join(", ")
                    )));
                }
            }
        }
        Ok(outcome)
    }

    async fn user_action(&self, user: &ProviderUser, action: UserAction) -> Result<(), CallError> {
        let Some(ids) = &user.ids else { return Ok(()) };
        match action {
            UserAction::Suspend => self.client.set_suspended(&ids.id, true).await,
            UserAction::Reactivate => self.client.set_suspended(&ids.id, false).await,
            UserAction::Delete => {
                let cancelled = self.client.cancel_invitations(&ids.id).await?;
                tracing::debug!(
                    cancelled,
                    "pending Mobile Pass invitations cancelled before deleting the user"
                );
                self.client.delete_user(&ids.id).await
            }
            UserAction::Invite => match self.client.invite(&ids.id).await? {
                Invite::Sent | Invite::AlreadyPending => Ok(()),
                Invite::NoPassesLeft(why) => Err(CallError::permanent(format!(
                    "Brivo has no Mobile Pass left for user {} ({why}): buy more passes; the invitation \
                     is sent again after that",
                    ids.id
                ))),
            },
        }
    }

    async fn list_access(&self, targets: &[Target]) -> Result<Vec<Held>, CallError> {
        let mut held = Vec::new();
        for target in targets {
            let Target::BrivoGroup(group) = target else { continue };
            for user in self.client.group_members(group.as_str()).await? {
                held.push(Held {
                    target: target.clone(),
                    email: user.emails.iter().find_map(|e| Email::parse(&e.address).ok()),
                    id: membership_key(target, &user.id()),
                    window: Window::ALWAYS,
                });
            }
        }
        Ok(held)
    }

    async fn remove_held(&self, held: &Held) -> Result<(), CallError> {
        let Target::BrivoGroup(group) = &held.target else { return Ok(()) };
        let user = held.id.rsplit_once('#').map_or(held.id.as_str(), |(_, u)| u);
        match self.client.change_groups(user, &[], &[group.to_string()]).await? {
            ChangeGroups::Done(_) | ChangeGroups::NotFound(_) => Ok(()),
            ChangeGroups::Refused(reason) => {
                Err(CallError::permanent(format!("Brivo refused the removal: {reason}")))
            }
        }
    }
}

fn group_of(target: &Target) -> Result<&BrivoGroupId, CallError> {
    match target {
        Target::BrivoGroup(g) => Ok(g),
        other => Err(CallError::config(format!("{other} is not a Brivo target"))),
    }
}
