//! Brivo Access API simulator (reference: lock-providers.md §3 and Brivo's OpenAPI files as
//! mirrored in `ThatGuyinIT/brivo-velocity`, `references/tags/{user,group,digital_invitations}.yaml`
//! and `references/brivo-access-api-overview.md`; each route names its file).
//!
//! Speaks `POST /oauth/token` (password and refresh grants; HTTP Basic client auth, `api-key`
//! header, form body only; tokens live 300 s) and `/v1/api/…` with the `api-key` header:
//! users (`/users`, `/users/{externalId}/external`, `/suspended`, `/groups`), group memberships
//! by `PUT`/`DELETE /groups/{groupId}/users/{userId}` (at most 16 groups a user) and the
//! documented but schema-less `POST /users/{id}/groups` (strict about its body), and Mobile
//! Pass invitations (409 pending, 412 no passes left, cancelled per user). Lists are
//! `{data, offset, pageSize, count}` with `pageSize` ≤ 100; errors `{code, message}`; a path
//! matching no documented endpoint answers 596 `<h1>596 Service Not Found</h1>`; the gateway
//! answers HTML (403 "Developer Inactive" without a key, 403 "Over Qps" when throttled, 403
//! "Over Rate" when the daily quota is used up).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Call, Core, FaultHandle, Profile, Route, Server, basic_auth, bearer, body_bytes, html_response, is_json,
    json, lock, param, parse_form, segments,
};

/// Brivo access tokens live five minutes.
pub const TOKEN_TTL: Duration = Duration::from_secs(300);
const MAX_GROUPS: usize = 16;
const MAX_PAGE: usize = 100;

/// The simulated account and the credentials it accepts.
#[derive(Debug, Clone)]
pub struct BrivoSimConfig {
    pub api_key: String,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
    /// Mobile Passes left for invitations.
    pub passes: usize,
}

impl Default for BrivoSimConfig {
    fn default() -> Self {
        Self {
            api_key: "brivo-sim-api-key".into(),
            client_id: "portier-brivo".into(),
            client_secret: "brivo-sim-secret".into(),
            username: "admin-7781".into(),
            password: "brivo-sim-password".into(),
            passes: 100,
        }
    }
}

/// A user as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimBrivoUser {
    pub id: u64,
    pub external_id: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    pub suspended: bool,
    pub groups: BTreeSet<u64>,
}

/// A Mobile Pass invitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimInvitation {
    pub id: u64,
    pub user_id: u64,
    pub email: Option<String>,
    /// `PENDING` or `CANCELLED`.
    pub status: String,
}

