//! The Salto KS and Brivo clients against their simulators: token flows and wire details the
//! scenarios do not reach, and Brivo's documented endpoints (invitations, memberships, quota).

use shared::error::CallError;
use shared::http::{ClientLimits, RetryPolicy};
use shared::model::{Email, ProviderKind, ProviderUser, ProviderUserIds, SaltoGroupId, Target, UserState};
use shared::providers::brivo::client::{EmailAddress, NewUser as NewBrivoUser, OVER_RATE_WAIT};
use shared::providers::brivo::{BrivoClient, BrivoConfig, BrivoProvider};
use shared::providers::salto::client::NewUser;
use shared::providers::salto::{SaltoClient, SaltoConfig, SaltoProvider};
use shared::providers::{MembershipChange, MembershipProvider, UserAction};
use testkit::sim::salto::documented_roles;
use testkit::sim::{BrivoSim, BrivoSimConfig, SaltoSim, SaltoSimConfig};

/// No way to log in yet: each test adds the one it is about.
fn salto_config(sim: &SaltoSim) -> SaltoConfig {
    SaltoConfig { username: None, password: None, ..sim.client_config() }
}

#[tokio::test]
async fn salto_logs_in_with_a_stored_refresh_token_and_follows_its_rotation() {
    let sim = SaltoSim::start(SaltoSimConfig::default()).await;
    let cfg = SaltoConfig { refresh_token: Some(sim.issue_refresh_token().into()), ..salto_config(&sim) };
    let client = SaltoClient::new(cfg, shared::http::client(), RetryPolicy::fast());
    let email = Email::parse("ann@x.com").expect("valid");
    let role = client
        .roles()
        .await
        .expect("roles")
        .into_iter()
        .find(|r| r.is("Site User"))
        .expect("documented role");
    let user = client.create_user(&NewUser::new("Ann", "Lee", &email, &role.id)).await.expect("created");
    assert!(user.platform_id().is_some() && user.is_subscribed());
    // The access token is rejected: the rotated refresh token (the stored one is spent) works.
    sim.expire_tokens();
    assert_eq!(client.users().await.expect("listed").len(), 1);
    assert_eq!(sim.token_requests(), 2);
}

#[tokio::test]
async fn salto_password_grant_and_a_wrong_site_is_a_clear_error() {
    let sim = SaltoSim::start(SaltoSimConfig::default()).await;
    let c = sim.config().clone();
    let cfg = SaltoConfig {
        username: Some(c.username.into()),
        password: Some(c.password.into()),
        ..salto_config(&sim)
    };
    let client = SaltoClient::new(cfg.clone(), shared::http::client(), RetryPolicy::fast());
    assert!(client.users().await.expect("listed").is_empty());
    let wrong = SaltoClient::new(
        SaltoConfig { site_id: "DE-READABLE".into(), ..cfg.clone() },
        shared::http::client(),
        RetryPolicy::fast(),
    );
    let err = wrong.users().await.expect_err("refused");
    assert!(err.to_string().contains("1100"), "{err}");
    let bad = SaltoClient::new(
        SaltoConfig { password: Some("nope".into()), ..cfg },
        shared::http::client(),
        RetryPolicy::fast(),
    );
    let err = bad.users().await.expect_err("refused");
    assert!(
        matches!(err, shared::error::CallError::Config { .. }) && err.to_string().contains("invalid_grant"),
        "{err}"
    );
}

#[tokio::test]
async fn brivo_needs_the_api_key_and_pages_by_at_most_100() {
    let sim = BrivoSim::start(BrivoSimConfig::default()).await;
    let cfg = sim.client_config();
    let client = BrivoClient::new(cfg.clone(), shared::http::client(), RetryPolicy::fast());
    sim.add_group(501, "Coworking floor");
    assert_eq!(client.user_by_external_id("t#nexudus#1").await.expect("looked up"), None);
    assert!(client.group_members("501").await.expect("listed").is_empty());
    assert!(sim.calls().iter().any(|c| c.query.contains("pageSize=100")));
    let no_key = BrivoClient::new(
        BrivoConfig { api_key: "wrong".into(), ..cfg },
        shared::http::client(),
        RetryPolicy::fast(),
    );
    let err = no_key.user_by_external_id("t#nexudus#1").await.expect_err("refused");
    assert!(matches!(err, shared::error::CallError::Config { .. }), "{err}");
}

const GROUP: &str = "3f1c2a7e-0000-4000-8000-0000000000aa";

