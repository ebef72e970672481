//! Calls per change and rate-limit efficiency (issue 7, scopes 1 and 2), CI size: a burst of
//! 40 members each gaining a Tapkey grant, a Salto KS and a Brivo membership, against
//! simulators limited to 40, 20 and 40 calls/s, with the tenant's client-side limits at the same
//! rates, and Nexudus at its documented limits. `make bench` runs 2 000 webhooks at 20/10/20
//! calls/s and draws them. Time to converge
//! against C/R is printed, not asserted (speed is measured by the benchmark, not by a test).

use testkit::burst::{Burst, Rates, run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_makes_one_write_per_change_no_429_and_a_resync_that_only_lists() {
    let rates = Rates { tapkey: 40.0, salto: 20.0, brivo: 40.0 };
    let report = run(Burst { webhooks: 40, rates, workers: 4, nexudus_limited: true }).await;
    println!("burst: {}", report.summary());
    println!(
        "converged in {:.2} s = {:.3} x C/R of {} ({:.2} s)",
        report.converged_after,
        report.ratio(),
        report.bottleneck().name,
        report.bound()
    );
    for p in &report.providers {
        assert_eq!(p.throttled, 0, "{}: the client-side limit keeps the provider from throttling", p.name);
        if p.name == "salto_ks" {
            // People joining one access group together share its PATCH calls (issue 14).
            assert!(
                p.access_writes_per_change < 0.5,
                "salto_ks: shared PATCH calls: {}",
                p.access_writes_per_change
            );
        } else {
            assert_eq!(
                p.access_writes_per_change, 1.0,
                "{}: one access write per changed entitlement",
                p.name
            );
        }
        assert_eq!(p.resync_writes, 0, "{}: a resync with nothing changed only lists", p.name);
        assert!(p.resync_calls > 0, "{}: the resync did list", p.name);
    }
    let person = |name| report.provider(name).map(|p| p.person_writes_per_change);
    assert_eq!(person("tapkey"), Some(0.0), "the contact is named inside the grant, never created apart");
    let tapkey_calls = report.provider("tapkey").map(|p| p.calls.len() as f64 / 40.0);
    assert!(
        tapkey_calls.is_some_and(|c| c <= 1.1),
        "at most 1.1 Tapkey calls per new grant (the lock read is cached): {tapkey_calls:?}"
    );
    assert_eq!(person("salto_ks"), Some(1.0), "one Salto KS user per new person");
    assert_eq!(person("brivo"), Some(2.0), "one Brivo user and one mobile-pass invitation per new person");
    assert_eq!(report.resync_source_writes, 0, "and the resync only lists at Nexudus");
    // Nexudus at its documented limits (issue 14): never throttled, a lone change read once.
    assert_eq!(report.source.throttled, 0, "Nexudus: the client's limiter keeps under its limits");
    assert_eq!(report.source.lone_reads, 1, "a lone webhook at a pass-only tenant: one Nexudus read");
    assert!(report.source.lone_tapkey_calls <= 1, "and one Tapkey call: {}", report.source.lone_tapkey_calls);
    let reads = report.source.calls.len() as f64 / 40.0;
    assert!(reads < 1.0, "the burst's Nexudus reads are shared: {reads} per change");
}
