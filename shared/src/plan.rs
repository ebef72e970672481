//! Desired state and the diff against applied state: pure functions, no I/O, no clock.
//!
//! `desired` turns a subject's entitlements into the access they justify now and later;
//! `diff` compares that with what Portier applied and yields the fewest operations that
//! close the difference. Replays, timers and resyncs all come through here.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::model::{
    Applied, AppliedState, Email, Entitlement, Failure, Instant, ItemRef, Mapping, Profile, Target, Window,
};

/// Access one subject should have at one target, for one merged window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Desired {
    pub target: Target,
    pub window: Window,
    pub email: Email,
    /// Entitlement keys that justify this access (for explain and audit).
    pub causes: Vec<String>,
}

/// Everything the planner concluded for a subject, including what it could not map.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DesiredSet {
    pub access: Vec<Desired>,
    /// Active entitlements whose item has no mapping (shown by explain).
    pub unmapped: Vec<ItemRef>,
}

/// One provider operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Create access; `resume` means an intent exists and the provider must look it up first.
    Grant { target: Target, window: Window, email: Email, resume: bool, causes: Vec<String> },
    /// Remove access Portier created (or may have created, if only an intent was recorded).
    Revoke { applied: Applied },
}

impl Op {
    pub fn target(&self) -> &Target {
        match self {
            Op::Grant { target, .. } => target,
            Op::Revoke { applied } => &applied.target,
        }
    }

    /// Identifies the operation, so a permanent failure blocks only this exact operation.
    pub fn fingerprint(&self) -> String {
        match self {
            Op::Grant { target, window, email, .. } => {
                format!("grant {} {window} {}", target.key(), email.hashed())
            }
            Op::Revoke { applied } => format!("revoke {}", applied.key()),
        }
    }
}

/// The operations to run, and the ones held back by a recent permanent failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub ops: Vec<Op>,
    pub blocked: Vec<(Op, String)>,
    /// When this subject must be looked at again (a window starts or ends, a failure cools down).
    pub next_check: Option<Instant>,
}

/// The access a subject's entitlements justify, at `now` and in the future.
pub fn desired(
    profile: Option<&Profile>,
    entitlements: &[Entitlement],
    mappings: &[Mapping],
    now: Instant,
) -> DesiredSet {
    let mut set = DesiredSet::default();
    let Some(profile) = profile.filter(|p| !p.deleted) else { return set };
    let Some(email) = profile.email.clone() else { return set };

    let mut per_target: BTreeMap<Target, Vec<(Window, String)>> = BTreeMap::new();
    for ent in entitlements.iter().filter(|e| e.is_active()) {
        if ent.window.is_empty() || ent.window.has_ended(now) {
            continue;
        }
        let Some(mapping) = mappings.iter().find(|m| m.item == ent.item) else {
            if !set.unmapped.contains(&ent.item) {
                set.unmapped.push(ent.item.clone());
            }
            continue;
        };
        for target in &mapping.targets {
            per_target.entry(target.clone()).or_default().push((ent.window, ent.key()));
        }
    }

    for (target, windows) in per_target {
        for merged in Window::merge_all(windows.iter().map(|(w, _)| *w).collect()) {
            let causes = windows.iter().filter(|(w, _)| merged.touches(w)).map(|(_, k)| k.clone()).collect();
            set.access.push(Desired { target: target.clone(), window: merged, email: email.clone(), causes });
        }
    }
    set
}

/// The fewest operations that turn `applied` into `desired`.
///
/// Grants come before revokes so a changed window never leaves a gap at the door.
pub fn diff(
    desired: &DesiredSet,
    entitlements: &[Entitlement],
    applied: &[Applied],
    failures: &[Failure],
    now: Instant,
) -> Plan {
    let same = |d: &Desired, a: &Applied| d.target == a.target && d.window == a.window && d.email == a.email;

    let mut candidates = Vec::new();
    for d in &desired.access {
        match applied.iter().find(|a| same(d, a)) {
            Some(a) if matches!(a.state, AppliedState::Created { .. }) => {}
            found => candidates.push(Op::Grant {
                target: d.target.clone(),
                window: d.window,
                email: d.email.clone(),
                resume: found.is_some(),
                causes: d.causes.clone(),
            }),
        }
    }
    for a in applied {
        if !desired.access.iter().any(|d| same(d, a)) {
            candidates.push(Op::Revoke { applied: a.clone() });
        }
    }

    let mut plan = Plan::default();
    for op in candidates {
        let fingerprint = op.fingerprint();
        match failures.iter().find(|f| f.op == fingerprint && now < f.retry_after) {
            Some(f) => plan.blocked.push((op, f.reason.clone())),
            None => plan.ops.push(op),
        }
    }

    plan.next_check = next_check(desired, entitlements, failures, now);
    plan
}

