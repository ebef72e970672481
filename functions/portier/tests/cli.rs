//! The `portier` command as an operator runs it: resync, drift, status, explain, exit codes.

use std::path::Path;
use std::process::Output;

mod common;

use common::{LOCK, Setup};

async fn setup() -> Setup {
    common::anna_with_bike_storage("cli").await
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn command_line_habits_version_completions_json_errors_closed_pipes_and_drift_exits() {
    let s = setup().await;
    let version = s.portier(&["--version"]).await;
    assert_eq!(code(&version), 0);
    assert!(text(&version).starts_with("portier "), "{}", text(&version));
    for shell in ["bash", "zsh", "fish"] {
        let c = s.portier(&["completions", shell]).await;
        assert_eq!(code(&c), 0, "{shell}: {}", text(&c));
        assert!(String::from_utf8_lossy(&c.stdout).contains("mapping"), "{shell}");
    }

    // With --json, a failure is JSON on stdout too.
    let missing = s.portier(&["drift", "--config", "nowhere.toml", "--json"]).await;
    assert_eq!(code(&missing), 1);
    let err: serde_json::Value =
        serde_json::from_slice(&missing.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&missing)));
    assert!(err["error"].as_str().unwrap_or_default().contains("nowhere.toml"), "{err}");
    let usage = s.portier(&["resync", "--no-such-flag", "--json"]).await;
    assert_eq!(code(&usage), 2);
    let err: serde_json::Value =
        serde_json::from_slice(&usage.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&usage)));
    assert!(err["error"].as_str().unwrap_or_default().contains("--no-such-flag"), "{err}");

    // Access that should exist but does not is a finding: drift exits 1, as README says.
    let drift = s.portier(&["drift"]).await;
    assert_eq!(code(&drift), 1, "{}", text(&drift));
    assert!(text(&drift).contains("should exist but does not (1)"), "{}", text(&drift));
    assert_eq!(code(&s.portier(&["resync", "--yes"]).await), 0);
    let clean = s.portier(&["drift"]).await;
    assert_eq!(code(&clean), 0, "{}", text(&clean));

    // A reader that stops early (`| head -1`) is no crash.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_portier"))
        .args(["drift", "--config", "portier.toml"])
        .current_dir(&s.dir)
        .env("NX_USER", &s.nexudus.config().username)
        .env("NX_PASSWORD", &s.nexudus.config().password)
        .env("NX_SECRET", "s3cret-s3cret-s3cret")
        .env("TK_ID", &s.tapkey.config().client_id)
        .env("TK_SECRET", &s.tapkey.config().client_secret)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{e}"));
    drop(child.stdout.take()); // closed before portier writes a line
    let out = child.wait_with_output().unwrap_or_else(|e| panic!("{e}"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    // status and explain take --config as every command does.
    let status = s.portier(&["status", "--config", "portier.toml", "--data", ".portier"]).await;
    assert_eq!(code(&status), 0, "{}", text(&status));
    let why = s.portier(&["explain", "anna@example.com", "--config", "portier.toml"]).await;
    assert_eq!(code(&why), 0, "{}", text(&why));
    std::fs::remove_dir_all(&s.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn explain_finds_a_person_by_id_or_name_with_the_whole_history_in_the_tenants_time_zone() {
    let s = setup().await;
    let config = std::fs::read_to_string(s.dir.join("portier.toml")).unwrap_or_default();
    let config =
        config.replace("id = \"space-berlin\"\n", "id = \"space-berlin\"\ntimezone = \"Europe/Berlin\"\n");
    std::fs::write(s.dir.join("portier.toml"), config).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code(&s.portier(&["resync", "--yes"]).await), 0);

    for who in ["456", "anna", "Anna Müller", "anna@example.com"] {
        let why = s.portier(&["explain", who, "--since", "2020-01-01"]).await;
        assert_eq!(code(&why), 0, "{who}: {}", text(&why));
        let out = text(&why);
        assert!(out.contains("Anna Müller <anna@example.com>"), "{who}: {out}");
        assert!(out.contains("Recent changes") && out.contains("Europe/Berlin"), "{who}: {out}");
        assert!(out.contains("(Bike Storage Door)"), "the lock's name beside its id: {out}");
    }
    let nobody = s.portier(&["explain", "zoe"]).await;
    assert!(text(&nobody).contains("No person with the id or name \"zoe\""), "{}", text(&nobody));
    let later = s.portier(&["explain", "456", "--since", "2999-01-01", "--json"]).await;
    let v: serde_json::Value = serde_json::from_slice(&later.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(v[0]["recent"], serde_json::json!([]), "nothing after --since");
    assert_eq!(v[0]["timezone"], "Europe/Berlin");
    assert_eq!(code(&s.portier(&["explain", "456", "--since", "last week"]).await), 2);
    std::fs::remove_dir_all(&s.dir).ok();
}
