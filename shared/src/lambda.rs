//! Lambda event mapping: API Gateway HTTP API → ingress, SQS FIFO batch → worker,
//! EventBridge schedule → tick.
//!
//! The binaries in `functions/` only build the clients and call these; tests call them
//! directly with events like those in `events/`.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use base64::Engine;

use crate::error::WorkError;
use crate::ingress::verify::StandardHeaders;
use crate::ingress::{Answer, BrivoRequest, Ingress, KinnovisRequest, NexudusRequest};
use crate::queue::Queue;
use crate::worker::{Worker, error_policy};

/// `POST /hooks/nexudus/{tenant}/{action}` behind an HTTP API (payload format 2.0).
pub async fn nexudus_http(ingress: &Ingress, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let raw = event.raw_path.as_deref().unwrap_or_default();
    let mut from_path = raw.trim_start_matches('/').split('/').skip(2);
    let tenant = event.path_parameters.get("tenant").cloned().or_else(|| from_path.next().map(str::to_owned));
    let action = event.path_parameters.get("action").cloned().or_else(|| from_path.next().map(str::to_owned));
    let (Some(tenant), Some(action)) = (tenant, action) else {
        return respond(&Answer {
            status: 404,
            body: serde_json::json!({ "status": 404, "message": "no such route" }),
        });
    };
    let body = match raw_body(event) {
        Ok(b) => b,
        Err(answer) => return respond(&answer),
    };
    let signature = event.headers.get("x-nexudus-hook-signature").and_then(|v| v.to_str().ok());
    // A repeated `?token=` is refused, as `portier serve` refuses it (no first-wins guessing).
    // API Gateway joins repeats with commas in `queryStringParameters`; the raw string shows them.
    let raw_tokens = event
        .raw_query_string
        .as_deref()
        .unwrap_or_default()
        .split('&')
        .filter(|kv| kv.split('=').next() == Some("token"))
        .count();
    if raw_tokens > 1 || event.query_string_parameters.all("token").is_some_and(|t| t.len() > 1) {
        return respond(&Answer {
            status: 400,
            body: serde_json::json!({ "status": 400, "message": "token given more than once" }),
        });
    }
    let token = event.query_string_parameters.first("token");
    let answer = ingress
        .nexudus(NexudusRequest { tenant: &tenant, action: &action, token, signature, body: &body })
        .await;
    respond(&answer)
}

/// `POST /hooks/kinnovis/{tenant}` behind an HTTP API (payload format 2.0).
pub async fn kinnovis_http(ingress: &Ingress, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let (tenant, body) = match tenant_and_body(event) {
        Ok(t) => t,
        Err(answer) => return respond(&answer),
    };
    // API Gateway lower-cases header names in payload format 2.0; `HeaderMap` matches any case.
    let header = |name: &str| event.headers.get(name).and_then(|v| v.to_str().ok());
    let headers = StandardHeaders {
        id: header("webhook-id"),
        timestamp: header("webhook-timestamp"),
        signature: header("webhook-signature"),
    };
    respond(&ingress.kinnovis(KinnovisRequest { tenant: &tenant, headers, body: &body }).await)
}

/// `POST /hooks/brivo/{tenant}?token=` behind an HTTP API (payload format 2.0): Brivo's event
/// subscription deliveries, for presence tracking.
pub async fn brivo_http(ingress: &Ingress, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let (tenant, body) = match tenant_and_body(event) {
        Ok(t) => t,
        Err(answer) => return respond(&answer),
    };
    let token = event.query_string_parameters.first("token");
    respond(&ingress.brivo(BrivoRequest { tenant: &tenant, token, body: &body }).await)
}

/// The `{tenant}` of a `/hooks/<system>/{tenant}` route (404 without one) and the body as sent.
fn tenant_and_body(event: &ApiGatewayV2httpRequest) -> Result<(String, Vec<u8>), Answer> {
    let raw = event.raw_path.as_deref().unwrap_or_default();
    let tenant = event
        .path_parameters
        .get("tenant")
        .cloned()
        .or_else(|| raw.trim_start_matches('/').split('/').nth(2).map(str::to_owned));
    let Some(tenant) = tenant.filter(|t| !t.is_empty()) else {
        return Err(Answer {
            status: 404,
            body: serde_json::json!({ "status": 404, "message": "no such route" }),
        });
    };
    Ok((tenant, raw_body(event)?))
}

/// Whether an HTTP API event is for the Brivo route (the `nexudus-ingress` function serves both).
pub fn is_brivo_route(event: &ApiGatewayV2httpRequest) -> bool {
    event.raw_path.as_deref().unwrap_or_default().trim_start_matches('/').starts_with("hooks/brivo/")
}

