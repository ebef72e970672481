//! Tenants at run time: configuration plus the clients built from it, once per process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as MonoInstant};

use async_trait::async_trait;

use crate::config::{Config, ConfigError, Secret, Secrets, TenantConfig};
use crate::error::InfraError;
use crate::http::RetryPolicy;
use crate::model::{ProviderKind, TenantId};
use crate::providers::Provider;
use crate::providers::brivo::BrivoProvider;
use crate::providers::salto::SaltoProvider;
use crate::providers::tapkey::TapkeyProvider;
use crate::secrets::TenantSecrets;
use crate::sources::Source;
use crate::sources::kinnovis::KinnovisSource;
use crate::sources::nexudus::NexudusSource;
use crate::store::Records;

mod build;

/// The shortest Nexudus webhook secret or URL token accepted.
pub const MIN_WEBHOOK_SECRET_CHARS: usize = 16;

/// One tenant, ready to use: verified secrets and built clients.
#[derive(Clone)]
pub struct TenantRuntime {
    pub config: TenantConfig,
    pub webhook_secret: Option<Secret>,
    pub webhook_token: Option<Secret>,
    pub source: Arc<dyn Source>,
    providers: BTreeMap<ProviderKind, Arc<dyn Provider>>,
    kinnovis: Option<Arc<KinnovisSource>>,
    tapkey: Option<Arc<TapkeyProvider>>,
    nexudus: Option<Arc<NexudusSource>>,
    salto: Option<Arc<SaltoProvider>>,
    brivo: Option<Arc<BrivoProvider>>,
    /// `?token=` of the Brivo event subscription (`[tenant.presence.brivo]`).
    pub brivo_hook_token: Option<Secret>,
}

impl TenantRuntime {
    /// The tenant's Kinnovis source, when it is a Kinnovis location.
    pub fn kinnovis(&self) -> Option<&KinnovisSource> {
        self.kinnovis.as_deref()
    }

    /// The tenant's Nexudus source, when it is a Nexudus location (presence check-ins).
    pub fn nexudus(&self) -> Option<&NexudusSource> {
        self.nexudus.as_deref()
    }

    /// The tenant's Salto KS provider (presence polls its entries).
    pub fn salto(&self) -> Option<&SaltoProvider> {
        self.salto.as_deref()
    }

    /// The tenant's Brivo provider (group listings for the console).
    pub fn brivo(&self) -> Option<&BrivoProvider> {
        self.brivo.as_deref()
    }

    /// The tenant's Tapkey provider (lock listings for `mapping locks`).
    pub fn tapkey(&self) -> Option<&TapkeyProvider> {
        self.tapkey.as_deref()
    }

    pub fn provider(&self, kind: ProviderKind) -> Option<&Arc<dyn Provider>> {
        self.providers.get(&kind)
    }

    /// The same tenant reaching `provider.kind()` through `provider` instead of the client
    /// built from its config (one built with other limits, say). [`Self::tapkey`] is not
    /// affected: it serves only the lock listing of `mapping locks`.
    pub fn with_provider(mut self, provider: Arc<dyn Provider>) -> Self {
        self.providers.insert(provider.kind(), provider);
        self
    }
}

/// Finds a tenant by id.
#[async_trait]
pub trait Tenants: Send + Sync {
    async fn get(&self, id: &TenantId) -> Result<Option<Arc<TenantRuntime>>, InfraError>;

    /// Every tenant known right now (for the tick and resync).
    async fn ids(&self) -> Result<Vec<TenantId>, InfraError>;
}

/// Tenants from a config file, built once at start-up (`portier serve`).
pub struct StaticTenants(BTreeMap<TenantId, Arc<TenantRuntime>>);

impl StaticTenants {
    pub fn build(config: &Config, secrets: &dyn Secrets, policy: RetryPolicy) -> Result<Self, ConfigError> {
        let http = crate::http::client();
        let mut tenants = BTreeMap::new();
        for t in &config.tenants {
            tenants.insert(t.id.clone(), Arc::new(TenantRuntime::build(t, secrets, &http, policy.clone())?));
        }
        Ok(Self(tenants))
    }

