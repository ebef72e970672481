//! Building a tenant's clients from its configuration and secrets, once per process.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::{MIN_WEBHOOK_SECRET_CHARS, TenantRuntime};
use crate::config::{
    BrivoProviderConfig, ConfigError, SaltoProviderConfig, Secret, Secrets, SourceConfig,
    TapkeyProviderConfig, TenantConfig,
};
use crate::http::{ClientLimits, RetryPolicy};
use crate::ingress::verify::WebhookKey;
use crate::model::ProviderKind;
use crate::providers::Provider;
use crate::providers::brivo::{BrivoConfig, BrivoProvider};
use crate::providers::salto::{SaltoConfig, SaltoProvider};
use crate::providers::tapkey::{TapkeyConfig, TapkeyProvider};
use crate::secrets::ExposeSecret;
use crate::sources::Source;
use crate::sources::kinnovis::KinnovisSource;
use crate::sources::kinnovis::client::{KinnovisClient, KinnovisConfig};
use crate::sources::nexudus::NexudusSource;
use crate::sources::nexudus::client::{NexudusClient, NexudusConfig};

impl TenantRuntime {
    /// Builds the clients of a tenant; a missing secret is a configuration error naming it.
    /// Webhook secrets and tokens shorter than [`MIN_WEBHOOK_SECRET_CHARS`] are refused here,
    /// when the configuration loads.
    pub fn build(
        config: &TenantConfig,
        secrets: &dyn Secrets,
        http: &reqwest::Client,
        policy: RetryPolicy,
    ) -> Result<Self, ConfigError> {
        let with = With { config, secrets, http, policy };
        let source = with.source()?;
        let mut providers: BTreeMap<ProviderKind, Arc<dyn Provider>> = BTreeMap::new();
        let tapkey = config.providers.tapkey.as_ref().map(|t| with.tapkey(t)).transpose()?;
        if let Some(tapkey) = &tapkey {
            providers.insert(ProviderKind::Tapkey, tapkey.clone());
        }
        let salto = config.providers.salto_ks.as_ref().map(|s| with.salto(s)).transpose()?;
        if let Some(salto) = &salto {
            providers.insert(ProviderKind::Salto, salto.clone());
        }
        let brivo = config.providers.brivo.as_ref().map(|b| with.brivo(b)).transpose()?;
        if let Some(brivo) = &brivo {
            providers.insert(ProviderKind::Brivo, brivo.clone());
        }
        Ok(Self {
            config: config.clone(),
            webhook_secret: source.webhook_secret,
            webhook_token: source.webhook_token,
            source: source.source,
            providers,
            kinnovis: source.kinnovis,
            tapkey,
            nexudus: source.nexudus,
            salto,
            brivo,
            brivo_hook_token: with.brivo_hook_token()?,
        })
    }
}

/// What a tenant's clients are built with.
struct With<'a> {
    config: &'a TenantConfig,
    secrets: &'a dyn Secrets,
    http: &'a reqwest::Client,
    policy: RetryPolicy,
}

/// The tenant's source, with the secrets that verify its webhooks.
struct BuiltSource {
    source: Arc<dyn Source>,
    webhook_secret: Option<Secret>,
    webhook_token: Option<Secret>,
    kinnovis: Option<Arc<KinnovisSource>>,
    nexudus: Option<Arc<NexudusSource>>,
}

