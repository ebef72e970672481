//! `portier.toml` (design §6.2): tenants, their source, providers, policies and mappings.
//!
//! The file names environment variables, never secrets; [`Secrets`] resolves them (the
//! environment for `portier serve`, Secrets Manager in Lambda).

use std::collections::BTreeMap;
use std::fmt;

use serde::de::IntoDeserializer as _;
use serde::{Deserialize, Serialize};

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

/// `[tenant.presence]`: which doors of which lock system check a customer in or out in Nexudus
/// (the presence tracking of the Nexudus Salto KS and Brivo integrations).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    /// The Nexudus `BusinessId` (location) the check-ins belong to (required by `POST checkins`).
    pub business_id: i64,
    /// Salto KS locks (lock ids of the site), read from the site's entries by polling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub salto_ks: Option<PresenceDoors>,
    /// Brivo doors (access-point ids), pushed by a Brivo event subscription.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub brivo: Option<PresenceDoors>,
}

/// The doors of one lock system that check in, check out, or toggle.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceDoors {
    #[serde(default)]
    pub check_in: Vec<String>,
    #[serde(default)]
    pub check_out: Vec<String>,
    /// Checks in a customer who is out, and out one who is in.
    #[serde(default)]
    pub toggle: Vec<String>,
    /// Salto KS: how often the entries are read (default 60 s, at least 30 s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_seconds: Option<u32>,
    /// Brivo: the token the event subscription's URL carries as `?token=` (Brivo documents
    /// no signature for its deliveries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_token_env: Option<String>,
}

/// What opening a door does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DoorAction {
    CheckIn,
    CheckOut,
    Toggle,
}

impl PresenceDoors {
    /// What opening `door` does; `None` for a door that was not chosen.
    pub fn action(&self, door: &str) -> Option<DoorAction> {
        let has = |list: &[String]| list.iter().any(|d| d.trim() == door.trim());
        if has(&self.check_in) {
            Some(DoorAction::CheckIn)
        } else if has(&self.check_out) {
            Some(DoorAction::CheckOut)
        } else if has(&self.toggle) {
            Some(DoorAction::Toggle)
        } else {
            None
        }
    }

    /// Seconds between two reads of the entries.
    pub fn poll_every(&self) -> u32 {
        self.poll_seconds.unwrap_or(60).max(30)
    }
}

impl PresenceConfig {
    pub fn doors(&self, kind: ProviderKind) -> Option<&PresenceDoors> {
        match kind {
            ProviderKind::Salto => self.salto_ks.as_ref(),
            ProviderKind::Brivo => self.brivo.as_ref(),
            ProviderKind::Tapkey => None,
        }
    }

    /// Problems as (field path, message).
    fn problems(&self, providers: &Providers, source: &SourceConfig) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !matches!(source, SourceConfig::Nexudus { .. }) {
            out.push((
                "presence".into(),
                "presence tracking checks people in at Nexudus; this tenant's source is not Nexudus".into(),
            ));
        }
        if self.business_id <= 0 {
            out.push((
                "presence.business_id".into(),
                "must be the Nexudus BusinessId (a positive number)".into(),
            ));
        }
        if self.salto_ks.is_none() && self.brivo.is_none() {
            out.push((
                "presence".into(),
                "names no doors: add [tenant.presence.salto_ks] or [tenant.presence.brivo]".into(),
            ));
        }
        for (kind, doors) in [(ProviderKind::Salto, &self.salto_ks), (ProviderKind::Brivo, &self.brivo)] {
            let Some(doors) = doors else { continue };
            let section = format!("presence.{}", kind.as_str());
            if !providers.has(kind) {
                out.push((
                    section.clone(),
                    format!("[tenant.providers.{}] is not configured", kind.as_str()),
                ));
            }
            let mut seen: BTreeMap<&str, &str> = BTreeMap::new();
            for (list, ids) in
                [("check_in", &doors.check_in), ("check_out", &doors.check_out), ("toggle", &doors.toggle)]
            {
                for id in ids {
                    if id.trim().is_empty() {
                        out.push((format!("{section}.{list}"), "holds an empty door id".into()));
                    } else if let Some(first) = seen.insert(id.trim(), list) {
                        out.push((
                            format!("{section}.{list}"),
                            format!("door {id} is also in {first}: a door does one thing"),
                        ));
                    }
                }
            }
            if seen.is_empty() {
                out.push((section.clone(), "lists no doors in check_in, check_out or toggle".into()));
            }
            match kind {
                ProviderKind::Brivo if doors.webhook_token_env.is_none() => out.push((
                    section.clone(),
                    "set webhook_token_env: Brivo's event subscription URL carries it as ?token=".into(),
                )),
                ProviderKind::Salto if doors.webhook_token_env.is_some() => out.push((
                    format!("{section}.webhook_token_env"),
                    "Salto KS sends no webhooks (its entries are polled); remove it".into(),
                )),
                ProviderKind::Brivo if doors.poll_seconds.is_some() => out.push((
                    format!("{section}.poll_seconds"),
                    "Brivo pushes its events; nothing is polled".into(),
                )),
                _ => {}
            }
        }
        out
    }
}

