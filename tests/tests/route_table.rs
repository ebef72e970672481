//! Every request each client can make, against its simulator's documented route table
//! (`ROUTES`, each route with its public source): every call hits a documented route, none an
//! undocumented one, and an undocumented path gets the real system's answer.

use chrono::{Duration, TimeZone, Utc};
use shared::http::{RetryPolicy, Secret};
use shared::model::{ContactId, Email, GrantId, LockId, SaltoGroupId, Window};
use shared::providers::brivo::BrivoClient;
use shared::providers::brivo::client::{EmailAddress, NewUser as NewBrivoUser};
use shared::providers::salto::SaltoClient;
use shared::providers::salto::client::NewUser as NewSaltoUser;
use shared::providers::tapkey::TapkeyClient;
use shared::providers::tapkey::client::{CreateContact, CreateGrant, GrantHolder, NewGrant};
use shared::sources::kinnovis::KinnovisClient;
use shared::sources::kinnovis::client::KinnovisConfig;
use shared::sources::nexudus::client::NexudusClient;
use testkit::sim::{
    BrivoSim, BrivoSimConfig, Call, KinnovisSim, KinnovisSimConfig, NexudusSim, NexudusSimConfig, Route,
    SaltoSim, SaltoSimConfig, TapkeySim, TapkeySimConfig, undocumented, unreached,
};

/// Every call matched a documented route; prints the routes no client uses (documented, kept
/// for the test kit).
fn assert_documented(system: &str, calls: &[Call], routes: &[Route]) {
    assert!(!calls.is_empty(), "{system}: no calls made");
    let off: Vec<String> =
        undocumented(calls, routes).iter().map(|c| format!("{} {}", c.method, c.path)).collect();
    assert!(off.is_empty(), "{system}: calls outside the documented routes: {off:?}");
    for r in routes {
        assert!(!r.source.trim().is_empty(), "{system}: {} {} cites no source", r.method, r.path);
    }
    let unused: Vec<String> =
        unreached(calls, routes).iter().map(|r| format!("{} {}", r.method, r.path)).collect();
    println!(
        "{system}: {} calls, {} documented routes, not used by the client: {unused:?}",
        calls.len(),
        routes.len()
    );
}

async fn raw(method: reqwest::Method, url: String) -> (u16, String) {
    let resp = reqwest::Client::new().request(method, url).send().await.expect("sim answers");
    (resp.status().as_u16(), resp.text().await.unwrap_or_default())
}

