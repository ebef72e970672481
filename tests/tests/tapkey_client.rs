//! The Tapkey provider against the Tapkey simulator: auth, exactly-once grants, revocation,
//! permanent failures with readable reasons, and retries.

use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use shared::error::CallError;
use shared::http::{ClientLimits, RetryPolicy};
use shared::model::{Applied, AppliedState, ContactId, Email, GrantId, LockId, Target, Window};
use shared::providers::tapkey::{TapkeyClient, TapkeyConfig, TapkeyProvider};
use shared::providers::{GrantProvider, GrantRequest, Provider};
use testkit::sim::{TapkeySim, TapkeySimConfig};

const FRONT: &str = "lock-front";
const BACK: &str = "lock-back";

fn t(day: u32, h: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, day, h, 0, 0).single().expect("valid date")
}

fn email(raw: &str) -> Email {
    Email::parse(raw).expect("valid email")
}

fn window() -> Window {
    Window::new(Some(t(1, 9)), Some(t(8, 18)))
}

fn request(lock: &str, email_raw: &str, window: Window, resume: bool) -> GrantRequest {
    GrantRequest {
        target: Target::TapkeyLock(LockId::from(lock)),
        window,
        email: email(email_raw),
        name: "Ann Example".into(),
        resume,
    }
}

fn applied(
    lock: &str,
    email_raw: &str,
    window: Window,
    contact: Option<&str>,
    state: AppliedState,
) -> Applied {
    Applied {
        target: Target::TapkeyLock(LockId::from(lock)),
        window,
        email: email(email_raw),
        contact_id: contact.map(ContactId::from),
        state,
        since: Utc::now(),
    }
}

fn config(sim: &TapkeySim) -> TapkeyConfig {
    sim.client_config()
}

async fn setup() -> (TapkeySim, TapkeyProvider) {
    setup_with(RetryPolicy::fast()).await
}

async fn setup_with(policy: RetryPolicy) -> (TapkeySim, TapkeyProvider) {
    let sim = TapkeySim::start(TapkeySimConfig::default()).await;
    sim.add_lock(FRONT, "Front door", true);
    sim.add_lock(BACK, "Bike storage", true);
    let provider = TapkeyProvider::new(config(&sim), shared::http::client(), policy);
    (sim, provider)
}

fn reason(e: &CallError) -> &str {
    match e {
        CallError::Retryable { reason, .. }
        | CallError::Permanent { reason }
        | CallError::Unavailable { reason }
        | CallError::Config { reason } => reason,
    }
}

#[tokio::test]
async fn grant_creates_one_grant_with_the_window_for_the_normalised_email() {
    let (sim, tapkey) = setup().await;
    let granted =
        tapkey.grant(&request(FRONT, "  Ann@Example.COM ", window(), false)).await.expect("granted");

    let contacts = sim.contacts();
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0].identifier, "ann@example.com");
    assert_eq!(granted.contact_id.as_str(), contacts[0].id);

    let grants = sim.active_grants();
    assert_eq!(grants.len(), 1);
    let g = &grants[0];
    assert_eq!(g.id, granted.grant_id.as_str());
    assert_eq!((g.bound_lock_id.as_str(), g.contact_id.as_str()), (FRONT, contacts[0].id.as_str()));
    assert_eq!((g.valid_from, g.valid_before), (Some(t(1, 9)), Some(t(8, 18))));

    // Open windows are sent as nulls.
    tapkey
        .grant(&request(BACK, "ann@example.com", Window::new(Some(t(2, 0)), None), false))
        .await
        .expect("granted");
    let open =
        sim.active_grants().into_iter().find(|g| g.bound_lock_id == BACK).expect("grant on the back door");
    assert_eq!((open.valid_from, open.valid_before), (Some(t(2, 0)), None));
}

