//! What Tapkey's Access Management Web API answers and takes: bound locks, contacts, grants.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::model::{ContactId, Email, LockId, Window};

/// A lock bound to the owner account (`GET …/BoundLocks/{id}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundLock {
    pub id: String,
    #[serde(default)]
    pub title: Option<String>,
    /// `false` when the lock has no active licence. Absent is taken as active.
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub unbind_date: Option<DateTime<Utc>>,
}

impl BoundLock {
    /// The title, or the id when the lock has none.
    pub fn label(&self) -> &str {
        self.title.as_deref().map(str::trim).filter(|t| !t.is_empty()).unwrap_or(&self.id)
    }
}

/// A contact: a person (by email) the owner account can grant access to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contact {
    pub id: String,
    #[serde(default)]
    pub identifier: Option<String>,
    /// Deprecated alias of `identifier`, still returned.
    #[serde(default)]
    pub email: Option<String>,
}

impl Contact {
    /// True when the contact is this email (Tapkey compares identifiers case-insensitively).
    pub fn is(&self, email: &Email) -> bool {
        [&self.identifier, &self.email]
            .into_iter()
            .flatten()
            .any(|i| i.trim().eq_ignore_ascii_case(email.as_str()))
    }
}

/// A grant: one contact's access to one bound lock for a validity window.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub id: String,
    #[serde(default)]
    pub bound_lock_id: Option<String>,
    #[serde(default)]
    pub contact_id: Option<String>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub valid_from: Option<DateTime<Utc>>,
    #[serde(default, deserialize_with = "lenient_time")]
    pub valid_before: Option<DateTime<Utc>>,
    #[serde(default)]
    pub active: Option<bool>,
    #[serde(default)]
    pub state: Option<String>,
}

impl Grant {
    /// Not revoked (neither `active: false` nor `state: "Revoked"`).
    pub fn is_active(&self) -> bool {
        self.active != Some(false)
            && !self.state.as_deref().is_some_and(|s| s.eq_ignore_ascii_case("revoked"))
    }

    /// Same window, to the second (Portier sends whole seconds).
    pub fn has_window(&self, window: &Window) -> bool {
        same_second(self.valid_from, window.from) && same_second(self.valid_before, window.until)
    }
}

fn same_second(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> bool {
    a.map(|t| t.timestamp()) == b.map(|t| t.timestamp())
}

/// The body of `PUT …/Grants`: the contact by id, or inline by its email, as Tapkey's official
/// .NET sample creates grants (`contact: { identifier }`, tapkey-api-samples-dotnet
/// `src/HowTo/HowToWebApiClientCredentials/Program.cs`), so a new person costs one call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewGrant {
    pub bound_lock_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact: Option<InlineContact>,
    /// ISO-8601 UTC with `Z`, whole seconds; `null` when open.
    pub valid_from: Option<String>,
    pub valid_before: Option<String>,
}

/// A contact named inside a new grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InlineContact {
    pub identifier: String,
}

/// Who a new grant is for.
#[derive(Debug, Clone, Copy)]
pub enum GrantHolder<'a> {
    Contact(&'a ContactId),
    /// Tapkey finds or creates the contact with this email.
    Email(&'a Email),
}

impl NewGrant {
    pub fn new(lock: &LockId, holder: GrantHolder<'_>, window: &Window) -> Self {
        let (contact_id, contact) = match holder {
            GrantHolder::Contact(id) => (Some(id.as_str().to_owned()), None),
            GrantHolder::Email(email) => {
                (None, Some(InlineContact { identifier: email.as_str().to_owned() }))
            }
        };
        Self {
            bound_lock_id: lock.as_str().to_owned(),
            contact_id,
            contact,
            valid_from: window.from.as_ref().map(iso),
            valid_before: window.until.as_ref().map(iso),
        }
    }
}

/// `2026-12-01T10:00:00Z`
pub fn iso(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// What `PUT …/Contacts` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateContact {
    Created(Contact),
    /// A contact with this identifier exists already (409, or `ErrorCode: "Duplicate"` with
    /// any status): look it up.
    Duplicate,
}

/// What `PUT …/Grants` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateGrant {
    Created(Grant),
    /// An identical active grant exists already (`ErrorCode: "Duplicate"`, whatever the
    /// status): look it up.
    Duplicate,
    /// The lock or the contact does not exist (404); the reason quotes Tapkey.
    NotFound {
        reason: String,
    },
}

/// What `POST …/Grants/{id}/Revoke` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revoke {
    Revoked,
    /// Already revoked (409) or unknown (404): nothing left to do.
    AlreadyGone,
}

/// RFC 3339, or a zone-less timestamp taken as UTC; `null`/`""` are absent. An unreadable
/// date is absent too: a lenient reader must not fail a whole list over one odd field.
fn lenient_time<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
    let Some(s) = Option::<String>::deserialize(d)? else { return Ok(None) };
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    Ok(DateTime::parse_from_rfc3339(s).map(|t| t.with_timezone(&Utc)).ok().or_else(|| {
        chrono::NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.f").ok().map(|n| n.and_utc())
    }))
}
