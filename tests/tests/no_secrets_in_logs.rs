//! Secrets (issue 7, scope 7): every log line of a full scenario — signed and token webhooks
//! from both sources, grants and group memberships at all three providers, provider failures
//! and retries, a quarantined body, a plan limit, an email change and a resync — is captured at
//! TRACE level, and none of it may contain a secret, a token, a signature or a raw email.
//!
//! One test in its own binary: the capturing subscriber is this thread's default, so no other
//! test's logs mix in.

use std::io::Write;
use std::sync::{Arc, Mutex};

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use shared::config::NoAccess;
use testkit::groups::{COWORKING, group_secrets, spawn_groups_app};
use testkit::harness::{ANNA, ANNA_EMAIL, BIKE_STORAGE, HOOK_SECRET, HOOK_TOKEN, secrets};
use testkit::kinnovis_app::{self, BEN as KV_BEN, UNIT, spawn_kinnovis_app, storage_secrets};
use testkit::sim::SimWebhook;

const BEN: i64 = 457;
const BEN_EMAIL: &str = "ben.schmidt@example.com";
const CARLA: i64 = 458;
const CARLA_EMAIL: &str = "carla.rossi@example.com";
const ANNA_NEW_EMAIL: &str = "anna.mueller@example.com";

/// Everything the subscriber writes, shared with the test.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned()
    }
}

/// What must never be logged, gathered while the scenario runs.
#[derive(Default)]
struct Forbidden(Vec<(String, String)>);

impl Forbidden {
    fn add(&mut self, what: &str, value: impl Into<String>) {
        self.0.push((what.to_owned(), value.into()));
    }
    fn hook_headers(&mut self, hook: &SimWebhook) {
        for (name, value) in &hook.headers {
            if name.eq_ignore_ascii_case("x-nexudus-hook-signature") || name == "webhook-signature" {
                self.add("webhook signature", value.clone());
            }
        }
    }
}

fn expiry() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).single().unwrap_or_default()
}