#[tokio::test]
async fn one_token_serves_many_calls_and_contacts_are_looked_up_once() {
    let (sim, tapkey) = setup().await;
    tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect("granted");
    tapkey.grant(&request(BACK, "bob@example.com", window(), false)).await.expect("granted");
    assert_eq!(sim.token_requests(), 1);

    // Warm: a changed entitlement is exactly one call, and it is the write.
    sim.reset_calls();
    let later = Window::new(Some(t(20, 9)), Some(t(21, 9)));
    tapkey.grant(&request(FRONT, "ann@example.com", later, false)).await.expect("granted");
    let calls = sim.calls();
    assert_eq!(calls.len(), 1, "calls: {calls:?}");
    assert_eq!((calls[0].method.as_str(), calls[0].status), ("PUT", 200));
    assert_eq!(sim.token_requests(), 1);
}

#[tokio::test]
async fn an_expired_token_is_refreshed_once() {
    let (sim, tapkey) = setup().await;
    tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect("granted");
    sim.expire_tokens();
    tapkey.grant(&request(BACK, "ann@example.com", window(), false)).await.expect("granted after refresh");
    assert_eq!(sim.token_requests(), 2);
    assert_eq!(sim.active_grants().len(), 2);
}

#[tokio::test]
async fn a_second_401_after_refreshing_is_a_configuration_error() {
    let (sim, tapkey) = setup().await;
    sim.faults().fail_next(401, 2);
    let err = tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect_err("401 twice");
    assert!(matches!(err, CallError::Config { .. }), "{err:?}");
    assert_eq!(sim.token_requests(), 2);
    assert!(sim.grants().is_empty());
}

#[tokio::test]
async fn bad_credentials_and_foreign_owner_accounts_are_configuration_errors() {
    let sim = TapkeySim::start(TapkeySimConfig::default()).await;
    sim.add_lock(FRONT, "Front door", true);

    let wrong_secret = TapkeyConfig { client_secret: "wrong".into(), ..config(&sim) };
    let tapkey = TapkeyProvider::new(wrong_secret, shared::http::client(), RetryPolicy::fast());
    let err = tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect_err("refused");
    assert!(matches!(err, CallError::Config { .. }), "{err:?}");
    assert!(!reason(&err).contains("wrong"), "the secret never appears: {err:?}");

    let foreign = TapkeyConfig { owner_account_id: "someone-else".into(), ..config(&sim) };
    let tapkey = TapkeyProvider::new(foreign, shared::http::client(), RetryPolicy::fast());
    let err = tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect_err("forbidden");
    assert!(matches!(err, CallError::Config { .. }), "{err:?}");
    assert!(reason(&err).contains("not a co-administrator of owner account someone-else"), "{err:?}");
}

#[tokio::test]
async fn resume_finds_the_existing_grant_without_a_second_put() {
    let (sim, tapkey) = setup().await;
    let first = tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect("granted");
    let again = tapkey.grant(&request(FRONT, "ann@example.com", window(), true)).await.expect("resumed");
    assert_eq!(again, first);
    assert_eq!(sim.count("PUT", "/grants"), 1);
    assert_eq!(sim.active_grants().len(), 1);

    // A resume that finds nothing creates the grant.
    let other = Window::new(Some(t(10, 9)), Some(t(11, 9)));
    tapkey.grant(&request(FRONT, "ann@example.com", other, true)).await.expect("created");
    assert_eq!(sim.count("PUT", "/grants"), 2);
    assert_eq!(sim.active_grants().len(), 2);
}

#[tokio::test]
async fn a_duplicate_answer_is_treated_as_done() {
    let (sim, tapkey) = setup().await;
    let w = window();
    let existing = sim.add_grant_by_hand("ann@example.com", FRONT, w.from, w.until);
    let granted = tapkey.grant(&request(FRONT, "ann@example.com", w, false)).await.expect("done");
    assert_eq!(granted.grant_id.as_str(), existing);
    assert_eq!(sim.count("PUT", "/grants"), 1, "one create, answered 409 Duplicate");
    assert_eq!(sim.active_grants().len(), 1);
}

