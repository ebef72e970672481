//! `portier config push` against the loopback DynamoDB (moto), as `make test` starts it: the
//! real binary, the AWS credentials chain from the environment, the table the template makes.

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::Arc;

use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::model::TenantId;
use shared::store::Records;
use shared::store::dynamo::DynamoStore;

const CONFIG: &str = r#"
[[tenant]]
id = "space-berlin"
timezone = "Europe/Berlin"
source = { kind = "nexudus", username_env = "NEXUDUS_USER", password_env = "NEXUDUS_PASSWORD", webhook_secret_env = "NEXUDUS_HOOK_SECRET" }

[tenant.providers.tapkey]
owner_account_id = "owner-1"
client_id_env = "TAPKEY_CLIENT_ID"
client_secret_env = "TAPKEY_CLIENT_SECRET"

[[tenant.mapping]]
item = { kind = "pass", id = "1001" }
targets = [ { tapkey_lock = "ea610634-4fc0-4084-85b2-bebf52c3595f" } ]

[[tenant]]
id = "space-munich"
source = { kind = "nexudus", username_env = "NX_USER", password_env = "NX_PASSWORD", webhook_token_env = "NX_TOKEN" }
"#;

fn endpoint() -> String {
    std::env::var("PORTIER_TEST_AWS_ENDPOINT").unwrap_or_else(|_| {
        panic!("PORTIER_TEST_AWS_ENDPOINT is not set: start the loopback server with `make test` or `scripts/moto.sh start`")
    })
}

struct Fixture {
    dir: PathBuf,
    table: String,
    records: Records,
}

