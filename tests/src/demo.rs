//! `portier serve --demo`: simulators of Nexudus and Tapkey on loopback, seeded with a
//! customer, a pass and a lock, and a config that points at them.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use shared::config::{
    Config, Policy, Providers, SourceConfig, StaticSecrets, TapkeyProviderConfig, TenantConfig,
};
use shared::model::{ItemKind, ItemRef, Mapping, Target, TenantId};

use crate::sim::{NexudusSim, NexudusSimConfig, TapkeySim, TapkeySimConfig};

pub const DEMO_TENANT: &str = "demo";
/// The HMAC secret the demo tenant and the sample events in `events/` are signed with.
pub const DEMO_HOOK_SECRET: &str = "demo-nexudus-secret";
pub const DEMO_LOCK: &str = "7d1c0a52-3f0e-4a8e-9b1e-5c2f3d4e6a01";
pub const DEMO_PASS: i64 = 1001;
pub const DEMO_PERSON: i64 = 456;
pub const DEMO_EMAIL: &str = "anna@example.com";

/// The running simulators of a demo; they stop when this is dropped.
pub struct Demo {
    pub nexudus: NexudusSim,
    pub tapkey: TapkeySim,
    pub config: Config,
    pub secrets: StaticSecrets,
}

pub async fn start() -> Demo {
    let nexudus = NexudusSim::start(NexudusSimConfig {
        webhook_secret: Some(DEMO_HOOK_SECRET.into()),
        ..NexudusSimConfig::default()
    })
    .await;
    let tapkey = TapkeySim::start(TapkeySimConfig {
        owner_account_id: "demo-owner".into(),
        ..TapkeySimConfig::default()
    })
    .await;
    nexudus.set_now(Utc::now());
    nexudus.add_coworker(DEMO_PERSON, "Anna Müller", DEMO_EMAIL);
    nexudus.add_time_pass(DEMO_PASS, "Bike Storage");
    nexudus.give_pass(DEMO_PERSON, DEMO_PASS, Some(Utc::now() + Duration::days(30)));
    tapkey.add_lock(DEMO_LOCK, "Bike Storage Door", true);

    let nx = nexudus.config().clone();
    let tk = tapkey.config().clone();
    let secrets = StaticSecrets(BTreeMap::from([
        ("NEXUDUS_USER".into(), nx.username.clone()),
        ("NEXUDUS_PASSWORD".into(), nx.password.clone()),
        ("NEXUDUS_HOOK_SECRET".into(), DEMO_HOOK_SECRET.into()),
        ("TAPKEY_CLIENT_ID".into(), tk.client_id.clone()),
        ("TAPKEY_CLIENT_SECRET".into(), tk.client_secret.clone()),
    ]));
    let tenant = TenantConfig {
        id: TenantId(DEMO_TENANT.into()),
        timezone: "Europe/Berlin".into(),
        source: SourceConfig::Nexudus {
            base_url: nexudus.base_url(),
            username_env: "NEXUDUS_USER".into(),
            password_env: "NEXUDUS_PASSWORD".into(),
            webhook_secret_env: Some("NEXUDUS_HOOK_SECRET".into()),
            webhook_token_env: None,
            calls_per_minute: None,
        },
        policy: Policy::default(),
        providers: Providers {
            tapkey: Some(TapkeyProviderConfig {
                owner_account_id: "demo-owner".into(),
                client_id_env: "TAPKEY_CLIENT_ID".into(),
                client_secret_env: "TAPKEY_CLIENT_SECRET".into(),
                base_url: tapkey.base_url(),
                token_url: tapkey.token_url(),
                calls_per_second: None,
            }),
            salto_ks: None,
            brivo: None,
        },
        mappings: vec![Mapping {
            item: ItemRef { kind: ItemKind::Pass, id: DEMO_PASS.to_string() },
            targets: vec![Target::TapkeyLock(DEMO_LOCK.into())],
        }],
    };
    Demo { nexudus, tapkey, config: Config { tenants: vec![tenant] }, secrets }
}
