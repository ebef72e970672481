//! `tick`: EventBridge schedule (every minute) → due timers → reconcile messages on SQS FIFO.

use std::time::Duration;

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::lambda::{LambdaEnv, Warm, tick_scheduled};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(true);
    let env = LambdaEnv::from_env().await?;
    env.warm(&[Warm::Store, Warm::Queue], Duration::from_secs(5)).await;
    // The scheduled event's content is not used: what is due is decided by the clock.
    run(service_fn(|_: LambdaEvent<serde_json::Value>| {
        let env = env.clone();
        async move { tick_scheduled(&env).await.map_err(Error::from) }
    }))
    .await
}
