//! `portier resync` and `portier drift`: the full resync, its plan, and what it found.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Result;
use shared::model::{Email, ProviderKind};
use shared::plan::Op;
use shared::resync::{ResyncOptions, ResyncReport};
use shared::table::columns;

use crate::parts::{Deployment, Local, LocalParts, drain, parts_for};

/// The installation and the tenants a resync or drift run covers.
#[derive(clap::Args)]
pub struct Scope {
    #[command(flatten)]
    local: Local,
    #[command(flatten)]
    aws: Deployment,
    /// Only this tenant [default: all].
    #[arg(long)]
    pub tenant: Option<String>,
}

impl Scope {
    /// The store, queue and tenants; `writes`: a real run, which on AWS needs the queue.
    pub async fn parts(&self, writes: bool) -> Result<LocalParts> {
        parts_for(&self.local, &self.aws, writes).await
    }
}

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    scope: Scope,
    /// Only this lock system: tapkey, salto_ks or brivo.
    #[arg(long)]
    provider: Option<String>,
    #[arg(long)]
    dry_run: bool,
    /// Only what changed in the source since the last resync (quick; no drift check).
    #[arg(long)]
    incremental: bool,
    /// Remove access without asking (on a terminal, a run that would remove access shows
    /// the plan and asks first).
    #[arg(long)]
    yes: bool,
    #[arg(long)]
    json: bool,
}

pub async fn run(Args { scope, provider, dry_run, incremental, yes, json }: Args) -> Result<ExitCode> {
    let provider = match provider.as_deref() {
        None => None,
        Some("tapkey") => Some(ProviderKind::Tapkey),
        Some("salto_ks") => Some(ProviderKind::Salto),
        Some("brivo") => Some(ProviderKind::Brivo),
        Some(other) => {
            eprintln!("portier: unknown provider {other:?} (known: tapkey, salto_ks, brivo)");
            return Ok(ExitCode::from(2));
        }
    };
    let opts = ResyncOptions { dry_run, incremental, provider };
    let parts = scope.parts(!dry_run).await?;
    if !dry_run
        && !yes
        && !json
        && std::io::stdin().is_terminal()
        && !confirm_removals(&parts, scope.tenant.as_deref(), opts).await?
    {
        outln!("Nothing changed.");
        return Ok(ExitCode::from(1));
    }
    resync_cmd(&parts, scope.tenant.as_deref(), opts, json, Mode::Resync).await
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Resync,
    Drift,
}

/// A progress line on a terminal: counts and rate; nothing when output is piped.
fn progress_bar(label: String) -> impl FnMut(usize, usize) + Send {
    use std::io::{IsTerminal, Write};
    let tty = std::io::stderr().is_terminal();
    let started = std::time::Instant::now();
    let mut last_draw = std::time::Instant::now() - std::time::Duration::from_secs(1);
    move |done, total| {
        if !tty || (done < total && last_draw.elapsed() < std::time::Duration::from_millis(100)) {
            return;
        }
        last_draw = std::time::Instant::now();
        let width = 30;
        let filled = (done * width).checked_div(total).unwrap_or(width).min(width);
        let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
        let mut err = std::io::stderr();
        let _ = write!(
            err,
            "\r{label} [{}{}] {done}/{total} {rate:.0}/s",
            "#".repeat(filled),
            ".".repeat(width - filled)
        );
        if done >= total {
            let _ = writeln!(err);
        }
        let _ = err.flush();
    }
}

