//! People search and one person's access, as `portier explain` shows it.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;

use super::sync::op_line;
use super::{Signed, error_page, page, when};
use crate::console::{ConsoleError, St, TargetNames};
use crate::explain::SubjectReport;
use crate::model::{AppliedState, EntitlementState, Instant, Profile, Target};

pub(super) fn search_form(value: &str) -> Markup {
    html! {
        form.inline method="get" action="/console/people" {
            input #who type="text" name="q" placeholder="email, person id or name" value=(value) required;
            button.btn #find type="submit" { "Find" }
        }
    }
}

#[derive(Deserialize)]
pub(super) struct PeopleQuery {
    q: Option<String>,
}

pub(super) async fn people(State(c): St, Signed(session): Signed, Query(q): Query<PeopleQuery>) -> Response {
    let email = q.q.unwrap_or_default();
    let reports = match email.trim() {
        "" => None,
        e => match c.people(e, None).await {
            Ok(reports) => {
                // Each tenant's lock systems are listed once, however many people it has here.
                let mut names: std::collections::BTreeMap<String, TargetNames> = Default::default();
                for r in &reports {
                    let tenant = &r.subject.tenant;
                    if !names.contains_key(tenant.as_str()) {
                        names.insert(tenant.to_string(), c.target_names(tenant).await);
                    }
                }
                let none = TargetNames::default();
                let named: Vec<(SubjectReport, TargetNames)> = reports
                    .into_iter()
                    .map(|r| {
                        let n = names.get(r.subject.tenant.as_str()).unwrap_or(&none).clone();
                        (r, n)
                    })
                    .collect();
                Some(named)
            }
            Err(ConsoleError::BadRequest(m)) => {
                let body = html! { h1 { "People" } div.card { (search_form(&email)) p.bad { (m) } } };
                return (StatusCode::BAD_REQUEST, page("People", Some(&session), body)).into_response();
            }
            Err(e) => return error_page(&session, &e),
        },
    };
    let body = html! {
        h1 { "People" }
        div.card { (search_form(&email)) }
        @if let Some(reports) = &reports {
            @if reports.is_empty() {
                div.card #no-person { p { "No person matching " b { (email) } " is known to Portier." } }
            }
            @for (r, names) in reports { (person(r, names)) }
        }
    };
    page("People", Some(&session), body).into_response()
}

/// A target with its name first, when the lock system gave one.
pub(super) fn target(t: &Target, names: &TargetNames) -> Markup {
    html! {
        @if let Some(n) = names.of(t) { b { (n) } " " span.mono.muted { (t.to_string()) } }
        @else { span.mono { (t.to_string()) } }
    }
}

fn person(r: &SubjectReport, names: &TargetNames) -> Markup {
    // The tenant's wall clock, labelled with its zone (as `portier explain` shows it).
    let zone = crate::localtime::Zone::parse(&r.timezone).ok();
    let when = |t: Instant| zone.as_ref().map_or_else(|| when(t), |z| z.format(t));
    let name = r.profile.as_ref().map(|p| p.name.as_str()).filter(|n| !n.is_empty()).unwrap_or("(unknown)");
    html! {
        div.card.person-report {
            h2 { (name) }
            p.muted { "tenant " (r.subject.tenant) " · " (r.subject.source.as_str()) " person " (r.subject.person)
                @if let Some(e) = r.profile.as_ref().and_then(|p| p.email.as_ref()) { " · " (e) } }
            @match &r.profile {
                Some(p) if p.deleted => { p.bad { "Deleted in the source: no access is granted." } }
                Some(Profile { suspended: Some(reason), .. }) => { p.bad { (reason) ": no access is granted until it is lifted." } }
                None => { p.muted { "No profile recorded yet." } }
                _ => {}
            }
            h3 { "Entitlements" }
            @if r.entitlements.is_empty() { p.muted { "None." } } @else {
                table.entitlements {
                    tr { th { "What" } th { "Window" } th { "State" } th { "Opens" } }
                    @for l in &r.entitlements {
                        tr {
                            td { (l.entitlement.kind.as_str()) " " b { (l.entitlement.label) } }
                            td { (l.entitlement.window.to_string()) }
                            td { @match &l.entitlement.state {
                                EntitlementState::Active => { span.ok { "active" } }
                                EntitlementState::Ended { reason } | EntitlementState::Gone { reason, .. } => { "ended: " (reason) }
                                EntitlementState::Revoked { reason } => { span.bad { "revoked: " (reason) } }
                            } }
                            td { @if l.targets.is_empty() { span.bad { "no mapping" } } @else {
                                @for t in &l.targets { div { (target(t, names)) } }
                            } }
                        }
                    }
                }
            }
            h3 { "Access Portier created" }
            @if r.applied.is_empty() { p.muted { "None." } } @else {
                table.applied {
                    tr { th { "Where" } th { "Window" } th { "State" } }
                    @for a in &r.applied {
                        tr {
                            td { (target(&a.target, names)) }
                            td { (a.window.to_string()) }
                            td { @match &a.state {
                                AppliedState::Created { grant_id } => { "grant " code { (grant_id) } }
                                AppliedState::Intent => { "creation in progress" }
                                AppliedState::Member { user } => { "member (" (user.to_string()) ")" }
                            } ", since " (when(a.since)) }
                        }
                    }
                }
            }
            @if !r.failures.is_empty() {
                h3 { "Failures" }
                ul { @for f in &r.failures { li { (target(&f.target, names)) ": " span.bad { (f.reason) } " (at " (when(f.at)) ", tried again after " (when(f.retry_after)) ")" } } }
            }
            @if !r.pending.is_empty() || !r.pending_users.is_empty() {
                h3 { "Not yet in line (the worker will do this)" }
                ul { @for op in &r.pending { li { (op_line(op, names)) } } @for op in &r.pending_users { li { (op.to_string()) } } }
            }
            @if !r.blocked.is_empty() || !r.blocked_users.is_empty() {
                h3 { "Held back" }
                ul { @for (op, why) in &r.blocked { li { (op_line(op, names)) " — " (why) } } @for (op, why) in &r.blocked_users { li { (op.to_string()) " — " (why) } } }
            }
            @for item in &r.unmapped { p.bad { "Note: " (item.to_string()) " is not mapped to any door." } }
            @if let Some(t) = r.next_check { p.muted { "Next check: " (when(t)) } }
            @if !r.recent.is_empty() {
                h3 { "History" }
                table.history {
                    tr { th { "When" } th { "What" } th { "Outcome" } }
                    @for a in r.recent.iter().rev() {
                        tr { td { (when(a.at)) } td { (a.action) " " span.mono { (a.target) } br; span.muted { (a.cause) } } td { (a.outcome) } }
                    }
                }
            }
        }
    }
}
