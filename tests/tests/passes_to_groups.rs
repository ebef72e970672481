//! Nexudus passes open doors through Salto KS access groups and Brivo groups: memberships held
//! only while a window holds, added and removed at its edges by the tick, one membership call
//! per change, the no-access policy with re-activation, and each provider's pitfalls. Through
//! the real webhook routes, the embedded store and queue, and the simulators; the clock is
//! manual, nothing sleeps.

use chrono::{Duration, TimeZone, Utc};
use shared::clock::Clock;
use shared::config::NoAccess;
use shared::model::{
    Entitlement, EntitlementKind, EntitlementState, ItemKind, ItemRef, ProviderKind, ProviderUser, UserState,
    Window,
};
use shared::queue::WorkMessage;
use testkit::groups::{
    BRIVO_GROUP, COWORKING, EVENING, GroupsApp, SALTO_GROUP, STUDIO_GROUPS, STUDIOS, spawn_groups_app,
};
use testkit::harness::{ANNA, ANNA_EMAIL};

fn expiry() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).single().unwrap_or_default()
}

/// Anna gets a pass of `product`; Nexudus fires `AccessControlUpdate`.
async fn give(app: &GroupsApp, product: i64, expire: Option<chrono::DateTime<Utc>>) -> i64 {
    let pass = app.nexudus.give_pass(ANNA, product, expire);
    hook(app).await;
    pass
}

/// A second later than the last one: Nexudus sends the same Coworker DTO for every access
/// change, and the second of receipt is part of the event id.
async fn hook(app: &GroupsApp) {
    app.advance(Duration::seconds(1));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
}

async fn use_pass(app: &GroupsApp, pass: i64) {
    app.advance(Duration::minutes(5));
    app.nexudus.set_pass_used(pass);
    hook(app).await;
}

async fn user(app: &GroupsApp, provider: ProviderKind) -> Option<ProviderUser> {
    let users = app.records.provider_users(&app.subject(ANNA)).await.expect("store");
    users.into_iter().find(|u| u.provider == provider)
}

fn anna() -> Vec<String> {
    vec![ANNA_EMAIL.to_owned()]
}

#[tokio::test]
async fn a_pass_adds_anna_to_both_groups_until_it_expires() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    give(&app, COWORKING, Some(expiry())).await;

    assert_eq!(app.salto.members(SALTO_GROUP), anna());
    assert_eq!(app.brivo.members(BRIVO_GROUP), anna());
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 1);
    assert_eq!(app.brivo.membership_calls(), 1);
    // Users carry her name and email; both Salto ids and the Brivo id are stored.
    let salto_user = &app.salto.users()[0];
    assert_eq!((salto_user.first_name.as_str(), salto_user.last_name.as_str()), ("Anna", "Müller"));
    assert_eq!(salto_user.email.as_deref(), Some(ANNA_EMAIL));
    let stored = user(&app, ProviderKind::Salto).await.expect("salto user stored");
    let ids = stored.ids.expect("ids");
    assert_eq!(
        (ids.id.as_str(), ids.platform_id.as_deref()),
        (salto_user.id.as_str(), Some(salto_user.platform_id.as_str()))
    );
    let brivo_user = app.brivo.user_by_email(ANNA_EMAIL).expect("brivo user");
    assert_eq!(brivo_user.external_id, Some(app.subject(ANNA).to_string()));
    assert_eq!(
        user(&app, ProviderKind::Brivo).await.and_then(|u| u.ids).map(|i| i.id),
        Some(brivo_user.id.to_string())
    );

    // A repeated webhook changes nothing and calls nothing.
    hook(&app).await;
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 1);
    assert_eq!(app.brivo.membership_calls(), 1);

    // The expiry is a timer: the tick removes her, one call per group.
    app.set_now(expiry());
    app.tick_and_drain().await;
    assert!(app.salto.members(SALTO_GROUP).is_empty());
    assert!(app.brivo.members(BRIVO_GROUP).is_empty());
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 2);
    assert_eq!(app.brivo.membership_calls(), 2);
    // Policy `keep`: the users stay.
    assert_eq!(app.salto.users().len(), 1);
    assert!(!app.brivo.users()[0].suspended);
}

