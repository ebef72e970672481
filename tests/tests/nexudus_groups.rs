//! Nexudus bookings, contracts, teams, visitors and suspended customers open doors through
//! Salto KS access groups and Brivo groups: memberships are added when a window starts and
//! removed when it ends, by the tick (every 30 s in `portier serve`), one membership call per
//! group and change. Through the real webhook routes, the embedded store and queue, and the
//! simulators; the clock is manual, nothing sleeps.

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::Value;
use shared::config::NoAccess;
use shared::model::{EntitlementKind, EntitlementState};
use testkit::groups::{
    BRIVO_GROUP, COWORKING, DESK, DESK_SALTO, FLOOR_ROOM, GroupsApp, OFFICE, OFFICE_BRIVO, ROOM, ROOM_BRIVO,
    ROOM_SALTO, SALTO_GROUP, VISITORS_BRIVO, VISITORS_SALTO, spawn_groups_app, spawn_groups_app_with,
};
use testkit::harness::{ANNA, ANNA_EMAIL, HookAuth};
use testkit::sim::nexudus::{DESK_DEDICATED, DESK_OFFICE};

const BEN: i64 = 457;
const BEN_EMAIL: &str = "ben@example.com";
const CLEO: i64 = 458;
const CLEO_EMAIL: &str = "cleo@example.com";
const TEAM: i64 = 900;

/// 2026-11-23 at `h:m` UTC (the harness starts at 09:00).
fn at(h: u32, m: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 23, h, m, 0).single().unwrap_or_default()
}

fn day(d: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, d, 0, 0, 0).single().unwrap_or_default()
}

/// Nexudus sends `action` for `dto` a second later than anything before (the second of receipt
/// is part of a Nexudus event id); the queue is then worked.
async fn hook(app: &GroupsApp, action: &str, dto: &Value) {
    app.advance(Duration::seconds(1));
    assert_eq!(app.hook(action, dto).await, 202, "{action}");
    app.drain().await;
}

/// The tick runs at `t`.
async fn tick_at(app: &GroupsApp, t: DateTime<Utc>) {
    app.set_now(t);
    app.tick_and_drain().await;
}

fn sorted(mut v: Vec<String>) -> Vec<String> {
    v.sort();
    v
}

fn emails(list: &[&str]) -> Vec<String> {
    sorted(list.iter().map(|e| (*e).to_owned()).collect())
}

fn in_room(app: &GroupsApp) -> (Vec<String>, Vec<String>) {
    (app.salto.members(ROOM_SALTO), app.brivo.members(ROOM_BRIVO))
}

#[tokio::test]
async fn a_booking_from_10_to_11_holds_the_room_from_0945_to_1115() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let booking = app.nexudus.book(ANNA, ROOM, "Room 1", at(10, 0), at(11, 0));
    hook(&app, "BookingCreate", &app.nexudus.booking_dto(booking)).await;
    assert_eq!(in_room(&app), (vec![], vec![]), "not before the lead starts");

    tick_at(&app, at(9, 45) - Duration::seconds(1)).await;
    assert!(app.salto.members(ROOM_SALTO).is_empty());
    // Within 60 s of 09:45 (the serve loop ticks every 30 s).
    tick_at(&app, at(9, 45) + Duration::seconds(30)).await;
    assert_eq!(in_room(&app), (emails(&[ANNA_EMAIL]), emails(&[ANNA_EMAIL])));
    assert_eq!((app.salto.membership_calls(ROOM_SALTO), app.brivo.membership_calls()), (1, 1));

    // A repeated webhook and further ticks within the window change nothing.
    hook(&app, "BookingUpdate", &app.nexudus.booking_dto(booking)).await;
    tick_at(&app, at(11, 15) - Duration::seconds(1)).await;
    assert_eq!(app.salto.members(ROOM_SALTO), emails(&[ANNA_EMAIL]));
    tick_at(&app, at(11, 15) + Duration::seconds(30)).await;
    assert_eq!(in_room(&app), (vec![], vec![]));
    assert_eq!((app.salto.membership_calls(ROOM_SALTO), app.brivo.membership_calls()), (2, 2));
}

