//! Tenants at run time: configuration plus the clients built from it, once per process.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as MonoInstant};

use async_trait::async_trait;

use crate::config::{Config, ConfigError, Secret, Secrets, SourceConfig, TenantConfig};
use crate::error::InfraError;
use crate::http::RetryPolicy;
use crate::ingress::verify::WebhookKey;
use crate::model::{ProviderKind, TenantId};
use crate::providers::Provider;
use crate::providers::brivo::{BrivoConfig, BrivoProvider};
use crate::providers::salto::{SaltoConfig, SaltoProvider};
use crate::providers::tapkey::{TapkeyConfig, TapkeyProvider};
use crate::secrets::{ExposeSecret, TenantSecrets};
use crate::sources::Source;
use crate::sources::kinnovis::KinnovisSource;
use crate::sources::kinnovis::client::{KinnovisClient, KinnovisConfig};
use crate::sources::nexudus::NexudusSource;
use crate::sources::nexudus::client::{NexudusClient, NexudusConfig};
use crate::store::Records;

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
    /// `?token=` of the Brivo event subscription (`[tenant.presence.brivo]`).
    pub brivo_hook_token: Option<Secret>,
}

impl TenantRuntime {
    /// Builds the clients of a tenant; a missing secret is a configuration error naming it.
    /// Builds the tenant's clients. Webhook secrets and tokens shorter than
    /// [`MIN_WEBHOOK_SECRET_CHARS`] are refused here, when the configuration loads.
    pub fn build(
        config: &TenantConfig,
        secrets: &dyn Secrets,
        http: &reqwest::Client,
        policy: RetryPolicy,
    ) -> Result<Self, ConfigError> {
        let in_tenant = |e: ConfigError| ConfigError(format!("tenant {}: {}", config.id, e.0));
        let (source, webhook_secret, webhook_token, kinnovis, nexudus_source): (Arc<dyn Source>, _, _, _, _) =
            match &config.source {
                SourceConfig::Nexudus {
                    base_url,
                    username_env,
                    password_env,
                    webhook_secret_env,
                    webhook_token_env,
                    calls_per_minute,
                } => {
                    let optional =
                        |name: &Option<String>| name.as_deref().map(|n| secrets.get(n)).transpose();
                    let webhook_secret = optional(webhook_secret_env).map_err(in_tenant)?;
                    let webhook_token = optional(webhook_token_env).map_err(in_tenant)?;
                    for (env, value) in
                        [(webhook_secret_env, &webhook_secret), (webhook_token_env, &webhook_token)]
                    {
                        if let (Some(env), Some(v)) = (env, value)
                            && v.expose_secret().chars().count() < MIN_WEBHOOK_SECRET_CHARS
                        {
                            return Err(in_tenant(ConfigError(format!(
                                "{env} holds {} characters; a webhook secret or token needs at least \
                             {MIN_WEBHOOK_SECRET_CHARS} (anything shorter can be guessed)",
                                v.expose_secret().chars().count()
                            ))));
                        }
                    }
                    let nexudus = NexudusClient::new(
                        NexudusConfig {
                            base_url: base_url.clone(),
                            username: secrets
                                .get(username_env)
                                .map_err(in_tenant)?
                                .expose_secret()
                                .to_owned(),
                            password: secrets
                                .get(password_env)
                                .map_err(in_tenant)?
                                .expose_secret()
                                .to_owned(),
                        },
                        http.clone(),
                        policy.clone(),
                    )
                    .with_calls_per_minute(
                        calls_per_minute.unwrap_or(crate::sources::nexudus::client::DEFAULT_CALLS_PER_MINUTE),
                    );
                    let zone = crate::localtime::Zone::parse(&config.timezone)
                        .map_err(|e| in_tenant(ConfigError(format!("timezone: {e}"))))?;
                    let rules = crate::sources::nexudus::source::NexudusRules::of(
                        &config.policy,
                        zone,
                        &config.mappings,
                    );
                    let source = Arc::new(NexudusSource::new(config.id.clone(), nexudus, rules));
                    (source.clone() as Arc<dyn Source>, webhook_secret, webhook_token, None, Some(source))
                }
                SourceConfig::Kinnovis { base_url, location_id, api_key_env, webhook_secret_env } => {
                    let secret = secrets.get(webhook_secret_env).map_err(in_tenant)?;
                    // A secret that cannot verify anything is a start-up error, not 401s later.
                    WebhookKey::parse(secret.expose_secret())
                        .map_err(|e| in_tenant(ConfigError(format!("{webhook_secret_env}: {e}"))))?;
                    let zone = crate::localtime::Zone::parse(&config.timezone)
                        .map_err(|e| in_tenant(ConfigError(format!("timezone: {e}"))))?;
                    let client = KinnovisClient::new(
                        KinnovisConfig {
                            base_url: base_url.clone(),
                            location_id: location_id.clone(),
                            api_key: secrets.get(api_key_env).map_err(in_tenant)?,
                        },
                        http.clone(),
                        policy.clone(),
                    );
                    let source = Arc::new(KinnovisSource::new(
                        config.id.clone(),
                        zone,
                        config.policy.adoption,
                        client,
                    ));
                    (source.clone() as Arc<dyn Source>, Some(secret), None, Some(source), None)
                }
            };

        let mut providers: BTreeMap<ProviderKind, Arc<dyn Provider>> = BTreeMap::new();
        let mut tapkey_provider = None;
        let mut salto_provider = None;
        if let Some(t) = &config.providers.tapkey {
            let tapkey = TapkeyProvider::new(
                TapkeyConfig {
                    base_url: t.base_url.clone(),
                    token_url: t.token_url.clone(),
                    owner_account_id: t.owner_account_id.clone(),
                    client_id: secrets.get(&t.client_id_env).map_err(in_tenant)?.expose_secret().to_owned(),
                    client_secret: secrets
                        .get(&t.client_secret_env)
                        .map_err(in_tenant)?
                        .expose_secret()
                        .to_owned(),
                },
                http.clone(),
                policy.clone(),
            )
            .with_calls_per_second(t.calls_per_second);
            let tapkey = Arc::new(tapkey);
            providers.insert(ProviderKind::Tapkey, tapkey.clone());
            tapkey_provider = Some(tapkey);
        }
        let secret = |name: &str| secrets.get(name).map(|s| s.expose_secret().to_owned()).map_err(in_tenant);
        let optional_secret = |name: &Option<String>| name.as_deref().map(secret).transpose();
        if let Some(s) = &config.providers.salto_ks {
            let salto = SaltoProvider::new(
                SaltoConfig {
                    base_url: s.base_url.clone(),
                    token_url: s.token_url.clone(),
                    site_id: s.site_id.clone(),
                    client_id: secret(&s.client_id_env)?,
                    client_secret: secret(&s.client_secret_env)?,
                    username: optional_secret(&s.username_env)?,
                    password: optional_secret(&s.password_env)?,
                    refresh_token: optional_secret(&s.refresh_token_env)?,
                    user_role: s.user_role.clone(),
                },
                http.clone(),
                policy.clone(),
            )
            .with_calls_per_second(s.calls_per_second);
            let salto = Arc::new(salto);
            providers.insert(ProviderKind::Salto, salto.clone());
            salto_provider = Some(salto);
        }
        if let Some(b) = &config.providers.brivo {
            let brivo = BrivoProvider::new(
                BrivoConfig {
                    base_url: b.base_url.clone(),
                    token_url: b.token_url.clone(),
                    api_key: secret(&b.api_key_env)?,
                    client_id: secret(&b.client_id_env)?,
                    client_secret: secret(&b.client_secret_env)?,
                    username: secret(&b.username_env)?,
                    password: secret(&b.password_env)?,
                },
                http.clone(),
                policy.clone(),
            )
            .with_calls_per_second(b.calls_per_second);
            providers.insert(ProviderKind::Brivo, Arc::new(brivo));
        }

        let brivo_token_env = config
            .presence
            .as_ref()
            .and_then(|p| p.brivo.as_ref())
            .and_then(|b| b.webhook_token_env.as_deref());
        let brivo_hook_token = match brivo_token_env {
            Some(env) => {
                let token = secrets.get(env).map_err(in_tenant)?;
                if token.expose_secret().chars().count() < MIN_WEBHOOK_SECRET_CHARS {
                    return Err(in_tenant(ConfigError(format!(
                        "{env} holds {} characters; a webhook token needs at least {MIN_WEBHOOK_SECRET_CHARS}",
                        token.expose_secret().chars().count()
                    ))));
                }
                Some(token)
            }
            None => None,
        };

        Ok(Self {
            config: config.clone(),
            webhook_secret,
            webhook_token,
            source,
            providers,
            kinnovis,
            tapkey: tapkey_provider,
            nexudus: nexudus_source,
            salto: salto_provider,
            brivo_hook_token,
        })
    }

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