#[tokio::test]
async fn a_used_pass_removes_the_memberships_at_once() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let pass = give(&app, COWORKING, Some(expiry())).await;
    use_pass(&app, pass).await;
    assert!(app.salto.members(SALTO_GROUP).is_empty());
    assert!(app.brivo.members(BRIVO_GROUP).is_empty());
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 2);
    assert_eq!(app.brivo.membership_calls(), 2);
    assert!(app.records.applied(&app.subject(ANNA)).await.expect("store").is_empty());
}

#[tokio::test]
async fn two_passes_for_the_same_group_remove_anna_only_when_both_end() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let first = give(&app, COWORKING, Some(expiry())).await;
    let second = give(&app, EVENING, None).await;
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 1, "the second pass adds nothing new");

    use_pass(&app, first).await;
    assert_eq!(app.salto.members(SALTO_GROUP), anna());
    assert_eq!(app.brivo.members(BRIVO_GROUP), anna());
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 1);
    assert_eq!(app.brivo.membership_calls(), 1);

    use_pass(&app, second).await;
    assert!(app.salto.members(SALTO_GROUP).is_empty());
    assert!(app.brivo.members(BRIVO_GROUP).is_empty());
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 2);
    assert_eq!(app.brivo.membership_calls(), 2);
}

#[tokio::test]
async fn a_future_window_is_added_at_its_start_and_removed_at_its_end_by_the_tick() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    // Anna is known (a pass of another product, unmapped here: Tapkey's bike storage).
    app.nexudus.give_pass(ANNA, testkit::harness::BIKE_STORAGE, None);
    hook(&app).await;
    // An entitlement with a future window, as bookings and contracts will record them.
    let start = app.clock.now() + Duration::hours(3);
    let window = Window::new(Some(start), Some(start + Duration::hours(1)));
    let subject = app.subject(ANNA);
    let ent = Entitlement {
        kind: EntitlementKind::Pass,
        id: "future-1".into(),
        item: ItemRef { kind: ItemKind::Pass, id: COWORKING.to_string() },
        label: "Coworking".into(),
        window,
        state: EntitlementState::Active,
        source_version: app.clock.now(),
    };
    app.records
        .save_entitlement(&subject, &ent, shared::model::Seen::Read(app.records.now()))
        .await
        .expect("store");
    let msg = WorkMessage::Reconcile {
        subject: subject.clone(),
        reason: "test".into(),
        at: app.clock.now(),
        urgent: false,
    };
    app.queue.send(&msg.to_outgoing()).await.expect("queue");
    app.drain().await;
    assert!(app.salto.members(SALTO_GROUP).is_empty(), "not added ahead of time");
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 0);

    app.set_now(start - Duration::minutes(1));
    app.tick_and_drain().await;
    assert!(app.salto.members(SALTO_GROUP).is_empty());
    app.set_now(start + Duration::seconds(30));
    app.tick_and_drain().await;
    assert_eq!(app.salto.members(SALTO_GROUP), anna());
    assert_eq!(app.brivo.members(BRIVO_GROUP), anna());

    app.set_now(start + Duration::hours(1) + Duration::seconds(30));
    app.tick_and_drain().await;
    assert!(app.salto.members(SALTO_GROUP).is_empty());
    assert!(app.brivo.members(BRIVO_GROUP).is_empty());
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 2);
    assert_eq!(app.brivo.membership_calls(), 2);
}

#[tokio::test]
async fn policy_suspend_suspends_and_returning_access_unsuspends() {
    let app = spawn_groups_app(NoAccess::Suspend).await;
    let pass = give(&app, COWORKING, None).await;
    use_pass(&app, pass).await;
    assert_eq!(app.salto.users()[0].subscription_state, "suspended");
    assert!(app.brivo.users()[0].suspended);
    assert_eq!(user(&app, ProviderKind::Salto).await.map(|u| u.state), Some(UserState::Suspended));

    give(&app, EVENING, None).await;
    assert_eq!(app.salto.users()[0].subscription_state, "subscribed");
    assert!(!app.brivo.users()[0].suspended);
    assert_eq!(app.salto.members(SALTO_GROUP), anna());
    assert_eq!(app.brivo.members(BRIVO_GROUP), anna());
    assert_eq!((app.salto.users().len(), app.brivo.users().len()), (1, 1), "the same users came back");
    assert_eq!(app.salto.count("PATCH", "/subscription"), 2);
    assert_eq!(app.brivo.count("PUT", "/suspended"), 2);
}

