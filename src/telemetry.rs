//! Logging through tracing: human-readable by default, JSON with `--log-format json`.

use tracing_subscriber::{EnvFilter, fmt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The default filter. The apalis crates are silenced: during a Redis outage they log several
/// lines per worker restart, and Herald reports the same events itself, once per outage
/// (`health`). `RUST_LOG=info,apalis_core=debug` shows theirs again. sqlx is held to warnings:
/// at info it logs PostgreSQL's notices (`relation "_sqlx_migrations" already exists, skipping`
/// on every start) and, during an outage, each failed ping of its pools, which Herald's one
/// outage line says already. Its slow-acquire warnings are lowered in the pool's options (see
/// `store::Store::connect`).
pub const DEFAULT_FILTER: &str =
    "info,apalis=off,apalis_core=off,apalis_redis=off,apalis_cron=off,sqlx=warn";

/// Installs the global subscriber. `RUST_LOG` overrides the default filter.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        // Colours only for a person at a terminal, and never with NO_COLOR set (no-color.org).
        .with_ansi(
            std::io::IsTerminal::is_terminal(&std::io::stderr())
                && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty()),
        );
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// An error and its causes on one line, `outer: inner: root`, each said once. `{e:#}` repeats a
/// cause whose text its parent already includes (sqlx's "error returned from database: X"
/// followed by X again); this leaves such a cause out.
pub fn chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || out.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("error returned from database: {0}")]
    struct Wrapper(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("relation \"deliveries\" does not exist")]
    struct Inner;

    #[test]
    fn a_cause_already_said_is_not_repeated() {
        let e = anyhow::Error::new(Wrapper(Inner)).context("cannot take due deliveries");
        assert_eq!(
            format!("{e:#}"),
            "cannot take due deliveries: error returned from database: relation \"deliveries\" does not exist: relation \"deliveries\" does not exist"
        );
        assert_eq!(
            chain(&e),
            "cannot take due deliveries: error returned from database: relation \"deliveries\" does not exist"
        );
    }
}
