//! Nexudus REST API simulator (reference: source-systems.md §1).
//!
//! Speaks `POST /api/token` (password and refresh grants), paged `{Records, …}` lists with
//! `page`/`size` and `{Entity}_{Field}` filters, PascalCase DTOs, **409** with `Retry-After` when
//! throttled, and **500** (not 404) for a deleted id, as the real API does. It also builds and
//! delivers webhooks signed the way Nexudus signs them.
//!
//! Entities: coworkers (with `Teams` by id), time passes, bookings, contracts (`Desks` only by
//! id), floor-plan desks (`ItemType`), teams (`TeamMembers` only by id) and visitors. Every
//! change stamps `UpdatedOn` with the sim clock.

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
    Call, Core, FaultHandle, Profile, Route, Server, bearer, body_bytes, is_json, iso, iso_opt, json, lock,
    param, parse_form, parse_time, segments,
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

/// Every route this simulator answers, with its source (developers.nexudus.com reference
/// pages); anything else is 404 `{"Message":"No HTTP resource was found that matches the
/// request URI."}` as ASP.NET Web API answers.
pub const ROUTES: &[Route] = &[
    Route::new(
        "POST",
        "/api/token",
        "developers.nexudus.com/reference/token-authentication-oauth, /reference/get-bearer-token",
    ),
    Route::new(
        "GET",
        "/api/spaces/coworkers",
        "developers.nexudus.com/rest-api/spaces/get-coworkers (list, Coworker_* filters; ?id=[…] get-coworkers-batch)",
    ),
    Route::new(
        "GET",
        "/api/spaces/coworkers/{id}",
        "developers.nexudus.com/rest-api/spaces/get-coworkers-by-id",
    ),
    Route::new("GET", "/api/spaces/bookings", "developers.nexudus.com/rest-api/spaces/get-bookings"),
    Route::new(
        "GET",
        "/api/spaces/bookings/{id}",
        "developers.nexudus.com/rest-api/spaces/get-bookings-by-id",
    ),
    Route::new(
        "GET",
        "/api/billing/coworkercontracts",
        "developers.nexudus.com/rest-api/billing/get-coworkercontracts (?id=[…] get-coworkercontracts-batch)",
    ),
    Route::new(
        "GET",
        "/api/billing/coworkercontracts/{id}",
        "developers.nexudus.com/rest-api/billing/get-coworkercontracts-by-id",
    ),
    Route::new("GET", "/api/sys/floorplandesks", "developers.nexudus.com/rest-api/sys/get-floorplandesks"),
    Route::new(
        "GET",
        "/api/sys/floorplandesks/{id}",
        "developers.nexudus.com/rest-api/sys/get-floorplandesks-by-id",
    ),
    Route::new("GET", "/api/spaces/teams", "developers.nexudus.com/rest-api/spaces/get-teams"),
    Route::new("GET", "/api/spaces/teams/{id}", "developers.nexudus.com/rest-api/spaces/get-teams-by-id"),
    Route::new("GET", "/api/spaces/visitors", "developers.nexudus.com/rest-api/spaces/get-visitors"),
    Route::new(
        "GET",
        "/api/spaces/visitors/{id}",
        "developers.nexudus.com/rest-api/spaces/get-visitors-by-id",
    ),
    Route::new(
        "GET",
        "/api/billing/coworkertimepasses",
        "developers.nexudus.com/rest-api/billing/get-coworkertimepasses",
    ),
    Route::new(
        "GET",
        "/api/billing/coworkertimepasses/{id}",
        "developers.nexudus.com/rest-api/billing/get-coworkertimepasses-by-id",
    ),
    Route::new("GET", "/api/billing/timepasses", "developers.nexudus.com/rest-api/billing/get-timepasses"),
    Route::new("GET", "/api/spaces/resources", "developers.nexudus.com/rest-api/spaces/get-resources"),
    Route::new(
        "GET",
        "/api/spaces/resources/{id}",
        "developers.nexudus.com/rest-api/spaces/get-resources-by-id",
    ),
    Route::new(
        "GET",
        "/api/billing/timepasses/{id}",
        "developers.nexudus.com/rest-api/billing/get-timepasses-by-id",
    ),
    Route::new(
        "GET",
        "/api/spaces/checkins",
        "developers.nexudus.com/rest-api/spaces/get-checkins (list; Checkin_* filters by the documented {Entity}_{Field} pattern)",
    ),
    Route::new(
        "GET",
        "/api/spaces/checkins/{id}",
        "developers.nexudus.com/rest-api/spaces/get-checkins-by-id",
    ),
    Route::new(
        "POST",
        "/api/spaces/checkins",
        "developers.nexudus.com/rest-api/spaces/post-checkins (BusinessId and FromTime required; Source 2 = DoorAccess); /reference/add-checkin",
    ),
    Route::new(
        "PUT",
        "/api/spaces/checkins",
        "developers.nexudus.com/rest-api/spaces/put-checkins (Id, BusinessId, FromTime required)",
    ),
];

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
    bookings: BTreeMap<i64, SimBooking>,
    desks: BTreeMap<i64, SimDesk>,
    /// Resources (`/api/spaces/resources`): id → (name, archived).
    resources: BTreeMap<i64, (String, bool)>,
    contracts: BTreeMap<i64, SimContract>,
    teams: BTreeMap<i64, SimTeam>,
    visitors: BTreeMap<i64, SimVisitor>,
    next_pass_id: i64,
    /// Check-ins (`/api/spaces/checkins`), by id.
    checkins: BTreeMap<i64, Value>,
    access_tokens: HashMap<String, Instant>,
    /// Refresh token → (expiry, the `client_id` it was issued to).
    refresh_tokens: HashMap<String, (Instant, String)>,
    token_requests: usize,
    /// The `client_id` header of every token request, in order.
    token_client_ids: Vec<String>,
    /// When set, visitor times go out, and visitor filters are read, as business-local time
    /// without a zone, as the portal API documents them; else as UTC with `Z`.
    visitor_zone: Option<shared::localtime::Zone>,
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