#[tokio::test]
async fn policy_delete_deletes_cancels_the_invitation_and_recreates_on_return() {
    let app = spawn_groups_app(NoAccess::Delete).await;
    let pass = give(&app, COWORKING, None).await;
    let first_brivo = app.brivo.users()[0].id;
    assert_eq!(app.brivo.invitations().len(), 1);
    use_pass(&app, pass).await;
    assert!(app.salto.users().is_empty());
    assert!(app.brivo.users().is_empty());
    assert_eq!(app.brivo.invitations()[0].status, "CANCELLED");
    let id = first_brivo;
    let cancel = format!("/users/{id}/credentials/digital-invitations");
    assert_eq!(app.brivo.count("DELETE", &cancel), 1, "cancelled by the documented path");
    assert!(app.brivo.calls().iter().all(|c| c.status != 596), "no undocumented call");
    assert!(app.records.provider_users(&app.subject(ANNA)).await.expect("store").is_empty());

    give(&app, EVENING, None).await;
    assert_eq!(app.salto.members(SALTO_GROUP), anna());
    assert_eq!(app.brivo.members(BRIVO_GROUP), anna());
    assert_ne!(app.brivo.users()[0].id, first_brivo, "a new Brivo user");
    let invitations = app.brivo.invitations();
    assert_eq!(invitations.len(), 2, "the new user is invited again");
    assert_eq!(invitations[1].status, "PENDING");
}

#[tokio::test]
async fn policy_keep_leaves_the_users_alone() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let pass = give(&app, COWORKING, None).await;
    use_pass(&app, pass).await;
    assert_eq!(app.salto.users()[0].subscription_state, "subscribed");
    assert!(!app.brivo.users()[0].suspended);
    assert_eq!(app.salto.count("PATCH", "/subscription") + app.brivo.count("PUT", "/suspended"), 0);
    give(&app, EVENING, None).await;
    assert_eq!(app.salto.members(SALTO_GROUP), anna());
    assert_eq!(app.salto.users().len(), 1);
}

#[tokio::test]
async fn salto_eventual_consistency_right_after_creation_is_retried_and_converges() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    app.salto.set_consistency_lag(2);
    app.nexudus.give_pass(ANNA, COWORKING, None);
    app.advance(Duration::seconds(1));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    // The worker as the runtimes run it: the message comes back after its retry delay (20 s).
    let mut retried = 0;
    for _ in 0..10 {
        let r = shared::serve::work_batch(&app.runtime, std::time::Duration::ZERO).await.expect("worker");
        retried += r.retried;
        if r.done > 0 {
            break;
        }
        app.advance(Duration::seconds(21));
    }
    assert_eq!(retried, 2);
    assert_eq!(app.salto.members(SALTO_GROUP), anna());
    assert_eq!(app.salto.count("POST", "/users"), 1, "no second user");
    assert_eq!(app.salto.membership_calls(SALTO_GROUP), 3, "two 404 2202, then the add");
    assert_eq!(app.brivo.membership_calls(), 1, "Brivo was not called again");
    assert!(app.records.failures(&app.subject(ANNA)).await.expect("store").is_empty());
}

#[tokio::test]
async fn a_salto_user_create_with_an_unknown_outcome_is_looked_up_before_it_is_sent_again() {
    for (fault, posts) in [("failed before the write", 2), ("answer lost after the write", 1)] {
        let app = spawn_groups_app(NoAccess::Keep).await;
        match posts {
            2 => app.salto.faults().fail_next_writes(503, 1),
            _ => app.salto.faults().drop_after_write_next(1),
        }
        app.nexudus.give_pass(ANNA, COWORKING, None);
        app.advance(Duration::seconds(1));
        assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
        let r = shared::serve::work_batch(&app.runtime, std::time::Duration::ZERO).await.expect("worker");
        assert_eq!((r.done, r.retried), (1, 0), "{fault}: settled by the same reconcile");
        assert_eq!(app.salto.count("POST", "/users"), posts, "{fault}");
        assert_eq!(app.salto.users().len(), 1, "{fault}: one user for the email");
        assert_eq!(app.salto.members(SALTO_GROUP), anna(), "{fault}");
    }
}

