//! The [`Queue`] for `portier serve`: durable, in SQLite (it may share the store's file),
//! with SQS FIFO semantics.
//!
//! - Within a message group, strict order; a group with a message in flight (received, not
//!   deleted, visibility not yet over) delivers nothing else. Across groups, oldest first.
//! - A send whose deduplication id was sent in the last 5 minutes is dropped silently.
//! - Visibility follows the injected clock, so tests advance a `ManualClock` instead of
//!   sleeping. Each receive hands out a fresh receipt: a handle from an earlier receive no
//!   longer deletes or delays the message (a no-op, as SQS does).
//! - A message that would be received more than `max_receives` times moves to the dead-letter
//!   table instead.
//! - Everything is in the file: after a restart, in-flight messages come back once their
//!   visibility timeout is over.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::Notify;

use super::{Delivery, Outgoing, Queue, QueueStats};
use crate::clock::Clock;
use crate::error::InfraError;
use crate::sqlite_file::{blocking, open_connection, sql_error};

/// How long a deduplication id suppresses another send (SQS: 5 minutes).
pub const DEDUP_WINDOW: Duration = Duration::from_secs(5 * 60);
/// How often a waiting `receive` looks again (sends in this process wake it at once).
const POLL_INTERVAL: Duration = Duration::from_millis(25);
/// At most this many messages per receive, as SQS.
const MAX_BATCH: usize = 10;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS queue_messages (
    seq           INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id    TEXT NOT NULL,
    grp           TEXT NOT NULL,
    body          TEXT NOT NULL,
    sent_at       INTEGER NOT NULL,
    visible_at    INTEGER NOT NULL,
    receive_count INTEGER NOT NULL DEFAULT 0,
    receipt       TEXT,
    priority      INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS queue_messages_group ON queue_messages (grp, visible_at);
CREATE INDEX IF NOT EXISTS queue_messages_head ON queue_messages (grp, seq);
CREATE INDEX IF NOT EXISTS queue_messages_visible ON queue_messages (visible_at);
CREATE UNIQUE INDEX IF NOT EXISTS queue_messages_receipt ON queue_messages (receipt) WHERE receipt IS NOT NULL;
CREATE TABLE IF NOT EXISTS queue_dedup (
    dedup_id TEXT PRIMARY KEY,
    sent_at  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_dedup_sent ON queue_dedup (sent_at);
CREATE TABLE IF NOT EXISTS queue_dead (
    seq           INTEGER PRIMARY KEY,
    message_id    TEXT NOT NULL,
    grp           TEXT NOT NULL,
    body          TEXT NOT NULL,
    sent_at       INTEGER NOT NULL,
    receive_count INTEGER NOT NULL,
    dead_at       INTEGER NOT NULL
);
";

/// The embedded, durable FIFO queue.
pub struct EmbeddedQueue {
    /// Used on tokio's blocking pool only (see [`blocking`]).
    conn: Arc<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
    max_receives: u32,
    /// Wakes receivers waiting in this process when a message is sent or made visible.
    sent: Notify,
}

struct Candidate {
    seq: i64,
    message_id: String,
    group: String,
    body: String,
    receive_count: u32,
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl EmbeddedQueue {
    /// Opens (creating if needed) the queue in a database file, which the store may share.
    /// `max_receives` = 0 keeps redelivering forever (no dead-letter table).
    pub fn open(path: &Path, clock: Arc<dyn Clock>, max_receives: u32) -> Result<Self, InfraError> {
        Self::with_connection(open_connection(path)?, clock, max_receives)
    }

    /// A queue that lives as long as this value (tests).
    pub fn open_in_memory(clock: Arc<dyn Clock>, max_receives: u32) -> Result<Self, InfraError> {
        let conn = Connection::open_in_memory().map_err(|e| sql_error("open", e))?;
        Self::with_connection(conn, clock, max_receives)
    }

    fn with_connection(
        conn: Connection,
        clock: Arc<dyn Clock>,
        max_receives: u32,
    ) -> Result<Self, InfraError> {
        conn.execute_batch(SCHEMA).map_err(|e| sql_error("queue schema", e))?;
        // Files written before priorities existed: every queued message is ordinary.
        let has_priority = conn
            .prepare("SELECT 1 FROM pragma_table_info('queue_messages') WHERE name = 'priority'")
            .and_then(|mut s| s.exists([]))
            .map_err(|e| sql_error("queue schema", e))?;
        if !has_priority {
            conn.execute_batch("ALTER TABLE queue_messages ADD COLUMN priority INTEGER NOT NULL DEFAULT 1")
                .map_err(|e| sql_error("queue schema", e))?;
        }
        Ok(Self { conn: Arc::new(Mutex::new(conn)), clock, max_receives, sent: Notify::new() })
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().timestamp_millis()
    }

    /// One non-waiting receive: delivers, or dead-letters, up to `max` messages.
    async fn try_receive(&self, max: usize, visibility: Duration) -> Result<Vec<Delivery>, InfraError> {
        let (now, max_receives) = (self.now_ms(), self.max_receives);
        blocking(&self.conn, "receive", move |conn| receive_now(conn, now, max, visibility, max_receives))
            .await
    }
}

/// Up to `wanted` messages to hand out at `now` (ms).
fn heads(tx: &rusqlite::Transaction<'_>, now: i64, wanted: i64) -> Result<Vec<Candidate>, InfraError> {
    // The head of every group with nothing in flight, taken in turns across tenants
    // (the group's prefix before `#`): each tenant's first, then each one's second, so
    // one tenant's backlog never delays another tenant's work. Within a tenant, heads
    // that may take access away come first, then the order of sending; within a group
    // the order is always the order of sending (only its head is ever a candidate).
    tx.prepare_cached(
        "WITH heads AS (
                SELECT m.seq, m.message_id, m.grp, m.body, m.receive_count, m.priority,
                       substr(m.grp, 1, instr(m.grp || '#', '#') - 1) AS tenant
                FROM queue_messages m
                WHERE m.visible_at <= ?1
                  AND m.seq = (SELECT MIN(h.seq) FROM queue_messages h WHERE h.grp = m.grp)
             ), ranked AS (
                SELECT *, ROW_NUMBER() OVER (PARTITION BY tenant ORDER BY priority, seq) AS turn FROM heads
             )
             SELECT seq, message_id, grp, body, receive_count FROM ranked
             ORDER BY turn, priority, seq LIMIT ?2",
    )
    .and_then(|mut stmt| {
        stmt.query_map(params![now, wanted], |r| {
            Ok(Candidate {
                seq: r.get(0)?,
                message_id: r.get(1)?,
                group: r.get(2)?,
                body: r.get(3)?,
                receive_count: r.get(4)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()
    })
    .map_err(|e| sql_error("receive", e))
}

/// [`EmbeddedQueue::try_receive`] on the connection, at `now` (ms).
fn receive_now(
    conn: &mut Connection,
    now: i64,
    max: usize,
    visibility: Duration,
    max_receives: u32,
) -> Result<Vec<Delivery>, InfraError> {
    let visible_at = now.saturating_add(millis(visibility));
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sql_error("receive", e))?;
    let mut out = Vec::new();
    loop {
        let wanted = i64::try_from(max - out.len()).unwrap_or(1);
        let candidates = heads(&tx, now, wanted)?;
        if candidates.is_empty() {
            break;
        }
        for c in candidates {
            let count = c.receive_count.saturating_add(1);
            if max_receives > 0 && count > max_receives {
                tx.execute(
                        "INSERT INTO queue_dead (seq, message_id, grp, body, sent_at, receive_count, dead_at)
                         SELECT seq, message_id, grp, body, sent_at, receive_count, ?2 FROM queue_messages WHERE seq = ?1",
                        params![c.seq, now],
                    )
                    .and_then(|_| tx.execute("DELETE FROM queue_messages WHERE seq = ?1", params![c.seq]))
                    .map_err(|e| sql_error("dead-letter", e))?;
                tracing::warn!(message_id = %c.message_id, receives = c.receive_count, "message moved to the dead-letter table");
                continue;
            }
            let receipt = format!("{}.{}", c.seq, uuid::Uuid::new_v4().simple());
            tx.execute(
                "UPDATE queue_messages SET receive_count = ?2, visible_at = ?3, receipt = ?4 WHERE seq = ?1",
                params![c.seq, count, visible_at, receipt],
            )
            .map_err(|e| sql_error("receive", e))?;
            out.push(Delivery {
                handle: receipt,
                message_id: c.message_id,
                group: c.group,
                body: c.body,
                receive_count: count,
            });
        }
        if out.len() >= max {
            break;
        }
    }
    tx.commit().map_err(|e| sql_error("receive", e))?;
    Ok(out)
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send(&self, msg: &Outgoing) -> Result<(), InfraError> {
        let now = self.now_ms();
        let cutoff = now.saturating_sub(millis(DEDUP_WINDOW));
        let (dedup_id, group, body) = (msg.dedup_id.clone(), msg.group.clone(), msg.body.clone());
        let priority = if msg.urgent { 0 } else { 1 };
        blocking(&self.conn, "send", move |conn| {
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(|e| sql_error("send", e))?;
            tx.execute("DELETE FROM queue_dedup WHERE sent_at <= ?1", params![cutoff])
                .map_err(|e| sql_error("send", e))?;
            let fresh = tx
                .execute(
                    "INSERT OR IGNORE INTO queue_dedup (dedup_id, sent_at) VALUES (?1, ?2)",
                    params![dedup_id, now],
                )
                .map_err(|e| sql_error("send", e))?;
            if fresh == 0 {
                // Sent within the window: dropped, as SQS does (the sender sees success).
                return Ok(());
            }
            tx.execute(
                "INSERT INTO queue_messages (message_id, grp, body, sent_at, visible_at, priority) VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
                params![uuid::Uuid::new_v4().to_string(), group, body, now, priority],
            )
            .map_err(|e| sql_error("send", e))?;
            tx.commit().map_err(|e| sql_error("send", e))
        })
        .await?;
        self.sent.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        max: usize,
        visibility: Duration,
        wait: Duration,
    ) -> Result<Vec<Delivery>, InfraError> {
        let max = max.min(MAX_BATCH);
        if max == 0 {
            return Ok(Vec::new());
        }
        // The wait is real time (the clock may be a test's ManualClock that never moves).
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register before looking, so a send between the look and the sleep still wakes us.
            let woken = self.sent.notified();
            let got = self.try_receive(max, visibility).await?;
            let now = tokio::time::Instant::now();
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let _ = tokio::time::timeout(POLL_INTERVAL.min(deadline - now), woken).await;
        }
    }

    async fn delete(&self, handle: &str) -> Result<(), InfraError> {
        let handle = handle.to_owned();
        blocking(&self.conn, "delete", move |conn| {
            conn.execute("DELETE FROM queue_messages WHERE receipt = ?1", params![handle])
                .map_err(|e| sql_error("delete", e))
        })
        .await?;
        Ok(())
    }

    async fn retry_later(&self, handle: &str, delay: Duration) -> Result<(), InfraError> {
        let now = self.now_ms();
        let (handle, visible_at) = (handle.to_owned(), now.saturating_add(millis(delay)));
        // Only while in flight: a message already visible again, or re-received under a new
        // receipt, is no longer this handle's to move (SQS answers MessageNotInflight).
        let changed = blocking(&self.conn, "retry_later", move |conn| {
            conn.execute(
                "UPDATE queue_messages SET visible_at = ?2 WHERE receipt = ?1 AND visible_at > ?3",
                params![handle, visible_at, now],
            )
            .map_err(|e| sql_error("retry_later", e))
        })
        .await?;
        if changed > 0 && delay.is_zero() {
            self.sent.notify_waiters();
        }
        Ok(())
    }

    async fn stats(&self) -> Result<QueueStats, InfraError> {
        let now = self.now_ms();
        let (visible, in_flight, dead): (i64, i64, i64) = blocking(&self.conn, "stats", move |conn| {
            conn.query_row(
                "SELECT
                    (SELECT COUNT(*) FROM queue_messages WHERE visible_at <= ?1),
                    (SELECT COUNT(*) FROM queue_messages WHERE visible_at > ?1),
                    (SELECT COUNT(*) FROM queue_dead)",
                params![now],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .map_err(|e| sql_error("stats", e))
        })
        .await?;
        let count = |n: i64| u64::try_from(n).unwrap_or(0);
        Ok(QueueStats { visible: count(visible), in_flight: count(in_flight), dead: count(dead) })
    }

    async fn tenant_backlog(&self, tenant: &str) -> Result<Option<u64>, InfraError> {
        // Groups are `tenant#…`; '$' sorts right after '#', so this is a range on the index.
        let range = (format!("{tenant}#"), format!("{tenant}$"));
        let n: i64 = blocking(&self.conn, "backlog", move |conn| {
            conn.query_row(
                "SELECT COUNT(*) FROM queue_messages WHERE grp >= ?1 AND grp < ?2",
                params![range.0, range.1],
                |r| r.get(0),
            )
            .map_err(|e| sql_error("backlog", e))
        })
        .await?;
        Ok(Some(u64::try_from(n).unwrap_or(0)))
    }

    async fn dead_letters(&self, max: usize) -> Result<Vec<Delivery>, InfraError> {
        let limit = i64::try_from(max).unwrap_or(i64::MAX);
        blocking(&self.conn, "dead_letters", move |conn| {
            conn.prepare_cached(
                "SELECT seq, message_id, grp, body, receive_count FROM queue_dead ORDER BY seq LIMIT ?1",
            )
            .and_then(|mut stmt| {
                stmt.query_map(params![limit], |r| {
                    let seq: i64 = r.get(0)?;
                    Ok(Delivery {
                        // Nothing accepts this handle: dead letters are only looked at.
                        handle: format!("dead.{seq}"),
                        message_id: r.get(1)?,
                        group: r.get(2)?,
                        body: r.get(3)?,
                        receive_count: r.get(4)?,
                    })
                })?
                .collect()
            })
            .map_err(|e| sql_error("dead_letters", e))
        })
        .await
    }

    async fn redrive_dead_letters(&self, max: usize) -> Result<usize, InfraError> {
        let (now, limit) = (self.now_ms(), i64::try_from(max).unwrap_or(i64::MAX));
        let moved = blocking(&self.conn, "redrive", move |conn| {
            let tx = conn.transaction().map_err(|e| sql_error("redrive", e))?;
            // A new `seq` puts each at the end of its group, behind work sent since it died.
            let moved = tx
                .execute(
                    "INSERT INTO queue_messages (message_id, grp, body, sent_at, visible_at)
                     SELECT message_id, grp, body, ?1, ?1 FROM queue_dead ORDER BY seq LIMIT ?2",
                    params![now, limit],
                )
                .and_then(|n| {
                    tx.execute(
                        "DELETE FROM queue_dead WHERE seq IN (SELECT seq FROM queue_dead ORDER BY seq LIMIT ?1)",
                        params![limit],
                    )
                    .map(|d| (n, d))
                })
                .map_err(|e| sql_error("redrive", e))?;
            tx.commit().map_err(|e| sql_error("redrive", e))?;
            Ok(moved.0)
        })
        .await?;
        if moved > 0 {
            self.sent.notify_waiters();
        }
        Ok(moved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::SystemClock;
    use crate::queue::{Outgoing, Queue};

    #[tokio::test]
    async fn one_tenants_backlog_never_delays_another_tenants_work() {
        let q = EmbeddedQueue::open_in_memory(Arc::new(SystemClock), 5).expect("queue");
        let send = |group: String, n: usize| Outgoing {
            group,
            dedup_id: format!("d{n}"),
            body: format!("{n}"),
            urgent: false,
        };
        for n in 0..200 {
            q.send(&send(format!("busy#nexudus#{n}"), n)).await.expect("send");
        }
        q.send(&send("quiet#kinnovis#em-1".into(), 999)).await.expect("send");
        let first = q.receive(10, Duration::from_secs(30), Duration::ZERO).await.expect("receive");
        assert_eq!(first.len(), 10);
        assert!(
            first.iter().any(|d| d.group.starts_with("quiet#")),
            "the quiet tenant is served in the first batch"
        );
        // Within a group the order holds, and a group with a message in flight gives none.
        q.send(&send("quiet#kinnovis#em-1".into(), 1000)).await.expect("send");
        let rest = q.receive(10, Duration::from_secs(30), Duration::ZERO).await.expect("receive");
        assert!(rest.iter().all(|d| d.group != "quiet#kinnovis#em-1"), "its first message is in flight");
    }

    #[tokio::test]
    async fn within_a_tenant_what_may_take_access_away_goes_first_but_never_past_its_group() {
        let q = EmbeddedQueue::open_in_memory(Arc::new(SystemClock), 5).expect("queue");
        let send = |group: &str, n: usize, urgent: bool| Outgoing {
            group: group.into(),
            dedup_id: format!("d{n}"),
            body: format!("{n}"),
            urgent,
        };
        for n in 0..50 {
            q.send(&send(&format!("t#nexudus#{n}"), n, false)).await.expect("send");
        }
        // An urgent message behind an ordinary one of its own group waits for it.
        q.send(&send("t#nexudus#0", 100, true)).await.expect("send");
        q.send(&send("t#nexudus#revoked", 101, true)).await.expect("send");
        assert_eq!(q.tenant_backlog("t").await.expect("backlog"), Some(52));
        assert_eq!(q.tenant_backlog("other").await.expect("backlog"), Some(0));
        let first = q.receive(10, Duration::from_secs(30), Duration::ZERO).await.expect("receive");
        let bodies: Vec<&str> = first.iter().map(|d| d.body.as_str()).collect();
        assert_eq!(bodies.first(), Some(&"101"), "the urgent head goes first: {bodies:?}");
        assert!(bodies.contains(&"0") && !bodies.contains(&"100"), "group order holds: {bodies:?}");
    }
}
