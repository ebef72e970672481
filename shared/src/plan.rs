//! Desired state and the diff against applied state: pure functions, no I/O, no clock.
//!
//! `desired` turns a subject's entitlements into the access they justify now and later;
//! `diff` compares that with what Portier applied and yields the fewest operations that
//! close the difference. Replays, timers and resyncs all come through here.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::config::NoAccess;
use crate::model::{
    Applied, Email, Entitlement, Failure, Instant, ItemRef, Mapping, Profile, ProviderKind, ProviderUser,
    Target, UserState, Window,
};

/// Access one subject should have at one target, for one merged window. For a group
/// membership (no validity at the provider) only the window holding now is desired.
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
            // A membership carries no window at the provider: a new window is the same operation.
            Op::Grant { target, email, .. } if target.is_membership() => {
                format!("grant {} member {}", target.key(), email.hashed())
            }
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
    // A deleted or suspended person is granted nothing: the overlay outranks every window.
    let Some(profile) = profile.filter(|p| !p.deleted && p.suspended.is_none()) else { return set };
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
            // Memberships are added when their window starts (a timer) and not ahead of time.
            if target.is_membership() && !merged.contains(now) {
                continue;
            }
            let causes = windows.iter().filter(|(w, _)| merged.touches(w)).map(|(_, k)| k.clone()).collect();
            set.access.push(Desired { target: target.clone(), window: merged, email: email.clone(), causes });
        }
    }
    set
}

/// The fewest operations that turn `applied` into `desired`.
///
/// Grants come before revokes so a changed window never leaves a gap at the door. Memberships
/// are matched by (group, email) whatever their window, so a changed window costs no call;
/// their revokes come first, so an email change at one provider user removes and re-adds
/// instead of adding (a no-op) and then removing.
pub fn diff(
    desired: &DesiredSet,
    entitlements: &[Entitlement],
    applied: &[Applied],
    failures: &[Failure],
    now: Instant,
) -> Plan {
    let same = |d: &Desired, a: &Applied| {
        d.target == a.target && d.email == a.email && (d.target.is_membership() || d.window == a.window)
    };

    let mut candidates = Vec::new();
    for a in applied.iter().filter(|a| a.target.is_membership()) {
        if !desired.access.iter().any(|d| same(d, a)) {
            candidates.push(Op::Revoke { applied: a.clone() });
        }
    }
    for d in &desired.access {
        match applied.iter().find(|a| same(d, a)) {
            Some(a) if a.state.is_done() => {}
            found => candidates.push(Op::Grant {
                target: d.target.clone(),
                window: d.window,
                email: d.email.clone(),
                resume: found.is_some(),
                causes: d.causes.clone(),
            }),
        }
    }
    for a in applied.iter().filter(|a| !a.target.is_membership()) {
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

/// What happens to a subject's user at a membership provider (Salto KS, Brivo).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum UserOp {
    /// Access returns to a suspended user: unsuspend before memberships are added.
    Reactivate { provider: ProviderKind },
    /// No membership left and the policy is `suspend`.
    Suspend { provider: ProviderKind },
    /// No membership left and the policy is `delete` (pending invitations are cancelled).
    Delete { provider: ProviderKind },
    /// A Brivo user first gains access: send the Mobile Pass invitation.
    Invite { provider: ProviderKind },
    /// Users an email change left behind (Salto KS invites per email) go through the no-access
    /// policy; under `keep` they are audited once and stay recorded, so a later policy reaches them.
    Retire { provider: ProviderKind },
}

impl UserOp {
    pub fn provider(&self) -> ProviderKind {
        match self {
            UserOp::Reactivate { provider }
            | UserOp::Suspend { provider }
            | UserOp::Delete { provider }
            | UserOp::Invite { provider }
            | UserOp::Retire { provider } => *provider,
        }
    }

    /// Identifies the operation, so a permanent failure blocks only it.
    pub fn fingerprint(&self) -> String {
        let name = match self {
            UserOp::Reactivate { .. } => "reactivate",
            UserOp::Suspend { .. } => "suspend",
            UserOp::Delete { .. } => "delete",
            UserOp::Invite { .. } => "invite",
            UserOp::Retire { .. } => "retire",
        };
        format!("user {name} {}", self.provider().as_str())
    }

    /// True for the ops that run before memberships change (the user must be usable first).
    pub fn runs_first(&self) -> bool {
        matches!(self, UserOp::Reactivate { .. })
    }
}

impl std::fmt::Display for UserOp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = self.provider().name();
        match self {
            UserOp::Reactivate { .. } => write!(f, "unsuspend the {p} user (access returns)"),
            UserOp::Suspend { .. } => write!(f, "suspend the {p} user (no access left; policy: suspend)"),
            UserOp::Delete { .. } => write!(f, "delete the {p} user (no access left; policy: delete)"),
            UserOp::Invite { .. } => write!(f, "send the {p} Mobile Pass invitation"),
            UserOp::Retire { .. } => {
                write!(f, "put the {p} user left by an email change through the no-access policy")
            }
        }
    }
}

