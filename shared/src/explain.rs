//! `portier explain <email>`: why a person can or cannot open each door.

use serde::Serialize;

use crate::config::TenantConfig;
use crate::error::InfraError;
use crate::model::{Applied, Email, Entitlement, Failure, Instant, ItemRef, Profile, SubjectKey, Target};
use crate::plan::{self, Op, UserOp, UserPolicy};
use crate::store::Records;
use crate::store::records::AuditEntry;

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

/// The report as text for a terminal.
pub fn render(reports: &[SubjectReport], email: &Email) -> String {
    render_for(reports, &Who::Email(email.clone()))
}

/// Names of lock-system targets, shown beside their ids (Tapkey lock titles: the one lock
/// system whose API lists names Portier reads).
#[derive(Debug, Clone, Default)]
pub struct Names(std::collections::BTreeMap<String, String>);

impl Names {
    /// The tenant's Tapkey lock titles; none when Tapkey does not answer (names are a help,
    /// never a reason for the report to fail).
    pub async fn of_tenant(tenant: &crate::tenants::TenantRuntime) -> Self {
        let Some(tapkey) = tenant.tapkey() else { return Self::default() };
        match tapkey.client().bound_locks().await {
            Ok(locks) => Self(
                locks
                    .iter()
                    .map(|l| {
                        (
                            crate::model::Target::TapkeyLock(l.id.as_str().into()).key().to_lowercase(),
                            l.label().to_owned(),
                        )
                    })
                    .collect(),
            ),
            Err(e) => {
                tracing::debug!(error = %e, "lock names not read");
                Self::default()
            }
        }
    }

    pub fn extend(&mut self, other: Names) {
        self.0.extend(other.0);
    }

    /// `target`, with its name when known: `tapkey lock ea61… (Bike Storage Door)`.
    pub fn label(&self, target: &crate::model::Target) -> String {
        match self.0.get(&target.key().to_lowercase()) {
            Some(name) => format!("{target} ({name})"),
            None => target.to_string(),
        }
    }
}

/// The report as text for a terminal; times are the tenant's wall clock, labelled with its zone.
pub fn render_for(reports: &[SubjectReport], who: &Who) -> String {
    render_named(reports, who, &Names::default())
}

