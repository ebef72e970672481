//! `portier serve --demo`: simulators of Nexudus, Kinnovis, Tapkey, Salto KS and Brivo on
//! loopback, seeded with a customer, her passes, a storage booking, locks and access groups,
//! and a config that points at them.

use std::collections::BTreeMap;

use chrono::{Duration, Utc};
use shared::config::{
    Config, Policy, Providers, SourceConfig, StaticSecrets, TapkeyProviderConfig, TenantConfig,
};
use shared::model::{ItemKind, ItemRef, Mapping, Target, TenantId};

use crate::groups::{COWORKING, add_group_providers, group_secrets, start_group_sims};
use crate::sim::{
    BrivoSim, KinnovisSim, KinnovisSimConfig, NexudusSim, NexudusSimConfig, SaltoSim, TapkeySim,
    TapkeySimConfig,
};

pub const DEMO_TENANT: &str = "demo";
/// The HMAC secret the demo tenant and the sample events in `events/` are signed with.
pub const DEMO_HOOK_SECRET: &str = "demo-nexudus-secret";
pub const DEMO_LOCK: &str = "7d1c0a52-3f0e-4a8e-9b1e-5c2f3d4e6a01";
pub const DEMO_PASS: i64 = 1001;
pub const DEMO_PERSON: i64 = 456;
pub const DEMO_EMAIL: &str = "anna@example.com";
/// A Nexudus resource the demo does not map yet (the console maps it with its drop-downs).
pub const DEMO_EVENT_SPACE: i64 = 14;
/// The self-storage location of the demo (Kinnovis, Europe/Vienna).
pub const DEMO_STORAGE_TENANT: &str = "demo-storage";
pub const DEMO_LOCATION: &str = "loc-vienna-1";
/// The Standard Webhooks secret of the demo location (`portier send` signs with it).
pub const DEMO_KINNOVIS_SECRET: &str = "whsec_ZGVtby1raW5ub3Zpcy1zaWduaW5nLWtleS0zMmJ5dGVz";
pub const DEMO_UNIT: &str = "A-017";
pub const DEMO_UNIT_LOCK: &str = "3f9a2b6c-1d4e-4f70-8a2b-6c1d4e7f9a20";
pub const DEMO_BOOKING: &str = "B-1042";
/// The environment variable the demo's `[admin]` names; its value is made up per run.
pub const DEMO_ADMIN_TOKEN_ENV: &str = "PORTIER_ADMIN_TOKEN";

/// The running simulators of a demo; they stop when this is dropped.
pub struct Demo {
    pub nexudus: NexudusSim,
    pub kinnovis: KinnovisSim,
    pub tapkey: TapkeySim,
    pub salto: SaltoSim,
    pub brivo: BrivoSim,
    pub config: Config,
    pub secrets: StaticSecrets,
    /// The console's admin token for this run (random: a demo left running is not an open door).
    pub admin_token: String,
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
    // The coworking floor: a Salto KS access group and a Brivo group, while the pass holds.
    nexudus.add_time_pass(COWORKING, "Coworking");
    nexudus.give_pass(DEMO_PERSON, COWORKING, Some(Utc::now() + Duration::days(7)));
    let (salto, brivo) = start_group_sims().await;
    // Resources the mapping page lists: the mapped meeting room and one not mapped yet.
    nexudus.add_resource(crate::groups::ROOM, "Meeting room", false);
    nexudus.add_resource(DEMO_EVENT_SPACE, "Event space", false);
    tapkey.add_lock(DEMO_LOCK, "Bike Storage Door", true);
    tapkey.add_lock(DEMO_UNIT_LOCK, "Unit A-017", true);
    let kinnovis = KinnovisSim::start(KinnovisSimConfig {
        location_id: DEMO_LOCATION.into(),
        api_key: "demo-kinnovis-api-key".into(),
        webhook_secret: DEMO_KINNOVIS_SECRET.into(),
    })
    .await;
    kinnovis.set_now(Utc::now());
    kinnovis.add_unit("U-17", DEMO_UNIT);
    let booking =
        kinnovis.create_booking(DEMO_UNIT, DEMO_EMAIL, "Anna Müller", Utc::now().date_naive(), None);
    kinnovis.set_shared_access(&booking, &["ben@example.com"]);

    let nx = nexudus.config().clone();
    let tk = tapkey.config().clone();
    let mut secrets = StaticSecrets(BTreeMap::from([
        ("NEXUDUS_USER".into(), nx.username.clone()),
        ("NEXUDUS_PASSWORD".into(), nx.password.clone()),
        ("NEXUDUS_HOOK_SECRET".into(), DEMO_HOOK_SECRET.into()),
        ("TAPKEY_CLIENT_ID".into(), tk.client_id.clone()),
        ("TAPKEY_CLIENT_SECRET".into(), tk.client_secret.clone()),
        ("KINNOVIS_API_KEY".into(), kinnovis.config().api_key.clone()),
        ("KINNOVIS_WEBHOOK_SECRET".into(), DEMO_KINNOVIS_SECRET.into()),
    ]));
    let tapkey_provider = TapkeyProviderConfig {
        owner_account_id: "demo-owner".into(),
        client_id_env: "TAPKEY_CLIENT_ID".into(),
        client_secret_env: "TAPKEY_CLIENT_SECRET".into(),
        base_url: tapkey.base_url(),
        token_url: tapkey.token_url(),
        calls_per_second: None,
    };
    let storage = TenantConfig {
        presence: None,
        id: TenantId(DEMO_STORAGE_TENANT.into()),
        timezone: "Europe/Vienna".into(),
        source: SourceConfig::Kinnovis {
            base_url: kinnovis.base_url(),
            location_id: DEMO_LOCATION.into(),
            api_key_env: "KINNOVIS_API_KEY".into(),
            webhook_secret_env: "KINNOVIS_WEBHOOK_SECRET".into(),
        },
        // The sample events in `events/` are dated; `gradual` would (rightly) leave a booking
        // last changed before the demo started alone.
        policy: Policy { adoption: shared::config::Adoption::CleanSlate, ..Policy::default() },
        providers: Providers { tapkey: Some(tapkey_provider.clone()), ..Providers::default() },
        mappings: vec![Mapping {
            item: ItemRef { kind: ItemKind::Unit, id: DEMO_UNIT.into() },
            targets: vec![Target::TapkeyLock(DEMO_UNIT_LOCK.into())],
        }],
    };
    secrets.0.extend(group_secrets(&salto, &brivo));
    let mut tenant = TenantConfig {
        presence: None,
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
        providers: Providers { tapkey: Some(tapkey_provider), ..Providers::default() },
        mappings: vec![Mapping {
            item: ItemRef { kind: ItemKind::Pass, id: DEMO_PASS.to_string() },
            targets: vec![Target::TapkeyLock(DEMO_LOCK.into())],
        }],
    };
    add_group_providers(&mut tenant, &salto, &brivo, shared::config::NoAccess::Suspend);
    let admin_token = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    secrets.0.insert(DEMO_ADMIN_TOKEN_ENV.into(), admin_token.clone());
    Demo {
        nexudus,
        kinnovis,
        tapkey,
        salto,
        brivo,
        config: Config {
            admin: Some(shared::config::AdminConfig { admin_token_env: DEMO_ADMIN_TOKEN_ENV.into() }),
            tenants: vec![tenant, storage],
        },
        secrets,
        admin_token,
    }
}