#[tokio::test]
async fn a_missed_tick_catches_up() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let booking = app.nexudus.book(ANNA, ROOM, "Room 1", at(10, 0), at(11, 0));
    hook(&app, "BookingCreate", &app.nexudus.booking_dto(booking)).await;
    // No tick ran at 09:45 (a process down, a Lambda invocation lost): the next one adds her.
    tick_at(&app, at(10, 20)).await;
    assert_eq!(app.salto.members(ROOM_SALTO), emails(&[ANNA_EMAIL]));
    // Nor at 11:15: three hours later she is removed, once.
    tick_at(&app, at(14, 0)).await;
    assert!(app.salto.members(ROOM_SALTO).is_empty());
    assert_eq!((app.salto.membership_calls(ROOM_SALTO), app.brivo.membership_calls()), (2, 2));
}

#[tokio::test]
async fn a_booking_moved_then_deleted_before_it_starts_never_creates_a_membership() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let booking = app.nexudus.book(ANNA, ROOM, "Room 1", at(10, 0), at(11, 0));
    hook(&app, "BookingCreate", &app.nexudus.booking_dto(booking)).await;
    app.set_now(at(9, 30));
    app.nexudus.move_booking(booking, at(14, 0), at(15, 0));
    hook(&app, "BookingUpdate", &app.nexudus.booking_dto(booking)).await;
    tick_at(&app, at(9, 46)).await;
    tick_at(&app, at(10, 30)).await;

    app.set_now(at(12, 0));
    let last = app.nexudus.delete_booking(booking);
    hook(&app, "BookingDelete", &last).await;
    for t in [at(13, 46), at(14, 30), at(15, 16)] {
        tick_at(&app, t).await;
    }
    assert_eq!((app.salto.membership_calls(ROOM_SALTO), app.brivo.membership_calls()), (0, 0));
    assert!(app.salto.users().is_empty() && app.brivo.users().is_empty(), "no provider user either");
    let ents = app.records.entitlements(&app.subject(ANNA)).await.expect("store");
    let b = ents.iter().find(|e| e.kind == EntitlementKind::Booking).expect("booking recorded");
    assert!(matches!(&b.state, EntitlementState::Gone { reason, .. } if reason.contains("deleted")));
}

#[tokio::test]
async fn a_forged_booking_webhook_grants_nothing_the_api_does_not_confirm() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let forged = serde_json::json!({"Id": 999, "CoworkerId": ANNA, "ResourceId": ROOM,
        "FromTime": "2026-11-23T09:00:00Z", "ToTime": "2026-11-23T18:00:00Z"});
    hook(&app, "BookingCreate", &forged).await;
    tick_at(&app, at(10, 0)).await;
    assert!(app.salto.members(ROOM_SALTO).is_empty());
    assert_eq!(app.salto.membership_calls(ROOM_SALTO), 0);
}

/// Ben and Cleo with Anna in team "Acme", whose paying member Anna holds a contract for a desk
/// and an office from December 1st.
async fn team_with_contract(app: &GroupsApp) -> i64 {
    app.nexudus.add_coworker(BEN, "Ben Berger", BEN_EMAIL);
    app.nexudus.add_coworker(CLEO, "Cleo Cruz", CLEO_EMAIL);
    app.nexudus.add_desk(DESK, "Desk 1", DESK_DEDICATED);
    app.nexudus.add_desk(OFFICE, "Office 2", DESK_OFFICE);
    app.nexudus.add_team(TEAM, "Acme", Some(ANNA), &[ANNA, BEN, CLEO]);
    app.nexudus.add_contract(ANNA, "Acme office", day(1), &[DESK, OFFICE])
}

