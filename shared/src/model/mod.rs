//! The domain: tenants, subjects, entitlements, mappings, windows, and what Portier applied.
//!
//! Everything here is plain data; parsing happens once at the edge (`Email::parse`,
//! `SubjectKey::parse`) so the rest of the engine can trust these values.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

mod applied;
mod entitlement;
mod mapping;

pub use applied::*;
pub use entitlement::*;
pub use mapping::*;

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