/// The request body as sent: API Gateway passes non-text bodies base64-encoded.
fn raw_body(event: &ApiGatewayV2httpRequest) -> Result<Vec<u8>, Answer> {
    match (&event.body, event.is_base64_encoded) {
        (None, _) => Ok(Vec::new()),
        (Some(b), false) => Ok(b.clone().into_bytes()),
        (Some(b), true) => base64::engine::general_purpose::STANDARD.decode(b).map_err(|_| Answer {
            status: 400,
            body: serde_json::json!({ "status": 400, "message": "body is not valid base64" }),
        }),
    }
}

fn respond(answer: &Answer) -> ApiGatewayV2httpResponse {
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    let mut response = ApiGatewayV2httpResponse::default();
    response.status_code = i64::from(answer.status);
    response.headers = headers;
    response.body = Some(Body::Text(answer.body.to_string()));
    response
}

/// Works a FIFO batch in order. On the first failure, that record and every later one are
/// reported in `batchItemFailures`: later records may belong to the same message group and
/// must not overtake it (design §8). The failed record's visibility is set to the delay
/// `portier serve` waits ([`error_policy`]), so it comes back then instead of after the
/// queue's whole visibility timeout, which would hold up its message group as long.
pub async fn worker_sqs(worker: &Worker, queue: &dyn Queue, event: &SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failed = false;
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        if !failed {
            match worker.handle(record.body.as_deref().unwrap_or_default()).await {
                Ok(_) => continue,
                Err(e) => {
                    retry_later(queue, record, &e).await;
                    failed = true;
                }
            }
        }
        let mut item = BatchItemFailure::default();
        item.item_identifier = id;
        response.batch_item_failures.push(item);
    }
    response
}

/// Makes a failed record visible again after its redelivery delay. A failure to do so is only
/// logged: the record still comes back, after the visibility timeout.
async fn retry_later(queue: &dyn Queue, record: &SqsMessage, error: &WorkError) {
    let receive_count =
        record.attributes.get("ApproximateReceiveCount").and_then(|c| c.parse().ok()).unwrap_or(1);
    let delay = error_policy(error, receive_count).after;
    tracing::warn!(error = %error, receive_count, delay_ms = delay.as_millis() as u64, "record failed; it and the rest of the batch will be retried");
    let Some(handle) = record.receipt_handle.as_deref().filter(|h| !h.is_empty()) else {
        tracing::warn!("record has no receipt handle; it comes back after the visibility timeout");
        return;
    };
    if let Err(e) = queue.retry_later(handle, delay).await {
        tracing::warn!(error = %e, "retry delay not set; the record comes back after the visibility timeout");
    }
}

/// EventBridge schedule → `tick`: every subject whose timer is due gets a reconcile message.
/// The scheduled event carries nothing Portier needs; "now" is the store's clock. A failure is
/// returned to Lambda and the next minute's tick catches up (timers stay until enqueued).
pub async fn tick_scheduled(env: &LambdaEnv) -> Result<serde_json::Value, crate::error::WorkError> {
    let enqueued = crate::serve::tick(&env.records, env.queue.as_ref()).await?;
    // Presence: Salto KS entries polled, door events checked in at Nexudus (one poll loop per
    // tenant under its lease, whatever overlaps between invocations).
    let presence = crate::presence::tick(&env.records, env.tenants.as_ref()).await?;
    tracing::info!(
        enqueued,
        polled = presence.polled,
        worked = presence.worked,
        waiting = presence.waiting,
        "tick"
    );
    Ok(serde_json::json!({ "enqueued": enqueued, "presence": presence }))
}

/// The connections a function warms during init (see [`LambdaEnv::warm`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Warm {
    /// DynamoDB (one read).
    Store,
    /// SQS (`GetQueueAttributes` of the work queue).
    Queue,
    /// Every tenant's config and secrets, and the tenants' clients built (DynamoDB and
    /// Secrets Manager).
    Tenants,
}

/// The clients a Lambda container builds once at cold start, from its environment:
/// `TABLE_NAME`, `QUEUE_URL`, optional `DLQ_URL`, `SECRETS_PREFIX` (each tenant's secrets are
/// the Secrets Manager secret `<prefix><tenant>`; unset: environment variables, for local
/// runs), and `AWS_ENDPOINT_URL` for a loopback server.
#[derive(Clone)]
pub struct LambdaEnv {
    pub records: crate::store::Records,
    pub queue: std::sync::Arc<dyn crate::queue::Queue>,
    pub tenants: std::sync::Arc<dyn crate::tenants::Tenants>,
    /// When the container began building this, for the `init_ms` figure [`LambdaEnv::warm`] logs.
    started: std::time::Instant,
}

