//! Bad input (issue 7, scope 6): property tests over both webhook verifiers, the payload
//! parsers and the ingress itself. Whatever arrives, nothing panics, and nothing reaches the
//! queue unless it was verified with the tenant's secret or token.
//!
//! The `fuzz/` crate drives the same functions with libFuzzer for longer runs (see
//! docs/reliability.md).

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use proptest::prelude::*;
use serde_json::{Value, json};
use shared::clock::{Clock, ManualClock};
use shared::config::{Config, Policy, Providers, SourceConfig, StaticSecrets, TenantConfig};
use shared::ingress::verify::{self, StandardHeaders, WebhookKey};
use shared::ingress::{Ingress, KinnovisRequest, NexudusRequest};
use shared::model::{SourceKind, TenantId};
use shared::queue::Proof;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::sources::Refused;
use shared::sources::kinnovis::dto::Event;
use shared::sources::kinnovis::webhook as kinnovis_webhook;
use shared::sources::nexudus::dto::{Coworker, CoworkerTimePass, parse_time};
use shared::sources::nexudus::webhook::{self as nexudus_webhook, Unparseable};
use shared::store::Records;
use shared::store::sqlite::SqliteStore;
use shared::tenants::{StaticTenants, Tenants};
use testkit::harness::{fast_retries, start_time};

const NX_SECRET: &str = "nx-hook-secret-2026";
const NX_TOKEN: &str = "nx-url-token-7f3a";
const KV_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
const LOCATION: &str = "loc-1";

/// Any JSON value, a few levels deep, with the field names the parsers look for mixed in
/// so the properties reach past the first `missing field` error.
fn json_value() -> impl Strategy<Value = Value> {
    let key = prop_oneof![
        Just("Id".to_owned()),
        Just("CoworkerId".to_owned()),
        Just("TimePassId".to_owned()),
        Just("ExpireDate".to_owned()),
        Just("UpdatedOn".to_owned()),
        Just("type".to_owned()),
        Just("location_id".to_owned()),
        Just("booking".to_owned()),
        Just("email".to_owned()),
        "[a-z_]{1,8}",
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,24}".prop_map(Value::from),
        Just(Value::from("2026-12-01T10:00:00")),
        Just(Value::from("booking.created")),
        Just(Value::from(LOCATION)),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// A valid address now and then, otherwise anything.
fn email() -> impl Strategy<Value = String> {
    prop_oneof![Just("anna@example.com".to_owned()), "[a-z]{1,6}@[a-z]{1,6}\\.[a-z]{2,3}", ".{0,30}"]
}

/// Raw bytes, or the bytes of a JSON value: both kinds of garbage.
fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 0..512),
        json_value().prop_map(|v| serde_json::to_vec(&v).unwrap_or_default()),
    ]
}