fn utc() -> String {
    "UTC".into()
}

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

/// A configuration the user must fix, with the place it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Parses and checks a `portier.toml`; errors name the line and field.
    pub fn parse_toml(text: &str) -> Result<Config, ConfigError> {
        Self::load(text, "portier.toml").map_err(|e| ConfigError(e.to_string()))
    }

    /// Parses and checks the configuration file `file`, reporting every mistake at once, each
    /// with the file, line and field it is at.
    pub fn load(text: &str, file: &str) -> Result<Config, ConfigProblems> {
        let fail = |problems| ConfigProblems { file: file.to_owned(), problems };
        let (doc, syntax) = toml::de::DeTable::parse_recoverable(text);
        if !syntax.is_empty() {
            // Past a syntax error the structure is a guess: report the syntax only.
            return Err(fail(syntax.iter().map(|e| Problem::of_toml(text, e, None)).collect()));
        }
        let lines = Lines(text);
        let doc = toml::de::DeValue::Table(doc.into_inner());
        let tenants: &[toml::Spanned<toml::de::DeValue<'_>>] = match child(&doc, "tenant") {
            Some(toml::de::DeValue::Array(a)) => a,
            _ => &[],
        };
        let mut problems = Vec::new();
        // Everything but the tenants, on its own, so a mistake there does not hide theirs.
        let mut rest = match &doc {
            toml::de::DeValue::Table(t) => t.clone(),
            _ => toml::de::DeTable::new(),
        };
        rest.remove("tenant");
        let mut config: Config = match Config::deserialize(
            toml::Spanned::new(0..0, toml::de::DeValue::Table(rest)).into_deserializer(),
        ) {
            Ok(c) => c,
            Err(e) => {
                problems.push(Problem::of_toml(text, &e, None));
                Config::default()
            }
        };
        let mut seen: BTreeMap<TenantId, usize> = BTreeMap::new();
        for raw in tenants {
            let t = match TenantConfig::deserialize(raw.clone().into_deserializer()) {
                Ok(t) => t,
                Err(e) => {
                    let id = child(raw.get_ref(), "id").and_then(|v| match v {
                        toml::de::DeValue::String(s) => Some(s.to_string()),
                        _ => None,
                    });
                    problems.push(Problem::of_toml(text, &e, id.as_deref()));
                    continue;
                }
            };
            let at = |path: &[&str]| locate(raw, path).map(|span| lines.of(span.start));
            if let Some(first) = seen.get(&t.id) {
                problems.push(Problem {
                    line: at(&["id"]),
                    tenant: Some(t.id.to_string()),
                    field: "id".into(),
                    message: format!("tenant {} is defined twice (first at line {first})", t.id),
                });
            } else {
                seen.insert(t.id.clone(), at(&["id"]).unwrap_or(0));
            }
            for (path, message) in t.problems() {
                let parts: Vec<&str> = path.split('.').collect();
                problems.push(Problem {
                    line: at(&parts).or_else(|| at(&parts[..parts.len().saturating_sub(1)])),
                    tenant: Some(t.id.to_string()),
                    field: path,
                    message,
                });
            }
            config.tenants.push(t);
        }
        if problems.is_empty() { Ok(config) } else { Err(fail(problems)) }
    }

    /// Every `…_env` of every tenant that names no set environment variable, each at its line.
    pub fn missing_env(text: &str, config: &Config) -> Vec<Problem> {
        let lines = Lines(text);
        let Ok(doc) = toml::de::DeTable::parse(text) else { return Vec::new() };
        let doc = toml::de::DeValue::Table(doc.into_inner());
        let mut out = Vec::new();
        if let Some(toml::de::DeValue::Array(tenants)) = child(&doc, "tenant") {
            for (raw, t) in tenants.iter().zip(&config.tenants) {
                let mut found = Vec::new();
                env_fields(raw, String::new(), &mut found);
                for (field, name, span) in found {
                    if std::env::var(&name).map_or(true, |v| v.is_empty()) {
                        out.push(Problem {
                            line: Some(lines.of(span.start)),
                            tenant: Some(t.id.to_string()),
                            field,
                            message: format!("environment variable {name} is not set"),
                        });
                    }
                }
            }
        }
        out
    }

    /// Parses the JSON form pushed to DynamoDB for Lambda.
    pub fn parse_json(text: &str) -> Result<Config, ConfigError> {
        let config: Config =
            serde_json::from_str(text).map_err(|e| ConfigError(format!("config document: {e}")))?;
        config.check()?;
        Ok(config)
    }

    fn check(&self) -> Result<(), ConfigError> {
        let mut seen = BTreeMap::new();
        for t in &self.tenants {
            if seen.insert(t.id.clone(), ()).is_some() {
                return Err(ConfigError(format!("tenant {} is defined twice", t.id)));
            }
            t.check()?;
        }
        Ok(())
    }

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
            let allowance =
                calls_per_minute.unwrap_or(crate::sources::nexudus::client::DEFAULT_CALLS_PER_MINUTE);
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

    /// The checks a tenant gets wherever its configuration comes from (file or table); the
    /// first problem, naming the tenant.
    pub fn check(&self) -> Result<(), ConfigError> {
        match self.problems().into_iter().next() {
            Some((field, message)) => Err(ConfigError(format!("tenant {}: {field}: {message}", self.id))),
            None => Ok(()),
        }
    }

    /// Every problem of the tenant, as (field path such as `mapping.2.targets`, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut problem = |field: &str, message: String| out.push((field.to_owned(), message));
        if self.id.as_str().is_empty()
            || !self.id.as_str().chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            problem("id", format!("tenant id {:?}: use letters, digits, '-' and '_' only", self.id.as_str()));
        }
        match &self.source {
            SourceConfig::Nexudus { webhook_secret_env, webhook_token_env, calls_per_minute, .. } => {
                if *calls_per_minute == Some(0) {
                    problem("source.calls_per_minute", "must be at least 1".into());
                }
                if webhook_secret_env.is_none() && webhook_token_env.is_none() {
                    problem(
                        "source",
                        "set source.webhook_secret_env or source.webhook_token_env, or webhooks cannot be verified".into(),
                    );
                }
            }
            SourceConfig::Kinnovis { location_id, .. } => {
                if location_id.trim().is_empty() {
                    problem("source.location_id", "is empty".into());
                }
            }
        }
        let p = &self.providers;
        for (section, rate) in [
            ("tapkey", p.tapkey.as_ref().and_then(|t| t.calls_per_second)),
            ("salto_ks", p.salto_ks.as_ref().and_then(|t| t.calls_per_second)),
            ("brivo", p.brivo.as_ref().and_then(|t| t.calls_per_second)),
        ] {
            if rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
                problem(&format!("providers.{section}.calls_per_second"), "must be a positive number".into());
            }
        }
        // Local dates (Kinnovis move-in/move-out) are converted with this zone.
        if let Err(e) = crate::localtime::Zone::parse(&self.timezone) {
            problem("timezone", e.to_string());
        }
        let mut items = BTreeMap::new();
        for (i, m) in self.mappings.iter().enumerate() {
            if let Some(first) = items.insert(m.item.clone(), i) {
                problem(
                    &format!("mapping.{i}.item"),
                    format!(
                        "item {} is mapped twice (also in [[tenant.mapping]] number {})",
                        m.item,
                        first + 1
                    ),
                );
            }
            if m.item.kind == crate::model::ItemKind::Visitors && m.item.id != "*" {
                problem(
                    &format!("mapping.{i}.item"),
                    format!("item {} must have id \"*\" (the tenant's visitor access)", m.item),
                );
            }
            for target in &m.targets {
                let kind = target.provider();
                if !self.providers.has(kind) {
                    problem(
                        &format!("mapping.{i}.targets"),
                        format!(
                            "item {} maps to {target}, but [tenant.providers.{}] is not configured",
                            m.item,
                            kind.as_str()
                        ),
                    );
                }
            }
        }
        if let Some(s) = &self.providers.salto_ks
            && s.refresh_token_env.is_none()
            && (s.username_env.is_none() || s.password_env.is_none())
        {
            problem(
                "providers.salto_ks",
                "[tenant.providers.salto_ks] needs username_env and password_env, or refresh_token_env"
                    .into(),
            );
        }
        if let Some(presence) = &self.presence {
            out.extend(presence.problems(&self.providers, &self.source));
        }
        out
    }

    pub fn mapping(&self, item: &ItemRef) -> Option<&Mapping> {
        self.mappings.iter().find(|m| &m.item == item)
    }
}

