//! What a mapping may name, read live: the source's items and each configured lock system's
//! locks or groups, with their names. A system that fails or does not answer in
//! [`LISTING_TIMEOUT`] shows its error and leaves free entry; it never fails the page.

use std::future::Future;
use std::time::Duration;

use serde::Serialize;

use super::{Console, ConsoleError};
use crate::config::SourceConfig;
use crate::model::{ItemKind, ProviderKind, Target, TenantId};
use crate::sources::SourceItem;
use crate::tenants::TenantRuntime;

/// How long the console waits for one system's listing before it shows free entry instead
/// (see [`Console::with_listing_timeout`]). Listings go through each client's limiter and
/// retries, so a throttled one may take a while.
pub const LISTING_TIMEOUT: Duration = Duration::from_secs(20);

/// One lock or group a mapping may name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Choice {
    pub id: String,
    pub name: String,
    /// Whether access can be given through it now (a Tapkey lock bound and active; groups
    /// always), so a drop-down can say so.
    pub usable: bool,
}

impl Choice {
    /// A group (always usable), shown by its name, or by its id when it has none.
    fn group(id: String, name: Option<String>) -> Self {
        let name = name.filter(|n| !n.trim().is_empty()).unwrap_or_else(|| id.clone());
        Self { id, name, usable: true }
    }
}

/// One configured lock system's choices, or why there are none.
#[derive(Debug, Clone, Serialize)]
pub struct LockSystemChoices {
    pub provider: ProviderKind,
    pub choices: Vec<Choice>,
    /// The listing's failure or timeout; the form then takes the id as typed.
    pub error: Option<String>,
}

impl LockSystemChoices {
    /// The name of `id` among the choices (ids compared without case: Tapkey's are UUIDs).
    pub fn name_of(&self, id: &str) -> Option<&str> {
        self.choices.iter().find(|c| c.id.eq_ignore_ascii_case(id)).map(|c| c.name.as_str())
    }
}

/// The source's side of the catalog.
#[derive(Debug, Clone, Serialize)]
pub struct SourceChoices {
    pub source: &'static str,
    /// Item kinds this tenant's source has.
    pub kinds: Vec<ItemKind>,
    /// Items the source listed, with their names.
    pub items: Vec<SourceItem>,
    pub error: Option<String>,
}

/// `GET /api/v1/tenants/{tenant}/catalog`.
#[derive(Debug, Clone, Serialize)]
pub struct Catalog {
    pub tenant: TenantId,
    pub source: SourceChoices,
    /// Every configured lock system, in the order Tapkey, Salto KS, Brivo.
    pub lock_systems: Vec<LockSystemChoices>,
}

impl Catalog {
    pub fn lock_system(&self, kind: ProviderKind) -> Option<&LockSystemChoices> {
        self.lock_systems.iter().find(|l| l.provider == kind)
    }
}

/// Names of targets by id, for showing beside them.
#[derive(Debug, Clone, Default)]
pub struct TargetNames(pub(super) Vec<LockSystemChoices>);

impl TargetNames {
    pub fn of(&self, target: &Target) -> Option<&str> {
        let (kind, id) = match target {
            Target::TapkeyLock(id) => (ProviderKind::Tapkey, id.as_str()),
            Target::SaltoGroup(id) => (ProviderKind::Salto, id.as_str()),
            Target::BrivoGroup(id) => (ProviderKind::Brivo, id.as_str()),
        };
        self.0.iter().find(|l| l.provider == kind)?.name_of(id)
    }
}

pub(super) const ALL_PROVIDERS: [ProviderKind; 3] =
    [ProviderKind::Tapkey, ProviderKind::Salto, ProviderKind::Brivo];

/// The item kinds a source has (design §6.2).
pub(super) fn item_kinds(source: &SourceConfig) -> &'static [ItemKind] {
    match source {
        SourceConfig::Nexudus { .. } => {
            &[ItemKind::Pass, ItemKind::Resource, ItemKind::Desk, ItemKind::Office, ItemKind::Visitors]
        }
        SourceConfig::Kinnovis { .. } => &[ItemKind::Unit],
    }
}

