//! `portier.toml` (design §6.2): tenants, their source, providers, policies and mappings.
//!
//! The file names environment variables, never secrets; [`Secrets`] resolves them (the
//! environment for `portier serve`, Secrets Manager in Lambda).

mod check;
mod load;
mod presence;
mod providers;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

pub use load::{ConfigProblems, Problem};
pub use presence::{DoorAction, PresenceConfig, PresenceDoors};
pub use providers::{BrivoProviderConfig, SaltoProviderConfig, TapkeyProviderConfig};

use crate::model::{ItemRef, Mapping, ProviderKind, TenantId};

/// The whole configuration document.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The operator console and `/api/v1` (off when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<AdminConfig>,
    #[serde(rename = "tenant", default)]
    pub tenants: Vec<TenantConfig>,
}

/// `[admin]`: where the console's admin token comes from (an environment variable locally, a
/// key of the deployment's secret on AWS).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    pub admin_token_env: String,
}

/// One location.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    pub id: TenantId,
    #[serde(default = "utc")]
    pub timezone: String,
    pub source: SourceConfig,
    #[serde(default)]
    pub policy: Policy,
    #[serde(default)]
    pub providers: Providers,
    #[serde(rename = "mapping", default)]
    pub mappings: Vec<Mapping>,
    /// `[tenant.presence]`: doors whose openings check people in or out at Nexudus.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub presence: Option<PresenceConfig>,
}

fn utc() -> String {
    "UTC".into()
}

/// Nexudus's documented allowance for all calls of an account: `calls_per_minute`'s default.
pub const NEXUDUS_CALLS_PER_MINUTE: u32 = 120;

/// Where the tenant's people and their entitlements come from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum SourceConfig {
    Nexudus {
        #[serde(default = "nexudus_base")]
        base_url: String,
        username_env: String,
        password_env: String,
        /// HMAC secret of signed webhooks (`X-Nexudus-Hook-Signature`).
        #[serde(default)]
        webhook_secret_env: Option<String>,
        /// Per-tenant token expected as `?token=` on the webhook URL.
        #[serde(default)]
        webhook_token_env: Option<String>,
        /// The account's API allowance; Portier stays under it (default 120, Nexudus's limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        calls_per_minute: Option<u32>,
    },
    /// Kinnovis (self-storage): Portier's contract in `reference/source-systems.md` §6.
    Kinnovis {
        /// The export API's base (`{base_url}/locations/{location_id}/bookings`).
        base_url: String,
        /// The Kinnovis location this tenant is; webhooks naming another location are refused.
        location_id: String,
        /// Bearer API key of the export API.
        api_key_env: String,
        /// Standard Webhooks signing secret (`whsec_…`).
        webhook_secret_env: String,
    },
}

impl SourceConfig {
    pub fn kind(&self) -> crate::model::SourceKind {
        match self {
            SourceConfig::Nexudus { .. } => crate::model::SourceKind::Nexudus,
            SourceConfig::Kinnovis { .. } => crate::model::SourceKind::Kinnovis,
        }
    }
}

fn nexudus_base() -> String {
    "https://spaces.nexudus.com/api".into()
}

/// Per-tenant policies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default = "fifteen")]
    pub booking_lead_minutes: u32,
    #[serde(default = "fifteen")]
    pub booking_lag_minutes: u32,
    #[serde(default)]
    pub no_access: NoAccess,
    #[serde(default)]
    pub adoption: Adoption,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            booking_lead_minutes: 15,
            booking_lag_minutes: 15,
            no_access: NoAccess::default(),
            adoption: Adoption::default(),
        }
    }
}

fn fifteen() -> u32 {
    15
}

/// What happens to a provider user when nothing grants access any more.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoAccess {
    #[default]
    Keep,
    Suspend,
    Delete,
}

/// Whether access that existed before Portier was connected is managed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Adoption {
    #[default]
    Gradual,
    CleanSlate,
}

/// Lock systems configured for the tenant.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Providers {
    #[serde(default)]
    pub tapkey: Option<TapkeyProviderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salto_ks: Option<SaltoProviderConfig>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brivo: Option<BrivoProviderConfig>,
}