#[tokio::test]
async fn tapkey_client_speaks_only_documented_routes() {
    let sim = TapkeySim::start(TapkeySimConfig::default()).await;
    sim.add_lock("lock-front", "Front door", true);
    let client = TapkeyClient::new(sim.client_config(), shared::http::client(), RetryPolicy::fast());
    let lock = LockId::from("lock-front");
    let email = Email::parse("ann@example.com").expect("valid");
    assert!(client.bound_lock(&lock).await.expect("read").is_some());
    assert_eq!(client.bound_locks().await.expect("listed").len(), 1);
    assert!(client.find_contact(&email).await.expect("looked up").is_none());
    let contact = match client.create_contact(&email, Some("Ann")).await.expect("created") {
        CreateContact::Created(c) => ContactId::from(c.id.as_str()),
        CreateContact::Duplicate => panic!("new contact"),
    };
    assert_eq!(client.contacts().await.expect("listed").len(), 1);
    let start = Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).single().expect("valid");
    let window = Window::new(Some(start), Some(start + Duration::days(1)));
    let grant = match client
        .create_grant(&NewGrant::new(&lock, GrantHolder::Contact(&contact), &window))
        .await
        .expect("created")
    {
        CreateGrant::Created(g) => GrantId::from(g.id.as_str()),
        other => panic!("new grant: {other:?}"),
    };
    assert_eq!(client.active_grants(&contact, &lock).await.expect("listed").len(), 1);
    assert_eq!(client.grants(Some("active eq true")).await.expect("listed").len(), 1);
    client.revoke_grant(&grant).await.expect("revoked");
    // A grant naming its contact inline, as Tapkey's .NET sample does.
    let ben = Email::parse("ben@example.com").expect("valid");
    match client
        .create_grant(&NewGrant::new(&lock, GrantHolder::Email(&ben), &window))
        .await
        .expect("created")
    {
        CreateGrant::Created(g) => assert!(g.contact_id.is_some(), "the answer names the contact"),
        other => panic!("new grant: {other:?}"),
    }
    assert_documented("Tapkey", &sim.calls(), sim.routes());

    // An undocumented path, with a valid token: 404, as Tapkey answers.
    let c = sim.config();
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", c.client_id.as_str()),
        ("client_secret", c.client_secret.as_str()),
        ("scope", "read:core:entities"),
    ];
    let http = reqwest::Client::new();
    let token: serde_json::Value =
        http.post(sim.token_url()).form(&form).send().await.expect("answers").json().await.expect("json");
    let bearer = token["access_token"].as_str().expect("token");
    let url = format!("{}/Owners/{}/Nothing", sim.base_url(), c.owner_account_id);
    let resp = http.get(url).bearer_auth(bearer).send().await.expect("answers");
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn salto_client_speaks_only_documented_routes() {
    let sim = SaltoSim::start(SaltoSimConfig::default()).await;
    let group = "3f1c2a7e-0000-4000-8000-0000000000aa";
    sim.add_named_access_group(group, "Coworking floor", true);
    let client = SaltoClient::new(sim.client_config(), shared::http::client(), RetryPolicy::fast());
    let groups = client.access_groups().await.expect("listed");
    assert_eq!(groups[0].customer_reference.as_deref(), Some("Coworking floor"));
    let email = Email::parse("ann@example.com").expect("valid");
    let role =
        client.roles().await.expect("roles").into_iter().find(|r| r.is("site_user")).expect("documented");
    let user = client.create_user(&NewSaltoUser::new("Ann", "Lee", &email, &role.id)).await.expect("created");
    let platform = user.platform_id().expect("platform id").to_owned();
    assert_eq!(client.users().await.expect("listed").len(), 1);
    let group = SaltoGroupId::from(group);
    client.patch_members(&group, std::slice::from_ref(&platform), &[]).await.expect("added");
    assert_eq!(client.group_members(&group).await.expect("listed").len(), 1);
    assert_eq!(client.time_schedule_count(&group).await.expect("read"), Some(1));
    client.set_subscription(&user.id, "suspended").await.expect("suspended");
    sim.add_entry("lock-1", &platform, Utc::now(), true);
    assert_eq!(client.entries_since(Utc::now() - Duration::hours(1)).await.expect("entries").len(), 1);
    client.delete_user(&user.id).await.expect("deleted");
    assert_documented("Salto KS", &sim.calls(), sim.routes());

    let (status, body) = raw(reqwest::Method::GET, format!("{}/v1.2/nothing", sim.base_url())).await;
    assert_eq!(status, 401, "auth comes first: {body}");
}

#[tokio::test]
async fn brivo_client_speaks_only_documented_routes() {
    let sim = BrivoSim::start(BrivoSimConfig::default()).await;
    sim.add_group(501, "Coworking floor");
    let client = BrivoClient::new(sim.client_config(), shared::http::client(), RetryPolicy::fast());
    let groups = client.groups().await.expect("listed");
    assert_eq!((groups[0].id(), groups[0].name.as_deref()), ("501".to_owned(), Some("Coworking floor")));
    assert!(client.user_by_external_id("t#nexudus#1").await.expect("looked up").is_none());
    let new = NewBrivoUser {
        first_name: "Anna",
        last_name: "Müller",
        external_id: "t#nexudus#1",
        emails: vec![EmailAddress { address: "anna@example.com", kind: "Work" }],
    };
    let id = client.create_user(&new).await.expect("created").id();
    assert!(client.user_groups(&id).await.expect("read").is_some());
    client.add_to_group(&id, "501").await.expect("added");
    assert_eq!(client.group_members("501").await.expect("listed").len(), 1);
    client.remove_from_group(&id, "501").await.expect("removed");
    client.invite(&id).await.expect("invited");
    assert!(client.cancel_invitation(&id).await.expect("cancelled"));
    client.set_suspended(&id, true).await.expect("suspended");
    client.delete_user(&id).await.expect("deleted");
    assert_documented("Brivo", &sim.calls(), sim.routes());

    // Brivo's answer to a path matching no documented endpoint (issue 13.1).
    let (status, body) = raw(reqwest::Method::GET, format!("{}/nothing/here", sim.base_url())).await;
    assert_eq!(status, 403, "the gateway checks the api-key first: {body}");
}