fn kinnovis_event(email: &str, shared: Vec<String>) -> Value {
    json!({
        "type": "booking.updated", "occurred_at": "2026-11-23T09:00:00Z", "location_id": LOCATION,
        "booking": { "id": "B-1", "version": 3, "status": "active",
            "unit": { "id": "U-1", "name": "A-017" },
            "customer": { "id": "C-1", "email": email, "name": "Anna" },
            "move_in": "2026-12-01", "move_out": null, "access": { "state": "granted" },
            "shared_access_emails": shared }
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn nexudus_signatures_match_only_the_body_they_sign(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        body in prop::collection::vec(32u8..127, 0..256),
        header in ".{0,80}",
        flip in any::<prop::sample::Index>(),
    ) {
        let good = verify::nexudus_sign(&secret, &body);
        prop_assert!(verify::nexudus_signature(&secret, &body, &good));
        prop_assert!(verify::nexudus_signature(&secret, &body, &good.to_lowercase()));
        // A random header verifies only if it is the signature.
        let random_ok = verify::nexudus_signature(&secret, &body, &header);
        prop_assert_eq!(random_ok, header.trim().eq_ignore_ascii_case(&good));
        // Any other (ASCII) body under the same signature is refused.
        if !body.is_empty() {
            let mut other = body.clone();
            let i = flip.index(other.len());
            other[i] = if other[i] == b'a' { b'b' } else { b'a' };
            prop_assert!(!verify::nexudus_signature(&secret, &other, &good));
        }
    }

    #[test]
    fn nexudus_signatures_never_panic_on_any_bytes(
        secret in prop::collection::vec(any::<u8>(), 0..64),
        body in prop::collection::vec(any::<u8>(), 0..256),
        header in ".{0,80}",
    ) {
        let _ = verify::nexudus_signature(&secret, &body, &header);
    }

    #[test]
    fn url_tokens_match_only_themselves(expected in ".{0,40}", given in proptest::option::of(".{0,40}")) {
        prop_assert_eq!(verify::token(&expected, given.as_deref()), given.as_deref() == Some(expected.as_str()));
    }

    #[test]
    fn standard_webhooks_verify_only_fresh_signed_deliveries(
        key_bytes in prop::collection::vec(any::<u8>(), 1..48),
        id in "[A-Za-z0-9_-]{1,40}",
        body in prop::collection::vec(any::<u8>(), 0..256),
        skew in -400i64..400,
        junk_sig in ".{0,120}",
        junk_ts in ".{0,14}",
    ) {
        let key = WebhookKey::parse(&format!("whsec_{}", B64.encode(&key_bytes))).map_err(TestCaseError::fail)?;
        let now = start_time();
        let ts = now.timestamp() + skew;
        let sig = verify::standard_sign(&key, &id, ts, &body);
        let ts_text = ts.to_string();
        let h = StandardHeaders { id: Some(&id), timestamp: Some(&ts_text), signature: Some(&sig) };
        let fresh = skew.abs() <= verify::STANDARD_WEBHOOK_TOLERANCE_SECS;
        prop_assert_eq!(verify::standard_webhook(&key, h, &body, now).is_ok(), fresh);
        // Another body, another id or a junk signature never verifies.
        let mut other = body.clone();
        other.push(b'x');
        prop_assert!(verify::standard_webhook(&key, h, &other, now).is_err());
        let other_id = format!("{id}x");
        let moved = StandardHeaders { id: Some(&other_id), ..h };
        prop_assert!(verify::standard_webhook(&key, moved, &body, now).is_err());
        let junk = StandardHeaders { signature: Some(&junk_sig), ..h };
        prop_assert!(verify::standard_webhook(&key, junk, &body, now).is_err());
        // Junk timestamps are refused without panicking.
        let r = verify::standard_webhook(&key, StandardHeaders { timestamp: Some(&junk_ts), ..h }, &body, now);
        prop_assert!(r.is_err() || junk_ts.trim().parse::<i64>().ok() == Some(ts));
    }

    #[test]
    fn standard_webhook_keys_and_headers_never_panic(
        secret in ".{0,60}",
        id in proptest::option::of(".{0,300}"),
        ts in proptest::option::of(".{0,30}"),
        sig in proptest::option::of(".{0,200}"),
        body in prop::collection::vec(any::<u8>(), 0..128),
    ) {
        if let Ok(key) = WebhookKey::parse(&secret) {
            let h = StandardHeaders { id: id.as_deref(), timestamp: ts.as_deref(), signature: sig.as_deref() };
            let _ = verify::standard_webhook(&key, h, &body, start_time());
        }
    }

    #[test]
    fn nexudus_payloads_parse_or_say_why(body in body(), action in ".{0,30}") {
        match nexudus_webhook::parse(&TenantId("t".into()), &action, &body, Proof::Signature, start_time()) {
            Ok(messages) => {
                prop_assert!(!messages.is_empty());
                for m in messages {
                    let subject = m.subject;
                    prop_assert_eq!(subject.source, SourceKind::Nexudus, "unexpected subject {}", subject);
                    // Customers are numeric ids; visitors `v<id>`.
                    prop_assert!(
                        !subject.person.is_empty() && subject.person.bytes().all(|b| b.is_ascii_alphanumeric())
                    );
                }
            }
            Err(Unparseable(why)) => prop_assert!(!why.is_empty()),
        }
        let _ = serde_json::from_slice::<Coworker>(&body);
        let _ = serde_json::from_slice::<CoworkerTimePass>(&body);
    }

    #[test]
    fn nexudus_dates_never_panic(s in ".{0,40}") {
        let _ = parse_time(&s);
    }

    #[test]
    fn kinnovis_payloads_parse_or_say_why(body in body(), webhook_id in "[a-z0-9_]{1,20}") {
        let _ = Event::parse(&body);
        match kinnovis_webhook::parse(&TenantId("t".into()), LOCATION, &webhook_id, &body, start_time()) {
            Ok(messages) => prop_assert!(!messages.is_empty()),
            Err(Refused::Unparseable(why) | Refused::NotForTenant(why)) => {
                prop_assert!(!why.is_empty())
            }
        }
    }

    #[test]
    fn kinnovis_emails_are_validated_one_by_one(
        email in email(),
        shared in prop::collection::vec(email(), 0..5),
    ) {
        let body = serde_json::to_vec(&kinnovis_event(&email, shared)).unwrap_or_default();
        if let Ok(messages) = kinnovis_webhook::parse(&TenantId("t".into()), LOCATION, "msg_1", &body, start_time()) {
            // One message per distinct valid address, the customer's always among them.
            prop_assert!(!messages.is_empty() && messages.len() <= 6);
            prop_assert!(shared::model::Email::parse(&email).is_ok());
        }
    }
}

/// An ingress with three tenants (Nexudus signed, Nexudus token, Kinnovis), an embedded queue
/// and store, and no network: nothing behind the queue runs.
struct Gate {
    ingress: Ingress,
    queue: Arc<dyn Queue>,
}

fn nexudus_tenant(id: &str, signed: bool) -> TenantConfig {
    TenantConfig {
        presence: None,
        id: TenantId(id.into()),
        timezone: "Europe/Berlin".into(),
        source: SourceConfig::Nexudus {
            base_url: "http://127.0.0.1:9".into(),
            username_env: "NX_USER".into(),
            password_env: "NX_PASSWORD".into(),
            webhook_secret_env: signed.then(|| "NX_SECRET".into()),
            webhook_token_env: (!signed).then(|| "NX_TOKEN".into()),
            calls_per_minute: None,
        },
        policy: Policy::default(),
        providers: Providers::default(),
        mappings: vec![],
    }
}

fn gate() -> Gate {
    let kinnovis = TenantConfig {
        presence: None,
        id: TenantId("kv".into()),
        timezone: "Europe/Vienna".into(),
        source: SourceConfig::Kinnovis {
            base_url: "http://127.0.0.1:9".into(),
            location_id: LOCATION.into(),
            api_key_env: "KV_KEY".into(),
            webhook_secret_env: "KV_SECRET".into(),
        },
        ..nexudus_tenant("kv", true)
    };
    let config = Config {
        admin: None,
        tenants: vec![nexudus_tenant("nx-sig", true), nexudus_tenant("nx-token", false), kinnovis],
    };
    let secrets = StaticSecrets(BTreeMap::from([
        ("NX_USER".into(), "u".into()),
        ("NX_PASSWORD".into(), "p".into()),
        ("NX_SECRET".into(), NX_SECRET.into()),
        ("NX_TOKEN".into(), NX_TOKEN.into()),
        ("KV_KEY".into(), "k".into()),
        ("KV_SECRET".into(), KV_SECRET.into()),
    ]));
    let clock: Arc<dyn Clock> = Arc::new(ManualClock::new(start_time()));
    let store = SqliteStore::open_in_memory(clock.clone()).unwrap_or_else(|e| panic!("sqlite: {e}"));
    let records = Records::new(Arc::new(store), clock.clone());
    let queue: Arc<dyn Queue> =
        Arc::new(EmbeddedQueue::open_in_memory(clock, 5).unwrap_or_else(|e| panic!("queue: {e}")));
    let tenants: Arc<dyn Tenants> = Arc::new(
        StaticTenants::build(&config, &secrets, fast_retries()).unwrap_or_else(|e| panic!("tenants: {e}")),
    );
    Gate { ingress: Ingress::new(tenants, queue.clone(), records), queue }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"))
}

impl Gate {
    async fn queued(&self) -> u64 {
        self.queue.stats().await.map(|s| s.visible + s.in_flight).unwrap_or_else(|e| panic!("stats: {e}"))
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Unverified Nexudus deliveries (any body, any action, any signature or token that is not
    /// the right one) are answered 4xx and never queued.
    #[test]
    fn unverified_nexudus_webhooks_are_never_queued(
        tenant in prop_oneof![Just("nx-sig".to_owned()), Just("nx-token".to_owned()), Just("kv".to_owned()), ".{0,12}"],
        action in prop_oneof![Just("AccessControlUpdate".to_owned()), Just("CoworkerUpdate".to_owned()), ".{0,20}"],
        body in body(),
        signature in proptest::option::of("[0-9A-F]{64}|.{0,70}"),
        token in proptest::option::of(".{0,24}"),
    ) {
        let rt = runtime();
        let gate = gate();
        let signed = signature.as_deref().is_some_and(|s| verify::nexudus_signature(NX_SECRET.as_bytes(), &body, s));
        let tokened = token.as_deref() == Some(NX_TOKEN);
        let answer = rt.block_on(gate.ingress.nexudus(NexudusRequest {
            tenant: &tenant, action: &action, token: token.as_deref(), signature: signature.as_deref(), body: &body,
        }));
        let queued = rt.block_on(gate.queued());
        let verified = (tenant == "nx-sig" && signed) || (tenant == "nx-token" && tokened);
        prop_assert!(verified || (queued == 0 && answer.status != 202), "{answer:?}");
        prop_assert!(answer.status < 500, "{answer:?}");
    }

    /// Verified Nexudus deliveries with any body are queued exactly when they parse; the rest
    /// go to quarantine with a 400.
    #[test]
    fn verified_nexudus_webhooks_are_queued_only_when_they_parse(body in body()) {
        let rt = runtime();
        let gate = gate();
        let sig = verify::nexudus_sign(NX_SECRET.as_bytes(), &body);
        let answer = rt.block_on(gate.ingress.nexudus(NexudusRequest {
            tenant: "nx-sig", action: "AccessControlUpdate", token: None, signature: Some(&sig), body: &body,
        }));
        let parses = nexudus_webhook::parse(&TenantId("nx-sig".into()), "AccessControlUpdate", &body, Proof::Signature, start_time()).is_ok();
        let queued = rt.block_on(gate.queued());
        prop_assert_eq!(answer.status, if parses { 202 } else { 400 });
        prop_assert_eq!(queued, u64::from(parses));
    }

    /// Standard Webhooks deliveries with random headers are refused and never queued; signed
    /// ones with any body are queued exactly when they parse.
    #[test]
    fn kinnovis_webhooks_are_queued_only_when_signed_fresh_and_parseable(
        body in prop_oneof![body(), (email(), prop::collection::vec(email(), 0..3))
            .prop_map(|(e, s)| serde_json::to_vec(&kinnovis_event(&e, s)).unwrap_or_default())],
        id in proptest::option::of("[a-z0-9_]{1,20}|.{0,20}"),
        ts in proptest::option::of(".{0,12}"),
        sig in proptest::option::of(".{0,100}"),
        sign in any::<bool>(),
    ) {
        let rt = runtime();
        let gate = gate();
        let key = WebhookKey::parse(KV_SECRET).map_err(TestCaseError::fail)?;
        let now = start_time().timestamp();
        let (id, ts, sig) = if sign {
            let id = "msg_prop".to_owned();
            let sig = verify::standard_sign(&key, &id, now, &body);
            (Some(id), Some(now.to_string()), Some(sig))
        } else {
            (id, ts, sig)
        };
        let headers = StandardHeaders { id: id.as_deref(), timestamp: ts.as_deref(), signature: sig.as_deref() };
        let verified = verify::standard_webhook(&key, headers, &body, start_time()).is_ok();
        let answer = rt.block_on(gate.ingress.kinnovis(KinnovisRequest { tenant: "kv", headers, body: &body }));
        let queued = rt.block_on(gate.queued());
        if !verified {
            prop_assert_eq!(answer.status, 401);
            prop_assert_eq!(queued, 0);
        } else {
            let parsed = kinnovis_webhook::parse(&TenantId("kv".into()), LOCATION, "msg_prop", &body, start_time());
            match parsed {
                Ok(messages) => {
                    prop_assert_eq!(answer.status, 202);
                    prop_assert_eq!(queued, messages.len() as u64);
                }
                Err(_) => {
                    prop_assert_eq!(answer.status, 400);
                    prop_assert_eq!(queued, 0);
                }
            }
        }
    }
}
