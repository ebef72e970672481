//! `portier serve` assembled once: the tenants built from the configuration and secrets, their
//! status and stored configurations, the changes since the last start queued, the console when
//! an admin token is configured, and the routes and background work over one [`Runtime`].
//! `portier serve` builds it over its SQLite files and the system clock; the tests over
//! in-memory ones and a manual clock (the clock comes with the store and the queue).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;

use super::Runtime;
use crate::config::{Config, ConfigError, Secrets};
use crate::console::Console;
use crate::error::{InfraError, WorkError};
use crate::http::RetryPolicy;
use crate::http_server::HttpLimits;
use crate::model::TenantId;
use crate::queue::Queue;
use crate::store::Records;
use crate::tenants::StaticTenants;

/// Why Portier could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// `[admin]` names a token that is missing or too weak.
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Work(#[from] WorkError),
    #[error("a tenant's configuration as JSON: {0}")]
    Json(#[from] serde_json::Error),
}

impl From<InfraError> for StartError {
    fn from(e: InfraError) -> Self {
        StartError::Work(e.into())
    }
}

/// A Portier ready to serve: its [`Runtime`], and the console when one is configured.
#[derive(Clone)]
pub struct App {
    pub runtime: Runtime,
    /// Tenants left out at start-up, with the reason (also in `status` and `/healthz`).
    pub not_served: Vec<(TenantId, String)>,
    console: Option<Console>,
}

/// What [`App::builder`] starts from; [`AppBuilder::build`] does the start-up work.
pub struct AppBuilder<'a> {
    records: Records,
    queue: Arc<dyn Queue>,
    config: &'a Config,
    secrets: &'a dyn Secrets,
    retry: RetryPolicy,
    listing_timeout: Option<Duration>,
}

impl App {
    /// The tenants of `config` (their credentials from `secrets`) over this store and queue.
    pub fn builder<'a>(
        records: Records,
        queue: Arc<dyn Queue>,
        config: &'a Config,
        secrets: &'a dyn Secrets,
    ) -> AppBuilder<'a> {
        AppBuilder { records, queue, config, secrets, retry: RetryPolicy::default(), listing_timeout: None }
    }

    /// Whether the console and its API are mounted (an admin token is configured).
    pub fn has_console(&self) -> bool {
        self.console.is_some()
    }

    /// The webhook routes, with the console merged in when it is on. Without an admin token
    /// `/console/` and `/api/v1` answer 404.
    pub fn router(&self) -> Router {
        let hooks = super::router(self.runtime.clone());
        match &self.console {
            Some(console) => hooks.merge(crate::console::router(console.clone())),
            None => hooks,
        }
    }

    /// Serves the routes on `listener` within `limits`, with `workers` worker tasks, the tick
    /// and the daily resync beside them, until `shutdown` resolves; then stops the background
    /// work and waits for it.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        limits: HttpLimits,
        workers: usize,
        shutdown: impl std::future::Future<Output = ()> + Send,
    ) {
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let background = tokio::spawn(super::run_background(self.runtime.clone(), workers, stop_rx));
        crate::http_server::serve(listener, self.router(), limits, shutdown).await;
        let _ = stop_tx.send(true);
        let _ = background.await;
    }
}

impl AppBuilder<'_> {
    /// How the tenants' clients retry and time out ([`RetryPolicy::default`] unless set).
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// How long the console waits for each system's listing of the mapping choices.
    pub fn listing_timeout(mut self, wait: Duration) -> Self {
        self.listing_timeout = Some(wait);
        self
    }

    /// Builds the tenants and does what a start does before the first request: a tenant whose
    /// secrets are missing is left out (and shown in `status` and `/healthz`) while the others
    /// are served; the configurations are stored; people whose mappings or policy changed
    /// since the last start are queued.
    pub async fn build(self) -> Result<App, StartError> {
        let Self { records, queue, config, secrets, retry, listing_timeout } = self;
        let (built, broken) = StaticTenants::build_each(config, secrets, retry);
        store_configs(&records, config).await?;
        let not_served: Vec<(TenantId, String)> = broken.into_iter().map(|(id, e)| (id, e.0)).collect();
        for t in &config.tenants {
            let reason = not_served.iter().find(|(id, _)| id == &t.id).map(|(_, r)| r.as_str());
            if let Some(reason) = reason {
                tracing::error!(tenant = %t.id, reason, "tenant not served: fix its configuration and restart");
            }
            crate::status::set_not_served(&records, &t.id, reason).await?;
        }
        for t in config.tenants.iter().filter(|t| !not_served.iter().any(|(id, _)| id == &t.id)) {
            crate::changes::enqueue_affected(&records, queue.as_ref(), t).await?;
        }
        let admin = crate::console::admin_auth(config, secrets)?;
        let runtime = Runtime::new(Arc::new(built), queue, records);
        let console = admin.map(|auth| {
            let console = Console::new(runtime.clone(), auth);
            match listing_timeout {
                Some(wait) => console.with_listing_timeout(wait),
                None => console,
            }
        });
        Ok(App { runtime, not_served, console })
    }
}

/// `explain` and `status` read tenants and mappings from the store, as they do in a Lambda
/// deployment; every command that reads the config file keeps the store's copy current.
pub async fn store_configs(records: &Records, config: &Config) -> Result<(), StartError> {
    for t in &config.tenants {
        records.put_tenant_config(&t.id, serde_json::to_value(t)?).await?;
    }
    Ok(())
}
