//! Webhook ingress: size cap → tenant → verify → parse → enqueue → 202.
//!
//! Transport-free: `portier serve` (axum) and the Lambda functions (API Gateway events) hand
//! the raw request to [`Ingress::hook`] with the source's [`WebhookSource`] and map the
//! [`Answer`] back; what differs between sources lives in `sources/<name>/webhook.rs`.

use std::sync::Arc;

use serde_json::json;

use crate::model::TenantId;
use crate::queue::{Event, Queue, WorkMessage};
use crate::secrets::ExposeSecret;
use crate::sources::kinnovis::webhook::KinnovisHooks;
use crate::sources::nexudus::webhook::NexudusHooks;
use crate::sources::{HookRequest, Refused, WebhookSource};
use crate::store::Records;
use crate::store::records::Quarantined;
use crate::tenants::Tenants;

pub mod verify;

/// Largest webhook body accepted (design §6.1).
pub const MAX_BODY: usize = 256 * 1024;

/// Messages one tenant may have queued (where the queue can count them). Past it, a webhook is
/// still answered 202, so the sender neither retries it into a bigger flood nor disables the
/// webhook (Nexudus does after 10 failures), but it is not queued: the tenant is marked, and
/// the next tick resyncs the tenant from the source, which covers whatever it said. Work that
/// may take access away is queued up to twice the bound.
pub const TENANT_BACKLOG_LIMIT: u64 = 5_000;

/// The HTTP answer to a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl Answer {
    fn new(status: u16, message: &str) -> Self {
        Self { status, body: json!({ "status": status, "message": message }) }
    }
}

/// The webhook request as the transport received it.
#[derive(Debug, Clone, Copy)]
pub struct NexudusRequest<'a> {
    pub tenant: &'a str,
    pub action: &'a str,
    /// `?token=` from the URL.
    pub token: Option<&'a str>,
    /// `X-Nexudus-Hook-Signature`.
    pub signature: Option<&'a str>,
    pub body: &'a [u8],
}

/// A Standard Webhooks request from Kinnovis, as the transport received it.
#[derive(Debug, Clone, Copy)]
pub struct KinnovisRequest<'a> {
    pub tenant: &'a str,
    pub headers: verify::StandardHeaders<'a>,
    pub body: &'a [u8],
}

/// A Brivo event-subscription delivery, as the transport received it.
#[derive(Debug, Clone, Copy)]
pub struct BrivoRequest<'a> {
    pub tenant: &'a str,
    /// `?token=` from the URL.
    pub token: Option<&'a str>,
    pub body: &'a [u8],
}

/// What the ingress needs, built once per process.
#[derive(Clone)]
pub struct Ingress {
    pub tenants: Arc<dyn Tenants>,
    pub queue: Arc<dyn Queue>,
    pub records: Records,
    /// [`TENANT_BACKLOG_LIMIT`], lower in tests.
    pub backlog_limit: u64,
}

/// What became of one webhook's messages.
#[derive(Debug, Default)]
struct Sent {
    merged: usize,
    overflowed: usize,
}

impl Ingress {
    /// True when the same hint is already queued and its reconcile has not started: that one
    /// will read the source after this webhook arrived, so nothing is lost by not queueing.
    /// Once it has started, a repeat is queued (a change may have come after its reads).
    async fn merges_into_queued(&self, msg: &WorkMessage) -> Result<bool, crate::error::InfraError> {
        let WorkMessage::Event(Event { subject, hint: Some(h), .. }) = msg else { return Ok(false) };
        self.records.hint_pending(subject, h).await
    }

    pub fn new(tenants: Arc<dyn Tenants>, queue: Arc<dyn Queue>, records: Records) -> Self {
        Self { tenants, queue, records, backlog_limit: TENANT_BACKLOG_LIMIT }
    }

