//! The operator's reads and actions: the engine's own functions, as `portier` runs them.

use serde::Serialize;

use super::{Console, ConsoleError};
use crate::config::SourceConfig;
use crate::explain::SubjectReport;
use crate::model::TenantId;
use crate::queue::WorkMessage;
use crate::resync::{ResyncOptions, ResyncReport};
use crate::secrets::ExposeSecret;
use crate::sources::nexudus::webhook::NEXUDUS_ACTIONS;
use crate::status::Status;

/// At most this many dead letters per "redrive" (a few SQS calls each).
const MAX_REDRIVE: usize = 1_000;

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

    /// Moves the dead letters back to the work queue, once their cause is fixed (every message
    /// reconciles its person afresh, so this is safe to repeat).
    pub async fn redrive_dead_letters(&self) -> Result<usize, ConsoleError> {
        let moved = self.rt.queue.redrive_dead_letters(MAX_REDRIVE).await?;
        tracing::info!(messages = moved, "dead letters redriven from the console");
        Ok(moved)
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
