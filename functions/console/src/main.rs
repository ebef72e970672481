//! `console`: the operator console and `/api/v1` behind the HTTP API (the router
//! `portier serve` mounts), over the deployment's table, queue and secrets.

use std::time::Duration;

use lambda_runtime::Error;
use shared::console::{Console, lambda};
use shared::lambda::{LambdaEnv, Warm};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(true);
    let env = LambdaEnv::from_env().await?;
    env.warm(&[Warm::Tenants, Warm::Queue], Duration::from_secs(5)).await;
    let router = match lambda::admin_auth_from_env().await? {
        Some(auth) => shared::console::router(Console::new(env.runtime(), auth)),
        // No admin token: every path answers 404, as `portier serve` does.
        None => axum::Router::new(),
    };
    shared::lambda::serve(router).await
}
