//! One customer's passes or bookings, read alone, with everyone else's waiting, or from a
//! listing of everyone: whichever costs Nexudus fewer calls.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::coalesce::{Coalescer, Snapshot};
use crate::error::CallError;
use crate::model::Instant;
use crate::store::Records;

/// Pages a listing of `records` records takes.
pub(super) fn pages(records: usize) -> usize {
    records.div_ceil(super::client::PAGE_SIZE as usize).max(1)
}

/// One kind of per-customer records that Nexudus can also list for everyone.
pub(super) struct ListedKind<'a, T> {
    pub(super) coalescer: &'a Coalescer<Vec<T>>,
    pub(super) listing: &'a Snapshot<Vec<T>>,
    /// Pages the last listing of everything took.
    pub(super) pages: &'a AtomicUsize,
}

/// One customer's records as read after `since`: from the last listing of everyone if it
/// started well after that, else read with everyone else's waiting, each alone (`one`) while
/// that is cheaper than a listing, or in one new listing of everyone (`all`).
pub(super) async fn read_listed<T, One, OneF, All, AllF>(
    kind: ListedKind<'_, T>,
    id: i64,
    since: Instant,
    records: &Records,
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
    let ListedKind { coalescer, listing, pages: listing_pages } = kind;
    let batch = move |ids: Vec<i64>| async move {
        if ids.len() <= listing_pages.load(Ordering::Relaxed) {
            let mut each = HashMap::new();
            for i in ids {
                each.insert(i, one(i).await?);
            }
            return Ok(each);
        }
        let started = records.now();
        let everyone = all().await?;
        listing_pages.store(pages(everyone.len()), Ordering::Relaxed);
        Ok(kept(listing, started, ids, everyone, owner))
    };
    coalescer.get(id, batch, one).await
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