async fn fixture() -> Fixture {
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let dir = std::env::temp_dir().join(format!("portier-config-push-{unique}"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let table = format!("portier-push-{unique}");
    let sdk = shared::aws::sdk_config(Some(&endpoint())).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone(), clock.clone());
    store.create_table_if_missing().await.expect("create table");
    Fixture { dir, table, records: Records::new(Arc::new(store), clock) }
}

impl Fixture {
    fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    /// Runs `portier config push` as an operator would, with credentials in the environment.
    fn push(&self, config: &std::path::Path, extra: &[&str]) -> Output {
        let config = config.display().to_string();
        let mut args = vec!["config", "push", "--table", &self.table, "--config", &config];
        args.extend_from_slice(extra);
        self.portier(&args)
    }

    /// `portier` with these arguments, the loopback AWS credentials in the environment.
    fn command<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_portier"));
        command
            .args(args)
            .current_dir(&self.dir)
            .env("AWS_ENDPOINT_URL", endpoint())
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_PROFILE");
        command
    }

    /// Runs `portier`, with the loopback AWS credentials in the environment.
    fn portier(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run portier")
    }

    /// Runs `portier` with `env` added, off the async threads, so simulators on this runtime
    /// answer it meanwhile.
    fn portier_beside(&self, args: &[&str], env: &[(String, String)]) -> tokio::task::JoinHandle<Output> {
        let mut command = self.command(args);
        command.envs(env.iter().cloned());
        tokio::task::spawn_blocking(move || command.output().expect("run portier"))
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test]
async fn push_writes_every_tenant_document_and_names_the_secret_keys() {
    let f = fixture().await;
    let path = f.write("portier.toml", CONFIG);
    let out = f.push(&path, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stdout: {stdout}\nstderr: {}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("pushed tenant space-berlin; its secret needs the keys: NEXUDUS_HOOK_SECRET, NEXUDUS_PASSWORD, NEXUDUS_USER, TAPKEY_CLIENT_ID, TAPKEY_CLIENT_SECRET"),
        "{stdout}"
    );

    // What the Lambda functions read (TableTenants) is the file's content, tenant by tenant.
    let expected = Config::parse_toml(CONFIG).expect("valid");
    let mut ids = f.records.tenant_ids().await.expect("ids");
    ids.sort();
    assert_eq!(ids, [TenantId("space-berlin".into()), TenantId("space-munich".into())]);
    for tenant in &expected.tenants {
        let doc = f.records.tenant_config(&tenant.id).await.expect("read").expect("stored");
        assert_eq!(doc, serde_json::to_value(tenant).expect("json"), "{}", tenant.id);
    }

    // A second push with one tenant fewer overwrites the kept one and leaves the other alone,
    // saying so.
    let berlin_only = &CONFIG[..CONFIG.find("[[tenant]]\nid = \"space-munich\"").expect("second tenant")];
    let changed = berlin_only.replace("Europe/Berlin", "UTC");
    let out = f.push(&f.write("berlin.toml", &changed), &["--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json output");
    assert_eq!(report["not_in_file"], serde_json::json!(["space-munich"]));
    let doc = f.records.tenant_config(&"space-berlin".into()).await.expect("read").expect("stored");
    assert_eq!(doc["timezone"], "UTC");
    assert!(f.records.tenant_config(&"space-munich".into()).await.expect("read").is_some());
}

#[tokio::test]
async fn an_invalid_file_writes_nothing_and_names_the_place() {
    let f = fixture().await;
    // The second tenant is broken: the first must not be written either.
    let broken = CONFIG.replace("webhook_token_env = \"NX_TOKEN\"", "webhook_tokn_env = \"NX_TOKEN\"");
    let out = f.push(&f.write("broken.toml", &broken), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("broken.toml") && stderr.contains("webhook_tokn_env") && stderr.contains("line"),
        "{stderr}"
    );
    assert!(f.records.tenant_ids().await.expect("ids").is_empty());

    let out = f.push(&f.dir.join("missing.toml"), &[]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("missing.toml"));
}

#[tokio::test]
async fn a_missing_table_is_a_clear_error() {
    let f = fixture().await;
    let path = f.write("portier.toml", CONFIG);
    let out = Command::new(env!("CARGO_BIN_EXE_portier"))
        .args(["config", "push", "--table", "no-such-table", "--config"])
        .arg(&path)
        .env("AWS_ENDPOINT_URL", endpoint())
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .output()
        .expect("run portier");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("no-such-table") && stderr.contains("ResourceNotFound"), "{stderr}");
}

#[tokio::test]
async fn status_and_explain_read_the_deployment_with_table() {
    let f = fixture().await;
    let config = f.write("portier.toml", CONFIG);
    assert_eq!(f.push(&config, &[]).status.code(), Some(0));
    let sdk = shared::aws::sdk_config(Some(&endpoint())).await;
    let queue = shared::queue::sqs::SqsQueue::create_fifo(aws_sdk_sqs::Client::new(&sdk), &f.table, 10)
        .await
        .expect("queue");
    let run = |args: &[&str]| f.portier(args);
    let status = run(&["status", "--table", &f.table, "--queue-url", queue.queue_url(), "--json"]);
    let stdout = String::from_utf8_lossy(&status.stdout);
    assert_eq!(status.status.code(), Some(0), "{stdout}{}", String::from_utf8_lossy(&status.stderr));
    let v: serde_json::Value = serde_json::from_str(&stdout).expect("json");
    let tenants: Vec<&str> =
        v["tenants"].as_array().into_iter().flatten().filter_map(|t| t["tenant"].as_str()).collect();
    assert_eq!(tenants, ["space-berlin", "space-munich"], "{v}");
    assert_eq!(v["queue"]["visible"], 0);

    let without_queue = run(&["status", "--table", &f.table]);
    assert_eq!(without_queue.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without_queue.stderr).contains("--queue-url"));

    let why = run(&["explain", "anna@example.com", "--table", &f.table]);
    assert_eq!(why.status.code(), Some(0), "{}", String::from_utf8_lossy(&why.stderr));
    assert!(String::from_utf8_lossy(&why.stdout).contains("No person with the email anna@example.com"));
}

