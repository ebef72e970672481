//! The harness for Salto KS and Brivo group scenarios: [`spawn_app_with`] plus both simulators,
//! and a tenant mapping Nexudus passes to an access group and a Brivo group.

use std::collections::BTreeMap;
use std::ops::Deref;

use shared::config::{BrivoProviderConfig, NoAccess, SaltoProviderConfig, TenantConfig};
use shared::model::{ItemKind, ItemRef, Mapping, Target};

use shared::http::RetryPolicy;

use crate::harness::{HookAuth, TestApp, fast_retries, spawn_app_retrying};
use crate::sim::{BrivoSim, BrivoSimConfig, SaltoSim, SaltoSimConfig};

/// The Salto KS access group and the Brivo group of the coworking floor.
pub const SALTO_GROUP: &str = "3f1c2a7e-0000-4000-8000-00000000c0f1";
pub const BRIVO_GROUP: u64 = 501;
/// Two pass products (TimePasses) that both open the coworking floor.
pub const COWORKING: i64 = 1002;
pub const EVENING: i64 = 1003;
/// A pass product for two further Brivo groups (the 16-group cap).
pub const STUDIOS: i64 = 1004;
pub const STUDIO_GROUPS: [u64; 2] = [502, 503];

/// Nexudus items with groups of their own: a meeting room (resource), a dedicated desk and an
/// office (floor-plan desks), and the tenant's visitor access.
pub const ROOM: i64 = 12;
pub const ROOM_SALTO: &str = "3f1c2a7e-0000-4000-8000-00000000c0f2";
pub const ROOM_BRIVO: u64 = 504;
pub const DESK: i64 = 31;
pub const DESK_SALTO: &str = "3f1c2a7e-0000-4000-8000-00000000c0f3";
pub const OFFICE: i64 = 32;
pub const OFFICE_BRIVO: u64 = 505;
pub const VISITORS_SALTO: &str = "3f1c2a7e-0000-4000-8000-00000000c0f4";
pub const VISITORS_BRIVO: u64 = 506;
/// A resource whose bookings open the coworking floor (the groups the passes open).
pub const FLOOR_ROOM: i64 = 13;

/// A tenant's Salto KS provider pointed at the simulator, naming the secrets of [`group_secrets`].
pub fn salto_config(salto: &SaltoSim) -> SaltoProviderConfig {
    SaltoProviderConfig {
        site_id: salto.config().site_id.clone(),
        client_id_env: "SALTO_CLIENT_ID".into(),
        client_secret_env: "SALTO_CLIENT_SECRET".into(),
        username_env: Some("SALTO_USERNAME".into()),
        password_env: Some("SALTO_PASSWORD".into()),
        refresh_token_env: None,
        base_url: salto.base_url(),
        token_url: salto.token_url(),
        user_role: None,
        calls_per_second: None,
    }
}

/// Adds Salto KS and Brivo to the tenant, pointed at the simulators, with the pass mappings.
pub fn add_group_providers(
    config: &mut TenantConfig,
    salto: &SaltoSim,
    brivo: &BrivoSim,
    no_access: NoAccess,
) {
    config.policy.no_access = no_access;
    config.providers.salto_ks = Some(salto_config(salto));
    config.providers.brivo = Some(BrivoProviderConfig {
        api_key_env: "BRIVO_API_KEY".into(),
        client_id_env: "BRIVO_CLIENT_ID".into(),
        client_secret_env: "BRIVO_CLIENT_SECRET".into(),
        username_env: "BRIVO_ADMIN_ID".into(),
        password_env: "BRIVO_PASSWORD".into(),
        base_url: brivo.base_url(),
        token_url: brivo.token_url(),
        calls_per_second: None,
        mobile_pass: true,
    });
    let floor = vec![
        Target::SaltoGroup(SALTO_GROUP.into()),
        Target::BrivoGroup(BRIVO_GROUP.to_string().as_str().into()),
    ];
    for product in [COWORKING, EVENING] {
        config.mappings.push(Mapping {
            item: ItemRef { kind: ItemKind::Pass, id: product.to_string() },
            targets: floor.clone(),
        });
    }
    config.mappings.push(Mapping {
        item: ItemRef { kind: ItemKind::Pass, id: STUDIOS.to_string() },
        targets: STUDIO_GROUPS.iter().map(|g| Target::BrivoGroup(g.to_string().as_str().into())).collect(),
    });
    let salto = |g: &str| Target::SaltoGroup(g.into());
    let brivo = |g: u64| Target::BrivoGroup(g.to_string().as_str().into());
    for (kind, id, targets) in [
        (ItemKind::Resource, ROOM.to_string(), vec![salto(ROOM_SALTO), brivo(ROOM_BRIVO)]),
        (ItemKind::Resource, FLOOR_ROOM.to_string(), floor.clone()),
        (ItemKind::Desk, DESK.to_string(), vec![salto(DESK_SALTO)]),
        (ItemKind::Office, OFFICE.to_string(), vec![brivo(OFFICE_BRIVO)]),
        (ItemKind::Visitors, "*".to_owned(), vec![salto(VISITORS_SALTO), brivo(VISITORS_BRIVO)]),
    ] {
        config.mappings.push(Mapping { item: ItemRef { kind, id }, targets });
    }
}

