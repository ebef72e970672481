//! The domain: tenants, subjects, entitlements, mappings, windows, and what Portier applied.
//!
//! Everything here is plain data; parsing happens once at the edge (`Email::parse`,
//! `SubjectKey::parse`) so the rest of the engine can trust these values.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A UTC instant; local times are converted at the edge with the tenant's time zone.
pub type Instant = DateTime<Utc>;

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(s: &str) -> Self {
                Self(s.to_owned())
            }
        }
    };
}

string_id!(
    /// One location (a Nexudus business or a Kinnovis location) with its own credentials.
    TenantId
);
string_id!(
    /// A Tapkey bound lock id.
    LockId
);
string_id!(
    /// A Tapkey contact id.
    ContactId
);
string_id!(
    /// A Tapkey grant id.
    GrantId
);
string_id!(
    /// A Salto KS access group id (UUID) in the tenant's site.
    SaltoGroupId
);
string_id!(
    /// A Brivo group id.
    BrivoGroupId
);

/// The system a subject comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Nexudus,
    Kinnovis,
}

impl SourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Nexudus => "nexudus",
            SourceKind::Kinnovis => "kinnovis",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "nexudus" => Some(SourceKind::Nexudus),
            "kinnovis" => Some(SourceKind::Kinnovis),
            _ => None,
        }
    }
}

/// One person in one source: `tenant / source / person id`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SubjectKey {
    pub tenant: TenantId,
    pub source: SourceKind,
    pub person: String,
}

impl SubjectKey {
    pub fn new(tenant: &TenantId, source: SourceKind, person: impl Into<String>) -> Self {
        Self { tenant: tenant.clone(), source, person: person.into() }
    }

    /// Parses `tenant#source#person` (the store's key and the FIFO group id).
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.splitn(3, '#');
        let tenant = parts.next().filter(|t| !t.is_empty())?;
        let source = SourceKind::parse(parts.next()?)?;
        let person = parts.next().filter(|p| !p.is_empty())?;
        Some(Self::new(&TenantId(tenant.to_owned()), source, person))
    }
}

impl fmt::Display for SubjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}#{}", self.tenant, self.source.as_str(), self.person)
    }
}

/// A normalised email address (trimmed, lowercased). Tapkey contacts are keyed by it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Trims and lowercases (plain case folding, nothing more). An address that compatibility
    /// normalisation (NFKC) would change (KELVIN SIGN, fullwidth letters, ligatures) or that
    /// holds an invisible or format character is refused: folded, it would be someone else's
    /// address, or look identical to it. Look-alikes from other scripts stay distinct addresses.
    pub fn parse(raw: &str) -> Result<Self, String> {
        use unicode_normalization::UnicodeNormalization;
        let trimmed = raw.trim();
        if let Some(c) = trimmed.chars().find(|c| is_invisible(*c)) {
            return Err(format!(
                "email {:?} holds an invisible character (U+{:04X})",
                redact(raw),
                u32::from(c)
            ));
        }
        // Character by character, so a decomposed ü (u + combining mark) passes and is composed
        // (NFC) below, while KELVIN SIGN, canonically a K, does not.
        let stands_for_another = |c: char| c.to_string().nfkc().ne(std::iter::once(c));
        if trimmed.chars().any(stands_for_another) {
            return Err(format!(
                "email {:?} holds characters that stand for others (compatibility forms such as \
                 KELVIN SIGN or fullwidth letters); write it in plain letters",
                redact(raw)
            ));
        }
        let e = trimmed.nfc().collect::<String>().to_lowercase();
        let valid = match e.split_once('@') {
            Some((local, domain)) => {
                !local.is_empty()
                    && domain.contains('.')
                    && !domain.starts_with('.')
                    && !domain.ends_with('.')
                    && !e.chars().any(|c| c.is_whitespace() || c.is_control())
                    && !domain.contains('@')
            }
            None => false,
        };
        if valid { Ok(Self(e)) } else { Err(format!("not an email address: {:?}", redact(raw))) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A short stable hash for logs: emails never appear in logs in clear.
    pub fn hashed(&self) -> String {
        crate::telemetry::hash_for_logs(&self.0)
    }
}

/// Format and invisible characters (Unicode `Cf` and the usual fillers) that make two
/// addresses look alike.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}'
            | '\u{1BCA0}'..='\u{1BCA3}' | '\u{E0000}'..='\u{E007F}'
    )
}

