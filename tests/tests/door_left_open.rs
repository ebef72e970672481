//! The two sequences of issue 11 that left doors open for good, in `portier serve` (embedded
//! store and queue). Their Lambda twins are in `lambda_aws.rs` and `kinnovis_lambda_aws.rs`.
//!
//! A Tapkey grant whose window changes is replaced (a new grant, the old one revoked). The
//! replacement's record shared its key with the old grant's, so recording the revoke deleted
//! it: every later revocation did nothing.

use chrono::Duration;
use shared::model::Email;
use testkit::harness::{ANNA, BIKE_STORAGE, HookAuth, spawn_app};
use testkit::kinnovis_app::{self, spawn_kinnovis_app};

#[tokio::test]
async fn kinnovis_move_out_set_then_overdue_and_cancelled_removes_every_grant() {
    let app = spawn_kinnovis_app().await;
    let today = app.records.now().date_naive();
    let day = |d: i64| today + Duration::days(d);
    let id = app.kinnovis.create_booking(kinnovis_app::UNIT, kinnovis_app::ANNA, "Anna", day(0), None);
    app.kinnovis.set_shared_access(&id, &[kinnovis_app::BEN]);
    assert_eq!(app.hook("booking.created", &id).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 2);

    // A move-out date: each grant is replaced by one that ends then.
    app.kinnovis.set_move_out(&id, Some(day(30)));
    assert_eq!(app.hook("booking.updated", &id).await, 202);
    app.drain().await;
    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 2, "replaced, not added: {grants:?}");
    assert!(grants.iter().all(|g| g.valid_before.is_some()));
    // Portier still knows each grant it holds, so explain shows it and plans nothing.
    for who in [kinnovis_app::ANNA, kinnovis_app::BEN] {
        let reports = shared::explain::explain(
            &app.records,
            std::slice::from_ref(&app.config),
            &Email::parse(who).expect("email"),
            None,
        )
        .await
        .expect("explain");
        assert_eq!(reports[0].applied.len(), 1, "{who}: the replacement grant is recorded");
        assert!(reports[0].pending.is_empty(), "{who}: nothing to create again");
    }

    // Overdue: the customer and the shared access are locked out.
    app.kinnovis.revoke(&id, "overdue");
    assert_eq!(app.hook("access.revoked", &id).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty(), "{:?}", app.tapkey.active_grants());

    app.kinnovis.set_status(&id, "cancelled");
    assert_eq!(app.hook("booking.cancelled", &id).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty());
}

#[tokio::test]
async fn nexudus_pass_extended_then_used_removes_the_extended_grant() {
    let app = spawn_app(HookAuth::Signature).await;
    let now = app.records.now();
    let pass = app.nexudus.give_pass(ANNA, BIKE_STORAGE, Some(now + Duration::days(7)));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;

    app.nexudus.set_pass_expiry(pass, Some(now + Duration::days(14)));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].valid_before, Some(now + Duration::days(14)));

    app.nexudus.set_pass_used(pass);
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty(), "the extended grant is revoked");
    let applied = app.records.applied(&app.subject(ANNA)).await.expect("store");
    assert!(applied.is_empty(), "{applied:?}");
}
