//! The mapping reads and the one save path the page and the API share.

use serde::Serialize;

use super::catalog::{self, Catalog, LockSystemChoices, TargetNames, item_kinds};
use super::{Console, ConsoleError};
use crate::model::{ItemKind, ItemRef, Mapping, ProviderKind, Target, TenantId};
use crate::queue::WorkMessage;
use crate::sources::SourceItem;
use crate::tenants::TenantRuntime;

/// One mapped target, with its name at the lock system when it listed one.
#[derive(Debug, Clone, Serialize)]
pub struct TargetLine {
    pub target: Target,
    pub provider: ProviderKind,
    pub name: Option<String>,
}

/// One source item's mapping as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MappingLine {
    pub item: ItemRef,
    pub targets: Vec<TargetLine>,
    /// `config` (portier.toml) or `stored` (`portier mapping import` or the console, which win).
    pub origin: &'static str,
}

/// A tenant's mappings, and the Tapkey locks that could be mapped.
#[derive(Debug, Clone, Serialize)]
pub struct MappingsView {
    pub tenant: TenantId,
    pub mappings: Vec<MappingLine>,
    /// Tapkey bound locks; empty when the tenant has no Tapkey or it did not answer.
    pub tapkey_locks: Vec<LockChoice>,
    /// Why the lock names are missing, when they are.
    pub warning: Option<String>,
}

/// A Tapkey bound lock as the mapping form offers it.
#[derive(Debug, Clone, Serialize)]
pub struct LockChoice {
    pub id: String,
    pub title: String,
    /// Bound and active: grants can be made (an unusable lock is refused when saving).
    pub usable: bool,
}

/// `GET …/mappings/options`: the [`Catalog`] in the shape the API first had.
#[derive(Debug, Clone, Serialize)]
pub struct MappingOptions {
    pub tenant: TenantId,
    /// Item kinds this tenant's source has.
    pub kinds: Vec<ItemKind>,
    /// Items the source listed, with their names.
    pub items: Vec<SourceItem>,
    pub tapkey_locks: Vec<LockChoice>,
    /// Lock systems configured for the tenant.
    pub providers: Vec<ProviderKind>,
    /// What could not be listed.
    pub warnings: Vec<String>,
}

/// What saving a mapping did.
#[derive(Debug, Clone, Serialize)]
pub struct SavedMapping {
    pub mapping: Mapping,
    /// People holding the item, queued for a reconcile so the change reaches their doors now.
    pub queued: usize,
}

/// Tapkey's choices as the older fields show them, and its listing error.
fn tapkey_locks(systems: &[LockSystemChoices]) -> (Vec<LockChoice>, Option<String>) {
    match systems.iter().find(|l| l.provider == ProviderKind::Tapkey) {
        None => (Vec::new(), None),
        Some(l) => (
            l.choices
                .iter()
                .map(|c| LockChoice { id: c.id.clone(), title: c.name.clone(), usable: c.usable })
                .collect(),
            l.error.clone(),
        ),
    }
}

impl From<Catalog> for MappingOptions {
    fn from(c: Catalog) -> Self {
        let (tapkey_locks, _) = tapkey_locks(&c.lock_systems);
        let warnings = c.source.error.iter().chain(c.lock_systems.iter().filter_map(|l| l.error.as_ref()));
        MappingOptions {
            tenant: c.tenant,
            kinds: c.source.kinds,
            items: c.source.items,
            tapkey_locks,
            providers: c.lock_systems.iter().map(|l| l.provider).collect(),
            warnings: warnings.cloned().collect(),
        }
    }
}

impl Console {
    /// The tenant's mappings (the file's, with imported ones on top, as the worker plans).
    pub async fn mappings(&self, tenant: &str) -> Result<MappingsView, ConsoleError> {
        let t = self.tenant(tenant).await?;
        let systems = catalog::lock_systems(&t, self.listing_timeout).await;
        self.mappings_named(&t, systems).await
    }

    /// [`Self::mappings`] with lock systems already listed (the page lists them once).
    pub(super) async fn mappings_named(
        &self,
        t: &TenantRuntime,
        systems: Vec<LockSystemChoices>,
    ) -> Result<MappingsView, ConsoleError> {
        let records = &self.rt.records;
        let imported = records.stored_mappings(&t.config.id).await?;
        let (tapkey_locks, warning) = tapkey_locks(&systems);
        let names = TargetNames(systems);
        let line = |target: &Target| TargetLine {
            target: target.clone(),
            provider: target.provider(),
            name: names.of(target).map(str::to_owned),
        };
        let mappings = records
            .mappings_for(&t.config)
            .await?
            .into_iter()
            .map(|m| MappingLine {
                origin: if imported.iter().any(|i| i.item == m.item) { "stored" } else { "config" },
                targets: m.targets.iter().map(line).collect(),
                item: m.item,
            })
            .collect();
        Ok(MappingsView { tenant: t.config.id.clone(), mappings, tapkey_locks, warning })
    }

