//! Presence: the check-ins Portier reads and writes for door events (issue 17).

use reqwest::{RequestBuilder, StatusCode};

use super::{API, NexudusClient};
use crate::error::CallError;
use crate::http::RetryPolicy;
use crate::paging;
use crate::sources::nexudus::dto::{Checkin, WriteResult};

impl NexudusClient {
    /// The customer's newest check-ins (one page, newest first: an open one is among them):
    /// `GET /api/spaces/checkins?Checkin_Coworker=…&orderBy=FromTime&dir=-1`
    /// (developers.nexudus.com get-checkins; the `Checkin_Coworker` name follows the documented
    /// `{Entity}_{Field}` pattern, inferred).
    pub async fn recent_checkins(&self, coworker_id: i64) -> Result<Vec<Checkin>, CallError> {
        let url = format!("{}/spaces/checkins", self.core.base);
        let coworker = coworker_id.to_string();
        let reply = self
            .call(|| {
                self.core.http.get(&url).query(&[
                    ("Checkin_Coworker", coworker.as_str()),
                    ("orderBy", "FromTime"),
                    ("dir", "-1"),
                    ("page", "1"),
                    ("size", "25"),
                ])
            })
            .await?;
        if !reply.status.is_success() {
            return Err(reply.unexpected(&API));
        }
        Ok(paging::records::<Checkin>(&reply, &API)?.items)
    }

    /// Opens a check-in: `POST /api/spaces/checkins {BusinessId, CoworkerId, FromTime, Source: 2}`
    /// (developers.nexudus.com post-checkins; `Source` 2 = DoorAccess). Sent once, never
    /// repeated blindly: the caller looks for the check-in before it tries again. Returns the
    /// new id when the answer carries it.
    pub async fn check_in(
        &self,
        business_id: i64,
        coworker_id: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<i64>, CallError> {
        let body = serde_json::json!({
            "BusinessId": business_id,
            "CoworkerId": coworker_id,
            "FromTime": at.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "Source": 2,
        });
        let url = format!("{}/spaces/checkins", self.core.base);
        self.write(|| self.core.http.post(&url).json(&body)).await
    }

    /// Closes a check-in: `PUT /api/spaces/checkins` with the whole record and `ToTime`
    /// (developers.nexudus.com put-checkins: "include the Id … along with all required fields").
    /// Setting the same `ToTime` again is harmless, so this one may be repeated.
    pub async fn check_out(
        &self,
        open: &Checkin,
        business_id: i64,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), CallError> {
        let from = open.from_time.unwrap_or(at);
        let body = serde_json::json!({
            "Id": open.id,
            "BusinessId": open.business_id.unwrap_or(business_id),
            "CoworkerId": open.coworker_id,
            "FromTime": from.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "ToTime": at.max(from).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "Source": open.source.unwrap_or(2),
        });
        let url = format!("{}/spaces/checkins", self.core.base);
        self.write(|| self.core.http.put(&url).json(&body)).await.map(|_| ())
    }

    /// A write tried once (a lost answer must not make a second record); a 409 throttle or a
    /// 5xx comes back retryable, `WasSuccessful: false` (no valid pass, say) permanent.
    async fn write<F>(&self, build: F) -> Result<Option<i64>, CallError>
    where
        F: Fn() -> RequestBuilder,
    {
        let once = RetryPolicy { attempts: 1, ..self.core.policy.clone() };
        let reply = self
            .core
            .send_with(&once, |refresh| self.fetch_token(refresh), |token| build().bearer_auth(token), "")
            .await?;
        if reply.status == StatusCode::FORBIDDEN {
            return Err(CallError::config(format!(
                "Nexudus answered {}: the configured user lacks the Checkin-Create or Checkin-Edit role",
                reply.summary()
            )));
        }
        if !reply.status.is_success() {
            return Err(reply.unexpected(&API));
        }
        let result: WriteResult = reply.json(&API)?;
        if !result.was_successful {
            return Err(CallError::permanent(format!(
                "Nexudus refused the check-in: {}",
                result.message.as_deref().unwrap_or("no reason given")
            )));
        }
        Ok(result.id())
    }
}
