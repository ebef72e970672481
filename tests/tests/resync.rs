//! Full resync, dry-run plans, drift and status, on the embedded runtime with the simulators.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use shared::config::Adoption;
use shared::error::{CallError, WorkError};
use shared::http::ClientLimits;
use shared::plan::Op;
use shared::providers::tapkey::TapkeyProvider;
use shared::resync::ResyncOptions;
use testkit::harness::{
    ANNA, BIKE_STORAGE, HookAuth, LOCK, TENANT, TestApp, fast_retries, spawn_app, spawn_app_with,
};

fn expiry() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).single().unwrap_or_default()
}

/// Customers 1001.. with a Bike Storage pass each, of whom Portier heard nothing (webhooks lost).
fn people_with_passes(app: &TestApp, n: i64) -> Vec<i64> {
    (0..n)
        .map(|i| {
            let id = 1001 + i;
            app.nexudus.add_coworker(id, &format!("Customer {id}"), &format!("c{id}@example.com"));
            app.nexudus.give_pass(id, BIKE_STORAGE, Some(expiry()))
        })
        .collect()
}

#[tokio::test]
async fn one_resync_repairs_lost_webhooks_and_hand_deleted_grants_and_a_second_changes_nothing() {
    let app = spawn_app(HookAuth::Signature).await;
    // Anna's grant was made through a webhook, then deleted by hand in Tapkey.
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry()));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    let anna_grant = app.tapkey.active_grants()[0].id.clone();
    app.tapkey.revoke_by_hand(&anna_grant);
    // Three customers got passes while webhooks were lost; one pass of Anna's was removed.
    people_with_passes(&app, 3);

    let first = app.resync(false).await.expect("resync");
    assert_eq!(first.op_count(), 4);
    assert_eq!(first.drift.vanished.len(), 1);
    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 4, "{grants:?}");
    assert!(grants.iter().all(|g| g.bound_lock_id == LOCK && g.valid_before == Some(expiry())));

    let writes = app.tapkey_writes();
    let second = app.resync(false).await.expect("resync");
    assert_eq!(second.op_count(), 0);
    assert_eq!(app.tapkey_writes(), writes, "a second resync makes no provider writes");
}

#[tokio::test]
async fn a_resync_with_nothing_changed_makes_only_listing_calls() {
    let app = spawn_app(HookAuth::Signature).await;
    people_with_passes(&app, 5);
    app.resync(false).await.expect("first resync");
    app.nexudus.reset_calls();
    app.tapkey.reset_calls();

    let report = app.resync(false).await.expect("resync");
    assert_eq!(report.op_count(), 0);
    assert_eq!(report.changed, 0);
    let writes: Vec<_> = app.tapkey.calls().into_iter().filter(|c| c.method != "GET").collect();
    assert!(writes.iter().all(|c| c.path.contains("/connect/token")), "{writes:?}");
    assert!(app.nexudus.calls().iter().all(|c| c.method == "GET" || c.path.ends_with("/token")));
    // Two listings of Nexudus (customers, passes) and two of Tapkey (grants, contacts).
    assert_eq!(app.nexudus.count("GET", "/spaces/coworkers"), 1);
    assert_eq!(app.nexudus.count("GET", "/billing/coworkertimepasses"), 1);
    assert_eq!(app.tapkey.count("GET", "/Grants"), 1);
}