    /// Queues a webhook's messages: each one merged into a queued one of the same hint, sent,
    /// or (the tenant's queue at its bound) left to the overflow resync.
    async fn enqueue(&self, tenant: &TenantId, messages: &[WorkMessage]) -> Result<Sent, Answer> {
        let unavailable = |what: &str, e: crate::error::InfraError| {
            tracing::error!(error = %e, "{what} unavailable");
            Answer::new(503, &format!("{what} unavailable, retry later"))
        };
        let backlog = self.queue.tenant_backlog(&tenant.0).await.map_err(|e| unavailable("queue", e))?;
        let mut sent = Sent::default();
        for (i, msg) in messages.iter().enumerate() {
            if self.merges_into_queued(msg).await.map_err(|e| unavailable("store", e))? {
                sent.merged += 1;
                continue;
            }
            let limit = if msg.urgent() { self.backlog_limit.saturating_mul(2) } else { self.backlog_limit };
            if backlog.is_some_and(|b| b.saturating_add(i as u64) >= limit) {
                self.records.note_overflow(tenant).await.map_err(|e| unavailable("store", e))?;
                sent.overflowed += 1;
                continue;
            }
            self.queue.send(&msg.to_outgoing()).await.map_err(|e| unavailable("queue", e))?;
            if let WorkMessage::Event(Event { subject, hint: Some(h), event_id, .. }) = msg
                && let Err(e) = self.records.hint_queued(subject, h, event_id).await
            {
                // Only merging is lost: the next repeat is queued as well.
                tracing::warn!(error = %e, "could not remember the queued hint");
            }
        }
        if sent.overflowed > 0 {
            tracing::warn!(tenant = %tenant, overflowed = sent.overflowed, "tenant queue full: not queued, the next tick resyncs the tenant");
        }
        Ok(sent)
    }

    /// The tenant, or the answer for a webhook to one that is unknown or cannot be loaded.
    async fn tenant(&self, id: &TenantId) -> Result<Arc<crate::tenants::TenantRuntime>, Answer> {
        match self.tenants.get(id).await {
            Ok(Some(t)) => Ok(t),
            Ok(None) => Err(Answer::new(404, "unknown tenant")),
            Err(e) => {
                tracing::error!(error = %e, "tenant configuration unavailable");
                Err(Answer::new(503, "configuration unavailable, retry later"))
            }
        }
    }

    /// Keeps a verified but unparseable body (400); when even that fails, 503 so the sender
    /// tries again: nothing may be lost.
    async fn quarantine(
        &self,
        tenant: &TenantId,
        event_id: impl Into<String>,
        action: impl Into<String>,
        reason: String,
        body: &[u8],
        at: crate::model::Instant,
    ) -> Answer {
        let q = Quarantined {
            at,
            event_id: event_id.into(),
            action: action.into(),
            reason: reason.clone(),
            body: String::from_utf8_lossy(body).into_owned(),
            repeats: 0,
        };
        if let Err(e) = self.records.quarantine(tenant, &q).await {
            tracing::error!(error = %e, "quarantine write failed");
            return Answer::new(503, "store unavailable, retry later");
        }
        Answer::new(400, &format!("unparseable body (kept in quarantine): {reason}"))
    }

    /// Accepts a Brivo event-subscription delivery (`POST /hooks/brivo/{tenant}?token=`): each
    /// door opening of a chosen door goes to the tenant's presence inbox; the tick checks the
    /// person in or out. 202 for queued, duplicate and not-chosen alike, so Brivo never retries
    /// what is done.
    pub async fn brivo(&self, req: BrivoRequest<'_>) -> Answer {
        let tenant = req.tenant.to_owned();
        let answer = self.brivo_unlogged(req).await;
        log_webhook("brivo", &tenant, "event", &answer);
        answer
    }