    /// The source's items and the lock systems' targets, for the mapping form.
    pub async fn mapping_options(&self, tenant: &str) -> Result<MappingOptions, ConsoleError> {
        Ok(self.catalog(tenant).await?.into())
    }

    /// Stores one item's mapping (replacing its targets; none unmaps it), after the checks the
    /// file gets ([`crate::config::TenantConfig::check`] on the tenant with the change) and
    /// those only the systems can answer: the item exists at the source, each Tapkey lock is
    /// bound and active. The people holding the item are reconciled at once.
    pub async fn save_mapping(&self, tenant: &str, mapping: Mapping) -> Result<SavedMapping, ConsoleError> {
        let t = self.tenant(tenant).await?;
        self.check_mapping(&t, &mapping).await?;
        let records = &self.rt.records;
        // A target dropped from the item takes access away: that work goes first.
        let urgent = records
            .mappings_for(&t.config)
            .await?
            .iter()
            .find(|m| m.item == mapping.item)
            .is_some_and(|old| old.targets.iter().any(|t| !mapping.targets.contains(t)));
        records.put_mappings(&t.config.id, std::slice::from_ref(&mapping)).await?;
        let mut queued = 0;
        for subject in records.subjects(&t.config.id).await? {
            if records.entitlements(&subject).await?.iter().any(|e| e.item == mapping.item) {
                let msg = WorkMessage::Reconcile {
                    subject: subject.clone(),
                    reason: "mapping changed".into(),
                    at: records.now(),
                    urgent,
                };
                self.rt.queue.send(&msg.to_outgoing()).await?;
                queued += 1;
            }
        }
        tracing::info!(tenant, item = %mapping.item, targets = mapping.targets.len(), queued, "mapping saved from the console");
        Ok(SavedMapping { mapping, queued })
    }

    /// Refuses (400) a mapping the file's checks or the systems refuse. A source or store
    /// that does not answer is a [`ConsoleError::Work`] (502), not a refusal.
    async fn check_mapping(&self, t: &TenantRuntime, mapping: &Mapping) -> Result<(), ConsoleError> {
        let bad = |m: String| Err(ConsoleError::BadRequest(m));
        if mapping.item.id.trim().is_empty() {
            return bad("the item needs an id".into());
        }
        if !item_kinds(&t.config.source).contains(&mapping.item.kind) {
            return bad(format!(
                "a {} tenant has no {} items",
                t.config.source.kind().as_str(),
                mapping.item.kind.as_str()
            ));
        }
        let mut candidate = t.config.clone();
        candidate.mappings = self.rt.records.mappings_for(&t.config).await?;
        candidate.mappings.retain(|m| m.item != mapping.item);
        candidate.mappings.push(mapping.clone());
        if let Err(e) = candidate.check() {
            return bad(e.0);
        }
        // Items of a kind the source lists must be among them (a typo maps nothing).
        let listed = t.source.items().await.map_err(ConsoleError::Work)?;
        let lists_kind =
            listed.iter().any(|i| i.item.kind == mapping.item.kind) || mapping.item.kind == ItemKind::Unit;
        if lists_kind && !listed.iter().any(|i| i.item == mapping.item) {
            return bad(format!("{} is not an item of the source", mapping.item));
        }
        let tapkey: Vec<&str> = mapping
            .targets
            .iter()
            .filter_map(|t| match t {
                Target::TapkeyLock(id) => Some(id.as_str()),
                _ => None,
            })
            .collect();
        if tapkey.is_empty() {
            return Ok(());
        }
        let locks = match self.tapkey_choices(t).await {
            Ok(locks) => locks.unwrap_or_default(),
            Err(w) => {
                return bad(format!("{w}; nothing saved (a lock that cannot be checked is not mapped)"));
            }
        };
        for id in tapkey {
            match locks.iter().find(|l| l.id.eq_ignore_ascii_case(id)) {
                Some(l) if l.usable => {}
                Some(l) => return bad(format!("Tapkey lock {} ({id}) is not active or not bound", l.name)),
                None => return bad(format!("Tapkey lock {id} is not bound to the owner account")),
            }
        }
        Ok(())
    }
}
