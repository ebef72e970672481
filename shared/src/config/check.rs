//! The checks every tenant gets, wherever its configuration comes from (file or table).

use std::collections::BTreeMap;

use super::{ConfigError, SourceConfig, TenantConfig};

impl TenantConfig {
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
        self.source_problems(&mut problem);
        self.rate_problems(&mut problem);
        // Local dates (Kinnovis move-in/move-out) are converted with this zone.
        if let Err(e) = crate::localtime::Zone::parse(&self.timezone) {
            problem("timezone", e.to_string());
        }
        self.mapping_problems(&mut problem);
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

    /// The id and the source.
    fn source_problems(&self, problem: &mut impl FnMut(&str, String)) {
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
    }

    /// Rate limits that are not a positive number.
    fn rate_problems(&self, problem: &mut impl FnMut(&str, String)) {
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
    }

    /// Items mapped twice, the visitors item, and targets of lock systems not configured.
    fn mapping_problems(&self, problem: &mut impl FnMut(&str, String)) {
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
    }
}