struct SimBooking {
    id: i64,
    unique_id: String,
    coworker_id: i64,
    resource_id: i64,
    resource_name: String,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
    created_on: DateTime<Utc>,
    updated_on: DateTime<Utc>,
}

struct SimDesk {
    id: i64,
    name: String,
    item_type: i64,
}

struct SimContract {
    id: i64,
    unique_id: String,
    coworker_id: i64,
    tariff_name: String,
    start: DateTime<Utc>,
    cancellation_date: Option<DateTime<Utc>>,
    desks: Vec<i64>,
    created_on: DateTime<Utc>,
    updated_on: DateTime<Utc>,
}

struct SimTeam {
    id: i64,
    name: String,
    paying_member: Option<i64>,
    members: Vec<i64>,
    created_on: DateTime<Utc>,
    updated_on: DateTime<Utc>,
}

struct SimVisitor {
    id: i64,
    host: i64,
    full_name: String,
    email: String,
    /// `None` for a walk-in.
    expected_arrival: Option<DateTime<Utc>>,
    /// When reception checked the visitor in.
    arrived: Option<DateTime<Utc>>,
    departure: Option<DateTime<Utc>>,
    created_on: DateTime<Utc>,
    updated_on: DateTime<Utc>,
}

/// `FloorPlanDesk.ItemType` values (reference §1.4).
pub const DESK_OFFICE: i64 = 1;
pub const DESK_DEDICATED: i64 = 2;

impl NexudusSim {
    /// The documented routes this simulator answers ([`ROUTES`]).
    pub fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    /// A valid access token issued without a token call, for tests that speak raw HTTP.
    pub fn access_token(&self) -> String {
        let token = uuid::Uuid::new_v4().simple().to_string();
        lock(&self.inner.data).access_tokens.insert(token.clone(), Instant::now() + ACCESS_TTL);
        token
    }

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
                bookings: BTreeMap::new(),
                desks: BTreeMap::new(),
                resources: BTreeMap::new(),
                contracts: BTreeMap::new(),
                teams: BTreeMap::new(),
                visitors: BTreeMap::new(),
                next_pass_id: 5001,
                checkins: BTreeMap::new(),
                access_tokens: HashMap::new(),
                refresh_tokens: HashMap::new(),
                token_client_ids: Vec::new(),
                token_requests: 0,
                visitor_zone: None,
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

