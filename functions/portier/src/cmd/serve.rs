//! `portier serve`: webhook routes, worker and tick in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use shared::clock::{Clock, SystemClock};
use shared::config::{Config, EnvSecrets, Secrets};
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::serve::{self, App};

use crate::demo;
use crate::parts::{MAX_RECEIVES, load_config, open_store};

#[derive(clap::Args)]
pub struct Args {
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
}

pub async fn run(Args { config, data, listen, demo, json_logs, workers }: Args) -> Result<ExitCode> {
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

pub async fn serve_with(
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
    let app = App::builder(records, queue, config, secrets).build().await?;
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    let console = app.has_console();
    tracing::info!(%listen, tenants = config.tenants.len(), workers, console, "portier serving");
    // Header, request and connection timeouts and a connection limit (shared::http_server).
    let limits = shared::http_server::HttpLimits::default();
    app.serve(listener, limits, workers, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await;
    Ok(())
}
