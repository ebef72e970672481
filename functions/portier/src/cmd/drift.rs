//! `portier drift`: the resync's dry run, read for what nothing justifies and what is missing.

use std::process::ExitCode;

use anyhow::Result;
use shared::resync::{ResyncOptions, ResyncReport};

use super::resync::{Mode, Scope, describe, resync_cmd};

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
    for h in &r.drift.unjustified {
        let who = h.email.as_ref().map_or("(unknown contact)".to_owned(), ToString::to_string);
        let _ = writeln!(out, "    {:<50} {who:<30} {}  id {}", h.target.to_string(), h.window, h.id);
    }
    let _ =
        writeln!(out, "\n  Access Portier created that is gone at the provider ({})", r.drift.vanished.len());
    for (s, a) in &r.drift.vanished {
        let _ =
            writeln!(out, "    {:<50} {:<30} {}  ({s})", a.target.to_string(), a.email.to_string(), a.window);
    }
    let missing = shared::resync::Drift::missing(&r.plans);
    let _ = writeln!(out, "\n  Access that should exist but does not ({})", missing.len());
    for (s, op) in &missing {
        let _ = writeln!(out, "    {}  ({s})", describe(op));
    }
    out
}
