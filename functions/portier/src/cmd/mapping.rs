//! `portier mapping`: Kinnovis unit ↔ Tapkey lock mappings.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow};
use clap::Subcommand;
use shared::clock::{Clock, SystemClock};
use shared::http::RetryPolicy;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::Records;

use crate::parts::{
    Deployment, Local, LocalSecrets, MAX_RECEIVES, deployed_tenant, load_config, open_store, parts_for,
    work_queue,
};

#[derive(Subcommand)]
pub enum MappingCommand {
    /// Imports a CSV with the header `Tapkey Lock ID,Kinnovis Unit Name` (`,` or `;`, as Excel
    /// writes it); all lines or none. Each unit is checked at Kinnovis and each lock at Tapkey.
    Import {
        file: PathBuf,
        #[arg(long)]
        tenant: String,
        /// Check the file only, not its units and locks against Kinnovis and Tapkey.
        #[arg(long)]
        offline: bool,
        #[command(flatten)]
        place: Place,
    },
    /// Lists the Tapkey bound locks (title, id, active state) and the units mapped to each.
    Locks {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        place: Place,
    },
}

/// Where the mappings are: the local folder, or the deployment's table.
#[derive(clap::Args)]
pub struct Place {
    #[command(flatten)]
    local: Local,
    #[command(flatten)]
    aws: Deployment,
    #[arg(long)]
    json: bool,
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

pub async fn run(command: MappingCommand) -> Result<ExitCode> {
    match command {
        MappingCommand::Import { file, tenant, offline, place: Place { aws, json, .. } }
            if aws.table.is_some() =>
        {
            mapping_import_deployed(&file, &tenant, offline, &aws, json).await
        }
        MappingCommand::Locks { tenant, place: Place { aws, json, .. } } if aws.table.is_some() => {
            let parts = parts_for(&Local { config: None, data: PathBuf::new() }, &aws, false).await?;
            let runtime = deployed_tenant(&parts, &tenant).await?;
            print_locks(&shared::mapping::locks(&parts.records, &runtime).await?, json)
        }
        MappingCommand::Import { file, tenant, offline, place: Place { local, json, .. } } => {
            import_local(&file, &tenant, offline, local.config(), local.data, json).await
        }
        MappingCommand::Locks { tenant, place: Place { local, json, .. } } => {
            let (records, runtime) = tenant_and_store(&local.config(), &tenant, &local.data).await?;
            print_locks(&shared::mapping::locks(&records, &runtime).await?, json)
        }
    }
}

/// `mapping import` into the local folder; the people affected are reconciled here when the
/// units and locks were checked, else queued for `portier serve`.
async fn import_local(
    file: &Path,
    tenant: &str,
    offline: bool,
    config: PathBuf,
    data: PathBuf,
    json: bool,
) -> Result<ExitCode> {
    let text = read_csv(file)?;
    let config_doc = load_config(&config)?;
    let tenant_config = config_doc
        .tenant(&tenant.into())
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
            return print_problems(file, &errors, json);
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
    print_import(&report, tenant, queued, how, json)
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
