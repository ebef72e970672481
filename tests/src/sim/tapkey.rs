//! Tapkey Access Management Web API simulator (reference: lock-providers.md §1).
//!
//! Speaks `POST /connect/token` (client credentials) and `/api/v1/Owners/{oid}/…` with bare-array
//! collections, OData `$filter`/`$top`/`$skip`, and `{"ErrorCode","Message"}` errors. It copies
//! the behaviours a sync must cope with: duplicate grant → 409 `Duplicate`, revoking twice →
//! 409 `Conflict`, 402 when the subscription is insufficient, and grants on inactive or unbound
//! locks accepted without complaint. Two knobs model what the documentation leaves open: a
//! strict server refusing `$filter` on `identifier`/`contactId`/`boundLockId` (undocumented,
//! audit T4/T6) and `Duplicate` under another status than 409 (undocumented, audit T8).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use base64::Engine;
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Call, Core, FaultHandle, Profile, Route, Server, bearer, body_bytes, is_json, iso, iso_opt, json, lock,
    param, parse_form, parse_time, segments,
};

const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// Who the simulated client is and which owner account it co-administers.
#[derive(Debug, Clone)]
pub struct TapkeySimConfig {
    pub owner_account_id: String,
    pub client_id: String,
    pub client_secret: String,
}

impl Default for TapkeySimConfig {
    fn default() -> Self {
        Self {
            owner_account_id: "owner-sim-1".into(),
            client_id: "portier-sim".into(),
            client_secret: "tapkey-sim-secret".into(),
        }
    }
}

/// A grant as stored by the simulator (revoked ones included).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimGrant {
    pub id: String,
    pub bound_lock_id: String,
    pub contact_id: String,
    pub valid_from: Option<DateTime<Utc>>,
    pub valid_before: Option<DateTime<Utc>>,
    pub active: bool,
}

/// A contact as stored by the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimContact {
    pub id: String,
    pub identifier: String,
}

/// Every route this simulator answers, with its source; anything else is 404 as at Tapkey.
pub const ROUTES: &[Route] = &[
    Route::new(
        "POST",
        "/connect/token",
        "tapkey/tapkey-api-samples-dotnet src/HowTo/HowToWebApiClientCredentials/Authentication.cs",
    ),
    Route::new("GET", "/api/v1/Owners", "developers.tapkey.io/api/owner-accounts (GET /Owners)"),
    Route::new("GET", "/api/v1/Owners/{ownerAccountId}/BoundLocks", "developers.tapkey.io/api/bound-locks/"),
    Route::new(
        "GET",
        "/api/v1/Owners/{ownerAccountId}/BoundLocks/{id}",
        "developers.tapkey.io/api/bound-locks/",
    ),
    Route::new("GET", "/api/v1/Owners/{ownerAccountId}/Contacts", "developers.tapkey.io/api/contacts/"),
    Route::new("PUT", "/api/v1/Owners/{ownerAccountId}/Contacts", "developers.tapkey.io/api/contacts/"),
    Route::new("GET", "/api/v1/Owners/{ownerAccountId}/Contacts/{id}", "developers.tapkey.io/api/contacts/"),
    Route::new(
        "GET",
        "/api/v1/Owners/{ownerAccountId}/Grants",
        "developers.tapkey.io/api/grants/; tapkey-api-samples-java SampleTapkeyManagementService.java",
    ),
    Route::new(
        "PUT",
        "/api/v1/Owners/{ownerAccountId}/Grants",
        "developers.tapkey.io/api/grants/; tapkey-api-samples-dotnet Models/Grant.cs",
    ),
    Route::new("GET", "/api/v1/Owners/{ownerAccountId}/Grants/{id}", "developers.tapkey.io/api/grants/"),
    Route::new(
        "POST",
        "/api/v1/Owners/{ownerAccountId}/Grants/{id}/Revoke",
        "developers.tapkey.io/mobile/concepts/revoking_access",
    ),
];

/// A running Tapkey simulator; stops when dropped.
pub struct TapkeySim {
    server: Server,
    inner: Arc<Inner>,
}

struct Inner {
    cfg: TapkeySimConfig,
    core: Core,
    data: Mutex<Data>,
}

#[derive(Default)]
struct Data {
    locks: Vec<BoundLock>,
    contacts: Vec<Contact>,
    grants: Vec<Grant>,
    tokens: HashMap<String, Instant>,
    token_requests: usize,
    payment_required: bool,
    /// Refuse (400) `$filter`s on fields the documentation does not show filtering on.
    strict_filters: bool,
    /// The status `Duplicate` answers carry (409 unless set).
    duplicate_status: Option<StatusCode>,
}

/// Fields Portier filters on that developers.tapkey.io never shows in a `$filter`.
const UNDOCUMENTED_FILTER_FIELDS: &[&str] = &["identifier", "contactid", "boundlockid"];

struct BoundLock {
    id: String,
    physical_lock_id: String,
    title: String,
    active: bool,
    bind_date: DateTime<Utc>,
    unbind_date: Option<DateTime<Utc>>,
}

struct Contact {
    id: String,
    identifier: String,
    title: Option<String>,
}

struct Grant {
    id: String,
    bound_lock_id: String,
    contact_id: String,
    valid_from: Option<DateTime<Utc>>,
    valid_before: Option<DateTime<Utc>>,
    time_restriction_ical: Option<String>,
    revoked: bool,
}

impl TapkeySim {
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

