//! The burst run (issue 7, scopes 1 and 2): `webhooks` members each gain two passes at once —
//! bike storage (a Tapkey lock) and coworking (a Salto KS access group and a Brivo group) — their
//! webhooks arrive together, and `portier serve`'s worker tasks work them against the three
//! provider simulators, each throttling above its own R calls/s, with the tenant's client-side
//! limit for that provider set to the same rate. Measures the time to converge against the bound
//! max over providers of C/R (C = that provider's API calls), the 429s, provider writes per
//! changed entitlement, and what a resync with nothing changed calls. With
//! [`Burst::nexudus_limited`] the simulated Nexudus holds its documented limits too, its reads
//! count in the bound, and a lone webhook afterwards shows the reads a change costs alone. Used by
//! `tests/tests/rate_limits.rs` (CI size) and `make bench` (full size).

use std::time::{Duration, Instant};

use serde_json::Value;
use shared::config::{NoAccess, SourceConfig};
use shared::serve;

use crate::groups::{BRIVO_GROUP, COWORKING, GroupsApp, SALTO_GROUP, spawn_groups_app_tweaked};
use crate::harness::{BIKE_STORAGE, HookAuth, fast_retries};
use crate::sim::Call;

/// Each provider's R: the simulator's limit and the tenant's `calls_per_second`.
#[derive(Debug, Clone, Copy)]
pub struct Rates {
    pub tapkey: f64,
    pub salto: f64,
    pub brivo: f64,
}

/// What to run.
#[derive(Debug, Clone, Copy)]
pub struct Burst {
    pub webhooks: usize,
    pub rates: Rates,
    pub workers: usize,
    /// The simulated Nexudus holds its documented limits (1 per 100 ms, 120 a minute, 5 000
    /// an hour) and the tenant its default allowance; off, both are lifted.
    pub nexudus_limited: bool,
}

/// Nexudus's documented limits, as the simulator holds them when [`Burst::nexudus_limited`].
pub const NEXUDUS_LIMITS: [(usize, Duration); 3] =
    [(1, Duration::from_millis(100)), (120, Duration::from_secs(60)), (5_000, Duration::from_secs(3600))];

/// The fastest any client can make `calls` Nexudus calls under [`NEXUDUS_LIMITS`]: the k-th
/// call (from 0) goes no sooner than each window allows.
pub fn nexudus_bound(calls: usize) -> f64 {
    let Some(last) = calls.checked_sub(1) else { return 0.0 };
    NEXUDUS_LIMITS
        .iter()
        .map(
            |(n, per)| {
                if *n == 1 { last as f64 * per.as_secs_f64() } else { (last / n) as f64 * per.as_secs_f64() }
            },
        )
        .fold(0.0, f64::max)
}

/// The source's side of the run.
#[derive(Debug, Clone, Default)]
pub struct SourceRun {
    /// Every Nexudus API call of the burst (token calls excluded): (seconds, status).
    pub calls: Vec<(f64, u16)>,
    /// Calls the simulated Nexudus turned away (409).
    pub throttled: usize,
    /// A lone webhook once the burst converged (one new member, one pass to a Tapkey lock):
    /// its Nexudus reads and Tapkey calls.
    pub lone_reads: usize,
    pub lone_tapkey_calls: usize,
    /// Whether Nexudus held its limits (else its reads bound nothing).
    pub limited: bool,
}

impl SourceRun {
    /// The fastest the burst's reads could be made at Nexudus's limits.
    pub fn bound(&self) -> f64 {
        if self.limited { nexudus_bound(self.calls.len()) } else { 0.0 }
    }
}

