//! `/console/…`: server-rendered pages, plain links and forms (no script needed), laid out to
//! work on a phone.

use axum::extract::{FromRequest, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::auth::{AdminAuth, COOKIE, SESSION_SECS, Session, cookie};
use super::{Console, ConsoleError, St, TargetNames, base_url};
use crate::explain::SubjectReport;
use crate::model::{AppliedState, EntitlementState, Instant, Profile, ProviderKind, Target, TenantId};
use crate::plan::Op;
use crate::resync::ResyncReport;

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(status))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/people", get(people))
        .route("/console/tenants/{tenant}/sync", get(sync_plan).post(sync_apply))
        .route("/console/tenants/{tenant}/drift", get(drift))
        .route("/console/tenants/{tenant}/mappings", get(mappings).post(save_mapping))
        .route("/console/tenants/{tenant}/webhooks", get(webhooks))
        .route("/console/tenants/{tenant}/retry", post(retry))
        .route("/console/copy.js", get(copy_js))
}

const CSS: &str = r#"
*{box-sizing:border-box}body{font:16px/1.45 system-ui,sans-serif;margin:0;color:#1c2430;background:#f4f6f8}
header{background:#1f3a5f;color:#fff;padding:.6rem 1rem;display:flex;flex-wrap:wrap;gap:.4rem 1rem;align-items:center}
header a,header button{color:#fff;text-decoration:none;font-weight:600;background:none;border:0;font-size:1rem;cursor:pointer;padding:0}
header .brand{font-size:1.15rem;margin-right:auto}main{padding:1rem;max-width:72rem;margin:auto}
.card{background:#fff;border-radius:.5rem;padding:1rem;margin:0 0 1rem;box-shadow:0 1px 2px #0002;overflow-x:auto}
h1{font-size:1.4rem;margin:.2rem 0 1rem}h2{font-size:1.15rem;margin:.2rem 0 .6rem}h3{font-size:1rem;margin:1rem 0 .4rem}
table{border-collapse:collapse;width:100%}td,th{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e3e7ec;vertical-align:top}
th{font-size:.85rem;color:#5a6573}code,.mono{font-family:ui-monospace,monospace;font-size:.88rem;word-break:break-all}
.actions{display:flex;flex-wrap:wrap;gap:.5rem;margin-top:.6rem}
.btn,button.btn{display:inline-block;padding:.5rem .9rem;border-radius:.4rem;background:#1f6feb;color:#fff;border:0;font-size:1rem;text-decoration:none;cursor:pointer}
.btn.quiet{background:#e6ebf1;color:#1c2430}.btn.danger{background:#c62828}
input[type=text],input[type=email],input[type=password],select{font-size:1rem;padding:.5rem;border:1px solid #b8c1cc;border-radius:.4rem;width:100%;max-width:28rem}
form.inline{display:flex;flex-wrap:wrap;gap:.5rem;align-items:center}
.ok{color:#1b7f3b}.bad{color:#c62828;font-weight:600}.muted{color:#5a6573}.grant{color:#1b7f3b}.revoke{color:#c62828}
.stat{display:inline-block;margin-right:1.5rem}.stat b{font-size:1.3rem;display:block}
input.copy{width:100%;max-width:none;font-family:ui-monospace,monospace;font-size:.85rem}
@media (max-width:640px){table,tbody,tr,td{display:block;width:100%!important}tr:first-child:has(th){display:none}
tr{border-bottom:1px solid #e3e7ec;padding:.45rem 0}td{border:0;padding:.1rem 0}main{padding:.6rem}}
"#;

/// Copies a webhook URL on a tap; the URL stays selectable without it.
const COPY_JS: &str = r#"document.addEventListener('click',function(e){var b=e.target.closest('button[data-copy]');if(!b)return;var i=document.getElementById(b.dataset.copy);i.select();if(navigator.clipboard){navigator.clipboard.writeText(i.value)}else{document.execCommand('copy')}b.textContent='Copied';});"#;

async fn copy_js() -> Response {
    ([(header::CONTENT_TYPE, "text/javascript; charset=utf-8")], COPY_JS).into_response()
}

fn when(t: Instant) -> String {
    t.format("%Y-%m-%d %H:%M UTC").to_string()
}

fn page(title: &str, session: Option<&Session>, body: Markup) -> Html<String> {
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · Portier" }
                style { (PreEscaped(CSS)) }
                script src="/console/copy.js" defer {}
            }
            body {
                header {
                    a.brand href="/console/" { "Portier" }
                    @if let Some(s) = session {
                        a href="/console/" { "Status" }
                        a href="/console/people" { "People" }
                        form method="post" action="/console/logout" {
                            input type="hidden" name="csrf" value=(s.csrf);
                            button type="submit" { "Sign out" }
                        }
                    }
                }
                main { (body) }
            }
        }
    };
    Html(markup.into_string())
}

fn error_page(session: &Session, e: &ConsoleError) -> Response {
    let body = html! { div.card { h1 { "Something went wrong" } p.bad { (e.to_string()) } p { a href="/console/" { "Back to status" } } } };
    (e.status(), page("Error", Some(session), body)).into_response()
}

fn login_page(status: StatusCode, message: Option<&str>) -> Response {
    let body = html! {
        div.card {
            h1 { "Sign in" }
            p.muted { "Paste the admin token (the value of the environment variable " code { "admin_token_env" } " names in " code { "[admin]" } ")." }
            @if let Some(m) = message { p.bad { (m) } }
            form method="post" action="/console/login" {
                p { input #token type="password" name="token" autocomplete="current-password" required; }
                button.btn #sign-in type="submit" { "Sign in" }
            }
        }
    };
    (status, page("Sign in", None, body)).into_response()
}

/// Not signed in: answered with the sign-in page (401).
struct Unsigned;

impl IntoResponse for Unsigned {
    fn into_response(self) -> Response {
        login_page(StatusCode::UNAUTHORIZED, None)
    }
}

/// The signed-in session, or [`Unsigned`].
fn signed(c: &Console, headers: &HeaderMap) -> Result<Session, Unsigned> {
    headers
        .get(header::COOKIE)
        .and_then(|v| v.to_str().ok())
        .and_then(|h| cookie(h, COOKIE))
        .and_then(|v| c.auth.session(v, c.rt.records.now()))
        .ok_or(Unsigned)
}

/// A signed-in request (pages that only read).
struct Signed(Session);

impl FromRequestParts<Console> for Signed {
    type Rejection = Unsigned;

    async fn from_request_parts(parts: &mut Parts, c: &Console) -> Result<Self, Unsigned> {
        signed(c, &parts.headers).map(Signed)
    }
}

/// A form that carries the session's CSRF token.
trait CarriesCsrf {
    fn csrf(&self) -> Option<&str>;
}

/// A signed-in form post whose CSRF token belongs to the session (anything else is refused
/// before the handler runs).
struct Posted<T>(Session, T);

impl<T: DeserializeOwned + CarriesCsrf + Send> FromRequest<Console> for Posted<T> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, c: &Console) -> Result<Self, Response> {
        let session = signed(c, req.headers()).map_err(IntoResponse::into_response)?;
        let Form(form) = Form::<T>::from_request(req, c).await.map_err(IntoResponse::into_response)?;
        if !AdminAuth::csrf_ok(&session, form.csrf()) {
            return Err(csrf_refused(&session));
        }
        Ok(Posted(session, form))
    }
}

/// Fields every form posts.
#[derive(Deserialize)]
struct CsrfForm {
    csrf: Option<String>,
    provider: Option<String>,
}

impl CarriesCsrf for CsrfForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

fn csrf_refused(session: &Session) -> Response {
    let body = html! { div.card { h1 { "Refused" } p.bad { "The form was stale or not sent from this console. Reload the page and try again." } } };
    (StatusCode::FORBIDDEN, page("Refused", Some(session), body)).into_response()
}

async fn login_form(State(c): St, headers: HeaderMap) -> Response {
    match signed(&c, &headers) {
        Ok(_) => Redirect::to("/console/").into_response(),
        Err(_) => login_page(StatusCode::OK, None),
    }
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
}

async fn login(State(c): St, headers: HeaderMap, Form(f): Form<LoginForm>) -> Response {
    if !c.auth.is_token(f.token.trim()) {
        tracing::warn!("console sign-in refused: wrong admin token");
        return login_page(StatusCode::UNAUTHORIZED, Some("That is not the admin token."));
    }
    // `Secure` whenever the browser came over HTTPS (a TLS proxy, the AWS HTTP API).
    let secure = base_url(&headers).starts_with("https://");
    let cookie = format!(
        "{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECS}{}",
        c.auth.issue(c.rt.records.now()),
        if secure { "; Secure" } else { "" }
    );
    let mut res = Redirect::to("/console/").into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        res.headers_mut().insert(header::SET_COOKIE, v);
    }
    tracing::info!("console sign-in");
    res
}

async fn logout(Posted(_session, _f): Posted<CsrfForm>) -> Response {
    let mut res = Redirect::to("/console/login").into_response();
    res.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("portier_console=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    res
}

async fn status(State(c): St, Signed(session): Signed) -> Response {
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
                p.muted { "Dead letters are kept for inspection; the embedded queue and SQS keep them until redriven (" code { "docs/deploy.md" } ")." }
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

fn search_form(value: &str) -> Markup {
    html! {
        form.inline method="get" action="/console/people" {
            input #who type="text" name="q" placeholder="email, person id or name" value=(value) required;
            button.btn #find type="submit" { "Find" }
        }
    }
}

#[derive(Deserialize)]
struct PeopleQuery {
    q: Option<String>,
}

async fn people(State(c): St, Signed(session): Signed, Query(q): Query<PeopleQuery>) -> Response {
    let email = q.q.unwrap_or_default();
    let reports = match email.trim() {
        "" => None,
        e => match c.people(e, None).await {
            Ok(reports) => {
                let mut named = Vec::new();
                for r in reports {
                    let names = c.target_names(&r.subject.tenant).await;
                    named.push((r, names));
                }
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
fn target(t: &Target, names: &TargetNames) -> Markup {
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

fn op_line(op: &Op, names: &TargetNames) -> Markup {
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
struct SyncQuery {
    provider: Option<String>,
}

async fn sync_plan(
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
        Ok(t) => [ProviderKind::Tapkey, ProviderKind::Salto, ProviderKind::Brivo]
            .into_iter()
            .filter(|k| t.config.providers.has(*k))
            .collect(),
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

async fn sync_apply(
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

async fn drift(State(c): St, Signed(session): Signed, Path(tenant): Path<String>) -> Response {
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

#[derive(Deserialize)]
struct EditQuery {
    /// `kind#id` of the mapping to edit.
    edit: Option<String>,
}

async fn mappings(
    State(c): St,
    Signed(session): Signed,
    Path(tenant): Path<String>,
    Query(q): Query<EditQuery>,
) -> Response {
    mappings_page(&c, &session, &tenant, q.edit.as_deref(), None).await
}

/// The mappings table and the form that edits one, with `notice` (an outcome or a refusal).
async fn mappings_page(
    c: &Console,
    session: &Session,
    tenant: &str,
    edit: Option<&str>,
    notice: Option<(StatusCode, String)>,
) -> Response {
    let (m, options) = match (c.mappings(tenant).await, c.mapping_options(tenant).await) {
        (Ok(m), Ok(o)) => (m, o),
        (Err(e), _) | (_, Err(e)) => return error_page(session, &e),
    };
    let editing = edit.and_then(|e| m.mappings.iter().find(|l| l.item.to_string() == e));
    let current = |kind: ProviderKind| {
        editing
            .and_then(|l| l.targets.iter().find(|t| t.provider == kind))
            .map(|t| match &t.target {
                Target::TapkeyLock(v) => v.to_string(),
                Target::SaltoGroup(v) => v.to_string(),
                Target::BrivoGroup(v) => v.to_string(),
            })
            .unwrap_or_default()
    };
    let selected_item = editing.map(|l| l.item.to_string()).unwrap_or_default();
    let tapkey_now = current(ProviderKind::Tapkey);
    let status = notice.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
    let body = html! {
        h1 { "Mappings: " (tenant) }
        @if let Some((s, text)) = &notice {
            div.card #notice { p class=(if s.is_success() { "ok" } else { "bad" }) { (text) } }
        }
        @if let Some(w) = &m.warning { div.card { p.bad { (w) } } }
        div.card #mappings {
            table {
                tr { th { "Source item" } th { "Opens" } th { "From" } th {} }
                @for line in &m.mappings { tr {
                    td { (line.item.kind.as_str()) " "
                        @if let Some(i) = options.items.iter().find(|i| i.item == line.item) { b { (i.name) } " " }
                        code { (line.item.id) } }
                    td { @if line.targets.is_empty() { span.muted { "nothing (unmapped)" } }
                        @for t in &line.targets { div {
                        (t.provider.name()) ": "
                        @if let Some(n) = &t.name { b { (n) } " " }
                        span.mono.muted { (t.target.to_string()) }
                    } } }
                    td { (if line.origin == "stored" { "console or CSV import" } else { "portier.toml" }) }
                    td { a.edit href=(format!("/console/tenants/{tenant}/mappings?edit={}", crate::http::path_segment(&line.item.to_string()))) { "Edit" } }
                } }
            }
            p.muted { "A mapping saved here (or imported) replaces the one in portier.toml for the same item." }
        }
        div.card #edit-mapping {
            h2 { @if editing.is_some() { "Edit " (selected_item) } @else { "Map an item" } }
            @for w in &options.warnings { p.bad { (w) } }
            form method="post" action=(format!("/console/tenants/{tenant}/mappings")) {
                input type="hidden" name="csrf" value=(session.csrf);
                p { label for="item" { "Source item" } br;
                    select #item name="item" {
                        option value="" { "— type it below —" }
                        @for i in &options.items {
                            option value=(i.item.to_string()) selected[i.item.to_string() == selected_item] {
                                (i.name) " (" (i.item.kind.as_str()) " " (i.item.id) ")"
                            }
                        }
                        @if options.kinds.contains(&crate::model::ItemKind::Visitors) {
                            option value="visitors#*" selected[selected_item == "visitors#*"] { "Visitors (visitors *)" }
                        }
                    }
                }
                p.muted { "Or an item the source does not list (e.g. a Nexudus resource by its id):" }
                div.inline {
                    select name="kind" {
                        @for k in &options.kinds { option value=(k.as_str()) { (k.as_str()) } }
                    }
                    input type="text" name="id" placeholder="id";
                }
                @if options.providers.contains(&ProviderKind::Tapkey) {
                    p { label for="tapkey_lock" { "Tapkey lock" } br;
                        select #tapkey_lock name="tapkey_lock" {
                            option value="" { "— none —" }
                            @for l in &options.tapkey_locks {
                                option value=(l.id) selected[l.id.eq_ignore_ascii_case(&tapkey_now)] {
                                    (l.title) @if !l.usable { " (not active)" }
                                }
                            }
                        }
                    }
                }
                @if options.providers.contains(&ProviderKind::Salto) {
                    p { label for="salto_group" { "Salto KS access group id" } br;
                        input #salto_group type="text" name="salto_group" value=(current(ProviderKind::Salto)); }
                }
                @if options.providers.contains(&ProviderKind::Brivo) {
                    p { label for="brivo_group" { "Brivo group id" } br;
                        input #brivo_group type="text" name="brivo_group" value=(current(ProviderKind::Brivo)); }
                }
                button.btn #save-mapping type="submit" { "Save mapping" }
            }
        }
    };
    (status, page("Mappings", Some(session), body)).into_response()
}

#[derive(Deserialize)]
struct MappingForm {
    csrf: Option<String>,
    item: Option<String>,
    kind: Option<String>,
    id: Option<String>,
    tapkey_lock: Option<String>,
    salto_group: Option<String>,
    brivo_group: Option<String>,
}

impl CarriesCsrf for MappingForm {
    fn csrf(&self) -> Option<&str> {
        self.csrf.as_deref()
    }
}

impl MappingForm {
    /// The mapping the form describes; the listed item wins over a typed one.
    fn mapping(&self) -> Result<crate::model::Mapping, String> {
        let filled =
            |v: &Option<String>| v.as_deref().map(str::trim).filter(|v| !v.is_empty()).map(str::to_owned);
        let (kind, id) = match (filled(&self.item), filled(&self.id)) {
            (Some(item), _) => {
                item.split_once('#').map(|(k, i)| (k.to_owned(), i.to_owned())).ok_or("pick an item")?
            }
            (None, Some(id)) => (filled(&self.kind).ok_or("pick a kind")?, id),
            (None, None) => return Err("pick an item, or type its kind and id".into()),
        };
        let kind = serde_json::from_value(serde_json::Value::String(kind.clone()))
            .map_err(|_| format!("unknown item kind {kind:?}"))?;
        let mut targets = Vec::new();
        if let Some(l) = filled(&self.tapkey_lock) {
            targets.push(Target::TapkeyLock(l.as_str().into()));
        }
        if let Some(g) = filled(&self.salto_group) {
            targets.push(Target::SaltoGroup(g.as_str().into()));
        }
        if let Some(g) = filled(&self.brivo_group) {
            targets.push(Target::BrivoGroup(g.as_str().into()));
        }
        Ok(crate::model::Mapping { item: crate::model::ItemRef { kind, id }, targets })
    }
}

async fn save_mapping(
    State(c): St,
    Path(tenant): Path<String>,
    Posted(session, f): Posted<MappingForm>,
) -> Response {
    let notice = match f.mapping() {
        Err(m) => (StatusCode::BAD_REQUEST, m),
        Ok(mapping) => match c.save_mapping(&tenant, mapping).await {
            Ok(saved) => (
                StatusCode::OK,
                format!(
                    "Saved {}: {} target(s); {} people holding it are being brought in line.",
                    saved.mapping.item,
                    saved.mapping.targets.len(),
                    saved.queued
                ),
            ),
            Err(ConsoleError::BadRequest(m)) => (StatusCode::BAD_REQUEST, format!("Not saved: {m}")),
            Err(e) => return error_page(&session, &e),
        },
    };
    mappings_page(&c, &session, &tenant, None, Some(notice)).await
}

async fn webhooks(
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

async fn retry(
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
