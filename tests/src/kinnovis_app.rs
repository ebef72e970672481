//! `spawn_kinnovis_app()`: a self-storage location (Kinnovis + Tapkey simulators) and Portier's
//! routes with an embedded store and queue, each test with its own fresh state.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use shared::clock::{Clock, ManualClock};
use shared::config::{
    Config, Policy, Providers, SourceConfig, StaticSecrets, TapkeyProviderConfig, TenantConfig,
};
use shared::model::{Email, ItemKind, ItemRef, Mapping, SubjectKey, Target, TenantId};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::serve::{self, Runtime};
use shared::store::sqlite::SqliteStore;
use shared::store::{Records, Store};
use shared::tenants::{StaticTenants, TenantRuntime, Tenants};
use shared::worker::Worker;

use crate::harness::{FaultyStore, drain_queue, fast_retries, start_time};
use crate::sim::{KinnovisSim, KinnovisSimConfig, SimWebhook, TapkeySim, TapkeySimConfig};

pub const STORAGE_TENANT: &str = "storage-vienna";
pub const STORAGE_OWNER: &str = "owner-vienna";
pub const LOCATION: &str = "loc-vienna-1";
/// Mapped in the configuration file.
pub const UNIT: &str = "A-017";
pub const UNIT_LOCK: &str = "ea610634-4fc0-4084-85b2-bebf52c3595f";
/// Known to Kinnovis and bound in Tapkey, but mapped only by a CSV import.
pub const UNIT_2: &str = "A-018";
pub const UNIT_2_LOCK: &str = "0b7c2f3e-91d4-4a55-8f0e-6c1d2e3f4a5b";
pub const ANNA: &str = "anna@example.com";
pub const BEN: &str = "ben@example.com";

/// Secrets the storage tenant's config names.
pub fn storage_secrets(kinnovis: &KinnovisSim, tapkey: &TapkeySim) -> StaticSecrets {
    StaticSecrets(BTreeMap::from([
        ("KINNOVIS_API_KEY".into(), kinnovis.config().api_key.clone()),
        ("KINNOVIS_WEBHOOK_SECRET".into(), kinnovis.config().webhook_secret.clone()),
        ("TAPKEY_CLIENT_ID".into(), tapkey.config().client_id.clone()),
        ("TAPKEY_CLIENT_SECRET".into(), tapkey.config().client_secret.clone()),
    ]))
}

/// `storage-vienna` (Europe/Vienna) with unit A-017 mapped to its lock, pointed at the sims.
pub fn storage_config(kinnovis: &KinnovisSim, tapkey: &TapkeySim) -> TenantConfig {
    TenantConfig {
        presence: None,
        id: TenantId(STORAGE_TENANT.into()),
        timezone: "Europe/Vienna".into(),
        source: SourceConfig::Kinnovis {
            base_url: kinnovis.base_url(),
            location_id: LOCATION.into(),
            api_key_env: "KINNOVIS_API_KEY".into(),
            webhook_secret_env: "KINNOVIS_WEBHOOK_SECRET".into(),
        },
        policy: Policy::default(),
        providers: Providers {
            tapkey: Some(TapkeyProviderConfig {
                owner_account_id: STORAGE_OWNER.into(),
                client_id_env: "TAPKEY_CLIENT_ID".into(),
                client_secret_env: "TAPKEY_CLIENT_SECRET".into(),
                base_url: tapkey.base_url(),
                token_url: tapkey.token_url(),
                calls_per_second: None,
            }),
            ..Providers::default()
        },
        mappings: vec![Mapping {
            item: ItemRef { kind: ItemKind::Unit, id: UNIT.into() },
            targets: vec![Target::TapkeyLock(UNIT_LOCK.into())],
        }],
    }
}