fn desk_and_office(app: &GroupsApp) -> (Vec<String>, Vec<String>) {
    (sorted(app.salto.members(DESK_SALTO)), sorted(app.brivo.members(OFFICE_BRIVO)))
}

#[tokio::test]
async fn a_team_contract_gives_every_member_the_desk_and_office_from_its_start_to_its_cancellation() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let contract = team_with_contract(&app).await;
    app.nexudus.reset_calls();
    hook(&app, "CoworkerContractCreate", &app.nexudus.contract_dto(contract)).await;
    // The REST reads of one refresh: coworker, passes, bookings, contracts, the contract by id,
    // two desks, the team, and the two members Portier had never seen.
    let reads = app.nexudus.calls().iter().filter(|c| c.method == "GET").count();
    assert_eq!(reads, 10, "{:?}", app.nexudus.calls().iter().map(|c| &c.path).collect::<Vec<_>>());
    // The other members' subjects are brought in by the tick (each in its own FIFO group).
    app.tick_and_drain().await;
    assert_eq!(desk_and_office(&app), (vec![], vec![]), "not before StartDate");
    assert_eq!((app.salto.membership_calls(DESK_SALTO), app.brivo.membership_calls()), (0, 0));

    tick_at(&app, day(1) + Duration::seconds(30)).await;
    let all = emails(&[ANNA_EMAIL, BEN_EMAIL, CLEO_EMAIL]);
    assert_eq!(desk_and_office(&app), (all.clone(), all));
    // One Brivo call per person added; Salto KS adds people who join together in one PATCH
    // (how many share one depends on timing: between one and three calls).
    assert_eq!(app.brivo.membership_calls(), 3);
    let salto = app.salto.membership_calls(DESK_SALTO);
    assert!((1..=3).contains(&salto), "{salto} Salto KS calls");

    // Ben leaves the team: Nexudus sends the team without him.
    app.advance(Duration::hours(2));
    app.nexudus.set_team_members(TEAM, &[ANNA, CLEO]);
    hook(&app, "TeamUpdated", &app.nexudus.team_dto(TEAM)).await;
    app.tick_and_drain().await;
    let stay = emails(&[ANNA_EMAIL, CLEO_EMAIL]);
    assert_eq!(desk_and_office(&app), (stay.clone(), stay.clone()));
    assert_eq!((app.salto.membership_calls(DESK_SALTO), app.brivo.membership_calls()), (salto + 1, 4));

    // The contract is cancelled as of December 15th: everyone keeps access until then.
    app.advance(Duration::hours(1));
    app.nexudus.cancel_contract(contract, day(15));
    hook(&app, "CoworkerContractCancel", &app.nexudus.contract_dto(contract)).await;
    app.tick_and_drain().await;
    tick_at(&app, day(15) - Duration::seconds(1)).await;
    assert_eq!(desk_and_office(&app), (stay.clone(), stay));
    assert_eq!((app.salto.membership_calls(DESK_SALTO), app.brivo.membership_calls()), (salto + 1, 4));
    tick_at(&app, day(15) + Duration::seconds(30)).await;
    assert_eq!(desk_and_office(&app), (vec![], vec![]));
    assert_eq!(app.brivo.membership_calls(), 6);
    let removed = app.salto.membership_calls(DESK_SALTO) - (salto + 1);
    assert!((1..=2).contains(&removed), "{removed} Salto KS calls to remove two people");
}

