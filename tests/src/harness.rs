//! `spawn_app()`: simulators + Portier as `portier serve` builds it ([`crate::app::Portier`]),
//! each test with its own fresh state. Scenario tests read as user stories on top of it.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use shared::config::{
    Config, Policy, Providers, SourceConfig, StaticSecrets, TapkeyProviderConfig, TenantConfig,
};
use shared::http::RetryPolicy;
use shared::model::{ItemKind, ItemRef, Mapping, Target, TenantId};
use shared::tenants::TenantRuntime;

use crate::app::Portier;
use crate::sim::{NexudusSim, NexudusSimConfig, TapkeySim, TapkeySimConfig};

pub const TENANT: &str = "space-berlin";
pub const LOCK: &str = "ea610634-4fc0-4084-85b2-bebf52c3595f";
pub const OWNER: &str = "owner-berlin";
pub const BIKE_STORAGE: i64 = 1001;
pub const ANNA: i64 = 456;
pub const ANNA_EMAIL: &str = "anna@example.com";
pub const HOOK_SECRET: &str = "nx-hook-secret-2026";
pub const HOOK_TOKEN: &str = "nx-url-token-7f3a";

/// How the tenant authenticates its webhooks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookAuth {
    Signature,
    Token,
    Both,
}

/// The start of every test's world: 2026-11-23 09:00 UTC.
pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().unwrap_or_default()
}

/// Secrets the test tenant's config names.
pub fn secrets(tapkey: &TapkeySim) -> StaticSecrets {
    let cfg = tapkey.config();
    StaticSecrets(BTreeMap::from([
        ("NEXUDUS_USER".into(), NexudusSimConfig::default().username),
        ("NEXUDUS_PASSWORD".into(), NexudusSimConfig::default().password),
        ("NEXUDUS_HOOK_SECRET".into(), HOOK_SECRET.into()),
        ("NEXUDUS_HOOK_TOKEN".into(), HOOK_TOKEN.into()),
        ("TAPKEY_CLIENT_ID".into(), cfg.client_id.clone()),
        ("TAPKEY_CLIENT_SECRET".into(), cfg.client_secret.clone()),
    ]))
}

