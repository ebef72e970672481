//! `/console/…`: server-rendered pages, plain links and forms (no script needed), laid out to
//! work on a phone.

use axum::extract::{FromRequest, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::auth::{AdminAuth, COOKIE, SESSION_SECS, Session, cookie};
use super::{Console, ConsoleError, St, base_url};
use crate::model::Instant;

mod mappings;
mod people;
mod status;
mod sync;

pub(super) fn routes() -> Router<Console> {
    Router::new()
        .route("/console", get(|| async { Redirect::to("/console/") }))
        .route("/console/", get(status::status))
        .route("/console/login", get(login_form).post(login))
        .route("/console/logout", post(logout))
        .route("/console/people", get(people::people))
        .route("/console/tenants/{tenant}/sync", get(sync::sync_plan).post(sync::sync_apply))
        .route("/console/tenants/{tenant}/drift", get(sync::drift))
        .route("/console/tenants/{tenant}/mappings", get(mappings::mappings).post(mappings::save_mapping))
        .route("/console/tenants/{tenant}/webhooks", get(status::webhooks))
        .route("/console/tenants/{tenant}/retry", post(status::retry))
        .route("/console/dead-letters/redrive", post(status::redrive))
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
