//! Coalesced membership changes: people joining or leaving one access group at the same time go
//! in one `PATCH …/access_groups/{ag}/users {add_ids, remove_ids}` (the call Salto KS documents
//! for more than one user), not one call each.
//!
//! During a burst every change waits for the Salto KS rate limit anyway; while one PATCH of a
//! group is in flight, the next changes of that group queue here and the next PATCH carries all
//! of them. Each caller still gets the answer for its own change: a shared answer that proves
//! the change of everyone in it (done, the group is missing, try again later, the account is
//! misconfigured) is given to all of them; one that may be about a single user (404 `2202`,
//! 403 `2203`, a refusal) is not, and every change in it is sent again alone, so one person's
//! trouble stays theirs. The callers record what they applied from their own answer, as before.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::oneshot;

use super::client::PatchMembers;
use crate::error::CallError;
use crate::model::SaltoGroupId;

/// How long a PATCH of a busy group waits for more changes to join it. Workers that take
/// people as room frees (`portier serve`) reach a group one by one, not ten at a time, so
/// without it a burst would send one PATCH per person; a lone change never waits.
const LINGER: std::time::Duration = std::time::Duration::from_millis(300);

/// A group whose last PATCH started this recently is busy: a burst is under way.
const BUSY: std::time::Duration = std::time::Duration::from_secs(1);

/// Most user ids one PATCH carries (Salto KS documents no cap for this call; a page's worth
/// keeps a request small, and a burst needs only a few of them).
pub const MAX_IDS: usize = 100;

type Answer = Result<PatchMembers, CallError>;

struct Request {
    add: Vec<String>,
    remove: Vec<String>,
    tx: oneshot::Sender<Answer>,
}

#[derive(Default)]
struct Group {
    pending: Mutex<Vec<Request>>,
    /// One PATCH of this group at a time; whoever holds it sends everyone's waiting. It
    /// holds when the last one started.
    flight: tokio::sync::Mutex<Option<tokio::time::Instant>>,
}

/// Membership changes of every access group of one site, coalesced per group.
#[derive(Default)]
pub struct MemberBatcher {
    groups: Mutex<HashMap<SaltoGroupId, Arc<Group>>>,
}

impl std::fmt::Debug for MemberBatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemberBatcher").finish_non_exhaustive()
    }
}

impl MemberBatcher {
    /// Adds `add` to and removes `remove` from `group` by `patch(group, add_ids, remove_ids)`,
    /// together with the changes of the group that wait at the same time. The answer is for
    /// this change alone (see the module's documentation).
    pub async fn change<P, F>(
        &self,
        group: &SaltoGroupId,
        add: Vec<String>,
        remove: Vec<String>,
        patch: P,
    ) -> Answer
    where
        P: Fn(Vec<String>, Vec<String>) -> F,
        F: Future<Output = Answer>,
    {
        let queue = guard(&self.groups).entry(group.clone()).or_default().clone();
        let (tx, mut rx) = oneshot::channel();
        guard(&queue.pending).push(Request { add, remove, tx });
        loop {
            let mut last = queue.flight.lock().await;
            // Served by the PATCH that was in flight while we waited?
            match rx.try_recv() {
                Ok(answer) => return answer,
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(CallError::retryable("a coalesced Salto KS membership change was cancelled"));
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if last.is_some_and(|at| at.elapsed() < BUSY) {
                tokio::time::sleep(LINGER).await;
            }
            *last = Some(tokio::time::Instant::now());
            let batch = take_batch(&mut guard(&queue.pending));
            send(batch, &patch).await;
            // Ours may have been left for the next PATCH (it contradicted an earlier change).
        }
    }
}

/// The oldest waiting changes that fit in one PATCH: at most [`MAX_IDS`] ids, and none that
/// adds a user another one removes or the reverse (their order matters: those wait for the
/// next PATCH). Changes whose caller gave up are dropped.
fn take_batch(pending: &mut Vec<Request>) -> Vec<Request> {
    pending.retain(|r| !r.tx.is_closed());
    let (mut adds, mut removes) = (HashSet::new(), HashSet::new());
    let mut taken = Vec::new();
    let mut left = Vec::new();
    for r in pending.drain(..) {
        let ids = adds.len() + removes.len() + r.add.len() + r.remove.len();
        let contradicts =
            r.add.iter().any(|id| removes.contains(id)) || r.remove.iter().any(|id| adds.contains(id));
        if !taken.is_empty() && (contradicts || ids > MAX_IDS) {
            left.push(r);
            continue;
        }
        adds.extend(r.add.iter().cloned());
        removes.extend(r.remove.iter().cloned());
        taken.push(r);
    }
    *pending = left;
    taken
}

/// Sends one PATCH for `batch` and answers each change in it.
async fn send<P, F>(batch: Vec<Request>, patch: &P)
where
    P: Fn(Vec<String>, Vec<String>) -> F,
    F: Future<Output = Answer>,
{
    if let [one] = batch.as_slice() {
        let answer = patch(one.add.clone(), one.remove.clone()).await;
        batch.into_iter().for_each(|r| drop(r.tx.send(answer.clone())));
        return;
    }
    let mut add: Vec<String> = Vec::new();
    let mut remove: Vec<String> = Vec::new();
    for r in &batch {
        add.extend(r.add.iter().filter(|id| !add.contains(id)).cloned().collect::<Vec<_>>());
        remove.extend(r.remove.iter().filter(|id| !remove.contains(id)).cloned().collect::<Vec<_>>());
    }
    let shared = patch(add, remove).await;
    match shared {
        // About the whole group or the whole account: true for each change in it.
        Ok(PatchMembers::Done | PatchMembers::GroupNotFound(_))
        | Err(CallError::Retryable { .. } | CallError::Config { .. }) => {
            batch.into_iter().for_each(|r| drop(r.tx.send(shared.clone())));
        }
        // Possibly about one user only (Salto KS does not say which): each change alone.
        Ok(PatchMembers::UserNotFound(_) | PatchMembers::NotExecutable(_))
        | Err(CallError::Permanent { .. } | CallError::Unavailable { .. }) => {
            tracing::debug!(
                changes = batch.len(),
                "coalesced Salto KS PATCH refused; sending each change alone"
            );
            for r in batch {
                let answer = patch(r.add, r.remove).await;
                let _ = r.tx.send(answer);
            }
        }
    }
}

/// The queues hold plain data changed in one step, so a poisoned lock is still consistent.
fn guard<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    type Sent = Arc<Mutex<Vec<(Vec<String>, Vec<String>)>>>;

