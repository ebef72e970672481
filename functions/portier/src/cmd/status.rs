//! `portier status`: queue, dead letters, failures, last resync.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Result;

use crate::parts::{Deployment, load_config, records_and_queue};

#[derive(clap::Args)]
pub struct Args {
    /// Also list this file's tenants, even before anything is stored for them.
    #[arg(long)]
    config: Option<PathBuf>,
    #[arg(long, default_value = ".portier")]
    data: PathBuf,
    #[command(flatten)]
    aws: Deployment,
    #[arg(long)]
    json: bool,
}

pub async fn run(Args { config, data, aws, json }: Args) -> Result<ExitCode> {
    status(config.as_deref(), &data, &aws, json).await
}

async fn status(config: Option<&Path>, data: &Path, aws: &Deployment, json: bool) -> Result<ExitCode> {
    let configured = config.map(load_config).transpose()?;
    let (records, queue) = records_and_queue(data, aws).await?;
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
