//! The `portier` command as an operator runs it: resync, drift, status, explain, exit codes.

use std::path::Path;
use std::process::Output;

mod common;

use common::{LOCK, Setup};
use testkit::sim::{NexudusSim, NexudusSimConfig, TapkeySim, TapkeySimConfig};

async fn setup() -> Setup {
    let nexudus = NexudusSim::start(NexudusSimConfig::default()).await;
    let tapkey =
        TapkeySim::start(TapkeySimConfig { owner_account_id: "owner-1".into(), ..Default::default() }).await;
    nexudus.add_coworker(456, "Anna Müller", "anna@example.com");
    nexudus.add_time_pass(1001, "Bike Storage");
    nexudus.give_pass(456, 1001, None);
    tapkey.add_lock(LOCK, "Bike Storage Door", true);
    Setup::new(nexudus, tapkey, "cli", "")
}

impl Setup {
    async fn portier(&self, args: &[&str]) -> Output {
        let nx = self.nexudus.config().clone();
        let tk = self.tapkey.config().clone();
        let dir = self.dir.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_portier"))
                .args(&args)
                .current_dir(&dir)
                .env("NX_USER", nx.username)
                .env("NX_PASSWORD", nx.password)
                .env("NX_SECRET", "s3cret-s3cret-s3cret")
                .env("TK_ID", tk.client_id)
                .env("TK_SECRET", tk.client_secret)
                .output()
                .unwrap_or_else(|e| panic!("running portier: {e}"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_plans_resyncs_finds_drift_and_asks_why() {
    let s = setup().await;
    let dry = s.portier(&["resync", "--dry-run", "--json"]).await;
    assert_eq!(code(&dry), 0, "{}", text(&dry));
    let report: serde_json::Value =
        serde_json::from_slice(&dry.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&dry)));
    assert_eq!(report[0]["plans"][0]["ops"][0]["op"], "grant");
    assert!(s.tapkey.grants().is_empty(), "a dry run changes nothing");

    let real = s.portier(&["resync"]).await;
    assert_eq!(code(&real), 0, "{}", text(&real));
    assert!(text(&real).contains("made 1 operations"), "{}", text(&real));
    assert_eq!(s.tapkey.active_grants().len(), 1);

    let why = s.portier(&["explain", "anna@example.com"]).await;
    assert_eq!(code(&why), 0, "{}", text(&why));
    assert!(text(&why).contains(&s.tapkey.active_grants()[0].id), "{}", text(&why));

    s.tapkey.add_grant_by_hand("mallory@example.com", LOCK, None, None);
    let drift = s.portier(&["drift"]).await;
    assert_eq!(code(&drift), 1, "findings exit 1: {}", text(&drift));
    assert!(text(&drift).contains("mallory@example.com"), "{}", text(&drift));

    let status = s.portier(&["status", "--json"]).await;
    assert_eq!(code(&status), 0, "{}", text(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status["tenants"][0]["last_resync"]["operations"], 1);

    std::fs::remove_dir_all(&s.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_and_name_the_problem() {
    let s = setup().await;
    let bad_provider = s.portier(&["resync", "--provider", "keymaster"]).await;
    assert_eq!(code(&bad_provider), 2);
    assert!(text(&bad_provider).contains("keymaster"));
    assert_eq!(code(&s.portier(&["resync", "--no-such-flag"]).await), 2);
    let missing = s.portier(&["resync", "--config", "nowhere.toml"]).await;
    assert_eq!(code(&missing), 1);
    assert!(text(&missing).contains("nowhere.toml"));
    let no_data = s.portier(&["status", "--data", Path::new("empty").to_str().unwrap_or("empty")]).await;
    assert_eq!(code(&no_data), 1);
    std::fs::remove_dir_all(&s.dir).ok();
}
