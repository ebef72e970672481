//! Lambda event mapping: API Gateway HTTP API → ingress, SQS FIFO batch → worker.
//!
//! The binaries in `functions/` only build the clients and call these; tests call them
//! directly with events like those in `events/`.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::encodings::Body;
use aws_lambda_events::http::{HeaderMap, HeaderValue};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use base64::Engine;

use crate::ingress::verify::StandardHeaders;
use crate::ingress::{Answer, Ingress, KinnovisRequest, NexudusRequest};
use crate::worker::Worker;

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
    let token = event.query_string_parameters.first("token");
    let answer = ingress
        .nexudus(NexudusRequest { tenant: &tenant, action: &action, token, signature, body: &body })
        .await;
    respond(&answer)
}

/// `POST /hooks/kinnovis/{tenant}` behind an HTTP API (payload format 2.0).
pub async fn kinnovis_http(ingress: &Ingress, event: &ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let raw = event.raw_path.as_deref().unwrap_or_default();
    let tenant = event
        .path_parameters
        .get("tenant")
        .cloned()
        .or_else(|| raw.trim_start_matches('/').split('/').nth(2).map(str::to_owned));
    let Some(tenant) = tenant.filter(|t| !t.is_empty()) else {
        return respond(&Answer {
            status: 404,
            body: serde_json::json!({ "status": 404, "message": "no such route" }),
        });
    };
    let body = match raw_body(event) {
        Ok(b) => b,
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
/// must not overtake it (design §8).
pub async fn worker_sqs(worker: &Worker, event: &SqsEvent) -> SqsBatchResponse {
    let mut response = SqsBatchResponse::default();
    let mut failed = false;
    for record in &event.records {
        let id = record.message_id.clone().unwrap_or_default();
        if !failed {
            match worker.handle(record.body.as_deref().unwrap_or_default()).await {
                Ok(_) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "record failed; it and the rest of the batch will be retried");
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

/// The clients a Lambda container builds once at cold start, from its environment:
/// `TABLE_NAME`, `QUEUE_URL`, optional `DLQ_URL`, and `AWS_ENDPOINT_URL` for a loopback server.
#[derive(Clone)]
pub struct LambdaEnv {
    pub records: crate::store::Records,
    pub queue: std::sync::Arc<dyn crate::queue::Queue>,
    pub tenants: std::sync::Arc<dyn crate::tenants::Tenants>,
}

impl LambdaEnv {
    pub async fn from_env() -> Result<Self, String> {
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
        Ok(Self::new(records, std::sync::Arc::new(queue), std::sync::Arc::new(crate::config::EnvSecrets)))
    }

    /// Assembles the environment from parts (tests use a loopback server and static secrets).
    pub fn new(
        records: crate::store::Records,
        queue: std::sync::Arc<dyn crate::queue::Queue>,
        secrets: std::sync::Arc<dyn crate::config::Secrets>,
    ) -> Self {
        let tenants = crate::tenants::TableTenants::new(
            records.clone(),
            secrets,
            crate::http::RetryPolicy::default(),
            std::time::Duration::from_secs(60),
        );
        Self { records, queue, tenants: std::sync::Arc::new(tenants) }
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
