//! `portier`: the single-machine runtime and the operator's command line (design §6.3).

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine;
use clap::{Parser, Subcommand};
use shared::clock::{Clock, SystemClock};
use shared::config::{Config, EnvSecrets, ExposeSecret, Secrets, TenantConfig};
use shared::http::RetryPolicy;
use shared::ingress::Ingress;
use shared::model::ProviderKind;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::resync::{ResyncOptions, ResyncReport};
use shared::serve::{self, Runtime};
use shared::store::Records;
use shared::store::dynamo::DynamoStore;
use shared::store::sqlite::SqliteStore;
use shared::tenants::{StaticTenants, Tenants};
use shared::worker::Worker;

/// `println!` that returns an error instead of panicking when stdout is closed
/// (`portier status | head -1`); `main` ends quietly on that error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

/// `print!` that returns an error instead of panicking when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($arg)*)?
    }};
}

// After the macros, which it uses.
mod demo;

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
        /// Worker tasks working the queue concurrently (one subject is never worked by two).
        #[arg(long, default_value_t = serve::DEFAULT_WORKERS)]
        workers: usize,
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
    /// Full resync: brings every provider into line with the source (or, with --dry-run, prints
    /// exactly what it would change and changes nothing).
    Resync {
        #[command(flatten)]
        local: Local,
        #[command(flatten)]
        aws: Deployment,
        /// Only this tenant [default: all].
        #[arg(long)]
        tenant: Option<String>,
        /// Only this lock system: tapkey, salto_ks or brivo.
        #[arg(long)]
        provider: Option<String>,
        #[arg(long)]
        dry_run: bool,
        /// Only what changed in the source since the last resync (quick; no drift check).
        #[arg(long)]
        incremental: bool,
        /// Remove access without asking (on a terminal, a run that would remove access shows
        /// the plan and asks first).
        #[arg(long)]
        yes: bool,
        #[arg(long)]
        json: bool,
    },
    /// Access at the lock systems that no entitlement justifies, and access that is missing.
    Drift {
        #[command(flatten)]
        local: Local,
        #[command(flatten)]
        aws: Deployment,
        #[arg(long)]
        tenant: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Queue depth, dead letters, failures per tenant and provider, last resync.
    Status {
        /// Also list this file's tenants, even before anything is stored for them.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".portier")]
        data: PathBuf,
        #[command(flatten)]
        aws: Deployment,
        #[arg(long)]
        json: bool,
    },
    /// Unit ↔ lock mappings of a Kinnovis location (stored where `portier serve` reads them).
    Mapping {
        #[command(subcommand)]
        command: MappingCommand,
    },
    /// Every entitlement, mapping, grant and recent failure for one person.
    Explain {
        /// An email, a source person id (e.g. the Nexudus customer id), or part of a name.
        #[arg(value_name = "EMAIL|ID|NAME")]
        who: String,
        /// Every provider change from this date (YYYY-MM-DD, UTC) or instant (RFC 3339) on,
        /// instead of the last ten.
        #[arg(long)]
        since: Option<String>,
        #[arg(long)]
        tenant: Option<String>,
        /// Read tenants and mappings from this file instead of the store's copy.
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".portier")]
        data: PathBuf,
        /// Read the AWS deployment's table instead of `--data` (the stack's `TableName`).
        #[arg(long)]
        table: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Shell completions: `portier completions bash > /etc/bash_completion.d/portier`.
    Completions { shell: clap_complete::Shell },
    /// The configuration file, and that of a Lambda deployment.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Every mistake in the file at once (with file, line and field), including secrets
    /// missing from the environment; exit 1 when there is any.
    Check {
        #[arg(long, default_value = "portier.toml")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
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

/// The AWS deployment to read instead of `--data` (credentials and region from the usual AWS
/// environment: variables, profile, SSO).
#[derive(clap::Args)]
struct Deployment {
    /// The deployment's table (the stack's `TableName` output).
    #[arg(long)]
    table: Option<String>,
    /// The work queue (the stack's `QueueUrl` output), for `status` with `--table`.
    #[arg(long, requires = "table")]
    queue_url: Option<String>,
    /// The dead-letter queue (the stack's `DeadLetterQueueUrl` output).
    #[arg(long, requires = "table")]
    dlq_url: Option<String>,
    /// Where the tenants' secrets are in Secrets Manager (the stack's `SecretsPrefix`)
    /// [default: the environment, as a local run].
    #[arg(long, requires = "table")]
    secrets_prefix: Option<String>,
}

/// The deployment's table as Portier's records.
async fn table_records(table: &str) -> Records {
    let sdk = shared::aws::sdk_config(None).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Records::new(Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, clock.clone())), clock)
}

