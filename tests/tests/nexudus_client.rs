//! The Nexudus REST client against the Nexudus simulator: tokens, paging, throttling.

use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use shared::error::CallError;
use shared::http::RetryPolicy;
use shared::sources::nexudus::client::{NexudusClient, NexudusConfig};
use testkit::sim::{NexudusSim, NexudusSimConfig};

const ANN: i64 = 456;
const BIKE: i64 = 1001;

fn config(sim: &NexudusSim) -> NexudusConfig {
    sim.client_config()
}

async fn setup() -> (NexudusSim, NexudusClient) {
    let sim = NexudusSim::start(NexudusSimConfig::default()).await;
    sim.add_coworker(ANN, "Ann Example", "Ann@Example.com");
    sim.add_time_pass(BIKE, "Bike Storage");
    let client = NexudusClient::new(config(&sim), shared::http::client(), RetryPolicy::fast());
    (sim, client)
}

#[tokio::test]
async fn reads_a_coworker_with_one_token() {
    let (sim, nexudus) = setup().await;
    for _ in 0..3 {
        let c = nexudus.coworker(ANN).await.expect("read").expect("exists");
        assert_eq!((c.id, c.email.as_deref(), c.active), (ANN, Some("Ann@Example.com"), true));
    }
    assert_eq!(sim.token_requests(), 1);
    assert_eq!(sim.count("GET", "/spaces/coworkers/456"), 3);
}

#[tokio::test]
async fn missing_and_deleted_coworkers() {
    let (sim, nexudus) = setup().await;
    sim.faults().fail_next(404, 1);
    assert_eq!(nexudus.coworker(ANN).await, Ok(None));

    // Nexudus answers 500 for a deleted id: ambiguous, so retryable, never "gone".
    sim.delete_coworker(ANN);
    let err = nexudus.coworker(ANN).await.expect_err("500");
    assert!(matches!(err, CallError::Retryable { .. }), "{err:?}");
}

#[tokio::test]
async fn time_passes_are_paged_past_one_hundred() {
    let (sim, nexudus) = setup().await;
    sim.add_coworker(789, "Bob", "bob@example.com");
    let expire = Utc.with_ymd_and_hms(2026, 12, 31, 0, 0, 0).single();
    let mut ids: Vec<i64> = (0..250).map(|_| sim.give_pass(ANN, BIKE, expire)).collect();
    sim.give_pass(789, BIKE, None);

    let passes = nexudus.time_passes_for(ANN).await.expect("listed");
    let mut got: Vec<i64> = passes.iter().map(|p| p.id).collect();
    got.sort_unstable();
    ids.sort_unstable();
    assert_eq!(got, ids);
    assert!(passes.iter().all(|p| p.coworker_id == ANN && p.time_pass_id == BIKE && p.expire_date == expire));
    assert_eq!(sim.count("GET", "/billing/coworkertimepasses"), 3);

    assert_eq!(nexudus.time_passes_for(12345).await.map(|p| p.len()), Ok(0));
}

#[tokio::test]
async fn throttling_409_is_retried() {
    let (sim, nexudus) = setup().await;
    sim.faults().fail_next(409, 2);
    assert!(nexudus.coworker(ANN).await.expect("read after 409s").is_some());

    // A rate limit answers 409 with Retry-After: 1, which a patient policy honours.
    let patient = NexudusClient::new(
        config(&sim),
        shared::http::client(),
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(1),
            max: Duration::from_secs(2),
            ..RetryPolicy::fast()
        },
    );
    sim.faults().set_rate_limit(Some(2.0));
    let started = Instant::now();
    for _ in 0..4 {
        assert!(patient.coworker(ANN).await.expect("read").is_some());
    }
    assert!(sim.faults().throttled_count() > 0);
    assert!(started.elapsed() >= Duration::from_millis(900), "waited for Retry-After");
    sim.faults().set_rate_limit(None);

    // Throttled on every attempt: retryable, carrying the server's Retry-After.
    sim.faults().fail_next(409, 4);
    let err = nexudus.coworker(ANN).await.expect_err("still throttled");
    assert!(matches!(err, CallError::Retryable { .. }), "{err:?}");
}

#[tokio::test]
async fn an_expired_token_is_refreshed_then_the_password_is_used_again() {
    let (sim, nexudus) = setup().await;
    nexudus.coworker(ANN).await.expect("read");
    assert_eq!(sim.token_requests(), 1);

    // 401 → refresh grant → retried call.
    sim.expire_tokens();
    assert!(nexudus.coworker(ANN).await.expect("read after refresh").is_some());
    assert_eq!(sim.token_requests(), 2);

    // Refresh token gone too: the refresh is refused and the password grant logs in again.
    sim.expire_tokens();
    sim.expire_refresh_tokens();
    assert!(nexudus.coworker(ANN).await.expect("read after login").is_some());
    assert_eq!(sim.token_requests(), 4);
}

