//! The self-storage user stories through the Lambda handlers (`kinnovis-ingress`, `worker`),
//! with DynamoDB and SQS FIFO on the loopback wire-protocol server (moto), as `make test` starts it.

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use chrono::{NaiveDate, Utc};
use serde_json::json;
use shared::lambda::{LambdaEnv, answer};
use shared::model::EntitlementState;
use shared::queue::Queue;
use shared::queue::sqs::SqsQueue;
use testkit::kinnovis_app::{
    ANNA, BEN, STORAGE_TENANT, UNIT, UNIT_2, UNIT_2_LOCK, storage_config, storage_secrets, storage_sims,
};
use testkit::sim::{KinnovisSim, SimWebhook, TapkeySim};

struct AwsApp {
    kinnovis: KinnovisSim,
    tapkey: TapkeySim,
    env: LambdaEnv,
    queue: Arc<SqsQueue>,
}

async fn spawn_aws_app() -> AwsApp {
    let (kinnovis, tapkey) = storage_sims().await;
    kinnovis.set_now(Utc::now());
    let (records, queue) = testkit::aws::table_and_queue().await;
    let tenant = storage_config(&kinnovis, &tapkey);
    records
        .put_tenant_config(&tenant.id, serde_json::to_value(&tenant).expect("json"))
        .await
        .expect("config");
    let env = LambdaEnv::new(records, queue.clone(), Arc::new(storage_secrets(&kinnovis, &tapkey)));
    AwsApp { kinnovis, tapkey, env, queue }
}

impl AwsApp {
    /// API Gateway → `kinnovis-ingress`.
    async fn deliver(&self, hook: &SimWebhook) -> i64 {
        let event: ApiGatewayV2httpRequest =
            serde_json::from_value(testkit::events::kinnovis_hook(STORAGE_TENANT, &hook.headers, &hook.body))
                .expect("event");
        answer(&self.env.hooks(), event).await.status_code
    }

    async fn hook(&self, event_type: &str, booking: &str) -> i64 {
        self.kinnovis.set_now(Utc::now());
        self.deliver(&self.kinnovis.webhook(event_type, booking)).await
    }

    /// SQS → `worker`, as the event source mapping does.
    async fn run_worker(&self) {
        testkit::aws::run_sqs_worker(&self.queue, &self.env.worker()).await;
    }

    async fn queued(&self) -> u64 {
        let stats = self.queue.stats().await.expect("stats");
        stats.visible + stats.in_flight
    }

    fn holders(&self) -> Vec<String> {
        self.tapkey.active_holders()
    }
}

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

#[tokio::test]
async fn a_booking_grants_a_lock_out_revokes_and_payment_restores_through_the_lambda_handlers() {
    let app = spawn_aws_app().await;
    let id = app.kinnovis.create_booking(UNIT, ANNA, "Anna Berger", day(2026, 11, 1), None);
    app.kinnovis.set_shared_access(&id, &[BEN]);
    assert_eq!(app.hook("booking.created", &id).await, 202);
    app.run_worker().await;
    assert_eq!(app.holders(), [ANNA, BEN]);

    app.kinnovis.revoke(&id, "overdue");
    assert_eq!(app.hook("access.revoked", &id).await, 202);
    app.run_worker().await;
    assert!(app.tapkey.active_grants().is_empty());
    let ben = shared::sources::kinnovis::source::subject_of(
        &STORAGE_TENANT.into(),
        &shared::model::Email::parse(BEN).expect("email"),
    );
    let ents = app.env.records.entitlements(&ben).await.expect("DynamoDB");
    assert!(matches!(&ents[0].state, EntitlementState::Revoked { .. }));

    app.kinnovis.restore(&id);
    assert_eq!(app.hook("access.restored", &id).await, 202);
    app.run_worker().await;
    assert_eq!(app.holders(), [ANNA, BEN]);
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 4);
    let audit = app.env.records.audit_log(&ben).await.expect("audit");
    assert_eq!(audit.iter().map(|a| a.action.as_str()).collect::<Vec<_>>(), ["grant", "revoke", "grant"]);
}

