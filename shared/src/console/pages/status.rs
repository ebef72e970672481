//! The status page, "retry failures", "redrive dead letters" and the webhook URLs.

use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use maud::html;

use super::people::search_form;
use super::{CsrfForm, Posted, Signed, error_page, page, when};
use crate::console::{St, base_url};

pub(super) async fn status(State(c): St, Signed(session): Signed) -> Response {
    let s = match c.status().await {
        Ok(s) => s,
        Err(e) => return error_page(&session, &e),
    };
    let body = html! {
        h1 { "Status" }
        div.card #queue {
            h2 { "Queue" }
            span.stat { b { (s.queue.visible) } "waiting" }
            span.stat { b { (s.queue.in_flight) } "in progress" }
            span.stat { b class=(if s.queue.dead > 0 { "bad" } else { "" }) { (s.queue.dead) } "dead letters" }
            @if s.queue.dead > 0 {
                p.muted { "Messages the worker gave up on; " code { "portier dead-letters" } " lists them. Once their cause is fixed, move them back: each reconciles its person afresh." }
                form method="post" action="/console/dead-letters/redrive" {
                    input type="hidden" name="csrf" value=(session.csrf);
                    button.btn.quiet #redrive type="submit" { "Redrive dead letters" }
                }
            }
        }
        @for t in &s.tenants {
            div.card.tenant id=(format!("tenant-{}", t.tenant)) {
                h2 { "Tenant " (t.tenant) }
                p { (t.people) " people · "
                    @match &t.last_resync {
                        Some(r) => { "last resync " (when(r.finished)) ": " (r.people) " people, " (r.changed) " changed, " (r.operations) " operations" }
                        None => { "no resync yet" }
                    }
                }
                @if let Some(n) = &t.not_served {
                    p.bad.not-served { "Not served since " (when(n.since)) ": " (n.reason) }
                }
                @if let Some(f) = &t.last_failed_resync {
                    p.bad { "Last resync failed " (when(f.at)) ": " (f.error) }
                }
                @if let Some(o) = &t.overflow {
                    p.bad { (o.webhooks) " webhooks over the queue's limit since " (when(o.since)) " (the tick resyncs the tenant)" }
                }
                @if t.failures.is_empty() {
                    p.ok { "No failures." }
                } @else {
                    table {
                        tr { th { "Lock system" } th { "People failing" } }
                        @for (provider, n) in &t.failures { tr { td { (provider) } td.bad { (n) } } }
                    }
                    ul { @for e in &t.examples { li { (e) } } }
                    form method="post" action=(format!("/console/tenants/{}/retry", t.tenant)) {
                        input type="hidden" name="csrf" value=(session.csrf);
                        button.btn.quiet type="submit" { "Retry failures now" }
                    }
                }
                @if t.not_served.is_none() { div.actions {
                    a.btn id=(format!("sync-{}", t.tenant)) href=(format!("/console/tenants/{}/sync", t.tenant)) { "Sync now" }
                    a.btn.quiet href=(format!("/console/tenants/{}/drift", t.tenant)) { "Drift" }
                    a.btn.quiet href=(format!("/console/tenants/{}/mappings", t.tenant)) { "Mappings" }
                    a.btn.quiet href=(format!("/console/tenants/{}/webhooks", t.tenant)) { "Webhook URLs" }
                } }
            }
        }
        div.card {
            h2 { "Find a person" }
            (search_form(""))
        }
    };
    page("Status", Some(&session), body).into_response()
}

pub(super) async fn webhooks(
    State(c): St,
    Signed(session): Signed,
    headers: HeaderMap,
    Path(tenant): Path<String>,
) -> Response {
    let w = match c.webhooks(&tenant, &base_url(&headers)).await {
        Ok(w) => w,
        Err(e) => return error_page(&session, &e),
    };
    let body = html! {
        h1 { "Webhook URLs: " (tenant) }
        div.card {
            p { "Register " @if w.source == "nexudus" { "each URL for its action in Nexudus (Settings → Integrations → Webhooks)" } @else { "this URL for every event at Kinnovis" } ". Proof: " (w.proof) "." }
            p.muted { "The address is the one this browser reached Portier at; behind a proxy, check it is the one the source can reach." }
        }
        div.card #webhooks {
            table {
                @for (i, u) in w.urls.iter().enumerate() { tr {
                    td { b { (u.action) } }
                    td style="width:100%" { input.copy id=(format!("hook-{i}")) type="text" readonly value=(u.url); }
                    td { button.btn.quiet type="button" data-copy=(format!("hook-{i}")) { "Copy" } }
                } }
            }
        }
    };
    page("Webhook URLs", Some(&session), body).into_response()
}

pub(super) async fn redrive(State(c): St, Posted(session, _form): Posted<CsrfForm>) -> Response {
    match c.redrive_dead_letters().await {
        Ok(n) => {
            let body = html! { div.card { h1 { "Redriven" } p { (n) " dead letters moved back to the work queue." } a.btn href="/console/" { "Back to status" } } };
            page("Redriven", Some(&session), body).into_response()
        }
        Err(e) => error_page(&session, &e),
    }
}

pub(super) async fn retry(
    State(c): St,
    Path(tenant): Path<String>,
    Posted(session, _form): Posted<CsrfForm>,
) -> Response {
    match c.retry_failures(&tenant).await {
        Ok(n) => {
            let body = html! { div.card { h1 { "Retrying" } p { (n) " people queued for another try." } a.btn href="/console/" { "Back to status" } } };
            page("Retrying", Some(&session), body).into_response()
        }
        Err(e) => error_page(&session, &e),
    }
}
