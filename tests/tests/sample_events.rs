//! The samples in `events/` stay valid: signed with the demo secret, for the demo's customer,
//! and accepted by the Lambda event types. `make events` rewrites them.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::sqs::SqsEvent;
use serde_json::{Value, json};
use shared::ingress::envelope::{Proof, WorkMessage};
use shared::ingress::verify;
use shared::model::{SourceKind, SubjectKey, TenantId};
use testkit::demo::{DEMO_EMAIL, DEMO_HOOK_SECRET, DEMO_PERSON, DEMO_TENANT};

fn coworker() -> Value {
    json!({
        "Id": DEMO_PERSON,
        "UniqueId": "4539e0d2-6a7b-4c1e-9f58-2b7d1e0c9a11",
        "FullName": "Anna Müller",
        "Email": DEMO_EMAIL,
        "Active": true,
        "CoworkerType": 1,
        "Teams": [],
        "CreatedOn": "2026-11-01T08:00:00Z",
        "UpdatedOn": "2026-11-23T09:00:00Z",
        "UpdatedBy": "admin@example.com",
        "IsNew": false,
        "SystemId": null
    })
}

fn hook(action: &str) -> Value {
    let body = serde_json::to_vec(&json!([coworker()])).unwrap_or_default();
    let sig = verify::nexudus_sign(DEMO_HOOK_SECRET.as_bytes(), &body);
    testkit::events::nexudus_hook(DEMO_TENANT, action, "", Some(&sig), &body)
}

fn worker_batch() -> Value {
    let subject =
        SubjectKey::new(&TenantId(DEMO_TENANT.into()), SourceKind::Nexudus, DEMO_PERSON.to_string());
    let at =
        chrono::DateTime::parse_from_rfc3339("2026-11-23T09:00:00Z").map(|t| t.to_utc()).unwrap_or_default();
    let event = WorkMessage::NexudusEvent {
        event_id: "nx-sample-access-control-update".into(),
        subject: subject.clone(),
        action: "AccessControlUpdate".into(),
        proof: Proof::Signature,
        payload: Some(coworker()),
        received_at: at,
    }
    .to_outgoing();
    let timer = WorkMessage::Reconcile { subject, reason: "timer".into(), at }.to_outgoing();
    testkit::events::sqs_batch(&[
        ("059f36b4-87a3-44ab-83d2-661975830a7d".into(), event.group, event.body),
        ("2e1424d4-f796-459a-8184-9c92662be6da".into(), timer.group, timer.body),
    ])
}

fn samples() -> Vec<(&'static str, Value)> {
    vec![
        ("nexudus-access-control-update.json", hook("AccessControlUpdate")),
        ("nexudus-coworker-update.json", hook("CoworkerUpdate")),
        ("nexudus-coworker-delete.json", hook("CoworkerDelete")),
        ("worker-sqs-batch.json", worker_batch()),
        (
            "tick-schedule.json",
            testkit::events::schedule("portier-TickFunctionEveryMinute", "2026-11-23T09:00:00Z"),
        ),
    ]
}

#[test]
fn sample_events_are_current_and_valid() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let write = std::env::var("PORTIER_WRITE_EVENTS").is_ok();
    for (name, value) in samples() {
        let text = format!("{}\n", serde_json::to_string_pretty(&value).unwrap_or_default());
        let path = dir.join(name);
        if write {
            std::fs::write(&path, &text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        }
        let on_disk = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (run `make events`)", path.display()));
        assert_eq!(on_disk, text, "{name} is stale: run `make events`");
    }
    for name in ["nexudus-access-control-update.json", "nexudus-coworker-delete.json"] {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let event: ApiGatewayV2httpRequest =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let body = event.body.unwrap_or_default();
        let sig =
            event.headers.get("x-nexudus-hook-signature").and_then(|v| v.to_str().ok()).unwrap_or_default();
        assert!(verify::nexudus_signature(DEMO_HOOK_SECRET.as_bytes(), body.as_bytes(), sig), "{name}");
    }
    let text = std::fs::read_to_string(dir.join("worker-sqs-batch.json")).unwrap_or_default();
    let batch: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("worker batch: {e}"));
    assert_eq!(batch.records.len(), 2);
    let text = std::fs::read_to_string(dir.join("tick-schedule.json")).unwrap_or_default();
    let tick: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("tick schedule: {e}"));
    assert_eq!(tick["detail-type"], "Scheduled Event");
}
