//! Lambda event mapping: API Gateway HTTP API → the router `portier serve` mounts, SQS FIFO
//! batch → worker, EventBridge schedule → tick.
//!
//! The binaries in `functions/` only build the clients and call these; tests call them
//! directly with events like those in `events/`.

use aws_lambda_events::apigw::{ApiGatewayV2httpRequest, ApiGatewayV2httpResponse};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use axum::http::{HeaderValue, header};
use base64::Engine;
use lambda_http::request::LambdaRequest;
use lambda_http::{LambdaEvent, lambda_runtime, tower::ServiceExt};

use crate::error::WorkError;
use crate::queue::Queue;
use crate::worker::{Worker, error_policy};

mod env;
pub use env::{CONFIG_TTL, LambdaEnv, Warm, rate_shares};

/// Runs `router` as this function's handler: each HTTP API event (payload 2.0) is answered as
/// [`answer`] does. Returns only when the Lambda runtime stops.
pub async fn serve(router: axum::Router) -> Result<(), lambda_runtime::Error> {
    lambda_runtime::run(lambda_runtime::service_fn(|event: LambdaEvent<ApiGatewayV2httpRequest>| {
        let router = router.clone();
        async move { handle(router, event).await }
    }))
    .await
}

/// The whole of an ingress function (`nexudus-ingress`, `kinnovis-ingress`): the webhook
/// routes `portier serve` mounts, with the tenants and the queue warmed at cold start.
pub async fn run_ingress() -> Result<(), lambda_runtime::Error> {
    crate::telemetry::init(true);
    let env = LambdaEnv::from_env().await?;
    env.warm(&[Warm::Tenants, Warm::Queue], std::time::Duration::from_secs(5)).await;
    serve(env.hooks()).await
}

/// Answers one HTTP API event with `router` as the function does (tests call this).
pub async fn answer(router: &axum::Router, event: ApiGatewayV2httpRequest) -> ApiGatewayV2httpResponse {
    let answer = handle(router.clone(), LambdaEvent::new(event, lambda_runtime::Context::default())).await;
    answer.and_then(|a| Ok(serde_json::from_value(a)?)).unwrap_or_else(|e| plain(500, &e.to_string()))
}

/// `lambda_http`'s conversions (what `lambda_http::run` does) around `router`, so both runtimes
/// route and answer alike. The answer is the JSON the runtime sends: `lambda_http` does not
/// name its response type.
async fn handle(
    router: axum::Router,
    event: LambdaEvent<ApiGatewayV2httpRequest>,
) -> Result<serde_json::Value, lambda_runtime::Error> {
    let LambdaEvent { mut payload, context } = event;
    if let Some(reason) = refusal(&payload) {
        return Ok(serde_json::to_value(plain(400, reason))?);
    }
    // The HTTP API terminates TLS: the `Secure` cookie flag and webhook URLs need to know.
    payload.headers.entry("x-forwarded-proto").or_insert(HeaderValue::from_static("https"));
    let event = LambdaEvent::new(LambdaRequest::ApiGatewayV2(payload), context);
    let Ok(response) = lambda_http::Adapter::from(router).oneshot(event).await;
    Ok(serde_json::to_value(response)?)
}

/// Why `lambda_http` could not turn this event into a request: it panics on a body that is
/// not base64 when flagged so, and on a host, scheme, path or query that is not a URI.
fn refusal(event: &ApiGatewayV2httpRequest) -> Option<&'static str> {
    if event.is_base64_encoded
        && event.body.as_deref().is_some_and(|b| base64::engine::general_purpose::STANDARD.decode(b).is_err())
    {
        return Some("body is not valid base64");
    }
    let text = |name: &str| event.headers.get(name).and_then(|v| v.to_str().ok());
    let path = event.raw_path.as_deref().unwrap_or_default();
    let url = match text("host").or(event.request_context.domain_name.as_deref()) {
        Some(host) => format!("{}://{host}{path}", text("x-forwarded-proto").unwrap_or("https")),
        None => format!("http://localhost{path}"),
    };
    let query = event.raw_query_string.as_deref().unwrap_or_default();
    let uri = url::Url::parse(&url).map(|u| format!("{u}?{query}"));
    let fits =
        (path.is_empty() || path.starts_with('/')) && uri.is_ok_and(|u| u.parse::<axum::http::Uri>().is_ok());
    (!fits).then_some("malformed request")
}

