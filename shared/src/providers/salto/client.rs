//! Thin typed client of the Salto KS Connect API (`reference/lock-providers.md` §2).
//!
//! Token from the identity host (password grant or a stored refresh token, HTTP Basic client
//! auth, form body), calls on the API host under `/v1.1` (access-group members, time schedules)
//! and `/v1.2` (users, subscription), lists as bare arrays or `{items}`, and
//! `{"ErrorCode","Message"}` errors turned into typed outcomes or classified [`CallError`]s.

use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;

pub use super::dto::{
    AccessGroup, DEFAULT_ROLE_CODE, Entry, NewUser, PatchMembers, PlatformUser, Role, SiteUser, pick_role,
};
use crate::error::CallError;
use crate::http::{self, Api, ApiClient, ClientLimits, FreshToken, Reply, RetryPolicy, Secret};
use crate::model::SaltoGroupId;
use crate::paging::{self, Cursor, Next, Page};
use crate::secrets::ExposeSecret;

const API: Api = Api::new("Salto KS");

/// `user_api.full_access` for the Connect API, `offline_access` for a refresh token.
pub const SCOPES: &str = "user_api.full_access offline_access";

/// Items asked for per page of a listing (`$top`).
pub const PAGE_SIZE: usize = 100;

/// Where and as whom to call Salto KS. The secrets' `Debug` is redacted.
#[derive(Clone, Debug)]
pub struct SaltoConfig {
    /// `https://user.my-clay.com` in production (paths `/v1.x/sites/…` are added).
    pub base_url: String,
    /// `https://identity.eu.my-clay.com/connect/token` in production.
    pub token_url: String,
    /// The site UUID.
    pub site_id: String,
    pub client_id: String,
    pub client_secret: Secret,
    /// Password grant of a dedicated site admin, when set.
    pub username: Option<Secret>,
    pub password: Option<Secret>,
    /// A stored refresh token (used first; rotated ones are kept in memory).
    pub refresh_token: Option<Secret>,
    /// The role new users get: a role's id, `code` or name (`customer_reference`) as
    /// `GET …/roles` lists them; `None` is the site's documented user role, [`DEFAULT_ROLE_CODE`].
    pub user_role: Option<String>,
}

/// Calls one Salto KS site. Cheap to share; holds the token cache.
#[derive(Debug)]
pub struct SaltoClient {
    cfg: SaltoConfig,
    /// The client-side limit in it is shared by every worker task.
    core: ApiClient,
}

impl ClientLimits for SaltoClient {
    fn core_mut(&mut self) -> &mut ApiClient {
        &mut self.core
    }
}

impl SaltoClient {
    pub fn new(cfg: SaltoConfig, http: reqwest::Client, policy: RetryPolicy) -> Self {
        let core = ApiClient::new(API, &cfg.base_url, http, policy);
        Self { cfg, core }
    }

    pub fn config(&self) -> &SaltoConfig {
        &self.cfg
    }

    fn site_url(&self, version: &str, rest: &str) -> String {
        format!("{}/{version}/sites/{}/{rest}", self.core.base, http::path_segment(&self.cfg.site_id))
    }