/// `portier dead-letters --redrive` against the deployment's SQS dead-letter queue.
#[tokio::test]
async fn dead_letters_of_the_deployment_are_redriven() {
    use shared::queue::{Outgoing, Queue};
    let f = fixture().await;
    let sdk = shared::aws::sdk_config(Some(&endpoint())).await;
    // Dead-letters on the second receive; SQS has real time only (visibility 1 s).
    let queue = shared::queue::sqs::SqsQueue::create_fifo(aws_sdk_sqs::Client::new(&sdk), &f.table, 1)
        .await
        .expect("queue");
    let msg =
        Outgoing { group: "t#nexudus#7".into(), dedup_id: "evt-7".into(), body: "{}".into(), urgent: false };
    queue.send(&msg).await.expect("send");
    let second = std::time::Duration::from_secs(1);
    assert_eq!(queue.receive(1, second, std::time::Duration::ZERO).await.expect("receive").len(), 1);
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    assert!(queue.receive(1, second, std::time::Duration::ZERO).await.expect("receive").is_empty());
    let dlq = queue.dlq_url().expect("the dead-letter queue").to_owned();

    let without = f.portier(&["dead-letters", "--table", &f.table, "--queue-url", queue.queue_url()]);
    assert_eq!(without.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&without.stderr).contains("--dlq-url"));
    let args = ["dead-letters", "--table", &f.table, "--queue-url", queue.queue_url(), "--dlq-url", &dlq];
    let list = f.portier(&[&args[..], &["--json"]].concat());
    assert_eq!(list.status.code(), Some(0), "{}", String::from_utf8_lossy(&list.stderr));
    assert!(String::from_utf8_lossy(&list.stdout).contains("t#nexudus#7"));
    let redrive = f.portier(&[&args[..], &["--redrive", "--json"]].concat());
    let moved: serde_json::Value = serde_json::from_slice(&redrive.stdout).expect("json");
    assert_eq!(moved["redriven"], 1, "{moved}");
    let back = queue.receive(1, second, std::time::Duration::ZERO).await.expect("receive");
    assert_eq!(back.iter().map(|d| d.group.as_str()).collect::<Vec<_>>(), ["t#nexudus#7"]);
}

/// Issue 15.5: `drift` and `resync` work against the deployment too: tenants from the table,
/// secrets from the environment (or Secrets Manager), and a real run's reconciles go to the
/// deployment's queue for its workers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drift_and_resync_work_against_the_deployment_with_table() {
    use testkit::harness::{ANNA, BIKE_STORAGE, HookAuth, LOCK, OWNER, secrets, tenant_config};
    use testkit::sim::{NexudusSim, NexudusSimConfig, TapkeySim, TapkeySimConfig};
    let f = fixture().await;
    let nexudus = NexudusSim::start(NexudusSimConfig::default()).await;
    let tapkey =
        TapkeySim::start(TapkeySimConfig { owner_account_id: OWNER.into(), ..Default::default() }).await;
    nexudus.add_coworker(ANNA, "Anna Muller", "anna@example.com");
    nexudus.add_time_pass(BIKE_STORAGE, "Bike Storage");
    nexudus.give_pass(ANNA, BIKE_STORAGE, None);
    tapkey.add_lock(LOCK, "Bike Storage Door", true);
    let tenant = tenant_config(&nexudus, &tapkey, HookAuth::Signature);
    let config = Config { tenants: vec![tenant], ..Default::default() };
    let path = f.write("portier.toml", &toml::to_string(&config).expect("toml"));
    assert_eq!(f.push(&path, &[]).status.code(), Some(0));
    let sdk = shared::aws::sdk_config(Some(&endpoint())).await;
    let queue = shared::queue::sqs::SqsQueue::create_fifo(aws_sdk_sqs::Client::new(&sdk), &f.table, 10)
        .await
        .expect("queue");
    let env: Vec<(String, String)> = secrets(&tapkey).0.into_iter().collect();
    let run = |args: &[&str]| f.portier_beside(args, &env);
    let table = f.table.clone();

    let drift = run(&["drift", "--table", &table, "--json"]).await.expect("task");
    let stdout = String::from_utf8_lossy(&drift.stdout);
    assert_eq!(
        drift.status.code(),
        Some(1),
        "the missing grant is a finding: {stdout}{}",
        String::from_utf8_lossy(&drift.stderr)
    );
    assert!(stdout.contains("space-berlin"), "{stdout}");

    let dry = run(&["resync", "--table", &table, "--dry-run", "--json"]).await.expect("task");
    assert_eq!(dry.status.code(), Some(0), "{}", String::from_utf8_lossy(&dry.stderr));
    assert!(tapkey.active_grants().is_empty(), "a dry run changes nothing");

    let no_queue = run(&["resync", "--table", &table, "--yes"]).await.expect("task");
    assert_eq!(no_queue.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&no_queue.stderr).contains("--queue-url"));

    let real = run(&["resync", "--table", &table, "--queue-url", queue.queue_url(), "--yes", "--json"])
        .await
        .expect("task");
    assert_eq!(real.status.code(), Some(0), "{}", String::from_utf8_lossy(&real.stderr));
    use shared::queue::Queue;
    let stats = queue.stats().await.expect("stats");
    assert_eq!(stats.visible, 1, "Anna's reconcile waits for the deployment's worker");
}

