//! One customer's passes or bookings, read alone, with everyone else's waiting, or from a
//! listing of everyone: whichever costs Nexudus fewer calls.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::coalesce::{Coalescer, Snapshot};
use crate::error::CallError;
use crate::model::Instant;
use crate::sources::Stored;

/// Pages a listing of `records` records takes.
pub(super) fn pages(records: usize) -> usize {
    records.div_ceil(super::client::PAGE_SIZE as usize).max(1)
}

/// When one listing of everyone costs Nexudus fewer calls than reading the waiting people
/// alone. The people waiting at one moment are at most the workers' concurrency, while a
/// burst may hold thousands more in the queue behind them: so everyone read alone in the
/// current run of reads counts too, until a listing is bought (ski rental: the alone reads of
/// a burst never cost more than one listing). A run ends after [`QUIET`] without a read, so
/// webhooks that come one by one are each read alone.
pub(super) struct ListingCost {
    /// Pages the last listing of everything took.
    pages: AtomicUsize,
    run: Mutex<Run>,
}

#[derive(Default)]
struct Run {
    /// People read alone since the last listing in the current run, and when the last was.
    alone: usize,
    last_alone: Option<Instant>,
}

/// A pause in reads this long ends a run of them.
const QUIET: chrono::Duration = chrono::Duration::seconds(10);

fn recent(at: Option<Instant>, now: Instant) -> bool {
    at.is_some_and(|at| now - at <= QUIET)
}

impl ListingCost {
    pub(super) fn new(first_pages: usize) -> Self {
        Self { pages: AtomicUsize::new(first_pages), run: Mutex::new(Run::default()) }
    }

    fn run(&self) -> std::sync::MutexGuard<'_, Run> {
        self.run.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `waiting` people are better served by a listing of everyone.
    fn list(&self, waiting: usize, now: Instant) -> bool {
        let pages = self.pages.load(Ordering::Relaxed);
        let run = self.run();
        let in_run = if recent(run.last_alone, now) { run.alone } else { 0 };
        in_run + waiting > pages
    }

    fn read_alone(&self, waiting: usize, now: Instant) {
        let mut run = self.run();
        run.alone = if recent(run.last_alone, now) { run.alone + waiting } else { waiting };
        run.last_alone = Some(now);
    }

    /// A listing of `records` records was bought: the count starts afresh.
    fn listed(&self, records: usize) {
        self.pages.store(pages(records), Ordering::Relaxed);
        *self.run() = Run::default();
    }
}

/// One kind of per-customer records that Nexudus can also list for everyone.
pub(super) struct ListedKind<'a, T> {
    pub(super) coalescer: &'a Coalescer<Vec<T>, Instant>,
    pub(super) listing: &'a Snapshot<Vec<T>>,
    pub(super) cost: &'a ListingCost,
}

/// One customer's records as read after `since`: from the last listing of everyone if it
/// started well after that, else read with everyone else's waiting, each alone (`one`) while
/// that is cheaper than a listing, or in one new listing of everyone (`all`).
pub(super) async fn read_listed<T, One, OneF, All, AllF>(
    kind: ListedKind<'_, T>,
    id: i64,
    since: Instant,
    records: Stored<'_>,
    one: One,
    all: All,
    owner: fn(&T) -> i64,
) -> Result<Vec<T>, CallError>
where
    T: Clone + Send,
    One: Fn(i64) -> OneF + Copy,
    OneF: std::future::Future<Output = Result<Vec<T>, CallError>>,
    All: FnOnce() -> AllF,
    AllF: std::future::Future<Output = Result<Vec<T>, CallError>>,
{
    if let Some(held) = kind.listing.get(id, since) {
        return Ok(held);
    }
    let ListedKind { coalescer, listing, cost } = kind;
    let batch = move |asked: Vec<(i64, Instant)>| async move {
        let now = records.now();
        // A listing that finished while they waited for the read serves them now.
        let mut each = HashMap::new();
        let mut ids = Vec::new();
        for (i, since) in asked {
            match listing.get(i, since) {
                Some(held) => drop(each.insert(i, held)),
                None => ids.push(i),
            }
        }
        if ids.is_empty() {
            return Ok(each);
        }
        if !cost.list(ids.len(), now) {
            cost.read_alone(ids.len(), now);
            for i in ids {
                each.insert(i, one(i).await?);
            }
            return Ok(each);
        }
        let started = records.now();
        let everyone = all().await?;
        cost.listed(everyone.len());
        each.extend(kept(listing, started, ids, everyone, owner));
        Ok(each)
    };
    coalescer.get(id, since, batch, one).await
}

/// A complete listing, grouped by customer and kept as the kind's snapshot; answers the
/// wanted ids' records (a customer it does not name holds none).
fn kept<T: Clone>(
    listing: &Snapshot<Vec<T>>,
    started: Instant,
    ids: Vec<i64>,
    all: Vec<T>,
    owner: impl Fn(&T) -> i64,
) -> HashMap<i64, Vec<T>> {
    let mut by_owner: HashMap<i64, Vec<T>> = HashMap::new();
    for record in all {
        by_owner.entry(owner(&record)).or_default().push(record);
    }
    let wanted = ids.into_iter().map(|i| (i, by_owner.get(&i).cloned().unwrap_or_default())).collect();
    listing.keep(started, by_owner);
    wanted
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_run_of_reads_buys_a_listing_and_webhooks_one_by_one_never_do() {
        let t0 = chrono::Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).single().expect("time");
        let at = |s: i64| t0 + chrono::Duration::seconds(s);
        // A listing of 60 pages (6 000 passes); 40 people wait at a time (the workers').
        let cost = ListingCost::new(5);
        cost.listed(6_000);
        assert!(!cost.list(40, at(0)), "40 alone cost less than 60 pages");
        cost.read_alone(40, at(0));
        assert!(cost.list(40, at(4)), "80 read alone in one run would cost more than the listing");
        cost.listed(6_000);
        assert!(!cost.list(40, at(5)), "a listing starts the count afresh");
        // One webhook at a time, each after a pause: never a listing.
        for n in 0..1_000 {
            assert!(!cost.list(1, at(20 + 11 * n)));
            cost.read_alone(1, at(20 + 11 * n));
        }
        // A pause ends a run.
        cost.read_alone(40, at(20_000));
        assert!(!cost.list(40, at(20_011)));
    }
}
