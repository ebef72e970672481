//! Salto KS and Brivo memberships through the Lambda handlers, with DynamoDB and SQS FIFO on
//! the loopback wire-protocol server (moto), as `make test` starts it.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use shared::clock::{Clock, SystemClock};
use shared::config::NoAccess;
use shared::config::StaticSecrets;
use shared::lambda::{LambdaEnv, nexudus_http, worker_sqs};
use shared::model::{ProviderKind, SourceKind, SubjectKey, TenantId, UserState};
use shared::queue::Queue;
use shared::queue::sqs::SqsQueue;
use shared::store::Records;
use shared::store::dynamo::DynamoStore;
use testkit::groups::{
    BRIVO_GROUP, COWORKING, DESK, DESK_SALTO, OFFICE, OFFICE_BRIVO, SALTO_GROUP, add_group_providers,
    group_secrets, start_group_sims,
};
use testkit::harness::{ANNA, ANNA_EMAIL, HOOK_SECRET, HookAuth, OWNER, TENANT};
use testkit::sim::{BrivoSim, NexudusSim, NexudusSimConfig, SaltoSim, TapkeySim, TapkeySimConfig};

fn endpoint() -> String {
    std::env::var("PORTIER_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("PORTIER_TEST_AWS_ENDPOINT is not set: start the loopback server with `make test` or `scripts/moto.sh start`")
    })
}

struct AwsApp {
    nexudus: NexudusSim,
    salto: SaltoSim,
    brivo: BrivoSim,
    env: LambdaEnv,
    queue: Arc<SqsQueue>,
    _tapkey: TapkeySim,
}

async fn spawn_aws_groups_app() -> AwsApp {
    let nexudus = NexudusSim::start(NexudusSimConfig {
        webhook_secret: Some(HOOK_SECRET.into()),
        ..Default::default()
    })
    .await;
    let tapkey =
        TapkeySim::start(TapkeySimConfig { owner_account_id: OWNER.into(), ..Default::default() }).await;
    let (salto, brivo) = start_group_sims().await;
    nexudus.set_now(Utc::now());
    nexudus.add_coworker(ANNA, "Anna Müller", ANNA_EMAIL);
    nexudus.add_time_pass(COWORKING, "Coworking");

    let sdk = shared::aws::sdk_config(Some(&endpoint())).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let store =
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), format!("portier-{unique}"), clock.clone());
    store.create_table_if_missing().await.expect("create table");
    let queue = Arc::new(
        SqsQueue::create_fifo(aws_sdk_sqs::Client::new(&sdk), &format!("portier-{unique}"), 3)
            .await
            .expect("create queues"),
    );
    let records = Records::new(Arc::new(store), clock);
    let mut tenant = testkit::harness::tenant_config(&nexudus, &tapkey, HookAuth::Signature);
    add_group_providers(&mut tenant, &salto, &brivo, NoAccess::Suspend);
    records
        .put_tenant_config(&TenantId(TENANT.into()), serde_json::to_value(&tenant).expect("json"))
        .await
        .expect("config");
    let mut secrets: StaticSecrets = testkit::harness::secrets(&tapkey);
    secrets.0.extend(group_secrets(&salto, &brivo));
    let env = LambdaEnv::new(records, queue.clone(), Arc::new(secrets));
    AwsApp { nexudus, salto, brivo, env, queue, _tapkey: tapkey }
}

impl AwsApp {
    /// API Gateway → `nexudus-ingress`.
    async fn hook(&self) -> i64 {
        self.hook_dto("AccessControlUpdate", &self.nexudus.coworker_dto(ANNA)).await
    }

    /// API Gateway → `nexudus-ingress`, for `action` with this DTO.
    async fn hook_dto(&self, action: &str, dto: &serde_json::Value) -> i64 {
        let hook = self.nexudus.webhook(action, dto);
        let sig = hook
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("x-nexudus-hook-signature"))
            .map(|(_, v)| v.as_str());
        let event: ApiGatewayV2httpRequest =
            serde_json::from_value(testkit::events::nexudus_hook(TENANT, action, "", sig, &hook.body))
                .expect("event");
        nexudus_http(&self.env.ingress(), &event).await.status_code
    }

    /// SQS → `worker`, as the event source mapping does.
    async fn run_worker(&self) {
        let worker = self.env.worker();
        for _ in 0..20 {
            let batch = self
                .queue
                .receive(10, Duration::from_secs(30), Duration::from_secs(1))
                .await
                .expect("receive");
            if batch.is_empty() {
                return;
            }
            let records: Vec<_> =
                batch.iter().map(|d| (d.message_id.clone(), d.group.clone(), d.body.clone())).collect();
            let event: SqsEvent =
                serde_json::from_value(testkit::events::sqs_batch(&records)).expect("event");
            let response = worker_sqs(&worker, &event).await;
            for d in &batch {
                if response.batch_item_failures.iter().any(|f| f.item_identifier == d.message_id) {
                    self.queue.retry_later(&d.handle, Duration::ZERO).await.expect("retry");
                } else {
                    self.queue.delete(&d.handle).await.expect("delete");
                }
            }
        }
        panic!("the queue did not drain");
    }
}

