//! The work queue: FIFO per message group, deduplicated, with visibility timeouts and a DLQ.
//!
//! SQS FIFO in AWS ([`sqs`]); an embedded durable queue in SQLite for `portier serve`
//! ([`embedded`]). Group = `tenant#source#person`, so one subject is worked by one worker at
//! a time; deduplication id = the event id.

use std::time::Duration;

use async_trait::async_trait;

use crate::error::InfraError;

pub mod embedded;
pub mod message;
pub mod sqs;

pub use message::{Event, Proof, WorkMessage};

/// A message to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// FIFO message group: messages of one group are delivered one at a time, in order.
    pub group: String,
    /// Deduplication id: a second send with the same id within 5 minutes is dropped.
    pub dedup_id: String,
    pub body: String,
    /// May take access away (a delete, a cancellation, a window's end): the embedded queue
    /// delivers it before a tenant's other work. SQS FIFO has no priorities; there it waits
    /// its turn with the rest.
    pub urgent: bool,
}

/// A received message; it comes back after its visibility timeout unless deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// Opaque handle for `delete` / `retry_later` (SQS receipt handle).
    pub handle: String,
    pub message_id: String,
    pub group: String,
    pub body: String,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
}

/// Depths for `portier status` and alarms.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub visible: u64,
    pub in_flight: u64,
    pub dead: u64,
}

#[async_trait]
pub trait Queue: Send + Sync {
    async fn send(&self, msg: &Outgoing) -> Result<(), InfraError>;

    /// Up to `max` messages (at most 10), each hidden for `visibility`. Waits at most
    /// `wait` for the first one. A message received more than the queue's maximum receive
    /// count goes to the dead-letter queue instead of being delivered again.
    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, InfraError>;

    /// Done: the message is gone.
    async fn delete(&self, handle: &str) -> Result<(), InfraError>;

    /// Not done: deliver again after `delay` (changes the visibility timeout).
    async fn retry_later(&self, handle: &str, delay: Duration) -> Result<(), InfraError>;

    async fn stats(&self) -> Result<QueueStats, InfraError>;

    /// Messages waiting or in flight whose group starts with `tenant#`, where the backend can
    /// count them (the embedded queue); `None` where it cannot (one SQS queue holds every
    /// tenant and counts only the whole).
    async fn tenant_backlog(&self, _tenant: &str) -> Result<Option<u64>, InfraError> {
        Ok(None)
    }

    /// Looks at (without removing) up to `max` messages in the dead-letter queue.
    async fn dead_letters(&self, max: usize) -> Result<Vec<Delivery>, InfraError>;

    /// Moves up to `max` dead letters, oldest first, back to the work queue (once their cause is
    /// fixed); returns how many. Each goes to the end of its group with a fresh receive count.
    /// Safe to repeat and to interrupt: every message reconciles its person from the source's
    /// current state, so a copy left in both queues by a crash is harmless.
    async fn redrive_dead_letters(&self, max: usize) -> Result<usize, InfraError>;
}
