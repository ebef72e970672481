//! Nexudus REST API simulator (reference: source-systems.md §1).
//!
//! Speaks `POST /api/token` (password and refresh grants), paged `{Records, …}` lists with
//! `page`/`size` and `{Entity}_{Field}` filters, PascalCase DTOs, **409** with `Retry-After` when
//! throttled, and **500** (not 404) for a deleted id, as the real API does. It also builds and
//! delivers webhooks signed the way Nexudus signs them.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::{
    Call, Core, FaultHandle, Profile, Server, bearer, body_bytes, is_json, iso, iso_opt, json, lock, param,
    parse_form, parse_time, segments,
};

const ACCESS_TTL: Duration = Duration::from_secs(604_799);
const REFRESH_TTL: Duration = Duration::from_secs(15 * 24 * 3600);
const BUSINESS_ID: i64 = 1001;
const UPDATED_BY: &str = "admin@sim.nexudus.test";
const SIGNATURE_HEADER: &str = "X-Nexudus-Hook-Signature";

/// The admin user Portier logs in as, and the add-on secret webhooks are signed with.
#[derive(Debug, Clone)]
pub struct NexudusSimConfig {
    pub username: String,
    pub password: String,
    /// `None`: webhooks go out unsigned (as hooks made in the admin UI may).
    pub webhook_secret: Option<String>,
}

impl Default for NexudusSimConfig {
    fn default() -> Self {
        Self {
            username: "portier@sim.nexudus.test".into(),
            password: "nexudus-sim-password".into(),
            webhook_secret: Some("nx-secret".into()),
        }
    }
}

/// A webhook delivery as Nexudus would send it.
#[derive(Debug, Clone)]
pub struct SimWebhook {
    pub action: String,
    pub body: Vec<u8>,
    pub headers: Vec<(String, String)>,
}

/// A running Nexudus simulator; stops when dropped.
pub struct NexudusSim {
    server: Server,
    inner: Arc<Inner>,
    http: reqwest::Client,
}

struct Inner {
    cfg: NexudusSimConfig,
    core: Core,
    data: Mutex<Data>,
}

struct Data {
    now: DateTime<Utc>,
    coworkers: BTreeMap<i64, Coworker>,
    time_passes: BTreeMap<i64, TimePass>,
    passes: BTreeMap<i64, CoworkerPass>,
    next_pass_id: i64,
    access_tokens: HashMap<String, Instant>,
    refresh_tokens: HashMap<String, Instant>,
    token_requests: usize,
}

struct Coworker {
    id: i64,
    unique_id: String,
    full_name: String,
    email: String,
    active: bool,
    created_on: DateTime<Utc>,
    updated_on: DateTime<Utc>,
}

struct TimePass {
    id: i64,
    unique_id: String,
    name: String,
    created_on: DateTime<Utc>,
}

struct CoworkerPass {
    id: i64,
    unique_id: String,
    coworker_id: i64,
    time_pass_id: i64,
    used: bool,
    used_date: Option<DateTime<Utc>>,
    expire_date: Option<DateTime<Utc>>,
    created_on: DateTime<Utc>,
    updated_on: DateTime<Utc>,
}

