//! The console function's admin token. Its events go through [`crate::lambda::answer`], to
//! the same router `portier serve` mounts, so both runtimes answer alike.

/// The secret that holds the admin token on AWS: `<SECRETS_PREFIX>.admin` (a `.` no tenant id
/// has, so it cannot be a tenant's secret).
pub const ADMIN_SECRET_SUFFIX: &str = ".admin";

/// The console function's admin token: the key `ADMIN_TOKEN_ENV` (default
/// `PORTIER_ADMIN_TOKEN`, as `[admin] admin_token_env` names it) of the secret
/// `<SECRETS_PREFIX>.admin`, or of the environment when `SECRETS_PREFIX` is unset (local runs).
/// `None` when `ADMIN_TOKEN_ENV` is set empty: the console is off and answers 404.
pub async fn admin_auth_from_env() -> Result<Option<super::AdminAuth>, String> {
    let name = std::env::var("ADMIN_TOKEN_ENV").unwrap_or_else(|_| "PORTIER_ADMIN_TOKEN".into());
    if name.trim().is_empty() {
        return Ok(None);
    }
    let secrets: std::sync::Arc<dyn crate::config::Secrets> =
        match std::env::var("SECRETS_PREFIX").ok().filter(|p| !p.is_empty()) {
            Some(prefix) => {
                use crate::secrets::TenantSecrets;
                let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
                let sdk = crate::aws::sdk_config(endpoint.as_deref()).await;
                let sm = crate::secrets::SecretsManager::new(
                    aws_sdk_secretsmanager::Client::new(&sdk),
                    prefix,
                    crate::secrets::SECRETS_TTL,
                );
                sm.for_tenant(&crate::model::TenantId(ADMIN_SECRET_SUFFIX.into()))
                    .await
                    .map_err(|e| e.to_string())?
            }
            None => std::sync::Arc::new(crate::config::EnvSecrets),
        };
    let token = secrets.get(&name).map_err(|e| e.0)?;
    super::AdminAuth::new(token).map(Some).map_err(|e| format!("{name}: {e}"))
}
