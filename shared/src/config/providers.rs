//! `[tenant.providers.*]`: the lock systems' accounts, endpoints and rate limits.

use serde::{Deserialize, Serialize};

/// `[tenant.providers.salto_ks]`: Connect API with a password grant or a stored refresh token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SaltoProviderConfig {
    /// The site UUID (not the readable `site_uid`).
    pub site_id: String,
    pub client_id_env: String,
    pub client_secret_env: String,
    /// Password grant of a dedicated site admin; or `refresh_token_env`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password_env: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token_env: Option<String>,
    #[serde(default = "salto_base")]
    pub base_url: String,
    #[serde(default = "salto_token")]
    pub token_url: String,
    /// The role Portier's users get: a role id, code or name from the site's `GET …/roles`
    /// (default: the documented plain user role, code `site_user`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_role: Option<String>,
    /// Client-side limit on API calls per second, shared by every worker of the process
    /// (none when absent). Set it at or under the provider's limit for this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_second: Option<f64>,
}

fn salto_base() -> String {
    "https://user.my-clay.com".into()
}

fn salto_token() -> String {
    "https://identity.eu.my-clay.com/connect/token".into()
}

/// `[tenant.providers.brivo]`: Access API with `api-key` and a password grant.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrivoProviderConfig {
    pub api_key_env: String,
    pub client_id_env: String,
    pub client_secret_env: String,
    pub username_env: String,
    pub password_env: String,
    #[serde(default = "brivo_base")]
    pub base_url: String,
    #[serde(default = "brivo_token")]
    pub token_url: String,
    /// Send a Mobile Pass invitation when a Brivo user first gains access (default on).
    #[serde(default = "yes")]
    pub mobile_pass: bool,
    /// Client-side limit on API calls per second, shared by every worker of the process
    /// (none when absent). Set it at or under the provider's limit for this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_second: Option<f64>,
}

fn brivo_base() -> String {
    "https://api.brivo.com/v1/api".into()
}

fn brivo_token() -> String {
    "https://auth.brivo.com/oauth/token".into()
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TapkeyProviderConfig {
    pub owner_account_id: String,
    pub client_id_env: String,
    pub client_secret_env: String,
    #[serde(default = "tapkey_base")]
    pub base_url: String,
    #[serde(default = "tapkey_token")]
    pub token_url: String,
    /// Client-side limit on API calls per second, shared by every worker of the process
    /// (none when absent). Set it at or under the provider's limit for this account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls_per_second: Option<f64>,
}

fn tapkey_base() -> String {
    "https://my.tapkey.com/api/v1".into()
}

fn tapkey_token() -> String {
    "https://login.tapkey.com/connect/token".into()
}
