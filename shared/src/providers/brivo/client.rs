//! Thin typed client of the Brivo Access API (`reference/lock-providers.md` §3).
//!
//! Every call carries the `api-key` header and a bearer token from the password grant (HTTP
//! Basic client auth, form body). Tokens live 300 s: the cache refreshes them ahead of expiry
//! and once on a 401. Lists are `{data, offset, pageSize, count}` paged by at most 100. The
//! gateway throttles with 429 or an HTML 403 "Over Qps", both retried by [`http::send`]; its
//! daily quota ("Over Rate") is a retryable failure with a long wait.
//!
//! Paths follow Brivo's OpenAPI files as mirrored in `ThatGuyinIT/brivo-velocity`
//! (`references/tags/{user,group,digital_invitations}.yaml`); see `docs/providers.md`.

use reqwest::{RequestBuilder, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;

pub use super::dto::{EmailAddress, GroupChange, GroupRef, Invite, NewUser, User, UserEmail};
pub use super::gateway::OVER_RATE_WAIT;
use super::gateway::{is_over_qps, is_over_rate, over_rate};
use crate::error::CallError;
use crate::http::{self, Api, ApiClient, ClientLimits, FreshToken, Reply, RetryPolicy, Secret};
use crate::paging::{self, Cursor};
use crate::secrets::ExposeSecret;

const API: Api = Api::with_throttle("Brivo", is_over_qps);

/// Brivo's own page-size limit.
pub const PAGE_SIZE: usize = 100;

/// A user may be a member of at most this many groups.
pub const MAX_GROUPS_PER_USER: usize = 16;

/// Where and as whom to call Brivo. The secrets' `Debug` is redacted.
#[derive(Clone, Debug)]
pub struct BrivoConfig {
    /// `https://api.brivo.com/v1/api` in production.
    pub base_url: String,
    /// `https://auth.brivo.com/oauth/token` in production.
    pub token_url: String,
    pub api_key: Secret,
    pub client_id: String,
    pub client_secret: Secret,
    /// The administrator's login (password grant).
    pub username: Secret,
    pub password: Secret,
}

/// Calls one Brivo account. Cheap to share; holds the token cache.
#[derive(Debug)]
pub struct BrivoClient {
    cfg: BrivoConfig,
    /// The client-side limit in it is shared by every worker task.
    core: ApiClient,
}

impl ClientLimits for BrivoClient {
    fn core_mut(&mut self) -> &mut ApiClient {
        &mut self.core
    }
}

impl BrivoClient {
    pub fn new(cfg: BrivoConfig, http: reqwest::Client, policy: RetryPolicy) -> Self {
        let core = ApiClient::new(API, &cfg.base_url, http, policy);
        Self { cfg, core }
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

    /// The groups a user belongs to (`GET /users/{userId}/groups`, `ListUsersGroups` in
    /// user.yaml: `{count, data: [{id, name}]}`, unpaged: at most 16). `None` when the user is
    /// gone (404).
    pub async fn user_groups(&self, id: &str) -> Result<Option<Vec<GroupRef>>, CallError> {
        #[derive(Deserialize)]
        struct Groups {
            #[serde(default)]
            data: Vec<GroupRef>,
        }
        let url = self.url(&format!("users/{}/groups", http::path_segment(id)));
        let reply = self.call(|| self.core.http.get(&url)).await?;
        match reply.status {
            s if s.is_success() => Ok(Some(reply.json::<Groups>(&API)?.data)),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Adds a user to a group: `PUT /groups/{groupId}/users/{userId}` (`AddUserToGroup` in
    /// group.yaml; 204, 400 "…already exist in a linked group", 404 "Group not found").
    pub async fn add_to_group(&self, user: &str, group: &str) -> Result<GroupChange, CallError> {
        let url = self.member_url(user, group);
        let reply = self.call(|| self.core.http.put(&url)).await?;
        membership_answer(&reply)
    }

    /// Takes a user out of a group: `DELETE /groups/{groupId}/users/{userId}`
    /// (`RemoveUserFromGroup` in group.yaml; 204, 400, 404).
    pub async fn remove_from_group(&self, user: &str, group: &str) -> Result<GroupChange, CallError> {
        let url = self.member_url(user, group);
        let reply = self.call(|| self.core.http.delete(&url)).await?;
        membership_answer(&reply)
    }

    fn member_url(&self, user: &str, group: &str) -> String {
        self.url(&format!("groups/{}/users/{}", http::path_segment(group), http::path_segment(user)))
    }

    /// Sends a Mobile Pass invitation to the user's email. `nfcEnabled` and `language` are
    /// marked required in digital_invitations.yaml (`CreateUserDigitalInvitation`), so they are
    /// sent with their documented defaults.
    pub async fn invite(&self, id: &str) -> Result<Invite, CallError> {
        let url = self.url(&format!("users/{}/credentials/digital-invitations", http::path_segment(id)));
        let query = [("sendInvitationEmail", "true"), ("nfcEnabled", "false"), ("language", "en")];
        let reply = self.call(|| self.core.http.post(&url).query(&query)).await?;
        match reply.status {
            s if s.is_success() => Ok(Invite::Sent),
            StatusCode::CONFLICT => Ok(Invite::AlreadyPending),
            StatusCode::PRECONDITION_FAILED => Ok(Invite::NoPassesLeft(reply.summary())),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Cancels the user's pending Mobile Pass invitation: `DELETE
    /// /users/{userId}/credentials/digital-invitations` (`Cancel_user_digital_invitation` in
    /// digital_invitations.yaml, which takes no invitation id). `false` when there was none
    /// (404 "Digital invitation not found"), which also covers a user already gone.
    pub async fn cancel_invitation(&self, id: &str) -> Result<bool, CallError> {
        let url = self.url(&format!("users/{}/credentials/digital-invitations", http::path_segment(id)));
        let reply = self.call(|| self.core.http.delete(&url)).await?;
        match reply.status {
            s if s.is_success() => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Every member of a group (`GET /groups/{id}/users`, 100 a page), for drift and resync.
    /// group.yaml: "only available to Brivo Account Config Tool Administrators", so a 403 is
    /// a configuration problem that names the role.
    pub async fn group_members(&self, group: &str) -> Result<Vec<User>, CallError> {
        let path = format!("groups/{}/users", http::path_segment(group));
        self.list(&path, None).await.map_err(|e| {
            forbidden_needs_role(e, &format!("listing the members of group {group}"), "listing group members")
        })
    }

    /// Every group of the account, for the console's drop-downs: `GET /groups` (`ListGroups` in
    /// group.yaml, `{data:[{id, name}], offset, pageSize, count}`), 100 a page. Like every group
    /// call it needs the "Account Config Tool Administrators" role, which a 403 names.
    pub async fn groups(&self) -> Result<Vec<GroupRef>, CallError> {
        self.list("groups", None)
            .await
            .map_err(|e| forbidden_needs_role(e, "listing the groups", "listing groups"))
    }

    /// All pages of a `{data, offset, pageSize, count}` list ([`paging::data_offset`]), 100 at
    /// a time; a 403 is handed back for the caller to name the missing permission.
    async fn list<T: DeserializeOwned>(&self, path: &str, filter: Option<&str>) -> Result<Vec<T>, Forbidden> {
        let url = self.url(path);
        let fetch = |c: Cursor| {
            let url = &url;
            async move {
                let page = [("offset", c.listed), ("pageSize", PAGE_SIZE)];
                let filter = filter.map(|f| ("filter", f));
                let reply = self.call(|| paging::with_query(self.core.http.get(url), &page, filter)).await?;
                if reply.status == StatusCode::FORBIDDEN {
                    return Err(Forbidden::Reply(reply));
                }
                if !reply.status.is_success() {
                    return Err(reply.unexpected(&API).into());
                }
                Ok(paging::data_offset(&reply, &API, PAGE_SIZE)?)
            }
        };
        // Also the guard against a server that ignores `offset` and pages forever.
        paging::all(fetch, |listed, _, _| self.core.check_listed(listed, path)).await
    }

    /// An authenticated call with `api-key`: a 401 refreshes the token and tries once more; a
    /// second 401, or a 403 HTML "Developer Inactive", is a configuration problem; a 403 "Over
    /// Rate" (daily quota) is retryable later.
    async fn call(&self, build: impl Fn() -> RequestBuilder) -> Result<Reply, CallError> {
        let reply = self
            .core
            .send(
                |previous| self.fetch_token(previous),
                |token| build().header("api-key", self.cfg.api_key.expose_secret()).bearer_auth(token),
                "",
            )
            .await?;
        if is_over_rate(&reply) {
            return Err(over_rate(&reply));
        }
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
                .token_request(&[("grant_type", "refresh_token"), ("refresh_token", refresh.expose_secret())])
                .await
        {
            return Ok(t);
        }
        let form = [
            ("grant_type", "password"),
            ("username", self.cfg.username.expose_secret()),
            ("password", self.cfg.password.expose_secret()),
        ];
        self.token_request(&form).await
    }

    async fn token_request(&self, form: &[(&str, &str)]) -> Result<FreshToken, CallError> {
        let reply = http::send(&self.core.policy, &API, || {
            self.core
                .http
                .post(&self.cfg.token_url)
                .header("api-key", self.cfg.api_key.expose_secret())
                .basic_auth(&self.cfg.client_id, Some(self.cfg.client_secret.expose_secret()))
                .form(form)
        })
        .await?;
        // The daily quota's 403 is no refused login.
        if is_over_rate(&reply) {
            return Err(over_rate(&reply));
        }
        reply.into_login(&API, &format!("Brivo refused the login of client {}", self.cfg.client_id))
    }
}

/// A listing's failure: a 403 for the caller to explain, or any other failure.
enum Forbidden {
    Reply(Reply),
    Other(CallError),
}

impl From<CallError> for Forbidden {
    fn from(e: CallError) -> Self {
        Forbidden::Other(e)
    }
}

/// A group listing's 403 as the configuration error it is: the admin lacks the role
/// group.yaml requires ("only available to Brivo Account Config Tool Administrators").
fn forbidden_needs_role(e: Forbidden, doing: &str, needs: &str) -> CallError {
    match e {
        Forbidden::Reply(reply) => CallError::config(format!(
            "Brivo refused {doing} ({}): {needs} needs an administrator with the \"Account Config Tool \
             Administrators\" role",
            reply.summary()
        )),
        Forbidden::Other(e) => e,
    }
}

fn membership_answer(reply: &Reply) -> Result<GroupChange, CallError> {
    match reply.status {
        s if s.is_success() => Ok(GroupChange::Done),
        StatusCode::BAD_REQUEST => Ok(GroupChange::Refused(reply.summary())),
        StatusCode::NOT_FOUND => Ok(GroupChange::NotFound(reply.summary())),
        _ => Err(reply.unexpected(&API)),
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
        assert!(!is_over_qps(&reply(403, "<h1>Developer Over Rate</h1>")));
    }

    #[test]
    fn the_daily_quota_403_is_told_apart_from_a_bad_key() {
        assert!(is_over_rate(&reply(403, "<h1>Developer Over Rate</h1>")));
        assert!(!is_over_rate(&reply(403, "<h1>Developer Inactive</h1>")));
        let mut by_header = reply(403, "");
        by_header
            .headers
            .insert("x-mashery-error-code", "ERR_403_DEVELOPER_OVER_RATE".parse().expect("value"));
        assert!(is_over_rate(&by_header));
        let e = over_rate(&reply(403, "<h1>Developer Over Rate</h1>"));
        assert!(matches!(e, CallError::Retryable { after: Some(OVER_RATE_WAIT), .. }), "{e:?}");
    }

    #[test]
    fn config_debug_redacts_the_secrets() {
        let cfg = BrivoConfig {
            base_url: "b".into(),
            token_url: "t".into(),
            api_key: "k-123".into(),
            client_id: "client-9".into(),
            client_secret: "s3cr3t".into(),
            username: "admin-7781".into(),
            password: "pw-hunter2".into(),
        };
        let shown = format!("{cfg:?}");
        assert!(!["k-123", "s3cr3t", "admin-7781", "hunter2"].iter().any(|s| shown.contains(s)), "{shown}");
        assert!(shown.contains("client-9"), "{shown}");
    }

    #[test]
    fn user_ids_are_numbers_kept_as_text() {
        let u: User = serde_json::from_str(r#"{"id":442211,"externalId":"t#nexudus#1","suspended":false}"#)
            .expect("parses");
        assert_eq!(u.id(), "442211");
    }
}