#[tokio::test]
async fn an_imported_unit_mapping_is_stored_in_dynamodb_and_used_by_the_worker() {
    let app = spawn_aws_app().await;
    let tenant = app.env.tenants.get(&STORAGE_TENANT.into()).await.expect("tenants").expect("tenant");
    let csv = format!("Tapkey Lock ID,Kinnovis Unit Name\n{UNIT_2_LOCK},{UNIT_2}\nnot-a-guid,{UNIT}\n");
    assert!(
        shared::mapping::import(
            &app.env.records,
            &tenant.config,
            shared::mapping::Check::Online(&tenant),
            &csv
        )
        .await
        .is_err()
    );
    assert!(app.env.records.stored_mappings(&tenant.config.id).await.expect("DynamoDB").is_empty());
    let csv = format!("Tapkey Lock ID,Kinnovis Unit Name\n{UNIT_2_LOCK},{UNIT_2}\n");
    shared::mapping::import(&app.env.records, &tenant.config, shared::mapping::Check::Online(&tenant), &csv)
        .await
        .expect("imported");

    let id = app.kinnovis.create_booking(UNIT_2, ANNA, "Anna Berger", day(2026, 11, 1), None);
    assert_eq!(app.hook("booking.created", &id).await, 202);
    app.run_worker().await;
    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].bound_lock_id, UNIT_2_LOCK);
}

#[tokio::test]
async fn bad_kinnovis_webhooks_get_clear_answers_and_nothing_reaches_sqs() {
    let app = spawn_aws_app().await;
    let id = app.kinnovis.create_booking(UNIT, ANNA, "Anna Berger", day(2026, 11, 1), None);
    app.kinnovis.set_now(Utc::now());
    let now = Utc::now().timestamp();
    let body = serde_json::to_vec(&app.kinnovis.event("booking.created", &id)).expect("json");

    let mut forged = app.kinnovis.sign("booking.created", "msg_forged", now, body.clone());
    for (k, v) in forged.headers.iter_mut() {
        if k == "webhook-signature" {
            *v = testkit::sim::kinnovis::standard_signature(
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                "msg_forged",
                now,
                &body,
            );
        }
    }
    assert_eq!(app.deliver(&forged).await, 401);
    assert_eq!(
        app.deliver(&app.kinnovis.sign("booking.created", "msg_old", now - 400, body.clone())).await,
        401
    );
    let mut elsewhere = app.kinnovis.event("booking.created", &id);
    elsewhere["location_id"] = json!("loc-graz-2");
    let elsewhere = serde_json::to_vec(&elsewhere).expect("json");
    assert_eq!(
        app.deliver(&app.kinnovis.sign("booking.created", "msg_elsewhere", now, elsewhere)).await,
        400
    );
    assert_eq!(app.queued().await, 0);

    let good = app.kinnovis.sign("booking.created", "msg_good", now, body.clone());
    assert_eq!(app.deliver(&good).await, 202);
    app.run_worker().await;
    // The same id again, re-signed with a fresh timestamp: remembered in DynamoDB, not queued.
    let again = app.kinnovis.sign("booking.created", "msg_good", Utc::now().timestamp(), body);
    assert_eq!(app.deliver(&again).await, 202);
    assert_eq!(app.queued().await, 0);
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 1);
}

/// Issue 11, on DynamoDB + SQS: a move-out date replaces both grants; an overdue lock-out then
/// removes them (their records survived the replacement), and cancelling leaves nothing.
#[tokio::test]
async fn a_move_out_then_overdue_removes_the_replaced_grants_through_the_lambda_handlers() {
    let app = spawn_aws_app().await;
    let id = app.kinnovis.create_booking(UNIT, ANNA, "Anna Berger", day(2026, 11, 1), None);
    app.kinnovis.set_shared_access(&id, &[BEN]);
    assert_eq!(app.hook("booking.created", &id).await, 202);
    app.run_worker().await;
    app.kinnovis.set_move_out(&id, Some(day(2027, 6, 30)));
    assert_eq!(app.hook("booking.updated", &id).await, 202);
    app.run_worker().await;
    assert_eq!(app.holders(), [ANNA, BEN]);
    assert!(app.tapkey.active_grants().iter().all(|g| g.valid_before.is_some()));

    app.kinnovis.revoke(&id, "overdue");
    assert_eq!(app.hook("access.revoked", &id).await, 202);
    app.run_worker().await;
    assert!(app.tapkey.active_grants().is_empty(), "{:?}", app.tapkey.active_grants());
    app.kinnovis.set_status(&id, "cancelled");
    assert_eq!(app.hook("booking.cancelled", &id).await, 202);
    app.run_worker().await;
    assert!(app.tapkey.active_grants().is_empty());
}
