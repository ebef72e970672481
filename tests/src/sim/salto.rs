//! Salto KS Connect API simulator (reference: lock-providers.md §2).
//!
//! Speaks `POST /connect/token` (password and refresh-token grants, HTTP Basic client auth,
//! form body), `/v1.2/sites/{site}/users` (create, list as a bare array, delete → 202,
//! `PATCH …/subscription {"state"}`) and `/v1.1/sites/{site}/access_groups/{ag}/…` (members by
//! `PATCH {add_ids, remove_ids}` with *platform* user ids, time schedules as `{items}`), with
//! `{"ErrorCode","Message"}` errors. It copies the measured pitfalls: a new user is invisible to
//! group calls for a while (404 `2202`), a site-user id in `add_ids` is 404 `2202`, and a site
//! without a free seat creates users silently `suspended`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{
    Call, Core, FaultHandle, Profile, Route, Server, basic_auth, bearer, body_bytes, json, lock, param,
    parse_form, segments,
};

const TOKEN_TTL: Duration = Duration::from_secs(3600);

/// The simulated site and the credentials it accepts.
#[derive(Debug, Clone)]
pub struct SaltoSimConfig {
    pub site_id: String,
    pub client_id: String,
    pub client_secret: String,
    pub username: String,
    pub password: String,
    /// Users the subscription allows (`None`: unlimited).
    pub seats: Option<usize>,
}

impl Default for SaltoSimConfig {
    fn default() -> Self {
        Self {
            site_id: "6b2a9f0e-5a1c-4c1e-9d7a-000000000001".into(),
            client_id: "portier-salto".into(),
            client_secret: "salto-sim-secret".into(),
            username: "admin@space.example".into(),
            password: "salto-sim-password".into(),
            seats: None,
        }
    }
}

/// A site user as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimSaltoUser {
    /// Site-user id.
    pub id: String,
    /// Platform user id (the one group membership takes).
    pub platform_id: String,
    pub first_name: String,
    pub last_name: String,
    pub email: Option<String>,
    /// `"subscribed"` or `"suspended"`.
    pub subscription_state: String,
    /// The roles it was created with.
    pub role_ids: Vec<String>,
}

