//! Salto KS and Brivo memberships through the Lambda handlers, with DynamoDB and SQS FIFO on
//! the loopback wire-protocol server (moto), as `make test` starts it.

use std::sync::Arc;

use chrono::Utc;
use shared::config::NoAccess;
use shared::config::StaticSecrets;
use shared::lambda::LambdaEnv;
use shared::model::{ProviderKind, SourceKind, SubjectKey, TenantId, UserState};
use shared::queue::sqs::SqsQueue;
use testkit::groups::{
    BRIVO_GROUP, COWORKING, DESK, DESK_SALTO, OFFICE, OFFICE_BRIVO, SALTO_GROUP, add_group_providers,
    group_secrets, start_group_sims,
};
use testkit::harness::{ANNA, ANNA_EMAIL, HookAuth, TENANT};
use testkit::sim::{BrivoSim, NexudusSim, SaltoSim, TapkeySim};

struct AwsApp {
    nexudus: NexudusSim,
    salto: SaltoSim,
    brivo: BrivoSim,
    env: LambdaEnv,
    queue: Arc<SqsQueue>,
    _tapkey: TapkeySim,
}

async fn spawn_aws_groups_app() -> AwsApp {
    let (nexudus, tapkey) = testkit::harness::space_sims().await;
    let (salto, brivo) = start_group_sims().await;
    nexudus.set_now(Utc::now());
    nexudus.add_coworker(ANNA, "Anna Müller", ANNA_EMAIL);
    nexudus.add_time_pass(COWORKING, "Coworking");

    let (records, queue) = testkit::aws::table_and_queue().await;
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
        testkit::aws::nexudus_ingress(&self.env, TENANT, &self.nexudus.webhook(action, dto)).await
    }

    /// SQS → `worker`, as the event source mapping does.
    async fn run_worker(&self) {
        testkit::aws::run_sqs_worker(&self.queue, &self.env.worker()).await;
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

    // Anna uses the pass at once (the same body within the same second is still a new event).
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
async fn a_team_contract_reaches_every_member_and_a_leaver_is_removed_by_the_tick() {
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

    // One team webhook: one SQS message; the worker reads the team from Nexudus, records each
    // member's entitlements and sets their timers; the tick brings each to a worker in their
    // own FIFO group.
    assert_eq!(app.hook_dto("TeamCreated", &n.team_dto(TEAM)).await, 202);
    assert_eq!(shared::queue::Queue::stats(app.queue.as_ref()).await.expect("stats").visible, 1);
    app.run_worker().await;
    shared::tick::enqueue_due(&app.env.records, app.queue.as_ref()).await.expect("tick");
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
    n.set_now(Utc::now());
    n.set_team_members(TEAM, &[ANNA]);
    assert_eq!(app.hook_dto("TeamUpdated", &n.team_dto(TEAM)).await, 202);
    app.run_worker().await;
    let due = shared::tick::enqueue_due(&app.env.records, app.queue.as_ref()).await.expect("tick");
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
