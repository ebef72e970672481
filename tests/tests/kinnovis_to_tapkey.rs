//! A Kinnovis booking opens its unit's Tapkey lock: the self-storage user stories, through the
//! real webhook route, the embedded store and queue, and the Kinnovis and Tapkey simulators.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use serde_json::json;
use shared::mapping::{self, Check, ImportError};
use shared::model::{Email, EntitlementState};
use testkit::kinnovis_app::{
    ANNA, BEN, KinnovisApp, UNIT, UNIT_2, UNIT_2_LOCK, UNIT_LOCK, spawn_kinnovis_app,
};
use testkit::sim::kinnovis::standard_signature;

fn day(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap_or_default()
}

fn utc(y: i32, m: u32, d: u32, h: u32) -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, 0, 0).single().unwrap_or_default()
}

/// A booking that has started (move-in 2026-11-01), shared with Ben, announced and worked.
async fn active_booking_shared_with_ben(app: &KinnovisApp) -> String {
    let id = app.kinnovis.create_booking(UNIT, ANNA, "Anna Berger", day(2026, 11, 1), None);
    app.kinnovis.set_shared_access(&id, &[BEN]);
    assert_eq!(app.hook("booking.created", &id).await, 202);
    app.drain().await;
    id
}

fn holders(app: &KinnovisApp) -> Vec<String> {
    let mut h: Vec<String> =
        app.tapkey.active_grants().iter().filter_map(|g| app.holder(&g.contact_id)).collect();
    h.sort();
    h
}

#[tokio::test]
async fn a_booking_before_move_in_grants_from_local_midnight_and_a_later_move_out_replaces_the_grant() {
    let app = spawn_kinnovis_app().await;
    // Move-in in winter time (UTC+1), move-out in summer time (UTC+2), in Vienna.
    let id = app.kinnovis.create_booking(UNIT, ANNA, "Anna Berger", day(2027, 3, 1), None);
    assert_eq!(app.hook("booking.created", &id).await, 202);
    app.drain().await;

    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1, "{grants:?}");
    assert_eq!(grants[0].bound_lock_id, UNIT_LOCK);
    assert_eq!(grants[0].valid_from, Some(utc(2027, 2, 28, 23)), "00:00 on 1 March in Vienna");
    assert_eq!(grants[0].valid_before, None, "no move-out yet");
    assert_eq!(app.holder(&grants[0].contact_id).as_deref(), Some(ANNA));

    app.advance(Duration::days(1));
    app.kinnovis.set_move_out(&id, Some(day(2027, 6, 30)));
    assert_eq!(app.hook("booking.updated", &id).await, 202);
    app.drain().await;

    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1, "one grant alive after convergence: {grants:?}");
    assert_eq!(grants[0].valid_from, Some(utc(2027, 2, 28, 23)));
    assert_eq!(grants[0].valid_before, Some(utc(2027, 6, 30, 22)), "the end of 30 June in summer time");
    assert_eq!(app.tapkey.grants().len(), 2, "re-created, the old one revoked");
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 2);
    assert_eq!(app.tapkey.count("POST", "/Revoke"), 1);
}

#[tokio::test]
async fn an_overdue_lock_out_revokes_the_customer_and_shared_access_and_payment_restores_them() {
    let app = spawn_kinnovis_app().await;
    let id = active_booking_shared_with_ben(&app).await;
    assert_eq!(holders(&app), [ANNA, BEN]);
    // Kinnovis' delivery of this state arrives late, after the lock-out.
    let stale = app.kinnovis.webhook("booking.updated", &id);

    app.advance(Duration::minutes(1));
    app.kinnovis.revoke(&id, "overdue");
    assert_eq!(app.hook("access.revoked", &id).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty());
    assert_eq!(app.tapkey.count("POST", "/Revoke"), 2);
    let ents = app.records.entitlements(&app.subject(BEN)).await.expect("store");
    assert!(matches!(&ents[0].state, EntitlementState::Revoked { reason } if reason.contains("overdue")));

    // The older version (access granted) changes nothing.
    assert_eq!(app.deliver(&stale).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty());
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 2);

    app.advance(Duration::minutes(1));
    app.kinnovis.restore(&id);
    assert_eq!(app.hook("access.restored", &id).await, 202);
    app.drain().await;
    assert_eq!(holders(&app), [ANNA, BEN]);
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 4);
}