/// Every route this simulator answers, with its source; anything else is 404 `1101`.
pub const ROUTES: &[Route] = &[
    Route::new(
        "POST",
        "/connect/token",
        "developer.saltosystems.com/ks/connect-api/getting-authenticated; commitsun/roomdoo-smartlocks provider.py",
    ),
    Route::new(
        "GET",
        "/v1.1/sites/{site_id}/roles",
        "saltoks.com/developers/connect/adding-users-to-a-site; Clay support article 101000411312 \"KS role\"",
    ),
    Route::new(
        "GET",
        "/v1.2/sites/{site_id}/roles",
        "commitsun/roomdoo-smartlocks provider.py (_get_roles_from_site)",
    ),
    Route::new(
        "POST",
        "/v1.1/sites/{site_id}/users",
        "saltoks.com/developers/connect/adding-users-to-a-site",
    ),
    Route::new(
        "POST",
        "/v1.2/sites/{site_id}/users",
        "commitsun/roomdoo-smartlocks provider.py (_add_user_to_site)",
    ),
    Route::new(
        "GET",
        "/v1.1/sites/{site_id}/users",
        "ECCdigital/smart-city-booking-backend docs/research/salto-ks-api-contract.md",
    ),
    Route::new(
        "GET",
        "/v1.2/sites/{site_id}/users",
        "ECCdigital/smart-city-booking-backend docs/research/salto-ks-api-contract.md (bare array)",
    ),
    Route::new("DELETE", "/v1.1/sites/{site_id}/users/{id}", "saltoks.com/developers/connect/delete-user/"),
    Route::new("DELETE", "/v1.2/sites/{site_id}/users/{id}", "ECCdigital salto-ks-api-contract.md (202)"),
    Route::new(
        "PATCH",
        "/v1.2/sites/{site_id}/users/{id}/subscription",
        "commitsun/roomdoo-smartlocks provider.py; ECCdigital salto-ks-api-contract.md (field `state`)",
    ),
    Route::new(
        "GET",
        "/v1.1/sites/{site_id}/access_groups",
        "ECCdigital salto-ks-api-contract.md ({items, next_page_link, count}); commitsun/roomdoo-smartlocks provider.py; ssantos-micronet/saltoKS Program.cs",
    ),
    Route::new(
        "GET",
        "/v1.2/sites/{site_id}/access_groups",
        "ECCdigital salto-ks-api-contract.md (v1.2 access-group calls)",
    ),
    Route::new(
        "PATCH",
        "/v1.1/sites/{site_id}/access_groups/{access_group_id}/users",
        "saltoks.com/developers/connect/add-remove-multiple-users-to-an-access-group/",
    ),
    Route::new(
        "GET",
        "/v1.1/sites/{site_id}/access_groups/{access_group_id}/users",
        "saltoks.com/developers/connect/get-users-in-an-access-group",
    ),
    Route::new(
        "GET",
        "/v1.2/sites/{site_id}/access_groups/{access_group_id}/users",
        "ECCdigital salto-ks-api-contract.md (v1.2 access-group calls)",
    ),
    Route::new(
        "GET",
        "/v1.1/sites/{site_id}/access_groups/{access_group_id}/time_schedules",
        "commitsun/roomdoo-smartlocks provider.py (_get_time_schedules_from_access_group)",
    ),
    Route::new(
        "GET",
        "/v1.1/sites/{site_id}/entries",
        "ECCdigital salto-ks-api-contract.md §1, §5 (v1.1 only, v1.2 → 405; sorted by utc_date_time; user_id = platform user id)",
    ),
];

/// A running Salto KS simulator; stops when dropped.
pub struct SaltoSim {
    server: Server,
    inner: Arc<Inner>,
}

struct Inner {
    cfg: SaltoSimConfig,
    core: Core,
    data: Mutex<Data>,
}

#[derive(Default)]
struct Data {
    users: Vec<SimSaltoUser>,
    /// Access group id → (platform ids of members, time schedules).
    groups: BTreeMap<String, (BTreeSet<String>, usize)>,
    /// Access group id → `customer_reference` (the name the app shows).
    group_names: BTreeMap<String, String>,
    tokens: HashMap<String, Instant>,
    refresh_tokens: BTreeSet<String>,
    token_requests: usize,
    seats: Option<usize>,
    /// Group calls naming a new user that answer 404 2202 before it becomes visible.
    consistency_lag: usize,
    /// Platform id → group calls left before the user is visible.
    invisible: HashMap<String, usize>,
    /// Most items a listing answers in one page (`None`: as many as `$top` asks).
    page_size: Option<usize>,
    /// The site's roles: (id, code, customer_reference).
    roles: Vec<(String, String, String)>,
    /// The site's entries (door events), in the order they happened.
    entries: Vec<Value>,
}

/// The roles of a new site as the Clay support article "KS role" (101000411312) lists them;
/// the ids are made up here (they differ per site).
pub fn documented_roles() -> Vec<(String, String, String)> {
    [
        ("7d5ded97-0000-4000-8000-00000000a001", "site_admin", "Site Admin"),
        ("7d9378cf-0000-4000-8000-00000000a002", "site_super_user", "Site Super User"),
        ("7e40b5e1-0000-4000-8000-00000000a003", "site_user", "Site User"),
        ("9df437bb-0000-4000-8000-00000000a004", "site_mobile_user", "Site Mobile User"),
    ]
    .into_iter()
    .map(|(id, code, name)| (id.to_owned(), code.to_owned(), name.to_owned()))
    .collect()
}

impl SaltoSim {
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