/// Every route this simulator answers, with its source (the OpenAPI files of apidocs.brivo.com
/// mirrored in ThatGuyinIT/brivo-velocity `references/`); anything else is 596.
pub const ROUTES: &[Route] = &[
    Route::new(
        "POST",
        "/oauth/token",
        "ThatGuyinIT/brivo-velocity references/brivo-access-api-overview.md (password grant)",
    ),
    Route::new("POST", "/v1/api/users", "brivo-velocity references/tags/user.yaml CreateUser"),
    Route::new(
        "GET",
        "/v1/api/users/{externalId}/external",
        "brivo-velocity references/tags/user.yaml RetrieveUserByExternal",
    ),
    Route::new("DELETE", "/v1/api/users/{id}", "brivo-velocity references/tags/user.yaml Delete_User"),
    Route::new(
        "PUT",
        "/v1/api/users/{id}/suspended",
        "brivo-velocity references/tags/user.yaml ToggleSuspendedStatus",
    ),
    Route::new(
        "GET",
        "/v1/api/users/{id}/groups",
        "brivo-velocity references/tags/user.yaml ListUsersGroups",
    ),
    Route::new(
        "POST",
        "/v1/api/users/{id}/groups",
        "brivo-velocity references/tags/user.yaml UpdateUsersGroups (no body schema; unused)",
    ),
    Route::new(
        "PUT",
        "/v1/api/groups/{groupId}/users/{userId}",
        "brivo-velocity references/tags/group.yaml AddUserToGroup",
    ),
    Route::new(
        "DELETE",
        "/v1/api/groups/{groupId}/users/{userId}",
        "brivo-velocity references/tags/group.yaml RemoveUserFromGroup",
    ),
    Route::new("GET", "/v1/api/groups", "brivo-velocity references/tags/group.yaml ListGroups"),
    Route::new(
        "GET",
        "/v1/api/groups/{groupId}/users",
        "brivo-velocity references/tags/group.yaml ListUsersInGroup",
    ),
    Route::new(
        "POST",
        "/v1/api/users/{userId}/credentials/digital-invitations",
        "brivo-velocity references/tags/digital_invitations.yaml CreateUserDigitalInvitation",
    ),
    Route::new(
        "GET",
        "/v1/api/users/{userId}/credentials/digital-invitations",
        "brivo-velocity references/tags/digital_invitations.yaml ListUserDigitalInvitations",
    ),
    Route::new(
        "DELETE",
        "/v1/api/users/{userId}/credentials/digital-invitations",
        "brivo-velocity references/tags/digital_invitations.yaml Cancel_user_digital_invitation",
    ),
    Route::new(
        "POST",
        "/v1/api/event-subscriptions",
        "brivo-velocity references/tags/event_subscription.yaml EventSubscription (criteria SITE, USER, ACCESS-POINT, AUDIT)",
    ),
    Route::new(
        "GET",
        "/v1/api/event-subscriptions",
        "brivo-velocity references/tags/event_subscription.yaml EventSubscriptionsList",
    ),
];

pub struct BrivoSim {
    server: Server,
    inner: Arc<Inner>,
}

struct Inner {
    cfg: BrivoSimConfig,
    core: Core,
    data: Mutex<Data>,
}

#[derive(Default)]
struct Data {
    next_id: u64,
    users: Vec<SimBrivoUser>,
    groups: BTreeMap<u64, String>,
    invitations: Vec<SimInvitation>,
    tokens: HashMap<String, Instant>,
    refresh_tokens: BTreeSet<String>,
    token_requests: usize,
    passes: usize,
    /// Calls still to answer with the daily-quota 403.
    over_rate: usize,
    /// The administrator lacks the "Account Config Tool Administrators" role.
    not_config_admin: bool,
    /// Event subscriptions (webhooks): each notified of the access events its criteria match.
    subscriptions: Vec<Value>,
}

const OVER_QPS: &str = "<h1>Developer Over Qps</h1>";
const OVER_RATE: &str = "<h1>Developer Over Rate</h1>";
const INACTIVE: &str = "<h1>Developer Inactive</h1>";
/// brivo-access-api-overview.md, error table: "596 | Service Not Found — `<h1>596 Service Not
/// Found</h1>`. Verify the HTTP verb matches the documented endpoint".
const SERVICE_NOT_FOUND: &str = "<h1>596 Service Not Found</h1>";

fn service_not_found() -> Response {
    html_response(StatusCode::from_u16(596).unwrap_or(StatusCode::NOT_FOUND), SERVICE_NOT_FOUND)
}