impl NexudusSim {
    /// Starts a fresh simulator on its own loopback port; its clock reads the current time.
    pub async fn start(cfg: NexudusSimConfig) -> Self {
        let inner = Arc::new(Inner {
            cfg,
            core: Core::new(Profile {
                token_path: "/api/token",
                throttle_status: StatusCode::CONFLICT,
                error_body: |_, message| json!({ "Message": message }),
                throttle_html: None,
            }),
            data: Mutex::new(Data {
                now: Utc::now(),
                coworkers: BTreeMap::new(),
                time_passes: BTreeMap::new(),
                passes: BTreeMap::new(),
                next_pass_id: 5001,
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                token_requests: 0,
            }),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        Self { server: Server::start(router).await, inner, http: reqwest::Client::new() }
    }

    /// `http://127.0.0.1:PORT/api`
    pub fn base_url(&self) -> String {
        format!("{}/api", self.server.origin())
    }

    pub fn config(&self) -> &NexudusSimConfig {
        &self.inner.cfg
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }

    /// Requests to `/api/token`, successful or not.
    pub fn token_requests(&self) -> usize {
        lock(&self.inner.data).token_requests
    }

    /// Tokens currently valid (access and refresh), for tests asserting they never leak.
    pub fn issued_tokens(&self) -> Vec<String> {
        let d = lock(&self.inner.data);
        d.access_tokens.keys().chain(d.refresh_tokens.keys()).cloned().collect()
    }

    /// Invalidates all access tokens; refresh tokens stay valid so the client's refresh path
    /// is exercised.
    pub fn expire_tokens(&self) {
        lock(&self.inner.data).access_tokens.clear();
    }

    /// Invalidates refresh tokens too, forcing a password login.
    pub fn expire_refresh_tokens(&self) {
        lock(&self.inner.data).refresh_tokens.clear();
    }

    /// Sets the sim clock that stamps `CreatedOn`/`UpdatedOn`/`UsedDate`; it only moves when set.
    pub fn set_now(&self, now: DateTime<Utc>) {
        lock(&self.inner.data).now = now;
    }

    pub fn now(&self) -> DateTime<Utc> {
        lock(&self.inner.data).now
    }

    /// Adds (or replaces) a coworker.
    pub fn add_coworker(&self, id: i64, full_name: &str, email: &str) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        d.coworkers.insert(
            id,
            Coworker {
                id,
                unique_id: uuid::Uuid::new_v4().to_string(),
                full_name: full_name.to_owned(),
                email: email.to_owned(),
                active: true,
                created_on: now,
                updated_on: now,
            },
        );
    }

    /// Panics on an unknown coworker (a test bug).
    pub fn update_coworker_email(&self, id: i64, email: &str) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let c = d.coworkers.get_mut(&id).unwrap_or_else(|| panic!("NexudusSim has no coworker {id}"));
        c.email = email.to_owned();
        c.updated_on = now;
    }

    /// Suspends or reactivates a coworker (`Active`). Panics on an unknown coworker (a test bug).
    pub fn set_coworker_active(&self, id: i64, active: bool) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let c = d.coworkers.get_mut(&id).unwrap_or_else(|| panic!("NexudusSim has no coworker {id}"));
        c.active = active;
        c.updated_on = now;
    }

    /// Afterwards `GET /api/spaces/coworkers/{id}` answers 500, as Nexudus does. Panics on an
    /// unknown coworker (a test bug).
    pub fn delete_coworker(&self, id: i64) {
        let removed = lock(&self.inner.data).coworkers.remove(&id);
        assert!(removed.is_some(), "NexudusSim has no coworker {id}");
    }

    /// Defines a time pass product (e.g. "Day pass").
    pub fn add_time_pass(&self, id: i64, name: &str) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let unique_id = uuid::Uuid::new_v4().to_string();
        d.time_passes.insert(id, TimePass { id, unique_id, name: name.to_owned(), created_on: now });
    }

    /// Assigns a single-use pass to a coworker; returns the CoworkerTimePass id. Panics on an
    /// unknown coworker or time pass (a test bug).
    pub fn give_pass(&self, coworker_id: i64, time_pass_id: i64, expire: Option<DateTime<Utc>>) -> i64 {
        let mut d = lock(&self.inner.data);
        assert!(d.coworkers.contains_key(&coworker_id), "NexudusSim has no coworker {coworker_id}");
        assert!(d.time_passes.contains_key(&time_pass_id), "NexudusSim has no time pass {time_pass_id}");
        let id = d.next_pass_id;
        d.next_pass_id += 1;
        let now = d.now;
        d.passes.insert(
            id,
            CoworkerPass {
                id,
                unique_id: uuid::Uuid::new_v4().to_string(),
                coworker_id,
                time_pass_id,
                used: false,
                used_date: None,
                expire_date: expire,
                created_on: now,
                updated_on: now,
            },
        );
        id
    }

    /// Marks a pass used at the sim clock's time. Panics on an unknown pass (a test bug).
    pub fn set_pass_used(&self, id: i64) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let p = d.passes.get_mut(&id).unwrap_or_else(|| panic!("NexudusSim has no pass {id}"));
        p.used = true;
        p.used_date = Some(now);
        p.updated_on = now;
    }

    /// Panics on an unknown pass (a test bug).
    pub fn remove_pass(&self, id: i64) {
        let removed = lock(&self.inner.data).passes.remove(&id);
        assert!(removed.is_some(), "NexudusSim has no pass {id}");
    }

    /// The full Coworker DTO (as `GET …/coworkers/{id}` and webhooks carry it); `Null` if unknown.
    pub fn coworker_dto(&self, id: i64) -> Value {
        lock(&self.inner.data).coworkers.get(&id).map_or(Value::Null, |c| c.to_json(true))
    }

    /// The CoworkerTimePass DTO; `Null` if unknown.
    pub fn pass_dto(&self, id: i64) -> Value {
        let d = lock(&self.inner.data);
        d.passes.get(&id).map_or(Value::Null, |p| p.to_json(&d))
    }

    pub fn calls(&self) -> Vec<Call> {
        self.inner.core.calls()
    }

    /// Calls with this method whose path contains `path_contains` (case-insensitive).
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.inner.core.count(method, path_contains)
    }

    pub fn reset_calls(&self) {
        self.inner.core.reset_calls();
    }

    pub fn faults(&self) -> FaultHandle {
        self.inner.core.faults()
    }

    /// The same JSON `GET /_sim/state` serves.
    pub fn state_json(&self) -> Value {
        self.inner.dump()
    }

    /// A delivery of `[dto]` for `action` (e.g. "CoworkerUpdate"), signed when the sim has a
    /// webhook secret. The action is not in the body (Nexudus sends none); it is kept so the
    /// caller can pick the per-action URL.
    pub fn webhook(&self, action: &str, dto: &Value) -> SimWebhook {
        let body = serde_json::to_vec(&[dto]).unwrap_or_default();
        let mut headers = vec![("Content-Type".to_owned(), "application/json".to_owned())];
        if let Some(secret) = &self.inner.cfg.webhook_secret {
            headers.push((SIGNATURE_HEADER.to_owned(), sign_ascii(secret, &body)));
        }
        SimWebhook { action: action.to_owned(), body, headers }
    }

    /// POSTs the webhook to `url`; returns the answer's status, or 0 if none arrived.
    pub async fn deliver(&self, url: &str, hook: &SimWebhook) -> u16 {
        let mut req = self.http.post(url).body(hook.body.clone());
        for (name, value) in &hook.headers {
            req = req.header(name.as_str(), value.as_str());
        }
        match req.send().await {
            Ok(resp) => resp.status().as_u16(),
            Err(e) => {
                tracing::warn!(error = %e, url, "webhook delivery got no answer");
                0
            }
        }
    }
}

