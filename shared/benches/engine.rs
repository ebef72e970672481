//! Engine speed (issue 7, scope 3; design §7): webhook verification of both schemes, planning
//! one subject (desired + diff), and the embedded ingress (verify + parse + enqueue into the
//! on-disk queue `portier serve` uses). `make bench` turns the timings into the goals' units.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant as MonoInstant};

use chrono::{TimeZone, Utc};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use shared::clock::{Clock, SystemClock};
use shared::config::{Config, Policy, Providers, SourceConfig, StaticSecrets, TenantConfig};
use shared::http::RetryPolicy;
use shared::ingress::verify::{self, StandardHeaders, WebhookKey};
use shared::ingress::{Ingress, NexudusRequest};
use shared::model::{
    Applied, AppliedState, Email, Entitlement, EntitlementKind, EntitlementState, GrantId, ItemKind, ItemRef,
    LockId, Mapping, Profile, Target, TenantId, Window,
};
use shared::plan;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::Records;
use shared::store::sqlite::SqliteStore;
use shared::tenants::{StaticTenants, Tenants};

const SECRET: &str = "nx-hook-secret-2026";

/// A Coworker DTO of the size Nexudus sends (about 1.5 KiB).
fn coworker_body(id: u64) -> Vec<u8> {
    let filler = "x".repeat(1200);
    format!(
        r#"[{{"Id":{id},"FullName":"Anna Müller","Email":"anna{id}@example.com","Active":true,
        "UpdatedOn":"2026-11-23T09:00:00","Notes":"{filler}"}}]"#
    )
    .into_bytes()
}

