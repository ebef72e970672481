//! The operator console (`/console/`, server-rendered HTML) and the JSON API behind it
//! (`/api/v1/`), both behind the admin token (design §6.1).
//!
//! Every answer comes from the engine's own operator functions — [`crate::status::status`],
//! [`crate::explain::explain`], [`crate::resync::resync`] (dry run, real run, drift) and the
//! store's mappings — so the console, the API and the command line cannot disagree.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;

use crate::config::{Config, ConfigError, Secrets, SourceConfig};
use crate::error::WorkError;
use crate::explain::SubjectReport;
use crate::ingress::envelope::{NEXUDUS_ACTIONS, WorkMessage};
use crate::model::{ItemKind, ItemRef, Mapping, ProviderKind, Target, TenantId};
use crate::resync::{ResyncOptions, ResyncReport};
use crate::secrets::ExposeSecret;
use crate::serve::Runtime;
use crate::sources::SourceItem;
use crate::status::Status;
use crate::tenants::{TenantRuntime, Tenants};

mod api;
pub mod auth;
pub mod lambda;
mod pages;

pub use auth::AdminAuth;

/// Console and API requests are small forms and JSON objects.
const MAX_BODY: usize = 16 * 1024;

/// The console's share of a running Portier.
#[derive(Clone)]
pub struct Console {
    rt: Runtime,
    tenants: Arc<dyn Tenants>,
    auth: Arc<AdminAuth>,
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

/// One mapped target, with its name at the lock system when Portier can list it.
#[derive(Debug, Clone, Serialize)]
pub struct TargetLine {
    pub target: Target,
    pub provider: ProviderKind,
    pub name: Option<String>,
}

/// One source item's mapping as the console shows it.
#[derive(Debug, Clone, Serialize)]
pub struct MappingLine {
    pub item: ItemRef,
    pub targets: Vec<TargetLine>,
    /// `config` (portier.toml) or `stored` (`portier mapping import` or the console, which win).
    pub origin: &'static str,
}

/// A tenant's mappings, and the Tapkey locks that could be mapped.
#[derive(Debug, Clone, Serialize)]
pub struct MappingsView {
    pub tenant: TenantId,
    pub mappings: Vec<MappingLine>,
    /// Tapkey bound locks; empty when the tenant has no Tapkey or it did not answer.
    pub tapkey_locks: Vec<LockChoice>,
    /// Why the lock names are missing, when they are.
    pub warning: Option<String>,
}

/// A Tapkey bound lock as the mapping form offers it.
#[derive(Debug, Clone, Serialize)]
pub struct LockChoice {
    pub id: String,
    pub title: String,
    /// Bound and active: grants can be made (an unusable lock is refused when saving).
    pub usable: bool,
}

/// What the mapping form offers: the source's items and the lock systems' targets.
#[derive(Debug, Clone, Serialize)]
pub struct MappingOptions {
    pub tenant: TenantId,
    /// Item kinds this tenant's source has.
    pub kinds: Vec<ItemKind>,
    /// Items the source listed, with their names.
    pub items: Vec<SourceItem>,
    pub tapkey_locks: Vec<LockChoice>,
    /// Lock systems configured for the tenant (Salto KS and Brivo groups are typed by id).
    pub providers: Vec<ProviderKind>,
    /// What could not be listed.
    pub warnings: Vec<String>,
}

/// What saving a mapping did.
#[derive(Debug, Clone, Serialize)]
pub struct SavedMapping {
    pub mapping: Mapping,
    /// People holding the item, queued for a reconcile so the change reaches their doors now.
    pub queued: usize,
}

/// Names of targets by id (Tapkey lock titles).
#[derive(Debug, Clone, Default)]
pub struct TargetNames(Vec<(String, String)>);

impl TargetNames {
    fn of_locks(locks: &[LockChoice]) -> Self {
        Self(locks.iter().map(|l| (l.id.clone(), l.title.clone())).collect())
    }

    pub fn of(&self, target: &Target) -> Option<&str> {
        match target {
            Target::TapkeyLock(id) => {
                self.0.iter().find(|(l, _)| l.eq_ignore_ascii_case(id.as_str())).map(|(_, n)| n.as_str())
            }
            _ => None,
        }
    }
}

/// A URL the source must be configured to call.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookUrl {
    /// The Nexudus action, or `*` for Kinnovis (one URL, every event).
    pub action: String,
    pub url: String,
}

