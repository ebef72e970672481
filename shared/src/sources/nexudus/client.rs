//! Thin typed client of the Nexudus REST API (`reference/source-systems.md` §1.4).
//!
//! Password-grant token with a stable `client_id` header, cached for its week-long life and
//! renewed with the refresh token (falling back to the password when the refresh token is gone);
//! a 401 refreshes once. Nexudus throttles with **409** + `Retry-After`, which the shared retry
//! helper treats like a 429 (the client only reads, so a 409 is never a real conflict).

use reqwest::{RequestBuilder, StatusCode};

use super::dto::{Booking, Coworker, CoworkerContract, CoworkerTimePass, FloorPlanDesk, Team, Visitor};
pub use super::limits::{
    DEFAULT_CALLS_PER_MINUTE, DOCUMENTED_QUOTAS, WINDOW_MARGIN, held, installation_client_id, quotas_for,
};
use crate::error::CallError;
use crate::http::{self, Api, ApiClient, FreshToken, RateLimit, Reply, RetryPolicy, Secret};
use crate::paging::{self, Cursor};
use crate::secrets::ExposeSecret;

mod checkins;

const API: Api = Api::with_throttle("Nexudus", is_throttle);

/// Nexudus answers 409 with `Retry-After` when a rate limit is hit.
fn is_throttle(reply: &Reply) -> bool {
    reply.status == StatusCode::CONFLICT
}

/// Records per page when listing.
pub const PAGE_SIZE: u32 = 100;

/// Ids per batch read. The documentation gives no maximum (inferred: 50 keeps the URL short).
pub const BATCH_SIZE: usize = 50;

/// A list still claiming more pages after this many is refused rather than followed forever.
const MAX_PAGES: u32 = 1000;

/// Where and as whom to call Nexudus. The login's `Debug` is redacted.
#[derive(Clone, Debug)]
pub struct NexudusConfig {
    /// `https://spaces.nexudus.com/api` (the token endpoint must use this host, not a portal).
    pub base_url: String,
    pub username: Secret,
    pub password: Secret,
}

impl NexudusConfig {
    pub const DEFAULT_BASE_URL: &'static str = "https://spaces.nexudus.com/api";

    /// The production API for this admin user.
    pub fn new(username: impl Into<Secret>, password: impl Into<Secret>) -> Self {
        Self { base_url: Self::DEFAULT_BASE_URL.into(), username: username.into(), password: password.into() }
    }
}

/// Reads one Nexudus account. Cheap to share; holds the token cache.
#[derive(Debug)]
pub struct NexudusClient {
    cfg: NexudusConfig,
    /// Its limit: [`DOCUMENTED_QUOTAS`] or a share of them.
    core: ApiClient,
    /// Sent as the `client_id` header: Nexudus ties refresh tokens to it.
    /// [`installation_client_id`].
    client_id: String,
}

impl NexudusClient {
    pub fn new(cfg: NexudusConfig, http: reqwest::Client, policy: RetryPolicy) -> Self {
        let mut core = ApiClient::new(API, &cfg.base_url, http, policy);
        core.limit = Some(RateLimit::new(&held(DOCUMENTED_QUOTAS)));
        let client_id = installation_client_id(&cfg);
        Self { cfg, core, client_id }
    }

    /// The `client_id` header of token requests (the same for every process of this account).
    pub fn client_id(&self) -> &str {
        &self.client_id
    }

    /// Sets the client-side limit to this share (calls per minute) of the account's
    /// allowance; the 100 ms and hourly quotas scale with it ([`quotas_for`]).
    pub fn with_calls_per_minute(mut self, calls: u32) -> Self {
        self.core.limit = Some(RateLimit::new(&held(quotas_for(calls))));
        self
    }

    pub fn config(&self) -> &NexudusConfig {
        &self.cfg
    }

    /// One customer by id; `None` on 404. Nexudus answers 500 for a deleted id, which cannot be
    /// told from an outage, so that stays a retryable failure.
    pub async fn coworker(&self, id: i64) -> Result<Option<Coworker>, CallError> {
        self.by_id("spaces/coworkers", id).await
    }

    /// One contract with its `Desks` (lists omit them); `None` on 404.
    pub async fn contract(&self, id: i64) -> Result<Option<CoworkerContract>, CallError> {
        self.by_id("billing/coworkercontracts", id).await
    }

