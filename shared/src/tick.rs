//! The timers' tick on both runtimes (EventBridge every minute → `tick`; `portier serve`
//! every 30 s): each window edge that is due becomes a reconcile message.

use crate::error::WorkError;
use crate::queue::Queue;
use crate::queue::WorkMessage;
use crate::store::Records;

/// Enqueues a reconcile for every subject whose timer is due; returns how many.
pub async fn enqueue_due(records: &Records, queue: &dyn Queue) -> Result<usize, WorkError> {
    let now = records.now();
    let due = records.due_timers(now).await?;
    for (subject, at) in &due {
        // A window edge: often an end, and always due now.
        let msg = WorkMessage::Reconcile {
            subject: subject.clone(),
            reason: "timer".into(),
            at: *at,
            urgent: true,
        };
        queue.send(&msg.to_outgoing()).await?;
        records.clear_timer(subject, *at).await?;
    }
    records.tick_done(now).await?;
    Ok(due.len())
}