fn plain(status: u16, message: &str) -> ApiGatewayV2httpResponse {
    let mut r = ApiGatewayV2httpResponse::default();
    r.status_code = i64::from(status);
    r.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r.body = Some(aws_lambda_events::encodings::Body::Text(
        serde_json::json!({ "status": status, "message": message }).to_string(),
    ));
    r
}

/// Works a FIFO batch in order. On the first failure, that record and every later one are
/// reported in `batchItemFailures`: later records may belong to the same message group and
/// must not overtake it (design §8). The failed record's visibility is set to the delay
/// `portier serve` waits ([`error_policy`]), so it comes back then instead of after the
/// queue's whole visibility timeout, which would hold up its message group as long.
///
/// Each batch ends with one `counters` line ([`crate::metrics::snapshot`]): a Lambda has no
/// `/healthz`, so its log group carries them instead.
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
    tracing::info!(counters = %crate::metrics::snapshot(), "counters");
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
    let enqueued = crate::tick::enqueue_due(&env.records, env.queue.as_ref()).await?;
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
    use std::sync::{Arc, Mutex};

    use super::*;

    fn event(headers: &[(&'static str, &'static str)], body: &str, base64: bool) -> ApiGatewayV2httpRequest {
        let mut e = ApiGatewayV2httpRequest::default();
        e.raw_path = Some("/hooks/kinnovis/t".into());
        e.body = Some(body.into());
        e.is_base64_encoded = base64;
        for (k, v) in headers {
            e.headers.insert(*k, HeaderValue::from_static(v));
        }
        e
    }

    #[tokio::test]
    async fn events_lambda_http_cannot_convert_answer_400_instead_of_panicking() {
        let router = axum::Router::new().fallback(|| async { "routed" });
        for bad in [
            event(&[], "not base64!", true),
            event(&[("host", "example.com"), ("x-forwarded-proto", "h t")], "{}", false),
            event(&[("host", "example.com:99999")], "{}", false),
        ]
        .into_iter()
        .enumerate()
        {
            let answer = answer(&router, bad.1).await;
            assert_eq!(answer.status_code, 400, "case {}: {:?}", bad.0, answer.body);
        }
        let good = answer(&router, event(&[("host", "example.com")], "e30=", true)).await;
        assert_eq!(
            (good.status_code, good.body),
            (200, Some(aws_lambda_events::encodings::Body::Text("routed".into())))
        );
    }

    /// What a subscriber writes, for the test to read.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap_or_else(|p| p.into_inner()).extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_batch_ends_with_the_counters_even_when_nothing_failed() {
        let clock: Arc<dyn crate::clock::Clock> = Arc::new(crate::clock::SystemClock);
        let store = crate::store::sqlite::SqliteStore::open_in_memory(clock.clone()).expect("store");
        let no_tenants = crate::config::Config { admin: None, tenants: Vec::new() };
        let tenants = crate::tenants::StaticTenants::build(
            &no_tenants,
            &crate::config::EnvSecrets,
            crate::http::RetryPolicy::default(),
        )
        .expect("tenants");
        let worker =
            Worker::new(crate::store::Records::new(Arc::new(store), clock.clone()), Arc::new(tenants));
        let queue = crate::queue::embedded::EmbeddedQueue::open_in_memory(clock, 3).expect("queue");
        // An unreadable body is quarantined and acknowledged: no failure, no redelivery.
        let mut record = SqsMessage::default();
        record.message_id = Some("m-1".into());
        record.body = Some("not a work message".into());
        let mut event = SqsEvent::default();
        event.records.push(record);

        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber =
            tracing_subscriber::fmt().with_writer(move || writer.clone()).with_ansi(false).finish();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        let response = tracing::subscriber::with_default(subscriber, || {
            rt.block_on(worker_sqs(&worker, &queue, &event))
        });

        assert!(response.batch_item_failures.is_empty());
        let logs =
            String::from_utf8_lossy(&captured.0.lock().unwrap_or_else(|p| p.into_inner())).into_owned();
        let lines: Vec<&str> = logs.lines().filter(|l| l.contains(" counters counters=")).collect();
        assert_eq!(lines.len(), 1, "one counters line a batch:\n{logs}");
        assert!(lines[0].contains(r#"counters={"#), "{logs}");
    }
}