    /// Starts a fresh simulator on its own loopback port with no locks, contacts or grants.
    pub async fn start(cfg: TapkeySimConfig) -> Self {
        let inner = Arc::new(Inner {
            cfg,
            core: Core::new(Profile {
                token_path: "/connect/token",
                throttle_status: StatusCode::TOO_MANY_REQUESTS,
                error_body: |status, message| {
                    let code: String =
                        status.canonical_reason().unwrap_or("Error").split_whitespace().collect();
                    json!({ "ErrorCode": code, "Message": message })
                },
                throttle_html: None,
            }),
            data: Mutex::default(),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        Self { server: Server::start(router).await, inner }
    }

    /// `http://127.0.0.1:PORT/api/v1`
    pub fn base_url(&self) -> String {
        format!("{}/api/v1", self.server.origin())
    }

    /// `http://127.0.0.1:PORT/connect/token`
    pub fn token_url(&self) -> String {
        format!("{}/connect/token", self.server.origin())
    }

    pub fn config(&self) -> &TapkeySimConfig {
        &self.inner.cfg
    }

    /// Portier's client configuration for this simulator.
    pub fn client_config(&self) -> shared::providers::tapkey::TapkeyConfig {
        let c = &self.inner.cfg;
        shared::providers::tapkey::TapkeyConfig {
            base_url: self.base_url(),
            token_url: self.token_url(),
            owner_account_id: c.owner_account_id.clone(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone().into(),
        }
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }

    /// Requests to the token endpoint, successful or not.
    pub fn token_requests(&self) -> usize {
        lock(&self.inner.data).token_requests
    }

    /// Tokens currently valid (access and refresh), for tests asserting they never leak.
    pub fn issued_tokens(&self) -> Vec<String> {
        lock(&self.inner.data).tokens.keys().cloned().collect()
    }

    /// Invalidates every issued token, so the next API call answers 401 and the client must
    /// fetch a new one.
    pub fn expire_tokens(&self) {
        lock(&self.inner.data).tokens.clear();
    }

    /// When set, grant creation answers 402 `PaymentRequired`.
    pub fn set_payment_required(&self, on: bool) {
        lock(&self.inner.data).payment_required = on;
    }

    /// When set, a `$filter` on `identifier`, `contactId` or `boundLockId` answers 400, like a
    /// server that supports only the documented filters (`active`, `id`) might.
    pub fn set_strict_filters(&self, on: bool) {
        lock(&self.inner.data).strict_filters = on;
    }

    /// Answers `Duplicate` (contacts and grants) with this status instead of 409.
    pub fn set_duplicate_status(&self, status: u16) {
        lock(&self.inner.data).duplicate_status = StatusCode::from_u16(status).ok();
    }

    /// Binds a lock (or rebinds and updates one with the same id).
    pub fn add_lock(&self, id: &str, title: &str, active: bool) {
        let mut d = lock(&self.inner.data);
        d.locks.retain(|l| l.id != id);
        d.locks.push(BoundLock {
            id: id.to_owned(),
            physical_lock_id: base64::engine::general_purpose::STANDARD.encode(format!("sim:{id}")),
            title: title.to_owned(),
            active,
            bind_date: Utc::now(),
            unbind_date: None,
        });
    }

    /// Models licence activation/deactivation. Panics on an unknown lock (a test bug).
    pub fn set_lock_active(&self, id: &str, active: bool) {
        self.with_lock(id, |l| l.active = active);
    }

    /// Sets `unbindDate`; the lock stays listed and `active` is left alone, so a client has to
    /// check both fields. Panics on an unknown lock (a test bug).
    pub fn unbind_lock(&self, id: &str) {
        self.with_lock(id, |l| l.unbind_date = Some(Utc::now()));
    }

    fn with_lock(&self, id: &str, f: impl FnOnce(&mut BoundLock)) {
        let mut d = lock(&self.inner.data);
        let l = d.locks.iter_mut().find(|l| l.id == id);
        f(l.unwrap_or_else(|| panic!("TapkeySim has no lock {id}")));
    }

    /// All grants, revoked ones included, in creation order.
    pub fn grants(&self) -> Vec<SimGrant> {
        lock(&self.inner.data).grants.iter().map(Grant::to_sim).collect()
    }

    pub fn active_grants(&self) -> Vec<SimGrant> {
        self.grants().into_iter().filter(|g| g.active).collect()
    }

    /// Who holds an active grant (the contacts' identifiers), sorted, once per grant.
    pub fn active_holders(&self) -> Vec<String> {
        let contacts = self.contacts();
        let mut holders: Vec<String> = self
            .active_grants()
            .iter()
            .filter_map(|g| contacts.iter().find(|c| c.id == g.contact_id).map(|c| c.identifier.clone()))
            .collect();
        holders.sort();
        holders
    }

    pub fn contacts(&self) -> Vec<SimContact> {
        lock(&self.inner.data)
            .contacts
            .iter()
            .map(|c| SimContact { id: c.id.clone(), identifier: c.identifier.clone() })
            .collect()
    }

    /// A grant someone made in the Tapkey app, bypassing Portier (drift). Creates the contact
    /// if needed; does not check the lock. Returns the grant id.
    pub fn add_grant_by_hand(
        &self,
        contact_identifier: &str,
        bound_lock_id: &str,
        valid_from: Option<DateTime<Utc>>,
        valid_before: Option<DateTime<Utc>>,
    ) -> String {
        let mut d = lock(&self.inner.data);
        let contact_id = d.ensure_contact(contact_identifier);
        d.add_grant(bound_lock_id, &contact_id, valid_from, valid_before, None)
    }

    /// Revokes a grant behind Portier's back. Panics on an unknown grant (a test bug).
    pub fn revoke_by_hand(&self, grant_id: &str) {
        let mut d = lock(&self.inner.data);
        let g = d.grants.iter_mut().find(|g| g.id == grant_id);
        g.unwrap_or_else(|| panic!("TapkeySim has no grant {grant_id}")).revoked = true;
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
}

impl Data {
    /// The fields `$filter` accepts: all the simulator knows, or only documented ones.
    fn filter_fields<'a>(&self, fields: &[&'a str]) -> Vec<&'a str> {
        fields
            .iter()
            .copied()
            .filter(|f| !self.strict_filters || !UNDOCUMENTED_FILTER_FIELDS.contains(f))
            .collect()
    }

    fn duplicate(&self) -> StatusCode {
        self.duplicate_status.unwrap_or(StatusCode::CONFLICT)
    }

    fn contact(&self, id: &str) -> Option<&Contact> {
        self.contacts.iter().find(|c| c.id.eq_ignore_ascii_case(id))
    }

    fn contact_by_identifier(&self, identifier: &str) -> Option<&Contact> {
        let wanted = identifier.trim().to_lowercase();
        self.contacts.iter().find(|c| c.identifier.to_lowercase() == wanted)
    }

    fn ensure_contact(&mut self, identifier: &str) -> String {
        if let Some(c) = self.contact_by_identifier(identifier) {
            return c.id.clone();
        }
        let id = uuid::Uuid::new_v4().to_string();
        self.contacts.push(Contact { id: id.clone(), identifier: identifier.trim().to_owned(), title: None });
        id
    }

    fn add_grant(
        &mut self,
        bound_lock_id: &str,
        contact_id: &str,
        valid_from: Option<DateTime<Utc>>,
        valid_before: Option<DateTime<Utc>>,
        time_restriction_ical: Option<String>,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.grants.push(Grant {
            id: id.clone(),
            bound_lock_id: bound_lock_id.to_owned(),
            contact_id: contact_id.to_owned(),
            valid_from,
            valid_before,
            time_restriction_ical,
            revoked: false,
        });
        id
    }
}

impl BoundLock {
    fn to_json(&self, owner: &str) -> Value {
        json!({
            "id": self.id,
            "physicalLockId": self.physical_lock_id,
            "lockTypeId": "TKSIM",
            "ownerAccountId": owner,
            "title": self.title,
            "description": null,
            "bindDate": iso(&self.bind_date),
            "unbindDate": iso_opt(&self.unbind_date),
            "active": self.active,
            "targetType": "Lock",
        })
    }