/// What the webhooks page and API answer for one tenant.
#[derive(Debug, Clone, Serialize)]
pub struct WebhooksView {
    pub tenant: TenantId,
    pub source: &'static str,
    pub urls: Vec<WebhookUrl>,
    /// How the source proves its webhooks (what to set up beside the URL).
    pub proof: String,
}

impl Console {
    pub fn new(rt: Runtime, auth: AdminAuth) -> Self {
        let tenants = rt.worker.tenants.clone();
        Self { rt, tenants, auth: Arc::new(auth) }
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

    /// `portier status`.
    pub async fn status(&self) -> Result<Status, ConsoleError> {
        // Every tenant served, and every stored one (a tenant not served for missing secrets
        // is stored but not served), as `portier status` lists them.
        let mut ids = self.tenant_ids().await?;
        for id in self.rt.records.tenant_ids().await? {
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(crate::status::status(&self.rt.records, self.rt.queue.as_ref(), &ids).await?)
    }

    /// `portier explain`: every subject with this email, or this source person id, or whose
    /// name contains `who` (any case).
    pub async fn people(&self, who: &str, tenant: Option<&str>) -> Result<Vec<SubjectReport>, ConsoleError> {
        if who.trim().is_empty() {
            return Err(ConsoleError::BadRequest("give an email, a person id or a name".into()));
        }
        let who = crate::explain::Who::parse(who);
        let mut configs = Vec::new();
        for id in self.tenant_ids().await? {
            if let Some(t) = self.tenants.get(&id).await? {
                configs.push(t.config.clone());
            }
        }
        Ok(crate::explain::explain_who(&self.rt.records, &configs, &who, tenant, None).await?)
    }

    /// `portier resync [--dry-run] [--provider P]` for one tenant. A real run fans out to the
    /// queue; the workers (of `portier serve`, or the worker Lambda) make the changes.
    pub async fn resync(
        &self,
        tenant: &str,
        dry_run: bool,
        provider: Option<&str>,
    ) -> Result<ResyncReport, ConsoleError> {
        let provider = match provider.filter(|p| !p.is_empty()) {
            None => None,
            // The names the config and `--provider` use (serde's), so they cannot differ.
            Some(p) => {
                Some(serde_json::from_value(serde_json::Value::String(p.to_owned())).map_err(|_| {
                    ConsoleError::BadRequest(format!(
                        "unknown provider {p:?} (known: tapkey, salto_ks, brivo)"
                    ))
                })?)
            }
        };
        let t = self.tenant(tenant).await?;
        let opts = ResyncOptions { dry_run, incremental: false, provider };
        let report =
            crate::resync::resync(&self.rt.records, &t, self.rt.queue.as_ref(), opts, &mut |_, _| {}).await?;
        if !dry_run {
            tracing::info!(tenant, operations = report.op_count(), "resync started from the console");
        }
        Ok(report)
    }

    /// `portier drift`: a full dry run's drift.
    pub async fn drift(&self, tenant: &str) -> Result<crate::resync::DriftReport, ConsoleError> {
        Ok(crate::resync::DriftReport::of(&self.resync(tenant, true, None).await?))
    }

    /// The tenant's Tapkey bound locks, or why they could not be listed.
    async fn tapkey_locks(t: &TenantRuntime) -> (Vec<LockChoice>, Option<String>) {
        match t.tapkey() {
            None => (Vec::new(), None),
            Some(tk) => match tk.client().bound_locks().await {
                Ok(locks) => (
                    locks
                        .iter()
                        .map(|l| LockChoice {
                            id: l.id.clone(),
                            title: l.label().to_owned(),
                            usable: l.active != Some(false) && l.unbind_date.is_none(),
                        })
                        .collect(),
                    None,
                ),
                Err(e) => (Vec::new(), Some(format!("Tapkey did not list its locks: {e}"))),
            },
        }
    }

    /// Names of the lock-system targets of a tenant that Portier can list (Tapkey locks), for
    /// showing beside their ids. Empty when the lock system does not answer: names are a help,
    /// never a reason for a page to fail.
    pub async fn target_names(&self, tenant: &TenantId) -> TargetNames {
        match self.tenants.get(tenant).await {
            Ok(Some(t)) => TargetNames::of_locks(&Self::tapkey_locks(&t).await.0),
            _ => TargetNames::default(),
        }
    }

    /// The tenant's mappings (the file's, with imported ones on top, as the worker plans).
    pub async fn mappings(&self, tenant: &str) -> Result<MappingsView, ConsoleError> {
        let t = self.tenant(tenant).await?;
        let records = &self.rt.records;
        let imported = records.stored_mappings(&t.config.id).await?;
        let (tapkey_locks, warning) = Self::tapkey_locks(&t).await;
        let names = TargetNames::of_locks(&tapkey_locks);
        let name_of = |target: &Target| names.of(target).map(str::to_owned);
        let mappings = records
            .mappings_for(&t.config)
            .await?
            .into_iter()
            .map(|m| MappingLine {
                origin: if imported.iter().any(|i| i.item == m.item) { "stored" } else { "config" },
                targets: m
                    .targets
                    .iter()
                    .map(|target| TargetLine {
                        target: target.clone(),
                        provider: target.provider(),
                        name: name_of(target),
                    })
                    .collect(),
                item: m.item,
            })
            .collect();
        Ok(MappingsView { tenant: t.config.id.clone(), mappings, tapkey_locks, warning })
    }

    /// The source's items and the lock systems' targets, for the mapping form.
    pub async fn mapping_options(&self, tenant: &str) -> Result<MappingOptions, ConsoleError> {
        let t = self.tenant(tenant).await?;
        let mut warnings = Vec::new();
        let items = match t.source.items().await {
            Ok(items) => items,
            Err(e) => {
                warnings.push(format!("{} did not list its items: {e}", t.source.kind().as_str()));
                Vec::new()
            }
        };
        let (tapkey_locks, warning) = Self::tapkey_locks(&t).await;
        warnings.extend(warning);
        let providers = ALL_PROVIDERS.into_iter().filter(|k| t.config.providers.has(*k)).collect();
        Ok(MappingOptions {
            tenant: t.config.id.clone(),
            kinds: item_kinds(&t.config.source).to_vec(),
            items,
            tapkey_locks,
            providers,
            warnings,
        })
    }

    /// Stores one item's mapping (replacing its targets; none unmaps it), after the checks the
    /// file gets ([`crate::config::TenantConfig::check`] on the tenant with the change) and
    /// those only the systems can answer: the item exists at the source, each Tapkey lock is
    /// bound and active. The people holding the item are reconciled at once.
    pub async fn save_mapping(&self, tenant: &str, mapping: Mapping) -> Result<SavedMapping, ConsoleError> {
        let t = self.tenant(tenant).await?;
        let bad = |m: String| Err(ConsoleError::BadRequest(m));
        if mapping.item.id.trim().is_empty() {
            return bad("the item needs an id".into());
        }
        if !item_kinds(&t.config.source).contains(&mapping.item.kind) {
            return bad(format!(
                "a {} tenant has no {} items",
                t.config.source.kind().as_str(),
                mapping.item.kind.as_str()
            ));
        }
        let records = &self.rt.records;
        let mut candidate = t.config.clone();
        candidate.mappings = records.mappings_for(&t.config).await?;
        candidate.mappings.retain(|m| m.item != mapping.item);
        candidate.mappings.push(mapping.clone());
        if let Err(e) = candidate.check() {
            return bad(e.0);
        }
        // Items of a kind the source lists must be among them (a typo maps nothing).
        let listed = t.source.items().await.map_err(ConsoleError::Work)?;
        let lists_kind =
            listed.iter().any(|i| i.item.kind == mapping.item.kind) || mapping.item.kind == ItemKind::Unit;
        if lists_kind && !listed.iter().any(|i| i.item == mapping.item) {
            return bad(format!("{} is not an item of the source", mapping.item));
        }
        let tapkey: Vec<&Target> =
            mapping.targets.iter().filter(|t| matches!(t, Target::TapkeyLock(_))).collect();
        if !tapkey.is_empty() {
            let (locks, warning) = Self::tapkey_locks(&t).await;
            if let Some(w) = warning {
                return bad(format!("{w}; nothing saved (a lock that cannot be checked is not mapped)"));
            }
            for target in tapkey {
                let Target::TapkeyLock(id) = target else { continue };
                match locks.iter().find(|l| l.id.eq_ignore_ascii_case(id.as_str())) {
                    Some(l) if l.usable => {}
                    Some(l) => {
                        return bad(format!("Tapkey lock {} ({id}) is not active or not bound", l.title));
                    }
                    None => return bad(format!("Tapkey lock {id} is not bound to the owner account")),
                }
            }
        }
        // A target dropped from the item takes access away: that work goes first.
        let urgent = records
            .mappings_for(&t.config)
            .await?
            .iter()
            .find(|m| m.item == mapping.item)
            .is_some_and(|old| old.targets.iter().any(|t| !mapping.targets.contains(t)));
        records.put_mappings(&t.config.id, std::slice::from_ref(&mapping)).await?;
        let mut queued = 0;
        for subject in records.subjects(&t.config.id).await? {
            if records.entitlements(&subject).await?.iter().any(|e| e.item == mapping.item) {
                let msg = WorkMessage::Reconcile {
                    subject: subject.clone(),
                    reason: "mapping changed".into(),
                    at: records.now(),
                    urgent,
                };
                self.rt.queue.send(&msg.to_outgoing()).await?;
                queued += 1;
            }
        }
        tracing::info!(tenant, item = %mapping.item, targets = mapping.targets.len(), queued, "mapping saved from the console");
        Ok(SavedMapping { mapping, queued })
    }

    /// The URLs to register at the source, with `base` the address the source reaches
    /// Portier at. A Nexudus URL token is part of its URL, so it is shown (to the admin only).
    pub async fn webhooks(&self, tenant: &str, base: &str) -> Result<WebhooksView, ConsoleError> {
        let t = self.tenant(tenant).await?;
        let id = &t.config.id;
        let base = base.trim_end_matches('/');
        Ok(match &t.config.source {
            SourceConfig::Nexudus { webhook_secret_env, .. } => {
                let query = t.webhook_token.as_ref().map(|tok| format!("?token={}", tok.expose_secret()));
                let urls = NEXUDUS_ACTIONS
                    .iter()
                    .map(|a| WebhookUrl {
                        action: (*a).to_owned(),
                        url: format!("{base}/hooks/nexudus/{id}/{a}{}", query.as_deref().unwrap_or("")),
                    })
                    .collect();
                let proof = match (webhook_secret_env, &t.webhook_token) {
                    (Some(env), Some(_)) => format!(
                        "the URL token, and the HMAC signature: set the webhook secret in Nexudus to the value of {env}"
                    ),
                    (Some(env), None) => {
                        format!("the HMAC signature: set the webhook secret in Nexudus to the value of {env}")
                    }
                    _ => "the token in the URL (copy the whole URL)".to_owned(),
                };
                WebhooksView { tenant: id.clone(), source: "nexudus", urls, proof }
            }
            SourceConfig::Kinnovis { webhook_secret_env, .. } => WebhooksView {
                tenant: id.clone(),
                source: "kinnovis",
                urls: vec![WebhookUrl { action: "*".into(), url: format!("{base}/hooks/kinnovis/{id}") }],
                proof: format!("Standard Webhooks signatures with the secret in {webhook_secret_env}"),
            },
        })
    }

    /// Clears the tenant's recorded permanent failures and queues a reconcile of each person
    /// who had one, so the worker tries again now instead of waiting for the back-off.
    pub async fn retry_failures(&self, tenant: &str) -> Result<usize, ConsoleError> {
        let t = self.tenant(tenant).await?;
        let records = &self.rt.records;
        let mut queued = 0;
        for subject in records.subjects(&t.config.id).await? {
            let failures = records.failures(&subject).await?;
            if failures.is_empty() {
                continue;
            }
            for f in &failures {
                records.clear_failure(&subject, &f.target).await?;
            }
            let msg = WorkMessage::Reconcile {
                subject: subject.clone(),
                reason: "retry".into(),
                at: records.now(),
                // A failed revocation retried goes before the tenant's grants, as it did first time.
                urgent: failures.iter().any(|f| f.op.starts_with("revoke")),
            };
            self.rt.queue.send(&msg.to_outgoing()).await?;
            queued += 1;
        }
        tracing::info!(tenant, people = queued, "failures retried from the console");
        Ok(queued)
    }
}

const ALL_PROVIDERS: [ProviderKind; 3] = [ProviderKind::Tapkey, ProviderKind::Salto, ProviderKind::Brivo];

/// The item kinds a source has (design §6.2).
fn item_kinds(source: &SourceConfig) -> &'static [ItemKind] {
    match source {
        SourceConfig::Nexudus { .. } => {
            &[ItemKind::Pass, ItemKind::Resource, ItemKind::Desk, ItemKind::Office, ItemKind::Visitors]
        }
        SourceConfig::Kinnovis { .. } => &[ItemKind::Unit],
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
        .route("/api/v1/tenants/{tenant}/webhooks", get(api::webhooks))
        .route("/api/v1/tenants/{tenant}/retry", post(api::retry))
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
