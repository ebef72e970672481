//! `portier`: the single-machine runtime and the operator's command line (design §6.3).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use clap::{Parser, Subcommand};
use shared::clock::{Clock, SystemClock};
use shared::config::{Config, EnvSecrets, Secrets, TenantConfig};
use shared::http::RetryPolicy;
use shared::ingress::Ingress;
use shared::model::Email;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::serve::{self, Runtime};
use shared::store::Records;
use shared::store::dynamo::DynamoStore;
use shared::store::sqlite::SqliteStore;
use shared::tenants::{StaticTenants, Tenants};
use shared::worker::Worker;

/// How many times a message is received before it goes to the dead-letter queue.
const MAX_RECEIVES: u32 = 10;

#[derive(Parser)]
#[command(name = "portier", version, about = "Keeps door access in step with your space-management system")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Webhook routes, worker and tick in one process, with an embedded store and queue.
    Serve {
        #[arg(long, default_value = "portier.toml")]
        config: PathBuf,
        /// Folder for the embedded store and queue [default: .portier, or .portier-demo with --demo].
        #[arg(long)]
        data: Option<PathBuf>,
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
        /// Run against built-in simulators of Nexudus and Tapkey with a demo configuration.
        #[arg(long)]
        demo: bool,
        /// Log JSON lines instead of text.
        #[arg(long)]
        json_logs: bool,
    },
    /// Replays a sample webhook from `events/` (an API Gateway event), signed with the demo secret.
    Send {
        file: PathBuf,
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        to: String,
        /// Environment variable holding the HMAC secret to sign with [default: the demo secret].
        #[arg(long)]
        secret_env: Option<String>,
    },
    /// Every entitlement, mapping, grant and recent failure for one person.
    Explain {
        email: String,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long, default_value = ".portier")]
        data: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// The configuration of a Lambda deployment.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Checks portier.toml, then writes each tenant's document to the deployment's table
    /// (AWS credentials and region from the usual places: environment, profile, SSO).
    Push {
        /// The table (the stack's `TableName` output).
        #[arg(long)]
        table: String,
        #[arg(long, default_value = "portier.toml")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portier: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("portier: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { config, data, listen, demo, json_logs } => {
            shared::telemetry::init(json_logs);
            let data = data.unwrap_or_else(|| PathBuf::from(if demo { ".portier-demo" } else { ".portier" }));
            if demo {
                let demo = testkit::demo::start().await;
                write_demo_config(&demo, &data)?;
                print_demo_help(&demo, listen, &data);
                serve_with(&demo.config, &demo.secrets, &data, listen).await?;
            } else {
                let text = std::fs::read_to_string(&config)
                    .with_context(|| format!("reading {}", config.display()))?;
                let config = Config::parse_toml(&text)?;
                serve_with(&config, &EnvSecrets, &data, listen).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Send { file, to, secret_env } => send(&file, &to, secret_env.as_deref()).await,
        Command::Explain { email, tenant, data, json } => {
            explain(&email, tenant.as_deref(), &data, json).await
        }
        Command::Config { command: ConfigCommand::Push { table, config, json } } => {
            config_push(&config, &table, json).await
        }
    }
}

fn open_store(data: &Path, clock: Arc<dyn Clock>) -> Result<Records> {
    let store = SqliteStore::open(&data.join("portier.db"), clock.clone())?;
    Ok(Records::new(Arc::new(store), clock))
}

async fn serve_with(config: &Config, secrets: &dyn Secrets, data: &Path, listen: SocketAddr) -> Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let records = open_store(data, clock.clone())?;
    let queue: Arc<dyn Queue> = Arc::new(EmbeddedQueue::open(&data.join("queue.db"), clock, MAX_RECEIVES)?);
    let tenants: Arc<dyn Tenants> = Arc::new(StaticTenants::build(config, secrets, RetryPolicy::default())?);
    // `explain` and `status` read mappings from the store, as they do in a Lambda deployment.
    for t in &config.tenants {
        records.put_tenant_config(&t.id, serde_json::to_value(t)?).await?;
    }
    let rt = Runtime {
        ingress: Ingress::new(tenants.clone(), queue.clone(), records.clone()),
        worker: Worker::new(records.clone(), tenants),
        queue,
        records,
    };
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, tenants = config.tenants.len(), "portier serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = tokio::spawn(serve::run_background(rt.clone(), stop_rx));
    let mut stop_http = stop_tx.subscribe();
    axum::serve(listener, serve::router(rt))
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = stop_http.changed() => {}
            }
        })
        .await?;
    let _ = stop_tx.send(true);
    let _ = background.await;
    Ok(())
}

/// The demo's config and secrets as files, for trying the Lambda functions against the same
/// simulators (`scripts/lambda-local.sh`: `portier config push`, and the secret's JSON).
fn write_demo_config(demo: &testkit::demo::Demo, data: &Path) -> Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let toml = toml::to_string(&demo.config).context("demo config as TOML")?;
    std::fs::write(data.join("demo.toml"), toml).context("writing demo.toml")?;
    let secrets = serde_json::to_string_pretty(&demo.secrets.0)?;
    std::fs::write(data.join("demo-secrets.json"), secrets).context("writing demo-secrets.json")?;
    Ok(())
}

