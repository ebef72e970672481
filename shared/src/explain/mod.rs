//! `portier explain <email>`: why a person can or cannot open each door.

use serde::Serialize;

use crate::config::TenantConfig;
use crate::error::InfraError;
use crate::model::{Applied, Email, Entitlement, Failure, Instant, ItemRef, Profile, SubjectKey, Target};
use crate::plan::{self, Op, UserOp, UserPolicy};
use crate::store::Records;
use crate::store::records::AuditEntry;

mod render;

pub use render::{Names, render, render_for, render_named};

/// Everything Portier knows about one subject, and what it would do next.
#[derive(Debug, Clone, Serialize)]
pub struct SubjectReport {
    pub subject: SubjectKey,
    pub profile: Option<Profile>,
    pub entitlements: Vec<EntitlementLine>,
    pub applied: Vec<Applied>,
    pub failures: Vec<Failure>,
    /// Operations a reconcile would make now (empty when in line).
    pub pending: Vec<Op>,
    /// Operations held back by a recent permanent failure, with its reason.
    pub blocked: Vec<(Op, String)>,
    /// Provider-user operations a reconcile would make now (no-access policy, re-activation,
    /// Mobile Pass), and the ones held back.
    pub pending_users: Vec<UserOp>,
    pub blocked_users: Vec<(UserOp, String)>,
    pub unmapped: Vec<ItemRef>,
    pub next_check: Option<Instant>,
    /// The last ten provider changes, or every one since `--since`.
    pub recent: Vec<AuditEntry>,
    /// The tenant's time zone, in which the text report shows times.
    pub timezone: String,
    /// The person's last door event for presence tracking (`[tenant.presence]`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<crate::presence::PresenceState>,
    /// The tenant's presence doors, when it tracks presence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub presence_doors: Vec<crate::presence::DoorLine>,
}

/// Whom `explain` looks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Email(Email),
    /// A source person id (exact), or a part of a name (any case).
    IdOrName(String),
}

impl Who {
    /// An email when it parses as one, otherwise an id or name.
    pub fn parse(raw: &str) -> Who {
        match Email::parse(raw) {
            Ok(e) if raw.contains('@') => Who::Email(e),
            _ => Who::IdOrName(raw.trim().to_owned()),
        }
    }
}

impl std::fmt::Display for Who {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Who::Email(e) => write!(f, "the email {e}"),
            Who::IdOrName(s) => write!(f, "the id or name {s:?}"),
        }
    }
}

/// One entitlement with the targets its mapping names.
#[derive(Debug, Clone, Serialize)]
pub struct EntitlementLine {
    pub entitlement: Entitlement,
    pub targets: Vec<Target>,
}

/// Reports for every subject that has (or had) this email. `tenant` narrows the search.
pub async fn explain(
    records: &Records,
    configs: &[TenantConfig],
    email: &Email,
    tenant: Option<&str>,
) -> Result<Vec<SubjectReport>, InfraError> {
    explain_who(records, configs, &Who::Email(email.clone()), tenant, None).await
}

/// The subjects `who` names: by email, or by person id or part of the name in every tenant.
async fn find(records: &Records, who: &Who) -> Result<Vec<SubjectKey>, InfraError> {
    match who {
        Who::Email(e) => records.subjects_by_email(e).await,
        Who::IdOrName(text) => {
            let needle = text.to_lowercase();
            let mut out = Vec::new();
            for tenant in records.tenant_ids().await? {
                for s in records.subjects(&tenant).await? {
                    let named = || async {
                        records.profile(&s).await.map(|p| {
                            p.is_some_and(|p| !needle.is_empty() && p.name.to_lowercase().contains(&needle))
                        })
                    };
                    if s.person == *text || named().await? {
                        out.push(s);
                    }
                }
            }
            Ok(out)
        }
    }
}

/// Reports for every subject `who` names; `since` gives every provider change from then on
/// (otherwise the last ten).
pub async fn explain_who(
    records: &Records,
    configs: &[TenantConfig],
    who: &Who,
    tenant: Option<&str>,
    since: Option<Instant>,
) -> Result<Vec<SubjectReport>, InfraError> {
    let now = records.now();
    let mut reports = Vec::new();
    for subject in find(records, who).await? {
        if tenant.is_some_and(|t| t != subject.tenant.as_str()) {
            continue;
        }
        let config = configs.iter().find(|c| c.id == subject.tenant);
        let mappings = match config {
            Some(c) => records.mappings_for(c).await?,
            None => records.stored_mappings(&subject.tenant).await?,
        };
        // A tenant no longer configured: its users are kept as they are.
        let policy = config.map_or(
            UserPolicy { no_access: crate::config::NoAccess::Keep, mobile_pass: false },
            UserPolicy::of,
        );
        let state = crate::reconcile::load_state(records, &subject).await?;
        let planned = plan::plan_subject(&state, &mappings, policy, now);
        let (desired, plan, users) = (planned.desired, planned.plan, planned.users);
        let plan::SubjectState { profile, entitlements, applied, failures, .. } = state;
        let mut recent = records.audit_log(&subject).await?;
        match since {
            Some(from) => recent.retain(|a| a.at >= from),
            None => {
                let keep_from = recent.len().saturating_sub(10);
                recent.drain(..keep_from);
            }
        }
        let timezone = config.map_or_else(|| "UTC".to_owned(), |c| c.timezone.clone());
        let presence_doors =
            config.and_then(|c| c.presence.as_ref()).map(crate::presence::door_lines).unwrap_or_default();
        let presence = crate::presence::person(records, &subject).await?;
        let lines = entitlements
            .into_iter()
            .map(|e| EntitlementLine {
                targets: mappings
                    .iter()
                    .find(|m| m.item == e.item)
                    .map(|m| m.targets.clone())
                    .unwrap_or_default(),
                entitlement: e,
            })
            .collect();
        reports.push(SubjectReport {
            subject,
            profile,
            entitlements: lines,
            applied,
            failures,
            pending: plan.ops,
            blocked: plan.blocked,
            pending_users: users.ops,
            blocked_users: users.blocked,
            unmapped: desired.unmapped,
            next_check: plan.next_check,
            recent,
            timezone,
            presence,
            presence_doors,
        });
    }
    Ok(reports)
}
