//! Thin typed client of the Tapkey Access Management Web API (`reference/lock-providers.md` §1).
//!
//! Client-credentials token (cached, refreshed once on a 401), owner-account paths, bare-array
//! collections paged with `$top`/`$skip`, and `{"ErrorCode","Message"}` errors turned into
//! typed outcomes or classified [`CallError`]s. Policy (which lock may be granted, exactly-once
//! creation) lives in [`super::provider`].

use std::sync::atomic::{AtomicBool, Ordering};

use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use super::dto::{
    BoundLock, Contact, CreateContact, CreateGrant, Grant, GrantHolder, InlineContact, NewGrant, Revoke, iso,
};
use crate::error::CallError;
use crate::http::{self, Api, ApiClient, ClientLimits, FreshToken, Reply, RetryPolicy, Secret};
use crate::model::{ContactId, Email, GrantId, LockId};
use crate::paging::{self, Cursor};
use crate::secrets::ExposeSecret;

const API: Api = Api::new("Tapkey");

/// Scopes the sync needs: read locks, find/create contacts, read/create/revoke grants.
pub const SCOPES: &str = "read:core:entities write:core:entities read:grants write:grants";

/// Items per page of a collection; a shorter page is the last one.
pub const PAGE_SIZE: usize = 500;

/// A listing longer than this fails: contacts and grants of an owner account accumulate, so
/// Tapkey's cap is twice the default ([`http::MAX_LISTED`]).
const MAX_LISTED: usize = 200_000;

/// Where and as whom to call Tapkey. The secret's `Debug` is redacted.
#[derive(Clone, Debug)]
pub struct TapkeyConfig {
    /// `https://my.tapkey.com/api/v1` in production.
    pub base_url: String,
    /// `https://login.tapkey.com/connect/token` in production.
    pub token_url: String,
    /// The owner account whose locks Portier manages; the client must be its co-administrator.
    pub owner_account_id: String,
    pub client_id: String,
    pub client_secret: Secret,
}

impl TapkeyConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://my.tapkey.com/api/v1";
    pub const DEFAULT_TOKEN_URL: &'static str = "https://login.tapkey.com/connect/token";

    /// Production URLs for this owner account and client.
    pub fn new(
        owner_account_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<Secret>,
    ) -> Self {
        Self {
            base_url: Self::DEFAULT_BASE_URL.into(),
            token_url: Self::DEFAULT_TOKEN_URL.into(),
            owner_account_id: owner_account_id.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
        }
    }
}

/// Calls one Tapkey owner account. Cheap to share; holds the token cache.
#[derive(Debug)]
pub struct TapkeyClient {
    cfg: TapkeyConfig,
    /// The client-side limit in it is shared by every worker task.
    core: ApiClient,
    /// Set once Tapkey answered 400 to a `$filter` on `identifier`, `contactId` or
    /// `boundLockId` (none is documented): lookups then list and match here.
    field_filters_refused: AtomicBool,
}

impl ClientLimits for TapkeyClient {
    fn core_mut(&mut self) -> &mut ApiClient {
        &mut self.core
    }
}

impl TapkeyClient {
    pub fn new(cfg: TapkeyConfig, http: reqwest::Client, policy: RetryPolicy) -> Self {
        let core = ApiClient { max_listed: MAX_LISTED, ..ApiClient::new(API, &cfg.base_url, http, policy) };
        Self { cfg, core, field_filters_refused: AtomicBool::new(false) }
    }

    pub fn config(&self) -> &TapkeyConfig {
        &self.cfg
    }

