//! One conformance suite for the [`Store`] trait, run against both backends: embedded SQLite
//! and DynamoDB (a loopback moto server from `PORTIER_TEST_AWS_ENDPOINT`).
//!
//! Every test body is written once, as `async fn name(b: Backend)`; the `conformance!` macro
//! runs it as `sqlite::name` and `dynamo::name`.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;
use shared::clock::{Clock, ManualClock};
use shared::error::InfraError;
use shared::model::{
    Entitlement, EntitlementKind, EntitlementState, Instant, ItemKind, ItemRef, SourceKind, SubjectKey,
    Window,
};
use shared::store::dynamo::DynamoStore;
use shared::store::sqlite::SqliteStore;
use shared::store::{Cond, Item, Records, Store};

/// A store and the clock it judges expiry by.
struct Backend {
    store: Arc<dyn Store>,
    clock: ManualClock,
}

impl Backend {
    fn now(&self) -> Instant {
        self.clock.now()
    }

    fn records(&self) -> Records {
        Records::new(self.store.clone(), Arc::new(self.clock.clone()))
    }
}

fn start() -> Instant {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).single().expect("valid start time")
}

fn sqlite_backend() -> Backend {
    let clock = ManualClock::new(start());
    let store = SqliteStore::open_in_memory(Arc::new(clock.clone())).expect("open in-memory sqlite store");
    Backend { store: Arc::new(store), clock }
}

fn aws_endpoint() -> String {
    match std::env::var("PORTIER_TEST_AWS_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "PORTIER_TEST_AWS_ENDPOINT is not set, so the DynamoDB variants cannot run: \
             start the loopback server: make test, or scripts/moto.sh start \
             (then export the line it prints)"
        ),
    }
}

async fn dynamo_backend() -> Backend {
    let config = shared::aws::sdk_config(Some(&aws_endpoint())).await;
    let clock = ManualClock::new(start());
    // One table per test, so tests run in parallel against one server.
    let table = format!("portier-test-{}", uuid::Uuid::new_v4().simple());
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&config), table, Arc::new(clock.clone()));
    store.create_table_if_missing().await.expect("create the test table (is the moto server running?)");
    store.create_table_if_missing().await.expect("creating an existing table is a no-op");
    Backend { store: Arc::new(store), clock }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::sqlite_backend()).await
                }
            )*
        }
        mod dynamo {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::dynamo_backend().await).await
                }
            )*
        }
    };
}

conformance!(
    absent_twice_conflicts,
    versions_reject_stale_writers,
    tenant_records_read_for_update_refuse_stale_writes,
    conditional_deletes,
    expired_records_are_absent,
    ping_answers,
    queries_isolate_partitions_and_prefixes,
    query_between_is_inclusive_and_ordered,
    records_round_trip_exactly,
    queries_page_past_one_megabyte,
    entitlements_only_move_forward,
    events_are_done_once_per_ttl,
    due_timers_come_from_between_queries,
);

fn is_conflict<T: std::fmt::Debug>(r: Result<T, InfraError>) -> bool {
    matches!(r, Err(InfraError::Conflict))
}

fn versioned(pk: &str, sk: &str, version: u64, data: serde_json::Value) -> Item {
    Item { version, ..Item::new(pk, sk, data) }
}

fn sks(items: &[Item]) -> Vec<&str> {
    items.iter().map(|i| i.sk.as_str()).collect()
}

// ── conditional and versioned writes ────────────────────────────────────────────────────

async fn absent_twice_conflicts(b: Backend) {
    let first = Item::new("SUBJ#t#nexudus#1", "PROFILE", json!({ "n": 1 }));
    b.store.put(&first, Cond::Absent).await.expect("first create");
    let second = Item::new("SUBJ#t#nexudus#1", "PROFILE", json!({ "n": 2 }));
    assert!(is_conflict(b.store.put(&second, Cond::Absent).await), "second create must conflict");
    let stored = b.store.get("SUBJ#t#nexudus#1", "PROFILE").await.expect("get").expect("stored");
    assert_eq!(stored, first, "the losing write changed nothing");
}

