//! The same user stories through the Lambda handlers, with DynamoDB and SQS FIFO on the
//! loopback wire-protocol server (moto), as `make test` starts it.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::sqs::SqsEvent;
use chrono::{TimeZone, Utc};
use shared::lambda::{LambdaEnv, answer, worker_sqs};
use shared::model::{SourceKind, SubjectKey, TenantId};
use shared::queue::Queue;
use shared::queue::sqs::SqsQueue;
use shared::queue::{Event, Proof, WorkMessage};
use testkit::harness::{ANNA, BIKE_STORAGE, HOOK_SECRET, HookAuth, LOCK, TENANT};
use testkit::sim::{NexudusSim, TapkeySim};

struct AwsApp {
    nexudus: NexudusSim,
    tapkey: TapkeySim,
    env: LambdaEnv,
    queue: Arc<SqsQueue>,
}

async fn spawn_aws_app() -> AwsApp {
    let (nexudus, tapkey) = testkit::harness::space_sims().await;
    nexudus.set_now(Utc::now());
    nexudus.add_coworker(ANNA, "Anna Müller", testkit::harness::ANNA_EMAIL);
    nexudus.add_coworker(457, "Ben Weber", "ben@example.com");
    nexudus.add_time_pass(BIKE_STORAGE, "Bike Storage");
    tapkey.add_lock(LOCK, "Bike Storage Door", true);

    let (records, queue) = testkit::aws::table_and_queue().await;
    // `portier config push` stores the tenant document; here the test does.
    let tenant = testkit::harness::tenant_config(&nexudus, &tapkey, HookAuth::Signature);
    records
        .put_tenant_config(&TenantId(TENANT.into()), serde_json::to_value(&tenant).expect("json"))
        .await
        .expect("config");
    let env = LambdaEnv::new(records, queue.clone(), Arc::new(testkit::harness::secrets(&tapkey)));
    AwsApp { nexudus, tapkey, env, queue }
}

impl AwsApp {
    /// API Gateway → `nexudus-ingress`.
    async fn hook(&self, action: &str, dto: &serde_json::Value) -> i64 {
        testkit::aws::nexudus_ingress(&self.env, TENANT, &self.nexudus.webhook(action, dto)).await
    }

    /// SQS → `worker`, as the event source mapping does: successes are deleted, reported
    /// failures become visible again.
    async fn run_worker(&self) {
        testkit::aws::run_sqs_worker(&self.queue, &self.env.worker()).await;
    }
}

#[tokio::test]
async fn a_pass_grants_and_using_it_revokes_through_the_lambda_handlers() {
    let app = spawn_aws_app().await;
    let expiry = Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).single().expect("date");
    let pass = app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry));
    let dto = app.nexudus.coworker_dto(ANNA);
    for _ in 0..3 {
        assert_eq!(app.hook("AccessControlUpdate", &dto).await, 202);
    }
    app.run_worker().await;
    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].valid_before, Some(expiry));
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 1);

    // Anna uses the pass at once: the same Coworker DTO within the same second is a new
    // delivery, never dropped as a duplicate of the one already worked (issue 11).
    app.nexudus.set_pass_used(pass);
    assert_eq!(app.hook("AccessControlUpdate", &dto).await, 202);
    app.run_worker().await;
    assert!(app.tapkey.active_grants().is_empty());

    // Everything was recorded in DynamoDB.
    let subject = SubjectKey::new(&TenantId(TENANT.into()), SourceKind::Nexudus, ANNA.to_string());
    let audit = app.env.records.audit_log(&subject).await.expect("audit");
    assert_eq!(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["grant", "revoke"]);
}

