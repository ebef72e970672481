//! Only the source gives or takes access (issue 12): attacks on what a webhook may decide,
//! each kept as a test.

use testkit::harness::{ANNA, BIKE_STORAGE, HOOK_SECRET, HookAuth, spawn_app};
use testkit::sim::SimWebhook;

async fn post(app: &testkit::harness::TestApp, action: &str, hook: &SimWebhook) -> u16 {
    app.nexudus.deliver(&app.hook_url(action), hook).await
}

#[tokio::test]
async fn a_character_swapped_under_an_ascii_copy_signature_decides_nothing() {
    let app = spawn_app(HookAuth::Signature).await;
    let genuine_email = "anna@ex\u{e4}mple.com";
    app.nexudus.update_coworker_email(ANNA, genuine_email);
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    // Nexudus signs the ASCII copy (ä → ?), so å in its place keeps the signature valid.
    let genuine = app.nexudus.webhook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA));
    let forged_body = String::from_utf8(genuine.body.clone()).expect("utf-8").replace('\u{e4}', "\u{e5}");
    let forged = SimWebhook { body: forged_body.into_bytes(), ..genuine.clone() };
    assert!(shared::ingress::verify::nexudus_signature(
        HOOK_SECRET.as_bytes(),
        &forged.body,
        &forged
            .headers
            .iter()
            .find(|(k, _)| k.contains("Signature"))
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    ));
    assert_eq!(post(&app, "AccessControlUpdate", &forged).await, 202);
    app.drain().await;
    assert_eq!(
        app.tapkey.active_holders(),
        [genuine_email],
        "the email comes from the REST API, not the forged body"
    );
    assert_eq!(post(&app, "AccessControlUpdate", &genuine).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_holders(), [genuine_email]);
}

#[tokio::test]
async fn a_captured_body_posted_to_coworker_delete_revokes_nothing_while_the_customer_exists() {
    let app = spawn_app(HookAuth::Signature).await;
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    let captured = app.nexudus.webhook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA));
    assert_eq!(post(&app, "AccessControlUpdate", &captured).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1);

    // The action in the URL is not signed: the same signed body, to the delete URL.
    assert_eq!(post(&app, "CoworkerDelete", &captured).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1, "Nexudus still has her: nothing is revoked");
    let report = app.resync(false).await.expect("resync");
    assert_eq!(report.op_count(), 0);
    assert_eq!(app.tapkey.active_grants().len(), 1);

    // Deleted for real: confirmed by the API, then revoked.
    app.nexudus.delete_coworker(ANNA);
    assert_eq!(post(&app, "CoworkerDelete", &captured).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty());
}

#[tokio::test]
async fn a_bare_id_with_the_token_to_coworker_delete_revokes_nothing_while_the_customer_exists() {
    let app = spawn_app(HookAuth::Token).await;
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    assert_eq!(app.hook("CoworkerDelete", &serde_json::json!({ "Id": ANNA })).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1);
}

/// Issue 12.3: one signed `TeamUpdated` naming 10 000 member ids queues one message (the
/// worker reads the team from Nexudus), is answered at once, and grants nobody it names.
#[tokio::test]
async fn a_team_body_listing_ten_thousand_members_queues_one_message() {
    let app = spawn_app(HookAuth::Signature).await;
    app.nexudus.add_team(9, "Acme", Some(ANNA), &[ANNA]);
    let many: Vec<i64> = (100_000..110_000).collect();
    let body = serde_json::json!({ "Id": 9, "Name": "Acme", "PayingMemberId": ANNA, "TeamMembers": many });
    let hook = app.nexudus.webhook("TeamUpdated", &body);
    let started = std::time::Instant::now();
    assert_eq!(post(&app, "TeamUpdated", &hook).await, 202);
    let answered = started.elapsed();
    let stats = app.queue.stats().await.expect("stats");
    println!(
        "team flood: {} KB body, answered in {} ms, {} message(s) queued",
        hook.body.len() / 1024,
        answered.as_millis(),
        stats.visible
    );
    assert_eq!(stats.visible, 1);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty(), "nobody the body names gets anything");
}