/// The Salto KS secrets [`salto_config`] names.
pub fn salto_secrets(salto: &SaltoSim) -> BTreeMap<String, String> {
    let s = salto.config();
    BTreeMap::from([
        ("SALTO_CLIENT_ID".into(), s.client_id.clone()),
        ("SALTO_CLIENT_SECRET".into(), s.client_secret.clone()),
        ("SALTO_USERNAME".into(), s.username.clone()),
        ("SALTO_PASSWORD".into(), s.password.clone()),
    ])
}

/// The secrets [`add_group_providers`] names.
pub fn group_secrets(salto: &SaltoSim, brivo: &BrivoSim) -> BTreeMap<String, String> {
    let b = brivo.config();
    let mut secrets = salto_secrets(salto);
    secrets.extend([
        ("BRIVO_API_KEY".into(), b.api_key.clone()),
        ("BRIVO_CLIENT_ID".into(), b.client_id.clone()),
        ("BRIVO_CLIENT_SECRET".into(), b.client_secret.clone()),
        ("BRIVO_ADMIN_ID".into(), b.username.clone()),
        ("BRIVO_PASSWORD".into(), b.password.clone()),
    ]);
    secrets
}

/// Starts both group simulators with the coworking groups (the access group has a time
/// schedule), seeds the pass products, and returns them beside the usual [`TestApp`].
pub async fn start_group_sims() -> (SaltoSim, BrivoSim) {
    let salto = SaltoSim::start(SaltoSimConfig::default()).await;
    salto.add_named_access_group(SALTO_GROUP, "Coworking floor", true);
    let brivo = BrivoSim::start(BrivoSimConfig::default()).await;
    brivo.add_group(BRIVO_GROUP, "Coworking floor");
    for g in STUDIO_GROUPS {
        brivo.add_group(g, "Studio");
    }
    for (g, name) in [(ROOM_SALTO, "Meeting room"), (DESK_SALTO, "Desk 31"), (VISITORS_SALTO, "Visitors")] {
        salto.add_named_access_group(g, name, true);
    }
    brivo.add_group(ROOM_BRIVO, "Meeting room");
    brivo.add_group(OFFICE_BRIVO, "Office 2");
    brivo.add_group(VISITORS_BRIVO, "Visitors");
    (salto, brivo)
}

/// A running Portier with Nexudus, Tapkey, Salto KS and Brivo simulators.
pub struct GroupsApp {
    pub app: TestApp,
    pub salto: SaltoSim,
    pub brivo: BrivoSim,
}

impl Deref for GroupsApp {
    type Target = TestApp;
    fn deref(&self) -> &TestApp {
        &self.app
    }
}

pub async fn spawn_groups_app(no_access: NoAccess) -> GroupsApp {
    spawn_groups_app_with(HookAuth::Signature, no_access).await
}

/// [`spawn_groups_app`] for a tenant that authenticates its webhooks with `auth`.
pub async fn spawn_groups_app_with(auth: HookAuth, no_access: NoAccess) -> GroupsApp {
    spawn_groups_app_tweaked(auth, no_access, |_| {}, fast_retries()).await
}

/// [`spawn_groups_app_with`], then `tweak` changes the tenant before Portier starts; the
/// clients retry and time out by `policy`.
pub async fn spawn_groups_app_tweaked(
    auth: HookAuth,
    no_access: NoAccess,
    tweak: impl FnOnce(&mut TenantConfig),
    policy: RetryPolicy,
) -> GroupsApp {
    let (salto, brivo) = start_group_sims().await;
    let app = spawn_app_retrying(
        auth,
        |c| {
            add_group_providers(c, &salto, &brivo, no_access);
            tweak(c);
        },
        group_secrets(&salto, &brivo),
        policy,
    )
    .await;
    app.nexudus.add_time_pass(COWORKING, "Coworking");
    app.nexudus.add_time_pass(EVENING, "Evening access");
    app.nexudus.add_time_pass(STUDIOS, "Studios");
    GroupsApp { app, salto, brivo }
}