/// Where a local Portier keeps its configuration and data.
#[derive(clap::Args)]
struct Local {
    /// [default: <data>/demo.toml when `serve --demo` wrote one there, else portier.toml]
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = ".portier")]
    data: PathBuf,
}

impl Local {
    fn config(&self) -> PathBuf {
        config_path(self.config.as_deref(), &self.data)
    }
}

/// The configuration file: the one given, or the demo's in the data folder (so the commands
/// `serve --demo` prints work as printed), or `portier.toml`.
fn config_path(given: Option<&Path>, data: &Path) -> PathBuf {
    match given {
        Some(p) => p.to_owned(),
        None if data.join(DEMO_CONFIG).is_file() => data.join(DEMO_CONFIG),
        None => PathBuf::from("portier.toml"),
    }
}

const DEMO_CONFIG: &str = "demo.toml";
const DEMO_SECRETS: &str = "demo-secrets.json";

/// Secrets from the environment; in a demo's data folder, those the environment lacks come
/// from the demo's own `demo-secrets.json` (simulator credentials, nothing real).
struct LocalSecrets(Option<shared::config::StaticSecrets>);

impl LocalSecrets {
    fn of(data: &Path) -> Result<Self> {
        let path = data.join(DEMO_SECRETS);
        if !path.is_file() {
            return Ok(Self(None));
        }
        let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let map = serde_json::from_str(&text).with_context(|| format!("{} is not JSON", path.display()))?;
        Ok(Self(Some(shared::config::StaticSecrets(map))))
    }
}

impl Secrets for LocalSecrets {
    fn get(&self, name: &str) -> Result<shared::config::Secret, shared::config::ConfigError> {
        match (EnvSecrets.get(name), &self.0) {
            (Ok(s), _) => Ok(s),
            (Err(_), Some(file)) if file.get(name).is_ok() => file.get(name),
            (Err(e), _) => Err(e),
        }
    }
}

#[derive(Subcommand)]
enum MappingCommand {
    /// Imports a CSV with the header `Tapkey Lock ID,Kinnovis Unit Name` (`,` or `;`, as Excel
    /// writes it); all lines or none. Each unit is checked at Kinnovis and each lock at Tapkey.
    Import {
        file: PathBuf,
        #[arg(long)]
        tenant: String,
        /// Check the file only, not its units and locks against Kinnovis and Tapkey.
        #[arg(long)]
        offline: bool,
        /// [default: <data>/demo.toml when the demo wrote one, else portier.toml]
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".portier")]
        data: PathBuf,
        #[command(flatten)]
        aws: Deployment,
        #[arg(long)]
        json: bool,
    },
    /// Lists the Tapkey bound locks (title, id, active state) and the units mapped to each.
    Locks {
        #[arg(long)]
        tenant: String,
        /// [default: <data>/demo.toml when the demo wrote one, else portier.toml]
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long, default_value = ".portier")]
        data: PathBuf,
        #[command(flatten)]
        aws: Deployment,
        #[arg(long)]
        json: bool,
    },
}

fn main() -> ExitCode {
    // With --json, a script reads stdout: usage errors and failures come as JSON there too.
    let json = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if json && e.use_stderr() => {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default().trim_start_matches("error: ");
            let _ = print_json_error(first);
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portier: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // The reader went away (`| head`): nothing more to say, and no one to say it to.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) if json => {
            let _ = print_json_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("portier: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json_error(message: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let v = serde_json::json!({ "error": message });
    writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&v).unwrap_or_default())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve { config, data, listen, demo, json_logs, workers } => {
            shared::telemetry::init(json_logs);
            let data = data.unwrap_or_else(|| PathBuf::from(if demo { ".portier-demo" } else { ".portier" }));
            if demo {
                demo::serve(&data, listen, workers).await?;
            } else {
                let config = load_config(&config)?;
                serve_with(&config, &EnvSecrets, &data, listen, workers).await?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "portier", &mut buf);
            std::io::Write::write_all(&mut std::io::stdout(), &buf)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Send { file, to, secret_env } => send(&file, &to, secret_env.as_deref()).await,
        Command::Mapping { command } => mapping(command).await,
        Command::Explain { who, since, tenant, config, data, table, json } => {
            let since = match since.as_deref().map(parse_since).transpose() {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("portier: --since: {e}");
                    return Ok(ExitCode::from(2));
                }
            };
            explain(&who, since, tenant.as_deref(), config.as_deref(), &data, table.as_deref(), json).await
        }
        Command::Resync { local, aws, tenant, provider, dry_run, incremental, yes, json } => {
            let provider = match provider.as_deref() {
                None => None,
                Some("tapkey") => Some(ProviderKind::Tapkey),
                Some("salto_ks") => Some(ProviderKind::Salto),
                Some("brivo") => Some(ProviderKind::Brivo),
                Some(other) => {
                    eprintln!("portier: unknown provider {other:?} (known: tapkey, salto_ks, brivo)");
                    return Ok(ExitCode::from(2));
                }
            };
            let opts = ResyncOptions { dry_run, incremental, provider };
            let parts = parts_for(&local, &aws, !dry_run).await?;
            if !dry_run
                && !yes
                && !json
                && std::io::stdin().is_terminal()
                && !confirm_removals(&parts, tenant.as_deref(), opts).await?
            {
                outln!("Nothing changed.");
                return Ok(ExitCode::from(1));
            }
            resync_cmd(&parts, tenant.as_deref(), opts, json, Mode::Resync).await
        }
        Command::Drift { local, aws, tenant, json } => {
            resync_cmd(
                &parts_for(&local, &aws, false).await?,
                tenant.as_deref(),
                ResyncOptions { dry_run: true, incremental: false, provider: None },
                json,
                Mode::Drift,
            )
            .await
        }
        Command::Status { config, data, aws, json } => status_cmd(config.as_deref(), &data, &aws, json).await,
        Command::Config { command: ConfigCommand::Push { table, config, json } } => {
            config_push(&config, &table, json).await
        }
        Command::Config { command: ConfigCommand::Check { config, json } } => config_check(&config, json),
    }
}