/// The tenant's rules for provider users.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UserPolicy {
    pub no_access: NoAccess,
    /// Send Brivo Mobile Pass invitations (per tenant, on by default).
    pub mobile_pass: bool,
}

impl UserPolicy {
    /// The tenant's no-access policy and Mobile Pass switch.
    pub fn of(tenant: &crate::config::TenantConfig) -> Self {
        Self {
            no_access: tenant.policy.no_access,
            mobile_pass: tenant.providers.brivo.as_ref().is_none_or(|b| b.mobile_pass),
        }
    }
}

/// The user operations to run and the ones held back by a recent permanent failure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct UserPlan {
    pub ops: Vec<UserOp>,
    pub blocked: Vec<(UserOp, String)>,
}

/// Everything one subject's plan is computed from: the store's records, or a resync's merge
/// of the source's listing into them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SubjectState {
    pub profile: Option<Profile>,
    pub entitlements: Vec<Entitlement>,
    pub applied: Vec<Applied>,
    pub failures: Vec<Failure>,
    pub users: Vec<ProviderUser>,
}

/// A subject's whole plan: access operations and provider-user operations.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Planned {
    pub desired: DesiredSet,
    pub plan: Plan,
    pub users: UserPlan,
}

impl Planned {
    /// True when nothing is to be done (held-back operations aside).
    pub fn is_empty(&self) -> bool {
        self.plan.ops.is_empty() && self.users.ops.is_empty()
    }

    /// Keeps only the operations at one lock system.
    pub fn only(&mut self, provider: ProviderKind) {
        self.plan.ops.retain(|op| op.target().provider() == provider);
        self.users.ops.retain(|op| op.provider() == provider);
    }
}

/// The one planning function: reconcile, resync (and its dry run) and explain all call it, so
/// what an operator is shown is what the worker does.
pub fn plan_subject(state: &SubjectState, mappings: &[Mapping], policy: UserPolicy, now: Instant) -> Planned {
    let desired = desired(state.profile.as_ref(), &state.entitlements, mappings, now);
    let plan = diff(&desired, &state.entitlements, &state.applied, &state.failures, now);
    let users = user_ops(&desired, &state.users, &state.failures, policy, now);
    Planned { desired, plan, users }
}

/// What the no-access policy, re-activation and Mobile Pass ask for, per membership provider.
///
/// `users` are the provider users Portier created for this subject (`USER#provider`); only
/// they are ever suspended or deleted. A user whose creation is only an intent is left alone.
pub fn user_ops(
    desired: &DesiredSet,
    users: &[ProviderUser],
    failures: &[Failure],
    policy: UserPolicy,
    now: Instant,
) -> UserPlan {
    let wants = |p: ProviderKind| desired.access.iter().any(|d| d.target.provider() == p);
    let mut providers: Vec<ProviderKind> = desired
        .access
        .iter()
        .map(|d| d.target.provider())
        .chain(users.iter().map(|u| u.provider))
        .filter(|p| !p.has_native_validity())
        .collect();
    providers.sort();
    providers.dedup();

    let mut candidates = Vec::new();
    for provider in providers {
        let retired =
            |u: &ProviderUser| u.retired.iter().any(|r| policy.no_access != NoAccess::Keep || !r.kept);
        if users.iter().any(|u| u.provider == provider && retired(u)) {
            candidates.push(UserOp::Retire { provider });
        }
        let user = users.iter().find(|u| u.provider == provider && u.ids.is_some());
        if wants(provider) {
            if user.is_some_and(|u| u.state == UserState::Suspended) {
                candidates.push(UserOp::Reactivate { provider });
            }
            if provider == ProviderKind::Brivo && policy.mobile_pass && !user.is_some_and(|u| u.invited) {
                candidates.push(UserOp::Invite { provider });
            }
        } else if let Some(u) = user {
            match policy.no_access {
                NoAccess::Keep => {}
                NoAccess::Suspend if u.state == UserState::Active => {
                    candidates.push(UserOp::Suspend { provider });
                }
                NoAccess::Suspend => {}
                NoAccess::Delete => candidates.push(UserOp::Delete { provider }),
            }
        }
    }

    let mut plan = UserPlan::default();
    for op in candidates {
        let fingerprint = op.fingerprint();
        match failures.iter().find(|f| f.op == fingerprint && now < f.retry_after) {
            Some(f) => plan.blocked.push((op, f.reason.clone())),
            None => plan.ops.push(op),
        }
    }
    plan
}

