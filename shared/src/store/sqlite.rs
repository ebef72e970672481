//! The [`Store`] on an embedded SQLite file, for `portier serve`: the same records and the
//! same semantics as [`super::dynamo::DynamoStore`] (expiry by the injected clock, conditions,
//! byte-ordered sort keys).

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use super::{Cond, Item, Store};
use crate::clock::Clock;
use crate::error::InfraError;
use crate::sqlite_file::{blocking, open_connection, sql_error};

/// Expired records are purged from the file every this many writes.
const PURGE_EVERY: u64 = 1000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    pk   TEXT NOT NULL,
    sk   TEXT NOT NULL,
    v    INTEGER NOT NULL,
    data TEXT NOT NULL,
    ttl  INTEGER,
    PRIMARY KEY (pk, sk)
);
CREATE INDEX IF NOT EXISTS records_ttl ON records (ttl) WHERE ttl IS NOT NULL;
";

/// Embedded SQLite backend of the record store. SQLite blocks, so every call runs on tokio's
/// blocking pool: a slow statement (another process holding the file's write lock, a big
/// listing) never stalls the async threads that answer webhooks.
pub struct SqliteStore {
    conn: Arc<Mutex<Connection>>,
    clock: Arc<dyn Clock>,
    writes: AtomicU64,
}

fn version_sql(v: u64) -> Result<i64, InfraError> {
    i64::try_from(v).map_err(|_| InfraError::Backend("record version out of range".to_owned()))
}

fn row_to_item(row: &rusqlite::Row<'_>) -> rusqlite::Result<(String, String, i64, String, Option<i64>)> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?))
}

fn decode((pk, sk, v, data, ttl): (String, String, i64, String, Option<i64>)) -> Result<Item, InfraError> {
    let data = serde_json::from_str(&data)
        .map_err(|e| InfraError::Backend(format!("sqlite record data is not JSON: {e}")))?;
    let version =
        u64::try_from(v).map_err(|_| InfraError::Backend("sqlite record version is negative".to_owned()))?;
    Ok(Item { pk, sk, version, data, expires_at: ttl })
}

impl SqliteStore {
    /// Opens (creating if needed) the store in a database file; the queue may share it.
    pub fn open(path: &Path, clock: Arc<dyn Clock>) -> Result<Self, InfraError> {
        Self::with_connection(open_connection(path)?, clock)
    }

    /// A store that lives as long as this value (tests, `--dry-run`).
    pub fn open_in_memory(clock: Arc<dyn Clock>) -> Result<Self, InfraError> {
        Self::with_connection(Connection::open_in_memory().map_err(|e| sql_error("open", e))?, clock)
    }

    fn with_connection(conn: Connection, clock: Arc<dyn Clock>) -> Result<Self, InfraError> {
        conn.execute_batch(SCHEMA).map_err(|e| sql_error("schema", e))?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)), clock, writes: AtomicU64::new(0) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn now(&self) -> i64 {
        self.clock.now().timestamp()
    }

    /// Removes expired records (reads already ignore them); returns how many.
    pub fn purge_expired(&self) -> Result<usize, InfraError> {
        self.conn()
            .execute("DELETE FROM records WHERE ttl IS NOT NULL AND ttl <= ?1", params![self.now()])
            .map_err(|e| sql_error("purge", e))
    }

    async fn after_write(&self) {
        let due = self.writes.fetch_add(1, Ordering::Relaxed) % PURGE_EVERY == PURGE_EVERY - 1;
        if !due {
            return;
        }
        let now = self.now();
        let purged = blocking(&self.conn, "purge", move |conn| {
            conn.execute("DELETE FROM records WHERE ttl IS NOT NULL AND ttl <= ?1", params![now])
                .map_err(|e| sql_error("purge", e))
        })
        .await;
        if let Err(e) = purged {
            tracing::warn!(error = %e, "purging expired records failed");
        }
    }

    async fn select(
        &self,
        sql: &'static str,
        params: Vec<rusqlite::types::Value>,
    ) -> Result<Vec<Item>, InfraError> {
        let rows = blocking(&self.conn, "query", move |conn| {
            let mut stmt = conn.prepare_cached(sql).map_err(|e| sql_error("query", e))?;
            stmt.query_map(rusqlite::params_from_iter(params), row_to_item)
                .map_err(|e| sql_error("query", e))?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| sql_error("query", e))
        })
        .await?;
        rows.into_iter().map(decode).collect()
    }
}

/// Owned SQL values, for statements that run on the blocking pool.
fn values<const N: usize>(v: [rusqlite::types::Value; N]) -> Vec<rusqlite::types::Value> {
    v.into()
}

