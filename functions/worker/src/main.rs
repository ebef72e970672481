//! `worker`: SQS FIFO batch → reconcile, reporting partial batch failures.

use std::time::Duration;

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::lambda::{LambdaEnv, Warm, worker_sqs};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(true);
    let env = LambdaEnv::from_env().await?;
    env.warm(&[Warm::Tenants], Duration::from_secs(5)).await;
    let worker = env.worker();
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let (worker, queue) = (worker.clone(), env.queue.clone());
        async move { Ok::<_, Error>(worker_sqs(&worker, queue.as_ref(), &event.payload).await) }
    }))
    .await
}
