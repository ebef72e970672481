//! One way to build the AWS SDK configuration, for Lambda, the CLI and the loopback tests.

use aws_config::{BehaviorVersion, Region, SdkConfig};
// Every SDK crate re-exports the same smithy error types; SQS's path serves them all.
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use std::time::Duration;

use crate::error::InfraError;

/// Region used against a loopback endpoint when `AWS_REGION` is unset.
const TEST_REGION: &str = "us-east-1";

/// Every AWS call is bounded: connecting, each attempt and the whole operation (retries
/// included), so a stalled endpoint never holds a webhook or a worker.
fn timeouts() -> aws_config::timeout::TimeoutConfig {
    aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        .operation_attempt_timeout(Duration::from_secs(10))
        .operation_timeout(Duration::from_secs(30))
        .build()
}

/// The SDK configuration.
///
/// With `endpoint_url` (a loopback moto server in tests and local runs) every client talks to
/// that endpoint, in the region from `AWS_REGION` or `us-east-1`. Credentials always come from
/// the default chain (the Lambda role, the environment, a profile): an endpoint never switches
/// to built-in test credentials. Tests export `test`/`test` themselves (`scripts/moto.sh`).
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    let loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts());
    match endpoint_url {
        Some(url) => {
            let region = std::env::var("AWS_REGION")
                .ok()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| TEST_REGION.to_owned());
            loader.endpoint_url(url).region(Region::new(region)).load().await
        }
        None => loader.load().await,
    }
}

/// An SDK error as an [`InfraError`]: service, operation, error code and the service's message,
/// never the request (items, keys and messages may hold emails).
pub fn sdk_error<E, R>(service: &str, op: &str, err: SdkError<E, R>) -> InfraError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match err.as_service_error() {
        Some(e) => InfraError::Backend(format!(
            "{service} {op}: {}: {}",
            e.code().unwrap_or("unknown error"),
            e.message().unwrap_or("no message")
        )),
        None => InfraError::Backend(format!("{service} {op}: {}", DisplayErrorContext(&err))),
    }
}