    pub async fn start(cfg: SaltoSimConfig) -> Self {
        let inner = Arc::new(Inner {
            core: Core::new(Profile {
                token_path: "/connect/token",
                throttle_status: StatusCode::TOO_MANY_REQUESTS,
                error_body: |status, message| {
                    let code = match status.as_u16() {
                        401 => "1500",
                        403 => "2203",
                        404 => "1101",
                        500..=599 => "2201",
                        _ => "1100",
                    };
                    json!({ "ErrorCode": code, "Message": message })
                },
                throttle_html: None,
            }),
            data: Mutex::new(Data { seats: cfg.seats, roles: documented_roles(), ..Data::default() }),
            cfg,
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        Self { server: Server::start(router).await, inner }
    }

    /// `http://127.0.0.1:PORT` (the API host; paths `/v1.x/sites/…`).
    pub fn base_url(&self) -> String {
        self.server.origin()
    }

    /// `http://127.0.0.1:PORT/connect/token` (the identity host, here the same server).
    pub fn token_url(&self) -> String {
        format!("{}/connect/token", self.server.origin())
    }

    pub fn config(&self) -> &SaltoSimConfig {
        &self.inner.cfg
    }

    /// Portier's client configuration for this simulator (password grant).
    pub fn client_config(&self) -> shared::providers::salto::SaltoConfig {
        let c = &self.inner.cfg;
        shared::providers::salto::SaltoConfig {
            base_url: self.base_url(),
            token_url: self.token_url(),
            site_id: c.site_id.clone(),
            client_id: c.client_id.clone(),
            client_secret: c.client_secret.clone().into(),
            username: Some(c.username.clone().into()),
            password: Some(c.password.clone().into()),
            refresh_token: None,
            user_role: None,
        }
    }

    /// An access group; `with_schedule: false` models one that never reaches the lock.
    pub fn add_access_group(&self, id: &str, with_schedule: bool) {
        lock(&self.inner.data).groups.insert(id.to_owned(), (BTreeSet::new(), usize::from(with_schedule)));
    }

    /// An access group with the name (`customer_reference`) the Salto KS app shows.
    pub fn add_named_access_group(&self, id: &str, name: &str, with_schedule: bool) {
        self.add_access_group(id, with_schedule);
        lock(&self.inner.data).group_names.insert(id.to_owned(), name.to_owned());
    }

    /// Members of a group by email (platform ids resolved through the users).
    pub fn members(&self, group: &str) -> Vec<String> {
        let d = lock(&self.inner.data);
        let Some((members, _)) = d.groups.get(group) else { return Vec::new() };
        members
            .iter()
            .map(|p| {
                d.users
                    .iter()
                    .find(|u| &u.platform_id == p)
                    .and_then(|u| u.email.clone())
                    .unwrap_or_else(|| p.clone())
            })
            .collect()
    }

    pub fn users(&self) -> Vec<SimSaltoUser> {
        lock(&self.inner.data).users.clone()
    }

    /// Creates a subscribed user in the Salto KS console by hand (not through Portier), a
    /// member of these access groups; returns its platform id. For drift tests.
    pub fn add_user_by_hand(
        &self,
        first_name: &str,
        last_name: &str,
        email: &str,
        groups: &[&str],
    ) -> String {
        let mut d = lock(&self.inner.data);
        let user = SimSaltoUser {
            id: uuid::Uuid::new_v4().to_string(),
            platform_id: uuid::Uuid::new_v4().to_string(),
            first_name: first_name.into(),
            last_name: last_name.into(),
            email: Some(email.into()),
            subscription_state: "subscribed".into(),
            role_ids: documented_roles().into_iter().filter(|r| r.1 == "site_user").map(|r| r.0).collect(),
        };
        for g in groups {
            let (members, _) = d.groups.get_mut(*g).unwrap_or_else(|| panic!("SaltoSim has no group {g}"));
            members.insert(user.platform_id.clone());
        }
        let platform_id = user.platform_id.clone();
        d.users.push(user);
        platform_id
    }

    /// A door event at `lock` by the user with platform id `user` (as the lock reports it):
    /// `lock_opened`, or `lock_rejected` with `no_access`. Returns the entry id.
    pub fn add_entry(
        &self,
        lock_id: &str,
        user: &str,
        at: chrono::DateTime<chrono::Utc>,
        opened: bool,
    ) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        let entry = json!({
            "id": id,
            "lock_id": lock_id,
            "user_id": user,
            "utc_date_time": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "event_type": if opened { "lock_opened" } else { "lock_rejected" },
            "event_detail": if opened { Value::Null } else { json!("no_access") },
            "access_by": "app",
        });
        lock(&self.inner.data).entries.push(entry);
        id
    }

    /// Listings answer at most `size` items a page whatever `$top` asks (group members with a
    /// `next_page_link` while more remain), as Salto KS does past its own page size.
    pub fn set_page_size(&self, size: Option<usize>) {
        lock(&self.inner.data).page_size = size;
    }

    /// Replaces the site's roles (id, code, name).
    pub fn set_roles(&self, roles: Vec<(String, String, String)>) {
        lock(&self.inner.data).roles = roles;
    }

    /// The role ids each user was created with, by email.
    pub fn user_roles(&self) -> Vec<(Option<String>, Vec<String>)> {
        lock(&self.inner.data).users.iter().map(|u| (u.email.clone(), u.role_ids.clone())).collect()
    }

    /// Seats of the subscription; users created beyond them come back `suspended`.
    pub fn set_seats(&self, seats: Option<usize>) {
        lock(&self.inner.data).seats = seats;
    }

    /// Every user created from now on is invisible to the next `calls` group calls naming it
    /// (404 `2202`), as Salto KS is for about a minute after creation.
    pub fn set_consistency_lag(&self, calls: usize) {
        lock(&self.inner.data).consistency_lag = calls;
    }

    /// A refresh token the simulator accepts once (as if stored from an earlier login).
    pub fn issue_refresh_token(&self) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        lock(&self.inner.data).refresh_tokens.insert(token.clone());
        token
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

    pub fn calls(&self) -> Vec<Call> {
        self.inner.core.calls()
    }

    /// Calls with this method whose path contains `path_contains` (case-insensitive).
    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.inner.core.count(method, path_contains)
    }