/// Reads and checks a configuration file; the error lists every mistake, each with the file,
/// line and field.
fn load_config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Config::load(&text, &path.display().to_string()).map_err(|e| {
        anyhow!(
            "{} problem(s) in {}, nothing done (file:line: tenant: field: problem):\n{e}",
            e.problems.len(),
            path.display()
        )
    })
}

/// `portier config check`: every mistake at once, including secrets missing from the
/// environment; exit 1 when there is any.
fn config_check(path: &Path, json: bool) -> Result<ExitCode> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let file = path.display().to_string();
    let problems = match Config::load(&text, &file) {
        Ok(config) => Config::missing_env(&text, &config),
        Err(e) => e.problems,
    };
    let tenants = Config::load(&text, &file).map(|c| c.tenants.len()).unwrap_or(0);
    let report = shared::config::ConfigProblems { file: file.clone(), problems };
    if json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else if report.problems.is_empty() {
        outln!("{file}: ok ({tenants} tenant(s))");
    } else {
        outln!("{report}");
        outln!("{} problem(s) in {file}", report.problems.len());
    }
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

fn open_store(data: &Path, clock: Arc<dyn Clock>) -> Result<Records> {
    let store = SqliteStore::open(&data.join("portier.db"), clock.clone())?;
    Ok(Records::new(Arc::new(store), clock))
}

async fn serve_with(
    config: &Config,
    secrets: &dyn Secrets,
    data: &Path,
    listen: SocketAddr,
    workers: usize,
) -> Result<()> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let records = open_store(data, clock.clone())?;
    let queue: Arc<dyn Queue> = Arc::new(EmbeddedQueue::open(&data.join("queue.db"), clock, MAX_RECEIVES)?);
    // A tenant whose secrets are missing is left out and shown in `status` and `/healthz`;
    // the others are served.
    let (built, broken) = StaticTenants::build_each(config, secrets, RetryPolicy::default());
    store_configs(&records, config).await?;
    for t in &config.tenants {
        let reason = broken.iter().find(|(id, _)| id == &t.id).map(|(_, e)| e.0.as_str());
        if let Some(reason) = reason {
            tracing::error!(tenant = %t.id, reason, "tenant not served: fix its configuration and restart");
        }
        shared::status::set_not_served(&records, &t.id, reason).await?;
    }
    // People whose mappings or policy changed since the last start are reconciled now.
    for t in config.tenants.iter().filter(|t| !broken.iter().any(|(id, _)| id == &t.id)) {
        shared::changes::enqueue_affected(&records, queue.as_ref(), t).await?;
    }
    let tenants: Arc<dyn Tenants> = Arc::new(built);
    let admin = shared::console::admin_auth(config, secrets)?;
    let rt = Runtime {
        ingress: Ingress::new(tenants.clone(), queue.clone(), records.clone()),
        worker: Worker::new(records.clone(), tenants),
        queue,
        records,
    };
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, tenants = config.tenants.len(), workers, console = admin.is_some(), "portier serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = tokio::spawn(serve::run_background(rt.clone(), workers, stop_rx));
    let mut stop_http = stop_tx.subscribe();
    // Header, request and connection timeouts and a connection limit (shared::http_server).
    let limits = shared::http_server::HttpLimits::default();
    // Without an admin token the console is not mounted: /console/ and /api/v1 answer 404.
    let router = match admin {
        Some(auth) => {
            serve::router(rt.clone()).merge(shared::console::router(shared::console::Console::new(rt, auth)))
        }
        None => serve::router(rt),
    };
    shared::http_server::serve(listener, router, limits, async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = stop_http.changed() => {}
        }
    })
    .await;
    let _ = stop_tx.send(true);
    let _ = background.await;
    Ok(())
}

