//! One way to build the AWS SDK configuration, for Lambda, the CLI and the loopback tests.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;

/// Region used against a loopback endpoint when `AWS_REGION` is unset.
const TEST_REGION: &str = "us-east-1";

/// The SDK configuration.
///
/// With `endpoint_url` (a loopback moto server in tests and local runs) every client talks to
/// that endpoint with static test credentials (`test`/`test`) and the region from `AWS_REGION`
/// or `us-east-1`, so nothing on the machine (profiles, IMDS) is consulted for credentials.
/// Without it, the default provider chain applies (Lambda role, environment, profile; it also
/// honours `AWS_ENDPOINT_URL`).
pub async fn sdk_config(endpoint_url: Option<&str>) -> SdkConfig {
    match endpoint_url {
        Some(url) => {
            let region = std::env::var("AWS_REGION")
                .ok()
                .filter(|r| !r.trim().is_empty())
                .unwrap_or_else(|| TEST_REGION.to_owned());
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(url)
                .region(Region::new(region))
                .credentials_provider(Credentials::new("test", "test", None, None, "portier-test"))
                .load()
                .await
        }
        None => aws_config::load_defaults(BehaviorVersion::latest()).await,
    }
}
