//! `portier drift`: the resync's dry run, read for what nothing justifies and what is missing.

use std::process::ExitCode;

use anyhow::Result;
use shared::resync::{ResyncOptions, ResyncReport};

use shared::table::columns;

use super::resync::{Mode, Scope, holder, op_cells, resync_cmd};

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    scope: Scope,
    #[arg(long)]
    json: bool,
}

pub async fn run(Args { scope, json }: Args) -> Result<ExitCode> {
    let opts = ResyncOptions { dry_run: true, incremental: false, provider: None };
    resync_cmd(&scope.parts(false).await?, scope.tenant.as_deref(), opts, json, Mode::Drift).await
}

pub fn render(r: &ResyncReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "Tenant {}", r.tenant);
    let _ = writeln!(out, "\n  Access no entitlement justifies ({})", r.drift.unjustified.len());
    out += &columns(
        "    ",
        None,
        r.drift.unjustified.iter().map(|h| {
            vec![h.target.to_string(), holder(h.email.as_ref()), h.window.to_string(), format!("id {}", h.id)]
        }),
    );
    let _ =
        writeln!(out, "\n  Access Portier created that is gone at the provider ({})", r.drift.vanished.len());
    out += &columns(
        "    ",
        None,
        r.drift.vanished.iter().map(|(s, a)| {
            vec![a.target.to_string(), a.email.to_string(), a.window.to_string(), format!("({s})")]
        }),
    );
    let missing = shared::resync::Drift::missing(&r.plans);
    let _ = writeln!(out, "\n  Access that should exist but does not ({})", missing.len());
    out += &columns(
        "    ",
        None,
        missing.iter().map(|(s, op)| {
            let mut cells = op_cells(op);
            cells.push(format!("({s})"));
            cells
        }),
    );
    out
}
