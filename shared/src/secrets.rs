//! Where each tenant's secrets come from.
//!
//! The config names secrets (`username_env = "NEXUDUS_USER"`); a [`Secrets`] resolves the names.
//! `portier serve` resolves them in its environment, one set for every tenant. In Lambda each
//! tenant has one Secrets Manager secret, `<prefix><tenant>` (`portier/space-berlin` by
//! default), holding a JSON object of those names → values:
//!
//! ```json
//! { "NEXUDUS_USER": "…", "NEXUDUS_PASSWORD": "…", "NEXUDUS_HOOK_SECRET": "…",
//!   "TAPKEY_CLIENT_ID": "…", "TAPKEY_CLIENT_SECRET": "…" }
//! ```

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as MonoInstant};

use async_trait::async_trait;
use aws_sdk_secretsmanager::Client;

use crate::aws::sdk_error;
use crate::config::{ConfigError, Secrets};
use crate::error::InfraError;
use crate::model::TenantId;

pub use secrecy::ExposeSecret;
/// A secret value (credentials, tokens, webhook secrets): `secrecy`'s string, whose `Debug`
/// is redacted, which has no `Display` and is zeroed when dropped. `expose_secret` reads it,
/// at the point of use.
pub use secrecy::SecretString as Secret;

/// The secrets one tenant's names resolve against.
#[async_trait]
pub trait TenantSecrets: Send + Sync {
    async fn for_tenant(&self, tenant: &TenantId) -> Result<Arc<dyn Secrets>, InfraError>;
}

/// The same secrets for every tenant (the environment, or a fixed table in tests).
pub struct SharedSecrets(pub Arc<dyn Secrets>);

#[async_trait]
impl TenantSecrets for SharedSecrets {
    async fn for_tenant(&self, _tenant: &TenantId) -> Result<Arc<dyn Secrets>, InfraError> {
        Ok(self.0.clone())
    }
}

/// The values of one Secrets Manager secret.
#[derive(Debug)]
pub struct SecretValues {
    secret_id: String,
    values: BTreeMap<String, Secret>,
}

/// The same names with the same values: a re-read that changed nothing keeps the tenant's
/// clients (`secrecy` has no `==`, so values are compared exposed, here only).
impl PartialEq for SecretValues {
    fn eq(&self, other: &Self) -> bool {
        self.secret_id == other.secret_id
            && self.values.len() == other.values.len()
            && self
                .values
                .iter()
                .zip(&other.values)
                .all(|((a, x), (b, y))| a == b && x.expose_secret() == y.expose_secret())
    }
}

impl SecretValues {
    /// Reads the secret's JSON object. Errors name the secret and the key, never a value.
    pub fn parse(secret_id: &str, text: &str) -> Result<Self, ConfigError> {
        let doc: serde_json::Value = serde_json::from_str(text).map_err(|e| {
            // serde_json's message may quote a piece of the input: give the place only.
            ConfigError(format!(
                "secret {secret_id} is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ))
        })?;
        let serde_json::Value::Object(map) = doc else {
            return Err(ConfigError(format!(
                "secret {secret_id} must be a JSON object of names to string values"
            )));
        };
        let mut values = BTreeMap::new();
        for (name, value) in map {
            let serde_json::Value::String(value) = value else {
                return Err(ConfigError(format!("secret {secret_id}: the value of {name} is not a string")));
            };
            values.insert(name, Secret::from(value));
        }
        Ok(Self { secret_id: secret_id.to_owned(), values })
    }
}

impl Secrets for SecretValues {
    fn get(&self, name: &str) -> Result<Secret, ConfigError> {
        match self.values.get(name) {
            Some(v) if !v.expose_secret().is_empty() => Ok(v.clone()),
            _ => Err(ConfigError(format!("secret {} has no value for {name}", self.secret_id))),
        }
    }
}

/// How long a fetched secret is used before it is read again: a rotated value reaches every
/// running container within this time (new containers read it at once).
pub const SECRETS_TTL: Duration = Duration::from_secs(300);

/// One Secrets Manager secret per tenant, read at first use (Lambda warms it at cold start)
/// and re-read after [`SECRETS_TTL`].
pub struct SecretsManager {
    client: Client,
    prefix: String,
    ttl: Duration,
    cache: Mutex<HashMap<TenantId, (MonoInstant, Arc<SecretValues>)>>,
}

impl SecretsManager {
    /// `prefix` + tenant id is the secret's name, e.g. `portier/` + `space-berlin`.
    pub fn new(client: Client, prefix: impl Into<String>, ttl: Duration) -> Self {
        Self { client, prefix: prefix.into(), ttl, cache: Mutex::new(HashMap::new()) }
    }

    pub fn secret_id(&self, tenant: &TenantId) -> String {
        format!("{}{tenant}", self.prefix)
    }

    async fn fetch(&self, secret_id: &str) -> Result<SecretValues, InfraError> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| sdk_error("secretsmanager", &format!("GetSecretValue {secret_id}"), e))?;
        let text = out.secret_string().ok_or_else(|| {
            InfraError::Backend(format!(
                "secret {secret_id} has no SecretString (binary secrets are not read)"
            ))
        })?;
        SecretValues::parse(secret_id, text).map_err(|e| InfraError::Backend(e.0))
    }
}

#[async_trait]
impl TenantSecrets for SecretsManager {
    async fn for_tenant(&self, tenant: &TenantId) -> Result<Arc<dyn Secrets>, InfraError> {
        let cached = {
            let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            cache.get(tenant).cloned()
        };
        if let Some((at, values)) = &cached
            && at.elapsed() < self.ttl
        {
            return Ok(values.clone());
        }
        let fetched = self.fetch(&self.secret_id(tenant)).await?;
        // Unchanged values keep their Arc, so the tenant's clients (and tokens) are kept too.
        let values = match cached {
            Some((_, old)) if *old == fetched => old,
            _ => Arc::new(fetched),
        };
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.insert(tenant.clone(), (MonoInstant::now(), values.clone()));
        Ok(values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_resolve_by_name_and_errors_never_show_values() {
        let v = SecretValues::parse("portier/t", r#"{"NEXUDUS_USER":"api@example.com","EMPTY":""}"#)
            .expect("parses");
        assert_eq!(v.get("NEXUDUS_USER").map(|s| s.expose_secret().to_owned()), Ok("api@example.com".into()));
        assert_eq!(
            v.get("TAPKEY_CLIENT_ID").err(),
            Some(ConfigError("secret portier/t has no value for TAPKEY_CLIENT_ID".into()))
        );
        assert!(v.get("EMPTY").is_err());

        let not_string = SecretValues::parse("portier/t", r#"{"PIN": 483920}"#).expect_err("rejected").0;
        assert!(not_string.contains("PIN") && !not_string.contains("483920"), "{not_string}");
        let broken = SecretValues::parse("portier/t", r#"{"A": "hunter2"#).expect_err("rejected").0;
        assert!(broken.contains("line 1") && !broken.contains("hunter2"), "{broken}");
        assert!(SecretValues::parse("portier/t", r#"["x"]"#).is_err());
    }
}