/// True when the no-access policy still has something to do with a user an email change left.
pub fn retired_needs(r: &crate::model::RetiredUser, policy: NoAccess) -> bool {
    match policy {
        NoAccess::Keep => !r.kept && !r.suspended,
        NoAccess::Suspend => !r.suspended,
        NoAccess::Delete => true,
    }
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
    use crate::model::{
        AppliedState, BrivoGroupId, EntitlementKind, EntitlementState, GrantId, ItemKind, LockId,
        ProviderUserIds, SaltoGroupId,
    };

    fn t(day: u32, h: u32) -> Instant {
        Utc.with_ymd_and_hms(2026, 12, day, h, 0, 0).single().expect("valid")
    }

    fn email(s: &str) -> Email {
        Email::parse(s).expect("valid email")
    }

    fn profile(e: &str) -> Profile {
        Profile {
            email: Some(email(e)),
            name: "Anna".into(),
            source_version: None,
            deleted: false,
            gone_at: None,
            suspended: None,
        }
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

    // ── memberships (Salto KS, Brivo): held only while a window holds now ────────────────

    fn salto(id: &str) -> Target {
        Target::SaltoGroup(SaltoGroupId(id.into()))
    }

    fn brivo(id: &str) -> Target {
        Target::BrivoGroup(BrivoGroupId(id.into()))
    }

    fn member(target: Target, window: Window, e: &str) -> Applied {
        Applied {
            target,
            window,
            email: email(e),
            contact_id: None,
            state: AppliedState::Member { user: ProviderUserIds { id: "u1".into(), platform_id: None } },
            since: t(1, 0),
        }
    }

    fn between(from: (u32, u32), until: (u32, u32)) -> Window {
        Window::new(Some(t(from.0, from.1)), Some(t(until.0, until.1)))
    }

    #[test]
    fn a_future_membership_is_not_added_ahead_but_gets_a_timer_at_its_start() {
        let p = profile("anna@example.com");
        let w = between((10, 9), (10, 11));
        let ents = [pass("7", "1001", w)];
        let maps = [mapping("1001", &[salto("AG1")])];
        let plan = plan_for(Some(&p), &ents, &maps, &[], &[], t(1, 9));
        assert!(plan.ops.is_empty(), "{:?}", plan.ops);
        assert_eq!(plan.next_check, Some(t(10, 9)));
        // At the start it is added, with a timer at its end …
        let plan = plan_for(Some(&p), &ents, &maps, &[], &[], t(10, 9));
        assert!(matches!(plan.ops.as_slice(), [Op::Grant { target, .. }] if *target == salto("AG1")));
        assert_eq!(plan.next_check, Some(t(10, 11)));
        // … and at the end it is removed.
        let applied = [member(salto("AG1"), w, "anna@example.com")];
        assert!(plan_for(Some(&p), &ents, &maps, &applied, &[], t(10, 10)).ops.is_empty());
        let plan = plan_for(Some(&p), &ents, &maps, &applied, &[], t(10, 11));
        assert_eq!(plan.ops, vec![Op::Revoke { applied: applied[0].clone() }]);
        assert_eq!(plan.next_check, None);
    }

    #[test]
    fn a_changed_window_is_no_change_for_a_membership() {
        let p = profile("anna@example.com");
        let maps = [mapping("1001", &[brivo("G1")])];
        let applied = [member(brivo("G1"), until(31), "anna@example.com")];
        for w in [until(30), Window::new(Some(t(1, 0)), None), Window::ALWAYS] {
            let plan = plan_for(Some(&p), &[pass("7", "1001", w)], &maps, &applied, &[], t(1, 9));
            assert!(plan.ops.is_empty(), "{w}: {:?}", plan.ops);
        }
    }

    #[test]
    fn two_passes_for_one_group_keep_the_membership_until_both_end() {
        let p = profile("anna@example.com");
        let maps = [mapping("1001", &[salto("AG1")]), mapping("1002", &[salto("AG1")])];
        let ents = [pass("7", "1001", between((1, 0), (5, 0))), pass("8", "1002", between((3, 0), (9, 0)))];
        let applied = [member(salto("AG1"), between((1, 0), (9, 0)), "anna@example.com")];
        let at_6 = plan_for(Some(&p), &ents, &maps, &applied, &[], t(6, 0));
        assert!(at_6.ops.is_empty(), "the first pass ended, the second still holds");
        assert_eq!(at_6.next_check, Some(t(9, 0)));
        assert!(matches!(
            plan_for(Some(&p), &ents, &maps, &applied, &[], t(9, 0)).ops.as_slice(),
            [Op::Revoke { .. }]
        ));
        // The first pass used up early changes nothing either.
        let mut used = ents.clone();
        used[0].state = EntitlementState::Ended { reason: "used".into() };
        assert!(plan_for(Some(&p), &used, &maps, &applied, &[], t(4, 0)).ops.is_empty());
    }

    #[test]
    fn a_gap_between_two_windows_removes_and_re_adds_at_the_edges() {
        let p = profile("anna@example.com");
        let maps = [mapping("1001", &[salto("AG1")]), mapping("1002", &[salto("AG1")])];
        let ents = [pass("7", "1001", between((1, 0), (3, 0))), pass("8", "1002", between((5, 0), (7, 0)))];
        let applied = [member(salto("AG1"), between((1, 0), (3, 0)), "anna@example.com")];
        let at_4 = plan_for(Some(&p), &ents, &maps, &applied, &[], t(4, 0));
        assert!(matches!(at_4.ops.as_slice(), [Op::Revoke { .. }]));
        assert_eq!(at_4.next_check, Some(t(5, 0)));
        let at_5 = plan_for(Some(&p), &ents, &maps, &[], &[], t(5, 0));
        assert!(matches!(at_5.ops.as_slice(), [Op::Grant { .. }]));
    }

    #[test]
    fn an_email_change_removes_the_old_membership_before_adding_the_new() {
        let p = profile("new@example.com");
        let applied = [member(brivo("G1"), until(31), "old@example.com")];
        let plan = plan_for(
            Some(&p),
            &[pass("7", "1001", until(31))],
            &[mapping("1001", &[brivo("G1")])],
            &applied,
            &[],
            t(1, 9),
        );
        assert!(matches!(plan.ops.as_slice(),
            [Op::Revoke { applied }, Op::Grant { email, .. }]
            if applied.email.as_str() == "old@example.com" && email.as_str() == "new@example.com"));
    }

    #[test]
    fn tapkey_grants_are_still_created_ahead_beside_a_future_membership() {
        let p = profile("anna@example.com");
        let w = between((10, 9), (10, 11));
        let plan = plan_for(
            Some(&p),
            &[pass("7", "1001", w)],
            &[mapping("1001", &[lock("L1"), salto("AG1"), brivo("G1")])],
            &[],
            &[],
            t(1, 9),
        );
        assert!(
            matches!(plan.ops.as_slice(), [Op::Grant { target, window, .. }] if *target == lock("L1") && *window == w)
        );
        assert_eq!(plan.next_check, Some(t(10, 9)));
    }

    #[test]
    fn a_blocked_membership_stays_blocked_when_only_its_window_changes() {
        let p = profile("anna@example.com");
        let maps = [mapping("1001", &[salto("AG1")])];
        let first = plan_for(Some(&p), &[pass("7", "1001", until(31))], &maps, &[], &[], t(1, 9));
        let failure = Failure {
            target: salto("AG1"),
            reason: "no free seat".into(),
            op: first.ops[0].fingerprint(),
            at: t(1, 9),
            retry_after: t(1, 10),
        };
        let plan = plan_for(Some(&p), &[pass("7", "1001", until(30))], &maps, &[], &[failure], t(1, 9));
        assert!(plan.ops.is_empty());
        assert_eq!(plan.blocked.len(), 1);
    }

    fn user(provider: ProviderKind, state: UserState, invited: bool) -> ProviderUser {
        ProviderUser {
            provider,
            ids: Some(ProviderUserIds { id: "u1".into(), platform_id: None }),
            email: email("anna@example.com"),
            state,
            created_at: t(1, 0),
            invited,
            retired: Vec::new(),
        }
    }

    fn policy(no_access: NoAccess) -> UserPolicy {
        UserPolicy { no_access, mobile_pass: true }
    }

    fn wanting(targets: &[Target]) -> DesiredSet {
        let p = profile("anna@example.com");
        desired(Some(&p), &[pass("7", "1001", until(31))], &[mapping("1001", targets)], t(1, 9))
    }

    #[test]
    fn the_no_access_policy_applies_when_no_membership_is_left() {
        let none = DesiredSet::default();
        let users = [user(ProviderKind::Salto, UserState::Active, false)];
        let ops = |no_access| user_ops(&none, &users, &[], policy(no_access), t(1, 9)).ops;
        assert_eq!(ops(NoAccess::Keep), vec![]);
        assert_eq!(ops(NoAccess::Suspend), vec![UserOp::Suspend { provider: ProviderKind::Salto }]);
        assert_eq!(ops(NoAccess::Delete), vec![UserOp::Delete { provider: ProviderKind::Salto }]);
        // Already suspended: nothing more; a later `delete` policy still deletes.
        let suspended = [user(ProviderKind::Salto, UserState::Suspended, false)];
        assert!(user_ops(&none, &suspended, &[], policy(NoAccess::Suspend), t(1, 9)).ops.is_empty());
        assert_eq!(
            user_ops(&none, &suspended, &[], policy(NoAccess::Delete), t(1, 9)).ops,
            vec![UserOp::Delete { provider: ProviderKind::Salto }]
        );
        // A membership at another provider does not keep this one's user.
        let at_brivo = wanting(&[brivo("G1")]);
        let brivo_user = user(ProviderKind::Brivo, UserState::Active, true);
        assert_eq!(
            user_ops(&at_brivo, &[users[0].clone(), brivo_user], &[], policy(NoAccess::Suspend), t(1, 9)).ops,
            vec![UserOp::Suspend { provider: ProviderKind::Salto }]
        );
    }

    #[test]
    fn access_returning_reactivates_a_suspended_user() {
        let users = [user(ProviderKind::Salto, UserState::Suspended, false)];
        for no_access in [NoAccess::Keep, NoAccess::Suspend, NoAccess::Delete] {
            let plan = user_ops(&wanting(&[salto("AG1")]), &users, &[], policy(no_access), t(1, 9));
            assert_eq!(plan.ops, vec![UserOp::Reactivate { provider: ProviderKind::Salto }]);
            assert!(plan.ops[0].runs_first());
        }
        let active = [user(ProviderKind::Salto, UserState::Active, false)];
        assert!(
            user_ops(&wanting(&[salto("AG1")]), &active, &[], policy(NoAccess::Suspend), t(1, 9))
                .ops
                .is_empty()
        );
    }

    #[test]
    fn a_brivo_user_is_invited_once_when_the_tenant_wants_mobile_pass() {
        let d = wanting(&[brivo("G1")]);
        let invite = vec![UserOp::Invite { provider: ProviderKind::Brivo }];
        // No user yet (it is created with the first membership) or not invited yet: invite.
        assert_eq!(user_ops(&d, &[], &[], policy(NoAccess::Keep), t(1, 9)).ops, invite);
        let fresh = [user(ProviderKind::Brivo, UserState::Active, false)];
        assert_eq!(user_ops(&d, &fresh, &[], policy(NoAccess::Keep), t(1, 9)).ops, invite);
        let invited = [user(ProviderKind::Brivo, UserState::Active, true)];
        assert!(user_ops(&d, &invited, &[], policy(NoAccess::Keep), t(1, 9)).ops.is_empty());
        let off = UserPolicy { no_access: NoAccess::Keep, mobile_pass: false };
        assert!(user_ops(&d, &fresh, &[], off, t(1, 9)).ops.is_empty());
        // Salto KS invites by itself (the create sends the mail): no invite op.
        assert!(
            user_ops(&wanting(&[salto("AG1")]), &[], &[], policy(NoAccess::Keep), t(1, 9)).ops.is_empty()
        );
        // A refused invitation (412) is held back for the cool-down.
        let failure = Failure {
            target: brivo("G1"),
            reason: "no Wallet Passes left".into(),
            op: invite[0].fingerprint(),
            at: t(1, 9),
            retry_after: t(1, 10),
        };
        let plan = user_ops(&d, &fresh, std::slice::from_ref(&failure), policy(NoAccess::Keep), t(1, 9));
        assert!(plan.ops.is_empty());
        assert_eq!(plan.blocked.len(), 1);
        assert_eq!(user_ops(&d, &fresh, &[failure], policy(NoAccess::Keep), t(1, 10)).ops, invite);
    }

    #[test]
    fn a_user_that_is_only_an_intent_or_at_tapkey_is_left_alone() {
        let mut intent = user(ProviderKind::Salto, UserState::Creating, false);
        intent.ids = None;
        let none = DesiredSet::default();
        assert!(user_ops(&none, &[intent], &[], policy(NoAccess::Delete), t(1, 9)).ops.is_empty());
        assert!(
            user_ops(&wanting(&[lock("L1")]), &[], &[], policy(NoAccess::Delete), t(1, 9)).ops.is_empty()
        );
    }
}
