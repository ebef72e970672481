//! What the Brivo Access API answers and takes: users, their emails, groups, outcomes.

use serde::{Deserialize, Serialize};

/// A Brivo user (the fields Portier reads).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub id: serde_json::Value,
    #[serde(default)]
    pub external_id: Option<String>,
    #[serde(default)]
    pub suspended: Option<bool>,
    #[serde(default)]
    pub emails: Vec<UserEmail>,
}

/// One of a Brivo user's email addresses.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct UserEmail {
    #[serde(default)]
    pub address: String,
}

impl User {
    /// Brivo ids are numbers; kept as text.
    pub fn id(&self) -> String {
        match &self.id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// The body of `POST /users`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewUser<'a> {
    pub first_name: &'a str,
    pub last_name: &'a str,
    /// Portier's subject key, so the user is found again without an email filter.
    pub external_id: &'a str,
    pub emails: Vec<EmailAddress<'a>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailAddress<'a> {
    pub address: &'a str,
    #[serde(rename = "type")]
    pub kind: &'a str,
}

/// A group as `GET /groups` and a user's memberships list it (`{id, name}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupRef {
    pub id: serde_json::Value,
    #[serde(default)]
    pub name: Option<String>,
}

impl GroupRef {
    /// Brivo ids are numbers; kept as text.
    pub fn id(&self) -> String {
        match &self.id {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }
}

/// What `PUT` or `DELETE /groups/{groupId}/users/{userId}` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupChange {
    Done,
    /// 400: refused (adding: "credentials already exist in a linked group", or the cap).
    Refused(String),
    /// 404: the group (or the user) does not exist; for a removal, also "not a member".
    NotFound(String),
}

/// What `POST …/digital-invitations` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Invite {
    Sent,
    /// 409: an invitation is already pending.
    AlreadyPending,
    /// 412: the account has no Wallet Passes left.
    NoPassesLeft(String),
}