    /// Membership calls (`PATCH …/access_groups/{group}/users`) answered, for one group.
    pub fn membership_calls(&self, group: &str) -> usize {
        self.count("PATCH", &format!("/access_groups/{group}/users"))
    }

    pub fn reset_calls(&self) {
        self.inner.core.reset_calls();
    }

    pub fn faults(&self) -> FaultHandle {
        self.inner.core.faults()
    }
}

fn err(status: StatusCode, code: &str, message: &str) -> Response {
    json(status, json!({ "ErrorCode": code, "Message": message }))
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    inner.core.run(req, |req| inner.route(req)).await
}

#[derive(Deserialize)]
struct NewUser {
    first_name: Option<String>,
    last_name: Option<String>,
    email: Option<String>,
    #[serde(default)]
    role_ids: Vec<String>,
}

#[derive(Deserialize)]
struct Members {
    #[serde(default)]
    add_ids: Vec<String>,
    #[serde(default)]
    remove_ids: Vec<String>,
}

#[derive(Deserialize)]
struct Subscription {
    state: Option<String>,
}

async fn body_json<T: serde::de::DeserializeOwned>(body: Body) -> Result<T, Response> {
    let bytes =
        body_bytes(body).await.ok_or_else(|| err(StatusCode::BAD_REQUEST, "1100", "Unreadable body"))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| err(StatusCode::BAD_REQUEST, "1100", &format!("Invalid request: {e}")))
}

