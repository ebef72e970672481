//! `[tenant.presence]`: the doors that check people in and out at Nexudus.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Providers, SourceConfig};
use crate::model::ProviderKind;

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
    pub(super) fn problems(&self, providers: &Providers, source: &SourceConfig) -> Vec<(String, String)> {
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
