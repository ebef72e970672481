//! `GET /api/v1/tenants/{tenant}/catalog` against the simulators, as `portier serve --demo`
//! runs it: the source's items and every lock system's locks or groups with their names, read
//! live; a lock system that refuses or does not answer shows why and leaves the others.

use std::time::Duration;

use serde_json::Value;
use testkit::console::{ServedDemo, serve_demo};
use testkit::demo::{DEMO_EVENT_SPACE, DEMO_LOCK, DEMO_PASS, DEMO_STORAGE_TENANT, DEMO_TENANT, DEMO_UNIT};
use testkit::groups::{OFFICE_BRIVO, SALTO_GROUP};

fn data_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("portier-catalog-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

async fn catalog(s: &ServedDemo, tenant: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = reqwest::Client::new().get(format!("{}/api/v1/tenants/{tenant}/catalog", s.url));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.unwrap_or_else(|e| panic!("{e}"));
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or_else(|e| panic!("{e}")))
}

/// The lock system `provider` of a catalog.
fn system<'a>(c: &'a Value, provider: &str) -> &'a Value {
    let systems = c["lock_systems"].as_array().unwrap_or_else(|| panic!("{c}"));
    systems.iter().find(|l| l["provider"] == provider).unwrap_or_else(|| panic!("no {provider}: {c}"))
}

fn has_choice(l: &Value, id: &str, name: &str) -> bool {
    l["choices"].as_array().is_some_and(|cs| cs.iter().any(|c| c["id"] == id && c["name"] == name))
}