impl Providers {
    /// Whether the provider of `kind` is configured.
    pub fn has(&self, kind: ProviderKind) -> bool {
        match kind {
            ProviderKind::Tapkey => self.tapkey.is_some(),
            ProviderKind::Salto => self.salto_ks.is_some(),
            ProviderKind::Brivo => self.brivo.is_some(),
        }
    }
}

/// A configuration the user must fix, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);
impl Config {
    pub fn tenant(&self, id: &TenantId) -> Option<&TenantConfig> {
        self.tenants.iter().find(|t| &t.id == id)
    }
}

impl TenantConfig {
    /// Divides the tenant's rate limits among `shares` processes that each keep their own
    /// limiter (Lambda containers): each gets `1/shares` of every provider's `calls_per_second`
    /// and of the Nexudus allowance (default 120/min, at least 1), so together they stay within
    /// the account's limit. Providers without a limit stay unlimited.
    pub fn share_rate_limits(&mut self, shares: u32) {
        if shares <= 1 {
            return;
        }
        let n = f64::from(shares);
        if let SourceConfig::Nexudus { calls_per_minute, .. } = &mut self.source {
            let allowance = calls_per_minute.unwrap_or(NEXUDUS_CALLS_PER_MINUTE);
            *calls_per_minute = Some((allowance / shares).max(1));
        }
        let p = &mut self.providers;
        for rate in [
            p.tapkey.as_mut().map(|t| &mut t.calls_per_second),
            p.salto_ks.as_mut().map(|s| &mut s.calls_per_second),
            p.brivo.as_mut().map(|b| &mut b.calls_per_second),
        ]
        .into_iter()
        .flatten()
        {
            *rate = rate.map(|r| r / n);
        }
    }

    pub fn mapping(&self, item: &ItemRef) -> Option<&Mapping> {
        self.mappings.iter().find(|m| &m.item == item)
    }
}

pub use crate::secrets::{ExposeSecret, Secret};

/// Resolves the names in the config file to secret values.
pub trait Secrets: Send + Sync {
    fn get(&self, name: &str) -> Result<Secret, ConfigError>;
}

/// Secrets from environment variables (`portier serve`, local Lambda runs).
#[derive(Debug, Default, Clone)]
pub struct EnvSecrets;

impl Secrets for EnvSecrets {
    fn get(&self, name: &str) -> Result<Secret, ConfigError> {
        match std::env::var(name) {
            Ok(v) if !v.is_empty() => Ok(Secret::from(v)),
            _ => Err(ConfigError(format!("environment variable {name} is not set"))),
        }
    }
}

/// Secrets from a fixed table (tests, the demo).
#[derive(Debug, Default, Clone)]
pub struct StaticSecrets(pub BTreeMap<String, String>);