#[tokio::test]
async fn after_an_email_change_the_old_salto_user_goes_through_the_no_access_policy() {
    const NEW_EMAIL: &str = "anna.mueller@example.com";
    for policy in [NoAccess::Keep, NoAccess::Suspend, NoAccess::Delete] {
        let app = spawn_groups_app(policy).await;
        give(&app, COWORKING, None).await;
        let old = app.salto.users();
        assert_eq!(old.len(), 1);
        app.advance(Duration::minutes(5));
        app.nexudus.update_coworker_email(ANNA, NEW_EMAIL);
        assert_eq!(app.hook("CoworkerUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
        app.drain().await;

        // Salto KS invites per email: a new user holds the membership.
        assert_eq!(app.salto.members(SALTO_GROUP), vec![NEW_EMAIL.to_owned()], "{policy:?}");
        let users = app.salto.users();
        assert_eq!(users.iter().filter(|u| u.email.as_deref() == Some(NEW_EMAIL)).count(), 1, "{policy:?}");
        let left = users.iter().find(|u| u.id == old[0].id).map(|u| u.subscription_state.as_str());
        let expected = match policy {
            NoAccess::Keep => Some("subscribed"),
            NoAccess::Suspend => Some("suspended"),
            NoAccess::Delete => None,
        };
        assert_eq!(left, expected, "{policy:?}: the old user");
        assert_eq!(app.brivo.users().len(), 1, "{policy:?}: Brivo's user follows the person");
        let email = shared::model::Email::parse(NEW_EMAIL).expect("email");
        let reports = shared::explain::explain(&app.records, std::slice::from_ref(&app.config), &email, None)
            .await
            .expect("explain");
        let shown = shared::explain::render(&reports, &email);
        assert!(shown.contains("retire user"), "{policy:?}: {shown}");

        // Done once: the next change of Anna's makes no Salto KS write.
        app.salto.reset_calls();
        hook(&app).await;
        assert_eq!(app.salto.calls().iter().filter(|c| c.method != "GET").count(), 0, "{policy:?}");

        // Back to the first address: the old user is taken back (unsuspended), not doubled.
        app.advance(Duration::minutes(5));
        app.nexudus.update_coworker_email(ANNA, ANNA_EMAIL);
        assert_eq!(app.hook("CoworkerUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
        app.drain().await;
        assert_eq!(app.salto.members(SALTO_GROUP), anna(), "{policy:?}");
        let users = app.salto.users();
        let first: Vec<_> = users.iter().filter(|u| u.email.as_deref() == Some(ANNA_EMAIL)).collect();
        assert_eq!(first.len(), 1, "{policy:?}: one user for the first address");
        assert_eq!(first[0].subscription_state, "subscribed", "{policy:?}");
        if policy != NoAccess::Delete {
            assert_eq!(first[0].id, old[0].id, "{policy:?}: the same user as before");
        }
    }
}

#[tokio::test]
async fn salto_seat_exhaustion_is_a_readable_failure_and_leaves_no_user() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    app.salto.set_seats(Some(0));
    give(&app, COWORKING, None).await;
    assert!(app.salto.users().is_empty(), "the seat-less user was deleted again");
    assert!(app.salto.members(SALTO_GROUP).is_empty());
    assert_eq!(app.brivo.members(BRIVO_GROUP), anna(), "Brivo is independent");
    let failures = app.records.failures(&app.subject(ANNA)).await.expect("store");
    assert_eq!(failures.len(), 1);
    assert!(failures[0].reason.contains("no free user seat"), "{}", failures[0].reason);
    let reports = shared::explain::explain(
        &app.records,
        std::slice::from_ref(&app.config),
        &shared::model::Email::parse(ANNA_EMAIL).expect("email"),
        None,
    )
    .await
    .expect("explain");
    let text = shared::explain::render(&reports, &shared::model::Email::parse(ANNA_EMAIL).expect("email"));
    assert!(text.contains("no free user seat"), "{text}");
    // Not retried on every webhook: the same operation is held back.
    hook(&app).await;
    assert_eq!(app.salto.count("POST", "/users"), 1);
    // A seat is freed and the cool-down passes: it is tried again and works.
    app.salto.set_seats(None);
    app.advance(Duration::minutes(61));
    app.tick_and_drain().await;
    assert_eq!(app.salto.members(SALTO_GROUP), anna());
}

#[tokio::test]
async fn salto_access_group_without_a_time_schedule_is_a_warning_in_explain() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    app.salto.add_access_group(SALTO_GROUP, false);
    give(&app, COWORKING, None).await;
    assert_eq!(app.salto.members(SALTO_GROUP), anna(), "still added");
    let audit = app.records.audit_log(&app.subject(ANNA)).await.expect("store");
    assert!(
        audit.iter().any(|a| a.action == "warning" && a.outcome.contains("no time schedule")),
        "{audit:?}"
    );
}

#[tokio::test]
async fn brivo_16_group_cap_is_readable_and_nothing_is_half_applied() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    give(&app, COWORKING, None).await;
    let id = app.brivo.users()[0].id;
    app.brivo.add_to_groups_by_hand(id, &(600..614).collect::<Vec<_>>()); // now 15 groups
    give(&app, STUDIOS, None).await; // two more would make 17
    for g in STUDIO_GROUPS {
        assert!(app.brivo.members(g).is_empty(), "group {g} must not be half-applied");
    }
    assert_eq!(app.brivo.users()[0].groups.len(), 15);
    assert_eq!(app.brivo.membership_calls(), 1, "refused by Portier before any call: only the first add");
    let failures = app.records.failures(&app.subject(ANNA)).await.expect("store");
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert!(
        failures.iter().all(|f| f.reason.contains("at most 16 groups") && f.reason.contains("applied none"))
    );
}

#[tokio::test]
async fn brivo_over_qps_html_403_is_retried() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    app.brivo.faults().throttle_next(2);
    give(&app, COWORKING, None).await;
    assert_eq!(app.brivo.members(BRIVO_GROUP), anna());
    assert_eq!(app.brivo.faults().throttled_count(), 2);
    assert!(app.brivo.calls().iter().any(|c| c.status == 403));
    assert_eq!(app.brivo.users().len(), 1);
}

