//! Space-management systems: one folder per source (webhook meaning + REST client).
//!
//! A source implements [`Source`] (what the worker reads) and [`WebhookSource`] (what its
//! webhooks say), and is listed in [`WEBHOOKS`]; the ingress and `portier serve` route by that.

use async_trait::async_trait;
use serde_json::Value;

use crate::config::SourceConfig;
use crate::error::WorkError;
use crate::model::{Entitlement, Instant, Profile, SourceKind, SubjectKey, TenantId};
pub use crate::queue::Proof;
use crate::queue::message::Event;
use crate::store::Records;

pub mod kinnovis;
pub mod nexudus;
mod refreshed;

pub use refreshed::{Refreshed, Stored, Write};

/// Every source that takes webhooks: `portier serve` routes each at its [`WebhookSource::route`].
pub const WEBHOOKS: &[&dyn WebhookSource] =
    &[&nexudus::webhook::NexudusHooks, &kinnovis::webhook::KinnovisHooks];

/// A webhook delivery as the transport received it.
#[derive(Debug, Clone, Copy)]
pub struct HookRequest<'a> {
    /// The tenant named in the URL.
    pub tenant: &'a str,
    /// What the route names after the tenant (a Nexudus action), or empty.
    pub action: &'a str,
    /// `?token=` from the URL.
    pub token: Option<&'a str>,
    /// The headers a source's signing scheme reads, by lower-case name.
    pub headers: &'a [(&'a str, &'a str)],
    pub body: &'a [u8],
}

impl<'a> HookRequest<'a> {
    pub fn header(&self, name: &str) -> Option<&'a str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| *v)
    }
}

/// How a source signs its webhooks; the ingress holds one verifier per scheme.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// An HMAC-SHA256 of the body in this header when the tenant has a secret, and a `?token=`
    /// when it has a token (both when both). A signature proves the content only when it
    /// covers the body as sent (Nexudus also signs an ASCII copy, which proves the sender only).
    BodyHmac { header: &'static str },
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`), with the
    /// tenant's `whsec_` secret: the body is signed whole.
    StandardWebhooks,
}

/// Why a verified body is not queued.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// Not understood: kept in quarantine (400), nothing may be lost.
    Unparseable(String),
    /// Understood, and not for this tenant (another location): refused, not kept (400).
    NotForTenant(String),
}

/// A source's webhooks: how they are signed, and whom a verified body concerns with what it
/// proves (one [`Event`] per subject, in that subject's FIFO group).
pub trait WebhookSource: Send + Sync {
    fn kind(&self) -> SourceKind;

    /// The `portier serve` route, with `{tenant}` and, where the source has one, `{action}`.
    fn route(&self) -> &'static str;

    fn signing(&self) -> Signing;

    /// `Err` (404, with the reason) when this tenant or route action takes no such webhook.
    fn accepts(&self, source: &SourceConfig, action: &str) -> Result<(), &'static str>;

    /// The events a verified body means, one per subject it concerns.
    fn events(
        &self,
        tenant: &TenantId,
        source: &SourceConfig,
        req: &HookRequest<'_>,
        proof: Proof,
        now: Instant,
    ) -> Result<Vec<Event>, Refused>;

    /// The sender's id of the delivery, when it has one: a delivery seen before is answered
    /// 202 and not queued again. `None`: every delivery is new.
    fn delivery_id<'a>(&self, _req: &HookRequest<'a>) -> Option<&'a str> {
        None
    }

    /// The word the webhook's log line names it by (plain characters only, never body content).
    fn log_action(&self, req: &HookRequest<'_>) -> String {
        req.action.to_owned()
    }
}

/// Payloads larger than this travel without their body; the worker reads the source instead.
pub const MAX_QUEUED_PAYLOAD: usize = 200 * 1024;

/// What a webhook said about a subject; the source decides what to believe and what to read.
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    pub action: String,
    pub proof: Proof,
    pub payload: Option<Value>,
    pub received_at: Instant,
}

impl From<&Event> for Hint {
    fn from(e: &Event) -> Self {
        Hint {
            action: e.action.clone(),
            proof: e.proof,
            payload: e.payload.clone(),
            received_at: e.received_at,
        }
    }
}

/// One person as a listing of the source shows them.
#[derive(Debug, Clone, PartialEq)]
pub struct Listed {
    pub person: String,
    /// `None` in an incremental listing when only the person's entitlements changed.
    pub profile: Option<Profile>,
    pub entitlements: Vec<Entitlement>,
}

/// A listing: everyone (`complete`), or only what changed since an instant.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Listing {
    pub complete: bool,
    pub people: Vec<Listed>,
}

/// A source of people and entitlements.
#[async_trait]
pub trait Source: Send + Sync {
    fn kind(&self) -> SourceKind;

    /// Reads what the source holds of one subject after a webhook into `read`, for the worker
    /// to write: the profile and entitlements to store, and whatever else the read changed.
    /// What was read before an error is written all the same (an ending must not wait for a
    /// retry); the store keeps writes monotonic, so repeating or reordering hints changes nothing.
    async fn refresh(
        &self,
        subject: &SubjectKey,
        hint: &Hint,
        stored: Stored<'_>,
        read: &mut Refreshed,
    ) -> Result<(), WorkError>;

    /// Everyone the source knows with all their entitlements (`since` = `None`, a full
    /// resync), or only records changed since then (incremental). Listing calls only; the
    /// source's rate limit slows it down, never fails it.
    /// `records` is only read (a dry run must not change anything).
    async fn list(
        &self,
        since: Option<Instant>,
        now: Instant,
        records: &Records,
    ) -> Result<Listing, WorkError>;

    /// The items the source offers for mapping, with their names (the console's drop-downs).
    /// Kinds the source cannot list are left out; an operator types their ids.
    async fn items(&self) -> Result<Vec<SourceItem>, WorkError> {
        Ok(Vec::new())
    }
}

/// A mappable source item and the name the operator knows it by.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SourceItem {
    pub item: crate::model::ItemRef,
    pub name: String,
}
