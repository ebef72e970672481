//! `nexudus-ingress`: API Gateway HTTP API → verify → SQS FIFO; also Brivo's presence events
//! (`/hooks/brivo/{tenant}` → the tenant's presence inbox).

use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::lambda::{LambdaEnv, Warm, brivo_http, is_brivo_route, nexudus_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(true);
    let env = LambdaEnv::from_env().await?;
    env.warm(&[Warm::Tenants, Warm::Queue], Duration::from_secs(5)).await;
    let ingress = env.ingress();
    run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let ingress = ingress.clone();
        async move {
            if is_brivo_route(&event.payload) {
                return Ok::<_, Error>(brivo_http(&ingress, &event.payload).await);
            }
            Ok::<_, Error>(nexudus_http(&ingress, &event.payload).await)
        }
    }))
    .await
}
