//! One conformance suite for the [`Queue`] trait, run against both backends: the embedded
//! SQLite queue and SQS FIFO (a loopback moto server from `PORTIER_TEST_AWS_ENDPOINT`).
//!
//! Every test body is written once, as `async fn name(b: Backend)`; the `conformance!` macro
//! runs it as `embedded::name` and `sqs::name`. Time passes through [`Backend::pass`]: the
//! embedded queue's `ManualClock` moves, SQS really waits (visibility timeouts of 1 s).

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use shared::clock::ManualClock;
use shared::queue::embedded::EmbeddedQueue;
use shared::queue::sqs::SqsQueue;
use shared::queue::{Delivery, Outgoing, Queue, QueueStats};
use shared::store::sqlite::SqliteStore;
use shared::store::{Cond, Item, Store};

/// Every queue in this suite dead-letters on the third receive.
const MAX_RECEIVES: u32 = 2;
/// Long enough that nothing comes back by itself during a test.
const LONG: Duration = Duration::from_secs(30);
/// The shortest visibility SQS has; tests then let 1.5 s pass.
const SHORT: Duration = Duration::from_secs(1);
const PAST_SHORT: Duration = Duration::from_millis(1500);
const NO_WAIT: Duration = Duration::ZERO;

struct Backend {
    queue: Arc<dyn Queue>,
    /// The embedded queue's clock; SQS has real time only.
    clock: Option<ManualClock>,
    /// Real SQS drops a duplicate even after the first copy was deleted; moto forgets the
    /// id once the message is gone.
    dedup_outlives_delete: bool,
    /// Real SQS and the embedded queue ignore a receipt handle from an earlier receive;
    /// moto still deletes with it.
    stale_handles_ignored: bool,
}

impl Backend {
    async fn pass(&self, d: Duration) {
        match &self.clock {
            Some(clock) => clock.advance(chrono::Duration::from_std(d).expect("small duration")),
            None => tokio::time::sleep(d).await,
        }
    }

    async fn send(&self, group: &str, dedup_id: &str, body: &str) {
        let msg =
            Outgoing { group: group.into(), dedup_id: dedup_id.into(), body: body.into(), urgent: false };
        self.queue.send(&msg).await.expect("send");
    }

    async fn receive(&self, max: usize, visibility: Duration) -> Vec<Delivery> {
        self.queue.receive(max, visibility, NO_WAIT).await.expect("receive")
    }

    /// Receives and deletes until nothing more comes.
    async fn drain(&self) -> Vec<Delivery> {
        let mut got = Vec::new();
        for _ in 0..20 {
            let batch = self.receive(10, LONG).await;
            if batch.is_empty() {
                break;
            }
            for d in batch {
                self.queue.delete(&d.handle).await.expect("delete");
                got.push(d);
            }
        }
        got
    }

    async fn stats(&self) -> QueueStats {
        self.queue.stats().await.expect("stats")
    }
}

fn start() -> shared::model::Instant {
    Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).single().expect("valid start time")
}

fn embedded_backend() -> Backend {
    let clock = ManualClock::new(start());
    let queue =
        EmbeddedQueue::open_in_memory(Arc::new(clock.clone()), MAX_RECEIVES).expect("open embedded queue");
    Backend {
        queue: Arc::new(queue),
        clock: Some(clock),
        dedup_outlives_delete: true,
        stale_handles_ignored: true,
    }
}

fn aws_endpoint() -> String {
    match std::env::var("PORTIER_TEST_AWS_ENDPOINT") {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "PORTIER_TEST_AWS_ENDPOINT is not set, so the SQS variants cannot run: \
             start the loopback server: make test, or scripts/moto.sh start \
             (then export the line it prints)"
        ),
    }
}

async fn sqs_backend() -> Backend {
    let config = shared::aws::sdk_config(Some(&aws_endpoint())).await;
    // One queue pair per test, so tests run in parallel against one server.
    let prefix = format!("portier-test-{}", uuid::Uuid::new_v4().simple());
    let queue = SqsQueue::create_fifo(aws_sdk_sqs::Client::new(&config), &prefix, MAX_RECEIVES)
        .await
        .expect("create the test queues (is the moto server running?)");
    Backend {
        queue: Arc::new(queue),
        clock: None,
        dedup_outlives_delete: false,
        stale_handles_ignored: false,
    }
}

macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::embedded_backend()).await
                }
            )*
        }
        mod sqs {
            $(
                #[tokio::test]
                async fn $name() {
                    super::$name(super::sqs_backend().await).await
                }
            )*
        }
    };
}

conformance!(
    fifo_order_within_a_group_oldest_group_first,
    a_group_in_flight_delivers_nothing_else,
    duplicate_sends_are_dropped,
    redelivery_after_a_crash,
    stale_handles_do_not_delete,
    retry_later_delays_redelivery,
    dead_letter_after_max_receives,
    redrive_moves_dead_letters_back,
    receive_waits_for_a_message,
    receive_waits_at_most_wait,
    stats_count_visible_and_in_flight,
);

fn bodies(ds: &[Delivery]) -> Vec<&str> {
    ds.iter().map(|d| d.body.as_str()).collect()
}

async fn fifo_order_within_a_group_oldest_group_first(b: Backend) {
    for (group, body) in [("A", "a1"), ("B", "b1"), ("A", "a2"), ("C", "c1"), ("B", "b2"), ("A", "a3")] {
        b.send(group, body, body).await;
    }
    let got = b.drain().await;
    assert_eq!(got.len(), 6, "every message once: {:?}", bodies(&got));
    assert_eq!(got[0].body, "a1", "the oldest message first");
    for group in ["A", "B", "C"] {
        let in_group: Vec<&str> = got.iter().filter(|d| d.group == group).map(|d| d.body.as_str()).collect();
        let expected: Vec<String> =
            (1..=in_group.len()).map(|n| format!("{}{n}", group.to_lowercase())).collect();
        assert_eq!(in_group, expected, "group {group} in send order");
    }
    assert!(got.iter().all(|d| d.receive_count == 1 && !d.message_id.is_empty()));
}

async fn a_group_in_flight_delivers_nothing_else(b: Backend) {
    b.send("A", "a1", "a1").await;
    b.send("A", "a2", "a2").await;
    b.send("B", "b1", "b1").await;

    let first = b.receive(1, LONG).await;
    assert_eq!(bodies(&first), ["a1"]);
    let others = b.receive(10, LONG).await;
    assert_eq!(bodies(&others), ["b1"], "A is blocked while a1 is in flight; B is not");
    b.queue.delete(&others[0].handle).await.expect("delete b1");
    assert!(b.receive(10, LONG).await.is_empty(), "still blocked");

    b.queue.delete(&first[0].handle).await.expect("delete a1");
    let next = b.receive(10, LONG).await;
    assert_eq!(bodies(&next), ["a2"], "deleting a1 releases the group");
}

async fn duplicate_sends_are_dropped(b: Backend) {
    b.send("A", "evt-1", "first").await;
    b.send("A", "evt-1", "replayed").await;
    b.send("B", "evt-1", "same id, other group").await;
    b.send("A", "evt-2", "second").await;
    let got = b.drain().await;
    assert_eq!(bodies(&got), ["first", "second"], "duplicates within 5 minutes are dropped");

    if b.dedup_outlives_delete {
        b.send("A", "evt-1", "replayed after delete").await;
        assert!(b.drain().await.is_empty(), "the id is remembered for 5 minutes, deleted or not");
    }
}

async fn redelivery_after_a_crash(b: Backend) {
    b.send("A", "evt-1", "work").await;
    let first = b.receive(10, SHORT).await;
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].receive_count, 1);
    assert_eq!(first[0].group, "A");
    // The worker dies here: no delete.
    assert!(b.receive(10, SHORT).await.is_empty(), "invisible while in flight");

    b.pass(PAST_SHORT).await;
    let again = b.receive(10, LONG).await;
    assert_eq!(again.len(), 1, "back after the visibility timeout");
    assert_eq!(
        (again[0].message_id.as_str(), again[0].body.as_str()),
        (first[0].message_id.as_str(), "work")
    );
    assert_eq!(again[0].receive_count, 2);
    assert_ne!(again[0].handle, first[0].handle, "a fresh receipt per receive");

    b.queue.delete(&again[0].handle).await.expect("delete");
    assert_eq!(b.stats().await, QueueStats::default());
}