impl BrivoSim {
    /// The documented routes this simulator answers ([`ROUTES`]).
    pub fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    /// A valid access token issued without a token call, for tests that speak raw HTTP.
    pub fn access_token(&self) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        lock(&self.inner.data).tokens.insert(token.clone(), Instant::now() + TOKEN_TTL);
        token
    }

    pub async fn start(cfg: BrivoSimConfig) -> Self {
        let inner = Arc::new(Inner {
            core: Core::new(Profile {
                token_path: "/oauth/token",
                throttle_status: StatusCode::FORBIDDEN,
                error_body: |status, message| json!({ "code": status.as_u16(), "message": message }),
                throttle_html: Some(OVER_QPS),
            }),
            data: Mutex::new(Data { next_id: 440_000, passes: cfg.passes, ..Data::default() }),
            cfg,
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        Self { server: Server::start(router).await, inner }
    }

    /// `http://127.0.0.1:PORT/v1/api`
    pub fn base_url(&self) -> String {
        format!("{}/v1/api", self.server.origin())
    }

    /// `http://127.0.0.1:PORT/oauth/token`
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.server.origin())
    }

    pub fn config(&self) -> &BrivoSimConfig {
        &self.inner.cfg
    }

    /// Portier's client configuration for this simulator.
    pub fn client_config(&self) -> shared::providers::brivo::BrivoConfig {
        let c = &self.inner.cfg;
        shared::providers::brivo::BrivoConfig {
            base_url: self.base_url(),
            token_url: self.token_url(),
            api_key: c.api_key.clone().into(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone().into(),
            username: c.username.clone().into(),
            password: c.password.clone().into(),
        }
    }

    pub fn add_group(&self, id: u64, name: &str) {
        lock(&self.inner.data).groups.insert(id, name.to_owned());
    }

    pub fn users(&self) -> Vec<SimBrivoUser> {
        lock(&self.inner.data).users.clone()
    }

    pub fn user_by_email(&self, email: &str) -> Option<SimBrivoUser> {
        self.users().into_iter().find(|u| u.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(email)))
    }

    /// Emails of the group's members.
    pub fn members(&self, group: u64) -> Vec<String> {
        let d = lock(&self.inner.data);
        d.users.iter().filter(|u| u.groups.contains(&group)).filter_map(|u| u.email.clone()).collect()
    }

    /// Creates a user in the Brivo console by hand (not through Portier), in these groups;
    /// returns its id. For drift tests.
    pub fn add_user_by_hand(&self, name: &str, email: &str, groups: &[u64]) -> u64 {
        let mut d = lock(&self.inner.data);
        d.next_id += 1;
        let (first, last) = name.split_once(' ').unwrap_or((name, name));
        let user = SimBrivoUser {
            id: d.next_id,
            external_id: None,
            first_name: first.into(),
            last_name: last.into(),
            email: Some(email.into()),
            suspended: false,
            groups: groups.iter().copied().collect(),
        };
        let id = user.id;
        d.users.push(user);
        id
    }

    /// Takes a user out of a group behind Portier's back.
    pub fn remove_from_group_by_hand(&self, user_id: u64, group: u64) {
        let mut d = lock(&self.inner.data);
        if let Some(u) = d.users.iter_mut().find(|u| u.id == user_id) {
            u.groups.remove(&group);
        }
    }

    /// Puts a user in groups behind Portier's back (e.g. up to the 16-group cap).
    pub fn add_to_groups_by_hand(&self, user_id: u64, groups: &[u64]) {
        let mut d = lock(&self.inner.data);
        for g in groups {
            d.groups.entry(*g).or_insert_with(|| format!("Group {g}"));
        }
        if let Some(u) = d.users.iter_mut().find(|u| u.id == user_id) {
            u.groups.extend(groups);
        }
    }

    pub fn invitations(&self) -> Vec<SimInvitation> {
        lock(&self.inner.data).invitations.clone()
    }

    pub fn set_passes(&self, passes: usize) {
        lock(&self.inner.data).passes = passes;
    }

    /// Tokens currently valid (access and refresh), for tests asserting they never leak.
    pub fn issued_tokens(&self) -> Vec<String> {
        let d = lock(&self.inner.data);
        d.tokens.keys().chain(d.refresh_tokens.iter()).cloned().collect()
    }

    pub fn expire_tokens(&self) {
        lock(&self.inner.data).tokens.clear();
    }

    pub fn token_requests(&self) -> usize {
        lock(&self.inner.data).token_requests
    }

    /// Registers an event subscription posting access events to `url` (as
    /// `POST /event-subscriptions` would), with no criteria: every access event.
    pub fn add_subscription(&self, url: &str) {
        let mut d = lock(&self.inner.data);
        d.next_id += 1;
        let id = d.next_id;
        d.subscriptions.push(json!({ "id": id, "name": "Portier presence", "url": url, "criteria": [] }));
    }

    /// An access event as `GET /events/access` lists it (events.yaml): a user opened `door`.
    pub fn access_event(&self, door: u64, user: u64, at: chrono::DateTime<chrono::Utc>) -> Value {
        json!({
            "uuid": uuid::Uuid::new_v4().to_string(),
            "securityAction": { "securityActionId": 2004, "action": "Access by User", "exception": false },
            "actor": { "id": user, "name": "Member" },
            "eventObject": { "id": door, "name": format!("Door {door}"), "deviceType": { "id": 1, "name": "Door" } },
            "site": { "id": 7833522, "siteName": "Home base" },
            "occurred": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "processed": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            "eventData": { "actorName": "Member", "objectName": format!("Door {door}"), "actionAllowed": true, "objectTypeId": 2, "deviceTypeId": 1 },
        })
    }

    /// Sends `event` to every subscription (the event subscription's notification); returns
    /// the status each answered.
    pub async fn notify(&self, event: &Value) -> Vec<u16> {
        let urls: Vec<String> = lock(&self.inner.data)
            .subscriptions
            .iter()
            .filter_map(|s| s["url"].as_str().map(str::to_owned))
            .collect();
        let http = reqwest::Client::new();
        let mut out = Vec::new();
        for url in urls {
            let status = match http.post(&url).json(event).send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            out.push(status);
        }
        out
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.core.calls()
    }

    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.inner.core.count(method, path_contains)
    }

    /// Membership writes answered: `PUT`/`DELETE /groups/{g}/users/{u}` and any
    /// `POST /users/{id}/groups`.
    pub fn membership_calls(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| {
                let s = segments(&c.path);
                let s: Vec<&str> = s.iter().map(String::as_str).collect();
                matches!(
                    (c.method.as_str(), s.as_slice()),
                    ("PUT" | "DELETE", [.., "groups", _, "users", _]) | ("POST", [.., "users", _, "groups"])
                )
            })
            .count()
    }

    /// The next `n` API calls answer the gateway's daily-quota 403 "Developer Over Rate".
    pub fn over_rate_next(&self, n: usize) {
        lock(&self.inner.data).over_rate = n;
    }

    /// When set, the administrator lacks the "Account Config Tool Administrators" role, so
    /// `GET /groups/{id}/users` answers 403.
    pub fn set_not_config_admin(&self, on: bool) {
        lock(&self.inner.data).not_config_admin = on;
    }

    pub fn reset_calls(&self) {
        self.inner.core.reset_calls();
    }

    pub fn faults(&self) -> FaultHandle {
        self.inner.core.faults()
    }
}