fn redact(raw: &str) -> String {
    raw.chars().take(3).chain("…".chars()).collect()
}

impl TryFrom<String> for Email {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        Email::parse(&s)
    }
}

impl From<Email> for String {
    fn from(e: Email) -> String {
        e.0
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A half-open validity window `[from, until)`; `None` means open on that side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Window {
    pub from: Option<Instant>,
    pub until: Option<Instant>,
}

impl Window {
    pub const ALWAYS: Window = Window { from: None, until: None };

    pub fn new(from: Option<Instant>, until: Option<Instant>) -> Self {
        Self { from, until }
    }

    /// An empty window (until ≤ from) grants nothing.
    pub fn is_empty(&self) -> bool {
        matches!((self.from, self.until), (Some(f), Some(u)) if u <= f)
    }

    pub fn contains(&self, t: Instant) -> bool {
        self.from.is_none_or(|f| f <= t) && self.until.is_none_or(|u| t < u)
    }

    /// True once the window can never hold again.
    pub fn has_ended(&self, now: Instant) -> bool {
        self.until.is_some_and(|u| u <= now)
    }

    /// Overlapping or touching windows merge into one grant.
    pub fn touches(&self, other: &Window) -> bool {
        let a_before_b = matches!((self.until, other.from), (Some(u), Some(f)) if u < f);
        let b_before_a = matches!((other.until, self.from), (Some(u), Some(f)) if u < f);
        !a_before_b && !b_before_a
    }

    pub fn union(&self, other: &Window) -> Window {
        let from = match (self.from, other.from) {
            (Some(a), Some(b)) => Some(a.min(b)),
            _ => None,
        };
        let until = match (self.until, other.until) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
        Window { from, until }
    }

    /// Merges a set of windows into the fewest disjoint ones, sorted by start.
    pub fn merge_all(mut windows: Vec<Window>) -> Vec<Window> {
        windows.retain(|w| !w.is_empty());
        windows.sort_by_key(|w| (w.from.is_some(), w.from));
        let mut merged: Vec<Window> = Vec::with_capacity(windows.len());
        for w in windows {
            match merged.last_mut() {
                Some(last) if last.touches(&w) => *last = last.union(&w),
                _ => merged.push(w),
            }
        }
        merged
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let side =
            |t: Option<Instant>| t.map_or("∞".to_owned(), |t| t.format("%Y-%m-%d %H:%M").to_string());
        write!(f, "{} → {}", side(self.from), side(self.until))
    }
}

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

/// How far a provider write got: an intent is written before the non-idempotent call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AppliedState {
    /// The create call may or may not have happened: look it up before creating again.
    Intent,
    /// The provider confirmed the object with this id.
    Created { grant_id: GrantId },
    /// A group membership of this provider user (idempotent calls, so no intent is needed).
    Member { user: ProviderUserIds },
}

impl AppliedState {
    /// True once the provider confirmed the access.
    pub fn is_done(&self) -> bool {
        !matches!(self, AppliedState::Intent)
    }
}

/// A provider user's ids: Salto KS site-user id (`id`) and platform user id (`platform_id`,
/// the one access-group membership takes); Brivo's numeric user id (`id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ProviderUserIds {
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_id: Option<String>,
}

impl fmt::Display for ProviderUserIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.platform_id {
            Some(p) => write!(f, "user {} (platform {p})", self.id),
            None => write!(f, "user {}", self.id),
        }
    }
}

/// Whether a provider user may open doors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UserState {
    /// The create call may or may not have happened: look the user up before creating.
    Creating,
    Active,
    /// Suspended by the no-access policy; unsuspended when access returns.
    Suspended,
}