    /// Portier's client configuration for this simulator.
    pub fn client_config(&self) -> shared::sources::nexudus::client::NexudusConfig {
        let c = &self.inner.cfg;
        shared::sources::nexudus::client::NexudusConfig {
            base_url: self.base_url(),
            username: c.username.clone().into(),
            password: c.password.clone().into(),
        }
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
    /// The `client_id` header of every token request so far.
    pub fn token_client_ids(&self) -> Vec<String> {
        lock(&self.inner.data).token_client_ids.clone()
    }

    pub fn expire_refresh_tokens(&self) {
        lock(&self.inner.data).refresh_tokens.clear();
    }

    /// Sets the sim clock that stamps `CreatedOn`/`UpdatedOn`/`UsedDate`; it only moves when set.
    pub fn set_now(&self, now: DateTime<Utc>) {
        lock(&self.inner.data).now = now;
    }

    /// Moves this simulator's clock, apart from it: a test app moves every clock at once.
    pub fn clock_hand(&self) -> crate::app::SimClock {
        let inner = self.inner.clone();
        Box::new(move |now| lock(&inner.data).now = now)
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

    /// Extends or shortens a pass (`ExpireDate`). Panics on an unknown pass (a test bug).
    pub fn set_pass_expiry(&self, id: i64, expire: Option<DateTime<Utc>>) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let p = d.passes.get_mut(&id).unwrap_or_else(|| panic!("NexudusSim has no pass {id}"));
        p.expire_date = expire;
        p.updated_on = now;
    }

    /// Panics on an unknown pass (a test bug).
    pub fn remove_pass(&self, id: i64) {
        let removed = lock(&self.inner.data).passes.remove(&id);
        assert!(removed.is_some(), "NexudusSim has no pass {id}");
    }

    /// The full Coworker DTO (as `GET …/coworkers/{id}` and webhooks carry it); `Null` if unknown.
    pub fn coworker_dto(&self, id: i64) -> Value {
        let d = lock(&self.inner.data);
        d.coworkers.get(&id).map_or(Value::Null, |c| c.to_json(&d, true))
    }

    fn next_id(d: &mut Data) -> i64 {
        let id = d.next_pass_id;
        d.next_pass_id += 1;
        id
    }

    /// Books a resource for a coworker; returns the booking id. Panics on an unknown coworker.
    pub fn book(
        &self,
        coworker_id: i64,
        resource_id: i64,
        resource: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> i64 {
        let mut d = lock(&self.inner.data);
        assert!(d.coworkers.contains_key(&coworker_id), "NexudusSim has no coworker {coworker_id}");
        let id = Self::next_id(&mut d);
        let now = d.now;
        d.bookings.insert(
            id,
            SimBooking {
                id,
                unique_id: uuid::Uuid::new_v4().to_string(),
                coworker_id,
                resource_id,
                resource_name: resource.to_owned(),
                from,
                to,
                created_on: now,
                updated_on: now,
            },
        );
        id
    }

    /// Moves a booking to another time. Panics on an unknown booking (a test bug).
    pub fn move_booking(&self, id: i64, from: DateTime<Utc>, to: DateTime<Utc>) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let b = d.bookings.get_mut(&id).unwrap_or_else(|| panic!("NexudusSim has no booking {id}"));
        (b.from, b.to, b.updated_on) = (from, to, now);
    }

    /// Deletes a booking (a cancelled booking leaves the bookings list). Returns its last DTO,
    /// which `BookingDelete` carries.
    pub fn delete_booking(&self, id: i64) -> Value {
        let mut d = lock(&self.inner.data);
        let b = d.bookings.remove(&id).unwrap_or_else(|| panic!("NexudusSim has no booking {id}"));
        b.to_json()
    }

    pub fn booking_dto(&self, id: i64) -> Value {
        lock(&self.inner.data).bookings.get(&id).map_or(Value::Null, SimBooking::to_json)
    }

    /// Adds a floor-plan desk (`ItemType`: [`DESK_OFFICE`], [`DESK_DEDICATED`], …).
    pub fn add_desk(&self, id: i64, name: &str, item_type: i64) {
        lock(&self.inner.data).desks.insert(id, SimDesk { id, name: name.to_owned(), item_type });
    }

    /// Adds a bookable resource (a meeting room, say).
    pub fn add_resource(&self, id: i64, name: &str, archived: bool) {
        lock(&self.inner.data).resources.insert(id, (name.to_owned(), archived));
    }

    /// A contract of `coworker_id` from `start` for these desks; returns its id.
    pub fn add_contract(&self, coworker_id: i64, tariff: &str, start: DateTime<Utc>, desks: &[i64]) -> i64 {
        let mut d = lock(&self.inner.data);
        assert!(d.coworkers.contains_key(&coworker_id), "NexudusSim has no coworker {coworker_id}");
        assert!(desks.iter().all(|k| d.desks.contains_key(k)), "NexudusSim lacks one of the desks {desks:?}");
        let id = Self::next_id(&mut d);
        let now = d.now;
        d.contracts.insert(
            id,
            SimContract {
                id,
                unique_id: uuid::Uuid::new_v4().to_string(),
                coworker_id,
                tariff_name: tariff.to_owned(),
                start,
                cancellation_date: None,
                desks: desks.to_vec(),
                created_on: now,
                updated_on: now,
            },
        );
        id
    }

    /// Cancels a contract as of `date`.
    pub fn cancel_contract(&self, id: i64, date: DateTime<Utc>) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let c = d.contracts.get_mut(&id).unwrap_or_else(|| panic!("NexudusSim has no contract {id}"));
        (c.cancellation_date, c.updated_on) = (Some(date), now);
    }

    /// The contract DTO as GET-by-id and webhooks carry it (with `Desks`).
    pub fn contract_dto(&self, id: i64) -> Value {
        let d = lock(&self.inner.data);
        d.contracts.get(&id).map_or(Value::Null, |c| c.to_json(&d, true))
    }

