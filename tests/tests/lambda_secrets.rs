//! Tenant secrets from Secrets Manager, as the Lambda functions read them: one secret per
//! tenant (`<prefix><tenant>`, a JSON object of the config's names → values), on the loopback
//! moto server `make test` starts, together with DynamoDB and SQS FIFO.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use chrono::Utc;
use shared::clock::{Clock, SystemClock};
use shared::http::RetryPolicy;
use shared::lambda::{LambdaEnv, Warm, worker_sqs};
use shared::model::TenantId;
use shared::queue::Queue;
use shared::queue::sqs::SqsQueue;
use shared::secrets::{ExposeSecret, SECRETS_TTL, SecretsManager, TenantSecrets};
use shared::store::Records;
use shared::store::dynamo::DynamoStore;
use shared::tenants::{TableTenants, Tenants};
use testkit::harness::{ANNA, BIKE_STORAGE, HOOK_SECRET, HookAuth, LOCK, TENANT};
use testkit::sim::{NexudusSim, TapkeySim};

fn endpoint() -> String {
    std::env::var("PORTIER_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("PORTIER_TEST_AWS_ENDPOINT is not set: start the loopback server with `make test` or `scripts/moto.sh start`")
    })
}

struct World {
    nexudus: NexudusSim,
    tapkey: TapkeySim,
    records: Records,
    queue: Arc<SqsQueue>,
    sm: aws_sdk_secretsmanager::Client,
    /// Unique per test, so tests never see each other's secrets.
    prefix: String,
}

async fn world() -> World {
    let (nexudus, tapkey) = testkit::harness::space_sims().await;
    nexudus.set_now(Utc::now());
    nexudus.add_coworker(ANNA, "Anna Müller", testkit::harness::ANNA_EMAIL);
    nexudus.add_time_pass(BIKE_STORAGE, "Bike Storage");
    tapkey.add_lock(LOCK, "Bike Storage Door", true);

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
    // A limit for the rate-share test to divide (far above what these tests call).
    if let Some(t) = tenant.providers.tapkey.as_mut() {
        t.calls_per_second = Some(20.0);
    }
    records
        .put_tenant_config(&TenantId(TENANT.into()), serde_json::to_value(&tenant).expect("json"))
        .await
        .expect("config");
    World {
        nexudus,
        tapkey,
        records,
        queue,
        sm: aws_sdk_secretsmanager::Client::new(&sdk),
        prefix: format!("portier-{unique}/"),
    }
}

impl World {
    fn secret_id(&self) -> String {
        format!("{}{TENANT}", self.prefix)
    }

    /// The tenant's secret as the operator stores it (docs/deploy.md).
    fn secret_json(&self, without: &str, overrides: &[(&str, &str)]) -> String {
        let mut values: serde_json::Map<String, serde_json::Value> = testkit::harness::secrets(&self.tapkey)
            .0
            .into_iter()
            .filter(|(k, _)| k != without)
            .map(|(k, v)| (k, serde_json::Value::String(v)))
            .collect();
        for (k, v) in overrides {
            values.insert((*k).into(), serde_json::Value::String((*v).into()));
        }
        serde_json::Value::Object(values).to_string()
    }

    async fn create_secret(&self, json: String) {
        self.sm
            .create_secret()
            .name(self.secret_id())
            .secret_string(json)
            .send()
            .await
            .expect("create secret");
    }

    async fn put_secret(&self, json: String) {
        self.sm
            .put_secret_value()
            .secret_id(self.secret_id())
            .secret_string(json)
            .send()
            .await
            .expect("put secret");
    }

    fn manager(&self, ttl: Duration) -> Arc<SecretsManager> {
        Arc::new(SecretsManager::new(self.sm.clone(), self.prefix.clone(), ttl))
    }

    /// A signed `AccessControlUpdate` for Anna, through the ingress handler.
    async fn hook(&self, env: &LambdaEnv) -> i64 {
        let hook = self.nexudus.webhook("AccessControlUpdate", &self.nexudus.coworker_dto(ANNA));
        testkit::aws::nexudus_ingress(env, TENANT, &hook).await
    }
}