impl Inner {
    async fn route(&self, req: Request) -> Response {
        let (parts, body) = req.into_parts();
        let segs = segments(parts.uri.path());
        let s: Vec<&str> = segs.iter().map(String::as_str).collect();
        let method = parts.method.as_str();
        if (method, s.as_slice()) == ("POST", ["connect", "token"].as_slice()) {
            return self.token(&parts.headers, body).await;
        }
        if !self.authorized(&parts.headers) {
            return err(StatusCode::UNAUTHORIZED, "1500", "Unauthorized");
        }
        let (version, site, rest) = match s.as_slice() {
            [v, "sites", site, rest @ ..] => (*v, *site, rest),
            _ => return err(StatusCode::NOT_FOUND, "1101", "Resource not found"),
        };
        if site != self.cfg.site_id {
            return err(StatusCode::BAD_REQUEST, "1100", "Invalid site id (use the site UUID)");
        }
        // Each arm's source is in [`ROUTES`].
        match (method, version, rest) {
            ("GET", "v1.1" | "v1.2", ["roles"]) => {
                let d = lock(&self.data);
                let items: Vec<Value> = d
                    .roles
                    .iter()
                    .map(|(id, code, name)| {
                        json!({ "id": id, "customer_reference": name, "code": code, "parent_id": null, "is_hierarchical": true })
                    })
                    .collect();
                json(StatusCode::OK, json!({ "items": items, "next_page_link": null, "count": null }))
            }
            ("POST", "v1.1" | "v1.2", ["users"]) => match body_json::<NewUser>(body).await {
                Ok(u) => self.create_user(u),
                Err(e) => e,
            },
            ("GET", "v1.1" | "v1.2", ["users"]) => {
                let query = parse_form(parts.uri.query().unwrap_or_default());
                self.list_users(&query)
            }
            ("DELETE", "v1.1" | "v1.2", ["users", id]) => self.delete_user(id),
            ("PATCH", "v1.2", ["users", id, "subscription"]) => match body_json::<Subscription>(body).await {
                Ok(b) => self.subscription(id, b),
                Err(e) => e,
            },
            ("GET", "v1.1" | "v1.2", ["access_groups"]) => {
                let query = parse_form(parts.uri.query().unwrap_or_default());
                self.list_access_groups(version, &query)
            }
            ("PATCH", "v1.1", ["access_groups", ag, "users"]) => match body_json::<Members>(body).await {
                Ok(b) => self.patch_members(ag, b),
                Err(e) => e,
            },
            ("GET", "v1.1" | "v1.2", ["access_groups", ag, "users"]) => {
                let query = parse_form(parts.uri.query().unwrap_or_default());
                self.list_group_members(ag, &query)
            }
            ("GET", "v1.1", ["access_groups", ag, "time_schedules"]) => {
                let d = lock(&self.data);
                match d.groups.get(*ag) {
                    Some((_, n)) => {
                        let items: Vec<Value> = (0..*n)
                            .map(|i| json!({ "id": format!("ts-{i}"), "monday": true, "sunday": true, "start_time": "00:00:00", "end_time": "23:59:59" }))
                            .collect();
                        json(StatusCode::OK, json!({ "items": items, "next_page_link": null, "count": n }))
                    }
                    None => err(StatusCode::NOT_FOUND, "1101", "Access group not found"),
                }
            }
            ("GET", "v1.1", ["entries"]) => {
                let query = parse_form(parts.uri.query().unwrap_or_default());
                self.list_entries(&query)
            }
            ("GET", _, ["entries"]) => err(StatusCode::METHOD_NOT_ALLOWED, "1100", "Method not allowed"),
            // Membership PATCH exists only on v1.1.
            ("PATCH", _, ["access_groups", _, "users"]) => {
                err(StatusCode::METHOD_NOT_ALLOWED, "1100", "Method not allowed")
            }
            _ => err(StatusCode::NOT_FOUND, "1101", "Resource not found"),
        }
    }

