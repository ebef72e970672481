//! `portier send`: replays a sample webhook, signed as its source signs it.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow};
use base64::Engine;
use shared::clock::{Clock, SystemClock};
use shared::config::{EnvSecrets, ExposeSecret, Secrets};

use crate::demo;

#[derive(clap::Args)]
pub struct Args {
    file: PathBuf,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    to: String,
    /// Environment variable holding the HMAC secret to sign with [default: the demo secret].
    #[arg(long)]
    secret_env: Option<String>,
}

pub async fn run(Args { file, to, secret_env }: Args) -> Result<ExitCode> {
    send(&file, &to, secret_env.as_deref()).await
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