#[tokio::test]
async fn the_catalog_lists_every_systems_choices_by_name() {
    let s = serve_demo(&data_dir(), None).await;
    let (status, c) = catalog(&s, DEMO_TENANT, Some(&s.token)).await;
    assert_eq!(status, 200, "{c}");
    let items = c["source"]["items"].as_array().unwrap_or_else(|| panic!("{c}"));
    let named = |kind: &str, id: String, name: &str| {
        items.iter().any(|i| i["item"]["kind"] == kind && i["item"]["id"] == id && i["name"] == name)
    };
    assert!(named("pass", DEMO_PASS.to_string(), "Bike Storage"), "{c}");
    assert!(named("resource", DEMO_EVENT_SPACE.to_string(), "Event space"), "{c}");
    assert_eq!(c["source"]["error"], Value::Null);
    assert!(has_choice(system(&c, "tapkey"), DEMO_LOCK, "Bike Storage Door"), "{c}");
    assert!(has_choice(system(&c, "salto_ks"), SALTO_GROUP, "Coworking floor"), "{c}");
    assert!(has_choice(system(&c, "brivo"), &OFFICE_BRIVO.to_string(), "Office 2"), "{c}");
    for p in ["tapkey", "salto_ks", "brivo"] {
        assert_eq!(system(&c, p)["error"], Value::Null, "{p}");
    }
    // Listed through the documented routes (the simulators record them).
    assert!(s.demo.salto.calls().iter().any(|call| call.path.ends_with("/access_groups")));
    assert!(s.demo.brivo.calls().iter().any(|call| call.path.ends_with("/v1/api/groups")));

    // Kinnovis: the units of Portier's own contract (`…/units`), only Tapkey configured.
    let (status, k) = catalog(&s, DEMO_STORAGE_TENANT, Some(&s.token)).await;
    assert_eq!(status, 200, "{k}");
    assert_eq!(k["source"]["items"][0]["item"], serde_json::json!({"kind": "unit", "id": DEMO_UNIT}));
    assert_eq!(k["lock_systems"].as_array().map(Vec::len), Some(1), "{k}");

    let (status, _) = catalog(&s, DEMO_TENANT, None).await;
    assert_eq!(status, 401, "the admin token comes first");
    let (status, _) = catalog(&s, "nowhere", Some(&s.token)).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_lock_system_that_refuses_or_is_silent_shows_why_and_leaves_the_others() {
    let s = serve_demo(&data_dir(), Some(Duration::from_secs(1))).await;
    // Brivo: the admin lacks the role group listings need (403, a configuration error).
    s.demo.brivo.set_not_config_admin(true);
    // Salto KS: slower than the console waits.
    s.demo.salto.faults().set_latency(Duration::from_secs(3));
    let started = std::time::Instant::now();
    let (status, c) = catalog(&s, DEMO_TENANT, Some(&s.token)).await;
    assert_eq!(status, 200, "{c}");
    assert!(started.elapsed() < Duration::from_secs(3), "the console did not wait for Salto KS");
    let brivo = system(&c, "brivo");
    assert!(brivo["error"].as_str().is_some_and(|e| e.contains("Account Config Tool Administrators")), "{c}");
    assert_eq!(brivo["choices"], serde_json::json!([]));
    let salto = system(&c, "salto_ks");
    assert!(salto["error"].as_str().is_some_and(|e| e.contains("did not answer within 1 s")), "{c}");
    assert!(has_choice(system(&c, "tapkey"), DEMO_LOCK, "Bike Storage Door"), "{c}");

    // The mapping page still renders, with a text field for each such lock system.
    let page = reqwest::Client::new()
        .get(format!("{}/console/tenants/{DEMO_TENANT}/mappings", s.url))
        .header("cookie", signed_in_cookie(&s).await)
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap_or_else(|e| panic!("{e}"));
    assert!(html.contains(r#"<input id="brivo_group" type="text""#), "free entry for Brivo");
    assert!(html.contains(r#"<input id="salto_group" type="text""#), "free entry for Salto KS");
    assert!(html.contains(r#"<select id="tapkey_lock""#), "Tapkey still a drop-down");
}

/// Signs in with the token; the session cookie.
async fn signed_in_cookie(s: &ServedDemo) -> String {
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let resp = http
        .post(format!("{}/console/login", s.url))
        .form(&[("token", s.token.as_str())])
        .send()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let cookie = resp.headers().get("set-cookie").and_then(|v| v.to_str().ok()).unwrap_or_default();
    cookie.split(';').next().unwrap_or_default().to_owned()
}

/// Dead letters: the status page offers "Redrive dead letters", and the API moves them back to
/// the work queue, where the running worker takes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_redriven_from_the_console() {
    use shared::clock::ManualClock;
    use shared::queue::embedded::EmbeddedQueue;
    use shared::queue::{Outgoing, Queue};
    let data = data_dir();
    let s = serve_demo(&data, None).await;
    // A second handle on serve's queue file whose clock is a day ahead: the message it dead-letters
    // is never visible to serve's worker on the way (SQLite serialises the two handles).
    let ahead = ManualClock::new(chrono::Utc::now() + chrono::Duration::days(1));
    let queue = EmbeddedQueue::open(&data.join("queue.db"), std::sync::Arc::new(ahead.clone()), 1)
        .unwrap_or_else(|e| panic!("{e}"));
    let subject =
        shared::model::SubjectKey::new(&DEMO_TENANT.into(), shared::model::SourceKind::Nexudus, "999999");
    let work = shared::queue::WorkMessage::Reconcile {
        subject,
        reason: "test".into(),
        at: chrono::Utc::now(),
        urgent: false,
    };
    let msg = Outgoing { dedup_id: "dl-1".into(), ..work.to_outgoing() };
    queue.send(&msg).await.unwrap_or_else(|e| panic!("{e}"));
    let visibility = Duration::from_secs(30);
    assert_eq!(queue.receive(10, visibility, Duration::ZERO).await.map(|d| d.len()).ok(), Some(1));
    ahead.advance(chrono::Duration::seconds(31));
    assert_eq!(queue.receive(10, visibility, Duration::ZERO).await.map(|d| d.len()).ok(), Some(0));

    let client = reqwest::Client::new();
    let status = |c: &reqwest::Client| c.get(format!("{}/api/v1/status", s.url)).bearer_auth(&s.token).send();
    let v: Value = status(&client)
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v["queue"]["dead"], 1, "{v}");
    let redrive = |token: Option<&str>| {
        let mut req = client.post(format!("{}/api/v1/dead-letters/redrive", s.url));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        req.send()
    };
    assert_eq!(redrive(None).await.map(|r| r.status().as_u16()).ok(), Some(401));
    let moved: Value = redrive(Some(&s.token))
        .await
        .unwrap_or_else(|e| panic!("{e}"))
        .json()
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(moved["redriven"], 1, "{moved}");
    // Serve's worker takes it: the queue empties.
    let mut queue_now = Value::Null;
    for _ in 0..200 {
        queue_now = status(&client)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .json::<Value>()
            .await
            .unwrap_or_else(|e| panic!("{e}"))["queue"]
            .clone();
        if queue_now["dead"] == 0 && queue_now["visible"] == 0 && queue_now["in_flight"] == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert_eq!(
        (queue_now["dead"].as_u64(), queue_now["visible"].as_u64(), queue_now["in_flight"].as_u64()),
        (Some(0), Some(0), Some(0)),
        "{queue_now}"
    );
}
