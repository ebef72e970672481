//! Lambda events as AWS delivers them: API Gateway HTTP API (payload 2.0), SQS batches and
//! EventBridge schedules.
//! Used by the tests and to write the samples in `events/`.

use base64::Engine;
use serde_json::{Value, json};

/// An HTTP API event for `POST /hooks/nexudus/{tenant}/{action}`.
pub fn nexudus_hook(tenant: &str, action: &str, query: &str, signature: Option<&str>, body: &[u8]) -> Value {
    let mut headers = serde_json::Map::new();
    headers.insert("content-type".into(), json!("application/json"));
    headers.insert("user-agent".into(), json!("Nexudus-Webhooks"));
    if let Some(sig) = signature {
        headers.insert("x-nexudus-hook-signature".into(), json!(sig));
    }
    let query_params: serde_json::Map<String, Value> =
        query.split('&').filter_map(|kv| kv.split_once('=')).map(|(k, v)| (k.to_owned(), json!(v))).collect();
    // API Gateway passes text bodies as-is and anything else base64-encoded.
    let (body, encoded) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let path = format!("/hooks/nexudus/{tenant}/{action}");
    json!({
        "version": "2.0",
        "routeKey": "POST /hooks/nexudus/{tenant}/{action}",
        "rawPath": path,
        "rawQueryString": query,
        "headers": headers,
        "queryStringParameters": if query_params.is_empty() { Value::Null } else { Value::Object(query_params) },
        "pathParameters": { "tenant": tenant, "action": action },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "portier",
            "domainName": "portier.example.com",
            "domainPrefix": "portier",
            "http": { "method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.7", "userAgent": "Nexudus-Webhooks" },
            "requestId": "c6af9ac6-7b61-11e6-9a41-93e8deadbeef",
            "routeKey": "POST /hooks/nexudus/{tenant}/{action}",
            "stage": "$default",
            "time": "23/Nov/2026:09:00:00 +0000",
            "timeEpoch": 1795338000000i64
        },
        "body": body,
        "isBase64Encoded": encoded
    })
}

/// An HTTP API (payload 2.0) event of a Brivo event-subscription delivery to
/// `POST /hooks/brivo/{tenant}?token=…`.
pub fn brivo_hook(tenant: &str, token: &str, body: &[u8]) -> Value {
    // The Nexudus event's shape with Brivo's route, path and query.
    let mut event = nexudus_hook(tenant, "-", &format!("token={token}"), None, body);
    let path = format!("/hooks/brivo/{tenant}");
    let route = "POST /hooks/brivo/{tenant}";
    event["routeKey"] = json!(route);
    event["rawPath"] = json!(path);
    event["pathParameters"] = json!({ "tenant": tenant });
    event["headers"]["user-agent"] = json!("Brivo");
    event["requestContext"]["routeKey"] = json!(route);
    event["requestContext"]["http"]["path"] = json!(path);
    event["requestContext"]["http"]["userAgent"] = json!("Brivo");
    event
}

/// An SQS FIFO event with these `(message id, group, body)` records, in order.
pub fn sqs_batch(records: &[(String, String, String)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .enumerate()
        .map(|(i, (id, group, body))| sqs_record(i, id, &format!("handle-{id}"), 1, group, body))
        .collect();
    json!({ "Records": records })
}

/// The SQS FIFO event for messages received from a queue: with their receipt handles and
/// receive counts, so the worker can change their visibility.
pub fn sqs_received(batch: &[shared::queue::Delivery]) -> Value {
    let records: Vec<Value> = batch
        .iter()
        .enumerate()
        .map(|(i, d)| sqs_record(i, &d.message_id, &d.handle, d.receive_count, &d.group, &d.body))
        .collect();
    json!({ "Records": records })
}

fn sqs_record(i: usize, id: &str, handle: &str, receive_count: u32, group: &str, body: &str) -> Value {
    json!({
                "messageId": id,
                "receiptHandle": handle,
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": receive_count.to_string(),
                    "SentTimestamp": "1795338000000",
                    "SequenceNumber": format!("1884949646046769{:04}", i),
                    "MessageGroupId": group,
                    "SenderId": "AIDAIENQZJOLO23YVJ4VO",
                    "MessageDeduplicationId": id,
                    "ApproximateFirstReceiveTimestamp": "1795338000001"
                },
                "messageAttributes": {},
                "md5OfBody": "e4e68fb7bd0e697a0ae8f1bb342846b3",
                "eventSource": "aws:sqs",
                "eventSourceARN": "arn:aws:sqs:eu-central-1:123456789012:portier.fifo",
                "awsRegion": "eu-central-1"
    })
}

/// An HTTP API event for `POST /hooks/kinnovis/{tenant}` with Standard Webhooks headers.
pub fn kinnovis_hook(tenant: &str, headers: &[(String, String)], body: &[u8]) -> Value {
    let mut h = serde_json::Map::new();
    h.insert("user-agent".into(), json!("Kinnovis-Webhooks"));
    for (k, v) in headers {
        // API Gateway (payload 2.0) lower-cases header names.
        h.insert(k.to_ascii_lowercase(), json!(v));
    }
    let (body, encoded) = match std::str::from_utf8(body) {
        Ok(text) => (text.to_owned(), false),
        Err(_) => (base64::engine::general_purpose::STANDARD.encode(body), true),
    };
    let path = format!("/hooks/kinnovis/{tenant}");
    json!({
        "version": "2.0",
        "routeKey": "POST /hooks/kinnovis/{tenant}",
        "rawPath": path,
        "rawQueryString": "",
        "headers": h,
        "pathParameters": { "tenant": tenant },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "portier",
            "domainName": "portier.example.com",
            "domainPrefix": "portier",
            "http": { "method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.9", "userAgent": "Kinnovis-Webhooks" },
            "requestId": "5b1f0c2e-3d4a-4b5c-8d6e-7f8091a2b3c4",
            "routeKey": "POST /hooks/kinnovis/{tenant}",
            "stage": "$default",
            "time": "23/Nov/2026:09:00:00 +0000",
            "timeEpoch": 1795338000000i64
        },
        "body": body,
        "isBase64Encoded": encoded
    })
}

/// An EventBridge scheduled event (`rate(1 minute)` → `tick`), fired at `time` (RFC 3339).
pub fn schedule(rule: &str, time: &str) -> Value {
    json!({
        "version": "0",
        "id": "53dc4d37-cffa-4f76-80c9-8b7d4a4d2eaa",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": time,
        "region": "eu-central-1",
        "resources": [format!("arn:aws:events:eu-central-1:123456789012:rule/{rule}")],
        "detail": {}
    })
}
