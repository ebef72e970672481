//! Resync and drift across Salto KS and Brivo groups: a member added by hand is found (and
//! only removed under clean_slate); a membership removed by hand is put back.

use chrono::{Duration, TimeZone, Utc};
use shared::config::NoAccess;
use testkit::groups::{BRIVO_GROUP, COWORKING, SALTO_GROUP, spawn_groups_app};
use testkit::harness::{ANNA, ANNA_EMAIL};

#[tokio::test]
async fn drift_finds_a_member_added_by_hand_in_brivo() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let expiry = Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).single().unwrap_or_default();
    app.nexudus.give_pass(ANNA, COWORKING, Some(expiry));
    app.advance(Duration::seconds(1));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    assert_eq!(app.brivo.members(BRIVO_GROUP), [ANNA_EMAIL]);
    assert_eq!(app.salto.members(SALTO_GROUP).len(), 1);

    // Nothing changed: a dry run finds no drift and plans nothing.
    let clean = app.resync(true).await.expect("dry run");
    assert!(clean.drift.unjustified.is_empty(), "{:?}", clean.drift.unjustified);
    assert_eq!(clean.op_count(), 0);

    // Someone adds Mallory to the Brivo group in the console.
    let mallory = app.brivo.add_user_by_hand("Mallory Doe", "mallory@example.com", &[BRIVO_GROUP]);
    let drift = app.resync(true).await.expect("drift");
    assert_eq!(drift.drift.unjustified.len(), 1, "{:#?}", drift.drift.unjustified);
    let found = &drift.drift.unjustified[0];
    assert_eq!(found.email.as_ref().map(|e| e.as_str()), Some("mallory@example.com"));
    assert_eq!(found.id, format!("{BRIVO_GROUP}#{mallory}"));
    // Reported, not touched (gradual adoption).
    app.resync(false).await.expect("resync");
    assert!(app.brivo.members(BRIVO_GROUP).contains(&"mallory@example.com".to_owned()));
}

#[tokio::test]
async fn a_membership_removed_by_hand_is_put_back_by_one_membership_call() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    app.nexudus.give_pass(ANNA, COWORKING, None);
    app.advance(Duration::seconds(1));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    let anna = app.brivo.user_by_email(ANNA_EMAIL).expect("Anna's Brivo user");
    app.brivo.remove_from_group_by_hand(anna.id, BRIVO_GROUP);

    let dry = app.resync(true).await.expect("dry run");
    assert_eq!(dry.drift.vanished.len(), 1);
    assert_eq!(dry.op_count(), 1, "{:?}", dry.plans);
    let calls = app.brivo.membership_calls();
    let real = app.resync(false).await.expect("resync");
    assert_eq!(real.plans, dry.plans);
    assert_eq!(app.brivo.members(BRIVO_GROUP), [ANNA_EMAIL]);
    assert_eq!(app.brivo.membership_calls(), calls + 1);
    // Salto KS was never touched.
    assert_eq!(app.salto.members(SALTO_GROUP).len(), 1);
    let again = app.resync(false).await.expect("second resync");
    assert_eq!(again.op_count(), 0);
    assert_eq!(app.brivo.membership_calls(), calls + 1);
}
