//! Kinnovis simulator: the contract Portier implements (reference: source-systems.md §6).
//!
//! Serves the export API (`GET /api/locations/{loc}/bookings?updated_since=&page=&page_size=`
//! → `{items, next_page}`, `GET /api/locations/{loc}/units` → `{items}`) behind
//! `Authorization: Bearer <api key>`, keeps bookings with a `version` that grows with every
//! change, and builds webhooks signed with Standard Webhooks (`webhook-id`,
//! `webhook-timestamp`, `webhook-signature: v1,<base64>`), with its own HMAC code so a bug in
//! Portier's verifier cannot hide behind the same bug here.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use chrono::{DateTime, NaiveDate, Utc};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use super::nexudus::SimWebhook;
use super::{
    Call, Core, FaultHandle, Profile, Route, Server, bearer, iso, json, lock, param, parse_form, parse_time,
    segments,
};

/// The location, export API key and webhook secret of the simulated account.
#[derive(Debug, Clone)]
pub struct KinnovisSimConfig {
    pub location_id: String,
    pub api_key: String,
    /// `whsec_` + base64 of the key bytes.
    pub webhook_secret: String,
}

impl Default for KinnovisSimConfig {
    fn default() -> Self {
        Self {
            location_id: "loc-vienna-1".into(),
            api_key: "kv-sim-api-key".into(),
            webhook_secret: format!("whsec_{}", B64.encode(b"kinnovis-sim-signing-key-32bytes")),
        }
    }
}

struct Booking {
    id: String,
    version: u64,
    status: &'static str,
    unit_id: String,
    customer_id: String,
    email: String,
    name: String,
    move_in: NaiveDate,
    move_out: Option<NaiveDate>,
    access: &'static str,
    reason: Option<&'static str>,
    shared: Vec<String>,
    updated_at: DateTime<Utc>,
}

struct Data {
    now: DateTime<Utc>,
    /// Unit id → name.
    units: BTreeMap<String, String>,
    bookings: BTreeMap<String, Booking>,
    next_id: u32,
}

struct Inner {
    cfg: KinnovisSimConfig,
    core: Core,
    data: Mutex<Data>,
}

/// Every route this simulator answers. Kinnovis publishes no API: these are Portier's own
/// contract (`reference/source-systems.md` §6); anything else is 404.
pub const ROUTES: &[Route] = &[
    Route::new(
        "GET",
        "/api/locations/{location_id}/bookings",
        "reference/source-systems.md §6 (Portier's contract)",
    ),
    Route::new(
        "GET",
        "/api/locations/{location_id}/units",
        "reference/source-systems.md §6 (Portier's contract)",
    ),
];

/// A running Kinnovis simulator; stops when dropped.
pub struct KinnovisSim {
    server: Server,
    inner: Arc<Inner>,
    http: reqwest::Client,
}