/// Five members of [`GROUP`], on a site that answers two items a page whatever `$top` asks.
async fn salto_paging_by_two() -> (SaltoSim, SaltoClient) {
    let sim = SaltoSim::start(SaltoSimConfig::default()).await;
    sim.add_access_group(GROUP, true);
    for i in 0..5 {
        sim.add_user_by_hand("Guest", &format!("No{i}"), &format!("guest{i}@example.com"), &[GROUP]);
    }
    sim.set_page_size(Some(2));
    let client = SaltoClient::new(sim.client_config(), shared::http::client(), RetryPolicy::fast());
    (sim, client)
}

#[tokio::test]
async fn salto_reads_every_page_a_next_page_link_promises_and_fails_past_the_cap() {
    // Salto KS pages by two, fewer than asked: a short page with a next link is not the last.
    let (sim, client) = salto_paging_by_two().await;
    let group = SaltoGroupId::from(GROUP);
    assert_eq!(client.group_members(&group).await.expect("listed").len(), 5);
    assert_eq!(sim.count("GET", "/access_groups/"), 3);

    let capped = client.with_max_listed(4);
    let err = capped.group_members(&group).await.expect_err("a cut listing is not returned");
    assert!(matches!(err, CallError::Permanent { .. }), "{err:?}");
    assert!(err.to_string().contains("more than 4 members of access group"), "{err}");
}

#[tokio::test]
async fn brivo_fails_a_listing_past_the_cap() {
    let sim = BrivoSim::start(BrivoSimConfig::default()).await;
    sim.add_group(501, "Coworking floor");
    for i in 0..3 {
        sim.add_user_by_hand(&format!("Guest No{i}"), &format!("guest{i}@example.com"), &[501]);
    }
    let client = BrivoClient::new(sim.client_config(), shared::http::client(), RetryPolicy::fast());
    assert_eq!(client.group_members("501").await.expect("listed").len(), 3);
    let capped = client.with_max_listed(2);
    let err = capped.group_members("501").await.expect_err("a cut listing is not returned");
    assert!(matches!(err, CallError::Permanent { .. }), "{err:?}");
    assert!(err.to_string().contains("more than 2"), "{err}");
}

/// A Brivo user made through the client, and the provider's record of it.
async fn brivo_user(client: &BrivoClient, email: &str) -> ProviderUser {
    let new = NewBrivoUser {
        first_name: "Anna",
        last_name: "Müller",
        external_id: "t#nexudus#456",
        emails: vec![EmailAddress { address: email, kind: "Work" }],
    };
    let user = client.create_user(&new).await.expect("created");
    ProviderUser {
        provider: ProviderKind::Brivo,
        ids: Some(ProviderUserIds { id: user.id(), platform_id: None }),
        email: Email::parse(email).expect("valid"),
        state: UserState::Active,
        created_at: chrono::Utc::now(),
        invited: false,
        retired: Vec::new(),
    }
}

fn brivo_group(id: u64) -> Target {
    Target::BrivoGroup(id.to_string().as_str().into())
}

fn brivo_provider(sim: &BrivoSim) -> BrivoProvider {
    BrivoProvider::new(sim.client_config(), shared::http::client(), RetryPolicy::fast())
}

/// A bearer token straight from the simulator, for calls the client never makes.
async fn brivo_token(sim: &BrivoSim) -> String {
    let c = sim.config();
    let body: serde_json::Value = reqwest::Client::new()
        .post(sim.token_url())
        .header("api-key", &c.api_key)
        .basic_auth(&c.client_id, Some(&c.client_secret))
        .form(&[("grant_type", "password"), ("username", &c.username), ("password", &c.password)])
        .send()
        .await
        .expect("token call")
        .json()
        .await
        .expect("token json");
    body["access_token"].as_str().expect("access_token").to_owned()
}

