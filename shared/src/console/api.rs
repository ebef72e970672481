//! `/api/v1/…`: JSON for scripts and the console (see `docs/api.md`).

use axum::Json;
use axum::extract::{Path, Query, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::auth::{AdminAuth, COOKIE, cookie};
use super::{ConsoleError, St, base_url};

/// Bearer token, or the console's session cookie (and, for a change, its CSRF token in
/// `X-CSRF-Token`): anything else is 401 before a handler runs.
pub(super) async fn guard(State(c): St, req: Request, next: Next) -> Response {
    let headers = req.headers();
    let bearer = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let allowed = c.auth.bearer(bearer) || {
        let now = c.rt.records.now();
        let session = headers
            .get(header::COOKIE)
            .and_then(|v| v.to_str().ok())
            .and_then(|h| cookie(h, COOKIE))
            .and_then(|v| c.auth.session(v, now));
        let csrf = headers.get("x-csrf-token").and_then(|v| v.to_str().ok());
        session.is_some_and(|s| req.method() == Method::GET || AdminAuth::csrf_ok(&s, csrf))
    };
    if !allowed {
        let body =
            Json(serde_json::json!({ "error": "unauthorized: send Authorization: Bearer <admin token>" }));
        return (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response();
    }
    next.run(req).await
}

fn json<T: serde::Serialize>(r: Result<T, ConsoleError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

pub(super) async fn status(State(c): St) -> Response {
    json(c.status().await)
}

#[derive(Deserialize)]
pub(super) struct PeopleQuery {
    email: Option<String>,
    /// A source person id or part of a name (or an email).
    q: Option<String>,
    tenant: Option<String>,
}

pub(super) async fn people(State(c): St, Query(q): Query<PeopleQuery>) -> Response {
    let Some(who) = q.email.or(q.q) else {
        return ConsoleError::BadRequest("give ?email=… (or ?q= with a person id or name)".into())
            .into_response();
    };
    json(c.people(&who, q.tenant.as_deref()).await)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ResyncBody {
    dry_run: bool,
    #[serde(default)]
    provider: Option<String>,
}

pub(super) async fn resync(State(c): St, Path(tenant): Path<String>, body: axum::body::Bytes) -> Response {
    // Parsed by hand, so a bad body answers in the API's own JSON error shape.
    let body: ResyncBody = match serde_json::from_slice(&body) {
        Ok(b) => b,
        Err(e) => {
            return ConsoleError::BadRequest(format!("body: {e} (expected {{\"dry_run\": true|false}})"))
                .into_response();
        }
    };
    json(c.resync(&tenant, body.dry_run, body.provider.as_deref()).await)
}

pub(super) async fn drift(State(c): St, Path(tenant): Path<String>) -> Response {
    json(c.drift(&tenant).await)
}

pub(super) async fn mappings(State(c): St, Path(tenant): Path<String>) -> Response {
    json(c.mappings(&tenant).await)
}

pub(super) async fn mapping_options(State(c): St, Path(tenant): Path<String>) -> Response {
    json(c.mapping_options(&tenant).await)
}

pub(super) async fn catalog(State(c): St, Path(tenant): Path<String>) -> Response {
    json(c.catalog(&tenant).await)
}

pub(super) async fn save_mapping(
    State(c): St,
    Path(tenant): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let mapping: crate::model::Mapping = match serde_json::from_slice(&body) {
        Ok(m) => m,
        Err(e) => {
            return ConsoleError::BadRequest(format!(
                "body: {e} (expected {{\"item\": {{\"kind\": \"pass\", \"id\": \"1001\"}}, \"targets\": [{{\"tapkey_lock\": \"…\"}}]}})"
            ))
            .into_response();
        }
    };
    json(c.save_mapping(&tenant, mapping).await)
}

pub(super) async fn webhooks(
    State(c): St,
    Path(tenant): Path<String>,
    headers: axum::http::HeaderMap,
) -> Response {
    json(c.webhooks(&tenant, &base_url(&headers)).await)
}

pub(super) async fn redrive(State(c): St) -> Response {
    json(c.redrive_dead_letters().await.map(|n| serde_json::json!({ "redriven": n })))
}

pub(super) async fn retry(State(c): St, Path(tenant): Path<String>) -> Response {
    json(c.retry_failures(&tenant).await.map(|n| serde_json::json!({ "tenant": tenant, "queued": n })))
}
