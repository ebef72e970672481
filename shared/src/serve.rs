//! `portier serve`: webhook routes, the worker loop and the tick, in one process.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;

use crate::error::WorkError;
use crate::ingress::{BrivoRequest, Ingress, MAX_BODY};
use crate::queue::{Delivery, Queue};
use crate::sources::{HookRequest, WEBHOOKS, WebhookSource};
use crate::store::Records;
use crate::worker::{Worker, error_policy};

mod app;
mod pool;
pub use app::{App, AppBuilder, StartError, store_configs};

/// How long a received message stays hidden while it is worked on.
pub const VISIBILITY: Duration = Duration::from_secs(120);

/// Name of the environment variable that overrides [`VISIBILITY`] in seconds: after a crash,
/// the messages the dead process held come back only when it runs out.
pub const VISIBILITY_ENV: &str = "PORTIER_VISIBILITY_SECS";

/// [`VISIBILITY`], or `PORTIER_VISIBILITY_SECS` when set to a positive number (read once).
pub fn visibility() -> Duration {
    static V: std::sync::OnceLock<Duration> = std::sync::OnceLock::new();
    *V.get_or_init(|| {
        std::env::var(VISIBILITY_ENV)
            .ok()
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|s| *s > 0)
            .map_or(VISIBILITY, Duration::from_secs)
    })
}

/// Workers `portier serve` runs by default: room for this many batches of 10 messages in
/// flight, received as room frees (`pool`). FIFO groups keep each subject with one message at
/// a time, so more room only overlaps calls to different subjects (and providers' rate
/// limits, shared by all of them, keep the total in check).
pub const DEFAULT_WORKERS: usize = 4;

/// The parts of a running Portier.
#[derive(Clone)]
pub struct Runtime {
    pub ingress: Ingress,
    pub worker: Worker,
    pub queue: Arc<dyn Queue>,
    pub records: Records,
}

impl Runtime {
    /// Ingress and worker over the same tenants, queue and records: the one way to assemble it.
    pub fn new(tenants: Arc<dyn crate::tenants::Tenants>, queue: Arc<dyn Queue>, records: Records) -> Self {
        let ingress = Ingress::new(tenants.clone(), queue.clone(), records.clone());
        Self { ingress, worker: Worker::new(records.clone(), tenants), queue, records }
    }
}

#[derive(Deserialize)]
struct TokenQuery {
    token: Option<String>,
}

/// The webhook routes (design §6.1): one per source in [`WEBHOOKS`], Brivo's presence
/// events, and `/healthz`.
pub fn router(rt: Runtime) -> Router {
    let mut router = Router::new();
    for &source in WEBHOOKS {
        router = router.route(source.route(), post(move |s, p, q, h, b| source_hook(source, s, p, q, h, b)));
    }
    router
        .route("/hooks/brivo/{tenant}", post(brivo_hook))
        .route("/healthz", get(healthz))
        // One byte over the cap is enough to answer 413 without reading a huge body.
        .layer(DefaultBodyLimit::max(MAX_BODY + 1))
        .with_state(rt)
}

/// A source's webhook, whatever its route's parameters: `{tenant}` and maybe `{action}`.
async fn source_hook(
    source: &'static dyn WebhookSource,
    State(rt): State<Runtime>,
    Path(params): Path<BTreeMap<String, String>>,
    Query(q): Query<TokenQuery>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let headers: Vec<(&str, &str)> =
        headers.iter().filter_map(|(name, value)| Some((name.as_str(), value.to_str().ok()?))).collect();
    let param = |name: &str| params.get(name).map_or("", String::as_str);
    let req = HookRequest {
        tenant: param("tenant"),
        action: param("action"),
        token: q.token.as_deref(),
        headers: &headers,
        body: &body,
    };
    let answer = rt.ingress.hook(source, req).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(answer.body)).into_response()
}

async fn brivo_hook(
    State(rt): State<Runtime>,
    Path(tenant): Path<String>,
    Query(q): Query<TokenQuery>,
    body: Bytes,
) -> Response {
    let answer =
        rt.ingress.brivo(BrivoRequest { tenant: &tenant, token: q.token.as_deref(), body: &body }).await;
    let status = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(answer.body)).into_response()
}

async fn healthz(State(rt): State<Runtime>) -> Response {
    let store = rt.records.store().ping().await;
    let queue = rt.queue.stats().await;
    match (store, queue) {
        (Ok(()), Ok(stats)) => {
            // Still 200 (the process serves the other tenants), but a tenant left out at
            // start-up is named, so a monitor sees it.
            let mut not_served = Vec::new();
            for id in rt.records.tenant_ids().await.unwrap_or_default() {
                if let Ok(Some(n)) = crate::status::not_served(&rt.records, &id).await {
                    not_served
                        .push(serde_json::json!({ "tenant": id, "reason": n.reason, "since": n.since }));
                }
            }
            let status = if not_served.is_empty() { "ok" } else { "degraded" };
            let body = serde_json::json!({ "status": status, "queue": stats, "tenants_not_served": not_served, "counters": crate::metrics::snapshot() });
            (StatusCode::OK, axum::Json(body)).into_response()
        }
        (s, q) => {
            let detail = serde_json::json!({
                "status": "unavailable",
                "store": s.err().map(|e| e.to_string()),
                "queue": q.err().map(|e| e.to_string()),
            });
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(detail)).into_response()
        }
    }
}

