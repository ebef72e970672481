//! The burst run (issue 7, scopes 1 and 2): `webhooks` members each gain a pass at once, their
//! webhooks arrive together, and `portier serve`'s worker tasks work them against a Tapkey
//! simulator that throttles above `rate` calls/s, with the tenant's client-side limit set to
//! the same rate. Measures the time to converge against the bound C/R (C = Tapkey API calls
//! made), the 429s, provider writes per changed entitlement, and what a resync with nothing
//! changed calls. Used by `tests/tests/rate_limits.rs` (CI size) and `make bench` (full size).

use std::time::{Duration, Instant};

use serde_json::Value;
use shared::config::SourceConfig;
use shared::serve;

use crate::harness::{BIKE_STORAGE, HookAuth, spawn_app_with};

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub webhooks: usize,
    /// R: the simulator's limit and the tenant's `calls_per_second`.
    pub rate: f64,
    pub workers: usize,
}

/// What happened. Times are seconds since the first webhook was sent.
#[derive(Debug, Clone)]
pub struct BurstReport {
    pub burst: Burst,
    /// Seconds until every member held a grant and the queue was idle.
    pub converged_after: f64,
    /// C: Tapkey API calls made (token calls excluded: the simulator does not limit them).
    pub calls: usize,
    /// 429s Tapkey answered.
    pub throttled: usize,
    /// Grant creations (`PUT …/Grants`) per member (each gained one entitlement).
    pub grant_writes_per_change: f64,
    /// Contact creations per member (first access of a new person).
    pub contact_writes_per_change: f64,
    /// A full resync once converged: Tapkey calls, and how many of them were not GETs.
    pub resync_calls: usize,
    pub resync_writes: usize,
    /// Nexudus calls of that resync that were not GETs (none expected).
    pub resync_source_writes: usize,
    /// Every Tapkey API call: (seconds, status).
    pub call_times: Vec<(f64, u16)>,
    /// Samples of (seconds, members still without their grant).
    pub outstanding: Vec<(f64, usize)>,
}

impl BurstReport {
    /// C/R: the fastest any client can make C calls at R per second.
    pub fn bound(&self) -> f64 {
        self.calls as f64 / self.burst.rate
    }

    pub fn ratio(&self) -> f64 {
        self.converged_after / self.bound().max(f64::EPSILON)
    }
}

/// Runs one burst (real time: the rate limit is the point).
pub async fn run(burst: Burst) -> BurstReport {
    let rate = burst.rate;
    let app = spawn_app_with(
        HookAuth::Signature,
        |c| {
            if let Some(t) = c.providers.tapkey.as_mut() {
                t.calls_per_second = Some(rate);
            }
            // The source is not what is measured: lift Nexudus's 120 calls/min allowance.
            if let SourceConfig::Nexudus { calls_per_minute, .. } = &mut c.source {
                *calls_per_minute = Some(1_000_000);
            }
        },
        Default::default(),
    )
    .await;
    let first = 100_000i64;
    let n = burst.webhooks;
    for i in 0..n as i64 {
        app.nexudus.add_coworker(first + i, &format!("Member {i}"), &format!("member{i}@example.com"));
        app.nexudus.give_pass(first + i, BIKE_STORAGE, None);
    }
    let hooks: Vec<_> = (0..n as i64)
        .map(|i| app.nexudus.webhook("AccessControlUpdate", &app.nexudus.coworker_dto(first + i)))
        .collect();
    app.tapkey.faults().set_rate_limit(Some(rate));
    app.tapkey.reset_calls();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    let background = tokio::spawn(serve::run_background(app.runtime.clone(), burst.workers, stop_rx));
    let url = app.hook_url("AccessControlUpdate");
    for hook in &hooks {
        assert_eq!(app.nexudus.deliver(&url, hook).await, 202, "webhook accepted");
    }

    let mut outstanding = Vec::new();
    let converged_after = loop {
        let missing = n.saturating_sub(app.tapkey.active_grants().len());
        let at = t0.elapsed().as_secs_f64();
        outstanding.push((at, missing));
        let stats = app.queue.stats().await.unwrap_or_default();
        if missing == 0 && stats.visible == 0 && stats.in_flight == 0 {
            break at;
        }
        assert!(at < 3600.0, "no convergence within an hour: {missing} missing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let _ = stop_tx.send(true);
    let _ = background.await;

    let api_calls: Vec<_> =
        app.tapkey.calls().into_iter().filter(|c| !c.path.contains("/connect/token")).collect();
    let call_times = api_calls
        .iter()
        .map(|c| (c.at.saturating_duration_since(t0).as_secs_f64(), c.status))
        .collect::<Vec<_>>();
    let throttled = api_calls.iter().filter(|c| c.status == 429).count();
    let per = |method: &str, path: &str| app.tapkey.count(method, path) as f64 / n.max(1) as f64;
    let grant_writes_per_change = per("PUT", "/Grants");
    let contact_writes_per_change = per("PUT", "/Contacts") + per("POST", "/Contacts");

    // Nothing changed since: a full resync may only list.
    app.tapkey.reset_calls();
    app.nexudus.reset_calls();
    app.resync(false).await.unwrap_or_else(|e| panic!("resync: {e}"));
    let tapkey_resync: Vec<_> =
        app.tapkey.calls().into_iter().filter(|c| !c.path.contains("/connect/token")).collect();
    let resync_writes = tapkey_resync.iter().filter(|c| c.method != "GET").count();
    let resync_source_writes = app
        .nexudus
        .calls()
        .iter()
        .filter(|c| c.method != "GET" && !c.path.to_ascii_lowercase().contains("token"))
        .count();

    BurstReport {
        burst,
        converged_after,
        calls: api_calls.len(),
        throttled,
        grant_writes_per_change,
        contact_writes_per_change,
        resync_calls: tapkey_resync.len(),
        resync_writes,
        resync_source_writes,
        call_times,
        outstanding,
    }
}

impl BurstReport {
    /// The figures as JSON (for `make bench`'s table), without the time series.
    pub fn summary(&self) -> Value {
        serde_json::json!({
            "webhooks": self.burst.webhooks,
            "rate_limit_per_s": self.burst.rate,
            "workers": self.burst.workers,
            "tapkey_calls": self.calls,
            "bound_s": self.bound(),
            "converged_s": self.converged_after,
            "ratio_to_bound": self.ratio(),
            "throttled_429": self.throttled,
            "grant_writes_per_change": self.grant_writes_per_change,
            "contact_writes_per_change": self.contact_writes_per_change,
            "resync_tapkey_calls": self.resync_calls,
            "resync_tapkey_writes": self.resync_writes,
            "resync_source_writes": self.resync_source_writes,
        })
    }
}
