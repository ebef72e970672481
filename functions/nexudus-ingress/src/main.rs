//! `nexudus-ingress`: API Gateway HTTP API → verify → SQS FIFO; also Brivo's presence events
//! (`/hooks/brivo/{tenant}` → the tenant's presence inbox). Both through the webhook routes
//! `portier serve` mounts.

use std::time::Duration;

use lambda_runtime::Error;
use shared::lambda::{LambdaEnv, Warm};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(true);
    let env = LambdaEnv::from_env().await?;
    env.warm(&[Warm::Tenants, Warm::Queue], Duration::from_secs(5)).await;
    shared::lambda::serve(env.hooks()).await
}
