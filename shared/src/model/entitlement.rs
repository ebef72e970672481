//! Who a subject is, and each reason for access with its window and source version.

use serde::{Deserialize, Serialize};

use super::{Email, Instant, ItemRef, Window};

/// The subject's profile: who they are, and any revocation overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Profile {
    pub email: Option<Email>,
    pub name: String,
    /// The source's version of this record (e.g. the coworker's `UpdatedOn`).
    pub source_version: Option<Instant>,
    /// The person no longer exists in the source (e.g. `CoworkerDelete`).
    #[serde(default)]
    pub deleted: bool,
    /// Set when the deletion was inferred by Portier (a delete hint, the person missing from a
    /// read) rather than stated with a newer source version: any later sight of the person
    /// at the source undoes it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gone_at: Option<Instant>,
    /// A revocation overlay on the person (a Nexudus customer with `Active = false`): nothing
    /// is granted while it holds, whatever the entitlements say; lifted by a newer version.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suspended: Option<String>,
}

/// How a new state of a source record was learned, which decides what it may overwrite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Read from the source's API (or a listing) by a read that started at this instant: the
    /// source as it is, so at the same version it replaces what is stored.
    Read(Instant),
    /// Carried in a webhook body: true as of its own version only (it may be a replay).
    Body,
}

impl Profile {
    /// Source state only moves forward (design §2.2): a newer source version wins; at the same
    /// version a read of the source, or a deletion, may change the record. A missing version
    /// is the oldest. A deletion Portier inferred (at `gone_at`) gives way only to the person
    /// seen by a read that started no earlier (an earlier read may predate the deletion).
    pub fn supersedes(&self, old: &Profile, seen: Seen) -> bool {
        if self == old {
            return false;
        }
        match (self.gone_at, old.gone_at) {
            (None, Some(at)) => {
                return matches!(seen, Seen::Read(t) if t >= at) && self.source_version >= old.source_version;
            }
            (Some(_), Some(_)) => return false,
            (Some(_), None) => return self.source_version >= old.source_version && !old.deleted,
            (None, None) => {}
        }
        match (self.source_version, old.source_version) {
            (Some(n), Some(o)) => n > o || (n == o && (self.deleted || matches!(seen, Seen::Read(_)))),
            // A missing version is the oldest: only a read of the source may set such a record.
            (None, Some(_)) => matches!(seen, Seen::Read(_)),
            (Some(_), None) | (None, None) => true,
        }
    }

    /// The same person, deleted as inferred at `now` (the source version is left as it was).
    pub fn gone(self, now: Instant) -> Profile {
        Profile { deleted: true, gone_at: Some(now), ..self }
    }
}

/// Where an entitlement came from, and its id there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntitlementKind {
    /// A Nexudus `CoworkerTimePass`.
    Pass,
    /// A booking: of a Kinnovis unit (its customer and every shared-access email hold one
    /// each), or of a Nexudus resource (`FromTime − lead` to `ToTime + lag`). A subject is of one
    /// source, so the keys never meet.
    Booking,
    /// One desk or office of a Nexudus `CoworkerContract` (`StartDate` to `CancellationDate`),
    /// held by the contract's customer and, for a team's paying member, by every team member.
    Contract,
    /// A registered Nexudus visitor's visit.
    Visit,
}

impl EntitlementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EntitlementKind::Pass => "pass",
            EntitlementKind::Booking => "booking",
            EntitlementKind::Contract => "contract",
            EntitlementKind::Visit => "visit",
        }
    }
}

/// Whether an entitlement still grants anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum EntitlementState {
    Active,
    Ended {
        reason: String,
    },
    /// Access withdrawn by the source (Kinnovis overdue lock-out, manual revoke) until it is
    /// restored; it outranks the window, so nothing is granted while it holds.
    Revoked {
        reason: String,
    },
    /// Ended because Portier no longer saw it at the source (a delete hint, a read or listing
    /// without it, as of `at`), not because the source said so with a newer version. Any
    /// later sight of the record at the source brings it back.
    Gone {
        reason: String,
        at: Instant,
    },
}

/// One reason for access, with its window and the source version that set it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entitlement {
    pub kind: EntitlementKind,
    /// The source record's id (e.g. the CoworkerTimePass id).
    pub id: String,
    pub item: ItemRef,
    /// Human label for explain ("Bike Storage").
    pub label: String,
    pub window: Window,
    pub state: EntitlementState,
    /// Source version (`UpdatedOn`); an older one never overwrites a newer one.
    pub source_version: Instant,
}

impl Entitlement {
    /// Store key `kind#id`.
    pub fn key(&self) -> String {
        format!("{}#{}", self.kind.as_str(), self.id)
    }

    pub fn is_active(&self) -> bool {
        self.state == EntitlementState::Active
    }

    /// A newer source version wins; at the same version a read of the source may change the
    /// record, a webhook body only end it. An ending Portier inferred
    /// ([`EntitlementState::Gone`]) keeps the source version and gives way to the record seen
    /// by a read that started later.
    pub fn supersedes(&self, old: &Entitlement, seen: Seen) -> bool {
        if self == old {
            return false;
        }
        if self.source_version != old.source_version {
            return self.source_version > old.source_version;
        }
        match (&self.state, &old.state) {
            (EntitlementState::Gone { .. }, EntitlementState::Gone { .. }) => false,
            (_, EntitlementState::Gone { at, .. }) => matches!(seen, Seen::Read(t) if t >= *at),
            (EntitlementState::Gone { .. }, old) => *old == EntitlementState::Active,
            (new, _) => matches!(seen, Seen::Read(_)) || *new != EntitlementState::Active,
        }
    }

    /// The same entitlement, ended for `reason` because it was not seen at the source at `now`.
    /// Its source version stays: the source's own state always wins over this inference.
    pub fn ended(self, reason: &str, now: Instant) -> Entitlement {
        Entitlement { state: EntitlementState::Gone { reason: reason.into(), at: now }, ..self }
    }
}
