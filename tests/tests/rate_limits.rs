//! Calls per change and rate-limit efficiency (issue 7, scopes 1 and 2), CI size: a burst of
//! 40 webhooks against a Tapkey simulator limited to 40 calls/s, with the tenant's client-side
//! limit at the same rate. `make bench` runs 2 000 webhooks at 20 calls/s and draws them.

use testkit::burst::{Burst, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_converges_near_the_rate_limit_with_one_write_per_change_and_no_429() {
    let report = run(Burst { webhooks: 40, rate: 40.0, workers: 4 }).await;
    println!("burst: {}", report.summary());
    assert_eq!(report.throttled, 0, "the client-side limit keeps Tapkey from answering 429");
    assert!(
        report.ratio() <= 1.1,
        "converged in {:.2} s, bound {:.2} s",
        report.converged_after,
        report.bound()
    );
    assert_eq!(report.grant_writes_per_change, 1.0, "one grant creation per changed entitlement");
    assert_eq!(report.contact_writes_per_change, 1.0, "one contact per new person, then cached");
    assert_eq!(report.resync_writes, 0, "a resync with nothing changed only lists at Tapkey");
    assert_eq!(report.resync_source_writes, 0, "and only lists at Nexudus");
    assert!(report.resync_calls > 0, "the resync did list");
}