#[tokio::test]
async fn a_lost_answer_still_leaves_one_grant() {
    let (sim, tapkey) = setup().await;
    // Warm the contact, so the next write is the grant's.
    tapkey.grant(&request(BACK, "ann@example.com", window(), false)).await.expect("granted");

    // The PUT is applied but its answer lost; the retried PUT meets Duplicate and looks it up.
    sim.faults().drop_after_write_next(1);
    let granted = tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect("granted");
    let on_front: Vec<_> = sim.active_grants().into_iter().filter(|g| g.bound_lock_id == FRONT).collect();
    assert_eq!(on_front.len(), 1);
    assert_eq!(on_front[0].id, granted.grant_id.as_str());
}

#[tokio::test]
async fn a_lost_answer_then_resume_still_leaves_one_grant() {
    // One attempt per call: the lost answer surfaces as a retryable failure, as in a crash
    // between the provider call and recording the result.
    let (sim, tapkey) = setup_with(RetryPolicy { attempts: 1, ..RetryPolicy::fast() }).await;
    tapkey.grant(&request(BACK, "ann@example.com", window(), false)).await.expect("granted");

    sim.faults().drop_after_write_next(1);
    let err = tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect_err("lost");
    assert!(matches!(err, CallError::Retryable { .. }), "{err:?}");
    assert_eq!(sim.active_grants().len(), 2, "the write happened");

    let puts = sim.count("PUT", "/grants");
    let granted = tapkey.grant(&request(FRONT, "ann@example.com", window(), true)).await.expect("resumed");
    assert_eq!(sim.count("PUT", "/grants"), puts, "resume found it without creating");
    let on_front: Vec<_> = sim.active_grants().into_iter().filter(|g| g.bound_lock_id == FRONT).collect();
    assert_eq!(on_front.len(), 1);
    assert_eq!(on_front[0].id, granted.grant_id.as_str());
}

#[tokio::test]
async fn revoke_and_revoke_again() {
    let (sim, tapkey) = setup().await;
    let granted = tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect("granted");
    let created = applied(
        FRONT,
        "ann@example.com",
        window(),
        Some(granted.contact_id.as_str()),
        AppliedState::Created { grant_id: granted.grant_id.clone() },
    );
    tapkey.revoke(&created).await.expect("revoked");
    assert!(sim.active_grants().is_empty());
    tapkey.revoke(&created).await.expect("already revoked is done");
    let unknown = applied(
        FRONT,
        "ann@example.com",
        window(),
        None,
        AppliedState::Created { grant_id: GrantId::from("no-such-grant") },
    );
    tapkey.revoke(&unknown).await.expect("unknown grant is done");
    assert_eq!(sim.count("POST", "/revoke"), 3);
}

#[tokio::test]
async fn revoking_an_intent_looks_the_grant_up() {
    let (sim, tapkey) = setup().await;
    let keep = Window::new(Some(t(20, 9)), Some(t(21, 9)));
    tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect("granted");
    tapkey.grant(&request(FRONT, "ann@example.com", keep, false)).await.expect("granted");

    // A fresh provider: no cached contact, so it is found by email.
    let cold = TapkeyProvider::new(config(&sim), shared::http::client(), RetryPolicy::fast());
    cold.revoke(&applied(FRONT, "ann@example.com", window(), None, AppliedState::Intent))
        .await
        .expect("revoked");
    let active = sim.active_grants();
    assert_eq!(active.len(), 1, "only the matching window is revoked");
    assert_eq!((active[0].valid_from, active[0].valid_before), (keep.from, keep.until));

    // Nothing created for this person: nothing to do, and nothing written.
    sim.reset_calls();
    cold.revoke(&applied(FRONT, "nobody@example.com", window(), None, AppliedState::Intent))
        .await
        .expect("done");
    assert_eq!(sim.count("POST", "/revoke"), 0);
    assert_eq!(sim.count("PUT", "/api/"), 0);
}