    async fn token(&self, headers: &HeaderMap, body: Body) -> Response {
        lock(&self.data).token_requests += 1;
        let oauth = |code: &str| json(StatusCode::BAD_REQUEST, json!({ "error": code }));
        if basic_auth(headers) != Some((self.cfg.client_id.clone(), self.cfg.client_secret.clone())) {
            return oauth("invalid_client");
        }
        let Some(bytes) = body_bytes(body).await else { return oauth("invalid_request") };
        let form = parse_form(&String::from_utf8_lossy(&bytes));
        let mut d = lock(&self.data);
        match param(&form, "grant_type") {
            Some("password") => {
                if param(&form, "username") != Some(self.cfg.username.as_str())
                    || param(&form, "password") != Some(self.cfg.password.as_str())
                {
                    return oauth("invalid_grant");
                }
                if !param(&form, "scope").is_some_and(|s| s.split(' ').any(|x| x == "user_api.full_access")) {
                    return oauth("invalid_scope");
                }
            }
            Some("refresh_token") => {
                let Some(rt) = param(&form, "refresh_token") else { return oauth("invalid_request") };
                // Refresh tokens rotate: each is good once.
                if !d.refresh_tokens.remove(rt) {
                    return oauth("invalid_grant");
                }
            }
            _ => return oauth("unsupported_grant_type"),
        }
        let token = uuid::Uuid::new_v4().simple().to_string();
        let refresh = uuid::Uuid::new_v4().simple().to_string();
        d.tokens.insert(token.clone(), Instant::now() + TOKEN_TTL);
        d.refresh_tokens.insert(refresh.clone());
        json(
            StatusCode::OK,
            json!({ "access_token": token, "token_type": "Bearer", "expires_in": TOKEN_TTL.as_secs(), "refresh_token": refresh }),
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
            return err(StatusCode::BAD_REQUEST, "1101", "first_name and last_name are required");
        };
        let mut d = lock(&self.data);
        // "A user has a certain role" (saltoks.com adding-users-to-a-site); RDO: "without one
        // Salto rejects creation". Every id must be one of the site's roles.
        if u.role_ids.is_empty() || !u.role_ids.iter().all(|id| d.roles.iter().any(|r| &r.0 == id)) {
            return err(StatusCode::BAD_REQUEST, "1101", "role_ids must name at least one role of the site");
        }
        let subscribed = d.users.iter().filter(|u| u.subscription_state == "subscribed").count();
        let state = if d.seats.is_some_and(|s| subscribed >= s) { "suspended" } else { "subscribed" };
        let user = SimSaltoUser {
            id: uuid::Uuid::new_v4().to_string(),
            platform_id: uuid::Uuid::new_v4().to_string(),
            first_name: first,
            last_name: last,
            email: u.email,
            subscription_state: state.into(),
            role_ids: u.role_ids,
        };
        if d.consistency_lag > 0 {
            let lag = d.consistency_lag;
            d.invisible.insert(user.platform_id.clone(), lag);
        }
        let body = d.user_json(&user);
        d.users.push(user);
        json(StatusCode::CREATED, body)
    }

    /// The site's access groups as `{items: [{id, customer_reference}]}` (OData `$top`/`$skip`,
    /// a host-relative `next_page_link` while more follow).
    fn list_access_groups(&self, version: &str, query: &[(String, String)]) -> Response {
        let number = |k: &str| param(query, k).and_then(|v| v.parse::<usize>().ok());
        let d = lock(&self.data);
        let skip = number("$skip").unwrap_or(0);
        let top = number("$top").unwrap_or(usize::MAX).min(d.page_size.unwrap_or(usize::MAX));
        let items: Vec<Value> = d
            .groups
            .keys()
            .skip(skip)
            .take(top)
            .map(|id| json!({ "id": id, "customer_reference": d.group_names.get(id) }))
            .collect();
        let count = items.len();
        let next = skip + count;
        let next_page_link = (count > 0 && next < d.groups.len())
            .then(|| format!("/{version}/sites/{}/access_groups?$top={top}&$skip={next}", self.cfg.site_id));
        json(StatusCode::OK, json!({ "items": items, "next_page_link": next_page_link, "count": count }))
    }