async fn scenario(forbidden: &mut Forbidden) {
    // Nexudus → Tapkey, Salto KS and Brivo.
    let app = spawn_groups_app(NoAccess::Suspend).await;
    for (name, value) in secrets(&app.tapkey).0.into_iter().chain(group_secrets(&app.salto, &app.brivo)) {
        forbidden.add(&name, value);
    }
    forbidden.add("webhook secret", HOOK_SECRET);
    forbidden.add("webhook token", HOOK_TOKEN);

    app.nexudus.add_coworker(BEN, "Ben Schmidt", BEN_EMAIL);
    app.nexudus.add_coworker(CARLA, "Carla Rossi", CARLA_EMAIL);
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry()));
    app.nexudus.give_pass(ANNA, COWORKING, Some(expiry()));
    let hook = app.nexudus.webhook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA));
    forbidden.hook_headers(&hook);
    assert_eq!(app.nexudus.deliver(&app.hook_url("AccessControlUpdate"), &hook).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1);

    // Every provider fails some calls: retries, throttling, a lost response after a write.
    app.tapkey.faults().fail_next(503, 2);
    app.salto.faults().fail_next(500, 2);
    app.salto.faults().throttle_next(2);
    app.brivo.faults().drop_after_write_next(1);
    app.nexudus.give_pass(BEN, COWORKING, Some(expiry()));
    app.nexudus.give_pass(BEN, BIKE_STORAGE, Some(expiry()));
    let hook = app.nexudus.webhook("AccessControlUpdate", &app.nexudus.coworker_dto(BEN));
    forbidden.hook_headers(&hook);
    assert_eq!(app.nexudus.deliver(&app.hook_url("AccessControlUpdate"), &hook).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 2);

    // Refused and quarantined webhooks.
    let mut forged = app.nexudus.webhook("CoworkerUpdate", &app.nexudus.coworker_dto(CARLA));
    for (name, value) in &mut forged.headers {
        if name.eq_ignore_ascii_case("x-nexudus-hook-signature") {
            *value = "00".repeat(32);
        }
    }
    assert_eq!(app.nexudus.deliver(&app.hook_url("CoworkerUpdate"), &forged).await, 401);
    let odd = app.nexudus.webhook("CoworkerUpdate", &serde_json::json!({ "Email": CARLA_EMAIL }));
    forbidden.hook_headers(&odd);
    assert_eq!(app.nexudus.deliver(&app.hook_url("CoworkerUpdate"), &odd).await, 400);

    // A plan limit at Tapkey: a recorded failure with the provider's answer.
    app.tapkey.set_payment_required(true);
    app.nexudus.give_pass(CARLA, BIKE_STORAGE, Some(expiry()));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(CARLA)).await, 202);
    app.drain().await;
    app.tapkey.set_payment_required(false);

    // An email change moves the grant and the memberships; then a full resync.
    app.advance(Duration::minutes(5));
    app.nexudus.update_coworker_email(ANNA, ANNA_NEW_EMAIL);
    assert_eq!(app.hook("CoworkerUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    app.advance(Duration::minutes(61));
    app.tick_and_drain().await;
    app.resync(false).await.unwrap_or_else(|e| panic!("resync: {e}"));
    assert_eq!(app.tapkey.active_grants().len(), 3, "Anna, Ben and (after the cool-down) Carla");

    for token in app.tapkey.issued_tokens().into_iter().chain(app.salto.issued_tokens()) {
        forbidden.add("provider access token", token);
    }
    for token in app.brivo.issued_tokens().into_iter().chain(app.nexudus.issued_tokens()) {
        forbidden.add("access or refresh token", token);
    }

    // Kinnovis → Tapkey, Standard Webhooks.
    let kv = spawn_kinnovis_app().await;
    for (name, value) in storage_secrets(&kv.kinnovis, &kv.tapkey).0 {
        forbidden.add(&name, value);
    }
    let day = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap_or_default();
    let id = kv.kinnovis.create_booking(UNIT, kinnovis_app::ANNA, "Anna Berger", day, None);
    kv.kinnovis.set_shared_access(&id, &[KV_BEN]);
    let hook = kv.kinnovis.webhook("booking.created", &id);
    forbidden.hook_headers(&hook);
    assert_eq!(kv.deliver(&hook).await, 202);
    assert_eq!(kv.deliver(&hook).await, 202, "a replay is answered like the first delivery");
    kv.drain().await;
    assert_eq!(kv.tapkey.active_grants().len(), 2);
    for token in kv.tapkey.issued_tokens() {
        forbidden.add("provider access token", token);
    }

    for email in [ANNA_EMAIL, ANNA_NEW_EMAIL, BEN_EMAIL, CARLA_EMAIL, kinnovis_app::ANNA, KV_BEN] {
        forbidden.add("email", email);
    }
}

#[test]
fn no_secret_token_signature_or_email_is_ever_logged() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("trace,testkit=off"))
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("runtime: {e}"));
    let mut forbidden = Forbidden::default();
    tracing::subscriber::with_default(subscriber, || rt.block_on(scenario(&mut forbidden)));
    drop(rt);

    let logs = captured.text();
    let lower = logs.to_lowercase();
    // The scenario did log (a silent subscriber would pass anything).
    assert!(logs.lines().count() > 50, "only {} log lines:\n{logs}", logs.lines().count());
    assert!(logs.contains("will be retried"), "the failures were logged");
    // Lines inside a reconcile carry its span: the tenant and the hashed subject, once.
    assert!(
        logs.lines()
            .any(|l| l.contains("reconcile{tenant=space-berlin subject=") && l.contains("will be retried")),
        "the reconcile span names whose lines they are:\n{logs}"
    );
    let changed: Vec<&str> = logs.lines().filter(|l| l.contains("provider access changed")).collect();
    assert!(
        !changed.is_empty()
            && changed.iter().all(|l| l.contains("reconcile{") && l.matches("subject=").count() == 1),
        "audit lines carry the span's tenant and subject, and do not repeat them:\n{}",
        changed.join("\n")
    );
    let mut leaks = Vec::new();
    for (what, value) in &forbidden.0 {
        assert!(value.len() >= 6, "{what} is too short to search for");
        if lower.contains(&value.to_lowercase()) {
            let line = logs.lines().find(|l| l.to_lowercase().contains(&value.to_lowercase())).unwrap_or("");
            leaks.push(format!("{what} in: {line}"));
        }
    }
    assert!(leaks.is_empty(), "leaked into the logs:\n{}", leaks.join("\n"));
}
