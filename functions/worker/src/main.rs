//! `worker`: SQS FIFO batch → reconcile, reporting partial batch failures.

use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::lambda::{LambdaEnv, worker_sqs};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(true);
    let worker = LambdaEnv::from_env().await?.worker();
    run(service_fn(|event: LambdaEvent<SqsEvent>| {
        let worker = worker.clone();
        async move { Ok::<_, Error>(worker_sqs(&worker, &event.payload).await) }
    }))
    .await
}