fn err(status: StatusCode, message: &str) -> Response {
    json(status, json!({ "code": status.as_u16(), "message": message }))
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    inner.core.run(req, |req| inner.route(req)).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewUser {
    first_name: Option<String>,
    last_name: Option<String>,
    external_id: Option<String>,
    #[serde(default)]
    emails: Vec<EmailBody>,
}

#[derive(Deserialize)]
struct EmailBody {
    address: String,
}

/// No body schema is published for `POST /users/{id}/groups`, so the simulator accepts only
/// these names and refuses any other field rather than ignoring it.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct GroupsBody {
    #[serde(default)]
    add_groups: Vec<Value>,
    #[serde(default)]
    remove_groups: Vec<Value>,
}

async fn body_json<T: serde::de::DeserializeOwned>(headers: &HeaderMap, body: Body) -> Result<T, Response> {
    if !is_json(headers) {
        return Err(err(StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-type must be application/json"));
    }
    let bytes = body_bytes(body).await.ok_or_else(|| err(StatusCode::BAD_REQUEST, "Unreadable body"))?;
    serde_json::from_slice(&bytes).map_err(|e| err(StatusCode::BAD_REQUEST, &format!("Invalid request: {e}")))
}

fn group_id(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok()))
}

impl Inner {
    fn key_ok(&self, headers: &HeaderMap) -> bool {
        headers.get("api-key").and_then(|v| v.to_str().ok()) == Some(self.cfg.api_key.as_str())
    }