/// One provider's side of the run. Times are seconds since the first webhook was sent.
#[derive(Debug, Clone)]
pub struct ProviderRun {
    pub name: &'static str,
    pub rate: f64,
    /// Every API call (token calls excluded: the simulators do not limit them): (seconds, status).
    pub calls: Vec<(f64, u16)>,
    /// 429s (or Brivo's 403 "Over Qps") the provider answered.
    pub throttled: usize,
    /// Grant or membership writes per member (each gained one entitlement here).
    pub access_writes_per_change: f64,
    /// Other writes per member, all for a person new to the provider: the Tapkey contact, the
    /// Salto KS user, the Brivo user and its mobile-pass invitation.
    pub person_writes_per_change: f64,
    /// A full resync once converged: this provider's API calls, and how many were not GETs.
    pub resync_calls: usize,
    pub resync_writes: usize,
}

impl ProviderRun {
    /// C/R: the fastest any client can make this provider's C calls at R per second.
    pub fn bound(&self) -> f64 {
        self.calls.len() as f64 / self.rate
    }
}

/// What happened.
#[derive(Debug, Clone)]
pub struct BurstReport {
    pub burst: Burst,
    /// Seconds until every member held its grant and both memberships, and the queue was idle.
    pub converged_after: f64,
    pub providers: Vec<ProviderRun>,
    /// Nexudus calls of the no-change resync that were not GETs (none expected).
    pub resync_source_writes: usize,
    pub source: SourceRun,
    /// Samples of (seconds, accesses still missing: grants plus memberships).
    pub outstanding: Vec<(f64, usize)>,
}

impl BurstReport {
    /// The provider whose C/R is largest: it sets the pace.
    pub fn bottleneck(&self) -> &ProviderRun {
        self.providers.iter().max_by(|a, b| a.bound().total_cmp(&b.bound())).unwrap_or(&self.providers[0])
    }

    /// The bound on the whole run: the slowest API's fastest possible time, C/R of the
    /// bottleneck provider or the Nexudus reads at Nexudus's limits.
    pub fn bound(&self) -> f64 {
        self.bottleneck().bound().max(self.source.bound())
    }

    /// What sets [`Self::bound`]: a provider's name or `nexudus`.
    pub fn bound_by(&self) -> &'static str {
        if self.source.bound() > self.bottleneck().bound() { "nexudus" } else { self.bottleneck().name }
    }

    pub fn ratio(&self) -> f64 {
        self.converged_after / self.bound().max(f64::EPSILON)
    }

    /// The bottleneck's calls per second over the whole run, as a share of its R.
    pub fn sustained(&self) -> f64 {
        let b = self.bottleneck();
        b.calls.len() as f64 / self.converged_after.max(f64::EPSILON) / b.rate
    }

    /// Throttled calls at the providers and at Nexudus.
    pub fn throttled(&self) -> usize {
        self.providers.iter().map(|p| p.throttled).sum::<usize>() + self.source.throttled
    }

    pub fn provider(&self, name: &str) -> Option<&ProviderRun> {
        self.providers.iter().find(|p| p.name == name)
    }
}

fn api_calls(calls: Vec<Call>) -> Vec<Call> {
    calls.into_iter().filter(|c| !c.path.ends_with("/token")).collect()
}

fn missing(app: &GroupsApp, n: usize) -> usize {
    n.saturating_sub(app.tapkey.active_grants().len())
        + n.saturating_sub(app.salto.members(SALTO_GROUP).len())
        + n.saturating_sub(app.brivo.members(BRIVO_GROUP).len())
}