async fn stale_handles_do_not_delete(b: Backend) {
    b.send("A", "evt-1", "work").await;
    let first = b.receive(1, SHORT).await;
    b.pass(PAST_SHORT).await;
    let second = b.receive(1, LONG).await;
    assert_eq!(second.len(), 1);

    // The first worker finishes late: its handle is stale, deleting with it is not an error.
    b.queue.delete(&first[0].handle).await.expect("stale delete is not an error");
    if b.stale_handles_ignored {
        assert_eq!(b.stats().await.in_flight, 1, "the second worker still owns the message");
    }
    b.queue.delete(&second[0].handle).await.expect("delete with the current handle");
    assert_eq!(b.stats().await, QueueStats::default());
}

async fn retry_later_delays_redelivery(b: Backend) {
    b.send("A", "evt-1", "work").await;
    b.send("A", "evt-2", "later work").await;
    let first = b.receive(1, LONG).await;
    assert_eq!(bodies(&first), ["work"]);

    b.queue.retry_later(&first[0].handle, SHORT).await.expect("retry later");
    assert!(b.receive(10, LONG).await.is_empty(), "hidden for the delay, and the group stays blocked");
    b.pass(PAST_SHORT).await;
    let again = b.receive(1, LONG).await;
    assert_eq!((bodies(&again), again.first().map(|d| d.receive_count)), (vec!["work"], Some(2)));

    // No delay: visible at once (it is the last receive the queue allows before the DLQ).
    b.queue.retry_later(&again[0].handle, Duration::ZERO).await.expect("retry now");
    let stats = b.stats().await;
    assert_eq!((stats.visible, stats.in_flight), (2, 0));
}

async fn dead_letter_after_max_receives(b: Backend) {
    b.send("A", "evt-poison", "poison").await;
    for n in 1..=MAX_RECEIVES {
        let got = b.receive(10, SHORT).await;
        assert_eq!(got.iter().map(|d| d.receive_count).collect::<Vec<_>>(), [n]);
        b.pass(PAST_SHORT).await;
    }
    assert!(b.receive(10, SHORT).await.is_empty(), "received {MAX_RECEIVES} times: not delivered again");
    let dead = b.queue.dead_letters(10).await.expect("dead letters");
    assert_eq!(bodies(&dead), ["poison"]);
    assert_eq!(dead[0].group, "A");
    assert_eq!(b.stats().await, QueueStats { visible: 0, in_flight: 0, dead: 1 });
    // Looking does not remove.
    assert_eq!(b.queue.dead_letters(10).await.expect("dead letters").len(), 1);
    assert_eq!(b.stats().await.dead, 1);

    // The group is free again for new work.
    b.send("A", "evt-next", "next").await;
    assert_eq!(bodies(&b.receive(10, LONG).await), ["next"]);
}

async fn redrive_moves_dead_letters_back(b: Backend) {
    b.send("A", "evt-poison", "poison").await;
    for _ in 0..MAX_RECEIVES {
        assert_eq!(b.receive(10, SHORT).await.len(), 1);
        b.pass(PAST_SHORT).await;
    }
    assert!(b.receive(10, SHORT).await.is_empty(), "dead-lettered");
    b.send("A", "evt-later", "later").await;
    assert_eq!(b.stats().await.dead, 1);

    assert_eq!(b.queue.redrive_dead_letters(10).await.expect("redrive"), 1);
    assert_eq!(b.stats().await.dead, 0);
    assert!(b.queue.dead_letters(10).await.expect("dead letters").is_empty());
    // Behind the work its group was sent since, with a fresh receive count.
    let got = b.drain().await;
    assert_eq!(bodies(&got), ["later", "poison"]);
    assert_eq!(got[1].receive_count, 1);
    assert_eq!(got[1].group, "A");
    assert_eq!(b.queue.redrive_dead_letters(10).await.expect("redrive again"), 0, "nothing left");
}

async fn receive_waits_for_a_message(b: Backend) {
    let b = Arc::new(b);
    let sender = {
        let b = b.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            b.send("A", "evt-1", "late").await;
        })
    };
    let started = std::time::Instant::now();
    let got = b.queue.receive(10, LONG, Duration::from_secs(10)).await.expect("receive");
    assert_eq!(bodies(&got), ["late"]);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "returned when the message came: {:?}",
        started.elapsed()
    );
    sender.await.expect("sender");
}

async fn receive_waits_at_most_wait(b: Backend) {
    let started = std::time::Instant::now();
    let got = b.queue.receive(10, LONG, Duration::from_secs(1)).await.expect("receive");
    assert!(got.is_empty());
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(900), "long polling waited only {waited:?}");
    assert!(waited < Duration::from_secs(5), "long polling waited {waited:?}");
}

