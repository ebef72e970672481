//! The SQLite file `portier serve` keeps its store and queue in: opened once per connection
//! with the same settings, and used off the async threads. The embedded store and queue each
//! own their tables; this is all they share.

use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rusqlite::Connection;

use crate::error::InfraError;

/// How long a writer waits for another connection's lock on the file.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `f` with the connection on tokio's blocking pool.
pub async fn blocking<T: Send + 'static>(
    conn: &Arc<Mutex<Connection>>,
    op: &'static str,
    f: impl FnOnce(&mut Connection) -> Result<T, InfraError> + Send + 'static,
) -> Result<T, InfraError> {
    let conn = conn.clone();
    tokio::task::spawn_blocking(move || {
        // Every change is one statement or one transaction that rolls back on drop, so a
        // poisoned lock still guards a consistent connection.
        let mut conn = conn.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut conn)
    })
    .await
    .map_err(|e| InfraError::Backend(format!("sqlite {op}: the blocking task failed: {e}")))?
}

pub fn sql_error(op: &str, e: rusqlite::Error) -> InfraError {
    // rusqlite's messages name the failing constraint or statement, never bound values.
    InfraError::Backend(format!("sqlite {op}: {e}"))
}

/// Opens a connection to a shared database file: WAL, so readers never block the writer,
/// and a busy timeout, so the store's and the queue's connections wait for each other.
pub fn open_connection(path: &Path) -> Result<Connection, InfraError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)
            .map_err(|e| InfraError::Backend(format!("creating {}: {e}", dir.display())))?;
    }
    let conn = Connection::open(path).map_err(|e| sql_error("open", e))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| sql_error("busy_timeout", e))?;
    // The journal mode pragma answers with the mode it set; query_row reads that answer.
    let _mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| sql_error("journal_mode", e))?;
    // NORMAL in WAL mode survives a process crash; only an OS crash can lose the last commits.
    conn.pragma_update(None, "synchronous", "NORMAL").map_err(|e| sql_error("synchronous", e))?;
    Ok(conn)
}
