//! `portier status`: queue depth, dead letters, failures per tenant and provider, last resync.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::WorkError;
use crate::model::TenantId;
use crate::queue::{Queue, QueueStats};
use crate::resync::{self, LastResync};
use crate::store::Records;

#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub queue: QueueStats,
    pub tenants: Vec<TenantStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct TenantStatus {
    pub tenant: TenantId,
    pub people: usize,
    /// Subjects with a recorded permanent failure, per provider.
    pub failures: BTreeMap<String, usize>,
    /// A few of the reasons, for a first look (`portier explain` has the rest).
    pub examples: Vec<String>,
    pub last_resync: Option<LastResync>,
    /// Webhooks accepted but not queued because the tenant's queue was full, until the
    /// overflow resync has read them from the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overflow: Option<crate::store::records::Overflow>,
    /// The last resync that stopped with an error, unless one finished since.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failed_resync: Option<resync::FailedResync>,
    /// Why `portier serve` could not start this tenant (a missing secret), when it could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_served: Option<NotServed>,
    /// The tenant's time zone (from its stored configuration), in which the text shows times.
    pub timezone: String,
    /// `[tenant.presence]`: the doors that check people in or out, and how far it got.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub presence: Option<crate::presence::PresenceStatus>,
}

/// A tenant `portier serve` left out at start-up, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct NotServed {
    pub reason: String,
    pub since: crate::model::Instant,
}

const NOT_SERVED: &str = "NOT_SERVED";

/// Records (`Some`) or clears (`None`) why a tenant is not served, for `status` and `/healthz`.
pub async fn set_not_served(
    records: &Records,
    tenant: &TenantId,
    reason: Option<&str>,
) -> Result<(), crate::error::InfraError> {
    match reason {
        Some(r) => {
            let v = NotServed { reason: r.to_owned(), since: records.now() };
            records.put_tenant_record(tenant, NOT_SERVED, &v).await
        }
        None => records.delete_tenant_record(tenant, NOT_SERVED).await,
    }
}

/// Why the tenant is not served, if it is not.
pub async fn not_served(
    records: &Records,
    tenant: &TenantId,
) -> Result<Option<NotServed>, crate::error::InfraError> {
    records.tenant_record(tenant, NOT_SERVED).await
}

impl Status {
    pub fn has_failures(&self) -> bool {
        self.queue.dead > 0
            || self
                .tenants
                .iter()
                .any(|t| !t.failures.is_empty() || t.not_served.is_some() || t.last_failed_resync.is_some())
    }
}

pub async fn status(records: &Records, queue: &dyn Queue, tenants: &[TenantId]) -> Result<Status, WorkError> {
    let mut out = Vec::new();
    for tenant in tenants {
        let subjects = records.subjects(tenant).await?;
        let mut failures: BTreeMap<String, usize> = BTreeMap::new();
        let mut examples = Vec::new();
        for s in &subjects {
            for f in records.failures(s).await? {
                *failures.entry(f.target.provider().as_str().to_owned()).or_default() += 1;
                if examples.len() < 5 {
                    examples.push(format!("{}: {}", f.target, f.reason));
                }
            }
        }
        out.push(TenantStatus {
            tenant: tenant.clone(),
            people: subjects.len(),
            failures,
            examples,
            last_resync: resync::last(records, tenant).await?,
            overflow: records.overflow(tenant).await?.map(|(o, _)| o),
            last_failed_resync: resync::last_failed(records, tenant).await?,
            not_served: not_served(records, tenant).await?,
            timezone: records
                .tenant_config(tenant)
                .await?
                .and_then(|doc| doc.get("timezone").and_then(|z| z.as_str()).map(str::to_owned))
                .unwrap_or_else(|| "UTC".to_owned()),
            presence: presence_of(records, tenant).await?,
        });
    }
    Ok(Status { queue: queue.stats().await?, tenants: out })
}