    /// One bound lock; `None` when the owner account has no such lock (404).
    pub async fn bound_lock(&self, id: &LockId) -> Result<Option<BoundLock>, CallError> {
        let url = self.owner_url(&format!("BoundLocks/{}", http::path_segment(id.as_str())));
        let reply = self.call(|| self.core.http.get(&url)).await?;
        match reply.status {
            s if s.is_success() => reply.json(&API).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Every lock bound to the owner account.
    pub async fn bound_locks(&self) -> Result<Vec<BoundLock>, CallError> {
        self.list("BoundLocks", None).await
    }

    /// The contact with this email, if there is one.
    pub async fn find_contact(&self, email: &Email) -> Result<Option<Contact>, CallError> {
        let filter = format!("identifier eq {}", http::odata_quote(email.as_str()));
        // Matched here too, in case the filter is ignored.
        let contacts = self.list_where("Contacts", &filter, None, |c: &Contact| c.is(email)).await?;
        Ok(contacts.into_iter().next())
    }

    /// Creates a Tapkey-identity contact for this email, titled with the person's name.
    pub async fn create_contact(
        &self,
        email: &Email,
        title: Option<&str>,
    ) -> Result<CreateContact, CallError> {
        let url = self.owner_url("Contacts");
        let mut body = serde_json::json!({ "ipId": "tapkey", "identifier": email.as_str() });
        if let (Some(t), Some(obj)) = (title.map(str::trim).filter(|t| !t.is_empty()), body.as_object_mut()) {
            obj.insert("title".into(), t.into());
        }
        let reply = self.call(|| self.core.http.put(&url).json(&body)).await?;
        match reply.status {
            s if s.is_success() => reply.json(&API).map(CreateContact::Created),
            _ if is_duplicate(&reply) => Ok(CreateContact::Duplicate),
            StatusCode::CONFLICT => Ok(CreateContact::Duplicate),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Active grants of one contact on one lock (all windows).
    pub async fn active_grants(&self, contact: &ContactId, lock: &LockId) -> Result<Vec<Grant>, CallError> {
        let filter = format!(
            "contactId eq {} and boundLockId eq {} and active eq true",
            http::odata_quote(contact.as_str()),
            http::odata_quote(lock.as_str())
        );
        let wanted = |g: &Grant| {
            g.is_active()
                && g.contact_id.as_deref().is_some_and(|c| c.eq_ignore_ascii_case(contact.as_str()))
                && g.bound_lock_id.as_deref().is_some_and(|l| l.eq_ignore_ascii_case(lock.as_str()))
        };
        // The fallback keeps `active eq true`, the one filter Tapkey's own sample uses.
        self.list_where("Grants", &filter, Some("active eq true"), wanted).await
    }

    /// Every contact of the owner account.
    pub async fn contacts(&self) -> Result<Vec<Contact>, CallError> {
        self.list("Contacts", None).await
    }

    /// Every grant of the owner account matching an OData filter (`None`: all of them).
    pub async fn grants(&self, filter: Option<&str>) -> Result<Vec<Grant>, CallError> {
        self.list("Grants", filter).await
    }

    /// Creates a grant. 402 (plan limit) is a permanent failure with a readable reason; other
    /// 409s than `Duplicate` (a concurrent change) are retryable.
    pub async fn create_grant(&self, grant: &NewGrant) -> Result<CreateGrant, CallError> {
        let url = self.owner_url("Grants");
        let reply = self.call(|| self.core.http.put(&url).json(grant)).await?;
        match reply.status {
            s if s.is_success() => reply.json(&API).map(CreateGrant::Created),
            // The status of a duplicate is not documented; the one public client checks only
            // the code (audit T8).
            _ if is_duplicate(&reply) => Ok(CreateGrant::Duplicate),
            StatusCode::CONFLICT => Err(CallError::Retryable {
                reason: format!("Tapkey answered {} while creating a grant", reply.summary()),
                after: reply.retry_after(),
            }),
            StatusCode::PAYMENT_REQUIRED => Err(CallError::permanent(format!(
                "Tapkey subscription limit reached (402 Payment Required): {}",
                error_message(&reply)
            ))),
            StatusCode::NOT_FOUND => Ok(CreateGrant::NotFound { reason: reply.summary() }),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Revokes a grant (for real: `dryRun=false`). The lock applies it on its next sync.
    pub async fn revoke_grant(&self, id: &GrantId) -> Result<Revoke, CallError> {
        let url = self.owner_url(&format!("Grants/{}/Revoke", http::path_segment(id.as_str())));
        let reply = self.call(|| self.core.http.post(&url).query(&[("dryRun", "false")])).await?;
        match reply.status {
            s if s.is_success() => Ok(Revoke::Revoked),
            StatusCode::NOT_FOUND | StatusCode::CONFLICT => Ok(Revoke::AlreadyGone),
            _ => Err(reply.unexpected(&API)),
        }
    }

    fn owner_url(&self, rest: &str) -> String {
        format!("{}/Owners/{}/{rest}", self.core.base, http::path_segment(&self.cfg.owner_account_id))
    }

    /// All pages of a collection under the owner account.
    async fn list<T: DeserializeOwned>(&self, path: &str, filter: Option<&str>) -> Result<Vec<T>, CallError> {
        self.pages(path, filter).await?.map_err(|reply| reply.unexpected(&API))
    }

    /// The items of a collection that `keep` accepts, asked for with an undocumented field
    /// `filter`. When Tapkey refuses that filter (400) the whole collection is listed, with the
    /// documented `fallback` filter if any, and matched here; the refusal is remembered, so
    /// later lookups skip the doomed call.
    async fn list_where<T: DeserializeOwned>(
        &self,
        path: &str,
        filter: &str,
        fallback: Option<&str>,
        keep: impl Fn(&T) -> bool,
    ) -> Result<Vec<T>, CallError> {
        if !self.field_filters_refused.load(Ordering::Relaxed) {
            match self.pages(path, Some(filter)).await? {
                Ok(items) => return Ok(items.into_iter().filter(|i| keep(i)).collect()),
                Err(reply) if reply.status == StatusCode::BAD_REQUEST => {
                    tracing::warn!(
                        answer = %reply.summary(),
                        "Tapkey refused a $filter on {path}; listing everything and matching locally from now on"
                    );
                    self.field_filters_refused.store(true, Ordering::Relaxed);
                }
                Err(reply) => return Err(reply.unexpected(&API)),
            }
        }
        let items: Vec<T> = self.list(path, fallback).await?;
        Ok(items.into_iter().filter(|i| keep(i)).collect())
    }

    /// All pages, or the first unsuccessful answer for the caller to classify.
    async fn pages<T: DeserializeOwned>(
        &self,
        path: &str,
        filter: Option<&str>,
    ) -> Result<Result<Vec<T>, Reply>, CallError> {
        let url = self.owner_url(path);
        let fetch = |c: Cursor| {
            let url = &url;
            async move {
                let page = [("$top", PAGE_SIZE), ("$skip", c.listed)];
                let filter = filter.map(|f| ("$filter", f));
                let reply = self.call(|| paging::with_query(self.core.http.get(url), &page, filter)).await?;
                if !reply.status.is_success() {
                    return Err(Listing::Refused(reply));
                }
                Ok(paging::bare_or_value(&reply, &API, PAGE_SIZE)?)
            }
        };
        // The guard also stops a server that ignores `$skip` and pages forever.
        match paging::all(fetch, |listed, _, _| self.core.check_listed(listed, path)).await {
            Ok(all) => Ok(Ok(all)),
            Err(Listing::Refused(reply)) => Ok(Err(reply)),
            Err(Listing::Failed(e)) => Err(e),
        }
    }

    /// Sends an authenticated API call: a 401 refreshes the token and tries once more; a second
    /// 401 or a 403 means the credentials or the co-administration are wrong.
    async fn call(&self, build: impl Fn() -> RequestBuilder) -> Result<Reply, CallError> {
        let reply = self
            .core
            .send(
                |_| self.fetch_token(),
                |token| build().bearer_auth(token),
                &format!(": check the client's scopes ({SCOPES})"),
            )
            .await?;
        if reply.status == StatusCode::FORBIDDEN {
            return Err(CallError::config(format!(
                "Tapkey answered {}: the client is not a co-administrator of owner account {} \
                 or lacks a scope ({SCOPES})",
                reply.summary(),
                self.cfg.owner_account_id
            )));
        }
        Ok(reply)
    }

    async fn fetch_token(&self) -> Result<FreshToken, CallError> {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.cfg.client_id.as_str()),
            ("client_secret", self.cfg.client_secret.expose_secret()),
            ("scope", SCOPES),
        ];
        let reply =
            http::send(&self.core.policy, &API, || self.core.http.post(&self.cfg.token_url).form(&form))
                .await?;
        let refused = format!("Tapkey refused the client credentials of client {}", self.cfg.client_id);
        // Client credentials: nothing to refresh with, a new login each time.
        reply.into_login(&API, &refused).map(|t| FreshToken { refresh_token: None, ..t })
    }
}

/// A listing's failure: an answer for the caller to classify, or any other failure.
enum Listing {
    Refused(Reply),
    Failed(CallError),
}

impl From<CallError> for Listing {
    fn from(e: CallError) -> Self {
        Listing::Failed(e)
    }
}

/// `ErrorCode: "Duplicate"` on an unsuccessful answer, whatever its status.
fn is_duplicate(reply: &Reply) -> bool {
    !reply.status.is_success() && reply.error_code().is_some_and(|c| c.eq_ignore_ascii_case("duplicate"))
}

/// Tapkey's `Message` (or the status when there is none).
fn error_message(reply: &Reply) -> String {
    #[derive(Deserialize)]
    struct Body {
        #[serde(alias = "message", default)]
        #[serde(rename = "Message")]
        message: Option<String>,
    }
    serde_json::from_slice::<Body>(&reply.body)
        .ok()
        .and_then(|b| b.message)
        .filter(|m| !m.trim().is_empty())
        .unwrap_or_else(|| reply.summary())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Window;
    use chrono::TimeZone;
    use chrono::{DateTime, Utc};

    fn t(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).single().expect("valid date")
    }

    #[test]
    fn new_grant_body_uses_utc_seconds_and_nulls() {
        let w = Window::new(Some(t(10) + chrono::Duration::milliseconds(250)), None);
        let by_id = NewGrant::new(&"lock-1".into(), GrantHolder::Contact(&"c-1".into()), &w);
        assert_eq!(
            serde_json::to_value(by_id).expect("serialises"),
            serde_json::json!({
                "boundLockId": "lock-1", "contactId": "c-1",
                "validFrom": "2026-12-01T10:00:00Z", "validBefore": null
            })
        );
        let email = Email::parse("anna@example.com").expect("email");
        let inline = NewGrant::new(&"lock-1".into(), GrantHolder::Email(&email), &w);
        assert_eq!(
            serde_json::to_value(inline).expect("serialises"),
            serde_json::json!({
                "boundLockId": "lock-1", "contact": { "identifier": "anna@example.com" },
                "validFrom": "2026-12-01T10:00:00Z", "validBefore": null
            })
        );
    }

    #[test]
    fn grants_read_leniently_and_match_windows_to_the_second() {
        let json = r#"[{"id":"g1","boundLockId":"l","contactId":"c","validFrom":"2026-12-01T10:00:00.000Z",
            "validBefore":null,"state":"Ok","active":true,"extra":1},
            {"id":"g2","validFrom":"2026-12-01T10:00:00","state":"Revoked"}]"#;
        let grants: Vec<Grant> = serde_json::from_str(json).expect("parses");
        assert_eq!(grants.len(), 2);
        let w = Window::new(Some(t(10) + chrono::Duration::milliseconds(400)), None);
        assert!(grants[0].has_window(&w) && grants[0].is_active());
        assert!(!grants[0].has_window(&Window::new(Some(t(10)), Some(t(11)))));
        assert!(grants[1].has_window(&w) && !grants[1].is_active());
    }

    #[test]
    fn contacts_match_either_identifier_field() {
        let email = Email::parse("ann@x.com").expect("valid email");
        let c: Contact = serde_json::from_str(r#"{"id":"1","identifier":"Ann@X.com","email":"Ann@X.com"}"#)
            .expect("parses");
        assert!(c.is(&email));
        let old = Contact { id: "2".into(), identifier: None, email: Some("ann@x.com".into()) };
        assert!(old.is(&email));
    }

    #[test]
    fn config_debug_redacts_the_secret() {
        let cfg = TapkeyConfig::new("owner", "client", "s3cr3t");
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cr3t") && shown.contains("owner"));
    }

    #[test]
    fn lock_label_falls_back_to_the_id() {
        let l: BoundLock =
            serde_json::from_str(r#"{"id":"l-1","title":" ","unbindDate":null}"#).expect("parses");
        assert_eq!(l.label(), "l-1");
        assert_eq!(l.active, None);
    }
}