    fn field(&self, name: &str) -> Lit {
        match name {
            "id" => Lit::Str(self.id.clone()),
            "title" => Lit::Str(self.title.clone()),
            "active" => Lit::Bool(self.active),
            _ => Lit::Null,
        }
    }
}
const LOCK_FIELDS: &[&str] = &["id", "title", "active"];

impl Contact {
    fn to_json(&self) -> Value {
        json!({
            "id": self.id,
            "ipId": "tapkey",
            "identifier": self.identifier,
            "email": self.identifier,
            "title": self.title,
        })
    }

    fn field(&self, name: &str) -> Lit {
        match name {
            "id" => Lit::Str(self.id.clone()),
            "identifier" | "email" => Lit::Str(self.identifier.clone()),
            "ipid" => Lit::Str("tapkey".into()),
            _ => Lit::Null,
        }
    }
}
const CONTACT_FIELDS: &[&str] = &["id", "identifier", "email", "ipid"];

impl Grant {
    fn state(&self) -> &'static str {
        if self.revoked { "Revoked" } else { "Ok" }
    }

    fn to_json(&self, contact: Option<&Contact>) -> Value {
        let mut v = json!({
            "id": self.id,
            "boundLockId": self.bound_lock_id,
            "contactId": self.contact_id,
            "boundCardId": null,
            "validFrom": iso_opt(&self.valid_from),
            "validBefore": iso_opt(&self.valid_before),
            "timeRestrictionIcal": self.time_restriction_ical,
            "state": self.state(),
            "active": !self.revoked,
        });
        if let (Some(c), Some(obj)) = (contact, v.as_object_mut()) {
            obj.insert("contact".into(), json!({ "id": c.id, "identifier": c.identifier }));
        }
        v
    }

    fn field(&self, name: &str) -> Lit {
        match name {
            "id" => Lit::Str(self.id.clone()),
            "contactid" => Lit::Str(self.contact_id.clone()),
            "boundlockid" => Lit::Str(self.bound_lock_id.clone()),
            "state" => Lit::Str(self.state().into()),
            "active" => Lit::Bool(!self.revoked),
            _ => Lit::Null,
        }
    }

    fn to_sim(&self) -> SimGrant {
        SimGrant {
            id: self.id.clone(),
            bound_lock_id: self.bound_lock_id.clone(),
            contact_id: self.contact_id.clone(),
            valid_from: self.valid_from,
            valid_before: self.valid_before,
            active: !self.revoked,
        }
    }
}
const GRANT_FIELDS: &[&str] = &["id", "contactid", "boundlockid", "state", "active"];

/// A Tapkey error with a specific `ErrorCode` (the profile's body derives it from the status).
fn err(status: StatusCode, code: &str, message: &str) -> Response {
    json(status, json!({ "ErrorCode": code, "Message": message }))
}

