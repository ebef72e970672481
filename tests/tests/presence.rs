//! Presence tracking (issue 17): a door opened becomes a Nexudus check-in. Anna's Salto KS and
//! Brivo users are the ones Portier created for her pass; door events come from the Salto KS
//! entries (polled by the tick) and from a Brivo event subscription (pushed to
//! `/hooks/brivo/{tenant}`). Through the serve runtime (embedded store, real routes, the
//! simulators); the clock is manual, nothing sleeps. The Lambda runtime is at the end.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::{Duration, TimeZone, Utc};
use shared::config::{NoAccess, PresenceConfig, PresenceDoors};
use shared::model::{ProviderKind, ProviderUser, SourceKind, SubjectKey, TenantId};
use testkit::groups::{COWORKING, add_group_providers, group_secrets, start_group_sims};
use testkit::harness::{ANNA, HookAuth, TENANT, TestApp, fast_retries, spawn_app_retrying};
use testkit::sim::{BrivoSim, SaltoSim};

const BUSINESS: i64 = 101;
const ENTRANCE: &str = "a1e0c7a0-0000-4000-8000-0000000000e1";
const EXIT: &str = "a1e0c7a0-0000-4000-8000-0000000000e2";
const MEETING_ROOM_LOCK: &str = "a1e0c7a0-0000-4000-8000-0000000000e3";
const FRONT_DOOR: u64 = 408_023_598;
const SIDE_DOOR: u64 = 408_023_599;
const STORE_ROOM: u64 = 408_023_600;
const BRIVO_TOKEN: &str = "brivo-presence-token-2026";

fn presence() -> PresenceConfig {
    PresenceConfig {
        business_id: BUSINESS,
        salto_ks: Some(PresenceDoors {
            check_in: vec![ENTRANCE.into()],
            check_out: vec![EXIT.into()],
            poll_seconds: Some(60),
            ..Default::default()
        }),
        brivo: Some(PresenceDoors {
            check_in: vec![FRONT_DOOR.to_string()],
            toggle: vec![SIDE_DOOR.to_string()],
            webhook_token_env: Some("BRIVO_PRESENCE_TOKEN".into()),
            ..Default::default()
        }),
    }
}

struct App {
    app: TestApp,
    salto: SaltoSim,
    brivo: BrivoSim,
}

impl std::ops::Deref for App {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

/// Portier with Salto KS and Brivo, presence doors on both, and Anna holding a coworking pass
/// (so Portier created her Salto KS and Brivo users); the first presence tick has run.
async fn spawn() -> App {
    let (salto, brivo) = start_group_sims().await;
    let mut secrets: BTreeMap<String, String> = group_secrets(&salto, &brivo);
    secrets.insert("BRIVO_PRESENCE_TOKEN".into(), BRIVO_TOKEN.into());
    let app = spawn_app_retrying(
        HookAuth::Signature,
        |c| {
            add_group_providers(c, &salto, &brivo, NoAccess::Keep);
            c.presence = Some(presence());
        },
        secrets,
        fast_retries(),
    )
    .await;
    app.nexudus.add_time_pass(COWORKING, "Coworking");
    let expiry = Utc.with_ymd_and_hms(2026, 12, 31, 23, 0, 0).single().expect("date");
    app.nexudus.give_pass(ANNA, COWORKING, Some(expiry));
    assert_eq!(app.hook("AccessControlUpdate", &app.nexudus.coworker_dto(ANNA)).await, 202);
    app.drain().await;
    brivo.add_subscription(&format!("{}/hooks/brivo/{TENANT}?token={BRIVO_TOKEN}", app.url));
    let app = App { app, salto, brivo };
    app.tick().await;
    app
}

impl App {
    async fn tick(&self) -> shared::presence::TickReport {
        shared::presence::tick(&self.records, self.runtime.worker.tenants.as_ref())
            .await
            .expect("presence tick")
    }

    async fn user(&self, provider: ProviderKind) -> ProviderUser {
        let users = self.records.provider_users(&self.subject(ANNA)).await.expect("store");
        users.into_iter().find(|u| u.provider == provider).expect("Portier created the user")
    }

    /// Anna's Salto KS platform user id (what entries name).
    async fn salto_user(&self) -> String {
        let ids = self.user(ProviderKind::Salto).await.ids.expect("ids");
        ids.platform_id.expect("platform id")
    }

    async fn brivo_user(&self) -> u64 {
        self.user(ProviderKind::Brivo).await.ids.expect("ids").id.parse().expect("numeric")
    }