async fn versions_reject_stale_writers(b: Backend) {
    let (pk, sk) = ("SUBJ#t#nexudus#2", "PROFILE");
    b.store.put(&versioned(pk, sk, 1, json!({ "n": 1 })), Cond::Absent).await.expect("create v1");

    // Two writers read v1; the first wins, the second is stale.
    b.store.put(&versioned(pk, sk, 2, json!({ "by": "first" })), Cond::Version(1)).await.expect("v1 -> v2");
    let stale = b.store.put(&versioned(pk, sk, 2, json!({ "by": "second" })), Cond::Version(1)).await;
    assert!(is_conflict(stale), "a write based on v1 must conflict once v2 exists");
    assert!(
        is_conflict(b.store.put(&versioned(pk, sk, 9, json!({})), Cond::Version(5)).await),
        "a future version too"
    );

    let stored = b.store.get(pk, sk).await.expect("get").expect("stored");
    assert_eq!((stored.version, stored.data), (2, json!({ "by": "first" })));

    b.store
        .put(&versioned(pk, sk, 3, json!({ "by": "second, retried" })), Cond::Version(2))
        .await
        .expect("v2 -> v3");
    assert_eq!(b.store.get(pk, sk).await.expect("get").map(|i| i.version), Some(3));

    // A versioned write never creates: there is nothing at version 1 here.
    let missing = b.store.put(&versioned(pk, "OTHER", 2, json!({})), Cond::Version(1)).await;
    assert!(is_conflict(missing), "Version(n) on a missing record must conflict");
    assert_eq!(b.store.get(pk, "OTHER").await.expect("get"), None);

    // Always overwrites whatever is there.
    b.store.put(&versioned(pk, sk, 7, json!({ "forced": true })), Cond::Always).await.expect("unconditional");
    assert_eq!(b.store.get(pk, sk).await.expect("get").map(|i| i.version), Some(7));
}

/// A refresh reads a tenant record for update and the worker writes what it merged: two
/// refreshes that read the same state cannot both write (the loser reads again).
async fn tenant_records_read_for_update_refuse_stale_writes(b: Backend) {
    let (records, tenant, sk) = (b.records(), "t".into(), "KBOOKING#B-1");
    let (none, cond) =
        records.tenant_record_for_update::<serde_json::Value>(&tenant, sk).await.expect("read");
    assert_eq!((none, cond), (None, Cond::Absent));
    records.put_tenant_record_if(&tenant, sk, &json!({ "v": 1 }), cond).await.expect("create");
    let stale = records.put_tenant_record_if(&tenant, sk, &json!({ "v": 9 }), cond).await;
    assert!(is_conflict(stale), "a second create from the same read must conflict");

    let (first, cond) = records.tenant_record_for_update(&tenant, sk).await.expect("read");
    assert_eq!((first, cond), (Some(json!({ "v": 1 })), Cond::Version(1)));
    records.put_tenant_record_if(&tenant, sk, &json!({ "v": 2 }), cond).await.expect("v1 -> v2");
    let stale = records.put_tenant_record_if(&tenant, sk, &json!({ "v": 3 }), cond).await;
    assert!(is_conflict(stale), "a write based on v1 must conflict once v2 exists");
    let (now, cond) = records.tenant_record_for_update(&tenant, sk).await.expect("read");
    assert_eq!((now, cond), (Some(json!({ "v": 2 })), Cond::Version(2)));
    assert_eq!(records.tenant_record(&tenant, sk).await.expect("read"), Some(json!({ "v": 2 })));
}

async fn conditional_deletes(b: Backend) {
    let (pk, sk) = ("TENANT#t", "MAP#pass#1001");
    b.store.delete(pk, sk, Cond::Always).await.expect("deleting nothing is fine");
    b.store.delete(pk, sk, Cond::Absent).await.expect("nothing there: Absent holds");
    assert!(is_conflict(b.store.delete(pk, sk, Cond::Version(1)).await), "nothing at version 1");

    b.store.put(&versioned(pk, sk, 3, json!({})), Cond::Absent).await.expect("create");
    assert!(is_conflict(b.store.delete(pk, sk, Cond::Absent).await), "a live record: Absent fails");
    assert!(is_conflict(b.store.delete(pk, sk, Cond::Version(2)).await), "stale version");
    assert!(b.store.get(pk, sk).await.expect("get").is_some(), "failed deletes delete nothing");
    b.store.delete(pk, sk, Cond::Version(3)).await.expect("right version");
    assert_eq!(b.store.get(pk, sk).await.expect("get"), None);
}