#[tokio::test]
async fn payment_required_is_permanent_with_a_readable_reason() {
    let (sim, tapkey) = setup().await;
    sim.set_payment_required(true);
    let err = tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect_err("402");
    assert!(matches!(err, CallError::Permanent { .. }), "{err:?}");
    assert!(reason(&err).starts_with("Tapkey subscription limit reached (402 Payment Required)"), "{err:?}");
    assert!(sim.grants().is_empty());
}

#[tokio::test]
async fn inactive_unbound_and_unknown_locks_refuse_with_a_readable_reason() {
    let (sim, tapkey) = setup().await;
    let tapkey = tapkey.with_lock_cache_ttl(Duration::ZERO);

    sim.set_lock_active(FRONT, false);
    let err = tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect_err("inactive");
    // Unavailable, not permanent: asking again costs no write, so nothing is held back.
    assert!(matches!(err, CallError::Unavailable { .. }), "{err:?}");
    assert!(
        reason(&err).starts_with("Tapkey lock Front door (lock-front) is not active: it has no licence"),
        "{err:?}"
    );

    sim.set_lock_active(FRONT, true);
    sim.unbind_lock(FRONT);
    let err = tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect_err("unbound");
    assert!(matches!(err, CallError::Unavailable { .. }), "{err:?}");
    assert!(reason(&err).contains("Front door (lock-front) is unbound"), "{err:?}");

    let err =
        tapkey.grant(&request("lock-gone", "ann@example.com", window(), false)).await.expect_err("unknown");
    assert!(matches!(err, CallError::Unavailable { .. }), "{err:?}");
    assert!(reason(&err).contains("lock-gone"), "{err:?}");

    assert_eq!(sim.count("PUT", "/grants"), 0, "nothing is granted on a lock that would refuse");
    assert!(sim.contacts().is_empty());
}

#[tokio::test]
async fn lock_state_is_cached_briefly() {
    let (sim, tapkey) = setup().await;
    tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect("granted");
    tapkey.grant(&request(FRONT, "bob@example.com", window(), false)).await.expect("granted");
    assert_eq!(sim.count("GET", "/boundlocks/"), 1);
}

#[tokio::test]
async fn server_errors_and_throttling_are_retried() {
    let (sim, tapkey) = setup().await;
    sim.faults().fail_next(503, 2);
    tapkey.grant(&request(FRONT, "ann@example.com", window(), false)).await.expect("granted after 503s");
    sim.faults().fail_next(429, 3);
    tapkey.grant(&request(BACK, "ann@example.com", window(), false)).await.expect("granted after 429s");
    assert_eq!(sim.active_grants().len(), 2);

    // Throttled by a rate limit: Retry-After (1 s, capped by the policy) is honoured.
    sim.faults().set_rate_limit(Some(1.0));
    let later = Window::new(Some(t(20, 9)), Some(t(21, 9)));
    let slow = TapkeyProvider::new(
        config(&sim),
        shared::http::client(),
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_secs(2),
            ..RetryPolicy::fast()
        },
    );
    slow.grant(&request(FRONT, "cat@example.com", later, false)).await.expect("granted after throttling");
    assert!(sim.faults().throttled_count() > 0);
    sim.faults().set_rate_limit(None);

    // Still failing after every attempt: retryable, nothing created.
    sim.faults().fail_next(500, 4);
    let err = tapkey.grant(&request(FRONT, "ann@example.com", later, false)).await.expect_err("gave up");
    assert!(matches!(err, CallError::Retryable { .. }), "{err:?}");
    assert!(reason(&err).contains("500"), "{err:?}");
    assert_eq!(sim.active_grants().len(), 3);
}