/// Issue 12.4: one captured body replayed to every action URL, again and again, queues one
/// message until its reconcile starts; a repeat after that start is queued again (it may
/// follow a change), so nothing a genuine repeat says is lost.
#[tokio::test]
async fn a_body_replayed_to_every_action_collapses_into_one_queued_message() {
    let app = spawn_app(HookAuth::Signature).await;
    let pass = app.nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    let captured = app.nexudus.webhook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA));
    let actions = shared::sources::nexudus::webhook::NEXUDUS_ACTIONS
        .iter()
        .filter(|a| !a.starts_with("Team") && !a.starts_with("Visitor"));
    let mut sent = 0;
    for _ in 0..10 {
        for action in actions.clone() {
            assert_eq!(post(&app, action, &captured).await, 202);
            sent += 1;
        }
    }
    let stats = app.queue.stats().await.expect("stats");
    println!("replay flood: {sent} deliveries, {} message(s) queued", stats.visible);
    assert_eq!(stats.visible, 1);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1);
    // After that reconcile started, the same body is a new hint: queued, and it sees the change.
    app.nexudus.set_pass_used(pass);
    assert_eq!(post(&app, "AccessControlUpdate", &captured).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty());
}

/// Issue 12.6: quarantine keeps one row per distinct body (repeats counted), for 30 days, and at
/// most its daily cap of new bodies per tenant.
#[tokio::test]
async fn quarantine_dedupes_by_body_expires_and_is_capped_per_day() {
    use shared::store::records::{QUARANTINE_DAILY_CAP, Quarantined};
    let app = spawn_app(HookAuth::Signature).await;
    let tenant: shared::model::TenantId = testkit::harness::TENANT.into();
    let body = br#"[{"Id":456,"FullName":"Anna"#.to_vec();
    let sig = testkit::sim::nexudus::sign_utf8(HOOK_SECRET, &body);
    let hook = SimWebhook {
        action: "AccessControlUpdate".into(),
        body: body.clone(),
        headers: vec![("X-Nexudus-Hook-Signature".into(), sig)],
    };
    for _ in 0..5 {
        assert_eq!(post(&app, "AccessControlUpdate", &hook).await, 400);
    }
    let kept = app.records.quarantined(&tenant).await.expect("store");
    assert_eq!(kept.len(), 1, "one row per body");
    assert_eq!(kept[0].repeats, 4);

    // The daily cap: bodies past it are answered 400 all the same, but not kept.
    let now = app.records.now();
    for i in 0..QUARANTINE_DAILY_CAP + 5 {
        let q = Quarantined {
            at: now,
            event_id: format!("e{i}"),
            action: "AccessControlUpdate".into(),
            reason: "malformed JSON".into(),
            body: format!("[{{\"Id\":{i}"),
            repeats: 0,
        };
        app.records.quarantine(&tenant, &q).await.expect("store");
    }
    let kept = app.records.quarantined(&tenant).await.expect("store").len() as u64;
    assert_eq!(kept, QUARANTINE_DAILY_CAP, "the first body of the day counted too");

    // Retention: after 30 days nothing of it is left.
    app.advance(chrono::Duration::days(31));
    assert!(app.records.quarantined(&tenant).await.expect("store").is_empty());
}

/// Issue 12.9: a short webhook secret or token is refused when the configuration loads.
#[tokio::test]
async fn a_short_webhook_secret_or_token_is_refused_when_the_config_loads() {
    let app = spawn_app(HookAuth::Both).await;
    for name in ["NEXUDUS_HOOK_SECRET", "NEXUDUS_HOOK_TOKEN"] {
        let mut secrets = testkit::harness::secrets(&app.tapkey);
        secrets.0.insert(name.into(), "short-secret".into());
        let built = shared::tenants::StaticTenants::build(
            &shared::config::Config { admin: None, tenants: vec![app.config.clone()] },
            &secrets,
            testkit::harness::fast_retries(),
        );
        let err = built.err().map(|e| e.0).unwrap_or_default();
        assert!(err.contains(name) && err.contains("at least 16"), "{name}: {err}");
    }
}