#[tokio::test]
async fn an_email_change_moves_the_grant_and_cancelling_removes_it() {
    let app = spawn_kinnovis_app().await;
    let id = active_booking_shared_with_ben(&app).await;
    app.advance(Duration::minutes(1));
    app.kinnovis.set_customer_email(&id, " Anna.Berger@Example.com ");
    app.kinnovis.set_shared_access(&id, &[]);
    assert_eq!(app.hook("booking.updated", &id).await, 202);
    app.drain().await;
    // The new address is named in the event and granted at once; those who left the booking
    // are brought to the reconciler by a timer, in their own queue group.
    app.tick_and_drain().await;
    assert_eq!(holders(&app), ["anna.berger@example.com"]);

    app.advance(Duration::minutes(1));
    app.kinnovis.set_status(&id, "cancelled");
    assert_eq!(app.hook("booking.cancelled", &id).await, 202);
    app.drain().await;
    assert!(app.tapkey.active_grants().is_empty());
    let explained = shared::explain::explain(
        &app.records,
        std::slice::from_ref(&app.config),
        &Email::parse("anna.berger@example.com").expect("email"),
        None,
    )
    .await
    .expect("explain");
    assert!(
        matches!(&explained[0].entitlements[0].entitlement.state, EntitlementState::Ended { reason } if reason.contains("cancelled"))
    );
}

#[tokio::test]
async fn forged_expired_reused_and_misdirected_webhooks_queue_nothing() {
    let app = spawn_kinnovis_app().await;
    let id = app.kinnovis.create_booking(UNIT, ANNA, "Anna Berger", day(2026, 11, 1), None);
    let now = app.kinnovis.now().timestamp();
    let body = serde_json::to_vec(&app.kinnovis.event("booking.created", &id)).expect("json");

    // Forged: signed with another key.
    let mut forged = app.kinnovis.sign("booking.created", "msg_forged", now, body.clone());
    forged.headers.retain(|(k, _)| k != "webhook-signature");
    let other_key = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    forged
        .headers
        .push(("webhook-signature".into(), standard_signature(other_key, "msg_forged", now, &body)));
    assert_eq!(app.deliver(&forged).await, 401);
    // Tampered body under a valid signature.
    let mut tampered = app.kinnovis.sign("booking.created", "msg_tampered", now, body.clone());
    tampered.body = body.iter().map(|b| if *b == b'A' { b'B' } else { *b }).collect();
    assert_eq!(app.deliver(&tampered).await, 401);
    // Expired: correctly signed, but more than 300 s old (or ahead).
    let old = app.kinnovis.sign("booking.created", "msg_old", now - 301, body.clone());
    assert_eq!(app.deliver(&old).await, 401);
    let ahead = app.kinnovis.sign("booking.created", "msg_ahead", now + 301, body.clone());
    assert_eq!(app.deliver(&ahead).await, 401);
    // Missing headers.
    let mut bare = app.kinnovis.sign("booking.created", "msg_bare", now, body.clone());
    bare.headers.retain(|(k, _)| k != "webhook-id");
    assert_eq!(app.deliver(&bare).await, 401);
    // Misdirected: signed with this tenant's secret, but for another location.
    let mut elsewhere = app.kinnovis.event("booking.created", &id);
    elsewhere["location_id"] = json!("loc-graz-2");
    let elsewhere = app.kinnovis.sign(
        "booking.created",
        "msg_elsewhere",
        now,
        serde_json::to_vec(&elsewhere).expect("json"),
    );
    assert_eq!(app.deliver(&elsewhere).await, 400);
    // Unknown tenant.
    let hook = app.kinnovis.webhook("booking.created", &id);
    let status = app.kinnovis.deliver(&format!("{}/hooks/kinnovis/nobody", app.url), &hook).await;
    assert_eq!(status, 404);
    assert_eq!(app.queued().await, 0, "nothing was queued");
    assert!(app.records.quarantined(&"storage-vienna".into()).await.expect("store").is_empty());

    // Rotation: an old-key signature beside the current one is fine.
    let mut rotated = app.kinnovis.sign("booking.created", "msg_rotated", now, body.clone());
    for (k, v) in rotated.headers.iter_mut() {
        if k == "webhook-signature" {
            *v = format!("{} {v}", standard_signature(other_key, "msg_rotated", now, &body));
        }
    }
    assert_eq!(app.deliver(&rotated).await, 202);
    assert_eq!(app.queued().await, 1);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 1);

    // Reused id: answered like the first time, but nothing is queued again.
    assert_eq!(app.deliver(&rotated).await, 202);
    assert_eq!(app.queued().await, 0);
    app.advance(Duration::minutes(4));
    let reused =
        app.kinnovis.sign("booking.created", "msg_rotated", app.kinnovis.now().timestamp(), body.clone());
    assert_eq!(app.deliver(&reused).await, 202);
    assert_eq!(app.queued().await, 0);
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 1);
}

