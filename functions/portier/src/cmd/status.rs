//! `portier status`: queue, dead letters, failures, last resync.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Result, bail};
use shared::clock::{Clock, SystemClock};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::store::Records;

use crate::parts::{Deployment, MAX_RECEIVES, load_config, open_store, table_records};

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
