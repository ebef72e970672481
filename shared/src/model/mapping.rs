//! What a source item is, where access is given, and the mapping between them.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::{BrivoGroupId, LockId, SaltoGroupId};

/// What a source item is: the key of a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ItemKind {
    /// A Nexudus TimePass product (e.g. "Bike Storage").
    Pass,
    /// A Kinnovis unit, by the name the operator sees (e.g. "A-017"), as in the mapping CSV.
    Unit,
    /// A Nexudus resource (`ResourceId`, e.g. a meeting room), opened by its bookings.
    Resource,
    /// A Nexudus floor-plan desk (`FloorPlanDesk` id) of any `ItemType` but Office, on a contract.
    Desk,
    /// A Nexudus floor-plan desk of `ItemType` 1 (Office), on a contract.
    Office,
    /// The tenant's visitor access; the only id is `"*"`.
    Visitors,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Pass => "pass",
            ItemKind::Unit => "unit",
            ItemKind::Resource => "resource",
            ItemKind::Desk => "desk",
            ItemKind::Office => "office",
            ItemKind::Visitors => "visitors",
        }
    }
}

/// A source item that can be mapped to lock-system targets.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ItemRef {
    pub kind: ItemKind,
    pub id: String,
}

impl fmt::Display for ItemRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.kind.as_str(), self.id)
    }
}

/// Where access is given.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    TapkeyLock(LockId),
    /// `{ salto_group = "…" }`: membership of a Salto KS access group.
    SaltoGroup(SaltoGroupId),
    /// `{ brivo_group = "…" }`: membership of a Brivo group.
    BrivoGroup(BrivoGroupId),
}

impl Target {
    pub fn provider(&self) -> ProviderKind {
        match self {
            Target::TapkeyLock(_) => ProviderKind::Tapkey,
            Target::SaltoGroup(_) => ProviderKind::Salto,
            Target::BrivoGroup(_) => ProviderKind::Brivo,
        }
    }

    /// True for group memberships, which carry no validity at the provider: they are held
    /// only while a window holds now, and window edges become timers.
    pub fn is_membership(&self) -> bool {
        !self.provider().has_native_validity()
    }

    /// Stable key used in store records (`APPLIED#provider#target`).
    pub fn key(&self) -> String {
        match self {
            Target::TapkeyLock(l) => format!("tapkey#{l}"),
            Target::SaltoGroup(g) => format!("salto_ks#{g}"),
            Target::BrivoGroup(g) => format!("brivo#{g}"),
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Target::TapkeyLock(l) => write!(f, "Tapkey lock {l}"),
            Target::SaltoGroup(g) => write!(f, "Salto KS access group {g}"),
            Target::BrivoGroup(g) => write!(f, "Brivo group {g}"),
        }
    }
}

/// A lock system Portier writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProviderKind {
    Tapkey,
    #[serde(rename = "salto_ks")]
    Salto,
    Brivo,
}

impl ProviderKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Tapkey => "tapkey",
            ProviderKind::Salto => "salto_ks",
            ProviderKind::Brivo => "brivo",
        }
    }

    /// Display name for messages.
    pub fn name(self) -> &'static str {
        match self {
            ProviderKind::Tapkey => "Tapkey",
            ProviderKind::Salto => "Salto KS",
            ProviderKind::Brivo => "Brivo",
        }
    }

    /// Tapkey grants carry `validFrom`/`validBefore` and are created ahead of time; Salto KS
    /// and Brivo memberships do not, so Portier adds and removes them at the window's edges.
    pub fn has_native_validity(self) -> bool {
        matches!(self, ProviderKind::Tapkey)
    }
}

/// Source item → lock-system targets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mapping {
    pub item: ItemRef,
    pub targets: Vec<Target>,
}
