//! Space-management systems: one folder per source (webhook meaning + REST client).

use async_trait::async_trait;
use serde_json::Value;

use crate::error::WorkError;
use crate::model::{Entitlement, Instant, Profile, SourceKind, SubjectKey};
use crate::store::Records;

pub mod kinnovis;
pub mod nexudus;

/// How a webhook proved where it came from. Only a signature vouches for its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proof {
    Signature,
    Token,
}

/// What a webhook said about a subject; the source decides what to believe and what to read.
#[derive(Debug, Clone, PartialEq)]
pub struct Hint {
    pub action: String,
    pub proof: Proof,
    pub payload: Option<Value>,
    pub received_at: Instant,
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

    /// Brings the stored profile and entitlements of one subject up to date after a webhook.
    /// Writes are monotonic, so repeating or reordering hints changes nothing.
    async fn refresh(&self, subject: &SubjectKey, hint: &Hint, records: &Records) -> Result<(), WorkError>;

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
