//! `portier serve --demo`: the simulators, their configuration and what to try. Only in a
//! build with the `demo` feature (`make run`); the production binary (`make release`) links
//! no simulator and answers `--demo` with how to get one.

#[cfg(not(feature = "demo"))]
use std::{net::SocketAddr, path::Path};

#[cfg(not(feature = "demo"))]
use anyhow::Result;

/// Which demo secret `portier send` signs with when no `--secret-env` is given.
#[derive(Debug, Clone, Copy)]
pub enum Secret {
    Nexudus,
    Kinnovis,
}

#[cfg(feature = "demo")]
pub use with_simulators::{secret, serve};

#[cfg(not(feature = "demo"))]
const WITHOUT: &str = "this portier was built without the demo; `make run` builds one (cargo run -p portier --features demo -- serve --demo)";

#[cfg(not(feature = "demo"))]
pub async fn serve(_data: &Path, _listen: SocketAddr, _workers: usize) -> Result<()> {
    anyhow::bail!("{WITHOUT}")
}

#[cfg(not(feature = "demo"))]
pub fn secret(_which: Secret) -> Result<String> {
    anyhow::bail!("pass --secret-env NAME: {WITHOUT}")
}

#[cfg(feature = "demo")]
mod with_simulators {
    use std::net::SocketAddr;
    use std::path::Path;

    use anyhow::{Context, Result};

    use super::Secret;

    /// Starts the simulators, writes their configuration beside the data and serves it.
    pub async fn serve(data: &Path, listen: SocketAddr, workers: usize) -> Result<()> {
        let demo = testkit::demo::start().await;
        write_demo_config(&demo, data)?;
        print_demo_help(&demo, listen, data)?;
        crate::cmd::serve::serve_with(&demo.config, &demo.secrets, data, listen, workers).await
    }

    pub fn secret(which: Secret) -> Result<String> {
        Ok(match which {
            Secret::Nexudus => testkit::demo::DEMO_HOOK_SECRET,
            Secret::Kinnovis => testkit::demo::DEMO_KINNOVIS_SECRET,
        }
        .to_owned())
    }

    /// The demo's config and secrets as files, for trying the Lambda functions against the same
    /// simulators (`scripts/lambda-local.sh`: `portier config push`, and the secret's JSON).
    fn write_demo_config(demo: &testkit::demo::Demo, data: &Path) -> Result<()> {
        std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
        let toml = toml::to_string(&demo.config).context("demo config as TOML")?;
        std::fs::write(data.join("demo.toml"), toml).context("writing demo.toml")?;
        let secrets = serde_json::to_string_pretty(&demo.secrets.0)?;
        std::fs::write(data.join("demo-secrets.json"), secrets).context("writing demo-secrets.json")?;
        // The sample webhooks beside them, so the printed `portier send` lines work from any folder.
        let events = data.join("events");
        std::fs::create_dir_all(&events).with_context(|| format!("creating {}", events.display()))?;
        for (name, body) in DEMO_EVENTS {
            std::fs::write(events.join(name), body).with_context(|| format!("writing events/{name}"))?;
        }
        Ok(())
    }

    /// The sample webhooks the demo suggests, built into the binary (a test keeps `events/` current).
    const DEMO_EVENTS: [(&str, &str); 5] = [
        (
            "nexudus-access-control-update.json",
            include_str!("../../../events/nexudus-access-control-update.json"),
        ),
        ("nexudus-coworker-delete.json", include_str!("../../../events/nexudus-coworker-delete.json")),
        ("kinnovis-booking-created.json", include_str!("../../../events/kinnovis-booking-created.json")),
        ("kinnovis-access-revoked.json", include_str!("../../../events/kinnovis-access-revoked.json")),
        ("kinnovis-access-restored.json", include_str!("../../../events/kinnovis-access-restored.json")),
    ];

    fn print_demo_help(demo: &testkit::demo::Demo, listen: SocketAddr, data: &Path) -> Result<()> {
        // Absolute paths: every line works as printed, from any folder.
        let data = std::fs::canonicalize(data).with_context(|| format!("resolving {}", data.display()))?;
        let d = data.display();
        let ev = |name: &str| data.join("events").join(name).display().to_string();
        outln!(
            "Portier demo (config {d}/demo.toml, simulator secrets {d}/demo-secrets.json)\n\
             \n  console    http://{listen}/console/   admin token: {}\
             \n  webhooks   http://{listen}/hooks/nexudus/demo/{{action}}\
             \n  Nexudus    {} (simulator; customer 456 Anna Müller holds \"Bike Storage\" and \"Coworking\")\
             \n  Tapkey     {} (simulator; lock \"Bike Storage Door\")\
             \n  Salto KS   {} (simulator; the coworking floor's access group, for the pass \"Coworking\")\
             \n  Brivo      {} (simulator; group \"Coworking floor\", same pass)\
             \n\nTry, in another terminal:\
             \n  portier send {} --to http://{listen}\
             \n  curl -s {}/_sim/state        # the Tapkey grant for anna@example.com\
             \n  portier explain anna@example.com --data {d}\
             \n  portier resync --dry-run --data {d}\
             \n  portier drift --data {d}\
             \n  portier status --data {d}\
             \n  curl -s -H 'Authorization: Bearer {}' http://{listen}/api/v1/status   # the console's API\
             \n  portier send {} --to http://{listen}   # revokes it\
             \n\nSelf-storage (tenant demo-storage, Kinnovis simulator {}; booking B-1042 of unit A-017\
             \nfor anna@example.com, shared with ben@example.com):\
             \n  portier send {} --to http://{listen}   # grants both\
             \n  portier mapping locks --tenant demo-storage --data {d}\
             \n  portier send {} --to http://{listen}    # overdue: locked out\
             \n  portier send {} --to http://{listen}   # paid: restored\n",
            demo.admin_token,
            demo.nexudus.base_url(),
            demo.tapkey.base_url(),
            demo.salto.base_url(),
            demo.brivo.base_url(),
            ev("nexudus-access-control-update.json"),
            demo.tapkey.base_url().trim_end_matches("/api/v1"),
            demo.admin_token,
            ev("nexudus-coworker-delete.json"),
            demo.kinnovis.base_url(),
            ev("kinnovis-booking-created.json"),
            ev("kinnovis-access-revoked.json"),
            ev("kinnovis-access-restored.json"),
        );
        std::io::Write::flush(&mut std::io::stdout())?;
        Ok(())
    }
}