/// How many containers may call one tenant's accounts at once, each with rate limiters of its
/// own: the worker's maximum concurrency (`WORKER_MAX_CONCURRENCY`, the template's
/// `WorkerMaxConcurrency`) plus the one resync. Each container keeps `1/shares` of every limit,
/// so together they stay within the account's. Unset: 1 (a single process).
pub fn rate_shares(worker_max_concurrency: Option<&str>) -> Result<u32, String> {
    match worker_max_concurrency.map(str::trim) {
        None | Some("") => Ok(1),
        Some(v) => match v.parse::<u32>() {
            Ok(n) if (1..=1000).contains(&n) => Ok(n + 1),
            _ => Err(format!("WORKER_MAX_CONCURRENCY must be a whole number from 1 to 1000, not {v:?}")),
        },
    }
}

/// How long a tenant's config is used before the table is read again.
pub const CONFIG_TTL: std::time::Duration = std::time::Duration::from_secs(60);

impl LambdaEnv {
    pub async fn from_env() -> Result<Self, String> {
        let started = std::time::Instant::now();
        let need =
            |name: &str| std::env::var(name).map_err(|_| format!("environment variable {name} is not set"));
        let table = need("TABLE_NAME")?;
        let queue_url = need("QUEUE_URL")?;
        let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
        let sdk = crate::aws::sdk_config(endpoint.as_deref()).await;
        let clock: std::sync::Arc<dyn crate::clock::Clock> = std::sync::Arc::new(crate::clock::SystemClock);
        let store =
            crate::store::dynamo::DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, clock.clone());
        let records = crate::store::Records::new(std::sync::Arc::new(store), clock);
        let queue = crate::queue::sqs::SqsQueue::new(
            aws_sdk_sqs::Client::new(&sdk),
            queue_url,
            std::env::var("DLQ_URL").ok(),
        );
        let secrets: std::sync::Arc<dyn crate::secrets::TenantSecrets> =
            match std::env::var("SECRETS_PREFIX").ok().filter(|p| !p.is_empty()) {
                Some(prefix) => std::sync::Arc::new(crate::secrets::SecretsManager::new(
                    aws_sdk_secretsmanager::Client::new(&sdk),
                    prefix,
                    crate::secrets::SECRETS_TTL,
                )),
                None => std::sync::Arc::new(crate::secrets::SharedSecrets(std::sync::Arc::new(
                    crate::config::EnvSecrets,
                ))),
            };
        let shares = rate_shares(std::env::var("WORKER_MAX_CONCURRENCY").ok().as_deref())?;
        let mut env = Self::assemble(records, std::sync::Arc::new(queue), secrets, shares);
        env.started = started;
        Ok(env)
    }

    /// Assembles the environment from parts, with one set of secrets for every tenant (tests
    /// use a loopback server and static secrets).
    pub fn new(
        records: crate::store::Records,
        queue: std::sync::Arc<dyn crate::queue::Queue>,
        secrets: std::sync::Arc<dyn crate::config::Secrets>,
    ) -> Self {
        Self::with_tenant_secrets(records, queue, std::sync::Arc::new(crate::secrets::SharedSecrets(secrets)))
    }

    /// Assembles the environment from parts, with secrets per tenant.
    pub fn with_tenant_secrets(
        records: crate::store::Records,
        queue: std::sync::Arc<dyn crate::queue::Queue>,
        secrets: std::sync::Arc<dyn crate::secrets::TenantSecrets>,
    ) -> Self {
        Self::assemble(records, queue, secrets, 1)
    }

    fn assemble(
        records: crate::store::Records,
        queue: std::sync::Arc<dyn crate::queue::Queue>,
        secrets: std::sync::Arc<dyn crate::secrets::TenantSecrets>,
        rate_shares: u32,
    ) -> Self {
        let tenants = crate::tenants::TableTenants::new(
            records.clone(),
            secrets,
            crate::http::RetryPolicy::default(),
            CONFIG_TTL,
        )
        .with_rate_shares(rate_shares);
        Self { records, queue, tenants: std::sync::Arc::new(tenants), started: std::time::Instant::now() }
    }

    /// Opens the connections a function uses during init, so the first request does not pay
    /// for them (a first TLS handshake can cost most of a second). Failures are logged, not
    /// fatal: each request reports its own. `budget` bounds the whole warm-up. Returns how many
    /// parts answered.
    pub async fn warm(&self, parts: &[Warm], budget: std::time::Duration) -> usize {
        let started = std::time::Instant::now();
        let work = async {
            let mut ok = 0;
            for part in parts {
                let result = match part {
                    Warm::Store => self.records.store().ping().await.map(|()| 1),
                    Warm::Queue => self.queue.stats().await.map(|_| 1),
                    Warm::Tenants => self.warm_tenants().await,
                };
                match result {
                    Ok(_) => ok += 1,
                    Err(e) => tracing::warn!(part = ?part, error = %e, "warm-up failed; requests will retry"),
                }
            }
            ok
        };
        let ok = match tokio::time::timeout(budget, work).await {
            Ok(ok) => ok,
            Err(_) => {
                tracing::warn!(budget_ms = budget.as_millis() as u64, "warm-up ran out of time");
                0
            }
        };
        tracing::info!(
            ok,
            of = parts.len(),
            warm_ms = started.elapsed().as_millis() as u64,
            // From reading the environment to ready: the init a cold start adds.
            init_ms = self.started.elapsed().as_millis() as u64,
            "warmed"
        );
        ok
    }

    /// Loads every tenant at once; a tenant that cannot be built is logged and tried again
    /// when a request needs it.
    async fn warm_tenants(&self) -> Result<usize, crate::error::InfraError> {
        let mut set = tokio::task::JoinSet::new();
        for id in self.tenants.ids().await? {
            let tenants = self.tenants.clone();
            set.spawn(async move { (tenants.get(&id).await, id) });
        }
        let mut built = 0;
        while let Some(joined) = set.join_next().await {
            match joined {
                Ok((Ok(Some(_)), _)) => built += 1,
                Ok((Ok(None), _)) => {}
                Ok((Err(e), id)) => tracing::warn!(tenant = %id, error = %e, "tenant not ready"),
                Err(e) => tracing::warn!(error = %e, "tenant warm-up task failed"),
            }
        }
        Ok(built)
    }

    pub fn ingress(&self) -> Ingress {
        Ingress::new(self.tenants.clone(), self.queue.clone(), self.records.clone())
    }

    pub fn worker(&self) -> Worker {
        Worker::new(self.records.clone(), self.tenants.clone())
    }
}

