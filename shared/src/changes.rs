//! Configuration and mapping changes reach the people they affect without waiting for the
//! daily resync: each tenant's effective mappings and policy are remembered
//! (`TENANT#t / SEEN_CONFIG`), and whatever differs from what was last seen is reconciled.

use serde::{Deserialize, Serialize};

use crate::config::{Policy, TenantConfig};
use crate::error::WorkError;
use crate::model::{ItemRef, Mapping, SubjectKey};
use crate::queue::Queue;
use crate::queue::WorkMessage;
use crate::store::Records;

const SEEN: &str = "SEEN_CONFIG";

/// What planning depends on in a tenant's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Seen {
    mappings: Vec<Mapping>,
    policy: Policy,
    timezone: String,
}

/// Compares the tenant's effective configuration (file plus imported mappings) with what was
/// last seen, enqueues a reconcile for every person it affects, and remembers it. A changed
/// policy or time zone affects everyone; a changed mapping the holders of that item. Nothing
/// seen before (a new tenant, or data from an older Portier) counts as all new.
pub async fn enqueue_affected(
    records: &Records,
    queue: &dyn Queue,
    config: &TenantConfig,
) -> Result<usize, WorkError> {
    let now = Seen {
        mappings: records.mappings_for(config).await?,
        policy: config.policy.clone(),
        timezone: config.timezone.clone(),
    };
    let before: Option<Seen> = records.tenant_record(&config.id, SEEN).await?;
    if before.as_ref() == Some(&now) {
        return Ok(0);
    }
    let everyone = before.as_ref().is_none_or(|b| b.policy != now.policy || b.timezone != now.timezone);
    let items =
        crate::mapping::changed_items(before.map(|b| b.mappings).as_deref().unwrap_or(&[]), &now.mappings);
    let mut queued = 0;
    for subject in records.subjects(&config.id).await? {
        if everyone || holds_any(records, &subject, &items).await? {
            let msg = WorkMessage::Reconcile {
                subject: subject.clone(),
                reason: "configuration changed".into(),
                at: records.now(),
                // A changed mapping may take access away (the old lock): that goes first.
                urgent: true,
            };
            queue.send(&msg.to_outgoing()).await?;
            queued += 1;
        }
    }
    // Remembered only once everyone affected is queued: a crash before this repeats the work.
    records.put_tenant_record(&config.id, SEEN, &now).await?;
    if queued > 0 {
        tracing::info!(tenant = %config.id, people = queued, items = items.len(), "configuration changed: affected people queued");
    }
    Ok(queued)
}

async fn holds_any(records: &Records, subject: &SubjectKey, items: &[ItemRef]) -> Result<bool, WorkError> {
    if items.is_empty() {
        return Ok(false);
    }
    Ok(records.entitlements(subject).await?.iter().any(|e| items.contains(&e.item)))
}
