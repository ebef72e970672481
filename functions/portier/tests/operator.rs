//! An operator's day with the real `portier` binary (issue 15): a mapping import checked
//! against the lock system, a fixed mapping reaching the people it affects, every config
//! mistake at once, a tenant with a missing secret left out while the others are served, one
//! log line per webhook, and a failed resync shown by `status`.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use chrono::NaiveDate;
use testkit::kinnovis_app::{ANNA, STORAGE_OWNER, UNIT_2, UNIT_2_LOCK, storage_sims};
use testkit::sim::{KinnovisSim, TapkeySim};

const INACTIVE_LOCK: &str = "7d3e1c2b-5a4f-4e6d-9c8b-1a2b3c4d5e6f";
const NO_SUCH_LOCK: &str = "3c4d5e6f-0000-4000-8000-000000000001";

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("portier-{name}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
    dir
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn code(o: &Output) -> i32 {
    o.status.code().unwrap_or(-1)
}

/// A self-storage location (Kinnovis + Tapkey simulators) with no mapping in its file: the
/// units are mapped by CSV imports.
struct Storage {
    kinnovis: KinnovisSim,
    tapkey: TapkeySim,
    dir: PathBuf,
}

impl Storage {
    async fn new() -> Self {
        let (kinnovis, tapkey) = storage_sims().await;
        tapkey.add_lock(INACTIVE_LOCK, "Unit B-001", false);
        let dir = temp_dir("operator");
        let config = format!(
            r#"
[[tenant]]
id = "storage-vienna"
timezone = "Europe/Vienna"
source = {{ kind = "kinnovis", base_url = "{}", location_id = "loc-vienna-1", api_key_env = "KV_KEY", webhook_secret_env = "KV_SECRET" }}
# Bookings found by a resync are managed too (gradual adoption waits for their webhook).
policy = {{ adoption = "clean_slate" }}

[tenant.providers.tapkey]
owner_account_id = "{STORAGE_OWNER}"
client_id_env = "TK_ID"
client_secret_env = "TK_SECRET"
base_url = "{}"
token_url = "{}"
"#,
            kinnovis.base_url(),
            tapkey.base_url(),
            tapkey.token_url()
        );
        std::fs::write(dir.join("portier.toml"), config).unwrap_or_else(|e| panic!("{e}"));
        Storage { kinnovis, tapkey, dir }
    }

    fn write(&self, name: &str, content: &str) -> String {
        std::fs::write(self.dir.join(name), content).unwrap_or_else(|e| panic!("{e}"));
        name.to_owned()
    }

    async fn portier(&self, args: &[&str]) -> Output {
        let kv = self.kinnovis.config().clone();
        let tk = self.tapkey.config().clone();
        let dir = self.dir.clone();
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        tokio::task::spawn_blocking(move || {
            Command::new(env!("CARGO_BIN_EXE_portier"))
                .args(&args)
                .current_dir(&dir)
                .env("KV_KEY", kv.api_key)
                .env("KV_SECRET", kv.webhook_secret)
                .env("TK_ID", tk.client_id)
                .env("TK_SECRET", tk.client_secret)
                .output()
                .unwrap_or_else(|e| panic!("running portier: {e}"))
        })
        .await
        .unwrap_or_else(|e| panic!("{e}"))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_import_refuses_locks_tapkey_cannot_grant_on_with_their_line_and_offline_skips_the_check() {
    let s = Storage::new().await;
    // As Excel writes it in Germany and Austria: BOM, `;`, CRLF, quoted fields.
    let csv = s.write(
        "units.csv",
        &format!(
            "\u{feff}Tapkey Lock ID;Kinnovis Unit Name\r\n\"{NO_SUCH_LOCK}\";\"A-017\"\r\n{INACTIVE_LOCK};{UNIT_2}\r\n"
        ),
    );
    let refused = s.portier(&["mapping", "import", &csv, "--tenant", "storage-vienna"]).await;
    assert_eq!(code(&refused), 1, "{}", text(&refused));
    let out = text(&refused);
    assert!(out.contains(&format!("line 2: lock {NO_SUCH_LOCK} is not a bound lock")), "{out}");
    assert!(out.contains(&format!("line 3: lock {INACTIVE_LOCK} (Unit B-001) is not active")), "{out}");
    assert!(out.contains("nothing imported"), "{out}");

    let offline = s.portier(&["mapping", "import", &csv, "--tenant", "storage-vienna", "--offline"]).await;
    assert_eq!(code(&offline), 0, "{}", text(&offline));
    assert!(text(&offline).contains("imported 2 unit mapping(s)"), "{}", text(&offline));
    assert!(text(&offline).contains("--offline"), "{}", text(&offline));

    let good = s.write(
        "good.csv",
        &format!("\u{feff}Tapkey Lock ID;Kinnovis Unit Name\r\n\"{UNIT_2_LOCK}\";\"{UNIT_2}\"\r\n"),
    );
    let ok = s.portier(&["mapping", "import", &good, "--tenant", "storage-vienna", "--json"]).await;
    assert_eq!(code(&ok), 0, "{}", text(&ok));
    let report: serde_json::Value = serde_json::from_slice(&ok.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report["imported"].as_u64(), report["checked"].as_bool()), (Some(1), Some(true)));
    std::fs::remove_dir_all(&s.dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_mapping_reconciles_the_people_it_affects_and_their_old_failure_clears() {
    let s = Storage::new().await;
    let move_in = NaiveDate::from_ymd_opt(2026, 1, 1).unwrap_or_default();
    s.kinnovis.create_booking(UNIT_2, ANNA, "Anna Berger", move_in, None);
    // The mistake of issue 15: a lock Tapkey cannot grant on, imported unchecked.
    let bad = s.write("bad.csv", &format!("Tapkey Lock ID,Kinnovis Unit Name\n{INACTIVE_LOCK},{UNIT_2}\n"));
    assert_eq!(
        code(&s.portier(&["mapping", "import", &bad, "--tenant", "storage-vienna", "--offline"]).await),
        0
    );
    let resync = s.portier(&["resync", "--yes"]).await;
    assert_eq!(code(&resync), 0, "{}", text(&resync));
    assert!(s.tapkey.active_grants().is_empty());
    let failing = s.portier(&["status"]).await;
    assert_eq!(code(&failing), 1, "the failure shows: {}", text(&failing));
    assert!(text(&failing).contains(INACTIVE_LOCK), "{}", text(&failing));

    let fixed = s.write("fixed.csv", &format!("Tapkey Lock ID,Kinnovis Unit Name\n{UNIT_2_LOCK},{UNIT_2}\n"));
    let import = s.portier(&["mapping", "import", &fixed, "--tenant", "storage-vienna"]).await;
    assert_eq!(code(&import), 0, "{}", text(&import));
    assert!(text(&import).contains("1 person(s) whose units changed reconciled"), "{}", text(&import));
    let grants = s.tapkey.active_grants();
    assert_eq!(grants.len(), 1, "Anna is granted without a resync");
    assert_eq!(grants[0].bound_lock_id, UNIT_2_LOCK);

    let status = s.portier(&["status", "--json"]).await;
    assert_eq!(code(&status), 0, "the old failure is gone: {}", text(&status));
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(status["tenants"][0]["failures"], serde_json::json!({}));

    // The same mapping again changes nothing and queues nobody.
    let again = s.portier(&["mapping", "import", &fixed, "--tenant", "storage-vienna"]).await;
    assert!(!text(&again).contains("person(s)"), "{}", text(&again));
    std::fs::remove_dir_all(&s.dir).ok();
}

const TWO_TENANTS: &str = r#"
[[tenant]]
id = "space-a"
source = { kind = "nexudus", base_url = "http://127.0.0.1:9", username_env = "A_USER", password_env = "A_PASSWORD", webhook_secret_env = "A_SECRET" }

[[tenant]]
id = "space-b"
source = { kind = "nexudus", base_url = "http://127.0.0.1:9", username_env = "B_USER", password_env = "B_PASSWORD", webhook_secret_env = "B_SECRET" }
"#;

#[test]
fn config_check_lists_every_mistake_with_the_file_line_and_field() {
    let dir = temp_dir("config-check");
    let file = dir.join("berlin.toml");
    let broken = format!(
        "{TWO_TENANTS}
[[tenant]]
id = \"space-a\"
timezone = \"Europe/Berln\"
source = {{ kind = \"nexudus\", username_env = \"A_USER\", password_env = \"A_PASSWORD\", webhook_token_env = \"A_TOKEN\" }}

[[tenant.mapping]]
item = {{ kind = \"pass\", id = \"1001\" }}
targets = [ {{ salto_group = \"ag-1\" }} ]
"
    );
    std::fs::write(&file, broken).unwrap_or_else(|e| panic!("{e}"));
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_portier"))
            .args(args)
            .arg("--config")
            .arg(&file)
            .env("A_USER", "u")
            .env("A_PASSWORD", "p")
            .env("A_SECRET", "a-secret-of-16-chars")
            .env("A_TOKEN", "a-token-of-16-chars!")
            .env("B_USER", "u")
            .env("B_PASSWORD", "p")
            .env_remove("B_SECRET")
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let check = run(&["config", "check"]);
    assert_eq!(code(&check), 1, "{}", text(&check));
    let out = text(&check);
    let name = file.display().to_string();
    for want in [
        format!("{name}:11: tenant space-a: id: tenant space-a is defined twice (first at line 3)"),
        format!("{name}:12: tenant space-a: timezone:"),
        format!("{name}:17: tenant space-a: mapping.0.targets:"),
        "[tenant.providers.salto_ks] is not configured".to_owned(),
        "3 problem(s)".to_owned(),
    ] {
        assert!(out.contains(&want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("portier.toml"), "names the file given: {out}");
    // Any other command refuses the same file with the same list.
    let resync = run(&["resync", "--dry-run"]);
    assert_eq!(code(&resync), 1);
    assert!(text(&resync).contains(&format!("{name}:12")), "{}", text(&resync));

    // Once the file is right, the missing environment variable is found, at its line.
    std::fs::write(&file, TWO_TENANTS).unwrap_or_else(|e| panic!("{e}"));
    let check = run(&["config", "check", "--json"]);
    assert_eq!(code(&check), 1, "{}", text(&check));
    let report: serde_json::Value = serde_json::from_slice(&check.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report["problems"].as_array().map(Vec::len), Some(1), "{report}");
    assert_eq!(report["problems"][0]["line"], 8);
    assert_eq!(report["problems"][0]["field"], "source.webhook_secret_env");
    assert!(report["problems"][0]["message"].as_str().unwrap_or_default().contains("B_SECRET"));
    std::fs::remove_dir_all(&dir).ok();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Kills the `portier serve` this test started when the test ends, however it ends.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_without_its_secret_is_left_out_while_the_others_are_served_and_each_webhook_logs_a_line() {
    let dir = temp_dir("serve-broken");
    std::fs::write(dir.join("portier.toml"), TWO_TENANTS).unwrap_or_else(|e| panic!("{e}"));
    let port = free_port();
    let mut child = Child(
        Command::new(env!("CARGO_BIN_EXE_portier"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .current_dir(&dir)
            .env("A_USER", "u")
            .env("A_PASSWORD", "p")
            .env("A_SECRET", "a-secret-of-16-chars")
            .env("B_USER", "u")
            .env("B_PASSWORD", "p")
            .env_remove("B_SECRET")
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("{e}")),
    );
    let http = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // Wait for the listener (start-up, not a time window): a bounded number of attempts.
    let mut health = None;
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await {
            health = Some(r);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let health = health.unwrap_or_else(|| panic!("portier serve did not start"));
    assert_eq!(health.status().as_u16(), 200);
    let body: serde_json::Value = health.json().await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(body["status"], "degraded", "{body}");
    assert_eq!(body["tenants_not_served"][0]["tenant"], "space-b", "{body}");
    assert!(body["tenants_not_served"][0]["reason"].as_str().unwrap_or_default().contains("B_SECRET"));

    // space-a is served (its webhook is checked: a wrong signature is refused), space-b not.
    let hook = |t: &str| {
        http.post(format!("{base}/hooks/nexudus/{t}/CoworkerUpdate"))
            .header("x-nexudus-hook-signature", "00")
            .body(r#"{"Email":"anna@example.com"}"#)
            .send()
    };
    assert_eq!(hook("space-a").await.map(|r| r.status().as_u16()).unwrap_or(0), 401);
    assert_eq!(hook("space-b").await.map(|r| r.status().as_u16()).unwrap_or(0), 404);

    let status = Command::new(env!("CARGO_BIN_EXE_portier"))
        .args(["status"])
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(code(&status), 1, "{}", text(&status));
    assert!(text(&status).contains("NOT SERVED"), "{}", text(&status));
    assert!(text(&status).contains("B_SECRET"), "{}", text(&status));

    let _ = child.0.kill();
    let _ = child.0.wait();
    let mut log = String::new();
    if let Some(mut err) = child.0.stderr.take() {
        let _ = err.read_to_string(&mut log);
    }
    let lines: Vec<&str> =
        log.lines().filter(|l| l.contains(" webhook ") || l.ends_with(" webhook")).collect();
    assert_eq!(lines.len(), 2, "one line per webhook:\n{log}");
    assert!(lines[0].contains("space-a") && lines[0].contains("not authenticated"), "{}", lines[0]);
    assert!(lines[1].contains("space-b") && lines[1].contains("unknown tenant"), "{}", lines[1]);
    assert!(!log.contains("anna@example.com"), "no personal data in logs:\n{log}");
    assert!(!log.contains('\u{1b}'), "no colour when stderr is not a terminal");
    std::fs::remove_dir_all(&dir).ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_resync_shows_in_status_with_its_error_until_one_finishes() {
    use testkit::sim::{NexudusSim, NexudusSimConfig};
    let nexudus = NexudusSim::start(NexudusSimConfig::default()).await;
    let dir = temp_dir("resync-failed");
    let config = format!(
        r#"
[[tenant]]
id = "space-a"
timezone = "Europe/Berlin"
source = {{ kind = "nexudus", base_url = "{}", username_env = "A_USER", password_env = "A_PASSWORD", webhook_secret_env = "A_SECRET" }}
"#,
        nexudus.base_url()
    );
    std::fs::write(dir.join("portier.toml"), config).unwrap_or_else(|e| panic!("{e}"));
    let run = |password: &str, args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_portier"))
            .args(args)
            .current_dir(&dir)
            .env("A_USER", &nexudus.config().username)
            .env("A_PASSWORD", password)
            .env("A_SECRET", "a-secret-of-16-chars")
            .output()
            .unwrap_or_else(|e| panic!("{e}"))
    };
    let failed = run("wrong-password", &["resync", "--yes"]);
    assert_eq!(code(&failed), 1, "{}", text(&failed));
    let status = run("", &["status"]);
    assert_eq!(code(&status), 1, "{}", text(&status));
    assert!(text(&status).contains("last resync FAILED"), "{}", text(&status));
    assert!(
        text(&status).contains(" Europe/Berlin:"),
        "times in the tenant's zone, labelled: {}",
        text(&status)
    );
    assert!(!text(&status).contains("no resync yet"), "{}", text(&status));

    let ok = run(&nexudus.config().password, &["resync", "--yes"]);
    assert_eq!(code(&ok), 0, "{}", text(&ok));
    let status = run("", &["status", "--json"]);
    assert_eq!(code(&status), 0, "{}", text(&status));
    let v: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap_or_else(|e| panic!("{e}"));
    assert!(v["tenants"][0].get("last_failed_resync").is_none(), "{v}");
    std::fs::remove_dir_all(&dir).ok();
}

/// Issue 15.11's "retry" for dead letters: `portier dead-letters` lists what the embedded queue
/// gave up on (ids, group, kind; no body), and `--redrive` moves it back to the work queue.
#[tokio::test]
async fn dead_letters_are_listed_and_redriven_back_to_the_work_queue() {
    use shared::clock::ManualClock;
    use shared::queue::embedded::EmbeddedQueue;
    use shared::queue::{Outgoing, Queue};
    use std::sync::Arc;
    let data = temp_dir("dead-letters");
    let clock = ManualClock::new(chrono::Utc::now());
    shared::store::sqlite::SqliteStore::open(&data.join("portier.db"), Arc::new(clock.clone()))
        .expect("store");
    // The same file the binary opens; this handle gives up after one receive.
    let queue = EmbeddedQueue::open(&data.join("queue.db"), Arc::new(clock.clone()), 1).expect("queue");
    let body = r#"{"kind":"reconcile","subject":{"tenant":"t","source":"nexudus","person":"42"}}"#;
    let msg =
        Outgoing { group: "t#nexudus#42".into(), dedup_id: "evt-1".into(), body: body.into(), urgent: false };
    queue.send(&msg).await.expect("send");
    let visibility = std::time::Duration::from_secs(30);
    assert_eq!(queue.receive(10, visibility, std::time::Duration::ZERO).await.expect("receive").len(), 1);
    clock.advance(chrono::Duration::seconds(31));
    assert!(queue.receive(10, visibility, std::time::Duration::ZERO).await.expect("receive").is_empty());

    let portier = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_portier")).args(args).arg("--data").arg(&data).output().expect("run")
    };
    let list = portier(&["dead-letters", "--json"]);
    assert_eq!(code(&list), 0, "{}", text(&list));
    let items: serde_json::Value = serde_json::from_slice(&list.stdout).expect("json");
    assert_eq!(items.as_array().map(Vec::len), Some(1), "{items}");
    assert_eq!(
        (items[0]["group"].as_str(), items[0]["kind"].as_str()),
        (Some("t#nexudus#42"), Some("reconcile"))
    );
    assert!(!String::from_utf8_lossy(&list.stdout).contains("subject"), "no body is printed");

    let redrive = portier(&["dead-letters", "--redrive", "--json"]);
    assert_eq!(code(&redrive), 0, "{}", text(&redrive));
    let moved: serde_json::Value = serde_json::from_slice(&redrive.stdout).expect("json");
    assert_eq!((moved["redriven"].as_u64(), moved["left"].as_u64()), (Some(1), Some(0)), "{moved}");
    let back = queue.receive(10, visibility, std::time::Duration::ZERO).await.expect("receive");
    assert_eq!(back.iter().map(|d| (d.body.as_str(), d.receive_count)).collect::<Vec<_>>(), [(body, 1)]);
    assert!(text(&portier(&["dead-letters"])).contains("No dead letters."));
}