/// `explain` and `status` read tenants and mappings from the store, as they do in a Lambda
/// deployment; every command that reads the config file keeps the store's copy current.
async fn store_configs(records: &Records, config: &Config) -> Result<()> {
    for t in &config.tenants {
        records.put_tenant_config(&t.id, serde_json::to_value(t)?).await?;
    }
    Ok(())
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
    let url = if query.is_empty() { format!("{to}{path}") } else { format!("{to}{path}?{query}") };
    let request = shared::http::client().post(&url).header("content-type", "application/json");
    let request = if path.starts_with("/hooks/kinnovis/") {
        // Standard Webhooks: a fresh id and timestamp, or the replay would be refused as
        // stale (±300 s) or as a reused id.
        let secret = match secret_env {
            Some(name) => EnvSecrets.get(name)?.expose_secret().to_owned(),
            None => demo::secret(demo::Secret::Kinnovis)?,
        };
        let key = shared::ingress::verify::WebhookKey::parse(&secret).map_err(|e| anyhow!(e))?;
        let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
        let now = SystemClock.now().timestamp();
        request
            .header("webhook-id", id.as_str())
            .header("webhook-timestamp", now.to_string())
            .header("webhook-signature", shared::ingress::verify::standard_sign(&key, &id, now, &body))
    } else {
        let secret = match secret_env {
            Some(name) => EnvSecrets.get(name)?.expose_secret().to_owned(),
            None => demo::secret(demo::Secret::Nexudus)?,
        };
        request.header(
            "x-nexudus-hook-signature",
            shared::ingress::verify::nexudus_sign(secret.as_bytes(), &body),
        )
    };
    let response = request.body(body).send().await.with_context(|| format!("sending to {to}"))?;
    let status = response.status();
    outln!("{} {}", status.as_u16(), response.text().await.unwrap_or_default());
    Ok(if status.is_success() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// `--since`: a date (from 00:00 UTC that day) or an RFC 3339 instant.
fn parse_since(raw: &str) -> std::result::Result<shared::model::Instant, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(t.with_timezone(&chrono::Utc));
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            format!("{raw:?} is neither a date (2026-11-01) nor an instant (2026-11-01T08:00:00Z)")
        })
}