#[tokio::test]
async fn a_dry_run_lists_exactly_what_the_real_run_then_does() {
    let app = spawn_app(HookAuth::Signature).await;
    people_with_passes(&app, 4);
    app.resync(false).await.expect("resync");
    // Changes while webhooks are lost: one pass used, one removed, one new customer.
    let used = app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry()));
    app.nexudus.set_pass_used(used);
    app.nexudus.add_coworker(2001, "Ben Weber", "ben@example.com");
    app.nexudus.give_pass(2001, BIKE_STORAGE, None);
    app.nexudus.delete_coworker(1002);
    app.advance(Duration::minutes(5));

    let writes_before = app.tapkey_writes();
    let dry = app.resync(true).await.expect("dry run");
    assert_eq!(app.tapkey_writes(), writes_before, "a dry run changes nothing");
    assert!(app.queue.stats().await.expect("stats").visible == 0, "a dry run queues nothing");

    let real = app.resync(false).await.expect("real run");
    assert_eq!(dry.plans, real.plans);
    let grants = dry.plans.iter().flat_map(|p| &p.ops).filter(|o| matches!(o, Op::Grant { .. })).count();
    let revokes = dry.plans.iter().flat_map(|p| &p.ops).filter(|o| matches!(o, Op::Revoke { .. })).count();
    assert_eq!((grants, revokes), (1, 1));
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 4 + grants);
    assert_eq!(app.tapkey.count("POST", "/Revoke"), revokes);
}

#[tokio::test]
async fn drift_finds_a_hand_made_grant_and_only_clean_slate_removes_it() {
    let app = spawn_app(HookAuth::Signature).await;
    people_with_passes(&app, 2);
    app.resync(false).await.expect("resync");
    let intruder = app.tapkey.add_grant_by_hand("mallory@example.com", LOCK, None, None);

    let report = app.resync(true).await.expect("drift");
    assert_eq!(report.drift.unjustified.len(), 1);
    assert_eq!(report.drift.unjustified[0].id, intruder);
    assert_eq!(report.drift.unjustified[0].email.as_ref().map(|e| e.as_str()), Some("mallory@example.com"));
    // Gradual adoption: reported, never touched.
    app.resync(false).await.expect("resync");
    assert!(app.tapkey.active_grants().iter().any(|g| g.id == intruder));

    // Clean slate: the tenant told Portier to own all access at its mapped locks.
    let app =
        spawn_app_with(HookAuth::Signature, |t| t.policy.adoption = Adoption::CleanSlate, Default::default())
            .await;
    people_with_passes(&app, 2);
    let intruder = app.tapkey.add_grant_by_hand("mallory@example.com", LOCK, None, None);
    let dry = app.resync(true).await.expect("dry run");
    assert_eq!(dry.removed_unjustified, 1);
    // Counted in the summary as what it is: a removal (issue 15.1: it used to say "0 operations").
    assert_eq!(
        (dry.op_count(), dry.removals()),
        (dry.plans.iter().map(|p| p.ops.len()).sum::<usize>() + 1, 1)
    );
    assert!(app.tapkey.active_grants().iter().any(|g| g.id == intruder), "a dry run removes nothing");
    let real = app.resync(false).await.expect("resync");
    assert_eq!(real.removed_unjustified, 1);
    assert!(!app.tapkey.active_grants().iter().any(|g| g.id == intruder));
    assert_eq!(app.tapkey.active_grants().len(), 2);
}

#[tokio::test]
async fn an_interrupted_resync_resumes_and_repeats_no_write() {
    let app = spawn_app(HookAuth::Signature).await;
    people_with_passes(&app, 45);
    // The run dies when it reaches the 30th customer.
    app.store.fail_writes(1, |item| item.pk == format!("SUBJ#{TENANT}#nexudus#1030") && item.sk == "PROFILE");
    assert!(app.resync(false).await.is_err());

    let resumed = app.resync(false).await.expect("resumed run");
    assert!(resumed.resumed);
    assert_eq!(app.tapkey.active_grants().len(), 45);
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 45, "each grant created once");
    let again = app.resync(false).await.expect("third run");
    assert!(!again.resumed);
    assert_eq!(again.op_count(), 0);
}

