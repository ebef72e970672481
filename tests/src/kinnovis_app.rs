//! `spawn_kinnovis_app()`: a self-storage location (Kinnovis + Tapkey simulators) and Portier
//! as `portier serve` builds it ([`crate::app::Portier`]), each test with its own fresh state.

use std::collections::BTreeMap;
use std::ops::Deref;
use std::sync::Arc;

use shared::config::{
    Config, Policy, Providers, SourceConfig, StaticSecrets, TapkeyProviderConfig, TenantConfig,
};
use shared::model::{Email, ItemKind, ItemRef, Mapping, SubjectKey, Target, TenantId};
use shared::tenants::TenantRuntime;

use crate::app::Portier;
use crate::harness::fast_retries;
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

/// Portier for a self-storage location, with its Kinnovis and Tapkey simulators.
pub struct KinnovisApp {
    pub kinnovis: KinnovisSim,
    pub tapkey: TapkeySim,
    pub config: TenantConfig,
    pub tenant: Arc<TenantRuntime>,
    pub portier: Portier,
}

/// The store, queue, clock and runtime: `app.records`, `app.drain()`.
impl Deref for KinnovisApp {
    type Target = Portier;
    fn deref(&self) -> &Portier {
        &self.portier
    }
}

pub async fn spawn_kinnovis_app() -> KinnovisApp {
    let (kinnovis, tapkey) = storage_sims().await;
    let config = storage_config(&kinnovis, &tapkey);
    let all = Config { admin: None, tenants: vec![config.clone()] };
    let secrets = storage_secrets(&kinnovis, &tapkey);
    let portier = Portier::start(&all, &secrets, fast_retries(), vec![kinnovis.clock_hand()]).await;
    let tenant = portier.runtime.worker.tenants.get(&config.id).await.ok().flatten();
    let tenant = tenant.unwrap_or_else(|| panic!("the storage tenant was not built"));
    KinnovisApp { kinnovis, tapkey, config, tenant, portier }
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

    pub fn subject(&self, email: &str) -> SubjectKey {
        let email = Email::parse(email).unwrap_or_else(|e| panic!("{e}"));
        shared::sources::kinnovis::source::subject_of(&TenantId(STORAGE_TENANT.into()), &email)
    }

    /// The email of the Tapkey contact a grant belongs to.
    pub fn holder(&self, contact_id: &str) -> Option<String> {
        self.tapkey.contacts().into_iter().find(|c| c.id == contact_id).map(|c| c.identifier)
    }
}
