//! The operator console (`/console/`, server-rendered HTML) and the JSON API behind it
//! (`/api/v1/`), both behind the admin token (design §6.1).
//!
//! Every answer comes from the engine's own operator functions — [`crate::status::status`],
//! [`crate::explain::explain`], [`crate::resync::resync`] (dry run, real run, drift) and the
//! store's mappings — so the console, the API and the command line cannot disagree.

use std::sync::Arc;

use crate::config::{Config, ConfigError, Secrets};
use crate::error::WorkError;
use crate::model::TenantId;
use crate::serve::Runtime;
use crate::tenants::{TenantRuntime, Tenants};
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

mod api;
pub mod auth;
pub mod catalog;
pub mod lambda;
mod mappings;
mod ops;
mod pages;

pub use auth::AdminAuth;
pub use catalog::{Catalog, Choice, LockSystemChoices, SourceChoices, TargetNames};
pub use mappings::{LockChoice, MappingLine, MappingOptions, MappingsView, SavedMapping, TargetLine};
pub use ops::{WebhookUrl, WebhooksView};

/// Console and API requests are small forms and JSON objects.
const MAX_BODY: usize = 16 * 1024;

/// The console's share of a running Portier.
#[derive(Clone)]
pub struct Console {
    rt: Runtime,
    tenants: Arc<dyn Tenants>,
    auth: Arc<AdminAuth>,
    /// How long one system's listing may take ([`catalog::LISTING_TIMEOUT`]).
    listing_timeout: std::time::Duration,
}

/// The admin token named by `[admin]`, or `None` when the console is off.
pub fn admin_auth(config: &Config, secrets: &dyn Secrets) -> Result<Option<AdminAuth>, ConfigError> {
    let Some(admin) = &config.admin else { return Ok(None) };
    let token = secrets.get(&admin.admin_token_env).map_err(|e| ConfigError(format!("[admin]: {}", e.0)))?;
    AdminAuth::new(token)
        .map(Some)
        .map_err(|e| ConfigError(format!("[admin] admin_token_env = {:?}: {e}", admin.admin_token_env)))
}

/// Why a console or API request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Work(#[from] WorkError),
}

impl From<crate::error::InfraError> for ConsoleError {
    fn from(e: crate::error::InfraError) -> Self {
        ConsoleError::Work(e.into())
    }
}

impl ConsoleError {
    fn status(&self) -> StatusCode {
        match self {
            ConsoleError::NotFound(_) => StatusCode::NOT_FOUND,
            ConsoleError::BadRequest(_) => StatusCode::BAD_REQUEST,
            // A source or lock system that did not answer, or the store: worth trying again.
            ConsoleError::Work(_) => StatusCode::BAD_GATEWAY,
        }
    }
}

impl Console {
    pub fn new(rt: Runtime, auth: AdminAuth) -> Self {
        let tenants = rt.worker.tenants.clone();
        Self { rt, tenants, auth: Arc::new(auth), listing_timeout: catalog::LISTING_TIMEOUT }
    }

    /// Waits at most `wait` for each system's listing of the mapping choices.
    pub fn with_listing_timeout(mut self, wait: std::time::Duration) -> Self {
        self.listing_timeout = wait;
        self
    }

    async fn tenant(&self, id: &str) -> Result<Arc<TenantRuntime>, ConsoleError> {
        self.tenants
            .get(&TenantId(id.to_owned()))
            .await?
            .ok_or_else(|| ConsoleError::NotFound(format!("no tenant {id}")))
    }

    async fn tenant_ids(&self) -> Result<Vec<TenantId>, ConsoleError> {
        Ok(self.tenants.ids().await?)
    }
}

/// The address the browser (and so, usually, the source) reached us at.
fn base_url(headers: &HeaderMap) -> String {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let host = get("x-forwarded-host").or_else(|| get("host")).unwrap_or("127.0.0.1:8080");
    let proto = get("x-forwarded-proto").unwrap_or("http");
    format!("{proto}://{host}")
}

/// The console and the API. Mount it only when an admin token is configured: without it both
/// answer 404 like any unknown path.
pub fn router(console: Console) -> Router {
    let api = Router::new()
        .route("/api/v1/status", get(api::status))
        .route("/api/v1/people", get(api::people))
        .route("/api/v1/tenants/{tenant}/resync", post(api::resync))
        .route("/api/v1/tenants/{tenant}/drift", get(api::drift))
        .route("/api/v1/tenants/{tenant}/mappings", get(api::mappings).put(api::save_mapping))
        .route("/api/v1/tenants/{tenant}/mappings/options", get(api::mapping_options))
        .route("/api/v1/tenants/{tenant}/catalog", get(api::catalog))
        .route("/api/v1/tenants/{tenant}/webhooks", get(api::webhooks))
        .route("/api/v1/tenants/{tenant}/retry", post(api::retry))
        .route("/api/v1/dead-letters/redrive", post(api::redrive))
        .route_layer(middleware::from_fn_with_state(console.clone(), api::guard));
    Router::new()
        .merge(api)
        .merge(pages::routes())
        .layer(middleware::from_fn(security_headers))
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .with_state(console)
}

/// Admin pages and answers are never cached, framed or given scripts from elsewhere.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    res
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        (self.status(), axum::Json(serde_json::json!({ "error": self.to_string() }))).into_response()
    }
}

/// State for handlers.
type St = State<Console>;