/// Runs one burst (real time: the rate limits are the point).
pub async fn run(burst: Burst) -> BurstReport {
    let Rates { tapkey, salto, brivo } = burst.rates;
    let app = spawn_groups_app_tweaked(
        HookAuth::Signature,
        NoAccess::Keep,
        |c| {
            let p = &mut c.providers;
            p.tapkey.iter_mut().for_each(|t| t.calls_per_second = Some(tapkey));
            p.salto_ks.iter_mut().for_each(|s| s.calls_per_second = Some(salto));
            p.brivo.iter_mut().for_each(|b| b.calls_per_second = Some(brivo));
            // A pass-only tenant (the issue's): a change needs only the passes read.
            c.mappings.retain(|m| m.item.kind == shared::model::ItemKind::Pass);
            // Limited, the tenant keeps the default allowance (the documented limits).
            if let SourceConfig::Nexudus { calls_per_minute, .. } = &mut c.source
                && !burst.nexudus_limited
            {
                *calls_per_minute = Some(1_000_000);
            }
        },
        fast_retries(),
    )
    .await;
    let first = 100_000i64;
    let n = burst.webhooks;
    for i in 0..n as i64 {
        app.nexudus.add_coworker(first + i, &format!("Member {i}"), &format!("member{i}@example.com"));
        app.nexudus.give_pass(first + i, BIKE_STORAGE, None);
        app.nexudus.give_pass(first + i, COWORKING, None);
    }
    let hooks: Vec<_> = (0..n as i64)
        .map(|i| app.nexudus.webhook("AccessControlUpdate", &app.nexudus.coworker_dto(first + i)))
        .collect();
    app.tapkey.faults().set_rate_limit(Some(tapkey));
    app.salto.faults().set_rate_limit(Some(salto));
    app.brivo.faults().set_rate_limit(Some(brivo));
    if burst.nexudus_limited {
        app.nexudus.faults().set_window_limits(&NEXUDUS_LIMITS);
    }
    app.nexudus.reset_calls();
    app.tapkey.reset_calls();
    app.salto.reset_calls();
    app.brivo.reset_calls();

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let t0 = Instant::now();
    let background = tokio::spawn(serve::run_background(app.runtime.clone(), burst.workers, stop_rx));
    let url = app.hook_url("AccessControlUpdate");
    for hook in &hooks {
        assert_eq!(app.nexudus.deliver(&url, hook).await, 202, "webhook accepted");
    }

    // Portier's clock (and the source's) follow real time here: a listing serves the webhooks
    // that came in well before it started only if time moves on between them.
    let mut ticked = Instant::now();
    let mut follow = |app: &GroupsApp| {
        let now = Instant::now();
        app.advance(chrono::Duration::from_std(now - ticked).unwrap_or_default());
        ticked = now;
    };
    let mut outstanding = Vec::new();
    let converged_after = loop {
        follow(&app);
        let left = missing(&app, n);
        let at = t0.elapsed().as_secs_f64();
        outstanding.push((at, left));
        let stats = app.queue.stats().await.unwrap_or_default();
        if left == 0 && stats.visible == 0 && stats.in_flight == 0 {
            break at;
        }
        assert!(at < 3600.0, "no convergence within an hour: {left} accesses missing");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let source_calls: Vec<(f64, u16)> = api_calls(app.nexudus.calls())
        .iter()
        .map(|c| (c.at.saturating_duration_since(t0).as_secs_f64(), c.status))
        .collect();
    let source_throttled = app.nexudus.faults().throttled_count();
    let burst_calls = [app.tapkey.calls(), app.salto.calls(), app.brivo.calls()].map(api_calls);
    let throttled =
        [app.tapkey.faults(), app.salto.faults(), app.brivo.faults()].map(|f| f.throttled_count());
    let access_writes = [
        app.tapkey.count("PUT", "/Grants"),
        app.salto.membership_calls(SALTO_GROUP),
        app.brivo.membership_calls(),
    ];

    // Then one webhook alone: a new member with one pass to the Tapkey lock.
    let lone = first + n as i64;
    app.nexudus.add_coworker(lone, "Lone Member", "lone@example.com");
    app.nexudus.give_pass(lone, BIKE_STORAGE, None);
    app.nexudus.reset_calls();
    app.tapkey.reset_calls();
    let hook = app.nexudus.webhook("AccessControlUpdate", &app.nexudus.coworker_dto(lone));
    assert_eq!(app.nexudus.deliver(&url, &hook).await, 202, "webhook accepted");
    let lone_started = Instant::now();
    loop {
        follow(&app);
        let stats = app.queue.stats().await.unwrap_or_default();
        if app.tapkey.active_grants().len() > n && stats.visible == 0 && stats.in_flight == 0 {
            break;
        }
        assert!(lone_started.elapsed() < Duration::from_secs(600), "the lone webhook never converged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let source = SourceRun {
        calls: source_calls,
        throttled: source_throttled,
        lone_reads: api_calls(app.nexudus.calls()).len(),
        lone_tapkey_calls: api_calls(app.tapkey.calls()).len(),
        limited: burst.nexudus_limited,
    };
    let _ = stop_tx.send(true);
    let _ = background.await;

    let per = |count: usize| count as f64 / n.max(1) as f64;
    let writes = |calls: &[Call]| calls.iter().filter(|c| c.method != "GET").count();
    // Nothing changed since: a full resync may only list.
    app.tapkey.reset_calls();
    app.salto.reset_calls();
    app.brivo.reset_calls();
    app.nexudus.reset_calls();
    app.resync(false).await.unwrap_or_else(|e| panic!("resync: {e}"));
    let resync_calls = [app.tapkey.calls(), app.salto.calls(), app.brivo.calls()].map(api_calls);
    let resync_source_writes = writes(&api_calls(app.nexudus.calls()));

    let providers = [("tapkey", tapkey), ("salto_ks", salto), ("brivo", brivo)]
        .into_iter()
        .zip(burst_calls)
        .zip(access_writes)
        .zip(throttled)
        .zip(resync_calls)
        .map(|(((((name, rate), calls), access), throttled), resync)| ProviderRun {
            name,
            rate,
            throttled,
            access_writes_per_change: per(access),
            person_writes_per_change: per(writes(&calls).saturating_sub(access)),
            calls: calls
                .iter()
                .map(|c| (c.at.saturating_duration_since(t0).as_secs_f64(), c.status))
                .collect(),
            resync_calls: resync.len(),
            resync_writes: writes(&resync),
        })
        .collect();

    BurstReport { burst, converged_after, providers, resync_source_writes, source, outstanding }
}

impl BurstReport {
    /// The figures as JSON (for `make bench`'s table), without the time series.
    pub fn summary(&self) -> Value {
        let providers: Vec<Value> = self
            .providers
            .iter()
            .map(|p| {
                serde_json::json!({
                    "name": p.name,
                    "rate_limit_per_s": p.rate,
                    "calls": p.calls.len(),
                    "bound_s": p.bound(),
                    "throttled": p.throttled,
                    "access_writes_per_change": p.access_writes_per_change,
                    "person_writes_per_change": p.person_writes_per_change,
                    "resync_calls": p.resync_calls,
                    "resync_writes": p.resync_writes,
                })
            })
            .collect();
        let per = |count: usize| count as f64 / self.burst.webhooks.max(1) as f64;
        let calls = |name: &str| self.provider(name).map_or(0, |p| p.calls.len());
        let s = &self.source;
        serde_json::json!({
            "webhooks": self.burst.webhooks,
            "workers": self.burst.workers,
            "nexudus_limited": self.burst.nexudus_limited,
            "nexudus": {
                "reads": s.calls.len(),
                "reads_per_change": per(s.calls.len()),
                "bound_s": s.bound(),
                "throttled": s.throttled,
                "lone_reads": s.lone_reads,
                "lone_tapkey_calls": s.lone_tapkey_calls,
            },
            "tapkey_calls_per_grant": per(calls("tapkey")),
            "salto_membership_calls_per_change": self.provider("salto_ks").map_or(0.0, |p| p.access_writes_per_change),
            "bound_by": self.bound_by(),
            "bottleneck": self.bottleneck().name,
            "bound_s": self.bound(),
            "converged_s": self.converged_after,
            "ratio_to_bound": self.ratio(),
            "sustained_ratio": self.sustained(),
            "throttled": self.throttled(),
            "resync_source_writes": self.resync_source_writes,
            "providers": providers,
        })
    }
}
