//! `portier dead-letters`: what the worker gave up on, and `--redrive` to move it back once the
//! cause is fixed (every message reconciles its person afresh, so this is safe to repeat).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

use crate::parts::{Deployment, records_and_queue};

#[derive(clap::Args)]
pub struct Args {
    #[arg(long, default_value = ".portier")]
    data: PathBuf,
    #[command(flatten)]
    aws: Deployment,
    /// Move the dead letters back to the work queue.
    #[arg(long)]
    redrive: bool,
    /// At most this many messages.
    #[arg(long, default_value_t = 100)]
    max: usize,
    #[arg(long)]
    json: bool,
}

pub async fn run(Args { data, aws, redrive, max, json }: Args) -> Result<ExitCode> {
    if aws.table.is_some() && aws.dlq_url.is_none() {
        bail!("with --table, pass --dlq-url too (the stack's DeadLetterQueueUrl output)");
    }
    let (_, queue) = records_and_queue(&data, &aws).await?;
    if redrive {
        let moved = queue.redrive_dead_letters(max).await?;
        let left = queue.stats().await?.dead;
        if json {
            outln!("{}", serde_json::json!({ "redriven": moved, "left": left }));
        } else {
            outln!("{moved} dead letters moved back to the work queue; {left} left.");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let dead = queue.dead_letters(max).await?;
    if json {
        let items: Vec<_> = dead
            .iter()
            .map(|d| {
                serde_json::json!({ "message_id": d.message_id, "group": d.group,
                    "receives": d.receive_count, "kind": kind(&d.body) })
            })
            .collect();
        outln!("{}", serde_json::to_string_pretty(&items)?);
    } else if dead.is_empty() {
        outln!("No dead letters.");
    } else {
        for d in &dead {
            outln!("{}  {}  {} receives  {}", d.message_id, d.group, d.receive_count, kind(&d.body));
        }
        outln!(
            "{} dead letters. Fix the cause (`portier status`, the logs), then `portier dead-letters --redrive`.",
            dead.len()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The body's kind only: bodies may carry a source's personal data.
fn kind(body: &str) -> String {
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("kind").and_then(|k| k.as_str()).map(str::to_owned))
        .unwrap_or_else(|| "unreadable".to_owned())
}
