//! `portier`: the single-machine runtime and the operator's command line (design §6.3).

use std::process::ExitCode;

use anyhow::Result;
use clap::{Parser, Subcommand};

/// `println!` that returns an error instead of panicking when stdout is closed
/// (`portier status | head -1`); `main` ends quietly on that error.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout(), $($arg)*)?
    }};
}

/// `print!` that returns an error instead of panicking when stdout is closed.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout(), $($arg)*)?
    }};
}

// After the macros, which they use.
mod cmd;
mod demo;
mod parts;

#[derive(Parser)]
#[command(name = "portier", version, about = "Keeps door access in step with your space-management system")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Webhook routes, worker and tick in one process, with an embedded store and queue.
    Serve(cmd::serve::Args),
    /// Replays a sample webhook from `events/` (an API Gateway event), signed with the demo secret.
    Send(cmd::send::Args),
    /// Full resync: brings every provider into line with the source (or, with --dry-run, prints
    /// exactly what it would change and changes nothing).
    Resync(cmd::resync::Args),
    /// Access at the lock systems that no entitlement justifies, and access that is missing.
    Drift(cmd::drift::Args),
    /// Queue depth, dead letters, failures per tenant and provider, last resync.
    Status(cmd::status::Args),
    /// The dead-letter queue: lists what is in it, or moves it back (`--redrive`) once the
    /// cause is fixed.
    DeadLetters(cmd::dead_letters::Args),
    /// Unit ↔ lock mappings of a Kinnovis location (stored where `portier serve` reads them).
    Mapping {
        #[command(subcommand)]
        command: cmd::mapping::MappingCommand,
    },
    /// Every entitlement, mapping, grant and recent failure for one person.
    Explain(cmd::explain::Args),
    /// Shell completions: `portier completions bash > /etc/bash_completion.d/portier`.
    Completions { shell: clap_complete::Shell },
    /// The configuration file, and that of a Lambda deployment.
    Config {
        #[command(subcommand)]
        command: cmd::config::ConfigCommand,
    },
}

fn main() -> ExitCode {
    // With --json, a script reads stdout: usage errors and failures come as JSON there too.
    let json = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if json && e.use_stderr() => {
            let msg = e.to_string();
            let first = msg.lines().next().unwrap_or_default().trim_start_matches("error: ");
            let _ = print_json_error(first);
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("portier: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        // The reader went away (`| head`): nothing more to say, and no one to say it to.
        Err(e)
            if e.chain().any(|c| {
                c.downcast_ref::<std::io::Error>()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            }) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) if json => {
            let _ = print_json_error(&format!("{e:#}"));
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("portier: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn print_json_error(message: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let v = serde_json::json!({ "error": message });
    writeln!(std::io::stdout(), "{}", serde_json::to_string_pretty(&v).unwrap_or_default())
}

async fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => cmd::serve::run(args).await,
        Command::Send(args) => cmd::send::run(args).await,
        Command::Resync(args) => cmd::resync::run(args).await,
        Command::Drift(args) => cmd::drift::run(args).await,
        Command::Status(args) => cmd::status::run(args).await,
        Command::DeadLetters(args) => cmd::dead_letters::run(args).await,
        Command::Mapping { command } => cmd::mapping::run(command).await,
        Command::Explain(args) => cmd::explain::run(args).await,
        Command::Completions { shell } => {
            use clap::CommandFactory;
            let mut buf = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "portier", &mut buf);
            std::io::Write::write_all(&mut std::io::stdout(), &buf)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Config { command } => cmd::config::run(command).await,
    }
}
