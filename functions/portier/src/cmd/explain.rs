//! `portier explain`: everything Portier knows about one person.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use shared::clock::SystemClock;
use shared::config::TenantConfig;
use shared::http::RetryPolicy;

use crate::parts::{LocalSecrets, load_config, open_store, table_records};

#[derive(clap::Args)]
pub struct Args {
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
}

pub async fn run(Args { who, since, tenant, config, data, table, json }: Args) -> Result<ExitCode> {
    let since = match since.as_deref().map(parse_since).transpose() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("portier: --since: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    explain(&who, since, tenant.as_deref(), config.as_deref(), &data, table.as_deref(), json).await
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