/// The tenant's presence overview, from the configuration stored for it (both runtimes store
/// it: `portier serve` at start, `config push` for Lambda).
async fn presence_of(
    records: &Records,
    tenant: &TenantId,
) -> Result<Option<crate::presence::PresenceStatus>, crate::error::InfraError> {
    let config = records.tenant_config(tenant).await?;
    let presence = config
        .and_then(|doc| serde_json::from_value::<crate::config::TenantConfig>(doc).ok())
        .and_then(|c| c.presence);
    match presence {
        Some(p) => Ok(Some(crate::presence::status(records, tenant, &p).await?)),
        None => Ok(None),
    }
}

/// The status as text for a terminal.
pub fn render(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Queue: {} waiting, {} in progress, {} dead letters",
        s.queue.visible, s.queue.in_flight, s.queue.dead
    );
    for t in &s.tenants {
        let zone = crate::localtime::Zone::parse(&t.timezone).ok();
        let when = |at: crate::model::Instant| match &zone {
            Some(z) => z.format(at),
            None => at.format("%Y-%m-%d %H:%M UTC").to_string(),
        };
        let _ = writeln!(out, "\nTenant {} — {} people", t.tenant, t.people);
        if let Some(n) = &t.not_served {
            let _ = writeln!(out, "  NOT SERVED since {}: {}", when(n.since), n.reason);
        }
        match &t.last_resync {
            Some(r) => {
                let _ = writeln!(
                    out,
                    "  last resync {} took {:.1} s: {} people, {} changed, {} operations",
                    when(r.finished),
                    r.duration_ms as f64 / 1000.0,
                    r.people,
                    r.changed,
                    r.operations
                );
            }
            None if t.last_failed_resync.is_none() => {
                let _ = writeln!(out, "  no resync yet");
            }
            None => {}
        }
        if let Some(f) = &t.last_failed_resync {
            let _ = writeln!(out, "  last resync FAILED {}: {}", when(f.at), f.error);
        }
        if let Some(o) = &t.overflow {
            let _ = writeln!(
                out,
                "  queue full since {}: {} webhooks not queued; the next tick resyncs the tenant",
                when(o.since),
                o.webhooks
            );
        }
        if t.failures.is_empty() {
            let _ = writeln!(out, "  no failures");
        }
        for (provider, n) in &t.failures {
            let _ = writeln!(out, "  {n} failing at {provider}");
        }
        for e in &t.examples {
            let _ = writeln!(out, "    {e}");
        }
        if let Some(p) = &t.presence {
            render_presence(&mut out, p);
        }
    }
    out
}

fn render_presence(out: &mut String, p: &crate::presence::PresenceStatus) {
    use std::fmt::Write;
    let _ =
        writeln!(out, "  presence (Nexudus business {}): {} door events waiting", p.business_id, p.waiting);
    for d in &p.doors {
        let action = match d.action {
            crate::config::DoorAction::CheckIn => "checks in",
            crate::config::DoorAction::CheckOut => "checks out",
            crate::config::DoorAction::Toggle => "toggles",
        };
        let _ = writeln!(out, "    {} door {} {action}", d.provider.name(), d.door);
    }
    if let Some(c) = &p.salto_cursor {
        let last = c.last_poll.map_or("never".to_owned(), |t| t.format("%Y-%m-%d %H:%M UTC").to_string());
        let _ = writeln!(
            out,
            "    Salto KS entries read up to {} (last poll {last})",
            c.after.format("%Y-%m-%d %H:%M:%S UTC")
        );
    }
    for u in &p.unknown_users {
        let _ = writeln!(
            out,
            "    unknown {} user {}: {} door events, last at door {} ({}); nothing written",
            u.provider.name(),
            u.user,
            u.events,
            u.last_door,
            u.last_seen.format("%Y-%m-%d %H:%M UTC")
        );
    }
    if let Some(e) = &p.last_error {
        let _ = writeln!(out, "    last problem: {e}");
    }
}