/// The `resync` function's input: the EventBridge schedule (all tenants) or a manual invoke
/// `{"tenant": "space-berlin", "dry_run": true}`.
#[derive(Debug, Default, serde::Deserialize)]
pub struct ResyncRequest {
    #[serde(default)]
    pub tenant: Option<String>,
    #[serde(default)]
    pub dry_run: bool,
    #[serde(default)]
    pub incremental: bool,
}

/// Runs the resync for the requested tenants; the answer summarises each run (the plans in
/// full for a dry run).
pub async fn resync(env: &LambdaEnv, event: &serde_json::Value) -> Result<serde_json::Value, String> {
    // A scheduled event has other fields and no `tenant`: that means every tenant.
    let request: ResyncRequest = serde_json::from_value(event.clone()).unwrap_or_default();
    let ids = match &request.tenant {
        Some(t) => vec![crate::model::TenantId(t.clone())],
        None => env.tenants.ids().await.map_err(|e| e.to_string())?,
    };
    let opts = crate::resync::ResyncOptions {
        dry_run: request.dry_run,
        incremental: request.incremental,
        provider: None,
    };
    let mut reports = Vec::new();
    for id in ids {
        let tenant = env
            .tenants
            .get(&id)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("unknown tenant {id}"))?;
        let report = crate::resync::resync(&env.records, &tenant, env.queue.as_ref(), opts, &mut |_, _| {})
            .await
            .map_err(|e| format!("resync of {id} stopped (the next run resumes): {e}"))?;
        reports.push(serde_json::to_value(&report).map_err(|e| e.to_string())?);
    }
    Ok(serde_json::json!({ "tenants": reports }))
}

#[cfg(test)]
mod tests {
    use super::rate_shares;

    #[test]
    fn the_worker_concurrency_and_the_resync_share_the_rate_limits() {
        assert_eq!(rate_shares(None), Ok(1));
        assert_eq!(rate_shares(Some("")), Ok(1));
        assert_eq!(rate_shares(Some("2")), Ok(3));
        assert_eq!(rate_shares(Some(" 50 ")), Ok(51));
        for bad in ["0", "-1", "two", "1.5", "1001"] {
            let err = rate_shares(Some(bad)).expect_err(bad);
            assert!(err.contains("WORKER_MAX_CONCURRENCY") && err.contains(bad), "{err}");
        }
    }
}