    /// Members of an access group as `{items}` of site users (OData `$top`/`$skip`).
    fn list_group_members(&self, ag: &str, query: &[(String, String)]) -> Response {
        let number = |k: &str| param(query, k).and_then(|v| v.parse::<usize>().ok());
        let d = lock(&self.data);
        let Some((members, _)) = d.groups.get(ag) else {
            return err(StatusCode::NOT_FOUND, "1101", "Access group not found");
        };
        // `excluded` is a documented boolean flag ("return excluded users"); nobody is excluded
        // here, so `true` lists nobody.
        let excluded = match param(query, "excluded") {
            None | Some("false") => false,
            Some("true") => true,
            Some(_) => return err(StatusCode::BAD_REQUEST, "1101", "excluded must be true or false"),
        };
        let skip = number("$skip").unwrap_or(0);
        let top = number("$top").unwrap_or(usize::MAX).min(d.page_size.unwrap_or(usize::MAX));
        let all: Vec<&SimSaltoUser> =
            d.users.iter().filter(|u| !excluded && members.contains(&u.platform_id)).collect();
        let items: Vec<Value> = all
            .iter()
            .skip(skip)
            .take(top)
            .map(|u| {
                let mut item = d.user_json(u);
                item["excluded"] = json!(false);
                item
            })
            .collect();
        let count = items.len();
        let next = skip + count;
        // A link relative to the host, as the client must follow it (not recompute `$skip`).
        let next_page_link = (count > 0 && next < all.len()).then(|| {
            let flag = if excluded { "true" } else { "false" };
            format!(
                "/v1.1/sites/{}/access_groups/{ag}/users?excluded={flag}&$top={top}&$skip={next}",
                self.cfg.site_id
            )
        });
        json(StatusCode::OK, json!({ "items": items, "next_page_link": next_page_link, "count": count }))
    }

