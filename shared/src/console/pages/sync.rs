//! "Sync now" (the dry run first, then apply) and drift.

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::people::target;
use super::{CsrfForm, Posted, Signed, error_page, page};
use crate::console::catalog::ALL_PROVIDERS;
use crate::console::{St, TargetNames};
use crate::model::TenantId;
use crate::plan::Op;
use crate::resync::ResyncReport;

pub(super) fn op_line(op: &Op, names: &TargetNames) -> Markup {
    match op {
        Op::Grant { target: t, window, email, .. } => html! {
            span.grant { "+ grant " } (target(t, names)) " " (window.to_string()) " (" (email) ")"
        },
        Op::Revoke { applied } => html! {
            span.revoke { "− revoke " } (target(&applied.target, names)) " " (applied.window.to_string()) " (" (applied.email) ")"
        },
    }
}

fn plan_markup(r: &ResyncReport, names: &TargetNames) -> Markup {
    html! {
        @if r.plans.is_empty() && r.removed_unjustified == 0 {
            p.ok #in-line { "Everything is in line: nothing to change." }
        }
        @for p in &r.plans {
            div.subject-plan {
                h3 { (if p.name.is_empty() { "(no name)" } else { &p.name }) " " span.muted.mono { (p.subject.to_string()) } }
                ul { @for op in &p.ops { li { (op_line(op, names)) } } @for op in &p.user_ops { li { "* " (op.to_string()) } } }
            }
        }
        @if r.removed_unjustified > 0 {
            h3.bad { "Access no entitlement justifies, which adoption = \"clean_slate\" " (if r.dry_run { "would remove" } else { "removed" }) }
            ul { @for h in &r.drift.unjustified {
                li { span.revoke { "− remove " } (target(&h.target, names)) " " (h.window.to_string()) " ("
                    (h.email.as_ref().map_or("unknown contact".to_owned(), ToString::to_string)) ", id " code { (h.id) } ")" }
            } }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct SyncQuery {
    provider: Option<String>,
}

pub(super) async fn sync_plan(
    State(c): St,
    Signed(session): Signed,
    Path(tenant): Path<String>,
    Query(q): Query<SyncQuery>,
) -> Response {
    let provider = q.provider.filter(|p| !p.is_empty());
    let report = match c.resync(&tenant, true, provider.as_deref()).await {
        Ok(r) => r,
        Err(e) => return error_page(&session, &e),
    };
    let providers = match c.tenant(&tenant).await {
        Ok(t) => ALL_PROVIDERS.into_iter().filter(|k| t.config.providers.has(*k)).collect(),
        Err(_) => Vec::new(),
    };
    let names = c.target_names(&TenantId(tenant.clone())).await;
    let scope = provider.as_deref().unwrap_or("every lock system");
    let body = html! {
        h1 { "Sync now: " (tenant) }
        div.card {
            p { "Lock systems: "
                a href=(format!("/console/tenants/{tenant}/sync")) { "all" }
                @for k in &providers { " · " a href=(format!("/console/tenants/{tenant}/sync?provider={}", k.as_str())) { (k.name()) } }
            }
        }
        div.card #plan {
            h2 { "Dry run (" (scope) "): would make " (report.op_count()) " operation(s)" }
            p.muted { (report.people) " people, " (report.changed) " changed in the source. Nothing has been changed yet." }
            @if report.removals() > 0 { p.bad #removals { (report.removals()) " of them take access away." } }
            (plan_markup(&report, &names))
            @if report.op_count() > 0 || report.changed > 0 {
                form method="post" action=(format!("/console/tenants/{tenant}/sync")) {
                    input type="hidden" name="csrf" value=(session.csrf);
                    @if let Some(p) = &provider { input type="hidden" name="provider" value=(p); }
                    div.actions {
                        button #apply type="submit" class=(if report.removals() > 0 { "btn danger" } else { "btn" }) { "Apply" }
                        a.btn.quiet href="/console/" { "Cancel" }
                    }
                }
            }
        }
    };
    page("Sync now", Some(&session), body).into_response()
}

pub(super) async fn sync_apply(
    State(c): St,
    Path(tenant): Path<String>,
    Posted(session, f): Posted<CsrfForm>,
) -> Response {
    let report = match c.resync(&tenant, false, f.provider.as_deref()).await {
        Ok(r) => r,
        Err(e) => return error_page(&session, &e),
    };
    let names = c.target_names(&TenantId(tenant.clone())).await;
    let body = html! {
        h1 { "Sync now: " (tenant) }
        div.card #applied {
            h2 { "Started: " (report.op_count()) " operation(s) for " (report.plans.len()) " people" }
            p.muted { "The workers make these changes now; a person's page shows them as they land." }
            (plan_markup(&report, &names))
            div.actions { a.btn href="/console/" { "Back to status" } }
        }
    };
    page("Sync now", Some(&session), body).into_response()
}

pub(super) async fn drift(State(c): St, Signed(session): Signed, Path(tenant): Path<String>) -> Response {
    let d = match c.drift(&tenant).await {
        Ok(d) => d,
        Err(e) => return error_page(&session, &e),
    };
    let names = c.target_names(&TenantId(tenant.clone())).await;
    let body = html! {
        h1 { "Drift: " (tenant) }
        div.card #unjustified {
            h2 { "Access no entitlement justifies (" (d.unjustified.len()) ")" }
            @if d.unjustified.is_empty() { p.ok { "None." } }
            table { @for h in &d.unjustified { tr {
                td { (target(&h.target, &names)) }
                td { (h.email.as_ref().map_or("(unknown contact)".to_owned(), ToString::to_string)) }
                td { (h.window.to_string()) } td { code { (h.id) } }
            } } }
        }
        div.card #vanished {
            h2 { "Access Portier created that is gone at the lock system (" (d.vanished.len()) ")" }
            @if d.vanished.is_empty() { p.ok { "None." } }
            table { @for (s, a) in &d.vanished { tr {
                td { (target(&a.target, &names)) } td { (a.email) } td { (a.window.to_string()) } td.mono { (s.to_string()) }
            } } }
        }
        div.card #missing {
            h2 { "Access that should exist but does not (" (d.missing.len()) ")" }
            @if d.missing.is_empty() { p.ok { "None." } }
            ul { @for (s, op) in &d.missing { li { (op_line(op, &names)) " " span.muted.mono { (s.to_string()) } } } }
            @if !d.missing.is_empty() { div.actions { a.btn href=(format!("/console/tenants/{tenant}/sync")) { "Sync now" } } }
        }
    };
    page("Drift", Some(&session), body).into_response()
}