    /// Several customers in one call (`GET /api/spaces/coworkers/?id=[…]`, each as by id, with
    /// `Teams`; developers.nexudus.com get-coworkers-batch), [`BATCH_SIZE`] ids a request.
    /// Ids Nexudus does not return are simply absent.
    pub async fn coworkers_by_ids(&self, ids: &[i64]) -> Result<Vec<Coworker>, CallError> {
        self.batch("spaces/coworkers", ids).await
    }

    /// Several contracts in one call, each with `Desks` (`GET /api/billing/coworkercontracts/?id=[…]`;
    /// developers.nexudus.com get-coworkercontracts-batch), [`BATCH_SIZE`] ids a request.
    pub async fn contracts_by_ids(&self, ids: &[i64]) -> Result<Vec<CoworkerContract>, CallError> {
        self.batch("billing/coworkercontracts", ids).await
    }

    /// `GET {path}/?id=[a,b,…]` per chunk of ids; the answer is a bare array of full records.
    async fn batch<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        ids: &[i64],
    ) -> Result<Vec<T>, CallError> {
        let url = format!("{}/{path}/", self.core.base);
        let mut unique: Vec<i64> = ids.to_vec();
        unique.sort_unstable();
        unique.dedup();
        let mut all = Vec::with_capacity(unique.len());
        for chunk in unique.chunks(BATCH_SIZE) {
            let list = chunk.iter().map(i64::to_string).collect::<Vec<_>>().join(",");
            let id = format!("[{list}]");
            let reply = self.call(|| self.core.http.get(&url).query(&[("id", id.as_str())])).await?;
            if !reply.status.is_success() {
                return Err(reply.unexpected(&API));
            }
            all.extend(reply.json::<Vec<T>>(&API)?);
        }
        Ok(all)
    }

    /// One floor-plan desk (its `ItemType` tells an office from a desk); `None` on 404.
    pub async fn desk(&self, id: i64) -> Result<Option<FloorPlanDesk>, CallError> {
        self.by_id("sys/floorplandesks", id).await
    }

    /// One team with `TeamMembers` (lists omit them); `None` on 404.
    pub async fn team(&self, id: i64) -> Result<Option<Team>, CallError> {
        self.by_id("spaces/teams", id).await
    }

    /// One visitor; `None` on 404.
    pub async fn visitor(&self, id: i64) -> Result<Option<Visitor>, CallError> {
        self.by_id("spaces/visitors", id).await
    }

    /// One customer's bookings that end at or after `ends_from` (`YYYY-MM-DDTHH:mm`), all pages:
    /// older ones can no longer open anything.
    pub async fn bookings_for(&self, coworker_id: i64, ends_from: &str) -> Result<Vec<Booking>, CallError> {
        let coworker = coworker_id.to_string();
        self.list(
            "spaces/bookings",
            &[("Booking_Coworker", coworker.as_str()), ("from_Booking_ToTime", ends_from)],
        )
        .await
    }

    /// Every booking ending at or after `ends_from`, or (incremental) changed since `updated_from`.
    pub async fn all_bookings(
        &self,
        updated_from: Option<&str>,
        ends_from: &str,
    ) -> Result<Vec<Booking>, CallError> {
        let mut filter = vec![("from_Booking_ToTime", ends_from)];
        filter.extend(updated_from.map(|f| ("from_Booking_UpdatedOn", f)));
        self.list("spaces/bookings", &filter).await
    }

    /// One customer's contracts (without `Desks`), all pages.
    pub async fn contracts_for(&self, coworker_id: i64) -> Result<Vec<CoworkerContract>, CallError> {
        let coworker = coworker_id.to_string();
        self.list("billing/coworkercontracts", &[("CoworkerContract_Coworker", coworker.as_str())]).await
    }

    /// Every contract (without `Desks`), or those changed since `updated_from`.
    pub async fn all_contracts(
        &self,
        updated_from: Option<&str>,
    ) -> Result<Vec<CoworkerContract>, CallError> {
        let filter: Vec<(&str, &str)> =
            updated_from.map(|f| ("from_CoworkerContract_UpdatedOn", f)).into_iter().collect();
        self.list("billing/coworkercontracts", &filter).await
    }

    /// Every team (without `TeamMembers`), or those changed since `updated_from`.
    pub async fn all_teams(&self, updated_from: Option<&str>) -> Result<Vec<Team>, CallError> {
        let filter: Vec<(&str, &str)> =
            updated_from.map(|f| ("from_Team_UpdatedOn", f)).into_iter().collect();
        self.list("spaces/teams", &filter).await
    }

    /// Visitors expected or checked in at or after `arriving_from` (walk-ins have no expected
    /// arrival, so two listings), or (incremental) those of them changed since `updated_from`.
    pub async fn all_visitors(
        &self,
        updated_from: Option<&str>,
        arriving_from: &str,
    ) -> Result<Vec<Visitor>, CallError> {
        let mut by_id = std::collections::BTreeMap::new();
        for field in ["from_Visitor_ExpectedArrival", "from_Visitor_ArrivalDate"] {
            let mut filter = vec![(field, arriving_from)];
            filter.extend(updated_from.map(|f| ("from_Visitor_UpdatedOn", f)));
            for v in self.list::<Visitor>("spaces/visitors", &filter).await? {
                by_id.insert(v.id, v);
            }
        }
        Ok(by_id.into_values().collect())
    }

    /// GET `{path}/{id}`; `None` on 404 (a 500 for a deleted id stays retryable, see above).
    async fn by_id<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        id: i64,
    ) -> Result<Option<T>, CallError> {
        let url = format!("{}/{path}/{id}", self.core.base);
        let reply = self.call(|| self.core.http.get(&url)).await?;
        match reply.status {
            s if s.is_success() => reply.json(&API).map(Some),
            StatusCode::NOT_FOUND => Ok(None),
            _ => Err(reply.unexpected(&API)),
        }
    }

    /// Every pass given to one customer (used, expired and current), all pages.
    pub async fn time_passes_for(&self, coworker_id: i64) -> Result<Vec<CoworkerTimePass>, CallError> {
        let coworker = coworker_id.to_string();
        self.list("billing/coworkertimepasses", &[("CoworkerTimePass_Coworker", coworker.as_str())]).await
    }

    /// Every pass of every customer, all pages; with `updated_from` (`YYYY-MM-DDTHH:mm`) only
    /// those changed since (incremental resync).
    pub async fn all_time_passes(
        &self,
        updated_from: Option<&str>,
    ) -> Result<Vec<CoworkerTimePass>, CallError> {
        let filter: Vec<(&str, &str)> =
            updated_from.map(|f| ("from_CoworkerTimePass_UpdatedOn", f)).into_iter().collect();
        self.list("billing/coworkertimepasses", &filter).await
    }

    /// The pass products (`TimePass`, e.g. "Bike Storage"), all pages: what `pass` items name.
    pub async fn time_pass_products(&self) -> Result<Vec<super::dto::TimePassProduct>, CallError> {
        self.list("billing/timepasses", &[]).await
    }

    /// Every floor-plan desk and office, all pages: what `desk` and `office` items name.
    pub async fn floor_plan_desks(&self) -> Result<Vec<FloorPlanDesk>, CallError> {
        self.list("sys/floorplandesks", &[]).await
    }

    /// Every resource (meeting rooms and the like), all pages: what `resource` items name
    /// (`GET /api/spaces/resources`, reference §1.4 "Resource / ResourceType").
    pub async fn resources(&self) -> Result<Vec<super::dto::Resource>, CallError> {
        self.list("spaces/resources", &[]).await
    }

    /// Every customer, all pages, or those changed since `updated_from`. Lists omit collection
    /// fields; the sync needs none.
    pub async fn all_coworkers(&self, updated_from: Option<&str>) -> Result<Vec<Coworker>, CallError> {
        let filter: Vec<(&str, &str)> =
            updated_from.map(|f| ("from_Coworker_UpdatedOn", f)).into_iter().collect();
        self.list("spaces/coworkers", &filter).await
    }

    /// Customers with this email (the list filter `Coworker_Email`), all pages.
    pub async fn coworkers_by_email(&self, email: &str) -> Result<Vec<Coworker>, CallError> {
        self.list("spaces/coworkers", &[("Coworker_Email", email)]).await
    }

    /// All pages of a list ([`paging::records`]), `PAGE_SIZE` records at a time; throttling
    /// (409) slows it down.
    async fn list<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        filters: &[(&str, &str)],
    ) -> Result<Vec<T>, CallError> {
        let url = format!("{}/{path}", self.core.base);
        let size = PAGE_SIZE.to_string();
        let fetch = |c: Cursor| {
            let (url, size) = (&url, &size);
            async move {
                let page_no = c.page.to_string();
                let reply = self
                    .call(|| {
                        self.core
                            .http
                            .get(url)
                            .query(filters)
                            .query(&[("page", page_no.as_str()), ("size", size.as_str())])
                    })
                    .await?;
                if !reply.status.is_success() {
                    return Err(reply.unexpected(&API));
                }
                paging::records(&reply, &API)
            }
        };
        paging::all(fetch, paging::at_most_pages(API.name, path, MAX_PAGES)).await
    }

    /// Sends an authenticated call; a 401 refreshes the token and tries once more.
    async fn call<F>(&self, build: F) -> Result<Reply, CallError>
    where
        F: Fn() -> RequestBuilder,
    {
        let reply = self
            .core
            .send(|refresh| self.fetch_token(refresh), |token| build().bearer_auth(token), "")
            .await?;
        if reply.status == StatusCode::FORBIDDEN {
            return Err(CallError::config(format!(
                "Nexudus answered {}: the configured user lacks the permission for this call",
                reply.summary()
            )));
        }
        Ok(reply)
    }

    /// A refresh grant when there is a refresh token; the password grant when there is none or
    /// Nexudus refuses it (refresh tokens last 15 days and are single-use per client id).
    async fn fetch_token(&self, refresh: Option<Secret>) -> Result<FreshToken, CallError> {
        if let Some(refresh) = refresh {
            let form = [("grant_type", "refresh_token"), ("refresh_token", refresh.expose_secret())];
            match self.token_request(&form).await? {
                Ok(token) => return Ok(token),
                Err(reply) => {
                    tracing::debug!(status = %reply.status, "Nexudus refused the refresh token; logging in again");
                }
            }
        }
        let form = [
            ("grant_type", "password"),
            ("username", self.cfg.username.expose_secret()),
            ("password", self.cfg.password.expose_secret()),
        ];
        match self.token_request(&form).await? {
            Ok(token) => Ok(token),
            Err(reply) => Err(CallError::config(format!(
                "Nexudus refused the configured username and password ({})",
                reply.summary()
            ))),
        }
    }

    /// `Ok(Ok(token))`, `Ok(Err(reply))` when the endpoint refused the grant (400/401/403),
    /// `Err` for anything worth retrying later.
    async fn token_request(&self, form: &[(&str, &str)]) -> Result<Result<FreshToken, Reply>, CallError> {
        let url = format!("{}/token", self.core.base);
        let reply = http::send(&self.core.policy, &API, || {
            self.core.http.post(&url).header("client_id", self.client_id.as_str()).form(form)
        })
        .await?;
        reply.into_grant(&API)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::Quota;
    use std::time::Duration;

    #[test]
    fn config_debug_redacts_the_password() {
        let shown = format!("{:?}", NexudusConfig::new("admin@x.com", "pa55word"));
        assert!(!shown.contains("pa55word") && shown.contains("spaces.nexudus.com"));
        assert!(!shown.contains("admin@x.com"), "the login is an email: {shown}");
    }

    #[test]
    fn a_share_of_the_allowance_scales_every_quota() {
        let share = quotas_for(40);
        assert_eq!(share[0], Quota::new(1, Duration::from_millis(300)));
        assert_eq!(share[1], Quota::new(40, Duration::from_secs(60)));
        assert_eq!(share[2].calls, 1_666);
        assert_eq!(quotas_for(DEFAULT_CALLS_PER_MINUTE), DOCUMENTED_QUOTAS);
        assert_eq!(quotas_for(0)[1].calls, 1, "never below one call");
    }

    #[test]
    fn the_client_id_is_derived_from_the_account() {
        let a = installation_client_id(&NexudusConfig::new("Admin@X.com", "p1"));
        assert_eq!(a, installation_client_id(&NexudusConfig::new("admin@x.com", "another password")));
        assert_ne!(a, installation_client_id(&NexudusConfig::new("other@x.com", "p1")));
        assert_eq!(a.len(), 36);
    }

    #[test]
    fn only_409_is_the_extra_throttle() {
        let reply = |status| Reply { status, headers: Default::default(), body: Vec::new() };
        assert!(is_throttle(&reply(StatusCode::CONFLICT)));
        assert!(!is_throttle(&reply(StatusCode::BAD_REQUEST)));
    }
}