fn bad_request(message: &str) -> Response {
    err(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn not_found(what: &str, id: &str) -> Response {
    err(StatusCode::NOT_FOUND, "NotFound", &format!("{what} '{id}' not found"))
}

fn oauth_error(code: &str) -> Response {
    json(StatusCode::BAD_REQUEST, json!({ "error": code }))
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    inner.core.run(req, |req| inner.route(req)).await
}

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
            ("POST", ["connect", "token"]) => return self.token(&parts.headers, body).await,
            (_, ["api", "v1", ..]) => {}
            _ => return not_found("Resource", parts.uri.path()),
        }
        if !self.authorized(&parts.headers) {
            let mut resp =
                err(StatusCode::UNAUTHORIZED, "Unauthorized", "Missing, unknown or expired access token");
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer error=\"invalid_token\""));
            return resp;
        }
        let (rest, ids) = (&lower[2..], &segs[2..]);
        if rest.len() > 1 && rest[0] == "owners" && !ids[1].eq_ignore_ascii_case(&self.cfg.owner_account_id) {
            return err(
                StatusCode::FORBIDDEN,
                "Forbidden",
                "The client is not a co-administrator of this owner account",
            );
        }
        // Each route's source is in [`ROUTES`]; `route_table.rs` checks they agree.
        match (method, rest) {
            ("GET", ["owners"]) => json(
                StatusCode::OK,
                json!([{ "id": self.cfg.owner_account_id, "name": "Simulated owner account" }]),
            ),
            ("GET", ["owners", _, "boundlocks"]) => self.list_locks(&query),
            ("GET", ["owners", _, "boundlocks", _]) => self.get_lock(&ids[3]),
            ("GET", ["owners", _, "contacts"]) => self.list_contacts(&query),
            ("PUT", ["owners", _, "contacts"]) => match body_json::<ContactBody>(body).await {
                Ok(b) => self.create_contact(b),
                Err(e) => bad_request(&e),
            },
            ("GET", ["owners", _, "contacts", _]) => self.get_contact(&ids[3]),
            ("GET", ["owners", _, "grants"]) => self.list_grants(&query),
            ("PUT", ["owners", _, "grants"]) => match body_json::<GrantBody>(body).await {
                Ok(b) => self.create_grant(b),
                Err(e) => bad_request(&e),
            },
            ("GET", ["owners", _, "grants", _]) => self.get_grant(&ids[3], &query),
            ("POST", ["owners", _, "grants", _, "revoke"]) => self.revoke(&ids[3], &query),
            _ => not_found("Resource", parts.uri.path()),
        }
    }

    async fn token(&self, headers: &HeaderMap, body: Body) -> Response {
        lock(&self.data).token_requests += 1;
        if is_json(headers) {
            return oauth_error("unsupported_grant_type");
        }
        let Some(bytes) = body_bytes(body).await else {
            return oauth_error("invalid_request");
        };
        if bytes.trim_ascii_start().starts_with(b"{") {
            return oauth_error("unsupported_grant_type");
        }
        let form = parse_form(&String::from_utf8_lossy(&bytes));
        if param(&form, "grant_type") != Some("client_credentials") {
            return oauth_error("unsupported_grant_type");
        }
        if param(&form, "client_id") != Some(self.cfg.client_id.as_str())
            || param(&form, "client_secret") != Some(self.cfg.client_secret.as_str())
        {
            return oauth_error("invalid_client");
        }
        // The real endpoint rejects a request without scopes.
        let Some(scope) = param(&form, "scope").filter(|s| !s.trim().is_empty()) else {
            return oauth_error("invalid_scope");
        };
        let token = uuid::Uuid::new_v4().simple().to_string();
        lock(&self.data).tokens.insert(token.clone(), Instant::now() + TOKEN_TTL);
        json(
            StatusCode::OK,
            json!({
                "access_token": token,
                "token_type": "Bearer",
                "expires_in": TOKEN_TTL.as_secs(),
                "scope": scope,
            }),
        )
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let Some(token) = bearer(headers) else { return false };
        lock(&self.data).tokens.get(token).is_some_and(|exp| *exp > Instant::now())
    }

    fn list_locks(&self, query: &[(String, String)]) -> Response {
        let d = lock(&self.data);
        let owner = &self.cfg.owner_account_id;
        collection(query, &d.filter_fields(LOCK_FIELDS), &d.locks, BoundLock::field, |l| l.to_json(owner))
    }

    fn get_lock(&self, id: &str) -> Response {
        let d = lock(&self.data);
        match d.locks.iter().find(|l| l.id.eq_ignore_ascii_case(id)) {
            Some(l) => json(StatusCode::OK, l.to_json(&self.cfg.owner_account_id)),
            None => not_found("BoundLock", id),
        }
    }

    fn list_contacts(&self, query: &[(String, String)]) -> Response {
        let d = lock(&self.data);
        collection(query, &d.filter_fields(CONTACT_FIELDS), &d.contacts, Contact::field, Contact::to_json)
    }

    fn get_contact(&self, id: &str) -> Response {
        match lock(&self.data).contact(id) {
            Some(c) => json(StatusCode::OK, c.to_json()),
            None => not_found("Contact", id),
        }
    }

    fn create_contact(&self, body: ContactBody) -> Response {
        if body.ip_user_id.is_some() {
            return bad_request("External identity providers are not simulated; use ipId 'tapkey'");
        }
        if body.ip_id.as_deref().is_some_and(|ip| !ip.eq_ignore_ascii_case("tapkey")) {
            return bad_request("Unknown ipId");
        }
        let identifier = match (body.identifier.as_deref(), body.email.as_deref()) {
            (Some(i), Some(e)) if !i.trim().eq_ignore_ascii_case(e.trim()) => {
                return bad_request("identifier and email differ");
            }
            (Some(i), _) | (None, Some(i)) => i.trim(),
            (None, None) => return bad_request("identifier is required"),
        };
        if !identifier.contains('@') {
            return bad_request("identifier must be an email address");
        }
        let mut d = lock(&self.data);
        if d.contact_by_identifier(identifier).is_some() {
            return err(d.duplicate(), "Duplicate", "A contact with this identifier already exists");
        }
        let id = d.ensure_contact(identifier);
        match d.contacts.iter_mut().find(|c| c.id == id) {
            Some(c) => {
                c.title = body.title;
                json(StatusCode::OK, c.to_json())
            }
            None => err(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "lost contact"),
        }
    }

    fn list_grants(&self, query: &[(String, String)]) -> Response {
        let expand = expands_contact(query);
        let d = lock(&self.data);
        collection(query, &d.filter_fields(GRANT_FIELDS), &d.grants, Grant::field, |g| {
            g.to_json(expand.then(|| d.contact(&g.contact_id)).flatten())
        })
    }

    fn get_grant(&self, id: &str, query: &[(String, String)]) -> Response {
        let expand = expands_contact(query);
        let d = lock(&self.data);
        match d.grants.iter().find(|g| g.id.eq_ignore_ascii_case(id)) {
            Some(g) => json(StatusCode::OK, g.to_json(expand.then(|| d.contact(&g.contact_id)).flatten())),
            None => not_found("Grant", id),
        }
    }

    fn create_grant(&self, body: GrantBody) -> Response {
        let Some(lock_id) = body.bound_lock_id.filter(|s| !s.trim().is_empty()) else {
            return bad_request("boundLockId is required");
        };
        let contact_ref = body.contact.unwrap_or_default();
        let by_id = body.contact_id.or(contact_ref.id);
        let by_identifier = contact_ref.identifier.or(contact_ref.email);
        if by_id.is_none() && by_identifier.is_none() {
            return bad_request("contactId or contact.identifier is required");
        }
        let valid_from = match opt_time(body.valid_from.as_deref(), "validFrom") {
            Ok(t) => t,
            Err(e) => return bad_request(&e),
        };
        let valid_before = match opt_time(body.valid_before.as_deref(), "validBefore") {
            Ok(t) => t,
            Err(e) => return bad_request(&e),
        };
        if let (Some(from), Some(before)) = (valid_from, valid_before)
            && before <= from
        {
            return bad_request("validBefore must be after validFrom");
        }

        let mut d = lock(&self.data);
        if d.payment_required {
            return err(StatusCode::PAYMENT_REQUIRED, "PaymentRequired", "Subscription insufficient");
        }
        // Grants on inactive or unbound locks are accepted, as by the real API.
        if !d.locks.iter().any(|l| l.id.eq_ignore_ascii_case(&lock_id)) {
            return not_found("BoundLock", &lock_id);
        }
        let contact_id = match (by_id, by_identifier) {
            (Some(id), _) => match d.contact(&id) {
                Some(c) => c.id.clone(),
                None => return not_found("Contact", &id),
            },
            (None, Some(identifier)) if identifier.contains('@') => d.ensure_contact(&identifier),
            (None, _) => return bad_request("contact.identifier must be an email address"),
        };
        let duplicate = d.grants.iter().any(|g| {
            !g.revoked
                && g.contact_id == contact_id
                && g.bound_lock_id.eq_ignore_ascii_case(&lock_id)
                && g.valid_from == valid_from
                && g.valid_before == valid_before
        });
        if duplicate {
            return err(d.duplicate(), "Duplicate", "An identical grant already exists");
        }
        let id = d.add_grant(&lock_id, &contact_id, valid_from, valid_before, body.time_restriction_ical);
        match d.grants.iter().find(|g| g.id == id) {
            Some(g) => json(StatusCode::OK, g.to_json(None)),
            None => err(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerError", "lost grant"),
        }
    }

    fn revoke(&self, id: &str, query: &[(String, String)]) -> Response {
        let dry_run = match param(query, "dryRun") {
            None => false,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "true" => true,
                "false" => false,
                _ => return bad_request("dryRun must be true or false"),
            },
        };
        let mut d = lock(&self.data);
        let Some(g) = d.grants.iter_mut().find(|g| g.id.eq_ignore_ascii_case(id)) else {
            return not_found("Grant", id);
        };
        if g.revoked {
            return err(StatusCode::CONFLICT, "Conflict", "The grant is already revoked");
        }
        if !dry_run {
            g.revoked = true;
        }
        json(StatusCode::OK, g.to_json(None))
    }

    fn dump(&self) -> Value {
        let d = lock(&self.data);
        let owner = &self.cfg.owner_account_id;
        json!({
            "ownerAccountId": owner,
            "locks": d.locks.iter().map(|l| l.to_json(owner)).collect::<Vec<_>>(),
            "contacts": d.contacts.iter().map(Contact::to_json).collect::<Vec<_>>(),
            "grants": d.grants.iter().map(|g| g.to_json(d.contact(&g.contact_id))).collect::<Vec<_>>(),
            "paymentRequired": d.payment_required,
            "tokenRequests": d.token_requests,
            "throttled": self.core.faults().throttled_count(),
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContactBody {
    ip_id: Option<String>,
    identifier: Option<String>,
    /// Deprecated alias of `identifier`, still accepted.
    email: Option<String>,
    ip_user_id: Option<String>,
    title: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantBody {
    bound_lock_id: Option<String>,
    contact_id: Option<String>,
    contact: Option<ContactRef>,
    valid_from: Option<String>,
    valid_before: Option<String>,
    time_restriction_ical: Option<String>,
}

#[derive(Deserialize, Default)]
struct ContactRef {
    id: Option<String>,
    identifier: Option<String>,
    email: Option<String>,
}

/// `$expand=contact` (the reference also shows `expand=` without the dollar).
fn expands_contact(query: &[(String, String)]) -> bool {
    ["$expand", "expand"]
        .iter()
        .filter_map(|k| param(query, k))
        .any(|e| e.split(',').any(|p| p.trim().eq_ignore_ascii_case("contact")))
}

async fn body_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, String> {
    let bytes = body_bytes(body).await.ok_or("Unreadable body")?;
    serde_json::from_slice(&bytes).map_err(|e| format!("Invalid JSON body: {e}"))
}

fn opt_time(value: Option<&str>, name: &str) -> Result<Option<DateTime<Utc>>, String> {
    match value {
        None => Ok(None),
        Some(s) => parse_time(s).map(Some).ok_or_else(|| format!("{name} is not an ISO-8601 date-time")),
    }
}

/// A bare-array collection answer with `$filter`, `$skip` and `$top` applied, in that order.
fn collection<T>(
    query: &[(String, String)],
    fields: &[&str],
    items: &[T],
    field: fn(&T, &str) -> Lit,
    to_json: impl Fn(&T) -> Value,
) -> Response {
    let filter = match param(query, "$filter").map(|f| Filter::parse(f, fields)).transpose() {
        Ok(f) => f,
        Err(e) => return bad_request(&format!("Invalid $filter: {e}")),
    };
    let number = |key: &str| -> Result<Option<usize>, String> {
        param(query, key)
            .map(|v| v.trim().parse::<usize>())
            .transpose()
            .map_err(|_| format!("{key} must be a non-negative integer"))
    };
    let (skip, top) = match (number("$skip"), number("$top")) {
        (Ok(skip), Ok(top)) => (skip.unwrap_or(0), top.unwrap_or(usize::MAX)),
        (Err(e), _) | (_, Err(e)) => return bad_request(&e),
    };
    let page: Vec<Value> = items
        .iter()
        .filter(|item| filter.as_ref().is_none_or(|f| f.matches(|name| field(item, name))))
        .skip(skip)
        .take(top)
        .map(to_json)
        .collect();
    json(StatusCode::OK, Value::Array(page))
}

#[derive(Debug, Clone, PartialEq)]
enum Lit {
    Str(String),
    Bool(bool),
    Null,
}

impl Lit {
    /// Strings compare case-insensitively: identifiers are emails and ids are GUIDs.
    fn equals(&self, other: &Lit) -> bool {
        match (self, other) {
            (Lit::Str(a), Lit::Str(b)) => a.to_lowercase() == b.to_lowercase(),
            (a, b) => a == b,
        }
    }
}

/// The OData `$filter` subset clients use: `field eq literal` clauses joined by `and`, groups
/// joined by `or` (no parentheses). Stored as OR of ANDs; field names lower-case.
#[derive(Debug)]
struct Filter(Vec<Vec<(String, Lit)>>);

enum Tok {
    Word(String),
    Str(String),
}

impl Filter {
    fn parse(text: &str, fields: &[&str]) -> Result<Self, String> {
        let mut toks = tokenize(text)?.into_iter();
        let mut groups: Vec<Vec<(String, Lit)>> = vec![Vec::new()];
        loop {
            let field = match toks.next() {
                Some(Tok::Word(w)) => w.to_ascii_lowercase(),
                _ => return Err("expected a field name".into()),
            };
            if !fields.contains(&field.as_str()) {
                return Err(format!("unsupported field '{field}'"));
            }
            match toks.next() {
                Some(Tok::Word(op)) if op.eq_ignore_ascii_case("eq") => {}
                _ => return Err("only 'eq' is supported".into()),
            }
            let literal = match toks.next() {
                Some(Tok::Str(s)) => Lit::Str(s),
                Some(Tok::Word(w)) => match w.to_ascii_lowercase().as_str() {
                    "true" => Lit::Bool(true),
                    "false" => Lit::Bool(false),
                    "null" => Lit::Null,
                    _ => return Err(format!("unsupported literal '{w}'")),
                },
                None => return Err("expected a literal".into()),
            };
            if let Some(group) = groups.last_mut() {
                group.push((field, literal));
            }
            match toks.next() {
                None => return Ok(Filter(groups)),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("and") => {}
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("or") => groups.push(Vec::new()),
                _ => return Err("expected 'and' or 'or'".into()),
            }
        }
    }

    fn matches(&self, field: impl Fn(&str) -> Lit) -> bool {
        self.0.iter().any(|group| group.iter().all(|(name, lit)| field(name).equals(lit)))
    }
}

fn tokenize(text: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars().peekable();
    while let Some(&c) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
        } else if c == '\'' {
            chars.next();
            let mut s = String::new();
            loop {
                match chars.next() {
                    None => return Err("unterminated string literal".into()),
                    // OData escapes a quote by doubling it.
                    Some('\'') if chars.peek() == Some(&'\'') => {
                        chars.next();
                        s.push('\'');
                    }
                    Some('\'') => break,
                    Some(ch) => s.push(ch),
                }
            }
            out.push(Tok::Str(s));
        } else if c.is_alphanumeric() || c == '_' || c == '.' || c == '-' {
            let mut w = String::new();
            while let Some(&ch) = chars.peek() {
                if ch.is_alphanumeric() || ch == '_' || ch == '.' || ch == '-' {
                    w.push(ch);
                    chars.next();
                } else {
                    break;
                }
            }
            out.push(Tok::Word(w));
        } else {
            return Err(format!("unsupported character '{c}'"));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Client;

    const SCOPE: &str = "read:owneraccounts read:core:entities write:core:entities read:grants write:grants";

    async fn sim() -> TapkeySim {
        let sim = TapkeySim::start(TapkeySimConfig::default()).await;
        sim.add_lock("lock-1", "Front door", true);
        sim.add_lock("lock-2", "Back door", false);
        sim
    }

    async fn token(sim: &TapkeySim, http: &Client) -> String {
        let cfg = sim.config();
        let resp = http
            .post(sim.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", cfg.client_id.as_str()),
                ("client_secret", cfg.client_secret.as_str()),
                ("scope", SCOPE),
            ])
            .send()
            .await
            .expect("token call");
        assert_eq!(resp.status(), 200);
        let body: Value = resp.json().await.expect("token json");
        assert_eq!(body["token_type"], "Bearer");
        assert_eq!(body["expires_in"], 3600);
        body["access_token"].as_str().expect("access_token").to_owned()
    }

    fn owner_url(sim: &TapkeySim, rest: &str) -> String {
        format!("{}/Owners/{}/{rest}", sim.base_url(), sim.config().owner_account_id)
    }

    async fn put(http: &Client, url: &str, tok: &str, body: Value) -> (u16, Value) {
        let resp = http.put(url).bearer_auth(tok).json(&body).send().await.expect("put");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    async fn get(http: &Client, url: &str, tok: &str) -> (u16, Value) {
        let resp = http.get(url).bearer_auth(tok).send().await.expect("get");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or(Value::Null))
    }

    #[test]
    fn filter_parses_the_clients_subset() {
        let f = Filter::parse("contactId eq 'a''b' and active eq true or id eq 'x'", GRANT_FIELDS)
            .expect("parses");
        assert_eq!(f.0.len(), 2);
        assert_eq!(f.0[0][0], ("contactid".into(), Lit::Str("a'b".into())));
        assert!(Filter::parse("foo eq 'x'", GRANT_FIELDS).is_err());
        assert!(Filter::parse("active gt 1", GRANT_FIELDS).is_err());
        assert!(Filter::parse("id eq 'x", GRANT_FIELDS).is_err());
        assert!(Filter::parse("", GRANT_FIELDS).is_err());
    }

    #[tokio::test]
    async fn token_and_auth() {
        let sim = sim().await;
        let http = Client::new();
        let cfg = sim.config().clone();

        let bad = http
            .post(sim.token_url())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", cfg.client_id.as_str()),
                ("client_secret", "wrong"),
                ("scope", SCOPE),
            ])
            .send()
            .await
            .expect("call");
        assert_eq!(bad.status(), 400);
        assert_eq!(bad.json::<Value>().await.expect("json")["error"], "invalid_client");

        let as_json = http
            .post(sim.token_url())
            .json(&json!({"grant_type": "client_credentials"}))
            .send()
            .await
            .expect("call");
        assert_eq!(as_json.status(), 400);
        assert_eq!(as_json.json::<Value>().await.expect("json")["error"], "unsupported_grant_type");

        let owners = format!("{}/Owners", sim.base_url());
        assert_eq!(http.get(&owners).send().await.expect("call").status(), 401);

        let tok = token(&sim, &http).await;
        let (status, body) = get(&http, &owners, &tok).await;
        assert_eq!(status, 200);
        assert_eq!(body[0]["id"], cfg.owner_account_id.as_str());

        let other = format!("{}/Owners/someone-else/BoundLocks", sim.base_url());
        assert_eq!(get(&http, &other, &tok).await.0, 403);

        sim.expire_tokens();
        assert_eq!(get(&http, &owners, &tok).await.0, 401);
        assert_eq!(sim.token_requests(), 3);
        assert_eq!(sim.count("GET", "/owners"), 4);
    }

    #[tokio::test]
    async fn locks_contacts_and_paging() {
        let sim = sim().await;
        let http = Client::new();
        let tok = token(&sim, &http).await;

        let (status, locks) = get(&http, &owner_url(&sim, "BoundLocks?$top=1&$skip=1"), &tok).await;
        assert_eq!(status, 200);
        assert_eq!(locks.as_array().map(Vec::len), Some(1));
        assert_eq!(locks[0]["id"], "lock-2");
        assert_eq!(locks[0]["active"], false);
        assert_eq!(locks[0]["targetType"], "Lock");
        assert_eq!(get(&http, &owner_url(&sim, "BoundLocks/nope"), &tok).await.0, 404);
        assert_eq!(get(&http, &owner_url(&sim, "BoundLocks?$top=x"), &tok).await.0, 400);

        let contacts = owner_url(&sim, "Contacts");
        let (status, c) =
            put(&http, &contacts, &tok, json!({"ipId": "tapkey", "identifier": "Ann@x.com"})).await;
        assert_eq!(status, 200);
        assert_eq!(c["email"], "Ann@x.com");
        let (status, c2) = put(&http, &contacts, &tok, json!({"email": "bob@x.com"})).await;
        assert_eq!((status, c2["identifier"].as_str()), (200, Some("bob@x.com")));
        let (status, dup) =
            put(&http, &contacts, &tok, json!({"ipId": "tapkey", "identifier": "ann@x.com"})).await;
        assert_eq!((status, dup["ErrorCode"].as_str()), (409, Some("Duplicate")));
        assert_eq!(put(&http, &contacts, &tok, json!("garbage")).await.0, 400);

        let url = owner_url(&sim, "Contacts?$filter=identifier eq 'ANN@x.com'");
        let (_, found) = get(&http, &url, &tok).await;
        assert_eq!(found.as_array().map(Vec::len), Some(1));
        assert_eq!(found[0]["id"], c["id"]);
        let url = owner_url(&sim, "Contacts?$filter=identifier gt 'a'");
        assert_eq!(get(&http, &url, &tok).await.0, 400);
    }

    #[tokio::test]
    async fn grants_duplicate_revoke_and_payment() {
        let sim = sim().await;
        let http = Client::new();
        let tok = token(&sim, &http).await;
        let grants = owner_url(&sim, "Grants");
        let body = json!({
            "boundLockId": "lock-1",
            "contact": {"identifier": "ann@x.com"},
            "validFrom": "2026-12-01T10:00:00Z",
            "validBefore": "2026-12-02T10:00:00Z",
        });
        let (status, g) = put(&http, &grants, &tok, body.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(g["state"], "Ok");
        assert_eq!(g["validFrom"], "2026-12-01T10:00:00Z");
        let (status, dup) = put(&http, &grants, &tok, body.clone()).await;
        assert_eq!((status, dup["ErrorCode"].as_str()), (409, Some("Duplicate")));

        // Inactive lock: accepted, the client must check the lock itself.
        let contact_id = sim.contacts()[0].id.clone();
        let (status, _) =
            put(&http, &grants, &tok, json!({"boundLockId": "lock-2", "contactId": contact_id})).await;
        assert_eq!(status, 200);
        let unknown = json!({"boundLockId": "lock-9", "contactId": contact_id});
        assert_eq!(put(&http, &grants, &tok, unknown).await.0, 404);
        let unknown = json!({"boundLockId": "lock-1", "contactId": "nobody"});
        assert_eq!(put(&http, &grants, &tok, unknown).await.0, 404);

        let filter =
            format!("Grants?$filter=contactId eq '{contact_id}' and boundLockId eq 'lock-1'&$expand=contact");
        let (_, listed) = get(&http, &owner_url(&sim, &filter), &tok).await;
        assert_eq!(listed.as_array().map(Vec::len), Some(1));
        assert_eq!(listed[0]["contact"]["identifier"], "ann@x.com");
        let (_, page) = get(&http, &owner_url(&sim, "Grants?$top=1&$skip=1"), &tok).await;
        assert_eq!(page[0]["boundLockId"], "lock-2");

        let revoke =
            owner_url(&sim, &format!("Grants/{}/Revoke?dryRun=false", g["id"].as_str().unwrap_or("")));
        let resp = http.post(&revoke).bearer_auth(&tok).send().await.expect("revoke");
        assert_eq!(resp.status(), 200);
        let resp = http.post(&revoke).bearer_auth(&tok).send().await.expect("revoke");
        assert_eq!(resp.status(), 409);
        assert_eq!(resp.json::<Value>().await.expect("json")["ErrorCode"], "Conflict");
        let missing = owner_url(&sim, "Grants/nope/Revoke");
        assert_eq!(http.post(&missing).bearer_auth(&tok).send().await.expect("call").status(), 404);
        assert_eq!(sim.active_grants().len(), 1);
        assert_eq!(sim.grants().len(), 2);
        let (_, active) = get(&http, &owner_url(&sim, "Grants?$filter=active eq false"), &tok).await;
        assert_eq!(active[0]["state"], "Revoked");

        // After revoking, the same window may be granted again.
        assert_eq!(put(&http, &grants, &tok, body.clone()).await.0, 200);

        sim.set_payment_required(true);
        let body = json!({"boundLockId": "lock-1", "contact": {"identifier": "new@x.com"}});
        let (status, e) = put(&http, &grants, &tok, body).await;
        assert_eq!((status, e["ErrorCode"].as_str()), (402, Some("PaymentRequired")));
        assert_eq!(sim.contacts().len(), 1);
    }

    #[tokio::test]
    async fn faults_throttle_fail_and_lost_response() {
        let sim = sim().await;
        let http = Client::new();
        let tok = token(&sim, &http).await;
        let locks = owner_url(&sim, "BoundLocks");

        // Burst 1, one token per 2 s: only the first of three quick calls passes.
        sim.faults().set_rate_limit(Some(0.5));
        let mut statuses = Vec::new();
        for _ in 0..3 {
            let resp = http.get(&locks).bearer_auth(&tok).send().await.expect("call");
            if resp.status() == 429 {
                assert_eq!(resp.headers().get("retry-after").map(|v| v.as_bytes()), Some(&b"1"[..]));
            }
            statuses.push(resp.status().as_u16());
        }
        assert_eq!(statuses, [200, 429, 429]);
        assert_eq!(sim.faults().throttled_count(), 2);
        sim.faults().set_rate_limit(None);

        sim.faults().fail_next(503, 1);
        let _ = token(&sim, &http).await; // token calls are exempt
        let (status, e) = get(&http, &locks, &tok).await;
        assert_eq!((status, e["ErrorCode"].as_str()), (503, Some("ServiceUnavailable")));
        assert_eq!(get(&http, &locks, &tok).await.0, 200);

        sim.faults().drop_after_write_next(1);
        let body = json!({"boundLockId": "lock-1", "contact": {"identifier": "ann@x.com"}});
        let grants = owner_url(&sim, "Grants");
        assert_eq!(put(&http, &grants, &tok, body.clone()).await.0, 500);
        assert_eq!(sim.active_grants().len(), 1, "the write happened");
        assert_eq!(put(&http, &grants, &tok, body).await.0, 409);

        let last = sim.calls().last().cloned().expect("calls recorded");
        assert_eq!((last.method.as_str(), last.status), ("PUT", 409));
        assert_eq!(sim.count("put", "/grants"), 2);

        let state: Value = http
            .get(sim.base_url().replace("/api/v1", "/_sim/state"))
            .send()
            .await
            .expect("state")
            .json()
            .await
            .expect("json");
        assert_eq!(state["grants"][0]["contact"]["identifier"], "ann@x.com");
        sim.shutdown().await;
    }

    #[tokio::test]
    async fn by_hand_drift_helpers() {
        let sim = sim().await;
        let id = sim.add_grant_by_hand("eve@x.com", "lock-1", None, None);
        assert_eq!(sim.contacts()[0].identifier, "eve@x.com");
        sim.revoke_by_hand(&id);
        assert!(sim.active_grants().is_empty());
        sim.unbind_lock("lock-1");
        assert!(sim.state_json()["locks"][0]["unbindDate"].is_string());
    }
}