#[tokio::test]
async fn a_pass_and_a_booking_for_the_same_group_end_the_membership_only_when_both_end() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    app.nexudus.give_pass(ANNA, COWORKING, Some(at(10, 30)));
    hook(&app, "AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await;
    let booking = app.nexudus.book(ANNA, FLOOR_ROOM, "Floor room", at(10, 0), at(11, 0));
    hook(&app, "BookingCreate", &app.nexudus.booking_dto(booking)).await;
    assert_eq!(app.salto.members(SALTO_GROUP), emails(&[ANNA_EMAIL]));

    for t in [at(9, 46), at(10, 31), at(11, 14)] {
        tick_at(&app, t).await;
        assert_eq!(app.salto.members(SALTO_GROUP), emails(&[ANNA_EMAIL]), "at {t}");
        assert_eq!(app.brivo.members(BRIVO_GROUP), emails(&[ANNA_EMAIL]), "at {t}");
    }
    assert_eq!((app.salto.membership_calls(SALTO_GROUP), app.brivo.membership_calls()), (1, 1));
    tick_at(&app, at(11, 15) + Duration::seconds(30)).await;
    assert!(app.salto.members(SALTO_GROUP).is_empty() && app.brivo.members(BRIVO_GROUP).is_empty());
    assert_eq!((app.salto.membership_calls(SALTO_GROUP), app.brivo.membership_calls()), (2, 2));
}

#[tokio::test]
async fn a_registered_visitor_is_in_the_visitor_groups_for_the_visit_day() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let vera = app.nexudus.register_visitor(ANNA, "Vera Gast", "vera@example.com", at(14, 0));
    hook(&app, "VisitorRegistered", &app.nexudus.visitor_dto(vera)).await;
    // Another visitor is registered and deleted before arriving.
    let otto = app.nexudus.register_visitor(ANNA, "Otto Weg", "otto@example.com", at(15, 0));
    hook(&app, "VisitorRegistered", &app.nexudus.visitor_dto(otto)).await;
    let last = app.nexudus.delete_visitor(otto);
    hook(&app, "VisitorDeleted", &last).await;
    assert!(app.salto.members(VISITORS_SALTO).is_empty());

    tick_at(&app, at(13, 45) + Duration::seconds(30)).await;
    let vera_only = emails(&["vera@example.com"]);
    assert_eq!(app.salto.members(VISITORS_SALTO), vera_only);
    tick_at(&app, at(14, 46)).await;
    assert_eq!(app.brivo.members(VISITORS_BRIVO), vera_only, "Otto never gets in");
    // Until the end of the local day: midnight in Berlin is 23:00 UTC.
    tick_at(&app, at(22, 59)).await;
    assert_eq!(app.salto.members(VISITORS_SALTO), vera_only);
    tick_at(&app, at(23, 0) + Duration::seconds(30)).await;
    assert!(app.salto.members(VISITORS_SALTO).is_empty() && app.brivo.members(VISITORS_BRIVO).is_empty());
    assert_eq!((app.salto.membership_calls(VISITORS_SALTO), app.brivo.membership_calls()), (2, 2));
    // The host is not the visitor: Anna got nothing.
    assert!(app.salto.users().iter().all(|u| u.email.as_deref() != Some(ANNA_EMAIL)));
}

#[tokio::test]
async fn a_walk_in_visitor_gets_in_from_the_check_in_to_the_end_of_the_day() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let walt = app.nexudus.register_walk_in(ANNA, "Walt Kommt", "walt@example.com");
    hook(&app, "VisitorRegistered", &app.nexudus.visitor_dto(walt)).await;
    assert!(app.salto.members(VISITORS_SALTO).is_empty(), "neither expected nor checked in: nothing");

    app.set_now(at(10, 0));
    app.nexudus.check_in_visitor(walt);
    hook(&app, "VisitorCheckedin", &app.nexudus.visitor_dto(walt)).await;
    let walt_only = emails(&["walt@example.com"]);
    assert_eq!(app.salto.members(VISITORS_SALTO), walt_only);
    assert_eq!(app.brivo.members(VISITORS_BRIVO), walt_only);
    // Until the end of the local day: midnight in Berlin is 23:00 UTC.
    tick_at(&app, at(22, 59)).await;
    assert_eq!(app.salto.members(VISITORS_SALTO), walt_only);
    tick_at(&app, at(23, 0) + Duration::seconds(30)).await;
    assert!(app.salto.members(VISITORS_SALTO).is_empty() && app.brivo.members(VISITORS_BRIVO).is_empty());
    assert_eq!((app.salto.membership_calls(VISITORS_SALTO), app.brivo.membership_calls()), (2, 2));
}

