//! The Salto KS and Brivo clients against their simulators: token flows and wire details the
//! scenarios do not reach.

use shared::http::RetryPolicy;
use shared::model::Email;
use shared::providers::brivo::{BrivoClient, BrivoConfig};
use shared::providers::salto::client::NewUser;
use shared::providers::salto::{SaltoClient, SaltoConfig};
use testkit::sim::{BrivoSim, BrivoSimConfig, SaltoSim, SaltoSimConfig};

fn salto_config(sim: &SaltoSim) -> SaltoConfig {
    let c = sim.config();
    SaltoConfig {
        base_url: sim.base_url(),
        token_url: sim.token_url(),
        site_id: c.site_id.clone(),
        client_id: c.client_id.clone(),
        client_secret: c.client_secret.clone(),
        username: None,
        password: None,
        refresh_token: None,
    }
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
    let c = sim.config().clone();
    let cfg = BrivoConfig {
        base_url: sim.base_url(),
        token_url: sim.token_url(),
        api_key: c.api_key.clone(),
        client_id: c.client_id.clone(),
        client_secret: c.client_secret.clone(),
        username: c.username.clone(),
        password: c.password.clone(),
    };
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