/// Issue 15.5: `mapping import` and `mapping locks` work against the deployment: the mapping
/// is checked at Kinnovis and Tapkey, stored in the table (where its worker reads mappings),
/// and the people it affects are queued for the deployment's worker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mapping_import_and_locks_work_against_the_deployment_with_table() {
    use testkit::kinnovis_app::{UNIT_2, UNIT_2_LOCK, storage_config, storage_secrets, storage_sims};
    let f = fixture().await;
    let (kinnovis, tapkey) = storage_sims().await;
    let config = Config { tenants: vec![storage_config(&kinnovis, &tapkey)], ..Default::default() };
    let path = f.write("portier.toml", &toml::to_string(&config).expect("toml"));
    assert_eq!(f.push(&path, &[]).status.code(), Some(0));
    let sdk = shared::aws::sdk_config(Some(&endpoint())).await;
    let queue = shared::queue::sqs::SqsQueue::create_fifo(aws_sdk_sqs::Client::new(&sdk), &f.table, 10)
        .await
        .expect("queue");
    let env: Vec<(String, String)> = storage_secrets(&kinnovis, &tapkey).0.into_iter().collect();
    let run = |args: &[&str]| f.portier_beside(args, &env);
    let table = f.table.clone();
    let tenant = config.tenants[0].id.to_string();
    let csv = f.write(
        "units.csv",
        &format!("Tapkey Lock ID;Kinnovis Unit Name\n{UNIT_2_LOCK};{UNIT_2}\nnot-a-lock;{UNIT_2}\n"),
    );
    let csv = csv.display().to_string();
    let import = ["mapping", "import", csv.as_str(), "--tenant", tenant.as_str(), "--table", table.as_str()];

    let refused = run(&[&import[..], &["--queue-url", queue.queue_url()]].concat()).await.expect("task");
    assert_eq!(refused.status.code(), Some(1), "{}", String::from_utf8_lossy(&refused.stdout));
    assert!(f.records.stored_mappings(&tenant.as_str().into()).await.expect("table").is_empty());

    let good = f.write("good.csv", &format!("Tapkey Lock ID;Kinnovis Unit Name\n{UNIT_2_LOCK};{UNIT_2}\n"));
    let good = good.display().to_string();
    let import = ["mapping", "import", good.as_str(), "--tenant", tenant.as_str(), "--table", table.as_str()];
    let no_queue = run(&import).await.expect("task");
    assert!(
        String::from_utf8_lossy(&no_queue.stderr).contains("--queue-url"),
        "the affected people need the queue"
    );
    let ok = run(&[&import[..], &["--queue-url", queue.queue_url(), "--json"]].concat()).await.expect("task");
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stderr));
    assert_eq!(f.records.stored_mappings(&tenant.as_str().into()).await.expect("table").len(), 1);

    let locks = run(&["mapping", "locks", "--tenant", tenant.as_str(), "--table", table.as_str()])
        .await
        .expect("task");
    assert_eq!(locks.status.code(), Some(0), "{}", String::from_utf8_lossy(&locks.stderr));
    assert!(
        String::from_utf8_lossy(&locks.stdout).contains(UNIT_2),
        "{}",
        String::from_utf8_lossy(&locks.stdout)
    );
}