#[tokio::test]
async fn bad_webhooks_get_clear_answers_and_nothing_reaches_sqs() {
    let app = spawn_aws_app().await;
    let body = serde_json::to_vec(&serde_json::json!([app.nexudus.coworker_dto(ANNA)])).expect("json");
    let event = |tenant: &str, sig: Option<&str>, body: &[u8]| -> ApiGatewayV2httpRequest {
        serde_json::from_value(testkit::events::nexudus_hook(tenant, "AccessControlUpdate", "", sig, body))
            .expect("event")
    };
    let hooks = app.env.hooks();
    let good = testkit::sim::nexudus::sign_utf8(HOOK_SECRET, &body);
    assert_eq!(answer(&hooks, event(TENANT, Some(&"A".repeat(64)), &body)).await.status_code, 401);
    assert_eq!(answer(&hooks, event("nobody", Some(&good), &body)).await.status_code, 404);
    let bad = b"[{\"Id\":".to_vec();
    let bad_sig = testkit::sim::nexudus::sign_utf8(HOOK_SECRET, &bad);
    assert_eq!(answer(&hooks, event(TENANT, Some(&bad_sig), &bad)).await.status_code, 400);
    assert_eq!(app.env.records.quarantined(&TENANT.into()).await.expect("store").len(), 1);
    let stats = app.queue.stats().await.expect("stats");
    assert_eq!(stats.visible + stats.in_flight, 0);
}

#[tokio::test]
async fn in_a_fifo_batch_the_failed_record_and_all_after_it_are_reported() {
    let app = spawn_aws_app().await;
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    app.nexudus.give_pass(457, BIKE_STORAGE, None);
    let tenant = TenantId(TENANT.into());
    let message = |person: i64, proof: Proof, payload: Option<serde_json::Value>| {
        WorkMessage::Event(Event {
            event_id: format!("ev-{person}-{}", uuid::Uuid::new_v4()),
            subject: SubjectKey::new(&tenant, SourceKind::Nexudus, person.to_string()),
            action: "AccessControlUpdate".into(),
            proof,
            payload,
            received_at: Utc::now(),
            urgent: false,
            hint: None,
        })
        .to_outgoing()
    };
    // Record 2 names a customer Nexudus cannot return (it answers 500): a retryable failure.
    let outgoing = [
        message(ANNA, Proof::Signature, Some(app.nexudus.coworker_dto(ANNA))),
        message(999, Proof::Token, None),
        message(457, Proof::Signature, Some(app.nexudus.coworker_dto(457))),
        message(457, Proof::Token, None),
    ];
    let records: Vec<_> = outgoing
        .iter()
        .enumerate()
        .map(|(i, o)| (format!("m{}", i + 1), o.group.clone(), o.body.clone()))
        .collect();
    let event: SqsEvent = serde_json::from_value(testkit::events::sqs_batch(&records)).expect("event");

    let response = worker_sqs(&app.env.worker(), app.queue.as_ref(), &event).await;
    let failed: Vec<_> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
    assert_eq!(failed, ["m2", "m3", "m4"]);
    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1, "only record 1 was applied");
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 1);
}

#[tokio::test]
async fn a_retryable_failure_comes_back_after_its_retry_delay_not_the_visibility_timeout() {
    let app = spawn_aws_app().await;
    // A customer Nexudus cannot return (it answers 500): a retryable failure.
    let message = WorkMessage::Event(Event {
        event_id: format!("ev-999-{}", uuid::Uuid::new_v4()),
        subject: SubjectKey::new(&TenantId(TENANT.into()), SourceKind::Nexudus, "999"),
        action: "AccessControlUpdate".into(),
        proof: Proof::Token,
        payload: None,
        received_at: Utc::now(),
        urgent: false,
        hint: None,
    });
    app.queue.send(&message.to_outgoing()).await.expect("send");
    // Received as the event source mapping does, hidden for the template's visibility timeout.
    let batch =
        app.queue.receive(10, Duration::from_secs(720), Duration::from_secs(1)).await.expect("receive");
    assert_eq!(batch.len(), 1);
    let event: SqsEvent = serde_json::from_value(testkit::events::sqs_received(&batch)).expect("event");

    let response = worker_sqs(&app.env.worker(), app.queue.as_ref(), &event).await;
    assert_eq!(response.batch_item_failures.len(), 1);
    // The first retry waits one to two seconds (`redelivery_delay`): hidden now, back soon.
    let receive = |wait| app.queue.receive(10, Duration::from_secs(720), wait);
    assert!(receive(Duration::ZERO).await.expect("receive").is_empty(), "not visible at once");
    let started = std::time::Instant::now();
    let mut again = Vec::new();
    while again.is_empty() && started.elapsed() < Duration::from_secs(10) {
        again = receive(Duration::from_secs(1)).await.expect("receive");
    }
    assert_eq!(again.len(), 1, "back after the retry delay, long before the visibility timeout");
    assert_eq!((again[0].message_id.as_str(), again[0].receive_count), (batch[0].message_id.as_str(), 2));
}