// ── expiry ───────────────────────────────────────────────────────────────────────────────

async fn expired_records_are_absent(b: Backend) {
    let pk = "EVENT#evt-1";
    let expires_at = (b.now() + Duration::seconds(60)).timestamp();
    let item = Item { expires_at: Some(expires_at), ..Item::new(pk, "EVENT", json!({ "n": 1 })) };
    b.store.put(&item, Cond::Absent).await.expect("create with expiry");
    assert!(is_conflict(b.store.put(&item, Cond::Absent).await), "live until it expires");
    assert_eq!(b.store.get(pk, "EVENT").await.expect("get"), Some(item.clone()));

    // The expiry instant itself counts as expired (DynamoDB TTL: ttl <= now).
    b.clock.advance(Duration::seconds(60));
    assert_eq!(b.store.get(pk, "EVENT").await.expect("get"), None, "expired: invisible to get");
    assert!(b.store.query(pk, "").await.expect("query").is_empty(), "invisible to query");
    assert!(b.store.query_between(pk, "A", "Z").await.expect("between").is_empty(), "invisible to between");
    assert!(is_conflict(b.store.put(&versioned(pk, "EVENT", 2, json!({})), Cond::Version(1)).await));
    assert!(is_conflict(b.store.delete(pk, "EVENT", Cond::Version(1)).await), "no live version to match");

    // Absent succeeds over the expired record (a replayed event id after the TTL).
    let again = Item {
        expires_at: Some((b.now() + Duration::days(14)).timestamp()),
        ..Item::new(pk, "EVENT", json!({ "n": 2 }))
    };
    b.store.put(&again, Cond::Absent).await.expect("Absent over an expired record");
    assert_eq!(b.store.get(pk, "EVENT").await.expect("get").map(|i| i.data), Some(json!({ "n": 2 })));

    // A record without expiry never expires; Always can also revive a key.
    let forever = Item::new(pk, "FOREVER", json!({}));
    b.store.put(&forever, Cond::Always).await.expect("put");
    b.clock.advance(Duration::days(3650));
    assert_eq!(b.store.get(pk, "FOREVER").await.expect("get"), Some(forever));
    assert_eq!(b.store.get(pk, "EVENT").await.expect("get"), None);
    b.store
        .delete(pk, "EVENT", Cond::Absent)
        .await
        .expect("an expired record counts as absent for delete too");
}

async fn ping_answers(b: Backend) {
    b.store.ping().await.expect("ping");
    b.store.put(&Item::new("A", "B", json!(1)), Cond::Always).await.expect("put");
    b.store.ping().await.expect("ping after a write");
}

// ── queries ──────────────────────────────────────────────────────────────────────────────

