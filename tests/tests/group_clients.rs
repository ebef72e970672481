//! The Salto KS and Brivo clients against their simulators: token flows and wire details the
//! scenarios do not reach.

use shared::error::CallError;
use shared::http::RetryPolicy;
use shared::model::{Email, SaltoGroupId};
use shared::providers::brivo::{BrivoClient, BrivoConfig};
use shared::providers::salto::client::NewUser;
use shared::providers::salto::{SaltoClient, SaltoConfig};
use testkit::sim::{BrivoSim, BrivoSimConfig, SaltoSim, SaltoSimConfig};

/// No way to log in yet: each test adds the one it is about.
fn salto_config(sim: &SaltoSim) -> SaltoConfig {
    SaltoConfig { username: None, password: None, ..sim.client_config() }
}

#[tokio::test]
async fn salto_logs_in_with_a_stored_refresh_token_and_follows_its_rotation() {
    let sim = SaltoSim::start(SaltoSimConfig::default()).await;
    let cfg = SaltoConfig { refresh_token: Some(sim.issue_refresh_token()), ..salto_config(&sim) };
    let client = SaltoClient::new(cfg, shared::http::client(), RetryPolicy::fast());
    let email = Email::parse("ann@x.com").expect("valid");
    let user = client.create_user(&NewUser::new("Ann", "Lee", &email)).await.expect("created");
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
    let cfg = SaltoConfig { username: Some(c.username), password: Some(c.password), ..salto_config(&sim) };
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
    assert_eq!(client.user_by_external_id("t#nexudus#1").await.expect("looked up"), None);
    assert_eq!(client.cancel_invitations("440001").await.expect("listed"), 0);
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

#[tokio::test]
async fn salto_reads_every_page_a_next_page_link_promises_and_fails_past_the_cap() {
    let sim = SaltoSim::start(SaltoSimConfig::default()).await;
    sim.add_access_group(GROUP, true);
    for i in 0..5 {
        sim.add_user_by_hand("Guest", &format!("No{i}"), &format!("guest{i}@example.com"), &[GROUP]);
    }
    // Salto KS pages by two, fewer than asked: a short page with a next link is not the last.
    sim.set_page_size(Some(2));
    let client = SaltoClient::new(sim.client_config(), shared::http::client(), RetryPolicy::fast());
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