/// One mistake in a configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    /// 1-based line, when the place is known.
    pub line: Option<usize>,
    pub tenant: Option<String>,
    /// The field, as a dotted path inside the tenant (`source.username_env`, `mapping.2.targets`).
    pub field: String,
    pub message: String,
}

impl Problem {
    fn of_toml(text: &str, e: &toml::de::Error, tenant: Option<&str>) -> Problem {
        let line = e.span().map(|s| Lines(text).of(s.start));
        // The field is the key the error points at, when it points at one.
        let field = e
            .span()
            .and_then(|s| text.get(s))
            .filter(|k| !k.is_empty() && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or_default()
            .to_owned();
        Problem { line, tenant: tenant.map(str::to_owned), field, message: e.message().trim().to_owned() }
    }
}

/// Every mistake found in one configuration file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
pub struct ConfigProblems {
    pub file: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for ConfigProblems {
    /// One line per problem, `file:line: tenant t: field: message`, as compilers print them.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{}", self.file)?;
            if let Some(line) = p.line {
                write!(f, ":{line}")?;
            }
            write!(f, ":")?;
            if let Some(t) = &p.tenant {
                write!(f, " tenant {t}:")?;
            }
            if !p.field.is_empty() {
                write!(f, " {}:", p.field)?;
            }
            write!(f, " {}", p.message)?;
        }
        Ok(())
    }
}

