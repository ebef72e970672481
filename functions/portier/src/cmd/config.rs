//! `portier config`: check the file, and push it to a Lambda deployment's table.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use clap::Subcommand;
use shared::clock::{Clock, SystemClock};
use shared::config::Config;
use shared::store::Records;
use shared::store::dynamo::DynamoStore;

use crate::parts::load_config;

#[derive(Subcommand)]
pub enum ConfigCommand {
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

pub async fn run(command: ConfigCommand) -> Result<ExitCode> {
    match command {
        ConfigCommand::Push { table, config, json } => config_push(&config, &table, json).await,
        ConfigCommand::Check { config, json } => config_check(&config, json),
    }
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
