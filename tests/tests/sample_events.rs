//! The samples in `events/` stay valid: signed with the demo secret, for the demo's customer,
//! and accepted by the Lambda event types. `make events` rewrites them. And the deploy guide
//! names every Nexudus action Portier routes, so operators register them all.

use aws_lambda_events::apigw::ApiGatewayV2httpRequest;
use aws_lambda_events::sqs::SqsEvent;
use serde_json::{Value, json};
use shared::ingress::verify;
use shared::model::{SourceKind, SubjectKey, TenantId};
use shared::queue::{Event, Proof, WorkMessage};
use testkit::demo::{
    DEMO_BOOKING, DEMO_EMAIL, DEMO_HOOK_SECRET, DEMO_KINNOVIS_SECRET, DEMO_LOCATION, DEMO_PERSON,
    DEMO_STORAGE_TENANT, DEMO_TENANT, DEMO_UNIT,
};

/// 2026-11-23T09:00:00Z, the samples' `webhook-timestamp` (`portier send` re-signs with now).
const SAMPLE_TS: i64 = 1_795_338_000;

fn kinnovis(event_type: &str, version: u64, access: Value) -> Value {
    let body = json!({
        "type": event_type,
        "occurred_at": "2026-11-23T09:00:00Z",
        "location_id": DEMO_LOCATION,
        "booking": {
            "id": DEMO_BOOKING,
            "version": version,
            "status": "active",
            "unit": { "id": "U-17", "name": DEMO_UNIT },
            "customer": { "id": "C-1043", "email": DEMO_EMAIL, "name": "Anna Müller" },
            "move_in": "2026-11-23",
            "move_out": null,
            "access": access,
            "shared_access_emails": ["ben@example.com"]
        }
    });
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let id = format!("msg_sample_{}", event_type.replace('.', "_"));
    let key = verify::WebhookKey::parse(DEMO_KINNOVIS_SECRET).unwrap_or_else(|e| panic!("{e}"));
    let headers = [
        ("content-type".to_owned(), "application/json".to_owned()),
        ("webhook-id".to_owned(), id.clone()),
        ("webhook-timestamp".to_owned(), SAMPLE_TS.to_string()),
        ("webhook-signature".to_owned(), verify::standard_sign(&key, &id, SAMPLE_TS, &body)),
    ];
    testkit::events::kinnovis_hook(DEMO_STORAGE_TENANT, &headers, &body)
}

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
    let event = WorkMessage::Event(Event {
        event_id: "nx-sample-access-control-update".into(),
        subject: subject.clone(),
        action: "AccessControlUpdate".into(),
        proof: Proof::Signature,
        payload: Some(coworker()),
        received_at: at,
        urgent: false,
        hint: None,
    })
    .to_outgoing();
    let timer = WorkMessage::Reconcile { subject, reason: "timer".into(), at, urgent: true }.to_outgoing();
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
            "kinnovis-booking-created.json",
            kinnovis("booking.created", 2, json!({ "state": "granted", "reason": null })),
        ),
        (
            "kinnovis-access-revoked.json",
            kinnovis("access.revoked", 3, json!({ "state": "revoked", "reason": "overdue" })),
        ),
        (
            "kinnovis-access-restored.json",
            kinnovis("access.restored", 4, json!({ "state": "granted", "reason": null })),
        ),
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
    let key = verify::WebhookKey::parse(DEMO_KINNOVIS_SECRET).unwrap_or_else(|e| panic!("{e}"));
    let at = chrono::DateTime::from_timestamp(SAMPLE_TS, 0).unwrap_or_default();
    for name in
        ["kinnovis-booking-created.json", "kinnovis-access-revoked.json", "kinnovis-access-restored.json"]
    {
        let text = std::fs::read_to_string(dir.join(name)).unwrap_or_default();
        let event: ApiGatewayV2httpRequest =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let body = event.body.unwrap_or_default();
        let h = |k: &str| event.headers.get(k).and_then(|v| v.to_str().ok());
        let headers = verify::StandardHeaders {
            id: h("webhook-id"),
            timestamp: h("webhook-timestamp"),
            signature: h("webhook-signature"),
        };
        assert_eq!(verify::standard_webhook(&key, headers, body.as_bytes(), at), Ok(SAMPLE_TS), "{name}");
        let parsed = shared::sources::kinnovis::webhook::parse(
            &DEMO_STORAGE_TENANT.into(),
            DEMO_LOCATION,
            "id",
            body.as_bytes(),
            at,
        );
        assert_eq!(parsed.map(|m| m.len()).ok(), Some(2), "{name}: Anna and her shared access");
    }
    let text = std::fs::read_to_string(dir.join("worker-sqs-batch.json")).unwrap_or_default();
    let batch: SqsEvent = serde_json::from_str(&text).unwrap_or_else(|e| panic!("worker batch: {e}"));
    assert_eq!(batch.records.len(), 2);
    let text = std::fs::read_to_string(dir.join("tick-schedule.json")).unwrap_or_default();
    let tick: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("tick schedule: {e}"));
    assert_eq!(tick["detail-type"], "Scheduled Event");
}

#[test]
fn the_deploy_guide_names_every_nexudus_action() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/deploy.md");
    let guide = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    for action in shared::sources::nexudus::webhook::NEXUDUS_ACTIONS {
        assert!(guide.contains(&format!("`{action}`")), "docs/deploy.md does not name `{action}`");
    }
}