impl With<'_> {
    /// A configuration error, naming the tenant.
    fn in_tenant(&self, e: ConfigError) -> ConfigError {
        ConfigError(format!("tenant {}: {}", self.config.id, e.0))
    }

    fn secret(&self, name: &str) -> Result<Secret, ConfigError> {
        self.secrets.get(name).map_err(|e| self.in_tenant(e))
    }

    /// A value kept in the secrets that is no secret: a client id, which error reasons name.
    fn plain(&self, name: &str) -> Result<String, ConfigError> {
        self.secret(name).map(|s| s.expose_secret().to_owned())
    }

    fn optional_secret(&self, name: &Option<String>) -> Result<Option<Secret>, ConfigError> {
        name.as_deref().map(|n| self.secret(n)).transpose()
    }

    fn zone(&self) -> Result<crate::localtime::Zone, ConfigError> {
        crate::localtime::Zone::parse(&self.config.timezone)
            .map_err(|e| self.in_tenant(ConfigError(format!("timezone: {e}"))))
    }

    fn source(&self) -> Result<BuiltSource, ConfigError> {
        let (config, secrets, in_tenant) = (self.config, self.secrets, |e| self.in_tenant(e));
        match &config.source {
            SourceConfig::Nexudus {
                base_url,
                username_env,
                password_env,
                webhook_secret_env,
                webhook_token_env,
                calls_per_minute,
            } => {
                let (webhook_secret, webhook_token) =
                    self.nexudus_hook_secrets(webhook_secret_env, webhook_token_env)?;
                let nexudus = NexudusClient::new(
                    NexudusConfig {
                        base_url: base_url.clone(),
                        username: self.secret(username_env)?,
                        password: self.secret(password_env)?,
                    },
                    self.http.clone(),
                    self.policy.clone(),
                )
                .with_calls_per_minute(
                    calls_per_minute.unwrap_or(crate::sources::nexudus::client::DEFAULT_CALLS_PER_MINUTE),
                );
                let zone = self.zone()?;
                let rules =
                    crate::sources::nexudus::source::NexudusRules::of(&config.policy, zone, &config.mappings);
                let source = Arc::new(NexudusSource::new(config.id.clone(), nexudus, rules));
                Ok(BuiltSource {
                    source: source.clone(),
                    webhook_secret,
                    webhook_token,
                    kinnovis: None,
                    nexudus: Some(source),
                })
            }
            SourceConfig::Kinnovis { base_url, location_id, api_key_env, webhook_secret_env } => {
                let secret = secrets.get(webhook_secret_env).map_err(in_tenant)?;
                // A secret that cannot verify anything is a start-up error, not 401s later.
                WebhookKey::parse(secret.expose_secret())
                    .map_err(|e| in_tenant(ConfigError(format!("{webhook_secret_env}: {e}"))))?;
                let zone = self.zone()?;
                let client = KinnovisClient::new(
                    KinnovisConfig {
                        base_url: base_url.clone(),
                        location_id: location_id.clone(),
                        api_key: self.secret(api_key_env)?,
                    },
                    self.http.clone(),
                    self.policy.clone(),
                );
                let source =
                    Arc::new(KinnovisSource::new(config.id.clone(), zone, config.policy.adoption, client));
                Ok(BuiltSource {
                    source: source.clone(),
                    webhook_secret: Some(secret),
                    webhook_token: None,
                    kinnovis: Some(source),
                    nexudus: None,
                })
            }
        }
    }

    /// The Nexudus webhook secret and URL token, each refused when short enough to guess.
    fn nexudus_hook_secrets(
        &self,
        webhook_secret_env: &Option<String>,
        webhook_token_env: &Option<String>,
    ) -> Result<(Option<Secret>, Option<Secret>), ConfigError> {
        let (secrets, in_tenant) = (self.secrets, |e| self.in_tenant(e));
        let optional = |name: &Option<String>| name.as_deref().map(|n| secrets.get(n)).transpose();
        let webhook_secret = optional(webhook_secret_env).map_err(in_tenant)?;
        let webhook_token = optional(webhook_token_env).map_err(in_tenant)?;
        for (env, value) in [(webhook_secret_env, &webhook_secret), (webhook_token_env, &webhook_token)] {
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
        Ok((webhook_secret, webhook_token))
    }

    fn tapkey(&self, t: &TapkeyProviderConfig) -> Result<Arc<TapkeyProvider>, ConfigError> {
        let tapkey = TapkeyProvider::new(
            TapkeyConfig {
                base_url: t.base_url.clone(),
                token_url: t.token_url.clone(),
                owner_account_id: t.owner_account_id.clone(),
                client_id: self.plain(&t.client_id_env)?,
                client_secret: self.secret(&t.client_secret_env)?,
            },
            self.http.clone(),
            self.policy.clone(),
        )
        .with_calls_per_second(t.calls_per_second);
        Ok(Arc::new(tapkey))
    }

    fn salto(&self, s: &SaltoProviderConfig) -> Result<Arc<SaltoProvider>, ConfigError> {
        let salto = SaltoProvider::new(
            SaltoConfig {
                base_url: s.base_url.clone(),
                token_url: s.token_url.clone(),
                site_id: s.site_id.clone(),
                client_id: self.plain(&s.client_id_env)?,
                client_secret: self.secret(&s.client_secret_env)?,
                username: self.optional_secret(&s.username_env)?,
                password: self.optional_secret(&s.password_env)?,
                refresh_token: self.optional_secret(&s.refresh_token_env)?,
                user_role: s.user_role.clone(),
            },
            self.http.clone(),
            self.policy.clone(),
        )
        .with_calls_per_second(s.calls_per_second);
        Ok(Arc::new(salto))
    }

    fn brivo(&self, b: &BrivoProviderConfig) -> Result<Arc<BrivoProvider>, ConfigError> {
        let brivo = BrivoProvider::new(
            BrivoConfig {
                base_url: b.base_url.clone(),
                token_url: b.token_url.clone(),
                api_key: self.secret(&b.api_key_env)?,
                client_id: self.plain(&b.client_id_env)?,
                client_secret: self.secret(&b.client_secret_env)?,
                username: self.secret(&b.username_env)?,
                password: self.secret(&b.password_env)?,
            },
            self.http.clone(),
            self.policy.clone(),
        )
        .with_calls_per_second(b.calls_per_second);
        Ok(Arc::new(brivo))
    }

    /// `?token=` of the Brivo event subscription (`[tenant.presence.brivo]`).
    fn brivo_hook_token(&self) -> Result<Option<Secret>, ConfigError> {
        let brivo_token_env = self
            .config
            .presence
            .as_ref()
            .and_then(|p| p.brivo.as_ref())
            .and_then(|b| b.webhook_token_env.as_deref());
        let Some(env) = brivo_token_env else { return Ok(None) };
        let token = self.secrets.get(env).map_err(|e| self.in_tenant(e))?;
        if token.expose_secret().chars().count() < MIN_WEBHOOK_SECRET_CHARS {
            return Err(self.in_tenant(ConfigError(format!(
                "{env} holds {} characters; a webhook token needs at least {MIN_WEBHOOK_SECRET_CHARS}",
                token.expose_secret().chars().count()
            ))));
        }
        Ok(Some(token))
    }
}
