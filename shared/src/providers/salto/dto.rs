//! What the Salto KS Connect API answers and takes: roles, site users, entries, access groups.

use serde::{Deserialize, Serialize};

use crate::error::CallError;
use crate::model::Email;

/// The code of the plain door-opening user role every site lists (Clay support article
/// 101000411312 "KS role": `site_user`, "Site User"; its id differs per site).
pub const DEFAULT_ROLE_CODE: &str = "site_user";

/// A role of the site (`GET /v1.1/sites/{site}/roles`, `{items:[{id, customer_reference, code,
/// parent_id, is_hierarchical}]}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Role {
    pub id: String,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub customer_reference: Option<String>,
}

impl Role {
    /// Whether `wanted` names this role by id, code or readable name (case-insensitive).
    pub fn is(&self, wanted: &str) -> bool {
        let wanted = wanted.trim();
        [Some(self.id.as_str()), self.code.as_deref(), self.customer_reference.as_deref()]
            .into_iter()
            .flatten()
            .any(|n| n.trim().eq_ignore_ascii_case(wanted))
    }
}

/// The role new users get: the configured one, else [`DEFAULT_ROLE_CODE`]; a Config error that
/// lists the site's roles when none fits (Salto KS refuses a user without a role).
pub fn pick_role<'r>(roles: &'r [Role], configured: Option<&str>, site: &str) -> Result<&'r Role, CallError> {
    let wanted = configured.map(str::trim).filter(|w| !w.is_empty());
    let found = match wanted {
        Some(w) => roles.iter().find(|r| r.is(w)),
        None => roles
            .iter()
            .find(|r| r.code.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(DEFAULT_ROLE_CODE))),
    };
    found.ok_or_else(|| {
        let listed: Vec<String> = roles
            .iter()
            .map(|r| match (&r.customer_reference, &r.code) {
                (Some(name), Some(code)) => format!("\"{name}\" ({code}, {})", r.id),
                (Some(name), None) => format!("\"{name}\" ({})", r.id),
                (None, Some(code)) => format!("{code} ({})", r.id),
                (None, None) => r.id.clone(),
            })
            .collect();
        let what = match wanted {
            Some(w) => format!("no role matches user_role = \"{w}\""),
            None => format!("no role has the default code {DEFAULT_ROLE_CODE}: set user_role"),
        };
        CallError::config(format!(
            "Salto KS site {site}: {what} in [tenant.providers.salto_ks]; the site's roles: {}",
            if listed.is_empty() { "none".to_owned() } else { listed.join(", ") }
        ))
    })
}

/// A site user: `id` is the site-user id, `user.id` the platform user id (measured, ECC).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SiteUser {
    pub id: String,
    #[serde(default)]
    pub user: Option<PlatformUser>,
    /// The site user's `email`, the field the create body documents (saltoks.com adding-users;
    /// RDO sends it). The platform profile's fields are not documented, so nothing else is read.
    #[serde(default)]
    pub email: Option<String>,
    /// `"subscribed"`, or `"suspended"` when the site has no free seat.
    #[serde(default)]
    pub subscription_state: Option<String>,
    /// In a group's member list: excluded from the group's access.
    #[serde(default)]
    pub excluded: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct PlatformUser {
    pub id: String,
}

impl SiteUser {
    pub fn platform_id(&self) -> Option<&str> {
        self.user.as_ref().map(|u| u.id.as_str())
    }

    /// Whether this site user has `email` (the duplicate-user safety net matches on it).
    pub fn is(&self, email: &Email) -> bool {
        self.email.as_deref().is_some_and(|e| e.trim().eq_ignore_ascii_case(email.as_str()))
    }

    pub fn is_subscribed(&self) -> bool {
        self.subscription_state.as_deref().is_none_or(|s| s.eq_ignore_ascii_case("subscribed"))
    }
}

/// One entry of `GET /v1.1/sites/{s}/entries`: who tried which lock, when, and how it ended.
/// `user_id` is the **platform** user id (ECCdigital salto-ks-api-contract.md §5, measured);
/// the other names are as measured there, the id field is inferred. Unknown fields are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Entry {
    #[serde(default)]
    pub id: Option<String>,
    #[serde(default)]
    pub lock_id: Option<String>,
    #[serde(default)]
    pub user_id: Option<String>,
    #[serde(default)]
    pub utc_date_time: Option<String>,
    /// e.g. `lock_opened`, `lock_rejected`.
    #[serde(default, alias = "event_category")]
    pub event_type: Option<String>,
    /// The reason of a refusal (`no_access`, `suspended`, `offline`); `null` when it opened.
    #[serde(default)]
    pub event_detail: Option<String>,
}

impl Entry {
    /// When it happened (`utc_date_time`).
    pub fn at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        crate::sources::nexudus::dto::parse_time(self.utc_date_time.as_deref()?)
    }

    /// A door opened for this user: not a rejection, no refusal reason.
    pub fn opened(&self) -> bool {
        let rejected = self.event_type.as_deref().is_some_and(|t| t.to_ascii_lowercase().contains("reject"));
        !rejected && self.event_detail.as_deref().is_none_or(|d| d.trim().is_empty())
    }
}

/// An access group of the site (`GET /v1.1/sites/{site}/access_groups`, `{items:[{id,
/// customer_reference}]}`): `customer_reference` is the name the Salto KS app shows.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AccessGroup {
    pub id: String,
    #[serde(default)]
    pub customer_reference: Option<String>,
}

/// The body of `POST /v1.2/sites/{site}/users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NewUser<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    /// Salto KS sends its invitation to this address.
    pub email: &'a str,
    pub role_ids: Vec<String>,
    pub blocked: bool,
    pub use_pin: bool,
    pub toggle_easy_office_mode: bool,
    pub toggle_manual_office_mode: bool,
    pub override_privacy_mode: bool,
}

impl<'a> NewUser<'a> {
    /// A user with one role (the site's roles come from [`SaltoClient::roles`]).
    pub fn new(first_name: &'a str, last_name: &'a str, email: &'a Email, role_id: &str) -> Self {
        Self {
            first_name,
            last_name,
            email: email.as_str(),
            role_ids: vec![role_id.to_owned()],
            blocked: false,
            use_pin: false,
            toggle_easy_office_mode: false,
            toggle_manual_office_mode: false,
            override_privacy_mode: false,
        }
    }
}

/// What `PATCH …/access_groups/{ag}/users` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchMembers {
    Done,
    /// 404 `2202`: a user id is unknown (right after creation: not yet visible).
    UserNotFound(String),
    /// 403 `2203`: the operation cannot be executed (right after creation: not yet possible).
    NotExecutable(String),
    /// 404 with another code: the access group does not exist.
    GroupNotFound(String),
}
