//! Coalesced reads: refreshes of many people that wait for Nexudus at the same time are served
//! by one read (a batch by id, or one listing of every record of a kind), not one read each.
//!
//! Nexudus allows 1 call per 100 ms and 120 a minute per account, so during a burst every
//! refresh waits for the rate limiter anyway; while one read is in flight, the others queue
//! here and the next read serves all of them. A read always starts after every request it
//! serves was made, so it is as fresh as a read of each person's own would have been: what a
//! webhook announced is in it (principle 3: a batched REST read is a REST read).

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::oneshot;

use crate::error::CallError;
use crate::model::Instant;

/// A listing serves a request only if it started this long after the request's webhook came
/// in: clocks of different machines (the ingress's, the worker's) may disagree by a little,
/// and a listing that began before the change would not show it.
pub fn snapshot_margin() -> chrono::Duration {
    chrono::Duration::seconds(2)
}

/// The last complete listing of one kind (every customer's records), kept to serve requests
/// whose webhook came in before it started: during a burst, one listing serves everyone.
pub struct Snapshot<V> {
    last: Mutex<Option<Listed<V>>>,
}

/// When a listing started, and each customer's records in it.
type Listed<V> = (Instant, Arc<HashMap<i64, V>>);

impl<V> Default for Snapshot<V> {
    fn default() -> Self {
        Self { last: Mutex::new(None) }
    }
}

impl<V: Clone + Default> Snapshot<V> {
    /// `id`'s records, if the last listing started late enough after `since` (a customer it
    /// does not name holds none).
    pub fn get(&self, id: i64, since: Instant) -> Option<V> {
        let last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        let (started, all) = last.as_ref()?;
        (*started > since + snapshot_margin()).then(|| all.get(&id).cloned().unwrap_or_default())
    }

    /// Keeps a listing that started at `started`, unless a later one is kept already.
    pub fn keep(&self, started: Instant, all: HashMap<i64, V>) {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.as_ref().is_none_or(|(at, _)| *at < started) {
            *last = Some((started, Arc::new(all)));
        }
    }
}

type Waiting<V, S> = Vec<(i64, S, oneshot::Sender<Result<V, CallError>>)>;

/// One kind of read, coalesced across concurrent callers. Each request may carry a tag `S`
/// (for listed kinds: when its webhook came in), handed to the read with its id.
pub struct Coalescer<V, S = ()> {
    pending: Mutex<Waiting<V, S>>,
    /// One read at a time; whoever holds it serves everyone waiting.
    flight: tokio::sync::Mutex<()>,
}

impl<V, S> Default for Coalescer<V, S> {
    fn default() -> Self {
        Self { pending: Mutex::new(Vec::new()), flight: tokio::sync::Mutex::new(()) }
    }
}

impl<V: Clone + Send, S: Ord + Copy> Coalescer<V, S> {
    /// The value for `id`, read by `read` together with everyone else's waiting at the time.
    /// `read` gets the distinct ids (one or more, each with the greatest tag asked with it)
    /// and answers a value per id it could read; an id it leaves out is read alone by
    /// `single`, so only a read of that person decides anything about them (a batch that
    /// leaves someone out proves nothing); so is everyone when the shared read fails.
    pub async fn get<R, RF, F, SF>(&self, id: i64, tag: S, read: R, single: F) -> Result<V, CallError>
    where
        R: FnOnce(Vec<(i64, S)>) -> RF,
        RF: Future<Output = Result<HashMap<i64, V>, CallError>>,
        F: Fn(i64) -> SF,
        SF: Future<Output = Result<V, CallError>>,
    {
        let (tx, mut rx) = oneshot::channel();
        self.pending.lock().unwrap_or_else(|p| p.into_inner()).push((id, tag, tx));
        let _flight = self.flight.lock().await;
        // Served by the read that was in flight while we waited?
        if let Ok(answer) = rx.try_recv() {
            return answer;
        }
        let waiting = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let mut ids: Vec<(i64, S)> = waiting.iter().map(|(id, tag, _)| (*id, *tag)).collect();
        // Sorted by id, then tag: the last of each id carries its greatest tag.
        ids.sort_unstable();
        ids.reverse();
        ids.dedup_by_key(|(id, _)| *id);
        match read(ids).await {
            Ok(mut found) => {
                for (id, _, tx) in waiting {
                    let answer = match found.get(&id) {
                        Some(v) => Ok(v.clone()),
                        None => {
                            let v = single(id).await;
                            if let Ok(v) = &v {
                                found.insert(id, v.clone());
                            }
                            v
                        }
                    };
                    let _ = tx.send(answer);
                }
            }
            // The shared read is only a saving: when it fails, everyone is read alone, so
            // one person's trouble (Nexudus answers 500 for a deleted customer) is theirs only.
            Err(e) => {
                tracing::debug!(error = %e, waiting = waiting.len(), "coalesced read failed; reading each alone");
                for (id, _, tx) in waiting {
                    let _ = tx.send(single(id).await);
                }
            }
        }
        rx.await.unwrap_or_else(|_| Err(CallError::retryable("a coalesced read was cancelled")))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_listing_serves_only_webhooks_that_came_in_well_before_it_started() {
        use chrono::TimeZone;
        let t = |s: i64| chrono::Utc.timestamp_opt(1_800_000_000 + s, 0).single().expect("time");
        let snap: Snapshot<Vec<u8>> = Snapshot::default();
        assert_eq!(snap.get(1, t(0)), None, "nothing listed yet");
        snap.keep(t(10), HashMap::from([(1, vec![7])]));
        assert_eq!(snap.get(1, t(5)), Some(vec![7]));
        assert_eq!(snap.get(2, t(5)), Some(vec![]), "a complete listing: not named, holds none");
        assert_eq!(snap.get(1, t(9)), None, "within the margin: read again");
        assert_eq!(snap.get(1, t(10)), None, "the same instant proves nothing");
        snap.keep(t(8), HashMap::new());
        assert_eq!(snap.get(1, t(5)), Some(vec![7]), "an older listing never replaces a newer one");
    }

    #[tokio::test(start_paused = true)]
    async fn callers_waiting_together_share_one_read_and_the_left_out_are_read_alone() {
        let c: Arc<Coalescer<String>> = Arc::default();
        let reads = Arc::new(AtomicUsize::new(0));
        let singles = Arc::new(AtomicUsize::new(0));
        let mut tasks = tokio::task::JoinSet::new();
        for id in 0..20_i64 {
            let (c, reads, singles) = (c.clone(), reads.clone(), singles.clone());
            tasks.spawn(async move {
                let read = |ids: Vec<(i64, ())>| async move {
                    reads.fetch_add(1, Ordering::SeqCst);
                    // Slow, as a rate-limited call is: the others pile up meanwhile.
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                    Ok(ids
                        .into_iter()
                        .filter(|(i, _)| i % 5 != 0)
                        .map(|(i, _)| (i, format!("batch {i}")))
                        .collect())
                };
                let single = |i: i64| {
                    singles.fetch_add(1, Ordering::SeqCst);
                    async move { Ok(format!("alone {i}")) }
                };
                (id, c.get(id, (), read, single).await)
            });
        }
        while let Some(done) = tasks.join_next().await {
            let (id, got) = done.expect("task");
            let want = if id % 5 == 0 { format!("alone {id}") } else { format!("batch {id}") };
            assert_eq!(got.expect("read"), want);
        }
        assert!(reads.load(Ordering::SeqCst) <= 3, "20 callers, at most a few reads");
        assert_eq!(singles.load(Ordering::SeqCst), 4, "each left-out id read alone once");
    }
}