impl Secrets for StaticSecrets {
    fn get(&self, name: &str) -> Result<Secret, ConfigError> {
        self.0
            .get(name)
            .map(|v| Secret::from(v.as_str()))
            .ok_or_else(|| ConfigError(format!("secret {name} is not set")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Target;

    const EXAMPLE: &str = r#"
[[tenant]]
id = "space-berlin"
timezone = "Europe/Berlin"
source = { kind = "nexudus", base_url = "https://spaces.nexudus.com/api", username_env = "NEXUDUS_USER", password_env = "NEXUDUS_PASSWORD", webhook_secret_env = "NEXUDUS_HOOK_SECRET", webhook_token_env = "NEXUDUS_HOOK_TOKEN" }
policy = { booking_lead_minutes = 15, booking_lag_minutes = 15, no_access = "suspend", adoption = "gradual" }

[tenant.providers.tapkey]
owner_account_id = "owner-1"
client_id_env = "TAPKEY_CLIENT_ID"
client_secret_env = "TAPKEY_CLIENT_SECRET"

[[tenant.mapping]]
item = { kind = "pass", id = "1001" }
targets = [ { tapkey_lock = "ea610634-4fc0-4084-85b2-bebf52c3595f" } ]
"#;

    const GROUPS: &str = r#"
[tenant.providers.salto_ks]
site_id = "6b2a9f0e-0000-4000-8000-000000000001"
client_id_env = "SALTO_CLIENT_ID"
client_secret_env = "SALTO_CLIENT_SECRET"
username_env = "SALTO_USERNAME"
password_env = "SALTO_PASSWORD"

[tenant.providers.brivo]
api_key_env = "BRIVO_API_KEY"
client_id_env = "BRIVO_CLIENT_ID"
client_secret_env = "BRIVO_CLIENT_SECRET"
username_env = "BRIVO_ADMIN_ID"
password_env = "BRIVO_PASSWORD"

[[tenant.mapping]]
item = { kind = "pass", id = "1002" }
targets = [ { salto_group = "ag-1" }, { brivo_group = "42" } ]
"#;

    #[test]
    fn rate_limits_are_divided_among_shares_and_unlimited_stays_unlimited() {
        let c = Config::parse_toml(&format!("{EXAMPLE}{GROUPS}")).expect("parses");
        let mut t = c.tenants[0].clone();
        t.providers.salto_ks.as_mut().expect("salto").calls_per_second = Some(10.0);
        t.providers.brivo.as_mut().expect("brivo").calls_per_second = Some(20.0);
        let unchanged = t.clone();
        t.share_rate_limits(1);
        assert_eq!(t, unchanged, "one share changes nothing");

        t.share_rate_limits(3);
        let SourceConfig::Nexudus { calls_per_minute, .. } = &t.source else { panic!("nexudus") };
        assert_eq!(*calls_per_minute, Some(40), "the default 120/min, a third each");
        assert_eq!(t.providers.salto_ks.as_ref().and_then(|s| s.calls_per_second), Some(10.0 / 3.0));
        assert_eq!(t.providers.brivo.as_ref().and_then(|b| b.calls_per_second), Some(20.0 / 3.0));
        assert_eq!(t.providers.tapkey.as_ref().and_then(|k| k.calls_per_second), None, "no limit to share");

        t.share_rate_limits(1000);
        let SourceConfig::Nexudus { calls_per_minute, .. } = &t.source else { panic!("nexudus") };
        assert_eq!(*calls_per_minute, Some(1), "never below one call a minute");
        assert!(t.check().is_ok(), "still a valid config");
    }

    #[test]
    fn salto_and_brivo_sections_parse_with_defaults() {
        let c = Config::parse_toml(&format!("{EXAMPLE}{GROUPS}")).expect("parses");
        let t = &c.tenants[0];
        let salto = t.providers.salto_ks.as_ref().expect("salto");
        assert_eq!(salto.base_url, "https://user.my-clay.com");
        assert_eq!(salto.token_url, "https://identity.eu.my-clay.com/connect/token");
        let brivo = t.providers.brivo.as_ref().expect("brivo");
        assert_eq!(brivo.base_url, "https://api.brivo.com/v1/api");
        assert_eq!(brivo.token_url, "https://auth.brivo.com/oauth/token");
        assert!(brivo.mobile_pass, "on by default");
        assert_eq!(
            t.mappings[1].targets,
            vec![Target::SaltoGroup("ag-1".into()), Target::BrivoGroup("42".into())]
        );
        let json = serde_json::to_string(&c).expect("serialises");
        assert_eq!(Config::parse_json(&json), Ok(c));

        let off = format!(
            "{EXAMPLE}{}",
            GROUPS.replace("BRIVO_PASSWORD\"", "BRIVO_PASSWORD\"\nmobile_pass = false")
        );
        let c = Config::parse_toml(&off).expect("parses");
        assert_eq!(c.tenants[0].providers.brivo.as_ref().map(|b| b.mobile_pass), Some(false));

        let no_login = GROUPS.replace("username_env = \"SALTO_USERNAME\"\n", "");
        let err = Config::parse_toml(&format!("{EXAMPLE}{no_login}")).expect_err("rejected").0;
        assert!(err.contains("refresh_token_env"), "{err}");
        let by_refresh =
            no_login.replace("password_env = \"SALTO_PASSWORD\"", "refresh_token_env = \"SALTO_REFRESH\"");
        assert!(Config::parse_toml(&format!("{EXAMPLE}{by_refresh}")).is_ok());

        let unconfigured = GROUPS.split("[[tenant.mapping]]").nth(1).unwrap_or_default();
        let err = Config::parse_toml(&format!("{EXAMPLE}[[tenant.mapping]]{unconfigured}"))
            .expect_err("rejected")
            .0;
        assert!(err.contains("[tenant.providers.salto_ks] is not configured"), "{err}");
    }

    #[test]
    fn the_design_example_parses() {
        let c = Config::parse_toml(EXAMPLE).expect("parses");
        let t = &c.tenants[0];
        assert_eq!(t.id.as_str(), "space-berlin");
        assert_eq!(t.policy.no_access, NoAccess::Suspend);
        assert_eq!(
            t.providers.tapkey.as_ref().map(|p| p.base_url.as_str()),
            Some("https://my.tapkey.com/api/v1")
        );
        assert_eq!(
            t.mappings[0].targets,
            vec![Target::TapkeyLock("ea610634-4fc0-4084-85b2-bebf52c3595f".into())]
        );
        // The JSON form (pushed to DynamoDB) round-trips.
        let json = serde_json::to_string(&c).expect("serialises");
        assert_eq!(Config::parse_json(&json), Ok(c));
    }

    #[test]
    fn errors_name_the_place() {
        let typo = EXAMPLE.replace("owner_account_id", "owner_acount_id");
        let err = Config::parse_toml(&typo).expect_err("typo rejected").0;
        assert!(err.contains("owner_acount_id") && err.starts_with("portier.toml:9:"), "{err}");

        let unverifiable = EXAMPLE.replace(
            ", webhook_secret_env = \"NEXUDUS_HOOK_SECRET\", webhook_token_env = \"NEXUDUS_HOOK_TOKEN\"",
            "",
        );
        assert!(Config::parse_toml(&unverifiable).expect_err("rejected").0.contains("cannot be verified"));

        let no_provider = EXAMPLE.replace("[tenant.providers.tapkey]\nowner_account_id = \"owner-1\"\nclient_id_env = \"TAPKEY_CLIENT_ID\"\nclient_secret_env = \"TAPKEY_CLIENT_SECRET\"\n", "");
        assert!(Config::parse_toml(&no_provider).expect_err("rejected").0.contains("not configured"));

        let twice = format!("{EXAMPLE}\n{}", &EXAMPLE[EXAMPLE.find("[[tenant]]").unwrap_or(0)..]);
        assert!(Config::parse_toml(&twice).expect_err("rejected").0.contains("defined twice"));
    }

    const PRESENCE: &str = r#"
[tenant.presence]
business_id = 101

[tenant.presence.salto_ks]
check_in = ["lock-entrance"]
check_out = ["lock-exit"]
poll_seconds = 120

[tenant.presence.brivo]
check_in = ["408023598"]
toggle = ["408023599"]
webhook_token_env = "BRIVO_PRESENCE_TOKEN"
"#;

    #[test]
    fn presence_doors_parse_and_mistakes_name_file_line_and_field() {
        let text = format!("{EXAMPLE}{GROUPS}{PRESENCE}");
        let c = Config::parse_toml(&text).expect("parses");
        let p = c.tenants[0].presence.as_ref().expect("presence");
        let salto = p.doors(ProviderKind::Salto).expect("salto");
        assert_eq!(salto.action("lock-entrance"), Some(DoorAction::CheckIn));
        assert_eq!(salto.action("lock-exit"), Some(DoorAction::CheckOut));
        assert_eq!(salto.action("lock-other"), None);
        assert_eq!(salto.poll_every(), 120);
        assert_eq!(
            p.doors(ProviderKind::Brivo).and_then(|b| b.action("408023599")),
            Some(DoorAction::Toggle)
        );
        assert_eq!(Config::parse_json(&serde_json::to_string(&c).expect("json")), Ok(c));

        let twice = text.replace("toggle = [\"408023599\"]", "toggle = [\"408023598\"]");
        let err = Config::load(&twice, "portier.toml").expect_err("rejected").to_string();
        let line = twice.lines().position(|l| l.starts_with("toggle")).map(|i| i + 1).unwrap_or(0);
        assert!(
            err.contains(&format!("portier.toml:{line}: tenant space-berlin: presence.brivo.toggle: door 408023598 is also in check_in")),
            "{err}"
        );
        let no_token = text.replace("webhook_token_env = \"BRIVO_PRESENCE_TOKEN\"\n", "");
        let err = Config::parse_toml(&no_token).expect_err("rejected").0;
        assert!(err.contains("presence.brivo: set webhook_token_env"), "{err}");
        let no_brivo =
            format!("{EXAMPLE}{}", PRESENCE.replace("[tenant.presence.salto_ks]", "[tenant.presence.x]"));
        assert!(Config::parse_toml(&no_brivo).is_err());
        let without_provider = format!("{EXAMPLE}{PRESENCE}");
        let err = Config::parse_toml(&without_provider).expect_err("rejected").0;
        assert!(err.contains("presence.salto_ks: [tenant.providers.salto_ks] is not configured"), "{err}");
        let bad_business = text.replace("business_id = 101", "business_id = 0");
        assert!(Config::parse_toml(&bad_business).expect_err("rejected").0.contains("presence.business_id"));
    }

    const KINNOVIS: &str = r#"
[[tenant]]
id = "storage-vienna"
timezone = "Europe/Vienna"
source = { kind = "kinnovis", base_url = "https://kinnovis.example/api", location_id = "loc-vienna-1", api_key_env = "KINNOVIS_API_KEY", webhook_secret_env = "KINNOVIS_WEBHOOK_SECRET" }
policy = { no_access = "keep", adoption = "gradual" }

[tenant.providers.tapkey]
owner_account_id = "owner-1"
client_id_env = "TAPKEY_CLIENT_ID"
client_secret_env = "TAPKEY_CLIENT_SECRET"

[[tenant.mapping]]
item = { kind = "unit", id = "A-017" }
targets = [ { tapkey_lock = "ea610634-4fc0-4084-85b2-bebf52c3595f" } ]
"#;

    #[test]
    fn the_kinnovis_example_parses_and_checks_its_zone() {
        let c = Config::parse_toml(KINNOVIS).expect("parses");
        let t = &c.tenants[0];
        assert_eq!(t.source.kind(), crate::model::SourceKind::Kinnovis);
        assert_eq!(t.policy.adoption, Adoption::Gradual);
        assert_eq!(t.mappings[0].item, ItemRef { kind: crate::model::ItemKind::Unit, id: "A-017".into() });

        let json = serde_json::to_string(&c).expect("serialises");
        assert_eq!(Config::parse_json(&json), Ok(c));

        let bad_zone = KINNOVIS.replace("Europe/Vienna", "Europe/Wien");
        let err = Config::parse_toml(&bad_zone).expect_err("rejected").0;
        assert!(err.contains("storage-vienna") && err.contains("Europe/Wien"), "{err}");
        let no_location = KINNOVIS.replace("\"loc-vienna-1\"", "\" \"");
        assert!(Config::parse_toml(&no_location).expect_err("rejected").0.contains("location_id"));
    }

    #[test]
    fn nexudus_item_kinds_parse_and_visitors_take_only_the_star() {
        let with = |item: &str| {
            format!("{EXAMPLE}[[tenant.mapping]]\nitem = {item}\ntargets = [ {{ tapkey_lock = \"L9\" }} ]\n")
        };
        for kind in ["resource", "desk", "office"] {
            let c = Config::parse_toml(&with(&format!("{{ kind = \"{kind}\", id = \"12\" }}"))).expect(kind);
            assert_eq!(c.tenants[0].mappings.last().map(|m| m.item.kind.as_str()), Some(kind));
        }
        assert!(Config::parse_toml(&with(r#"{ kind = "visitors", id = "*" }"#)).is_ok());
        let err = Config::parse_toml(&with(r#"{ kind = "visitors", id = "lobby" }"#)).expect_err("not *");
        assert!(err.0.contains("visitors#lobby") && err.0.contains("\"*\""), "{}", err.0);
    }

    #[test]
    fn the_admin_table_names_the_token_variable_and_round_trips() {
        let c = Config::parse_toml(&format!("[admin]\nadmin_token_env = \"PORTIER_ADMIN_TOKEN\"\n{EXAMPLE}"))
            .expect("parses");
        assert_eq!(c.admin, Some(AdminConfig { admin_token_env: "PORTIER_ADMIN_TOKEN".into() }));
        let json = serde_json::to_string(&c).expect("serialises");
        assert_eq!(Config::parse_json(&json), Ok(c));
        assert_eq!(Config::parse_toml(EXAMPLE).expect("parses").admin, None, "off when absent");
        let typo = Config::parse_toml(&format!("[admin]\ntoken_env = \"X\"\n{EXAMPLE}"));
        assert!(typo.expect_err("rejected").0.contains("token_env"));
    }

    #[test]
    fn secrets_never_print() {
        assert_eq!(format!("{:?}", Secret::from("hunter2")), "SecretBox<str>([REDACTED])");
    }
}