fn verification(c: &mut Criterion) {
    let body = coworker_body(456);
    let mut g = c.benchmark_group("verify");
    g.throughput(Throughput::Elements(1));
    let sig = verify::nexudus_sign(SECRET.as_bytes(), &body);
    g.bench_function("nexudus_hmac", |b| {
        b.iter(|| verify::nexudus_signature(black_box(SECRET.as_bytes()), black_box(&body), black_box(&sig)))
    });
    g.bench_function("nexudus_token", |b| {
        b.iter(|| verify::token(black_box("nx-url-token-7f3a"), black_box(Some("nx-url-token-7f3a"))))
    });
    let key = WebhookKey::parse("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap_or_else(|e| panic!("{e}"));
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
    let sig = verify::standard_sign(&key, "msg_1", now.timestamp(), &body);
    let ts = now.timestamp().to_string();
    g.bench_function("standard_webhooks", |b| {
        b.iter(|| {
            let h = StandardHeaders { id: Some("msg_1"), timestamp: Some(&ts), signature: Some(&sig) };
            verify::standard_webhook(black_box(&key), h, black_box(&body), now)
        })
    });
    g.finish();
}

/// One subject as a typical tenant has it: three passes (one ended), 20 mapped products,
/// one grant applied and one membership applied.
fn subject() -> (Profile, Vec<Entitlement>, Vec<Mapping>, Vec<Applied>) {
    let t = |d: u32| Utc.with_ymd_and_hms(2026, 11, d, 9, 0, 0).single().unwrap_or_default();
    let email = Email::parse("anna@example.com").unwrap_or_else(|e| panic!("{e}"));
    let profile = Profile {
        email: Some(email.clone()),
        name: "Anna".into(),
        source_version: None,
        deleted: false,
        gone_at: None,
        suspended: None,
    };
    let pass = |id: &str, product: &str, window: Window| Entitlement {
        kind: EntitlementKind::Pass,
        id: id.into(),
        item: ItemRef { kind: ItemKind::Pass, id: product.into() },
        label: "Pass".into(),
        window,
        state: EntitlementState::Active,
        source_version: t(1),
    };
    let ents = vec![
        pass("1", "p3", Window::new(Some(t(1)), Some(t(30)))),
        pass("2", "p7", Window::new(Some(t(20)), None)),
        pass("3", "p9", Window::new(Some(t(1)), Some(t(10)))),
    ];
    let mappings = (0..20)
        .map(|i| Mapping {
            item: ItemRef { kind: ItemKind::Pass, id: format!("p{i}") },
            targets: if i % 2 == 0 {
                vec![Target::TapkeyLock(LockId(format!("lock-{i}")))]
            } else {
                vec![Target::SaltoGroup(format!("group-{i}").as_str().into())]
            },
        })
        .collect();
    let applied = vec![Applied {
        target: Target::TapkeyLock(LockId("lock-3".into())),
        window: Window::new(Some(t(1)), Some(t(30))),
        email,
        contact_id: None,
        state: AppliedState::Created { grant_id: GrantId("g1".into()) },
        since: t(1),
    }];
    (profile, ents, mappings, applied)
}

fn planning(c: &mut Criterion) {
    let (profile, ents, mappings, applied) = subject();
    let now = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default();
    let mut g = c.benchmark_group("plan");
    g.throughput(Throughput::Elements(1));
    g.bench_function("subject", |b| {
        b.iter(|| {
            let desired = plan::desired(Some(black_box(&profile)), black_box(&ents), &mappings, now);
            plan::diff(&desired, &ents, black_box(&applied), &[], now)
        })
    });
    g.finish();
}

fn ingress(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("portier-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let records = Records::new(
        Arc::new(SqliteStore::open(&dir.join("portier.db"), clock.clone()).unwrap_or_else(|e| panic!("{e}"))),
        clock.clone(),
    );
    let queue: Arc<dyn Queue> =
        Arc::new(EmbeddedQueue::open(&dir.join("queue.db"), clock, 10).unwrap_or_else(|e| panic!("{e}")));
    let tenant = TenantConfig {
        presence: None,
        id: TenantId("space-berlin".into()),
        timezone: "Europe/Berlin".into(),
        source: SourceConfig::Nexudus {
            base_url: "http://127.0.0.1:9".into(),
            username_env: "U".into(),
            password_env: "P".into(),
            webhook_secret_env: Some("S".into()),
            webhook_token_env: None,
            calls_per_minute: None,
        },
        policy: Policy::default(),
        providers: Providers::default(),
        mappings: vec![],
    };
    let secrets = StaticSecrets(BTreeMap::from([
        ("U".into(), "u".into()),
        ("P".into(), "p".into()),
        ("S".into(), SECRET.into()),
    ]));
    let tenants: Arc<dyn Tenants> = Arc::new(
        StaticTenants::build(
            &Config { admin: None, tenants: vec![tenant] },
            &secrets,
            RetryPolicy::default(),
        )
        .unwrap_or_else(|e| panic!("{e}")),
    );
    let ingress = Ingress::new(tenants, queue, records);
    let rt =
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap_or_else(|e| panic!("{e}"));
    let mut next = 0u64;

    let mut g = c.benchmark_group("ingress");
    g.throughput(Throughput::Elements(1));
    g.bench_function("nexudus_embedded", |b| {
        b.iter_custom(|iters| {
            // Distinct signed bodies, made before the clock starts: each one is a new message.
            let hooks: Vec<_> = (0..iters)
                .map(|_| {
                    next += 1;
                    let body = coworker_body(next);
                    let sig = verify::nexudus_sign(SECRET.as_bytes(), &body);
                    (body, sig)
                })
                .collect();
            let start = MonoInstant::now();
            rt.block_on(async {
                for (body, sig) in &hooks {
                    let answer = ingress
                        .nexudus(NexudusRequest {
                            tenant: "space-berlin",
                            action: "CoworkerUpdate",
                            token: None,
                            signature: Some(sig),
                            body,
                        })
                        .await;
                    assert_eq!(answer.status, 202, "{answer:?}");
                }
            });
            start.elapsed()
        })
    });
    g.finish();
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group! {
    name = benches;
    config = Criterion::default().measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = verification, planning, ingress
}
criterion_main!(benches);