    fn checkins(&self) -> Vec<serde_json::Value> {
        self.nexudus.checkins()
    }

    fn checkin_writes(&self) -> usize {
        self.nexudus.count("POST", "/spaces/checkins") + self.nexudus.count("PUT", "/spaces/checkins")
    }

    async fn status(&self) -> shared::presence::PresenceStatus {
        shared::presence::status(&self.records, &TenantId(TENANT.into()), &presence()).await.expect("status")
    }
}

#[tokio::test]
async fn a_salto_entry_at_the_entrance_checks_anna_in_once_and_the_exit_out() {
    let app = spawn().await;
    let anna = app.salto_user().await;
    app.advance(Duration::seconds(30));
    app.salto.add_entry(ENTRANCE, &anna, app.clock_now(), true);
    app.advance(Duration::seconds(31));
    let report = app.tick().await;
    assert_eq!((report.polled, report.worked), (1, 1));
    let checkins = app.checkins();
    assert_eq!(checkins.len(), 1, "{checkins:?}");
    assert_eq!(checkins[0]["CoworkerId"], ANNA);
    assert_eq!(checkins[0]["BusinessId"], BUSINESS);
    assert_eq!(checkins[0]["Source"], 2, "DoorAccess");
    assert!(checkins[0]["ToTime"].is_null());

    // The entry is read again by no later poll; a second opening of the entrance (a new
    // entry) finds her checked in: nothing is written.
    app.advance(Duration::minutes(2));
    app.tick().await;
    app.salto.add_entry(ENTRANCE, &anna, app.clock_now(), true);
    app.advance(Duration::minutes(2));
    app.tick().await;
    assert_eq!(app.checkins().len(), 1);
    assert_eq!(app.checkin_writes(), 1);

    // A refused opening is no presence; the exit checks her out.
    app.salto.add_entry(ENTRANCE, &anna, app.clock_now(), false);
    app.salto.add_entry(EXIT, &anna, app.clock_now(), true);
    app.advance(Duration::minutes(2));
    app.tick().await;
    let checkins = app.checkins();
    assert_eq!(checkins.len(), 1);
    assert!(checkins[0]["ToTime"].is_string(), "checked out: {checkins:?}");
    let state = shared::presence::person(&app.records, &app.subject(ANNA)).await.expect("store");
    assert!(state.is_some_and(|s| !s.is_in()));
    // `portier explain` shows the doors and her last door event.
    let who = shared::explain::Who::parse(testkit::harness::ANNA_EMAIL);
    let reports =
        shared::explain::explain_who(&app.records, std::slice::from_ref(&app.config), &who, None, None)
            .await
            .expect("explain");
    let text = shared::explain::render_for(&reports, &who);
    assert!(text.contains("not checked in; last door event") && text.contains(EXIT), "{text}");
    let audit = app.records.audit_log(&app.subject(ANNA)).await.expect("audit");
    assert!(audit.iter().any(|a| a.action == "nexudus check-in" && a.outcome == "checked in"));
}

#[tokio::test]
async fn the_same_brivo_event_delivered_twice_checks_in_once_and_a_second_door_not_again() {
    let app = spawn().await;
    let event = app.brivo.access_event(FRONT_DOOR, app.brivo_user().await, app.clock_now());
    assert_eq!(app.brivo.notify(&event).await, [202]);
    assert_eq!(app.brivo.notify(&event).await, [202]);
    app.tick().await;
    assert_eq!(app.brivo.notify(&event).await, [202], "a redelivery after the work is done");
    app.tick().await;
    assert_eq!(app.checkins().len(), 1);
    assert_eq!(app.nexudus.count("POST", "/spaces/checkins"), 1);

    // The toggle door would check her out; the front door again (another event) does nothing.
    app.advance(Duration::minutes(1));
    let again = app.brivo.access_event(FRONT_DOOR, app.brivo_user().await, app.clock_now());
    app.brivo.notify(&again).await;
    app.tick().await;
    assert_eq!(app.checkin_writes(), 1);
    app.advance(Duration::minutes(1));
    let side = app.brivo.access_event(SIDE_DOOR, app.brivo_user().await, app.clock_now());
    app.brivo.notify(&side).await;
    app.tick().await;
    assert!(app.checkins()[0]["ToTime"].is_string(), "the toggle door checked her out");
}

#[tokio::test]
async fn a_door_that_was_not_chosen_does_nothing() {
    let app = spawn().await;
    app.salto.add_entry(MEETING_ROOM_LOCK, &app.salto_user().await, app.clock_now(), true);
    let event = app.brivo.access_event(STORE_ROOM, app.brivo_user().await, app.clock_now());
    assert_eq!(app.brivo.notify(&event).await, [202]);
    app.advance(Duration::minutes(2));
    let report = app.tick().await;
    assert_eq!((report.polled, report.worked), (0, 0));
    assert!(app.checkins().is_empty());
    assert_eq!(
        app.nexudus.count("GET", "/spaces/checkins") + app.checkin_writes(),
        0,
        "Nexudus was not even read"
    );
    assert_eq!(app.status().await.waiting, 0);
}

#[tokio::test]
async fn an_unknown_user_is_recorded_and_nothing_is_written() {
    let app = spawn().await;
    app.salto.add_entry(ENTRANCE, "ee8f17b4-701b-4aa6-9f1c-22f71cc61ca6", app.clock_now(), true);
    let event = app.brivo.access_event(FRONT_DOOR, 999_999, app.clock_now());
    assert_eq!(app.brivo.notify(&event).await, [202]);
    app.advance(Duration::minutes(2));
    app.tick().await;
    assert!(app.checkins().is_empty());
    assert_eq!(app.checkin_writes(), 0);
    let status = app.status().await;
    let unknown: Vec<(ProviderKind, &str, u64)> =
        status.unknown_users.iter().map(|u| (u.provider, u.user.as_str(), u.events)).collect();
    assert_eq!(
        unknown,
        [
            (ProviderKind::Brivo, "999999", 1),
            (ProviderKind::Salto, "ee8f17b4-701b-4aa6-9f1c-22f71cc61ca6", 1)
        ]
    );
    assert_eq!(status.waiting, 0, "worked, not retried");
    // `portier status` shows the doors and the unknown users (from the config `portier serve`
    // stores at start).
    let doc = serde_json::to_value(&app.config).expect("json");
    app.records.put_tenant_config(&TenantId(TENANT.into()), doc).await.expect("store");
    let s = shared::status::status(&app.records, app.queue.as_ref(), &[TENANT.into()]).await.expect("status");
    let text = shared::status::render(&s);
    assert!(text.contains("Salto KS door a1e0c7a0-0000-4000-8000-0000000000e1 checks in"), "{text}");
    assert!(text.contains("unknown Brivo user 999999: 1 door events"), "{text}");
}

#[tokio::test]
async fn nexudus_throttling_delays_the_check_in_and_loses_nothing() {
    let app = spawn().await;
    let event = app.brivo.access_event(FRONT_DOOR, app.brivo_user().await, app.clock_now());
    app.brivo.notify(&event).await;
    // Every try of this tick is throttled (409 + Retry-After, as Nexudus answers).
    app.nexudus.faults().throttle_next(fast_retries().attempts as usize);
    let report = app.tick().await;
    assert_eq!((report.worked, report.waiting), (0, 1));
    assert!(app.checkins().is_empty());
    assert!(app.status().await.last_error.is_some_and(|e| e.starts_with("waiting")));
    // The next tick checks her in, once.
    app.advance(Duration::seconds(30));
    let report = app.tick().await;
    assert_eq!((report.worked, report.waiting), (1, 0));
    assert_eq!(app.checkins().len(), 1);
    assert_eq!(app.status().await.last_error, None, "the throttle has passed");
    app.tick().await;
    assert_eq!(app.checkins().len(), 1);
}

#[tokio::test]
async fn a_lost_answer_to_the_check_in_does_not_make_a_second_one() {
    let app = spawn().await;
    let event = app.brivo.access_event(FRONT_DOOR, app.brivo_user().await, app.clock_now());
    app.brivo.notify(&event).await;
    // Nexudus creates the check-in but the answer is lost (500): the event waits…
    app.nexudus.faults().drop_after_write_next(1);
    let report = app.tick().await;
    assert_eq!((report.worked, report.waiting), (0, 1));
    assert_eq!(app.checkins().len(), 1);
    // …and the next tick finds the open check-in instead of posting again.
    app.advance(Duration::seconds(30));
    assert_eq!(app.tick().await.worked, 1);
    assert_eq!(app.checkins().len(), 1);
    assert_eq!(app.nexudus.count("POST", "/spaces/checkins"), 1);
}

#[tokio::test]
async fn an_event_nexudus_refuses_is_recorded_and_does_not_hold_up_the_next() {
    let app = spawn().await;
    let first = app.brivo.access_event(FRONT_DOOR, app.brivo_user().await, app.clock_now());
    app.brivo.notify(&first).await;
    app.advance(Duration::seconds(1));
    let second = app.brivo.access_event(FRONT_DOOR, app.brivo_user().await, app.clock_now());
    app.brivo.notify(&second).await;
    app.nexudus.faults().fail_next(400, 1);
    let report = app.tick().await;
    assert_eq!((report.worked, report.waiting), (2, 0));
    assert_eq!(app.checkins().len(), 1, "the second event checked her in");
    let status = app.status().await;
    assert!(status.last_error.is_some_and(|e| e.contains("refused")), "kept for status");
}

#[tokio::test]
async fn a_missed_poll_window_is_caught_up_from_the_cursor_in_order() {
    let app = spawn().await;
    let anna = app.salto_user().await;
    let start = app.clock_now();
    // Portier is down for four hours; Anna comes, leaves, comes back.
    app.salto.add_entry(ENTRANCE, &anna, start + Duration::minutes(5), true);
    app.salto.add_entry(EXIT, &anna, start + Duration::hours(2), true);
    app.salto.add_entry(ENTRANCE, &anna, start + Duration::hours(3), true);
    app.set_now(start + Duration::hours(4));
    let report = app.tick().await;
    assert_eq!((report.polled, report.worked), (3, 3));
    let checkins = app.checkins();
    assert_eq!(checkins.len(), 2, "{checkins:?}");
    assert_eq!(
        checkins[0]["FromTime"],
        (start + Duration::minutes(5)).format("%Y-%m-%dT%H:%M:%SZ").to_string()
    );
    assert_eq!(checkins[0]["ToTime"], (start + Duration::hours(2)).format("%Y-%m-%dT%H:%M:%SZ").to_string());
    assert!(checkins[1]["ToTime"].is_null(), "in again since the third entry");
    let cursor = app.status().await.salto_cursor.expect("cursor");
    assert_eq!(cursor.after, start + Duration::hours(3));
    // One poll loop: a poll within the interval reads nothing.
    app.advance(Duration::seconds(10));
    app.tick().await;
    assert_eq!(app.salto.count("GET", "/entries"), 2, "the first tick and the catch-up");
}

#[tokio::test]
async fn one_poll_loop_per_tenant_and_two_ticks_at_once_check_in_once() {
    let app = spawn().await;
    let anna = app.salto_user().await;
    let polls = app.salto.count("GET", "/entries");
    // Another process holds the tenant's Salto KS lease: this one does not poll.
    let tenant = TenantId(TENANT.into());
    let other = shared::presence::records::PresenceRecords::new(&app.records, &tenant);
    let held = other.acquire_lease("salto_ks").await.expect("store").expect("free");
    app.salto.add_entry(ENTRANCE, &anna, app.clock_now(), true);
    app.advance(Duration::minutes(2));
    app.tick().await;
    assert_eq!(app.salto.count("GET", "/entries"), polls);
    // Its holder died: the lease lapses and the next tick reads the entry; two ticks at once
    // (two Lambda invocations overlapping) make one check-in.
    drop(held);
    app.advance(Duration::seconds(shared::presence::records::LEASE_SECONDS + 1));
    let (a, b) = tokio::join!(app.tick(), app.tick());
    assert_eq!(a.polled + b.polled, 1);
    assert_eq!(app.salto.count("GET", "/entries"), polls + 1);
    // The tick that did not poll may hold the inbox's lease while the other adds the entry:
    // then the entry waits for the next tick (delayed, never lost, never twice).
    app.advance(Duration::seconds(1));
    app.tick().await;
    assert_eq!(app.checkins().len(), 1);
    assert_eq!(app.nexudus.count("POST", "/spaces/checkins"), 1);
}

#[tokio::test]
async fn the_brivo_route_checks_its_token_and_keeps_what_it_cannot_parse() {
    let app = spawn().await;
    let http = reqwest::Client::new();
    let url = format!("{}/hooks/brivo/{TENANT}", app.url);
    let event = app.brivo.access_event(FRONT_DOOR, app.brivo_user().await, app.clock_now());
    let wrong =
        http.post(format!("{url}?token=nope-nope-nope-nope")).json(&event).send().await.expect("answers");
    assert_eq!(wrong.status(), 401);
    let none = http.post(&url).json(&event).send().await.expect("answers");
    assert_eq!(none.status(), 401);
    let bad = http.post(format!("{url}?token={BRIVO_TOKEN}")).body("[1,2]").send().await.expect("answers");
    assert_eq!(bad.status(), 400);
    let other = http
        .post(format!("{}/hooks/brivo/nobody?token={BRIVO_TOKEN}", app.url))
        .json(&event)
        .send()
        .await
        .expect("answers");
    assert_eq!(other.status(), 404);
    assert_eq!(app.records.quarantined(&TenantId(TENANT.into())).await.expect("store").len(), 1);
    app.tick().await;
    assert!(app.checkins().is_empty());
}

trait Now {
    fn clock_now(&self) -> chrono::DateTime<Utc>;
}

impl Now for App {
    fn clock_now(&self) -> chrono::DateTime<Utc> {
        use shared::clock::Clock;
        self.clock.now()
    }
}

// ── the Lambda runtime: DynamoDB on moto, the `nexudus-ingress` and `tick` handlers ────────

#[tokio::test]
async fn on_lambda_a_brivo_event_and_a_salto_entry_become_one_check_in_each() {
    use shared::lambda::{LambdaEnv, answer, tick_scheduled};
    use shared::model::{ProviderUserIds, UserState};

    let (salto, brivo) = start_group_sims().await;
    let (nexudus, tapkey) = testkit::harness::space_sims().await;
    nexudus.set_now(Utc::now());
    nexudus.add_coworker(ANNA, "Anna Müller", testkit::harness::ANNA_EMAIL);
    nexudus.add_coworker(457, "Ben Weber", "ben@example.com");
    let (records, queue) = testkit::aws::table_and_queue().await;
    let mut tenant = testkit::harness::tenant_config(&nexudus, &tapkey, HookAuth::Signature);
    add_group_providers(&mut tenant, &salto, &brivo, NoAccess::Keep);
    tenant.presence = Some(presence());
    let id = TenantId(TENANT.into());
    records.put_tenant_config(&id, serde_json::to_value(&tenant).expect("json")).await.expect("config");
    let mut secrets = testkit::harness::secrets(&tapkey);
    secrets.0.extend(group_secrets(&salto, &brivo));
    secrets.0.insert("BRIVO_PRESENCE_TOKEN".into(), BRIVO_TOKEN.into());
    let env = LambdaEnv::new(records.clone(), queue, Arc::new(secrets));

    // The users Portier created (as the worker records them): Anna at Brivo, Ben at Salto KS.
    let now = Utc::now();
    let user = |provider, id: &str, platform: Option<&str>, email: &str| ProviderUser {
        provider,
        ids: Some(ProviderUserIds { id: id.into(), platform_id: platform.map(str::to_owned) }),
        email: shared::model::Email::parse(email).expect("email"),
        state: UserState::Active,
        created_at: now,
        invited: true,
        retired: Vec::new(),
    };
    let anna = SubjectKey::new(&id, SourceKind::Nexudus, ANNA.to_string());
    let ben = SubjectKey::new(&id, SourceKind::Nexudus, "457");
    records
        .save_provider_user(&anna, &user(ProviderKind::Brivo, "442211", None, "anna@example.com"))
        .await
        .expect("store");
    records
        .save_provider_user(&ben, &user(ProviderKind::Salto, "su-ben", Some("pu-ben"), "ben@example.com"))
        .await
        .expect("store");

    // Brivo → API Gateway → `nexudus-ingress` (which serves the Brivo route too), twice.
    let event = brivo.access_event(FRONT_DOOR, 442_211, now);
    let body = serde_json::to_vec(&event).expect("json");
    let request: aws_lambda_events::apigw::ApiGatewayV2httpRequest =
        serde_json::from_value(testkit::events::brivo_hook(TENANT, BRIVO_TOKEN, &body)).expect("event");
    for _ in 0..2 {
        assert_eq!(answer(&env.hooks(), request.clone()).await.status_code, 202);
    }
    // Ben opens the Salto KS entrance; the scheduled tick polls and checks both in.
    salto.add_entry(ENTRANCE, "pu-ben", now - Duration::seconds(5), true);
    let out = tick_scheduled(&env).await.expect("tick");
    assert_eq!(out["presence"]["worked"], 2, "{out}");
    let again = tick_scheduled(&env).await.expect("tick");
    assert_eq!(again["presence"]["worked"], 0, "{again}");
    let checkins = nexudus.checkins();
    let mut who: Vec<i64> = checkins.iter().filter_map(|c| c["CoworkerId"].as_i64()).collect();
    who.sort_unstable();
    assert_eq!(who, [ANNA, 457]);
    assert_eq!(nexudus.count("POST", "/spaces/checkins"), 2);
}
