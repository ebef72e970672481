//! A Nexudus pass opens a Tapkey lock: the walking skeleton's user stories, through the real
//! webhook routes, the embedded store and queue, and the Nexudus and Tapkey simulators.

use chrono::{Duration, TimeZone, Utc};
use serde_json::json;
use shared::model::{AppliedState, Email};
use testkit::harness::{ANNA, ANNA_EMAIL, BIKE_STORAGE, HookAuth, LOCK, TENANT, TestApp, spawn_app};

fn expiry() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).single().unwrap_or_default()
}

/// Anna gets the pass; Nexudus fires `AccessControlUpdate` with her coworker record.
async fn give_anna_the_pass(app: &TestApp) -> i64 {
    let pass = app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry()));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    pass
}

#[tokio::test]
async fn a_signed_webhook_creates_one_grant_until_the_pass_expires() {
    let app = spawn_app(HookAuth::Signature).await;
    give_anna_the_pass(&app).await;

    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].bound_lock_id, LOCK);
    assert_eq!(grants[0].valid_before, Some(expiry()));
    let contact =
        app.tapkey.contacts().into_iter().find(|c| c.id == grants[0].contact_id).map(|c| c.identifier);
    assert_eq!(contact.as_deref(), Some(ANNA_EMAIL));
}

#[tokio::test]
async fn pass_used_revokes_the_grant() {
    let app = spawn_app(HookAuth::Signature).await;
    let pass = give_anna_the_pass(&app).await;
    app.advance(Duration::minutes(5));
    app.nexudus.set_pass_used(pass);
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;

    assert!(app.tapkey.active_grants().is_empty());
    assert_eq!(app.tapkey.count("POST", "/Revoke"), 1);
    assert!(app.records.applied(&app.subject(ANNA)).await.expect("store").is_empty());
}

#[tokio::test]
async fn pass_removed_revokes_the_grant() {
    let app = spawn_app(HookAuth::Signature).await;
    let pass = give_anna_the_pass(&app).await;
    app.advance(Duration::minutes(5));
    app.nexudus.remove_pass(pass);
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty());
}

#[tokio::test]
async fn coworker_delete_revokes_everything() {
    let app = spawn_app(HookAuth::Signature).await;
    give_anna_the_pass(&app).await;
    let dto = app.nexudus.coworker_dto(ANNA);
    app.advance(Duration::minutes(5));
    app.nexudus.delete_coworker(ANNA);
    assert_eq!(app.hook("CoworkerDelete", &dto).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty());
}

#[tokio::test]
async fn the_same_webhook_three_times_gives_one_grant() {
    let app = spawn_app(HookAuth::Signature).await;
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry()));
    let dto = app.nexudus.coworker_dto(ANNA);
    for _ in 0..3 {
        assert_eq!(app.hook("AccessControlUpdate", &dto).await, 202);
    }
    app.drain().await;
    // Redelivery after the queue's dedup window: the event id is remembered in the store.
    app.advance(Duration::minutes(10));
    assert_eq!(app.hook("AccessControlUpdate", &dto).await, 202);
    app.drain().await;

    assert_eq!(app.tapkey.grants().len(), 1);
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 1);
}

#[tokio::test]
async fn an_older_webhook_arriving_last_changes_nothing() {
    let app = spawn_app(HookAuth::Signature).await;
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry()));
    let old = app.nexudus.coworker_dto(ANNA);
    app.advance(Duration::minutes(5));
    app.nexudus.update_coworker_email(ANNA, "anna.mueller@example.com");
    let new = app.nexudus.coworker_dto(ANNA);

    assert_eq!(app.hook("AccessControlUpdate", &new).await, 202);
    assert_eq!(app.hook("CoworkerUpdate", &old).await, 202);
    app.drain().await;

    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1);
    let holder =
        app.tapkey.contacts().into_iter().find(|c| c.id == grants[0].contact_id).map(|c| c.identifier);
    assert_eq!(holder.as_deref(), Some("anna.mueller@example.com"));
    let profile = app.records.profile(&app.subject(ANNA)).await.expect("store").expect("profile");
    assert_eq!(profile.email, Email::parse("anna.mueller@example.com").ok());
}