    async fn brivo_unlogged(&self, req: BrivoRequest<'_>) -> Answer {
        let tenant_id = TenantId(req.tenant.to_owned());
        let tenant = match self.tenant(&tenant_id).await {
            Ok(t) => t,
            Err(answer) => return answer,
        };
        let (Some(presence), Some(expected)) = (&tenant.config.presence, &tenant.brivo_hook_token) else {
            return Answer::new(404, "no Brivo presence doors configured for this tenant");
        };
        if req.body.len() > MAX_BODY {
            return Answer::new(413, "body over 256 KiB");
        }
        if !verify::token(expected.expose_secret(), req.token) {
            return Answer::new(401, "token missing or invalid");
        }
        let now = self.records.now();
        let events = match crate::presence::brivo::parse(req.body) {
            Ok(e) => e,
            Err(reason) => {
                return self
                    .quarantine(
                        &tenant_id,
                        uuid::Uuid::new_v4().to_string(),
                        "brivo-event",
                        reason,
                        req.body,
                        now,
                    )
                    .await;
            }
        };
        let (mut queued, mut duplicate, mut ignored) = (0, 0, 0);
        for parsed in events {
            let crate::presence::brivo::Parsed::Opened(ev) = parsed else {
                ignored += 1;
                continue;
            };
            match crate::presence::accept(&self.records, &tenant_id, presence, &ev).await {
                Ok(crate::presence::Accepted::Queued) => queued += 1,
                Ok(crate::presence::Accepted::Duplicate) => duplicate += 1,
                Ok(crate::presence::Accepted::NotChosen) => ignored += 1,
                Err(e) => {
                    tracing::error!(error = %e, "presence inbox write failed");
                    return Answer::new(503, "store unavailable, retry later");
                }
            }
        }
        Answer {
            status: 202,
            body: json!({ "status": 202, "queued": queued, "duplicate": duplicate, "ignored": ignored }),
        }
    }

    /// Accepts a Nexudus webhook (one URL per action). See [`Self::hook`].
    pub async fn nexudus(&self, req: NexudusRequest<'_>) -> Answer {
        let headers: Vec<(&str, &str)> =
            req.signature.map(|sig| ("x-nexudus-hook-signature", sig)).into_iter().collect();
        let hook = HookRequest {
            tenant: req.tenant,
            action: req.action,
            token: req.token,
            headers: &headers,
            body: req.body,
        };
        self.hook(&NexudusHooks, hook).await
    }

    /// Accepts a Kinnovis webhook (Standard Webhooks). See [`Self::hook`].
    pub async fn kinnovis(&self, req: KinnovisRequest<'_>) -> Answer {
        let h = req.headers;
        let headers: Vec<(&str, &str)> =
            [("webhook-id", h.id), ("webhook-timestamp", h.timestamp), ("webhook-signature", h.signature)]
                .into_iter()
                .filter_map(|(name, value)| Some((name, value?)))
                .collect();
        let hook =
            HookRequest { tenant: req.tenant, action: "", token: None, headers: &headers, body: req.body };
        self.hook(&KinnovisHooks, hook).await
    }

    /// Accepts a webhook of any source. Nothing is queued unless the tenant takes it, it is
    /// verified by the source's scheme with the tenant's secrets, and its body parses; one log
    /// line per webhook, at info: tenant, action, outcome (no personal data).
    ///
    /// A delivery id seen before is answered 202 like the first time (design §6.1: the sender
    /// may not have received our first answer, and anything but 2xx makes it retry for days)
    /// but nothing is queued again: a replay can never cause work twice.
    pub async fn hook(&self, source: &dyn WebhookSource, req: HookRequest<'_>) -> Answer {
        let answer = self.hook_unlogged(source, &req).await;
        log_webhook(source.kind().as_str(), req.tenant, &source.log_action(&req), &answer);
        answer
    }

