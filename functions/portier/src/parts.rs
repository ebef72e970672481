//! Where a command's store, queue and tenants come from: a local folder (what `portier serve`
//! runs on) or, with `--table`, the AWS deployment.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use shared::clock::{Clock, SystemClock};
use shared::config::{Config, EnvSecrets, Secrets};
use shared::http::RetryPolicy;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::serve::{self, Runtime};
use shared::store::Records;
use shared::store::dynamo::DynamoStore;
use shared::store::sqlite::SqliteStore;
use shared::tenants::{StaticTenants, Tenants};

/// How many times a message is received before it goes to the dead-letter queue.
pub const MAX_RECEIVES: u32 = 10;

/// The AWS deployment to read instead of `--data` (credentials and region from the usual AWS
/// environment: variables, profile, SSO).
#[derive(clap::Args)]
pub struct Deployment {
    /// The deployment's table (the stack's `TableName` output).
    #[arg(long)]
    pub table: Option<String>,
    /// The work queue (the stack's `QueueUrl` output), for `status` with `--table`.
    #[arg(long, requires = "table")]
    pub queue_url: Option<String>,
    /// The dead-letter queue (the stack's `DeadLetterQueueUrl` output).
    #[arg(long, requires = "table")]
    pub dlq_url: Option<String>,
    /// Where the tenants' secrets are in Secrets Manager (the stack's `SecretsPrefix`)
    /// [default: the environment, as a local run].
    #[arg(long, requires = "table")]
    pub secrets_prefix: Option<String>,
}

/// The deployment's table as Portier's records.
pub async fn table_records(table: &str) -> Records {
    let sdk = shared::aws::sdk_config(None).await;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Records::new(Arc::new(DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), table, clock.clone())), clock)
}

/// Where a local Portier keeps its configuration and data.
#[derive(clap::Args)]
pub struct Local {
    /// [default: <data>/demo.toml when `serve --demo` wrote one there, else portier.toml]
    #[arg(long)]
    pub config: Option<PathBuf>,
    #[arg(long, default_value = ".portier")]
    pub data: PathBuf,
}

impl Local {
    /// The configuration file ([`config_path`]).
    pub fn config(&self) -> PathBuf {
        config_path(self.config.as_deref(), &self.data)
    }
}

/// The configuration file: the one given, or the demo's in the data folder (so the commands
/// `serve --demo` prints work as printed), or `portier.toml`.
pub fn config_path(given: Option<&Path>, data: &Path) -> PathBuf {
    match given {
        Some(p) => p.to_owned(),
        None if data.join(DEMO_CONFIG).is_file() => data.join(DEMO_CONFIG),
        None => PathBuf::from("portier.toml"),
    }
}

pub const DEMO_CONFIG: &str = "demo.toml";
pub const DEMO_SECRETS: &str = "demo-secrets.json";

/// Secrets from the environment; in a demo's data folder, those the environment lacks come
/// from the demo's own `demo-secrets.json` (simulator credentials, nothing real).
pub struct LocalSecrets(Option<shared::config::StaticSecrets>);

impl LocalSecrets {
    pub fn of(data: &Path) -> Result<Self> {
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

/// Reads and checks a configuration file; the error lists every mistake, each with the file,
/// line and field.
pub fn load_config(path: &Path) -> Result<Config> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Config::load(&text, &path.display().to_string()).map_err(|e| {
        anyhow!(
            "{} problem(s) in {}, nothing done (file:line: tenant: field: problem):\n{e}",
            e.problems.len(),
            path.display()
        )
    })
}

pub fn open_store(data: &Path, clock: Arc<dyn Clock>) -> Result<Records> {
    let store = SqliteStore::open(&data.join("portier.db"), clock.clone())?;
    Ok(Records::new(Arc::new(store), clock))
}

/// The local store, queue and tenants of a `portier serve` installation.
/// The store and work queue of the deployment (`--table`) or of a local `portier serve`.
pub async fn records_and_queue(data: &Path, aws: &Deployment) -> Result<(Records, Box<dyn Queue>)> {
    Ok(match &aws.table {
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
    })
}

pub struct LocalParts {
    pub records: Records,
    pub queue: Arc<dyn Queue>,
    pub tenants: Arc<dyn Tenants>,
    /// Where the tenants come from, for messages: the config file, or the table.
    pub origin: String,
    /// The AWS deployment's table and queue rather than a local folder.
    pub deployed: bool,
}

/// The local folder's parts, or (`--table`) the deployment's: its table, its tenants as the
/// functions read them (config from the table, secrets from Secrets Manager), and its queue,
/// which a real resync needs (`--queue-url`) and a dry run never writes.
pub async fn parts_for(local: &Local, aws: &Deployment, writes: bool) -> Result<LocalParts> {
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

pub async fn local_parts(local: &Local) -> Result<LocalParts> {
    let config = load_config(&local.config())?;
    std::fs::create_dir_all(&local.data).with_context(|| format!("creating {}", local.data.display()))?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let records = open_store(&local.data, clock.clone())?;
    let queue: Arc<dyn Queue> =
        Arc::new(EmbeddedQueue::open(&local.data.join("queue.db"), clock, MAX_RECEIVES)?);
    let tenants: Arc<dyn Tenants> =
        Arc::new(StaticTenants::build(&config, &LocalSecrets::of(&local.data)?, RetryPolicy::default())?);
    serve::store_configs(&records, &config).await?;
    let origin = local.config().display().to_string();
    Ok(LocalParts { records, queue, tenants, origin, deployed: false })
}

/// Works the local queue until it is empty (what a running `portier serve` would do).
pub async fn drain(parts: &LocalParts) -> Result<()> {
    let rt = Runtime::new(parts.tenants.clone(), parts.queue.clone(), parts.records.clone());
    loop {
        let r = serve::work_batch(&rt, std::time::Duration::ZERO).await?;
        if r.done + r.retried == 0 {
            return Ok(());
        }
    }
}

pub async fn work_queue(local: &Local) -> Result<()> {
    drain(&local_parts(local).await?).await
}

/// The tenant as the deployment's functions see it (config from the table).
pub async fn deployed_tenant(
    parts: &LocalParts,
    tenant: &str,
) -> Result<Arc<shared::tenants::TenantRuntime>> {
    parts
        .tenants
        .get(&tenant.into())
        .await?
        .ok_or_else(|| anyhow!("tenant {tenant} is not in {}", parts.origin))
}