async fn explain(
    who: &str,
    since: Option<shared::model::Instant>,
    tenant: Option<&str>,
    config: Option<&Path>,
    data: &Path,
    table: Option<&str>,
    json: bool,
) -> Result<ExitCode> {
    let configured = config.map(load_config).transpose()?;
    let who = shared::explain::Who::parse(who);
    let records = match table {
        Some(table) => table_records(table).await,
        None if !data.join("portier.db").exists() => {
            bail!("no Portier data in {} (run `portier serve` first, or pass --data)", data.display());
        }
        None => open_store(data, Arc::new(SystemClock))?,
    };
    let mut configs: Vec<TenantConfig> = configured.map(|c| c.tenants).unwrap_or_default();
    for id in records.tenant_ids().await?.into_iter().filter(|_| config.is_none()) {
        if let Some(doc) = records.tenant_config(&id).await? {
            configs
                .push(serde_json::from_value(doc).with_context(|| format!("stored config of tenant {id}"))?);
        }
    }
    let reports = shared::explain::explain_who(&records, &configs, &who, tenant, since).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&reports)?);
    } else {
        // Lock names beside their ids, where the tenant's secrets are at hand to ask Tapkey.
        let mut names = shared::explain::Names::default();
        let secrets = LocalSecrets::of(data)?;
        for cfg in configs.iter().filter(|c| reports.iter().any(|r| r.subject.tenant == c.id)) {
            if let Ok(t) = shared::tenants::TenantRuntime::build(
                cfg,
                &secrets,
                &shared::http::client(),
                RetryPolicy::default(),
            ) {
                names.extend(shared::explain::Names::of_tenant(&t).await);
            }
        }
        out!("{}", shared::explain::render_named(&reports, &who, &names));
    }
    let failing = reports.iter().any(|r| !r.failures.is_empty());
    Ok(if failing { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Resync,
    Drift,
}

/// The local store, queue and tenants of a `portier serve` installation.
struct LocalParts {
    records: Records,
    queue: Arc<dyn Queue>,
    tenants: Arc<dyn Tenants>,
    /// Where the tenants come from, for messages: the config file, or the table.
    origin: String,
    /// The AWS deployment's table and queue rather than a local folder.
    deployed: bool,
}

/// The local folder's parts, or (`--table`) the deployment's: its table, its tenants as the
/// functions read them (config from the table, secrets from Secrets Manager), and its queue,
/// which a real resync needs (`--queue-url`) and a dry run never writes.
async fn parts_for(local: &Local, aws: &Deployment, writes: bool) -> Result<LocalParts> {
    let Some(table) = &aws.table else { return local_parts(local).await };
    let sdk = shared::aws::sdk_config(None).await;
    let queue: Arc<dyn Queue> = match (&aws.queue_url, writes) {
        (Some(url), _) => Arc::new(shared::queue::sqs::SqsQueue::new(
            aws_sdk_sqs::Client::new(&sdk),
            url.clone(),
            aws.dlq_url.clone(),
        )),
        (None, true) => bail!("with --table, a real resync needs --queue-url (the stack's QueueUrl output)"),
        (None, false) => Arc::new(EmbeddedQueue::open_in_memory(Arc::new(SystemClock), MAX_RECEIVES)?),
    };
    let secrets: Arc<dyn shared::secrets::TenantSecrets> = match &aws.secrets_prefix {
        Some(prefix) => Arc::new(shared::secrets::SecretsManager::new(
            aws_sdk_secretsmanager::Client::new(&sdk),
            prefix.clone(),
            shared::secrets::SECRETS_TTL,
        )),
        None => Arc::new(shared::secrets::SharedSecrets(Arc::new(EnvSecrets))),
    };
    let records = table_records(table).await;
    let tenants = shared::tenants::TableTenants::new(
        records.clone(),
        secrets,
        RetryPolicy::default(),
        shared::lambda::CONFIG_TTL,
    );
    Ok(LocalParts {
        records,
        queue,
        tenants: Arc::new(tenants),
        origin: format!("table {table}"),
        deployed: true,
    })
}

async fn local_parts(local: &Local) -> Result<LocalParts> {
    let config = load_config(&local.config())?;
    std::fs::create_dir_all(&local.data).with_context(|| format!("creating {}", local.data.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let records = open_store(&local.data, clock.clone())?;
    let queue: Arc<dyn Queue> =
        Arc::new(EmbeddedQueue::open(&local.data.join("queue.db"), clock, MAX_RECEIVES)?);
    let tenants: Arc<dyn Tenants> =
        Arc::new(StaticTenants::build(&config, &LocalSecrets::of(&local.data)?, RetryPolicy::default())?);
    store_configs(&records, &config).await?;
    let origin = local.config().display().to_string();
    Ok(LocalParts { records, queue, tenants, origin, deployed: false })
}

/// A progress line on a terminal: counts and rate; nothing when output is piped.
fn progress_bar(label: String) -> impl FnMut(usize, usize) + Send {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut last_draw = std::time::Instant::now() - std::time::Duration::from_secs(1);
    move |done, total| {
        if !tty || (done < total && last_draw.elapsed() < std::time::Duration::from_millis(100)) {
            return;
        }
        last_draw = std::time::Instant::now();
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{label} [{}{}] {done}/{total} {rate:.0}/s",
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        if done >= total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// On a terminal, before a real run: the dry run's plan, and a question when it takes access
/// away. True when the run may go ahead.
async fn confirm_removals(parts: &LocalParts, tenant: Option<&str>, opts: ResyncOptions) -> Result<bool> {
    let ids = match tenant {
        Some(t) => vec![shared::model::TenantId(t.to_owned())],
        None => parts.tenants.ids().await?,
    };
    let mut removals = 0;
    for id in ids {
        let Some(runtime) = parts.tenants.get(&id).await? else { continue };
        let dry = ResyncOptions { dry_run: true, ..opts };
        let report =
            shared::resync::resync(&parts.records, &runtime, parts.queue.as_ref(), dry, &mut |_, _| {})
                .await?;
        if report.removals() > 0 {
            out!("{}", render_resync(&report));
        }
        removals += report.removals();
    }
    if removals == 0 {
        return Ok(true);
    }
    out!("\nThis run takes away {removals} access(es) listed above. Go ahead? [y/N] ");
    std::io::Write::flush(&mut std::io::stdout())?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

async fn resync_cmd(
    parts: &LocalParts,
    tenant: Option<&str>,
    opts: ResyncOptions,
    json: bool,
    mode: Mode,
) -> Result<ExitCode> {
    let ids = match tenant {
        Some(t) => vec![shared::model::TenantId(t.to_owned())],
        None => parts.tenants.ids().await?,
    };
    let mut reports = Vec::new();
    let mut failed = false;
    for id in ids {
        let Some(runtime) = parts.tenants.get(&id).await? else {
            eprintln!("portier: no tenant {id} in {}", parts.origin);
            return Ok(ExitCode::from(2));
        };
        let mut bar = progress_bar(format!("{} {id}", if opts.dry_run { "planning" } else { "resyncing" }));
        match shared::resync::resync(&parts.records, &runtime, parts.queue.as_ref(), opts, &mut bar).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("portier: resync of {id} stopped: {e} (run it again: it resumes where it stopped)");
                failed = true;
            }
        }
    }
    if !opts.dry_run && !parts.deployed {
        // Work the fanned-out reconciles here too, so the change is made even if no
        // `portier serve` is running; a running one shares the work. (A deployment's own
        // worker functions do it there.)
        drain(parts).await?;
    }
    if json {
        let value = match mode {
            Mode::Resync => serde_json::to_value(&reports)?,
            Mode::Drift => {
                serde_json::to_value(reports.iter().map(shared::resync::DriftReport::of).collect::<Vec<_>>())?
            }
        };
        outln!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for r in &reports {
            out!("{}", if mode == Mode::Drift { render_drift(r) } else { render_resync(r) });
        }
    }
    let findings = mode == Mode::Drift
        && reports.iter().any(|r| {
            !r.drift.unjustified.is_empty()
                || !r.drift.vanished.is_empty()
                || !shared::resync::Drift::missing(&r.plans).is_empty()
        });
    Ok(if failed || findings { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// Works the local queue until it is empty (what a running `portier serve` would do).
async fn drain(parts: &LocalParts) -> Result<()> {
    let rt = Runtime {
        ingress: Ingress::new(parts.tenants.clone(), parts.queue.clone(), parts.records.clone()),
        worker: Worker::new(parts.records.clone(), parts.tenants.clone()),
        queue: parts.queue.clone(),
        records: parts.records.clone(),
    };
    loop {
        let r = serve::work_batch(&rt, std::time::Duration::ZERO).await?;
        if r.done + r.retried == 0 {
            return Ok(());
        }
    }
}

async fn work_queue(local: &Local) -> Result<()> {
    drain(&local_parts(local).await?).await
}

fn describe(op: &shared::plan::Op) -> String {
    match op {
        shared::plan::Op::Grant { target, window, email, .. } => {
            format!("+ grant   {target:<50} {window}  ({email})")
        }
        shared::plan::Op::Revoke { applied } => {
            format!("- revoke  {:<50} {}  ({})", applied.target.to_string(), applied.window, applied.email)
        }
    }
}

fn render_resync(r: &ResyncReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let verb = if r.dry_run { "would make" } else { "made" };
    let _ = writeln!(
        out,
        "Tenant {}: {} people, {} changed in the source, {verb} {} operations{}",
        r.tenant,
        r.people,
        r.changed,
        r.op_count(),
        if r.resumed { " (resumed an interrupted run)" } else { "" }
    );
    for p in &r.plans {
        let _ =
            writeln!(out, "\n  {} ({})", if p.name.is_empty() { "(no name)" } else { &p.name }, p.subject);
        for op in &p.ops {
            let _ = writeln!(out, "    {}", describe(op));
        }
        for op in &p.user_ops {
            let _ = writeln!(out, "    * {op}");
        }
    }
    if r.removed_unjustified > 0 {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        let _ = writeln!(out, "\n  Access no entitlement justifies, which adoption = \"clean_slate\" {verb}");
        for h in &r.drift.unjustified {
            let who = h.email.as_ref().map_or("(unknown contact)".to_owned(), ToString::to_string);
            let _ = writeln!(
                out,
                "    - remove  {:<50} {}  ({who}, id {})",
                h.target.to_string(),
                h.window,
                h.id
            );
        }
    } else if !r.drift.unjustified.is_empty() {
        let _ = writeln!(
            out,
            "\n  {} grants at the providers that no entitlement justifies (see `portier drift`)",
            r.drift.unjustified.len()
        );
    }
    out
}

fn render_drift(r: &ResyncReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "Tenant {}", r.tenant);
    let _ = writeln!(out, "\n  Access no entitlement justifies ({})", r.drift.unjustified.len());
    for h in &r.drift.unjustified {
        let who = h.email.as_ref().map_or("(unknown contact)".to_owned(), ToString::to_string);
        let _ = writeln!(out, "    {:<50} {who:<30} {}  id {}", h.target.to_string(), h.window, h.id);
    }
    let _ =
        writeln!(out, "\n  Access Portier created that is gone at the provider ({})", r.drift.vanished.len());
    for (s, a) in &r.drift.vanished {
        let _ =
            writeln!(out, "    {:<50} {:<30} {}  ({s})", a.target.to_string(), a.email.to_string(), a.window);
    }
    let missing = shared::resync::Drift::missing(&r.plans);
    let _ = writeln!(out, "\n  Access that should exist but does not ({})", missing.len());
    for (s, op) in &missing {
        let _ = writeln!(out, "    {}  ({s})", describe(op));
    }
    out
}

async fn status_cmd(config: Option<&Path>, data: &Path, aws: &Deployment, json: bool) -> Result<ExitCode> {
    let configured = config.map(load_config).transpose()?;
    let (records, queue): (Records, Box<dyn Queue>) = match &aws.table {
        Some(table) => {
            let Some(url) = &aws.queue_url else {
                bail!("with --table, pass --queue-url too (the stack's QueueUrl output)");
            };
            let sdk = shared::aws::sdk_config(None).await;
            let sqs = shared::queue::sqs::SqsQueue::new(
                aws_sdk_sqs::Client::new(&sdk),
                url.clone(),
                aws.dlq_url.clone(),
            );
            (table_records(table).await, Box::new(sqs))
        }
        None => {
            if !data.join("portier.db").exists() {
                bail!("no Portier data in {} (run `portier serve` first, or pass --data)", data.display());
            }
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let records = open_store(data, clock.clone())?;
            (records, Box::new(EmbeddedQueue::open(&data.join("queue.db"), clock, MAX_RECEIVES)?))
        }
    };
    let mut tenants = records.tenant_ids().await?;
    for t in configured.iter().flat_map(|c| &c.tenants) {
        if !tenants.contains(&t.id) {
            tenants.push(t.id.clone());
        }
    }
    let status = shared::status::status(&records, queue.as_ref(), &tenants).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        out!("{}", shared::status::render(&status));
    }
    Ok(if status.has_failures() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// The tenant's clients (from the config file and the environment) and the local store.
async fn tenant_and_store(
    config: &Path,
    tenant: &str,
    data: &Path,
) -> Result<(Records, shared::tenants::TenantRuntime)> {
    let config = load_config(config)?;
    let tenant_config = config
        .tenant(&tenant.into())
        .ok_or_else(|| anyhow!("tenant {tenant} is not in the configuration"))?;
    let runtime = shared::tenants::TenantRuntime::build(
        tenant_config,
        &LocalSecrets::of(data)?,
        &shared::http::client(),
        RetryPolicy::default(),
    )?;
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    Ok((open_store(data, Arc::new(SystemClock))?, runtime))
}

async fn mapping(command: MappingCommand) -> Result<ExitCode> {
    match command {
        MappingCommand::Import { file, tenant, offline, aws, json, .. } if aws.table.is_some() => {
            mapping_import_deployed(&file, &tenant, offline, &aws, json).await
        }
        MappingCommand::Locks { tenant, aws, json, .. } if aws.table.is_some() => {
            let parts = parts_for(&Local { config: None, data: PathBuf::new() }, &aws, false).await?;
            let runtime = deployed_tenant(&parts, &tenant).await?;
            print_locks(&shared::mapping::locks(&parts.records, &runtime).await?, json)
        }
        MappingCommand::Import { file, tenant, offline, config, data, json, .. } => {
            let config = config_path(config.as_deref(), &data);
            let text = read_csv(&file)?;
            let config_doc = load_config(&config)?;
            let tenant_config = config_doc
                .tenant(&tenant.as_str().into())
                .ok_or_else(|| anyhow!("tenant {tenant} is not in {}", config.display()))?;
            std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
            let clock: Arc<dyn Clock> = Arc::new(SystemClock);
            let records = open_store(&data, clock.clone())?;
            let runtime = if offline {
                None
            } else {
                Some(shared::tenants::TenantRuntime::build(
                    tenant_config,
                    &LocalSecrets::of(&data)?,
                    &shared::http::client(),
                    RetryPolicy::default(),
                )?)
            };
            let check = match &runtime {
                Some(r) => shared::mapping::Check::Online(r),
                None => shared::mapping::Check::Offline,
            };
            let report = match shared::mapping::import(&records, tenant_config, check, &text).await {
                Ok(report) => report,
                Err(shared::mapping::ImportError::Invalid(errors)) => {
                    return print_problems(&file, &errors, json);
                }
                Err(e) => return Err(e.into()),
            };
            // The people whose units changed are reconciled now, not at the next resync.
            let queue = EmbeddedQueue::open(&data.join("queue.db"), clock, MAX_RECEIVES)?;
            let queued = shared::changes::enqueue_affected(&records, &queue, tenant_config).await?;
            drop(queue);
            let worked = if queued > 0 && !offline {
                work_queue(&Local { config: Some(config.clone()), data: data.clone() }).await.is_ok()
            } else {
                false
            };
            let how = if worked { "reconciled" } else { "queued for `portier serve`" };
            print_import(&report, &tenant, queued, how, json)
        }
        MappingCommand::Locks { tenant, config, data, json, .. } => {
            let config = config_path(config.as_deref(), &data);
            let (records, runtime) = tenant_and_store(&config, &tenant, &data).await?;
            print_locks(&shared::mapping::locks(&records, &runtime).await?, json)
        }
    }
}

/// A mapping file as text; Excel's "CSV" without UTF-8 is refused with how to save it.
fn read_csv(file: &Path) -> Result<String> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    String::from_utf8(bytes)
        .map_err(|_| anyhow!("{} is not UTF-8 text (in Excel: save as \"CSV UTF-8\")", file.display()))
}

/// A refused import: every problem, nothing stored.
fn print_problems(file: &Path, errors: &[String], json: bool) -> Result<ExitCode> {
    if json {
        let out = serde_json::json!({ "file": file, "imported": 0, "problems": errors });
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        eprintln!("{}: {} problem(s), nothing imported", file.display(), errors.len());
        for e in errors {
            eprintln!("  {e}");
        }
    }
    Ok(ExitCode::FAILURE)
}

fn print_locks(report: &shared::mapping::LocksReport, json: bool) -> Result<ExitCode> {
    if json {
        outln!("{}", serde_json::to_string_pretty(report)?);
    } else {
        out!("{}", shared::mapping::render_locks(report));
    }
    Ok(if report.warnings.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn print_import(
    report: &shared::mapping::ImportReport,
    tenant: &str,
    queued: usize,
    how: &str,
    json: bool,
) -> Result<ExitCode> {
    if json {
        let mut out = serde_json::to_value(report)?;
        out["queued"] = queued.into();
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        outln!(
            "imported {} unit mapping(s) for tenant {tenant} ({} replaced{})",
            report.imported,
            report.replaced,
            if report.checked { "" } else { "; not checked against Kinnovis and Tapkey: --offline" }
        );
        if queued > 0 {
            outln!("{queued} person(s) whose units changed {how}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The tenant as the deployment's functions see it (config from the table).
async fn deployed_tenant(parts: &LocalParts, tenant: &str) -> Result<Arc<shared::tenants::TenantRuntime>> {
    parts
        .tenants
        .get(&tenant.into())
        .await?
        .ok_or_else(|| anyhow!("tenant {tenant} is not in {}", parts.origin))
}

/// `mapping import --table`: stored in the deployment's table, where its worker reads
/// mappings; the people affected are queued for its worker (`--queue-url`).
async fn mapping_import_deployed(
    file: &Path,
    tenant: &str,
    offline: bool,
    aws: &Deployment,
    json: bool,
) -> Result<ExitCode> {
    let text = read_csv(file)?;
    let parts = parts_for(&Local { config: None, data: PathBuf::new() }, aws, true).await?;
    let runtime = deployed_tenant(&parts, tenant).await?;
    let check =
        if offline { shared::mapping::Check::Offline } else { shared::mapping::Check::Online(&runtime) };
    let report = match shared::mapping::import(&parts.records, &runtime.config, check, &text).await {
        Ok(report) => report,
        Err(shared::mapping::ImportError::Invalid(errors)) => return print_problems(file, &errors, json),
        Err(e) => return Err(e.into()),
    };
    let queued =
        shared::changes::enqueue_affected(&parts.records, parts.queue.as_ref(), &runtime.config).await?;
    print_import(&report, tenant, queued, "queued for the deployment's worker", json)
}

/// `portier config push`: the whole file is checked before anything is written; tenants are
/// written one by one (each write is a plain overwrite, so a repeated push is harmless).
async fn config_push(path: &Path, table: &str, json: bool) -> Result<ExitCode> {
    let config = load_config(path)?;
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
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        for p in &pushed {
            let keys: Vec<&str> =
                p["secret_keys"].as_array().into_iter().flatten().filter_map(|k| k.as_str()).collect();
            outln!(
                "pushed tenant {}; its secret needs the keys: {}",
                p["tenant"].as_str().unwrap_or_default(),
                keys.join(", ")
            );
        }
        for id in &stale {
            outln!("tenant {id} is in the table but not in {}: left as it is", path.display());
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