/// The next instant at which the plan could change without any new input.
fn next_check(
    desired: &DesiredSet,
    entitlements: &[Entitlement],
    failures: &[Failure],
    now: Instant,
) -> Option<Instant> {
    let window_edges = entitlements
        .iter()
        .filter(|e| e.is_active())
        .flat_map(|e| [e.window.from, e.window.until])
        .chain(desired.access.iter().map(|d| d.window.until));
    window_edges.flatten().chain(failures.iter().map(|f| f.retry_after)).filter(|t| *t > now).min()
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone, Utc};

    use super::*;
    use crate::model::{EntitlementKind, EntitlementState, GrantId, ItemKind, LockId};

    fn t(day: u32, h: u32) -> Instant {
        Utc.with_ymd_and_hms(2026, 12, day, h, 0, 0).single().expect("valid")
    }

    fn email(s: &str) -> Email {
        Email::parse(s).expect("valid email")
    }

    fn profile(e: &str) -> Profile {
        Profile { email: Some(email(e)), name: "Anna".into(), source_version: None, deleted: false }
    }

    fn pass(id: &str, product: &str, window: Window) -> Entitlement {
        Entitlement {
            kind: EntitlementKind::Pass,
            id: id.into(),
            item: ItemRef { kind: ItemKind::Pass, id: product.into() },
            label: "Bike Storage".into(),
            window,
            state: EntitlementState::Active,
            source_version: t(1, 0),
        }
    }

    fn lock(id: &str) -> Target {
        Target::TapkeyLock(LockId(id.into()))
    }

    fn mapping(product: &str, targets: &[Target]) -> Mapping {
        Mapping { item: ItemRef { kind: ItemKind::Pass, id: product.into() }, targets: targets.to_vec() }
    }

    fn created(target: Target, window: Window, e: &str) -> Applied {
        Applied {
            target,
            window,
            email: email(e),
            contact_id: None,
            state: AppliedState::Created { grant_id: GrantId("g1".into()) },
            since: t(1, 0),
        }
    }

    fn until(day: u32) -> Window {
        Window::new(None, Some(t(day, 0)))
    }

    fn plan_for(
        p: Option<&Profile>,
        ents: &[Entitlement],
        maps: &[Mapping],
        applied: &[Applied],
        failures: &[Failure],
        now: Instant,
    ) -> Plan {
        diff(&desired(p, ents, maps, now), ents, applied, failures, now)
    }

    #[test]
    fn a_mapped_pass_gives_one_grant_until_it_expires() {
        let p = profile("anna@example.com");
        let plan = plan_for(
            Some(&p),
            &[pass("7", "1001", until(31))],
            &[mapping("1001", &[lock("L1")])],
            &[],
            &[],
            t(1, 9),
        );
        assert_eq!(
            plan.ops,
            vec![Op::Grant {
                target: lock("L1"),
                window: until(31),
                email: email("anna@example.com"),
                resume: false,
                causes: vec!["pass#7".into()],
            }]
        );
        assert_eq!(plan.next_check, Some(t(31, 0)));
    }

    #[test]
    fn nothing_to_do_when_applied_matches() {
        let p = profile("anna@example.com");
        let applied = [created(lock("L1"), until(31), "anna@example.com")];
        let plan = plan_for(
            Some(&p),
            &[pass("7", "1001", until(31))],
            &[mapping("1001", &[lock("L1")])],
            &applied,
            &[],
            t(1, 9),
        );
        assert!(plan.ops.is_empty());
    }

    #[test]
    fn an_intent_resumes_instead_of_creating_blindly() {
        let p = profile("anna@example.com");
        let mut a = created(lock("L1"), until(31), "anna@example.com");
        a.state = AppliedState::Intent;
        let plan = plan_for(
            Some(&p),
            &[pass("7", "1001", until(31))],
            &[mapping("1001", &[lock("L1")])],
            &[a],
            &[],
            t(1, 9),
        );
        assert!(matches!(plan.ops.as_slice(), [Op::Grant { resume: true, .. }]));
    }

    #[test]
    fn an_ended_or_used_pass_revokes_the_grant() {
        let p = profile("anna@example.com");
        let applied = [created(lock("L1"), until(31), "anna@example.com")];
        let mut used = pass("7", "1001", until(31));
        used.state = EntitlementState::Ended { reason: "used".into() };
        for ents in [vec![used], vec![]] {
            let plan = plan_for(Some(&p), &ents, &[mapping("1001", &[lock("L1")])], &applied, &[], t(1, 9));
            assert_eq!(plan.ops, vec![Op::Revoke { applied: applied[0].clone() }]);
        }
    }

    #[test]
    fn a_revoked_entitlement_revokes_whatever_its_window_says() {
        let p = profile("anna@example.com");
        let applied = [created(lock("L1"), until(31), "anna@example.com")];
        let mut revoked = pass("7", "1001", until(31));
        revoked.state = EntitlementState::Revoked { reason: "overdue invoice".into() };
        let plan = plan_for(Some(&p), &[revoked], &[mapping("1001", &[lock("L1")])], &applied, &[], t(1, 9));
        assert_eq!(plan.ops, vec![Op::Revoke { applied: applied[0].clone() }]);
        assert_eq!(plan.next_check, None, "a revocation waits for its restore, not for a window edge");
    }

    #[test]
    fn an_expired_pass_is_cleaned_up_after_its_end() {
        let p = profile("anna@example.com");
        let applied = [created(lock("L1"), until(2), "anna@example.com")];
        let ents = [pass("7", "1001", until(2))];
        let maps = [mapping("1001", &[lock("L1")])];
        assert!(plan_for(Some(&p), &ents, &maps, &applied, &[], t(1, 23)).ops.is_empty());
        assert!(matches!(
            plan_for(Some(&p), &ents, &maps, &applied, &[], t(2, 0)).ops.as_slice(),
            [Op::Revoke { .. }]
        ));
    }

    #[test]
    fn a_changed_window_grants_the_new_one_before_revoking_the_old() {
        let p = profile("anna@example.com");
        let applied = [created(lock("L1"), until(31), "anna@example.com")];
        let plan = plan_for(
            Some(&p),
            &[pass("7", "1001", until(30))],
            &[mapping("1001", &[lock("L1")])],
            &applied,
            &[],
            t(1, 9),
        );
        assert!(
            matches!(plan.ops.as_slice(), [Op::Grant { window, .. }, Op::Revoke { .. }] if *window == until(30))
        );
    }

    #[test]
    fn an_email_change_moves_the_grant() {
        let p = profile("new@example.com");
        let applied = [created(lock("L1"), until(31), "old@example.com")];
        let plan = plan_for(
            Some(&p),
            &[pass("7", "1001", until(31))],
            &[mapping("1001", &[lock("L1")])],
            &applied,
            &[],
            t(1, 9),
        );
        assert!(matches!(plan.ops.as_slice(),
            [Op::Grant { email, .. }, Op::Revoke { applied }]
            if email.as_str() == "new@example.com" && applied.email.as_str() == "old@example.com"));
    }

    #[test]
    fn a_deleted_or_unknown_person_keeps_nothing() {
        let mut p = profile("anna@example.com");
        p.deleted = true;
        let applied = [created(lock("L1"), until(31), "anna@example.com")];
        let ents = [pass("7", "1001", until(31))];
        let maps = [mapping("1001", &[lock("L1")])];
        for prof in [Some(&p), None] {
            let plan = plan_for(prof, &ents, &maps, &applied, &[], t(1, 9));
            assert!(matches!(plan.ops.as_slice(), [Op::Revoke { .. }]));
        }
    }

    #[test]
    fn two_passes_on_one_lock_merge_into_one_grant() {
        let p = profile("anna@example.com");
        let ents = [
            pass("7", "1001", Window::new(Some(t(1, 0)), Some(t(10, 0)))),
            pass("8", "1002", Window::new(Some(t(5, 0)), Some(t(20, 0)))),
        ];
        let maps = [mapping("1001", &[lock("L1")]), mapping("1002", &[lock("L1")])];
        let set = desired(Some(&p), &ents, &maps, t(1, 9));
        assert_eq!(set.access.len(), 1);
        assert_eq!(set.access[0].window, Window::new(Some(t(1, 0)), Some(t(20, 0))));
        assert_eq!(set.access[0].causes, vec!["pass#7".to_owned(), "pass#8".to_owned()]);
    }

    #[test]
    fn one_pass_mapped_to_two_locks_gives_two_grants() {
        let p = profile("anna@example.com");
        let set = desired(
            Some(&p),
            &[pass("7", "1001", until(31))],
            &[mapping("1001", &[lock("L1"), lock("L2")])],
            t(1, 9),
        );
        assert_eq!(
            set.access.iter().map(|d| d.target.clone()).collect::<Vec<_>>(),
            vec![lock("L1"), lock("L2")]
        );
    }

    #[test]
    fn unmapped_items_are_reported_not_granted() {
        let p = profile("anna@example.com");
        let set =
            desired(Some(&p), &[pass("7", "9999", until(31))], &[mapping("1001", &[lock("L1")])], t(1, 9));
        assert!(set.access.is_empty());
        assert_eq!(set.unmapped, vec![ItemRef { kind: ItemKind::Pass, id: "9999".into() }]);
    }

    #[test]
    fn a_recent_permanent_failure_blocks_only_the_same_operation() {
        let p = profile("anna@example.com");
        let ents = [pass("7", "1001", until(31))];
        let maps = [mapping("1001", &[lock("L1")])];
        let first = plan_for(Some(&p), &ents, &maps, &[], &[], t(1, 9));
        let failure = Failure {
            target: lock("L1"),
            reason: "lock is not active".into(),
            op: first.ops[0].fingerprint(),
            at: t(1, 9),
            retry_after: t(1, 10),
        };
        let blocked = plan_for(Some(&p), &ents, &maps, &[], std::slice::from_ref(&failure), t(1, 9));
        assert!(blocked.ops.is_empty());
        assert_eq!(blocked.blocked.len(), 1);
        assert_eq!(blocked.next_check, Some(t(1, 10)));
        // After the cool-down it is tried again; a changed window is a new operation at once.
        assert_eq!(
            plan_for(Some(&p), &ents, &maps, &[], std::slice::from_ref(&failure), t(1, 10)).ops.len(),
            1
        );
        let changed = [pass("7", "1001", until(30))];
        assert_eq!(plan_for(Some(&p), &changed, &maps, &[], &[failure], t(1, 9)).ops.len(), 1);
    }

    #[test]
    fn future_windows_are_granted_ahead_and_checked_at_their_edges() {
        let p = profile("anna@example.com");
        let w = Window::new(Some(t(10, 0)), Some(t(11, 0)));
        let plan =
            plan_for(Some(&p), &[pass("7", "1001", w)], &[mapping("1001", &[lock("L1")])], &[], &[], t(1, 9));
        assert!(matches!(plan.ops.as_slice(), [Op::Grant { window, .. }] if *window == w));
        assert_eq!(plan.next_check, Some(t(10, 0)));
    }

    #[test]
    fn planning_is_idempotent_once_applied() {
        // Apply every grant of a plan, then plan again: nothing left to do.
        let p = profile("anna@example.com");
        let ents = [pass("7", "1001", until(31)), pass("8", "1002", Window::new(Some(t(3, 0)), None))];
        let maps = [mapping("1001", &[lock("L1"), lock("L2")]), mapping("1002", &[lock("L2")])];
        let now = t(1, 9);
        let plan = plan_for(Some(&p), &ents, &maps, &[], &[], now);
        let applied: Vec<Applied> = plan
            .ops
            .iter()
            .map(|op| match op {
                Op::Grant { target, window, email, .. } => Applied {
                    target: target.clone(),
                    window: *window,
                    email: email.clone(),
                    contact_id: None,
                    state: AppliedState::Created { grant_id: GrantId("g".into()) },
                    since: now,
                },
                Op::Revoke { .. } => unreachable!("nothing to revoke from empty"),
            })
            .collect();
        assert_eq!(plan_for(Some(&p), &ents, &maps, &applied, &[], now + Duration::minutes(1)).ops, vec![]);
    }
}