/// Nexudus's signature: uppercase hex HMAC-SHA256 over the .NET `ASCIIEncoding` bytes of the
/// secret and body, where every non-ASCII char becomes `?` (the wire body stays UTF-8).
pub fn sign_ascii(secret: &str, body: &[u8]) -> String {
    hmac_hex(&dotnet_ascii(secret.as_bytes()), &dotnet_ascii(body))
}

/// The same HMAC over the raw UTF-8 bytes, the variant a verifier should also accept.
pub fn sign_utf8(secret: &str, body: &[u8]) -> String {
    hmac_hex(secret.as_bytes(), body)
}

fn dotnet_ascii(bytes: &[u8]) -> Vec<u8> {
    String::from_utf8_lossy(bytes).chars().map(|c| if c.is_ascii() { c as u8 } else { b'?' }).collect()
}

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    hex::encode_upper(mac.finalize().into_bytes())
}

impl Coworker {
    /// `with_collections`: GET-by-id and webhooks carry `Teams`; list answers omit it.
    fn to_json(&self, with_collections: bool) -> Value {
        let mut v = json!({
            "Id": self.id,
            "UniqueId": self.unique_id,
            "FullName": self.full_name,
            "Email": self.email,
            "Active": self.active,
            "CoworkerType": 1,
            "CreatedOn": iso(&self.created_on),
            "UpdatedOn": iso(&self.updated_on),
            "UpdatedBy": UPDATED_BY,
            "IsNew": false,
            "SystemId": null,
        });
        if let (true, Some(obj)) = (with_collections, v.as_object_mut()) {
            obj.insert("Teams".into(), json!([]));
        }
        v
    }
}

impl TimePass {
    fn to_json(&self) -> Value {
        json!({
            "Id": self.id,
            "UniqueId": self.unique_id,
            "BusinessId": BUSINESS_ID,
            "Name": self.name,
            "MinutesIncluded": null,
            "CreatedOn": iso(&self.created_on),
            "UpdatedOn": iso(&self.created_on),
            "UpdatedBy": UPDATED_BY,
            "IsNew": false,
            "SystemId": null,
        })
    }
}