/// [`render_for`], with target names beside their ids.
pub fn render_named(reports: &[SubjectReport], who: &Who, names: &Names) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if reports.is_empty() {
        let _ = writeln!(out, "No person with {who} is known to Portier.");
        return out;
    }
    for r in reports {
        let zone =
            crate::localtime::Zone::parse(&r.timezone).or_else(|_| crate::localtime::Zone::parse("UTC")).ok();
        let when = |t: Instant| match &zone {
            Some(z) => z.format(t),
            None => t.format("%Y-%m-%d %H:%M UTC").to_string(),
        };
        let window = |w: &crate::model::Window| match &zone {
            Some(z) => z.format_window(w),
            None => format!("{w} (UTC)"),
        };
        let email = r.profile.as_ref().and_then(|p| p.email.clone());
        let email = match (who, &email) {
            (Who::Email(e), _) => e.to_string(),
            (_, Some(e)) => e.to_string(),
            _ => "(no email)".to_owned(),
        };
        let name = r.profile.as_ref().map(|p| p.name.as_str()).unwrap_or("(unknown)");
        let _ = writeln!(
            out,
            "{name} <{email}> — tenant {}, {} person {}",
            r.subject.tenant,
            r.subject.source.as_str(),
            r.subject.person
        );
        match &r.profile {
            Some(p) if p.deleted => {
                let _ = writeln!(out, "  deleted in the source: no access is granted");
            }
            Some(Profile { suspended: Some(reason), .. }) => {
                let _ = writeln!(out, "  {reason}: no access is granted until it is lifted");
            }
            Some(p) if matches!(who, Who::Email(e) if p.email.as_ref() != Some(e)) => {
                let _ = writeln!(
                    out,
                    "  email is now {}: access follows the new address",
                    p.email.as_ref().map_or("(none)", |e| e.as_str())
                );
            }
            None => {
                let _ = writeln!(out, "  no profile recorded yet");
            }
            _ => {}
        }
        let _ = writeln!(out, "\n  Entitlements");
        if r.entitlements.is_empty() {
            let _ = writeln!(out, "    (none)");
        }
        for l in &r.entitlements {
            let e = &l.entitlement;
            let state = match &e.state {
                crate::model::EntitlementState::Active => "active".to_owned(),
                crate::model::EntitlementState::Ended { reason } => format!("ended: {reason}"),
                crate::model::EntitlementState::Revoked { reason } => format!("revoked: {reason}"),
                crate::model::EntitlementState::Gone { reason, .. } => format!("ended: {reason}"),
            };
            let targets = if l.targets.is_empty() {
                "no mapping".to_owned()
            } else {
                l.targets.iter().map(|t| names.label(t)).collect::<Vec<_>>().join(", ")
            };
            let _ = writeln!(
                out,
                "    {} {:<20} {:<50} {:<28} → {}",
                e.kind.as_str(),
                e.label,
                window(&e.window),
                state,
                targets
            );
        }
        let _ = writeln!(out, "\n  Access Portier created");
        if r.applied.is_empty() {
            let _ = writeln!(out, "    (none)");
        }
        for a in &r.applied {
            let state = match &a.state {
                crate::model::AppliedState::Created { grant_id } => format!("grant {grant_id}"),
                crate::model::AppliedState::Intent => "creation in progress".to_owned(),
                crate::model::AppliedState::Member { user } => format!("member ({user})"),
            };
            let _ = writeln!(
                out,
                "    {:<50} {:<50} {state}, since {}",
                names.label(&a.target),
                window(&a.window),
                when(a.since)
            );
        }
        if !r.failures.is_empty() {
            let _ = writeln!(out, "\n  Failures");
            for f in &r.failures {
                let _ = writeln!(
                    out,
                    "    {}: {} (at {}, tried again after {})",
                    f.target,
                    f.reason,
                    when(f.at),
                    when(f.retry_after)
                );
            }
        }
        if !r.pending.is_empty() || !r.pending_users.is_empty() {
            let _ = writeln!(out, "\n  Not yet in line (the worker will do this)");
            for op in &r.pending {
                let _ = writeln!(out, "    {}", describe(op));
            }
            for op in &r.pending_users {
                let _ = writeln!(out, "    {op}");
            }
        }
        if !r.blocked.is_empty() || !r.blocked_users.is_empty() {
            let _ = writeln!(out, "\n  Held back");
            for (op, reason) in &r.blocked {
                let _ = writeln!(out, "    {} — {reason}", describe(op));
            }
            for (op, reason) in &r.blocked_users {
                let _ = writeln!(out, "    {op} — {reason}");
            }
        }
        for item in &r.unmapped {
            let _ =
                writeln!(out, "\n  Note: {item} is not mapped to any door in tenant {}", r.subject.tenant);
        }
        if let Some(t) = r.next_check {
            let _ = writeln!(out, "\n  Next check: {}", when(t));
        }
        if !r.presence_doors.is_empty() {
            let _ = writeln!(out, "\n  Presence (Nexudus check-ins from doors)");
            match &r.presence {
                Some(p) if p.is_in() => {
                    let since = p.since.map(when).unwrap_or_default();
                    let _ = writeln!(
                        out,
                        "    checked in since {since} ({} door {})",
                        p.last_provider.name(),
                        p.last_door
                    );
                }
                Some(p) => {
                    let _ = writeln!(
                        out,
                        "    not checked in; last door event {} at {} door {}",
                        when(p.last_event_at),
                        p.last_provider.name(),
                        p.last_door
                    );
                }
                None => {
                    let _ = writeln!(out, "    no door event yet");
                }
            }
            for d in &r.presence_doors {
                let _ = writeln!(out, "    {} door {}: {:?}", d.provider.name(), d.door, d.action);
            }
        }
        if !r.recent.is_empty() {
            let _ = writeln!(out, "\n  Recent changes");
            for a in &r.recent {
                let _ = writeln!(
                    out,
                    "    {} {} {} — {} ({})",
                    when(a.at),
                    a.action,
                    a.target,
                    a.outcome,
                    a.cause
                );
            }
        }
        let _ = writeln!(out);
    }
    out
}

fn describe(op: &Op) -> String {
    match op {
        Op::Grant { target, window, .. } => format!("grant {target} for {window}"),
        Op::Revoke { applied } => format!("revoke {} ({})", applied.target, applied.window),
    }
}
