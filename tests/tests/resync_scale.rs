//! Resync at scale (issue 14): a full resync of many people (10 000 by default,
//! `PORTIER_RESYNC_PEOPLE`) with nothing changed makes listing calls only, and its peak memory
//! is measured and printed (the goal is under 200 MB). Ignored by default: it first syncs
//! everyone for real. `make bench` runs it:
//! `cargo test --release -p portier-testkit --test resync_scale -- --ignored --nocapture`.

use std::time::Duration;

use testkit::harness::{BIKE_STORAGE, HookAuth, spawn_app_with};

/// The process's resident set now and at its peak (kB), from /proc/self/status.
fn rss_kb() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| {
        status.lines().find(|l| l.starts_with(name))?.split_whitespace().nth(1)?.parse::<u64>().ok()
    };
    Some((field("VmRSS:")?, field("VmHWM:")?))
}

/// Starts a new peak (Linux: writing 5 to clear_refs resets VmHWM to the current RSS).
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "syncs 10 000 people first; run by make bench"]
async fn a_no_change_resync_of_ten_thousand_people_only_lists_and_stays_small() {
    let people: i64 =
        std::env::var("PORTIER_RESYNC_PEOPLE").ok().and_then(|v| v.parse().ok()).unwrap_or(10_000);
    // Not the source's limits that are measured here: lift them so the first sync is quick.
    let unthrottled = |t: &mut shared::config::TenantConfig| {
        if let shared::config::SourceConfig::Nexudus { calls_per_minute, .. } = &mut t.source {
            *calls_per_minute = Some(1_000_000);
        }
    };
    let app = spawn_app_with(HookAuth::Signature, unthrottled, Default::default()).await;
    let first = 1_000_000;
    for id in first..first + people {
        app.nexudus.add_coworker(id, &format!("Member {id}"), &format!("m{id}@example.com"));
        app.nexudus.give_pass(id, BIKE_STORAGE, None);
    }

    // The first sync gives everyone their grant (worked by `portier serve`'s worker tasks).
    let tenant = app.tenant().await;
    let opts = shared::resync::ResyncOptions::default();
    let first_sync = shared::resync::resync(&app.records, &tenant, app.queue.as_ref(), opts, &mut |_, _| {})
        .await
        .expect("first resync");
    assert_eq!(first_sync.plans.len(), people as usize, "everyone needs a grant");
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = tokio::spawn(shared::serve::run_background(app.runtime.clone(), 4, stop_rx));
    loop {
        let stats = app.queue.stats().await.expect("queue");
        if stats.visible == 0 && stats.in_flight == 0 && app.tapkey.active_grants().len() == people as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = stop_tx.send(true);
    let _ = background.await;

    // Nothing changed since: the measured run.
    app.nexudus.reset_calls();
    app.tapkey.reset_calls();
    let reset = reset_peak();
    let before = rss_kb();
    let started = std::time::Instant::now();
    let report = shared::resync::resync(&app.records, &tenant, app.queue.as_ref(), opts, &mut |_, _| {})
        .await
        .expect("no-change resync");
    let took = started.elapsed();
    let after = rss_kb();

    let api = |calls: Vec<testkit::sim::Call>| -> Vec<testkit::sim::Call> {
        calls.into_iter().filter(|c| !c.path.to_ascii_lowercase().contains("token")).collect()
    };
    let (nexudus, tapkey) = (api(app.nexudus.calls()), api(app.tapkey.calls()));
    let writes = nexudus.iter().chain(&tapkey).filter(|c| c.method != "GET").count();
    let peak_mb = after.map(|(_, hwm)| hwm as f64 / 1024.0);
    println!(
        "RESYNC {}",
        serde_json::json!({
            "people": people,
            "seconds": took.as_secs_f64(),
            "nexudus_calls": nexudus.len(),
            "tapkey_calls": tapkey.len(),
            "writes": writes,
            "plans": report.plans.len(),
            "rss_before_mb": before.map(|(rss, _)| rss as f64 / 1024.0),
            "peak_rss_mb": peak_mb,
            "peak_is_of_the_resync": reset,
        })
    );
    assert!(report.plans.is_empty(), "nothing changed: no subject needs anything");
    assert_eq!(writes, 0, "listing calls only");
    let queued = app.queue.stats().await.expect("queue");
    assert_eq!(queued.visible, 0, "nothing enqueued");
}
