//! `console`: the operator console and `/api/v1` behind the HTTP API (the router
//! `portier serve` mounts), over the deployment's table, queue and secrets.

use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::console::{Console, lambda};
use shared::lambda::{LambdaEnv, Warm};
use shared::serve::Runtime;

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(true);
    let env = LambdaEnv::from_env().await?;
    env.warm(&[Warm::Tenants, Warm::Queue], Duration::from_secs(5)).await;
    let router = match lambda::admin_auth_from_env().await? {
        Some(auth) => {
            let rt = Runtime {
                ingress: env.ingress(),
                worker: env.worker(),
                queue: env.queue.clone(),
                records: env.records.clone(),
            };
            shared::console::router(Console::new(rt, auth))
        }
        // No admin token: every path answers 404, as `portier serve` does.
        None => axum::Router::new(),
    };
    run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let router = router.clone();
        async move { Ok::<_, Error>(lambda::console_http(router, &event.payload).await) }
    }))
    .await
}
