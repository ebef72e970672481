//! Resync and drift across Salto KS and Brivo groups: a member added by hand is found (and
//! only removed under clean_slate); a membership removed by hand is put back.

use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use shared::config::NoAccess;
use shared::error::{CallError, WorkError};
use shared::http::ClientLimits;
use shared::providers::Provider;
use shared::providers::brivo::BrivoProvider;
use shared::providers::salto::SaltoProvider;
use shared::resync::ResyncOptions;
use testkit::groups::{BRIVO_GROUP, COWORKING, SALTO_GROUP, spawn_groups_app};
use testkit::harness::{ANNA, ANNA_EMAIL, fast_retries};

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

#[tokio::test]
async fn group_listings_past_the_cap_fail_the_resync_and_no_membership_is_taken_for_gone() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    // Two members added by hand come first in each group's listing, Anna after them.
    for i in 1..=2 {
        let email = format!("guest{i}@example.com");
        app.salto.add_user_by_hand("Guest", &format!("No{i}"), &email, &[SALTO_GROUP]);
        app.brivo.add_user_by_hand(&format!("Guest No{i}"), &email, &[BRIVO_GROUP]);
    }
    app.nexudus.give_pass(ANNA, COWORKING, None);
    app.advance(Duration::seconds(1));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    assert_eq!((app.salto.members(SALTO_GROUP).len(), app.brivo.members(BRIVO_GROUP).len()), (3, 3));
    let applied = app.records.applied(&app.subject(ANNA)).await.expect("store");
    let calls = (app.salto.membership_calls(SALTO_GROUP), app.brivo.membership_calls());

    // Clients that trust at most two items see each group's three members as a cut listing.
    let http = shared::http::client();
    let capped: [Arc<dyn Provider>; 2] = [
        Arc::new(
            SaltoProvider::new(app.salto.client_config(), http.clone(), fast_retries()).with_max_listed(2),
        ),
        Arc::new(BrivoProvider::new(app.brivo.client_config(), http, fast_retries()).with_max_listed(2)),
    ];
    for provider in capped {
        let kind = provider.kind();
        let tenant = app.tenant().await.with_provider(provider);
        for dry_run in [true, false] {
            let err = app
                .resync_of(&tenant, ResyncOptions { dry_run, ..Default::default() })
                .await
                .expect_err("a cut listing stops the resync");
            assert!(matches!(err, WorkError::Call(CallError::Permanent { .. })), "{kind:?}: {err:?}");
            assert!(err.to_string().contains("more than 2"), "{kind:?}: {err}");
        }
    }
    assert_eq!((app.salto.membership_calls(SALTO_GROUP), app.brivo.membership_calls()), calls);
    assert_eq!(app.records.applied(&app.subject(ANNA)).await.expect("store"), applied);
    assert!(app.salto.members(SALTO_GROUP).contains(&ANNA_EMAIL.to_owned()));
    assert!(app.brivo.members(BRIVO_GROUP).contains(&ANNA_EMAIL.to_owned()));
}
