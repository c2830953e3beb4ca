//! Logging through tracing: human-readable by default, JSON with `--log-format json`.

use tracing_subscriber::{EnvFilter, fmt};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// The default filter. The apalis crates are silenced: during a Redis outage they log several
/// lines per worker restart, and Herald reports the same events itself, once per outage
/// (`health`). `RUST_LOG=info,apalis_core=debug` shows theirs again. (sqlx logs through `log`,
/// which these target filters do not reach; its slow-acquire warnings are lowered in the pool's
/// options instead, see `store::Store::connect`.)
const DEFAULT_FILTER: &str = "info,apalis=off,apalis_core=off,apalis_redis=off,apalis_cron=off";

/// Installs the global subscriber. `RUST_LOG` overrides the default filter.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}