    /// Entries as `{items}`, with OData `$filter=utc_date_time ge|gt <time>`, `$orderby` on
    /// `utc_date_time` (anything else → 400 1102, as measured), `$top`/`$skip`.
    fn list_entries(&self, query: &[(String, String)]) -> Response {
        let number = |k: &str| param(query, k).and_then(|v| v.parse::<usize>().ok());
        let order = param(query, "$orderby").unwrap_or("utc_date_time");
        let mut words = order.split_whitespace();
        if words.next() != Some("utc_date_time") {
            return err(StatusCode::BAD_REQUEST, "1102", "Invalid OData orderby");
        }
        let descending = words.next() == Some("desc");
        let filter = match param(query, "$filter") {
            None => None,
            Some(f) => match f.split_whitespace().collect::<Vec<_>>().as_slice() {
                ["utc_date_time", op @ ("ge" | "gt"), t] => {
                    match chrono::DateTime::parse_from_rfc3339(t.trim_matches('\'')) {
                        Ok(t) => Some((*op == "gt", t.with_timezone(&chrono::Utc))),
                        Err(_) => return err(StatusCode::BAD_REQUEST, "1102", "Invalid OData filter"),
                    }
                }
                _ => return err(StatusCode::BAD_REQUEST, "1102", "Invalid OData filter"),
            },
        };
        let d = lock(&self.data);
        let at = |e: &Value| {
            e["utc_date_time"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                .map(|t| t.with_timezone(&chrono::Utc))
        };
        let mut items: Vec<Value> = d
            .entries
            .iter()
            .filter(|e| match (filter, at(e)) {
                (None, _) => true,
                (Some((strict, from)), Some(t)) => {
                    if strict {
                        t > from
                    } else {
                        t >= from
                    }
                }
                (Some(_), None) => false,
            })
            .cloned()
            .collect();
        items.sort_by_key(|e| at(e));
        if descending {
            items.reverse();
        }
        let top = number("$top").unwrap_or(usize::MAX).min(d.page_size.unwrap_or(usize::MAX));
        let page: Vec<Value> = items.into_iter().skip(number("$skip").unwrap_or(0)).take(top).collect();
        json(StatusCode::OK, json!({ "items": page, "next_page_link": null, "count": null }))
    }

    fn list_users(&self, query: &[(String, String)]) -> Response {
        let number = |k: &str| param(query, k).and_then(|v| v.parse::<usize>().ok());
        let d = lock(&self.data);
        let top = number("$top").unwrap_or(usize::MAX).min(d.page_size.unwrap_or(usize::MAX));
        let page: Vec<Value> =
            d.users.iter().skip(number("$skip").unwrap_or(0)).take(top).map(|u| d.user_json(u)).collect();
        // Users come back as a bare array (measured), unlike access groups.
        json(StatusCode::OK, Value::Array(page))
    }

    fn delete_user(&self, id: &str) -> Response {
        let mut d = lock(&self.data);
        let Some(pos) = d.users.iter().position(|u| u.id == id) else {
            return err(StatusCode::NOT_FOUND, "2202", "User not found");
        };
        let user = d.users.remove(pos);
        for (members, _) in d.groups.values_mut() {
            members.remove(&user.platform_id);
        }
        json(StatusCode::ACCEPTED, Value::Null)
    }

    fn subscription(&self, id: &str, b: Subscription) -> Response {
        let state = match b.state.as_deref() {
            Some(s @ ("suspended" | "subscribed")) => s.to_owned(),
            _ => return err(StatusCode::BAD_REQUEST, "1101", "state must be suspended or subscribed"),
        };
        let mut d = lock(&self.data);
        match d.users.iter_mut().find(|u| u.id == id) {
            Some(u) => u.subscription_state = state,
            None => return err(StatusCode::NOT_FOUND, "2202", "User not found"),
        }
        match d.users.iter().find(|u| u.id == id) {
            Some(u) => json(StatusCode::OK, d.user_json(u)),
            None => err(StatusCode::NOT_FOUND, "2202", "User not found"),
        }
    }

    fn patch_members(&self, ag: &str, b: Members) -> Response {
        let mut d = lock(&self.data);
        if !d.groups.contains_key(ag) {
            return err(StatusCode::NOT_FOUND, "1101", "Access group not found");
        }
        for id in b.add_ids.iter().chain(&b.remove_ids) {
            // Only platform ids are accepted; a site-user id is "not found" too.
            if !d.users.iter().any(|u| &u.platform_id == id) {
                return err(StatusCode::NOT_FOUND, "2202", "User not found");
            }
            if let Some(left) = d.invisible.get_mut(id)
                && *left > 0
            {
                *left -= 1;
                return err(StatusCode::NOT_FOUND, "2202", "User not found");
            }
        }
        let Some((members, _)) = d.groups.get_mut(ag) else {
            return err(StatusCode::NOT_FOUND, "1101", "Access group not found");
        };
        for id in b.add_ids {
            members.insert(id);
        }
        for id in b.remove_ids {
            members.remove(&id);
        }
        json(StatusCode::OK, Value::Null)
    }
}

impl Data {
    /// A site user as measured (ECC: `{id, user:{id}, roles[], alias, subscription_state, …}`),
    /// with the create body's documented `first_name`, `last_name` and `email` echoed.
    fn user_json(&self, u: &SimSaltoUser) -> Value {
        let roles: Vec<Value> = self
            .roles
            .iter()
            .filter(|r| u.role_ids.contains(&r.0))
            .map(|(id, code, name)| json!({ "id": id, "code": code, "customer_reference": name }))
            .collect();
        json!({
            "id": u.id,
            "user": { "id": u.platform_id },
            "first_name": u.first_name,
            "last_name": u.last_name,
            "alias": format!("{} {}", u.first_name, u.last_name),
            "email": u.email,
            "roles": roles,
            "subscription_state": u.subscription_state,
        })
    }
}