async fn stats_count_visible_and_in_flight(b: Backend) {
    assert_eq!(b.stats().await, QueueStats::default());
    b.send("A", "evt-1", "a").await;
    b.send("B", "evt-2", "b").await;
    b.send("B", "evt-3", "b2").await;
    let got = b.receive(1, LONG).await;
    assert_eq!(b.stats().await, QueueStats { visible: 2, in_flight: 1, dead: 0 });
    b.queue.delete(&got[0].handle).await.expect("delete");
    assert_eq!(b.stats().await, QueueStats { visible: 2, in_flight: 0, dead: 0 });
}

// ── the embedded queue only ──────────────────────────────────────────────────────────────

fn temp_db() -> std::path::PathBuf {
    std::env::temp_dir()
        .join(format!("portier-queue-test-{}", uuid::Uuid::new_v4().simple()))
        .join("portier.db")
}

#[tokio::test]
async fn embedded_dedup_window_is_five_minutes_of_clock() {
    let b = embedded_backend();
    let clock = b.clock.clone().expect("embedded has a clock");
    b.send("A", "evt-1", "first").await;
    clock.advance(chrono::Duration::minutes(4));
    b.send("A", "evt-1", "within the window").await;
    assert_eq!(bodies(&b.drain().await), ["first"]);
    clock.advance(chrono::Duration::minutes(1) + chrono::Duration::seconds(1));
    b.send("A", "evt-1", "after the window").await;
    assert_eq!(bodies(&b.drain().await), ["after the window"]);
}

#[tokio::test]
async fn embedded_messages_survive_a_restart() {
    let path = temp_db();
    let clock = ManualClock::new(start());
    let open = || EmbeddedQueue::open(&path, Arc::new(clock.clone()), MAX_RECEIVES).expect("open queue file");
    {
        let q = open();
        for (group, body) in [("A", "a1"), ("A", "a2"), ("B", "b1")] {
            q.send(&Outgoing {
                group: group.into(),
                dedup_id: body.into(),
                body: body.into(),
                urgent: false,
            })
            .await
            .expect("send");
        }
        let got = q.receive(1, LONG, NO_WAIT).await.expect("receive");
        assert_eq!(bodies(&got), ["a1"]);
        // The process dies with a1 in flight.
    }
    let q = open();
    assert_eq!(q.stats().await.expect("stats"), QueueStats { visible: 2, in_flight: 1, dead: 0 });
    let got = q.receive(10, LONG, NO_WAIT).await.expect("receive");
    assert_eq!(bodies(&got), ["b1"], "a1 is still in flight after the restart, so A waits");
    q.delete(&got[0].handle).await.expect("delete b1");
    q.send(&Outgoing { group: "C".into(), dedup_id: "a2".into(), body: "dup".into(), urgent: false })
        .await
        .expect("send");
    clock.advance(chrono::Duration::from_std(LONG).expect("duration") + chrono::Duration::seconds(1));
    let got = q.receive(10, LONG, NO_WAIT).await.expect("receive");
    // One message per group per receive: a2 follows once a1 is done.
    assert_eq!(bodies(&got), ["a1"], "the dedup ids survived too (no `dup`)");
    assert_eq!(got[0].receive_count, 2);
    q.delete(&got[0].handle).await.expect("delete a1");
    assert_eq!(bodies(&q.receive(10, LONG, NO_WAIT).await.expect("receive")), ["a2"]);
    drop(q);
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

#[tokio::test]
async fn embedded_queue_shares_the_store_file() {
    let path = temp_db();
    let clock = ManualClock::new(start());
    let store = SqliteStore::open(&path, Arc::new(clock.clone())).expect("open store");
    let queue = EmbeddedQueue::open(&path, Arc::new(clock.clone()), MAX_RECEIVES).expect("open queue");
    store.put(&Item::new("EVENT#e", "EVENT", serde_json::json!({})), Cond::Absent).await.expect("put");
    queue
        .send(&Outgoing { group: "A".into(), dedup_id: "e".into(), body: "x".into(), urgent: false })
        .await
        .expect("send");
    assert_eq!(bodies(&queue.receive(10, LONG, NO_WAIT).await.expect("receive")), ["x"]);
    assert!(store.get("EVENT#e", "EVENT").await.expect("get").is_some());
    drop((store, queue));
    if let Some(dir) = path.parent() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