#[tokio::test]
async fn an_email_change_moves_the_grant() {
    let app = spawn_app(HookAuth::Signature).await;
    give_anna_the_pass(&app).await;
    app.advance(Duration::minutes(5));
    app.nexudus.update_coworker_email(ANNA, "anna.mueller@example.com");
    assert_eq!(app.hook("CoworkerUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;

    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(app.tapkey.grants().len(), 2, "the old contact's grant is revoked, not deleted");
    let holder =
        app.tapkey.contacts().into_iter().find(|c| c.id == grants[0].contact_id).map(|c| c.identifier);
    assert_eq!(holder.as_deref(), Some("anna.mueller@example.com"));
}

#[tokio::test]
async fn a_worker_killed_between_the_tapkey_create_and_the_store_write_still_makes_one_grant() {
    let app = spawn_app(HookAuth::Signature).await;
    // The write that records the created grant is lost once, as if the process died first.
    app.store
        .fail_writes(1, |item| item.sk.starts_with("APPLIED#") && item.data["state"]["state"] == "created");
    give_anna_the_pass(&app).await;

    assert_eq!(app.tapkey.grants().len(), 1);
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 1, "the retry looked the grant up instead of creating it");
    let applied = app.records.applied(&app.subject(ANNA)).await.expect("store");
    assert!(matches!(applied.as_slice(), [a] if matches!(a.state, AppliedState::Created { .. })));
}

#[tokio::test]
async fn a_lost_tapkey_response_does_not_duplicate_the_grant() {
    let app = spawn_app(HookAuth::Signature).await;
    app.tapkey.faults().drop_after_write_next(1);
    give_anna_the_pass(&app).await;
    assert_eq!(app.tapkey.grants().len(), 1);
    assert_eq!(app.tapkey.active_grants().len(), 1);
}

#[tokio::test]
async fn tapkey_outages_and_throttling_are_retried_until_in_line() {
    let app = spawn_app(HookAuth::Signature).await;
    // More failures than one call's retries: the message itself comes back later.
    app.tapkey.faults().fail_next(503, 4);
    app.tapkey.faults().fail_next(429, 2);
    give_anna_the_pass(&app).await;
    assert_eq!(app.tapkey.active_grants().len(), 1);
    assert!(app.tapkey.calls().iter().any(|c| c.status == 503));
    assert!(app.tapkey.calls().iter().any(|c| c.status == 429));
}

#[tokio::test]
async fn a_tapkey_plan_limit_is_recorded_not_retried_forever_and_explained() {
    let app = spawn_app(HookAuth::Signature).await;
    app.tapkey.set_payment_required(true);
    give_anna_the_pass(&app).await;
    assert!(app.tapkey.active_grants().is_empty());
    let attempts = app.tapkey.count("PUT", "/Grants");

    // Another webhook within the cool-down does not hammer Tapkey with the same request.
    app.advance(Duration::minutes(1));
    assert_eq!(app.hook("CoworkerUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.count("PUT", "/Grants"), attempts);

    let email = Email::parse(ANNA_EMAIL).expect("email");
    let reports = shared::explain::explain(&app.records, std::slice::from_ref(&app.config), &email, None)
        .await
        .expect("explain");
    let text = shared::explain::render(&reports, &email);
    assert!(text.contains("402"), "{text}");
    assert!(text.contains("Bike Storage"), "{text}");
    assert!(text.contains(LOCK), "{text}");

    // The operator upgrades the plan; after the cool-down the timer grants.
    app.tapkey.set_payment_required(false);
    app.advance(Duration::minutes(61));
    app.tick_and_drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1);
}

#[tokio::test]
async fn an_inactive_lock_is_a_readable_failure_and_grants_once_active() {
    let app = spawn_app(HookAuth::Signature).await;
    app.tapkey.set_lock_active(LOCK, false);
    give_anna_the_pass(&app).await;
    assert!(app.tapkey.grants().is_empty());
    let failures = app.records.failures(&app.subject(ANNA)).await.expect("store");
    assert!(matches!(failures.as_slice(), [f] if f.reason.contains("not active")), "{failures:?}");

    // No grant call was made for the inactive lock.
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 0);

    // Without news, the re-check timer looks again after a quarter of an hour.
    app.advance(Duration::minutes(15));
    app.tick_and_drain().await;
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 0, "still inactive: still no grant call");

    // The operator activates the lock; the next reconcile (here: the next webhook) grants,
    // without waiting for a cool-down.
    app.tapkey.set_lock_active(LOCK, true);
    app.advance(Duration::minutes(1));
    assert_eq!(app.hook("CoworkerUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1);
    assert!(app.records.failures(&app.subject(ANNA)).await.expect("store").is_empty());
}

#[tokio::test]
async fn an_expired_pass_is_cleaned_up_by_the_tick() {
    let app = spawn_app(HookAuth::Signature).await;
    give_anna_the_pass(&app).await;
    app.set_now(expiry() + Duration::minutes(1));
    app.tick_and_drain().await;
    assert!(app.tapkey.active_grants().is_empty());
}

// ── the webhook door: what is refused, and that nothing refused is queued ────────────────────

async fn queued(app: &TestApp) -> u64 {
    app.queue.stats().await.expect("stats").visible
}

async fn post(url: &str, body: Vec<u8>, signature: Option<&str>) -> u16 {
    let mut req = reqwest::Client::new().post(url).header("content-type", "application/json").body(body);
    if let Some(sig) = signature {
        req = req.header("x-nexudus-hook-signature", sig);
    }
    req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test]
async fn bad_webhooks_are_refused_and_nothing_is_queued() {
    let app = spawn_app(HookAuth::Both).await;
    let body = serde_json::to_vec(&json!([app.nexudus.coworker_dto(ANNA)])).expect("json");
    let good_sig = testkit::sim::nexudus::sign_utf8(testkit::harness::HOOK_SECRET, &body);
    let base = format!("{}/hooks/nexudus", app.url);
    let token = testkit::harness::HOOK_TOKEN;

    let bad_signature = post(
        &format!("{base}/{TENANT}/AccessControlUpdate?token={token}"),
        body.clone(),
        Some(&"0".repeat(64)),
    )
    .await;
    let no_signature =
        post(&format!("{base}/{TENANT}/AccessControlUpdate?token={token}"), body.clone(), None).await;
    let wrong_token =
        post(&format!("{base}/{TENANT}/AccessControlUpdate?token=guess"), body.clone(), Some(&good_sig))
            .await;
    let unknown_tenant =
        post(&format!("{base}/nobody/AccessControlUpdate?token={token}"), body.clone(), Some(&good_sig))
            .await;
    let unknown_action =
        post(&format!("{base}/{TENANT}/BlogPostCreate?token={token}"), body.clone(), Some(&good_sig)).await;
    let huge = vec![b' '; 256 * 1024 + 1];
    let huge_sig = testkit::sim::nexudus::sign_utf8(testkit::harness::HOOK_SECRET, &huge);
    let too_large =
        post(&format!("{base}/{TENANT}/AccessControlUpdate?token={token}"), huge, Some(&huge_sig)).await;

    assert_eq!(
        [bad_signature, no_signature, wrong_token, unknown_tenant, unknown_action, too_large],
        [401, 401, 401, 404, 404, 413]
    );
    assert_eq!(queued(&app).await, 0);
    assert!(app.records.quarantined(&TENANT.into()).await.expect("store").is_empty());
}

#[tokio::test]
async fn a_verified_but_unparseable_body_is_kept_in_quarantine() {
    let app = spawn_app(HookAuth::Signature).await;
    let body = br#"[{"Id":456,"FullName":"Anna"#.to_vec();
    let sig = testkit::sim::nexudus::sign_utf8(testkit::harness::HOOK_SECRET, &body);
    let status = post(&app.hook_url("AccessControlUpdate"), body, Some(&sig)).await;
    assert_eq!(status, 400);
    assert_eq!(queued(&app).await, 0);
    let kept = app.records.quarantined(&TENANT.into()).await.expect("store");
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].body, r#"[{"Id":456,"FullName":"Anna"#);
    assert!(kept[0].reason.contains("malformed JSON"));

    // Unverified garbage is not kept: it is not ours to store.
    assert_eq!(post(&app.hook_url("AccessControlUpdate"), b"[{".to_vec(), Some(&"0".repeat(64))).await, 401);
    assert_eq!(app.records.quarantined(&TENANT.into()).await.expect("store").len(), 1);
}

#[tokio::test]
async fn a_non_ascii_name_signed_the_dotnet_way_is_accepted() {
    // The simulator signs the ASCII copy ("M?ller") as Nexudus does; the wire body is UTF-8.
    let app = spawn_app(HookAuth::Signature).await;
    give_anna_the_pass(&app).await;
    assert_eq!(app.tapkey.active_grants().len(), 1);
}

#[tokio::test]
async fn a_token_only_tenant_confirms_who_gets_access_with_the_rest_api() {
    let app = spawn_app(HookAuth::Token).await;
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry()));
    // A forged body naming another email cannot redirect the grant.
    let mut forged = app.nexudus.coworker_dto(ANNA);
    forged["Email"] = json!("mallory@example.com");
    assert_eq!(app.hook("AccessControlUpdate", &forged).await, 202);
    app.drain().await;

    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1);
    let holder =
        app.tapkey.contacts().into_iter().find(|c| c.id == grants[0].contact_id).map(|c| c.identifier);
    assert_eq!(holder.as_deref(), Some(ANNA_EMAIL));
    assert!(app.nexudus.count("GET", "/spaces/coworkers/456") >= 1);
}

#[tokio::test]
async fn nexudus_throttling_slows_the_worker_down_but_never_fails_it() {
    let app = spawn_app(HookAuth::Token).await;
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry()));
    app.nexudus.faults().fail_next(409, 5);
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1);
    assert_eq!(app.queue.stats().await.expect("stats").dead, 0);
}

#[tokio::test]
async fn healthz_answers_when_store_and_queue_do() {
    let app = spawn_app(HookAuth::Signature).await;
    let status = reqwest::get(format!("{}/healthz", app.url)).await.map(|r| r.status().as_u16()).unwrap_or(0);
    assert_eq!(status, 200);
}