    async fn route(&self, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        if !self.key_ok(&parts.headers) {
            return html_response(StatusCode::FORBIDDEN, INACTIVE);
        }
        {
            let mut d = lock(&self.data);
            if d.over_rate > 0 {
                d.over_rate -= 1;
                let mut resp = html_response(StatusCode::FORBIDDEN, OVER_RATE);
                resp.headers_mut().insert(
                    "x-mashery-error-code",
                    axum::http::HeaderValue::from_static("ERR_403_DEVELOPER_OVER_RATE"),
                );
                return resp;
            }
        }
        let segs = segments(parts.uri.path());
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let method = parts.method.as_str();
        let query = parse_form(parts.uri.query().unwrap_or_default());
        if (method, s.as_slice()) == ("POST", ["oauth", "token"].as_slice()) {
            return self.token(&parts.headers, body).await;
        }
        let rest = match s.as_slice() {
            ["v1", "api", rest @ ..] => rest,
            _ => return service_not_found(),
        };
        if !self.authorized(&parts.headers) {
            return json(
                StatusCode::UNAUTHORIZED,
                json!({ "error": "invalid_token", "error_description": "Access token expired" }),
            );
        }
        if let Some(size) = param(&query, "pageSize").and_then(|v| v.parse::<usize>().ok())
            && size > MAX_PAGE
        {
            return err(StatusCode::BAD_REQUEST, "pageSize must be at most 100");
        }
        match (method, rest) {
            // event_subscription.yaml `EventSubscription`: `{name, url, errorEmail, criteria}`.
            ("POST", ["event-subscriptions"]) => match body_json::<Value>(&parts.headers, body).await {
                Ok(Value::Object(mut sub)) if sub.get("url").is_some_and(Value::is_string) => {
                    let mut d = lock(&self.data);
                    d.next_id += 1;
                    sub.insert("id".into(), json!(d.next_id));
                    sub.entry("criteria").or_insert(json!([]));
                    let sub = Value::Object(sub);
                    d.subscriptions.push(sub.clone());
                    json(StatusCode::OK, sub)
                }
                Ok(_) => err(StatusCode::BAD_REQUEST, "Invalid criteria provided"),
                Err(e) => e,
            },
            ("GET", ["event-subscriptions"]) => {
                let d = lock(&self.data);
                let n = d.subscriptions.len();
                json(
                    StatusCode::OK,
                    json!({ "offset": 0, "pageSize": 20, "count": n, "data": d.subscriptions }),
                )
            }
            // user.yaml `CreateUser` (no request schema; camelCase as in its response).
            ("POST", ["users"]) => match body_json::<NewUser>(&parts.headers, body).await {
                Ok(u) => self.create_user(u),
                Err(e) => e,
            },
            // user.yaml `RetrieveUserByExternal`.
            ("GET", ["users", ext, "external"]) => {
                let d = lock(&self.data);
                match d.users.iter().find(|u| u.external_id.as_deref() == Some(*ext)) {
                    Some(u) => json(StatusCode::OK, user_json(u)),
                    None => err(StatusCode::NOT_FOUND, "User not found"),
                }
            }
            // user.yaml `Delete_User`: 204, 404 "User not found".
            ("DELETE", ["users", id]) => {
                let mut d = lock(&self.data);
                let Some(pos) = d.users.iter().position(|u| u.id.to_string() == *id) else {
                    return err(StatusCode::NOT_FOUND, "User not found");
                };
                d.users.remove(pos);
                StatusCode::NO_CONTENT.into_response()
            }
            // user.yaml `ToggleSuspendedStatus`.
            ("PUT", ["users", id, "suspended"]) => {
                #[derive(Deserialize)]
                struct Body2 {
                    suspended: bool,
                }
                let b: Body2 = match body_json(&parts.headers, body).await {
                    Ok(b) => b,
                    Err(e) => return e,
                };
                let mut d = lock(&self.data);
                match d.users.iter_mut().find(|u| u.id.to_string() == *id) {
                    Some(u) => {
                        u.suspended = b.suspended;
                        json(StatusCode::OK, json!({ "id": u.id, "suspended": u.suspended }))
                    }
                    None => err(StatusCode::NOT_FOUND, "User not found"),
                }
            }
            // user.yaml `UpdateUsersGroups`: documented (all or nothing, at most 16 groups) but
            // without a body schema; Portier no longer calls it.
            ("POST", ["users", id, "groups"]) => match body_json::<GroupsBody>(&parts.headers, body).await {
                Ok(b) => self.change_groups(id, b),
                Err(e) => e,
            },
            // group.yaml `AddUserToGroup`: 204, 400, 404 "Group not found".
            ("PUT", ["groups", group, "users", user]) => self.set_member(group, user, true),
            // group.yaml `RemoveUserFromGroup`: 204, 400, 404.
            ("DELETE", ["groups", group, "users", user]) => self.set_member(group, user, false),
            // group.yaml `ListGroups`: `{data: [{id, name}], offset, pageSize, count}`, "only
            // available to Brivo Account Config Tool Administrators".
            ("GET", ["groups"]) => {
                let d = lock(&self.data);
                if d.not_config_admin {
                    return err(StatusCode::FORBIDDEN, "You are not allowed to perform that action");
                }
                page(&query, d.groups.iter().map(|(id, name)| json!({ "id": id, "name": name })).collect())
            }
            // group.yaml `ListUsersInGroup`: "only available to Brivo Account Config Tool
            // Administrators"; items without `emails` would be closer to the example.
            ("GET", ["groups", group, "users"]) => {
                let d = lock(&self.data);
                if d.not_config_admin {
                    return err(StatusCode::FORBIDDEN, "You are not allowed to perform that action");
                }
                match group.parse::<u64>().ok().filter(|g| d.groups.contains_key(g)) {
                    Some(g) => page(
                        &query,
                        d.users.iter().filter(|u| u.groups.contains(&g)).map(user_json).collect(),
                    ),
                    None => err(StatusCode::NOT_FOUND, "Group not found"),
                }
            }
            // user.yaml `ListUsersGroups`: `{count, data: [{id, name}]}`.
            ("GET", ["users", id, "groups"]) => {
                let d = lock(&self.data);
                match d.users.iter().find(|u| u.id.to_string() == *id) {
                    Some(u) => page(
                        &query,
                        u.groups.iter().map(|g| json!({ "id": g, "name": d.groups.get(g) })).collect(),
                    ),
                    None => err(StatusCode::NOT_FOUND, "User not found"),
                }
            }
            // digital_invitations.yaml `CreateUserDigitalInvitation`: `sendInvitationEmail`,
            // `nfcEnabled` and `language` are all marked required.
            ("POST", ["users", id, "credentials", "digital-invitations"]) => {
                let required = ["sendInvitationEmail", "nfcEnabled", "language"];
                if required.iter().any(|k| param(&query, k).is_none()) {
                    return err(StatusCode::BAD_REQUEST, "Invalid criteria provided");
                }
                self.invite(id)
            }
            // digital_invitations.yaml `ListUserDigitalInvitations` (defaults to pending).
            ("GET", ["users", id, "credentials", "digital-invitations"]) => {
                let d = lock(&self.data);
                let pending_only =
                    param(&query, "filter").is_none_or(|f| f.eq_ignore_ascii_case("status__eq:pending"));
                let items = d
                    .invitations
                    .iter()
                    .filter(|i| i.user_id.to_string() == *id && (!pending_only || i.status == "PENDING"))
                    .map(|i| json!({ "id": i.id, "referenceId": i.email, "status": i.status }))
                    .collect();
                page(&query, items)
            }
            // digital_invitations.yaml `Cancel_user_digital_invitation`: by user, no invitation
            // id; 200 with the cancelled invitation, 404 "Digital invitation not found".
            ("DELETE", ["users", id, "credentials", "digital-invitations"]) => {
                let mut d = lock(&self.data);
                match d.invitations.iter_mut().find(|i| i.user_id.to_string() == *id && i.status == "PENDING")
                {
                    Some(i) => {
                        i.status = "CANCELLED".into();
                        json(
                            StatusCode::OK,
                            json!({ "id": i.id, "referenceId": i.email, "status": i.status, "nfcEnabled": false }),
                        )
                    }
                    None => err(StatusCode::NOT_FOUND, "Digital invitation not found"),
                }
            }
            // Anything else (e.g. `DELETE …/digital-invitations/{id}`, not among the documented
            // endpoints of brivo-access-api-context.yaml) is what Brivo calls an unknown service.
            _ => service_not_found(),
        }
    }