/// Issue 12.3: a tenant's queued work is bounded, within a tenant what may take access away goes
/// first, and another tenant's webhook waits for none of the flood. Past the bound a webhook is
/// answered 202 but not queued; the next tick resyncs the tenant, which reads what it said.
#[tokio::test]
async fn a_tenants_flood_is_bounded_revocations_go_first_and_another_tenant_waits_for_nothing() {
    use shared::config::{Config, SourceConfig};
    use shared::ingress::NexudusRequest;
    use shared::model::TenantId;
    use shared::tenants::{StaticTenants, Tenants};
    use std::sync::Arc;
    use testkit::harness::{fast_retries, secrets, spawn_app_with};

    const FLOOD: i64 = 200;
    const LIMIT: u64 = 50;
    const CARL: i64 = 7_000;
    const BEA: i64 = 9_000;
    let unthrottled = |t: &mut shared::config::TenantConfig| {
        if let SourceConfig::Nexudus { calls_per_minute, .. } = &mut t.source {
            *calls_per_minute = Some(60_000);
        }
    };
    let app = spawn_app_with(HookAuth::Signature, unthrottled, Default::default()).await;
    let email = |id: i64| format!("p{id}@example.com");
    for id in (10_000..10_000 + FLOOD).chain([CARL, BEA]) {
        app.nexudus.add_coworker(id, &format!("Person {id}"), &email(id));
        app.nexudus.give_pass(id, BIKE_STORAGE, None);
    }
    // A second tenant on the same store, queue and workers.
    let mut munich = app.config.clone();
    munich.id = TenantId("space-munich".into());
    let config = Config { admin: None, tenants: vec![app.config.clone(), munich.clone()] };
    let tenants: Arc<dyn Tenants> =
        Arc::new(StaticTenants::build(&config, &secrets(&app.tapkey), fast_retries()).expect("tenants"));
    let mut rt = shared::serve::Runtime::new(tenants.clone(), app.queue.clone(), app.records.clone());
    rt.ingress.backlog_limit = LIMIT;
    let carl_dto = app.nexudus.coworker_dto(CARL);
    let deliver = |tenant: &'static str, action: &'static str, id: i64| {
        let dto = if id == CARL { carl_dto.clone() } else { app.nexudus.coworker_dto(id) };
        let hook = app.nexudus.webhook(action, &dto);
        let rt = rt.clone();
        async move {
            let signature =
                hook.headers.iter().find(|(k, _)| k.contains("Signature")).map(|(_, v)| v.clone());
            let req = NexudusRequest {
                tenant,
                action,
                token: None,
                signature: signature.as_deref(),
                body: &hook.body,
            };
            rt.ingress.nexudus(req).await.status
        }
    };
    let berlin = TenantId(testkit::harness::TENANT.into());

    // Carl holds a grant before the flood; then Nexudus deletes him.
    assert_eq!(deliver(testkit::harness::TENANT, "AccessControlUpdate", CARL).await, 202);
    testkit::app::drain_queue(&rt, |d| app.advance(d)).await;
    assert!(app.tapkey.active_holders().contains(&email(CARL)));
    app.nexudus.delete_coworker(CARL);

    let started = std::time::Instant::now();
    for id in 10_000..10_000 + FLOOD {
        assert_eq!(deliver(testkit::harness::TENANT, "AccessControlUpdate", id).await, 202);
    }
    let flood_ms = started.elapsed().as_millis();
    assert_eq!(app.queue.tenant_backlog(&berlin.0).await.expect("backlog"), Some(LIMIT), "bounded");
    let (overflow, _) = app.records.overflow(&berlin).await.expect("store").expect("overflow marked");
    assert_eq!(overflow.webhooks, (FLOOD as u64) - LIMIT);
    // The delete comes last but may take access away: queued past the bound, worked first.
    assert_eq!(deliver(testkit::harness::TENANT, "CoworkerDelete", CARL).await, 202);
    assert_eq!(deliver("space-munich", "AccessControlUpdate", BEA).await, 202);

    let waited = std::time::Instant::now();
    let first = shared::serve::work_batch(&rt, std::time::Duration::ZERO).await.expect("worker");
    let other_tenant_ms = waited.elapsed().as_millis();
    let holders = app.tapkey.active_holders();
    assert!(holders.contains(&email(BEA)), "the other tenant's webhook is in the first batch");
    assert!(!holders.contains(&email(CARL)), "the revocation is in the first batch");
    println!(
        "tenant flood: {FLOOD} signed webhooks answered in {flood_ms} ms; {LIMIT} queued (the bound), {} left \
         to the overflow resync; the other tenant's webhook and the delete applied in the first batch \
         ({} messages, {other_tenant_ms} ms)",
        overflow.webhooks, first.done
    );

    testkit::app::drain_queue(&rt, |d| app.advance(d)).await;
    let resynced = shared::serve::overflow_resyncs(&rt, tenants.as_ref()).await.expect("overflow resync");
    assert_eq!(resynced, 1);
    testkit::app::drain_queue(&rt, |d| app.advance(d)).await;
    let holders = app.tapkey.active_holders();
    let missing: Vec<i64> = (10_000..10_000 + FLOOD).filter(|id| !holders.contains(&email(*id))).collect();
    assert!(missing.is_empty(), "every overflowed webhook is covered by the resync: missing {missing:?}");
    assert!(!holders.contains(&email(CARL)));
    assert_eq!(app.records.overflow(&berlin).await.expect("store"), None, "cleared once covered");
}