    /// A team with its paying member and members.
    pub fn add_team(&self, id: i64, name: &str, paying_member: Option<i64>, members: &[i64]) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let team = SimTeam {
            id,
            name: name.to_owned(),
            paying_member,
            members: members.to_vec(),
            created_on: now,
            updated_on: now,
        };
        d.teams.insert(id, team);
    }

    /// Replaces a team's members (adding or removing someone updates the team).
    pub fn set_team_members(&self, id: i64, members: &[i64]) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let t = d.teams.get_mut(&id).unwrap_or_else(|| panic!("NexudusSim has no team {id}"));
        (t.members, t.updated_on) = (members.to_vec(), now);
    }

    /// The team DTO as GET-by-id and webhooks carry it (with `TeamMembers`).
    pub fn team_dto(&self, id: i64) -> Value {
        lock(&self.inner.data).teams.get(&id).map_or(Value::Null, |t| t.to_json(true))
    }

    /// Registers a visitor of `host` expected at `arrival`; returns the visitor id.
    pub fn register_visitor(&self, host: i64, full_name: &str, email: &str, arrival: DateTime<Utc>) -> i64 {
        self.add_visitor(host, full_name, email, Some(arrival))
    }

    /// Registers a walk-in of `host` (no expected arrival); returns the visitor id.
    pub fn register_walk_in(&self, host: i64, full_name: &str, email: &str) -> i64 {
        self.add_visitor(host, full_name, email, None)
    }

    /// Reception checks the visitor in now (`Arrived`, `ArrivalDate`), as `VisitorCheckedin`.
    pub fn check_in_visitor(&self, id: i64) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let v = d.visitors.get_mut(&id).unwrap_or_else(|| panic!("NexudusSim has no visitor {id}"));
        v.arrived = Some(now);
        v.updated_on = now;
    }

    fn add_visitor(&self, host: i64, full_name: &str, email: &str, arrival: Option<DateTime<Utc>>) -> i64 {
        let mut d = lock(&self.inner.data);
        let id = Self::next_id(&mut d);
        let now = d.now;
        let visitor = SimVisitor {
            id,
            host,
            full_name: full_name.to_owned(),
            email: email.to_owned(),
            expected_arrival: arrival,
            arrived: None,
            departure: None,
            created_on: now,
            updated_on: now,
        };
        d.visitors.insert(id, visitor);
        id
    }

    /// Visitor times in business-local time of `zone` (no zone in the value), as the portal
    /// API documents `ExpectedArrival` and `ArrivalDate`; `None`: UTC with `Z`.
    pub fn set_visitor_zone(&self, zone: Option<&str>) {
        lock(&self.inner.data).visitor_zone = zone.map(|z| shared::localtime::Zone::parse(z).expect("zone"));
    }

    /// Removes a visitor; returns the last DTO, which `VisitorDeleted` carries.
    pub fn delete_visitor(&self, id: i64) -> Value {
        let mut d = lock(&self.inner.data);
        let v = d.visitors.remove(&id).unwrap_or_else(|| panic!("NexudusSim has no visitor {id}"));
        v.to_json(d.visitor_zone.as_ref())
    }

    pub fn visitor_dto(&self, id: i64) -> Value {
        let d = lock(&self.inner.data);
        d.visitors.get(&id).map_or(Value::Null, |v| v.to_json(d.visitor_zone.as_ref()))
    }

    /// The CoworkerTimePass DTO; `Null` if unknown.
    pub fn pass_dto(&self, id: i64) -> Value {
        let d = lock(&self.inner.data);
        d.passes.get(&id).map_or(Value::Null, |p| p.to_json(&d))
    }

    /// Every check-in, oldest first (as `GET spaces/checkins/{id}` answers each).
    pub fn checkins(&self) -> Vec<Value> {
        lock(&self.inner.data).checkins.values().cloned().collect()
    }

    /// Checks a customer in by hand (NexIO, the front desk), as an open check-in.
    pub fn check_in_by_hand(&self, coworker_id: i64, business_id: i64) -> i64 {
        let mut d = lock(&self.inner.data);
        let id = d.next_pass_id;
        d.next_pass_id += 1;
        let now = iso(&d.now);
        d.checkins.insert(
            id,
            json!({ "Id": id, "CoworkerId": coworker_id, "BusinessId": business_id, "FromTime": now.clone(),
                    "ToTime": null, "Source": 1, "CreatedOn": now.clone(), "UpdatedOn": now }),
        );
        id
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
    // .NET encodes UTF-16 units: a character outside the BMP (an emoji) becomes `??`.
    String::from_utf8_lossy(bytes)
        .chars()
        .flat_map(|c| {
            let (byte, n) = if c.is_ascii() { (c as u8, 1) } else { (b'?', c.len_utf16()) };
            std::iter::repeat_n(byte, n)
        })
        .collect()
}

fn hmac_hex(key: &[u8], msg: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(msg);
    hex::encode_upper(mac.finalize().into_bytes())
}

impl Coworker {
    /// `with_collections`: GET-by-id and webhooks carry `Teams`; list answers omit it.
    fn to_json(&self, d: &Data, with_collections: bool) -> Value {
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
            let teams: Vec<i64> = d
                .teams
                .values()
                .filter(|t| t.members.contains(&self.id) || t.paying_member == Some(self.id))
                .map(|t| t.id)
                .collect();
            obj.insert("Teams".into(), json!(teams));
        }
        v
    }
}

impl SimBooking {
    fn to_json(&self) -> Value {
        json!({
            "Id": self.id,
            "UniqueId": self.unique_id,
            "BusinessId": BUSINESS_ID,
            "ResourceId": self.resource_id,
            "ResourceName": self.resource_name,
            "FloorPlanDeskId": null,
            "CoworkerId": self.coworker_id,
            "FromTime": iso(&self.from),
            "ToTime": iso(&self.to),
            "Tentative": false,
            "Online": true,
            "Invoiced": false,
            "BookingNumber": self.id,
            "CreatedOn": iso(&self.created_on),
            "UpdatedOn": iso(&self.updated_on),
            "UpdatedBy": UPDATED_BY,
            "IsNew": false,
            "SystemId": null,
        })
    }
}

impl SimDesk {
    fn to_json(&self) -> Value {
        json!({
            "Id": self.id,
            "Name": self.name,
            "ItemType": self.item_type,
            "FloorPlanBusinessId": BUSINESS_ID,
            "Available": true,
        })
    }
}