#[tokio::test]
async fn a_pass_adds_and_using_it_removes_and_suspends_through_the_lambda_handlers() {
    let app = spawn_aws_groups_app().await;
    let pass = app.nexudus.give_pass(ANNA, COWORKING, None);
    for _ in 0..3 {
        assert_eq!(app.hook().await, 202);
    }
    app.run_worker().await;
    assert_eq!(app.salto.members(SALTO_GROUP), [ANNA_EMAIL]);
    assert_eq!(app.brivo.members(BRIVO_GROUP), [ANNA_EMAIL]);
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 1);
    assert_eq!(app.brivo.membership_calls(), 1);
    assert_eq!(app.brivo.invitations().len(), 1);

    // Anna uses the pass a moment later (a new second: a new event id).
    tokio::time::sleep(Duration::from_millis(1100)).await;
    app.nexudus.set_pass_used(pass);
    assert_eq!(app.hook().await, 202);
    app.run_worker().await;
    assert!(app.salto.members(SALTO_GROUP).is_empty());
    assert!(app.brivo.members(BRIVO_GROUP).is_empty());
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 2);
    assert_eq!(app.brivo.membership_calls(), 2);
    assert_eq!(app.salto.users()[0].subscription_state, "suspended");
    assert!(app.brivo.users()[0].suspended);

    // Everything was recorded in DynamoDB.
    let subject = SubjectKey::new(&TenantId(TENANT.into()), SourceKind::Nexudus, ANNA.to_string());
    let users = app.env.records.provider_users(&subject).await.expect("users");
    assert_eq!(users.len(), 2);
    assert!(users.iter().all(|u| u.state == UserState::Suspended));
    assert!(users.iter().any(
        |u| u.provider == ProviderKind::Salto && u.ids.as_ref().is_some_and(|i| i.platform_id.is_some())
    ));
    assert!(app.env.records.applied(&subject).await.expect("applied").is_empty());
    let audit = app.env.records.audit_log(&subject).await.expect("audit");
    let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
    assert_eq!(actions.iter().filter(|a| **a == "add member").count(), 2, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "remove member").count(), 2, "{actions:?}");
    assert_eq!(actions.iter().filter(|a| **a == "suspend user").count(), 2, "{actions:?}");
}

#[tokio::test]
async fn a_team_contract_fans_out_to_every_member_and_a_leaver_is_removed_by_the_tick() {
    const BEN: i64 = 457;
    const BEN_EMAIL: &str = "ben@example.com";
    const TEAM: i64 = 900;
    let app = spawn_aws_groups_app().await;
    let n = &app.nexudus;
    n.add_coworker(BEN, "Ben Berger", BEN_EMAIL);
    n.add_desk(DESK, "Desk 1", testkit::sim::nexudus::DESK_DEDICATED);
    n.add_desk(OFFICE, "Office 2", testkit::sim::nexudus::DESK_OFFICE);
    n.add_team(TEAM, "Acme", Some(ANNA), &[ANNA, BEN]);
    n.add_contract(ANNA, "Acme office", Utc::now() - chrono::Duration::days(1), &[DESK, OFFICE]);

    // One team webhook: one SQS message per member, each in its own FIFO group.
    assert_eq!(app.hook_dto("TeamCreated", &n.team_dto(TEAM)).await, 202);
    app.run_worker().await;
    let both = [ANNA_EMAIL.to_owned(), BEN_EMAIL.to_owned()];
    let mut desk = app.salto.members(DESK_SALTO);
    desk.sort();
    assert_eq!(desk, both);
    let mut office = app.brivo.members(OFFICE_BRIVO);
    office.sort();
    assert_eq!(office, both);
    assert_eq!(app.salto.membership_calls(DESK_SALTO), 2);
    assert_eq!(app.brivo.membership_calls(), 2);

    // Ben leaves: the webhook names only Anna; the worker finds Ben from the stored team
    // (DynamoDB) and sets his timer; the tick brings him to a worker.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    n.set_now(Utc::now());
    n.set_team_members(TEAM, &[ANNA]);
    assert_eq!(app.hook_dto("TeamUpdated", &n.team_dto(TEAM)).await, 202);
    app.run_worker().await;
    let due = shared::serve::tick(&app.env.records, app.queue.as_ref()).await.expect("tick");
    assert!(due >= 1, "Ben's timer is due");
    app.run_worker().await;
    assert_eq!(app.salto.members(DESK_SALTO), [ANNA_EMAIL]);
    assert_eq!(app.brivo.members(OFFICE_BRIVO), [ANNA_EMAIL]);
    assert_eq!(app.salto.membership_calls(DESK_SALTO), 3);
    assert_eq!(app.brivo.membership_calls(), 3);
    let ben = SubjectKey::new(&TenantId(TENANT.into()), SourceKind::Nexudus, BEN.to_string());
    let users = app.env.records.provider_users(&ben).await.expect("users");
    assert!(users.iter().all(|u| u.state == UserState::Suspended), "policy suspend: {users:?}");
}
