//! `portier serve`: webhook routes, worker and tick in one process.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use shared::clock::{Clock, SystemClock};
use shared::config::{Config, EnvSecrets, Secrets};
use shared::http::RetryPolicy;
use shared::queue::Queue;
use shared::queue::embedded::EmbeddedQueue;
use shared::serve::{self, Runtime};
use shared::tenants::{StaticTenants, Tenants};

use crate::demo;
use crate::parts::{MAX_RECEIVES, load_config, open_store, store_configs};

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
    // A tenant whose secrets are missing is left out and shown in `status` and `/healthz`;
    // the others are served.
    let (built, broken) = StaticTenants::build_each(config, secrets, RetryPolicy::default());
    store_configs(&records, config).await?;
    for t in &config.tenants {
        let reason = broken.iter().find(|(id, _)| id == &t.id).map(|(_, e)| e.0.as_str());
        if let Some(reason) = reason {
            tracing::error!(tenant = %t.id, reason, "tenant not served: fix its configuration and restart");
        }
        shared::status::set_not_served(&records, &t.id, reason).await?;
    }
    // People whose mappings or policy changed since the last start are reconciled now.
    for t in config.tenants.iter().filter(|t| !broken.iter().any(|(id, _)| id == &t.id)) {
        shared::changes::enqueue_affected(&records, queue.as_ref(), t).await?;
    }
    let tenants: Arc<dyn Tenants> = Arc::new(built);
    let admin = shared::console::admin_auth(config, secrets)?;
    let rt = Runtime::new(tenants, queue, records);
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
    tracing::info!(%listen, tenants = config.tenants.len(), workers, console = admin.is_some(), "portier serving");

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let background = tokio::spawn(serve::run_background(rt.clone(), workers, stop_rx));
    let mut stop_http = stop_tx.subscribe();
    // Header, request and connection timeouts and a connection limit (shared::http_server).
    let limits = shared::http_server::HttpLimits::default();
    // Without an admin token the console is not mounted: /console/ and /api/v1 answer 404.
    let router = match admin {
        Some(auth) => {
            serve::router(rt.clone()).merge(shared::console::router(shared::console::Console::new(rt, auth)))
        }
        None => serve::router(rt),
    };
    shared::http_server::serve(listener, router, limits, async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = stop_http.changed() => {}
        }
    })
    .await;
    let _ = stop_tx.send(true);
    let _ = background.await;
    Ok(())
}