    /// `n` concurrent changes of one group against a slow PATCH that refuses any call naming
    /// `bad`; returns each caller's answer and the PATCHes sent.
    async fn burst(
        changes: Vec<(Vec<&str>, Vec<&str>)>,
        bad: &str,
    ) -> (Vec<Answer>, Vec<(Vec<String>, Vec<String>)>) {
        let batcher = Arc::new(MemberBatcher::default());
        let sent: Sent = Arc::default();
        let bad = bad.to_owned();
        let mut tasks = tokio::task::JoinSet::new();
        for (i, (add, remove)) in changes.into_iter().enumerate() {
            let (batcher, sent, bad) = (batcher.clone(), sent.clone(), bad.clone());
            let own = |v: Vec<&str>| v.into_iter().map(str::to_owned).collect::<Vec<_>>();
            let (add, remove) = (own(add), own(remove));
            tasks.spawn(async move {
                let patch = |add: Vec<String>, remove: Vec<String>| {
                    let (sent, bad) = (sent.clone(), bad.clone());
                    async move {
                        // Slow, as a rate-limited call is: the others pile up meanwhile.
                        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                        let refused = add.iter().chain(&remove).any(|id| *id == bad);
                        guard(&sent).push((add, remove));
                        Ok(if refused {
                            PatchMembers::UserNotFound("2202".into())
                        } else {
                            PatchMembers::Done
                        })
                    }
                };
                let answer = batcher.change(&SaltoGroupId::from("ag"), add, remove, patch).await;
                (i, answer)
            });
        }
        let mut answers = Vec::new();
        while let Some(done) = tasks.join_next().await {
            answers.push(done.expect("task"));
        }
        answers.sort_by_key(|(i, _)| *i);
        let sent = guard(&sent).clone();
        (answers.into_iter().map(|(_, a)| a).collect(), sent)
    }

    #[tokio::test(start_paused = true)]
    async fn changes_waiting_together_share_one_patch_and_each_gets_its_answer() {
        let ids: Vec<String> = (0..30).map(|i| format!("u{i}")).collect();
        let changes = ids
            .iter()
            .enumerate()
            .map(|(i, id)| if i % 3 == 0 { (vec![], vec![id.as_str()]) } else { (vec![id.as_str()], vec![]) })
            .collect();
        let (answers, sent) = burst(changes, "nobody").await;
        assert!(answers.iter().all(|a| *a == Ok(PatchMembers::Done)), "{answers:?}");
        assert!(sent.len() <= 3, "30 changes, a few PATCHes: {sent:?}");
        let added: usize = sent.iter().map(|(a, _)| a.len()).sum();
        let removed: usize = sent.iter().map(|(_, r)| r.len()).sum();
        assert_eq!((added, removed), (20, 10), "every change sent once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_shared_patch_is_sent_again_change_by_change() {
        let changes = ["a", "b", "bad", "c"].map(|id| (vec![id], vec![])).to_vec();
        let (answers, sent) = burst(changes, "bad").await;
        assert_eq!(answers[2], Ok(PatchMembers::UserNotFound("2202".into())), "the refusal is bad's");
        for i in [0, 1, 3] {
            assert_eq!(answers[i], Ok(PatchMembers::Done), "the others are done: {answers:?}");
        }
        let alone = sent.iter().filter(|(a, r)| a.len() + r.len() == 1).count();
        assert!(alone >= 4, "after a refused shared PATCH each change is sent alone: {sent:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn an_add_and_a_remove_of_one_user_never_share_a_patch() {
        let changes = vec![(vec!["x"], vec![]), (vec![], vec!["x"]), (vec!["x"], vec![])];
        let (answers, sent) = burst(changes, "nobody").await;
        assert!(answers.iter().all(|a| *a == Ok(PatchMembers::Done)));
        let x = "x".to_owned();
        assert!(sent.iter().all(|(a, r)| !(a.contains(&x) && r.contains(&x))), "{sent:?}");
    }

    #[test]
    fn a_batch_holds_at_most_max_ids_and_at_least_one_change() {
        let mut receivers = Vec::new();
        let mut req = |ids: Vec<String>| {
            let (tx, rx) = oneshot::channel();
            receivers.push(rx);
            Request { add: ids, remove: vec![], tx }
        };
        let big = (0..MAX_IDS + 5).map(|i| format!("big{i}")).collect();
        let mut pending = vec![req(big), req(vec!["u".into()])];
        assert_eq!(take_batch(&mut pending).len(), 1, "an oversized change still goes, alone");
        let mut pending: Vec<Request> = (0..=MAX_IDS).map(|i| req(vec![format!("u{i}")])).collect();
        assert_eq!(take_batch(&mut pending).len(), MAX_IDS);
        assert_eq!(pending.len(), 1, "the rest waits for the next PATCH");
        drop(receivers);
        assert!(take_batch(&mut pending).is_empty(), "a change whose caller gave up is dropped");
    }
}