impl KinnovisSim {
    /// The documented routes this simulator answers ([`ROUTES`]).
    pub fn routes(&self) -> &'static [Route] {
        ROUTES
    }

    pub async fn start(cfg: KinnovisSimConfig) -> Self {
        let inner = Arc::new(Inner {
            cfg,
            core: Core::new(Profile {
                // No token endpoint: the API key is static.
                token_path: "/_no_token_endpoint",
                throttle_status: StatusCode::TOO_MANY_REQUESTS,
                throttle_html: None,
                error_body: |status, message| json!({ "error": status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_"), "message": message }),
            }),
            data: Mutex::new(Data {
                now: Utc::now(),
                units: BTreeMap::new(),
                bookings: BTreeMap::new(),
                next_id: 1042,
            }),
        });
        let router = Router::new().fallback(handle).with_state(inner.clone());
        Self { server: Server::start(router).await, inner, http: reqwest::Client::new() }
    }

    /// `http://127.0.0.1:PORT/api`
    pub fn base_url(&self) -> String {
        format!("{}/api", self.server.origin())
    }

    pub fn config(&self) -> &KinnovisSimConfig {
        &self.inner.cfg
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }

    /// The sim clock: stamps changes, `occurred_at` and `webhook-timestamp`.
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

    pub fn add_unit(&self, id: &str, name: &str) {
        lock(&self.inner.data).units.insert(id.to_owned(), name.to_owned());
    }

    /// Books a unit (by name) for a customer; `reserved` before move-in, else `active`.
    /// Returns the booking id. Panics on an unknown unit (a test bug).
    pub fn create_booking(
        &self,
        unit_name: &str,
        email: &str,
        name: &str,
        move_in: NaiveDate,
        move_out: Option<NaiveDate>,
    ) -> String {
        let mut d = lock(&self.inner.data);
        let unit_id = d
            .units
            .iter()
            .find(|(_, n)| n.as_str() == unit_name)
            .map(|(id, _)| id.clone())
            .unwrap_or_else(|| panic!("KinnovisSim has no unit {unit_name}"));
        let id = format!("B-{}", d.next_id);
        d.next_id += 1;
        let now = d.now;
        let status = if move_in > now.date_naive() { "reserved" } else { "active" };
        let customer_id = format!("C-{}", d.next_id);
        d.bookings.insert(
            id.clone(),
            Booking {
                id: id.clone(),
                version: 1,
                status,
                unit_id,
                customer_id,
                email: email.to_owned(),
                name: name.to_owned(),
                move_in,
                move_out,
                access: "granted",
                reason: None,
                shared: Vec::new(),
                updated_at: now,
            },
        );
        id
    }

    fn change(&self, id: &str, f: impl FnOnce(&mut Booking)) {
        let mut d = lock(&self.inner.data);
        let now = d.now;
        let b = d.bookings.get_mut(id).unwrap_or_else(|| panic!("KinnovisSim has no booking {id}"));
        f(b);
        b.version += 1;
        b.updated_at = now;
    }

    pub fn set_move_out(&self, id: &str, move_out: Option<NaiveDate>) {
        self.change(id, |b| b.move_out = move_out);
    }

    pub fn set_status(&self, id: &str, status: &'static str) {
        self.change(id, |b| b.status = status);
    }

    pub fn set_shared_access(&self, id: &str, emails: &[&str]) {
        self.change(id, |b| b.shared = emails.iter().map(|e| (*e).to_owned()).collect());
    }

    pub fn set_customer_email(&self, id: &str, email: &str) {
        self.change(id, |b| b.email = email.to_owned());
    }

    /// Auto-lock (`overdue`) or a manual revoke.
    pub fn revoke(&self, id: &str, reason: &'static str) {
        self.change(id, |b| {
            b.access = "revoked";
            b.reason = Some(reason);
        });
    }

    pub fn restore(&self, id: &str) {
        self.change(id, |b| {
            b.access = "granted";
            b.reason = None;
        });
    }

    /// The booking as the contract carries it; `Null` if unknown.
    pub fn booking_json(&self, id: &str) -> Value {
        let d = lock(&self.inner.data);
        d.bookings.get(id).map_or(Value::Null, |b| b.to_json(&d.units))
    }

    /// The body of an event about a booking, now.
    pub fn event(&self, event_type: &str, booking_id: &str) -> Value {
        json!({
            "type": event_type,
            "occurred_at": iso(&self.now()),
            "location_id": self.inner.cfg.location_id,
            "booking": self.booking_json(booking_id),
        })
    }

    /// A signed delivery of the event, with a fresh `webhook-id` and the sim clock's timestamp.
    pub fn webhook(&self, event_type: &str, booking_id: &str) -> SimWebhook {
        let body = serde_json::to_vec(&self.event(event_type, booking_id)).unwrap_or_default();
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        self.sign(event_type, &id, self.now().timestamp(), body)
    }

    /// Signs any body with the sim's secret, for a chosen id and timestamp.
    pub fn sign(&self, event_type: &str, id: &str, timestamp: i64, body: Vec<u8>) -> SimWebhook {
        let signature = standard_signature(&self.inner.cfg.webhook_secret, id, timestamp, &body);
        SimWebhook {
            action: event_type.to_owned(),
            headers: vec![
                ("content-type".into(), "application/json".into()),
                ("webhook-id".into(), id.to_owned()),
                ("webhook-timestamp".into(), timestamp.to_string()),
                ("webhook-signature".into(), signature),
            ],
            body,
        }
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

    pub fn calls(&self) -> Vec<Call> {
        self.inner.core.calls()
    }

    pub fn count(&self, method: &str, path_contains: &str) -> usize {
        self.inner.core.count(method, path_contains)
    }

    pub fn reset_calls(&self) {
        self.inner.core.reset_calls();
    }

    pub fn faults(&self) -> FaultHandle {
        self.inner.core.faults()
    }
}

/// `v1,` + base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` with the `whsec_` key's bytes.
pub fn standard_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key = B64.decode(secret.trim_start_matches("whsec_")).expect("the sim's secret is base64");
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC accepts keys of any length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", B64.encode(mac.finalize().into_bytes()))
}

impl Booking {
    fn to_json(&self, units: &BTreeMap<String, String>) -> Value {
        json!({
            "id": self.id,
            "version": self.version,
            "status": self.status,
            "unit": { "id": self.unit_id, "name": units.get(&self.unit_id).cloned().unwrap_or_default() },
            "customer": { "id": self.customer_id, "email": self.email, "name": self.name },
            "move_in": self.move_in.to_string(),
            "move_out": self.move_out.map(|d| d.to_string()),
            "access": { "state": self.access, "reason": self.reason },
            "shared_access_emails": self.shared,
        })
    }
}

async fn handle(State(inner): State<Arc<Inner>>, req: Request) -> Response {
    inner.core.run(req, |req| async { inner.route(req) }).await
}

impl Inner {
    fn route(&self, req: Request) -> Response {
        let segs = segments(req.uri().path());
        let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
        let query = parse_form(req.uri().query().unwrap_or_default());
        if bearer(req.headers()) != Some(self.cfg.api_key.as_str()) {
            return self.core.error(StatusCode::UNAUTHORIZED, "missing or invalid API key");
        }
        match (req.method().as_str(), segs.as_slice()) {
            // Each route's source is in [`ROUTES`].
            ("GET", ["api", "locations", loc, rest]) if *loc != self.cfg.location_id => {
                let _ = rest;
                self.core.error(StatusCode::NOT_FOUND, "unknown location")
            }
            ("GET", ["api", "locations", _, "units"]) => {
                let d = lock(&self.data);
                let items: Vec<Value> =
                    d.units.iter().map(|(id, name)| json!({ "id": id, "name": name })).collect();
                json(StatusCode::OK, json!({ "items": items }))
            }
            ("GET", ["api", "locations", _, "bookings"]) => self.bookings(&query),
            _ => self.core.error(StatusCode::NOT_FOUND, "no such resource"),
        }
    }

    fn bookings(&self, query: &[(String, String)]) -> Response {
        let number = |key: &str, default: usize| match param(query, key) {
            None => Some(default),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0),
        };
        let (Some(page), Some(size)) = (number("page", 1), number("page_size", 50)) else {
            return self.core.error(StatusCode::BAD_REQUEST, "page and page_size must be positive integers");
        };
        let since = match param(query, "updated_since").map(parse_time) {
            None => None,
            Some(Some(t)) => Some(t),
            Some(None) => {
                return self.core.error(StatusCode::BAD_REQUEST, "updated_since is not a date-time");
            }
        };
        let d = lock(&self.data);
        let all: Vec<Value> = d
            .bookings
            .values()
            .filter(|b| since.is_none_or(|s| b.updated_at >= s))
            .map(|b| b.to_json(&d.units))
            .collect();
        let start = (page - 1).saturating_mul(size);
        let items: Vec<Value> = all.iter().skip(start).take(size).cloned().collect();
        let next = (start + size < all.len()).then_some(page + 1);
        json(StatusCode::OK, json!({ "items": items, "next_page": next }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_match_the_standard_webhooks_test_vector() {
        let sig = standard_signature(
            "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD",
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            1_649_367_553,
            br#"{"email":"test@example.com","username":"test_user"}"#,
        );
        assert_eq!(sig, "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=");
    }

    #[tokio::test]
    async fn the_export_pages_filters_and_checks_the_key() {
        let sim = KinnovisSim::start(KinnovisSimConfig::default()).await;
        let t0 = parse_time("2026-11-23T09:00:00Z").expect("time");
        sim.set_now(t0);
        sim.add_unit("U-17", "A-017");
        let day = |d| NaiveDate::from_ymd_opt(2026, 12, d).expect("date");
        for i in 0..3 {
            sim.create_booking("A-017", &format!("c{i}@example.com"), "C", day(1), None);
        }
        sim.set_now(t0 + chrono::Duration::hours(1));
        sim.set_move_out("B-1043", Some(day(20)));
        let http = reqwest::Client::new();
        let key = sim.config().api_key.clone();
        let get = |url: String| {
            let http = http.clone();
            let key = key.clone();
            async move {
                let resp = http.get(url).bearer_auth(key).send().await.expect("call");
                (resp.status().as_u16(), resp.json::<Value>().await.unwrap_or(Value::Null))
            }
        };
        let base = format!("{}/locations/loc-vienna-1", sim.base_url());
        let (status, page1) = get(format!("{base}/bookings?page=1&page_size=2")).await;
        assert_eq!(
            (status, page1["items"].as_array().map(Vec::len), page1["next_page"].as_u64()),
            (200, Some(2), Some(2))
        );
        let (_, page2) = get(format!("{base}/bookings?page=2&page_size=2")).await;
        assert_eq!(
            (page2["items"].as_array().map(Vec::len), page2["next_page"].clone()),
            (Some(1), Value::Null)
        );
        let (_, changed) = get(format!("{base}/bookings?updated_since=2026-11-23T09:30:00Z")).await;
        assert_eq!(changed["items"][0]["id"], "B-1043");
        assert_eq!(changed["items"][0]["version"], 2);
        assert_eq!(changed["items"][0]["move_out"], "2026-12-20");
        let (_, units) = get(format!("{base}/units")).await;
        assert_eq!(units["items"][0], json!({ "id": "U-17", "name": "A-017" }));
        assert_eq!(get(format!("{}/locations/other/units", sim.base_url())).await.0, 404);
        let resp = http.get(format!("{base}/units")).bearer_auth("wrong").send().await.expect("call");
        assert_eq!(resp.status(), 401);
        assert_eq!(sim.count("GET", "/bookings"), 3);
    }
}
