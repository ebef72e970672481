//! Crash (issue 7, scope 5): the real `portier serve` is killed with SIGKILL in the middle of a
//! webhook burst and started again on the same `--data`. Every webhook it answered 202 is
//! applied, the ones it never answered are delivered again (as Nexudus retries them), and no
//! grant is made twice.
//!
//! CI size: 200 webhooks. `make soak` runs it with `PORTIER_CRASH_WEBHOOKS=1000`.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

mod common;

use common::{LOCK, Setup};
use testkit::sim::{NexudusSim, NexudusSimConfig, SimWebhook, TapkeySim, TapkeySimConfig};

const HOOK_SECRET: &str = "crash-hook-secret";
const FIRST: i64 = 10_000;

fn webhooks() -> usize {
    std::env::var("PORTIER_CRASH_WEBHOOKS").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

async fn setup(n: usize) -> Setup {
    let nexudus = NexudusSim::start(NexudusSimConfig {
        webhook_secret: Some(HOOK_SECRET.into()),
        ..Default::default()
    })
    .await;
    let tapkey =
        TapkeySim::start(TapkeySimConfig { owner_account_id: "owner-1".into(), ..Default::default() }).await;
    nexudus.add_time_pass(1001, "Bike Storage");
    tapkey.add_lock(LOCK, "Bike Storage Door", true);
    for i in 0..n as i64 {
        nexudus.add_coworker(FIRST + i, &format!("Member {i}"), &format!("member{i}@example.com"));
        nexudus.give_pass(FIRST + i, 1001, None);
    }
    // Slow enough that the kill lands while work is queued and in flight.
    tapkey.faults().set_latency(Duration::from_millis(3));
    // The simulator has no Nexudus allowance, so the client's (120 calls/min by default) is lifted.
    Setup::new(nexudus, tapkey, "crash", ", calls_per_minute = 60000")
}

fn free_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("bind: {e}"));
    l.local_addr().unwrap_or_else(|e| panic!("addr: {e}"))
}

impl Setup {
    fn serve(&self, listen: SocketAddr) -> Child {
        let nx = self.nexudus.config().clone();
        let tk = self.tapkey.config().clone();
        Command::new(env!("CARGO_BIN_EXE_portier"))
            .args(["serve", "--config", "portier.toml", "--data", "data", "--listen", &listen.to_string()])
            .current_dir(&self.dir)
            .env("NX_USER", nx.username)
            .env("NX_PASSWORD", nx.password)
            .env("NX_SECRET", HOOK_SECRET)
            .env("TK_ID", tk.client_id)
            .env("TK_SECRET", tk.client_secret)
            // Messages the killed process held come back after 2 s instead of 120 s.
            .env("PORTIER_VISIBILITY_SECS", "2")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.join(format!("serve-{}.log", listen.port())))
                    .map_or_else(|_| Stdio::null(), Stdio::from),
            )
            .spawn()
            .unwrap_or_else(|e| panic!("starting portier serve: {e}"))
    }
}

async fn healthz(http: &reqwest::Client, base: &str) -> Option<serde_json::Value> {
    let resp = http.get(format!("{base}/healthz")).send().await.ok()?;
    resp.json().await.ok()
}

