//! Salto KS door events: the Connect API has no webhooks, so the site's entries are polled
//! (`GET /v1.1/sites/{s}/entries`, sorted by `utc_date_time`) from a cursor in the store.

use chrono::Duration;

use super::records::{Cursor, PresenceRecords};
use super::{Accepted, DoorEvent};
use crate::config::{PresenceConfig, PresenceDoors};
use crate::error::WorkError;
use crate::model::{ProviderKind, TenantId};
use crate::providers::salto::SaltoClient;
use crate::providers::salto::client::Entry;
use crate::store::Records;

/// Reads the entries since the cursor into the inbox, when the poll is due, under the tenant's
/// Salto KS lease (one poll loop per tenant, whatever the number of processes). Returns how
/// many door events were queued. The cursor moves only after they are stored, so a crash reads
/// them again (and the inbox drops the repeats); a missed window is read from the cursor.
pub async fn poll(
    records: &Records,
    tenant: &TenantId,
    config: &PresenceConfig,
    doors: &PresenceDoors,
    salto: &SaltoClient,
) -> Result<usize, WorkError> {
    let r = PresenceRecords::new(records, tenant);
    let now = records.now();
    let every = Duration::seconds(i64::from(doors.poll_every()));
    let due = |cursor: &Option<Cursor>| {
        cursor.as_ref().and_then(|c| c.last_poll).is_none_or(|last| now >= last + every)
    };
    if !due(&r.cursor(ProviderKind::Salto).await?) {
        return Ok(0);
    }
    let Some(lease) = r.acquire_lease("salto_ks").await? else { return Ok(0) };
    let result = async {
        // Read again under the lease: a poll that held it a moment ago may have just moved the
        // cursor (two ticks at once), and this one must start where that one ended.
        let cursor = r.cursor(ProviderKind::Salto).await?;
        if !due(&cursor) {
            return Ok(0);
        }
        // The first poll starts one window back: presence begins when it is configured.
        let mut cursor = cursor.unwrap_or(Cursor { after: now - every, seen: Vec::new(), last_poll: None });
        let entries = salto.entries_since(cursor.after).await?;
        let mut queued = 0;
        for entry in &entries {
            let Some(ev) = door_event(entry) else { continue };
            if ev.at < cursor.after || (ev.at == cursor.after && cursor.seen.contains(&ev.event_id)) {
                continue;
            }
            if entry.opened() && super::accept(records, tenant, config, &ev).await? == Accepted::Queued {
                queued += 1;
            }
            if ev.at > cursor.after {
                cursor.after = ev.at;
                cursor.seen.clear();
            }
            cursor.seen.push(ev.event_id);
        }
        cursor.last_poll = Some(now);
        r.save_cursor(ProviderKind::Salto, &cursor).await?;
        Ok::<_, WorkError>(queued)
    }
    .await;
    r.release_lease(&lease).await?;
    result
}

/// The door event of an entry; `None` when it names no time (nothing to order it by). An
/// entry without an id gets one from what identifies it (lock, user, time).
pub fn door_event(e: &Entry) -> Option<DoorEvent> {
    let at = e.at()?;
    let lock = e.lock_id.clone().unwrap_or_default();
    let user = e.user_id.clone().unwrap_or_default();
    let event_id = e.id.clone().filter(|i| !i.trim().is_empty()).unwrap_or_else(|| {
        use sha2::{Digest, Sha256};
        let d = Sha256::digest(format!("{lock}|{user}|{}", at.timestamp_micros()));
        hex::encode(&d[..12])
    });
    Some(DoorEvent { provider: ProviderKind::Salto, event_id, door: lock, user, at })
}