#[tokio::test]
async fn an_inactive_lock_gets_no_grant_call_shows_in_explain_and_is_granted_once_activated() {
    let app = spawn_kinnovis_app().await;
    app.tapkey.set_lock_active(UNIT_LOCK, false);
    let id = app.kinnovis.create_booking(UNIT, ANNA, "Anna Berger", day(2026, 11, 1), None);
    assert_eq!(app.hook("booking.created", &id).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 0, "no grant attempt on an unlicensed lock");

    let anna = Email::parse(ANNA).expect("email");
    let reports = shared::explain::explain(&app.records, std::slice::from_ref(&app.config), &anna, None)
        .await
        .expect("explain");
    assert_eq!(reports.len(), 1);
    assert!(reports[0].failures[0].reason.contains("is not active"), "{:?}", reports[0].failures);
    let text = shared::explain::render(&reports, &anna);
    assert!(text.contains("Unit A-017") && text.contains("not active"), "{text}");

    // `mapping locks` warns: a booking needs the inactive lock.
    let report = mapping::locks(&app.records, &app.tenant).await.expect("locks");
    let line = report.locks.iter().find(|l| l.id == UNIT_LOCK).expect("listed");
    assert!(!line.active && line.units == [UNIT] && line.bookings_needing == 1, "{line:?}");
    assert!(report.warnings.iter().any(|w| w.contains("not active") && w.contains(UNIT)), "{report:?}");

    // The operator activates the licence; the next reconcile (after the failure's cool-down) grants.
    app.tapkey.set_lock_active(UNIT_LOCK, true);
    app.advance(Duration::minutes(61));
    app.tick_and_drain().await;
    assert_eq!(holders(&app), [ANNA]);
    let report = mapping::locks(&app.records, &app.tenant).await.expect("locks");
    assert!(report.warnings.is_empty(), "{report:?}");
}

#[tokio::test]
async fn a_csv_import_maps_units_all_or_nothing_and_the_planner_uses_it() {
    let app = spawn_kinnovis_app().await;
    let bad = format!(
        "Tapkey Lock ID,Kinnovis Unit Name\n{UNIT_2_LOCK},{UNIT_2}\n{UNIT_LOCK},Z-999\n3c4d5e6f-0000-4000-8000-000000000001,a-017\n"
    );
    match mapping::import(&app.records, &app.config, Check::Online(&app.tenant), &bad).await {
        Err(ImportError::Invalid(errors)) => {
            assert_eq!(errors.len(), 3, "{errors:?}");
            assert!(
                errors[0].starts_with("line 3: unit Z-999 is not a unit of Kinnovis location loc-vienna-1")
            );
            assert!(errors[1].starts_with("line 4: unit a-017") && errors[1].contains("did you mean A-017?"));
            assert!(errors[2].starts_with("line 4: lock 3c4d5e6f") && errors[2].contains("not a bound lock"));
        }
        other => panic!("expected line errors, got {other:?}"),
    }
    assert!(
        app.records.stored_mappings(&app.config.id).await.expect("store").is_empty(),
        "nothing half-imported"
    );

    let good = format!("Tapkey Lock ID,Kinnovis Unit Name\n{UNIT_2_LOCK},{UNIT_2}\n");
    let report = mapping::import(&app.records, &app.config, Check::Online(&app.tenant), &good)
        .await
        .expect("imported");
    assert_eq!((report.imported, report.replaced), (1, 0));
    assert_eq!(app.kinnovis.count("GET", "/locations/loc-vienna-1/units"), 2);

    let id = app.kinnovis.create_booking(UNIT_2, BEN, "Ben", day(2026, 11, 1), Some(day(2026, 12, 31)));
    assert_eq!(app.hook("booking.created", &id).await, 202);
    app.drain().await;
    let grants = app.tapkey.active_grants();
    assert_eq!(grants.len(), 1);
    assert_eq!(grants[0].bound_lock_id, UNIT_2_LOCK);
    assert_eq!(grants[0].valid_before, Some(utc(2026, 12, 31, 23)));
}