impl SimContract {
    /// `with_collections`: GET-by-id and webhooks carry `Desks`; list answers omit it.
    fn to_json(&self, d: &Data, with_collections: bool) -> Value {
        let email = d.coworkers.get(&self.coworker_id).map(|c| c.email.clone());
        let mut v = json!({
            "Id": self.id,
            "UniqueId": self.unique_id,
            "CoworkerId": self.coworker_id,
            "CoworkerEmail": email,
            "TariffName": self.tariff_name,
            "StartDate": iso(&self.start),
            "Active": self.cancellation_date.is_none_or(|c| c > d.now),
            "Cancelled": self.cancellation_date.is_some(),
            "CancellationDate": iso_opt(&self.cancellation_date),
            "FloorPlanDeskIds": self.desks.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
            "CreatedOn": iso(&self.created_on),
            "UpdatedOn": iso(&self.updated_on),
            "UpdatedBy": UPDATED_BY,
            "IsNew": false,
            "SystemId": null,
        });
        if let (true, Some(obj)) = (with_collections, v.as_object_mut()) {
            obj.insert("Desks".into(), json!(self.desks));
        }
        v
    }
}

impl SimTeam {
    /// `with_collections`: GET-by-id and webhooks carry `TeamMembers`; list answers omit it.
    fn to_json(&self, with_collections: bool) -> Value {
        let mut v = json!({
            "Id": self.id,
            "BusinessId": BUSINESS_ID,
            "Name": self.name,
            "PayingMemberId": self.paying_member,
            "CreatedOn": iso(&self.created_on),
            "UpdatedOn": iso(&self.updated_on),
            "UpdatedBy": UPDATED_BY,
            "IsNew": false,
            "SystemId": null,
        });
        if let (true, Some(obj)) = (with_collections, v.as_object_mut()) {
            obj.insert("TeamMembers".into(), json!(self.members));
        }
        v
    }
}

