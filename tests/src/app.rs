//! One running Portier built as `portier serve` builds it ([`shared::serve::App`]): an
//! in-memory store (that can be told to fail writes) and queue on a manual clock, its routes on
//! a loopback port. Each test app ([`crate::harness::TestApp`],
//! [`crate::kinnovis_app::KinnovisApp`], [`crate::groups::GroupsApp`]) is its simulators and
//! configuration around one of these.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shared::clock::{Clock, ManualClock};
use shared::config::{Config, Secrets};
use shared::error::InfraError;
use shared::http::RetryPolicy;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::serve::{self, App, Runtime};
use shared::store::sqlite::SqliteStore;
use shared::store::{Cond, Item, Records, Store};

use crate::harness::start_time;

/// Sets one simulator's clock (see `clock_hand` on the source simulators).
pub type SimClock = Box<dyn Fn(DateTime<Utc>) + Send + Sync>;

/// Portier under test: the store, queue and runtime `portier serve` would have, served.
pub struct Portier {
    pub clock: ManualClock,
    pub store: Arc<FaultyStore>,
    pub records: Records,
    pub queue: Arc<dyn Queue>,
    pub runtime: Runtime,
    pub url: String,
    /// The source simulators' clocks, moved with Portier's.
    sims: Vec<SimClock>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Portier {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Portier {
    /// Builds `config` with `secrets` (the clients retrying by `retry`) over a fresh store and
    /// queue, and serves its routes; every clock (Portier's and `sims`) starts at
    /// [`start_time`]. The worker and the tick run only when a test works them ([`Self::drain`],
    /// [`Self::tick_and_drain`]), so each step is deterministic.
    pub async fn start(
        config: &Config,
        secrets: &dyn Secrets,
        retry: RetryPolicy,
        sims: Vec<SimClock>,
    ) -> Self {
        let clock = ManualClock::new(start_time());
        let shared_clock: Arc<dyn Clock> = Arc::new(clock.clone());
        let sqlite: Arc<dyn Store> = Arc::new(
            SqliteStore::open_in_memory(shared_clock.clone()).unwrap_or_else(|e| panic!("sqlite: {e}")),
        );
        let store = Arc::new(FaultyStore::new(sqlite));
        let records = Records::new(store.clone(), shared_clock.clone());
        let queue: Arc<dyn Queue> =
            Arc::new(EmbeddedQueue::open_in_memory(shared_clock, 5).unwrap_or_else(|e| panic!("queue: {e}")));
        let app = build(&records, &queue, config, secrets, retry).await;
        let (url, server) = listen(app.router()).await;
        let portier = Self { clock, store, records, queue, runtime: app.runtime, url, sims, server };
        portier.set_now(start_time());
        portier
    }

    /// Moves every clock (Portier's and the source simulators') to `t`.
    pub fn set_now(&self, t: DateTime<Utc>) {
        self.clock.set(t);
        for sim in &self.sims {
            sim(t);
        }
    }

    pub fn advance(&self, d: chrono::Duration) {
        self.set_now(self.clock.now() + d);
    }

    /// Works the queue until it is empty, letting retried messages come back by moving the
    /// clock past their delay. Returns how many messages were done.
    pub async fn drain(&self) -> usize {
        drain_queue(&self.runtime, |d| self.advance(d)).await
    }

    /// Runs the tick (due timers → reconcile messages) and drains.
    pub async fn tick_and_drain(&self) -> usize {
        shared::tick::enqueue_due(&self.records, self.queue.as_ref())
            .await
            .unwrap_or_else(|e| panic!("tick: {e}"));
        self.drain().await
    }

    /// Messages waiting or in flight.
    pub async fn queued(&self) -> u64 {
        let stats = self.queue.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
        stats.visible + stats.in_flight
    }
}

/// [`App::builder`] over `records` and `queue`, as `portier serve` starts; every tenant of a
/// test's configuration must be served.
pub async fn build(
    records: &Records,
    queue: &Arc<dyn Queue>,
    config: &Config,
    secrets: &dyn Secrets,
    retry: RetryPolicy,
) -> App {
    let app = App::builder(records.clone(), queue.clone(), config, secrets)
        .retry(retry)
        .build()
        .await
        .unwrap_or_else(|e| panic!("portier: {e}"));
    if let Some((id, reason)) = app.not_served.first() {
        panic!("tenant {id} not served: {reason}");
    }
    app
}

/// Serves `router` on a free loopback port; returns its base URL and the server task.
pub async fn listen(router: axum::Router) -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap_or_else(|e| panic!("bind: {e}"));
    let url = format!("http://{}", listener.local_addr().unwrap_or_else(|e| panic!("addr: {e}")));
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    (url, server)
}

/// Works the queue until it is empty, letting retried messages come back by moving the clock
/// (with `advance`) past their delay. Returns how many messages were done.
pub async fn drain_queue(runtime: &Runtime, advance: impl Fn(chrono::Duration)) -> usize {
    let mut done = 0;
    for _ in 0..40 {
        let r = serve::work_batch(runtime, Duration::ZERO).await.unwrap_or_else(|e| panic!("worker: {e}"));
        done += r.done;
        let stats = runtime.queue.stats().await.unwrap_or_else(|e| panic!("stats: {e}"));
        if stats.visible == 0 && stats.in_flight == 0 {
            return done;
        }
        if r.done + r.retried == 0 {
            // Everything left is waiting for its retry delay.
            advance(chrono::Duration::minutes(6));
        }
    }
    panic!("the queue did not drain");
}

/// A store that can be told to fail chosen writes: a crash between two steps of the worker.
pub struct FaultyStore {
    inner: Arc<dyn Store>,
    #[allow(clippy::type_complexity)]
    fail: Mutex<Vec<(Box<dyn Fn(&Item) -> bool + Send + Sync>, usize)>>,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Store>) -> Self {
        Self { inner, fail: Mutex::new(Vec::new()) }
    }

    /// The next `times` writes matching `which` fail as if the process died before them.
    pub fn fail_writes(&self, times: usize, which: impl Fn(&Item) -> bool + Send + Sync + 'static) {
        self.fail.lock().unwrap_or_else(|p| p.into_inner()).push((Box::new(which), times));
    }

    fn should_fail(&self, item: &Item) -> bool {
        let mut fail = self.fail.lock().unwrap_or_else(|p| p.into_inner());
        for (which, left) in fail.iter_mut() {
            if *left > 0 && which(item) {
                *left -= 1;
                return true;
            }
        }
        false
    }
}

#[async_trait]
impl Store for FaultyStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, InfraError> {
        self.inner.get(pk, sk).await
    }
    async fn put(&self, item: &Item, cond: Cond) -> Result<(), InfraError> {
        if self.should_fail(item) {
            return Err(InfraError::Backend("injected: process killed before this write".into()));
        }
        self.inner.put(item, cond).await
    }
    async fn delete(&self, pk: &str, sk: &str, cond: Cond) -> Result<(), InfraError> {
        self.inner.delete(pk, sk, cond).await
    }
    async fn query(&self, pk: &str, sk_prefix: &str) -> Result<Vec<Item>, InfraError> {
        self.inner.query(pk, sk_prefix).await
    }
    async fn query_between(&self, pk: &str, from: &str, to: &str) -> Result<Vec<Item>, InfraError> {
        self.inner.query_between(pk, from, to).await
    }
    async fn ping(&self) -> Result<(), InfraError> {
        self.inner.ping().await
    }
}
