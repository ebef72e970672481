//! The loopback DynamoDB/SQS side of the Lambda scenario tests: a fresh table and FIFO queue
//! per test on the moto server `make test` starts, API Gateway's events for the ingress
//! functions, and the SQS event source mapping's loop.

use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::sqs::SqsEvent;
use shared::clock::{Clock, SystemClock};
use shared::lambda::{LambdaEnv, answer, worker_sqs};
use shared::queue::Queue;
use shared::queue::sqs::SqsQueue;
use shared::store::Records;
use shared::store::dynamo::DynamoStore;
use shared::worker::Worker;

use crate::sim::SimWebhook;

/// The loopback server's address; the Lambda tests cannot run without it.
pub fn endpoint() -> String {
    std::env::var("PORTIER_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("PORTIER_TEST_AWS_ENDPOINT is not set: start the loopback server with `make test` or `scripts/moto.sh start`")
    })
}

/// A new DynamoDB table and SQS FIFO queue (with its DLQ after 3 receives) on the loopback server.
pub async fn table_and_queue() -> (Records, Arc<SqsQueue>) {
    let sdk = shared::aws::sdk_config(Some(&endpoint())).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let store =
        DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), format!("portier-{unique}"), clock.clone());
    store.create_table_if_missing().await.unwrap_or_else(|e| panic!("create table: {e}"));
    let queue = SqsQueue::create_fifo(aws_sdk_sqs::Client::new(&sdk), &format!("portier-{unique}"), 3)
        .await
        .unwrap_or_else(|e| panic!("create queues: {e}"));
    (Records::new(Arc::new(store), clock), Arc::new(queue))
}

/// API Gateway → `nexudus-ingress`: the simulator's webhook for `tenant` as the function
/// receives it, answered by `env`'s routes. Returns the status code.
pub async fn nexudus_ingress(env: &LambdaEnv, tenant: &str, hook: &SimWebhook) -> i64 {
    let sig = hook
        .headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("x-nexudus-hook-signature"))
        .map(|(_, v)| v.as_str());
    let event = crate::events::nexudus_hook(tenant, &hook.action, "", sig, &hook.body);
    let event: ApiGatewayV2httpRequest =
        serde_json::from_value(event).unwrap_or_else(|e| panic!("API Gateway event: {e}"));
    answer(&env.hooks(), event).await.status_code
}

/// SQS → `worker`, as Lambda's event source mapping does: batches of up to 10, successes
/// deleted, reported failures visible again at once (sooner than the worker's retry delay, to
/// keep tests short). Returns when the queue is empty.
pub async fn run_sqs_worker(queue: &SqsQueue, worker: &Worker) {
    for _ in 0..20 {
        let batch = queue
            .receive(10, Duration::from_secs(30), Duration::from_secs(1))
            .await
            .unwrap_or_else(|e| panic!("receive: {e}"));
        if batch.is_empty() {
            return;
        }
        let event: SqsEvent = serde_json::from_value(crate::events::sqs_received(&batch))
            .unwrap_or_else(|e| panic!("SQS event: {e}"));
        let response = worker_sqs(worker, queue, &event).await;
        for d in &batch {
            let failed = response.batch_item_failures.iter().any(|f| f.item_identifier == d.message_id);
            let done = if failed {
                queue.retry_later(&d.handle, Duration::ZERO).await
            } else {
                queue.delete(&d.handle).await
            };
            done.unwrap_or_else(|e| panic!("settling a message: {e}"));
        }
    }
    panic!("the queue did not drain");
}