impl CoworkerPass {
    fn to_json(&self, d: &Data) -> Value {
        let name = d.time_passes.get(&self.time_pass_id).map(|t| t.name.clone());
        json!({
            "Id": self.id,
            "UniqueId": self.unique_id,
            "CoworkerId": self.coworker_id,
            "BusinessId": BUSINESS_ID,
            "TimePassId": self.time_pass_id,
            "TimePassName": name,
            "Used": self.used,
            "CheckedIn": false,
            "UsedDate": iso_opt(&self.used_date),
            "RemainingUses": if self.used { 0 } else { 1 },
            "TotalUses": 1,
            "ExpireDate": iso_opt(&self.expire_date),
            "IsFromTariff": false,
            "IsPayAsYouGo": false,
            "CreatedOn": iso(&self.created_on),
            "UpdatedOn": iso(&self.updated_on),
            "UpdatedBy": UPDATED_BY,
            "IsNew": false,
            "SystemId": null,
        })
    }
}

fn message(status: StatusCode, text: &str) -> Response {
    json(status, json!({ "Message": text }))
}

fn bad_request(text: &str) -> Response {
    message(StatusCode::BAD_REQUEST, text)
}

/// What ASP.NET answers when a lookup by a deleted or unknown id throws.
fn server_error() -> Response {
    message(StatusCode::INTERNAL_SERVER_ERROR, "An error has occurred.")
}

fn oauth_error(code: &str, description: &str) -> Response {
    json(StatusCode::BAD_REQUEST, json!({ "error": code, "error_description": description }))
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    inner.core.run(req, |req| inner.route(req)).await
}

type Query = [(String, String)];

impl Inner {
    async fn route(&self, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let segs = segments(parts.uri.path());
        let lower: Vec<String> = segs.iter().map(|s| s.to_ascii_lowercase()).collect();
        let lower: Vec<&str> = lower.iter().map(String::as_str).collect();
        let method = parts.method.as_str();
        let query = parse_form(parts.uri.query().unwrap_or_default());

        match (method, lower.as_slice()) {
            ("GET", ["_sim", "state"]) => return json(StatusCode::OK, self.dump()),
            ("POST", ["api", "token"]) => return self.token(&parts.headers, body).await,
            (_, ["api", ..]) => {}
            _ => return self.no_resource(),
        }
        if !self.authorized(&parts.headers) {
            return message(StatusCode::UNAUTHORIZED, "Authorization has been denied for this request.");
        }
        match (method, &lower[1..]) {
            ("GET", ["spaces", "coworkers"]) => self.list_coworkers(&query),
            ("GET", ["spaces", "coworkers", _]) => {
                self.by_id(&segs[3], |d, id| d.coworkers.get(&id).map(|c| c.to_json(true)))
            }
            ("GET", ["billing", "coworkertimepasses"]) => self.list_passes(&query),
            ("GET", ["billing", "coworkertimepasses", _]) => {
                self.by_id(&segs[3], |d, id| d.passes.get(&id).map(|p| p.to_json(d)))
            }
            ("GET", ["billing", "timepasses"]) => {
                let d = lock(&self.data);
                paged(&query, d.time_passes.values().map(TimePass::to_json).collect())
            }
            ("GET", ["billing", "timepasses", _]) => {
                self.by_id(&segs[3], |d, id| d.time_passes.get(&id).map(TimePass::to_json))
            }
            _ => self.no_resource(),
        }
    }

    fn no_resource(&self) -> Response {
        message(StatusCode::NOT_FOUND, "No HTTP resource was found that matches the request URI.")
    }

