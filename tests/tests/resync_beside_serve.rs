//! `portier resync` against the data of a live `portier serve` (issue 16.5): a second
//! connection to the same SQLite file (as the `resync` process has) writes a full resync of
//! 1 000 people while webhooks come in. SQLite runs on tokio's blocking pool, so the file's
//! write lock never stalls the threads that answer webhooks. The latencies are printed beside
//! their goal, never asserted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use shared::clock::{Clock, SystemClock};
use shared::config::{Config, SourceConfig};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::sqlite::SqliteStore;
use shared::store::{Records, Store};
use testkit::harness::{BIKE_STORAGE, HookAuth, LOCK, fast_retries, secrets, tenant_config};

const PEOPLE: i64 = 1_000;

/// The store, queue and records of one process on the shared file.
fn process(file: &std::path::Path) -> (Records, Arc<dyn Queue>) {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(file, clock.clone()).expect("store"));
    let queue: Arc<dyn Queue> = Arc::new(EmbeddedQueue::open(file, clock.clone(), 5).expect("queue"));
    (Records::new(store, clock), queue)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_are_answered_while_a_resync_writes_the_same_file() {
    let (nexudus, tapkey) = testkit::harness::space_sims().await;
    nexudus.add_time_pass(BIKE_STORAGE, "Bike Storage");
    tapkey.add_lock(LOCK, "Bike Storage Door", true);
    for id in 1..=PEOPLE {
        nexudus.add_coworker(id, &format!("Member {id}"), &format!("m{id}@example.com"));
        nexudus.give_pass(id, BIKE_STORAGE, None);
    }
    let mut tenant = tenant_config(&nexudus, &tapkey, HookAuth::Signature);
    if let SourceConfig::Nexudus { calls_per_minute, .. } = &mut tenant.source {
        *calls_per_minute = Some(60_000);
    }
    let config = Config { admin: None, tenants: vec![tenant.clone()] };

    let dir = std::env::temp_dir().join(format!("portier-beside-{}", uuid::Uuid::new_v4().simple()));
    let file = dir.join("portier.db");
    let (records, queue) = process(&file);
    let serve = testkit::app::build(&records, &queue, &config, &secrets(&tapkey), fast_retries()).await;
    let tenants = serve.runtime.worker.tenants.clone();
    let (base, _server) = testkit::app::listen(serve.router()).await;
    let url = format!("{base}/hooks/nexudus/{}/AccessControlUpdate", tenant.id);

    // The `resync` process: its own connections to the same file.
    let (resync_records, resync_queue) = process(&file);
    let runtime = tenants.get(&tenant.id).await.expect("tenants").expect("tenant");
    let started = Instant::now();
    let resync = tokio::spawn(async move {
        let opts = shared::resync::ResyncOptions::default();
        shared::resync::resync(&resync_records, &runtime, resync_queue.as_ref(), opts, &mut |_, _| {}).await
    });

    let mut latencies = Vec::new();
    let mut person = 0;
    while !resync.is_finished() || latencies.len() < 50 {
        person = person % PEOPLE + 1;
        let hook = nexudus.webhook("AccessControlUpdate", &nexudus.coworker_dto(person));
        let sent = Instant::now();
        assert_eq!(nexudus.deliver(&url, &hook).await, 202);
        latencies.push(sent.elapsed());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let report = resync.await.expect("task").expect("resync");
    let took = started.elapsed();
    latencies.sort();
    println!(
        "resync of {} people beside serve took {:.1} s ({} operations queued); {} webhooks meanwhile: \
         p50 {} ms, p99 {} ms (goal: under 100 ms), max {} ms",
        PEOPLE,
        took.as_secs_f64(),
        report.op_count(),
        latencies.len(),
        percentile(&latencies, 0.5).as_millis(),
        percentile(&latencies, 0.99).as_millis(),
        latencies.last().copied().unwrap_or_default().as_millis()
    );
    assert_eq!(report.op_count(), PEOPLE as usize, "everyone gets the pass's grant");
    let _ = std::fs::remove_dir_all(dir);
}
