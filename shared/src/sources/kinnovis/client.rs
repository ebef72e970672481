//! Thin typed client of the Kinnovis export API (§6): `GET {base}/locations/{loc}/bookings`
//! (paged, `updated_since`) and `…/units`, with `Authorization: Bearer <api key>`.
//! Used to confirm unit names when mapping and by full resyncs.

use reqwest::{RequestBuilder, StatusCode};

use super::dto::{Booking, Unit, UnitList};
use crate::error::CallError;
use crate::http::{self, Api, Reply, RetryPolicy, Secret};
use crate::model::Instant;
use crate::paging::{self, Cursor};
use crate::secrets::ExposeSecret;

const API: Api = Api::new("Kinnovis");

/// Bookings per page when listing.
pub const PAGE_SIZE: u32 = 100;

/// A list still claiming more pages after this many is refused rather than followed forever.
const MAX_PAGES: u32 = 10_000;

/// Where and with which key to call Kinnovis. The key's `Debug` is redacted.
#[derive(Clone, Debug)]
pub struct KinnovisConfig {
    pub base_url: String,
    pub location_id: String,
    pub api_key: Secret,
}

/// Reads one Kinnovis location.
#[derive(Debug)]
pub struct KinnovisClient {
    cfg: KinnovisConfig,
    location_url: String,
    http: reqwest::Client,
    policy: RetryPolicy,
}

impl KinnovisClient {
    pub fn new(cfg: KinnovisConfig, http: reqwest::Client, policy: RetryPolicy) -> Self {
        let location_url =
            format!("{}/locations/{}", http::trim_base(&cfg.base_url), http::path_segment(&cfg.location_id));
        Self { cfg, location_url, http, policy }
    }

    pub fn config(&self) -> &KinnovisConfig {
        &self.cfg
    }

    /// Every booking of the location (changed since `updated_since`, when given), all pages.
    pub async fn bookings(&self, updated_since: Option<Instant>) -> Result<Vec<Booking>, CallError> {
        let url = format!("{}/bookings", self.location_url);
        let since = updated_since.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
        let size = PAGE_SIZE.to_string();
        let fetch = |c: Cursor| {
            let (url, since, size) = (&url, &since, &size);
            async move {
                let page_no = c.page.to_string();
                let reply = self
                    .call(|| {
                        let mut q = vec![("page", page_no.as_str()), ("page_size", size.as_str())];
                        if let Some(s) = since {
                            q.push(("updated_since", s.as_str()));
                        }
                        self.http.get(url).query(&q)
                    })
                    .await?;
                paging::numbered::<Booking>(&reply, &API, c.page)
            }
        };
        paging::all(fetch, paging::at_most_pages(API.name, "bookings", MAX_PAGES)).await
    }

    /// Every unit of the location.
    pub async fn units(&self) -> Result<Vec<Unit>, CallError> {
        let url = format!("{}/units", self.location_url);
        let reply = self.call(|| self.http.get(&url)).await?;
        Ok(reply.json::<UnitList>(&API)?.items)
    }

    /// One authenticated GET; 401/403/404 say the configuration is wrong.
    async fn call<F>(&self, build: F) -> Result<Reply, CallError>
    where
        F: Fn() -> RequestBuilder,
    {
        let reply =
            http::send(&self.policy, &API, || build().bearer_auth(self.cfg.api_key.expose_secret())).await?;
        match reply.status {
            s if s.is_success() => Ok(reply),
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(CallError::config(format!(
                "Kinnovis refused the configured API key ({})",
                reply.summary()
            ))),
            StatusCode::NOT_FOUND => Err(CallError::config(format!(
                "Kinnovis does not know location {} ({})",
                self.cfg.location_id,
                reply.summary()
            ))),
            _ => Err(reply.unexpected(&API)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_debug_redacts_the_key() {
        let cfg = KinnovisConfig {
            base_url: "https://k.example/api".into(),
            location_id: "loc-1".into(),
            api_key: Secret::from("kv-key-123"),
        };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("kv-key-123") && shown.contains("loc-1"));
    }
}
