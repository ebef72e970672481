//! Thin typed client of the Brivo Access API (`reference/lock-providers.md` §3).
//!
//! Every call carries the `api-key` header and a bearer token from the password grant (HTTP
//! Basic client auth, form body). Tokens live 300 s: the cache refreshes them ahead of expiry
//! and once on a 401. Lists are `{data, offset, pageSize, count}` paged by at most 100. The
//! gateway throttles with 429 or an HTML 403 "Over Qps", both retried by [`http::send`].

use std::fmt;

use reqwest::{RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::error::CallError;
use crate::http::{self, Api, ApiClient, FreshToken, RateLimit, Reply, RetryPolicy, Secret};

const API: Api = Api::with_throttle("Brivo", is_over_qps);

/// Brivo's own page-size limit.
pub const PAGE_SIZE: usize = 100;

/// A user may be a member of at most this many groups.
pub const MAX_GROUPS_PER_USER: usize = 16;

/// The Mashery gateway's throttle: `403` with an HTML body naming "Over Qps".
fn is_over_qps(reply: &Reply) -> bool {
    reply.status == StatusCode::FORBIDDEN
        && serde_json::from_slice::<serde_json::Value>(&reply.body).is_err()
        && String::from_utf8_lossy(&reply.body).to_ascii_lowercase().contains("over qps")
}

/// Where and as whom to call Brivo. `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct BrivoConfig {
    /// `https://api.brivo.com/v1/api` in production.
    pub base_url: String,
    /// `https://auth.brivo.com/oauth/token` in production.
    pub token_url: String,
    pub api_key: String,
    pub client_id: String,
    pub client_secret: String,
    /// The administrator's login (password grant).
    pub username: String,
    pub password: String,
}

impl fmt::Debug for BrivoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrivoConfig")
            .field("base_url", &self.base_url)
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .field("api_key", &"***")
            .field("client_secret", &"***")
            .field("username", &"***")
            .field("password", &"***")
            .finish()
    }
}

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

/// A group as listed in a user's memberships.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct GroupRef {
    pub id: serde_json::Value,
}

/// What `POST /users/{id}/groups` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeGroups {
    /// The resulting memberships.
    Done(usize),
    /// 400: refused as a whole, nothing applied (the 16-group cap is the usual cause; Brivo's
    /// wording of it is not documented, so any 400 is reported with the cap as the likely why).
    Refused(String),
    /// 404: the user or a group does not exist.
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

/// Calls one Brivo account. Cheap to share; holds the token cache.
pub struct BrivoClient {
    cfg: BrivoConfig,
    /// The client-side limit in it is shared by every worker task.
    core: ApiClient,
}