#[async_trait]
impl Store for SqliteStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, InfraError> {
        let (pk, sk, now) = (pk.to_owned(), sk.to_owned(), self.now());
        let row = blocking(&self.conn, "get", move |conn| {
            conn.prepare_cached(
                "SELECT pk, sk, v, data, ttl FROM records
                 WHERE pk = ?1 AND sk = ?2 AND (ttl IS NULL OR ttl > ?3)",
            )
            .and_then(|mut stmt| stmt.query_row(params![pk, sk, now], row_to_item).optional())
            .map_err(|e| sql_error("get", e))
        })
        .await?;
        row.map(decode).transpose()
    }

    async fn put(&self, item: &Item, cond: Cond) -> Result<(), InfraError> {
        // DynamoDB refuses empty key values; so does this store, so both hold the same items.
        if item.pk.is_empty() || item.sk.is_empty() {
            return Err(InfraError::Backend("sqlite put: record keys must not be empty".to_owned()));
        }
        let data = serde_json::to_string(&item.data)
            .map_err(|e| InfraError::Backend(format!("record data: {e}")))?;
        let v = version_sql(item.version)?;
        let now = self.now();
        let expected = match cond {
            Cond::Version(expected) => Some(version_sql(expected)?),
            _ => None,
        };
        let (pk, sk, ttl) = (item.pk.clone(), item.sk.clone(), item.expires_at);
        let changed = blocking(&self.conn, "put", move |conn| {
            let result = match (cond, expected) {
                (Cond::Always, _) => conn.execute(
                    "INSERT INTO records (pk, sk, v, data, ttl) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (pk, sk) DO UPDATE SET v = excluded.v, data = excluded.data, ttl = excluded.ttl",
                    params![pk, sk, v, data, ttl],
                ),
                // Inserts, or replaces an expired record; a live one makes it change nothing.
                (Cond::Absent, _) => conn.execute(
                    "INSERT INTO records (pk, sk, v, data, ttl) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (pk, sk) DO UPDATE SET v = excluded.v, data = excluded.data, ttl = excluded.ttl
                     WHERE records.ttl IS NOT NULL AND records.ttl <= ?6",
                    params![pk, sk, v, data, ttl, now],
                ),
                (Cond::Version(_), expected) => conn.execute(
                    "UPDATE records SET v = ?3, data = ?4, ttl = ?5
                     WHERE pk = ?1 AND sk = ?2 AND v = ?6 AND (ttl IS NULL OR ttl > ?7)",
                    params![pk, sk, v, data, ttl, expected, now],
                ),
            };
            result.map_err(|e| sql_error("put", e))
        })
        .await?;
        self.after_write().await;
        if changed == 0 { Err(InfraError::Conflict) } else { Ok(()) }
    }

    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), InfraError> {
        let now = self.now();
        let expected = match cond {
            Cond::Version(expected) => Some(version_sql(expected)?),
            _ => None,
        };
        let (pk, sk) = (pk.to_owned(), sk.to_owned());
        blocking(&self.conn, "delete", move |conn| match (cond, expected) {
            (Cond::Always, _) => {
                conn.execute("DELETE FROM records WHERE pk = ?1 AND sk = ?2", params![pk, sk])
                    .map_err(|e| sql_error("delete", e))?;
                Ok(())
            }
            (Cond::Version(_), expected) => {
                let deleted = conn
                    .execute(
                        "DELETE FROM records WHERE pk = ?1 AND sk = ?2 AND v = ?3 AND (ttl IS NULL OR ttl > ?4)",
                        params![pk, sk, expected, now],
                    )
                    .map_err(|e| sql_error("delete", e))?;
                if deleted == 0 { Err(InfraError::Conflict) } else { Ok(()) }
            }
            // Succeeds only when nothing live is there (and clears an expired record, as
            // DynamoDB's conditional delete does).
            (Cond::Absent, _) => {
                let tx = conn
                    .transaction_with_behavior(TransactionBehavior::Immediate)
                    .map_err(|e| sql_error("delete", e))?;
                let live: bool = tx
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM records
                         WHERE pk = ?1 AND sk = ?2 AND (ttl IS NULL OR ttl > ?3))",
                        params![pk, sk, now],
                        |r| r.get(0),
                    )
                    .map_err(|e| sql_error("delete", e))?;
                if live {
                    return Err(InfraError::Conflict);
                }
                tx.execute("DELETE FROM records WHERE pk = ?1 AND sk = ?2", params![pk, sk])
                    .map_err(|e| sql_error("delete", e))?;
                tx.commit().map_err(|e| sql_error("delete", e))
            }
        })
        .await
    }

    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, InfraError> {
        // `sk >= prefix` lets the primary key index find the start; substr checks the prefix
        // exactly (LIKE would treat `%`/`_` as wildcards and ignore ASCII case).
        self.select(
            "SELECT pk, sk, v, data, ttl FROM records
             WHERE pk = ?1 AND sk >= ?2 AND substr(sk, 1, length(?2)) = ?2 AND (ttl IS NULL OR ttl > ?3)
             ORDER BY sk",
            values([pk.to_owned().into(), sk_prefix.to_owned().into(), self.now().into()]),
        )
        .await
    }

    async fn query_between(&self, pk: &str, from: &str, to: &str) -> Result<Vec<Item>, InfraError> {
        self.select(
            "SELECT pk, sk, v, data, ttl FROM records
             WHERE pk = ?1 AND sk >= ?2 AND sk <= ?3 AND (ttl IS NULL OR ttl > ?4)
             ORDER BY sk",
            values([pk.to_owned().into(), from.to_owned().into(), to.to_owned().into(), self.now().into()]),
        )
        .await
    }

    async fn ping(&self) -> Result<(), InfraError> {
        blocking(&self.conn, "ping", |conn| {
            conn.query_row("SELECT 1", [], |_| Ok(())).map_err(|e| sql_error("ping", e))
        })
        .await
    }
}