/// Byte offsets to 1-based line numbers.
struct Lines<'a>(&'a str);

impl Lines<'_> {
    fn of(&self, offset: usize) -> usize {
        self.0.as_bytes().iter().take(offset).filter(|b| **b == b'\n').count() + 1
    }
}

fn child<'a, 'i>(v: &'a toml::de::DeValue<'i>, key: &str) -> Option<&'a toml::de::DeValue<'i>> {
    match v {
        toml::de::DeValue::Table(t) => t.iter().find(|(k, _)| k.get_ref() == key).map(|(_, v)| v.get_ref()),
        _ => None,
    }
}

/// The span of the value at `path` (table keys, or array indexes as numbers).
fn locate(v: &toml::Spanned<toml::de::DeValue<'_>>, path: &[&str]) -> Option<std::ops::Range<usize>> {
    let Some((first, rest)) = path.split_first() else { return Some(v.span()) };
    let next = match v.get_ref() {
        toml::de::DeValue::Table(t) => t.iter().find(|(k, _)| k.get_ref() == first).map(|(_, v)| v),
        toml::de::DeValue::Array(a) => first.parse::<usize>().ok().and_then(|i| a.get(i)),
        _ => None,
    }?;
    locate(next, rest)
}

/// Every `…_env` string under `v`: (field path, variable name, span).
fn env_fields(
    v: &toml::Spanned<toml::de::DeValue<'_>>,
    path: String,
    out: &mut Vec<(String, String, std::ops::Range<usize>)>,
) {
    if let toml::de::DeValue::Table(t) = v.get_ref() {
        for (k, child) in t.iter() {
            let field =
                if path.is_empty() { k.get_ref().to_string() } else { format!("{path}.{}", k.get_ref()) };
            match child.get_ref() {
                toml::de::DeValue::String(name) if k.get_ref().ends_with("_env") => {
                    out.push((field, name.to_string(), child.span()));
                }
                _ => env_fields(child, field, out),
            }
        }
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