#[tokio::test]
async fn nexudus_client_speaks_only_documented_routes() {
    let sim = NexudusSim::start(NexudusSimConfig::default()).await;
    sim.add_coworker(456, "Ann Example", "ann@example.com");
    sim.add_time_pass(1001, "Bike Storage");
    sim.add_desk(31, "Desk 31", 2);
    sim.add_resource(12, "Meeting room", false);
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid");
    let contract = sim.add_contract(456, "Fixed desk", start, &[31]);
    sim.add_team(900, "Acme", Some(456), &[456]);
    let cfg = sim.client_config();
    let n =
        NexudusClient::new(cfg, shared::http::client(), RetryPolicy::fast()).with_calls_per_minute(60_000);
    let since = Some("2026-11-01T00:00");
    assert!(n.coworker(456).await.expect("read").is_some());
    assert!(n.contract(contract).await.expect("read").is_some());
    assert_eq!(n.coworkers_by_ids(&[456]).await.expect("read").len(), 1);
    assert_eq!(n.contracts_by_ids(&[contract]).await.expect("read").len(), 1);
    assert!(n.desk(31).await.expect("read").is_some());
    assert!(n.team(900).await.expect("read").is_some());
    assert!(n.visitor(77).await.is_err(), "an unknown id is 500 at Nexudus");
    n.bookings_for(456, "2026-11-01T00:00").await.expect("listed");
    n.all_bookings(since, "2026-11-01T00:00").await.expect("listed");
    n.contracts_for(456).await.expect("listed");
    n.all_contracts(since).await.expect("listed");
    n.all_teams(since).await.expect("listed");
    n.all_visitors(since, "2026-11-01T00:00").await.expect("listed");
    n.time_passes_for(456).await.expect("listed");
    n.all_time_passes(since).await.expect("listed");
    n.all_coworkers(since).await.expect("listed");
    n.coworkers_by_email("ann@example.com").await.expect("listed");
    assert_eq!(n.time_pass_products().await.expect("listed").len(), 1);
    assert_eq!(n.floor_plan_desks().await.expect("listed").len(), 1);
    let resources = n.resources().await.expect("listed");
    assert_eq!(resources[0].name.as_deref(), Some("Meeting room"));
    let at = Utc.with_ymd_and_hms(2026, 11, 23, 9, 0, 0).single().expect("valid");
    n.check_in(1, 456, at).await.expect("checked in");
    let open = n.recent_checkins(456).await.expect("listed");
    n.check_out(&open[0], 1, at + Duration::hours(1)).await.expect("checked out");
    assert_documented("Nexudus", &sim.calls(), sim.routes());

    // A documented required parameter: a batch read needs `id=[…]`, and a token a `client_id`.
    let http = reqwest::Client::new();
    let c = sim.config();
    let login =
        [("grant_type", "password"), ("username", c.username.as_str()), ("password", c.password.as_str())];
    let token_url = format!("{}/token", sim.base_url());
    let refused = http.post(&token_url).form(&login).send().await.expect("answers");
    assert_eq!(refused.status(), 400, "no client_id header");
    let token: serde_json::Value = http
        .post(&token_url)
        .header("client_id", "route-table")
        .form(&login)
        .send()
        .await
        .expect("answers")
        .json()
        .await
        .expect("json");
    let bearer = token["access_token"].as_str().expect("token").to_owned();
    // ASP.NET Web API's answer to a path with no route, to an authenticated call.
    let resp = http.get(format!("{}/spaces/nothing", sim.base_url())).bearer_auth(&bearer).send().await;
    let resp = resp.expect("answers");
    assert_eq!(resp.status(), 404);
    let body = resp.text().await.unwrap_or_default();
    assert!(body.contains("No HTTP resource was found"), "{body}");
    for bad in ["456", "[]", "[a,b]"] {
        let url = format!("{}/spaces/coworkers/", sim.base_url());
        let resp = http.get(&url).query(&[("id", bad)]).bearer_auth(&bearer).send().await.expect("answers");
        assert_eq!(resp.status(), 400, "id={bad}");
    }
}

#[tokio::test]
async fn kinnovis_client_speaks_only_its_contract_routes() {
    let sim = KinnovisSim::start(KinnovisSimConfig::default()).await;
    let cfg = KinnovisConfig {
        base_url: sim.base_url(),
        location_id: sim.config().location_id.clone(),
        api_key: Secret::from(sim.config().api_key.clone()),
    };
    let client = KinnovisClient::new(cfg, shared::http::client(), RetryPolicy::fast());
    client.bookings(None).await.expect("listed");
    client.bookings(Some(Utc::now())).await.expect("listed");
    client.units().await.expect("listed");
    assert_documented("Kinnovis", &sim.calls(), sim.routes());
}