#[tokio::test]
async fn the_resync_function_plans_on_request_and_repairs_on_schedule() {
    let app = spawn_aws_app().await;
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    app.nexudus.give_pass(457, BIKE_STORAGE, None);

    let dry = shared::lambda::resync(&app.env, &serde_json::json!({ "tenant": TENANT, "dry_run": true }))
        .await
        .expect("dry run");
    let plans = dry["tenants"][0]["plans"].as_array().map(Vec::len);
    assert_eq!(plans, Some(2));
    assert!(app.tapkey.grants().is_empty());

    // The EventBridge schedule's event names no tenant: every tenant is resynced.
    let scheduled = serde_json::json!({
        "version": "0", "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa", "detail-type": "Scheduled Event",
        "source": "aws.events", "account": "123456789012", "time": "2026-11-23T03:00:00Z",
        "region": "eu-central-1", "resources": ["arn:aws:events:eu-central-1:123456789012:rule/portier-resync"], "detail": {}
    });
    let real = shared::lambda::resync(&app.env, &scheduled).await.expect("resync");
    assert_eq!(real["tenants"][0]["dry_run"], serde_json::json!(false));
    app.run_worker().await;
    assert_eq!(app.tapkey.active_grants().len(), 2);
}

/// Issue 11, on DynamoDB + SQS: a pass extended (its grant replaced), then used: the extended
/// grant is revoked, because the replacement's record survived the revoke of the old grant.
#[tokio::test]
async fn a_pass_extended_then_used_removes_the_extended_grant_through_the_lambda_handlers() {
    let app = spawn_aws_app().await;
    let expiry = Utc.with_ymd_and_hms(2027, 1, 10, 23, 0, 0).single().expect("date");
    let pass = app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry));
    let dto = app.nexudus.coworker_dto(ANNA);
    assert_eq!(app.hook("AccessControlUpdate", &dto).await, 202);
    app.run_worker().await;

    let extended = expiry + chrono::Duration::days(7);
    app.nexudus.set_pass_expiry(pass, Some(extended));
    assert_eq!(app.hook("AccessControlUpdate", &dto).await, 202);
    app.run_worker().await;
    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].valid_before, Some(extended));

    app.nexudus.set_pass_used(pass);
    assert_eq!(app.hook("AccessControlUpdate", &dto).await, 202);
    app.run_worker().await;
    assert!(app.tapkey.active_grants().is_empty(), "{:?}", app.tapkey.active_grants());
}

/// Issue 12: a repeated `?token=` is refused in Lambda as in `portier serve` (not first-wins).
#[tokio::test]
async fn a_repeated_token_is_refused_through_the_lambda_handler() {
    let app = spawn_aws_app().await;
    let body = serde_json::to_vec(&serde_json::json!([app.nexudus.coworker_dto(ANNA)])).expect("json");
    let sig = testkit::sim::nexudus::sign_ascii(HOOK_SECRET, &body);
    let event: ApiGatewayV2httpRequest = serde_json::from_value(testkit::events::nexudus_hook(
        TENANT,
        "AccessControlUpdate",
        "token=a&token=b",
        Some(&sig),
        &body,
    ))
    .expect("event");
    assert_eq!(answer(&app.env.hooks(), event).await.status_code, 400);
}