    async fn token(&self, headers: &HeaderMap, body: Body) -> Response {
        lock(&self.data).token_requests += 1;
        if is_json(headers) {
            return oauth_error("unsupported_grant_type", "The grant type is not supported.");
        }
        let Some(bytes) = body_bytes(body).await else {
            return oauth_error("invalid_request", "Unreadable body.");
        };
        let form = parse_form(&String::from_utf8_lossy(&bytes));
        let mut d = lock(&self.data);
        match param(&form, "grant_type") {
            Some("password") => {
                if param(&form, "username") != Some(self.cfg.username.as_str())
                    || param(&form, "password") != Some(self.cfg.password.as_str())
                {
                    return oauth_error("invalid_grant", "The user name or password is incorrect.");
                }
            }
            Some("refresh_token") => {
                let presented = param(&form, "refresh_token").unwrap_or_default();
                let valid = d.refresh_tokens.remove(presented).is_some_and(|exp| exp > Instant::now());
                if !valid {
                    return oauth_error("invalid_grant", "The refresh token is invalid.");
                }
            }
            _ => return oauth_error("unsupported_grant_type", "The grant type is not supported."),
        }
        let access = uuid::Uuid::new_v4().simple().to_string();
        let refresh = uuid::Uuid::new_v4().simple().to_string();
        let now = Instant::now();
        d.access_tokens.insert(access.clone(), now + ACCESS_TTL);
        d.refresh_tokens.insert(refresh.clone(), now + REFRESH_TTL);
        json(
            StatusCode::OK,
            json!({
                "access_token": access,
                "token_type": "bearer",
                "expires_in": ACCESS_TTL.as_secs(),
                "refresh_token": refresh,
            }),
        )
    }

    /// Bearer token, or HTTP Basic with the admin credentials (Nexudus accepts both).
    fn authorized(&self, headers: &HeaderMap) -> bool {
        if let Some(token) = bearer(headers) {
            return lock(&self.data).access_tokens.get(token).is_some_and(|exp| *exp > Instant::now());
        }
        let basic = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, b64)| base64::engine::general_purpose::STANDARD.decode(b64.trim()).ok())
            .and_then(|raw| String::from_utf8(raw).ok());
        basic.is_some_and(|creds| creds == format!("{}:{}", self.cfg.username, self.cfg.password))
    }

    fn by_id(&self, raw_id: &str, find: impl FnOnce(&Data, i64) -> Option<Value>) -> Response {
        let Ok(id) = raw_id.parse::<i64>() else {
            return bad_request("The request is invalid.");
        };
        let d = lock(&self.data);
        match find(&d, id) {
            Some(v) => json(StatusCode::OK, v),
            None => server_error(),
        }
    }

    fn list_coworkers(&self, query: &Query) -> Response {
        let (from, to) = match updated_range(query, "Coworker") {
            Ok(r) => r,
            Err(e) => return bad_request(&e),
        };
        let email = param(query, "Coworker_Email").map(str::to_lowercase);
        let d = lock(&self.data);
        let records = d
            .coworkers
            .values()
            .filter(|c| email.as_ref().is_none_or(|e| c.email.to_lowercase() == *e))
            .filter(|c| from.is_none_or(|f| c.updated_on >= f) && to.is_none_or(|t| c.updated_on <= t))
            .map(|c| c.to_json(false))
            .collect();
        paged(query, records)
    }

    fn list_passes(&self, query: &Query) -> Response {
        let coworker = match param(query, "CoworkerTimePass_Coworker").map(str::parse::<i64>).transpose() {
            Ok(c) => c,
            Err(_) => return bad_request("CoworkerTimePass_Coworker must be an integer."),
        };
        let used = match param(query, "CoworkerTimePass_Used").map(|v| v.to_ascii_lowercase()) {
            None => None,
            Some(v) if v == "true" => Some(true),
            Some(v) if v == "false" => Some(false),
            Some(_) => return bad_request("CoworkerTimePass_Used must be true or false."),
        };
        let (from, to) = match updated_range(query, "CoworkerTimePass") {
            Ok(r) => r,
            Err(e) => return bad_request(&e),
        };
        let d = lock(&self.data);
        let records = d
            .passes
            .values()
            .filter(|p| coworker.is_none_or(|c| p.coworker_id == c))
            .filter(|p| used.is_none_or(|u| p.used == u))
            .filter(|p| from.is_none_or(|f| p.updated_on >= f) && to.is_none_or(|t| p.updated_on <= t))
            .map(|p| p.to_json(&d))
            .collect();
        paged(query, records)
    }

    fn dump(&self) -> Value {
        let d = lock(&self.data);
        json!({
            "now": iso(&d.now),
            "coworkers": d.coworkers.values().map(|c| c.to_json(true)).collect::<Vec<_>>(),
            "timePasses": d.time_passes.values().map(TimePass::to_json).collect::<Vec<_>>(),
            "coworkerTimePasses": d.passes.values().map(|p| p.to_json(&d)).collect::<Vec<_>>(),
            "tokenRequests": d.token_requests,
            "throttled": self.core.faults().throttled_count(),
        })
    }
}