/// Starts both simulators seeded with units and their (active) locks.
pub async fn storage_sims() -> (KinnovisSim, TapkeySim) {
    let kinnovis = KinnovisSim::start(KinnovisSimConfig::default()).await;
    let tapkey =
        TapkeySim::start(TapkeySimConfig { owner_account_id: STORAGE_OWNER.into(), ..Default::default() })
            .await;
    kinnovis.add_unit("U-17", UNIT);
    kinnovis.add_unit("U-18", UNIT_2);
    tapkey.add_lock(UNIT_LOCK, "Unit A-017", true);
    tapkey.add_lock(UNIT_2_LOCK, "Unit A-018", true);
    (kinnovis, tapkey)
}

/// One running Portier for a self-storage location.
pub struct KinnovisApp {
    pub kinnovis: KinnovisSim,
    pub tapkey: TapkeySim,
    pub clock: ManualClock,
    pub store: Arc<FaultyStore>,
    pub records: Records,
    pub queue: Arc<dyn Queue>,
    pub runtime: Runtime,
    pub config: TenantConfig,
    pub tenant: Arc<TenantRuntime>,
    pub url: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for KinnovisApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn spawn_kinnovis_app() -> KinnovisApp {
    let (kinnovis, tapkey) = storage_sims().await;
    let clock = ManualClock::new(start_time());
    kinnovis.set_now(start_time());
    let config = storage_config(&kinnovis, &tapkey);
    let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
    let sqlite: Arc<dyn Store> =
        Arc::new(SqliteStore::open_in_memory(shared_clock.clone()).unwrap_or_else(|e| panic!("sqlite: {e}")));
    let store = Arc::new(FaultyStore::new(sqlite));
    let records = Records::new(store.clone(), shared_clock.clone());
    // As `portier serve` does at start-up: this is when the tenant counts as connected.
    records
        .put_tenant_config(&config.id, serde_json::to_value(&config).unwrap_or_default())
        .await
        .unwrap_or_else(|e| panic!("config: {e}"));
    let queue: Arc<dyn Queue> =
        Arc::new(EmbeddedQueue::open_in_memory(shared_clock, 5).unwrap_or_else(|e| panic!("queue: {e}")));
    let tenants = StaticTenants::build(
        &Config { admin: None, tenants: vec![config.clone()] },
        &storage_secrets(&kinnovis, &tapkey),
        fast_retries(),
    )
    .unwrap_or_else(|e| panic!("tenants: {e}"));
    let tenant = tenants
        .get(&config.id)
        .await
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("the storage tenant was not built"));
    let tenants: Arc<dyn Tenants> = Arc::new(tenants);
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
    KinnovisApp { kinnovis, tapkey, clock, store, records, queue, runtime, config, tenant, url, server }
}

impl KinnovisApp {
    pub fn hook_url(&self) -> String {
        format!("{}/hooks/kinnovis/{STORAGE_TENANT}", self.url)
    }

    /// Kinnovis sends `event_type` for the booking as it is now, signed.
    pub async fn hook(&self, event_type: &str, booking_id: &str) -> u16 {
        self.deliver(&self.kinnovis.webhook(event_type, booking_id)).await
    }

    pub async fn deliver(&self, hook: &SimWebhook) -> u16 {
        self.kinnovis.deliver(&self.hook_url(), hook).await
    }

    /// Moves Portier's and Kinnovis' clocks to `t`.
    pub fn set_now(&self, t: DateTime<Utc>) {
        self.clock.set(t);
        self.kinnovis.set_now(t);
    }

    pub fn advance(&self, d: chrono::Duration) {
        self.set_now(self.clock.now() + d);
    }

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

    /// Messages waiting or in flight.
    pub async fn queued(&self) -> u64 {
        let stats = self.queue.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
        stats.visible + stats.in_flight
    }

    pub fn subject(&self, email: &str) -> SubjectKey {
        let email = Email::parse(email).unwrap_or_else(|e| panic!("{e}"));
        shared::sources::kinnovis::source::subject_of(&TenantId(STORAGE_TENANT.into()), &email)
    }

    /// The email of the Tapkey contact a grant belongs to.
    pub fn holder(&self, contact_id: &str) -> Option<String> {
        self.tapkey.contacts().into_iter().find(|c| c.id == contact_id).map(|c| c.identifier)
    }
}