/// `list`, or its failure (or silence past `wait`) as text naming `system`.
async fn within<T, E: std::fmt::Display>(
    (system, what): (&str, &str),
    wait: Duration,
    list: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(wait, list).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{system} did not list its {what}: {e}")),
        Err(_) => Err(format!("{system} did not answer within {} s", wait.as_secs_f32())),
    }
}

/// The choices of one lock system of the tenant; `None` when it is not configured.
async fn lock_system(t: &TenantRuntime, kind: ProviderKind, wait: Duration) -> Option<LockSystemChoices> {
    let listed: Result<Vec<Choice>, String> = match kind {
        ProviderKind::Tapkey => {
            let client = t.tapkey()?.client();
            within((kind.name(), "locks"), wait, client.bound_locks()).await.map(|locks| {
                locks
                    .iter()
                    .map(|l| Choice {
                        id: l.id.clone(),
                        name: l.label().to_owned(),
                        usable: l.active != Some(false) && l.unbind_date.is_none(),
                    })
                    .collect()
            })
        }
        ProviderKind::Salto => {
            let client = t.salto()?.client();
            within((kind.name(), "access groups"), wait, client.access_groups())
                .await
                .map(|groups| groups.into_iter().map(|g| Choice::group(g.id, g.customer_reference)).collect())
        }
        ProviderKind::Brivo => {
            let client = t.brivo()?.client();
            within((kind.name(), "groups"), wait, client.groups())
                .await
                .map(|groups| groups.into_iter().map(|g| Choice::group(g.id(), g.name)).collect())
        }
    };
    Some(match listed {
        Ok(choices) => LockSystemChoices { provider: kind, choices, error: None },
        Err(error) => LockSystemChoices { provider: kind, choices: Vec::new(), error: Some(error) },
    })
}

/// Every configured lock system's choices, listed at the same time.
pub(super) async fn lock_systems(t: &TenantRuntime, wait: Duration) -> Vec<LockSystemChoices> {
    let (tapkey, salto, brivo) = tokio::join!(
        lock_system(t, ProviderKind::Tapkey, wait),
        lock_system(t, ProviderKind::Salto, wait),
        lock_system(t, ProviderKind::Brivo, wait)
    );
    [tapkey, salto, brivo].into_iter().flatten().collect()
}

impl Console {
    /// The source's items and every lock system's locks or groups, read live and at once.
    pub async fn catalog(&self, tenant: &str) -> Result<Catalog, ConsoleError> {
        let t = self.tenant(tenant).await?;
        let (source, wait) = (t.source.kind().as_str(), self.listing_timeout);
        let (items, lock_systems) =
            tokio::join!(within((source, "items"), wait, t.source.items()), lock_systems(&t, wait));
        let (items, error) = match items {
            Ok(items) => (items, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        Ok(Catalog {
            tenant: t.config.id.clone(),
            source: SourceChoices { source, kinds: item_kinds(&t.config.source).to_vec(), items, error },
            lock_systems,
        })
    }

    /// Names of the tenant's lock-system targets, for showing beside their ids. Empty for a
    /// lock system that does not answer: names are a help, never a reason for a page to fail.
    pub async fn target_names(&self, tenant: &TenantId) -> TargetNames {
        match self.tenants.get(tenant).await {
            Ok(Some(t)) => TargetNames(lock_systems(&t, self.listing_timeout).await),
            _ => TargetNames::default(),
        }
    }

    /// The tenant's Tapkey bound locks for the save checks: `Ok(None)` without Tapkey.
    pub(super) async fn tapkey_choices(&self, t: &TenantRuntime) -> Result<Option<Vec<Choice>>, String> {
        match lock_system(t, ProviderKind::Tapkey, self.listing_timeout).await {
            None => Ok(None),
            Some(LockSystemChoices { error: Some(e), .. }) => Err(e),
            Some(l) => Ok(Some(l.choices)),
        }
    }
}