/// `from_{Entity}_UpdatedOn` / `to_{Entity}_UpdatedOn` (format `YYYY-MM-DDTHH:mm`), the
/// filters an incremental sync uses.
type Range = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

fn updated_range(query: &Query, entity: &str) -> Result<Range, String> {
    let bound = |prefix: &str| {
        let key = format!("{prefix}_{entity}_UpdatedOn");
        param(query, &key).map(|v| parse_time(v).ok_or_else(|| format!("{key} is not a date."))).transpose()
    };
    Ok((bound("from")?, bound("to")?))
}

/// The Nexudus list envelope around one page of `records` (`page` from 1, `size` default 25).
fn paged(query: &Query, records: Vec<Value>) -> Response {
    let number = |key: &str, default: usize| -> Result<usize, String> {
        match param(query, key) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{key} must be a positive integer.")),
        }
    };
    let (page, size) = match (number("page", 1), number("size", 25)) {
        (Ok(p), Ok(s)) => (p, s),
        (Err(e), _) | (_, Err(e)) => return bad_request(&e),
    };
    let total = records.len();
    let total_pages = total.div_ceil(size);
    let start = (page - 1).saturating_mul(size);
    let page_records: Vec<Value> = records.into_iter().skip(start).take(size).collect();
    let (first, last) = match page_records.len() {
        0 => (0, 0),
        n => (start + 1, start + n),
    };
    json(
        StatusCode::OK,
        json!({
            "Records": page_records,
            "CurrentPage": page,
            "CurrentPageSize": size,
            "CurrentOrderField": "Id",
            "CurrentSortDirection": 1,
            "FirstItem": first,
            "LastItem": last,
            "TotalItems": total,
            "TotalPages": total_pages,
            "HasNextPage": page < total_pages,
            "HasPreviousPage": page > 1,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use reqwest::Client;

    async fn login(sim: &NexudusSim, http: &Client) -> Value {
        let cfg = sim.config();
        let resp = http
            .post(format!("{}/token", sim.base_url()))
            .form(&[
                ("grant_type", "password"),
                ("username", cfg.username.as_str()),
                ("password", cfg.password.as_str()),
            ])
            .send()
            .await
            .expect("token call");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("token json")
    }

    async fn get(http: &Client, url: &str, tok: &str) -> (u16, Value) {
        let resp = http.get(url).bearer_auth(tok).send().await.expect("get");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).single().expect("valid time")
    }

    #[test]
    fn signature_matches_the_reference_vector() {
        let body = r#"[{"Id":42,"FullName":"Anna Müller"}]"#.as_bytes();
        assert_eq!(
            sign_ascii("nx-secret", body),
            "258D54477E644C7C3DAB0FE1A8FA77CE2F7A7421D3E05CEA1C448F300E664197"
        );
        assert_eq!(
            sign_utf8("nx-secret", body),
            "A265F3FA5688420F8A6DA25C9C6E470E0C96A9391B467F3D1967ABA009EDABEF"
        );
    }

    #[tokio::test]
    async fn token_grants_refresh_and_auth() {
        let sim = NexudusSim::start(NexudusSimConfig::default()).await;
        sim.add_coworker(1, "Ann", "ann@x.com");
        let http = Client::new();
        let token_url = format!("{}/token", sim.base_url());
        let me = format!("{}/spaces/coworkers/1", sim.base_url());

        let resp = http.post(&token_url).json(&json!({"grant_type": "password"})).send().await.expect("call");
        assert_eq!(resp.status(), 400);
        assert_eq!(resp.json::<Value>().await.expect("json")["error"], "unsupported_grant_type");
        let resp = http
            .post(&token_url)
            .form(&[("grant_type", "password"), ("username", "x"), ("password", "y")])
            .send()
            .await
            .expect("call");
        assert_eq!(resp.json::<Value>().await.expect("json")["error"], "invalid_grant");

        assert_eq!(http.get(&me).send().await.expect("call").status(), 401);
        let pair = login(&sim, &http).await;
        assert_eq!(pair["token_type"], "bearer");
        assert_eq!(pair["expires_in"], 604_799);
        let access = pair["access_token"].as_str().expect("access");
        let (status, dto) = get(&http, &me, access).await;
        assert_eq!(status, 200);
        assert_eq!(dto["Email"], "ann@x.com");
        assert_eq!(dto["Teams"], json!([]));

        sim.expire_tokens();
        assert_eq!(get(&http, &me, access).await.0, 401);
        let refresh = pair["refresh_token"].as_str().expect("refresh");
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
        let resp = http.post(&token_url).form(&form).send().await.expect("call");
        assert_eq!(resp.status(), 200);
        let fresh: Value = resp.json().await.expect("json");
        let fresh_access = fresh["access_token"].as_str().expect("access");
        assert_eq!(get(&http, &me, fresh_access).await.0, 200);
        let reused = http.post(&token_url).form(&form).send().await.expect("call");
        assert_eq!(reused.status(), 400, "the old refresh token is spent");

        let cfg = sim.config();
        let basic = http.get(&me).basic_auth(&cfg.username, Some(&cfg.password)).send().await.expect("call");
        assert_eq!(basic.status(), 200);
        assert_eq!(sim.token_requests(), 5);
    }

    #[tokio::test]
    async fn paging_filters_and_deleted_ids() {
        let sim = NexudusSim::start(NexudusSimConfig::default()).await;
        sim.set_now(at(8));
        for id in 1..=30 {
            sim.add_coworker(id, &format!("Member {id}"), &format!("m{id}@x.com"));
        }
        sim.set_now(at(10));
        sim.update_coworker_email(7, "seven@x.com");
        let http = Client::new();
        let tok = login(&sim, &http).await["access_token"].as_str().expect("tok").to_owned();
        let base = sim.base_url();

        let (_, first) = get(&http, &format!("{base}/spaces/coworkers"), &tok).await;
        assert_eq!(first["Records"].as_array().map(Vec::len), Some(25));
        assert_eq!((first["TotalItems"].as_u64(), first["TotalPages"].as_u64()), (Some(30), Some(2)));
        assert_eq!(first["HasNextPage"], true);
        assert!(first["Records"][0].get("Teams").is_none(), "lists omit collections");
        let (_, second) = get(&http, &format!("{base}/spaces/coworkers?page=2&size=25"), &tok).await;
        assert_eq!(second["Records"].as_array().map(Vec::len), Some(5));
        assert_eq!((second["FirstItem"].as_u64(), second["LastItem"].as_u64()), (Some(26), Some(30)));
        assert_eq!(
            (second["HasNextPage"].as_bool(), second["HasPreviousPage"].as_bool()),
            (Some(false), Some(true))
        );
        assert_eq!(get(&http, &format!("{base}/spaces/coworkers?page=zero"), &tok).await.0, 400);

        let (_, by_mail) =
            get(&http, &format!("{base}/spaces/coworkers?Coworker_Email=SEVEN@x.com"), &tok).await;
        assert_eq!(by_mail["Records"][0]["Id"], 7);
        assert_eq!(by_mail["Records"][0]["UpdatedOn"], "2026-12-01T10:00:00Z");
        let url = format!("{base}/spaces/coworkers?from_Coworker_UpdatedOn=2026-12-01T09:00");
        assert_eq!(get(&http, &url, &tok).await.1["TotalItems"], 1);

        sim.add_time_pass(9, "Day pass");
        let p1 = sim.give_pass(7, 9, Some(at(20)));
        let p2 = sim.give_pass(7, 9, None);
        sim.give_pass(8, 9, None);
        sim.set_now(at(12));
        sim.set_pass_used(p2);
        let url = format!(
            "{base}/billing/coworkertimepasses?CoworkerTimePass_Coworker=7&CoworkerTimePass_Used=false"
        );
        let (_, unused) = get(&http, &url, &tok).await;
        assert_eq!(unused["TotalItems"], 1);
        assert_eq!(unused["Records"][0]["Id"], p1);
        assert_eq!(unused["Records"][0]["ExpireDate"], "2026-12-01T20:00:00Z");
        assert_eq!(unused["Records"][0]["TimePassName"], "Day pass");
        let (_, used) = get(&http, &format!("{base}/billing/coworkertimepasses/{p2}"), &tok).await;
        assert_eq!(
            (used["Used"].as_bool(), used["UsedDate"].as_str()),
            (Some(true), Some("2026-12-01T12:00:00Z"))
        );
        assert_eq!(used, sim.pass_dto(p2));
        let (_, defs) = get(&http, &format!("{base}/billing/timepasses"), &tok).await;
        assert_eq!(defs["Records"][0]["Name"], "Day pass");

        sim.remove_pass(p1);
        assert_eq!(get(&http, &format!("{base}/billing/coworkertimepasses/{p1}"), &tok).await.0, 500);
        sim.delete_coworker(7);
        let (status, e) = get(&http, &format!("{base}/spaces/coworkers/7"), &tok).await;
        assert_eq!(status, 500);
        assert!(e["Message"].is_string());
        assert_eq!(get(&http, &format!("{base}/spaces/coworkers/abc"), &tok).await.0, 400);
        assert_eq!(sim.count("GET", "/spaces/coworkers/7"), 1);
    }

    #[tokio::test]
    async fn throttles_with_409_and_retry_after() {
        let sim = NexudusSim::start(NexudusSimConfig::default()).await;
        let http = Client::new();
        let tok = login(&sim, &http).await["access_token"].as_str().expect("tok").to_owned();
        let url = format!("{}/spaces/coworkers", sim.base_url());
        sim.faults().set_rate_limit(Some(1.0));
        assert_eq!(get(&http, &url, &tok).await.0, 200);
        let resp = http.get(&url).bearer_auth(&tok).send().await.expect("call");
        assert_eq!(resp.status(), 409);
        assert_eq!(resp.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1"));
        assert_eq!(sim.faults().throttled_count(), 1);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(get(&http, &url, &tok).await.0, 200);

        sim.faults().set_rate_limit(None);
        sim.faults().set_fail_rate(1.0, vec![502]);
        assert_eq!(get(&http, &url, &tok).await.0, 502);
        sim.faults().clear();
        assert_eq!(get(&http, &url, &tok).await.0, 200);
        assert_eq!(sim.faults().throttled_count(), 1);
    }

    #[tokio::test]
    async fn webhooks_are_signed_and_delivered() {
        let sim = NexudusSim::start(NexudusSimConfig::default()).await;
        sim.add_coworker(42, "Anna Müller", "anna@x.com");
        let hook = sim.webhook("CoworkerUpdate", &sim.coworker_dto(42));
        let parsed: Value = serde_json::from_slice(&hook.body).expect("json body");
        assert_eq!(parsed[0]["FullName"], "Anna Müller");
        let sig =
            hook.headers.iter().find(|(k, _)| k == SIGNATURE_HEADER).map(|(_, v)| v.clone()).expect("signed");
        assert_eq!(sig, sign_ascii("nx-secret", &hook.body));
        assert_ne!(sig, sign_utf8("nx-secret", &hook.body));

        // A receiver that checks what arrived on the wire.
        type Seen = Arc<Mutex<Option<(String, Vec<u8>)>>>;
        let seen: Seen = Arc::default();
        let store = seen.clone();
        let receiver = Router::new().fallback(move |req: Request| {
            let store = store.clone();
            async move {
                let sig = req
                    .headers()
                    .get(SIGNATURE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned();
                let body = body_bytes(req.into_body()).await.unwrap_or_default().to_vec();
                *lock(&store) = Some((sig, body));
                StatusCode::ACCEPTED
            }
        });
        let server = Server::start(receiver).await;
        let status = sim.deliver(&format!("{}/hooks/nexudus", server.origin()), &hook).await;
        assert_eq!(status, 202);
        let (wire_sig, wire_body) = lock(&seen).clone().expect("delivered");
        assert_eq!(wire_body, hook.body);
        assert_eq!(wire_sig, sig);

        let unsigned =
            NexudusSim::start(NexudusSimConfig { webhook_secret: None, ..NexudusSimConfig::default() }).await;
        let hook = unsigned.webhook("CoworkerDelete", &json!({"Id": 1}));
        assert!(hook.headers.iter().all(|(k, _)| k != SIGNATURE_HEADER));
        assert_eq!(hook.body, br#"[{"Id":1}]"#);
        assert_eq!(unsigned.deliver("http://127.0.0.1:1/closed", &hook).await, 0);
    }
}