#[tokio::test]
async fn brivo_no_access_delete_cancels_the_invitation_by_the_documented_path_then_deletes_the_user() {
    let sim = BrivoSim::start(BrivoSimConfig::default()).await;
    let brivo = brivo_provider(&sim);
    let anna = brivo_user(brivo.client(), "anna@example.com").await;
    brivo.user_action(&anna, UserAction::Invite).await.expect("invited");
    let invite =
        sim.calls().into_iter().find(|c| c.method == "POST" && c.path.ends_with("/digital-invitations"));
    let query = invite.expect("an invitation call").query;
    assert!(query.contains("nfcEnabled=false") && query.contains("language=en"), "{query}");

    sim.reset_calls();
    brivo.user_action(&anna, UserAction::Delete).await.expect("deleted");
    assert_eq!(sim.invitations()[0].status, "CANCELLED");
    assert!(sim.users().is_empty(), "the user is deleted after the invitation");
    let id = &anna.ids.as_ref().expect("ids").id;
    let writes: Vec<(String, String, u16)> =
        sim.calls().into_iter().map(|c| (c.method, c.path, c.status)).collect();
    assert_eq!(
        writes,
        [
            ("DELETE".into(), format!("/v1/api/users/{id}/credentials/digital-invitations"), 200),
            ("DELETE".into(), format!("/v1/api/users/{id}"), 204),
        ]
    );

    // No pending invitation (404 "Digital invitation not found") is no reason to stop.
    let bob = brivo_user(brivo.client(), "bob@example.com").await;
    assert!(!brivo.client().cancel_invitation(&bob.ids.as_ref().expect("ids").id).await.expect("none"));
    brivo.user_action(&bob, UserAction::Delete).await.expect("deleted");
    assert!(sim.users().is_empty());
}

#[tokio::test]
async fn brivo_undocumented_paths_answer_596_service_not_found() {
    let sim = BrivoSim::start(BrivoSimConfig::default()).await;
    let brivo = brivo_provider(&sim);
    let anna = brivo_user(brivo.client(), "anna@example.com").await;
    brivo.user_action(&anna, UserAction::Invite).await.expect("invited");
    let (id, inv) = (&anna.ids.as_ref().expect("ids").id, sim.invitations()[0].id);
    let (token, key) = (brivo_token(&sim).await, sim.config().api_key.clone());
    let http = reqwest::Client::new();

    // The path the client used to call: not a documented endpoint.
    let url = format!("{}/users/{id}/credentials/digital-invitations/{inv}", sim.base_url());
    let resp = http.delete(&url).header("api-key", &key).bearer_auth(&token).send().await.expect("call");
    assert_eq!(resp.status().as_u16(), 596);
    assert_eq!(resp.text().await.expect("body"), "<h1>596 Service Not Found</h1>");
    assert_eq!(sim.invitations()[0].status, "PENDING");

    // `POST /users/{id}/groups` is documented without a body schema: unknown fields are refused.
    let url = format!("{}/users/{id}/groups", sim.base_url());
    let body = serde_json::json!({ "groupsToAdd": [501] });
    let resp = http.post(&url).header("api-key", &key).bearer_auth(&token).json(&body).send().await;
    assert_eq!(resp.expect("call").status().as_u16(), 400);
}

#[tokio::test]
async fn brivo_memberships_use_one_documented_call_per_group() {
    let sim = BrivoSim::start(BrivoSimConfig::default()).await;
    for g in [501, 502, 503] {
        sim.add_group(g, "Floor");
    }
    let brivo = brivo_provider(&sim);
    let anna = brivo_user(brivo.client(), "anna@example.com").await;
    let ids = anna.ids.clone().expect("ids");
    let change = MembershipChange {
        user: Some(anna.clone()),
        add: vec![brivo_group(501), brivo_group(502)],
        remove: Vec::new(),
        now: chrono::Utc::now(),
    };
    let outcome = brivo.change_memberships(&change).await.expect("changed");
    assert!(outcome.refused.is_empty() && outcome.warnings.is_empty(), "{outcome:?}");
    assert_eq!(sim.members(501), ["anna@example.com"]);
    assert_eq!(sim.members(502), ["anna@example.com"]);

    // Removals by the per-group DELETE; a group she is not in (404) is already done.
    sim.reset_calls();
    let change = MembershipChange {
        user: None,
        add: Vec::new(),
        remove: vec![(brivo_group(502), ids.clone()), (brivo_group(503), ids.clone())],
        now: chrono::Utc::now(),
    };
    let outcome = brivo.change_memberships(&change).await.expect("changed");
    assert!(outcome.refused.is_empty(), "{outcome:?}");
    assert!(sim.members(502).is_empty());
    let calls: Vec<(String, String, u16)> =
        sim.calls().into_iter().map(|c| (c.method, c.path, c.status)).collect();
    let id = &ids.id;
    assert_eq!(
        calls,
        [
            ("DELETE".into(), format!("/v1/api/groups/502/users/{id}"), 204),
            ("DELETE".into(), format!("/v1/api/groups/503/users/{id}"), 404),
        ]
    );
    assert_eq!(sim.count("POST", "/groups"), 0, "the schema-less POST is not used");

    // A group that does not exist is refused on its own; the other addition is applied.
    let change = MembershipChange {
        user: Some(anna),
        add: vec![brivo_group(503), brivo_group(999)],
        remove: Vec::new(),
        now: chrono::Utc::now(),
    };
    let outcome = brivo.change_memberships(&change).await.expect("changed");
    assert_eq!(outcome.refused.len(), 1, "{outcome:?}");
    assert_eq!(outcome.refused[0].0, brivo_group(999));
    assert!(outcome.refused[0].1.contains("check the mapping"), "{outcome:?}");
    assert_eq!(sim.members(503), ["anna@example.com"]);
}

