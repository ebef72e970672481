//! `resync`: the daily schedule (every tenant) or a manual invoke for one tenant, maybe dry.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::lambda::{LambdaEnv, Warm};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(true);
    let env = LambdaEnv::from_env().await?;
    env.warm(&[Warm::Store, Warm::Queue, Warm::Tenants], Duration::from_secs(5)).await;
    run(service_fn(|event: LambdaEvent<serde_json::Value>| {
        let env = env.clone();
        async move { shared::lambda::resync(&env, &event.payload).await.map_err(Error::from) }
    }))
    .await
}