#[tokio::test]
async fn a_listing_past_the_cap_is_an_error_not_a_shorter_list() {
    let (sim, _) = setup().await;
    for i in 0..3 {
        sim.add_grant_by_hand(&format!("guest{i}@example.com"), FRONT, None, None);
    }
    let at_cap =
        TapkeyClient::new(config(&sim), shared::http::client(), RetryPolicy::fast()).with_max_listed(3);
    assert_eq!(at_cap.grants(None).await.expect("three grants are within the cap").len(), 3);

    let capped =
        TapkeyClient::new(config(&sim), shared::http::client(), RetryPolicy::fast()).with_max_listed(2);
    let err = capped.grants(None).await.expect_err("a cut listing is not returned");
    assert!(matches!(err, CallError::Permanent { .. }), "{err:?}");
    assert!(reason(&err).contains("more than 2 Grants") && reason(&err).contains("not trusted"), "{err}");
    // The provider's listing for drift and resync fails the same way.
    let provider =
        TapkeyProvider::new(config(&sim), shared::http::client(), RetryPolicy::fast()).with_max_listed(2);
    let err = provider.list_access(&[Target::TapkeyLock(LockId::from(FRONT))]).await.expect_err("cut");
    assert!(matches!(err, CallError::Permanent { .. }), "{err:?}");
}

#[tokio::test]
async fn a_duplicate_with_another_status_than_409_is_resolved_by_lookup() {
    let (sim, tapkey) = setup().await;
    sim.set_duplicate_status(400);
    let w = window();
    let existing = sim.add_grant_by_hand("ann@example.com", FRONT, w.from, w.until);
    let granted = tapkey.grant(&request(FRONT, "ann@example.com", w, false)).await.expect("done");
    assert_eq!(granted.grant_id.as_str(), existing);
    let put = sim.calls().into_iter().find(|c| c.method == "PUT").expect("a create");
    assert_eq!(put.status, 400, "answered 400 Duplicate, looked up instead of failing");
    assert_eq!(sim.active_grants().len(), 1);

    // A contact the same way.
    let client = TapkeyClient::new(config(&sim), shared::http::client(), RetryPolicy::fast());
    let created = client.create_contact(&email("ann@example.com"), Some("Ann")).await.expect("answered");
    assert_eq!(created, shared::providers::tapkey::client::CreateContact::Duplicate);
}

#[tokio::test]
async fn a_refused_filter_falls_back_to_listing_and_matching_locally() {
    let (sim, _) = setup().await;
    sim.set_strict_filters(true);
    let w = window();
    // Others' grants on the same lock, and Ann's on another: only hers on FRONT may match.
    sim.add_grant_by_hand("bob@example.com", FRONT, w.from, w.until);
    sim.add_grant_by_hand("ann@example.com", BACK, w.from, w.until);
    let existing = sim.add_grant_by_hand("ann@example.com", FRONT, w.from, w.until);

    let tapkey = TapkeyProvider::new(config(&sim), shared::http::client(), RetryPolicy::fast());
    let granted = tapkey.grant(&request(FRONT, "ANN@example.com", w, true)).await.expect("resumed");
    assert_eq!(granted.grant_id.as_str(), existing);
    assert_eq!(sim.count("PUT", "/grants"), 0, "found, not created again");
    let refused = sim.calls().iter().filter(|c| c.status == 400).count();
    assert_eq!(refused, 1, "the filter is tried once, then skipped: {:?}", sim.calls());

    // Later lookups list straight away (grants with the documented `active eq true`).
    sim.reset_calls();
    tapkey
        .revoke(&applied(
            FRONT,
            "ann@example.com",
            w,
            Some(granted.contact_id.as_str()),
            AppliedState::Intent,
        ))
        .await
        .expect("revoked");
    assert!(sim.calls().iter().all(|c| c.status != 400), "{:?}", sim.calls());
    let active = sim.active_grants();
    assert_eq!(active.len(), 2, "only Ann's grant on the front door is revoked");
    assert!(active.iter().all(|g| g.id != existing));

    // A new person: the contact is looked up by listing, then created.
    let other = tapkey.grant(&request(BACK, "cat@example.com", w, false)).await.expect("granted");
    assert!(
        sim.contacts().iter().any(|c| c.id == other.contact_id.as_str() && c.identifier == "cat@example.com")
    );
}