#[tokio::test]
async fn brivo_a_change_past_16_groups_is_refused_before_any_call() {
    let sim = BrivoSim::start(BrivoSimConfig::default()).await;
    for g in [501, 502, 503] {
        sim.add_group(g, "Floor");
    }
    let brivo = brivo_provider(&sim);
    let anna = brivo_user(brivo.client(), "anna@example.com").await;
    let ids = anna.ids.clone().expect("ids");
    let id: u64 = ids.id.parse().expect("numeric id");
    sim.add_to_groups_by_hand(id, &(600..615).collect::<Vec<_>>()); // 15 groups
    sim.reset_calls();
    let change = MembershipChange {
        user: Some(anna.clone()),
        add: vec![brivo_group(501), brivo_group(502)],
        remove: Vec::new(),
        now: chrono::Utc::now(),
    };
    let err = brivo.change_memberships(&change).await.expect_err("over the cap");
    assert!(matches!(err, CallError::Permanent { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("at most 16 groups") && text.contains("applied none"), "{text}");
    assert_eq!(sim.membership_calls(), 0, "refused before any write");
    assert_eq!(sim.users()[0].groups.len(), 15);

    // A removal in the same change makes room: 15 - 1 + 2 = 16 is allowed.
    let change = MembershipChange { remove: vec![(brivo_group(600), ids)], ..change };
    brivo.change_memberships(&change).await.expect("within the cap");
    assert_eq!(sim.users()[0].groups.len(), 16);
}

#[tokio::test]
async fn brivo_over_rate_is_throttling_and_a_403_on_group_members_names_the_role() {
    let sim = BrivoSim::start(BrivoSimConfig::default()).await;
    sim.add_group(501, "Floor");
    let client = BrivoClient::new(sim.client_config(), shared::http::client(), RetryPolicy::fast());
    assert!(client.group_members("501").await.expect("listed").is_empty());

    sim.reset_calls();
    sim.over_rate_next(1);
    let err = client.group_members("501").await.expect_err("quota used up");
    assert!(matches!(err, CallError::Retryable { after: Some(OVER_RATE_WAIT), .. }), "{err:?}");
    assert!(err.to_string().contains("daily call quota"), "{err}");
    assert_eq!(sim.calls().len(), 1, "not retried within the call: the quota is daily");
    assert!(client.group_members("501").await.expect("listed again").is_empty());

    sim.set_not_config_admin(true);
    let err = client.group_members("501").await.expect_err("forbidden");
    assert!(matches!(err, CallError::Config { .. }), "{err:?}");
    assert!(err.to_string().contains("Account Config Tool Administrators"), "{err}");
}

fn salto_person(email: &str) -> shared::providers::Person {
    let subject = shared::model::SubjectKey::new(
        &shared::model::TenantId("space-berlin".into()),
        shared::model::SourceKind::Nexudus,
        "456",
    );
    shared::providers::Person::new(subject, Email::parse(email).expect("valid"), "Anna Müller")
}

fn salto_provider(sim: &SaltoSim, user_role: Option<&str>) -> SaltoProvider {
    let cfg = SaltoConfig { user_role: user_role.map(str::to_owned), ..sim.client_config() };
    SaltoProvider::new(cfg, shared::http::client(), RetryPolicy::fast())
}

#[tokio::test]
async fn salto_user_is_created_with_the_sites_default_user_role_read_from_the_api() {
    let sim = SaltoSim::start(SaltoSimConfig::default()).await;
    let salto = salto_provider(&sim, None);
    let now = chrono::Utc::now();
    salto.ensure_user(&salto_person("anna@example.com"), None, now).await.expect("created");
    salto.ensure_user(&salto_person("bob@example.com"), None, now).await.expect("created");
    let site_user = documented_roles().into_iter().find(|r| r.1 == "site_user").expect("documented").0;
    assert_eq!(
        sim.user_roles(),
        [
            (Some("anna@example.com".into()), vec![site_user.clone()]),
            (Some("bob@example.com".into()), vec![site_user])
        ]
    );
    // The roles are read once per process, before the first create.
    assert_eq!(sim.count("GET", "/roles"), 1);
    assert!(sim.calls().iter().any(|c| c.method == "GET" && c.path.starts_with("/v1.1/sites/")));
}

#[tokio::test]
async fn salto_configured_role_by_name_code_or_id_and_a_readable_config_error_when_none_fits() {
    let sim = SaltoSim::start(SaltoSimConfig::default()).await;
    let mobile = documented_roles().into_iter().find(|r| r.1 == "site_mobile_user").expect("documented").0;
    for wanted in ["site mobile user", "SITE_MOBILE_USER", mobile.as_str()] {
        let salto = salto_provider(&sim, Some(wanted));
        let email = format!("{}@example.com", wanted.len());
        let made = salto.ensure_user(&salto_person(&email), None, chrono::Utc::now()).await.expect("created");
        let roles = sim.user_roles();
        let (_, role_ids) = roles.iter().find(|(e, _)| e.as_deref() == Some(email.as_str())).expect("made");
        assert_eq!(role_ids, &vec![mobile.clone()], "{wanted}: {made:?}");
    }

    let before = sim.users().len();
    let err = salto_provider(&sim, Some("Door Opener"))
        .ensure_user(&salto_person("carl@example.com"), None, chrono::Utc::now())
        .await
        .expect_err("no such role");
    assert!(matches!(err, CallError::Config { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("user_role = \"Door Opener\"") && text.contains("\"Site User\" (site_user"),
        "{text}"
    );
    // A site whose roles have no plain user role: nothing is guessed.
    sim.set_roles(vec![("r-1".into(), "site_admin".into(), "Site Admin".into())]);
    let err = salto_provider(&sim, None)
        .ensure_user(&salto_person("dora@example.com"), None, chrono::Utc::now())
        .await
        .expect_err("no default role");
    assert!(matches!(err, CallError::Config { .. }) && err.to_string().contains("set user_role"), "{err}");
    assert_eq!(sim.users().len(), before, "no user is created without a fitting role");
}

#[tokio::test]
async fn salto_sim_refuses_a_user_without_a_valid_role() {
    let sim = SaltoSim::start(SaltoSimConfig::default()).await;
    let client = SaltoClient::new(sim.client_config(), shared::http::client(), RetryPolicy::fast());
    let email = Email::parse("ann@x.com").expect("valid");
    let mut user = NewUser::new("Ann", "Lee", &email, "not-a-role-of-this-site");
    let err = client.create_user(&user).await.expect_err("unknown role");
    assert!(err.to_string().contains("1101"), "{err}");
    user.role_ids.clear();
    assert!(client.create_user(&user).await.is_err(), "no role");
    assert!(sim.users().is_empty());
}

#[tokio::test]
async fn salto_users_listing_does_not_stop_on_a_short_page_and_follows_the_link_as_given() {
    let (sim, client) = salto_paging_by_two().await;
    // Users come as a bare array (no link): short pages of 2 until an empty one.
    assert_eq!(client.users().await.expect("listed").len(), 5);
    assert_eq!(sim.count("GET", "/users"), 4);
    sim.reset_calls();
    // Members come in the envelope: the second and third requests are the links themselves.
    assert_eq!(client.group_members(&SaltoGroupId::from(GROUP)).await.expect("listed").len(), 5);
    let queries: Vec<String> = sim.calls().into_iter().map(|c| c.query).collect();
    assert_eq!(queries[0], "excluded=false&%24top=100&%24skip=0");
    let linked = ["excluded=false&$top=2&$skip=2".to_owned(), "excluded=false&$top=2&$skip=4".to_owned()];
    assert_eq!(queries[1..], linked);
}

#[tokio::test]
async fn salto_safety_net_finds_a_lost_create_by_the_documented_email_field() {
    let sim = SaltoSim::start(SaltoSimConfig::default()).await;
    let salto = salto_provider(&sim, None);
    let anna = salto_person("anna@example.com");
    // The create happened but its answer was lost: the retry looks the email up first.
    sim.faults().drop_after_write_next(1);
    let made = salto.ensure_user(&anna, None, chrono::Utc::now()).await.expect("found");
    assert_eq!(sim.users().len(), 1, "no second user");
    assert_eq!(made.ids.expect("ids").id, sim.users()[0].id);
    // The site user carries the email at the top level, as the create body names it.
    let listed = salto.client().users().await.expect("listed");
    assert_eq!(listed[0].email.as_deref(), Some("anna@example.com"));
}