/// A user Portier created at a membership provider for one subject (`USER#provider`), so a
/// membership change is one call and the no-access policy touches only Portier's users.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderUser {
    pub provider: ProviderKind,
    /// `None` while only the intent to create is recorded.
    pub ids: Option<ProviderUserIds>,
    /// The email the user was created with (the provider invites it).
    pub email: Email,
    pub state: UserState,
    /// When the provider created the user (Salto KS is eventually consistent for ~1 min).
    pub created_at: Instant,
    /// Brivo Mobile Pass invitation sent (or found pending).
    #[serde(default)]
    pub invited: bool,
    /// Users this subject had before an email change made a new one (Salto KS invites per
    /// email), still to be put through the no-access policy. Kept in this record so the new
    /// user and the old one's fate are written in one step.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retired: Vec<RetiredUser>,
}

/// A provider user left behind by an email change.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RetiredUser {
    pub ids: ProviderUserIds,
    pub email: Email,
    /// Already recorded as kept under `keep`, or suspended under `suspend`. It stays here
    /// either way, so a later, stricter policy still reaches it; `delete` removes it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub kept: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub suspended: bool,
}

/// What Portier created at a provider for one subject and target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    pub target: Target,
    pub window: Window,
    pub email: Email,
    pub contact_id: Option<ContactId>,
    pub state: AppliedState,
    pub since: Instant,
}

impl Applied {
    /// Store key: the identity of the access at the provider, so no two accesses share a record.
    ///
    /// A Tapkey grant is one (lock, window, email): the whole window and the email are in the
    /// key, so a grant that replaces another (a changed window, a changed email) never writes
    /// or deletes the record of the grant it replaces. A membership is (group, provider user),
    /// which is how the provider itself names it.
    pub fn key(&self) -> String {
        match &self.state {
            AppliedState::Member { user } if self.target.is_membership() => {
                format!("{}#member#{}", self.target.key(), user.platform_id.as_deref().unwrap_or(&user.id))
            }
            _ => grant_key(&self.target, &self.window, &self.email),
        }
    }
}

/// The record key of a grant (see [`Applied::key`]); the email is hashed, never in clear.
pub fn grant_key(target: &Target, window: &Window, email: &Email) -> String {
    let side = |t: Option<Instant>| t.map_or("-".to_owned(), |t| t.timestamp().to_string());
    format!("{}#{}#{}#{}", target.key(), side(window.from), side(window.until), email.hashed())
}

/// The key under which a listing of the provider shows access: a grant's id, or
/// `group#member id` for a group membership (Salto KS: the platform user id).
pub fn membership_key(target: &Target, member: &str) -> String {
    let group = match target {
        Target::TapkeyLock(l) => l.as_str(),
        Target::SaltoGroup(g) => g.as_str(),
        Target::BrivoGroup(g) => g.as_str(),
    };
    format!("{group}#{member}")
}

impl Applied {
    /// How a provider listing names this access (see [`membership_key`]); `None` for an intent.
    pub fn listed_key(&self) -> Option<String> {
        match &self.state {
            AppliedState::Created { grant_id } => Some(grant_id.to_string()),
            AppliedState::Member { user } => {
                Some(membership_key(&self.target, user.platform_id.as_deref().unwrap_or(&user.id)))
            }
            AppliedState::Intent => None,
        }
    }
}

