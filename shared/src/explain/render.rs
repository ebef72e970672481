//! The explain report as text for a terminal: times in the tenant's zone, targets with their
//! names where known.

use std::fmt::Write;

use super::{SubjectReport, Who};
use crate::localtime::Zone;
use crate::model::{AppliedState, Email, EntitlementState, Instant, Profile, Window};
use crate::plan::Op;
use crate::table::columns;

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
    let mut out = String::new();
    if reports.is_empty() {
        let _ = writeln!(out, "No person with {who} is known to Portier.");
        return out;
    }
    for r in reports {
        let t = Times::of(r);
        header(&mut out, r, who);
        entitlements(&mut out, r, names, &t);
        applied(&mut out, r, names, &t);
        problems(&mut out, r, &t);
        presence(&mut out, r, &t);
        recent(&mut out, r, &t);
        let _ = writeln!(out);
    }
    out
}

/// Instants and windows on the tenant's wall clock (UTC when its zone is unknown).
struct Times(Option<Zone>);

impl Times {
    fn of(r: &SubjectReport) -> Self {
        Self(Zone::parse(&r.timezone).or_else(|_| Zone::parse("UTC")).ok())
    }

    fn when(&self, t: Instant) -> String {
        match &self.0 {
            Some(z) => z.format(t),
            None => t.format("%Y-%m-%d %H:%M UTC").to_string(),
        }
    }

    fn window(&self, w: &Window) -> String {
        match &self.0 {
            Some(z) => z.format_window(w),
            None => format!("{w} (UTC)"),
        }
    }
}

/// Who this is, and why nothing is granted when that is so.
fn header(out: &mut String, r: &SubjectReport, who: &Who) {
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
}

fn entitlements(out: &mut String, r: &SubjectReport, names: &Names, t: &Times) {
    let _ = writeln!(out, "\n  Entitlements");
    if r.entitlements.is_empty() {
        let _ = writeln!(out, "    (none)");
    }
    let rows = r.entitlements.iter().map(|l| {
        let e = &l.entitlement;
        let state = match &e.state {
            EntitlementState::Active => "active".to_owned(),
            EntitlementState::Ended { reason } => format!("ended: {reason}"),
            EntitlementState::Revoked { reason } => format!("revoked: {reason}"),
            EntitlementState::Gone { reason, .. } => format!("ended: {reason}"),
        };
        let targets = if l.targets.is_empty() {
            "no mapping".to_owned()
        } else {
            l.targets.iter().map(|t| names.label(t)).collect::<Vec<_>>().join(", ")
        };
        vec![e.kind.as_str().to_owned(), e.label.clone(), t.window(&e.window), state, format!("→ {targets}")]
    });
    out.push_str(&columns("    ", None, rows));
}

fn applied(out: &mut String, r: &SubjectReport, names: &Names, t: &Times) {
    let _ = writeln!(out, "\n  Access Portier created");
    if r.applied.is_empty() {
        let _ = writeln!(out, "    (none)");
    }
    let rows = r.applied.iter().map(|a| {
        let state = match &a.state {
            AppliedState::Created { grant_id } => format!("grant {grant_id}"),
            AppliedState::Intent => "creation in progress".to_owned(),
            AppliedState::Member { user } => format!("member ({user})"),
        };
        vec![names.label(&a.target), t.window(&a.window), format!("{state}, since {}", t.when(a.since))]
    });
    out.push_str(&columns("    ", None, rows));
}

/// Failures, what the worker has still to do, what it holds back, and what is not mapped.
fn problems(out: &mut String, r: &SubjectReport, t: &Times) {
    if !r.failures.is_empty() {
        let _ = writeln!(out, "\n  Failures");
        for f in &r.failures {
            let _ = writeln!(
                out,
                "    {}: {} (at {}, tried again after {})",
                f.target,
                f.reason,
                t.when(f.at),
                t.when(f.retry_after)
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
        let _ = writeln!(out, "\n  Note: {item} is not mapped to any door in tenant {}", r.subject.tenant);
    }
    if let Some(next) = r.next_check {
        let _ = writeln!(out, "\n  Next check: {}", t.when(next));
    }
}

fn presence(out: &mut String, r: &SubjectReport, t: &Times) {
    if r.presence_doors.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n  Presence (Nexudus check-ins from doors)");
    match &r.presence {
        Some(p) if p.is_in() => {
            let since = p.since.map(|s| t.when(s)).unwrap_or_default();
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
                t.when(p.last_event_at),
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

fn recent(out: &mut String, r: &SubjectReport, t: &Times) {
    if r.recent.is_empty() {
        return;
    }
    let _ = writeln!(out, "\n  Recent changes");
    for a in &r.recent {
        let _ = writeln!(out, "    {} {} {} — {} ({})", t.when(a.at), a.action, a.target, a.outcome, a.cause);
    }
}

fn describe(op: &Op) -> String {
    match op {
        Op::Grant { target, window, .. } => format!("grant {target} for {window}"),
        Op::Revoke { applied } => format!("revoke {} ({})", applied.target, applied.window),
    }
}