/// What one pass over the queue did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub done: usize,
    pub retried: usize,
}

/// Receives one batch and works it: done messages are deleted, failed ones come back later.
pub async fn work_batch(rt: &Runtime, wait: Duration) -> Result<Drained, WorkError> {
    let batch = rt.queue.receive(pool::BATCH, visibility(), wait).await?;
    // Groups are worked at once (each group's messages in order), so refreshes that wait for
    // the same source share its reads (`sources::nexudus::coalesce`).
    let worked = futures_util::future::join_all(pool::by_group(batch).into_iter().map(|group| async move {
        let mut drained = Drained::default();
        for d in &group {
            if work_one(rt, d).await? {
                drained.done += 1;
            } else {
                drained.retried += 1;
            }
        }
        Ok::<_, WorkError>(drained)
    }))
    .await;
    let mut drained = Drained::default();
    for group in worked {
        let group = group?;
        drained.done += group.done;
        drained.retried += group.retried;
    }
    Ok(drained)
}

async fn work_one(rt: &Runtime, d: &Delivery) -> Result<bool, WorkError> {
    match rt.worker.handle(&d.body).await {
        Ok(_) => {
            rt.queue.delete(&d.handle).await?;
            Ok(true)
        }
        Err(e) => {
            let delay = error_policy(&e, d.receive_count).after;
            tracing::warn!(error = %e, receive_count = d.receive_count, delay_ms = delay.as_millis() as u64, "message will be retried");
            rt.queue.retry_later(&d.handle, delay).await?;
            Ok(false)
        }
    }
}

/// Resyncs every tenant whose queue overflowed (webhooks accepted but not queued) once its
/// backlog is down to half the bound, then clears the mark unless more overflowed meanwhile.
/// Returns the tenants resynced.
pub async fn overflow_resyncs(
    rt: &Runtime,
    tenants: &dyn crate::tenants::Tenants,
) -> Result<usize, WorkError> {
    let mut resynced = 0;
    for id in tenants.ids().await? {
        let Some((overflow, version)) = rt.records.overflow(&id).await? else { continue };
        let backlog = rt.queue.tenant_backlog(&id.0).await?;
        if backlog.is_some_and(|b| b >= rt.ingress.backlog_limit / 2) {
            continue;
        }
        let Some(tenant) = tenants.get(&id).await? else { continue };
        tracing::info!(tenant = %id, webhooks = overflow.webhooks, "resync after a queue overflow");
        let opts = crate::resync::ResyncOptions::default();
        crate::resync::resync(&rt.records, &tenant, rt.queue.as_ref(), opts, &mut |_, _| {}).await?;
        rt.records.clear_overflow(&id, version).await?;
        resynced += 1;
    }
    Ok(resynced)
}

/// How often `portier serve` runs a full resync of every tenant.
pub const RESYNC_EVERY: Duration = Duration::from_secs(24 * 60 * 60);

/// Resyncs every tenant once (fan-out to the queue; the worker does the rest).
pub async fn resync_all(rt: &Runtime, tenants: &dyn crate::tenants::Tenants) -> Result<(), WorkError> {
    for id in tenants.ids().await? {
        if let Some(tenant) = tenants.get(&id).await? {
            let opts = crate::resync::ResyncOptions::default();
            crate::resync::resync(&rt.records, &tenant, rt.queue.as_ref(), opts, &mut |_, _| {}).await?;
        }
    }
    Ok(())
}

/// Runs the workers (room for `workers` batches in flight, at least one), the tick and the
/// daily resync until `shutdown` resolves.
pub async fn run_background(rt: Runtime, workers: usize, shutdown: tokio::sync::watch::Receiver<bool>) {
    let worker = pool::run(rt.clone(), workers, shutdown.clone());
    let ticker = {
        let rt = rt.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(30));
            while !*stop.borrow() {
                tokio::select! {
                    _ = every.tick() => {
                        if let Err(e) = crate::tick::enqueue_due(&rt.records, rt.queue.as_ref()).await {
                            tracing::error!(error = %e, "tick failed; the next one catches up");
                        }
                        if let Err(e) = crate::presence::tick(&rt.records, rt.worker.tenants.as_ref()).await {
                            tracing::error!(error = %e, "presence tick failed; the next one catches up");
                        }
                        if let Err(e) = overflow_resyncs(&rt, rt.worker.tenants.as_ref()).await {
                            tracing::error!(error = %e, "overflow resync failed; the next tick tries again");
                        }
                    },
                    _ = stop.changed() => {}
                }
            }
        })
    };
    let daily = {
        let rt = rt.clone();
        let mut stop = shutdown.clone();
        tokio::spawn(async move {
            let mut every =
                tokio::time::interval_at(tokio::time::Instant::now() + RESYNC_EVERY, RESYNC_EVERY);
            while !*stop.borrow() {
                tokio::select! {
                    _ = every.tick() => if let Err(e) = resync_all(&rt, rt.worker.tenants.as_ref()).await {
                        tracing::error!(error = %e, "daily resync failed; `portier resync` runs it by hand");
                    },
                    _ = stop.changed() => {}
                }
            }
        })
    };
    let _ = tokio::join!(worker, ticker, daily);
}
