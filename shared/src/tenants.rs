//! Tenants at run time: configuration plus the clients built from it, once per process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as MonoInstant};

use async_trait::async_trait;

use crate::config::{Config, ConfigError, Secret, Secrets, SourceConfig, TenantConfig};
use crate::error::InfraError;
use crate::http::RetryPolicy;
use crate::model::{ProviderKind, TenantId};
use crate::providers::Provider;
use crate::providers::tapkey::{TapkeyConfig, TapkeyProvider};
use crate::secrets::TenantSecrets;
use crate::sources::Source;
use crate::sources::nexudus::NexudusSource;
use crate::sources::nexudus::client::{NexudusClient, NexudusConfig};
use crate::store::Records;

/// One tenant, ready to use: verified secrets and built clients.
pub struct TenantRuntime {
    pub config: TenantConfig,
    pub webhook_secret: Option<Secret>,
    pub webhook_token: Option<Secret>,
    pub source: Arc<dyn Source>,
    providers: BTreeMap<ProviderKind, Arc<dyn Provider>>,
}

impl TenantRuntime {
    /// Builds the clients of a tenant; a missing secret is a configuration error naming it.
    pub fn build(
        config: &TenantConfig,
        secrets: &dyn Secrets,
        http: &reqwest::Client,
        policy: RetryPolicy,
    ) -> Result<Self, ConfigError> {
        let in_tenant = |e: ConfigError| ConfigError(format!("tenant {}: {}", config.id, e.0));
        let SourceConfig::Nexudus {
            base_url,
            username_env,
            password_env,
            webhook_secret_env,
            webhook_token_env,
        } = &config.source;
        let optional = |name: &Option<String>| name.as_deref().map(|n| secrets.get(n)).transpose();
        let webhook_secret = optional(webhook_secret_env).map_err(in_tenant)?;
        let webhook_token = optional(webhook_token_env).map_err(in_tenant)?;
        let nexudus = NexudusClient::new(
            NexudusConfig {
                base_url: base_url.clone(),
                username: secrets.get(username_env).map_err(in_tenant)?.expose().to_owned(),
                password: secrets.get(password_env).map_err(in_tenant)?.expose().to_owned(),
            },
            http.clone(),
            policy.clone(),
        );

        let mut providers: BTreeMap<ProviderKind, Arc<dyn Provider>> = BTreeMap::new();
        if let Some(t) = &config.providers.tapkey {
            let tapkey = TapkeyProvider::new(
                TapkeyConfig {
                    base_url: t.base_url.clone(),
                    token_url: t.token_url.clone(),
                    owner_account_id: t.owner_account_id.clone(),
                    client_id: secrets.get(&t.client_id_env).map_err(in_tenant)?.expose().to_owned(),
                    client_secret: secrets.get(&t.client_secret_env).map_err(in_tenant)?.expose().to_owned(),
                },
                http.clone(),
                policy.clone(),
            );
            providers.insert(ProviderKind::Tapkey, Arc::new(tapkey));
        }

        Ok(Self {
            config: config.clone(),
            webhook_secret,
            webhook_token,
            source: Arc::new(NexudusSource::new(nexudus)),
            providers,
        })
    }

    pub fn provider(&self, kind: ProviderKind) -> Option<&Arc<dyn Provider>> {
        self.providers.get(&kind)
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
    cache: Mutex<HashMap<TenantId, CacheEntry>>,
}

impl TableTenants {
    pub fn new(
        records: Records,
        secrets: Arc<dyn TenantSecrets>,
        policy: RetryPolicy,
        ttl: Duration,
    ) -> Self {
        Self { records, secrets, http: crate::http::client(), policy, ttl, cache: Mutex::new(HashMap::new()) }
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
                        let config: TenantConfig = serde_json::from_value(doc.clone()).map_err(|e| {
                            InfraError::Backend(format!("tenant {id}: stored config is invalid: {e}"))
                        })?;
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