#[tokio::test]
async fn the_functions_run_on_the_tenants_secret_from_secrets_manager() {
    let w = world().await;
    w.create_secret(w.secret_json("", &[])).await;
    w.nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    let env = LambdaEnv::with_tenant_secrets(w.records.clone(), w.queue.clone(), w.manager(SECRETS_TTL));

    // Cold start: tenant config, secret and queue are loaded before the first request.
    assert_eq!(env.warm(&[Warm::Tenants, Warm::Queue, Warm::Store], Duration::from_secs(10)).await, 3);

    // The HMAC check uses NEXUDUS_HOOK_SECRET from the secret ...
    assert_eq!(w.hook(&env).await, 202);
    // ... and the worker reads Nexudus and grants at Tapkey with the secret's credentials.
    let batch = w.queue.receive(10, Duration::from_secs(30), Duration::from_secs(1)).await.expect("receive");
    assert_eq!(batch.len(), 1);
    let records: Vec<_> =
        batch.iter().map(|d| (d.message_id.clone(), d.group.clone(), d.body.clone())).collect();
    let event: SqsEvent = serde_json::from_value(testkit::events::sqs_batch(&records)).expect("event");
    let response = worker_sqs(&env.worker(), w.queue.as_ref(), &event).await;
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(w.tapkey.active_grants().len(), 1);
}

#[tokio::test]
async fn a_missing_secret_or_key_is_named_and_the_webhook_is_retried_later() {
    let w = world().await;
    let manager = w.manager(SECRETS_TTL);
    let tenant = TenantId(TENANT.into());

    let err = manager.for_tenant(&tenant).await.err().expect("no secret yet").to_string();
    assert!(err.contains(&w.secret_id()) && err.contains("ResourceNotFound"), "{err}");
    let env = LambdaEnv::with_tenant_secrets(w.records.clone(), w.queue.clone(), manager);
    // 503: Nexudus retries, and the webhook goes through once the operator stored the secret.
    assert_eq!(w.hook(&env).await, 503);
    assert_eq!(w.queue.stats().await.expect("stats").visible, 0);

    w.create_secret(w.secret_json("NEXUDUS_HOOK_SECRET", &[])).await;
    let tenants =
        TableTenants::new(w.records.clone(), w.manager(SECRETS_TTL), RetryPolicy::fast(), Duration::ZERO);
    let err = tenants.get(&tenant).await.err().expect("key missing").to_string();
    assert!(err.contains(&w.secret_id()) && err.contains("NEXUDUS_HOOK_SECRET"), "{err}");
    assert!(!err.contains(HOOK_SECRET));
}

#[tokio::test]
async fn a_rotated_secret_is_read_after_the_ttl_and_unchanged_tenants_keep_their_clients() {
    let w = world().await;
    let tenant = TenantId(TENANT.into());
    w.create_secret(w.secret_json("", &[])).await;

    // Within the TTL the container keeps what it read at cold start.
    let cached =
        TableTenants::new(w.records.clone(), w.manager(SECRETS_TTL), RetryPolicy::fast(), Duration::ZERO);
    let first = cached.get(&tenant).await.expect("get").expect("tenant");
    w.put_secret(w.secret_json("", &[("NEXUDUS_HOOK_SECRET", "rotated-hook-secret-2026")])).await;
    let again = cached.get(&tenant).await.expect("get").expect("tenant");
    assert!(Arc::ptr_eq(&first, &again), "same secret and config: same clients");

    // Once the TTL has passed, the new value is used; a re-read of the same value keeps the
    // tenant's clients (and so its provider tokens).
    let fresh =
        TableTenants::new(w.records.clone(), w.manager(Duration::ZERO), RetryPolicy::fast(), Duration::ZERO);
    let rotated = fresh.get(&tenant).await.expect("get").expect("tenant");
    assert_eq!(rotated.webhook_secret.as_ref().map(|s| s.expose_secret()), Some("rotated-hook-secret-2026"));
    let unchanged = fresh.get(&tenant).await.expect("get").expect("tenant");
    assert!(Arc::ptr_eq(&rotated, &unchanged));
    assert!(!Arc::ptr_eq(&first, &rotated));
}

#[tokio::test]
async fn each_container_keeps_its_share_of_the_tenants_rate_limits() {
    let w = world().await;
    let tenant = TenantId(TENANT.into());
    w.create_secret(w.secret_json("", &[])).await;
    let shares = shared::lambda::rate_shares(Some("2")).expect("valid");
    let tenants =
        TableTenants::new(w.records.clone(), w.manager(SECRETS_TTL), RetryPolicy::fast(), Duration::ZERO)
            .with_rate_shares(shares);
    let runtime = tenants.get(&tenant).await.expect("get").expect("tenant");
    // Two workers and the resync: a third each of the Nexudus allowance and of Tapkey's limit.
    match &runtime.config.source {
        shared::config::SourceConfig::Nexudus { calls_per_minute, .. } => {
            assert_eq!(*calls_per_minute, Some(40))
        }
        other => panic!("source {other:?}"),
    }
    let tapkey = runtime.config.providers.tapkey.as_ref().and_then(|t| t.calls_per_second);
    assert_eq!(tapkey, Some(20.0 / 3.0));
}