/// On a terminal, before a real run: the dry run's plan, and a question when it takes access
/// away. True when the run may go ahead.
async fn confirm_removals(parts: &LocalParts, tenant: Option<&str>, opts: ResyncOptions) -> Result<bool> {
    let ids = match tenant {
        Some(t) => vec![shared::model::TenantId(t.to_owned())],
        None => parts.tenants.ids().await?,
    };
    let mut removals = 0;
    for id in ids {
        let Some(runtime) = parts.tenants.get(&id).await? else { continue };
        let dry = ResyncOptions { dry_run: true, ..opts };
        let report =
            shared::resync::resync(&parts.records, &runtime, parts.queue.as_ref(), dry, &mut |_, _| {})
                .await?;
        if report.removals() > 0 {
            out!("{}", render_resync(&report));
        }
        removals += report.removals();
    }
    if removals == 0 {
        return Ok(true);
    }
    out!("\nThis run takes away {removals} access(es) listed above. Go ahead? [y/N] ");
    std::io::Write::flush(&mut std::io::stdout())?;
    let mut answer = String::new();
    std::io::stdin().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

pub async fn resync_cmd(
    parts: &LocalParts,
    tenant: Option<&str>,
    opts: ResyncOptions,
    json: bool,
    mode: Mode,
) -> Result<ExitCode> {
    let ids = match tenant {
        Some(t) => vec![shared::model::TenantId(t.to_owned())],
        None => parts.tenants.ids().await?,
    };
    let mut reports = Vec::new();
    let mut failed = false;
    for id in ids {
        let Some(runtime) = parts.tenants.get(&id).await? else {
            eprintln!("portier: no tenant {id} in {}", parts.origin);
            return Ok(ExitCode::from(2));
        };
        let mut bar = progress_bar(format!("{} {id}", if opts.dry_run { "planning" } else { "resyncing" }));
        match shared::resync::resync(&parts.records, &runtime, parts.queue.as_ref(), opts, &mut bar).await {
            Ok(r) => reports.push(r),
            Err(e) => {
                eprintln!("portier: resync of {id} stopped: {e} (run it again: it resumes where it stopped)");
                failed = true;
            }
        }
    }
    if !opts.dry_run && !parts.deployed {
        // Work the fanned-out reconciles here too, so the change is made even if no
        // `portier serve` is running; a running one shares the work. (A deployment's own
        // worker functions do it there.)
        drain(parts).await?;
    }
    if json {
        let value = match mode {
            Mode::Resync => serde_json::to_value(&reports)?,
            Mode::Drift => {
                serde_json::to_value(reports.iter().map(shared::resync::DriftReport::of).collect::<Vec<_>>())?
            }
        };
        outln!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        for r in &reports {
            out!("{}", if mode == Mode::Drift { super::drift::render(r) } else { render_resync(r) });
        }
    }
    let findings = mode == Mode::Drift
        && reports.iter().any(|r| {
            !r.drift.unjustified.is_empty()
                || !r.drift.vanished.is_empty()
                || !shared::resync::Drift::missing(&r.plans).is_empty()
        });
    Ok(if failed || findings { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

/// A planned operation as table cells: what, where, when, for whom.
pub fn op_cells(op: &Op) -> Vec<String> {
    match op {
        Op::Grant { target, window, email, .. } => {
            vec!["+ grant".into(), target.to_string(), window.to_string(), format!("({email})")]
        }
        Op::Revoke { applied } => vec![
            "- revoke".into(),
            applied.target.to_string(),
            applied.window.to_string(),
            format!("({})", applied.email),
        ],
    }
}

/// Who holds access nothing justifies, as far as the provider says.
pub fn holder(email: Option<&Email>) -> String {
    email.map_or("(unknown contact)".to_owned(), ToString::to_string)
}

fn render_resync(r: &ResyncReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let verb = if r.dry_run { "would make" } else { "made" };
    let _ = writeln!(
        out,
        "Tenant {}: {} people, {} changed in the source, {verb} {} operations{}",
        r.tenant,
        r.people,
        r.changed,
        r.op_count(),
        if r.resumed { " (resumed an interrupted run)" } else { "" }
    );
    for p in &r.plans {
        let _ =
            writeln!(out, "\n  {} ({})", if p.name.is_empty() { "(no name)" } else { &p.name }, p.subject);
        out += &columns("    ", None, p.ops.iter().map(op_cells));
        for op in &p.user_ops {
            let _ = writeln!(out, "    * {op}");
        }
    }
    if r.removed_unjustified > 0 {
        let verb = if r.dry_run { "would remove" } else { "removed" };
        let _ = writeln!(out, "\n  Access no entitlement justifies, which adoption = \"clean_slate\" {verb}");
        out += &columns(
            "    ",
            None,
            r.drift.unjustified.iter().map(|h| {
                let whom = format!("({}, id {})", holder(h.email.as_ref()), h.id);
                vec!["- remove".into(), h.target.to_string(), h.window.to_string(), whom]
            }),
        );
    } else if !r.drift.unjustified.is_empty() {
        let _ = writeln!(
            out,
            "\n  {} grants at the providers that no entitlement justifies (see `portier drift`)",
            r.drift.unjustified.len()
        );
    }
    out
}