/// Sends each documented route (token routes aside) with `{…}` filled from `fill` and an empty
/// JSON body, and asserts the simulator's dispatch knows it: the answer is not its "no such
/// route" one. Keeps `ROUTES` and the dispatch from drifting apart.
async fn assert_dispatched(
    system: &str,
    origin: &str,
    routes: &[Route],
    headers: &[(&str, String)],
    fill: &dyn Fn(&str) -> String,
    no_route: &dyn Fn(u16, &str) -> bool,
) {
    let http = reqwest::Client::new();
    for r in routes.iter().filter(|r| !r.path.ends_with("/token")) {
        let path: Vec<String> = r
            .path
            .split('/')
            .map(|seg| match seg.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(name) => fill(name),
                None => seg.to_owned(),
            })
            .collect();
        let method = reqwest::Method::from_bytes(r.method.as_bytes()).expect("a method");
        let mut req = http
            .request(method, format!("{origin}{}", path.join("/")))
            .header("content-type", "application/json")
            .body("{}");
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("answers");
        let status = resp.status().as_u16();
        let body = resp.text().await.unwrap_or_default();
        assert!(
            !no_route(status, &body),
            "{system}: {} {} is in ROUTES but not dispatched: {status} {body}",
            r.method,
            r.path
        );
    }
}

fn origin_of(base: &str) -> String {
    let url = reqwest::Url::parse(base).expect("a URL");
    format!(
        "{}://{}",
        url.scheme(),
        url.host_str().zip(url.port()).map(|(h, p)| format!("{h}:{p}")).expect("host")
    )
}

#[tokio::test]
async fn every_documented_route_is_dispatched_by_its_simulator() {
    let tapkey = TapkeySim::start(TapkeySimConfig::default()).await;
    let owner = tapkey.config().owner_account_id.clone();
    let auth = [("authorization", format!("Bearer {}", tapkey.access_token()))];
    let fill = |name: &str| if name == "ownerAccountId" { owner.clone() } else { "1".to_owned() };
    let no_route = |status: u16, body: &str| status == 404 && body.contains("Resource '");
    assert_dispatched("Tapkey", &origin_of(&tapkey.base_url()), tapkey.routes(), &auth, &fill, &no_route)
        .await;

    let salto = SaltoSim::start(SaltoSimConfig::default()).await;
    let site = salto.config().site_id.clone();
    let auth = [("authorization", format!("Bearer {}", salto.access_token()))];
    let fill = |name: &str| if name == "site_id" { site.clone() } else { "1".to_owned() };
    let no_route =
        |status: u16, body: &str| matches!(status, 404 | 405) && body.contains("Resource not found");
    assert_dispatched("Salto KS", &salto.base_url(), salto.routes(), &auth, &fill, &no_route).await;

    let brivo = BrivoSim::start(BrivoSimConfig::default()).await;
    let auth = [
        ("authorization", format!("Bearer {}", brivo.access_token())),
        ("api-key", brivo.config().api_key.clone()),
    ];
    let one = |_: &str| "1".to_owned();
    let no_route = |status: u16, _: &str| status == 596;
    assert_dispatched("Brivo", &origin_of(&brivo.base_url()), brivo.routes(), &auth, &one, &no_route).await;

    let nexudus = NexudusSim::start(NexudusSimConfig::default()).await;
    let auth = [("authorization", format!("Bearer {}", nexudus.access_token()))];
    let no_route = |_: u16, body: &str| body.contains("No HTTP resource was found");
    assert_dispatched("Nexudus", &origin_of(&nexudus.base_url()), nexudus.routes(), &auth, &one, &no_route)
        .await;

    let kinnovis = KinnovisSim::start(KinnovisSimConfig::default()).await;
    let location = kinnovis.config().location_id.clone();
    let auth = [("authorization", format!("Bearer {}", kinnovis.config().api_key))];
    let fill = |_: &str| location.clone();
    let no_route = |status: u16, body: &str| status == 404 && body.contains("no such resource");
    assert_dispatched(
        "Kinnovis",
        &origin_of(&kinnovis.base_url()),
        kinnovis.routes(),
        &auth,
        &fill,
        &no_route,
    )
    .await;
}