    async fn token(&self, headers: &HeaderMap, body: Body) -> Response {
        lock(&self.data).token_requests += 1;
        let oauth = |status: StatusCode, code: &str, desc: &str| {
            json(status, json!({ "error": code, "error_description": desc }))
        };
        if basic_auth(headers) != Some((self.cfg.client_id.clone(), self.cfg.client_secret.clone())) {
            return oauth(StatusCode::UNAUTHORIZED, "invalid_client", "Bad client credentials");
        }
        if is_json(headers) {
            return oauth(StatusCode::BAD_REQUEST, "invalid_request", "Form body expected");
        }
        let Some(bytes) = body_bytes(body).await else {
            return oauth(StatusCode::BAD_REQUEST, "invalid_request", "Unreadable body");
        };
        let form = parse_form(&String::from_utf8_lossy(&bytes));
        let mut d = lock(&self.data);
        match param(&form, "grant_type") {
            Some("password") => {
                if param(&form, "username") != Some(self.cfg.username.as_str())
                    || param(&form, "password") != Some(self.cfg.password.as_str())
                {
                    return oauth(StatusCode::BAD_REQUEST, "invalid_grant", "Bad credentials");
                }
            }
            Some("refresh_token") => {
                let ok = param(&form, "refresh_token").is_some_and(|rt| d.refresh_tokens.remove(rt));
                if !ok {
                    return oauth(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid refresh token");
                }
            }
            _ => return oauth(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Unsupported grant type"),
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let refresh = uuid::Uuid::new_v4().simple().to_string();
        d.tokens.insert(token.clone(), Instant::now() + TOKEN_TTL);
        d.refresh_tokens.insert(refresh.clone());
        json(
            StatusCode::OK,
            json!({ "access_token": token, "token_type": "bearer", "refresh_token": refresh, "expires_in": TOKEN_TTL.as_secs() }),
        )
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = bearer(headers) else { return false };
        lock(&self.data).tokens.get(token).is_some_and(|exp| *exp > Instant::now())
    }

    fn create_user(&self, u: NewUser) -> Response {
        let (Some(first), Some(last)) =
            (u.first_name.filter(|s| !s.trim().is_empty()), u.last_name.filter(|s| !s.trim().is_empty()))
        else {
            return err(StatusCode::BAD_REQUEST, "firstName and lastName are required");
        };
        let mut d = lock(&self.data);
        if let Some(ext) = &u.external_id
            && d.users.iter().any(|x| x.external_id.as_ref() == Some(ext))
        {
            return err(StatusCode::BAD_REQUEST, "externalId already in use");
        }
        d.next_id += 1;
        let user = SimBrivoUser {
            id: d.next_id,
            external_id: u.external_id,
            first_name: first,
            last_name: last,
            email: u.emails.into_iter().next().map(|e| e.address),
            suspended: false,
            groups: BTreeSet::new(),
        };
        let body = user_json(&user);
        d.users.push(user);
        json(StatusCode::OK, body)
    }

    fn change_groups(&self, id: &str, b: GroupsBody) -> Response {
        let mut d = lock(&self.data);
        let mut ids = Vec::new();
        for v in b.add_groups.iter().chain(&b.remove_groups) {
            match group_id(v) {
                Some(g) if d.groups.contains_key(&g) => ids.push(g),
                _ => return err(StatusCode::NOT_FOUND, "Group not found"),
            }
        }
        let groups = d.groups.clone();
        let Some(user) = d.users.iter_mut().find(|u| u.id.to_string() == id) else {
            return err(StatusCode::NOT_FOUND, "User not found");
        };
        let mut next = user.groups.clone();
        for g in b.remove_groups.iter().filter_map(group_id) {
            next.remove(&g);
        }
        next.extend(b.add_groups.iter().filter_map(group_id));
        if next.len() > MAX_GROUPS {
            return err(StatusCode::BAD_REQUEST, "A user can be a member of at most 16 groups");
        }
        user.groups = next;
        let data: Vec<Value> =
            user.groups.iter().map(|g| json!({ "id": g, "name": groups.get(g) })).collect();
        json(StatusCode::OK, json!({ "count": data.len(), "data": data }))
    }

    /// One membership by the documented per-group calls; adding over the cap is refused (400)
    /// like `UpdateUsersGroups` says, and removing a non-member answers 404 (an assumption:
    /// group.yaml documents only "Group not found").
    fn set_member(&self, group: &str, user: &str, member: bool) -> Response {
        let mut d = lock(&self.data);
        let Some(g) = group.parse::<u64>().ok().filter(|g| d.groups.contains_key(g)) else {
            return err(StatusCode::NOT_FOUND, "Group not found");
        };
        let Some(u) = d.users.iter_mut().find(|u| u.id.to_string() == user) else {
            return err(StatusCode::NOT_FOUND, "User not found");
        };
        if member {
            if !u.groups.contains(&g) && u.groups.len() >= MAX_GROUPS {
                return err(StatusCode::BAD_REQUEST, "A user can be a member of at most 16 groups");
            }
            u.groups.insert(g);
        } else if !u.groups.remove(&g) {
            return err(StatusCode::NOT_FOUND, "User is not a member of the group");
        }
        StatusCode::NO_CONTENT.into_response()
    }

    fn invite(&self, id: &str) -> Response {
        let mut d = lock(&self.data);
        let Some(user) = d.users.iter().find(|u| u.id.to_string() == id).cloned() else {
            return err(StatusCode::NOT_FOUND, "User not found");
        };
        if d.invitations.iter().any(|i| i.user_id == user.id && i.status == "PENDING") {
            return err(StatusCode::CONFLICT, "An invitation is already pending for this user");
        }
        if d.passes == 0 {
            return err(StatusCode::PRECONDITION_FAILED, "No Wallet Passes left");
        }
        d.passes -= 1;
        d.next_id += 1;
        let inv = SimInvitation {
            id: d.next_id,
            user_id: user.id,
            email: user.email.clone(),
            status: "PENDING".into(),
        };
        let body =
            json!({ "id": inv.id, "referenceId": inv.email, "status": "PENDING", "accessCode": "123456" });
        d.invitations.push(inv);
        json(StatusCode::OK, body)
    }
}

fn page(query: &[(String, String)], items: Vec<Value>) -> Response {
    let number =
        |k: &str, default: usize| param(query, k).and_then(|v| v.parse::<usize>().ok()).unwrap_or(default);
    let (offset, size) = (number("offset", 0), number("pageSize", 20));
    let count = items.len();
    let data: Vec<Value> = items.into_iter().skip(offset).take(size).collect();
    json(StatusCode::OK, json!({ "data": data, "offset": offset, "pageSize": size, "count": count }))
}

fn user_json(u: &SimBrivoUser) -> Value {
    json!({
        "id": u.id,
        "externalId": u.external_id,
        "firstName": u.first_name,
        "lastName": u.last_name,
        "suspended": u.suspended,
        "emails": u.email.as_ref().map(|e| vec![json!({ "address": e, "type": "Work" })]).unwrap_or_default(),
    })
}
