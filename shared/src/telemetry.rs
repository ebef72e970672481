//! Logging set-up, and the helpers that keep personal data and secrets out of logs.

use sha2::{Digest, Sha256};

/// A short, stable, non-reversible tag for an email or id in logs.
pub fn hash_for_logs(value: &str) -> String {
    let digest = Sha256::digest(value.as_bytes());
    format!("h:{}", hex::encode(&digest[..6]))
}

/// Starts tracing: JSON lines for Lambda and `--json`, readable text on a terminal.
pub fn init(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colour only for a person at a terminal, not in files, journals or pipes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    // A second init (tests, embedded runs) is harmless: keep the first subscriber.
    let _ = if json { builder.json().try_init() } else { builder.try_init() };
}
