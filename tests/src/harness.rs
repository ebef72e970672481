//! `spawn_app()`: simulators + a store and queue + Portier's webhook routes on loopback, each
//! test with its own fresh state. Scenario tests read as user stories on top of it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};
use shared::clock::{Clock, ManualClock};
use shared::config::{
    Config, Policy, Providers, SourceConfig, StaticSecrets, TapkeyProviderConfig, TenantConfig,
};
use shared::error::InfraError;
use shared::http::RetryPolicy;
use shared::model::{ItemKind, ItemRef, Mapping, Target, TenantId};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::serve::{self, Runtime};
use shared::store::sqlite::SqliteStore;
use shared::store::{Cond, Item, Records, Store};
use shared::tenants::{StaticTenants, TenantRuntime, Tenants};
use shared::worker::Worker;

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

/// A store that can be told to fail chosen writes: a crash between two steps of the worker.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    #[allow(clippy::type_complexity)]
    fail: Mutex<Vec<(Box<dyn Fn(&Item) -> bool + Send + Sync>, usize)>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, fail: Mutex::new(Vec::new()) }
    }

    /// The next `times` writes matching `which` fail as if the process died before them.
    pub fn fail_writes(&self, times: usize, which: impl Fn(&Item) -> bool + Send + Sync + 'static) {
        self.fail.lock().unwrap_or_else(|p| p.into_inner()).push((Box::new(which), times));
    }

    fn should_fail(&self, item: &Item) -> bool {
        let mut fail = self.fail.lock().unwrap_or_else(|p| p.into_inner());
        for (which, left) in fail.iter_mut() {
            if *left > 0 && which(item) {
                *left -= 1;
                return true;
            }
        }
        false
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, InfraError> {
        self.inner.get(pk, sk).await
    }
    async fn put(&self, item: &Item, cond: Cond) -> Result<(), InfraError> {
        if self.should_fail(item) {
            return Err(InfraError::Backend("injected: process killed before this write".into()));
        }
        self.inner.put(item, cond).await
    }
    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), InfraError> {
        self.inner.delete(pk, sk, cond).await
    }
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, InfraError> {
        self.inner.query(pk, sk_prefix).await
    }
    async fn query_between(&self, pk: &str, from: &str, to: &str) -> Result<Vec<Item>, InfraError> {
        self.inner.query_between(pk, from, to).await
    }
    async fn ping(&self) -> Result<(), InfraError> {
        self.inner.ping().await
    }
}

/// One running Portier (embedded store and queue) with its simulators.
pub struct TestApp {
    pub nexudus: NexudusSim,
    pub tapkey: TapkeySim,
    pub clock: ManualClock,
    pub store: Arc<FaultyStore>,
    pub records: Records,
    pub queue: Arc<dyn Queue>,
    pub runtime: Runtime,
    pub config: TenantConfig,
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
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
    let nexudus = NexudusSim::start(NexudusSimConfig {
        webhook_secret: Some(HOOK_SECRET.into()),
        ..Default::default()
    })
    .await;
    let tapkey =
        TapkeySim::start(TapkeySimConfig { owner_account_id: OWNER.into(), ..Default::default() }).await;
    let clock = ManualClock::new(start_time());
    nexudus.set_now(start_time());
    nexudus.add_coworker(ANNA, "Anna Müller", ANNA_EMAIL);
    nexudus.add_time_pass(BIKE_STORAGE, "Bike Storage");
    tapkey.add_lock(LOCK, "Bike Storage Door", true);

    let mut config = tenant_config(&nexudus, &tapkey, auth);
    tenant(&mut config);
    let mut all_secrets = secrets(&tapkey);
    all_secrets.0.extend(extra_secrets);
    let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open_in_memory(shared_clock.clone()).unwrap_or_else(|e| panic!("sqlite: {e}")));
    let store = Arc::new(FaultyStore::new(sqlite));
    let records = Records::new(store.clone(), shared_clock.clone());
    let queue: Arc<dyn Queue> =
        Arc::new(EmbeddedQueue::open_in_memory(shared_clock, 5).unwrap_or_else(|e| panic!("queue: {e}")));
    let tenants: Arc<dyn Tenants> = Arc::new(
        StaticTenants::build(&Config { admin: None, tenants: vec![config.clone()] }, &all_secrets, policy)
            .unwrap_or_else(|e| panic!("tenants: {e}")),
    );
    let runtime = Runtime {
        ingress: shared::ingress::Ingress::new(tenants.clone(), queue.clone(), records.clone()),
        worker: Worker::new(records.clone(), tenants),
        queue: queue.clone(),
        records: records.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}")));
    let router = serve::router(runtime.clone());
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    TestApp { nexudus, tapkey, clock, store, records, queue, runtime, config, url, server }
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

    /// Moves every clock (Portier's and the source's) to `t`.
    pub fn set_now(&self, t: DateTime<Utc>) {
        self.clock.set(t);
        self.nexudus.set_now(t);
    }

    pub fn advance(&self, d: chrono::Duration) {
        self.set_now(self.clock.now() + d);
    }

    /// Works the queue until it is empty, letting retried messages come back by moving the
    /// clock past their delay. Returns how many messages were done.
    pub async fn drain(&self) -> usize {
        drain_queue(&self.runtime, |d| self.advance(d)).await
    }

    /// Runs the tick (due timers → reconcile messages) and drains.
    pub async fn tick_and_drain(&self) -> usize {
        shared::tick::enqueue_due(&self.records, self.queue.as_ref())
            .await
            .unwrap_or_else(|e| panic!("tick: {e}"));
        self.drain().await
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

/// Works the queue until it is empty, letting retried messages come back by moving the clock
/// (with `advance`) past their delay. Returns how many messages were done.
pub async fn drain_queue(runtime: &Runtime, advance: impl Fn(chrono::Duration)) -> usize {
    let mut done = 0;
    for _ in 0..40 {
        let r = serve::work_batch(runtime, Duration::ZERO).await.unwrap_or_else(|e| panic!("worker: {e}"));
        done += r.done;
        let stats = runtime.queue.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
        if stats.visible == 0 && stats.in_flight == 0 {
            return done;
        }
        if r.done + r.retried == 0 {
            // Everything left is waiting for its retry delay.
            advance(chrono::Duration::minutes(6));
        }
    }
    panic!("the queue did not drain");
}