    async fn hook_unlogged(&self, source: &dyn WebhookSource, req: &HookRequest<'_>) -> Answer {
        let tenant_id = TenantId(req.tenant.to_owned());
        let tenant = match self.tenant(&tenant_id).await {
            Ok(t) => t,
            Err(answer) => return answer,
        };
        if let Err(why) = source.accepts(&tenant.config.source, req.action) {
            return Answer::new(404, why);
        }
        if req.body.len() > MAX_BODY {
            return Answer::new(413, "body over 256 KiB");
        }
        let now = self.records.now();
        let secret = tenant.webhook_secret.as_ref().map(|s| s.expose_secret());
        let token = tenant.webhook_token.as_ref().map(|s| s.expose_secret());
        let proof = match verify::delivery(source.signing(), secret, token, req, now) {
            Ok(proof) => proof,
            Err((status, why)) => return Answer::new(status, &why),
        };

        let events = match source.events(&tenant_id, &tenant.config.source, req, proof, now) {
            Ok(events) => events,
            Err(Refused::NotForTenant(reason)) => {
                tracing::warn!(tenant = %tenant_id, source = source.kind().as_str(), "webhook for another tenant refused");
                return Answer::new(400, &reason);
            }
            Err(Refused::Unparseable(reason)) => {
                let id =
                    source.delivery_id(req).map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned);
                let action = if req.action.is_empty() { source.kind().as_str() } else { req.action };
                return self.quarantine(&tenant_id, id, action, reason, req.body, now).await;
            }
        };

        let seen_key =
            source.delivery_id(req).map(|id| format!("{}-hook#{tenant_id}#{id}", source.kind().as_str()));
        if let Some(key) = &seen_key {
            match self.records.event_done(key).await {
                Ok(true) => {
                    return Answer {
                        status: 202,
                        body: json!({ "status": 202, "message": "duplicate webhook-id: already accepted, not queued again" }),
                    };
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::error!(error = %e, "store unavailable");
                    return Answer::new(503, "store unavailable, retry later");
                }
            }
        }
        let messages: Vec<WorkMessage> = events.into_iter().map(WorkMessage::Event).collect();
        let sent = match self.enqueue(&tenant_id, &messages).await {
            Ok(sent) => sent,
            Err(answer) => return answer,
        };
        // Remembered only once queued (or left to the overflow resync), so a failed send is
        // retried by the sender. If this write fails, a redelivery is queued again and the
        // worker's per-subject ids drop it.
        if let Some(key) = &seen_key
            && let Err(e) = self.records.mark_event_done(key).await
        {
            tracing::warn!(error = %e, "could not remember the webhook-id; the worker deduplicates");
        }
        let message = if sent.overflowed > 0 {
            "accepted; the tenant's queue is full, so a resync reads this from the source"
        } else if sent.merged == messages.len() {
            "queued (merged into a queued one)"
        } else {
            "queued"
        };
        Answer { status: 202, body: json!({ "status": 202, "message": message, "subjects": messages.len() }) }
    }
}

/// The webhook's one log line: what an unattended operator needs to see that hooks arrive and
/// why one was refused. The outcome is a fixed word per answer, never the body.
fn log_webhook(source: &str, tenant: &str, action: &str, answer: &Answer) {
    let outcome = match answer.status {
        202 if answer.body["message"]
            .as_str()
            .is_some_and(|m| m.contains("duplicate") || m.contains("merged")) =>
        {
            "accepted (duplicate)"
        }
        202 => "accepted",
        400 => "rejected: unparseable or wrong location",
        401 => "rejected: not authenticated",
        404 => "rejected: unknown tenant or action",
        408 => "rejected: body not sent in time",
        413 => "rejected: too large",
        _ => "unavailable: sender retries",
    };
    // The tenant and action come from the URL: keep only their plain characters.
    let plain = |s: &str| -> String {
        s.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).take(64).collect()
    };
    let (tenant, action) = (plain(tenant), plain(action));
    if answer.status < 500 {
        tracing::info!(source, tenant, action, status = answer.status, outcome, "webhook");
    } else {
        tracing::warn!(source, tenant, action, status = answer.status, outcome, "webhook");
    }
}