#[tokio::test]
async fn nexudus_throttling_slows_a_resync_down_but_never_fails_it() {
    let app = spawn_app(HookAuth::Signature).await;
    people_with_passes(&app, 3);
    app.nexudus.faults().fail_next(409, 2);
    let report = app.resync(false).await.expect("resync");
    assert_eq!(report.op_count(), 3);
    assert!(app.nexudus.calls().iter().any(|c| c.status == 409));
    assert_eq!(app.tapkey.active_grants().len(), 3);
}

#[tokio::test]
async fn status_shows_failures_and_the_last_resync() {
    let app = spawn_app(HookAuth::Signature).await;
    people_with_passes(&app, 2);
    app.tapkey.set_lock_active(LOCK, false);
    app.resync(false).await.expect("resync");

    let status =
        shared::status::status(&app.records, app.queue.as_ref(), &[TENANT.into()]).await.expect("status");
    assert!(status.has_failures());
    let t = &status.tenants[0];
    assert_eq!(t.people, 3, "Anna and the two customers");
    assert_eq!(t.failures.get("tapkey"), Some(&2));
    assert!(t.examples[0].contains("not active"));
    assert_eq!(t.last_resync.as_ref().map(|r| r.people), Some(3));
    let text = shared::status::render(&status);
    assert!(text.contains("2 failing at tapkey") && text.contains("last resync"), "{text}");
}

#[tokio::test]
async fn an_incremental_resync_reads_only_what_changed() {
    let app = spawn_app(HookAuth::Signature).await;
    let passes = people_with_passes(&app, 3);
    app.resync(false).await.expect("full resync");
    // Later: one new pass, one used; the source's clock moves on.
    app.advance(Duration::minutes(30));
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry()));
    app.nexudus.set_pass_used(passes[0]);
    app.nexudus.reset_calls();

    let opts = shared::resync::ResyncOptions { incremental: true, ..Default::default() };
    let report = app.resync_with(opts).await.expect("incremental");
    assert!(!report.full);
    assert_eq!(report.op_count(), 2, "{:?}", report.plans);
    assert!(app.nexudus.calls().iter().any(|c| c.query.contains("from_CoworkerTimePass_UpdatedOn")));
    assert_eq!(app.tapkey.active_grants().len(), 3);
}

#[tokio::test]
async fn a_tapkey_listing_past_the_cap_fails_the_resync_and_no_grant_is_taken_for_gone() {
    let app = spawn_app(HookAuth::Signature).await;
    // Two grants made by hand come first in Tapkey's listing, Anna's (made by Portier) after them.
    app.tapkey.add_grant_by_hand("guest1@example.com", LOCK, None, None);
    app.tapkey.add_grant_by_hand("guest2@example.com", LOCK, None, None);
    app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(expiry()));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    let applied = app.records.applied(&app.subject(ANNA)).await.expect("store");
    assert_eq!(applied.len(), 1);
    let writes = app.tapkey_writes();

    // A client that trusts at most two items sees Tapkey's three grants as a cut listing.
    let provider = TapkeyProvider::new(app.tapkey.client_config(), shared::http::client(), fast_retries())
        .with_max_listed(2);
    let capped = app.tenant().await.with_provider(Arc::new(provider));
    for dry_run in [true, false] {
        let err = app
            .resync_of(&capped, ResyncOptions { dry_run, ..Default::default() })
            .await
            .expect_err("a cut listing stops the resync");
        assert!(matches!(err, WorkError::Call(CallError::Permanent { .. })), "{err:?}");
        assert!(err.to_string().contains("more than 2 Grants"), "{err}");
    }
    assert_eq!(app.tapkey_writes(), writes, "nothing was concluded from the cut listing");
    assert_eq!(app.records.applied(&app.subject(ANNA)).await.expect("store"), applied);

    // The whole listing: Anna's grant is there, the two by hand are reported.
    let report = app.resync(true).await.expect("resync");
    assert!(report.drift.vanished.is_empty(), "{:?}", report.drift.vanished);
    assert_eq!(report.drift.unjustified.len(), 2);
}