fn print_demo_help(demo: &testkit::demo::Demo, listen: SocketAddr, data: &Path) {
    println!(
        "Portier demo\n\
         \n  webhooks   http://{listen}/hooks/nexudus/demo/{{action}}\
         \n  Nexudus    {} (simulator; customer 456 Anna Müller holds the pass \"Bike Storage\")\
         \n  Tapkey     {} (simulator; lock \"Bike Storage Door\")\
         \n\nTry, in another terminal:\
         \n  portier send events/nexudus-access-control-update.json --to http://{listen}\
         \n  curl -s {}/_sim/state        # the Tapkey grant for anna@example.com\
         \n  portier explain anna@example.com --data {}\
         \n  portier send events/nexudus-coworker-delete.json --to http://{listen}   # revokes it\n",
        demo.nexudus.base_url(),
        demo.tapkey.base_url(),
        demo.tapkey.base_url().trim_end_matches("/api/v1"),
        data.display(),
    );
}

/// Replays an API Gateway event file against a running Portier.
async fn send(file: &Path, to: &str, secret_env: Option<&str>) -> Result<ExitCode> {
    let text = std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let event: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not JSON", file.display()))?;
    let path = event["rawPath"].as_str().ok_or_else(|| anyhow!("{}: no rawPath", file.display()))?;
    let query = event["rawQueryString"].as_str().unwrap_or_default();
    let raw_body = event["body"].as_str().unwrap_or_default();
    let body = if event["isBase64Encoded"].as_bool().unwrap_or(false) {
        base64::engine::general_purpose::STANDARD.decode(raw_body).context("body is not valid base64")?
    } else {
        raw_body.as_bytes().to_vec()
    };
    let secret = match secret_env {
        Some(name) => EnvSecrets.get(name)?.expose().to_owned(),
        None => testkit::demo::DEMO_HOOK_SECRET.to_owned(),
    };
    let signature = shared::ingress::verify::nexudus_sign(secret.as_bytes(), &body);
    let url = if query.is_empty() { format!("{to}{path}") } else { format!("{to}{path}?{query}") };
    let response = shared::http::client()
        .post(&url)
        .header("content-type", "application/json")
        .header("x-nexudus-hook-signature", signature)
        .body(body)
        .send()
        .await
        .with_context(|| format!("sending to {to}"))?;
    let status = response.status();
    println!("{} {}", status.as_u16(), response.text().await.unwrap_or_default());
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn explain(email: &str, tenant: Option<&str>, data: &Path, json: bool) -> Result<ExitCode> {
    let email = Email::parse(email).map_err(|e| anyhow!(e))?;
    if !data.join("portier.db").exists() {
        bail!("no Portier data in {} (run `portier serve` first, or pass --data)", data.display());
    }
    let records = open_store(data, Arc::new(SystemClock))?;
    let mut configs: Vec<TenantConfig> = Vec::new();
    for id in records.tenant_ids().await? {
        if let Some(doc) = records.tenant_config(&id).await? {
            configs
                .push(serde_json::from_value(doc).with_context(|| format!("stored config of tenant {id}"))?);
        }
    }
    let reports = shared::explain::explain(&records, &configs, &email, tenant).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        print!("{}", shared::explain::render(&reports, &email));
    }
    let failing = reports.iter().any(|r| !r.failures.is_empty());
    Ok(if failing { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// `portier config push`: the whole file is checked before anything is written; tenants are
/// written one by one (each write is a plain overwrite, so a repeated push is harmless).
async fn config_push(path: &Path, table: &str, json: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let config = Config::parse_toml(&text).with_context(|| format!("{} is not valid", path.display()))?;
    if config.tenants.is_empty() {
        bail!("{} has no [[tenant]]: nothing to push", path.display());
    }
    let sdk = shared::aws::sdk_config(None).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, clock.clone());
    let records = Records::new(Arc::new(store), clock);
    let before = records.tenant_ids().await.with_context(|| format!("reading table {table}"))?;

    let mut pushed = Vec::new();
    for t in &config.tenants {
        let doc = serde_json::to_value(t)?;
        let mut names = std::collections::BTreeSet::new();
        secret_names(&doc, &mut names);
        records
            .put_tenant_config(&t.id, doc)
            .await
            .with_context(|| format!("writing tenant {} to table {table}", t.id))?;
        pushed.push(serde_json::json!({ "tenant": t.id, "secret_keys": names }));
    }
    let stale: Vec<_> = before.iter().filter(|id| config.tenant(id).is_none()).collect();
    if json {
        let out = serde_json::json!({ "table": table, "pushed": pushed, "not_in_file": stale });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for p in &pushed {
            let keys: Vec<&str> =
                p["secret_keys"].as_array().into_iter().flatten().filter_map(|k| k.as_str()).collect();
            println!(
                "pushed tenant {}; its secret needs the keys: {}",
                p["tenant"].as_str().unwrap_or_default(),
                keys.join(", ")
            );
        }
        for id in &stale {
            println!("tenant {id} is in the table but not in {}: left as it is", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The secret names a tenant document refers to: every `…_env` value, whatever the source or
/// provider, so the list stays complete as systems are added.
fn secret_names(doc: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
    match doc {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match v {
                    serde_json::Value::String(name) if k.ends_with("_env") => {
                        out.insert(name.clone());
                    }
                    _ => secret_names(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| secret_names(v, out)),
        _ => {}
    }
}