/// The last permanent failure for one target: shown by explain, not retried until inputs change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub target: Target,
    pub reason: String,
    /// Fingerprint of the operation that failed; a different operation is tried again.
    pub op: String,
    pub at: Instant,
    /// Until then the same operation is held back; afterwards it is tried once more.
    pub retry_after: Instant,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32) -> Instant {
        Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).single().expect("valid")
    }

    #[test]
    fn email_is_normalised_once() {
        assert_eq!(Email::parse("  Anna@Example.COM ").map(|e| e.0), Ok("anna@example.com".into()));
        for bad in ["", "anna", "@example.com", "anna@", "anna@example", "a b@example.com", "a@b@c.com"] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn confusable_addresses_are_refused_never_folded_into_another() {
        // Refused: each would fold into, or look exactly like, another person's address.
        for (raw, why) in [
            ("\u{212A}arl@example.com", "stand for others"), // KELVIN SIGN, lowercases to k
            ("\u{FF4B}arl@example.com", "stand for others"), // fullwidth k
            ("karl@\u{FF45}xample.com", "stand for others"), // fullwidth e in the domain
            ("\u{FB01}nn@example.com", "stand for others"),  // the fi ligature
            ("karl@example.com\u{200B}", "invisible"),       // zero-width space
            ("ka\u{200D}rl@example.com", "invisible"),       // zero-width joiner
            ("\u{FEFF}karl@example.com", "invisible"),       // byte-order mark
            ("karl\u{00AD}@example.com", "invisible"),       // soft hyphen
            ("karl@exa\u{2060}mple.com", "invisible"),       // word joiner
        ] {
            let err = Email::parse(raw).expect_err(raw);
            assert!(err.contains(why), "{raw:?}: {err}");
        }
        // Look-alikes from another script are other addresses, never the Latin one.
        let cyrillic = Email::parse("k\u{0430}rl@example.com").expect("a Cyrillic a is a letter");
        assert_ne!(cyrillic, Email::parse("karl@example.com").expect("latin"));
        // Plain case folding still applies; composed letters stay as they are.
        assert_eq!(Email::parse("KARL@Example.COM").map(|e| e.0), Ok("karl@example.com".into()));
        assert_eq!(
            Email::parse("J\u{FC}rgen@example.com").map(|e| e.0),
            Ok("j\u{fc}rgen@example.com".into())
        );
    }

    #[test]
    fn a_missing_version_is_the_oldest_and_an_inferred_deletion_gives_way_to_a_later_read() {
        let at = t(9);
        let stored = Profile {
            email: Some(Email::parse("anna@example.com").expect("email")),
            name: "Anna".into(),
            source_version: Some(at),
            deleted: false,
            gone_at: None,
            suspended: Some("suspended".into()),
        };
        // A body without `UpdatedOn` never lifts a newer suspension; a read of the source may.
        let unversioned = Profile { source_version: None, suspended: None, ..stored.clone() };
        assert!(!unversioned.supersedes(&stored, Seen::Body));
        assert!(unversioned.supersedes(&stored, Seen::Read(t(10))));
        // A deletion Portier inferred at 10:00 gives way to a read that started later, only.
        let gone = stored.clone().gone(t(10));
        assert!(gone.supersedes(&stored, Seen::Read(t(10))));
        assert!(!stored.supersedes(&gone, Seen::Read(t(9))), "a read from before the deletion");
        assert!(!stored.supersedes(&gone, Seen::Body), "a replayed body never undoes it");
        assert!(stored.supersedes(&gone, Seen::Read(t(11))));
    }

    #[test]
    fn subject_key_round_trips() {
        let k = SubjectKey::new(&"space-berlin".into(), SourceKind::Nexudus, "456");
        assert_eq!(k.to_string(), "space-berlin#nexudus#456");
        assert_eq!(SubjectKey::parse(&k.to_string()), Some(k));
        assert_eq!(SubjectKey::parse("x#nexudus#"), None);
        assert_eq!(SubjectKey::parse("x#other#1"), None);
    }

    #[test]
    fn window_contains_is_half_open() {
        let w = Window::new(Some(t(9)), Some(t(10)));
        assert!(!w.contains(t(8)));
        assert!(w.contains(t(9)));
        assert!(!w.contains(t(10)));
        assert!(Window::ALWAYS.contains(t(3)));
        assert!(w.has_ended(t(10)));
        assert!(!Window::new(None, None).has_ended(t(23)));
    }

    #[test]
    fn windows_merge_when_they_overlap_or_touch() {
        let merged = Window::merge_all(vec![
            Window::new(Some(t(12)), Some(t(13))),
            Window::new(Some(t(9)), Some(t(10))),
            Window::new(Some(t(10)), Some(t(11))),
            Window::new(Some(t(15)), Some(t(15))),
        ]);
        assert_eq!(merged, vec![Window::new(Some(t(9)), Some(t(11))), Window::new(Some(t(12)), Some(t(13)))]);
    }

    #[test]
    fn open_windows_absorb_everything_they_touch() {
        let merged = Window::merge_all(vec![
            Window::new(Some(t(9)), Some(t(10))),
            Window::new(None, Some(t(9))),
            Window::new(Some(t(20)), None),
        ]);
        assert_eq!(merged, vec![Window::new(None, Some(t(10))), Window::new(Some(t(20)), None)]);
    }
}