impl fmt::Debug for BrivoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrivoClient").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl BrivoClient {
    pub fn new(cfg: BrivoConfig, http: reqwest::Client, policy: RetryPolicy) -> Self {
        let core = ApiClient::new(API, &cfg.base_url, http, policy);
        Self { cfg, core }
    }

    /// Keeps API calls at or under `per_second` (each spaced, no bursts) so a busy tenant
    /// stays under the provider's limit instead of collecting 429s; `None` = no limit.
    pub fn with_calls_per_second(mut self, per_second: Option<f64>) -> Self {
        self.core.limit = RateLimit::spaced(per_second);
        self
    }

    /// Fails any listing of more than `max` items (default [`http::MAX_LISTED`]) instead of
    /// trusting it.
    pub fn with_max_listed(mut self, max: usize) -> Self {
        self.core.max_listed = max;
        self
    }

    fn url(&self, rest: &str) -> String {
        format!("{}/{rest}", self.core.base)
    }

    /// The user with this `externalId`, if any.
    pub async fn user_by_external_id(&self, external_id: &str) -> Result<Option<User>, CallError> {
        let url = self.url(&format!("users/{}/external", http::path_segment(external_id)));
        let reply = self.call(|| self.core.http.get(&url)).await?;
        match reply.status {
            s if s.is_success() => reply.json(&API).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(reply.unexpected(&API)),
        }
    }

    pub async fn create_user(&self, user: &NewUser<'_>) -> Result<User, CallError> {
        let url = self.url("users");
        let reply = self.call(|| self.core.http.post(&url).json(user)).await?;
        match reply.status {
            s if s.is_success() => reply.json(&API),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Deletes a user; already gone (404) counts as done.
    pub async fn delete_user(&self, id: &str) -> Result<(), CallError> {
        let url = self.url(&format!("users/{}", http::path_segment(id)));
        let reply = self.call(|| self.core.http.delete(&url)).await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Ok(()),
            _ => Err(reply.unexpected(&API)),
        }
    }

    pub async fn set_suspended(&self, id: &str, suspended: bool) -> Result<(), CallError> {
        let url = self.url(&format!("users/{}/suspended", http::path_segment(id)));
        let body = serde_json::json!({ "suspended": suspended });
        let reply = self.call(|| self.core.http.put(&url).json(&body)).await?;
        match reply.status {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => {
                Err(CallError::permanent(format!("Brivo user {id} no longer exists (404)")))
            }
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Adds and removes group memberships of one user in one call (idempotent; all or nothing).
    pub async fn change_groups(
        &self,
        id: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<ChangeGroups, CallError> {
        let url = self.url(&format!("users/{}/groups", http::path_segment(id)));
        let as_numbers = |ids: &[String]| -> Vec<serde_json::Value> {
            ids.iter()
                .map(|g| {
                    g.parse::<u64>()
                        .map_or_else(|_| serde_json::Value::from(g.as_str()), serde_json::Value::from)
                })
                .collect()
        };
        let body = serde_json::json!({ "addGroups": as_numbers(add), "removeGroups": as_numbers(remove) });
        let reply = self.call(|| self.core.http.post(&url).json(&body)).await?;
        match reply.status {
            s if s.is_success() => {
                #[derive(Deserialize)]
                struct Groups {
                    #[serde(default)]
                    data: Vec<GroupRef>,
                }
                Ok(ChangeGroups::Done(reply.json::<Groups>(&API)?.data.len()))
            }
            StatusCode::BAD_REQUEST => Ok(ChangeGroups::Refused(reply.summary())),
            StatusCode::NOT_FOUND => Ok(ChangeGroups::NotFound(reply.summary())),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Sends a Mobile Pass invitation to the user's email.
    pub async fn invite(&self, id: &str) -> Result<Invite, CallError> {
        let url = self.url(&format!("users/{}/credentials/digital-invitations", http::path_segment(id)));
        let reply = self.call(|| self.core.http.post(&url).query(&[("sendInvitationEmail", "true")])).await?;
        match reply.status {
            s if s.is_success() => Ok(Invite::Sent),
            StatusCode::CONFLICT => Ok(Invite::AlreadyPending),
            StatusCode::PRECONDITION_FAILED => Ok(Invite::NoPassesLeft(reply.summary())),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Cancels every pending Mobile Pass invitation of a user.
    pub async fn cancel_invitations(&self, id: &str) -> Result<usize, CallError> {
        let path = format!("users/{}/credentials/digital-invitations", http::path_segment(id));
        #[derive(Deserialize)]
        struct Invitation {
            id: serde_json::Value,
        }
        let pending: Vec<Invitation> = self.list(&path, Some("status__eq:pending")).await?;
        for inv in &pending {
            let inv_id = match &inv.id {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let url = self.url(&format!("{path}/{}", http::path_segment(&inv_id)));
            let reply = self.call(|| self.core.http.delete(&url)).await?;
            if !reply.status.is_success() && reply.status != StatusCode::NOT_FOUND {
                return Err(reply.unexpected(&API));
            }
        }
        Ok(pending.len())
    }

    /// Every member of a group (`GET /groups/{id}/users`, 100 a page), for drift and resync.
    pub async fn group_members(&self, group: &str) -> Result<Vec<User>, CallError> {
        self.list(&format!("groups/{}/users", http::path_segment(group)), None).await
    }

    /// All pages of a `{data, offset, pageSize, count}` list, 100 at a time.
    async fn list<T: DeserializeOwned>(&self, path: &str, filter: Option<&str>) -> Result<Vec<T>, CallError> {
        #[derive(Deserialize)]
        struct Page<T> {
            #[serde(default = "Vec::new")]
            data: Vec<T>,
        }
        let url = self.url(path);
        let mut all = Vec::new();
        loop {
            let (offset, size) = (all.len().to_string(), PAGE_SIZE.to_string());
            let reply = self
                .call(|| {
                    let req = self
                        .core
                        .http
                        .get(&url)
                        .query(&[("offset", offset.as_str()), ("pageSize", size.as_str())]);
                    match filter {
                        Some(f) => req.query(&[("filter", f)]),
                        None => req,
                    }
                })
                .await?;
            if !reply.status.is_success() {
                return Err(reply.unexpected(&API));
            }
            let page: Page<T> = reply.json(&API)?;
            let len = page.data.len();
            all.extend(page.data);
            // Also the guard against a server that ignores `offset` and pages forever.
            self.core.check_listed(all.len(), path)?;
            if len < PAGE_SIZE {
                return Ok(all);
            }
        }
    }

    /// An authenticated call with `api-key`: a 401 refreshes the token and tries once more; a
    /// second 401, or a 403 HTML "Developer Inactive", is a configuration problem.
    async fn call<F>(&self, build: F) -> Result<Reply, CallError>
    where
        F: Fn() -> RequestBuilder,
    {
        let reply = self
            .core
            .send(
                |previous| self.fetch_token(previous),
                |token| build().header("api-key", &self.cfg.api_key).bearer_auth(token),
                "",
            )
            .await?;
        if reply.status == StatusCode::FORBIDDEN
            && serde_json::from_slice::<serde_json::Value>(&reply.body).is_err()
        {
            return Err(CallError::config(format!(
                "Brivo's gateway refused the api-key ({}): check api_key_env",
                reply.summary()
            )));
        }
        Ok(reply)
    }

    /// A refresh grant when a refresh token is known; the password grant otherwise or when the
    /// refresh is refused.
    async fn fetch_token(&self, previous: Option<Secret>) -> Result<FreshToken, CallError> {
        if let Some(refresh) = previous
            && let Ok(t) = self
                .token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh.expose())])
                .await
        {
            return Ok(t);
        }
        let form = [
            ("grant_type", "password"),
            ("username", self.cfg.username.as_str()),
            ("password", self.cfg.password.as_str()),
        ];
        self.token_request(&form).await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<FreshToken, CallError> {
        let reply = http::send(&self.core.policy, &API, || {
            self.core
                .http
                .post(&self.cfg.token_url)
                .header("api-key", &self.cfg.api_key)
                .basic_auth(&self.cfg.client_id, Some(&self.cfg.client_secret))
                .form(form)
        })
        .await?;
        match reply.status {
            s if s.is_success() => reply.oauth_token(&API),
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
                Err(CallError::config(format!(
                    "Brivo refused the login of client {} ({})",
                    self.cfg.client_id,
                    reply.summary()
                )))
            }
            _ => Err(reply.unexpected(&API)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderMap;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            headers: HeaderMap::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn only_the_html_over_qps_403_is_a_throttle() {
        assert!(is_over_qps(&reply(403, "<h1>Developer Over Qps</h1>")));
        assert!(!is_over_qps(&reply(403, "<h1>Developer Inactive</h1>")));
        assert!(!is_over_qps(&reply(403, r#"{"code":403,"message":"Over Qps"}"#)));
        assert!(!is_over_qps(&reply(429, "<h1>Developer Over Qps</h1>")));
    }

    #[test]
    fn user_ids_are_numbers_kept_as_text() {
        let u: User = serde_json::from_str(r#"{"id":442211,"externalId":"t#nexudus#1","suspended":false}"#)
            .expect("parses");
        assert_eq!(u.id(), "442211");
    }
}