#[tokio::test]
async fn gradual_adoption_manages_what_a_webhook_names_whatever_the_senders_clock_and_leaves_hand_made_grants_alone()
 {
    let app = spawn_kinnovis_app().await;
    // Someone gave Anna a key by hand before Portier was connected.
    let by_hand = app.tapkey.add_grant_by_hand(ANNA, UNIT_LOCK, None, None);

    // A delivery whose sender's clock says it happened before the connection (a clock behind,
    // or an event sent within a second of connecting): Portier heard of it by webhook, so it
    // is new to Portier and managed (issue 11).
    let id = app.kinnovis.create_booking(UNIT_2, BEN, "Ben", day(2026, 11, 1), None);
    let mut event = app.kinnovis.event("booking.updated", &id);
    event["occurred_at"] = json!("2026-11-01T08:00:00Z");
    let now = app.kinnovis.now().timestamp();
    let hook =
        app.kinnovis.sign("booking.updated", "msg_before", now, serde_json::to_vec(&event).expect("json"));
    mapping::import(
        &app.records,
        &app.config,
        Check::Online(&app.tenant),
        &format!("Tapkey Lock ID,Kinnovis Unit Name\n{UNIT_2_LOCK},{UNIT_2}\n"),
    )
    .await
    .expect("imported");
    assert_eq!(app.deliver(&hook).await, 202);
    app.drain().await;
    let ents = app.records.entitlements(&app.subject(BEN)).await.expect("store");
    assert!(ents[0].is_active(), "{:?}", ents[0].state);
    assert_eq!(app.tapkey.count("PUT", "/Grants"), 1);

    // A booking made now is managed; ending it revokes only what Portier created.
    let anna = app.kinnovis.create_booking(UNIT, ANNA, "Anna", day(2026, 11, 1), None);
    assert_eq!(app.hook("booking.created", &anna).await, 202);
    app.drain().await;
    assert_eq!(app.tapkey.active_grants().len(), 3);
    app.advance(Duration::minutes(1));
    app.kinnovis.set_status(&anna, "ended");
    assert_eq!(app.hook("booking.updated", &anna).await, 202);
    app.drain().await;
    let active = app.tapkey.active_grants();
    assert_eq!(active.len(), 2);
    assert!(active.iter().any(|g| g.id == by_hand), "the hand-made grant is never touched");
}

#[tokio::test]
async fn a_resync_over_the_export_restores_hand_revoked_grants_and_leaves_unannounced_bookings_to_clean_slate()
 {
    let app = spawn_kinnovis_app().await;
    let first = active_booking_shared_with_ben(&app).await;
    // Anna's grant is revoked by hand in Tapkey; a booking for unit A-018 exists only in the
    // export (its webhook was lost). The export has no change time, so under `gradual`
    // adoption Portier cannot tell it from a booking older than the connection: left alone.
    let anna_grant = app
        .tapkey
        .active_grants()
        .into_iter()
        .find(|g| app.holder(&g.contact_id).as_deref() == Some(ANNA))
        .map(|g| g.id)
        .unwrap_or_default();
    app.tapkey.revoke_by_hand(&anna_grant);
    let second = app.kinnovis.create_booking(UNIT_2, BEN, "Ben Weber", day(2026, 11, 15), None);

    let opts = shared::resync::ResyncOptions::default();
    let dry = shared::resync::resync(
        &app.records,
        &app.tenant,
        app.queue.as_ref(),
        shared::resync::ResyncOptions { dry_run: true, ..opts },
        &mut |_, _| {},
    )
    .await
    .expect("dry run");
    assert_eq!(dry.op_count(), 1, "{:#?}", dry.plans);
    let real = shared::resync::resync(&app.records, &app.tenant, app.queue.as_ref(), opts, &mut |_, _| {})
        .await
        .expect("resync");
    app.drain().await;
    assert_eq!(real.plans, dry.plans);
    assert_eq!(holders(&app), [ANNA, BEN]);
    assert!(!app.tapkey.active_grants().iter().any(|g| g.bound_lock_id == UNIT_2_LOCK));
    let again = shared::resync::resync(&app.records, &app.tenant, app.queue.as_ref(), opts, &mut |_, _| {})
        .await
        .expect("second resync");
    assert_eq!(again.op_count(), 0, "{:#?} ({first}, {second})", again.plans);
}