async fn wait_until_up(http: &reqwest::Client, base: &str) {
    let start = Instant::now();
    while healthz(http, base).await.is_none() {
        assert!(start.elapsed() < Duration::from_secs(30), "portier serve did not come up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Posts a signed hook as Nexudus does; 0 when the connection failed (the process is gone).
async fn deliver(http: &reqwest::Client, url: &str, hook: &SimWebhook) -> u16 {
    let mut req = http.post(url).body(hook.body.clone());
    for (name, value) in &hook.headers {
        req = req.header(name.as_str(), value.as_str());
    }
    req.send().await.map_or(0, |r| r.status().as_u16())
}

/// Sends every hook from 8 senders, each pausing 5 ms between hooks (about 1 600 webhooks/s,
/// so the burst outlasts the first grants); returns the indexes answered 202.
async fn burst(
    http: &reqwest::Client,
    base: &str,
    hooks: &[(usize, SimWebhook)],
    accepted_so_far: Arc<AtomicUsize>,
) -> BTreeSet<usize> {
    let url = format!("{base}/hooks/nexudus/space-berlin/AccessControlUpdate");
    let accepted = Arc::new(Mutex::new(BTreeSet::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let (next, accepted, counter) = (next.clone(), accepted.clone(), accepted_so_far.clone());
        let (hooks, url, http) = (hooks.to_vec(), url.clone(), http.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let k = next.fetch_add(1, Ordering::SeqCst);
                let Some((i, hook)) = hooks.get(k) else { break };
                if deliver(&http, &url, hook).await == 202 {
                    accepted.lock().unwrap_or_else(|p| p.into_inner()).insert(*i);
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap_or_else(|e| panic!("{e}"));
    }
    accepted.lock().unwrap_or_else(|p| p.into_inner()).clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_killed_mid_burst_applies_every_accepted_webhook_once_after_restart() {
    let n = webhooks();
    let s = setup(n).await;
    let http = reqwest::Client::new();
    let hooks: Vec<(usize, SimWebhook)> = (0..n)
        .map(|i| (i, s.nexudus.webhook("AccessControlUpdate", &s.nexudus.coworker_dto(FIRST + i as i64))))
        .collect();

    let listen = free_port();
    let base = format!("http://{listen}");
    let mut first = s.serve(listen);
    wait_until_up(&http, &base).await;

    // SIGKILL once half of the burst has been accepted and the first grants are made.
    let counter = Arc::new(AtomicUsize::new(0));
    let killer = async {
        while counter.load(Ordering::SeqCst) < n / 2 || s.tapkey.active_grants().is_empty() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        first.kill().unwrap_or_else(|e| panic!("kill: {e}"));
        let _ = first.wait();
    };
    let (accepted, ()) = tokio::join!(burst(&http, &base, &hooks, counter.clone()), killer);
    let applied_before_restart = s.tapkey.active_grants().len();
    assert!(
        accepted.len() >= n / 2 && accepted.len() < n,
        "killed mid-burst: {} of {n} accepted",
        accepted.len()
    );
    assert!(applied_before_restart < n, "the kill came before everything was applied");

    // Restart on the same data; Nexudus delivers the unanswered ones again.
    let listen = free_port();
    let base = format!("http://{listen}");
    let mut child = s.serve(listen);
    wait_until_up(&http, &base).await;
    let rest: Vec<_> = hooks.iter().filter(|(i, _)| !accepted.contains(i)).cloned().collect();
    let second = burst(&http, &base, &rest, Arc::new(AtomicUsize::new(0))).await;
    assert_eq!(second.len(), rest.len(), "the restarted serve accepts the redeliveries");

    let start = Instant::now();
    loop {
        let h = healthz(&http, &base).await.unwrap_or_default();
        let idle = h["queue"]["visible"] == 0 && h["queue"]["in_flight"] == 0;
        if idle && s.tapkey.active_grants().len() >= n {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "did not converge: {h} {} grants",
            s.tapkey.active_grants().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let _ = child.kill();
    let _ = child.wait();

    let contacts: std::collections::BTreeMap<String, String> =
        s.tapkey.contacts().into_iter().map(|c| (c.id, c.identifier)).collect();
    let holders: BTreeSet<String> =
        s.tapkey.active_grants().iter().filter_map(|g| contacts.get(&g.contact_id).cloned()).collect();
    for i in &accepted {
        assert!(holders.contains(&format!("member{i}@example.com")), "accepted webhook {i} was applied");
    }
    assert_eq!(holders.len(), n, "everyone holds a grant");
    assert_eq!(s.tapkey.grants().len(), n, "no grant was made twice (not even one revoked later)");
    assert_eq!(contacts.len(), n, "no contact was made twice");
    println!(
        "crash: {n} webhooks, SIGKILL after {} accepted ({applied_before_restart} applied), restart: {} redelivered; \
         {n} grants, 0 duplicates, converged {:.1} s after restart",
        accepted.len(),
        rest.len(),
        start.elapsed().as_secs_f64()
    );
    std::fs::remove_dir_all(&s.dir).ok();
}