async fn queries_isolate_partitions_and_prefixes(b: Backend) {
    // Written out of order: queries return sort-key order.
    for (pk, sk) in [
        ("SUBJ#a", "FAIL#tapkey#l1"),
        ("SUBJ#a", "ENT#pass#2"),
        ("SUBJ#ab", "ENT#pass#3"),
        ("SUBJ#a", "APPLIED#tapkey#l1#-"),
        ("SUBJ#a", "ENT#pass#10"),
        ("SUBJ#a", "ENT#pass#1"),
        ("SUBJ#a", "ENTX"),
        ("SUBJ#a", "PROFILE"),
        ("SUBJ#", "ENT#pass#1"),
    ] {
        b.store.put(&Item::new(pk, sk, json!({ "pk": pk, "sk": sk })), Cond::Always).await.expect("put");
    }
    let ents = b.store.query("SUBJ#a", "ENT#").await.expect("query");
    assert_eq!(sks(&ents), ["ENT#pass#1", "ENT#pass#10", "ENT#pass#2"], "byte order, this partition only");
    assert!(ents.iter().all(|i| i.pk == "SUBJ#a"));
    assert_eq!(
        sks(&b.store.query("SUBJ#a", "ENT#pass#1").await.expect("query")),
        ["ENT#pass#1", "ENT#pass#10"]
    );
    assert_eq!(sks(&b.store.query("SUBJ#ab", "ENT#").await.expect("query")), ["ENT#pass#3"]);
    assert_eq!(
        sks(&b.store.query("SUBJ#a", "").await.expect("query")),
        [
            "APPLIED#tapkey#l1#-",
            "ENT#pass#1",
            "ENT#pass#10",
            "ENT#pass#2",
            "ENTX",
            "FAIL#tapkey#l1",
            "PROFILE"
        ]
    );
    assert!(b.store.query("SUBJ#a", "ent#").await.expect("query").is_empty(), "prefixes are case-sensitive");
    assert!(b.store.query("SUBJ#a", "ENT_").await.expect("query").is_empty(), "no wildcards");
    assert!(b.store.query("SUBJ#nobody", "").await.expect("query").is_empty());
}

async fn query_between_is_inclusive_and_ordered(b: Backend) {
    let pk = "TIMER#2026-12-01T09";
    for minute in [30, 5, 59, 0, 15] {
        let sk = format!("2026-12-01T09:{minute:02}:00Z#t#nexudus#{minute}");
        b.store.put(&Item::new(pk, sk, json!({ "m": minute })), Cond::Always).await.expect("put");
    }
    b.store
        .put(&Item::new("TIMER#2026-12-01T10", "2026-12-01T10:00:00Z#x", json!({})), Cond::Always)
        .await
        .expect("put");
    let minutes =
        |items: Vec<Item>| items.into_iter().map(|i| i.data["m"].as_i64().unwrap_or(-1)).collect::<Vec<_>>();

    let got = b.store.query_between(pk, "2026-12-01T09:05:00Z#t#nexudus#5", "2026-12-01T09:30:00Z~").await;
    assert_eq!(minutes(got.expect("between")), [5, 15, 30], "both bounds inclusive");
    let got = b.store.query_between(pk, "", "2026-12-01T09:15:00Z~").await;
    assert_eq!(minutes(got.expect("between")), [0, 5, 15], "an empty lower bound means from the start");
    let got = b.store.query_between(pk, "2026-12-01T09:30:00Z", "2026-12-01T09:05:00Z").await;
    assert!(got.expect("between").is_empty(), "from > to matches nothing");
}

async fn records_round_trip_exactly(b: Backend) {
    let data = json!({
        "name": "Zoë Ångström ✓",
        "email": "zoe@example.com",
        "nested": { "list": [1, 2.5, -3, null, true, "x"], "empty": {} },
        "big": 9_007_199_254_740_993_u64,
    });
    let item = Item {
        version: 42,
        expires_at: Some(4_102_444_800),
        ..Item::new("SUBJ#t#nexudus#ü", "ENT#pass#é", data)
    };
    b.store.put(&item, Cond::Absent).await.expect("put");
    assert_eq!(b.store.get(&item.pk, &item.sk).await.expect("get"), Some(item.clone()));
    assert_eq!(b.store.query(&item.pk, "ENT#").await.expect("query"), vec![item]);
}

async fn queries_page_past_one_megabyte(b: Backend) {
    // DynamoDB answers a query in pages of at most 1 MB; 24 × 60 kB needs two.
    let pad = "x".repeat(60_000);
    for n in 0..24 {
        let item = Item::new(
            "QUARANTINE#t",
            format!("2026-12-01T09:00:{n:02}Z#evt-{n}"),
            json!({ "n": n, "pad": pad }),
        );
        b.store.put(&item, Cond::Always).await.expect("put");
    }
    let got = b.store.query("QUARANTINE#t", "2026-").await.expect("query");
    let ns: Vec<i64> = got.iter().map(|i| i.data["n"].as_i64().unwrap_or(-1)).collect();
    assert_eq!(ns, (0..24).collect::<Vec<_>>(), "every page, in order");
    assert_eq!(b.store.query_between("QUARANTINE#t", "", "~").await.expect("between").len(), 24);
}