    /// Builds every tenant that can be built; the others come back with their reason, so one
    /// tenant's missing secret does not stop the rest from being served.
    pub fn build_each(
        config: &Config,
        secrets: &dyn Secrets,
        policy: RetryPolicy,
    ) -> (Self, Vec<(TenantId, ConfigError)>) {
        let http = crate::http::client();
        let mut tenants = BTreeMap::new();
        let mut broken = Vec::new();
        for t in &config.tenants {
            match TenantRuntime::build(t, secrets, &http, policy.clone()) {
                Ok(r) => {
                    tenants.insert(t.id.clone(), Arc::new(r));
                }
                Err(e) => broken.push((t.id.clone(), e)),
            }
        }
        (Self(tenants), broken)
    }
}

#[async_trait]
impl Tenants for StaticTenants {
    async fn get(&self, id: &TenantId) -> Result<Option<Arc<TenantRuntime>>, InfraError> {
        Ok(self.0.get(id).cloned())
    }

    async fn ids(&self) -> Result<Vec<TenantId>, InfraError> {
        Ok(self.0.keys().cloned().collect())
    }
}

/// A cached tenant: what it was built from, so an unchanged tenant keeps its clients.
struct CacheEntry {
    checked: MonoInstant,
    built: Option<Built>,
}

#[derive(Clone)]
struct Built {
    doc: serde_json::Value,
    secrets: Arc<dyn Secrets>,
    runtime: Arc<TenantRuntime>,
}

/// Tenants from the table's `TENANT#t / CONFIG` documents, re-read after a short TTL
/// (Lambda). A tenant is rebuilt only when its document or its secrets changed, so its
/// clients, connections and provider tokens live as long as the container.
pub struct TableTenants {
    records: Records,
    secrets: Arc<dyn TenantSecrets>,
    http: reqwest::Client,
    policy: RetryPolicy,
    ttl: Duration,
    /// Processes each holding its own rate limiters for the same accounts (see
    /// [`TenantConfig::share_rate_limits`]); 1 when this process is the only one.
    rate_shares: u32,
    cache: Mutex<HashMap<TenantId, CacheEntry>>,
}

impl TableTenants {
    pub fn new(
        records: Records,
        secrets: Arc<dyn TenantSecrets>,
        policy: RetryPolicy,
        ttl: Duration,
    ) -> Self {
        Self {
            records,
            secrets,
            http: crate::http::client(),
            policy,
            ttl,
            rate_shares: 1,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Builds every tenant with `1/shares` of its rate limits: for Lambda, where each of up to
    /// `shares` containers calls the same accounts with a limiter of its own.
    pub fn with_rate_shares(mut self, shares: u32) -> Self {
        self.rate_shares = shares.max(1);
        self
    }

    /// The cache entry, and whether it is still fresh.
    fn cached(&self, id: &TenantId) -> Option<(bool, Option<Built>)> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(id).map(|e| (e.checked.elapsed() < self.ttl, e.built.clone()))
    }
}

#[async_trait]
impl Tenants for TableTenants {
    async fn get(&self, id: &TenantId) -> Result<Option<Arc<TenantRuntime>>, InfraError> {
        let previous = match self.cached(id) {
            Some((true, built)) => return Ok(built.map(|b| b.runtime)),
            Some((false, built)) => built,
            None => None,
        };
        let built = match self.records.tenant_config(id).await? {
            None => None,
            Some(doc) => {
                let secrets = self.secrets.for_tenant(id).await?;
                match previous {
                    Some(p) if p.doc == doc && Arc::ptr_eq(&p.secrets, &secrets) => Some(p),
                    _ => {
                        let mut config: TenantConfig = serde_json::from_value(doc.clone()).map_err(|e| {
                            InfraError::Backend(format!("tenant {id}: stored config is invalid: {e}"))
                        })?;
                        // The same checks the file gets: a pushed document is no more trusted.
                        config.check().map_err(|e| {
                            InfraError::Backend(format!("tenant {id}: stored config is invalid: {}", e.0))
                        })?;
                        if config.id != *id {
                            return Err(InfraError::Backend(format!(
                                "tenant {id}: stored config names tenant {}",
                                config.id
                            )));
                        }
                        config.share_rate_limits(self.rate_shares);
                        let runtime =
                            TenantRuntime::build(&config, secrets.as_ref(), &self.http, self.policy.clone())
                                .map_err(|e| InfraError::Backend(e.0))?;
                        Some(Built { doc, secrets, runtime: Arc::new(runtime) })
                    }
                }
            }
        };
        let runtime = built.as_ref().map(|b| b.runtime.clone());
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(id.clone(), CacheEntry { checked: MonoInstant::now(), built });
        Ok(runtime)
    }

    async fn ids(&self) -> Result<Vec<TenantId>, InfraError> {
        self.records.tenant_ids().await
    }
}