#[tokio::test]
async fn a_suspended_customer_is_removed_and_re_added_when_active_again() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    app.nexudus.give_pass(ANNA, COWORKING, None);
    hook(&app, "AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await;
    assert_eq!(app.salto.members(SALTO_GROUP), emails(&[ANNA_EMAIL]));

    app.nexudus.set_coworker_active(ANNA, false);
    hook(&app, "CoworkerUpdate", &app.nexudus.coworker_dto(ANNA)).await;
    assert!(app.salto.members(SALTO_GROUP).is_empty() && app.brivo.members(BRIVO_GROUP).is_empty());
    let email = shared::model::Email::parse(ANNA_EMAIL).expect("email");
    let reports = shared::explain::explain(&app.records, std::slice::from_ref(&app.config), &email, None)
        .await
        .expect("explain");
    let shown = shared::explain::render(&reports, &email);
    assert!(shown.contains("customer suspended in Nexudus"), "{shown}");

    app.advance(Duration::minutes(10));
    app.nexudus.set_coworker_active(ANNA, true);
    hook(&app, "CoworkerUpdate", &app.nexudus.coworker_dto(ANNA)).await;
    assert_eq!(app.salto.members(SALTO_GROUP), emails(&[ANNA_EMAIL]));
    assert_eq!(app.brivo.members(BRIVO_GROUP), emails(&[ANNA_EMAIL]));
    assert_eq!((app.salto.membership_calls(SALTO_GROUP), app.brivo.membership_calls()), (3, 3));
}

#[tokio::test]
async fn a_full_resync_finds_bookings_team_contracts_and_visitors_without_webhooks() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    team_with_contract(&app).await;
    app.nexudus.book(ANNA, ROOM, "Room 1", at(10, 0), at(11, 0));
    app.nexudus.register_visitor(ANNA, "Vera Gast", "vera@example.com", at(14, 0));
    // A walk-in checked in at reception: no expected arrival, so only its check-in finds it.
    app.set_now(at(9, 30));
    let walt = app.nexudus.register_walk_in(ANNA, "Walt Kommt", "walt@example.com");
    app.nexudus.check_in_visitor(walt);
    app.resync(false).await.expect("resync");
    assert_eq!(app.salto.members(VISITORS_SALTO), emails(&["walt@example.com"]));

    tick_at(&app, at(10, 0)).await;
    assert_eq!(app.salto.members(ROOM_SALTO), emails(&[ANNA_EMAIL]));
    tick_at(&app, at(14, 0)).await;
    assert_eq!(sorted(app.salto.members(VISITORS_SALTO)), emails(&["vera@example.com", "walt@example.com"]));
    tick_at(&app, day(1) + Duration::seconds(30)).await;
    let all = emails(&[ANNA_EMAIL, BEN_EMAIL, CLEO_EMAIL]);
    assert_eq!(desk_and_office(&app), (all.clone(), all));
}

