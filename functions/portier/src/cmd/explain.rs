//! `portier explain`: everything Portier knows about one person.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, anyhow, bail};
use shared::clock::SystemClock;
use shared::config::TenantConfig;
use shared::http::RetryPolicy;

use crate::parts::{LocalSecrets, load_config, open_store, table_records};

#[derive(clap::Args)]
pub struct Args {
    /// An email, a source person id (e.g. the Nexudus customer id), or part of a name.
    #[arg(value_name = "EMAIL|ID|NAME")]
    who: String,
    /// Every provider change from this date (YYYY-MM-DD, from midnight in the tenant's time
    /// zone) or instant (RFC 3339) on, instead of the last ten.
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

/// `--since`: an RFC 3339 instant, or a calendar date of the tenant's.
enum Since {
    At(shared::model::Instant),
    Day(chrono::NaiveDate),
}

fn parse_since(raw: &str) -> std::result::Result<Since, String> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(Since::At(t.with_timezone(&chrono::Utc)));
    }
    chrono::NaiveDate::parse_from_str(raw, "%Y-%m-%d")
        .map(Since::Day)
        .map_err(|_| format!("{raw:?} is neither a date (2026-11-01) nor an instant (2026-11-01T08:00:00Z)"))
}

impl Since {
    /// A date starts at midnight in the time zone of the tenants asked about (`--tenant`, or
    /// all) when they share one; in UTC when they do not.
    fn instant(&self, zones: &[&str]) -> Result<shared::model::Instant> {
        let day = match self {
            Since::At(t) => return Ok(*t),
            Since::Day(day) => *day,
        };
        let mut zones = zones.to_vec();
        zones.sort_unstable();
        zones.dedup();
        let name = match zones[..] {
            [one] => one,
            _ => "UTC",
        };
        let zone = shared::localtime::Zone::parse(name).map_err(|e| anyhow!(e))?;
        zone.start_of_day(day).map_err(|e| anyhow!(e))
    }
}

async fn explain(
    who: &str,
    since: Option<Since>,
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
    let zones: Vec<&str> =
        configs.iter().filter(|c| tenant.is_none_or(|t| c.id.0 == t)).map(|c| c.timezone.as_str()).collect();
    let since = since.map(|s| s.instant(&zones)).transpose()?;
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

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn a_since_date_starts_at_midnight_in_the_tenants_zone() {
        let day = parse_since("2026-07-01").unwrap_or_else(|e| panic!("{e}"));
        let utc = |h| chrono::Utc.with_ymd_and_hms(2026, 6, 30, h, 0, 0).single().expect("time");
        assert_eq!(day.instant(&["Europe/Berlin"]).ok(), Some(utc(22)), "summer time: UTC+2");
        assert_eq!(day.instant(&["Europe/Berlin", "Europe/Berlin"]).ok(), Some(utc(22)));
        let midnight_utc = chrono::Utc.with_ymd_and_hms(2026, 7, 1, 0, 0, 0).single().expect("time");
        assert_eq!(
            day.instant(&["Europe/Berlin", "America/New_York"]).ok(),
            Some(midnight_utc),
            "zones differ"
        );
        let at = parse_since("2026-07-01T08:00:00+02:00").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(at.instant(&["America/New_York"]).ok(), Some(utc(22) + chrono::Duration::hours(8)));
    }
}
