//! `kinnovis-ingress`: API Gateway HTTP API → Standard Webhooks verify → SQS FIFO.

use std::time::Duration;

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use shared::lambda::{LambdaEnv, Warm, kinnovis_http};

#[tokio::main]
async fn main() -> Result<(), Error> {
    shared::telemetry::init(true);
    let env = LambdaEnv::from_env().await?;
    env.warm(&[Warm::Tenants, Warm::Queue], Duration::from_secs(5)).await;
    let ingress = env.ingress();
    run(service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let ingress = ingress.clone();
        async move { Ok::<_, Error>(kinnovis_http(&ingress, &event.payload).await) }
    }))
    .await
}
