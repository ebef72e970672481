//! `portier serve`'s workers: up to `workers × BATCH` messages in flight, received as room
//! frees. A Lambda's batch waits for its slowest message; a process need not, so a person
//! still waiting for the slowest lock system never keeps the next ones from starting, and
//! that system's allowance stays in use (issue 14: Brivo sat idle between batches).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use super::{Runtime, visibility, work_one};
use crate::queue::Delivery;

/// Messages one receive asks for (SQS's maximum; the embedded queue's too).
pub const BATCH: usize = 10;

/// How long messages still being worked at shutdown may take before they are dropped (they
/// come back after their visibility, and every path is safe to repeat).
const FINISH: Duration = Duration::from_secs(10);

/// Works the queue with room for `workers × BATCH` messages until `stop` turns true.
pub async fn run(rt: Runtime, workers: usize, mut stop: watch::Receiver<bool>) {
    let room = Arc::new(Semaphore::new(workers.max(1) * BATCH));
    let mut working = JoinSet::new();
    while !*stop.borrow() {
        let permits = tokio::select! {
            p = take_room(&room) => p,
            _ = stop.changed() => continue,
        };
        let Some(mut permits) = permits else { break };
        let received = tokio::select! {
            r = rt.queue.receive(permits.num_permits(), visibility(), Duration::from_secs(1)) => r,
            _ = stop.changed() => continue,
        };
        match received {
            Ok(batch) => {
                for group in by_group(batch) {
                    // One permit per message, handed back as each is done.
                    let mut held: Vec<_> = (0..group.len()).filter_map(|_| permits.split(1)).collect();
                    let rt = rt.clone();
                    working.spawn(async move {
                        for d in group {
                            if let Err(e) = work_one(&rt, &d).await {
                                tracing::error!(error = %e, "worker: store or queue unavailable");
                            }
                            held.pop();
                        }
                    });
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "worker: store or queue unavailable");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        while working.try_join_next().is_some() {}
    }
    let _ = tokio::time::timeout(FINISH, async { while working.join_next().await.is_some() {} }).await;
}

/// Room for at least one message, and for as many more as are free (up to a batch).
async fn take_room(room: &Arc<Semaphore>) -> Option<OwnedSemaphorePermit> {
    let mut permits = room.clone().acquire_owned().await.ok()?;
    while permits.num_permits() < BATCH {
        match room.clone().try_acquire_owned() {
            Ok(more) => permits.merge(more),
            Err(_) => break,
        }
    }
    Some(permits)
}

/// A batch by message group, each group's messages in order: groups are worked at once (and
/// their refreshes share the source's reads), a group's messages one after another.
pub(super) fn by_group(batch: Vec<Delivery>) -> Vec<Vec<Delivery>> {
    let mut groups: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
    for d in batch {
        groups.entry(d.group.clone()).or_default().push(d);
    }
    groups.into_values().collect()
}
