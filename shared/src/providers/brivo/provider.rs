//! Brivo as a membership [`Provider`]: one user per subject, found by `externalId` (Portier's
//! subject key) and created with it; group changes with the documented one-call-per-group
//! `PUT`/`DELETE /groups/{groupId}/users/{userId}` (group.yaml), the 16-group cap checked by
//! us before any call (so a change over it is refused whole, never half-applied); Mobile Pass
//! invitations on first access, cancelled before a user is deleted.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;

use super::client::{
    BrivoClient, BrivoConfig, EmailAddress, GroupChange, Invite, MAX_GROUPS_PER_USER, NewUser, User,
};
use crate::error::CallError;
use crate::http::{ApiClient, ClientLimits, RetryPolicy};
use crate::model::{
    BrivoGroupId, Email, Instant, ProviderKind, ProviderUser, ProviderUserIds, Target, UserState,
};
use crate::providers::{
    Held, Member, MembershipChange, MembershipOutcome, MembershipProvider, Person, Provider, Shape,
    UserAction,
};

/// The Brivo provider of one tenant.
#[derive(Debug)]
pub struct BrivoProvider {
    client: BrivoClient,
}

/// The limits of its client.
impl ClientLimits for BrivoProvider {
    fn core_mut(&mut self) -> &mut ApiClient {
        self.client.core_mut()
    }
}

impl BrivoProvider {
    pub fn new(cfg: BrivoConfig, http: reqwest::Client, policy: RetryPolicy) -> Self {
        Self { client: BrivoClient::new(cfg, http, policy) }
    }

    pub fn client(&self) -> &BrivoClient {
        &self.client
    }

    /// Refuses the whole change, before any call, when the user would end up in more than
    /// [`MAX_GROUPS_PER_USER`] groups (user.yaml, `UpdateUsersGroups`: "A user can be a member
    /// of at most 16 groups"). Groups hidden from this administrator may not be listed, so
    /// Brivo can still refuse an add; that one add is then reported alone.
    async fn check_cap(
        &self,
        user: &str,
        add: &[(&Target, String)],
        remove: &[(&Target, String)],
    ) -> Result<(), CallError> {
        let Some(current) = self.client.user_groups(user).await? else {
            return Err(CallError::permanent(format!(
                "Brivo user {user} no longer exists (404): it was deleted outside Portier"
            )));
        };
        let mut after: BTreeSet<String> = current.iter().map(|g| g.id()).collect();
        let held = after.len();
        for (_, g) in remove {
            after.remove(g);
        }
        after.extend(add.iter().map(|(_, g)| g.clone()));
        if after.len() <= MAX_GROUPS_PER_USER {
            return Ok(());
        }
        Err(CallError::permanent(format!(
            "Brivo user {user} would be in {} groups, and a user can be a member of at most \
             {MAX_GROUPS_PER_USER} groups: the user is in {held}, this change would add {} and remove {}; \
             Portier applied none of it",
            after.len(),
            add.len(),
            remove.len()
        )))
    }
}

#[async_trait]
impl MembershipProvider for BrivoProvider {
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
        // Additions for the current user, removals for whichever user each membership was made for.
        let mut per_user: BTreeMap<String, (Vec<(&Target, String)>, Vec<(&Target, String)>)> =
            BTreeMap::new();
        if !change.add.is_empty() {
            let Some(ids) = change.user.as_ref().and_then(|u| u.ids.as_ref()) else {
                return Err(CallError::config("Brivo: memberships to add but no user"));
            };
            let entry = per_user.entry(ids.id.clone()).or_default();
            for t in &change.add {
                entry.0.push((t, group_of(t)?.to_string()));
            }
        }
        for (t, ids) in &change.remove {
            per_user.entry(ids.id.clone()).or_default().1.push((t, group_of(t)?.to_string()));
        }
        for (add, remove) in per_user.values_mut() {
            remove.retain(|(_, r)| !add.iter().any(|(_, a)| a == r));
        }
        // The cap first, for every user, so a refused change makes no call at all.
        for (user, (add, remove)) in &per_user {
            if !add.is_empty() {
                self.check_cap(user, add, remove).await?;
            }
        }
        let mut outcome = MembershipOutcome::default();
        for (user, (add, remove)) in &per_user {
            // Removals first, so the user never holds more groups mid-way than at the end.
            for (target, group) in remove {
                match self.client.remove_from_group(user, group).await? {
                    // 404: already not a member (or the group is gone), which is the goal.
                    GroupChange::Done | GroupChange::NotFound(_) => {}
                    GroupChange::Refused(why) => outcome.refused.push((
                        (*target).clone(),
                        format!("Brivo refused removing user {user} from group {group} ({why})"),
                    )),
                }
            }
            for (target, group) in add {
                match self.client.add_to_group(user, group).await? {
                    GroupChange::Done => {}
                    GroupChange::Refused(why) => outcome.refused.push((
                        (*target).clone(),
                        format!("Brivo refused adding user {user} to group {group} ({why})"),
                    )),
                    GroupChange::NotFound(why) => outcome.refused.push((
                        (*target).clone(),
                        format!(
                            "Brivo group {group} or user {user} does not exist ({why}): check the mapping"
                        ),
                    )),
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
                // A pending invitation would otherwise outlive the user and still be redeemable.
                let cancelled = self.client.cancel_invitation(&ids.id).await?;
                tracing::debug!(
                    cancelled,
                    "pending Mobile Pass invitation cancelled before deleting the user"
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

    async fn group_members(&self, group: &Target) -> Result<Vec<Member>, CallError> {
        let Target::BrivoGroup(id) = group else { return Ok(Vec::new()) };
        let users = self.client.group_members(id.as_str()).await?;
        let email = |u: &User| u.emails.iter().find_map(|e| Email::parse(&e.address).ok());
        Ok(users.iter().map(|u| Member { id: u.id(), email: email(u) }).collect())
    }
}

#[async_trait]
impl Provider for BrivoProvider {
    fn kind(&self) -> ProviderKind {
        ProviderKind::Brivo
    }

    fn shape(&self) -> Shape<'_> {
        Shape::Memberships(self)
    }

    async fn remove_held(&self, held: &Held) -> Result<(), CallError> {
        let Target::BrivoGroup(group) = &held.target else { return Ok(()) };
        match self.client.remove_from_group(held.member_id(), group.as_str()).await? {
            GroupChange::Done | GroupChange::NotFound(_) => Ok(()),
            GroupChange::Refused(reason) => {
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