// ── typed records on top ─────────────────────────────────────────────────────────────────

fn entitlement(version: Instant, state: EntitlementState) -> Entitlement {
    Entitlement {
        kind: EntitlementKind::Pass,
        id: "cp-77".into(),
        item: ItemRef { kind: ItemKind::Pass, id: "1001".into() },
        label: "Bike Storage".into(),
        window: Window::new(Some(start()), Some(start() + Duration::days(30))),
        state,
        source_version: version,
    }
}

async fn entitlements_only_move_forward(b: Backend) {
    let records = b.records();
    let subject = SubjectKey::new(&"space-berlin".into(), SourceKind::Nexudus, "456");
    let v1 = start() - Duration::hours(2);
    let v2 = start() - Duration::hours(1);

    let newer = entitlement(v2, EntitlementState::Active);
    assert!(
        records
            .save_entitlement(&subject, &newer, shared::model::Seen::Read(records.now()))
            .await
            .expect("save v2")
    );
    let older = entitlement(v1, EntitlementState::Ended { reason: "used".into() });
    assert!(
        !records
            .save_entitlement(&subject, &older, shared::model::Seen::Read(records.now()))
            .await
            .expect("save v1"),
        "older never overwrites"
    );
    assert!(
        !records
            .save_entitlement(&subject, &newer, shared::model::Seen::Read(records.now()))
            .await
            .expect("save v2 again"),
        "a replay changes nothing"
    );
    assert_eq!(records.entitlements(&subject).await.expect("load"), vec![newer.clone()]);

    let ended = entitlement(v2 + Duration::minutes(5), EntitlementState::Ended { reason: "used".into() });
    assert!(
        records
            .save_entitlement(&subject, &ended, shared::model::Seen::Read(records.now()))
            .await
            .expect("save v3")
    );
    assert_eq!(records.entitlements(&subject).await.expect("load"), vec![ended]);
    let other = SubjectKey::new(&"space-berlin".into(), SourceKind::Nexudus, "4567");
    assert!(records.entitlements(&other).await.expect("load").is_empty(), "subjects are separate partitions");
}

async fn events_are_done_once_per_ttl(b: Backend) {
    let records = b.records();
    assert!(!records.event_done("evt-9").await.expect("event_done"));
    assert!(records.mark_event_done("evt-9").await.expect("first"), "first time: true");
    assert!(!records.mark_event_done("evt-9").await.expect("second"), "replay: false");
    assert!(records.event_done("evt-9").await.expect("event_done"));
    assert!(records.mark_event_done("evt-10").await.expect("another id"));

    b.clock.advance(Duration::days(shared::store::records::EVENT_TTL_DAYS) + Duration::seconds(1));
    assert!(!records.event_done("evt-9").await.expect("event_done"), "forgotten after the TTL");
    assert!(records.mark_event_done("evt-9").await.expect("after TTL"), "expired record counts as absent");
}

async fn due_timers_come_from_between_queries(b: Backend) {
    let records = b.records();
    let alice = SubjectKey::new(&"t".into(), SourceKind::Nexudus, "1");
    let bob = SubjectKey::new(&"t".into(), SourceKind::Nexudus, "2");
    records.set_timer(&alice, b.now() + Duration::minutes(10)).await.expect("timer");
    records.set_timer(&bob, b.now() + Duration::minutes(90)).await.expect("timer");
    assert!(records.due_timers(b.now()).await.expect("due").is_empty());

    b.clock.advance(Duration::minutes(10));
    let due = records.due_timers(b.now()).await.expect("due");
    assert_eq!(due.iter().map(|(s, _)| s).collect::<Vec<_>>(), [&alice]);

    b.clock.advance(Duration::hours(3));
    assert_eq!(records.due_timers(b.now()).await.expect("due").len(), 2, "missed timers are caught up");
}