#[tokio::test]
async fn an_incremental_resync_reads_changed_bookings_contracts_and_teams() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    let contract = team_with_contract(&app).await;
    // Portier saw the team as it was (a webhook), then missed every later webhook.
    hook(&app, "CoworkerContractCreate", &app.nexudus.contract_dto(contract)).await;
    app.resync(false).await.expect("full resync");

    app.advance(Duration::minutes(30));
    app.nexudus.book(BEN, ROOM, "Room 1", at(10, 0), at(11, 0));
    app.nexudus.cancel_contract(contract, day(15));
    app.nexudus.set_team_members(TEAM, &[ANNA, CLEO]);
    app.nexudus.reset_calls();
    let opts = shared::resync::ResyncOptions { incremental: true, ..Default::default() };
    let report = app.resync_with(opts).await.expect("incremental");
    assert!(!report.full);
    for filter in ["from_Booking_UpdatedOn", "from_CoworkerContract_UpdatedOn", "from_Team_UpdatedOn"] {
        assert!(app.nexudus.calls().iter().any(|c| c.query.contains(filter)), "{filter}");
    }

    tick_at(&app, at(10, 0)).await;
    assert_eq!(app.salto.members(ROOM_SALTO), emails(&[BEN_EMAIL]), "Ben's new booking");
    // Ben left the team before the contract started: he never gets the desk.
    tick_at(&app, day(1) + Duration::seconds(30)).await;
    let stay = emails(&[ANNA_EMAIL, CLEO_EMAIL]);
    assert_eq!(desk_and_office(&app), (stay.clone(), stay));
    // The cancellation date was read too.
    tick_at(&app, day(15) + Duration::seconds(30)).await;
    assert_eq!(desk_and_office(&app), (vec![], vec![]));
}

#[tokio::test]
async fn a_token_only_tenant_takes_the_visit_from_the_api_not_from_the_body() {
    let app = spawn_groups_app_with(HookAuth::Token, NoAccess::Keep).await;
    let vera =
        app.nexudus.register_visitor(ANNA, "Vera Gast", "vera@example.com", day(1) + Duration::hours(9));
    // The body claims she arrives now; Nexudus says December 1st.
    let mut claimed = app.nexudus.visitor_dto(vera);
    claimed["ExpectedArrival"] = Value::String("2026-11-23T09:00:00Z".into());
    hook(&app, "VisitorRegistered", &claimed).await;
    assert_eq!(app.nexudus.count("GET", &format!("/spaces/visitors/{vera}")), 1, "read over REST");
    tick_at(&app, at(9, 30)).await;
    assert!(app.salto.members(VISITORS_SALTO).is_empty());
    tick_at(&app, day(1) + Duration::hours(9)).await;
    assert_eq!(app.salto.members(VISITORS_SALTO), emails(&["vera@example.com"]));
}

/// Issue 13.7: the portal API documents visitor times as business-local; a Nexudus that sends
/// them without a zone gives the same visit day as one that sends UTC.
#[tokio::test]
async fn a_visitor_with_business_local_times_is_in_for_the_same_visit_day() {
    let app = spawn_groups_app(NoAccess::Keep).await;
    app.nexudus.set_visitor_zone(Some("Europe/Berlin"));
    // 14:00 UTC is 15:00 in Berlin: the body says "…T15:00:00", no zone.
    let vera = app.nexudus.register_visitor(ANNA, "Vera Gast", "vera@example.com", at(14, 0));
    let dto = app.nexudus.visitor_dto(vera);
    assert_eq!(dto["ExpectedArrival"].as_str().map(|s| s.ends_with("T15:00:00")), Some(true), "{dto}");
    hook(&app, "VisitorRegistered", &dto).await;
    assert!(app.salto.members(VISITORS_SALTO).is_empty());
    tick_at(&app, at(13, 45) + Duration::seconds(30)).await;
    let vera_only = emails(&["vera@example.com"]);
    assert_eq!(app.salto.members(VISITORS_SALTO), vera_only, "from the lead before 15:00 Berlin");
    tick_at(&app, at(22, 59)).await;
    assert_eq!(app.salto.members(VISITORS_SALTO), vera_only);
    tick_at(&app, at(23, 0) + Duration::seconds(30)).await;
    assert!(app.salto.members(VISITORS_SALTO).is_empty(), "until midnight in Berlin");
    // A full resync lists the visitor through the business-local filter and changes nothing.
    let report = app.resync(false).await.expect("resync");
    assert_eq!(report.op_count(), 0);
}