#[tokio::test]
async fn brivo_expired_token_is_refreshed_once() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let pass = give(&app, COWORKING, None).await;
    let before = app.brivo.token_requests();
    app.brivo.expire_tokens();
    use_pass(&app, pass).await;
    assert!(app.brivo.members(BRIVO_GROUP).is_empty());
    assert_eq!(app.brivo.token_requests(), before + 1, "one refresh after the 401");
}

#[tokio::test]
async fn mobile_pass_is_sent_once_and_a_pending_invitation_counts_as_done() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    // The store write recording the invitation is lost once: the retry meets a pending one.
    app.store.fail_writes(1, |item| item.sk == "USER#brivo" && item.data["invited"] == true);
    give(&app, COWORKING, None).await;
    hook(&app).await;
    let invitations = app.brivo.invitations();
    assert_eq!(invitations.len(), 1, "{invitations:?}");
    assert_eq!(invitations[0].email.as_deref(), Some(ANNA_EMAIL));
    assert_eq!(app.brivo.count("POST", "/digital-invitations"), 2, "sent, then 409 pending = done");
    assert_eq!(user(&app, ProviderKind::Brivo).await.map(|u| u.invited), Some(true));
    // Later changes never invite again.
    let pass = give(&app, EVENING, None).await;
    use_pass(&app, pass).await;
    assert_eq!(app.brivo.count("POST", "/digital-invitations"), 2);
}

#[tokio::test]
async fn no_mobile_pass_left_is_a_readable_failure_and_access_still_works() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    app.brivo.set_passes(0);
    give(&app, COWORKING, None).await;
    assert_eq!(app.brivo.members(BRIVO_GROUP), anna());
    let failures = app.records.failures(&app.subject(ANNA)).await.expect("store");
    assert!(failures.iter().any(|f| f.reason.contains("no Mobile Pass left")), "{failures:?}");
    hook(&app).await;
    assert_eq!(app.brivo.count("POST", "/digital-invitations"), 1, "held back during the cool-down");
}