    /// Creates a site user (Salto KS mails an invitation to `email`).
    /// Tried once: Salto KS accepts the same email twice, so a blind retry after a lost answer
    /// would make a second user. The provider looks the email up before it tries again.
    pub async fn create_user(&self, user: &NewUser<'_>) -> Result<SiteUser, CallError> {
        let url = self.site_url("v1.2", "users");
        let once = RetryPolicy { attempts: 1, ..self.core.policy.clone() };
        let reply = self.call_with(&once, || self.core.http.post(&url).json(user)).await?;
        match reply.status {
            s if s.is_success() => reply.json(&API),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// The site's roles (`GET /v1.1/sites/{site}/roles`, saltoks.com/developers/connect
    /// adding-users-to-a-site: "to see the available roles on your site do GET …/roles").
    pub async fn roles(&self) -> Result<Vec<Role>, CallError> {
        self.list_all(&self.site_url("v1.1", "roles"), "roles").await
    }

    /// The site's access groups, for the console's drop-downs: `GET /v1.1/sites/{site}/access_groups`
    /// (`{items}`, OData `$top`/`$skip`, `next_page_link` followed; reference §2 "Access groups").
    pub async fn access_groups(&self) -> Result<Vec<AccessGroup>, CallError> {
        self.list_all(&self.site_url("v1.1", "access_groups"), "access groups").await
    }

    /// How this client retries (the provider paces its own create-or-find retries by it).
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.core.policy
    }

    /// Every site user (Salto KS has no email filter: list and match).
    pub async fn users(&self) -> Result<Vec<SiteUser>, CallError> {
        self.list_all(&self.site_url("v1.2", "users"), "site users").await
    }

    /// Every member of an access group, for drift and resync: `GET /v1.1/…/access_groups/{ag}/users`
    /// with OData paging and `excluded=false` (a documented query flag; saltoks.com
    /// get-users-in-an-access-group). An item marked excluded anyway does not count either.
    pub async fn group_members(&self, group: &SaltoGroupId) -> Result<Vec<SiteUser>, CallError> {
        let url = self.site_url(
            "v1.1",
            &format!("access_groups/{}/users?excluded=false", http::path_segment(group.as_str())),
        );
        let what = format!("members of access group {group}");
        Ok(self.list_all::<SiteUser>(&url, &what).await?.into_iter().filter(|u| !u.excluded).collect())
    }

    /// Every item of an OData-paged collection ([`paging::items_or_bare`]): `$top`/`$skip`
    /// from the start, then each `next_page_link` as given.
    async fn list_all<T: DeserializeOwned>(&self, url: &str, what: &str) -> Result<Vec<T>, CallError> {
        let top = PAGE_SIZE.to_string();
        let fetch = |c: Cursor| {
            let top = &top;
            async move {
                let reply = match c.link {
                    Some(link) => {
                        let next = self.same_origin(url, &link)?;
                        self.call(|| self.core.http.get(next.clone())).await?
                    }
                    None => {
                        let skip = c.listed.to_string();
                        self.call(|| {
                            self.core.http.get(url).query(&[("$top", top.as_str()), ("$skip", skip.as_str())])
                        })
                        .await?
                    }
                };
                if !reply.status.is_success() {
                    return Err(reply.unexpected(&API));
                }
                paging::items_or_bare(&reply, &API)
            }
        };
        // Also the guard against a server that ignores `$skip` or links in a circle.
        paging::all(fetch, |listed, _, _| self.core.check_listed(listed, what)).await
    }

    /// A `next_page_link` resolved against the listing's URL. Only the API host is followed:
    /// the bearer token never goes to another origin.
    fn same_origin(&self, url: &str, link: &str) -> Result<reqwest::Url, CallError> {
        let base = reqwest::Url::parse(url)
            .map_err(|e| CallError::config(format!("Salto KS base URL {url} is not a URL ({e})")))?;
        let next = base
            .join(link)
            .map_err(|e| CallError::permanent(format!("Salto KS sent an unusable next_page_link ({e})")))?;
        if next.origin() != base.origin() {
            return Err(CallError::permanent(format!(
                "Salto KS sent a next_page_link to another host ({}): not followed",
                next.host_str().unwrap_or("?")
            )));
        }
        Ok(next)
    }

    /// The site's entries (door events) at or after `from`, oldest first:
    /// `GET /v1.1/sites/{s}/entries` (v1.1 only; v1.2 answers 405) newest first, the form
    /// measured (`$orderby=utc_date_time desc`; `$orderby=date` → 400 1102; ECCdigital
    /// salto-ks-api-contract.md). The `$filter` on `utc_date_time` is OData as documented for
    /// the other lists but inferred here, so paging also stops at the first page that reaches
    /// back past `from`: a server that ignores the filter costs a page, not the whole history.
    pub async fn entries_since(&self, from: chrono::DateTime<chrono::Utc>) -> Result<Vec<Entry>, CallError> {
        let url = self.site_url("v1.1", "entries");
        let filter = format!("utc_date_time ge {}", from.format("%Y-%m-%dT%H:%M:%SZ"));
        let top = PAGE_SIZE.to_string();
        let fetch = |c: Cursor| {
            let (url, filter, top) = (&url, &filter, &top);
            async move {
                let skip = c.listed.to_string();
                let reply = self
                    .call(|| {
                        self.core.http.get(url).query(&[
                            ("$filter", filter.as_str()),
                            ("$orderby", "utc_date_time desc"),
                            ("$top", top.as_str()),
                            ("$skip", skip.as_str()),
                        ])
                    })
                    .await?;
                if !reply.status.is_success() {
                    return Err(reply.unexpected(&API));
                }
                let page = paging::items_or_bare::<Entry>(&reply, &API)?;
                let len = page.items.len();
                let reached = page.items.iter().any(|e| e.at().is_some_and(|t| t < from));
                let items: Vec<Entry> =
                    page.items.into_iter().filter(|e| e.at().is_none_or(|t| t >= from)).collect();
                let next = if len < PAGE_SIZE || reached { Next::Done } else { Next::Following };
                Ok(Page { items, next })
            }
        };
        let mut all = paging::all(fetch, |listed, _, _| self.core.check_listed(listed, "entries")).await?;
        all.reverse();
        Ok(all)
    }

    /// Deletes a site user (202; the seat is freed at once). Already gone (404) counts as done.
    pub async fn delete_user(&self, site_user_id: &str) -> Result<(), CallError> {
        let url = self.site_url("v1.2", &format!("users/{}", http::path_segment(site_user_id)));
        let reply = self.call(|| self.core.http.delete(&url)).await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Suspends (`"suspended"`) or unsuspends (`"subscribed"`) a site user.
    pub async fn set_subscription(&self, site_user_id: &str, state: &str) -> Result<(), CallError> {
        let url = self.site_url("v1.2", &format!("users/{}/subscription", http::path_segment(site_user_id)));
        let body = serde_json::json!({ "state": state });
        let reply = self.call(|| self.core.http.patch(&url).json(&body)).await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND if reply.error_code().as_deref() == Some("2202") => {
                Err(CallError::permanent(format!("Salto KS user {site_user_id} no longer exists (404 2202)")))
            }
            StatusCode::FORBIDDEN if reply.error_code().as_deref() == Some("2212") => {
                Err(CallError::permanent(format!(
                    "Salto KS site has no subscription for this ({})",
                    reply.summary()
                )))
            }
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Adds and removes members of one access group in one call (platform user ids).
    pub async fn patch_members(
        &self,
        group: &SaltoGroupId,
        add_ids: &[String],
        remove_ids: &[String],
    ) -> Result<PatchMembers, CallError> {
        let url =
            self.site_url("v1.1", &format!("access_groups/{}/users", http::path_segment(group.as_str())));
        let body = serde_json::json!({ "add_ids": add_ids, "remove_ids": remove_ids });
        let reply = self.call(|| self.core.http.patch(&url).json(&body)).await?;
        let code = reply.error_code();
        match (reply.status, code.as_deref()) {
            (s, _) if s.is_success() => Ok(PatchMembers::Done),
            (StatusCode::NOT_FOUND, Some("2202")) => Ok(PatchMembers::UserNotFound(reply.summary())),
            (StatusCode::FORBIDDEN, Some("2203")) => Ok(PatchMembers::NotExecutable(reply.summary())),
            (StatusCode::NOT_FOUND, _) => Ok(PatchMembers::GroupNotFound(reply.summary())),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// How many time schedules an access group has; `None` when the group does not exist.
    pub async fn time_schedule_count(&self, group: &SaltoGroupId) -> Result<Option<usize>, CallError> {
        let url = self.site_url(
            "v1.1",
            &format!("access_groups/{}/time_schedules", http::path_segment(group.as_str())),
        );
        let reply = self.call(|| self.core.http.get(&url)).await?;
        match reply.status {
            s if s.is_success() => Ok(Some(list_body::<serde_json::Value>(&reply)?.len())),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// An authenticated call: a 401 fetches a new token and tries once more; a second 401 or
    /// a 403 other than Salto's operation codes is a configuration problem.
    async fn call(&self, build: impl Fn() -> RequestBuilder) -> Result<Reply, CallError> {
        self.call_with(&self.core.policy, build).await
    }

    /// [`Self::call`] with another retry policy.
    async fn call_with(
        &self,
        policy: &RetryPolicy,
        build: impl Fn() -> RequestBuilder,
    ) -> Result<Reply, CallError> {
        let reply = self
            .core
            .send_with(
                policy,
                |previous| self.fetch_token(previous),
                |token| build().bearer_auth(token),
                &format!(": check the scopes ({SCOPES}) and that the Connect API is enabled for the tenant"),
            )
            .await?;
        if reply.status == StatusCode::FORBIDDEN && reply.error_code().is_none() {
            return Err(CallError::config(format!(
                "Salto KS answered {}: the account has no access to site {}",
                reply.summary(),
                self.cfg.site_id
            )));
        }
        Ok(reply)
    }

    /// A refresh grant with the newest refresh token when there is one, else the password grant.
    async fn fetch_token(&self, previous: Option<Secret>) -> Result<FreshToken, CallError> {
        let refresh = previous.or_else(|| self.cfg.refresh_token.clone());
        if let Some(refresh) = refresh {
            let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.expose_secret())];
            match self.token_request(&form).await {
                Ok(t) => return Ok(t),
                Err(e) if self.cfg.username.is_none() => return Err(e),
                // An expired refresh token: log in again with the password.
                Err(_) => {}
            }
        }
        let (Some(username), Some(password)) = (&self.cfg.username, &self.cfg.password) else {
            return Err(CallError::config("Salto KS: no refresh token and no username/password configured"));
        };
        let form = [
            ("grant_type", "password"),
            ("username", username.expose_secret()),
            ("password", password.expose_secret()),
            ("scope", SCOPES),
        ];
        self.token_request(&form).await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<FreshToken, CallError> {
        let reply = http::send(&self.core.policy, &API, || {
            self.core
                .http
                .post(&self.cfg.token_url)
                .basic_auth(&self.cfg.client_id, Some(self.cfg.client_secret.expose_secret()))
                .form(form)
        })
        .await?;
        let refused = format!("Salto KS identity server refused the login of client {}", self.cfg.client_id);
        reply.into_login(&API, &refused)
    }
}

fn list_body<T: DeserializeOwned>(reply: &Reply) -> Result<Vec<T>, CallError> {
    paging::items_or_bare(reply, &API).map(|p| p.items)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Email;

    #[test]
    fn users_read_both_ids_and_both_envelopes() {
        let json = r#"{"items":[{"id":"su-1","user":{"id":"pu-1"},"email":"Ann@X.com","subscription_state":"subscribed"}],"count":1}"#;
        let reply =
            Reply { status: StatusCode::OK, headers: Default::default(), body: json.as_bytes().to_vec() };
        let users: Vec<SiteUser> = list_body(&reply).expect("envelope");
        assert_eq!(users[0].platform_id(), Some("pu-1"));
        assert!(users[0].is(&Email::parse("ann@x.com").expect("valid")));
        assert!(users[0].is_subscribed());
        let bare = Reply { body: br#"[{"id":"su-2","subscription_state":"suspended"}]"#.to_vec(), ..reply };
        let users: Vec<SiteUser> = list_body(&bare).expect("bare");
        assert!(!users[0].is_subscribed());
    }

    #[test]
    fn config_debug_redacts_secrets() {
        let cfg = SaltoConfig {
            base_url: "b".into(),
            token_url: "t".into(),
            site_id: "site".into(),
            client_id: "c".into(),
            client_secret: "s3cr3t".into(),
            username: Some("admin@x.com".into()),
            password: Some("pw-hunter2".into()),
            refresh_token: Some("rt-xyz".into()),
            user_role: None,
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("s3cr3t") && !shown.contains("hunter2") && !shown.contains("rt-xyz"));
        assert!(!shown.contains("admin@x.com") && shown.contains("site"));
    }
}
