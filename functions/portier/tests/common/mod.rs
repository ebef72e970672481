//! What the tests of the `portier` binary share: a temporary data directory holding a
//! `portier.toml` for one Nexudus tenant whose "Bike Storage" pass (1001) opens a Tapkey lock,
//! both pointed at the simulators.

use std::path::PathBuf;

use testkit::sim::{NexudusSim, NexudusSimConfig, TapkeySim, TapkeySimConfig};

pub const LOCK: &str = "ea610634-4fc0-4084-85b2-bebf52c3595f";

pub struct Setup {
    pub nexudus: NexudusSim,
    pub tapkey: TapkeySim,
    pub dir: PathBuf,
}

impl Setup {
    /// Writes the config into a new directory named `portier-{name}-…`; `source_extra` is
    /// appended to the source's inline table (e.g. `, calls_per_minute = 60000`).
    pub fn new(nexudus: NexudusSim, tapkey: TapkeySim, name: &str, source_extra: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("portier-{name}-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{e}"));
        let config = format!(
            r#"
[[tenant]]
id = "space-berlin"
source = {{ kind = "nexudus", base_url = "{}", username_env = "NX_USER", password_env = "NX_PASSWORD", webhook_secret_env = "NX_SECRET"{source_extra} }}

[tenant.providers.tapkey]
owner_account_id = "owner-1"
client_id_env = "TK_ID"
client_secret_env = "TK_SECRET"
base_url = "{}"
token_url = "{}"

[[tenant.mapping]]
item = {{ kind = "pass", id = "1001" }}
targets = [ {{ tapkey_lock = "{LOCK}" }} ]
"#,
            nexudus.base_url(),
            tapkey.base_url(),
            tapkey.token_url()
        );
        std::fs::write(dir.join("portier.toml"), config).unwrap_or_else(|e| panic!("{e}"));
        Setup { nexudus, tapkey, dir }
    }
}

/// Simulators holding Anna Müller (456) with the "Bike Storage" pass (1001) and its Tapkey lock,
/// and a [`Setup`] named `name` pointed at them.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub async fn anna_with_bike_storage(name: &str) -> Setup {
    let nexudus = NexudusSim::start(NexudusSimConfig::default()).await;
    let tapkey =
        TapkeySim::start(TapkeySimConfig { owner_account_id: "owner-1".into(), ..Default::default() }).await;
    nexudus.add_coworker(456, "Anna Müller", "anna@example.com");
    nexudus.add_time_pass(1001, "Bike Storage");
    nexudus.give_pass(456, 1001, None);
    tapkey.add_lock(LOCK, "Bike Storage Door", true);
    Setup::new(nexudus, tapkey, name, "")
}