#[tokio::test]
async fn wrong_password_and_repeated_401_are_configuration_errors() {
    let (sim, nexudus) = setup().await;
    sim.faults().fail_next(401, 2);
    let err = nexudus.coworker(ANN).await.expect_err("401 twice");
    assert!(matches!(err, CallError::Config { .. }), "{err:?}");

    let wrong = NexudusConfig { password: "not-it".into(), ..config(&sim) };
    let nexudus = NexudusClient::new(wrong, shared::http::client(), RetryPolicy::fast());
    let err = nexudus.coworker(ANN).await.expect_err("refused");
    assert!(matches!(err, CallError::Config { .. }), "{err:?}");
    assert!(!err.to_string().contains("not-it"), "the password never appears: {err}");
}

#[tokio::test]
async fn batch_reads_carry_desks_and_teams_in_one_call_per_chunk() {
    let (sim, nexudus) = setup().await;
    sim.add_coworker(789, "Bob", "bob@example.com");
    sim.add_desk(31, "Desk 31", 2);
    sim.add_desk(32, "Office 32", 1);
    let start = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).single().expect("valid");
    let a = sim.add_contract(ANN, "Fixed desk", start, &[31]);
    let b = sim.add_contract(789, "Office", start, &[32, 31]);
    sim.add_team(900, "Acme", Some(ANN), &[ANN, 789]);

    let mut contracts = nexudus.contracts_by_ids(&[b, a, a, 424242]).await.expect("read");
    contracts.sort_by_key(|c| c.id);
    let desks: Vec<(i64, Option<Vec<i64>>)> = contracts.iter().map(|c| (c.id, c.desks.clone())).collect();
    assert_eq!(desks, [(a, Some(vec![31])), (b, Some(vec![32, 31]))], "unknown ids are absent");
    let coworkers = nexudus.coworkers_by_ids(&[ANN, 789]).await.expect("read");
    assert!(coworkers.iter().all(|c| c.teams == Some(vec![900])), "{coworkers:?}");
    let batches: Vec<String> =
        sim.calls().into_iter().filter(|c| c.query.contains("id=")).map(|c| c.query).collect();
    assert_eq!(batches.len(), 2, "one call each");
    assert!(batches[0].contains("id=%5B") || batches[0].contains("id=["), "{batches:?}");

    // More ids than one batch holds: one call per BATCH_SIZE.
    sim.reset_calls();
    let many: Vec<i64> = (0..120).map(|i| 10_000 + i).collect();
    assert!(nexudus.contracts_by_ids(&many).await.expect("read").is_empty());
    assert_eq!(sim.count("GET", "/billing/coworkercontracts"), 3);
    assert!(nexudus.contracts_by_ids(&[]).await.expect("nothing to read").is_empty());
    assert_eq!(sim.count("GET", "/billing/coworkercontracts"), 3, "no call for no ids");
}

#[tokio::test]
async fn the_oauth_client_id_is_the_same_for_every_process_of_the_installation() {
    let (sim, first) = setup().await;
    first.coworker(ANN).await.expect("read");
    // Another process (a second Lambda container, a restart) of the same installation.
    let second = NexudusClient::new(config(&sim), shared::http::client(), RetryPolicy::fast());
    second.coworker(ANN).await.expect("read");
    let ids = sim.token_client_ids();
    assert_eq!(ids.len(), 2);
    assert_eq!(ids[0], ids[1]);
    assert_eq!(first.client_id(), ids[0]);
    // The refresh token is bound to that id (the sim refuses another), so a refresh works.
    sim.expire_tokens();
    assert!(second.coworker(ANN).await.expect("refreshed").is_some());
    assert_eq!(sim.token_requests(), 3, "a refresh, not a new login");
    // Another account gets another id.
    let other = NexudusConfig { username: "someone.else@example.com".into(), ..config(&sim) };
    let other = NexudusClient::new(other, shared::http::client(), RetryPolicy::fast());
    assert_ne!(other.client_id(), first.client_id());
}

#[tokio::test]
async fn calls_are_spaced_by_the_documented_100_ms() {
    let (sim, nexudus) = setup().await;
    nexudus.coworker(ANN).await.expect("read");
    sim.reset_calls();
    for _ in 0..5 {
        nexudus.coworker(ANN).await.expect("read");
    }
    let at: Vec<Instant> = sim.calls().into_iter().map(|c| c.at).collect();
    for pair in at.windows(2) {
        let gap = pair[1].duration_since(pair[0]);
        assert!(gap >= Duration::from_millis(95), "no burst: {gap:?}");
    }
    let quotas = shared::sources::nexudus::client::DOCUMENTED_QUOTAS;
    let per: Vec<(u32, u64)> = quotas.iter().map(|q| (q.calls, q.per.as_millis() as u64)).collect();
    assert_eq!(per, [(1, 100), (120, 60_000), (5_000, 3_600_000)]);
}
