//! The store: one table of `(pk, sk)` records, as in design §6.4.
//!
//! Backends implement only the record-level [`Store`] trait (DynamoDB or embedded SQLite);
//! the typed records Portier keeps are built on top of it once, in [`records`], so both
//! backends hold exactly the same items.

use async_trait::async_trait;

use crate::error::InfraError;

pub mod dynamo;
pub mod records;
pub mod sqlite;

pub use records::Records;

/// One stored record.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub pk: String,
    pub sk: String,
    /// Optimistic version, set by the writer: 1 on create, previous + 1 on update.
    pub version: u64,
    /// The record's body.
    pub data: serde_json::Value,
    /// Unix seconds after which the record counts as absent (DynamoDB TTL attribute).
    pub expires_at: Option<i64>,
}

impl Item {
    pub fn new(pk: impl Into<String>, sk: impl Into<String>, data: serde_json::Value) -> Self {
        Self { pk: pk.into(), sk: sk.into(), version: 1, data, expires_at: None }
    }
}

/// When a write may happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cond {
    /// Unconditionally.
    Always,
    /// Only if no live record exists (an expired one counts as absent).
    Absent,
    /// Only if the live record has exactly this version.
    Version(u64),
}

/// Record-level access to the table. Expired records are invisible to every call.
#[async_trait]
pub trait Store: Send + Sync {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, InfraError>;

    /// Writes the item if `cond` holds, else `InfraError::Conflict`.
    async fn put(&self, item: &Item, cond: Cond) -> Result<(), InfraError>;

    /// Deletes the record if `cond` holds (deleting nothing is fine under `Always`).
    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), InfraError>;

    /// Live records of one partition whose sort key starts with `sk_prefix`, by sort key.
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, InfraError>;

    /// Live records of one partition with `from <= sk <= to`, by sort key.
    async fn query_between(&self, pk: &str, from: &str, to: &str) -> Result<Vec<Item>, InfraError>;

    /// True when the backend answers (for `/healthz`).
    async fn ping(&self) -> Result<(), InfraError>;
}