/// A tenant mapping the pass "Bike Storage" to the bike storage lock, pointed at the simulators.
pub fn tenant_config(nexudus: &NexudusSim, tapkey: &TapkeySim, auth: HookAuth) -> TenantConfig {
    TenantConfig {
        presence: None,
        id: TenantId(TENANT.into()),
        timezone: "Europe/Berlin".into(),
        source: SourceConfig::Nexudus {
            base_url: nexudus.base_url(),
            username_env: "NEXUDUS_USER".into(),
            password_env: "NEXUDUS_PASSWORD".into(),
            webhook_secret_env: (auth != HookAuth::Token).then(|| "NEXUDUS_HOOK_SECRET".into()),
            webhook_token_env: (auth != HookAuth::Signature).then(|| "NEXUDUS_HOOK_TOKEN".into()),
            calls_per_minute: None,
        },
        policy: Policy::default(),
        providers: Providers {
            tapkey: Some(TapkeyProviderConfig {
                owner_account_id: OWNER.into(),
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
            item: ItemRef { kind: ItemKind::Pass, id: BIKE_STORAGE.to_string() },
            targets: vec![Target::TapkeyLock(LOCK.into())],
        }],
    }
}

/// Retries fast in tests; the real policy's figures are the same code with longer waits.
pub fn fast_retries() -> RetryPolicy {
    RetryPolicy {
        attempts: 3,
        base: Duration::from_millis(5),
        max: Duration::from_millis(50),
        timeout: Duration::from_secs(5),
    }
}

/// Portier with its Nexudus and Tapkey simulators (the world most scenarios start from).
pub struct TestApp {
    pub nexudus: NexudusSim,
    pub tapkey: TapkeySim,
    pub config: TenantConfig,
    pub portier: Portier,
}

/// The store, queue, clock and runtime: `app.records`, `app.drain()`.
impl Deref for TestApp {
    type Target = Portier;
    fn deref(&self) -> &Portier {
        &self.portier
    }
}

/// Starts the Nexudus simulator (signing with [`HOOK_SECRET`]) and Tapkey's (owner [`OWNER`]),
/// both empty.
pub async fn space_sims() -> (NexudusSim, TapkeySim) {
    let nexudus = NexudusSim::start(NexudusSimConfig {
        webhook_secret: Some(HOOK_SECRET.into()),
        ..Default::default()
    })
    .await;
    let tapkey =
        TapkeySim::start(TapkeySimConfig { owner_account_id: OWNER.into(), ..Default::default() }).await;
    (nexudus, tapkey)
}

/// Starts simulators seeded with Anna, the "Bike Storage" pass product and its lock, and
/// Portier's routes on a free port.
pub async fn spawn_app(auth: HookAuth) -> TestApp {
    spawn_app_with(auth, |_| {}, BTreeMap::new()).await
}

/// [`spawn_app`] with the tenant changed by `tenant` (more providers, mappings, policies) and
/// `extra_secrets` added to the secrets its config names.
pub async fn spawn_app_with(
    auth: HookAuth,
    tenant: impl FnOnce(&mut TenantConfig),
    extra_secrets: BTreeMap<String, String>,
) -> TestApp {
    spawn_app_retrying(auth, tenant, extra_secrets, fast_retries()).await
}

/// [`spawn_app_with`], with the clients retrying (and timing out) by `policy`.
pub async fn spawn_app_retrying(
    auth: HookAuth,
    tenant: impl FnOnce(&mut TenantConfig),
    extra_secrets: BTreeMap<String, String>,
    policy: RetryPolicy,
) -> TestApp {
    let (nexudus, tapkey) = space_sims().await;
    nexudus.set_now(start_time());
    nexudus.add_coworker(ANNA, "Anna Müller", ANNA_EMAIL);
    nexudus.add_time_pass(BIKE_STORAGE, "Bike Storage");
    tapkey.add_lock(LOCK, "Bike Storage Door", true);

    let mut config = tenant_config(&nexudus, &tapkey, auth);
    tenant(&mut config);
    let mut secrets = secrets(&tapkey);
    secrets.0.extend(extra_secrets);
    let all = Config { admin: None, tenants: vec![config.clone()] };
    let portier = Portier::start(&all, &secrets, policy, vec![nexudus.clock_hand()]).await;
    TestApp { nexudus, tapkey, config, portier }
}

impl TestApp {
    /// The webhook URL Nexudus is configured with for `action`.
    pub fn hook_url(&self, action: &str) -> String {
        format!("{}/hooks/nexudus/{TENANT}/{action}?token={HOOK_TOKEN}", self.url)
    }

    /// Nexudus sends `action` for this entity, as it would (signed when the tenant signs).
    pub async fn hook(&self, action: &str, dto: &serde_json::Value) -> u16 {
        let hook = self.nexudus.webhook(action, dto);
        self.nexudus.deliver(&self.hook_url(action), &hook).await
    }

    pub fn subject(&self, person: i64) -> shared::model::SubjectKey {
        shared::model::SubjectKey::new(
            &TenantId(TENANT.into()),
            shared::model::SourceKind::Nexudus,
            person.to_string(),
        )
    }
}

impl TestApp {
    /// Runs a full resync of the test tenant (dry or real); a real one is then drained.
    pub async fn resync(
        &self,
        dry_run: bool,
    ) -> Result<shared::resync::ResyncReport, shared::error::WorkError> {
        self.resync_with(shared::resync::ResyncOptions { dry_run, ..Default::default() }).await
    }

    /// A resync with any options; a real one is then drained.
    pub async fn resync_with(
        &self,
        opts: shared::resync::ResyncOptions,
    ) -> Result<shared::resync::ResyncReport, shared::error::WorkError> {
        self.resync_of(&self.tenant().await, opts).await
    }

    /// The test tenant as Portier built it (to change with [`TenantRuntime::with_provider`]).
    pub async fn tenant(&self) -> TenantRuntime {
        let tenant = self.runtime.worker.tenants.get(&TenantId(TENANT.into())).await;
        let tenant = tenant.unwrap_or_else(|e| panic!("tenants: {e}"));
        tenant.unwrap_or_else(|| panic!("the test tenant is configured")).as_ref().clone()
    }

    /// A resync of `tenant` (the test tenant, changed); a real one is then drained.
    pub async fn resync_of(
        &self,
        tenant: &TenantRuntime,
        opts: shared::resync::ResyncOptions,
    ) -> Result<shared::resync::ResyncReport, shared::error::WorkError> {
        let report =
            shared::resync::resync(&self.records, tenant, self.queue.as_ref(), opts, &mut |_, _| {}).await?;
        if !opts.dry_run {
            self.drain().await;
        }
        Ok(report)
    }

    /// Provider writes Tapkey has seen so far (creates, revokes, contact creations).
    pub fn tapkey_writes(&self) -> usize {
        self.tapkey.calls().iter().filter(|c| c.method != "GET" && !c.path.contains("/connect/token")).count()
    }
}