impl SimVisitor {
    fn to_json(&self, zone: Option<&shared::localtime::Zone>) -> Value {
        let time = |t: &Option<DateTime<Utc>>| match (t, zone) {
            (Some(t), Some(z)) => {
                z.local_of(*t).map_or(Value::Null, |l| json!(l.format("%Y-%m-%dT%H:%M:%S").to_string()))
            }
            _ => iso_opt(t),
        };
        json!({
            "Id": self.id,
            "BusinessId": BUSINESS_ID,
            "FullName": self.full_name,
            "Email": self.email,
            "CoworkerId": self.host,
            "ExpectedArrival": time(&self.expected_arrival),
            "Arrived": self.arrived.is_some(),
            "ArrivalDate": time(&self.arrived),
            "DepartureDate": time(&self.departure),
            "HostApprovalStatus": 1,
            "CreatedOn": iso(&self.created_on),
            "UpdatedOn": iso(&self.updated_on),
            "UpdatedBy": UPDATED_BY,
            "IsNew": false,
            "SystemId": null,
        })
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
        // Each route's source is in [`ROUTES`]; `route_table.rs` checks they agree.
        match (method, &lower[1..]) {
            // developers.nexudus.com get-coworkers-batch: `?id=[…]`, a bare array of full records.
            ("GET", ["spaces", "coworkers"]) if param(&query, "id").is_some() => {
                self.batch(&query, |d, id| d.coworkers.get(&id).map(|c| c.to_json(d, true)))
            }
            ("GET", ["spaces", "coworkers"]) => self.list_coworkers(&query),
            ("GET", ["spaces", "coworkers", _]) => {
                self.by_id(&segs[3], |d, id| d.coworkers.get(&id).map(|c| c.to_json(d, true)))
            }
            ("GET", ["spaces", "bookings"]) => self.list_bookings(&query),
            ("GET", ["spaces", "bookings", _]) => {
                self.by_id(&segs[3], |d, id| d.bookings.get(&id).map(SimBooking::to_json))
            }
            // developers.nexudus.com get-coworkercontracts-batch: as above, each with `Desks`.
            ("GET", ["billing", "coworkercontracts"]) if param(&query, "id").is_some() => {
                self.batch(&query, |d, id| d.contracts.get(&id).map(|c| c.to_json(d, true)))
            }
            ("GET", ["billing", "coworkercontracts"]) => self.list_contracts(&query),
            ("GET", ["billing", "coworkercontracts", _]) => {
                self.by_id(&segs[3], |d, id| d.contracts.get(&id).map(|c| c.to_json(d, true)))
            }
            ("GET", ["sys", "floorplandesks"]) => {
                let d = lock(&self.data);
                paged(&query, d.desks.values().map(SimDesk::to_json).collect())
            }
            ("GET", ["sys", "floorplandesks", _]) => {
                self.by_id(&segs[3], |d, id| d.desks.get(&id).map(SimDesk::to_json))
            }
            ("GET", ["spaces", "resources"]) => {
                let d = lock(&self.data);
                paged(&query, d.resources.iter().map(|(id, r)| resource_json(*id, r)).collect())
            }
            ("GET", ["spaces", "resources", _]) => {
                self.by_id(&segs[3], |d, id| d.resources.get(&id).map(|r| resource_json(id, r)))
            }
            ("GET", ["spaces", "teams"]) => self.list_teams(&query),
            ("GET", ["spaces", "teams", _]) => {
                self.by_id(&segs[3], |d, id| d.teams.get(&id).map(|t| t.to_json(true)))
            }
            ("GET", ["spaces", "visitors"]) => self.list_visitors(&query),
            ("GET", ["spaces", "visitors", _]) => {
                self.by_id(&segs[3], |d, id| d.visitors.get(&id).map(|v| v.to_json(d.visitor_zone.as_ref())))
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
            ("GET", ["spaces", "checkins"]) => self.list_checkins(&query),
            ("GET", ["spaces", "checkins", _]) => self.by_id(&segs[3], |d, id| d.checkins.get(&id).cloned()),
            ("POST", ["spaces", "checkins"]) => self.write_checkin(body, false).await,
            ("PUT", ["spaces", "checkins"]) => self.write_checkin(body, true).await,
            _ => self.no_resource(),
        }
    }

    /// `GET spaces/checkins`: `Checkin_Coworker` filter, `orderBy=FromTime` with `dir` 1/-1.
    fn list_checkins(&self, query: &Query) -> Response {
        let coworker = match param(query, "Checkin_Coworker").map(str::parse::<i64>) {
            None => None,
            Some(Ok(c)) => Some(c),
            Some(Err(_)) => return bad_request("Checkin_Coworker must be an integer."),
        };
        let d = lock(&self.data);
        let mut records: Vec<Value> = d
            .checkins
            .values()
            .filter(|c| coworker.is_none_or(|id| c["CoworkerId"].as_i64() == Some(id)))
            .cloned()
            .collect();
        if param(query, "orderBy").is_some_and(|o| o.eq_ignore_ascii_case("FromTime")) {
            records.sort_by(|a, b| a["FromTime"].as_str().cmp(&b["FromTime"].as_str()));
            if param(query, "dir") == Some("-1") {
                records.reverse();
            }
        }
        paged(query, records)
    }

    /// `POST` (create) or `PUT` (update) a check-in; the answer is the documented
    /// `{Status, Message, Value, WasSuccessful, Errors}`.
    async fn write_checkin(&self, body: Body, update: bool) -> Response {
        let Some(bytes) = body_bytes(body).await else { return bad_request("Unreadable body.") };
        let Ok(Value::Object(mut record)) = serde_json::from_slice::<Value>(&bytes) else {
            return bad_request("The request is invalid.");
        };
        let mut errors = Vec::new();
        for field in ["BusinessId", "FromTime"] {
            if record.get(field).is_none_or(Value::is_null) {
                errors.push(json!({ "PropertyName": field, "Message": format!("{field} is required."), "AttemptedValue": null }));
            }
        }
        if update && record.get("Id").and_then(Value::as_i64).is_none() {
            errors
                .push(json!({ "PropertyName": "Id", "Message": "Id is required.", "AttemptedValue": null }));
        }
        if !errors.is_empty() {
            return json(
                StatusCode::OK,
                json!({ "Status": 400, "Message": "Validation failed", "Value": null, "WasSuccessful": false, "Errors": errors }),
            );
        }
        let mut d = lock(&self.data);
        let now = iso(&d.now);
        let id = if update {
            let id = record.get("Id").and_then(Value::as_i64).unwrap_or_default();
            if !d.checkins.contains_key(&id) {
                return json(
                    StatusCode::OK,
                    json!({ "Status": 404, "Message": "Checkin not found", "Value": null, "WasSuccessful": false, "Errors": [] }),
                );
            }
            id
        } else {
            let id = d.next_pass_id;
            d.next_pass_id += 1;
            record.insert("Id".into(), json!(id));
            record.insert("UniqueId".into(), json!(uuid::Uuid::new_v4().to_string()));
            record.insert("CreatedOn".into(), json!(now.clone()));
            id
        };
        record.entry("ToTime").or_insert(Value::Null);
        record.insert("UpdatedOn".into(), json!(now));
        if let Some(old) = d.checkins.get(&id) {
            for keep in ["UniqueId", "CreatedOn"] {
                if let Some(v) = old.get(keep) {
                    record.insert(keep.into(), v.clone());
                }
            }
        }
        d.checkins.insert(id, Value::Object(record));
        let message =
            if update { "Checkin was successfully updated." } else { "Checkin was successfully created." };
        json(
            StatusCode::OK,
            json!({ "Status": 200, "Message": message, "Value": { "Id": id }, "WasSuccessful": true, "Errors": [] }),
        )
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
        // developers.nexudus.com get-bearer-token: the `client_id` header is required, and a
        // refresh "must [use] the same client id you passed in when creating the access token".
        let Some(client_id) = headers
            .get("client_id")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .map(str::to_owned)
        else {
            return oauth_error("invalid_clientId", "client_id is required.");
        };
        let mut d = lock(&self.data);
        d.token_client_ids.push(client_id.clone());
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
                let valid = d
                    .refresh_tokens
                    .remove(presented)
                    .is_some_and(|(exp, issued_to)| exp > Instant::now() && issued_to == client_id);
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
        d.refresh_tokens.insert(refresh.clone(), (now + REFRESH_TTL, client_id));
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

    /// A batch read: `id` is required as "a comma-separated list of Ids enclosed in square
    /// brackets". Unknown ids are left out (inferred: the pages show no error for them).
    fn batch(&self, query: &Query, find: impl Fn(&Data, i64) -> Option<Value>) -> Response {
        let raw = param(query, "id").unwrap_or_default().trim();
        let ids: Option<Vec<i64>> = raw
            .strip_prefix('[')
            .and_then(|r| r.strip_suffix(']'))
            .map(|inner| inner.split(',').map(|i| i.trim().parse::<i64>().ok()).collect::<Option<Vec<_>>>())
            .unwrap_or(None)
            .filter(|ids| !ids.is_empty());
        let Some(ids) = ids else {
            return bad_request("The request is invalid.");
        };
        let d = lock(&self.data);
        json(StatusCode::OK, Value::Array(ids.into_iter().filter_map(|id| find(&d, id)).collect()))
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
            .map(|c| c.to_json(&d, false))
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

    fn list_bookings(&self, query: &Query) -> Response {
        let coworker = match param(query, "Booking_Coworker").map(str::parse::<i64>).transpose() {
            Ok(c) => c,
            Err(_) => return bad_request("Booking_Coworker must be an integer."),
        };
        let (ends_from, updated) =
            match (time_param(query, "from_Booking_ToTime"), updated_range(query, "Booking")) {
                (Ok(e), Ok(u)) => (e, u),
                (Err(e), _) | (_, Err(e)) => return bad_request(&e),
            };
        let d = lock(&self.data);
        let records = d
            .bookings
            .values()
            .filter(|b| coworker.is_none_or(|c| b.coworker_id == c))
            .filter(|b| ends_from.is_none_or(|f| b.to >= f))
            .filter(|b| in_range(updated, b.updated_on))
            .map(SimBooking::to_json)
            .collect();
        paged(query, records)
    }

    fn list_contracts(&self, query: &Query) -> Response {
        let coworker = match param(query, "CoworkerContract_Coworker").map(str::parse::<i64>).transpose() {
            Ok(c) => c,
            Err(_) => return bad_request("CoworkerContract_Coworker must be an integer."),
        };
        let updated = match updated_range(query, "CoworkerContract") {
            Ok(r) => r,
            Err(e) => return bad_request(&e),
        };
        let d = lock(&self.data);
        let records = d
            .contracts
            .values()
            .filter(|c| coworker.is_none_or(|w| c.coworker_id == w))
            .filter(|c| in_range(updated, c.updated_on))
            .map(|c| c.to_json(&d, false))
            .collect();
        paged(query, records)
    }

    fn list_teams(&self, query: &Query) -> Response {
        let updated = match updated_range(query, "Team") {
            Ok(r) => r,
            Err(e) => return bad_request(&e),
        };
        let d = lock(&self.data);
        let records =
            d.teams.values().filter(|t| in_range(updated, t.updated_on)).map(|t| t.to_json(false)).collect();
        paged(query, records)
    }

    fn list_visitors(&self, query: &Query) -> Response {
        let (expected_from, arrived_from, updated) = match (
            time_param(query, "from_Visitor_ExpectedArrival"),
            time_param(query, "from_Visitor_ArrivalDate"),
            updated_range(query, "Visitor"),
        ) {
            (Ok(e), Ok(a), Ok(u)) => (e, a, u),
            (Err(e), ..) | (_, Err(e), _) | (.., Err(e)) => return bad_request(&e),
        };
        let d = lock(&self.data);
        // Business-local filters: the zone-less value was parsed as UTC; shift it to the instant.
        let local = |t: Option<DateTime<Utc>>| match (t, &d.visitor_zone) {
            (Some(t), Some(z)) => z.instant_of(t.naive_utc()).ok(),
            (t, _) => t,
        };
        let (expected_from, arrived_from) = (local(expected_from), local(arrived_from));
        // A range filter on a field the record lacks (null) excludes it, as in Nexudus.
        let records = d
            .visitors
            .values()
            .filter(|v| expected_from.is_none_or(|f| v.expected_arrival.is_some_and(|a| a >= f)))
            .filter(|v| arrived_from.is_none_or(|f| v.arrived.is_some_and(|a| a >= f)))
            .filter(|v| in_range(updated, v.updated_on))
            .map(|v| v.to_json(d.visitor_zone.as_ref()))
            .collect();
        paged(query, records)
    }

    fn dump(&self) -> Value {
        let d = lock(&self.data);
        json!({
            "now": iso(&d.now),
            "coworkers": d.coworkers.values().map(|c| c.to_json(&d, true)).collect::<Vec<_>>(),
            "bookings": d.bookings.values().map(SimBooking::to_json).collect::<Vec<_>>(),
            "coworkerContracts": d.contracts.values().map(|c| c.to_json(&d, true)).collect::<Vec<_>>(),
            "floorPlanDesks": d.desks.values().map(SimDesk::to_json).collect::<Vec<_>>(),
            "teams": d.teams.values().map(|t| t.to_json(true)).collect::<Vec<_>>(),
            "visitors": d.visitors.values().map(|v| v.to_json(d.visitor_zone.as_ref())).collect::<Vec<_>>(),
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

/// A `YYYY-MM-DDTHH:mm` range filter (e.g. `from_Booking_ToTime`).
fn time_param(query: &Query, key: &str) -> Result<Option<DateTime<Utc>>, String> {
    param(query, key).map(|v| parse_time(v).ok_or_else(|| format!("{key} is not a date."))).transpose()
}

fn in_range((from, to): Range, t: DateTime<Utc>) -> bool {
    from.is_none_or(|f| t >= f) && to.is_none_or(|u| t <= u)
}

/// A resource as get-resources-by-id shows it (the fields Portier reads, and a few beside).
fn resource_json(id: i64, (name, archived): &(String, bool)) -> Value {
    json!({ "Id": id, "BusinessId": BUSINESS_ID, "Name": name, "ResourceTypeId": 1, "Visible": !archived, "Archived": archived })
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
            .header("client_id", "sim-test")
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
            .header("client_id", "sim-test")
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
        let other = http.post(&token_url).header("client_id", "another").form(&form).send().await;
        assert_eq!(other.expect("call").status(), 400, "a refresh token is bound to its client_id");
        let pair = login(&sim, &http).await;
        let refresh = pair["refresh_token"].as_str().expect("refresh");
        let form = [("grant_type", "refresh_token"), ("refresh_token", refresh)];
        let resp =
            http.post(&token_url).header("client_id", "sim-test").form(&form).send().await.expect("call");
        assert_eq!(resp.status(), 200);
        let fresh: Value = resp.json().await.expect("json");
        let fresh_access = fresh["access_token"].as_str().expect("access");
        assert_eq!(get(&http, &me, fresh_access).await.0, 200);
        let reused =
            http.post(&token_url).header("client_id", "sim-test").form(&form).send().await.expect("call");
        assert_eq!(reused.status(), 400, "the old refresh token is spent");

        let cfg = sim.config();
        let basic = http.get(&me).basic_auth(&cfg.username, Some(&cfg.password)).send().await.expect("call");
        assert_eq!(basic.status(), 200);
        assert_eq!(sim.token_requests(), 7);
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
    async fn bookings_contracts_desks_teams_and_visitors() {
        let sim = NexudusSim::start(NexudusSimConfig::default()).await;
        sim.set_now(at(8));
        sim.add_coworker(7, "Anna", "anna@x.com");
        sim.add_coworker(8, "Ben", "ben@x.com");
        let old = sim.book(7, 12, "Room 1", at(1), at(2));
        let booking = sim.book(7, 12, "Room 1", at(10), at(11));
        sim.book(8, 12, "Room 1", at(12), at(13));
        sim.add_desk(31, "Desk 1", DESK_DEDICATED);
        sim.add_desk(32, "Office 2", DESK_OFFICE);
        let contract = sim.add_contract(7, "Office", at(0), &[31, 32]);
        sim.add_team(900, "Acme", Some(7), &[7, 8]);
        let visitor = sim.register_visitor(7, "Vera", "vera@x.com", at(14));
        let http = Client::new();
        let tok = login(&sim, &http).await["access_token"].as_str().expect("tok").to_owned();
        let base = sim.base_url();

        let url = format!("{base}/spaces/bookings?Booking_Coworker=7&from_Booking_ToTime=2026-12-01T05:00");
        let (_, mine) = get(&http, &url, &tok).await;
        assert_eq!(mine["TotalItems"], 1, "the old booking ended before; Ben's is not Anna's");
        assert_eq!(mine["Records"][0]["Id"], booking);
        assert_eq!(mine["Records"][0]["FromTime"], "2026-12-01T10:00:00Z");
        let (_, all) = get(&http, &format!("{base}/spaces/bookings"), &tok).await;
        assert_eq!(all["TotalItems"], 3);
        assert_eq!(
            get(&http, &format!("{base}/spaces/bookings?from_Booking_ToTime=soon"), &tok).await.0,
            400
        );
        sim.delete_booking(old);
        assert_eq!(get(&http, &format!("{base}/spaces/bookings/{old}"), &tok).await.0, 500);

        let (_, listed) =
            get(&http, &format!("{base}/billing/coworkercontracts?CoworkerContract_Coworker=7"), &tok).await;
        assert!(listed["Records"][0].get("Desks").is_none(), "lists omit collections");
        let (_, one) = get(&http, &format!("{base}/billing/coworkercontracts/{contract}"), &tok).await;
        assert_eq!(one["Desks"], json!([31, 32]));
        assert_eq!(one, sim.contract_dto(contract));
        let (_, office) = get(&http, &format!("{base}/sys/floorplandesks/32"), &tok).await;
        assert_eq!(office["ItemType"], DESK_OFFICE);

        let (_, teams) = get(&http, &format!("{base}/spaces/teams"), &tok).await;
        assert!(teams["Records"][0].get("TeamMembers").is_none());
        assert_eq!(teams["Records"][0]["PayingMemberId"], 7);
        let (_, team) = get(&http, &format!("{base}/spaces/teams/900"), &tok).await;
        assert_eq!(team["TeamMembers"], json!([7, 8]));
        assert_eq!(sim.coworker_dto(8)["Teams"], json!([900]));
        sim.set_now(at(9));
        sim.set_team_members(900, &[7]);
        let url = format!("{base}/spaces/teams?from_Team_UpdatedOn=2026-12-01T08:30");
        assert_eq!(get(&http, &url, &tok).await.1["TotalItems"], 1);
        assert_eq!(sim.coworker_dto(8)["Teams"], json!([]));

        let url = format!("{base}/spaces/visitors?from_Visitor_ExpectedArrival=2026-12-01T13:00");
        let (_, visitors) = get(&http, &url, &tok).await;
        assert_eq!(
            (visitors["Records"][0]["Id"].as_i64(), visitors["Records"][0]["CoworkerId"].as_i64()),
            (Some(visitor), Some(7))
        );
        sim.delete_visitor(visitor);
        assert_eq!(get(&http, &format!("{base}/spaces/visitors/{visitor}"), &tok).await.0, 500);
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
